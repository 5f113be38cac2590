//! The FHIR REST API (spec digest §1.8): every request carries a bearer token checked for
//! signature, expiry, audience and revocation (401), then each interaction is checked against
//! the granted scopes and launch context (403): c = create, r = read / vread / history,
//! u = update (and update-as-create), d = delete.  Bulk Data export (`$export`) is in
//! [`export`].
// Checks return the finished error response to send: it is built once per refused request,
// so boxing it would only add an allocation.
#![allow(clippy::result_large_err)]

mod export;
mod history;
mod search;

pub(crate) use export::{
    cancel as export_cancel, file as export_file, group_get as export_group_get, group_post as export_group_post,
    patient_get as export_patient_get, patient_post as export_patient_post, status as export_status,
    system_get as export_system_get, system_post as export_system_post,
};
pub(crate) use history::{history, type_history, vread};
pub(crate) use search::{search as search_within, search_get, search_post};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use smart_scopes::{Interaction, ScopeSet};
use smartlaunch_auth::error::BearerError;
use smartlaunch_auth::keys::AccessClaims;
use smartlaunch_fhir::access::{may, may_write, Denied, Requester};
use smartlaunch_fhir::capability::{capability_statement, OAuthUris};
use smartlaunch_fhir::is_valid_id;
use smartlaunch_fhir::limits::{check_json_body, MAX_BODY_BYTES, RESPONSE_BUDGET_BYTES};
use smartlaunch_fhir::resource_types::is_resource_type;
use smartlaunch_fhir::store::{Expected, ResourceStore, StoredResource, WriteError};
use smartlaunch_fhir::validate::{check_update_id, parse_resource};

use crate::server::{instant, App};

const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// The media type to answer with: `application/json` when the client asks for it (the
/// JavaScript SMART client does), `application/fhir+json` otherwise.
fn content_type(headers: &HeaderMap) -> HeaderValue {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if accept.contains("application/json") && !accept.contains("application/fhir+json") {
        HeaderValue::from_static("application/json; charset=utf-8")
    } else {
        HeaderValue::from_static(FHIR_JSON)
    }
}

/// An OperationOutcome with one issue: how every FHIR error is answered.
pub(crate) fn outcome(status: StatusCode, code: &str, diagnostics: &str) -> Response {
    let severity = if status.is_server_error() { "fatal" } else { "error" };
    let body = json!({
        "resourceType": "OperationOutcome",
        "issue": [{ "severity": severity, "code": code, "diagnostics": diagnostics }]
    });
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON))], body.to_string()).into_response()
}

/// An OperationOutcome of severity `information` (an accepted asynchronous request).
pub(crate) fn information(status: StatusCode, diagnostics: &str) -> Response {
    let body = json!({
        "resourceType": "OperationOutcome",
        "issue": [{ "severity": "information", "code": "informational", "diagnostics": diagnostics }]
    });
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON))], body.to_string()).into_response()
}

fn forbidden(denied: &Denied) -> Response {
    outcome(StatusCode::FORBIDDEN, "forbidden", &denied.message())
}

/// Marks a response refused for the response budget, so that a batch holding it refuses the
/// whole batch (its budget is shared by its entries).
#[derive(Clone, Copy, Debug)]
pub(crate) struct OverBudget;

/// 400 `too-costly`: the response would pass [`RESPONSE_BUDGET_BYTES`]; `what_to_do` says how
/// to ask for less.
pub(crate) fn over_budget(what_to_do: &str) -> Response {
    let mib = RESPONSE_BUDGET_BYTES / (1024 * 1024);
    let mut response = outcome(
        StatusCode::BAD_REQUEST,
        "too-costly",
        &format!("the response would pass this server's response budget of {mib} MiB: {what_to_do}"),
    );
    response.extensions_mut().insert(OverBudget);
    response
}

/// `envelope` (a JSON object) with a `resource` member whose JSON text is `resource`, spliced in
/// as it is: a stored resource is never parsed and re-serialised to be sent.
pub(crate) fn with_resource(envelope: &Value, resource: &str) -> String {
    let mut out = envelope.to_string();
    if out.ends_with('}') && !resource.is_empty() {
        out.pop();
        out.push_str(if out.len() > 1 { ",\"resource\":" } else { "\"resource\":" });
        out.push_str(resource);
        out.push('}');
    }
    out
}

/// A Bundle: `head` (a JSON object without entries) with `entry` holding the entries' JSON text.
pub(crate) fn bundle_with_entries(head: &Value, entries: &[String]) -> String {
    let mut out = head.to_string();
    out.pop();
    out.reserve(entries.iter().map(|e| e.len() + 1).sum::<usize>() + 12);
    out.push_str(",\"entry\":[");
    for (n, e) in entries.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        out.push_str(e);
    }
    out.push_str("]}");
    out
}

/// A FHIR request body of at most [`MAX_BODY_BYTES`] (the router's `DefaultBodyLimit`) whose
/// JSON would not parse into too large a tree ([`check_json_body`]); otherwise a 413
/// OperationOutcome, and any other failure a 400 one.
pub(crate) struct FhirBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for FhirBody {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<FhirBody, Response> {
        let bytes = Bytes::from_request(req, state).await.map_err(body_rejected)?;
        match check_json_body(&bytes) {
            Ok(()) => Ok(FhirBody(bytes)),
            Err(why) => Err(outcome(StatusCode::PAYLOAD_TOO_LARGE, "too-costly", &why)),
        }
    }
}

/// A body that could not be read: 413 past [`MAX_BODY_BYTES`], else 400 (an OperationOutcome).
pub(crate) fn body_rejected(e: BytesRejection) -> Response {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        outcome(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-costly",
            &format!(
                "the request body is larger than this server's limit of {} MiB; send fewer resources per Bundle",
                MAX_BODY_BYTES / (1024 * 1024)
            ),
        )
    } else {
        outcome(StatusCode::BAD_REQUEST, "invalid", &format!("the request body: {}", e.body_text()))
    }
}

pub(crate) fn server_error(what: &str, e: impl std::fmt::Display) -> Response {
    tracing::error!("{what}: {e}");
    outcome(StatusCode::INTERNAL_SERVER_ERROR, "exception", &format!("the server could not {what}"))
}

/// 401 with an RFC 6750 challenge.
fn unauthorized(e: &BearerError) -> Response {
    let challenge = match e {
        BearerError::Missing => "Bearer realm=\"smartlaunch\"".to_owned(),
        BearerError::Invalid(why) => {
            format!("Bearer realm=\"smartlaunch\", error=\"invalid_token\", error_description=\"{why}\"")
        }
    };
    let mut response = outcome(StatusCode::UNAUTHORIZED, "login", &e.to_string());
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    response
}

/// The FHIR base a request came in through: ours (`/fhir`), or a developer-launcher
/// simulation's (`/sim/{id}/fhir`, rewritten to `/fhir` by [`crate::web::route_simulations`]).
/// Tokens must be for it, and links point back through it.
#[derive(Clone, Debug)]
pub(crate) struct FhirBase(pub String);

impl FromRequestParts<App> for FhirBase {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<FhirBase, Self::Rejection> {
        Ok(parts.extensions.get::<FhirBase>().cloned().unwrap_or_else(|| FhirBase(app.auth.config.fhir_base())))
    }
}

/// The validated bearer token of a request, with its parsed scopes.
pub(crate) struct Caller {
    claims: AccessClaims,
    scopes: ScopeSet,
}

impl Caller {
    pub(crate) fn requester(&self) -> Requester<'_> {
        Requester {
            scopes: &self.scopes,
            patient: self.claims.patient.as_deref(),
            fhir_user: self.claims.fhir_user.as_deref(),
        }
    }

    fn may(&self, interaction: Interaction, resource_type: &str, compartments: &[String]) -> Result<(), Response> {
        may(&self.requester(), interaction, resource_type, compartments).map_err(|d| forbidden(&d))
    }

    /// A write of this resource (its patient compartment rule: [`may_write`]).
    fn may_write(&self, interaction: Interaction, resource: &Value) -> Result<(), Response> {
        may_write(&self.requester(), interaction, resource).map_err(|d| forbidden(&d))
    }

    /// A write that replaces or deletes a stored version: checked on that version's JSON.
    fn may_write_over(&self, interaction: Interaction, stored: &StoredResource) -> Result<(), Response> {
        match serde_json::from_str::<Value>(&stored.json) {
            Ok(old) => self.may_write(interaction, &old),
            Err(e) => Err(server_error("read the stored resource", e)),
        }
    }

    /// Read access, including granular scopes (`patient/Observation.rs?category=…`), which are
    /// evaluated against the stored resource's search index.
    async fn may_read(&self, app: &App, stored: &StoredResource) -> Result<(), Response> {
        let ty = &stored.resource_type;
        match may(&self.requester(), Interaction::Read, ty, &stored.compartments) {
            Ok(()) => Ok(()),
            Err(Denied::OutsideGrant) if !stored.deleted => {
                let access = smartlaunch_fhir::access::constraints(&self.requester(), Interaction::Read, ty)
                    .map_err(|d| forbidden(&d))?;
                match app.db.matches(ty, &stored.id, &access).await {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(forbidden(&Denied::OutsideGrant)),
                    Err(e) => Err(server_error("check the access", e)),
                }
            }
            Err(d) => Err(forbidden(&d)),
        }
    }
}

/// Checks the bearer token (checklist item 77) and the path's resource type and id.
pub(crate) fn authenticate(
    app: &App,
    base: &FhirBase,
    headers: &HeaderMap,
    resource_type: &str,
    id: Option<&str>,
) -> Result<Caller, Response> {
    let caller = authenticate_token(app, base, headers)?;
    if !is_resource_type(resource_type) {
        return Err(outcome(
            StatusCode::NOT_FOUND,
            "not-supported",
            &format!("`{resource_type}` is not a FHIR R4 resource type"),
        ));
    }
    if id.is_some_and(|id| !is_valid_id(id)) {
        return Err(outcome(
            StatusCode::BAD_REQUEST,
            "invalid",
            "a FHIR id is 1–64 characters of A–Z, a–z, 0–9, `-` and `.`",
        ));
    }
    Ok(caller)
}

/// Checks the bearer token (checklist item 77): signature, expiry, audience, revocation.
pub(crate) fn authenticate_token(app: &App, base: &FhirBase, headers: &HeaderMap) -> Result<Caller, Response> {
    let token = crate::web::bearer(headers).ok_or_else(|| unauthorized(&BearerError::Missing))?;
    let claims = app.auth.verify_bearer_for(token, &base.0, app.clock.now()).map_err(|e| unauthorized(&e))?;
    let scopes = ScopeSet::parse(&claims.scope)
        .map_err(|_| outcome(StatusCode::UNAUTHORIZED, "login", "the access token carries malformed scopes"))?;
    Ok(Caller { claims, scopes })
}

/// The compartments a not-yet-stored `Patient/{id}` would be in (itself), so that a patient
/// token asking for another patient's id gets 403 whether or not it exists.
fn presumed_compartments(resource_type: &str, id: &str) -> Vec<String> {
    if resource_type == "Patient" {
        vec![id.to_owned()]
    } else {
        Vec::new()
    }
}

/// A resource that does not exist: 403 when the token could not have touched it anyway (no
/// scope for the type, or another patient's `Patient/{id}`), so existence does not leak; 404
/// otherwise.
fn missing(caller: &Caller, interaction: Interaction, ty: &str, id: &str, message: String) -> Response {
    let no_scope = caller.scopes.grants(ty, interaction).next().is_none();
    match caller.may(interaction, ty, &presumed_compartments(ty, id)) {
        Err(r) if no_scope || ty == "Patient" => r,
        _ => outcome(StatusCode::NOT_FOUND, "not-found", &message),
    }
}

/// `Last-Modified` from a FHIR instant.
fn http_date(instant: &str) -> Option<HeaderValue> {
    let t = time::OffsetDateTime::parse(instant, &time::format_description::well_known::Rfc3339).ok()?;
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    HeaderValue::from_str(&t.to_offset(time::UtcOffset::UTC).format(&format).ok()?).ok()
}

fn etag(version: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("W/\"{version}\"")).expect("ascii")
}

/// A resource response with `ETag`, `Last-Modified` and (for writes) `Location`.
fn resource_response(
    status: StatusCode,
    headers: &HeaderMap,
    stored: &StoredResource,
    location: Option<String>,
) -> Response {
    let mut response = (
        status,
        [(header::CONTENT_TYPE, content_type(headers)), (header::ETAG, etag(stored.version_id))],
        stored.json.clone(),
    )
        .into_response();
    if let Some(date) = http_date(&stored.last_updated) {
        response.headers_mut().insert(header::LAST_MODIFIED, date);
    }
    if let Some(l) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        response.headers_mut().insert(header::LOCATION, l);
    }
    response
}

fn gone(stored: &StoredResource) -> Response {
    let mut response = outcome(
        StatusCode::GONE,
        "deleted",
        &format!("{}/{} was deleted (version {})", stored.resource_type, stored.id, stored.version_id),
    );
    response.headers_mut().insert(header::ETAG, etag(stored.version_id));
    response
}

/// `If-Match: W/"3"` → 3.
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, Response> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .map(|v| v.trim().trim_start_matches("W/").trim_matches('"'))
        .and_then(|v| v.parse::<i64>().ok())
        .map(Some)
        .ok_or_else(|| outcome(StatusCode::BAD_REQUEST, "invalid", "If-Match must be an ETag such as W/\"3\""))
}

/// Only FHIR JSON bodies are accepted.
fn check_body_type(headers: &HeaderMap) -> Result<(), Response> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let media = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    if media == "application/fhir+json" || media == "application/json" {
        Ok(())
    } else {
        Err(outcome(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not-supported",
            "send the resource as Content-Type: application/fhir+json (or application/json)",
        ))
    }
}

fn now_instant(app: &App) -> String {
    instant(app.clock.now())
}

/// `GET /fhir/metadata`.
pub(crate) async fn metadata(State(app): State<App>, base: FhirBase, headers: HeaderMap) -> Response {
    let c = &app.auth.config;
    let (authorize, token, register) = (c.authorize_endpoint(), c.token_endpoint(), c.registration_endpoint());
    let (introspect, revoke, manage) = (c.introspection_endpoint(), c.revocation_endpoint(), c.management_endpoint());
    let body = capability_statement(
        env!("CARGO_PKG_VERSION"),
        &base.0,
        &OAuthUris {
            authorize: &authorize,
            token: &token,
            register: &register,
            introspect: &introspect,
            revoke: &revoke,
            manage: &manage,
        },
        &app.started_at,
    );
    ([(header::CONTENT_TYPE, content_type(&headers))], body.to_string()).into_response()
}

/// `GET /fhir/{type}/{id}`: read (r).
pub(crate) async fn read(
    State(app): State<App>,
    base: FhirBase,
    Path((ty, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let caller = match authenticate(&app, &base, &headers, &ty, Some(&id)) {
        Ok(c) => c,
        Err(r) => return r,
    };
    match app.db.read(&ty, &id).await {
        Ok(Some(stored)) => readable_response(&app, &caller, &headers, &stored).await,
        Ok(None) => missing(&caller, Interaction::Read, &ty, &id, format!("{ty}/{id} does not exist")),
        Err(e) => server_error("read the resource", e),
    }
}

/// A read or vread answer: the version if the token may read it (granular scopes included),
/// 410 for a deletion.
async fn readable_response(app: &App, caller: &Caller, headers: &HeaderMap, stored: &StoredResource) -> Response {
    if let Err(r) = caller.may_read(app, stored).await {
        return r;
    }
    if stored.deleted {
        return gone(stored);
    }
    resource_response(StatusCode::OK, headers, stored, None)
}

/// `POST /fhir/{type}`: create (c), with a server-assigned id.
pub(crate) async fn create(
    State(app): State<App>,
    base: FhirBase,
    Path(ty): Path<String>,
    headers: HeaderMap,
    FhirBody(body): FhirBody,
) -> Response {
    let caller = match authenticate(&app, &base, &headers, &ty, None) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if let Err(r) = check_body_type(&headers) {
        return r;
    }
    let mut resource = match parse_resource(&body, &ty) {
        Ok(r) => r,
        Err(e) => return outcome(StatusCode::BAD_REQUEST, "invalid", &e.to_string()),
    };
    let id = smartlaunch_auth::secrets::random_hex(16);
    resource["id"] = Value::String(id.clone());
    if let Err(r) = caller.may_write(Interaction::Create, &resource) {
        return r;
    }
    // Conditional create: `If-None-Exist: <search>` — none: create; one: return it; more: 412.
    if let Some(condition) = headers.get("if-none-exist") {
        let pairs = crate::web::form_pairs(condition.as_bytes());
        let mut request = match smartlaunch_fhir::search::query::parse(&ty, &pairs, true) {
            Ok(r) => r,
            Err(e) => return outcome(StatusCode::BAD_REQUEST, "invalid", &format!("If-None-Exist: {e}")),
        };
        request.count = 2;
        let access = match smartlaunch_fhir::access::constraints(&caller.requester(), Interaction::Search, &ty) {
            Ok(a) => a,
            Err(_) => {
                return outcome(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    &format!(
                    "a conditional create needs a search scope on {ty} (e.g. patient/{ty}.s) to evaluate If-None-Exist"
                ),
                )
            }
        };
        match app.db.search(&ty, &request, &access).await {
            Ok(page) if page.total == 0 => {}
            Ok(page) if page.total == 1 => {
                let existing: Value = serde_json::from_str(&page.resources[0]).unwrap_or(Value::Null);
                let existing_id = existing["id"].as_str().unwrap_or_default();
                return match app.db.read(&ty, existing_id).await {
                    Ok(Some(stored)) => resource_response(StatusCode::OK, &headers, &stored, None),
                    Ok(None) => outcome(StatusCode::CONFLICT, "conflict", "the matching resource vanished; retry"),
                    Err(e) => server_error("read the resource", e),
                };
            }
            Ok(_) => {
                return outcome(
                    StatusCode::PRECONDITION_FAILED,
                    "duplicate",
                    "If-None-Exist matches more than one resource",
                )
            }
            Err(e) => return server_error("evaluate If-None-Exist", e),
        }
    }
    match app.db.put(&resource, Expected::Absent, &now_instant(&app)).await {
        Ok(stored) => {
            let location = format!("{}/{ty}/{id}/_history/{}", base.0, stored.version_id);
            resource_response(StatusCode::CREATED, &headers, &stored, Some(location))
        }
        Err(e) => server_error("store the resource", e),
    }
}

/// `PUT /fhir/{type}/{id}`: update (u), or update-as-create (u) when there is none; `If-Match`
/// makes it conditional (412 on a mismatch).
pub(crate) async fn update(
    State(app): State<App>,
    base: FhirBase,
    Path((ty, id)): Path<(String, String)>,
    headers: HeaderMap,
    FhirBody(body): FhirBody,
) -> Response {
    let caller = match authenticate(&app, &base, &headers, &ty, Some(&id)) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if let Err(r) = check_body_type(&headers) {
        return r;
    }
    let if_match = match if_match(&headers) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let resource = match parse_resource(&body, &ty).and_then(|r| check_update_id(&r, &id).map(|()| r)) {
        Ok(r) => r,
        Err(e) => return outcome(StatusCode::BAD_REQUEST, "invalid", &e.to_string()),
    };
    let stored = match app.db.read(&ty, &id).await {
        Ok(c) => c,
        Err(e) => return server_error("read the resource", e),
    };
    // The old version must be updatable, and the new one too (it may not move out of reach).
    // A deleted resource is judged by the compartments it was deleted from, as in a
    // transaction: recreating it is no way into another patient's id and history.
    match &stored {
        Some(old) if !old.deleted => {
            if let Err(r) = caller.may_write_over(Interaction::Update, old) {
                return r;
            }
        }
        Some(gone) => {
            if let Err(r) = caller.may(Interaction::Update, &ty, &gone.compartments) {
                return r;
            }
        }
        None => {}
    }
    let current = stored.filter(|c| !c.deleted);
    if let Err(r) = caller.may_write(Interaction::Update, &resource) {
        return r;
    }
    let expected = match (if_match, &current) {
        (Some(v), Some(c)) if v != c.version_id => {
            return outcome(
                StatusCode::PRECONDITION_FAILED,
                "conflict",
                &format!("If-Match names version {v}, but the current version is {}", c.version_id),
            )
        }
        (Some(_), None) => {
            return outcome(
                StatusCode::PRECONDITION_FAILED,
                "conflict",
                &format!("If-Match was sent but {ty}/{id} does not exist"),
            )
        }
        (_, Some(c)) => Expected::Version(c.version_id),
        (None, None) => Expected::Absent,
    };
    match app.db.put(&resource, expected, &now_instant(&app)).await {
        Ok(stored) => {
            let status = if current.is_some() { StatusCode::OK } else { StatusCode::CREATED };
            let location = format!("{}/{ty}/{id}/_history/{}", base.0, stored.version_id);
            resource_response(status, &headers, &stored, Some(location))
        }
        Err(WriteError::Conflict(_)) => outcome(
            StatusCode::CONFLICT,
            "conflict",
            "the resource changed while it was being updated; read it again and retry (use If-Match)",
        ),
        Err(WriteError::Store(e)) => server_error("store the resource", e),
    }
}

/// `DELETE /fhir/{type}/{id}`: delete (d).
pub(crate) async fn delete(
    State(app): State<App>,
    base: FhirBase,
    Path((ty, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let caller = match authenticate(&app, &base, &headers, &ty, Some(&id)) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let if_match = match if_match(&headers) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let current = match app.db.read(&ty, &id).await {
        Ok(c) => c,
        Err(e) => return server_error("read the resource", e),
    };
    // A live resource is checked as a write on its stored JSON; a deleted or missing one only
    // as far as its compartments say (nothing is written).
    let allowed = match &current {
        Some(c) if !c.deleted => caller.may_write_over(Interaction::Delete, c),
        Some(c) => caller.may(Interaction::Delete, &ty, &c.compartments),
        None => caller.may(Interaction::Delete, &ty, &presumed_compartments(&ty, &id)),
    };
    if let Err(r) = allowed {
        return r;
    }
    let Some(current) = current.filter(|c| !c.deleted) else {
        return StatusCode::NO_CONTENT.into_response();
    };
    if let Some(v) = if_match.filter(|v| *v != current.version_id) {
        return outcome(
            StatusCode::PRECONDITION_FAILED,
            "conflict",
            &format!("If-Match names version {v}, but the current version is {}", current.version_id),
        );
    }
    match app.db.delete(&ty, &id, Expected::Version(current.version_id), &now_instant(&app)).await {
        Ok(stored) => (StatusCode::NO_CONTENT, [(header::ETAG, etag(stored.version_id))]).into_response(),
        Err(WriteError::Conflict(_)) => {
            outcome(StatusCode::CONFLICT, "conflict", "the resource changed while it was being deleted")
        }
        Err(WriteError::Store(e)) => server_error("delete the resource", e),
    }
}
