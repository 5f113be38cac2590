//! The sandbox reset on PostgreSQL (issue 9, item 6): the SQLite store's rules
//! (`crate::reset`) in one PostgreSQL transaction — [`RESET_TABLES`] emptied, the demo data
//! and demo users put back, every removed app's tokens recorded as revoked.  The signing keys
//! and the revocation tables stay.

use serde_json::Value;
use smartlaunch_auth::revocation::ALL_USERS;
use smartlaunch_auth::users::User;
use smartlaunch_auth::UnixTime;
use smartlaunch_fhir::store::StoreError;

use super::auth::{INSERT_USER, REVOKE_CLIENT_ACCESS};
use super::bulk::put_many;
use super::PgDb;
use crate::resources::err;
use crate::{BulkBatch, ResetReport, RESET_TABLES};

impl PgDb {
    /// Empties [`RESET_TABLES`] and stores `resources` and `users` (the demo data set and the
    /// demo accounts), all in one transaction; records every removed app's tokens as revoked
    /// at `now`.
    ///
    /// Other nodes keep serving meanwhile: the transaction first locks every table it empties
    /// (`ACCESS EXCLUSIVE`, as `TRUNCATE` needs anyway), so an app registered on another node
    /// during the reset either commits before it (and is removed, its tokens revoked) or waits
    /// and lands in the new sandbox — never removed without its revocation.
    pub async fn reset_sandbox(
        &self,
        resources: Vec<Value>,
        users: &[User],
        now: UnixTime,
        now_instant: &str,
    ) -> Result<ResetReport, StoreError> {
        let batch = BulkBatch::prepare(resources, now_instant)?;
        let tables = RESET_TABLES.join(", ");
        let mut tx = self.pool.begin().await.map_err(err)?;
        sqlx::query(&format!("LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE")).execute(&mut *tx).await.map_err(err)?;
        let clients: Vec<(String,)> = sqlx::query_as("SELECT client_id FROM clients ORDER BY client_id")
            .fetch_all(&mut *tx)
            .await
            .map_err(err)?;
        let export_jobs: Vec<(String,)> =
            sqlx::query_as("SELECT id FROM export_jobs ORDER BY id").fetch_all(&mut *tx).await.map_err(err)?;
        for (client_id,) in &clients {
            sqlx::query(REVOKE_CLIENT_ACCESS)
                .bind(ALL_USERS)
                .bind(client_id)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        sqlx::query(&format!("TRUNCATE {tables}")).execute(&mut *tx).await.map_err(err)?;
        put_many(&mut tx, batch).await?;
        for user in users {
            sqlx::query(INSERT_USER)
                .bind(&user.id)
                .bind(&user.username)
                .bind(&user.password_hash)
                .bind(&user.fhir_user)
                .bind(&user.display_name)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        tx.commit().await.map_err(err)?;
        // The tables were emptied and refilled: the planner's statistics are stale.
        self.analyze().await.map_err(err)?;
        Ok(ResetReport {
            clients: clients.into_iter().map(|(c,)| c).collect(),
            export_jobs: export_jobs.into_iter().map(|(j,)| j).collect(),
        })
    }
}
