//! FHIR resources: the current version of each as JSON with a sort key, every version, and the
//! patient compartments each resource is in.

use futures_util::TryStreamExt;
use serde_json::{json, Value};
use smartlaunch_fhir::compartment::patients_of;
use smartlaunch_fhir::search::extract::{index_entries, IndexEntry, IndexValue};
use smartlaunch_fhir::search::normalize::date_range;
use smartlaunch_fhir::search::query::SearchRequest;
use smartlaunch_fhir::search::Constraint;
use smartlaunch_fhir::store::{
    Expected, ResourceStore, SearchPage, StoreError, StoredResource, VersionPage, WriteError, WriteOp,
};
use sqlx::{Sqlite, Transaction};

use crate::search::{order_sql, where_sql, write_index, Bind, Dialect, Liveness, Sql};
use crate::SqliteDb;

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
    let meta = match resource.get("meta") {
        Some(Value::Object(meta)) => {
            let mut meta = meta.clone();
            meta.insert("versionId".into(), version.to_string().into());
            meta.insert("lastUpdated".into(), now.into());
            Value::Object(meta)
        }
        _ => json!({ "versionId": version.to_string(), "lastUpdated": now }),
    };
    let mut members: std::collections::BTreeMap<&str, &Value> =
        resource.as_object().into_iter().flatten().map(|(k, v)| (k.as_str(), v)).collect();
    members.insert("meta", &meta);
    serde_json::to_string(&members).map_err(err)
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

async fn compartments(
    executor: impl sqlx::Executor<'_, Database = Sqlite>,
    resource_type: &str,
    id: &str,
) -> Result<Vec<String>, StoreError> {
    let rows: Vec<(String,)> =
        sqlx::query_as(COMPARTMENTS).bind(resource_type).bind(id).fetch_all(executor).await.map_err(err)?;
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
async fn current(
    tx: &mut Transaction<'_, Sqlite>,
    resource_type: &str,
    id: &str,
) -> Result<Option<(i64, bool)>, StoreError> {
    let row: Option<(i64, i64)> =
        sqlx::query_as("SELECT version_id, deleted FROM resources WHERE resource_type = ? AND id = ?")
            .bind(resource_type)
            .bind(id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(err)?;
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
async fn write_version(
    tx: &mut Transaction<'_, Sqlite>,
    resource: &Value,
    version: i64,
    now: &str,
) -> Result<StoredResource, StoreError> {
    // A first version has no index rows or compartments to replace.
    let fresh = version == 1;
    let (ty, id) = type_and_id(resource)?;
    let json = versioned_json(resource, version, now)?;
    sqlx::query(
        "INSERT INTO resources (resource_type, id, version_id, last_updated, deleted, sort_key, content) \
         VALUES (?, ?, ?, ?, 0, ?, ?) ON CONFLICT (resource_type, id) DO UPDATE SET version_id = excluded.version_id, \
         last_updated = excluded.last_updated, deleted = 0, sort_key = excluded.sort_key, content = excluded.content",
    )
    .bind(ty)
    .bind(id)
    .bind(version)
    .bind(now)
    .bind(sort_key(resource))
    .bind(&json)
    .execute(&mut **tx)
    .await
    .map_err(err)?;
    sqlx::query(INSERT_VERSION)
        .bind(ty)
        .bind(id)
        .bind(version)
        .bind(now)
        .bind(&json)
        .execute(&mut **tx)
        .await
        .map_err(err)?;
    if !fresh {
        sqlx::query(DELETE_COMPARTMENTS).bind(ty).bind(id).execute(&mut **tx).await.map_err(err)?;
    }
    write_index(tx, ty, id, &version_index(resource, now), !fresh).await?;
    let patients = patients_of(resource);
    for p in &patients {
        sqlx::query(INSERT_COMPARTMENT).bind(p).bind(ty).bind(id).execute(&mut **tx).await.map_err(err)?;
    }
    Ok(stored(ty, id, (json, version, now.to_owned(), false), patients))
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
        let count_sql = format!("SELECT COUNT(*) FROM resources r WHERE {}", filter.text);
        let (total,): (i64,) =
            sqlx::query_as_with(&count_sql, filter.arguments()).fetch_one(&self.read).await.map_err(err)?;
        if request.summary_count || request.count == 0 {
            return Ok(SearchPage { resources: Vec::new(), total, over_budget: false });
        }
        order_sql(&mut filter, request);
        let page_sql = format!(
            "SELECT r.content FROM resources r WHERE {} LIMIT {} OFFSET {}",
            filter.text, request.count, request.offset
        );
        let args = filter.arguments();
        // Rows are taken one at a time and counted: a page never holds more than the budget.
        let mut rows = sqlx::query_as_with::<_, (String,), _>(&page_sql, args).fetch(&self.read);
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
        let mut filter = Sql::new(Dialect::Sqlite);
        where_sql(&mut filter, resource_type, &[], access, Liveness::AnyState);
        let from = format!("{TYPE_HISTORY_FROM}{}", filter.text);
        let (total,): (i64,) = sqlx::query_as_with(&format!("SELECT COUNT(*) {from}"), filter.arguments())
            .fetch_one(&self.read)
            .await
            .map_err(err)?;
        let sql = format!(
            "SELECT v.id, v.content, v.version_id, v.last_updated, v.deleted {from}{TYPE_HISTORY_ORDER} LIMIT {count} OFFSET {offset}"
        );
        let mut rows =
            sqlx::query_as_with::<_, (String, String, i64, String, i64), _>(&sql, filter.arguments()).fetch(&self.read);
        let (mut versions, mut bytes) = (Vec::new(), 0usize);
        while let Some((id, json, version, last_updated, deleted)) = rows.try_next().await.map_err(err)? {
            bytes += json.len();
            if bytes > max_bytes {
                return Ok(VersionPage { versions, total, over_budget: true });
            }
            versions.push(stored(resource_type, &id, (json, version, last_updated, deleted != 0), Vec::new()));
        }
        Ok(VersionPage { versions, total, over_budget: false })
    }

    async fn matches(&self, resource_type: &str, id: &str, access: &[Constraint]) -> Result<bool, StoreError> {
        let mut sql = Sql::new(Dialect::Sqlite);
        sql.push("SELECT COUNT(*) FROM resources r WHERE r.id = ").bind(Bind::Text(id.to_owned())).push(" AND ");
        where_sql(&mut sql, resource_type, &[], access, Liveness::Live);
        let (text, args) = sql.into_parts();
        let (n,): (i64,) = sqlx::query_as_with(&text, args).fetch_one(&self.read).await.map_err(err)?;
        Ok(n > 0)
    }

    async fn read(&self, resource_type: &str, id: &str) -> Result<Option<StoredResource>, StoreError> {
        let row: Option<VersionRow> = sqlx::query_as(
            "SELECT content, version_id, last_updated, deleted FROM resources WHERE resource_type = ? AND id = ?",
        )
        .bind(resource_type)
        .bind(id)
        .fetch_optional(&self.read)
        .await
        .map_err(err)?;
        match row {
            Some(row) => {
                Ok(Some(stored(resource_type, id, version(row), compartments(&self.read, resource_type, id).await?)))
            }
            None => Ok(None),
        }
    }

    async fn vread(
        &self,
        resource_type: &str,
        id: &str,
        version_id: i64,
    ) -> Result<Option<StoredResource>, StoreError> {
        let row: Option<VersionRow> = sqlx::query_as(VERSION)
            .bind(resource_type)
            .bind(id)
            .bind(version_id)
            .fetch_optional(&self.read)
            .await
            .map_err(err)?;
        match row {
            Some(row) => {
                Ok(Some(stored(resource_type, id, version(row), compartments(&self.read, resource_type, id).await?)))
            }
            None => Ok(None),
        }
    }

    async fn history(&self, resource_type: &str, id: &str, max_bytes: usize) -> Result<VersionPage, StoreError> {
        let patients = compartments(&self.read, resource_type, id).await?;
        let mut rows = sqlx::query_as::<_, VersionRow>(VERSIONS).bind(resource_type).bind(id).fetch(&self.read);
        let (mut versions, mut bytes) = (Vec::new(), 0usize);
        while let Some(row) = rows.try_next().await.map_err(err)? {
            bytes += row.0.len();
            if bytes > max_bytes {
                return Ok(VersionPage { total: versions.len() as i64, versions, over_budget: true });
            }
            versions.push(stored(resource_type, id, version(row), patients.clone()));
        }
        Ok(VersionPage { total: versions.len() as i64, versions, over_budget: false })
    }

    async fn put(&self, resource: &Value, expected: Expected, now: &str) -> Result<StoredResource, WriteError> {
        let mut tx = self.write.begin().await.map_err(err)?;
        let written = put_in(&mut tx, resource, expected, now).await?;
        tx.commit().await.map_err(err)?;
        Ok(written)
    }

    async fn delete(
        &self,
        resource_type: &str,
        id: &str,
        expected: Expected,
        now: &str,
    ) -> Result<StoredResource, WriteError> {
        let mut tx = self.write.begin().await.map_err(err)?;
        let deleted = delete_in(&mut tx, resource_type, id, expected, now).await?;
        tx.commit().await.map_err(err)?;
        Ok(deleted)
    }

    async fn transaction(&self, ops: &[WriteOp], now: &str) -> Result<Vec<StoredResource>, (usize, WriteError)> {
        let mut tx = self.write.begin().await.map_err(|e| (0, WriteError::Store(err(e))))?;
        let mut out = Vec::with_capacity(ops.len());
        for (n, op) in ops.iter().enumerate() {
            let result = match op {
                WriteOp::Put { resource, expected } => put_in(&mut tx, resource, *expected, now).await,
                WriteOp::Delete { resource_type, id, expected } => {
                    delete_in(&mut tx, resource_type, id, *expected, now).await
                }
            };
            match result {
                Ok(stored) => out.push(stored),
                // Dropping the transaction rolls it back: nothing of the Bundle is kept.
                Err(e) => return Err((n, e)),
            }
        }
        tx.commit().await.map_err(|e| (ops.len(), WriteError::Store(err(e))))?;
        Ok(out)
    }

    async fn put_all(&self, resources: Vec<Value>, now: &str) -> Result<usize, StoreError> {
        let mut writer = self.bulk_writer().await?;
        let stored = writer.put(crate::bulk::BulkBatch::prepare(resources, now)?).await?;
        writer.commit().await?;
        Ok(stored)
    }

    async fn count(&self) -> Result<i64, StoreError> {
        let (n,): (i64,) = sqlx::query_as(COUNT).fetch_one(&self.read).await.map_err(err)?;
        Ok(n)
    }

    async fn search_patients(&self, name: &str, offset: i64, limit: i64) -> Result<(Vec<Value>, i64), StoreError> {
        let pattern = name_pattern(name);
        let (total,): (i64,) =
            sqlx::query_as(PATIENTS_COUNT).bind(&pattern).fetch_one(&self.read).await.map_err(err)?;
        let rows: Vec<(String,)> = sqlx::query_as(PATIENTS_PAGE)
            .bind(&pattern)
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.read)
            .await
            .map_err(err)?;
        Ok((parse_all(rows)?, total))
    }

    async fn encounters_of(&self, patient_id: &str) -> Result<Vec<Value>, StoreError> {
        let rows: Vec<(String,)> =
            sqlx::query_as(ENCOUNTERS).bind(patient_id).fetch_all(&self.read).await.map_err(err)?;
        parse_all(rows)
    }
}

/// Stores a new version inside a transaction if the current state is `expected`.
async fn put_in(
    tx: &mut Transaction<'_, Sqlite>,
    resource: &Value,
    expected: Expected,
    now: &str,
) -> Result<StoredResource, WriteError> {
    let (ty, id) = (
        resource.get("resourceType").and_then(Value::as_str).unwrap_or_default(),
        resource.get("id").and_then(Value::as_str).unwrap_or_default(),
    );
    let current = current(tx, ty, id).await?;
    check_expected(current, expected)?;
    Ok(write_version(tx, resource, current.map_or(1, |(v, _)| v + 1), now).await?)
}

/// Deletes inside a transaction (a new, deleted version) if the current state is `expected`.
async fn delete_in(
    tx: &mut Transaction<'_, Sqlite>,
    resource_type: &str,
    id: &str,
    expected: Expected,
    now: &str,
) -> Result<StoredResource, WriteError> {
    let current = current(tx, resource_type, id).await?;
    check_expected(current, expected)?;
    let version = current.map_or(1, |(v, _)| v + 1);
    sqlx::query(MARK_DELETED)
        .bind(version)
        .bind(now)
        .bind(resource_type)
        .bind(id)
        .execute(&mut **tx)
        .await
        .map_err(err)?;
    sqlx::query(INSERT_DELETION)
        .bind(resource_type)
        .bind(id)
        .bind(version)
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(err)?;
    write_index(tx, resource_type, id, &[], true).await?;
    let patients = compartments(&mut **tx, resource_type, id).await?;
    Ok(stored(resource_type, id, (String::new(), version, now.to_owned(), true), patients))
}

#[cfg(test)]
mod tests {
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
