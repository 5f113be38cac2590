//! [`FlowStore`] and [`CodeStore`] on PostgreSQL: authorization requests in progress,
//! remembered consents, and single-use authorization codes (checklist items 29–31).  Pending
//! requests and codes live in `UNLOGGED` tables (docs/DESIGN.md "PostgreSQL").

use smartlaunch_auth::store::{CodeGrant, CodeRedemption, CodeStore, FlowStore, PendingAuthorization, StoreResult};
use smartlaunch_auth::UnixTime;

use crate::auth_rows::err;
use crate::pg::PgDb;

const PUT_CONSENT: &str = "INSERT INTO consents (user_id, client_id, scope, updated_at) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (user_id, client_id) DO UPDATE SET scope = excluded.scope, updated_at = excluded.updated_at";
const INSERT_CODE: &str =
    "INSERT INTO authorization_codes (code_hash, grant_id, client_id, data, expires_at) VALUES ($1, $2, $3, $4, $5)";
/// The redemption, one conditional statement: a racing redemption waits for the winner's row
/// lock, then re-checks `used_at IS NULL` on the row the winner committed, and changes nothing.
const REDEEM: &str = "UPDATE authorization_codes SET used_at = $1 \
     WHERE code_hash = $2 AND used_at IS NULL AND expires_at > $1 RETURNING data";
/// After a redemption that changed nothing: was the code used (a replay)?  A separate statement,
/// so that it reads a snapshot taken after the winner's commit that the losing `UPDATE` waited
/// for (one statement's snapshot would predate it and call the replay "unknown").
const USED: &str = "SELECT grant_id FROM authorization_codes WHERE code_hash = $1 AND used_at IS NOT NULL";

impl FlowStore for PgDb {
    async fn insert_pending(&self, p: &PendingAuthorization) -> StoreResult<()> {
        sqlx::query("INSERT INTO pending_authorizations (id, request, expires_at) VALUES ($1, $2, $3)")
            .bind(&p.id)
            .bind(serde_json::to_string(p).map_err(err)?)
            .bind(p.expires_at)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn pending(&self, id: &str, now: UnixTime) -> StoreResult<Option<PendingAuthorization>> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT request FROM pending_authorizations WHERE id = $1 AND expires_at > $2")
                .bind(id)
                .bind(now)
                .fetch_optional(&self.pool)
                .await
                .map_err(err)?;
        row.map(|(json,)| serde_json::from_str(&json).map_err(err)).transpose()
    }

    async fn update_pending(&self, p: &PendingAuthorization) -> StoreResult<()> {
        sqlx::query("UPDATE pending_authorizations SET request = $1 WHERE id = $2")
            .bind(serde_json::to_string(p).map_err(err)?)
            .bind(&p.id)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn delete_pending(&self, id: &str) -> StoreResult<bool> {
        let deleted = sqlx::query("DELETE FROM pending_authorizations WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(err)?
            .rows_affected();
        Ok(deleted == 1)
    }

    async fn consent(&self, user_id: &str, client_id: &str) -> StoreResult<Option<String>> {
        let row: Option<(String,)> = sqlx::query_as("SELECT scope FROM consents WHERE user_id = $1 AND client_id = $2")
            .bind(user_id)
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        Ok(row.map(|(scope,)| scope))
    }

    async fn put_consent(&self, user_id: &str, client_id: &str, scope: &str, now: UnixTime) -> StoreResult<()> {
        sqlx::query(PUT_CONSENT)
            .bind(user_id)
            .bind(client_id)
            .bind(scope)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }
}

impl CodeStore for PgDb {
    async fn insert_code(&self, code_hash: &str, grant: &CodeGrant, expires_at: UnixTime) -> StoreResult<()> {
        sqlx::query(INSERT_CODE)
            .bind(code_hash)
            .bind(&grant.grant_id)
            .bind(&grant.client_id)
            .bind(serde_json::to_string(grant).map_err(err)?)
            .bind(expires_at)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn redeem_code(&self, code_hash: &str, now: UnixTime) -> StoreResult<CodeRedemption> {
        let redeemed: Option<(String,)> =
            sqlx::query_as(REDEEM).bind(now).bind(code_hash).fetch_optional(&self.pool).await.map_err(err)?;
        if let Some((data,)) = redeemed {
            return Ok(CodeRedemption::Redeemed(Box::new(serde_json::from_str(&data).map_err(err)?)));
        }
        let used: Option<(String,)> =
            sqlx::query_as(USED).bind(code_hash).fetch_optional(&self.pool).await.map_err(err)?;
        Ok(match used {
            Some((grant_id,)) => CodeRedemption::Replayed { grant_id },
            None => CodeRedemption::Unknown,
        })
    }
}
