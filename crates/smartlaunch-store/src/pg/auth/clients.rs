//! [`ClientStore`] on PostgreSQL: clients, the RFC 7592 conditional update, deletion, and the
//! `private_key_jwt` assertion `jti` record (checklist item 49).

use smartlaunch_auth::client::Client;
use smartlaunch_auth::revocation::ALL_USERS;
use smartlaunch_auth::store::{ClientEntryRow, ClientStore, StoreResult};
use smartlaunch_auth::UnixTime;

use super::grants::{revoke_grants, Grants};
use super::{retryable, MAX_ATTEMPTS};
use crate::auth_rows::{client_entry_from_row, client_from_row, err, ClientEntry, ClientRow, CLIENT_COLUMNS};
use crate::pg::PgDb;

const ENTRY: &str = "SELECT c.client_id, c.metadata, c.secret_hash, c.registration_token_hash, c.created_at, \
     s.trace_id, s.simulate_error, s.created_at, s.expires_at, t.expires_at \
     FROM clients c LEFT JOIN backend_sessions s ON s.client_id = c.client_id AND s.expires_at > $1 \
     LEFT JOIN trace_switches t ON t.client_id = c.client_id AND t.expires_at > $1 \
     WHERE c.client_id = $2";
/// RFC 7592: one statement.  A racing update with the same token waits for the first one's
/// row lock, then re-checks the condition on the row it committed (a new token hash): no match.
const UPDATE: &str = "UPDATE clients SET metadata = $1, registration_token_hash = $2 \
     WHERE client_id = $3 AND registration_token_hash IS NOT DISTINCT FROM $4";
/// One statement: the first use inserts; a live record blocks (no update); an expired record
/// not yet purged is taken over.  A racing first use waits on the inserted key and then sees
/// the committed, live record; a racing takeover waits on the row lock and then re-checks the
/// `WHERE` on the newest row, which the winner made live: of racing uses, on any node, exactly
/// one affects a row.
const USE_JTI: &str = "INSERT INTO client_assertion_jtis (client_id, jti_hash, expires_at) VALUES ($1, $2, $3) \
     ON CONFLICT (client_id, jti_hash) DO UPDATE SET expires_at = excluded.expires_at \
     WHERE client_assertion_jtis.expires_at <= $4";
/// Every access token of a client, for all users, until `$3` (the record outlives the client).
pub(in crate::pg) const REVOKE_CLIENT_ACCESS: &str =
    "INSERT INTO access_revocations (user_id, client_id, revoked_at) VALUES ($1, $2, $3) \
     ON CONFLICT (user_id, client_id) DO UPDATE SET revoked_at = GREATEST(access_revocations.revoked_at, excluded.revoked_at)";
/// What else goes with a client.
const DELETE_WITH_CLIENT: [&str; 4] = [
    "DELETE FROM authorization_codes WHERE client_id = $1",
    "DELETE FROM consents WHERE client_id = $1",
    "DELETE FROM backend_sessions WHERE client_id = $1",
    "DELETE FROM trace_switches WHERE client_id = $1",
];

impl ClientStore for PgDb {
    async fn insert_client(&self, client: &Client) -> StoreResult<()> {
        sqlx::query(&format!("INSERT INTO clients ({CLIENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"))
            .bind(&client.client_id)
            .bind(serde_json::to_string(&client.metadata).map_err(err)?)
            .bind(&client.secret_hash)
            .bind(&client.registration_token_hash)
            .bind(client.created_at)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn client(&self, client_id: &str) -> StoreResult<Option<Client>> {
        let row: Option<ClientRow> =
            sqlx::query_as(&format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE client_id = $1"))
                .bind(client_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(err)?;
        row.map(client_from_row).transpose()
    }

    async fn client_and_backend_session(&self, client_id: &str, now: UnixTime) -> StoreResult<Option<ClientEntryRow>> {
        let row: Option<ClientEntry> =
            sqlx::query_as(ENTRY).bind(now).bind(client_id).fetch_optional(&self.pool).await.map_err(err)?;
        row.map(client_entry_from_row).transpose()
    }

    async fn clients(&self) -> StoreResult<Vec<Client>> {
        let rows: Vec<ClientRow> =
            sqlx::query_as(&format!("SELECT {CLIENT_COLUMNS} FROM clients ORDER BY created_at, client_id"))
                .fetch_all(&self.pool)
                .await
                .map_err(err)?;
        rows.into_iter().map(client_from_row).collect()
    }

    async fn update_client(&self, client: &Client, spent_token_hash: Option<&str>) -> StoreResult<bool> {
        let updated = sqlx::query(UPDATE)
            .bind(serde_json::to_string(&client.metadata).map_err(err)?)
            .bind(&client.registration_token_hash)
            .bind(&client.client_id)
            .bind(spent_token_hash)
            .execute(&self.pool)
            .await
            .map_err(err)?
            .rows_affected();
        Ok(updated == 1)
    }

    async fn use_assertion_jti(
        &self,
        client_id: &str,
        jti_hash: &str,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> StoreResult<bool> {
        let recorded = sqlx::query(USE_JTI)
            .bind(client_id)
            .bind(jti_hash)
            .bind(expires_at)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(err)?
            .rows_affected();
        Ok(recorded == 1)
    }

    async fn delete_client(&self, client_id: &str, now: UnixTime) -> StoreResult<bool> {
        let mut attempt = 1;
        loop {
            match self.try_delete_client(client_id, now).await {
                Err(e) if attempt < MAX_ATTEMPTS && retryable(&e) => attempt += 1,
                result => return result.map_err(err),
            }
        }
    }
}

impl PgDb {
    /// One transaction across clients, grants, codes, consents and launches.
    async fn try_delete_client(&self, client_id: &str, now: UnixTime) -> Result<bool, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query("DELETE FROM clients WHERE client_id = $1").bind(client_id).execute(&mut *tx).await?;
        revoke_grants(&mut tx, Grants::OfClient(client_id), now).await?;
        sqlx::query(REVOKE_CLIENT_ACCESS).bind(ALL_USERS).bind(client_id).bind(now).execute(&mut *tx).await?;
        for sql in DELETE_WITH_CLIENT {
            sqlx::query(sql).bind(client_id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(deleted.rows_affected() > 0)
    }
}
