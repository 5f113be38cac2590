//! Bulk writes on PostgreSQL (seeding, import): a [`BulkBatch`] in one transaction with one
//! statement per table, each row set passed as arrays and expanded by `unnest` (a statement's
//! size no longer grows with its rows, and PostgreSQL plans it once).

use std::collections::HashMap;

use smartlaunch_fhir::search::extract::IndexValue;
use smartlaunch_fhir::store::StoreError;
use sqlx::{Acquire, PgConnection, Postgres, Transaction};

use super::PgDb;
use crate::bulk::{set_meta, BulkBatch};
use crate::resources::err;

/// Locks the batch's existing rows (in one order, as a transaction does) and reads their
/// versions.
const CURRENT: &str = "SELECT resource_type, id, version_id FROM resources WHERE (resource_type, id) IN \
     (SELECT * FROM unnest($1::text[], $2::text[])) ORDER BY resource_type, id FOR UPDATE";
const DELETE_INDEX: &str =
    "DELETE FROM search_index WHERE (resource_type, id) IN (SELECT * FROM unnest($1::text[], $2::text[]))";
const DELETE_COMPARTMENTS: &str =
    "DELETE FROM resource_compartments WHERE (resource_type, id) IN (SELECT * FROM unnest($1::text[], $2::text[]))";
const UPSERT: &str = "INSERT INTO resources (resource_type, id, version_id, last_updated, deleted, sort_key, content) \
     SELECT t, i, v, $4, FALSE, s, c FROM unnest($1::text[], $2::text[], $3::bigint[], $5::text[], $6::text[]) \
     AS u(t, i, v, s, c) \
     ON CONFLICT (resource_type, id) DO UPDATE SET version_id = excluded.version_id, \
     last_updated = excluded.last_updated, deleted = FALSE, sort_key = excluded.sort_key, content = excluded.content";
const VERSIONS: &str = "INSERT INTO resource_versions (resource_type, id, version_id, last_updated, deleted, content) \
     SELECT t, i, v, $4, FALSE, c FROM unnest($1::text[], $2::text[], $3::bigint[], $5::text[]) AS u(t, i, v, c)";
const INDEX: &str = "INSERT INTO search_index (resource_type, id, param, system, code, value_text, value_exact, \
     date_low, date_high, ref_type, ref_id, value_num) \
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
     $8::bigint[], $9::bigint[], $10::text[], $11::text[], $12::float8[])";
const COMPARTMENTS: &str = "INSERT INTO resource_compartments (patient_id, resource_type, id) \
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) ON CONFLICT DO NOTHING";

/// The columns of the batch's `search_index` rows, one array per column.
#[derive(Default)]
struct IndexColumns<'a> {
    ty: Vec<&'a str>,
    id: Vec<&'a str>,
    param: Vec<&'a str>,
    system: Vec<Option<&'a str>>,
    code: Vec<Option<&'a str>>,
    folded: Vec<Option<&'a str>>,
    exact: Vec<Option<&'a str>>,
    low: Vec<Option<i64>>,
    high: Vec<Option<i64>>,
    ref_type: Vec<Option<&'a str>>,
    ref_id: Vec<Option<&'a str>>,
    num: Vec<Option<f64>>,
}

impl<'a> IndexColumns<'a> {
    /// Appends one row; absent values are NULL, so each row sits only in its kind's index.
    fn push(&mut self, ty: &'a str, id: &'a str, param: &'a str, value: &'a IndexValue) {
        let (mut system, mut code, mut folded, mut exact) = (None, None, None, None);
        let (mut low, mut high, mut ref_type, mut ref_id, mut num) = (None, None, None, None, None);
        match value {
            IndexValue::Token { system: s, code: c } => (system, code) = (s.as_deref(), Some(c.as_str())),
            IndexValue::String { folded: f, exact: e } => (folded, exact) = (Some(f.as_str()), Some(e.as_str())),
            IndexValue::Date { low: l, high: h } => (low, high) = (Some(*l), Some(*h)),
            IndexValue::Reference { target_type, target_id } => {
                (ref_type, ref_id) = (target_type.as_deref(), Some(target_id.as_str()))
            }
            IndexValue::Quantity { value, system: s, code: c } => {
                (num, system, code) = (Some(*value), s.as_deref(), c.as_deref())
            }
        }
        self.ty.push(ty);
        self.id.push(id);
        self.param.push(param);
        self.system.push(system);
        self.code.push(code);
        self.folded.push(folded);
        self.exact.push(exact);
        self.low.push(low);
        self.high.push(high);
        self.ref_type.push(ref_type);
        self.ref_id.push(ref_id);
        self.num.push(num);
    }
}

/// Stores a new version of every resource of `batch` in the open transaction; returns how
/// many.
pub(super) async fn put_many(tx: &mut PgConnection, mut batch: BulkBatch) -> Result<usize, StoreError> {
    let (types, ids): (Vec<&str>, Vec<&str>) = batch.resources.iter().map(|p| (p.ty.as_str(), p.id.as_str())).unzip();
    let rows: Vec<(String, String, i64)> =
        sqlx::query_as(CURRENT).bind(&types).bind(&ids).fetch_all(&mut *tx).await.map_err(err)?;
    let current: HashMap<(String, String), i64> = rows.into_iter().map(|(t, i, v)| ((t, i), v)).collect();
    let mut versions = Vec::with_capacity(batch.resources.len());
    for p in &mut batch.resources {
        match current.get(&(p.ty.clone(), p.id.clone())) {
            Some(&previous) => {
                set_meta(&mut p.resource, previous + 1, &batch.now);
                p.json = p.resource.to_string();
                versions.push(previous + 1);
            }
            None => versions.push(1),
        }
    }
    let resources = &batch.resources;
    if !current.is_empty() {
        let (types, ids): (Vec<&str>, Vec<&str>) = current.keys().map(|(t, i)| (t.as_str(), i.as_str())).unzip();
        for sql in [DELETE_INDEX, DELETE_COMPARTMENTS] {
            sqlx::query(sql).bind(&types).bind(&ids).execute(&mut *tx).await.map_err(err)?;
        }
    }
    let (types, ids): (Vec<&str>, Vec<&str>) = resources.iter().map(|p| (p.ty.as_str(), p.id.as_str())).unzip();
    let sort_keys: Vec<Option<&str>> = resources.iter().map(|p| p.sort_key.as_deref()).collect();
    let contents: Vec<&str> = resources.iter().map(|p| p.json.as_str()).collect();
    sqlx::query(UPSERT)
        .bind(&types)
        .bind(&ids)
        .bind(&versions)
        .bind(&batch.now)
        .bind(&sort_keys)
        .bind(&contents)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
    sqlx::query(VERSIONS)
        .bind(&types)
        .bind(&ids)
        .bind(&versions)
        .bind(&batch.now)
        .bind(&contents)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
    let mut index = IndexColumns::default();
    let mut compartments: (Vec<&str>, Vec<&str>, Vec<&str>) = Default::default();
    for p in resources {
        for e in &p.entries {
            index.push(&p.ty, &p.id, e.param, &e.value);
        }
        for patient in &p.compartments {
            compartments.0.push(patient);
            compartments.1.push(&p.ty);
            compartments.2.push(&p.id);
        }
    }
    sqlx::query(INDEX)
        .bind(&index.ty)
        .bind(&index.id)
        .bind(&index.param)
        .bind(&index.system)
        .bind(&index.code)
        .bind(&index.folded)
        .bind(&index.exact)
        .bind(&index.low)
        .bind(&index.high)
        .bind(&index.ref_type)
        .bind(&index.ref_id)
        .bind(&index.num)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
    sqlx::query(COMPARTMENTS)
        .bind(&compartments.0)
        .bind(&compartments.1)
        .bind(&compartments.2)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
    Ok(resources.len())
}

impl PgDb {
    /// Starts a bulk write (seeding, import): one transaction in which each batch is all or
    /// nothing (a savepoint each).  Other writers go on meanwhile (PostgreSQL runs writers at
    /// once); a resource of a batch is locked from its batch until the commit.  A bulk load
    /// ends with [`PgDb::analyze`].
    pub async fn bulk_writer(&self) -> Result<PgBulkWriter, StoreError> {
        Ok(PgBulkWriter { tx: self.pool.begin().await.map_err(err)? })
    }

    /// Stores a new version of every resource of `batch` in one transaction, all or nothing;
    /// returns how many.  A bulk load ends with [`PgDb::analyze`].
    pub async fn put_batch(&self, batch: BulkBatch) -> Result<usize, StoreError> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        let stored = put_many(&mut tx, batch).await?;
        tx.commit().await.map_err(err)?;
        Ok(stored)
    }
}

/// One transaction holding many batches, each in a savepoint of its own: the PostgreSQL
/// counterpart of [`crate::BulkWriter`], with the same `put` and `commit`.
pub struct PgBulkWriter {
    tx: Transaction<'static, Postgres>,
}

impl PgBulkWriter {
    /// Stores a new version of every resource of `batch`, all or nothing; returns how many.
    pub async fn put(&mut self, batch: BulkBatch) -> Result<usize, StoreError> {
        let mut savepoint = (&mut self.tx).begin().await.map_err(err)?;
        let stored = put_many(&mut savepoint, batch).await?;
        savepoint.commit().await.map_err(err)?;
        Ok(stored)
    }

    /// Commits every batch that was stored.
    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await.map_err(err)
    }
}
