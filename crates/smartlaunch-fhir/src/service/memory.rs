//! An in-memory [`ResourceStore`] for the service's unit tests: every version of every
//! resource in a map behind a mutex, writes checked against [`Expected`] like the real stores,
//! transactions all or nothing.
//!
//! Search subset: clauses and access constraints are evaluated in memory with
//! [`crate::search::eval::matches_all`] (the same semantics as granular scopes), compartments
//! with [`patients_of`]; results come in id order (`_sort` is ignored); `_count`, `_offset`,
//! `_summary=count` and the byte budget are honoured.  Type history admits a resource by its
//! current version (a deleted one by the compartments it was deleted from), as the SQL store.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::{json, Value};

use crate::compartment::patients_of;
use crate::search::eval::matches_all;
use crate::search::query::SearchRequest;
use crate::search::Constraint;
use crate::store::{Expected, ResourceStore, SearchPage, StoreError, StoredResource, VersionPage, WriteError, WriteOp};

/// Every version of one resource (oldest first), and the compartments of its last live version.
#[derive(Debug, Clone, Default)]
struct Versions {
    versions: Vec<StoredResource>,
    compartments: Vec<String>,
}

type Map = BTreeMap<(String, String), Versions>;

#[derive(Debug, Default)]
pub(crate) struct MemoryStore {
    resources: Mutex<Map>,
}

impl MemoryStore {
    fn map(&self) -> std::sync::MutexGuard<'_, Map> {
        self.resources.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current versions of `resource_type` that one of the constraints admits.
    fn admitted(&self, resource_type: &str, access: &[Constraint], live: bool) -> Vec<(StoredResource, Vec<String>)> {
        self.map()
            .iter()
            .filter(|((ty, _), _)| ty == resource_type)
            .filter_map(|(_, v)| Some((v.versions.last()?.clone(), v.compartments.clone())))
            .filter(|(current, compartments)| {
                (!live || !current.deleted) && {
                    let json: Value = serde_json::from_str(&current.json).unwrap_or(Value::Null);
                    access.iter().any(|c| {
                        c.compartment.as_ref().is_none_or(|p| compartments.contains(p))
                            && (c.filter.is_empty() || (!current.deleted && matches_all(&json, &c.filter)))
                    })
                }
            })
            .collect()
    }
}

fn check(current: Option<&StoredResource>, expected: Expected) -> Result<(), WriteError> {
    let live = current.filter(|c| !c.deleted).map(|c| c.version_id);
    match (expected, live) {
        (Expected::Any, _) | (Expected::Absent, None) => Ok(()),
        (Expected::Version(v), Some(c)) if v == c => Ok(()),
        (_, live) => Err(WriteError::Conflict(live)),
    }
}

fn put_in(map: &mut Map, resource: &Value, expected: Expected, now: &str) -> Result<StoredResource, WriteError> {
    let (Some(ty), Some(id)) =
        (resource.get("resourceType").and_then(Value::as_str), resource.get("id").and_then(Value::as_str))
    else {
        return Err(StoreError("a resource without resourceType or id".into()).into());
    };
    let entry = map.entry((ty.to_owned(), id.to_owned())).or_default();
    check(entry.versions.last(), expected)?;
    let version_id = entry.versions.last().map_or(1, |v| v.version_id + 1);
    let mut stored = resource.clone();
    stored["meta"] = json!({ "versionId": version_id.to_string(), "lastUpdated": now });
    entry.compartments = patients_of(resource);
    let written = StoredResource {
        resource_type: ty.to_owned(),
        id: id.to_owned(),
        json: stored.to_string(),
        version_id,
        last_updated: now.to_owned(),
        deleted: false,
        compartments: entry.compartments.clone(),
    };
    entry.versions.push(written.clone());
    Ok(written)
}

fn delete_in(map: &mut Map, ty: &str, id: &str, expected: Expected, now: &str) -> Result<StoredResource, WriteError> {
    let entry = map.entry((ty.to_owned(), id.to_owned())).or_default();
    check(entry.versions.last(), expected)?;
    let version_id = entry.versions.last().map_or(1, |v| v.version_id + 1);
    let written = StoredResource {
        resource_type: ty.to_owned(),
        id: id.to_owned(),
        json: String::new(),
        version_id,
        last_updated: now.to_owned(),
        deleted: true,
        compartments: entry.compartments.clone(),
    };
    entry.versions.push(written.clone());
    Ok(written)
}

/// A version as read: with the resource's current compartments.
fn with_compartments(v: &StoredResource, compartments: &[String]) -> StoredResource {
    StoredResource { compartments: compartments.to_vec(), ..v.clone() }
}

impl ResourceStore for MemoryStore {
    async fn search(
        &self,
        resource_type: &str,
        request: &SearchRequest,
        access: &[Constraint],
    ) -> Result<SearchPage, StoreError> {
        let matches: Vec<String> = self
            .admitted(resource_type, access, true)
            .into_iter()
            .map(|(current, _)| current.json)
            .filter(|json| serde_json::from_str::<Value>(json).is_ok_and(|r| matches_all(&r, &request.clauses)))
            .collect();
        let total = matches.len() as i64;
        if request.summary_count || request.count == 0 {
            return Ok(SearchPage { resources: Vec::new(), total, over_budget: false });
        }
        let (mut resources, mut bytes) = (Vec::new(), 0usize);
        let page = matches.into_iter().skip(usize::try_from(request.offset).unwrap_or(usize::MAX));
        for json in page.take(usize::try_from(request.count).unwrap_or(0)) {
            bytes += json.len();
            if bytes > request.max_bytes {
                return Ok(SearchPage { resources, total, over_budget: true });
            }
            resources.push(json);
        }
        Ok(SearchPage { resources, total, over_budget: false })
    }

    async fn matches(&self, resource_type: &str, id: &str, access: &[Constraint]) -> Result<bool, StoreError> {
        Ok(self.admitted(resource_type, access, true).iter().any(|(current, _)| current.id == id))
    }

    async fn read(&self, resource_type: &str, id: &str) -> Result<Option<StoredResource>, StoreError> {
        let map = self.map();
        let found = map.get(&(resource_type.to_owned(), id.to_owned()));
        Ok(found.and_then(|v| Some(with_compartments(v.versions.last()?, &v.compartments))))
    }

    async fn vread(
        &self,
        resource_type: &str,
        id: &str,
        version_id: i64,
    ) -> Result<Option<StoredResource>, StoreError> {
        let map = self.map();
        let found = map.get(&(resource_type.to_owned(), id.to_owned()));
        Ok(found.and_then(|v| {
            let version = v.versions.iter().find(|s| s.version_id == version_id)?;
            Some(with_compartments(version, &v.compartments))
        }))
    }

    async fn type_history(
        &self,
        resource_type: &str,
        access: &[Constraint],
        count: i64,
        offset: i64,
        max_bytes: usize,
    ) -> Result<VersionPage, StoreError> {
        let admitted: Vec<(String, String)> = self
            .admitted(resource_type, access, false)
            .into_iter()
            .map(|(current, _)| (current.resource_type, current.id))
            .collect();
        let mut all: Vec<StoredResource> = {
            let map = self.map();
            admitted.iter().filter_map(|key| map.get(key)).flat_map(|v| v.versions.iter().cloned()).collect()
        };
        all.sort_by(|a, b| {
            (b.last_updated.as_str(), &a.id, b.version_id).cmp(&(a.last_updated.as_str(), &b.id, a.version_id))
        });
        let total = all.len() as i64;
        let (mut versions, mut bytes) = (Vec::new(), 0usize);
        let page = all.into_iter().skip(usize::try_from(offset).unwrap_or(usize::MAX));
        for v in page.take(usize::try_from(count).unwrap_or(0)) {
            bytes += v.json.len();
            if bytes > max_bytes {
                return Ok(VersionPage { versions, total, over_budget: true });
            }
            versions.push(StoredResource { compartments: Vec::new(), ..v });
        }
        Ok(VersionPage { versions, total, over_budget: false })
    }

    async fn history(&self, resource_type: &str, id: &str, max_bytes: usize) -> Result<VersionPage, StoreError> {
        let map = self.map();
        let Some(v) = map.get(&(resource_type.to_owned(), id.to_owned())) else {
            return Ok(VersionPage { versions: Vec::new(), total: 0, over_budget: false });
        };
        let (mut versions, mut bytes) = (Vec::new(), 0usize);
        for version in v.versions.iter().rev() {
            bytes += version.json.len();
            if bytes > max_bytes {
                return Ok(VersionPage { total: versions.len() as i64, versions, over_budget: true });
            }
            versions.push(with_compartments(version, &v.compartments));
        }
        Ok(VersionPage { total: versions.len() as i64, versions, over_budget: false })
    }

    async fn put(&self, resource: &Value, expected: Expected, now: &str) -> Result<StoredResource, WriteError> {
        put_in(&mut self.map(), resource, expected, now)
    }

    async fn delete(&self, ty: &str, id: &str, expected: Expected, now: &str) -> Result<StoredResource, WriteError> {
        delete_in(&mut self.map(), ty, id, expected, now)
    }

    async fn transaction(&self, ops: &[WriteOp], now: &str) -> Result<Vec<StoredResource>, (usize, WriteError)> {
        let mut map = self.map();
        // Written on a copy, kept only if every write succeeds: all or nothing.
        let mut draft = map.clone();
        let mut out = Vec::with_capacity(ops.len());
        for (n, op) in ops.iter().enumerate() {
            let written = match op {
                WriteOp::Put { resource, expected } => put_in(&mut draft, resource, *expected, now),
                WriteOp::Delete { resource_type, id, expected } => {
                    delete_in(&mut draft, resource_type, id, *expected, now)
                }
            };
            out.push(written.map_err(|e| (n, e))?);
        }
        *map = draft;
        Ok(out)
    }

    async fn put_all(&self, resources: Vec<Value>, now: &str) -> Result<usize, StoreError> {
        let mut map = self.map();
        for r in &resources {
            put_in(&mut map, r, Expected::Any, now).map_err(|e| StoreError(e.to_string()))?;
        }
        Ok(resources.len())
    }

    async fn count(&self) -> Result<i64, StoreError> {
        Ok(self.map().values().filter(|v| !v.versions.is_empty()).count() as i64)
    }

    async fn search_patients(&self, _: &str, _: i64, _: i64) -> Result<(Vec<Value>, i64), StoreError> {
        Err(StoreError("not used by the FHIR service".into()))
    }

    async fn encounters_of(&self, _: &str) -> Result<Vec<Value>, StoreError> {
        Err(StoreError("not used by the FHIR service".into()))
    }
}
