//! vread and history (instance and type): every version a response shows is checked against
//! the token on its own (issue 7, item 5): the patient compartments of THAT version and the
//! granular filters evaluated on THAT version ([`smartlaunch_fhir::access::may_read_version`]).
//! A version outside the token is omitted from a history and refused (403) on vread.  A deleted
//! version has no content: it is judged by the version it deleted.

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use smart_scopes::Interaction;
use smartlaunch_fhir::access::{constraints, may_read_version, Denied};
use smartlaunch_fhir::limits::{DEFAULT_COUNT, MAX_COUNT, RESPONSE_BUDGET_BYTES};
use smartlaunch_fhir::store::{ResourceStore, StoredResource};

use super::{
    authenticate, bundle_with_entries, content_type, forbidden, gone, missing, outcome, over_budget, resource_response,
    server_error, with_resource, Caller, FhirBase,
};
use crate::server::App;

/// The JSON a version is judged by: its own, or for a deletion the version before it (`None`
/// when that cannot be found: the deletion is then shown to no one but unrestricted tokens).
async fn judged_json(app: &App, v: &StoredResource, older: Option<&StoredResource>) -> Result<Option<Value>, Response> {
    let json = if !v.deleted {
        Some(v.json.clone())
    } else if let Some(o) = older.filter(|o| o.version_id == v.version_id - 1) {
        Some(o.json.clone())
    } else {
        match app.db.vread(&v.resource_type, &v.id, v.version_id - 1).await {
            Ok(o) => o.filter(|o| !o.deleted).map(|o| o.json),
            Err(e) => return Err(server_error("read the history", e)),
        }
    };
    Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
}

/// Whether the token may see one version (`interaction`: read for vread and instance history,
/// search for type history).
async fn may_see(
    app: &App,
    caller: &Caller,
    interaction: Interaction,
    v: &StoredResource,
    older: Option<&StoredResource>,
) -> Result<Result<(), Denied>, Response> {
    let judged = judged_json(app, v, older).await?;
    let fallback = json!({ "resourceType": v.resource_type, "id": v.id });
    let resource = judged.unwrap_or(fallback);
    Ok(may_read_version(&caller.requester(), interaction, &resource))
}

/// `GET /fhir/{type}/{id}/_history/{vid}`: vread (r), of a version the token may read.
pub(crate) async fn vread(
    State(app): State<App>,
    base: FhirBase,
    Path((ty, id, vid)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let caller = match authenticate(&app, &base, &headers, &ty, Some(&id)) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Ok(version) = vid.parse::<i64>() else {
        return outcome(StatusCode::BAD_REQUEST, "invalid", "the version id must be a number");
    };
    let stored = match app.db.vread(&ty, &id, version).await {
        Ok(Some(stored)) => stored,
        Ok(None) => {
            return missing(&caller, Interaction::Read, &ty, &id, format!("{ty}/{id} has no version {version}"))
        }
        Err(e) => return server_error("read the version", e),
    };
    match may_see(&app, &caller, Interaction::Read, &stored, None).await {
        Err(r) => r,
        Ok(Err(denied)) => forbidden(&denied),
        Ok(Ok(())) if stored.deleted => gone(&stored),
        Ok(Ok(())) => resource_response(StatusCode::OK, &headers, &stored, None),
    }
}

/// One entry of a history Bundle, as JSON text (the version's stored JSON is not re-parsed).
fn history_entry(base: &str, v: &StoredResource) -> String {
    let (ty, id) = (&v.resource_type, &v.id);
    let (method, status) = match (v.deleted, v.version_id) {
        (true, _) => ("DELETE", "204"),
        (false, 1) => ("POST", "201"),
        (false, _) => ("PUT", "200"),
    };
    let entry = json!({
        "fullUrl": format!("{base}/{ty}/{id}"),
        "request": { "method": method, "url": format!("{ty}/{id}") },
        "response": {
            "status": status,
            "etag": format!("W/\"{}\"", v.version_id),
            "lastModified": v.last_updated,
            "location": format!("{base}/{ty}/{id}/_history/{}", v.version_id),
        },
    });
    if v.deleted {
        entry.to_string()
    } else {
        with_resource(&entry, &v.json)
    }
}

/// `GET /fhir/{type}/{id}/_history`: instance history (r), newest first: the versions the
/// token may read (403 when it may read none).
pub(crate) async fn history(
    State(app): State<App>,
    base: FhirBase,
    Path((ty, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let caller = match authenticate(&app, &base, &headers, &ty, Some(&id)) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let page = match app.db.history(&ty, &id, RESPONSE_BUDGET_BYTES).await {
        Ok(v) => v,
        Err(e) => return server_error("read the history", e),
    };
    if page.over_budget {
        return over_budget(&format!(
            "the history of {ty}/{id} is larger than the response budget; read its versions one by one \
             (GET {ty}/{id}/_history/{{version}})"
        ));
    }
    if page.versions.is_empty() {
        return missing(&caller, Interaction::Read, &ty, &id, format!("{ty}/{id} does not exist"));
    }
    let base = base.0.clone();
    let mut entries = Vec::new();
    let mut refusal = None;
    for (n, v) in page.versions.iter().enumerate() {
        match may_see(&app, &caller, Interaction::Read, v, page.versions.get(n + 1)).await {
            Err(r) => return r,
            Ok(Ok(())) => entries.push(history_entry(&base, v)),
            Ok(Err(denied)) => refusal = Some(denied),
        }
    }
    if let (true, Some(denied)) = (entries.is_empty(), refusal) {
        return forbidden(&denied);
    }
    let head = json!({
        "resourceType": "Bundle",
        "type": "history",
        "total": entries.len(),
        "link": [{ "relation": "self", "url": format!("{base}/{ty}/{id}/_history") }],
    });
    ([(header::CONTENT_TYPE, content_type(&headers))], bundle_with_entries(&head, &entries)).into_response()
}

/// `GET /fhir/{type}/_history`: type history (s), newest first, of the versions the token may
/// search, each checked on its own; `_count` (at most [`MAX_COUNT`]) and `_offset` page it.  A
/// restricted token gets no `total` (it would count versions it may not see).
pub(crate) async fn type_history(
    State(app): State<App>,
    base: FhirBase,
    Path(ty): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let caller = match authenticate(&app, &base, &headers, &ty, None) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let access = match constraints(&caller.requester(), Interaction::Search, &ty) {
        Ok(a) => a,
        Err(denied) => return forbidden(&denied),
    };
    let pairs = crate::web::form_pairs(query.unwrap_or_default().as_bytes());
    let number = |name: &str, default: i64| {
        crate::web::field(&pairs, name).and_then(|v| v.parse::<i64>().ok()).filter(|v| *v >= 0).unwrap_or(default)
    };
    let count = number("_count", DEFAULT_COUNT).min(MAX_COUNT);
    let offset = number("_offset", 0);
    let page = match app.db.type_history(&ty, &access, count, offset, RESPONSE_BUDGET_BYTES).await {
        Ok(v) => v,
        Err(e) => return server_error("read the history", e),
    };
    if page.over_budget {
        return over_budget(&format!(
            "this page of {ty}/_history is larger than the response budget; page with a smaller _count"
        ));
    }
    let base = base.0.clone();
    let link = |o: i64| format!("{base}/{ty}/_history?_count={count}&_offset={o}");
    let mut links = vec![json!({ "relation": "self", "url": link(offset) })];
    // Saturating: `_offset` may be any non-negative i64.
    if count > 0 && offset.saturating_add(count) < page.total {
        links.push(json!({ "relation": "next", "url": link(offset.saturating_add(count)) }));
    }
    let mut entries = Vec::new();
    for v in &page.versions {
        match may_see(&app, &caller, Interaction::Search, v, None).await {
            Err(r) => return r,
            Ok(Ok(())) => entries.push(history_entry(&base, v)),
            Ok(Err(_)) => {}
        }
    }
    let mut head = json!({ "resourceType": "Bundle", "type": "history", "link": links });
    if access.iter().any(|c| c.compartment.is_none() && c.filter.is_empty()) {
        head["total"] = json!(page.total);
    }
    ([(header::CONTENT_TYPE, content_type(&headers))], bundle_with_entries(&head, &entries)).into_response()
}
