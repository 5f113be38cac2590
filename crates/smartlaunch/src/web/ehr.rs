//! The EHR simulator (`/ehr`, for clinicians) and the patient portal (`/portal`): sign in, open a
//! chart, and launch apps the way a real EHR does (spec digest §1.3, checklist items 19–20) —
//! inside the chart in a sandboxed `<iframe>` under the EHR's banner, or in a new window.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use smart_scopes::{Level, Scope};
use smartlaunch_auth::client::Client;
use smartlaunch_auth::launch::LaunchContext;
use smartlaunch_auth::secrets::secrets_equal;
use smartlaunch_auth::service::{IssuedLaunch, NewLaunch};
use smartlaunch_auth::store::{ClientStore, InspectorStore, Session};
use smartlaunch_auth::users::User;
use smartlaunch_auth::LaunchError;
use smartlaunch_fhir::store::ResourceStore;

use crate::server::{instant, App};
use crate::web::pages::{error_page, render};
use crate::web::signin::{self, Outcome};
use crate::web::views::{self, Chart, PatientRow};
use crate::web::{field, form_pairs, see_other, ClientAddr};

/// Patients per page of the EHR's patient list.
const PAGE_SIZE: i64 = 20;

/// The two front doors: the clinician's EHR and the patient's portal.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Desk {
    Ehr,
    Portal,
}

impl Desk {
    fn path(self) -> &'static str {
        match self {
            Desk::Ehr => "/ehr",
            Desk::Portal => "/portal",
        }
    }

    pub(crate) fn title(self) -> &'static str {
        match self {
            Desk::Ehr => "smartlaunch EHR",
            Desk::Portal => "smartlaunch patient portal",
        }
    }

    /// Whether a user belongs at this desk: clinicians in the EHR, patients in the portal.
    fn admits(self, user: &User) -> bool {
        (self == Desk::Portal) == user.patient_id().is_some()
    }
}

/// The URL of the EHR's SMART Style JSON; the version in the path changes when the style does
/// (checklist item 69).
pub(crate) fn style_url(app: &App) -> String {
    format!("{}/ehr/smart-style/v1.json", app.auth.config.public_url)
}

/// `GET /ehr/smart-style/v1.json`.
pub(crate) async fn smart_style() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "public, max-age=86400")],
        crate::web::api::smart_style().to_string(),
    )
        .into_response()
}

#[derive(Template)]
#[template(path = "desk_signin.html")]
struct SignInPage<'a> {
    title: &'a str,
    action: String,
    csrf: String,
    failed: bool,
}

#[derive(Template)]
#[template(path = "desk_wrong_user.html")]
struct WrongUserPage<'a> {
    title: &'a str,
    user_name: &'a str,
    csrf: &'a str,
    other_desk: &'a str,
}

#[derive(Template)]
#[template(path = "ehr_patients.html")]
struct PatientsPage<'a> {
    title: &'a str,
    user_name: &'a str,
    csrf: &'a str,
    query: &'a str,
    patients: Vec<PatientRow>,
    total: i64,
    first: i64,
    last: i64,
    prev_href: Option<String>,
    next_href: Option<String>,
}

/// An app the desk can launch.
struct AppRow {
    client_id: String,
    name: String,
}

#[derive(Template)]
#[template(path = "chart.html")]
struct ChartPage<'a> {
    title: &'a str,
    user_name: &'a str,
    csrf: &'a str,
    portal: bool,
    chart: Chart,
    /// The encounter chosen in the chart (EHR), put in the launch context.
    encounter: Option<String>,
    chart_href: String,
    launch_action: &'a str,
    apps: Vec<AppRow>,
    /// Opened by the developer launcher (no EHR session): the launch URL the frame loads.
    launched: Option<&'a str>,
    /// The launch inspector's key of that launch.
    inspect: Option<&'a str>,
    /// The signed-in user's own recent launches from this chart, with their inspectors.
    launches: Vec<OwnLaunch>,
}

/// One of the user's launches, as the chart lists it.
struct OwnLaunch {
    time: String,
    app: String,
    trace_id: String,
}

/// The user's newest launches for `patient` (at most five), each with its inspector link: only
/// launches that name this user, so no one sees another user's.
async fn own_launches(app: &App, user: &User, patient: &str) -> Vec<OwnLaunch> {
    let mut own = Vec::new();
    for launch in app.db.user_launches(&user.id, 20).await.unwrap_or_default() {
        if launch.patient.as_deref() != Some(patient) || launch.trace_id.is_empty() || own.len() == 5 {
            continue;
        }
        let name = match app.auth.client(&launch.client_id, app.clock.now()).await {
            Ok(Some(c)) => c.metadata.client_name.clone(),
            _ => launch.client_id.clone(),
        };
        let time = instant(launch.created_at).replace('T', " ").trim_end_matches('Z').to_owned();
        own.push(OwnLaunch { time, app: name, trace_id: launch.trace_id });
    }
    own
}

fn sign_in_page(desk: Desk, failed: bool) -> Response {
    let (csrf, cookie) = signin::form_token(desk.path());
    let page = render(
        StatusCode::OK,
        &SignInPage { title: desk.title(), action: format!("{}/signin", desk.path()), csrf, failed },
    );
    signin::with_form_cookie(page, cookie)
}

/// The signed-in user when they belong at this desk; otherwise the page to show instead.
pub(crate) async fn desk_user(app: &App, headers: &HeaderMap, desk: Desk) -> Result<(Session, User), Response> {
    match signin::signed_in(app, headers).await {
        None => Err(sign_in_page(desk, false)),
        Some((session, user)) if desk.admits(&user) => Ok((session, user)),
        Some((session, user)) => {
            let other = if desk == Desk::Ehr { Desk::Portal } else { Desk::Ehr };
            Err(render(
                StatusCode::FORBIDDEN,
                &WrongUserPage {
                    title: desk.title(),
                    user_name: &user.display_name,
                    csrf: &session.csrf,
                    other_desk: other.path(),
                },
            ))
        }
    }
}

async fn sign_in(app: &App, headers: &HeaderMap, addr: Option<&str>, body: &[u8], desk: Desk) -> Response {
    match signin::sign_in(app, headers, addr, &form_pairs(body), desk.path()).await {
        Outcome::SignedIn(response) | Outcome::Error(response) => response,
        Outcome::Failed => sign_in_page(desk, true),
    }
}

/// `POST /ehr/signin`.
pub(crate) async fn ehr_sign_in(
    State(app): State<App>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sign_in(&app, &headers, addr.as_deref(), &body, Desk::Ehr).await
}

/// `POST /portal/signin`.
pub(crate) async fn portal_sign_in(
    State(app): State<App>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sign_in(&app, &headers, addr.as_deref(), &body, Desk::Portal).await
}

/// `GET /ehr`: the patient list, with a name search.
pub(crate) async fn ehr_home(State(app): State<App>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let (session, user) = match desk_user(&app, &headers, Desk::Ehr).await {
        Ok(signed_in) => signed_in,
        Err(page) => return page,
    };
    let query = form_pairs(query.unwrap_or_default().as_bytes());
    let q = field(&query, "q").unwrap_or_default().chars().take(100).collect::<String>();
    let page = field(&query, "page").and_then(|p| p.parse::<i64>().ok()).unwrap_or(1).clamp(1, 100_000);
    let (patients, total) = match app.db.search_patients(&q, (page - 1) * PAGE_SIZE, PAGE_SIZE).await {
        Ok(found) => found,
        Err(e) => {
            tracing::error!("EHR patient list: {e}");
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "Patients could not be listed.",
            );
        }
    };
    let href = |p: i64| {
        format!(
            "/ehr?{}",
            serde_urlencoded::to_string([("q", q.as_str()), ("page", &p.to_string())]).unwrap_or_default()
        )
    };
    let first = (page - 1) * PAGE_SIZE + 1;
    let last = first + patients.len() as i64 - 1;
    render(
        StatusCode::OK,
        &PatientsPage {
            title: Desk::Ehr.title(),
            user_name: &user.display_name,
            csrf: &session.csrf,
            query: &q,
            patients: patients.iter().map(views::patient_row).collect(),
            total,
            first,
            last,
            prev_href: (page > 1).then(|| href(page - 1)),
            next_href: (last < total).then(|| href(page + 1)),
        },
    )
}

/// The apps a desk offers: registered apps with a launch URL; the portal shows those a patient
/// may use (no `user/`-only apps).
async fn launchable_apps(app: &App, desk: Desk) -> Vec<AppRow> {
    let clients = app.db.clients().await.unwrap_or_default();
    let patient_facing = |c: &Client| {
        c.allowed_scopes().is_none_or(|s| s.has_level(Level::Patient) || s.contains(&Scope::LaunchPatient))
    };
    let mut apps: Vec<AppRow> = clients
        .iter()
        .filter(|c| c.metadata.initiate_login_uri.is_some())
        .filter(|c| desk == Desk::Ehr || patient_facing(c))
        .map(|c| AppRow { client_id: c.client_id.clone(), name: c.metadata.client_name.clone() })
        .collect();
    apps.sort_by_key(|a| a.name.to_lowercase());
    apps
}

async fn chart_page(
    app: &App,
    desk: Desk,
    session: &Session,
    user: &User,
    patient: &str,
    encounter: Option<String>,
) -> Response {
    let today = instant(app.clock.now());
    let labels = if desk == Desk::Portal { views::Labels::Friendly } else { views::Labels::Clinical };
    let Some(chart) = views::chart(app, patient, &today[..10], labels).await else {
        return error_page(StatusCode::NOT_FOUND, "No such patient", "There is no chart for this patient.");
    };
    let encounter = encounter.filter(|e| chart.encounters.iter().any(|row| &row.id == e));
    render(
        StatusCode::OK,
        &ChartPage {
            title: desk.title(),
            user_name: &user.display_name,
            csrf: &session.csrf,
            portal: desk == Desk::Portal,
            chart_href: match desk {
                Desk::Ehr => format!("/ehr/patients/{patient}"),
                Desk::Portal => "/portal".into(),
            },
            chart,
            encounter,
            launch_action: match desk {
                Desk::Ehr => "/ehr/launch",
                Desk::Portal => "/portal/launch",
            },
            apps: launchable_apps(app, desk).await,
            launched: None,
            inspect: None,
            launches: own_launches(app, user, patient).await,
        },
    )
}

/// The chart (EHR) or the portal page of `patient` with the app of a launch the developer
/// launcher just created already loaded in its frame (issue 9, "launch into the EHR frame").
/// The frame loads the launch URL of that server-side launch — never a URL from a request —
/// so no page can make this one frame anything else.
pub(crate) async fn launcher_chart(
    app: &App,
    portal: bool,
    patient: Option<&str>,
    user_name: &str,
    issued: &IssuedLaunch,
) -> Response {
    let Some(launch_url) = issued.launch_url.as_deref() else {
        return error_page(StatusCode::BAD_REQUEST, "The app could not be launched", "The app has no launch URL.");
    };
    let desk = if portal { Desk::Portal } else { Desk::Ehr };
    let labels = if portal { views::Labels::Friendly } else { views::Labels::Clinical };
    let today = instant(app.clock.now());
    let chart = match patient {
        Some(p) => views::chart(app, p, &today[..10], labels).await,
        None => None,
    };
    let Some(chart) = chart else {
        return error_page(StatusCode::NOT_FOUND, "No such patient", "There is no chart for this patient.");
    };
    render(
        StatusCode::OK,
        &ChartPage {
            title: desk.title(),
            user_name,
            csrf: "",
            portal,
            chart_href: format!("/ehr/patients/{}", chart.patient.id),
            chart,
            encounter: None,
            launch_action: "",
            apps: Vec::new(),
            launched: Some(launch_url),
            inspect: Some(&issued.trace_id),
            launches: Vec::new(),
        },
    )
}

/// `GET /ehr/patients/{id}`: the chart; `?encounter=` chooses the encounter for launches.
pub(crate) async fn ehr_chart(
    State(app): State<App>,
    Path(patient): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let (session, user) = match desk_user(&app, &headers, Desk::Ehr).await {
        Ok(signed_in) => signed_in,
        Err(page) => return page,
    };
    let query = form_pairs(query.unwrap_or_default().as_bytes());
    let encounter = field(&query, "encounter").map(str::to_owned);
    chart_page(&app, Desk::Ehr, &session, &user, &patient, encounter).await
}

/// `GET /portal`: the signed-in patient's own summary and apps.
pub(crate) async fn portal_home(State(app): State<App>, headers: HeaderMap) -> Response {
    let (session, user) = match desk_user(&app, &headers, Desk::Portal).await {
        Ok(signed_in) => signed_in,
        Err(page) => return page,
    };
    let patient = user.patient_id().unwrap_or_default().to_owned();
    chart_page(&app, Desk::Portal, &session, &user, &patient, None).await
}

async fn launch(app: &App, headers: &HeaderMap, body: &[u8], desk: Desk) -> Response {
    let (session, user) = match desk_user(app, headers, desk).await {
        Ok(signed_in) => signed_in,
        Err(_) => return see_other(desk.path()),
    };
    let form = form_pairs(body);
    if !secrets_equal(&session.csrf, field(&form, "csrf").unwrap_or_default()) {
        return error_page(
            StatusCode::BAD_REQUEST,
            "The form has expired",
            "Please reload the chart and launch again.",
        );
    }
    let in_window = field(&form, "window") == Some("1");
    let patient = match desk {
        Desk::Ehr => field(&form, "patient").map(str::to_owned),
        Desk::Portal => user.patient_id().map(str::to_owned),
    };
    let new = NewLaunch {
        client_id: field(&form, "client_id").unwrap_or_default().to_owned(),
        user_id: Some(user.id.clone()),
        session_id: Some(session.id_hash.clone()),
        patient,
        encounter: field(&form, "encounter").filter(|e| !e.is_empty() && desk == Desk::Ehr).map(str::to_owned),
        context: LaunchContext {
            // Inside the EHR frame the EHR's own banner shows the patient (spec digest §1.6).
            need_patient_banner: Some(in_window),
            smart_style_url: Some(style_url(app)),
            ..Default::default()
        },
        options: Default::default(),
        standalone: false,
        patient_choices: Vec::new(),
        reusable_for: None,
    };
    match app.auth.create_launch(new, app.clock.now()).await {
        Ok(issued) => see_other(issued.launch_url.as_deref().unwrap_or(desk.path())),
        Err(LaunchError::Invalid(m)) => error_page(StatusCode::BAD_REQUEST, "The app could not be launched", &m),
        Err(e) => {
            tracing::error!("launch: {e}");
            error_page(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", "The launch could not be created.")
        }
    }
}

/// `POST /ehr/launch`: creates the launch and sends the frame (or new window) to the app.
pub(crate) async fn ehr_launch(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    launch(&app, &headers, &body, Desk::Ehr).await
}

/// `POST /portal/launch`.
pub(crate) async fn portal_launch(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    launch(&app, &headers, &body, Desk::Portal).await
}

#[derive(Template)]
#[template(path = "app_frame.html")]
struct AppFramePage;

/// `GET /ehr/app-frame`: what the app frame shows before an app is launched.
pub(crate) async fn app_frame() -> Response {
    render(StatusCode::OK, &AppFramePage)
}
