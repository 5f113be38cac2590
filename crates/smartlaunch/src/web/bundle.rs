//! `POST /fhir` with a `batch` or `transaction` Bundle.  Every entry is checked against the
//! token's scopes on its own (checklist item 79).  A transaction is all or nothing: its
//! `urn:uuid:` references are resolved to the ids the server assigns, and its writes are
//! applied in one database transaction.  A batch runs each entry as its own request.

use std::collections::HashMap;

use axum::body::{to_bytes, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use smart_scopes::Interaction;
use smartlaunch_fhir::compartment::patients_of;
use smartlaunch_fhir::store::{Expected, ResourceStore, WriteError, WriteOp};
use smartlaunch_fhir::validate::check_resource;

use crate::server::{instant, App};
use crate::web::fhir::{self, authenticate, outcome, Caller};

/// Entries accepted in one Bundle.
const MAX_ENTRIES: usize = 10_000;

/// `POST /fhir`.
pub(crate) async fn post(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let caller = match authenticate(&app, &headers, "Bundle", None) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let bundle: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return outcome(StatusCode::BAD_REQUEST, "invalid", &format!("the body is not JSON: {e}")),
    };
    if bundle["resourceType"] != "Bundle" {
        return outcome(
            StatusCode::BAD_REQUEST,
            "invalid",
            "POST to the FHIR base takes a Bundle of type batch or transaction",
        );
    }
    let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
    if entries.len() > MAX_ENTRIES {
        return outcome(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-costly",
            &format!("at most {MAX_ENTRIES} entries per Bundle"),
        );
    }
    match bundle["type"].as_str() {
        Some("transaction") => transaction(&app, &caller, entries).await,
        Some("batch") => batch(&app, &headers, entries).await,
        _ => outcome(StatusCode::BAD_REQUEST, "invalid", "Bundle.type must be batch or transaction"),
    }
}

/// `Type/id` → (Type, id).
fn split_url(url: &str) -> Option<(&str, &str)> {
    let (ty, id) = url.trim_start_matches('/').split_once('/')?;
    (!id.contains(['/', '?'])).then_some((ty, id))
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

/// A transaction entry, validated and access-checked, waiting to be written.
enum Planned {
    Write {
        op: WriteOp,
        status: StatusCode,
    },
    /// A delete of something already gone: nothing to write.
    Nothing,
}

fn entry_error(n: usize, status: StatusCode, message: &str) -> Response {
    outcome(
        status,
        if status == StatusCode::FORBIDDEN { "forbidden" } else { "invalid" },
        &format!("entry {n}: {message}"),
    )
}

async fn transaction(app: &App, caller: &Caller, mut entries: Vec<Value>) -> Response {
    // 1. Assign ids to creates and map Bundle-local full URLs to them.
    let mut local: HashMap<String, String> = HashMap::new();
    for (n, entry) in entries.iter_mut().enumerate() {
        let method = entry["request"]["method"].as_str().unwrap_or_default().to_owned();
        let url = entry["request"]["url"].as_str().unwrap_or_default().to_owned();
        let full_url = entry["fullUrl"].as_str().map(str::to_owned);
        match method.as_str() {
            "POST" => {
                let ty = entry["resource"]["resourceType"].as_str().unwrap_or_default().to_owned();
                if ty.is_empty() || url.trim_start_matches('/') != ty {
                    return entry_error(
                        n,
                        StatusCode::BAD_REQUEST,
                        "a POST entry needs a resource and request.url = its type",
                    );
                }
                if entry["request"].get("ifNoneExist").is_some() {
                    return entry_error(
                        n,
                        StatusCode::BAD_REQUEST,
                        "conditional create (ifNoneExist) is not supported in transactions",
                    );
                }
                let id = smartlaunch_auth::secrets::random_hex(16);
                entry["resource"]["id"] = Value::String(id.clone());
                if let Some(f) = full_url {
                    local.insert(f, format!("{ty}/{id}"));
                }
            }
            "PUT" | "DELETE" => {
                let Some((ty, id)) = split_url(&url) else {
                    return entry_error(n, StatusCode::BAD_REQUEST, "request.url must be Type/id");
                };
                if let Some(f) = full_url {
                    local.insert(f, format!("{ty}/{id}"));
                }
            }
            "" => return entry_error(n, StatusCode::BAD_REQUEST, "request.method is required"),
            other => {
                return entry_error(
                    n,
                    StatusCode::BAD_REQUEST,
                    &format!("{other} is not supported in a transaction (use a batch to read)"),
                )
            }
        }
    }
    // 2. Resolve references, validate, check access, plan the writes.
    let mut plan = Vec::with_capacity(entries.len());
    for (n, entry) in entries.iter_mut().enumerate() {
        resolve_references(&mut entry["resource"], &local);
        let method = entry["request"]["method"].as_str().unwrap_or_default().to_owned();
        let url = entry["request"]["url"].as_str().unwrap_or_default().to_owned();
        let if_match =
            entry["request"]["ifMatch"].as_str().map(|m| m.trim_start_matches("W/").trim_matches('"').parse::<i64>());
        let if_match = match if_match.transpose() {
            Ok(v) => v,
            Err(_) => {
                return entry_error(n, StatusCode::BAD_REQUEST, "request.ifMatch must be an ETag such as W/\"3\"")
            }
        };
        let planned = match method.as_str() {
            "POST" => {
                let resource = entry["resource"].take();
                let ty = resource["resourceType"].as_str().unwrap_or_default().to_owned();
                if let Err(e) = check_resource(&resource, &ty) {
                    return entry_error(n, StatusCode::BAD_REQUEST, &e.to_string());
                }
                if let Err(d) = smartlaunch_fhir::access::may(
                    &caller.requester(),
                    Interaction::Create,
                    &ty,
                    &patients_of(&resource),
                ) {
                    return entry_error(n, StatusCode::FORBIDDEN, &d.message());
                }
                Planned::Write {
                    op: WriteOp::Put { resource, expected: Expected::Absent },
                    status: StatusCode::CREATED,
                }
            }
            "PUT" => {
                let (ty, id) = split_url(&url).expect("checked above");
                let resource = entry["resource"].take();
                if let Err(e) = check_resource(&resource, ty)
                    .and_then(|()| smartlaunch_fhir::validate::check_update_id(&resource, id))
                {
                    return entry_error(n, StatusCode::BAD_REQUEST, &e.to_string());
                }
                let current = match app.db.read(ty, id).await {
                    Ok(c) => c.filter(|c| !c.deleted),
                    Err(e) => return fhir::server_error("read the resource", e),
                };
                // The old version must be updatable, and the new one too.
                if let Some(c) = &current {
                    if let Err(d) =
                        smartlaunch_fhir::access::may(&caller.requester(), Interaction::Update, ty, &c.compartments)
                    {
                        return entry_error(n, StatusCode::FORBIDDEN, &d.message());
                    }
                }
                if let Err(d) =
                    smartlaunch_fhir::access::may(&caller.requester(), Interaction::Update, ty, &patients_of(&resource))
                {
                    return entry_error(n, StatusCode::FORBIDDEN, &d.message());
                }
                let expected = match (if_match, &current) {
                    (Some(v), Some(c)) if v != c.version_id => {
                        return entry_error(
                            n,
                            StatusCode::PRECONDITION_FAILED,
                            "ifMatch does not name the current version",
                        )
                    }
                    (Some(_), None) => {
                        return entry_error(
                            n,
                            StatusCode::PRECONDITION_FAILED,
                            "ifMatch was sent but the resource does not exist",
                        )
                    }
                    (_, Some(c)) => Expected::Version(c.version_id),
                    (None, None) => Expected::Absent,
                };
                let status = if current.is_some() { StatusCode::OK } else { StatusCode::CREATED };
                Planned::Write { op: WriteOp::Put { resource, expected }, status }
            }
            _ => {
                let (ty, id) = split_url(&url).expect("checked above");
                let current = match app.db.read(ty, id).await {
                    Ok(c) => c,
                    Err(e) => return fhir::server_error("read the resource", e),
                };
                let compartments = current.as_ref().map(|c| c.compartments.clone()).unwrap_or_default();
                if let Err(d) =
                    smartlaunch_fhir::access::may(&caller.requester(), Interaction::Delete, ty, &compartments)
                {
                    return entry_error(n, StatusCode::FORBIDDEN, &d.message());
                }
                match current.filter(|c| !c.deleted) {
                    Some(c) if if_match.is_some_and(|v| v != c.version_id) => {
                        return entry_error(
                            n,
                            StatusCode::PRECONDITION_FAILED,
                            "ifMatch does not name the current version",
                        )
                    }
                    Some(c) => Planned::Write {
                        op: WriteOp::Delete {
                            resource_type: ty.to_owned(),
                            id: id.to_owned(),
                            expected: Expected::Version(c.version_id),
                        },
                        status: StatusCode::NO_CONTENT,
                    },
                    None => Planned::Nothing,
                }
            }
        };
        plan.push(planned);
    }
    // 3. Write everything in one database transaction.
    let ops: Vec<WriteOp> = plan
        .iter()
        .filter_map(|p| match p {
            Planned::Write { op, .. } => Some(op.clone()),
            Planned::Nothing => None,
        })
        .collect();
    let written = match app.db.transaction(&ops, &instant(app.clock.now())).await {
        Ok(w) => w,
        Err((n, WriteError::Conflict(_))) => {
            return outcome(
                StatusCode::CONFLICT,
                "conflict",
                &format!("write {n}: the resource changed meanwhile; nothing was stored"),
            )
        }
        Err((_, WriteError::Store(e))) => return fhir::server_error("store the transaction", e),
    };
    let mut written = written.into_iter();
    let response_entries: Vec<Value> = plan
        .iter()
        .map(|p| match p {
            Planned::Write { status, .. } => {
                let stored = written.next().expect("one result per write");
                let mut response = json!({
                    "status": format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or_default()),
                    "etag": format!("W/\"{}\"", stored.version_id),
                    "lastModified": stored.last_updated,
                });
                if *status != StatusCode::NO_CONTENT {
                    response["location"] =
                        json!(format!("{}/{}/_history/{}", stored.resource_type, stored.id, stored.version_id));
                }
                json!({ "response": response })
            }
            Planned::Nothing => json!({ "response": { "status": "204 No Content" } }),
        })
        .collect();
    let body = json!({ "resourceType": "Bundle", "type": "transaction-response", "entry": response_entries });
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/fhir+json; charset=utf-8"))], body.to_string())
        .into_response()
}

/// A batch: each entry runs as its own request, with the caller's token.
async fn batch(app: &App, headers: &HeaderMap, entries: Vec<Value>) -> Response {
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let response = batch_entry(app, headers, &entry).await;
        let status = response.status();
        let etag = response.headers().get(header::ETAG).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let location = response.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = to_bytes(response.into_body(), 64 * 1024 * 1024).await.unwrap_or_default();
        let mut result = json!({ "response": { "status": format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or_default()) } });
        if let Some(e) = etag {
            result["response"]["etag"] = json!(e);
        }
        if let Some(l) = location {
            result["response"]["location"] = json!(l);
        }
        if let Ok(v) = serde_json::from_slice::<Value>(&body) {
            if status.is_success() {
                result["resource"] = v;
            } else {
                result["response"]["outcome"] = v;
            }
        }
        out.push(result);
    }
    let body = json!({ "resourceType": "Bundle", "type": "batch-response", "entry": out });
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/fhir+json; charset=utf-8"))], body.to_string())
        .into_response()
}

async fn batch_entry(app: &App, headers: &HeaderMap, entry: &Value) -> Response {
    let method = entry["request"]["method"].as_str().unwrap_or_default();
    let url = entry["request"]["url"].as_str().unwrap_or_default().trim_start_matches('/');
    let mut h = HeaderMap::new();
    for name in [header::AUTHORIZATION, header::ACCEPT] {
        if let Some(v) = headers.get(&name) {
            h.insert(name, v.clone());
        }
    }
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/fhir+json"));
    if let Some(m) = entry["request"]["ifMatch"].as_str().and_then(|m| HeaderValue::from_str(m).ok()) {
        h.insert(header::IF_MATCH, m);
    }
    if let Some(c) = entry["request"]["ifNoneExist"].as_str().and_then(|c| HeaderValue::from_str(c).ok()) {
        h.insert("if-none-exist", c);
    }
    let body = Bytes::from(entry["resource"].to_string());
    let state = State(app.clone());
    let (path, query) = match url.split_once('?') {
        Some((p, q)) => (p, Some(q.to_owned())),
        None => (url, None),
    };
    let segments: Vec<String> = path.split('/').filter(|s| !s.is_empty()).map(str::to_owned).collect();
    match (Method::from_bytes(method.as_bytes()).unwrap_or(Method::OPTIONS), segments.as_slice()) {
        (Method::GET, [ty]) => fhir::search_get(state, Path(ty.clone()), h, RawQuery(query)).await,
        (Method::GET, [ty, id]) => fhir::read(state, Path((ty.clone(), id.clone())), h).await,
        (Method::GET, [ty, id, hist]) if hist == "_history" => {
            fhir::history(state, Path((ty.clone(), id.clone())), h).await
        }
        (Method::GET, [ty, id, hist, v]) if hist == "_history" => {
            fhir::vread(state, Path((ty.clone(), id.clone(), v.clone())), h).await
        }
        (Method::POST, [ty]) => fhir::create(state, Path(ty.clone()), h, body).await,
        (Method::PUT, [ty, id]) => fhir::update(state, Path((ty.clone(), id.clone())), h, body).await,
        (Method::DELETE, [ty, id]) => fhir::delete(state, Path((ty.clone(), id.clone())), h).await,
        _ => outcome(StatusCode::BAD_REQUEST, "not-supported", &format!("{method} {url} is not supported in a batch")),
    }
}
