//! The developer launcher's permanent launch links (issue 9): a saved launcher form, found by
//! the hash of the link's random id.

use crate::{DbError, SqliteDb};

/// A saved launch link, as the launcher lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchLink {
    /// The hash of the link's id: its handle for deletion (it does not open the link).
    pub id_hash: String,
    pub name: String,
    /// The saved launcher form, URL-encoded.
    pub form: String,
    pub created_at: i64,
}

/// The most links kept: the oldest beyond it are dropped when one is saved.
pub const MAX_LAUNCH_LINKS: i64 = 100;

impl SqliteDb {
    /// Saves a link, dropping the oldest beyond [`MAX_LAUNCH_LINKS`].
    pub async fn insert_launch_link(&self, link: &LaunchLink) -> Result<(), DbError> {
        let mut tx = self.write.begin().await?;
        sqlx::query("INSERT INTO launch_links (id_hash, name, form, created_at) VALUES (?, ?, ?, ?)")
            .bind(&link.id_hash)
            .bind(&link.name)
            .bind(&link.form)
            .bind(link.created_at)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "DELETE FROM launch_links WHERE id_hash NOT IN \
             (SELECT id_hash FROM launch_links ORDER BY created_at DESC, id_hash LIMIT ?)",
        )
        .bind(MAX_LAUNCH_LINKS)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The link with this id hash.
    pub async fn launch_link(&self, id_hash: &str) -> Result<Option<LaunchLink>, DbError> {
        let row: Option<(String, String, String, i64)> =
            sqlx::query_as("SELECT id_hash, name, form, created_at FROM launch_links WHERE id_hash = ?")
                .bind(id_hash)
                .fetch_optional(&self.read)
                .await?;
        Ok(row.map(|(id_hash, name, form, created_at)| LaunchLink { id_hash, name, form, created_at }))
    }

    /// Every link, newest first.
    pub async fn launch_links(&self) -> Result<Vec<LaunchLink>, DbError> {
        let rows: Vec<(String, String, String, i64)> =
            sqlx::query_as("SELECT id_hash, name, form, created_at FROM launch_links ORDER BY created_at DESC")
                .fetch_all(&self.read)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(id_hash, name, form, created_at)| LaunchLink { id_hash, name, form, created_at })
            .collect())
    }

    /// Deletes a link; whether there was one.
    pub async fn delete_launch_link(&self, id_hash: &str) -> Result<bool, DbError> {
        let r = sqlx::query("DELETE FROM launch_links WHERE id_hash = ?").bind(id_hash).execute(&self.write).await?;
        Ok(r.rows_affected() == 1)
    }
}
