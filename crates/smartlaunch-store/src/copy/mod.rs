//! `smartlaunch migrate` (issue 10, item 4): a whole SQLite sandbox copied into an EMPTY
//! PostgreSQL database — every table, row for row (resources with all their versions, the
//! search index and compartments, apps, users, grants and refresh tokens, sessions, launches,
//! launch links, consents, the signing keys, the inspector's data, export jobs).
//!
//! The SQLite side is read in one read transaction ([`sqlite_read`]); the PostgreSQL side is
//! written in one transaction that first locks every table and refuses a database holding
//! anything: the copy is all or nothing, and never mixes two sandboxes.  Identity sequences
//! are moved past the copied ids, and the planner's statistics refreshed at the end.
//!
//! The signing keys are sealed on the way ([`seal_keys`]): SQLite may keep them in plaintext
//! (its data directory is the trust boundary), PostgreSQL never does (its server, backups and
//! replicas are outside the nodes' trust boundary, and nodes refuse a plaintext key).

mod sqlite_read;
mod tables;

use smartlaunch_auth::key_encryption::{is_sealed_material, open_material, seal_material, KeyEncryptionKey};
use smartlaunch_auth::keys::KeyMaterial;
use sqlx::{Postgres, Transaction};

use crate::{PgDb, SqliteDb};
use tables::{Kind, Table, IDENTITIES, TABLES};

/// Why a copy did not happen (nothing was written to PostgreSQL).
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(
        "the PostgreSQL database is not empty (table {table} has rows): the copy goes into an empty \
         database only — create a new one (CREATE DATABASE …) and copy into it"
    )]
    TargetNotEmpty { table: &'static str },
    /// The PostgreSQL schema and the copy's list of tables ([`tables::TABLES`]) differ: a
    /// migration added a column (or table) the copy does not know, or removed one it copies.
    #[error("the copy does not match the PostgreSQL schema at {table}.{column}: update crates/smartlaunch-store/src/copy/tables.rs")]
    SchemaMismatch { table: String, column: String },
    /// A SQLite key sealed with another key encryption key than the one the copy was given.
    #[error(
        "the signing key {kid} of the SQLite sandbox is encrypted with another key encryption key than the \
         one given: give `smartlaunch migrate` the key the SQLite server ran with \
         (SMARTLAUNCH_KEY_ENCRYPTION_KEY or --key-encryption-key-file), and the nodes the same"
    )]
    KeySealedWithAnotherKey { kid: String },
    /// No randomness for a nonce.
    #[error("encrypting the signing keys: {0}")]
    Seal(String),
    #[error("reading the SQLite database: {0}")]
    Read(String),
    #[error("writing the PostgreSQL database: {0}")]
    Write(#[from] sqlx::Error),
    /// The copy is committed; the statistics of the planner could not be refreshed (run
    /// `ANALYZE` by hand).
    #[error("the copy is committed, but refreshing the planner's statistics failed (run ANALYZE): {0}")]
    Statistics(crate::DbError),
}

/// What was copied: the rows of each table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    pub tables: Vec<(&'static str, u64)>,
}

impl CopyReport {
    /// The rows copied into `table`.
    pub fn rows(&self, table: &str) -> u64 {
        self.tables.iter().find(|(t, _)| *t == table).map_or(0, |(_, n)| *n)
    }
}

/// Some rows of one table, column by column (as PostgreSQL's `unnest` takes them).
pub(crate) struct Chunk {
    table: &'static Table,
    columns: Vec<Column>,
    rows: usize,
}

/// The values of one column of a [`Chunk`].
pub(crate) enum Column {
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
    Real(Vec<Option<f64>>),
    Blob(Vec<Option<Vec<u8>>>),
    Bool(Vec<Option<bool>>),
}

/// Copies the sandbox of `from` into `to`, which must be empty, its signing keys sealed with
/// `kek`; see the module's doc.
pub async fn copy_sqlite_to_postgres(
    from: &SqliteDb,
    to: &PgDb,
    kek: &KeyEncryptionKey,
) -> Result<CopyReport, CopyError> {
    let mut tx = to.pool.begin().await?;
    let names: Vec<&str> = TABLES.iter().map(|t| t.name).collect();
    // No node may write while the copy runs, nor see a half-copied sandbox.
    sqlx::query(&format!("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE", names.join(", "))).execute(&mut *tx).await?;
    check_schema(&mut tx).await?;
    for table in TABLES {
        let (any,): (bool,) =
            sqlx::query_as(&format!("SELECT EXISTS (SELECT 1 FROM {})", table.name)).fetch_one(&mut *tx).await?;
        if any {
            return Err(CopyError::TargetNotEmpty { table: table.name });
        }
    }
    let mut counts: Vec<(&'static str, u64)> = names.iter().map(|n| (*n, 0)).collect();
    let (mut chunks, reader) = sqlite_read::read_all(from);
    while let Some(chunk) = chunks.recv().await {
        insert(&mut tx, &chunk).await?;
        if let Some(count) = counts.iter_mut().find(|(t, _)| *t == chunk.table.name) {
            count.1 += chunk.rows as u64;
        }
    }
    reader.await.map_err(|e| CopyError::Read(format!("the reader stopped: {e}")))??;
    seal_keys(&mut tx, kek).await?;
    for (table, column) in IDENTITIES {
        sqlx::query(&format!(
            "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), \
             COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)"
        ))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    to.analyze().await.map_err(CopyError::Statistics)?;
    Ok(CopyReport { tables: counts })
}

/// Seals every copied signing key with `kek`: a plaintext key (or field) is sealed, a key
/// sealed with `kek` stays as it is, and a key sealed with another key refuses the copy.
async fn seal_keys(tx: &mut Transaction<'_, Postgres>, kek: &KeyEncryptionKey) -> Result<(), CopyError> {
    let rows: Vec<(String, Vec<u8>, Vec<u8>)> =
        sqlx::query_as("SELECT kid, rsa_pkcs8, hmac_secret FROM signing_keys").fetch_all(&mut **tx).await?;
    for (kid, rsa_pkcs8, hmac_secret) in rows {
        let stored = KeyMaterial { kid, rsa_pkcs8, hmac_secret };
        let plain = open_material(Some(kek), &stored)
            .map_err(|_| CopyError::KeySealedWithAnotherKey { kid: stored.kid.clone() })?;
        if is_sealed_material(&stored) {
            continue;
        }
        let sealed = seal_material(Some(kek), &plain).map_err(CopyError::Seal)?;
        sqlx::query("UPDATE signing_keys SET rsa_pkcs8 = $1, hmac_secret = $2 WHERE kid = $3")
            .bind(&sealed.rsa_pkcs8)
            .bind(&sealed.hmac_secret)
            .bind(&sealed.kid)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Refuses a copy that would leave a column behind or write one that does not exist.
async fn check_schema(tx: &mut Transaction<'_, Postgres>) -> Result<(), CopyError> {
    let schema: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name <> 'schema_migrations'",
    )
    .fetch_all(&mut **tx)
    .await?;
    let known = |table: &str, column: &str| {
        TABLES.iter().any(|t| t.name == table && t.columns.iter().any(|(c, _)| *c == column))
    };
    if let Some((table, column)) = schema.iter().find(|(t, c)| !known(t, c)) {
        return Err(CopyError::SchemaMismatch { table: table.clone(), column: column.clone() });
    }
    for table in TABLES {
        for (column, _) in table.columns {
            if !schema.iter().any(|(t, c)| t == table.name && c == column) {
                return Err(CopyError::SchemaMismatch { table: table.name.into(), column: (*column).into() });
            }
        }
    }
    Ok(())
}

/// Writes a chunk with one `INSERT … SELECT * FROM unnest(…)`, one array per column.
async fn insert(tx: &mut Transaction<'_, Postgres>, chunk: &Chunk) -> Result<(), sqlx::Error> {
    let table = chunk.table;
    let names: Vec<&str> = table.columns.iter().map(|(name, _)| *name).collect();
    let arrays: Vec<String> = table
        .columns
        .iter()
        .enumerate()
        .map(|(i, (_, kind))| {
            let ty = match kind {
                Kind::Text => "text",
                Kind::Int => "bigint",
                Kind::Real => "float8",
                Kind::Blob => "bytea",
                Kind::Bool => "boolean",
            };
            format!("${}::{ty}[]", i + 1)
        })
        .collect();
    let sql = format!("INSERT INTO {} ({}) SELECT * FROM unnest({})", table.name, names.join(", "), arrays.join(", "));
    let mut query = sqlx::query(&sql);
    for column in &chunk.columns {
        query = match column {
            Column::Text(v) => query.bind(v),
            Column::Int(v) => query.bind(v),
            Column::Real(v) => query.bind(v),
            Column::Blob(v) => query.bind(v),
            Column::Bool(v) => query.bind(v),
        };
    }
    query.execute(&mut **tx).await?;
    Ok(())
}
