//! Bulk writes (seeding, import): many resources in one transaction with a handful of
//! multi-row statements, run on the writer thread ([`crate::writer::Writer::exclusive`]).

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use rusqlite::Connection;
use serde_json::Value;
use smartlaunch_fhir::compartment::patients_of;
use smartlaunch_fhir::search::extract::{index_entries, IndexEntry, IndexValue};
use smartlaunch_fhir::search::normalize::date_range;
use smartlaunch_fhir::store::StoreError;
use tokio::sync::{mpsc, oneshot};

use crate::conn::{exec_built, query_all, values};
use crate::search::{index_row, Bind, Dialect, Sql, INDEX_COLUMNS};
use crate::writer::Writer;

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

/// Rows per multi-row statement (SQLite allows 32,766 bound values).
const ROWS_PER_STATEMENT: usize = 1_000;

/// Runs `INSERT … VALUES (row), (row)…` in chunks; `row` pushes one parenthesised row.
fn insert_rows<T>(
    conn: &Connection,
    head: &str,
    tail: &str,
    items: &[T],
    mut row: impl FnMut(&mut Sql, &T),
) -> Result<(), StoreError> {
    for chunk in items.chunks(ROWS_PER_STATEMENT) {
        let mut sql = Sql::new(Dialect::Sqlite);
        sql.push(head);
        for (n, item) in chunk.iter().enumerate() {
            sql.push(if n > 0 { ", " } else { "" });
            row(&mut sql, item);
        }
        sql.push(tail);
        exec_built(conn, &sql).map_err(err)?;
    }
    Ok(())
}

/// One resource of a [`BulkBatch`], with everything its rows need.
pub(crate) struct Prepared {
    pub ty: String,
    pub id: String,
    pub resource: Value,
    pub sort_key: Option<String>,
    /// The content as stored, with `meta.versionId` 1 (rewritten if the id exists already).
    pub json: String,
    pub entries: Vec<IndexEntry>,
    pub compartments: Vec<String>,
}

/// Resources made ready for a bulk write without the database: index values, compartments,
/// sort keys and the stored JSON are computed here, so that an importer can prepare the next
/// batch on another core while the previous one is written.
pub struct BulkBatch {
    pub(crate) resources: Vec<Prepared>,
    pub(crate) now: String,
}

impl BulkBatch {
    /// Prepares `resources` (each with `resourceType` and `id`; the last of duplicates wins)
    /// to be stored at `now`.
    pub fn prepare(resources: Vec<Value>, now: &str) -> Result<BulkBatch, StoreError> {
        let mut position: HashMap<(String, String), usize> = HashMap::with_capacity(resources.len());
        let mut prepared: Vec<Prepared> = Vec::with_capacity(resources.len());
        let last_updated = date_range(now);
        for mut resource in resources {
            let (Some(ty), Some(id)) = (
                resource.get("resourceType").and_then(Value::as_str).map(str::to_owned),
                resource.get("id").and_then(Value::as_str).map(str::to_owned),
            ) else {
                return Err(StoreError("a resource without resourceType or id".into()));
            };
            let mut entries = index_entries(&resource);
            if let Some((low, high)) = last_updated {
                entries.push(IndexEntry { param: "_lastUpdated", value: IndexValue::Date { low, high } });
            }
            let compartments = patients_of(&resource);
            let sort_key = crate::resources::sort_key(&resource);
            set_meta(&mut resource, 1, now);
            let json = resource.to_string();
            let item = Prepared { ty, id, resource, sort_key, json, entries, compartments };
            match position.entry((item.ty.clone(), item.id.clone())) {
                Entry::Occupied(at) => prepared[*at.get()] = item,
                Entry::Vacant(slot) => {
                    slot.insert(prepared.len());
                    prepared.push(item);
                }
            }
        }
        Ok(BulkBatch { resources: prepared, now: now.to_owned() })
    }

    /// How many resources the batch holds.
    pub fn len(&self) -> usize {
        self.resources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }

    /// The resource type of each resource in the batch.
    pub fn resource_types(&self) -> impl Iterator<Item = &str> {
        self.resources.iter().map(|p| p.ty.as_str())
    }
}

pub(crate) fn set_meta(resource: &mut Value, version: i64, now: &str) {
    let Some(object) = resource.as_object_mut() else { return };
    let meta = object.entry("meta").or_insert_with(|| Value::Object(Default::default()));
    if !meta.is_object() {
        *meta = Value::Object(Default::default());
    }
    if let Some(meta) = meta.as_object_mut() {
        meta.insert("versionId".into(), version.to_string().into());
        meta.insert("lastUpdated".into(), now.into());
    }
}

/// The current version of each resource of the batch that is stored already.
fn current_versions(conn: &Connection, batch: &BulkBatch) -> Result<HashMap<(String, String), i64>, StoreError> {
    let mut by_type: HashMap<&str, Vec<&str>> = HashMap::new();
    for p in &batch.resources {
        by_type.entry(&p.ty).or_default().push(&p.id);
    }
    let mut versions = HashMap::new();
    for (ty, ids) in by_type {
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let mut sql = Sql::new(Dialect::Sqlite);
            sql.push("SELECT id, version_id FROM resources WHERE resource_type = ");
            sql.bind(Bind::Text(ty.to_owned())).push(" AND id IN (");
            for (n, id) in chunk.iter().enumerate() {
                sql.push(if n > 0 { ", " } else { "" }).bind(Bind::Text((*id).to_owned()));
            }
            sql.push(")");
            let mut stmt = conn.prepare(&sql.text).map_err(err)?;
            let rows: Vec<(String, i64)> = query_all(&mut stmt, &values(&sql.binds)).map_err(err)?;
            for (id, v) in rows {
                versions.insert((ty.to_owned(), id), v);
            }
        }
    }
    Ok(versions)
}

/// Stores a new version of every resource of `batch` in the open transaction; returns how
/// many.
pub(crate) fn put_many(conn: &Connection, mut batch: BulkBatch) -> Result<usize, StoreError> {
    let versions = current_versions(conn, &batch)?;
    let mut replaced: Vec<(String, String)> = Vec::new();
    let mut version_of = Vec::with_capacity(batch.resources.len());
    for p in &mut batch.resources {
        let version = match versions.get(&(p.ty.clone(), p.id.clone())) {
            Some(&previous) => {
                replaced.push((p.ty.clone(), p.id.clone()));
                set_meta(&mut p.resource, previous + 1, &batch.now);
                p.json = p.resource.to_string();
                previous + 1
            }
            None => 1,
        };
        version_of.push(version);
    }
    // Old index rows and compartments of replaced resources.
    for chunk in replaced.chunks(ROWS_PER_STATEMENT / 2) {
        for table in ["search_index", "resource_compartments"] {
            let mut sql = Sql::new(Dialect::Sqlite);
            sql.push("DELETE FROM ").push(table).push(" WHERE (resource_type, id) IN (VALUES ");
            for (n, (ty, id)) in chunk.iter().enumerate() {
                sql.push(if n > 0 { ", (" } else { "(" })
                    .bind(Bind::Text(ty.clone()))
                    .push(", ")
                    .bind(Bind::Text(id.clone()))
                    .push(")");
            }
            sql.push(")");
            exec_built(conn, &sql).map_err(err)?;
        }
    }
    let now = batch.now.as_str();
    let rows: Vec<(&Prepared, i64)> = batch.resources.iter().zip(version_of).collect();
    insert_rows(
        conn,
        "INSERT INTO resources (resource_type, id, version_id, last_updated, deleted, sort_key, content) VALUES ",
        " ON CONFLICT (resource_type, id) DO UPDATE SET version_id = excluded.version_id, last_updated = excluded.last_updated, \
         deleted = 0, sort_key = excluded.sort_key, content = excluded.content",
        &rows,
        |sql, (p, version)| {
            sql.push("(").bind(Bind::Text(p.ty.clone())).push(", ").bind(Bind::Text(p.id.clone())).push(", ").bind(Bind::Int(*version));
            sql.push(", ").bind(Bind::Text(now.to_owned())).push(", 0, ");
            sql.bind(p.sort_key.clone().map_or(Bind::NullText, Bind::Text)).push(", ").bind(Bind::Text(p.json.clone())).push(")");
        },
    )?;
    insert_rows(
        conn,
        "INSERT INTO resource_versions (resource_type, id, version_id, last_updated, deleted, content) VALUES ",
        "",
        &rows,
        |sql, (p, version)| {
            sql.push("(")
                .bind(Bind::Text(p.ty.clone()))
                .push(", ")
                .bind(Bind::Text(p.id.clone()))
                .push(", ")
                .bind(Bind::Int(*version));
            sql.push(", ").bind(Bind::Text(now.to_owned())).push(", 0, ").bind(Bind::Text(p.json.clone())).push(")");
        },
    )?;
    let entries: Vec<(&Prepared, &IndexEntry)> =
        batch.resources.iter().flat_map(|p| p.entries.iter().map(move |e| (p, e))).collect();
    insert_rows(conn, &format!("INSERT INTO search_index ({INDEX_COLUMNS}) VALUES "), "", &entries, |sql, (p, e)| {
        index_row(sql, &p.ty, &p.id, e)
    })?;
    let compartments: Vec<(&Prepared, &String)> =
        batch.resources.iter().flat_map(|p| p.compartments.iter().map(move |c| (p, c))).collect();
    insert_rows(
        conn,
        "INSERT INTO resource_compartments (patient_id, resource_type, id) VALUES ",
        " ON CONFLICT DO NOTHING",
        &compartments,
        |sql, (p, patient)| {
            sql.push("(")
                .bind(Bind::Text((*patient).clone()))
                .push(", ")
                .bind(Bind::Text(p.ty.clone()))
                .push(", ")
                .bind(Bind::Text(p.id.clone()))
                .push(")");
        },
    )?;
    Ok(rows.len())
}

/// What a [`BulkWriter`] asks of its transaction on the writer thread.
enum Step {
    Put(BulkBatch, oneshot::Sender<Result<usize, StoreError>>),
    Commit(oneshot::Sender<Result<(), StoreError>>),
}

/// One transaction holding many batches, each in a savepoint of its own: grouping batches
/// into one commit writes each shared index page once per group instead of once per batch.
/// The transaction holds the writer thread from [`BulkWriter::begin`] to
/// [`BulkWriter::commit`] (other writes wait); dropping the writer rolls it back.
pub struct BulkWriter {
    steps: mpsc::Sender<Step>,
}

impl BulkWriter {
    pub(crate) async fn begin(writer: &Writer) -> Result<BulkWriter, StoreError> {
        let (steps, mut asked) = mpsc::channel::<Step>(1);
        let (begun, answer) = oneshot::channel();
        writer
            .exclusive(move |conn| {
                if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
                    let _ = begun.send(Err(err(e)));
                    return;
                }
                let _ = begun.send(Ok(()));
                while let Some(step) = asked.blocking_recv() {
                    match step {
                        Step::Put(batch, reply) => {
                            let _ = reply.send(in_savepoint(conn, batch));
                        }
                        Step::Commit(reply) => {
                            let committed = conn.execute_batch("COMMIT").map_err(err);
                            if committed.is_err() && !conn.is_autocommit() {
                                let _ = conn.execute_batch("ROLLBACK");
                            }
                            let _ = reply.send(committed);
                            return;
                        }
                    }
                }
                // Dropped without a commit.
                if let Err(e) = conn.execute_batch("ROLLBACK") {
                    tracing::debug!("bulk write: rollback: {e}");
                }
            })
            .await
            .map_err(err)?;
        answer.await.map_err(err)??;
        Ok(BulkWriter { steps })
    }

    /// Stores a new version of every resource of `batch`, all or nothing; returns how many.
    pub async fn put(&mut self, batch: BulkBatch) -> Result<usize, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.steps.send(Step::Put(batch, reply)).await.map_err(err)?;
        answer.await.map_err(err)?
    }

    /// Commits every batch that was stored.
    pub async fn commit(self) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.steps.send(Step::Commit(reply)).await.map_err(err)?;
        answer.await.map_err(err)?
    }
}

/// Runs [`put_many`] in a savepoint: a failing batch leaves nothing behind.
fn in_savepoint(conn: &Connection, batch: BulkBatch) -> Result<usize, StoreError> {
    conn.execute_batch("SAVEPOINT bulk_batch").map_err(err)?;
    let stored = put_many(conn, batch);
    let ended = match stored {
        Ok(_) => conn.execute_batch("RELEASE bulk_batch"),
        Err(_) => conn.execute_batch("ROLLBACK TO bulk_batch; RELEASE bulk_batch"),
    };
    let stored = stored?;
    ended.map_err(err)?;
    Ok(stored)
}
