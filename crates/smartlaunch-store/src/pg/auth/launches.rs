//! [`LaunchStore`] and [`LaunchRedemption`] on PostgreSQL: EHR launches (single use, checklist
//! item 26) and the developer launcher's backend-service sessions.

use smartlaunch_auth::launch::{BackendSession, Launch};
use smartlaunch_auth::store::{LaunchRedemption, LaunchStore, StoreResult};
use smartlaunch_auth::UnixTime;

use crate::auth_rows::{backend_session_from_row, err, BackendSessionRow, BACKEND_SESSION_COLUMNS};
use crate::pg::PgDb;

const INSERT_LAUNCH: &str =
    "INSERT INTO launches (id_hash, client_id, data, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)";
const PUT_BACKEND_SESSION: &str = "INSERT INTO backend_sessions (client_id, trace_id, simulate_error, created_at, \
     expires_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (client_id) DO UPDATE SET trace_id = excluded.trace_id, \
     simulate_error = excluded.simulate_error, created_at = excluded.created_at, expires_at = excluded.expires_at";
/// The single use, one conditional statement: a racing use waits for the winner's row lock and
/// then finds the launch used.
const USE_LAUNCH: &str = "UPDATE launches SET used_at = $1 WHERE id_hash = $2 AND used_at IS NULL AND expires_at > $1";

impl LaunchStore for PgDb {
    async fn insert_launch(&self, launch: &Launch) -> StoreResult<()> {
        sqlx::query(INSERT_LAUNCH)
            .bind(&launch.id_hash)
            .bind(&launch.client_id)
            .bind(serde_json::to_string(launch).map_err(err)?)
            .bind(launch.created_at)
            .bind(launch.expires_at)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn put_backend_session(&self, session: &BackendSession) -> StoreResult<()> {
        sqlx::query(PUT_BACKEND_SESSION)
            .bind(&session.client_id)
            .bind(&session.trace_id)
            .bind(session.simulate_error.map(|e| e.name()))
            .bind(session.created_at)
            .bind(session.expires_at)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn recent_backend_sessions(&self, limit: i64) -> StoreResult<Vec<BackendSession>> {
        let rows: Vec<BackendSessionRow> = sqlx::query_as(&format!(
            "SELECT {BACKEND_SESSION_COLUMNS} FROM backend_sessions ORDER BY created_at DESC LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        Ok(rows.into_iter().map(backend_session_from_row).collect())
    }

    async fn recent_launches(&self, limit: i64) -> StoreResult<Vec<Launch>> {
        let rows: Vec<(String,)> = sqlx::query_as("SELECT data FROM launches ORDER BY created_at DESC LIMIT $1")
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        rows.into_iter().map(|(data,)| serde_json::from_str(&data).map_err(err)).collect()
    }

    async fn launch(&self, id_hash: &str) -> StoreResult<Option<(Launch, Option<UnixTime>)>> {
        let row: Option<(String, Option<i64>)> =
            sqlx::query_as("SELECT data, used_at FROM launches WHERE id_hash = $1")
                .bind(id_hash)
                .fetch_optional(&self.pool)
                .await
                .map_err(err)?;
        row.map(|(data, used_at)| Ok((serde_json::from_str(&data).map_err(err)?, used_at))).transpose()
    }
}

impl LaunchRedemption for PgDb {
    async fn use_launch(&self, id_hash: &str, now: UnixTime) -> StoreResult<bool> {
        let used =
            sqlx::query(USE_LAUNCH).bind(now).bind(id_hash).execute(&self.pool).await.map_err(err)?.rows_affected();
        Ok(used == 1)
    }
}
