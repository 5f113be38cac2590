//! The developer launcher (`/launcher`): an app developer picks the launch type, the app, the
//! user, patient, encounter, `fhirContext` and `intent`, and developer options (skip consent, a
//! simulated error), and gets the launch URL to open.  Everything chosen lives in the
//! server-side launch, never in trusted URL state.  The "backend service" type starts a
//! backend-service session instead: a registered `private_key_jwt` client (or one registered
//! here from its JWK Set) whose token requests the inspector records, with a simulated error.

use askama::Template;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use smartlaunch_auth::client::RegistrationRequest;
use smartlaunch_auth::client::TokenEndpointAuthMethod;
use smartlaunch_auth::config::SandboxMode;
use smartlaunch_auth::launch::{FhirContextItem, LaunchContext, LaunchOptions, SimulatedError};
use smartlaunch_auth::secrets::secrets_equal;
use smartlaunch_auth::service::{IssuedBackendSession, IssuedLaunch, NewLaunch};
use smartlaunch_auth::store::AuthStore;
use smartlaunch_auth::users::User;
use smartlaunch_auth::LaunchError;
use smartlaunch_fhir::store::ResourceStore;

use crate::server::App;
use crate::web::pages::{error_page, render};
use crate::web::views::PatientRow;
use crate::web::{bearer, cookie, field, form_pairs, host, reload_client_origins, signin, views};

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
    token_required: bool,
    /// The sandbox is closed: no launches without an admin token.
    closed: bool,
    registration_token_required: bool,
    problem: Option<String>,
    issued: Option<IssuedLaunch>,
    backend: Option<BackendCard>,
    /// Recent launches (all of them, from every EHR and tool): listed only on an open sandbox.
    recent: Vec<Recent>,
    /// What the form was last posted with (never the admin token), to fill it again.
    filled: Vec<(String, String)>,
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
}

/// The result card of a backend-service session.
struct BackendCard {
    session: IssuedBackendSession,
    /// The simulated error's label, if any.
    error: Option<&'static str>,
    /// A `smartlaunch token` command line that gets a token for the session's client.
    command: String,
}

impl BackendCard {
    fn new(session: IssuedBackendSession) -> BackendCard {
        let command = format!(
            "smartlaunch token --client-id {} --key <your key.pem> --token-url {} --scope {}",
            shell_quote(&session.client_id),
            shell_quote(&session.token_url),
            shell_quote(if session.scope.is_empty() { "system/*.rs" } else { &session.scope }),
        );
        BackendCard { error: session.simulate_error.map(SimulatedError::label), command, session }
    }
}

/// What the form created.
enum Created {
    Launch(IssuedLaunch),
    Backend(IssuedBackendSession),
}

/// A word for a POSIX shell: as is when it is plain, else in single quotes.
fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ':' | '@' | '%' | '+' | '='));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

async fn page(
    app: &App,
    headers: &HeaderMap,
    problem: Option<String>,
    created: Option<Created>,
    form: &[(String, String)],
) -> Response {
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
    let (issued, backend) = match created {
        Some(Created::Launch(issued)) => (Some(issued), None),
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
    let status = if problem.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let mode = app.auth.config.sandbox_mode();
    // Every launch's inspector link: only where the open-sandbox powers answer without a token.
    let open = mode == SandboxMode::Open && app.auth.check_powers(None, host(headers)).is_ok();
    let recent = if open { recent_launches(app).await } else { Vec::new() };
    let (csrf, cookie) = signin::form_token("/launcher");
    let body = LauncherPage {
        csrf,
        apps,
        users,
        patients: patients.iter().map(views::patient_row).collect(),
        errors: error_choices(false),
        backends,
        backend_errors: error_choices(true),
        token_required: mode == SandboxMode::AdminToken,
        closed: mode == SandboxMode::Closed,
        registration_token_required: app.auth.config.registration_token.is_some(),
        problem,
        issued,
        backend,
        recent,
        filled: form
            .iter()
            .filter(|(k, _)| k != "csrf" && k != "admin_token" && k != "registration_token")
            .cloned()
            .collect(),
    };
    signin::with_form_cookie(render(status, &body), cookie)
}

/// The simulated errors of backend-service sessions, or of app launches.
fn error_choices(backend: bool) -> Vec<Choice> {
    SimulatedError::ALL
        .iter()
        .filter(|e| e.is_backend() == backend)
        .map(|e| Choice { value: e.name().to_owned(), label: e.label().to_owned() })
        .collect()
}

/// `GET /launcher`.
pub(crate) async fn show(State(app): State<App>, headers: HeaderMap) -> Response {
    page(&app, &headers, None, None, &[]).await
}

/// `POST /launcher`: creates the launch and shows its URL.
pub(crate) async fn create(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let form = form_pairs(&body);
    let posted = field(&form, "csrf").unwrap_or_default();
    if !cookie(&headers, "smartlaunch_csrf").is_some_and(|c| !c.is_empty() && secrets_equal(&c, posted)) {
        return error_page(
            StatusCode::BAD_REQUEST,
            "The form has expired",
            "Please reload the launcher and try again.",
        );
    }
    let admin = field(&form, "admin_token").filter(|t| !t.is_empty()).or(bearer(&headers));
    if let Err(e) = app.auth.check_powers(admin, host(&headers)) {
        return page(&app, &headers, Some(e.to_string()), None, &form).await;
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
                page(&app, &headers, None, Some(Created::Backend(session)), &again).await
            }
            Err(LaunchError::Internal(e)) => {
                tracing::error!("launcher: {e}");
                error_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "The backend-service session could not be created.",
                )
            }
            Err(e) => page(&app, &headers, Some(e.to_string()), None, &form).await,
        };
    }
    match new_launch(&app, &form).await {
        Ok(new) => match app.auth.create_launch(new, app.clock.now()).await {
            Ok(issued) => page(&app, &headers, None, Some(Created::Launch(issued)), &form).await,
            Err(LaunchError::Internal(e)) => {
                tracing::error!("launcher: {e}");
                error_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "The launch could not be created.",
                )
            }
            Err(e) => page(&app, &headers, Some(e.to_string()), None, &form).await,
        },
        Err(problem) => page(&app, &headers, Some(problem), None, &form).await,
    }
}

/// The launch the form describes; a launch URL + redirect URI registers a throwaway app.
async fn new_launch(app: &App, form: &[(String, String)]) -> Result<NewLaunch, String> {
    let text = |name: &str| field(form, name).map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
    let launch_type = text("launch_type").unwrap_or_default();
    let (portal, standalone) = match launch_type.as_str() {
        "ehr" => (false, false),
        "portal" => (true, false),
        "provider-standalone" => (false, true),
        "patient-standalone" => (true, true),
        other => return Err(format!("no launch type “{other}”")),
    };
    let client_id = match (text("client_id"), text("launch_uri"), text("redirect_uri")) {
        (_, Some(launch_uri), Some(redirect_uri)) => {
            // Registering an app here is registration too: the registration token guards it.
            app.auth
                .check_registration_token(field(form, "registration_token").filter(|t| !t.is_empty()))
                .map_err(|e| e.description().to_owned())?;
            throwaway_client(app, launch_uri, redirect_uri).await?
        }
        (Some(client_id), None, None) => client_id,
        _ => return Err("choose a registered app, or give both a launch URL and a redirect URI".into()),
    };
    let username = text("user").ok_or("choose the user who launches")?;
    let user: User = app
        .db
        .user_by_username(&username)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("there is no user “{username}”"))?;
    // Several patients (provider standalone): the picker offers only those.
    let patients: Vec<String> =
        text("patient").unwrap_or_default().split([',', ' ']).filter(|p| !p.is_empty()).map(str::to_owned).collect();
    let (patient, patient_choices) = match (portal, user.patient_id(), patients.as_slice()) {
        (true, Some(own), _) => (Some(own.to_owned()), Vec::new()),
        (true, None, _) => return Err("a patient launch needs a patient user (fhirUser Patient/…)".into()),
        (false, Some(_), _) => return Err("a provider launch needs a practitioner user".into()),
        (false, None, [one]) => (Some(one.clone()), Vec::new()),
        (false, None, []) => (None, Vec::new()),
        (false, None, _) if standalone => (None, patients.clone()),
        (false, None, _) => return Err("an EHR launch has one patient in context".into()),
    };
    let encounter = match (text("encounter").as_deref(), &patient) {
        (None | Some("none"), _) => None,
        (Some("latest"), Some(p)) => app
            .db
            .encounters_of(p)
            .await
            .map_err(|e| e.to_string())?
            .first()
            .and_then(|e| e["id"].as_str())
            .map(str::to_owned),
        (Some("pick"), Some(_)) => Some(text("encounter_id").ok_or("give the encounter id to use")?),
        (Some(_), _) => return Err("an encounter needs a patient".into()),
    };
    let fhir_context = text("fhir_context")
        .map(|lines| {
            lines
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(|reference| FhirContextItem { reference: Some(reference.to_owned()), ..Default::default() })
                .collect()
        })
        .unwrap_or_default();
    let simulate_error = match text("simulate_error") {
        None => None,
        Some(name) => Some(SimulatedError::from_name(&name).ok_or_else(|| format!("no simulated error “{name}”"))?),
    };
    // An EHR launch is for its user (who signs in, unless "skip sign-in" vouches for them); a
    // standalone one names a user only with "skip sign-in" (otherwise anyone may sign in).
    let skip_sign_in = field(form, "skip_sign_in") == Some("on");
    Ok(NewLaunch {
        client_id,
        user_id: (!standalone || skip_sign_in).then_some(user.id),
        session_id: None,
        patient,
        encounter,
        context: LaunchContext {
            fhir_context,
            intent: text("intent"),
            need_patient_banner: Some(true),
            smart_style_url: Some(crate::web::ehr::style_url(app)),
            ..Default::default()
        },
        options: LaunchOptions {
            skip_consent: field(form, "skip_consent") == Some("on"),
            skip_sign_in,
            simulate_error,
        },
        standalone,
        patient_choices,
    })
}

/// The backend-service session the form describes; a JWK Set (or JWKS URL) and scopes register
/// a backend service first.
async fn backend_session(app: &App, form: &[(String, String)]) -> Result<IssuedBackendSession, LaunchError> {
    let text = |name: &str| field(form, name).map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
    let simulate_error = match text("backend_simulate_error") {
        None => None,
        Some(name) => Some(
            SimulatedError::from_name(&name)
                .ok_or_else(|| LaunchError::Invalid(format!("no simulated error “{name}”")))?,
        ),
    };
    let client_id = match (text("jwks"), text("jwks_uri"), text("backend_client_id")) {
        (None, None, Some(client_id)) => client_id,
        (None, None, None) => return Err(LaunchError::Invalid(
            "choose a registered backend service, or paste its JWK Set (or give its JWKS URL) and its system/ scopes"
                .into(),
        )),
        (jwks, jwks_uri, _) => {
            // Registering a client here is registration too: the registration token guards it.
            app.auth
                .check_registration_token(field(form, "registration_token").filter(|t| !t.is_empty()))
                .map_err(|e| LaunchError::Invalid(e.description().to_owned()))?;
            throwaway_backend(app, jwks, jwks_uri, text("backend_scope"), text("backend_name"))
                .await
                .map_err(LaunchError::Invalid)?
        }
    };
    app.auth.create_backend_session(&client_id, simulate_error, app.clock.now()).await
}

/// Registers a backend service (`private_key_jwt`, `client_credentials`) for a JWK Set or JWKS
/// URL and the `system/` scopes typed into the launcher.
async fn throwaway_backend(
    app: &App,
    jwks: Option<String>,
    jwks_uri: Option<String>,
    scope: Option<String>,
    name: Option<String>,
) -> Result<String, String> {
    let jwks = jwks
        .map(|text| serde_json::from_str::<serde_json::Value>(&text))
        .transpose()
        .map_err(|e| format!("the JWK Set is not JSON: {e}"))?;
    let scope = scope.ok_or("give the system/ scopes the backend service may have, e.g. system/*.rs")?;
    let request = RegistrationRequest {
        client_name: Some(name.unwrap_or_else(|| "Launcher backend service".into())),
        grant_types: Some(vec!["client_credentials".into()]),
        token_endpoint_auth_method: Some("private_key_jwt".into()),
        scope: Some(scope),
        jwks,
        jwks_uri,
        ..Default::default()
    };
    let registered = app.auth.add_client(request, app.clock.now()).await.map_err(|e| e.description().to_owned())?;
    Ok(registered.client.client_id)
}

/// Registers a public app for a launch URL and redirect URI typed into the launcher.
async fn throwaway_client(app: &App, launch_uri: String, redirect_uri: String) -> Result<String, String> {
    let request = RegistrationRequest {
        client_name: Some(format!("Launcher app at {launch_uri}")),
        redirect_uris: Some(vec![redirect_uri]),
        grant_types: Some(vec!["authorization_code".into(), "refresh_token".into()]),
        token_endpoint_auth_method: Some("none".into()),
        initiate_login_uri: Some(launch_uri),
        ..Default::default()
    };
    let registered = app.auth.add_client(request, app.clock.now()).await.map_err(|e| e.description().to_owned())?;
    reload_client_origins(app).await;
    Ok(registered.client.client_id)
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
            kind: if launch.standalone { "standalone (simulation)" } else { "EHR launch" },
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
