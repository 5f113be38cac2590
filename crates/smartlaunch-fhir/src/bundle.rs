//! Preparing a transaction Bundle (R4 §3.1.0.11): ids for creates, Bundle-local full URLs
//! (`urn:uuid:…`) mapped to them, every reference resolved, every resource checked.  Used by
//! `POST /fhir` and by `smartlaunch import`; access checks and storage are the caller's.

use std::collections::HashMap;

use serde_json::Value;

use crate::validate::{check_resource, check_update_id};

/// What one entry does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryMethod {
    Create,
    Update,
    Delete,
}

/// A validated entry with its final type and id (and resource, references resolved).
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedEntry {
    pub method: EntryMethod,
    pub resource_type: String,
    pub id: String,
    pub resource: Option<Value>,
    /// `request.ifMatch` as a version number.
    pub if_match: Option<i64>,
}

/// `Type/id` → (Type, id).
fn split_url(url: &str) -> Option<(&str, &str)> {
    let (ty, id) = url.trim_start_matches('/').split_once('/')?;
    (!id.is_empty() && !id.contains(['/', '?'])).then_some((ty, id))
}

/// Replaces every `reference` that names a Bundle-local full URL.
fn resolve_references(value: &mut Value, map: &HashMap<String, String>) {
    match value {
        Value::Object(obj) => {
            for (k, v) in obj.iter_mut() {
                match v {
                    Value::String(s) if k == "reference" => {
                        if let Some(target) = map.get(s.as_str()) {
                            *s = target.clone();
                        }
                    }
                    v => resolve_references(v, map),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| resolve_references(v, map)),
        _ => {}
    }
}

/// Prepares the entries of a transaction (or of an imported Bundle).  `new_id` gives the id of
/// each created resource.  Errors name the entry (0-based) and what is wrong with it.
pub fn prepare_transaction(
    mut entries: Vec<Value>,
    mut new_id: impl FnMut() -> String,
) -> Result<Vec<PreparedEntry>, (usize, String)> {
    let mut local: HashMap<String, String> = HashMap::new();
    let mut targets = Vec::with_capacity(entries.len());
    for (n, entry) in entries.iter_mut().enumerate() {
        let method = entry["request"]["method"].as_str().unwrap_or_default().to_owned();
        let url = entry["request"]["url"].as_str().unwrap_or_default().to_owned();
        let (method, ty, id) = match method.as_str() {
            // Bundles without a request (collections, Synthea's older output) are creates.
            "POST" | "" if entry.get("resource").is_some() => {
                let ty = entry["resource"]["resourceType"].as_str().unwrap_or_default().to_owned();
                if !url.is_empty() && url.trim_start_matches('/') != ty {
                    return Err((n, "a POST entry's request.url must be its resource type".into()));
                }
                if entry["request"].get("ifNoneExist").is_some() {
                    return Err((n, "conditional create (ifNoneExist) is not supported in transactions".into()));
                }
                (EntryMethod::Create, ty, new_id())
            }
            "PUT" | "DELETE" => {
                let (ty, id) = split_url(&url).ok_or_else(|| (n, "request.url must be Type/id".to_string()))?;
                let method = if method == "PUT" { EntryMethod::Update } else { EntryMethod::Delete };
                (method, ty.to_owned(), id.to_owned())
            }
            "" => return Err((n, "request.method is required".into())),
            other => return Err((n, format!("{other} is not supported in a transaction (use a batch to read)"))),
        };
        if let Some(full_url) = entry["fullUrl"].as_str() {
            local.insert(full_url.to_owned(), format!("{ty}/{id}"));
        }
        targets.push((method, ty, id));
    }
    let mut prepared = Vec::with_capacity(entries.len());
    for (n, (mut entry, (method, ty, id))) in entries.into_iter().zip(targets).enumerate() {
        let if_match = match entry["request"]["ifMatch"].as_str() {
            Some(m) => Some(
                m.trim_start_matches("W/")
                    .trim_matches('"')
                    .parse::<i64>()
                    .map_err(|_| (n, "request.ifMatch must be an ETag such as W/\"3\"".to_string()))?,
            ),
            None => None,
        };
        let resource = match method {
            EntryMethod::Delete => None,
            _ => {
                let mut resource = entry
                    .get_mut("resource")
                    .map(Value::take)
                    .ok_or_else(|| (n, "the entry has no resource".to_string()))?;
                if method == EntryMethod::Create {
                    resource["id"] = Value::String(id.clone());
                }
                resolve_references(&mut resource, &local);
                check_resource(&resource, &ty).map_err(|e| (n, e.to_string()))?;
                check_update_id(&resource, &id).map_err(|e| (n, e.to_string()))?;
                Some(resource)
            }
        };
        prepared.push(PreparedEntry { method, resource_type: ty, id, resource, if_match });
    }
    Ok(prepared)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn urn_references_are_resolved_to_assigned_ids() {
        let entries = vec![
            json!({"fullUrl": "urn:uuid:a", "resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}}),
            json!({"fullUrl": "urn:uuid:b", "resource": {"resourceType": "Observation", "subject": {"reference": "urn:uuid:a"}},
                   "request": {"method": "POST", "url": "Observation"}}),
            json!({"resource": {"resourceType": "Patient", "id": "x", "link": [{"other": {"reference": "urn:uuid:a"}}]},
                   "request": {"method": "PUT", "url": "Patient/x", "ifMatch": "W/\"2\""}}),
            json!({"request": {"method": "DELETE", "url": "Patient/y"}}),
        ];
        let mut n = 0;
        let prepared = prepare_transaction(entries, || {
            n += 1;
            format!("id{n}")
        })
        .unwrap();
        assert_eq!(prepared[0].id, "id1");
        assert_eq!(prepared[1].resource.as_ref().unwrap()["subject"]["reference"], "Patient/id1");
        assert_eq!(prepared[2].resource.as_ref().unwrap()["link"][0]["other"]["reference"], "Patient/id1");
        assert_eq!(prepared[2].if_match, Some(2));
        assert_eq!(prepared[3].method, EntryMethod::Delete);
    }

    #[test]
    fn bad_entries_are_named() {
        let bad = |e: Value| {
            prepare_transaction(vec![json!({"resource": {"resourceType": "Patient"}}), e], || "i".into()).unwrap_err().0
        };
        assert_eq!(bad(json!({"request": {"method": "GET", "url": "Patient/1"}})), 1);
        assert_eq!(bad(json!({"request": {"method": "PUT", "url": "Patient"}})), 1);
        assert_eq!(bad(json!({"resource": {"resourceType": "Nope"}, "request": {"method": "POST", "url": "Nope"}})), 1);
        assert_eq!(
            bad(
                json!({"resource": {"resourceType": "Patient", "id": "b"}, "request": {"method": "PUT", "url": "Patient/a"}})
            ),
            1
        );
    }
}
