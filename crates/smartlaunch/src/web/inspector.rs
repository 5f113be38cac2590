//! The launch inspector (`/launcher/inspect/{trace}`): every request an app made during a
//! launch, in order, with secrets masked and the app's mistakes flagged.  Recording happens in
//! the protocol core (authorize, token, refresh) and here (discovery, FHIR calls).

use askama::Template;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use smartlaunch_auth::inspect::{unused_scopes, CheckLine, LaunchEvent, Step, Verdict};

use crate::server::{instant, App};
use crate::web::pages::{error_page, render};
use crate::web::{bearer, field, form_pairs};

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
            checks: Vec::new(),
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
        checks: Vec::new(),
    };
    app.auth.record(&trace, event).await;
    response
}

/// Events per inspector page.
const PAGE_SIZE: usize = 50;

struct Row {
    time: String,
    step: &'static str,
    request: String,
    details: Vec<(String, String)>,
    outcome: String,
    flags: Vec<String>,
    checks: Vec<CheckLine>,
}

#[derive(Template)]
#[template(path = "inspector.html")]
struct InspectorPage {
    rows: Vec<Row>,
    unused: Vec<String>,
    flag_count: usize,
    /// Earlier events no longer kept (over the per-launch cap, too old, or lost under load).
    dropped: u64,
    /// The events kept, of which this page shows `first..=last` (1-based).
    total: usize,
    first: usize,
    last: usize,
    /// Links to the previous and next page (oldest first), when there are such pages.
    prev: Option<String>,
    next: Option<String>,
}

/// `GET /launcher/inspect/{trace}?page=N`: the launch's kept events (at most
/// `MAX_EVENTS_PER_TRACE`), oldest first, [`PAGE_SIZE`] per page.
pub(crate) async fn show(State(app): State<App>, Path(trace): Path<String>, RawQuery(query): RawQuery) -> Response {
    let record = match app.auth.launch_record(&trace).await {
        Ok(record) => record,
        Err(e) => {
            tracing::error!("inspector: {e}");
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The launch could not be read.",
            );
        }
    };
    let events = record.events;
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
    let total = events.len();
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let pairs = form_pairs(query.unwrap_or_default().as_bytes());
    let page = field(&pairs, "page").and_then(|p| p.parse::<usize>().ok()).unwrap_or(1).clamp(1, pages);
    let link = |p: usize| {
        format!(
            "/launcher/inspect/{}?page={p}",
            url::form_urlencoded::byte_serialize(trace.as_bytes()).collect::<String>()
        )
    };
    let rows: Vec<Row> = events
        .into_iter()
        .skip((page - 1) * PAGE_SIZE)
        .take(PAGE_SIZE)
        .map(|e| Row {
            time: instant(e.at).get(11..19).unwrap_or_default().to_owned(),
            step: e.step.label(),
            request: e.request,
            details: e.details,
            outcome: e.outcome,
            flags: e.flags,
            checks: e.checks,
        })
        .collect();
    let first = (page - 1) * PAGE_SIZE + 1;
    render(
        StatusCode::OK,
        &InspectorPage {
            last: first + rows.len().saturating_sub(1),
            first,
            total,
            rows,
            unused,
            flag_count,
            dropped: record.dropped,
            prev: (page > 1).then(|| link(page - 1)),
            next: (page < pages).then(|| link(page + 1)),
        },
    )
}
