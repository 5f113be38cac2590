//! Server-rendered pages: the askama templates and the headers every page carries.

use askama::Template;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Renders a template as an HTML response with the page security headers: framing only by
/// this server's own pages (the EHR simulator frames apps whose sign-in runs here), no
/// referrer (pending-request ids stay private), no MIME sniffing, no caching.
pub(crate) fn render(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(body) => html(status, body),
        Err(e) => {
            tracing::error!("template: {e}");
            html(StatusCode::INTERNAL_SERVER_ERROR, "<!doctype html><title>Error</title><p>Internal error.</p>".into())
        }
    }
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
            (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("frame-ancestors 'self'")),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response()
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    message: &'a str,
}

/// An error page (never a redirect): unknown client, unregistered redirect_uri, expired request.
pub(crate) fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    render(status, &ErrorPage { title, message })
}

/// `429 Too Many Requests` with `Retry-After`: sign-in throttling.
pub(crate) fn throttled_page(retry_after: i64) -> Response {
    let mut page = error_page(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many failed sign-ins",
        &format!("Too many sign-ins failed for this account or from this address. Wait {retry_after} seconds, then try again."),
    );
    if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
        page.headers_mut().insert(header::RETRY_AFTER, v);
    }
    page
}
