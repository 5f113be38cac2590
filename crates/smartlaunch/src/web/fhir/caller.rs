//! The extractors of the FHIR API: the FHIR base a request came in through, the authenticated
//! caller (the bearer token, checklist item 77), and a bounded FHIR request body.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use serde_json::Value;
use smart_scopes::ScopeSet;
use smartlaunch_auth::error::BearerError;
use smartlaunch_auth::keys::{AccessClaims, OpenedToken};
use smartlaunch_fhir::access::Requester;
use smartlaunch_fhir::limits::{check_json_body, MAX_BODY_BYTES};
use smartlaunch_fhir::service::{Context, FhirError, FhirService};
use smartlaunch_fhir::validate::Invalid;
use smartlaunch_store::Db;

use super::render::Refusal;
use crate::server::App;

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

/// The authenticated caller of a FHIR request: its bearer token checked for signature, expiry,
/// audience (the request's [`FhirBase`]) and revocation (401 otherwise), with its parsed scopes.
pub(crate) struct FhirCaller {
    pub claims: AccessClaims,
    pub scopes: ScopeSet,
    pub base: FhirBase,
}

impl FromRequestParts<App> for FhirCaller {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<FhirCaller, Refusal> {
        let Ok(base) = FhirBase::from_request_parts(parts, app).await;
        let token = crate::web::bearer(&parts.headers).ok_or(Refusal::Unauthenticated(BearerError::Missing))?;
        let now = app.clock.now();
        // Opened by the inspector's middleware (`record_fhir`) from this request's header.
        let claims = match parts.extensions.remove::<OpenedToken>() {
            Some(opened) => app.auth.verify_opened_for(opened, &base.0, now),
            None => app.auth.verify_bearer_for(token, &base.0, now),
        }
        .map_err(Refusal::Unauthenticated)?;
        let scopes = ScopeSet::parse(&claims.scope).map_err(|_| Refusal::MalformedScopes)?;
        Ok(FhirCaller { claims, scopes, base })
    }
}

impl FhirCaller {
    pub(crate) fn requester(&self) -> Requester<'_> {
        Requester {
            scopes: &self.scopes,
            patient: self.claims.patient.as_deref(),
            fhir_user: self.claims.fhir_user.as_deref(),
        }
    }

    /// What the service is given: this caller, its base, and the time now.
    pub(crate) fn context(&self, app: &App) -> Context<'_> {
        Context { requester: self.requester(), base: &self.base.0, now: app.clock.now() }
    }
}

/// The id of a created resource: 128 random bits, hex.
fn new_id() -> String {
    smartlaunch_auth::secrets::random_hex(16)
}

/// The FHIR REST service over the server's store.
pub(crate) fn service(app: &App) -> FhirService<'_, Db> {
    const NEW_ID: &(dyn Fn() -> String + Send + Sync) = &new_id;
    FhirService::new(&app.db, NEW_ID)
}

/// A FHIR request body of at most [`MAX_BODY_BYTES`] (the router's `DefaultBodyLimit`) whose
/// JSON would not parse into too large a tree ([`check_json_body`]); otherwise a 413
/// OperationOutcome, and any other failure a 400 one.
pub(crate) struct FhirBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for FhirBody {
    type Rejection = Refusal;

    async fn from_request(req: Request, state: &S) -> Result<FhirBody, Refusal> {
        let bytes = Bytes::from_request(req, state).await.map_err(body_rejected)?;
        check_json_body(&bytes).map_err(FhirError::TooLarge)?;
        Ok(FhirBody(bytes))
    }
}

impl FhirBody {
    /// The body as JSON (400 when it is not).
    pub(crate) fn json(&self) -> Result<Value, Refusal> {
        serde_json::from_slice(&self.0).map_err(|e| FhirError::from(Invalid::NotJson(e.to_string())).into())
    }
}

/// A body that could not be read: 413 past [`MAX_BODY_BYTES`], else 400 (an OperationOutcome).
pub(crate) fn body_rejected(e: BytesRejection) -> Refusal {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        FhirError::TooLarge(format!(
            "the request body is larger than this server's limit of {} MiB; send fewer resources per Bundle",
            MAX_BODY_BYTES / (1024 * 1024)
        ))
        .into()
    } else {
        FhirError::Invalid(format!("the request body: {}", e.body_text())).into()
    }
}

/// Only FHIR JSON bodies are accepted (415 otherwise).
pub(crate) fn check_body_type(headers: &HeaderMap) -> Result<(), Refusal> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let media = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    if media == "application/fhir+json" || media == "application/json" {
        Ok(())
    } else {
        Err(Refusal::UnsupportedMediaType(
            "send the resource as Content-Type: application/fhir+json (or application/json)",
        ))
    }
}
