//! `POST /fhir` with a `batch` or `transaction` Bundle.  Every entry is checked against the
//! token's scopes on its own (checklist item 79).  A transaction is all or nothing: its
//! `urn:uuid:` references are resolved to the ids the server assigns, and its writes are
//! applied in one database transaction.  A batch runs each entry as its own request.  Both are
//! bounded (issue 7, item 6): entries per Bundle, and the batch's whole response shares one
//! budget, counted as each entry's response is added (the batch stops at the first entry that
//! would pass it and answers 400).

use axum::body::{to_bytes, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use smart_scopes::Interaction;
use smartlaunch_fhir::access::{may, may_write};
use smartlaunch_fhir::bundle::{prepare_transaction, EntryMethod};
use smartlaunch_fhir::limits::{MAX_BATCH_ENTRIES, MAX_TRANSACTION_ENTRIES, RESPONSE_BUDGET_BYTES};
use smartlaunch_fhir::store::{Expected, ResourceStore, WriteError, WriteOp};

use crate::server::{instant, App};
use crate::web::fhir::{self, authenticate, outcome, with_resource, Caller, FhirBase, FhirBody, OverBudget};

/// `POST /fhir`.
pub(crate) async fn post(
    State(app): State<App>,
    base: FhirBase,
    headers: HeaderMap,
    FhirBody(body): FhirBody,
) -> Response {
    let caller = match authenticate(&app, &base, &headers, "Bundle", None) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let mut bundle: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return outcome(StatusCode::BAD_REQUEST, "invalid", &format!("the body is not JSON: {e}")),
    };
    drop(body);
    if bundle["resourceType"] != "Bundle" {
        return outcome(
            StatusCode::BAD_REQUEST,
            "invalid",
            "POST to the FHIR base takes a Bundle of type batch or transaction",
        );
    }
    let kind = bundle["type"].as_str().unwrap_or_default().to_owned();
    let entries = match bundle["entry"].take() {
        Value::Array(entries) => entries,
        _ => Vec::new(),
    };
    drop(bundle);
    let limit = match kind.as_str() {
        "transaction" => MAX_TRANSACTION_ENTRIES,
        "batch" => MAX_BATCH_ENTRIES,
        _ => return outcome(StatusCode::BAD_REQUEST, "invalid", "Bundle.type must be batch or transaction"),
    };
    if entries.len() > limit {
        return outcome(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-costly",
            &format!(
                "this {kind} has {} entries; this server accepts at most {limit} entries per {kind}: split it",
                entries.len()
            ),
        );
    }
    match kind.as_str() {
        "transaction" => transaction(&app, &caller, entries).await,
        _ => batch(&app, &base, &headers, entries).await,
    }
}

fn entry_error(n: usize, status: StatusCode, message: &str) -> Response {
    outcome(
        status,
        if status == StatusCode::FORBIDDEN { "forbidden" } else { "invalid" },
        &format!("entry {n}: {message}"),
    )
}

async fn transaction(app: &App, caller: &Caller, entries: Vec<Value>) -> Response {
    // 1. Ids for creates, Bundle-local references resolved, every resource checked.
    let prepared = match prepare_transaction(entries, || smartlaunch_auth::secrets::random_hex(16)) {
        Ok(p) => p,
        Err((n, message)) => return entry_error(n, StatusCode::BAD_REQUEST, &message),
    };
    // 2. Every entry against the scopes; the state each write expects.
    let requester = caller.requester();
    // The status of each entry's write (`None`: a delete of something already gone, nothing to
    // write), and the writes themselves (moved, never copied: a Bundle may be 32 MiB).
    let mut plan: Vec<Option<StatusCode>> = Vec::with_capacity(prepared.len());
    let mut ops: Vec<WriteOp> = Vec::with_capacity(prepared.len());
    for (n, entry) in prepared.into_iter().enumerate() {
        let (ty, id) = (entry.resource_type.as_str(), entry.id.as_str());
        let current = match entry.method {
            EntryMethod::Create => None,
            _ => match app.db.read(ty, id).await {
                Ok(c) => c,
                Err(e) => return fhir::server_error("read the resource", e),
            },
        };
        let live = current.as_ref().filter(|c| !c.deleted);
        let (interaction, status) = match (entry.method, live) {
            (EntryMethod::Create, _) => (Interaction::Create, StatusCode::CREATED),
            (EntryMethod::Update, Some(_)) => (Interaction::Update, StatusCode::OK),
            (EntryMethod::Update, None) => (Interaction::Update, StatusCode::CREATED),
            (EntryMethod::Delete, _) => (Interaction::Delete, StatusCode::NO_CONTENT),
        };
        // The current version must be within reach, and so must the new one: each belongs to
        // the patient of a patient-level token (`may_write`).
        if let Some(c) = &current {
            let allowed = match c.deleted {
                false => match serde_json::from_str::<Value>(&c.json) {
                    Ok(old) => may_write(&requester, interaction, &old),
                    Err(e) => return fhir::server_error("read the stored resource", e),
                },
                true => may(&requester, interaction, ty, &c.compartments),
            };
            if let Err(d) = allowed {
                return entry_error(n, StatusCode::FORBIDDEN, &d.message());
            }
        }
        if let Some(resource) = &entry.resource {
            if let Err(d) = may_write(&requester, interaction, resource) {
                return entry_error(n, StatusCode::FORBIDDEN, &d.message());
            }
        } else if current.is_none() {
            if let Err(d) = may(&requester, interaction, ty, &[]) {
                if !matches!(d, smartlaunch_fhir::access::Denied::OutsideGrant) {
                    return entry_error(n, StatusCode::FORBIDDEN, &d.message());
                }
            }
        }
        let expected = match (entry.if_match, live) {
            (Some(v), Some(c)) if v != c.version_id => {
                return entry_error(n, StatusCode::PRECONDITION_FAILED, "ifMatch does not name the current version")
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
        let op = match (entry.method, entry.resource, live) {
            (EntryMethod::Delete, _, None) => None,
            (EntryMethod::Delete, _, Some(_)) => {
                Some(WriteOp::Delete { resource_type: ty.to_owned(), id: id.to_owned(), expected })
            }
            (_, Some(resource), _) => Some(WriteOp::Put { resource, expected }),
            (_, None, _) => return entry_error(n, StatusCode::BAD_REQUEST, "the entry has no resource"),
        };
        plan.push(op.is_some().then_some(status));
        ops.extend(op);
    }
    // 3. Write everything in one database transaction.
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
    drop(ops);
    let response_entries: Vec<Value> = plan
        .iter()
        .map(|p| match p {
            Some(status) => {
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
            None => json!({ "response": { "status": "204 No Content" } }),
        })
        .collect();
    let body = json!({ "resourceType": "Bundle", "type": "transaction-response", "entry": response_entries });
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/fhir+json; charset=utf-8"))], body.to_string())
        .into_response()
}

/// A batch: each entry runs as its own request, with the caller's token.  The responses share
/// [`RESPONSE_BUDGET_BYTES`]: a search gets what is left of it, every body is counted as it is
/// added, and the first entry that would pass it ends the batch with a 400 OperationOutcome.
async fn batch(app: &App, base: &FhirBase, headers: &HeaderMap, entries: Vec<Value>) -> Response {
    let mut out = Vec::with_capacity(entries.len());
    let mut left = RESPONSE_BUDGET_BYTES;
    let too_large = |n: usize| {
        fhir::over_budget(&format!(
            "the responses of this batch's first {} entries already fill it; send fewer entries per batch, \
             or page the searches with a smaller _count",
            n
        ))
    };
    for (n, entry) in entries.into_iter().enumerate() {
        let response = batch_entry(app, base, headers, entry, left).await;
        if response.extensions().get::<OverBudget>().is_some() {
            return too_large(n);
        }
        let status = response.status();
        let etag = response.headers().get(header::ETAG).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let location = response.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let Ok(body) = to_bytes(response.into_body(), left).await else {
            return too_large(n);
        };
        let mut result = json!({ "response": { "status": format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or_default()) } });
        if let Some(e) = etag {
            result["response"]["etag"] = json!(e);
        }
        if let Some(l) = location {
            result["response"]["location"] = json!(l);
        }
        let text = match status.is_success() {
            true => match std::str::from_utf8(&body) {
                Ok(resource) if resource.starts_with('{') => with_resource(&result, resource),
                _ => result.to_string(),
            },
            false => {
                if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                    result["response"]["outcome"] = v;
                }
                result.to_string()
            }
        };
        drop(body);
        let Some(rest) = left.checked_sub(text.len() + 1) else {
            return too_large(n);
        };
        left = rest;
        out.push(text);
    }
    let head = json!({ "resourceType": "Bundle", "type": "batch-response" });
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/fhir+json; charset=utf-8"))],
        fhir::bundle_with_entries(&head, &out),
    )
        .into_response()
}

/// Runs one batch entry as the request it describes; a search may hold at most `max_bytes`.  The
/// entry is consumed: its resource's tree is freed once it is text again, before the handler
/// parses that text.
async fn batch_entry(app: &App, base: &FhirBase, headers: &HeaderMap, mut entry: Value, max_bytes: usize) -> Response {
    let method = entry["request"]["method"].as_str().unwrap_or_default().to_owned();
    let url = entry["request"]["url"].as_str().unwrap_or_default().trim_start_matches('/').to_owned();
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
    let body = Bytes::from(entry["resource"].take().to_string());
    drop(entry);
    let state = State(app.clone());
    let (path, query) = match url.split_once('?') {
        Some((p, q)) => (p, Some(q.to_owned())),
        None => (url.as_str(), None),
    };
    let segments: Vec<String> = path.split('/').filter(|s| !s.is_empty()).map(str::to_owned).collect();
    match (Method::from_bytes(method.as_bytes()).unwrap_or(Method::OPTIONS), segments.as_slice()) {
        (Method::GET, [ty]) => {
            let pairs = crate::web::form_pairs(query.unwrap_or_default().as_bytes());
            fhir::search_within(app, base, ty, &h, pairs, max_bytes).await
        }
        (Method::GET, [ty, hist]) if hist == "_history" => {
            fhir::type_history(state, base.clone(), Path(ty.clone()), h, RawQuery(query)).await
        }
        (Method::GET, [ty, id]) => fhir::read(state, base.clone(), Path((ty.clone(), id.clone())), h).await,
        (Method::GET, [ty, id, hist]) if hist == "_history" => {
            fhir::history(state, base.clone(), Path((ty.clone(), id.clone())), h).await
        }
        (Method::GET, [ty, id, hist, v]) if hist == "_history" => {
            fhir::vread(state, base.clone(), Path((ty.clone(), id.clone(), v.clone())), h).await
        }
        (Method::POST, [ty]) => fhir::create(state, base.clone(), Path(ty.clone()), h, FhirBody(body)).await,
        (Method::PUT, [ty, id]) => {
            fhir::update(state, base.clone(), Path((ty.clone(), id.clone())), h, FhirBody(body)).await
        }
        (Method::DELETE, [ty, id]) => fhir::delete(state, base.clone(), Path((ty.clone(), id.clone())), h).await,
        _ => outcome(StatusCode::BAD_REQUEST, "not-supported", &format!("{method} {url} is not supported in a batch")),
    }
}
