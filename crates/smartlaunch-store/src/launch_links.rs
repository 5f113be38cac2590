//! The developer launcher's permanent launch links (issue 9): a saved launcher form, found by
//! the hash of the link's random id.

use crate::conn::{all, exec, one};
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
        let link = link.clone();
        self.writer
            .write(move |conn| {
                exec(
                    conn,
                    "INSERT INTO launch_links (id_hash, name, form, created_at) VALUES (?, ?, ?, ?)",
                    &[&link.id_hash, &link.name, &link.form, &link.created_at],
                )?;
                exec(
                    conn,
                    "DELETE FROM launch_links WHERE id_hash NOT IN \
                     (SELECT id_hash FROM launch_links ORDER BY created_at DESC, id_hash LIMIT ?)",
                    &[&MAX_LAUNCH_LINKS],
                )?;
                Ok(())
            })
            .await
    }

    /// The link with this id hash.
    pub async fn launch_link(&self, id_hash: &str) -> Result<Option<LaunchLink>, DbError> {
        let row: Option<(String, String, String, i64)> = self.read.read(|c| {
            one(c, "SELECT id_hash, name, form, created_at FROM launch_links WHERE id_hash = ?", &[&id_hash])
        })?;
        Ok(row.map(|(id_hash, name, form, created_at)| LaunchLink { id_hash, name, form, created_at }))
    }

    /// Every link, newest first.
    pub async fn launch_links(&self) -> Result<Vec<LaunchLink>, DbError> {
        let rows: Vec<(String, String, String, i64)> = self.read.read(|c| {
            all(c, "SELECT id_hash, name, form, created_at FROM launch_links ORDER BY created_at DESC", &[])
        })?;
        Ok(rows
            .into_iter()
            .map(|(id_hash, name, form, created_at)| LaunchLink { id_hash, name, form, created_at })
            .collect())
    }

    /// Deletes a link; whether there was one.
    pub async fn delete_launch_link(&self, id_hash: &str) -> Result<bool, DbError> {
        let id_hash = id_hash.to_owned();
        let deleted = self
            .writer
            .statement(move |conn| {
                Ok::<_, DbError>(exec(conn, "DELETE FROM launch_links WHERE id_hash = ?", &[&id_hash])?)
            })
            .await?;
        Ok(deleted == 1)
    }
}
