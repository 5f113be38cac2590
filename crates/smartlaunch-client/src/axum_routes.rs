//! SMART for an axum app (feature `axum`): a launch route and a callback route, and an
//! extractor that gives a handler the signed-in user's [`Session`].  Tokens stay on the
//! server (SMART 2.2 §"Considerations for confidential apps"); the browser holds only
//! random, HttpOnly cookies.
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use smartlaunch_client::axum_routes::{SmartAuth, SmartUser};
//! use smartlaunch_client::SmartApp;
//!
//! async fn home(user: SmartUser) -> String {
//!     let patient = user.session.fhir().read_patient().await.map(|p| p["id"].to_string());
//!     format!("{patient:?}")
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let app = SmartApp::builder("my-app", "http://127.0.0.1:9000/callback")
//!     .allowed_issuers(["http://127.0.0.1:8080/fhir"])
//!     .build()?;
//! let auth = SmartAuth::new(app);
//! let router = Router::new()
//!     .route("/", get(home))
//!     .merge(auth.routes("/launch", "/callback"))
//!     .with_state(auth);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9000").await?;
//! axum::serve(listener, router).await?;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{FromRef, FromRequestParts, Query, RawQuery, State};
use axum::http::header::{CACHE_CONTROL, COOKIE, LOCATION, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use cookie::{Cookie, SameSite};
use serde::Deserialize;

use crate::pkce::random_token;
use crate::state_store::{AuthorizationStore, MemoryStore, MAX_AGE};
use crate::{unix_now, Error, Session, SmartApp};

const SESSION_COOKIE: &str = "smart_session";
const PENDING_PREFIX: &str = "smart_pending_";
/// Sessions unused this long are dropped.
const IDLE: Duration = Duration::from_secs(12 * 3600);

struct Inner {
    app: SmartApp,
    pending: Box<dyn AuthorizationStore>,
    sessions: Mutex<HashMap<String, (Session, Instant)>>,
    max_sessions: usize,
    after_login: String,
    cross_site: bool,
}

/// The launch and callback routes' state, and the sessions they made.  Cheap to clone.
#[derive(Clone)]
pub struct SmartAuth {
    inner: Arc<Inner>,
}

/// Builds a [`SmartAuth`].
pub struct SmartAuthBuilder {
    app: SmartApp,
    pending: Box<dyn AuthorizationStore>,
    after_login: String,
    cross_site: bool,
}

impl SmartAuthBuilder {
    /// Another [`AuthorizationStore`] for pending authorizations (e.g.
    /// [`crate::SignedCookieStore`] when several nodes serve the app); default in memory.
    pub fn pending_store(mut self, store: Box<dyn AuthorizationStore>) -> Self {
        self.pending = store;
        self
    }

    /// Where the callback sends the browser once the session exists (default `/`).
    pub fn after_login(mut self, path: &str) -> Self {
        self.after_login = path.to_owned();
        self
    }

    /// Cookies for an app framed by an EHR on another site, over https: `SameSite=None;
    /// Secure; Partitioned` (a same-site frame, as in the sandbox, needs none of this).
    pub fn cross_site_cookies(mut self, on: bool) -> Self {
        self.cross_site = on;
        self
    }

    pub fn build(self) -> SmartAuth {
        SmartAuth {
            inner: Arc::new(Inner {
                app: self.app,
                pending: self.pending,
                sessions: Mutex::default(),
                max_sessions: 10_000,
                after_login: self.after_login,
                cross_site: self.cross_site,
            }),
        }
    }
}

impl SmartAuth {
    /// Pending authorizations and sessions in memory, `/` after sign-in.
    pub fn new(app: SmartApp) -> SmartAuth {
        SmartAuth::builder(app).build()
    }

    pub fn builder(app: SmartApp) -> SmartAuthBuilder {
        SmartAuthBuilder { app, pending: Box::new(MemoryStore::default()), after_login: "/".into(), cross_site: false }
    }

    pub fn app(&self) -> &SmartApp {
        &self.inner.app
    }

    /// The launch route (`?iss=…&launch=…` for an EHR launch, `?iss=…` alone for a
    /// standalone launch) and the callback route.
    pub fn routes<S>(&self, launch_path: &str, callback_path: &str) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
        SmartAuth: FromRef<S>,
    {
        Router::new().route(launch_path, get(launch::<S>)).route(callback_path, get(callback::<S>))
    }

    fn cookie(&self, name: String, value: String, max_age: Option<u64>) -> HeaderValue {
        let mut c = Cookie::build((name, value)).path("/").http_only(true);
        c = if self.inner.cross_site {
            c.same_site(SameSite::None).secure(true).partitioned(true)
        } else {
            // An app served over https never lets its cookies travel over plain http.
            c.same_site(SameSite::Lax).secure(self.inner.app.redirect_uri().starts_with("https://"))
        };
        if let Some(age) = max_age {
            c = c.max_age(cookie::time::Duration::seconds(age as i64));
        }
        HeaderValue::from_str(&c.build().to_string()).unwrap_or(HeaderValue::from_static(""))
    }

    /// The session of the browser sending `headers`, if it has one.
    pub fn session_of(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie_value(headers, SESSION_COOKIE)?;
        let mut sessions = self.inner.sessions.lock().ok()?;
        let (session, used) = sessions.get_mut(&id)?;
        if used.elapsed() >= IDLE {
            sessions.remove(&id);
            return None;
        }
        *used = Instant::now();
        Some(session.clone())
    }

    /// The browser's session id (its cookie), whether or not a session is kept for it: an
    /// app that saves sessions (e.g. with `offline_access`, across its restarts) finds a saved
    /// one by it and hands it back with [`SmartAuth::adopt`].
    pub fn session_id_of(&self, headers: &HeaderMap) -> Option<String> {
        cookie_value(headers, SESSION_COOKIE)
    }

    /// Keeps a restored `session` for the browser whose session id is `id`.
    pub fn adopt(&self, id: &str, session: Session) {
        let _ = self.insert(id.to_owned(), session);
    }

    /// Keeps a session under `id`, within `max_sessions` (idle ones go first, then the
    /// least recently used).
    fn insert(&self, id: String, session: Session) -> Result<(), Error> {
        let mut sessions =
            self.inner.sessions.lock().map_err(|_| Error::Config("the session store was poisoned".into()))?;
        if sessions.len() >= self.inner.max_sessions {
            sessions.retain(|_, (_, used)| used.elapsed() < IDLE);
        }
        if sessions.len() >= self.inner.max_sessions {
            if let Some(oldest) = sessions.iter().min_by_key(|(_, (_, used))| *used).map(|(k, _)| k.clone()) {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(id, (session, Instant::now()));
        Ok(())
    }

    /// Keeps `session` for a new browser session; returns its cookie.
    fn keep(&self, session: Session) -> Result<HeaderValue, Error> {
        let id = random_token(32)?;
        self.insert(id.clone(), session)?;
        Ok(self.cookie(SESSION_COOKIE.into(), id, None))
    }

    /// Ends the browser's session (sign-out); returns the cookie that clears it.
    pub fn forget(&self, headers: &HeaderMap) -> HeaderValue {
        if let (Some(id), Ok(mut sessions)) = (cookie_value(headers, SESSION_COOKIE), self.inner.sessions.lock()) {
            sessions.remove(&id);
        }
        self.cookie(SESSION_COOKIE.into(), String::new(), Some(0))
    }
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

/// The pending cookie's name for a state: several launches may wait at once in one browser.
fn pending_cookie(state: &str) -> String {
    format!("{PENDING_PREFIX}{}", state.get(..16).unwrap_or(state))
}

/// A plain error page: what went wrong, for the user and the developer (escaped).
fn error_page(status: StatusCode, e: &Error) -> Response {
    let text = e.to_string().replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Launch failed</title></head>\
         <body><main><h1>The launch did not work</h1><p role=\"alert\">{text}</p></main></body></html>"
    );
    (status, [(CACHE_CONTROL, "no-store")], Html(body)).into_response()
}

/// The answer to a request without a session.
fn no_session_page() -> Response {
    let body = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Not signed in</title></head>\
        <body><main><h1>Not signed in</h1><p>Open this app from your EHR, or start at its launch URL with \
        <code>?iss=</code> and your FHIR server's base URL.</p></main></body></html>";
    (StatusCode::UNAUTHORIZED, [(CACHE_CONTROL, "no-store")], Html(body)).into_response()
}

#[derive(Deserialize)]
struct LaunchQuery {
    iss: Option<String>,
    launch: Option<String>,
}

async fn launch<S>(State(auth): State<SmartAuth>, Query(q): Query<LaunchQuery>) -> Response
where
    SmartAuth: FromRef<S>,
{
    let Some(iss) = q.iss else {
        return error_page(StatusCode::BAD_REQUEST, &Error::BadCallback("the launch URL has no iss"));
    };
    let started = match q.launch.as_deref() {
        Some(launch) => auth.inner.app.ehr_launch(&iss, launch).await,
        None => auth.inner.app.standalone_launch(&iss).await,
    };
    let (url, pending) = match started {
        Ok(s) => s,
        Err(e @ (Error::IssuerNotAllowed(_) | Error::BadUrl { .. } | Error::BadCallback(_))) => {
            return error_page(StatusCode::BAD_REQUEST, &e)
        }
        Err(e) => return error_page(StatusCode::BAD_GATEWAY, &e),
    };
    let carried = match auth.inner.pending.save(&pending) {
        Ok(c) => c,
        Err(e) => return error_page(StatusCode::SERVICE_UNAVAILABLE, &e),
    };
    let mut r = StatusCode::SEE_OTHER.into_response();
    let h = r.headers_mut();
    h.insert(SET_COOKIE, auth.cookie(pending_cookie(&pending.state), carried, Some(MAX_AGE)));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(url.as_str()) {
        h.insert(LOCATION, v);
    }
    r
}

async fn callback<S>(State(auth): State<SmartAuth>, RawQuery(query): RawQuery, headers: HeaderMap) -> Response
where
    SmartAuth: FromRef<S>,
{
    let query = query.unwrap_or_default();
    let state = url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "state").map(|(_, v)| v.into_owned());
    let Some(state) = state else {
        return error_page(StatusCode::BAD_REQUEST, &Error::StateMismatch("the callback carries no state"));
    };
    let name = pending_cookie(&state);
    let pending = match auth.inner.pending.take(cookie_value(&headers, &name).as_deref(), unix_now()) {
        Ok(p) => p,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &e),
    };
    let clear = auth.cookie(name, String::new(), Some(0));
    let session = match auth.inner.app.complete(&pending, &query).await {
        Ok(s) => s,
        Err(e) => {
            let mut r = error_page(StatusCode::BAD_REQUEST, &e);
            r.headers_mut().append(SET_COOKIE, clear);
            return r;
        }
    };
    let session_cookie = match auth.keep(session) {
        Ok(c) => c,
        Err(e) => return error_page(StatusCode::SERVICE_UNAVAILABLE, &e),
    };
    let mut r = StatusCode::SEE_OTHER.into_response();
    let h = r.headers_mut();
    h.append(SET_COOKIE, clear);
    h.append(SET_COOKIE, session_cookie);
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&auth.inner.after_login) {
        h.insert(LOCATION, v);
    }
    r
}

/// The signed-in user of a request: their session with the FHIR server.  A request without one
/// is answered 401 with a page that says to launch the app.
pub struct SmartUser {
    pub session: Session,
    /// The browser's session id (the cookie's value), to key what the app keeps per session.
    pub session_id: String,
}

impl<S> FromRequestParts<S> for SmartUser
where
    S: Send + Sync,
    SmartAuth: FromRef<S>,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<SmartUser, Response> {
        let auth = SmartAuth::from_ref(state);
        match (auth.session_of(&parts.headers), auth.session_id_of(&parts.headers)) {
            (Some(session), Some(session_id)) => Ok(SmartUser { session, session_id }),
            _ => Err(no_session_page()),
        }
    }
}
