//! The database of smartlaunch: the connections, numbered migrations, and the implementations
//! of the auth core's [`AuthStore`](smartlaunch_auth::store::AuthStore) and the FHIR
//! [`ResourceStore`](smartlaunch_fhir::store::ResourceStore) and the Bulk Data
//! [`ExportStore`](smartlaunch_fhir::export::ExportStore).
//!
//! SQLite (WAL, through rusqlite: a writer thread and reader connections) is the embedded
//! default; PostgreSQL (through sqlx, [`PgDb`]) is the scale-out store.  Statement texts and
//! row mapping are shared where the engines agree.

mod auth;
mod auth_grants;
mod auth_rows;
mod browse;
mod bulk;
mod checkpoint;
mod conn;
mod copy;
mod db;
mod events;
mod exports;
mod launch_cache;
mod launch_links;
mod pg;
mod prepared;
mod reset;
mod resources;
mod search;
mod writer;

pub use browse::Listed;
pub use bulk::{BulkBatch, BulkWriter};
pub use copy::{copy_sqlite_to_postgres, CopyError, CopyReport};
pub use db::{
    postgres_url, redact_database_url, Backend, BulkWriter as DbBulkWriter, DatabaseConfig, DatabaseUrlError, Db,
    ExportClaim, Snapshot as DbSnapshot,
};
pub use launch_links::{LaunchLink, MAX_LAUNCH_LINKS};
pub use pg::{
    PgBulkWriter, PgChangeFeed, PgDb, PgExportClaim, PgSessionLock, PgSnapshot,
    DEFAULT_MAX_CONNECTIONS as PG_DEFAULT_MAX_CONNECTIONS,
};
pub use reset::{ResetReport, RESET_TABLES};

use std::path::Path;
use std::sync::Arc;

/// The SQLite database file in a data directory.
pub(crate) const DB_FILE: &str = "smartlaunch.db";

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
pub enum DbError {
    /// SQLite (the embedded store).
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL.
    #[error("database: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("database: {0}")]
    Io(#[from] std::io::Error),
    /// The database was closed (or its writer thread stopped).
    #[error("database: closed")]
    Closed,
}

/// The smartlaunch database on SQLite.  Cheap to clone (shared handles).
///
/// SQLite allows one writer at a time.  Every write goes to one thread that owns the write
/// connection ([`writer::Writer`]: group commit), so concurrent writers queue instead of
/// colliding on the database lock; reads use their own connections ([`conn::Readers`]) and,
/// with WAL, never wait for the writer (docs/DESIGN.md "SQLite: one writer connection").
#[derive(Clone, Debug)]
pub struct SqliteDb {
    read: Arc<conn::Readers>,
    /// The writer thread (group commit).
    writer: Arc<writer::Writer>,
    /// Bulk Data export jobs' read transactions (`smartlaunch_fhir::export`): at most one per
    /// job running, each on a connection of its own.
    exports: Arc<tokio::sync::Semaphore>,
    /// The launch inspector's queue of events to write.
    events: Arc<events::EventLog>,
    /// A server's WAL checkpoints, off the writer (`checkpoint`); `None` for an import, whose
    /// writer checkpoints every [`IMPORT_WAL_PAGES`].
    checkpointer: Option<Arc<checkpoint::Checkpointer>>,
    /// The launch rows read, kept coherent by this process's writes (`launch_cache`).
    launches: Arc<launch_cache::LaunchCache>,
}

/// The writer's page cache: unlike a reader's, it stays valid from one commit to the next (the
/// writer makes every change), so the hot pages of the auth tables and indexes are written
/// from memory, never read back.
const WRITER_CACHE_MIB: i64 = 16;
/// Pages of WAL between two automatic checkpoints of an import's writer (64 MiB): a page
/// changed by many commits is copied to the database once.  A server's writer makes no
/// checkpoint; a thread of its own does (`checkpoint`).
const IMPORT_WAL_PAGES: i64 = 16_384;

impl SqliteDb {
    /// Opens (creating if needed) the SQLite database `smartlaunch.db` in `dir` and migrates it.
    pub async fn open_dir(dir: &Path) -> Result<SqliteDb, DbError> {
        SqliteDb::open_with(dir, 2, None).await
    }

    /// Like [`SqliteDb::open_dir`], tuned for a bulk import: a 512 MiB page cache per connection, so
    /// that the large indexes being written stay in memory, and a WAL of up to 64 MiB between
    /// checkpoints, so that a page changed by many commits is copied to the database once.
    pub async fn open_dir_for_import(dir: &Path) -> Result<SqliteDb, DbError> {
        SqliteDb::open_with(dir, 512, Some(IMPORT_WAL_PAGES)).await
    }

    /// `autocheckpoint`: pages of WAL between the writer's own checkpoints; `None`: the writer
    /// makes none, the checkpointer thread does.
    async fn open_with(dir: &Path, cache_mib: i64, autocheckpoint: Option<i64>) -> Result<SqliteDb, DbError> {
        std::fs::create_dir_all(dir)?;
        let wal_autocheckpoint_pages = autocheckpoint.unwrap_or(0);
        let options = conn::Options { path: dir.join(DB_FILE), cache_mib, wal_autocheckpoint_pages };
        let opening = options.clone();
        let write = tokio::task::spawn_blocking(move || -> Result<rusqlite::Connection, DbError> {
            let write = opening.open()?;
            if opening.cache_mib < WRITER_CACHE_MIB {
                write.execute_batch(&format!("PRAGMA cache_size = -{}", WRITER_CACHE_MIB * 1024))?;
            }
            migrate(&write)?;
            Ok(write)
        })
        .await
        .map_err(|_| DbError::Closed)??;
        let writer = Arc::new(writer::Writer::start(write)?);
        let events = Arc::new(events::EventLog::start(writer.clone()));
        let exports = Arc::new(tokio::sync::Semaphore::new(smartlaunch_fhir::export::MAX_CONCURRENT_JOBS));
        let checkpointer = match autocheckpoint {
            Some(_) => None,
            None => Some(Arc::new(checkpoint::Checkpointer::start(&options)?)),
        };
        let launches = Arc::default();
        Ok(SqliteDb { read: Arc::new(conn::Readers::new(options)), writer, exports, events, checkpointer, launches })
    }

    /// Starts a bulk write (seeding, import): one transaction on the writer thread, in which
    /// each batch is all or nothing.  Other writes wait until it is committed.
    pub async fn bulk_writer(&self) -> Result<BulkWriter, smartlaunch_fhir::store::StoreError> {
        BulkWriter::begin(&self.writer).await
    }

    /// Whether the database answers a trivial query (the health check).
    pub async fn ping(&self) -> Result<(), DbError> {
        self.read.read(|c| c.query_row("SELECT 1", [], |_| Ok(())))
    }

    /// Writes the launch inspector's queued events, then stops the writer (after what is
    /// queued) and closes the connections.
    pub async fn close(&self) {
        self.events.flush().await;
        if let Some(checkpointer) = self.checkpointer.clone() {
            let _ = tokio::task::spawn_blocking(move || checkpointer.stop()).await;
        }
        self.writer.close().await;
        self.read.close();
    }
}

/// Applies the [`MIGRATIONS`] not applied yet, each in a transaction with its row in
/// `schema_migrations`.  The bookkeeping is the one the sqlx-based store kept (a table of
/// applied numbers), so a data directory it made opens unchanged.
fn migrate(conn: &rusqlite::Connection) -> Result<(), DbError> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY)")?;
    for (version, sql) in MIGRATIONS {
        let applied: Option<(i64,)> =
            conn::one(conn, "SELECT version FROM schema_migrations WHERE version = ?", &[version])?;
        if applied.is_none() {
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(sql)?;
            conn::exec(&tx, "INSERT INTO schema_migrations (version) VALUES (?)", &[version])?;
            tx.commit()?;
        }
    }
    Ok(())
}
