//! Session-level advisory locks between the nodes of one PostgreSQL database (issue 10): each
//! is held on a connection of its own (outside the pool), and ends with it — when released, or
//! when the node's process ends and PostgreSQL closes the session.
//!
//! - Seeding: nodes starting together seed the demo data once (the first takes the lock and
//!   seeds; the others wait, then find the data there).
//! - Servers: every running server holds the *shared* server lock; `smartlaunch reset` takes
//!   it *exclusively* without waiting, so it is refused while any node runs (the data
//!   directory's file lock plays this part on SQLite).

use sqlx::{Connection, PgConnection};

use super::PgDb;
use crate::DbError;

/// The key of the seeding lock ("seed").
const SEEDING: i64 = 0x736d_6c5f_7365_6564;
/// The key of the running servers' lock ("srvr").
const SERVERS: i64 = 0x736d_6c5f_7372_7672;

/// An advisory lock held on a connection of its own; see [`PgSessionLock::release`].
#[derive(Debug)]
pub struct PgSessionLock {
    conn: PgConnection,
}

impl PgSessionLock {
    /// Releases the lock (closing its connection).  A lock dropped without it is released
    /// when PostgreSQL sees the connection end.
    pub async fn release(self) {
        // Closing the session releases every advisory lock it holds.
        let _ = self.conn.close().await;
    }
}

impl PgDb {
    async fn lock_connection(&self) -> Result<PgConnection, DbError> {
        Ok(PgConnection::connect_with(&self.pool.connect_options()).await?)
    }

    /// Waits for the seeding lock.
    pub async fn seeding_lock(&self) -> Result<PgSessionLock, DbError> {
        let mut conn = self.lock_connection().await?;
        sqlx::query("SELECT pg_advisory_lock($1)").bind(SEEDING).execute(&mut conn).await?;
        Ok(PgSessionLock { conn })
    }

    /// Takes the running servers' lock, shared with the other nodes (waits while a
    /// `smartlaunch reset` holds it).
    pub async fn server_lock(&self) -> Result<PgSessionLock, DbError> {
        let mut conn = self.lock_connection().await?;
        sqlx::query("SELECT pg_advisory_lock_shared($1)").bind(SERVERS).execute(&mut conn).await?;
        Ok(PgSessionLock { conn })
    }

    /// Takes the running servers' lock exclusively if no server holds it; `None` while one
    /// does.
    pub async fn try_lock_without_servers(&self) -> Result<Option<PgSessionLock>, DbError> {
        let mut conn = self.lock_connection().await?;
        let (locked,): (bool,) =
            sqlx::query_as("SELECT pg_try_advisory_lock($1)").bind(SERVERS).fetch_one(&mut conn).await?;
        if locked {
            Ok(Some(PgSessionLock { conn }))
        } else {
            let _ = conn.close().await;
            Ok(None)
        }
    }
}
