//! The developer launcher (`/launcher`): an app developer picks the launch type, the app, the
//! user, patient, encounter, `fhirContext` and `intent`, and developer options (skip consent, a
//! simulated error, a reusable launch, the EHR frame), and gets the launch URL to open.
//! Everything chosen lives in the server-side launch, never in trusted URL state.  The "backend
//! service" type starts a backend-service session instead: a registered `private_key_jwt`
//! client (or one registered here from its JWK Set) whose token requests the inspector records,
//! with a simulated error.  The launcher remembers its last settings per browser (a cookie,
//! never a token) and can save them as a permanent launch link ([`links`]).

mod backend;
mod form;
pub(crate) mod links;

use askama::Template;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use smartlaunch_auth::client::TokenEndpointAuthMethod;
use smartlaunch_auth::config::SandboxMode;
use smartlaunch_auth::launch::SimulatedError;
use smartlaunch_auth::service::{IssuedBackendSession, IssuedLaunch};
use smartlaunch_auth::store::{ClientStore, InspectorStore, LaunchStore, UserStore};
use smartlaunch_auth::LaunchError;
use smartlaunch_fhir::store::ResourceStore;

use self::backend::{backend_session, BackendCard};
use self::form::{plan, AppCard, NotYet, Registration, REUSABLE_MINUTES};
use self::links::LinkRow;
use crate::server::App;
use crate::web::pages::{error_page, render};
use crate::web::views::PatientRow;
use crate::web::{cookie, field, form_pairs, host, signin, views};

struct Choice {
    value: String,
    label: String,
}

/// A recent launch, with its inspector link.
struct Recent {
    at: i64,
    time: String,
    kind: &'static str,
    app: String,
    patient: String,
    trace_id: String,
}

/// Launches listed on the launcher page.
const RECENT: i64 = 20;

/// The cookie that remembers the launcher's last settings in this browser.
const SETTINGS_COOKIE: &str = "smartlaunch_launcher";

/// The largest remembered settings (a cookie stays well under browsers' 4 KB).
const SETTINGS_MAX: usize = 3000;

/// Fields never remembered nor saved: secrets, and what belongs to one post only.
const NOT_REMEMBERED: [&str; 6] =
    ["csrf", "admin_token", "registration_token", "patient_choice", "save_link", "link_name"];

#[derive(Template)]
#[template(path = "launcher.html")]
struct LauncherPage {
    csrf: String,
    apps: Vec<Choice>,
    users: Vec<Choice>,
    patients: Vec<PatientRow>,
    errors: Vec<Choice>,
    /// Registered backend services (`private_key_jwt`, `client_credentials`).
    backends: Vec<Choice>,
    backend_errors: Vec<Choice>,
    reusable_minutes: [i64; 3],
    token_required: bool,
    /// The sandbox is closed: no launches without an admin token.
    closed: bool,
    registration_token_required: bool,
    problem: Option<String>,
    /// The Patient field's name matched these: pick one.
    patient_matches: Vec<PatientRow>,
    issued: Option<IssuedCard>,
    backend: Option<BackendCard>,
    /// Recent launches (all of them, from every EHR and tool): listed only on an open sandbox.
    recent: Vec<Recent>,
    /// Saved launch links: listed only on an open sandbox.
    links: Vec<LinkRow>,
    /// What the form was last posted with (never a token), to fill it again.
    filled: Vec<(String, String)>,
    /// The demo app `serve` runs beside the server, when it is registered (issue 11).
    example: Option<ReadyExample>,
}

/// The ready example: the Vitals demo app, registered and running.
struct ReadyExample {
    name: String,
    client_id: String,
    /// Its launch URL with `iss` alone: a standalone launch.
    standalone: String,
}

/// The result card of an app launch.
struct IssuedCard {
    issued: IssuedLaunch,
    app: AppCard,
    reusable_minutes: Option<i64>,
    /// The permanent launch link saved with it (shown once).
    link: Option<String>,
}

impl IssuedCard {
    fn registered_now(&self) -> bool {
        self.app.registration == Registration::Registered
    }

    fn reused(&self) -> bool {
        self.app.registration == Registration::Reused
    }
}

impl LauncherPage {
    /// The posted value of a field ("" if none).
    fn value(&self, name: &str) -> &str {
        field(&self.filled, name).unwrap_or_default()
    }

    /// Whether a radio, checkbox or option was chosen; `by_default` on a fresh form.
    fn chosen(&self, name: &str, value: &str, by_default: bool) -> bool {
        if self.filled.is_empty() {
            by_default
        } else {
            field(&self.filled, name) == Some(value)
        }
    }

    /// Whether the reuse choice is `minutes` (as text).
    fn reuse_is(&self, minutes: &i64) -> bool {
        field(&self.filled, "reuse") == Some(minutes.to_string().as_str())
    }
}

/// What the form created.
enum Created {
    Launch(IssuedCard),
    Backend(IssuedBackendSession),
}

/// What the page shows besides the form.
#[derive(Default)]
struct Outcome {
    problem: Option<String>,
    patient_matches: Vec<PatientRow>,
    created: Option<Created>,
}

impl Outcome {
    fn problem(problem: String) -> Outcome {
        Outcome { problem: Some(problem), ..Default::default() }
    }

    fn created(created: Created) -> Outcome {
        Outcome { created: Some(created), ..Default::default() }
    }
}

async fn page(app: &App, headers: &HeaderMap, outcome: Outcome, form: &[(String, String)]) -> Response {
    let clients = app.db.clients().await.unwrap_or_default();
    let choice = |c: &smartlaunch_auth::client::Client| Choice {
        label: format!("{} ({})", c.metadata.client_name, c.client_id),
        value: c.client_id.clone(),
    };
    let mut apps: Vec<Choice> =
        clients.iter().filter(|c| c.metadata.initiate_login_uri.is_some()).map(choice).collect();
    apps.sort_by_key(|c| c.label.to_lowercase());
    let mut backends: Vec<Choice> = clients
        .iter()
        .filter(|c| {
            c.allows_grant("client_credentials")
                && c.metadata.token_endpoint_auth_method == TokenEndpointAuthMethod::PrivateKeyJwt
        })
        .map(choice)
        .collect();
    backends.sort_by_key(|c| c.label.to_lowercase());
    let (issued, backend) = match outcome.created {
        Some(Created::Launch(card)) => (Some(card), None),
        Some(Created::Backend(session)) => (None, Some(BackendCard::new(session))),
        None => (None, None),
    };
    let users = app
        .db
        .users()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|u| Choice {
            label: format!("{} — {} ({})", u.username, u.display_name, u.fhir_user), value: u.username
        })
        .collect();
    let patients = app.db.search_patients("", 0, 50).await.map(|(p, _)| p).unwrap_or_default();
    let status = if outcome.problem.is_some() || !outcome.patient_matches.is_empty() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let mode = app.auth.config.sandbox_mode();
    // Every launch's inspector link: only where the open-sandbox powers answer without a token.
    let open = mode == SandboxMode::Open && app.auth.check_powers(None, host(headers)).is_ok();
    let recent = if open { recent_launches(app).await } else { Vec::new() };
    let links = if open { links::rows(app).await } else { Vec::new() };
    let example = ready_example(app, &clients);
    let (csrf, csrf_cookie) = signin::form_token("/launcher");
    let body = LauncherPage {
        csrf,
        apps,
        users,
        patients: patients.iter().map(views::patient_row).collect(),
        errors: error_choices(false),
        backends,
        backend_errors: error_choices(true),
        reusable_minutes: REUSABLE_MINUTES,
        token_required: mode == SandboxMode::AdminToken,
        closed: mode == SandboxMode::Closed,
        registration_token_required: app.auth.config.registration_token.is_some(),
        problem: outcome.problem,
        patient_matches: outcome.patient_matches,
        issued,
        backend,
        example,
        recent,
        links,
        filled: remembered(form),
    };
    signin::with_form_cookie(render(status, &body), csrf_cookie)
}

/// The fields worth filling in again (never a token).
fn remembered(form: &[(String, String)]) -> Vec<(String, String)> {
    form.iter().filter(|(k, _)| !NOT_REMEMBERED.contains(&k.as_str())).cloned().collect()
}

/// Adds the cookie that remembers these settings in this browser (for 30 days); settings too
/// large for a cookie are not remembered.
fn remember(mut response: Response, form: &[(String, String)]) -> Response {
    let Ok(encoded) = serde_urlencoded::to_string(remembered(form)) else {
        return response;
    };
    if encoded.len() > SETTINGS_MAX {
        return response;
    }
    // URL-encoded text has no `;`, `,` or spaces: a valid cookie value as is.
    let cookie = format!("{SETTINGS_COOKIE}={encoded}; Path=/launcher; HttpOnly; SameSite=Lax; Max-Age=2592000");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// The simulated errors of backend-service sessions, or of app launches.
fn error_choices(backend: bool) -> Vec<Choice> {
    SimulatedError::ALL
        .iter()
        .filter(|e| e.is_backend() == backend)
        .map(|e| Choice { value: e.name().to_owned(), label: e.label().to_owned() })
        .collect()
}

/// `GET /launcher`: the form, filled with this browser's last settings.
pub(crate) async fn show(State(app): State<App>, headers: HeaderMap) -> Response {
    let last = cookie(&headers, SETTINGS_COOKIE)
        .filter(|c| c.len() <= SETTINGS_MAX)
        .map(|c| form_pairs(c.as_bytes()))
        .unwrap_or_default();
    page(&app, &headers, Outcome::default(), &last).await
}

/// The registered app whose launch URL is the demo app's, if the demo app runs.
fn ready_example(app: &App, clients: &[smartlaunch_auth::client::Client]) -> Option<ReadyExample> {
    let launch_uri = app.ready_example.read().ok()?.clone()?;
    let client = clients.iter().find(|c| c.metadata.initiate_login_uri.as_deref() == Some(launch_uri.as_str()))?;
    let fhir = app.auth.config.fhir_base();
    let query = url::form_urlencoded::Serializer::new(String::new()).append_pair("iss", &fhir).finish();
    Some(ReadyExample {
        name: client.metadata.client_name.clone(),
        client_id: client.client_id.clone(),
        standalone: format!("{launch_uri}?{query}"),
    })
}

/// `POST /launcher`: creates the launch and shows its URL (or opens it in the EHR frame).
pub(crate) async fn create(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let form = match signin::posted_form(&headers, &body) {
        Ok(form) => form,
        Err(refused) => return refused.page("the launcher"),
    };
    let admin = signin::admin_token(&form, &headers);
    if let Err(e) = app.auth.check_powers(admin, host(&headers)) {
        return page(&app, &headers, Outcome::problem(e.to_string()), &form).await;
    }
    if field(&form, "launch_type") == Some("backend") {
        return match backend_session(&app, &form).await {
            Ok(session) => {
                // A service registered here is now a registered one: the form offers it, so
                // that posting it again starts a new session rather than registering again.
                let registered = ["jwks", "jwks_uri", "backend_scope", "backend_name", "backend_client_id"];
                let mut again: Vec<(String, String)> =
                    form.iter().filter(|(k, _)| !registered.contains(&k.as_str())).cloned().collect();
                again.push(("backend_client_id".into(), session.client_id.clone()));
                let response = page(&app, &headers, Outcome::created(Created::Backend(session)), &again).await;
                remember(response, &again)
            }
            Err(LaunchError::Internal(e)) => internal(&e),
            Err(e) => page(&app, &headers, Outcome::problem(e.to_string()), &form).await,
        };
    }
    let planned = match plan(&app, &form).await {
        Ok(planned) => planned,
        Err(NotYet::Problem(p)) => return page(&app, &headers, Outcome::problem(p), &form).await,
        Err(NotYet::PickPatient(matches)) => {
            let outcome = Outcome { patient_matches: matches, ..Default::default() };
            return page(&app, &headers, outcome, &form).await;
        }
    };
    let (in_frame, portal, user_name) = (planned.in_frame, planned.portal, planned.user_name.clone());
    let patient = planned.new.patient.clone();
    let reusable_minutes = planned.new.reusable_for.map(|s| s / 60);
    let issued = match app.auth.create_launch(planned.new, app.clock.now()).await {
        Ok(issued) => issued,
        Err(LaunchError::Internal(e)) => return internal(&e),
        Err(e) => return page(&app, &headers, Outcome::problem(e.to_string()), &form).await,
    };
    let link = if field(&form, "save_link") == Some("on") {
        match links::save(&app, &form, &planned.app.client_id, patient.as_deref()).await {
            Ok(url) => Some(url),
            Err(e) => return page(&app, &headers, Outcome::problem(e), &form).await,
        }
    } else {
        None
    };
    // The ad-hoc app is registered now: the form names it by its client_id from here on.
    let mut again: Vec<(String, String)> = form
        .iter()
        .filter(|(k, _)| !["launch_uri", "redirect_uri", "own_client_id", "client_id"].contains(&k.as_str()))
        .cloned()
        .collect();
    again.push(("client_id".into(), planned.app.client_id.clone()));
    if let Some(p) = &patient {
        again.retain(|(k, _)| k != "patient");
        again.push(("patient".into(), p.clone()));
    }
    let response = match (&issued.launch_url, in_frame) {
        (Some(_), true) if link.is_none() => {
            crate::web::ehr::launcher_chart(&app, portal, patient.as_deref(), &user_name, &issued).await
        }
        _ => {
            let card = IssuedCard { issued, app: planned.app, reusable_minutes, link };
            page(&app, &headers, Outcome::created(Created::Launch(card)), &again).await
        }
    };
    remember(response, &again)
}

fn internal(e: &str) -> Response {
    tracing::error!("launcher: {e}");
    error_page(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", "The launch could not be created.")
}

async fn recent_launches(app: &App) -> Vec<Recent> {
    let mut recent = Vec::new();
    for launch in app.db.recent_launches(RECENT).await.unwrap_or_default() {
        let name = match app.auth.client(&launch.client_id, app.clock.now()).await {
            Ok(Some(c)) => c.metadata.client_name.clone(),
            _ => launch.client_id.clone(),
        };
        recent.push(Recent {
            at: launch.created_at,
            time: when(launch.created_at),
            kind: launch.kind_label(),
            app: name,
            patient: launch
                .patient
                .or_else(|| (!launch.patient_choices.is_empty()).then(|| launch.patient_choices.join(", ")))
                .unwrap_or_else(|| "picker".into()),
            trace_id: launch.trace_id,
        });
    }
    for session in app.db.recent_backend_sessions(RECENT).await.unwrap_or_default() {
        let name = match app.auth.client(&session.client_id, app.clock.now()).await {
            Ok(Some(c)) => c.metadata.client_name.clone(),
            _ => session.client_id.clone(),
        };
        recent.push(Recent {
            at: session.created_at,
            time: when(session.created_at),
            kind: "backend service",
            app: name,
            patient: "— (system/ scopes)".into(),
            trace_id: session.trace_id,
        });
    }
    // Launches made by hand that a client's trace switch traced (`/launcher/trace`).
    for hand in app.db.recent_hand_traces(RECENT).await.unwrap_or_default() {
        let name = match app.auth.client(&hand.client_id, app.clock.now()).await {
            Ok(Some(c)) => c.metadata.client_name.clone(),
            _ => hand.client_id.clone(),
        };
        recent.push(Recent {
            at: hand.created_at,
            time: when(hand.created_at),
            kind: smartlaunch_auth::service::HAND_MADE,
            app: name,
            patient: "—".into(),
            trace_id: hand.trace_id,
        });
    }
    recent.sort_by_key(|r| std::cmp::Reverse(r.at));
    recent.truncate(RECENT as usize);
    recent
}

fn when(at: i64) -> String {
    crate::server::instant(at).replace('T', " ").trim_end_matches('Z').to_owned()
}
