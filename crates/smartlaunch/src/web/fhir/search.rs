//! Search (`GET /fhir/{type}`, `POST /fhir/{type}/_search`): limited to what the token's scopes
//! admit (compartment and granular filters; never widened), and to the response budget: the
//! store stops reading matches as soon as they would pass it, and the answer is then a 400
//! OperationOutcome that says to page with a smaller `_count` (issue 7, item 6).

use std::collections::{BTreeMap, HashSet};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use smart_scopes::Interaction;
use smartlaunch_fhir::access::constraints;
use smartlaunch_fhir::limits::{MAX_OR_VALUES, RESPONSE_BUDGET_BYTES};
use smartlaunch_fhir::search::extract::{index_entries, IndexValue};
use smartlaunch_fhir::search::params::Kind;
use smartlaunch_fhir::search::query::{parse, Clause, ClauseValue, Modifier, SearchRequest, Target};
use smartlaunch_fhir::store::ResourceStore;

use super::{
    authenticate, body_rejected, bundle_with_entries, content_type, forbidden, outcome, over_budget, server_error,
    with_resource, Caller, FhirBase,
};
use crate::server::App;

/// `GET /fhir/{type}`.
pub(crate) async fn search_get(
    State(app): State<App>,
    base: FhirBase,
    Path(ty): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let pairs = crate::web::form_pairs(query.unwrap_or_default().as_bytes());
    search(&app, &base, &ty, &headers, pairs, RESPONSE_BUDGET_BYTES).await
}

/// `POST /fhir/{type}/_search` (a form body).
pub(crate) async fn search_post(
    State(app): State<App>,
    base: FhirBase,
    Path(ty): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return body_rejected(e),
    };
    if !crate::web::is_form(&headers) {
        return outcome(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not-supported",
            "POST _search takes Content-Type: application/x-www-form-urlencoded",
        );
    }
    search(&app, &base, &ty, &headers, crate::web::form_pairs(&body), RESPONSE_BUDGET_BYTES).await
}

/// A search whose resources may hold at most `max_bytes` of JSON (a batch passes what is left of
/// its own budget).
pub(crate) async fn search(
    app: &App,
    base: &FhirBase,
    ty: &str,
    headers: &HeaderMap,
    pairs: Vec<(String, String)>,
    max_bytes: usize,
) -> Response {
    let caller = match authenticate(app, base, headers, ty, None) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let strict = headers
        .get("prefer")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split([',', ';']).any(|p| p.trim() == "handling=strict"));
    let mut request = match parse(ty, &pairs, strict) {
        Ok(r) => r,
        Err(e) => return outcome(StatusCode::BAD_REQUEST, "invalid", &e.to_string()),
    };
    request.max_bytes = max_bytes;
    let access = match constraints(&caller.requester(), Interaction::Search, ty) {
        Ok(a) => a,
        Err(denied) => return forbidden(&denied),
    };
    let page = match app.db.search(ty, &request, &access).await {
        Ok(p) => p,
        Err(e) => return server_error("run the search", e),
    };
    let too_large = || {
        over_budget(&format!(
            "the matches of this search are larger than the response budget; page with a smaller _count \
             (asked for {})",
            request.count
        ))
    };
    if page.over_budget {
        return too_large();
    }
    let used: usize = page.resources.iter().map(String::len).sum();
    let included = match includes(app, &caller, ty, &request, &page.resources, max_bytes.saturating_sub(used)).await {
        Ok(Some(i)) => i,
        Ok(None) => return too_large(),
        Err(r) => return r,
    };
    let base = base.0.clone();
    let kept: Vec<(String, String)> = pairs.into_iter().filter(|(k, _)| k != "_offset" && k != "_count").collect();
    let link = |offset: i64| {
        let mut q = kept.clone();
        q.push(("_count".into(), request.count.to_string()));
        q.push(("_offset".into(), offset.to_string()));
        format!("{base}/{ty}?{}", serde_urlencoded::to_string(&q).unwrap_or_default())
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
        return ([(header::CONTENT_TYPE, content_type(headers))], head.to_string()).into_response();
    }
    let entries: Vec<String> = page
        .resources
        .iter()
        .map(|m| entry(&base, &request, m, "match"))
        .chain(included.iter().map(|i| entry(&base, &request, i, "include")))
        .collect();
    ([(header::CONTENT_TYPE, content_type(headers))], bundle_with_entries(&head, &entries)).into_response()
}

/// The type and id of a resource's JSON (read without building the whole tree).
#[derive(serde::Deserialize, Default)]
struct Identity {
    #[serde(rename = "resourceType", default)]
    resource_type: String,
    #[serde(default)]
    id: String,
}

fn identity(json: &str) -> Identity {
    serde_json::from_str(json).unwrap_or_default()
}

/// One searchset entry, as JSON text: the stored JSON is spliced in as it is, unless
/// `_elements` asks for a subset.
fn entry(base: &str, request: &SearchRequest, json: &str, mode: &str) -> String {
    let Identity { resource_type, id } = identity(json);
    let envelope = json!({ "fullUrl": format!("{base}/{resource_type}/{id}"), "search": { "mode": mode } });
    match &request.elements {
        Some(elements) => {
            let resource = serde_json::from_str::<Value>(json).map(|r| subset(r, elements)).unwrap_or(Value::Null);
            with_resource(&envelope, &resource.to_string())
        }
        None => with_resource(&envelope, json),
    }
}

/// `_include` and `_revinclude` (one level).  Included resources are fetched through a search
/// under the token's read constraints for their type, so nothing outside the grant is ever
/// included (it is omitted).  They may hold at most `max_bytes` (`None`: they would not fit).
/// Values are sent `MAX_OR_VALUES` at a time, so no query outgrows the database's limits.
async fn includes(
    app: &App,
    caller: &Caller,
    ty: &str,
    request: &SearchRequest,
    matches: &[String],
    max_bytes: usize,
) -> Result<Option<Vec<String>>, Response> {
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
        let Ok(access) = constraints(&caller.requester(), Interaction::Read, &t) else {
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
            let page = app.db.search(&t, &search, &access).await.map_err(|e| server_error("include resources", e))?;
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
