//! The HTTP layer: routers, CORS, and the few helpers every handler shares.  Handlers parse,
//! call the core, render; protocol rules live in `smartlaunch-auth`.

mod account;
mod api;
mod app_edit;
mod bundle;
pub mod client_addr;
mod consent_reset;
mod data;
mod dev;
mod discovery;
mod ehr;
mod fhir;
mod flow;
mod gallery;
mod home;
mod inspector;
mod launcher;
pub mod limits;
mod new_patient;
mod oauth;
mod ops;
mod pages;
mod sandbox;
mod signin;
mod trace_switch;
mod views;

use std::collections::HashSet;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use smartlaunch_auth::store::ClientStore;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::server::App;

/// The session cookie's name.
pub(crate) const SESSION_COOKIE: &str = "smartlaunch_session";
/// The largest request body accepted by the OAuth and page endpoints.
const FORM_BODY_LIMIT: usize = 64 * 1024;
/// The largest FHIR request body, a resource or a Bundle (`smartlaunch_fhir::limits`).  It is
/// axum's `DefaultBodyLimit` that the body extractors obey (its default is 2 MiB), and the FHIR
/// handlers answer a larger body with a 413 OperationOutcome.
const FHIR_BODY_LIMIT: usize = smartlaunch_fhir::limits::MAX_BODY_BYTES;

pub(crate) fn router(app: App) -> Router {
    let rate = app.rate_limits;
    let minute = Duration::from_secs(60);
    let (n, posts) = (rate.registrations_per_minute, [Method::POST]);
    let registrations = tower::util::option_layer(limits::per_address(n, minute, n, &posts, "registration"));
    let n = rate.authorize_per_second;
    let authorize = limits::per_address(n, Duration::from_secs(1), n * 5, &[Method::GET, Method::POST], "authorize");
    // Discovery documents and the CapabilityStatement: any origin (checklist item 15).
    let public = Router::new()
        .route("/fhir/.well-known/smart-configuration", get(discovery::smart_configuration))
        .route("/.well-known/openid-configuration", get(discovery::openid_configuration))
        .route("/.well-known/jwks.json", get(discovery::jwks))
        .route("/smart/brands.json", get(discovery::brands))
        .route("/fhir/metadata", get(fhir::metadata))
        .route("/auth/register", post(oauth::register).layer(registrations.clone()))
        .route(
            "/auth/register/{client_id}",
            get(oauth::read_registration)
                .put(oauth::update_registration)
                .delete(oauth::delete_registration)
                .layer(registrations.clone()),
        )
        .route("/ehr/smart-style/v1.json", get(ehr::smart_style))
        .layer(
            CorsLayer::new()
                .allow_origin(Any)
                .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT, header::IF_NONE_MATCH])
                .expose_headers([header::ETAG]),
        );
    // The token endpoint and the FHIR API: registered client origins only.
    let state = app.clone();
    let token = Router::new().route("/auth/token", post(oauth::token)).layer(tower::util::option_layer(
        limits::per_address(rate.token_per_second, Duration::from_secs(1), rate.token_per_second * 2, &posts, "token"),
    ));
    let oauth = token
        .route("/auth/introspect", post(oauth::introspect))
        .route("/auth/revoke", post(oauth::revoke))
        .layer(RequestBodyLimitLayer::new(FORM_BODY_LIMIT));
    let fhir_api = Router::new()
        // Bulk Data export (static paths: matched before the `{resource_type}` routes).
        .route("/fhir/$export", get(fhir::export_system_get).post(fhir::export_system_post))
        .route("/fhir/Patient/$export", get(fhir::export_patient_get).post(fhir::export_patient_post))
        .route("/fhir/Group/{id}/$export", get(fhir::export_group_get).post(fhir::export_group_post))
        .route("/fhir/$export-status/{job}", get(fhir::export_status).delete(fhir::export_cancel))
        .route("/fhir/$export-file/{job}/{file}", get(fhir::export_file))
        .route("/fhir/{resource_type}", get(fhir::search_get).post(fhir::create))
        .route("/fhir/{resource_type}/_search", post(fhir::search_post))
        .route("/fhir/{resource_type}/_history", get(fhir::type_history))
        .route("/fhir/{resource_type}/{id}", get(fhir::read).put(fhir::update).delete(fhir::delete))
        .route("/fhir/{resource_type}/{id}/_history", get(fhir::history))
        .route("/fhir/{resource_type}/{id}/_history/{vid}", get(fhir::vread))
        .layer(DefaultBodyLimit::max(FHIR_BODY_LIMIT));
    let bundles = Router::new().route("/fhir", post(bundle::post)).layer(DefaultBodyLimit::max(FHIR_BODY_LIMIT));
    let recorded =
        fhir_api.merge(bundles).layer(axum::middleware::from_fn_with_state(app.clone(), inspector::record_fhir));
    let for_clients = oauth.merge(recorded).layer(
        CorsLayer::new()
            .allow_origin(AllowOrigin::async_predicate(move |origin: HeaderValue, _| {
                let state = state.clone();
                async move { is_client_origin(&state, &origin).await }
            }))
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::ACCEPT,
                header::IF_MATCH,
                HeaderName::from_static("if-none-exist"),
                HeaderName::from_static("prefer"),
            ])
            .expose_headers([
                header::ETAG,
                header::LOCATION,
                header::LAST_MODIFIED,
                header::WWW_AUTHENTICATE,
                header::CONTENT_LOCATION,
                header::RETRY_AFTER,
                HeaderName::from_static("x-progress"),
            ]),
    );
    let pages = Router::new()
        .route("/", get(home::home))
        .route("/auth/signout", post(home::sign_out))
        .route("/account", get(account::show))
        .route("/account/signin", post(account::sign_in))
        .route("/account/revoke", post(account::revoke))
        .route(
            "/auth/authorize",
            get(flow::authorize_get).post(flow::authorize_post).layer(tower::util::option_layer(authorize)),
        )
        .route("/auth/flow/{id}", get(flow::show))
        .route("/auth/flow/{id}/signin", post(flow::sign_in))
        .route("/auth/flow/{id}/patient", post(flow::choose_patient))
        .route("/auth/flow/{id}/encounter", post(flow::choose_encounter))
        .route("/auth/flow/{id}/consent", post(flow::consent))
        .route("/auth/flow/{id}/signout", post(flow::sign_out))
        .route("/ehr", get(ehr::ehr_home))
        .route("/ehr/signin", post(ehr::ehr_sign_in))
        .route("/ehr/patients/new", get(new_patient::show).post(new_patient::create))
        .route("/ehr/patients/{id}", get(ehr::ehr_chart))
        .route("/ehr/data", get(data::search))
        .route("/ehr/data/{resource_type}/{id}", get(data::resource))
        .route("/sandbox", get(sandbox::show))
        .route("/sandbox/reset", post(sandbox::reset))
        .route("/ehr/launch", post(ehr::ehr_launch))
        .route("/ehr/app-frame", get(ehr::app_frame))
        .route("/portal", get(ehr::portal_home))
        .route("/portal/signin", post(ehr::portal_sign_in))
        .route("/portal/launch", post(ehr::portal_launch))
        .route("/api/launches", post(api::create_launch))
        .route("/apps", get(gallery::show).post(gallery::register).layer(registrations.clone()))
        .route("/apps/edit", get(app_edit::show_edit).post(app_edit::edit).layer(registrations.clone()))
        .route("/apps/delete", get(app_edit::show_delete).post(app_edit::delete))
        .route("/launcher", get(launcher::show).post(launcher::create).layer(registrations.clone()))
        .route("/launcher/inspect/{trace}", get(inspector::show))
        .route("/launcher/forget-consent", post(consent_reset::forget))
        .route("/launcher/link/{id}", get(launcher::links::open))
        .route("/launcher/links/delete", post(launcher::links::delete))
        .route("/launcher/trace", get(trace_switch::show).post(trace_switch::set));
    public
        .merge(pages)
        .layer(RequestBodyLimitLayer::new(FORM_BODY_LIMIT))
        .merge(for_clients)
        .route("/healthz", get(ops::healthz))
        .route("/favicon.svg", get(pages::favicon_svg))
        .route("/favicon.ico", get(pages::favicon_ico))
        .route("/dev/callback", get(dev::callback))
        .fallback(not_found)
        .layer(CatchPanicLayer::new())
        // Before anything that counts per address: who the client is.
        .layer(tower::util::MapRequestLayer::new(client_addr::record(app.trusted_proxies.clone())))
        // Around every response (outermost first): a request id of our own, the request log,
        // and the headers every response carries — `X-Content-Type-Options: nosniff`,
        // `Referrer-Policy: no-referrer` (codes and launch ids in redirect URLs never leak in
        // `Referer`), and behind an https public URL HSTS and `Secure` cookies.
        .layer(
            tower::ServiceBuilder::new()
                .map_request(ops::drop_client_request_id)
                .layer(SetRequestIdLayer::new(ops::REQUEST_ID, MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(ops::request_span)
                        .on_request(())
                        .on_response(ops::log_response)
                        .on_body_chunk(())
                        .on_eos(())
                        .on_failure(()),
                )
                .layer(PropagateRequestIdLayer::new(ops::REQUEST_ID))
                .layer(SetResponseHeaderLayer::if_not_present(
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ))
                .layer(SetResponseHeaderLayer::if_not_present(
                    header::REFERRER_POLICY,
                    HeaderValue::from_static("no-referrer"),
                ))
                .layer(axum::middleware::map_response_with_state(app.clone(), ops::transport_security)),
        )
        .with_state(app)
}

/// Rewrites `/sim/{id}/fhir/…` to `/fhir/…` before routing, and records the simulation's FHIR
/// base for the FHIR handlers ([`fhir::FhirBase`]): a developer-launcher simulation is the same
/// FHIR server behind a base that names it.
pub(crate) fn route_simulations(
    public_url: String,
) -> impl Fn(axum::extract::Request) -> axum::extract::Request + Clone {
    move |mut request: axum::extract::Request| {
        let path = request.uri().path();
        let Some((id, tail)) = path.strip_prefix("/sim/").and_then(|rest| rest.split_once('/')) else {
            return request;
        };
        let Some(tail) = tail.strip_prefix("fhir").filter(|t| t.is_empty() || t.starts_with('/')) else {
            return request;
        };
        if !smartlaunch_auth::config::is_simulation_id(id) {
            return request;
        }
        let base = format!("{public_url}/sim/{id}/fhir");
        let rewritten = match request.uri().query() {
            Some(q) => format!("/fhir{tail}?{q}"),
            None => format!("/fhir{tail}"),
        };
        let mut parts = request.uri().clone().into_parts();
        parts.path_and_query = rewritten.parse().ok();
        if let Ok(uri) = axum::http::Uri::from_parts(parts) {
            *request.uri_mut() = uri;
            request.extensions_mut().insert(fhir::FhirBase(base));
        }
        request
    }
}

/// An unknown address: an OperationOutcome inside the FHIR API (its clients read JSON), the
/// "Page not found" page everywhere else.
async fn not_found(method: Method, uri: axum::http::Uri) -> Response {
    if uri.path() == "/fhir" || uri.path().starts_with("/fhir/") {
        return fhir::outcome(StatusCode::NOT_FOUND, "not-found", &format!("{method} {} is not supported", uri.path()));
    }
    pages::not_found_page(uri.path())
}

/// Whether `origin` is the origin of a registered redirect URI.  A miss reloads the list from
/// the database, so clients registered by another process (the CLI) are seen too.
async fn is_client_origin(app: &App, origin: &HeaderValue) -> bool {
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    if app.client_origins.read().unwrap_or_else(|p| p.into_inner()).contains(origin) {
        return true;
    }
    reload_client_origins(app).await;
    app.client_origins.read().unwrap_or_else(|p| p.into_inner()).contains(origin)
}

/// Recomputes the CORS allow-list from the registered clients.
pub(crate) async fn reload_client_origins(app: &App) {
    let Ok(clients) = app.db.clients().await else {
        return;
    };
    let origins: HashSet<String> = clients
        .iter()
        .flat_map(|c| c.metadata.redirect_uris.iter())
        .filter_map(|u| url::Url::parse(u).ok())
        .map(|u| u.origin().ascii_serialization())
        .filter(|o| o != "null")
        .collect();
    *app.client_origins.write().unwrap_or_else(|p| p.into_inner()) = origins;
}

/// The client's address ([`client_addr`]: the peer, or behind a trusted proxy the address it
/// forwarded), for sign-in throttling.  `None` when the connection info is not available.
pub(crate) struct ClientAddr(pub Option<String>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        let client = parts.extensions.get::<client_addr::ClientIp>();
        Ok(ClientAddr(client.map(|c| c.0.to_string())))
    }
}

/// Decodes an `application/x-www-form-urlencoded` body (or query) into pairs.  A NUL (`%00`)
/// is read as U+FFFD: PostgreSQL text cannot hold NUL (a lookup by such a value would fail
/// with a 500 instead of finding nothing), and a value with it still matches nothing stored.
pub(crate) fn form_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    let without_nul =
        |s: std::borrow::Cow<'_, str>| if s.contains('\0') { s.replace('\0', "\u{fffd}") } else { s.into_owned() };
    url::form_urlencoded::parse(bytes).map(|(k, v)| (without_nul(k), without_nul(v))).collect()
}

/// The first value of a form field.
pub(crate) fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// The token of an `Authorization: Bearer …` header.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The request's `Host` header.
pub(crate) fn host(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::HOST).and_then(|v| v.to_str().ok())
}

/// Whether a request was sent by a page of another site: it has an `Origin` whose authority is
/// neither the `Host` it was sent to nor this server's public URL.  (A same-site page sends
/// its own origin, a server-side client sends none.)
pub(crate) fn is_cross_site(app: &App, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let authority = origin.split_once("://").map_or(origin, |(_, a)| a);
    let public = app.auth.config.public_url.split_once("://").map_or("", |(_, a)| a);
    !(host(headers).is_some_and(|h| h.eq_ignore_ascii_case(authority)) || public.eq_ignore_ascii_case(authority))
}

/// Whether the browser says that a page of another origin sent this request
/// (`Sec-Fetch-Site` other than `same-origin`, or `none` for what the user typed).  A page on
/// another port of this host is `same-site`: its cookies reach this server (cookies ignore the
/// port), so it can plant the `smartlaunch_csrf` cookie of a double-submit form and post the
/// same value.  The sandbox-power forms refuse such a post.  A client that sends no
/// `Sec-Fetch-Site` (an older browser, a script) is judged by the form token alone.
pub(crate) fn is_from_another_origin(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.eq_ignore_ascii_case("same-origin") && !v.eq_ignore_ascii_case("none"))
}

/// The page that refuses a form posted by a page of another origin ([`is_from_another_origin`]).
pub(crate) fn from_another_origin_page() -> Response {
    pages::error_page(
        StatusCode::FORBIDDEN,
        "Sent from another page",
        "This form was sent by a page of another origin (another site, or another port of this host), so nothing was changed. Open this server's own page and send the form from there.",
    )
}

/// Whether the request body is declared as a form.
pub(crate) fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
}

/// The value of a cookie the browser sent.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.to_owned())
}

/// The session cookie's value, if the browser sent one.
pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<String> {
    cookie(headers, SESSION_COOKIE)
}

/// `Set-Cookie` for a new session: random id, HttpOnly, SameSite=Lax, Secure over TLS.
pub(crate) fn session_set_cookie(app: &App, value: &str) -> HeaderValue {
    let secure = if app.secure_cookies { "; Secure" } else { "" };
    let max_age = app.auth.config.session_lifetime;
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .expect("cookie value is URL-safe")
}

/// `Set-Cookie` that removes the session cookie.
pub(crate) fn session_clear_cookie() -> HeaderValue {
    HeaderValue::from_static("smartlaunch_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0")
}

/// `303 See Other` to a URL (after a form POST).
pub(crate) fn see_other(location: &str) -> Response {
    redirect(StatusCode::SEE_OTHER, location)
}

/// A redirect with the given 3xx status.
pub(crate) fn redirect(status: StatusCode, location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(v) => (status, [(header::LOCATION, v)]).into_response(),
        Err(_) => pages::error_page(StatusCode::BAD_REQUEST, "Bad redirect", "The redirect address is not valid."),
    }
}
