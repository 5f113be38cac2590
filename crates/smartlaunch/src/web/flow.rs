//! The authorize endpoint (GET and POST, checklist item 21) and the browser steps that follow:
//! sign-in, patient picker, encounter picker, consent.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::Value;
use smart_scopes::{Reader, ScopeSet};
use smartlaunch_auth::authorize::AuthorizationRequest;
use smartlaunch_auth::service::{consent_forced, ConsentForced, Credentials, FlowStep, Progress};
use smartlaunch_auth::store::PendingAuthorization;
use smartlaunch_auth::users::User;
use smartlaunch_auth::AuthorizeError;
use smartlaunch_fhir::store::ResourceStore;

use crate::server::App;
use crate::web::pages::{error_page, is_framed, render, throttled_page};
use crate::web::views::{encounter_row, patient_name, patient_row, EncounterRow, PatientRow};
use crate::web::{
    cookie, field, form_pairs, is_form, redirect, see_other, session_cookie, session_set_cookie, ClientAddr,
};

/// The flow cookie: set by `/auth/authorize` for one pending request (its path), required by
/// every step of it, so a flow opened in another browser goes nowhere.
const FLOW_COOKIE: &str = "smartlaunch_flow";

/// Patients per page in the picker.
const PAGE_SIZE: i64 = 10;

/// `GET /auth/authorize`.
pub(crate) async fn authorize_get(State(app): State<App>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let pairs = form_pairs(query.unwrap_or_default().as_bytes());
    start(&app, &headers, pairs, StatusCode::FOUND).await
}

/// `POST /auth/authorize` (form body).
pub(crate) async fn authorize_post(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let pairs = if is_form(&headers) { form_pairs(&body) } else { Vec::new() };
    start(&app, &headers, pairs, StatusCode::SEE_OTHER).await
}

async fn start(app: &App, headers: &HeaderMap, pairs: Vec<(String, String)>, status: StatusCode) -> Response {
    let request = AuthorizationRequest::from_pairs(pairs);
    let cookie = session_cookie(headers);
    match app.auth.authorize(request, cookie.as_deref(), app.clock.now()).await {
        Ok(Progress::Code(url) | Progress::ErrorRedirect { url, .. }) => redirect(status, &url),
        Ok(Progress::Step { pending, flow_key, .. }) => {
            let mut response = redirect(status, &format!("/auth/flow/{}", pending.id));
            if let Some(key) = flow_key {
                response.headers_mut().insert(header::SET_COOKIE, flow_set_cookie(app, &pending.id, &key));
            }
            response
        }
        Err(e) => flow_error(e, status),
    }
}

/// `Set-Cookie` for a new flow: random, HttpOnly, SameSite=Lax, only for this flow's path.
fn flow_set_cookie(app: &App, pending_id: &str, key: &str) -> axum::http::HeaderValue {
    let secure = if app.secure_cookies { "; Secure" } else { "" };
    let max_age = app.auth.config.pending_lifetime;
    axum::http::HeaderValue::from_str(&format!(
        "{FLOW_COOKIE}={key}; Path=/auth/flow/{pending_id}; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| axum::http::HeaderValue::from_static("smartlaunch_flow=; Max-Age=0"))
}

/// The flow cookie the browser sent with a step.
fn flow_key(headers: &HeaderMap) -> Option<String> {
    cookie(headers, FLOW_COOKIE)
}

/// The response to a flow error: an error page, or a redirect to the verified redirect_uri.
fn flow_error(e: AuthorizeError, status: StatusCode) -> Response {
    if let Some(url) = e.redirect_url() {
        return redirect(status, &url);
    }
    match e {
        AuthorizeError::NotRedirectable(m) => error_page(StatusCode::BAD_REQUEST, "This app cannot sign in", &m),
        AuthorizeError::UnknownRequest => error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in has expired",
            "This sign-in request is unknown, finished or has expired. Go back to the app and start again.",
        ),
        AuthorizeError::BadStep(m) => error_page(StatusCode::BAD_REQUEST, "This step cannot be done", m),
        AuthorizeError::SignInFailed => {
            error_page(StatusCode::BAD_REQUEST, "Sign-in failed", "The username or password is incorrect.")
        }
        AuthorizeError::OtherBrowser => error_page(
            StatusCode::FORBIDDEN,
            "This sign-in belongs to another browser",
            "This sign-in was started in another browser, so it cannot continue here. Go back to the app and start again from there.",
        ),
        AuthorizeError::WrongUser(name) => error_page(
            StatusCode::FORBIDDEN,
            "This launch is for another user",
            &format!("Only {name} may sign in for this launch. Go back to the EHR and launch the app again."),
        ),
        AuthorizeError::Throttled { retry_after } => throttled_page(retry_after),
        AuthorizeError::Internal(m) => {
            tracing::error!("authorization flow: {m}");
            error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The server could not complete this step.",
            )
        }
        AuthorizeError::Redirect { .. } => {
            error_page(StatusCode::BAD_REQUEST, "Bad request", "The request is not valid.")
        }
    }
}

/// `GET /auth/flow/{id}`: shows the step the request is at (`q` and `page` page the picker).
pub(crate) async fn show(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let query = form_pairs(query.unwrap_or_default().as_bytes());
    match app.auth.resume(&id, flow_key(&headers).as_deref(), app.clock.now()).await {
        Ok(Progress::Code(url) | Progress::ErrorRedirect { url, .. }) => see_other(&url),
        Ok(Progress::Step { step, pending, user, .. }) => {
            let shown = Shown { query: &query, alert: None, framed: is_framed(&headers) };
            render_step(&app, step, &pending, user.as_deref(), shown).await
        }
        Err(e) => flow_error(e, StatusCode::SEE_OTHER),
    }
}

/// `POST /auth/flow/{id}/signin`.
pub(crate) async fn sign_in(
    State(app): State<App>,
    Path(id): Path<String>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = form_pairs(&body);
    let credentials = Credentials {
        username: field(&form, "username").unwrap_or_default(),
        password: field(&form, "password").unwrap_or_default(),
        client_addr: addr.as_deref(),
    };
    let now = app.clock.now();
    let key = flow_key(&headers);
    match app.auth.sign_in(&id, key.as_deref(), field(&form, "csrf").unwrap_or_default(), credentials, now).await {
        Ok(signed_in) => {
            let mut response = see_other(&format!("/auth/flow/{id}"));
            response.headers_mut().insert(header::SET_COOKIE, session_set_cookie(&app, &signed_in.session_cookie));
            response
        }
        Err(AuthorizeError::SignInFailed) => match app.auth.resume(&id, key.as_deref(), now).await {
            Ok(Progress::Step { step: FlowStep::SignIn, pending, .. }) => {
                let alert = "The username or password is incorrect. Please try again.";
                let shown = Shown { query: &[], alert: Some(alert), framed: is_framed(&headers) };
                render_step(&app, FlowStep::SignIn, &pending, None, shown).await
            }
            Ok(_) => see_other(&format!("/auth/flow/{id}")),
            Err(e) => flow_error(e, StatusCode::SEE_OTHER),
        },
        Err(e) => flow_error(e, StatusCode::SEE_OTHER),
    }
}

/// `POST /auth/flow/{id}/patient`.
pub(crate) async fn choose_patient(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = form_pairs(&body);
    let result = app
        .auth
        .choose_patient(
            &id,
            flow_key(&headers).as_deref(),
            field(&form, "csrf").unwrap_or_default(),
            field(&form, "patient").unwrap_or_default(),
            app.clock.now(),
        )
        .await;
    after_step(result, &id)
}

/// `POST /auth/flow/{id}/encounter`.
pub(crate) async fn choose_encounter(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = form_pairs(&body);
    let result = app
        .auth
        .choose_encounter(
            &id,
            flow_key(&headers).as_deref(),
            field(&form, "csrf").unwrap_or_default(),
            field(&form, "encounter").unwrap_or_default(),
            app.clock.now(),
        )
        .await;
    after_step(result, &id)
}

/// `POST /auth/flow/{id}/consent`: `decision` is `allow` or `deny`; each checked `scope` is kept.
pub(crate) async fn consent(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = form_pairs(&body);
    let approved: Vec<String> = form.iter().filter(|(k, _)| k == "scope").map(|(_, v)| v.clone()).collect();
    let allow = field(&form, "decision") == Some("allow");
    let (key, csrf) = (flow_key(&headers), field(&form, "csrf").unwrap_or_default());
    match app.auth.consent(&id, key.as_deref(), csrf, allow, &approved, app.clock.now()).await {
        Ok(Progress::Code(url) | Progress::ErrorRedirect { url, .. }) => see_other(&url),
        Ok(Progress::Step { .. }) => see_other(&format!("/auth/flow/{id}")),
        Err(e) => flow_error(e, StatusCode::SEE_OTHER),
    }
}

/// `POST /auth/flow/{id}/signout`: "Not you? Sign out".
pub(crate) async fn sign_out(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = form_pairs(&body);
    let cookie = session_cookie(&headers);
    let (key, csrf) = (flow_key(&headers), field(&form, "csrf").unwrap_or_default());
    let result = app.auth.sign_out_of_flow(&id, key.as_deref(), csrf, cookie.as_deref(), app.clock.now()).await;
    let signed_out = result.is_ok();
    let mut response = after_step(result, &id);
    if signed_out {
        response.headers_mut().insert(header::SET_COOKIE, crate::web::session_clear_cookie());
    }
    response
}

fn after_step(result: Result<(), AuthorizeError>, id: &str) -> Response {
    match result {
        Ok(()) => see_other(&format!("/auth/flow/{id}")),
        Err(e) => flow_error(e, StatusCode::SEE_OTHER),
    }
}

#[derive(Template)]
#[template(path = "signin.html")]
struct SignInPage<'a> {
    framed: bool,
    app_name: &'a str,
    pending_id: &'a str,
    csrf: &'a str,
    alert: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "patients.html")]
struct PatientsPage<'a> {
    framed: bool,
    app_name: &'a str,
    user_name: &'a str,
    pending_id: &'a str,
    csrf: &'a str,
    query: &'a str,
    patients: Vec<PatientRow>,
    total: i64,
    first: i64,
    last: i64,
    prev_href: Option<String>,
    next_href: Option<String>,
}

#[derive(Template)]
#[template(path = "encounters.html")]
struct EncountersPage<'a> {
    framed: bool,
    app_name: &'a str,
    user_name: &'a str,
    pending_id: &'a str,
    csrf: &'a str,
    patient_name: &'a str,
    encounters: Vec<EncounterRow>,
}

struct ScopeRow {
    raw: String,
    label: String,
}

#[derive(Template)]
#[template(path = "consent.html")]
struct ConsentPage<'a> {
    framed: bool,
    /// The signed-in user is a patient (the portal, or a patient's standalone launch): the
    /// page speaks of their own record.
    for_patient: bool,
    app_name: &'a str,
    user_name: &'a str,
    pending_id: &'a str,
    csrf: &'a str,
    patient_name: Option<String>,
    encounter_label: Option<String>,
    scopes: Vec<ScopeRow>,
    /// Why the page shows although a remembered consent might have skipped it.
    forced: Option<&'static str>,
}

/// How a step is shown: the picker's query, an alert, and whether the page is inside another
/// page's frame (the EHR's app frame: then without the site header).
struct Shown<'a> {
    query: &'a [(String, String)],
    alert: Option<&'a str>,
    framed: bool,
}

async fn render_step(
    app: &App,
    step: FlowStep,
    pending: &PendingAuthorization,
    user: Option<&User>,
    shown: Shown<'_>,
) -> Response {
    let Shown { query, alert, framed } = shown;
    let client = app.auth.client(&pending.client_id, app.clock.now()).await.ok().flatten();
    let app_name = client.as_ref().map_or("the app", |c| c.metadata.client_name.as_str());
    let user_name = user.map_or("", |u| u.display_name.as_str());
    let (pending_id, csrf) = (pending.id.as_str(), pending.csrf.as_str());
    match step {
        FlowStep::SignIn => render(StatusCode::OK, &SignInPage { framed, app_name, pending_id, csrf, alert }),
        FlowStep::PickPatient { choices } => {
            let q = field(query, "q").unwrap_or_default().chars().take(100).collect::<String>();
            let page = field(query, "page").and_then(|p| p.parse::<i64>().ok()).unwrap_or(1).clamp(1, 100_000);
            let found = if choices.is_empty() {
                app.db.search_patients(&q, (page - 1) * PAGE_SIZE, PAGE_SIZE).await
            } else {
                offered_patients(app, &choices, &q).await
            };
            let (patients, total) = match found {
                Ok(found) => found,
                Err(e) => return flow_error(AuthorizeError::Internal(e.to_string()), StatusCode::SEE_OTHER),
            };
            let href = |p: i64| {
                format!(
                    "/auth/flow/{pending_id}?{}",
                    serde_urlencoded::to_string([("q", q.as_str()), ("page", &p.to_string())]).unwrap_or_default()
                )
            };
            let first = (page - 1) * PAGE_SIZE + 1;
            let last = first + patients.len() as i64 - 1;
            let rows = patients.iter().map(patient_row).collect();
            render(
                StatusCode::OK,
                &PatientsPage {
                    framed,
                    app_name,
                    user_name,
                    pending_id,
                    csrf,
                    query: &q,
                    patients: rows,
                    total,
                    first,
                    last,
                    prev_href: (page > 1).then(|| href(page - 1)),
                    next_href: (last < total).then(|| href(page + 1)),
                },
            )
        }
        FlowStep::PickEncounter { encounter_ids } => {
            let patient = pending.patient.as_deref().or(user.and_then(User::patient_id)).unwrap_or_default();
            let encounters = app.db.encounters_of(patient).await.unwrap_or_default();
            let rows = encounters
                .iter()
                .filter(|e| e["id"].as_str().is_some_and(|id| encounter_ids.iter().any(|x| x == id)))
                .map(encounter_row)
                .collect();
            let patient_name = patient_name(app, Some(patient)).await.unwrap_or_default();
            render(
                StatusCode::OK,
                &EncountersPage {
                    framed,
                    app_name,
                    user_name,
                    pending_id,
                    csrf,
                    patient_name: &patient_name,
                    encounters: rows,
                },
            )
        }
        FlowStep::Consent => {
            let for_patient = user.and_then(User::patient_id).is_some();
            let reader = if for_patient { Reader::Patient } else { Reader::Clinician };
            let scopes = ScopeSet::parse(&pending.scope)
                .map(|s| s.iter().map(|s| ScopeRow { raw: s.to_string(), label: s.describe_for(reader) }).collect())
                .unwrap_or_default();
            let patient = pending.patient.as_deref().or(user.and_then(User::patient_id));
            let encounter_label = match &pending.encounter {
                Some(e) => app
                    .db
                    .read("Encounter", e)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|r| serde_json::from_str(&r.json).ok())
                    .map(|v: Value| {
                        let row = encounter_row(&v);
                        format!("{} — {}", row.date, row.kind)
                    }),
                None => None,
            };
            render(
                StatusCode::OK,
                &ConsentPage {
                    framed,
                    for_patient,
                    app_name,
                    user_name,
                    pending_id,
                    csrf,
                    patient_name: patient_name(app, patient).await,
                    encounter_label,
                    scopes,
                    forced: consent_forced(pending.prompt, &pending.options).map(|f| match f {
                        ConsentForced::Prompt => "this request asked to be shown this page every time (prompt=consent)",
                        ConsentForced::AlwaysAsk => {
                            "this launch was made with “always ask for consent”, so it shows this page every time"
                        }
                    }),
                },
            )
        }
    }
}

/// The patients a launch offers, filtered by the name search like the full list.
async fn offered_patients(
    app: &App,
    choices: &[String],
    q: &str,
) -> Result<(Vec<Value>, i64), smartlaunch_fhir::store::StoreError> {
    let mut patients = Vec::new();
    for id in choices {
        if let Some(stored) = app.db.read("Patient", id).await? {
            if let Ok(p) = serde_json::from_str::<Value>(&stored.json) {
                let name = crate::seed::display_name(&p).unwrap_or_default().to_lowercase();
                if name.contains(&q.trim().to_lowercase()) {
                    patients.push(p);
                }
            }
        }
    }
    let total = patients.len() as i64;
    Ok((patients, total))
}
