//! The launch rows a SQLite server has read, kept in memory: every authorization request at a
//! developer-launcher simulation reads its launch row, and on SQLite a point read after the
//! writer's last commit empties the reader's page cache and walks the B-tree again (with the
//! JSON of the row parsed each time, 7% of the server's time on the sandbox loop, issue 10).
//!
//! Coherent with the database because this process is its only writer while it serves
//! (`smartlaunch reset` refuses a running server; the other commands do not write launches):
//! every write to `launches` (redeeming one, the purge, the reset) bumps the generation and
//! drops what it changed *after* its commit, and a row read from the database is kept only if
//! no write ended between the start of its read and its insertion here.  A missing row is
//! never kept.  Expiry is the caller's check against its clock, as for a row read from disk.

use std::collections::HashMap;
use std::sync::Mutex;

use smartlaunch_auth::launch::Launch;
use smartlaunch_auth::UnixTime;

/// A launch row: the launch and when it was used.
pub(crate) type LaunchRow = (Launch, Option<UnixTime>);

/// At most this many rows are kept; past it the cache starts empty again.
const MAX_ROWS: usize = 4096;

#[derive(Debug, Default)]
struct Rows {
    /// Bumped by every write to `launches`.
    generation: u64,
    by_id_hash: HashMap<String, LaunchRow>,
}

#[derive(Debug, Default)]
pub(crate) struct LaunchCache {
    rows: Mutex<Rows>,
}

impl LaunchCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Rows> {
        self.rows.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The kept row, or the generation to pass to [`LaunchCache::keep`] after reading it.
    pub(crate) fn get(&self, id_hash: &str) -> Result<LaunchRow, u64> {
        let rows = self.lock();
        rows.by_id_hash.get(id_hash).cloned().ok_or(rows.generation)
    }

    /// Keeps a row read from the database since [`LaunchCache::get`] returned `generation`,
    /// unless a write to `launches` has ended since.
    pub(crate) fn keep(&self, id_hash: &str, row: &LaunchRow, generation: u64) {
        let mut rows = self.lock();
        if rows.generation != generation {
            return;
        }
        if rows.by_id_hash.len() >= MAX_ROWS {
            rows.by_id_hash.clear();
        }
        rows.by_id_hash.insert(id_hash.to_owned(), row.clone());
    }

    /// After a committed write to one launch.
    pub(crate) fn forget(&self, id_hash: &str) {
        let mut rows = self.lock();
        rows.generation += 1;
        rows.by_id_hash.remove(id_hash);
    }

    /// After a committed write to any number of launches (purge, reset).
    pub(crate) fn clear(&self) {
        let mut rows = self.lock();
        rows.generation += 1;
        rows.by_id_hash.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(used: Option<UnixTime>) -> LaunchRow {
        let launch: Launch = serde_json::from_value(serde_json::json!({
            "id_hash": "h", "client_id": "c", "user_id": null, "session_id": null, "patient": "p",
            "encounter": null, "context": {}, "created_at": 1, "expires_at": 100
        }))
        .unwrap();
        (launch, used)
    }

    #[test]
    fn a_row_read_before_a_write_ended_is_not_kept() {
        let cache = LaunchCache::default();
        let generation = cache.get("h").unwrap_err();
        // A reader read the row unused; meanwhile the launch was redeemed and committed.
        cache.forget("h");
        cache.keep("h", &row(None), generation);
        assert!(cache.get("h").is_err(), "the stale row would say the launch is unused");
        let generation = cache.get("h").unwrap_err();
        cache.keep("h", &row(Some(5)), generation);
        assert_eq!(cache.get("h").unwrap().1, Some(5));
        cache.clear();
        assert!(cache.get("h").is_err());
    }
}
