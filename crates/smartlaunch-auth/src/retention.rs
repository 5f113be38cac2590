//! Bounded data: how long the server keeps what it no longer needs, and how many launch
//! inspector events it keeps at most (issue 7 "Bounded data", docs/DESIGN.md).
//!
//! The housekeeping task turns these rules into a [`Purge`] with the current time and the store
//! deletes everything past it.

use crate::UnixTime;

/// The launch inspector keeps at most this many events of one launch (the newest).
pub const MAX_EVENTS_PER_TRACE: i64 = 500;

/// How long the server keeps records after they stopped being useful.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// An expired launch is kept this long, so a late use is told "expired", not "unknown".
    pub expired_launch: i64,
    /// Inspector events older than this are deleted.
    pub event_age: i64,
    /// The inspector keeps at most this many events in all (the newest).
    pub max_events: i64,
    /// The inspector keeps at most this many events per launch (the newest).
    pub max_events_per_trace: i64,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            expired_launch: 3600,
            event_age: 24 * 3600,
            max_events: 50_000,
            max_events_per_trace: MAX_EVENTS_PER_TRACE,
        }
    }
}

/// What one housekeeping run deletes: every record whose time is at or before its cutoff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purge {
    /// Pending authorization requests, sessions and refresh tokens that expired (`expires_at`).
    pub expired: UnixTime,
    /// Authorization codes, used or not (`expires_at`).  Until its expiry a used code is kept,
    /// so a second redemption is recognised as a replay and revokes the grant the first one
    /// created (RFC 6749 §4.1.2); after it, any redemption is refused as expired anyway, so
    /// the row has no purpose left.
    pub codes: UnixTime,
    /// Launches (`expires_at`).
    pub launches: UnixTime,
    /// Inspector events (`at`).
    pub events: UnixTime,
    /// The most inspector events kept in all.
    pub max_events: i64,
}

impl Retention {
    /// The cutoffs of a housekeeping run at `now`.
    pub fn purge(&self, now: UnixTime) -> Purge {
        Purge {
            expired: now,
            codes: now,
            launches: now - self.expired_launch,
            events: now - self.event_age,
            max_events: self.max_events,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_used_or_not_go_at_expiry() {
        let purge = Retention::default().purge(10_000);
        assert_eq!(purge.codes, 10_000, "a code, used or not, goes at expiry");
        assert_eq!(purge.expired, 10_000, "sessions, pending requests, refresh tokens go at expiry");
        assert_eq!(purge.launches, 10_000 - 3600);
        assert_eq!(purge.events, 10_000 - 24 * 3600);
    }
}
