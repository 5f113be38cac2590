//! Bulk writes (seeding, import): many resources in one transaction with a handful of
//! multi-row statements.  Each statement is a round trip to the connection's thread, so writing
//! resources one statement at a time is bound by hand-offs, not by SQLite.

use std::collections::HashMap;

use serde_json::Value;
use smartlaunch_fhir::compartment::patients_of;
use smartlaunch_fhir::search::extract::{index_entries, IndexEntry, IndexValue};
use smartlaunch_fhir::search::normalize::date_range;
use smartlaunch_fhir::store::StoreError;
use sqlx::{Sqlite, Transaction};

use crate::search::{index_row, Bind, Sql, INDEX_COLUMNS};

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

/// Rows per multi-row statement (SQLite allows 32,766 bound values).
const ROWS_PER_STATEMENT: usize = 1_000;

/// Runs `INSERT … VALUES (row), (row)…` in chunks; `row` pushes one parenthesised row.
async fn insert_rows<T>(
    tx: &mut Transaction<'_, Sqlite>,
    head: &str,
    tail: &str,
    items: &[T],
    mut row: impl FnMut(&mut Sql, &T),
) -> Result<(), StoreError> {
    for chunk in items.chunks(ROWS_PER_STATEMENT) {
        let mut sql = Sql::default();
        sql.push(head);
        for (n, item) in chunk.iter().enumerate() {
            sql.push(if n > 0 { ", " } else { "" });
            row(&mut sql, item);
        }
        sql.push(tail);
        sqlx::query_with(&sql.text, sql.arguments()).execute(&mut **tx).await.map_err(err)?;
    }
    Ok(())
}

/// Stores new versions of all `resources` (each with `resourceType` and `id`; the last of
/// duplicates wins) in the open transaction.
pub(crate) async fn put_many(
    tx: &mut Transaction<'_, Sqlite>,
    resources: &[Value],
    now: &str,
) -> Result<usize, StoreError> {
    // The last occurrence of each (type, id).
    let mut latest: HashMap<(&str, &str), &Value> = HashMap::new();
    let mut order = Vec::new();
    for r in resources {
        let (Some(ty), Some(id)) = (r.get("resourceType").and_then(Value::as_str), r.get("id").and_then(Value::as_str))
        else {
            return Err(StoreError("a resource without resourceType or id".into()));
        };
        if latest.insert((ty, id), r).is_none() {
            order.push((ty, id));
        }
    }
    // Current versions, per type.
    let mut versions: HashMap<(String, String), i64> = HashMap::new();
    let mut by_type: HashMap<&str, Vec<&str>> = HashMap::new();
    for (ty, id) in &order {
        by_type.entry(ty).or_default().push(id);
    }
    for (ty, ids) in &by_type {
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let mut sql = Sql::default();
            sql.push("SELECT id, version_id FROM resources WHERE resource_type = ");
            sql.bind(Bind::Text((*ty).to_owned())).push(" AND id IN (");
            for (n, id) in chunk.iter().enumerate() {
                sql.push(if n > 0 { ", " } else { "" }).bind(Bind::Text((*id).to_owned()));
            }
            sql.push(")");
            let rows: Vec<(String, i64)> =
                sqlx::query_as_with(&sql.text, sql.arguments()).fetch_all(&mut **tx).await.map_err(err)?;
            for (id, v) in rows {
                versions.insert(((*ty).to_owned(), id), v);
            }
        }
    }
    struct Row {
        ty: String,
        id: String,
        version: i64,
        sort_key: Option<String>,
        json: String,
    }
    let mut rows = Vec::with_capacity(order.len());
    let mut entries: Vec<(String, String, IndexEntry)> = Vec::new();
    let mut compartments: Vec<(String, String, String)> = Vec::new();
    let last_updated = date_range(now);
    let mut replaced: Vec<(String, String)> = Vec::new();
    for (ty, id) in &order {
        let resource = latest[&(*ty, *id)];
        let previous = versions.get(&((*ty).to_owned(), (*id).to_owned())).copied();
        if previous.is_some() {
            replaced.push(((*ty).to_owned(), (*id).to_owned()));
        }
        let version = previous.map_or(1, |v| v + 1);
        let mut content = resource.clone();
        let mut meta = resource.get("meta").and_then(Value::as_object).cloned().unwrap_or_default();
        meta.insert("versionId".into(), version.to_string().into());
        meta.insert("lastUpdated".into(), now.into());
        content["meta"] = Value::Object(meta);
        for e in index_entries(resource) {
            entries.push(((*ty).to_owned(), (*id).to_owned(), e));
        }
        if let Some((low, high)) = last_updated {
            entries.push((
                (*ty).to_owned(),
                (*id).to_owned(),
                IndexEntry { param: "_lastUpdated", value: IndexValue::Date { low, high } },
            ));
        }
        for p in patients_of(resource) {
            compartments.push((p, (*ty).to_owned(), (*id).to_owned()));
        }
        rows.push(Row {
            ty: (*ty).to_owned(),
            id: (*id).to_owned(),
            version,
            sort_key: crate::resources::sort_key(resource),
            json: content.to_string(),
        });
    }
    // Old index rows and compartments of replaced resources.
    for chunk in replaced.chunks(ROWS_PER_STATEMENT / 2) {
        for table in ["search_index", "resource_compartments"] {
            let mut sql = Sql::default();
            sql.push("DELETE FROM ").push(table).push(" WHERE (resource_type, id) IN (VALUES ");
            for (n, (ty, id)) in chunk.iter().enumerate() {
                sql.push(if n > 0 { ", (" } else { "(" })
                    .bind(Bind::Text(ty.clone()))
                    .push(", ")
                    .bind(Bind::Text(id.clone()))
                    .push(")");
            }
            sql.push(")");
            sqlx::query_with(&sql.text, sql.arguments()).execute(&mut **tx).await.map_err(err)?;
        }
    }
    insert_rows(
        tx,
        "INSERT INTO resources (resource_type, id, version_id, last_updated, deleted, sort_key, content) VALUES ",
        " ON CONFLICT (resource_type, id) DO UPDATE SET version_id = excluded.version_id, last_updated = excluded.last_updated, \
         deleted = 0, sort_key = excluded.sort_key, content = excluded.content",
        &rows,
        |sql, r| {
            sql.push("(").bind(Bind::Text(r.ty.clone())).push(", ").bind(Bind::Text(r.id.clone())).push(", ").bind(Bind::Int(r.version));
            sql.push(", ").bind(Bind::Text(now.to_owned())).push(", 0, ");
            sql.bind(r.sort_key.clone().map_or(Bind::Null, Bind::Text)).push(", ").bind(Bind::Text(r.json.clone())).push(")");
        },
    )
    .await?;
    insert_rows(
        tx,
        "INSERT INTO resource_versions (resource_type, id, version_id, last_updated, deleted, content) VALUES ",
        "",
        &rows,
        |sql, r| {
            sql.push("(")
                .bind(Bind::Text(r.ty.clone()))
                .push(", ")
                .bind(Bind::Text(r.id.clone()))
                .push(", ")
                .bind(Bind::Int(r.version));
            sql.push(", ").bind(Bind::Text(now.to_owned())).push(", 0, ").bind(Bind::Text(r.json.clone())).push(")");
        },
    )
    .await?;
    insert_rows(
        tx,
        &format!("INSERT INTO search_index ({INDEX_COLUMNS}) VALUES "),
        "",
        &entries,
        |sql, (ty, id, e)| index_row(sql, ty, id, e),
    )
    .await?;
    insert_rows(
        tx,
        "INSERT INTO resource_compartments (patient_id, resource_type, id) VALUES ",
        " ON CONFLICT DO NOTHING",
        &compartments,
        |sql, (p, ty, id)| {
            sql.push("(")
                .bind(Bind::Text(p.clone()))
                .push(", ")
                .bind(Bind::Text(ty.clone()))
                .push(", ")
                .bind(Bind::Text(id.clone()))
                .push(")");
        },
    )
    .await?;
    Ok(rows.len())
}
