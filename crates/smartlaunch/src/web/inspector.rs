//! The launch inspector (`/launcher/inspect/{trace}`): every request an app made during a
//! launch, in order, with secrets masked and the app's mistakes flagged.  Recording happens in
//! the protocol core (authorize, token, refresh) and here (discovery, FHIR calls).

use askama::Template;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use smartlaunch_auth::inspect::{unused_scopes, LaunchEvent, Step};

use crate::server::{instant, App};
use crate::web::bearer;
use crate::web::pages::{error_page, render};

/// Records a discovery request at a simulation's FHIR base.
pub(crate) async fn record_discovery(app: &App, simulation: &str) {
    if let Some(trace) = app.auth.trace_of_simulation(simulation).await {
        let event = LaunchEvent {
            at: app.clock.now(),
            step: Step::Discovery,
            request: "GET .well-known/smart-configuration".into(),
            details: Vec::new(),
            outcome: "200".into(),
            flags: Vec::new(),
        };
        app.auth.record(&trace, event).await;
    }
}

/// Middleware of the FHIR API: records each call made with a launch's token, and flags calls
/// made with an expired one.  Tokens from outside a launch pass straight through.
pub(crate) async fn record_fhir(State(app): State<App>, request: Request, next: Next) -> Response {
    let now = app.clock.now();
    let Some((trace, expired)) = bearer(request.headers()).and_then(|t| app.auth.peek_trace(t, now)) else {
        return next.run(request).await;
    };
    let path = request.uri().path_and_query().map(|p| p.as_str()).unwrap_or_default();
    let relative = path.strip_prefix("/fhir").unwrap_or(path).trim_start_matches('/');
    let line = format!("{} {}", request.method(), if relative.is_empty() { "(base)" } else { relative });
    let response = next.run(request).await;
    let status = response.status();
    let flags = if expired {
        vec!["An expired access token was used: refresh before expires_in runs out".to_owned()]
    } else {
        Vec::new()
    };
    let event = LaunchEvent {
        at: now,
        step: Step::Fhir,
        request: line,
        details: Vec::new(),
        outcome: format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or_default()),
        flags,
    };
    app.auth.record(&trace, event).await;
    response
}

struct Row {
    time: String,
    step: &'static str,
    request: String,
    details: Vec<(String, String)>,
    outcome: String,
    flags: Vec<String>,
}

#[derive(Template)]
#[template(path = "inspector.html")]
struct InspectorPage {
    rows: Vec<Row>,
    unused: Vec<String>,
    flag_count: usize,
}

/// `GET /launcher/inspect/{trace}`.
pub(crate) async fn show(State(app): State<App>, Path(trace): Path<String>) -> Response {
    let events = match app.auth.launch_events(&trace).await {
        Ok(events) => events,
        Err(e) => {
            tracing::error!("inspector: {e}");
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The launch could not be read.",
            );
        }
    };
    // Scopes granted but never used by a successful FHIR call (checked once the app has called).
    let granted = events
        .iter()
        .rev()
        .filter(|e| e.step == Step::Token)
        .find_map(|e| e.details.iter().find(|(k, _)| k == "granted scope").map(|(_, v)| v.clone()));
    let called = events.iter().any(|e| e.step == Step::Fhir);
    let unused = match granted {
        Some(g) if called => unused_scopes(&g, &events),
        _ => Vec::new(),
    };
    let flag_count = events.iter().map(|e| e.flags.len()).sum::<usize>() + unused.len();
    let rows = events
        .into_iter()
        .map(|e| Row {
            time: instant(e.at).get(11..19).unwrap_or_default().to_owned(),
            step: e.step.label(),
            request: e.request,
            details: e.details,
            outcome: e.outcome,
            flags: e.flags,
        })
        .collect();
    render(StatusCode::OK, &InspectorPage { rows, unused, flag_count })
}
