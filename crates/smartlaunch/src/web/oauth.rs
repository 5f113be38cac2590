//! The token endpoint (RFC 6749 §3.2, spec digest §1.5–1.7) and RFC 7591 registration.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use smartlaunch_auth::client::RegistrationRequest;
use smartlaunch_auth::service::{Caller, Registrant};
use smartlaunch_auth::token::{BasicCredentials, TokenRequest};
use smartlaunch_auth::{RegistrationError, TokenError};

use crate::server::App;
use crate::web::{bearer, form_pairs, host, is_cross_site, is_form, reload_client_origins};

/// JSON with `Cache-Control: no-store` and `Pragma: no-cache` (checklist item 61), errors included.
fn json_no_store(status: StatusCode, body: &Value, extra: Option<(header::HeaderName, HeaderValue)>) -> Response {
    let mut response = (
        status,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (header::PRAGMA, HeaderValue::from_static("no-cache")),
        ],
        body.to_string(),
    )
        .into_response();
    if let Some((name, value)) = extra {
        response.headers_mut().insert(name, value);
    }
    response
}

/// An RFC 6749 §5.2 error: 401 for `invalid_client` (with a `WWW-Authenticate` challenge when
/// the client tried HTTP Basic), 500 for our own failures, 400 otherwise.
fn token_error(e: &TokenError, used_basic: bool) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    if status.is_server_error() {
        tracing::error!("token endpoint: {e}");
    }
    let challenge = (used_basic && status == StatusCode::UNAUTHORIZED)
        .then(|| (header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"smartlaunch\"")));
    json_no_store(status, &json!({ "error": e.code(), "error_description": e.description() }), challenge)
}

/// `POST /auth/token`.
pub(crate) async fn token(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let used_basic = authorization.is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("basic "));
    let now = app.clock.now();
    let result = async {
        if !is_form(&headers) {
            return Err(TokenError::InvalidRequest(
                "the token request must be a POST with Content-Type: application/x-www-form-urlencoded".into(),
            ));
        }
        let basic = authorization.map(BasicCredentials::from_authorization).transpose()?.flatten();
        let mut request = TokenRequest::from_pairs(form_pairs(&body))?;
        request.from_browser = headers.contains_key(header::ORIGIN);
        app.auth.token(request, basic, now).await
    }
    .await;
    match result {
        Ok(response) => json_no_store(StatusCode::OK, &serde_json::to_value(response).unwrap_or_default(), None),
        Err(e) => token_error(&e, used_basic),
    }
}

/// The parsed form and Basic credentials of an endpoint that authenticates clients.
fn client_form(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(TokenRequest, Option<BasicCredentials>, Option<String>), TokenError> {
    if !is_form(headers) {
        return Err(TokenError::InvalidRequest(
            "send a POST with Content-Type: application/x-www-form-urlencoded".into(),
        ));
    }
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let basic = authorization.map(BasicCredentials::from_authorization).transpose()?.flatten();
    let pairs = form_pairs(body);
    let token = crate::web::field(&pairs, "token").map(str::to_owned);
    Ok((TokenRequest::from_pairs(pairs)?, basic, token))
}

/// `POST /auth/introspect` (RFC 7662).
pub(crate) async fn introspect(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let now = app.clock.now();
    let result = async {
        let (request, basic, token) = client_form(&headers, &body)?;
        let caller = match bearer(&headers) {
            Some(b) => Caller::Bearer(b),
            None => Caller::Client { request: &request, basic },
        };
        app.auth.introspect(caller, token.as_deref(), now).await
    }
    .await;
    match result {
        Ok(body) => json_no_store(StatusCode::OK, &body, None),
        Err(e) => token_error(&e, false),
    }
}

/// `POST /auth/revoke` (RFC 7009).
pub(crate) async fn revoke(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let now = app.clock.now();
    let result = async {
        let (request, basic, token) = client_form(&headers, &body)?;
        app.auth.revoke(&request, basic, token.as_deref(), now).await
    }
    .await;
    match result {
        Ok(()) => json_no_store(StatusCode::OK, &json!({}), None),
        Err(e) => token_error(&e, false),
    }
}

/// The bearer of a registration request (RFC 7591 initial access token, RFC 7592
/// registration access token).
fn registration_bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
}

/// The client metadata of a JSON body.
fn registration_body(headers: &HeaderMap, body: &[u8]) -> Result<RegistrationRequest, RegistrationError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")));
    if !is_json {
        return Err(RegistrationError::InvalidClientMetadata(
            "send the client metadata as Content-Type: application/json".into(),
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        RegistrationError::InvalidClientMetadata(format!("the body is not valid client metadata JSON: {e}"))
    })
}

/// An RFC 7591 §3.2.2 / RFC 7592 error response.
fn registration_error(e: &RegistrationError) -> Response {
    let status = match e {
        RegistrationError::InvalidToken(_) => StatusCode::UNAUTHORIZED,
        RegistrationError::Forbidden(_) => StatusCode::FORBIDDEN,
        RegistrationError::ServerError(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    if status.is_server_error() {
        tracing::error!("registration: {e}");
    }
    let challenge = (status == StatusCode::UNAUTHORIZED)
        .then(|| (header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"smartlaunch\"")));
    json_no_store(status, &json!({ "error": e.code(), "error_description": e.description() }), challenge)
}

/// `POST /auth/register` (RFC 7591).
pub(crate) async fn register(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let result = async {
        let request = registration_body(&headers, &body)?;
        let registrant = Registrant {
            bearer: registration_bearer(&headers),
            host: host(&headers),
            cross_site: is_cross_site(&app, &headers),
        };
        app.auth.register(request, registrant, app.clock.now()).await
    }
    .await;
    match result {
        Ok(registered) => {
            reload_client_origins(&app).await;
            json_no_store(StatusCode::CREATED, &registered.response_json(), None)
        }
        Err(e) => registration_error(&e),
    }
}

/// `GET /auth/register/{client_id}` (RFC 7592 §2.1).
pub(crate) async fn read_registration(
    State(app): State<App>,
    Path(client_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match app.auth.read_registration(&client_id, registration_bearer(&headers)).await {
        Ok(registered) => json_no_store(StatusCode::OK, &registered.response_json(), None),
        Err(e) => registration_error(&e),
    }
}

/// `PUT /auth/register/{client_id}` (RFC 7592 §2.2): a new `jwks` or `jwks_uri` rotates keys.
pub(crate) async fn update_registration(
    State(app): State<App>,
    Path(client_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let request = registration_body(&headers, &body)?;
        let registrant = Registrant { bearer: None, host: host(&headers), cross_site: is_cross_site(&app, &headers) };
        app.auth.update_registration(&client_id, registration_bearer(&headers), request, registrant).await
    }
    .await;
    match result {
        Ok(registered) => {
            reload_client_origins(&app).await;
            json_no_store(StatusCode::OK, &registered.response_json(), None)
        }
        Err(e) => registration_error(&e),
    }
}

/// `DELETE /auth/register/{client_id}` (RFC 7592 §2.3): 204, everything issued is revoked.
pub(crate) async fn delete_registration(
    State(app): State<App>,
    Path(client_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match app.auth.delete_registration(&client_id, registration_bearer(&headers), app.clock.now()).await {
        Ok(()) => {
            reload_client_origins(&app).await;
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => registration_error(&e),
    }
}
