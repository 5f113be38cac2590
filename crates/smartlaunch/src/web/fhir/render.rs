//! Rendering the FHIR service's answers as HTTP responses: an [`Outcome`] with its `ETag`,
//! `Last-Modified` and `Location`, and every refusal as one OperationOutcome ([`Refusal`]).

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use smartlaunch_auth::error::BearerError;
use smartlaunch_fhir::service::{etag, operation_outcome, FhirError, Outcome};
use smartlaunch_fhir::store::StoredResource;

pub(crate) const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// The media type to answer with: `application/json` when the client's `Accept` names it and
/// not `application/fhir+json` (the JavaScript SMART client does), `application/fhir+json`
/// otherwise.
pub(crate) fn content_type(headers: &HeaderMap) -> HeaderValue {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let ranges = || accept.split(',').map(|r| r.split(';').next().unwrap_or_default().trim());
    let names = |media: &str| ranges().any(|r| r.eq_ignore_ascii_case(media));
    if names("application/json") && !names("application/fhir+json") {
        HeaderValue::from_static("application/json; charset=utf-8")
    } else {
        HeaderValue::from_static(FHIR_JSON)
    }
}

/// Why a FHIR request was refused: by the service, or before it was called (authentication,
/// the body's media type).  Rendered as one OperationOutcome with the matching status.
#[derive(Debug)]
pub(crate) enum Refusal {
    Fhir(FhirError),
    /// 401 with an RFC 6750 challenge: no bearer token, or one that is not valid here.
    Unauthenticated(BearerError),
    /// 401: the token's scopes do not parse.
    MalformedScopes,
    /// 415: the body is not of a media type the interaction takes.
    UnsupportedMediaType(&'static str),
}

impl From<FhirError> for Refusal {
    fn from(e: FhirError) -> Refusal {
        Refusal::Fhir(e)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Fhir(e) => {
                if let FhirError::Store { what, error } = &e {
                    tracing::error!("{what}: {error}");
                }
                let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let mut response = fhir_json(status, e.operation_outcome().to_string());
                if let Some(v) = e.version_id().and_then(|v| HeaderValue::from_str(&etag(v)).ok()) {
                    response.headers_mut().insert(header::ETAG, v);
                }
                response
            }
            Refusal::Unauthenticated(e) => {
                let challenge = match &e {
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
            Refusal::MalformedScopes => {
                outcome(StatusCode::UNAUTHORIZED, "login", "the access token carries malformed scopes")
            }
            Refusal::UnsupportedMediaType(what) => outcome(StatusCode::UNSUPPORTED_MEDIA_TYPE, "not-supported", what),
        }
    }
}

fn fhir_json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON))], body).into_response()
}

/// An OperationOutcome with one issue (for refusals outside the REST service: Bulk Data
/// export, unknown addresses).
pub(crate) fn outcome(status: StatusCode, code: &str, diagnostics: &str) -> Response {
    fhir_json(status, operation_outcome(status.as_u16(), code, diagnostics).to_string())
}

/// An OperationOutcome of severity `information` (an accepted asynchronous request).
pub(crate) fn information(status: StatusCode, diagnostics: &str) -> Response {
    let body = json!({
        "resourceType": "OperationOutcome",
        "issue": [{ "severity": "information", "code": "informational", "diagnostics": diagnostics }]
    });
    fhir_json(status, body.to_string())
}

/// A 500 for a failure outside the REST service (logged; the client is told what failed).
pub(crate) fn server_error(what: &str, e: impl std::fmt::Display) -> Response {
    tracing::error!("{what}: {e}");
    outcome(StatusCode::INTERNAL_SERVER_ERROR, "exception", &format!("the server could not {what}"))
}

/// The answer to a REST interaction: the resource with `ETag`, `Last-Modified` and (for
/// writes) `Location` under `base`; 204 for a delete; a Bundle in the negotiated media type.
pub(crate) fn answer(headers: &HeaderMap, base: &str, outcome: Outcome) -> Response {
    let location = |v: &StoredResource| Some(format!("{base}/{}/{}/_history/{}", v.resource_type, v.id, v.version_id));
    match outcome {
        Outcome::Resource(v) | Outcome::Existing(v) => resource(StatusCode::OK, headers, v, None),
        Outcome::Updated(v) => {
            let l = location(&v);
            resource(StatusCode::OK, headers, v, l)
        }
        Outcome::Created(v) => {
            let l = location(&v);
            resource(StatusCode::CREATED, headers, v, l)
        }
        Outcome::Deleted(Some(v)) => {
            (StatusCode::NO_CONTENT, [(header::ETAG, etag_header(v.version_id))]).into_response()
        }
        Outcome::Deleted(None) => StatusCode::NO_CONTENT.into_response(),
        Outcome::Bundle(bundle) => ([(header::CONTENT_TYPE, content_type(headers))], bundle).into_response(),
    }
}

fn etag_header(version_id: i64) -> HeaderValue {
    HeaderValue::from_str(&etag(version_id)).unwrap_or_else(|_| HeaderValue::from_static("W/\"0\""))
}

/// A resource response with `ETag`, `Last-Modified` and, for writes, `Location`.
fn resource(status: StatusCode, headers: &HeaderMap, stored: StoredResource, location: Option<String>) -> Response {
    let date = http_date(&stored.last_updated);
    let mut response = (
        status,
        [(header::CONTENT_TYPE, content_type(headers)), (header::ETAG, etag_header(stored.version_id))],
        stored.json,
    )
        .into_response();
    if let Some(date) = date {
        response.headers_mut().insert(header::LAST_MODIFIED, date);
    }
    if let Some(l) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        response.headers_mut().insert(header::LOCATION, l);
    }
    response
}

/// An HTTP date (`Last-Modified`, `Expires`) from a FHIR instant.
pub(crate) fn http_date(instant: &str) -> Option<HeaderValue> {
    let t = time::OffsetDateTime::parse(instant, &time::format_description::well_known::Rfc3339).ok()?;
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    HeaderValue::from_str(&t.to_offset(time::UtcOffset::UTC).format(&format).ok()?).ok()
}
