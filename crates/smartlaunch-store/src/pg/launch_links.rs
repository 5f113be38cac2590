//! The developer launcher's permanent launch links on PostgreSQL (issue 9): the SQLite store's
//! rules (`crate::launch_links`), at most [`MAX_LAUNCH_LINKS`] kept.

use super::PgDb;
use crate::{DbError, LaunchLink, MAX_LAUNCH_LINKS};

const INSERT: &str = "INSERT INTO launch_links (id_hash, name, form, created_at) VALUES ($1, $2, $3, $4)";
/// Links are saved one at a time across nodes (this transaction-scoped advisory lock), so the
/// trim after each insert sees every link committed before it: never more than the limit.
const SAVE_LOCK: i64 = super::MIGRATION_LOCK + 1;
/// Drops the oldest beyond the limit.
const TRIM: &str = "DELETE FROM launch_links WHERE id_hash NOT IN \
     (SELECT id_hash FROM launch_links ORDER BY created_at DESC, id_hash LIMIT $1)";
const ONE: &str = "SELECT id_hash, name, form, created_at FROM launch_links WHERE id_hash = $1";
const ALL: &str = "SELECT id_hash, name, form, created_at FROM launch_links ORDER BY created_at DESC, id_hash";

type LinkRow = (String, String, String, i64);

fn link_of((id_hash, name, form, created_at): LinkRow) -> LaunchLink {
    LaunchLink { id_hash, name, form, created_at }
}

impl PgDb {
    /// Saves a link, dropping the oldest beyond [`MAX_LAUNCH_LINKS`].
    pub async fn insert_launch_link(&self, link: &LaunchLink) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(SAVE_LOCK).execute(&mut *tx).await?;
        sqlx::query(INSERT)
            .bind(&link.id_hash)
            .bind(&link.name)
            .bind(&link.form)
            .bind(link.created_at)
            .execute(&mut *tx)
            .await?;
        sqlx::query(TRIM).bind(MAX_LAUNCH_LINKS).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The link with this id hash.
    pub async fn launch_link(&self, id_hash: &str) -> Result<Option<LaunchLink>, DbError> {
        let row: Option<LinkRow> = sqlx::query_as(ONE).bind(id_hash).fetch_optional(&self.pool).await?;
        Ok(row.map(link_of))
    }

    /// Every link, newest first.
    pub async fn launch_links(&self) -> Result<Vec<LaunchLink>, DbError> {
        let rows: Vec<LinkRow> = sqlx::query_as(ALL).fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(link_of).collect())
    }

    /// Deletes a link; whether there was one.
    pub async fn delete_launch_link(&self, id_hash: &str) -> Result<bool, DbError> {
        let r = sqlx::query("DELETE FROM launch_links WHERE id_hash = $1").bind(id_hash).execute(&self.pool).await?;
        Ok(r.rows_affected() == 1)
    }
}
