//! [`Db`]: the database the server runs on, SQLite ([`SqliteDb`], the embedded default) or
//! PostgreSQL ([`PgDb`], for several stateless nodes), chosen at start by [`DatabaseConfig`]
//! (issue 10).  Every method hands the call to the open backend (docs/DESIGN.md "One `Db`,
//! two backends"); the behaviour lives in the backends.

mod ports;

use std::path::{Path, PathBuf};

use serde_json::Value;
use smartlaunch_auth::users::User;
use smartlaunch_auth::UnixTime;
use smartlaunch_fhir::store::StoreError;

pub use ports::Snapshot;

use crate::{BulkBatch, DbError, LaunchLink, Listed, PgDb, PgSessionLock, ResetReport, SqliteDb};

/// Where the data lives.  Its `Debug` never shows a password ([`redact_database_url`]).
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseConfig {
    /// `smartlaunch.db` in this directory.
    Sqlite { dir: PathBuf },
    /// A PostgreSQL database, with at most `max_connections` per node.
    Postgres { url: String, max_connections: u32 },
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatabaseConfig::Sqlite { dir } => f.debug_struct("Sqlite").field("dir", dir).finish(),
            DatabaseConfig::Postgres { url, max_connections } => f
                .debug_struct("Postgres")
                .field("url", &redact_database_url(url))
                .field("max_connections", max_connections)
                .finish(),
        }
    }
}

/// A `--database` URL that names no database we run on.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseUrlError {
    /// Set, but empty (`DATABASE_URL=`): refused rather than read as "unset", so that nodes
    /// meant to share one PostgreSQL database never run each on a SQLite database of its own.
    #[error(
        "--database (DATABASE_URL) is set but empty: give the PostgreSQL URL \
         (postgres://user@host:port/database), or unset it to run on SQLite in --data"
    )]
    Empty,
    #[error("--database {0}: not a PostgreSQL URL (postgres://user@host:port/database or postgresql://…); without --database the server uses SQLite in --data")]
    Unsupported(String),
}

impl DatabaseConfig {
    /// PostgreSQL at `url` when one is given (`--database`, `DATABASE_URL`), else SQLite in
    /// `data_dir`.  A given but empty URL is an error ([`DatabaseUrlError::Empty`]).
    pub fn choose(
        url: Option<&str>,
        data_dir: &Path,
        max_connections: u32,
    ) -> Result<DatabaseConfig, DatabaseUrlError> {
        Ok(match url {
            None => DatabaseConfig::Sqlite { dir: data_dir.to_owned() },
            Some(url) => DatabaseConfig::Postgres { url: postgres_url(url)?.to_owned(), max_connections },
        })
    }

    /// What the database is, for the start-up banner and messages: "SQLite at
    /// DIR/smartlaunch.db" or "PostgreSQL at URL" without passwords.
    pub fn describe(&self) -> String {
        match self {
            DatabaseConfig::Sqlite { dir } => format!("SQLite at {}", dir.join(crate::DB_FILE).display()),
            DatabaseConfig::Postgres { url, .. } => format!("PostgreSQL at {}", redact_database_url(url)),
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            DatabaseConfig::Sqlite { .. } => Backend::Sqlite,
            DatabaseConfig::Postgres { .. } => Backend::Postgres,
        }
    }
}

/// `url` (trimmed) if it is a PostgreSQL URL (`postgres://…`, `postgresql://…`); an empty or
/// other one is an error that shows it without its password.
pub fn postgres_url(url: &str) -> Result<&str, DatabaseUrlError> {
    match url.trim() {
        "" => Err(DatabaseUrlError::Empty),
        url if url.starts_with("postgres://") || url.starts_with("postgresql://") => Ok(url),
        url => Err(DatabaseUrlError::Unsupported(redact_database_url(url))),
    }
}

/// What a redacted secret reads as.
const REDACTED: &str = "redacted";

/// A database URL as it may be shown (errors, logs, the start-up banner): the password of its
/// user information and the values of the libpq parameters that carry one (`?password=`,
/// `?sslpassword=`) replaced by `redacted`.  A URL that does not parse shows its scheme only
/// (none without `://`): a password may be anywhere in it.
pub fn redact_database_url(url: &str) -> String {
    let Some((scheme, _)) = url.split_once("://") else { return REDACTED.into() };
    let Ok(mut parsed) = url::Url::parse(url) else { return format!("{scheme}://{REDACTED}") };
    if parsed.password().is_some() {
        // Only "cannot have a password" URLs (no host) refuse, and they have none.
        let _ = parsed.set_password(Some(REDACTED));
    }
    let secret = |key: &str| key.eq_ignore_ascii_case("password") || key.eq_ignore_ascii_case("sslpassword");
    if parsed.query_pairs().any(|(key, _)| secret(&key)) {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(key, value)| {
                let value = if secret(&key) { REDACTED.to_owned() } else { value.into_owned() };
                (key.into_owned(), value)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

/// Which database engine a [`Db`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// Its name in `/healthz` and the start-up banner.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgresql",
        }
    }
}

/// The database the server runs on.  Cheap to clone (pool handles).
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(SqliteDb),
    Postgres(PgDb),
}

/// Calls an inherent method of the open backend.
macro_rules! on_backend {
    ($self:ident.$name:ident($($arg:expr),*)) => {
        match $self {
            Db::Sqlite(db) => db.$name($($arg),*).await,
            Db::Postgres(db) => db.$name($($arg),*).await,
        }
    };
}

impl Db {
    /// Opens (creating and migrating as needed) the database of `config`.
    pub async fn open(config: &DatabaseConfig) -> Result<Db, DbError> {
        Ok(match config {
            DatabaseConfig::Sqlite { dir } => Db::Sqlite(SqliteDb::open_dir(dir).await?),
            DatabaseConfig::Postgres { url, max_connections } => {
                Db::Postgres(PgDb::connect(url, *max_connections).await?)
            }
        })
    }

    /// Like [`Db::open`], tuned for a bulk import on SQLite ([`SqliteDb::open_dir_for_import`]).
    pub async fn open_for_import(config: &DatabaseConfig) -> Result<Db, DbError> {
        Ok(match config {
            DatabaseConfig::Sqlite { dir } => Db::Sqlite(SqliteDb::open_dir_for_import(dir).await?),
            DatabaseConfig::Postgres { .. } => Db::open(config).await?,
        })
    }

    pub fn backend(&self) -> Backend {
        match self {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// Whether the database answers a trivial query (the health check).
    pub async fn ping(&self) -> Result<(), DbError> {
        on_backend!(self.ping())
    }

    /// Writes what is queued and closes the connections.
    pub async fn close(&self) {
        on_backend!(self.close())
    }

    /// Starts a bulk write (seeding, import).
    pub async fn bulk_writer(&self) -> Result<BulkWriter, StoreError> {
        Ok(match self {
            Db::Sqlite(db) => BulkWriter::Sqlite(db.bulk_writer().await?),
            Db::Postgres(db) => BulkWriter::Postgres(db.bulk_writer().await?),
        })
    }

    /// Ends a bulk load: on PostgreSQL, refreshes the planner's statistics
    /// ([`PgDb::analyze`]); SQLite needs nothing.
    pub async fn after_bulk_load(&self) -> Result<(), DbError> {
        match self {
            Db::Sqlite(_) => Ok(()),
            Db::Postgres(db) => db.analyze().await,
        }
    }

    /// While the returned lock is held, no other node seeds the database: nodes starting
    /// together on one PostgreSQL database seed it once.  SQLite: `None` (one data directory,
    /// its writes one at a time).
    pub async fn seeding_lock(&self) -> Result<Option<PgSessionLock>, DbError> {
        match self {
            Db::Sqlite(_) => Ok(None),
            Db::Postgres(db) => Ok(Some(db.seeding_lock().await?)),
        }
    }

    /// Claims an active export job for this node to run: `None` when another node runs it
    /// ([`PgDb::claim_export_job`]).  On SQLite every job is this server's.
    pub async fn claim_export_job(&self, id: &str) -> Result<Option<ExportClaim>, StoreError> {
        match self {
            Db::Sqlite(_) => Ok(Some(ExportClaim::Sqlite)),
            Db::Postgres(db) => Ok(db.claim_export_job(id).await?.map(ExportClaim::Postgres)),
        }
    }

    /// How many current resources of each type are in a patient's compartment.
    pub async fn compartment_counts(&self, patient_id: &str) -> Result<Vec<(String, i64)>, StoreError> {
        on_backend!(self.compartment_counts(patient_id))
    }

    /// The current resources of one type in a patient's compartment, newest first.
    pub async fn compartment_resources(
        &self,
        patient_id: &str,
        resource_type: &str,
        limit: i64,
    ) -> Result<Vec<Listed>, StoreError> {
        on_backend!(self.compartment_resources(patient_id, resource_type, limit))
    }

    /// Saves a launch link.
    pub async fn insert_launch_link(&self, link: &LaunchLink) -> Result<(), DbError> {
        on_backend!(self.insert_launch_link(link))
    }

    /// The launch link whose id hashes to `id_hash`.
    pub async fn launch_link(&self, id_hash: &str) -> Result<Option<LaunchLink>, DbError> {
        on_backend!(self.launch_link(id_hash))
    }

    /// Every saved launch link.
    pub async fn launch_links(&self) -> Result<Vec<LaunchLink>, DbError> {
        on_backend!(self.launch_links())
    }

    /// Deletes a launch link; false when there was none.
    pub async fn delete_launch_link(&self, id_hash: &str) -> Result<bool, DbError> {
        on_backend!(self.delete_launch_link(id_hash))
    }

    /// Restores the demo data and accounts and removes everything else added (see
    /// [`SqliteDb::reset_sandbox`]).
    pub async fn reset_sandbox(
        &self,
        resources: Vec<Value>,
        users: &[User],
        now: UnixTime,
        now_instant: &str,
    ) -> Result<ResetReport, StoreError> {
        on_backend!(self.reset_sandbox(resources, users, now, now_instant))
    }
}

/// A node's claim on a Bulk Data export job ([`Db::claim_export_job`]).
pub enum ExportClaim {
    /// SQLite: the server of the data directory runs every job.
    Sqlite,
    Postgres(crate::PgExportClaim),
}

impl ExportClaim {
    /// Ends the claim.
    pub async fn release(self) -> Result<(), StoreError> {
        match self {
            ExportClaim::Sqlite => Ok(()),
            ExportClaim::Postgres(claim) => claim.release().await,
        }
    }
}

/// A bulk write on the open backend ([`Db::bulk_writer`]).
pub enum BulkWriter {
    Sqlite(crate::bulk::BulkWriter),
    Postgres(crate::PgBulkWriter),
}

impl BulkWriter {
    /// Stores a new version of every resource of `batch`, all or nothing; returns how many.
    pub async fn put(&mut self, batch: BulkBatch) -> Result<usize, StoreError> {
        match self {
            BulkWriter::Sqlite(w) => w.put(batch).await,
            BulkWriter::Postgres(w) => w.put(batch).await,
        }
    }

    /// Commits every batch that was stored.
    pub async fn commit(self) -> Result<(), StoreError> {
        match self {
            BulkWriter::Sqlite(w) => w.commit().await,
            BulkWriter::Postgres(w) => w.commit().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_url_is_postgresql_or_refused() {
        let dir = Path::new("/data");
        assert_eq!(DatabaseConfig::choose(None, dir, 8).unwrap(), DatabaseConfig::Sqlite { dir: dir.to_owned() });
        // Review (issue 10): an empty DATABASE_URL is a mistake, not "SQLite".
        for empty in ["", " "] {
            let refused = DatabaseConfig::choose(Some(empty), dir, 8).unwrap_err();
            assert!(matches!(refused, DatabaseUrlError::Empty), "{refused}");
            assert!(refused.to_string().contains("set but empty"), "{refused}");
        }
        for url in ["postgres://u@h/db", "postgresql://u@h:5432/db?sslmode=require"] {
            assert_eq!(
                DatabaseConfig::choose(Some(url), dir, 8).unwrap(),
                DatabaseConfig::Postgres { url: url.into(), max_connections: 8 }
            );
        }
        for url in ["mysql://u@h/db", "sqlite:///tmp/x.db", "h:5432/db", "POSTGRES"] {
            assert!(DatabaseConfig::choose(Some(url), dir, 8).is_err(), "{url}");
        }
        let refused = DatabaseConfig::choose(Some("mysql://admin:s3cret@h/db"), dir, 8).unwrap_err().to_string();
        assert!(!refused.contains("s3cret") && refused.contains("mysql://admin:redacted@h/db"), "{refused}");
    }

    #[test]
    fn the_database_is_described_without_its_password() {
        let sqlite = DatabaseConfig::choose(None, Path::new("/data"), 8).unwrap();
        assert_eq!(sqlite.describe(), "SQLite at /data/smartlaunch.db");
        let url = "postgres://app:s3cret@db.internal:5432/smartlaunch?sslmode=require&password=s3cret";
        let pg = DatabaseConfig::choose(Some(url), Path::new("/data"), 8).unwrap();
        assert_eq!(
            pg.describe(),
            "PostgreSQL at postgres://app:redacted@db.internal:5432/smartlaunch?sslmode=require&password=redacted"
        );
        assert!(!format!("{pg:?}").contains("s3cret"), "{pg:?}");
    }

    #[test]
    fn passwords_are_redacted_wherever_a_url_holds_them() {
        let cases = [
            ("postgres://u:pw@h/db", "postgres://u:redacted@h/db"),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("postgres://h/db?user=u&password=pw", "postgres://h/db?user=u&password=redacted"),
            (
                "postgres://h/db?PASSWORD=pw&sslpassword=key-pw",
                "postgres://h/db?PASSWORD=redacted&sslpassword=redacted",
            ),
            ("postgres://u:p%40w@h/db?pass%77ord=pw", "postgres://u:redacted@h/db?password=redacted"),
            ("postgres://u:pw@[::1/db", "postgres://redacted"),
            ("u:pw@h", "redacted"),
        ];
        for (url, shown) in cases {
            let redacted = redact_database_url(url);
            assert_eq!(redacted, shown, "{url}");
            assert!(!redacted.contains("pw"), "{url}");
        }
    }
}
