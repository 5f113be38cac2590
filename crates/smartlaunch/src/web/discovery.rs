//! Discovery: SMART configuration (spec digest §1.1, checklist items 1–14), OpenID Connect
//! configuration and the JWK Set.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::server::App;
use crate::web::fhir::FhirBase;

/// The capabilities this server implements today — each one is tested
/// (`tests/http.rs`, "capabilities").
pub(crate) const CAPABILITIES: &[&str] = &[
    "launch-ehr",
    "launch-standalone",
    "authorize-post",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "sso-openid-connect",
    "context-standalone-patient",
    "context-standalone-encounter",
    "context-ehr-patient",
    "context-ehr-encounter",
    "context-banner",
    "context-style",
    "permission-offline",
    "permission-online",
    "permission-patient",
    "permission-user",
    "permission-v1",
    "permission-v2",
];

/// Scopes listed in `scopes_supported`; the server supports each (checklist item 9).
const SCOPES_SUPPORTED: &[&str] = &[
    "openid",
    "fhirUser",
    "launch",
    "launch/patient",
    "launch/encounter",
    "offline_access",
    "online_access",
    "patient/*.rs",
    "user/*.rs",
    "patient/*.read",
    "user/*.read",
    "system/*.rs",
    "system/*.read",
];

const AUTH_METHODS: &[&str] = &["private_key_jwt", "client_secret_basic", "client_secret_post", "none"];

fn json_response(body: Value) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body.to_string()).into_response()
}

/// `GET /fhir/.well-known/smart-configuration`: JSON whatever the Accept header says.
pub(crate) async fn smart_configuration(State(app): State<App>, base: FhirBase) -> Response {
    let c = &app.auth.config;
    if let Some(id) = c.simulation_of(&base.0) {
        crate::web::inspector::record_discovery(&app, id).await;
    }
    json_response(json!({
        "issuer": c.issuer(),
        "jwks_uri": c.jwks_uri(),
        "authorization_endpoint": c.authorize_endpoint(),
        "token_endpoint": c.token_endpoint(),
        "registration_endpoint": c.registration_endpoint(),
        "introspection_endpoint": c.introspection_endpoint(),
        "revocation_endpoint": c.revocation_endpoint(),
        "management_endpoint": c.management_endpoint(),
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "token_endpoint_auth_signing_alg_values_supported": smartlaunch_auth::jwk::ALGORITHMS,
        "scopes_supported": SCOPES_SUPPORTED,
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "capabilities": CAPABILITIES,
        "user_access_brand_bundle": format!("{}/smart/brands.json", c.public_url),
        "user_access_brand_identifier": {
            "system": smartlaunch_fhir::brands::BRAND_IDENTIFIER_SYSTEM,
            "value": c.public_url,
        },
    }))
}

/// `GET /smart/brands.json`: the User Access Brands Bundle, with a weak ETag and CORS
/// (checklist item 112).
pub(crate) async fn brands(State(app): State<App>, headers: axum::http::HeaderMap) -> Response {
    let c = &app.auth.config;
    let body = smartlaunch_fhir::brands::brands_bundle(&c.public_url, &c.fhir_base(), &app.started_at).to_string();
    let etag = format!("W/\"{}\"", &smartlaunch_auth::secrets::hash_token(&body)[..16]);
    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        return (axum::http::StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/fhir+json")),
            (header::ETAG, HeaderValue::from_str(&etag).expect("ascii")),
        ],
        body,
    )
        .into_response()
}

/// `GET /.well-known/openid-configuration` at the issuer (checklist item 92).
pub(crate) async fn openid_configuration(State(app): State<App>) -> Response {
    let c = &app.auth.config;
    json_response(json!({
        "issuer": c.issuer(),
        "authorization_endpoint": c.authorize_endpoint(),
        "token_endpoint": c.token_endpoint(),
        "registration_endpoint": c.registration_endpoint(),
        "jwks_uri": c.jwks_uri(),
        "introspection_endpoint": c.introspection_endpoint(),
        "revocation_endpoint": c.revocation_endpoint(),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "token_endpoint_auth_signing_alg_values_supported": smartlaunch_auth::jwk::ALGORITHMS,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": SCOPES_SUPPORTED,
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "fhirUser", "name"],
        "prompt_values_supported": ["none", "login", "consent"],
    }))
}

/// `GET /.well-known/jwks.json`: bare RSA public keys with `kid`, `use`, `alg`.
pub(crate) async fn jwks(State(app): State<App>) -> Response {
    json_response(app.auth.jwks(app.clock.now()))
}
