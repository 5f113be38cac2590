//! FHIR resources on PostgreSQL: [`ResourceStore`] for [`PgDb`].
//!
//! Writers run concurrently here (SQLite has one writer), so a write decides on a locked row:
//! it reads the current row `FOR UPDATE` and keeps the lock until commit, so a racing
//! `If-Match` on the same version waits and then sees the new version (a conflict: no lost
//! update).  A resource with no row yet has nothing to lock: its creation is an
//! `INSERT … ON CONFLICT DO NOTHING`, which waits for a racing creator's commit and then
//! inserts nothing, and the write decides again on the row that creator left.  Version ids
//! come from the locked row, and `resource_versions`' primary key refuses a duplicate anyway.
//! Under READ COMMITTED every check is on a row locked until commit, so a transaction's
//! writes all still hold at its commit.  A transaction of several writes first locks every
//! existing row it will write in one order (type, id), so two Bundles over the same resources
//! in opposite orders queue instead of deadlocking; should PostgreSQL still abort one to break
//! a deadlock (two Bundles creating the same new id, 40P01), it runs again from the start.

use futures_util::TryStreamExt;
use serde_json::Value;
use smartlaunch_fhir::compartment::patients_of;
use smartlaunch_fhir::search::query::SearchRequest;
use smartlaunch_fhir::search::Constraint;
use smartlaunch_fhir::store::{
    Expected, ResourceStore, SearchPage, StoreError, StoredResource, VersionPage, WriteError, WriteOp,
};
use sqlx::PgConnection;

use super::PgDb;
use crate::resources::{
    check_expected, err, name_pattern, parse_all, sort_key, stored, type_and_id, version_index, versioned_json,
    Version, COMPARTMENTS, COUNT, DELETE_COMPARTMENTS, ENCOUNTERS, INSERT_DELETION, INSERT_VERSION, MARK_DELETED,
    PATIENTS_COUNT, PATIENTS_PAGE, TYPE_HISTORY_FROM, TYPE_HISTORY_ORDER, VERSIONS,
};
use crate::search::{index_inserts, order_sql, where_sql, Bind, Dialect, Liveness, Sql, DELETE_INDEX};

/// Times a write transaction is tried when PostgreSQL aborts it to break a deadlock (or a
/// serialization failure).
const MAX_ATTEMPTS: u32 = 5;

/// The current row and its patient compartments, in one round trip.
const READ: &str = "SELECT content, version_id, last_updated, deleted, \
     ARRAY(SELECT c.patient_id FROM resource_compartments c \
           WHERE c.resource_type = r.resource_type AND c.id = r.id ORDER BY c.patient_id) \
     FROM resources r WHERE r.resource_type = $1 AND r.id = $2";
/// One version and the resource's patient compartments, in one round trip.
const VREAD: &str = "SELECT content, version_id, last_updated, deleted, \
     ARRAY(SELECT c.patient_id FROM resource_compartments c \
           WHERE c.resource_type = v.resource_type AND c.id = v.id ORDER BY c.patient_id) \
     FROM resource_versions v WHERE v.resource_type = $1 AND v.id = $2 AND v.version_id = $3";
/// Locks the existing rows of a transaction's writes in one order (`$1`, `$2`: types and ids).
const LOCK_ALL: &str = "SELECT 1 FROM resources WHERE (resource_type, id) IN \
     (SELECT * FROM unnest($1::text[], $2::text[])) ORDER BY resource_type, id FOR UPDATE";
/// The current version and state, locked until the transaction ends.
const LOCK_CURRENT: &str = "SELECT version_id, deleted FROM resources WHERE resource_type = $1 AND id = $2 FOR UPDATE";
/// The first row of a resource, unless a racing writer created it first.
const CREATE: &str = "INSERT INTO resources (resource_type, id, version_id, last_updated, deleted, sort_key, content) \
     VALUES ($1, $2, $3, $4, FALSE, $5, $6) ON CONFLICT (resource_type, id) DO NOTHING";
/// A new current version of a locked row.
const UPDATE: &str = "UPDATE resources SET version_id = $3, last_updated = $4, deleted = FALSE, sort_key = $5, \
     content = $6 WHERE resource_type = $1 AND id = $2";
/// Every compartment of a version in one statement.
const INSERT_COMPARTMENTS: &str =
    "INSERT INTO resource_compartments (patient_id, resource_type, id) SELECT unnest($1::text[]), $2, $3";

type ReadRow = (String, i64, String, bool, Vec<String>);

fn read_row(
    resource_type: &str,
    id: &str,
    (json, version, last_updated, deleted, patients): ReadRow,
) -> StoredResource {
    stored(resource_type, id, (json, version, last_updated, deleted), patients)
}

/// Why one write of a transaction did not happen, before it is told to the caller.
enum Failure {
    /// The current state is not the expected one.
    Conflict(Option<i64>),
    /// A database error: run again if it is a deadlock or serialization failure.
    SqliteDb(sqlx::Error),
    /// Anything else (a resource without id, a racing creator that never settles).
    Store(StoreError),
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Failure {
        Failure::SqliteDb(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Failure {
        Failure::Store(e)
    }
}

impl From<Failure> for WriteError {
    fn from(f: Failure) -> WriteError {
        match f {
            Failure::Conflict(current) => WriteError::Conflict(current),
            Failure::SqliteDb(e) => WriteError::Store(err(e)),
            Failure::Store(e) => WriteError::Store(e),
        }
    }
}

/// Whether PostgreSQL aborted the transaction so that it can be run again: SQLSTATE 40001
/// (serialization failure) or 40P01 (deadlock detected).
fn retryable(failure: &Failure) -> bool {
    let Failure::SqliteDb(e) = failure else { return false };
    let code = e.as_database_error().and_then(|d| d.code());
    matches!(code.as_deref(), Some("40001" | "40P01"))
}

/// One write, borrowing what it writes.
#[derive(Clone, Copy)]
enum Op<'a> {
    Put(&'a Value, Expected),
    Delete(&'a str, &'a str, Expected),
}

impl<'a> Op<'a> {
    /// The resource written (none for a put without type or id: it fails on its own).
    fn target(&self) -> Option<(&'a str, &'a str)> {
        match *self {
            Op::Put(resource, _) => type_and_id(resource).ok(),
            Op::Delete(resource_type, id, _) => Some((resource_type, id)),
        }
    }
}

impl<'a> From<&'a WriteOp> for Op<'a> {
    fn from(op: &'a WriteOp) -> Op<'a> {
        match op {
            WriteOp::Put { resource, expected } => Op::Put(resource, *expected),
            WriteOp::Delete { resource_type, id, expected } => Op::Delete(resource_type, id, *expected),
        }
    }
}

impl PgDb {
    /// Applies `ops` in one transaction, all or nothing, again from the start when PostgreSQL
    /// broke a deadlock by aborting it.  On failure, the index of the write that failed.
    async fn write(&self, ops: &[Op<'_>], now: &str) -> Result<Vec<StoredResource>, (usize, WriteError)> {
        let mut attempt = 1;
        loop {
            match self.try_write(ops, now).await {
                Err((_, failure)) if attempt < MAX_ATTEMPTS && retryable(&failure) => attempt += 1,
                result => return result.map_err(|(n, failure)| (n, failure.into())),
            }
        }
    }

    async fn try_write(&self, ops: &[Op<'_>], now: &str) -> Result<Vec<StoredResource>, (usize, Failure)> {
        let mut tx = self.pool.begin().await.map_err(|e| (0, e.into()))?;
        if ops.len() > 1 {
            let (types, ids): (Vec<&str>, Vec<&str>) = ops.iter().filter_map(|op| op.target()).unzip();
            sqlx::query(LOCK_ALL).bind(&types).bind(&ids).execute(&mut *tx).await.map_err(|e| (0, e.into()))?;
        }
        let mut out = Vec::with_capacity(ops.len());
        for (n, op) in ops.iter().enumerate() {
            let written = match *op {
                Op::Put(resource, expected) => put_in(&mut tx, resource, expected, now).await,
                Op::Delete(resource_type, id, expected) => delete_in(&mut tx, resource_type, id, expected, now).await,
            };
            // Dropping the transaction rolls it back: nothing of the Bundle is kept.
            out.push(written.map_err(|f| (n, f))?);
        }
        tx.commit().await.map_err(|e| (ops.len(), e.into()))?;
        Ok(out)
    }

    /// The one result of a write of one op.
    async fn write_one(&self, op: Op<'_>, now: &str) -> Result<StoredResource, WriteError> {
        let mut written = self.write(&[op], now).await.map_err(|(_, e)| e)?;
        written.pop().ok_or_else(|| WriteError::Store(StoreError("a write stored nothing".into())))
    }
}

/// The current (version, deleted) of a resource, locked until the transaction ends.
async fn lock_current(tx: &mut PgConnection, resource_type: &str, id: &str) -> Result<Option<(i64, bool)>, Failure> {
    Ok(sqlx::query_as(LOCK_CURRENT).bind(resource_type).bind(id).fetch_optional(tx).await?)
}

/// [`check_expected`] for a transaction of this backend.
fn expect(current: Option<(i64, bool)>, expected: Expected) -> Result<(), Failure> {
    check_expected(current, expected).map_err(|e| match e {
        WriteError::Conflict(c) => Failure::Conflict(c),
        WriteError::Store(e) => Failure::Store(e),
    })
}

/// Stores a new version inside a transaction if the current state is `expected`.
async fn put_in(
    tx: &mut PgConnection,
    resource: &Value,
    expected: Expected,
    now: &str,
) -> Result<StoredResource, Failure> {
    let (ty, id) = type_and_id(resource)?;
    // A racing creator makes the insert do nothing; the second look finds (and locks) its row.
    for _ in 0..MAX_ATTEMPTS {
        let current = lock_current(tx, ty, id).await?;
        expect(current, expected)?;
        let version = current.map_or(1, |(v, _)| v + 1);
        let json = versioned_json(resource, version, now)?;
        let row = sqlx::query(if current.is_some() { UPDATE } else { CREATE })
            .bind(ty)
            .bind(id)
            .bind(version)
            .bind(now)
            .bind(sort_key(resource))
            .bind(&json)
            .execute(&mut *tx)
            .await?;
        if row.rows_affected() == 0 {
            continue;
        }
        sqlx::query(INSERT_VERSION).bind(ty).bind(id).bind(version).bind(now).bind(&json).execute(&mut *tx).await?;
        if current.is_some() {
            sqlx::query(DELETE_COMPARTMENTS).bind(ty).bind(id).execute(&mut *tx).await?;
            sqlx::query(DELETE_INDEX).bind(ty).bind(id).execute(&mut *tx).await?;
        }
        for sql in index_inserts(Dialect::Postgres, ty, id, &version_index(resource, now)) {
            let (text, args) = sql.into_pg_parts();
            sqlx::query_with(&text, args).execute(&mut *tx).await?;
        }
        let patients = patients_of(resource);
        if !patients.is_empty() {
            sqlx::query(INSERT_COMPARTMENTS).bind(&patients).bind(ty).bind(id).execute(&mut *tx).await?;
        }
        return Ok(stored(ty, id, (json, version, now.to_owned(), false), patients));
    }
    Err(Failure::Store(StoreError(format!("{ty}/{id} kept changing while being written"))))
}

/// Deletes inside a transaction (a new, deleted version) if the current state is `expected`.
async fn delete_in(
    tx: &mut PgConnection,
    resource_type: &str,
    id: &str,
    expected: Expected,
    now: &str,
) -> Result<StoredResource, Failure> {
    let current = lock_current(tx, resource_type, id).await?;
    expect(current, expected)?;
    let version = current.map_or(1, |(v, _)| v + 1);
    sqlx::query(MARK_DELETED).bind(version).bind(now).bind(resource_type).bind(id).execute(&mut *tx).await?;
    sqlx::query(INSERT_DELETION).bind(resource_type).bind(id).bind(version).bind(now).execute(&mut *tx).await?;
    sqlx::query(DELETE_INDEX).bind(resource_type).bind(id).execute(&mut *tx).await?;
    let patients: Vec<(String,)> =
        sqlx::query_as(COMPARTMENTS).bind(resource_type).bind(id).fetch_all(&mut *tx).await?;
    let patients = patients.into_iter().map(|(p,)| p).collect();
    Ok(stored(resource_type, id, (String::new(), version, now.to_owned(), true), patients))
}

impl ResourceStore for PgDb {
    async fn search(
        &self,
        resource_type: &str,
        request: &SearchRequest,
        access: &[Constraint],
    ) -> Result<SearchPage, StoreError> {
        let mut filter = Sql::new(Dialect::Postgres);
        where_sql(&mut filter, resource_type, &request.clauses, access, Liveness::Live);
        let count_sql = format!("SELECT COUNT(*) FROM resources r WHERE {}", filter.text);
        // Built statements are sent unnamed (`persistent(false)`): PostgreSQL plans them with the
        // values.  Prepared and cached, after five runs it switched to a generic plan that does
        // not know the patient and the category are selective: the search of one patient's labs
        // in 1,000 patients' data went from 5 ms to 170 ms (bench `fhir`, README "Benchmarks").
        let (total,): (i64,) = sqlx::query_as_with(&count_sql, filter.pg_arguments())
            .persistent(false)
            .fetch_one(&self.pool)
            .await
            .map_err(err)?;
        if request.summary_count || request.count == 0 {
            return Ok(SearchPage { resources: Vec::new(), total, over_budget: false });
        }
        order_sql(&mut filter, request);
        let page_sql = format!(
            "SELECT r.content FROM resources r WHERE {} LIMIT {} OFFSET {}",
            filter.text, request.count, request.offset
        );
        // Rows are taken one at a time and counted: a page never holds more than the budget.
        let mut rows = sqlx::query_as_with::<_, (String,), _>(&page_sql, filter.pg_arguments())
            .persistent(false)
            .fetch(&self.pool);
        let (mut resources, mut bytes) = (Vec::new(), 0usize);
        while let Some((json,)) = rows.try_next().await.map_err(err)? {
            bytes += json.len();
            if bytes > request.max_bytes {
                return Ok(SearchPage { resources, total, over_budget: true });
            }
            resources.push(json);
        }
        Ok(SearchPage { resources, total, over_budget: false })
    }

    async fn type_history(
        &self,
        resource_type: &str,
        access: &[Constraint],
        count: i64,
        offset: i64,
        max_bytes: usize,
    ) -> Result<VersionPage, StoreError> {
        let mut filter = Sql::new(Dialect::Postgres);
        where_sql(&mut filter, resource_type, &[], access, Liveness::AnyState);
        let from = format!("{TYPE_HISTORY_FROM}{}", filter.text);
        let (total,): (i64,) = sqlx::query_as_with(&format!("SELECT COUNT(*) {from}"), filter.pg_arguments())
            .persistent(false)
            .fetch_one(&self.pool)
            .await
            .map_err(err)?;
        let sql = format!(
            "SELECT v.id, v.content, v.version_id, v.last_updated, v.deleted {from}{TYPE_HISTORY_ORDER} \
             LIMIT {count} OFFSET {offset}"
        );
        let mut rows = sqlx::query_as_with::<_, (String, String, i64, String, bool), _>(&sql, filter.pg_arguments())
            .persistent(false)
            .fetch(&self.pool);
        let (mut versions, mut bytes) = (Vec::new(), 0usize);
        while let Some((id, json, version, last_updated, deleted)) = rows.try_next().await.map_err(err)? {
            bytes += json.len();
            if bytes > max_bytes {
                return Ok(VersionPage { versions, total, over_budget: true });
            }
            versions.push(stored(resource_type, &id, (json, version, last_updated, deleted), Vec::new()));
        }
        Ok(VersionPage { versions, total, over_budget: false })
    }

    async fn matches(&self, resource_type: &str, id: &str, access: &[Constraint]) -> Result<bool, StoreError> {
        let mut sql = Sql::new(Dialect::Postgres);
        sql.push("SELECT COUNT(*) FROM resources r WHERE r.id = ").bind(Bind::Text(id.to_owned())).push(" AND ");
        where_sql(&mut sql, resource_type, &[], access, Liveness::Live);
        let (text, args) = sql.into_pg_parts();
        let (n,): (i64,) =
            sqlx::query_as_with(&text, args).persistent(false).fetch_one(&self.pool).await.map_err(err)?;
        Ok(n > 0)
    }

    async fn read(&self, resource_type: &str, id: &str) -> Result<Option<StoredResource>, StoreError> {
        let row: Option<ReadRow> =
            sqlx::query_as(READ).bind(resource_type).bind(id).fetch_optional(&self.pool).await.map_err(err)?;
        Ok(row.map(|row| read_row(resource_type, id, row)))
    }

    async fn vread(
        &self,
        resource_type: &str,
        id: &str,
        version_id: i64,
    ) -> Result<Option<StoredResource>, StoreError> {
        let row: Option<ReadRow> = sqlx::query_as(VREAD)
            .bind(resource_type)
            .bind(id)
            .bind(version_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        Ok(row.map(|row| read_row(resource_type, id, row)))
    }

    async fn history(&self, resource_type: &str, id: &str, max_bytes: usize) -> Result<VersionPage, StoreError> {
        let patients: Vec<(String,)> =
            sqlx::query_as(COMPARTMENTS).bind(resource_type).bind(id).fetch_all(&self.pool).await.map_err(err)?;
        let patients: Vec<String> = patients.into_iter().map(|(p,)| p).collect();
        let mut rows = sqlx::query_as::<_, Version>(VERSIONS).bind(resource_type).bind(id).fetch(&self.pool);
        let (mut versions, mut bytes) = (Vec::new(), 0usize);
        while let Some(row) = rows.try_next().await.map_err(err)? {
            bytes += row.0.len();
            if bytes > max_bytes {
                return Ok(VersionPage { total: versions.len() as i64, versions, over_budget: true });
            }
            versions.push(stored(resource_type, id, row, patients.clone()));
        }
        Ok(VersionPage { total: versions.len() as i64, versions, over_budget: false })
    }

    async fn put(&self, resource: &Value, expected: Expected, now: &str) -> Result<StoredResource, WriteError> {
        self.write_one(Op::Put(resource, expected), now).await
    }

    async fn delete(
        &self,
        resource_type: &str,
        id: &str,
        expected: Expected,
        now: &str,
    ) -> Result<StoredResource, WriteError> {
        self.write_one(Op::Delete(resource_type, id, expected), now).await
    }

    async fn transaction(&self, ops: &[WriteOp], now: &str) -> Result<Vec<StoredResource>, (usize, WriteError)> {
        let ops: Vec<Op<'_>> = ops.iter().map(Op::from).collect();
        self.write(&ops, now).await
    }

    async fn put_all(&self, resources: Vec<Value>, now: &str) -> Result<usize, StoreError> {
        self.put_batch(crate::bulk::BulkBatch::prepare(resources, now)?).await
    }

    async fn count(&self) -> Result<i64, StoreError> {
        let (n,): (i64,) = sqlx::query_as(COUNT).fetch_one(&self.pool).await.map_err(err)?;
        Ok(n)
    }

    async fn search_patients(&self, name: &str, offset: i64, limit: i64) -> Result<(Vec<Value>, i64), StoreError> {
        let pattern = name_pattern(name);
        let (total,): (i64,) =
            sqlx::query_as(PATIENTS_COUNT).bind(&pattern).fetch_one(&self.pool).await.map_err(err)?;
        let rows: Vec<(String,)> = sqlx::query_as(PATIENTS_PAGE)
            .bind(&pattern)
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        Ok((parse_all(rows)?, total))
    }

    async fn encounters_of(&self, patient_id: &str) -> Result<Vec<Value>, StoreError> {
        let rows: Vec<(String,)> =
            sqlx::query_as(ENCOUNTERS).bind(patient_id).fetch_all(&self.pool).await.map_err(err)?;
        parse_all(rows)
    }
}
