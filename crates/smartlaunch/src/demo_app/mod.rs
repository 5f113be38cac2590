//! "Vitals", the demo SMART app (issue 11), built on smartlaunch-client: a server-side app
//! (tokens stay here) that charts a patient's vital signs and laboratory results over time.
//! It runs on its own port and origin, registers itself with the sandbox (RFC 7591), and is
//! launched by the EHR simulator, the patient portal or standalone.  It shows a patient banner
//! only when the launch says `need_patient_banner`, takes the EHR's colours and fonts from
//! `smart_style_url`, and, with `offline_access`, shows its last data again after a restart.

mod chart;
mod register;
mod saved;
mod style;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use askama::Template;
use axum::extract::{FromRef, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures_util::{StreamExt, TryStreamExt};
use serde_json::Value;
use smartlaunch_client::axum_routes::SmartAuth;
use smartlaunch_client::{ClientAuth, Error as ClientError, OAuthErrorCode, Session, SignedCookieStore, SmartApp};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Mutex};
use tokio::task::JoinHandle;

use chart::{Chart, Kind};
use saved::{PatientSummary, Saved, Snapshot};

pub use register::SCOPE;

/// At most this many Observations are charted (newest pages are not asked for first: the
/// demo patients have a few hundred).
const MAX_OBSERVATIONS: usize = 2_000;

/// Where the demo app runs and which server it serves.
pub struct DemoAppSettings {
    /// The FHIR base it registers with and launches against (its only allowed `iss`).
    pub fhir_base: String,
    /// Its registration and saved sessions.
    pub data_dir: PathBuf,
    /// The server's initial access token for registration, when it wants one.
    pub registration_token: Option<String>,
}

/// A running demo app.
pub struct RunningDemoApp {
    /// Its base URL (its own origin).
    pub url: String,
    pub client_id: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl RunningDemoApp {
    /// The launch URL the EHR opens (`?iss=…&launch=…`), or a standalone launch with `?iss=` only.
    pub fn launch_url(&self) -> String {
        format!("{}/launch", self.url)
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = self.task.await;
    }
}

/// Binds the demo app's listener; its URL uses `host` (the server's own host name, so the app
/// is same-site with the EHR that frames it and its cookies work inside the frame).
pub async fn bind(addr: SocketAddr, host: &str) -> std::io::Result<(TcpListener, String)> {
    let listener = TcpListener::bind(addr).await?;
    let port = listener.local_addr()?.port();
    Ok((listener, format!("http://{host}:{port}")))
}

#[derive(Clone)]
struct Demo {
    auth: SmartAuth,
    saved: Arc<Saved>,
    fhir_base: String,
    http: reqwest::Client,
    styles: Arc<Mutex<HashMap<String, String>>>,
    /// Held while a saved session is restored: two requests of one browser after a restart
    /// must not each resume it (two refreshes of one refresh token look like a stolen one).
    restoring: Arc<Mutex<()>>,
    /// The pages' CSP: framed only by the EHR's origin.
    csp: HeaderValue,
}

impl FromRef<Demo> for SmartAuth {
    fn from_ref(demo: &Demo) -> SmartAuth {
        demo.auth.clone()
    }
}

/// Registers the app and serves it on `listener` until stopped.
pub async fn start(listener: TcpListener, url: String, settings: DemoAppSettings) -> anyhow::Result<RunningDemoApp> {
    let fhir_base = settings.fhir_base.trim_end_matches('/').to_owned();
    let http = smartlaunch_client::http_client()?;
    let registration =
        register::register(&http, &fhir_base, &url, &settings.data_dir, settings.registration_token.as_deref()).await?;
    let app = SmartApp::builder(&registration.client_id, &format!("{url}/callback"))
        .scope(SCOPE)
        .client_auth(ClientAuth::SecretBasic(registration.client_secret.clone()))
        .allowed_issuers([fhir_base.clone()])
        .http_client(http.clone())
        .build()?;
    let ehr_origin = url::Url::parse(&fhir_base)?.origin().ascii_serialization();
    let csp = format!(
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; base-uri 'none'; \
         frame-ancestors 'self' {ehr_origin}"
    );
    // Pending authorizations ride in signed cookies: nothing kept here for a launch that is
    // never finished (a flood of /launch requests costs no memory).  A key per process: a
    // launch in flight across a restart starts again.
    let cookie_key = smartlaunch_client::pkce::random_token(32)?;
    let pending = SignedCookieStore::new(cookie_key.as_bytes())?;
    let demo = Demo {
        auth: SmartAuth::builder(app).pending_store(Box::new(pending)).build(),
        saved: Arc::new(Saved::open(&settings.data_dir)),
        fhir_base,
        http,
        styles: Arc::default(),
        restoring: Arc::default(),
        csp: HeaderValue::from_str(&csp)?,
    };
    let router = Router::new()
        .route("/", get(home))
        .route("/signout", post(sign_out))
        .merge(demo.auth.routes("/launch", "/callback"))
        .with_state(demo);
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let serve = axum::serve(listener, router).with_graceful_shutdown(async {
            let _ = rx.await;
        });
        if let Err(e) = serve.await {
            tracing::error!("the demo app stopped: {e}");
        }
    });
    Ok(RunningDemoApp { url, client_id: registration.client_id, shutdown: Some(tx), task })
}

struct ChartView {
    id: String,
    title: String,
    latest: String,
    legend: Vec<(usize, String)>,
    svg: String,
    rows: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "vitals.html")]
struct VitalsPage {
    css: String,
    banner: Option<PatientSummary>,
    patient_name: String,
    user: Option<String>,
    /// Vital signs, then laboratory results: heading, what to say when empty, charts.
    sections: Vec<(&'static str, &'static str, Vec<ChartView>)>,
    seen_at: String,
    /// Why the data shown is the last seen, not fresh.
    problem: Option<String>,
}

#[derive(Template)]
#[template(path = "vitals_welcome.html")]
struct WelcomePage {
    fhir_base: String,
    ehr: String,
    standalone: String,
    /// Why a session's data could not be shown.
    problem: Option<String>,
}

impl Demo {
    fn page(&self, status: StatusCode, template: &impl Template) -> Response {
        let body = template.render().unwrap_or_else(|e| {
            tracing::error!("demo app template: {e}");
            "<!doctype html><title>Error</title><p>Internal error.</p>".into()
        });
        let mut r = (status, body).into_response();
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
        h.insert(header::CONTENT_SECURITY_POLICY, self.csp.clone());
        h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    }

    /// How to launch the app (the EHR, or a standalone launch against its server), with why
    /// a session's data could not be shown.
    fn welcome(&self, status: StatusCode, problem: Option<String>) -> Response {
        let base = url::Url::parse(&self.fhir_base).map(|u| u.origin().ascii_serialization()).unwrap_or_default();
        let iss = url::form_urlencoded::Serializer::new(String::new()).append_pair("iss", &self.fhir_base).finish();
        let page = WelcomePage {
            fhir_base: self.fhir_base.clone(),
            ehr: format!("{base}/ehr"),
            standalone: format!("/launch?{iss}"),
            problem,
        };
        self.page(status, &page)
    }

    /// The browser's session: kept in memory, or saved before a restart and resumed.
    async fn session(&self, headers: &HeaderMap) -> Option<(String, Session)> {
        let id = self.auth.session_id_of(headers)?;
        if let Some(session) = self.auth.session_of(headers) {
            return Some((id, session));
        }
        let _one_at_a_time = self.restoring.lock().await;
        if let Some(session) = self.auth.session_of(headers) {
            return Some((id, session));
        }
        let saved = self.saved.session(&id).await?;
        let session = Session::restore(self.auth.app(), saved);
        self.auth.adopt(&id, session.clone());
        Some((id, session))
    }

    /// The EHR's style as CSS, fetched once per style URL: only from the EHR's own origin (the
    /// FHIR base's; nowhere else, so a style URL cannot make the app fetch other hosts), at
    /// most 64 KiB.  A failed fetch is tried again next time.
    async fn css(&self, session: &Session) -> String {
        let Some(url) = session.context().smart_style_url.clone() else { return String::new() };
        if let Some(css) = self.styles.lock().await.get(&url) {
            return css.clone();
        }
        let same_origin = |u: &url::Url| url::Url::parse(&self.fhir_base).is_ok_and(|b| b.origin() == u.origin());
        if !url::Url::parse(&url).is_ok_and(|u| same_origin(&u)) {
            return String::new();
        }
        let fetched = async {
            let r = self.http.get(&url).send().await.ok()?;
            if !r.status().is_success() || r.content_length().is_none_or(|n| n > 64 * 1024) {
                return None;
            }
            r.json::<Value>().await.ok()
        };
        let Some(css) = fetched.await.map(|v| style::css_of(&v)) else { return String::new() };
        let mut styles = self.styles.lock().await;
        if styles.len() < 100 {
            styles.insert(url, css.clone());
        }
        css
    }
}

/// Whether an error means the grant is gone (not that the server is unreachable).
fn authorization_ended(e: &ClientError) -> bool {
    match e {
        ClientError::Expired | ClientError::Fhir { status: 401, .. } => true,
        ClientError::OAuth(o) => o.code == OAuthErrorCode::InvalidGrant,
        _ => false,
    }
}

fn summary(patient: &Value) -> PatientSummary {
    let text = |k: &str| patient.get(k).and_then(Value::as_str).map(str::to_owned);
    PatientSummary {
        id: text("id").unwrap_or_default(),
        name: smartlaunch_client::resource::patient_name(patient).unwrap_or_else(|| "(no name)".into()),
        gender: text("gender"),
        birth_date: text("birthDate"),
    }
}

/// Reads the patient and their Observations from the server.
async fn read_snapshot(session: &Session) -> Result<Snapshot, smartlaunch_client::Error> {
    let fhir = session.fhir();
    let patient = fhir.read_patient().await?;
    let observations: Vec<Value> =
        fhir.search_patient("Observation", &[("_count", "200")])?.take(MAX_OBSERVATIONS).try_collect().await?;
    let seen_at = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC"))
        .unwrap_or_default();
    Ok(Snapshot { patient: summary(&patient), charts: chart::charts(&observations), seen_at })
}

fn views(charts: &[Chart], kind: Kind) -> Vec<ChartView> {
    charts
        .iter()
        .filter(|c| c.kind == kind)
        .enumerate()
        .map(|(n, c)| {
            let id = format!("{}-{n}", if kind == Kind::Vital { "vital" } else { "lab" });
            ChartView {
                svg: c.svg(&id),
                id,
                title: c.title.clone(),
                latest: c.latest(),
                legend: c.legend(),
                rows: c.rows(),
            }
        })
        .collect()
}

/// `GET /`: the chart of the session's patient, or how to launch the app.
async fn home(State(demo): State<Demo>, headers: HeaderMap) -> Response {
    let Some((id, session)) = demo.session(&headers).await else {
        return demo.welcome(StatusCode::OK, None);
    };
    let (snapshot, problem) = match read_snapshot(&session).await {
        Ok(fresh) => {
            demo.saved.put(&id, session.save().await, Some(fresh.clone())).await;
            (Some(fresh), None)
        }
        Err(e) if authorization_ended(&e) => {
            // Revoked or expired at the server: what it showed goes too.
            demo.saved.remove(&id).await;
            let _ = demo.auth.forget(&headers);
            (None, Some(format!("your authorization has ended ({e}); launch Vitals again")))
        }
        Err(e) => {
            // The server could not be read: keep the tokens as they are now (a refresh may
            // have rotated them) and show what was last seen.
            demo.saved.put(&id, session.save().await, None).await;
            (demo.saved.snapshot(&id).await, Some(e.to_string()))
        }
    };
    let Some(snapshot) = snapshot else {
        return demo.welcome(StatusCode::BAD_GATEWAY, problem);
    };
    let context = session.context();
    let page = VitalsPage {
        css: demo.css(&session).await,
        banner: context.need_patient_banner.then(|| snapshot.patient.clone()),
        patient_name: snapshot.patient.name.clone(),
        user: context.fhir_user().map(|u| u.reference()),
        sections: vec![
            ("Vital signs", "No vital signs recorded.", views(&snapshot.charts, Kind::Vital)),
            ("Laboratory results", "No laboratory results recorded.", views(&snapshot.charts, Kind::Lab)),
        ],
        seen_at: snapshot.seen_at.clone(),
        problem,
    };
    demo.page(StatusCode::OK, &page)
}

/// `POST /signout`: forgets the browser's session here (the grant at the server stays; the
/// user revokes it on the server's account page).
async fn sign_out(State(demo): State<Demo>, headers: HeaderMap) -> Response {
    if let Some(id) = demo.auth.session_id_of(&headers) {
        demo.saved.remove(&id).await;
    }
    let clear = demo.auth.forget(&headers);
    let mut r = StatusCode::SEE_OTHER.into_response();
    r.headers_mut().insert(header::SET_COOKIE, clear);
    r.headers_mut().insert(header::LOCATION, HeaderValue::from_static("/"));
    r
}
