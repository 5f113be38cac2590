//! Operations and the headers every response carries: the health check, request logs with a
//! request id, and the transport-security headers (docs/DESIGN.md "Operations").

use std::borrow::Cow;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use tracing::Span;

use crate::server::App;

/// `Strict-Transport-Security` when the public URL is https: one year.
pub(crate) const HSTS: &str = "max-age=31536000";
/// The request id header, set on every request (ours, never the client's) and response.
pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// How long the health check waits for the database.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /healthz`: 200 `{"status":"ok"}` when the database answers a trivial query, else 503;
/// either way with `database`: its backend (`sqlite`, `postgresql`) and whether it answered.
pub(crate) async fn healthz(State(app): State<App>) -> Response {
    let answered = matches!(tokio::time::timeout(HEALTH_TIMEOUT, app.db.ping()).await, Ok(Ok(())));
    let database = json!({ "backend": app.db.backend().as_str(), "reachable": answered });
    let (status, body) = if answered {
        (StatusCode::OK, json!({ "status": "ok", "database": database }))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "status": "unavailable", "reason": "the database does not answer", "database": database }),
        )
    };
    (status, [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))], Json(body)).into_response()
}

/// Removes a request id the client sent: the id in our logs is always one we made.
pub(crate) fn drop_client_request_id(mut request: Request) -> Request {
    request.headers_mut().remove(REQUEST_ID);
    request
}

/// The span of one request: its id, method and path.  Never the query (it carries codes and
/// launch ids), a header value or the body; ids that are capabilities are masked in the path.
pub(crate) fn request_span(request: &Request) -> Span {
    let id = request.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
    tracing::info_span!("request", id = %id, method = %request.method(), path = %loggable_path(request.uri().path()))
}

/// Logs the end of a request: status and latency.
pub(crate) fn log_response(response: &Response, latency: Duration, _span: &Span) {
    tracing::info!(status = response.status().as_u16(), latency_ms = latency.as_secs_f64() * 1000.0, "response");
}

/// The path with the segments that are capabilities or private references masked: pending
/// authorization ids (`/auth/flow/{id}`), inspector traces and simulation ids.
pub(crate) fn loggable_path(path: &str) -> Cow<'_, str> {
    for prefix in ["/auth/flow/", "/launcher/inspect/", "/sim/"] {
        if let Some(rest) = path.strip_prefix(prefix) {
            let tail = rest.find('/').map_or("", |i| &rest[i..]);
            return Cow::Owned(format!("{prefix}…{tail}"));
        }
    }
    Cow::Borrowed(path)
}

/// Behind an https public URL: `Strict-Transport-Security` on every response and `Secure` on
/// every cookie, whichever handler set it.
pub(crate) async fn transport_security(State(app): State<App>, mut response: Response) -> Response {
    if !app.secure_cookies {
        return response;
    }
    let headers = response.headers_mut();
    headers.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(HSTS));
    let cookies: Vec<HeaderValue> = headers.get_all(header::SET_COOKIE).iter().cloned().collect();
    if cookies.is_empty() {
        return response;
    }
    headers.remove(header::SET_COOKIE);
    for cookie in cookies {
        headers.append(header::SET_COOKIE, with_secure(cookie));
    }
    response
}

/// A `Set-Cookie` value with the `Secure` attribute.
fn with_secure(cookie: HeaderValue) -> HeaderValue {
    let Ok(text) = cookie.to_str() else {
        return cookie;
    };
    if text.split(';').skip(1).any(|a| a.trim().eq_ignore_ascii_case("secure")) {
        return cookie;
    }
    HeaderValue::from_str(&format!("{text}; Secure")).unwrap_or(cookie)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_in_paths_are_masked_in_logs() {
        assert_eq!(loggable_path("/auth/flow/abc123/consent"), "/auth/flow/…/consent");
        assert_eq!(loggable_path("/launcher/inspect/t1"), "/launcher/inspect/…");
        assert_eq!(loggable_path("/sim/s1/fhir/Patient"), "/sim/…/fhir/Patient");
        assert_eq!(loggable_path("/fhir/Patient/pat-001"), "/fhir/Patient/pat-001");
    }

    #[test]
    fn every_cookie_gets_secure_once() {
        let v = with_secure(HeaderValue::from_static("a=1; Path=/; HttpOnly"));
        assert_eq!(v, "a=1; Path=/; HttpOnly; Secure");
        assert_eq!(with_secure(v.clone()), v);
    }
}
