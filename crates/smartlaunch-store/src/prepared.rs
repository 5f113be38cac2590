//! FHIR writes made ready before they reach the SQLite writer thread (issue 10): a job there
//! must own what it writes, and copying the caller's JSON tree would double the memory of a
//! large resource (a 300,000-object create: +200 MB).  So everything that does not depend on
//! the new version number (the stored JSON around `meta.versionId`, index rows, compartments,
//! sort key) is computed here, on the request's task, and the job only adds the number.

use serde_json::{Map, Value};
use smartlaunch_fhir::compartment::patients_of;
use smartlaunch_fhir::search::extract::IndexEntry;
use smartlaunch_fhir::store::{Expected, StoreError, WriteOp};

use crate::resources::{err, sort_key, type_and_id, version_index};

/// A resource's stored JSON but for its version: the members before `meta`, `meta` (without
/// `versionId`), the members after it.  [`Versioned::json`] gives exactly what serialising the
/// resource with its new `meta` gives (members in key order, compact).
pub(crate) struct Versioned {
    before: String,
    meta: Map<String, Value>,
    after: String,
}

impl Versioned {
    pub(crate) fn new(resource: &Value, now: &str) -> Result<Versioned, StoreError> {
        let mut meta = match resource.get("meta") {
            Some(Value::Object(meta)) => meta.clone(),
            _ => Map::new(),
        };
        meta.insert("lastUpdated".into(), now.into());
        let mut members: Vec<(&str, &Value)> =
            resource.as_object().into_iter().flatten().map(|(k, v)| (k.as_str(), v)).collect();
        members.retain(|(k, _)| *k != "meta");
        members.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let split = members.partition_point(|(k, _)| *k < "meta");
        let (mut before, mut after) = (String::from("{"), String::new());
        for (k, v) in &members[..split] {
            before.push_str(&serde_json::to_string(k).map_err(err)?);
            before.push(':');
            before.push_str(&serde_json::to_string(v).map_err(err)?);
            before.push(',');
        }
        before.push_str("\"meta\":");
        for (k, v) in &members[split..] {
            after.push(',');
            after.push_str(&serde_json::to_string(k).map_err(err)?);
            after.push(':');
            after.push_str(&serde_json::to_string(v).map_err(err)?);
        }
        after.push('}');
        Ok(Versioned { before, meta, after })
    }

    /// The stored JSON of version `version`.
    pub(crate) fn json(&self, version: i64) -> Result<String, StoreError> {
        let mut meta = self.meta.clone();
        meta.insert("versionId".into(), version.to_string().into());
        let meta = serde_json::to_string(&meta).map_err(err)?;
        let mut json = String::with_capacity(self.before.len() + meta.len() + self.after.len());
        json.push_str(&self.before);
        json.push_str(&meta);
        json.push_str(&self.after);
        Ok(json)
    }
}

/// A new version of a resource, ready but for its number.
pub(crate) struct PreparedPut {
    pub ty: String,
    pub id: String,
    pub versioned: Versioned,
    pub sort_key: Option<String>,
    pub entries: Vec<IndexEntry>,
    pub patients: Vec<String>,
}

impl PreparedPut {
    pub(crate) fn new(resource: &Value, now: &str) -> Result<PreparedPut, StoreError> {
        let (ty, id) = type_and_id(resource)?;
        Ok(PreparedPut {
            ty: ty.to_owned(),
            id: id.to_owned(),
            versioned: Versioned::new(resource, now)?,
            sort_key: sort_key(resource),
            entries: version_index(resource, now),
            patients: patients_of(resource),
        })
    }
}

/// One entry of a Bundle transaction, ready for the writer.
pub(crate) enum PreparedOp {
    Put(PreparedPut, Expected),
    Delete(String, String, Expected),
}

impl PreparedOp {
    pub(crate) fn new(op: &WriteOp, now: &str) -> Result<PreparedOp, StoreError> {
        Ok(match op {
            WriteOp::Put { resource, expected } => PreparedOp::Put(PreparedPut::new(resource, now)?, *expected),
            WriteOp::Delete { resource_type, id, expected } => {
                PreparedOp::Delete(resource_type.clone(), id.clone(), *expected)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The JSON is byte for byte what serialising the resource with its new `meta` gives.
    #[test]
    fn the_versioned_json_is_the_resource_with_its_new_meta() {
        let now = "2026-01-02T03:04:05Z";
        for resource in [
            json!({"resourceType": "Patient", "id": "p", "active": true, "name": [{"family": "Shaw"}]}),
            json!({"resourceType": "Observation", "id": "o", "meta": {"versionId": "9", "tag": [{"code": "t"}]},
                   "a\"quoted": 1, "zz": null}),
            json!({"id": "x", "resourceType": "Basic", "meta": "not an object"}),
        ] {
            let mut expected = resource.clone();
            let mut meta = match resource.get("meta") {
                Some(Value::Object(m)) => m.clone(),
                _ => Map::new(),
            };
            meta.insert("versionId".into(), "3".into());
            meta.insert("lastUpdated".into(), now.into());
            expected["meta"] = Value::Object(meta);
            assert_eq!(Versioned::new(&resource, now).unwrap().json(3).unwrap(), expected.to_string());
        }
    }
}
