//! The copy's one reader of SQLite tables (kept apart so that a change of the SQLite access
//! layer touches this file only): every table of [`TABLES`] read in ONE read transaction (one
//! snapshot of the whole sandbox, however long the copy takes), sent column by column in
//! chunks of [`CHUNK_ROWS`] over a bounded channel, so that memory holds a few chunks at most.

use futures_util::TryStreamExt;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::tables::{Kind, Table, TABLES};
use super::{Chunk, Column, CopyError};
use crate::SqliteDb;

/// Rows per chunk.
const CHUNK_ROWS: usize = 5_000;

/// Starts reading every table of `from`; the chunks arrive on the receiver, and the task ends
/// with the reading's outcome (awaited after the last chunk: a reader that failed or stopped
/// early is an error, never a shorter copy).
pub(super) fn read_all(from: &SqliteDb) -> (mpsc::Receiver<Chunk>, JoinHandle<Result<(), CopyError>>) {
    let pool = from.read.clone();
    let (sender, receiver) = mpsc::channel(2);
    let task =
        tokio::spawn(async move { read_tables(&pool, &sender).await.map_err(|e| CopyError::Read(e.to_string())) });
    (receiver, task)
}

async fn read_tables(pool: &SqlitePool, sender: &mpsc::Sender<Chunk>) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    for table in TABLES {
        let columns: Vec<String> = table
            .columns
            .iter()
            .map(|(name, kind)| match kind {
                // A REAL column may hold an integral value stored as an integer.
                Kind::Real => format!("CAST({name} AS REAL)"),
                _ => (*name).to_owned(),
            })
            .collect();
        let sql = format!("SELECT {} FROM {}", columns.join(", "), table.name);
        let mut rows = sqlx::query(&sql).fetch(&mut *tx);
        let mut chunk = Chunk::new(table);
        while let Some(row) = rows.try_next().await? {
            push_row(&mut chunk, &row)?;
            if chunk.rows == CHUNK_ROWS {
                if sender.send(std::mem::replace(&mut chunk, Chunk::new(table))).await.is_err() {
                    return Ok(()); // The copy stopped (its own error is reported).
                }
            }
        }
        if chunk.rows > 0 && sender.send(chunk).await.is_err() {
            return Ok(());
        }
    }
    Ok(())
}

fn push_row(chunk: &mut Chunk, row: &SqliteRow) -> Result<(), sqlx::Error> {
    for (i, column) in chunk.columns.iter_mut().enumerate() {
        match column {
            Column::Text(values) => values.push(row.try_get(i)?),
            Column::Int(values) => values.push(row.try_get(i)?),
            Column::Real(values) => values.push(row.try_get(i)?),
            Column::Blob(values) => values.push(row.try_get(i)?),
            Column::Bool(values) => values.push(row.try_get::<Option<i64>, _>(i)?.map(|v| v != 0)),
        }
    }
    chunk.rows += 1;
    Ok(())
}

impl Chunk {
    fn new(table: &'static Table) -> Chunk {
        let columns = table
            .columns
            .iter()
            .map(|(_, kind)| match kind {
                Kind::Text => Column::Text(Vec::new()),
                Kind::Int => Column::Int(Vec::new()),
                Kind::Real => Column::Real(Vec::new()),
                Kind::Blob => Column::Blob(Vec::new()),
                Kind::Bool => Column::Bool(Vec::new()),
            })
            .collect();
        Chunk { table, columns, rows: 0 }
    }
}
