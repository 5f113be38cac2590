//! The change feed between stateless nodes (issue 10, "Stateless nodes"): what one node
//! writes that other nodes keep in memory — the revocation list, the client cache, the
//! signing keys — announced as typed [`Change`]s so that every node applies it promptly.
//!
//! On PostgreSQL the database itself announces each change (triggers calling `pg_notify` in
//! the writing transaction, so a change is announced exactly when it commits, whichever
//! process wrote it), and each node follows the announcements through a [`ChangeFeed`].  A
//! notification sent while a node was not listening is lost, so a feed reports every
//! (re)connection as [`FeedEvent::Resync`], and the node reloads what it keeps from the store
//! (docs/DESIGN.md "Stateless nodes").  On SQLite there is one process and no feed.

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::UnixTime;

/// A change another node must apply to what it keeps in memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    /// A grant was revoked (refresh-token reuse, a replayed code, RFC 7009 revocation, a
    /// removed client): its access tokens are refused from now on.
    GrantRevoked { grant: String, at: UnixTime },
    /// Every access token `user` gave `client` until `at` is revoked ("revoke access" on the
    /// management page; the user [`ALL_USERS`](crate::revocation::ALL_USERS) for a removed
    /// client or a sandbox reset).
    UserClientRevoked { user: String, client: String, at: UnixTime },
    /// A client's registration, backend-service session or trace switch changed (or the client
    /// was removed): cached copies are stale, and so are the CORS origins of registered clients.
    ClientChanged { client: String },
    /// Every client was removed at once (a sandbox reset): the whole client cache and the CORS
    /// origins of registered clients are stale.
    ClientsCleared,
    /// A signing key was added (a rotation): reload the keys.
    KeysRotated,
    /// A signing key was removed (`smartlaunch keys retire`, a compromised key): reload the
    /// keys, after which tokens it signed are refused.
    KeyRetired { kid: String },
}

/// What a [`ChangeFeed`] delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEvent {
    Change(Change),
    /// The feed (re)connected and is listening: changes made while it was not may have been
    /// missed, so everything kept in memory must be reloaded from the store.
    Resync,
}

/// The announcements of changes made by any node, in commit order.
pub trait ChangeFeed: Send {
    /// The next event; waits for one.  A feed never ends: it reconnects (and then reports
    /// [`FeedEvent::Resync`]) when its connection is lost.
    fn next(&mut self) -> impl Future<Output = FeedEvent> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_read_the_json_the_database_triggers_write() {
        let parse = |s: &str| serde_json::from_str::<Change>(s).unwrap();
        assert_eq!(
            parse(r#"{"change":"grant_revoked","grant":"g1","at":5}"#),
            Change::GrantRevoked { grant: "g1".into(), at: 5 }
        );
        assert_eq!(
            parse(r#"{"change":"user_client_revoked","user":"*","client":"c","at":7}"#),
            Change::UserClientRevoked { user: "*".into(), client: "c".into(), at: 7 }
        );
        assert_eq!(parse(r#"{"change":"client_changed","client":"c"}"#), Change::ClientChanged { client: "c".into() });
        assert_eq!(parse(r#"{"change":"keys_rotated"}"#), Change::KeysRotated);
        assert_eq!(parse(r#"{"change":"clients_cleared"}"#), Change::ClientsCleared);
        assert_eq!(parse(r#"{"change":"key_retired","kid":"k1"}"#), Change::KeyRetired { kid: "k1".into() });
        assert!(serde_json::from_str::<Change>(r#"{"change":"unknown"}"#).is_err());
    }
}
