//! [`GrantStore`] on PostgreSQL: grants, refresh-token families, revocations (checklist items
//! 71–76, RFC 7009).
//!
//! A refresh rotation and a revocation of the same grant may race on two nodes.  The rotation
//! holds the grant row `FOR SHARE` while it checks that the grant is not revoked, and the
//! revocation marks the grant (a row lock that conflicts with it) before, in a later statement
//! of its transaction, it deletes the family's tokens: whichever comes second sees the first's
//! commit, so no refresh token of a revoked grant outlives the revocation.

use smartlaunch_auth::store::{Grant, GrantStore, RefreshToken, StoreResult, UserAuthorization};
use smartlaunch_auth::UnixTime;
use sqlx::{PgConnection, Postgres, Transaction};

use super::{retryable, MAX_ATTEMPTS};
use crate::auth_rows::{
    err, grant_context, grant_from_row, refresh_from_row, GrantRow, RefreshRow, GRANT_COLUMNS, REFRESH_COLUMNS,
};
use crate::pg::PgDb;

const INSERT_REFRESH: &str =
    "INSERT INTO refresh_tokens (token_hash, grant_id, client_id, expires_at, used_at) VALUES ($1, $2, $3, $4, $5)";
/// The rotation, in one statement: marks the old token used if it is unused and its grant is
/// live (holding the grant `FOR SHARE`: a racing revocation waits, or is waited for and then
/// seen), and stores the new token only if it did.  Racing rotations of one token wait on its
/// row lock and then find it used: exactly one stores its token; the others store nothing.
const ROTATE: &str = "WITH used AS ( \
       UPDATE refresh_tokens r SET used_at = $1 \
       WHERE r.token_hash = $2 AND r.used_at IS NULL \
         AND EXISTS (SELECT 1 FROM grants g WHERE g.id = r.grant_id AND g.revoked_at IS NULL FOR SHARE) \
       RETURNING 1) \
     INSERT INTO refresh_tokens (token_hash, grant_id, client_id, expires_at, used_at) \
     SELECT $3, $4, $5, $6, $7 FROM used";
const RECORD_REVOCATION: &str =
    "INSERT INTO revocations (grant_id, revoked_at) VALUES ($1, $2) ON CONFLICT (grant_id) DO NOTHING";
const REVOKE_USER_CLIENT: &str = "INSERT INTO access_revocations (user_id, client_id, revoked_at) VALUES ($1, $2, $3) \
     ON CONFLICT (user_id, client_id) DO UPDATE SET revoked_at = GREATEST(access_revocations.revoked_at, excluded.revoked_at)";
const USER_AUTHORIZATIONS: &str = "SELECT c.client_id, c.scope, c.updated_at, \
     (SELECT COUNT(*) FROM grants g JOIN refresh_tokens r ON r.grant_id = g.id \
      WHERE g.user_id = c.user_id AND g.client_id = c.client_id AND g.revoked_at IS NULL \
      AND r.used_at IS NULL AND r.expires_at > $1), \
     COALESCE((SELECT (l.data::jsonb ->> 'trace_id') FROM launches l \
       WHERE ((l.data::jsonb ->> 'user_id') COLLATE \"C\") = c.user_id AND l.client_id = c.client_id \
       ORDER BY l.created_at DESC LIMIT 1), \
      (SELECT g.trace FROM grants g WHERE g.user_id = c.user_id AND g.client_id = c.client_id \
       AND g.trace IS NOT NULL ORDER BY g.created_at DESC LIMIT 1)) \
     FROM consents c WHERE c.user_id = $2 ORDER BY c.updated_at DESC";

/// Which stored grants to revoke.
pub(super) enum Grants<'a> {
    Id(&'a str),
    OfClient(&'a str),
    OfUserAndClient(&'a str, &'a str),
}

impl Grants<'_> {
    /// The condition on `grants`, its values numbered from `$first`.
    fn condition(&self, first: usize) -> String {
        match self {
            Grants::Id(_) => format!("id = ${first}"),
            Grants::OfClient(_) => format!("client_id = ${first}"),
            Grants::OfUserAndClient(..) => format!("user_id = ${first} AND client_id = ${}", first + 1),
        }
    }

    fn values(&self) -> Vec<&str> {
        match *self {
            Grants::Id(id) => vec![id],
            Grants::OfClient(client) => vec![client],
            Grants::OfUserAndClient(user, client) => vec![user, client],
        }
    }
}

/// Revokes stored grants inside a transaction: marks them (locking their rows, so a racing
/// rotation waits or is refused) and records each revocation in one statement, then deletes
/// their refresh tokens in the next, which sees every token a rotation committed before.
pub(super) async fn revoke_grants(
    tx: &mut Transaction<'_, Postgres>,
    which: Grants<'_>,
    now: UnixTime,
) -> Result<(), sqlx::Error> {
    let mark = format!(
        "WITH revoked AS (UPDATE grants SET revoked_at = $1 WHERE {} AND revoked_at IS NULL RETURNING id) \
         INSERT INTO revocations (grant_id, revoked_at) SELECT id, $1 FROM revoked ON CONFLICT (grant_id) DO NOTHING",
        which.condition(2)
    );
    let mut query = sqlx::query(&mark).bind(now);
    for value in which.values() {
        query = query.bind(value);
    }
    query.execute(&mut **tx).await?;
    let delete =
        format!("DELETE FROM refresh_tokens WHERE grant_id IN (SELECT id FROM grants WHERE {})", which.condition(1));
    let mut query = sqlx::query(&delete);
    for value in which.values() {
        query = query.bind(value);
    }
    query.execute(&mut **tx).await?;
    Ok(())
}

async fn insert_refresh(conn: &mut PgConnection, r: &RefreshToken) -> Result<(), sqlx::Error> {
    sqlx::query(INSERT_REFRESH)
        .bind(&r.token_hash)
        .bind(&r.grant_id)
        .bind(&r.client_id)
        .bind(r.expires_at)
        .bind(r.used_at)
        .execute(conn)
        .await?;
    Ok(())
}

impl GrantStore for PgDb {
    async fn insert_grant(&self, g: &Grant, refresh: &RefreshToken) -> StoreResult<()> {
        let context = grant_context(g)?;
        let mut tx = self.pool.begin().await.map_err(err)?;
        sqlx::query(&format!(
            "INSERT INTO grants ({GRANT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        ))
        .bind(&g.id)
        .bind(&g.client_id)
        .bind(&g.user_id)
        .bind(&g.fhir_user)
        .bind(&g.scope)
        .bind(&g.patient)
        .bind(&g.encounter)
        .bind(&g.session_id)
        .bind(g.refresh_expires_at)
        .bind(g.created_at)
        .bind(g.revoked_at)
        .bind(context)
        .bind(g.simulate_error.map(|e| e.name()))
        .bind(&g.aud)
        .bind(&g.trace)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        insert_refresh(&mut tx, refresh).await.map_err(err)?;
        tx.commit().await.map_err(err)
    }

    async fn grant(&self, id: &str) -> StoreResult<Option<Grant>> {
        let row: Option<GrantRow> = sqlx::query_as(&format!("SELECT {GRANT_COLUMNS} FROM grants WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        Ok(row.map(grant_from_row))
    }

    async fn refresh_token(&self, token_hash: &str) -> StoreResult<Option<RefreshToken>> {
        let row: Option<RefreshRow> =
            sqlx::query_as(&format!("SELECT {REFRESH_COLUMNS} FROM refresh_tokens WHERE token_hash = $1"))
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await
                .map_err(err)?;
        Ok(row.map(refresh_from_row))
    }

    async fn rotate_refresh(&self, old_hash: &str, new: &RefreshToken, now: UnixTime) -> StoreResult<bool> {
        let stored = sqlx::query(ROTATE)
            .bind(now)
            .bind(old_hash)
            .bind(&new.token_hash)
            .bind(&new.grant_id)
            .bind(&new.client_id)
            .bind(new.expires_at)
            .bind(new.used_at)
            .execute(&self.pool)
            .await
            .map_err(err)?
            .rows_affected();
        Ok(stored == 1)
    }

    async fn revoke_grant(&self, grant_id: &str, now: UnixTime) -> StoreResult<()> {
        let mut attempt = 1;
        loop {
            match self.try_revoke_grant(grant_id, now).await {
                Err(e) if attempt < MAX_ATTEMPTS && retryable(&e) => attempt += 1,
                result => return result.map_err(err),
            }
        }
    }

    async fn revoked_grants(&self, since: UnixTime) -> StoreResult<Vec<(String, UnixTime)>> {
        sqlx::query_as("SELECT grant_id, revoked_at FROM revocations WHERE revoked_at >= $1")
            .bind(since)
            .fetch_all(&self.pool)
            .await
            .map_err(err)
    }

    async fn revoke_user_client(&self, user_id: &str, client_id: &str, now: UnixTime) -> StoreResult<()> {
        let mut attempt = 1;
        loop {
            match self.try_revoke_user_client(user_id, client_id, now).await {
                Err(e) if attempt < MAX_ATTEMPTS && retryable(&e) => attempt += 1,
                result => return result.map_err(err),
            }
        }
    }

    async fn access_revocations(&self, since: UnixTime) -> StoreResult<Vec<(String, String, UnixTime)>> {
        sqlx::query_as("SELECT user_id, client_id, revoked_at FROM access_revocations WHERE revoked_at >= $1")
            .bind(since)
            .fetch_all(&self.pool)
            .await
            .map_err(err)
    }

    async fn user_authorizations(&self, user_id: &str, now: UnixTime) -> StoreResult<Vec<UserAuthorization>> {
        let rows: Vec<(String, String, i64, i64, Option<String>)> =
            sqlx::query_as(USER_AUTHORIZATIONS).bind(now).bind(user_id).fetch_all(&self.pool).await.map_err(err)?;
        Ok(rows
            .into_iter()
            .map(|(client_id, scope, approved_at, live, trace)| UserAuthorization {
                client_id,
                scope,
                approved_at,
                refreshable: live > 0,
                trace: trace.filter(|t| !t.is_empty()),
            })
            .collect())
    }
}

impl PgDb {
    /// Records the revocation (of a grant stored or not) and ends the stored grant's family.
    async fn try_revoke_grant(&self, grant_id: &str, now: UnixTime) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        // The grant may never have been stored (no refresh token): record it all the same.
        sqlx::query(RECORD_REVOCATION).bind(grant_id).bind(now).execute(&mut *tx).await?;
        revoke_grants(&mut tx, Grants::Id(grant_id), now).await?;
        tx.commit().await
    }

    /// "Revoke access": the access revocation, the grants and the remembered consent.
    async fn try_revoke_user_client(&self, user_id: &str, client_id: &str, now: UnixTime) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(REVOKE_USER_CLIENT).bind(user_id).bind(client_id).bind(now).execute(&mut *tx).await?;
        revoke_grants(&mut tx, Grants::OfUserAndClient(user_id, client_id), now).await?;
        sqlx::query("DELETE FROM consents WHERE user_id = $1 AND client_id = $2")
            .bind(user_id)
            .bind(client_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }
}
