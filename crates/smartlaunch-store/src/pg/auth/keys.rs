//! [`KeyStore`] on PostgreSQL: the signing keys every node shares.

use smartlaunch_auth::keys::KeyMaterial;
use smartlaunch_auth::store::{KeyStore, StoreResult};
use smartlaunch_auth::UnixTime;

use crate::auth_rows::err;
use crate::pg::PgDb;

/// The newest keys.
const KEYS: &str = "SELECT kid, rsa_pkcs8, hmac_secret FROM signing_keys ORDER BY created_at DESC, kid LIMIT 1";
const INSERT: &str = "INSERT INTO signing_keys (kid, rsa_pkcs8, hmac_secret, created_at) VALUES ($1, $2, $3, 0)";
/// A rotation (the trigger of migration 0002 announces it to every node).
const ADD: &str = "INSERT INTO signing_keys (kid, rsa_pkcs8, hmac_secret, created_at) VALUES ($1, $2, $3, $4)";
const ALL: &str = "SELECT kid, rsa_pkcs8, hmac_secret, created_at FROM signing_keys";
/// The `pg_advisory_xact_lock` key under which a node that found no keys stores its own: the
/// table is empty, so there is no row to lock, and two nodes starting together must not both
/// insert (their keys have different ids, so no unique key would refuse the second).
const KEYS_LOCK: i64 = 0x736d_6172_746b_6579; // "smartkey"

impl KeyStore for PgDb {
    async fn keys(&self) -> StoreResult<Option<KeyMaterial>> {
        let row: Option<(String, Vec<u8>, Vec<u8>)> =
            sqlx::query_as(KEYS).fetch_optional(&self.pool).await.map_err(err)?;
        Ok(row.map(|(kid, rsa_pkcs8, hmac_secret)| KeyMaterial { kid, rsa_pkcs8, hmac_secret }))
    }

    /// Stores `fresh` unless another node stored keys first, under a transaction-scoped
    /// advisory lock: of nodes racing at start, the first stores its keys and the others,
    /// once it committed, find and return them.
    async fn insert_keys_if_absent(&self, fresh: &KeyMaterial) -> StoreResult<KeyMaterial> {
        if let Some(stored) = self.keys().await? {
            return Ok(stored);
        }
        let mut tx = self.pool.begin().await.map_err(err)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(KEYS_LOCK).execute(&mut *tx).await.map_err(err)?;
        let row: Option<(String, Vec<u8>, Vec<u8>)> =
            sqlx::query_as(KEYS).fetch_optional(&mut *tx).await.map_err(err)?;
        let stored = match row {
            Some((kid, rsa_pkcs8, hmac_secret)) => KeyMaterial { kid, rsa_pkcs8, hmac_secret },
            None => {
                sqlx::query(INSERT)
                    .bind(&fresh.kid)
                    .bind(&fresh.rsa_pkcs8)
                    .bind(&fresh.hmac_secret)
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
                fresh.clone()
            }
        };
        tx.commit().await.map_err(err)?;
        Ok(stored)
    }

    async fn all_keys(&self) -> StoreResult<Vec<(KeyMaterial, UnixTime)>> {
        let rows: Vec<(String, Vec<u8>, Vec<u8>, i64)> =
            sqlx::query_as(ALL).fetch_all(&self.pool).await.map_err(err)?;
        Ok(rows
            .into_iter()
            .map(|(kid, rsa_pkcs8, hmac_secret, at)| (KeyMaterial { kid, rsa_pkcs8, hmac_secret }, at))
            .collect())
    }

    /// Migration 0003's trigger announces the deletion to every node.
    async fn delete_key(&self, kid: &str) -> StoreResult<bool> {
        let done =
            sqlx::query("DELETE FROM signing_keys WHERE kid = $1").bind(kid).execute(&self.pool).await.map_err(err)?;
        Ok(done.rows_affected() == 1)
    }

    /// The database server, its backups and replicas are outside the nodes' trust boundary.
    fn requires_sealed_keys(&self) -> bool {
        true
    }

    async fn add_keys(&self, keys: &KeyMaterial, now: UnixTime) -> StoreResult<()> {
        sqlx::query(ADD)
            .bind(&keys.kid)
            .bind(&keys.rsa_pkcs8)
            .bind(&keys.hmac_secret)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(())
    }
}
