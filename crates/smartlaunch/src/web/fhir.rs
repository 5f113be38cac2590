//! The FHIR API, for now `metadata` and `read` (spec digest §1.8): every request carries a
//! bearer token checked for signature, expiry, audience and revocation (401), then the
//! granted scopes and launch context (403).

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use smart_scopes::ScopeSet;
use smartlaunch_auth::error::BearerError;
use smartlaunch_fhir::access::{may_read, Requester};
use smartlaunch_fhir::capability::{capability_statement, OAuthUris, RESOURCES};
use smartlaunch_fhir::is_valid_id;
use smartlaunch_fhir::store::ResourceStore;

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

/// `GET /fhir/metadata`.
pub(crate) async fn metadata(State(app): State<App>, headers: HeaderMap) -> Response {
    let c = &app.auth.config;
    let (authorize, token, register) = (c.authorize_endpoint(), c.token_endpoint(), c.registration_endpoint());
    let (introspect, revoke, manage) = (c.introspection_endpoint(), c.revocation_endpoint(), c.management_endpoint());
    let body = capability_statement(
        env!("CARGO_PKG_VERSION"),
        &c.fhir_base(),
        &OAuthUris {
            authorize: &authorize,
            token: &token,
            register: &register,
            introspect: &introspect,
            revoke: &revoke,
            manage: &manage,
        },
        &instant(app.clock.now()),
    );
    ([(header::CONTENT_TYPE, content_type(&headers))], body.to_string()).into_response()
}

/// `GET /fhir/{type}/{id}` (checklist items 77–81).
pub(crate) async fn read(
    State(app): State<App>,
    Path((resource_type, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    let Some(token) = token else {
        return unauthorized(&BearerError::Missing);
    };
    let claims = match app.auth.verify_bearer(token, app.clock.now()) {
        Ok(c) => c,
        Err(e) => return unauthorized(&e),
    };
    if !RESOURCES.iter().any(|(t, _)| *t == resource_type) {
        return outcome(
            StatusCode::NOT_FOUND,
            "not-supported",
            &format!("resource type `{resource_type}` is not served here"),
        );
    }
    if !is_valid_id(&id) {
        return outcome(
            StatusCode::BAD_REQUEST,
            "invalid",
            "a FHIR id is 1–64 characters of A–Z, a–z, 0–9, `-` and `.`",
        );
    }
    let Ok(scopes) = ScopeSet::parse(&claims.scope) else {
        return outcome(StatusCode::UNAUTHORIZED, "login", "the access token carries malformed scopes");
    };
    let requester =
        Requester { scopes: &scopes, patient: claims.patient.as_deref(), fhir_user: claims.fhir_user.as_deref() };
    // A type the scopes never name is refused before the database is asked (no existence leak).
    let stored = match app.db.read(&resource_type, &id).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return match may_read(&requester, &resource_type, (resource_type == "Patient").then_some(id.as_str())) {
                Err(denied) => outcome(StatusCode::FORBIDDEN, "forbidden", &denied.message()),
                Ok(()) => outcome(StatusCode::NOT_FOUND, "not-found", &format!("{resource_type}/{id} does not exist")),
            }
        }
        Err(e) => {
            tracing::error!("read {resource_type}/{id}: {e}");
            return outcome(StatusCode::INTERNAL_SERVER_ERROR, "exception", "the server could not read the resource");
        }
    };
    if let Err(denied) = may_read(&requester, &resource_type, stored.patient_id.as_deref()) {
        return outcome(StatusCode::FORBIDDEN, "forbidden", &denied.message());
    }
    let etag =
        HeaderValue::from_str(&format!("W/\"{}\"", stored.version_id)).unwrap_or(HeaderValue::from_static("W/\"0\""));
    ([(header::CONTENT_TYPE, content_type(&headers)), (header::ETAG, etag)], stored.json).into_response()
}
