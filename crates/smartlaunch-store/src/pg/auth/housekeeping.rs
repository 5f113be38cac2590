//! [`Housekeeping`] on PostgreSQL: the periodic purge.  Each table's expiry is indexed (there is
//! no rowid prefix to walk as on SQLite), and a purge running on two nodes at once deletes each
//! row once: the second waits on the first's row locks and then finds the rows gone.

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
/// At most `$1` inspector events in all, the newest.
const EVENTS_OVER_TOTAL: &str =
    "DELETE FROM launch_events WHERE seq <= (SELECT seq FROM launch_events ORDER BY seq DESC LIMIT 1 OFFSET $1)";

impl Housekeeping for PgDb {
    async fn purge_expired(&self, purge: &Purge) -> StoreResult<()> {
        for (sql, cutoff) in BY_TIME {
            sqlx::query(sql).bind(cutoff(purge)).execute(&self.pool).await.map_err(err)?;
        }
        sqlx::query(EVENTS_OVER_TOTAL).bind(purge.max_events).execute(&self.pool).await.map_err(err)?;
        Ok(())
    }
}
