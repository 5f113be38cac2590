//! FHIR resources: the current version of each as JSON with a sort key, every version, and the
//! patient compartments each resource is in.

use std::ops::ControlFlow;

use rusqlite::Connection;
use serde_json::Value;
use smartlaunch_fhir::search::extract::{index_entries, IndexEntry, IndexValue};
use smartlaunch_fhir::search::normalize::date_range;
use smartlaunch_fhir::search::query::SearchRequest;
use smartlaunch_fhir::search::Constraint;
use smartlaunch_fhir::store::{
    Expected, ResourceStore, SearchPage, StoreError, StoredResource, VersionPage, WriteError, WriteOp,
};

use crate::conn::{all, each, exec, one, values};
use crate::prepared::{PreparedOp, PreparedPut, Versioned};
use crate::search::{order_sql, where_sql, write_index, Bind, Dialect, Liveness, Sql};
use crate::{DbError, SqliteDb};

pub(crate) fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

// Statements both backends run as they are (`$n` placeholders, `TRUE`/`FALSE`).

/// A resource's patient compartments.
pub(crate) const COMPARTMENTS: &str =
    "SELECT patient_id FROM resource_compartments WHERE resource_type = $1 AND id = $2 ORDER BY patient_id";
/// One version (vread).
pub(crate) const VERSION: &str = "SELECT content, version_id, last_updated, deleted FROM resource_versions \
     WHERE resource_type = $1 AND id = $2 AND version_id = $3";
/// Every version of a resource, newest first.
pub(crate) const VERSIONS: &str = "SELECT content, version_id, last_updated, deleted FROM resource_versions \
     WHERE resource_type = $1 AND id = $2 ORDER BY version_id DESC";
/// A new row of `resource_versions` of a live version.
pub(crate) const INSERT_VERSION: &str =
    "INSERT INTO resource_versions (resource_type, id, version_id, last_updated, deleted, content) \
     VALUES ($1, $2, $3, $4, FALSE, $5)";
/// A new row of `resource_versions` of a deletion.
pub(crate) const INSERT_DELETION: &str =
    "INSERT INTO resource_versions (resource_type, id, version_id, last_updated, deleted, content) \
     VALUES ($1, $2, $3, $4, TRUE, '')";
/// A resource's current row becomes a deletion.
pub(crate) const MARK_DELETED: &str =
    "UPDATE resources SET version_id = $1, last_updated = $2, deleted = TRUE, content = '' WHERE resource_type = $3 AND id = $4";
pub(crate) const DELETE_COMPARTMENTS: &str = "DELETE FROM resource_compartments WHERE resource_type = $1 AND id = $2";
pub(crate) const INSERT_COMPARTMENT: &str =
    "INSERT INTO resource_compartments (patient_id, resource_type, id) VALUES ($1, $2, $3)";
pub(crate) const COUNT: &str = "SELECT COUNT(*) FROM resources";
/// Patients by name (`sort_key` is the folded `family, given`): count, then a page.
pub(crate) const PATIENTS_COUNT: &str =
    "SELECT COUNT(*) FROM resources WHERE resource_type = 'Patient' AND deleted = FALSE AND sort_key LIKE $1 ESCAPE '\\'";
pub(crate) const PATIENTS_PAGE: &str =
    "SELECT content FROM resources WHERE resource_type = 'Patient' AND deleted = FALSE AND sort_key LIKE $1 ESCAPE '\\' \
     ORDER BY sort_key, id LIMIT $2 OFFSET $3";
/// A patient's live encounters, newest first.
pub(crate) const ENCOUNTERS: &str = "SELECT r.content FROM resource_compartments c \
     JOIN resources r ON r.resource_type = c.resource_type AND r.id = c.id \
     WHERE c.patient_id = $1 AND c.resource_type = 'Encounter' AND r.deleted = FALSE ORDER BY r.sort_key DESC NULLS LAST, r.id";

/// The type-history rows of the versions of candidates `r` (the `WHERE` follows).
pub(crate) const TYPE_HISTORY_FROM: &str =
    "FROM resource_versions v JOIN resources r ON r.resource_type = v.resource_type AND r.id = v.id WHERE ";
pub(crate) const TYPE_HISTORY_ORDER: &str = " ORDER BY v.last_updated DESC, v.id, v.version_id DESC";

/// The `LIKE` pattern of patients whose name contains `name` (folded like the sort key).
pub(crate) fn name_pattern(name: &str) -> String {
    let escaped: String = name
        .trim()
        .to_lowercase()
        .chars()
        .flat_map(|c| match c {
            '%' | '_' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    format!("%{escaped}%")
}

/// The resource type and id of a resource to store.
pub(crate) fn type_and_id(resource: &Value) -> Result<(&str, &str), StoreError> {
    match (resource.get("resourceType").and_then(Value::as_str), resource.get("id").and_then(Value::as_str)) {
        (Some(ty), Some(id)) => Ok((ty, id)),
        _ => Err(StoreError("a resource without resourceType or id".into())),
    }
}

/// The JSON stored for a new version: the resource with its new `meta`, serialised from
/// borrowed members (in the same key order as a `serde_json::Map`) instead of a copy of the
/// whole tree.
pub(crate) fn versioned_json(resource: &Value, version: i64, now: &str) -> Result<String, StoreError> {
    Versioned::new(resource, now)?.json(version)
}

/// The index rows of a version stored at `now`: its search values and `_lastUpdated`.
pub(crate) fn version_index(resource: &Value, now: &str) -> Vec<IndexEntry> {
    let mut entries = index_entries(resource);
    if let Some((low, high)) = date_range(now) {
        entries.push(IndexEntry { param: "_lastUpdated", value: IndexValue::Date { low, high } });
    }
    entries
}

/// The key a resource is listed by: `family, given` for a Patient, the date for clinical data.
pub(crate) fn sort_key(resource: &Value) -> Option<String> {
    match resource.get("resourceType")?.as_str()? {
        "Patient" | "Practitioner" => {
            let name = resource.get("name")?.get(0)?;
            let family = name.get("family").and_then(Value::as_str).unwrap_or_default();
            let given: Vec<&str> = name
                .get("given")
                .and_then(Value::as_array)
                .map(|g| g.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            Some(format!("{family}, {}", given.join(" ")).to_lowercase())
        }
        "Encounter" => resource.pointer("/period/start")?.as_str().map(str::to_owned),
        _ => ["effectiveDateTime", "onsetDateTime", "authoredOn", "recordedDate", "date"]
            .iter()
            .find_map(|k| resource.get(*k)?.as_str().map(str::to_owned)),
    }
}

pub(crate) fn parse_all(rows: Vec<(String,)>) -> Result<Vec<Value>, StoreError> {
    rows.into_iter().map(|(json,)| serde_json::from_str(&json).map_err(err)).collect()
}

type VersionRow = (String, i64, String, i64);

/// A stored version as the backends read it: content, version, lastUpdated, deleted.
pub(crate) type Version = (String, i64, String, bool);

fn version((json, version_id, last_updated, deleted): VersionRow) -> Version {
    (json, version_id, last_updated, deleted != 0)
}

/// The current version of a resource and its patient compartments (a JSON array), in one
/// statement: a point read is one read transaction, not two (the read loop spent 6% on the
/// second statement).
const CURRENT_WITH_COMPARTMENTS: &str = "SELECT r.content, r.version_id, r.last_updated, r.deleted, \
     (SELECT json_group_array(c.patient_id) FROM resource_compartments c \
      WHERE c.resource_type = r.resource_type AND c.id = r.id) \
     FROM resources r WHERE r.resource_type = ?1 AND r.id = ?2";

/// The compartments of [`CURRENT_WITH_COMPARTMENTS`], sorted as [`COMPARTMENTS`] returns them.
fn compartment_list(json: &str) -> rusqlite::Result<Vec<String>> {
    let mut patients: Vec<String> = serde_json::from_str(json)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, Box::new(e)))?;
    patients.sort_unstable();
    Ok(patients)
}

fn compartments(conn: &Connection, resource_type: &str, id: &str) -> rusqlite::Result<Vec<String>> {
    let rows: Vec<(String,)> = all(conn, COMPARTMENTS, &[&resource_type, &id])?;
    Ok(rows.into_iter().map(|(p,)| p).collect())
}

pub(crate) fn stored(
    resource_type: &str,
    id: &str,
    (json, version_id, last_updated, deleted): Version,
    compartments: Vec<String>,
) -> StoredResource {
    StoredResource {
        resource_type: resource_type.to_owned(),
        id: id.to_owned(),
        json,
        version_id,
        last_updated,
        deleted,
        compartments,
    }
}

/// The current (version, deleted) of a resource inside a write transaction.
fn current(conn: &Connection, resource_type: &str, id: &str) -> rusqlite::Result<Option<(i64, bool)>> {
    let row: Option<(i64, i64)> = one(
        conn,
        "SELECT version_id, deleted FROM resources WHERE resource_type = ? AND id = ?",
        &[&resource_type, &id],
    )?;
    Ok(row.map(|(v, d)| (v, d != 0)))
}

pub(crate) fn check_expected(current: Option<(i64, bool)>, expected: Expected) -> Result<(), WriteError> {
    let live = current.filter(|(_, deleted)| !deleted).map(|(v, _)| v);
    match (expected, live) {
        (Expected::Any, _) | (Expected::Absent, None) => Ok(()),
        (Expected::Version(v), Some(c)) if v == c => Ok(()),
        (_, live) => Err(WriteError::Conflict(live)),
    }
}

/// Writes one new version (current row, history row, compartments) inside a transaction.
fn write_version(conn: &Connection, put: &PreparedPut, version: i64, now: &str) -> Result<StoredResource, StoreError> {
    // A first version has no index rows or compartments to replace.
    let fresh = version == 1;
    let (ty, id) = (put.ty.as_str(), put.id.as_str());
    let json = put.versioned.json(version)?;
    exec(
        conn,
        "INSERT INTO resources (resource_type, id, version_id, last_updated, deleted, sort_key, content) \
         VALUES (?, ?, ?, ?, 0, ?, ?) ON CONFLICT (resource_type, id) DO UPDATE SET version_id = excluded.version_id, \
         last_updated = excluded.last_updated, deleted = 0, sort_key = excluded.sort_key, content = excluded.content",
        &[&ty, &id, &version, &now, &put.sort_key, &json],
    )
    .map_err(err)?;
    exec(conn, INSERT_VERSION, &[&ty, &id, &version, &now, &json]).map_err(err)?;
    if !fresh {
        exec(conn, DELETE_COMPARTMENTS, &[&ty, &id]).map_err(err)?;
    }
    write_index(conn, ty, id, &put.entries, !fresh).map_err(err)?;
    for p in &put.patients {
        exec(conn, INSERT_COMPARTMENT, &[p, &ty, &id]).map_err(err)?;
    }
    Ok(stored(ty, id, (json, version, now.to_owned(), false), put.patients.clone()))
}

/// A write that failed (or the database), as the writer thread reports it for a FHIR write.
impl From<DbError> for WriteError {
    fn from(e: DbError) -> WriteError {
        WriteError::Store(err(e))
    }
}

/// A Bundle transaction's failure: the index of the entry that failed, and why.
struct BundleFailure(usize, WriteError);

impl From<DbError> for BundleFailure {
    fn from(e: DbError) -> BundleFailure {
        BundleFailure(0, WriteError::Store(err(e)))
    }
}

/// Reads the `SELECT r.content …` page of `sql` one row at a time, counting bytes: a page
/// never holds more than `max_bytes`.
fn content_page(conn: &Connection, sql: &Sql, total: i64, max_bytes: usize) -> rusqlite::Result<SearchPage> {
    let mut stmt = conn.prepare(&sql.text)?;
    let (mut resources, mut bytes, mut over_budget) = (Vec::new(), 0usize, false);
    each(&mut stmt, &values(&sql.binds), |(json,): (String,)| {
        bytes += json.len();
        if bytes > max_bytes {
            over_budget = true;
            return ControlFlow::Break(());
        }
        resources.push(json);
        ControlFlow::Continue(())
    })?;
    Ok(SearchPage { resources, total, over_budget })
}

/// The number the `SELECT COUNT(*) …` of `sql` returns.
fn count_of(conn: &Connection, sql: &Sql) -> rusqlite::Result<i64> {
    let mut stmt = conn.prepare(&sql.text)?;
    let rows: Vec<(i64,)> = crate::conn::query_all(&mut stmt, &values(&sql.binds))?;
    Ok(rows.first().map_or(0, |(n,)| *n))
}

/// Every version of a resource, newest first, within `max_bytes`.
fn versions_page(conn: &Connection, resource_type: &str, id: &str, max_bytes: usize) -> rusqlite::Result<VersionPage> {
    let patients = compartments(conn, resource_type, id)?;
    let mut stmt = conn.prepare_cached(VERSIONS)?;
    let (mut versions, mut bytes, mut over_budget) = (Vec::new(), 0usize, false);
    each(&mut stmt, &[&resource_type, &id], |row: VersionRow| {
        bytes += row.0.len();
        if bytes > max_bytes {
            over_budget = true;
            return ControlFlow::Break(());
        }
        versions.push(stored(resource_type, id, version(row), patients.clone()));
        ControlFlow::Continue(())
    })?;
    Ok(VersionPage { total: versions.len() as i64, versions, over_budget })
}

impl ResourceStore for SqliteDb {
    async fn search(
        &self,
        resource_type: &str,
        request: &SearchRequest,
        access: &[Constraint],
    ) -> Result<SearchPage, StoreError> {
        let mut filter = Sql::new(Dialect::Sqlite);
        where_sql(&mut filter, resource_type, &request.clauses, access, Liveness::Live);
        let mut count = Sql::new(Dialect::Sqlite);
        count.push("SELECT COUNT(*) FROM resources r WHERE ").push(&filter.text);
        count.binds = filter.binds.clone();
        let only_count = request.summary_count || request.count == 0;
        order_sql(&mut filter, request);
        let mut page = Sql::new(Dialect::Sqlite);
        page.push(&format!(
            "SELECT r.content FROM resources r WHERE {} LIMIT {} OFFSET {}",
            filter.text, request.count, request.offset
        ));
        page.binds = filter.binds;
        let max_bytes = request.max_bytes;
        // A search reads for milliseconds: on the blocking pool, off the runtime's workers.
        self.read
            .read_blocking(move |conn| {
                let total = count_of(conn, &count)?;
                if only_count {
                    return Ok(SearchPage { resources: Vec::new(), total, over_budget: false });
                }
                content_page(conn, &page, total, max_bytes)
            })
            .await
            .map_err(err)
    }

    async fn type_history(
        &self,
        resource_type: &str,
        access: &[Constraint],
        count: i64,
        offset: i64,
        max_bytes: usize,
    ) -> Result<VersionPage, StoreError> {
        let mut filter = Sql::new(Dialect::Sqlite);
        where_sql(&mut filter, resource_type, &[], access, Liveness::AnyState);
        let from = format!("{TYPE_HISTORY_FROM}{}", filter.text);
        let count_sql = format!("SELECT COUNT(*) {from}");
        let page_sql = format!(
            "SELECT v.id, v.content, v.version_id, v.last_updated, v.deleted {from}{TYPE_HISTORY_ORDER} LIMIT {count} OFFSET {offset}"
        );
        let (binds, resource_type) = (filter.binds, resource_type.to_owned());
        self.read
            .read_blocking(move |conn| {
                let args = values(&binds);
                let mut stmt = conn.prepare(&count_sql)?;
                let total = crate::conn::query_all::<(i64,)>(&mut stmt, &args)?.first().map_or(0, |(n,)| *n);
                let mut stmt = conn.prepare(&page_sql)?;
                let (mut versions, mut bytes, mut over_budget) = (Vec::new(), 0usize, false);
                each(
                    &mut stmt,
                    &args,
                    |(id, json, version, last_updated, deleted): (String, String, i64, String, i64)| {
                        bytes += json.len();
                        if bytes > max_bytes {
                            over_budget = true;
                            return ControlFlow::Break(());
                        }
                        versions.push(stored(
                            &resource_type,
                            &id,
                            (json, version, last_updated, deleted != 0),
                            Vec::new(),
                        ));
                        ControlFlow::Continue(())
                    },
                )?;
                Ok(VersionPage { versions, total, over_budget })
            })
            .await
            .map_err(err)
    }

    async fn matches(&self, resource_type: &str, id: &str, access: &[Constraint]) -> Result<bool, StoreError> {
        let mut sql = Sql::new(Dialect::Sqlite);
        sql.push("SELECT COUNT(*) FROM resources r WHERE r.id = ").bind(Bind::Text(id.to_owned())).push(" AND ");
        where_sql(&mut sql, resource_type, &[], access, Liveness::Live);
        // Driven by the id (one row): a point read.
        Ok(self.read.read(|conn| count_of(conn, &sql)).map_err(err)? > 0)
    }

    async fn read(&self, resource_type: &str, id: &str) -> Result<Option<StoredResource>, StoreError> {
        self.read
            .read(|conn| {
                let row: Option<(String, i64, String, i64, String)> =
                    one(conn, CURRENT_WITH_COMPARTMENTS, &[&resource_type, &id])?;
                row.map(|(json, version_id, last_updated, deleted, patients)| {
                    let patients = compartment_list(&patients)?;
                    Ok(stored(resource_type, id, version((json, version_id, last_updated, deleted)), patients))
                })
                .transpose()
            })
            .map_err(err)
    }

    async fn vread(
        &self,
        resource_type: &str,
        id: &str,
        version_id: i64,
    ) -> Result<Option<StoredResource>, StoreError> {
        self.read
            .read(|conn| {
                let row: Option<VersionRow> = one(conn, VERSION, &[&resource_type, &id, &version_id])?;
                row.map(|row| Ok(stored(resource_type, id, version(row), compartments(conn, resource_type, id)?)))
                    .transpose()
            })
            .map_err(err)
    }

    async fn history(&self, resource_type: &str, id: &str, max_bytes: usize) -> Result<VersionPage, StoreError> {
        let (resource_type, id) = (resource_type.to_owned(), id.to_owned());
        self.read.read_blocking(move |conn| versions_page(conn, &resource_type, &id, max_bytes)).await.map_err(err)
    }

    async fn put(&self, resource: &Value, expected: Expected, now: &str) -> Result<StoredResource, WriteError> {
        // Prepared here: the job owns what it writes without a copy of the JSON tree.
        let (put, now) = (PreparedPut::new(resource, now)?, now.to_owned());
        self.writer.write(move |conn| put_in(conn, &put, expected, &now)).await
    }

    async fn delete(
        &self,
        resource_type: &str,
        id: &str,
        expected: Expected,
        now: &str,
    ) -> Result<StoredResource, WriteError> {
        let (resource_type, id, now) = (resource_type.to_owned(), id.to_owned(), now.to_owned());
        self.writer.write(move |conn| delete_in(conn, &resource_type, &id, expected, &now)).await
    }

    async fn transaction(&self, ops: &[WriteOp], now: &str) -> Result<Vec<StoredResource>, (usize, WriteError)> {
        let prepared = ops
            .iter()
            .enumerate()
            .map(|(n, op)| PreparedOp::new(op, now).map_err(|e| (n, WriteError::Store(e))))
            .collect::<Result<Vec<_>, _>>()?;
        let now = now.to_owned();
        // One job: every entry or (the job fails, its writes are rolled back) none.
        self.writer
            .write(move |conn| {
                let mut out = Vec::with_capacity(prepared.len());
                for (n, op) in prepared.iter().enumerate() {
                    let result = match op {
                        PreparedOp::Put(put, expected) => put_in(conn, put, *expected, &now),
                        PreparedOp::Delete(resource_type, id, expected) => {
                            delete_in(conn, resource_type, id, *expected, &now)
                        }
                    };
                    out.push(result.map_err(|e| BundleFailure(n, e))?);
                }
                Ok(out)
            })
            .await
            .map_err(|BundleFailure(n, e)| (n, e))
    }

    async fn put_all(&self, resources: Vec<Value>, now: &str) -> Result<usize, StoreError> {
        let mut writer = self.bulk_writer().await?;
        let stored = writer.put(crate::bulk::BulkBatch::prepare(resources, now)?).await?;
        writer.commit().await?;
        Ok(stored)
    }

    async fn count(&self) -> Result<i64, StoreError> {
        // A scan of every resource: off the runtime's workers.
        self.read.read_blocking(|conn| Ok(one::<(i64,)>(conn, COUNT, &[])?.map_or(0, |(n,)| n))).await.map_err(err)
    }

    async fn search_patients(&self, name: &str, offset: i64, limit: i64) -> Result<(Vec<Value>, i64), StoreError> {
        let pattern = name_pattern(name);
        let (rows, total) = self
            .read
            .read_blocking(move |conn| {
                let (total,): (i64,) = one(conn, PATIENTS_COUNT, &[&pattern])?.unwrap_or((0,));
                let rows: Vec<(String,)> = all(conn, PATIENTS_PAGE, &[&pattern, &limit, &offset])?;
                Ok((rows, total))
            })
            .await
            .map_err(err)?;
        Ok((parse_all(rows)?, total))
    }

    async fn encounters_of(&self, patient_id: &str) -> Result<Vec<Value>, StoreError> {
        let patient_id = patient_id.to_owned();
        let rows: Vec<(String,)> =
            self.read.read_blocking(move |conn| all(conn, ENCOUNTERS, &[&patient_id])).await.map_err(err)?;
        parse_all(rows)
    }
}

/// Stores a new version inside a transaction if the current state is `expected`.
fn put_in(conn: &Connection, put: &PreparedPut, expected: Expected, now: &str) -> Result<StoredResource, WriteError> {
    let current = current(conn, &put.ty, &put.id).map_err(err)?;
    check_expected(current, expected)?;
    Ok(write_version(conn, put, current.map_or(1, |(v, _)| v + 1), now)?)
}

/// Deletes inside a transaction (a new, deleted version) if the current state is `expected`.
fn delete_in(
    conn: &Connection,
    resource_type: &str,
    id: &str,
    expected: Expected,
    now: &str,
) -> Result<StoredResource, WriteError> {
    let current = current(conn, resource_type, id).map_err(err)?;
    check_expected(current, expected)?;
    let version = current.map_or(1, |(v, _)| v + 1);
    exec(conn, MARK_DELETED, &[&version, &now, &resource_type, &id]).map_err(err)?;
    exec(conn, INSERT_DELETION, &[&resource_type, &id, &version, &now]).map_err(err)?;
    write_index(conn, resource_type, id, &[], true).map_err(err)?;
    let patients = compartments(conn, resource_type, id).map_err(err)?;
    Ok(stored(resource_type, id, (String::new(), version, now.to_owned(), true), patients))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn sort_keys() {
        let p = json!({"resourceType": "Patient", "name": [{"family": "Shaw", "given": ["Amy", "V."]}]});
        assert_eq!(sort_key(&p).as_deref(), Some("shaw, amy v."));
        let e = json!({"resourceType": "Encounter", "period": {"start": "2026-01-02T09:00:00Z"}});
        assert_eq!(sort_key(&e).as_deref(), Some("2026-01-02T09:00:00Z"));
    }

    #[test]
    fn expectations() {
        assert!(check_expected(None, Expected::Absent).is_ok());
        assert!(check_expected(Some((3, true)), Expected::Absent).is_ok(), "a deleted resource may be re-created");
        assert!(matches!(check_expected(Some((3, false)), Expected::Absent), Err(WriteError::Conflict(Some(3)))));
        assert!(check_expected(Some((3, false)), Expected::Version(3)).is_ok());
        assert!(matches!(check_expected(Some((4, false)), Expected::Version(3)), Err(WriteError::Conflict(Some(4)))));
        assert!(matches!(check_expected(None, Expected::Version(1)), Err(WriteError::Conflict(None))));
    }
}
