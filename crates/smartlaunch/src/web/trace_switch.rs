//! "Trace this app's next launches" (`/launcher/trace`, issue 9): a launch a developer makes
//! by hand — their app's own launch page, a standalone launch without the launcher — names no
//! launcher launch, so nothing traces it.  With the switch on for a client (for a while), each
//! of its authorization requests that names no launch or simulation gets a fresh inspector
//! trace, and so do the token, refresh and FHIR requests that follow.  The switch is one of the
//! sandbox powers (`check_powers`), like the launcher.

use askama::Template;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use smartlaunch_auth::config::SandboxMode;
use smartlaunch_auth::service::MAX_TRACE_SWITCH;
use smartlaunch_auth::store::{ClientStore, InspectorStore};

use crate::server::{instant, App};
use crate::web::pages::{error_page, render};
use crate::web::{field, host, see_other, signin};

/// The page's path (and its form cookie's).
const PATH: &str = "/launcher/trace";
/// Hand-made traced launches listed.
const RECENT: i64 = 20;

struct AppRow {
    client_id: String,
    name: String,
    /// Until when (UTC) its switch is on.
    until: Option<String>,
}

struct Traced {
    time: String,
    app: String,
    trace_id: String,
}

#[derive(Template)]
#[template(path = "trace_switch.html")]
struct TraceSwitchPage {
    csrf: String,
    token_required: bool,
    closed: bool,
    problem: Option<String>,
    apps: Vec<AppRow>,
    traced: Vec<Traced>,
}

fn when(at: i64) -> String {
    instant(at).replace('T', " ").trim_end_matches('Z').to_owned()
}

async fn page(app: &App, headers: &HeaderMap, problem: Option<String>) -> Response {
    let now = app.clock.now();
    let mode = app.auth.config.sandbox_mode();
    let open = mode == SandboxMode::Open && app.auth.check_powers(None, host(headers)).is_ok();
    let mut apps = Vec::new();
    let mut traced = Vec::new();
    if open || mode == SandboxMode::AdminToken {
        let switches = app.db.trace_switches(now).await.unwrap_or_default();
        for c in app.db.clients().await.unwrap_or_default() {
            if !c.allows_grant("authorization_code") {
                continue;
            }
            let until = switches.iter().find(|(id, _)| *id == c.client_id).map(|(_, at)| when(*at));
            apps.push(AppRow { name: c.metadata.client_name.clone(), client_id: c.client_id.clone(), until });
        }
        apps.sort_by_key(|a| a.name.to_lowercase());
    }
    if open {
        for t in app.db.recent_hand_traces(RECENT).await.unwrap_or_default() {
            let name = match app.auth.client(&t.client_id, now).await {
                Ok(Some(c)) => c.metadata.client_name.clone(),
                _ => t.client_id.clone(),
            };
            traced.push(Traced { time: when(t.created_at), app: name, trace_id: t.trace_id });
        }
    }
    let (csrf, cookie) = signin::form_token(PATH);
    let status = if problem.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let body = TraceSwitchPage {
        csrf,
        token_required: mode == SandboxMode::AdminToken,
        closed: mode == SandboxMode::Closed,
        problem,
        apps,
        traced,
    };
    signin::with_form_cookie(render(status, &body), cookie)
}

/// `GET /launcher/trace`.
pub(crate) async fn show(State(app): State<App>, headers: HeaderMap) -> Response {
    page(&app, &headers, None).await
}

/// `POST /launcher/trace`: `client_id`, and `minutes` to switch on (1 to 1440) or `off`.
pub(crate) async fn set(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let form = match signin::posted_form(&headers, &body) {
        Ok(form) => form,
        Err(refused) => return refused.page("the page"),
    };
    let admin = signin::admin_token(&form, &headers);
    if let Err(e) = app.auth.check_powers(admin, host(&headers)) {
        return page(&app, &headers, Some(e.to_string())).await;
    }
    let client_id = field(&form, "client_id").unwrap_or_default();
    if client_id.is_empty() || client_id.len() > 256 {
        return page(&app, &headers, Some("Choose an app.".into())).await;
    }
    let minutes = match field(&form, "minutes") {
        Some("off") => None,
        Some(m) => match m.parse::<i64>() {
            Ok(m) if (1..=MAX_TRACE_SWITCH / 60).contains(&m) => Some(m),
            _ => {
                let max = MAX_TRACE_SWITCH / 60;
                return page(&app, &headers, Some(format!("Trace for 1 to {max} minutes."))).await;
            }
        },
        None => return page(&app, &headers, Some("Say for how long to trace.".into())).await,
    };
    match app.auth.set_trace_switch(client_id, minutes, app.clock.now()).await {
        Ok(true) => see_other(PATH),
        Ok(false) => page(&app, &headers, Some(format!("No registered app has the client_id “{client_id}”."))).await,
        Err(e) => {
            tracing::error!("trace switch: {e}");
            error_page(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", "The switch could not be set.")
        }
    }
}
