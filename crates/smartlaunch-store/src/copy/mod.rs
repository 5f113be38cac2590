//! `smartlaunch migrate` (issue 10, item 4): a whole SQLite sandbox copied into an EMPTY
//! PostgreSQL database — every table, row for row (resources with all their versions, the
//! search index and compartments, apps, users, grants and refresh tokens, sessions, launches,
//! launch links, consents, the signing keys, the inspector's data, export jobs).
//!
//! The SQLite side is read in one read transaction ([`sqlite_read`]); the PostgreSQL side is
//! written in one transaction that first locks every table and refuses a database holding
//! anything: the copy is all or nothing, and never mixes two sandboxes.  Identity sequences
//! are moved past the copied ids, and the planner's statistics refreshed at the end.

mod sqlite_read;
mod tables;

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
    #[error("reading the SQLite database: {0}")]
    Read(String),
    #[error("writing the PostgreSQL database: {0}")]
    Write(#[from] sqlx::Error),
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

/// Copies the sandbox of `from` into `to`, which must be empty; see the module's doc.
pub async fn copy_sqlite_to_postgres(from: &SqliteDb, to: &PgDb) -> Result<CopyReport, CopyError> {
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
    for (table, column) in IDENTITIES {
        sqlx::query(&format!(
            "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), \
             COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)"
        ))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    to.analyze().await.map_err(|e| CopyError::Write(e.0))?;
    Ok(CopyReport { tables: counts })
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
