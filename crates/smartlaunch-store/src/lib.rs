//! The database of smartlaunch (sqlx): the pool, numbered migrations, and the implementations
//! of the auth core's [`AuthStore`](smartlaunch_auth::store::AuthStore) and the FHIR
//! [`ResourceStore`](smartlaunch_fhir::store::ResourceStore) and the Bulk Data
//! [`ExportStore`](smartlaunch_fhir::export::ExportStore).
//!
//! SQLite (WAL) is the embedded default.  The SQL is kept portable so that PostgreSQL can run
//! the same statements when the scale-out store arrives.

mod auth;
mod auth_rows;
mod browse;
mod bulk;
mod copy;
mod db;
mod events;
mod exports;
mod launch_links;
mod pg;
mod reset;
mod resources;
mod search;
mod writer;

pub use browse::Listed;
pub use bulk::{BulkBatch, BulkWriter};
pub use copy::{copy_sqlite_to_postgres, CopyError, CopyReport};
pub use db::{
    Backend, BulkWriter as DbBulkWriter, DatabaseConfig, Db, ExportClaim, Snapshot as DbSnapshot,
    UnsupportedDatabaseUrl,
};
pub use launch_links::{LaunchLink, MAX_LAUNCH_LINKS};
pub use pg::{
    PgBulkWriter, PgChangeFeed, PgDb, PgExportClaim, PgSessionLock, PgSnapshot,
    DEFAULT_MAX_CONNECTIONS as PG_DEFAULT_MAX_CONNECTIONS,
};
pub use reset::{ResetReport, RESET_TABLES};

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

/// Numbered migrations, applied in order, each once.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/0001_init.sql")),
    (2, include_str!("../migrations/0002_launches.sql")),
    (3, include_str!("../migrations/0003_bounded_data.sql")),
    (4, include_str!("../migrations/0004_asymmetric_clients.sql")),
    (5, include_str!("../migrations/0005_bulk_export.sql")),
    (6, include_str!("../migrations/0006_backend_sessions.sql")),
    (7, include_str!("../migrations/0007_launch_links.sql")),
    (8, include_str!("../migrations/0008_inspector.sql")),
];

/// A database failure.
#[derive(Debug, thiserror::Error)]
#[error("database: {0}")]
pub struct DbError(#[from] sqlx::Error);

/// The smartlaunch database.  Cheap to clone (pool handles).
///
/// SQLite allows one writer at a time.  Writes go through a pool of exactly one connection, so
/// concurrent writers queue (an async wait) instead of colliding on the database lock (where
/// SQLite's busy handler sleeps and latency spikes); reads use their own pool and, with WAL,
/// never wait for the writer.  The auth core's writes and the inspector's events go through
/// [`writer::Writer`], which groups the writes of concurrent requests into one transaction
/// (group commit).
#[derive(Clone, Debug)]
pub struct SqliteDb {
    read: SqlitePool,
    write: SqlitePool,
    /// Group commit on the write connection.
    writer: Arc<writer::Writer>,
    /// Bulk Data export jobs' read transactions (`smartlaunch_fhir::export`): at most one per
    /// job running, opened on demand.
    exports: SqlitePool,
    /// The launch inspector's queue of events to write.
    events: Arc<events::EventLog>,
}

impl SqliteDb {
    /// Opens (creating if needed) the SQLite database `smartlaunch.db` in `dir` and migrates it.
    pub async fn open_dir(dir: &Path) -> Result<SqliteDb, DbError> {
        SqliteDb::open_with(dir, 2, 1000).await
    }

    /// Like [`SqliteDb::open_dir`], tuned for a bulk import: a 512 MiB page cache per connection, so
    /// that the large indexes being written stay in memory, and a WAL of up to 64 MiB between
    /// checkpoints, so that a page changed by many commits is copied to the database once.
    pub async fn open_dir_for_import(dir: &Path) -> Result<SqliteDb, DbError> {
        SqliteDb::open_with(dir, 512, 16_384).await
    }

    async fn open_with(dir: &Path, cache_mib: i64, wal_autocheckpoint_pages: i64) -> Result<SqliteDb, DbError> {
        std::fs::create_dir_all(dir).map_err(|e| DbError(sqlx::Error::Io(e)))?;
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(dir.join("smartlaunch.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .pragma("cache_size", format!("-{}", cache_mib * 1024))
            .pragma("wal_autocheckpoint", wal_autocheckpoint_pages.to_string())
            .foreign_keys(true);
        // No ping before each use: an embedded database connection does not go stale, and the
        // ping is one more round trip to the connection's thread per statement.
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(1)
            .idle_timeout(Duration::from_secs(60))
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await?;
        let exports = SqlitePoolOptions::new()
            .max_connections(smartlaunch_fhir::export::MAX_CONCURRENT_JOBS as u32)
            .min_connections(0)
            .idle_timeout(Duration::from_secs(60))
            .test_before_acquire(false)
            .connect_lazy_with(options);
        let writer = Arc::new(writer::Writer::start(write.clone()));
        let events = Arc::new(events::EventLog::start(writer.clone()));
        let db = SqliteDb { read, write, writer, exports, events };
        db.migrate().await?;
        Ok(db)
    }

    async fn migrate(&self) -> Result<(), DbError> {
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY)")
            .execute(&self.write)
            .await?;
        for (version, sql) in MIGRATIONS {
            let applied: Option<(i64,)> = sqlx::query_as("SELECT version FROM schema_migrations WHERE version = ?")
                .bind(version)
                .fetch_optional(&self.write)
                .await?;
            if applied.is_none() {
                let mut tx = self.write.begin().await?;
                sqlx::raw_sql(sql).execute(&mut *tx).await?;
                sqlx::query("INSERT INTO schema_migrations (version) VALUES (?)")
                    .bind(version)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// Starts a bulk write (seeding, import): one transaction on the writer connection, in
    /// which each batch is all or nothing.  Other writes wait until it is committed.
    pub async fn bulk_writer(&self) -> Result<BulkWriter, smartlaunch_fhir::store::StoreError> {
        BulkWriter::begin(&self.write).await
    }

    /// Whether the database answers a trivial query (the health check).
    pub async fn ping(&self) -> Result<(), DbError> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    /// Writes the launch inspector's queued events, then closes the pools (waits for
    /// connections to finish).
    pub async fn close(&self) {
        self.events.flush().await;
        self.exports.close().await;
        self.read.close().await;
        self.write.close().await;
    }
}
