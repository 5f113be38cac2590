//! search (R4 §3.1.1), limited to what the token's scopes admit (compartment and granular
//! filters; never widened), and to the response budget: the store stops reading matches as
//! soon as they would pass it, and the answer is then a 400 that says to page with a smaller
//! `_count` (issue 7, item 6).  `_include` and `_revinclude` fetch only what the token may read.

use std::collections::{BTreeMap, HashSet};

use serde_json::{json, Value};
use smart_scopes::Interaction;

use super::error::FhirError;
use super::gate::Gate;
use super::request::Search;
use super::text::{bundle_with_entries, identity, with_resource};
use super::{Context, FhirService};
use crate::limits::MAX_OR_VALUES;
use crate::search::extract::{index_entries, IndexValue};
use crate::search::params::Kind;
use crate::search::query::{parse, Clause, ClauseValue, Modifier, SearchRequest, Target};
use crate::store::ResourceStore;

impl<S: ResourceStore> FhirService<'_, S> {
    /// A search: a `searchset` Bundle with `self`, `next` and `previous` links.
    pub async fn search(&self, cx: &Context<'_>, search: Search) -> Result<String, FhirError> {
        let gate = self.gate(cx);
        let Search { resource_type, params, strict, max_bytes } = search;
        let ty = resource_type.as_str();
        let mut request = parse(ty, &params, strict).map_err(|e| FhirError::Invalid(e.to_string()))?;
        request.max_bytes = max_bytes;
        let access = gate.search(Interaction::Search, ty)?;
        let page = self.store.search(ty, &request, &access).await.map_err(FhirError::store("run the search"))?;
        let too_large = || {
            FhirError::OverBudget(format!(
                "the matches of this search are larger than the response budget; page with a smaller _count \
                 (asked for {})",
                request.count
            ))
        };
        if page.over_budget {
            return Err(too_large());
        }
        let used: usize = page.resources.iter().map(String::len).sum();
        let included = includes(&gate, ty, &request, &page.resources, max_bytes.saturating_sub(used))
            .await?
            .ok_or_else(too_large)?;
        let base = cx.base;
        let kept: Vec<&(String, String)> = params.iter().filter(|(k, _)| k != "_offset" && k != "_count").collect();
        let link = |offset: i64| {
            let mut q = form_urlencoded::Serializer::new(String::new());
            q.extend_pairs(kept.iter().map(|(k, v)| (k, v)));
            q.append_pair("_count", &request.count.to_string());
            q.append_pair("_offset", &offset.to_string());
            format!("{base}/{ty}?{}", q.finish())
        };
        let mut links = vec![json!({ "relation": "self", "url": link(request.offset) })];
        // Saturating: `_offset` may be any non-negative i64.
        let next = request.offset.saturating_add(request.count);
        if !request.summary_count && request.count > 0 && next < page.total {
            links.push(json!({ "relation": "next", "url": link(next) }));
        }
        if !request.summary_count && request.offset > 0 {
            links.push(json!({ "relation": "previous", "url": link((request.offset - request.count).max(0)) }));
        }
        let head = json!({ "resourceType": "Bundle", "type": "searchset", "total": page.total, "link": links });
        if request.summary_count {
            return Ok(head.to_string());
        }
        let entries: Vec<String> = page
            .resources
            .iter()
            .map(|m| entry(base, &request, m, "match"))
            .chain(included.iter().map(|i| entry(base, &request, i, "include")))
            .collect();
        Ok(bundle_with_entries(&head, &entries))
    }
}

/// One searchset entry, as JSON text: the stored JSON is spliced in as it is, unless
/// `_elements` asks for a subset.
fn entry(base: &str, request: &SearchRequest, json: &str, mode: &str) -> String {
    let ids = identity(json);
    let envelope = json!({ "fullUrl": format!("{base}/{}/{}", ids.resource_type, ids.id), "search": { "mode": mode } });
    match &request.elements {
        Some(elements) => {
            let resource = serde_json::from_str::<Value>(json).map(|r| subset(r, elements)).unwrap_or(Value::Null);
            with_resource(&envelope, &resource.to_string())
        }
        None => with_resource(&envelope, json),
    }
}

/// `_include` and `_revinclude` (one level).  Included resources are fetched through a search
/// under the token's read constraints for their type (the gate), so nothing outside the grant
/// is ever included (it is omitted).  They may hold at most `max_bytes` (`None`: they would
/// not fit).  Values are sent `MAX_OR_VALUES` at a time, so no query outgrows the database's
/// limits.
async fn includes<S: ResourceStore>(
    gate: &Gate<'_, S>,
    ty: &str,
    request: &SearchRequest,
    matches: &[String],
    max_bytes: usize,
) -> Result<Option<Vec<String>>, FhirError> {
    if request.include.is_empty() && request.revinclude.is_empty() {
        return Ok(Some(Vec::new()));
    }
    let mut by_type: BTreeMap<(String, Option<&'static str>), Vec<ClauseValue>> = BTreeMap::new();
    let mut seen: HashSet<String> = HashSet::new();
    for m in matches {
        let Ok(resource) = serde_json::from_str::<Value>(m) else { continue };
        let id = resource["id"].as_str().unwrap_or_default().to_owned();
        seen.insert(format!("{ty}/{id}"));
        for (param, target) in &request.include {
            for e in index_entries(&resource).into_iter().filter(|e| e.param == *param) {
                if let IndexValue::Reference { target_type: Some(t), target_id } = e.value {
                    if target.as_ref().is_none_or(|want| *want == t) {
                        by_type.entry((t, None)).or_default().push(ClauseValue::Id(target_id));
                    }
                }
            }
        }
        for (source, param) in &request.revinclude {
            let value = ClauseValue::Reference { target_type: Some(ty.to_owned()), id: id.clone() };
            by_type.entry((source.clone(), Some(param))).or_default().push(value);
        }
    }
    let mut out = Vec::new();
    let mut used = 0usize;
    for ((t, param), mut values) in by_type {
        values.dedup();
        let Ok(access) = gate.search(Interaction::Read, &t) else {
            continue;
        };
        for chunk in values.chunks(MAX_OR_VALUES) {
            let target = match param {
                Some(name) => Target::Indexed { name, kind: Kind::Reference },
                None => Target::Id,
            };
            let clause = Clause { target, modifier: Modifier::None, values: chunk.to_vec() };
            let mut search = SearchRequest::matching(vec![clause]);
            search.max_bytes = max_bytes.saturating_sub(used);
            let page = gate.store.search(&t, &search, &access).await.map_err(FhirError::store("include resources"))?;
            if page.over_budget {
                return Ok(None);
            }
            for json in page.resources {
                if seen.insert(format!("{t}/{}", identity(&json).id)) {
                    used += json.len();
                    out.push(json);
                }
            }
        }
    }
    Ok(Some(out))
}

/// `_elements`: only the listed top-level elements (plus `resourceType`, `id`, `meta`), marked
/// SUBSETTED.
fn subset(resource: Value, elements: &[String]) -> Value {
    let Value::Object(map) = resource else { return resource };
    let mut kept: serde_json::Map<String, Value> = map
        .into_iter()
        .filter(|(k, _)| k == "resourceType" || k == "id" || k == "meta" || elements.iter().any(|e| e == k))
        .collect();
    let subsetted =
        json!({ "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED" });
    let meta = kept.entry("meta").or_insert_with(|| json!({}));
    if let Value::Object(meta) = meta {
        let tags = meta.entry("tag").or_insert_with(|| json!([]));
        if let Value::Array(tags) = tags {
            tags.push(subsetted);
        }
    }
    Value::Object(kept)
}
