//! Server-rendered pages: the askama templates and the headers every page carries.

use askama::Template;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
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

/// Whether the browser loads this page into a frame (`Sec-Fetch-Dest: iframe`, sent by
/// Chromium, Firefox and Safari for frame navigations): the sign-in, picker and consent pages
/// then leave out the site header and navigation, as inside the EHR's app frame.  This is
/// presentation only — never a security decision (a forged header changes how the page
/// looks, nothing else; framing itself stays `frame-ancestors 'self'`).
pub(crate) fn is_framed(headers: &HeaderMap) -> bool {
    headers.get("sec-fetch-dest").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"iframe"))
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

#[derive(Template)]
#[template(path = "not_found.html")]
struct NotFoundPage<'a> {
    path: &'a str,
}

/// The 404 page for an address outside the FHIR API: "Page not found" and the main pages.
pub(crate) fn not_found_page(path: &str) -> Response {
    let path: String = path.chars().take(200).collect();
    render(StatusCode::NOT_FOUND, &NotFoundPage { path: &path })
}

/// The site's icon.
const FAVICON_SVG: &str = include_str!("../../assets/favicon.svg");
/// A day: the icon rarely changes, and a stale one is harmless.
const ICON_CACHE: &str = "public, max-age=86400";

/// `GET /favicon.svg`.
pub(crate) async fn favicon_svg() -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("image/svg+xml")),
            (header::CACHE_CONTROL, HeaderValue::from_static(ICON_CACHE)),
        ],
        FAVICON_SVG,
    )
        .into_response()
}

/// `GET /favicon.ico`: browsers ask for it when a page names no icon (JSON, the FHIR API);
/// a permanent redirect to the SVG, cacheable like it.
pub(crate) async fn favicon_ico() -> Response {
    (
        StatusCode::MOVED_PERMANENTLY,
        [
            (header::LOCATION, HeaderValue::from_static("/favicon.svg")),
            (header::CACHE_CONTROL, HeaderValue::from_static(ICON_CACHE)),
        ],
    )
        .into_response()
}
