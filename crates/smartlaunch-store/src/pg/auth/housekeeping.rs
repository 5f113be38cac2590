//! [`Housekeeping`] on PostgreSQL: the periodic purge.  Each table's expiry is indexed (there is
//! no rowid prefix to walk as on SQLite).  Every node runs the housekeeping task; a run takes a
//! transaction-scoped advisory lock without waiting, so while one node purges, another node's
//! run finds the lock taken and does nothing (it would only queue on the same rows): the work
//! runs once, on whichever node comes first.

use smartlaunch_auth::retention::Purge;
use smartlaunch_auth::store::{Housekeeping, StoreResult};

use crate::auth_rows::err;
use crate::pg::PgDb;

/// Which cutoff of a [`Purge`] a statement takes.
type Cutoff = fn(&Purge) -> i64;

/// Statements deleting what expired before `$1`, each with the cutoff of [`Purge`] it takes.
const BY_TIME: [(&str, Cutoff); 11] = [
    ("DELETE FROM authorization_codes WHERE expires_at <= $1", |p| p.codes),
    ("DELETE FROM pending_authorizations WHERE expires_at <= $1", |p| p.expired),
    ("DELETE FROM launch_events WHERE at <= $1", |p| p.events),
    ("DELETE FROM sessions WHERE expires_at <= $1", |p| p.expired),
    ("DELETE FROM refresh_tokens WHERE expires_at <= $1", |p| p.expired),
    ("DELETE FROM launches WHERE expires_at <= $1", |p| p.launches),
    ("DELETE FROM backend_sessions WHERE expires_at <= $1", |p| p.launches),
    ("DELETE FROM trace_switches WHERE expires_at <= $1", |p| p.launches),
    ("DELETE FROM hand_traces WHERE expires_at <= $1", |p| p.launches),
    ("DELETE FROM launch_traces WHERE last_at <= $1", |p| p.events),
    ("DELETE FROM client_assertion_jtis WHERE expires_at <= $1", |p| p.expired),
];
/// The `pg_try_advisory_xact_lock` key a purge holds.
const PURGE_LOCK: i64 = 0x736d_6172_7470_7267; // "smartprg"

/// At most `$1` inspector events in all, the newest.
const EVENTS_OVER_TOTAL: &str =
    "DELETE FROM launch_events WHERE seq <= (SELECT seq FROM launch_events ORDER BY seq DESC LIMIT 1 OFFSET $1)";

impl Housekeeping for PgDb {
    /// One transaction: the purge's deletes only touch expired rows, which no live request
    /// waits for.
    async fn purge_expired(&self, purge: &Purge) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        let (first,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_xact_lock($1)")
            .bind(PURGE_LOCK)
            .fetch_one(&mut *tx)
            .await
            .map_err(err)?;
        if !first {
            // Another node is purging right now.
            return Ok(());
        }
        for (sql, cutoff) in BY_TIME {
            sqlx::query(sql).bind(cutoff(purge)).execute(&mut *tx).await.map_err(err)?;
        }
        sqlx::query(EVENTS_OVER_TOTAL).bind(purge.max_events).execute(&mut *tx).await.map_err(err)?;
        tx.commit().await.map_err(err)
    }
}
