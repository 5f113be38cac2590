//! FHIR Bulk Data export over HTTP (Bulk Data Access IG v2.0.0): the kick-off
//! (`$export` at system, Patient and Group level, GET or POST of a `Parameters` resource), the
//! status endpoint (poll, cancel) and the output files.  The rules are in
//! `smartlaunch_fhir::export`; the job runner is [`crate::exports`].

// Checks return the finished error response to send: it is built once per refused request,
// so boxing it would only add an allocation.
#![allow(clippy::result_large_err)]

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use smartlaunch_fhir::export::{
    is_job_id, manifest, may_export, parameters_to_pairs, parse_kickoff, ExportError, ExportJob, ExportLevel,
    ExportSpec, ExportStore, StatusView, MAX_ACTIVE_JOBS, MAX_ACTIVE_JOBS_PER_CLIENT, MAX_GROUP_MEMBERS, NDJSON,
};
use smartlaunch_fhir::is_valid_id;
use smartlaunch_fhir::store::ResourceStore;

use super::render::{http_date, information, outcome, server_error};
use super::{check_body_type, FhirBody, FhirCaller};
use crate::server::App;

fn refused(e: &ExportError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    outcome(status, e.code(), &e.to_string())
}

/// The parts of a kick-off every level shares: the caller (a backend service),
/// `Prefer: respond-async`, and an `Accept` that allows FHIR JSON.  Returns whether
/// `Prefer: handling=lenient` was sent.
fn kickoff_headers(caller: &FhirCaller, headers: &HeaderMap) -> Result<bool, Response> {
    may_export(&caller.requester()).map_err(|e| refused(&e))?;
    let prefer: Vec<String> = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']).map(|p| p.trim().to_ascii_lowercase()))
        .collect();
    if !prefer.iter().any(|p| p == "respond-async") {
        return Err(outcome(
            StatusCode::BAD_REQUEST,
            "invalid",
            "$export runs asynchronously: send the header Prefer: respond-async (Bulk Data IG, kick-off request)",
        ));
    }
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("*/*");
    let acceptable = accept
        .split(',')
        .map(|a| a.split(';').next().unwrap_or_default().trim())
        .any(|a| matches!(a, "application/fhir+json" | "application/json" | "*/*" | "application/*" | ""));
    if !acceptable {
        return Err(outcome(
            StatusCode::BAD_REQUEST,
            "not-supported",
            "the kick-off answers in application/fhir+json: send Accept: application/fhir+json",
        ));
    }
    Ok(prefer.iter().any(|p| p == "handling=lenient"))
}

/// `GET /fhir/$export`.
pub(crate) async fn system_get(
    State(app): State<App>,
    caller: FhirCaller,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    kickoff(&app, &caller, &headers, ExportLevel::System, Query::Get(q)).await
}

/// `POST /fhir/$export` (a `Parameters` resource).
pub(crate) async fn system_post(
    State(app): State<App>,
    caller: FhirCaller,
    headers: HeaderMap,
    body: FhirBody,
) -> Response {
    kickoff(&app, &caller, &headers, ExportLevel::System, Query::Post(body)).await
}

/// `GET /fhir/Patient/$export`.
pub(crate) async fn patient_get(
    State(app): State<App>,
    caller: FhirCaller,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    kickoff(&app, &caller, &headers, ExportLevel::Patient, Query::Get(q)).await
}

/// `POST /fhir/Patient/$export`.
pub(crate) async fn patient_post(
    State(app): State<App>,
    caller: FhirCaller,
    headers: HeaderMap,
    body: FhirBody,
) -> Response {
    kickoff(&app, &caller, &headers, ExportLevel::Patient, Query::Post(body)).await
}

/// `GET /fhir/Group/{id}/$export`.
pub(crate) async fn group_get(
    State(app): State<App>,
    caller: FhirCaller,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    kickoff(&app, &caller, &headers, ExportLevel::Group(id), Query::Get(q)).await
}

/// `POST /fhir/Group/{id}/$export`.
pub(crate) async fn group_post(
    State(app): State<App>,
    caller: FhirCaller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: FhirBody,
) -> Response {
    kickoff(&app, &caller, &headers, ExportLevel::Group(id), Query::Post(body)).await
}

/// Where the kick-off parameters come from.
enum Query {
    Get(Option<String>),
    Post(FhirBody),
}

async fn kickoff(app: &App, caller: &FhirCaller, headers: &HeaderMap, level: ExportLevel, query: Query) -> Response {
    let base = &caller.base;
    let lenient = match kickoff_headers(caller, headers) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let path = match &level {
        ExportLevel::System => "/$export".to_owned(),
        ExportLevel::Patient => "/Patient/$export".to_owned(),
        ExportLevel::Group(id) => format!("/Group/{id}/$export"),
    };
    let (pairs, request_url) = match query {
        Query::Get(q) => {
            let q = q.unwrap_or_default();
            let url = if q.is_empty() { format!("{}{path}", base.0) } else { format!("{}{path}?{q}", base.0) };
            (crate::web::form_pairs(q.as_bytes()), url)
        }
        Query::Post(FhirBody(body)) => {
            if let Err(r) = check_body_type(headers) {
                return r.into_response();
            }
            // `FhirBody` has bounded the body and its JSON tree already.
            let parsed = serde_json::from_slice::<Value>(&body)
                .map_err(|e| ExportError::Invalid(format!("the Parameters body is not JSON: {e}")))
                .and_then(|v| parameters_to_pairs(&v));
            match parsed {
                Ok(pairs) => (pairs, format!("{}{path}", base.0)),
                Err(e) => return refused(&e),
            }
        }
    };
    let params = match parse_kickoff(&pairs, lenient) {
        Ok(p) => p,
        Err(e) => return refused(&e),
    };
    let members = match &level {
        ExportLevel::Group(id) => match group_members(app, id).await {
            Ok(m) => m,
            Err(r) => return r,
        },
        _ => Vec::new(),
    };
    let now = app.clock.now();
    let spec = ExportSpec { level, params, scope: caller.claims.scope.clone(), members };
    let id = smartlaunch_auth::secrets::random_hex(16);
    let job = ExportJob::new(id.clone(), caller.claims.client_id.clone(), request_url, spec, now);
    match app.db.insert_export_job(&job, MAX_ACTIVE_JOBS_PER_CLIENT, MAX_ACTIVE_JOBS).await {
        Ok(true) => {}
        Ok(false) => {
            let mut r = outcome(
                StatusCode::TOO_MANY_REQUESTS,
                "throttled",
                &format!(
                    "too many export jobs are running: at most {MAX_ACTIVE_JOBS_PER_CLIENT} per client \
                     ({MAX_ACTIVE_JOBS} in all); wait for one to finish or cancel one (DELETE its status URL)"
                ),
            );
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
            return r;
        }
        Err(e) => return server_error("store the export job", e),
    }
    app.exports.spawn(id.clone());
    let mut r = information(StatusCode::ACCEPTED, "the export has started; poll the URL in Content-Location");
    if let Ok(v) = HeaderValue::from_str(&format!("{}/$export-status/{id}", base.0)) {
        r.headers_mut().insert(header::CONTENT_LOCATION, v);
    }
    r
}

/// The ids of a Group's active Patient members (404 when there is no such Group).
async fn group_members(app: &App, id: &str) -> Result<Vec<String>, Response> {
    if !is_valid_id(id) {
        return Err(outcome(
            StatusCode::BAD_REQUEST,
            "invalid",
            "a FHIR id is 1–64 characters of A–Z, a–z, 0–9, `-` and `.`",
        ));
    }
    let group = match app.db.read("Group", id).await {
        Ok(Some(g)) if !g.deleted => g,
        Ok(_) => return Err(outcome(StatusCode::NOT_FOUND, "not-found", &format!("Group/{id} does not exist"))),
        Err(e) => return Err(server_error("read the Group", e)),
    };
    let group: Value = serde_json::from_str(&group.json).map_err(|e| server_error("read the Group", e))?;
    let mut members: Vec<String> = group["member"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["inactive"] != Value::Bool(true))
        .filter_map(|m| m.pointer("/entity/reference").and_then(Value::as_str))
        .filter_map(|r| r.strip_prefix("Patient/").filter(|p| is_valid_id(p)).map(str::to_owned))
        .collect();
    members.sort();
    members.dedup();
    if members.len() > MAX_GROUP_MEMBERS {
        return Err(refused(&ExportError::TooCostly(format!(
            "Group/{id} has {} patient members; an export covers at most {MAX_GROUP_MEMBERS}",
            members.len()
        ))));
    }
    Ok(members)
}

/// The job `id` as the caller may see it, at `now`: only a backend service's token of the
/// job's client ([`may_export`]; a token from one of the same client's app launches carries a
/// patient or user and may not reach an export of every patient).
async fn view(app: &App, caller: &FhirCaller, id: &str) -> Result<Option<ExportJob>, Response> {
    may_export(&caller.requester()).map_err(|e| refused(&e))?;
    if !is_job_id(id) {
        return Ok(None);
    }
    app.db.export_job(id).await.map_err(|e| server_error("read the export job", e)).map(|job| {
        job.filter(|j| {
            !matches!(StatusView::of(Some(j), &caller.claims.client_id, app.clock.now()), StatusView::NotFound(_))
        })
    })
}

/// `GET /fhir/$export-status/{job}`: 202 with `X-Progress` while the job runs, 200 with the
/// manifest when it is complete, 500 with an OperationOutcome when it failed; 403 for a token
/// that may not export (as at the kick-off), 404 for another client's job.
pub(crate) async fn status(State(app): State<App>, caller: FhirCaller, Path(id): Path<String>) -> Response {
    if let Err(e) = may_export(&caller.requester()) {
        return refused(&e);
    }
    let now = app.clock.now();
    let job = match is_job_id(&id) {
        true => match app.db.export_job(&id).await {
            Ok(j) => j,
            Err(e) => return server_error("read the export job", e),
        },
        false => None,
    };
    match StatusView::of(job.as_ref(), &caller.claims.client_id, now) {
        StatusView::NotFound(why) => outcome(StatusCode::NOT_FOUND, "not-found", why),
        StatusView::InProgress(progress) => {
            let mut r = StatusCode::ACCEPTED.into_response();
            if let Ok(v) = HeaderValue::from_str(progress) {
                r.headers_mut().insert(HeaderName::from_static("x-progress"), v);
            }
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
        StatusView::Failed(why) => outcome(StatusCode::INTERNAL_SERVER_ERROR, "exception", why),
        StatusView::Complete(done) => {
            let Some(job) = job.as_ref() else { return StatusCode::NOT_FOUND.into_response() };
            let body = manifest(job, done, &format!("{}/$export-file/{id}", caller.base.0));
            let mut r = ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body.to_string())
                .into_response();
            if let Some(expires) = http_date(&smartlaunch_fhir::export::instant_of(job.expires_at)) {
                r.headers_mut().insert(header::EXPIRES, expires);
            }
            r
        }
    }
}

/// `DELETE /fhir/$export-status/{job}`: cancels the job and deletes its files (202); the job
/// is gone afterwards (404).
pub(crate) async fn cancel(State(app): State<App>, caller: FhirCaller, Path(id): Path<String>) -> Response {
    let job = match view(&app, &caller, &id).await {
        Ok(Some(job)) => job,
        Ok(None) => return outcome(StatusCode::NOT_FOUND, "not-found", "no export job of this client has this id"),
        Err(r) => return r,
    };
    if let Err(e) = app.db.delete_export_job(&job.id).await {
        return server_error("delete the export job", e);
    }
    app.exports.cancel(&job.id).await;
    information(StatusCode::ACCEPTED, "the export job was cancelled and its files deleted")
}

/// `GET /fhir/$export-file/{job}/{file}`: one output file of a completed job of the caller's
/// client, streamed from disk.
pub(crate) async fn file(
    State(app): State<App>,
    caller: FhirCaller,
    Path((id, name)): Path<(String, String)>,
) -> Response {
    let gone = || outcome(StatusCode::NOT_FOUND, "not-found", "no such file of an export job of this client");
    let job = match view(&app, &caller, &id).await {
        Ok(Some(job)) => job,
        Ok(None) => return gone(),
        Err(r) => return r,
    };
    let listed = job.outcome.as_ref().is_some_and(|o| o.has_file(&name));
    let Some(path) = app.exports.file(&job.id, &name).filter(|_| listed) else {
        return gone();
    };
    match tokio::fs::File::open(&path).await {
        Ok(f) => {
            let stream = tokio_util::io::ReaderStream::with_capacity(f, 64 * 1024);
            ([(header::CONTENT_TYPE, HeaderValue::from_static(NDJSON))], Body::from_stream(stream)).into_response()
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => gone(),
        Err(e) => server_error("read the export file", e),
    }
}
