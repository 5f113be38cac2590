//! The launch inspector (`/launcher/inspect/{trace}`): every request an app made during a
//! launch, in order, with secrets masked and the app's mistakes flagged.  Recording happens in
//! the protocol core (authorize, token, refresh) and here (discovery, FHIR calls).

use askama::Template;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use smartlaunch_auth::inspect::{
    analyse, settle_outcomes, CheckLine, FhirCall, Flag, LaunchEvent, LaunchSummary, Step, TokenContext, Verdict,
};

use crate::server::{instant, App};
use crate::web::pages::{error_page, render};
use crate::web::{bearer, field, form_pairs};

/// Records a discovery request at a simulation's FHIR base.
pub(crate) async fn record_discovery(app: &App, simulation: &str) {
    if let Some(trace) = app.auth.trace_of_simulation(simulation).await {
        let event = LaunchEvent::new(Step::Discovery, "GET .well-known/smart-configuration", "200", app.clock.now());
        app.auth.record(&trace, event).await;
    }
}

/// Middleware of the FHIR API: records each call made with a launch's token, flags calls
/// made with an expired one, and marks the 401s a simulated error asked for as simulated.
/// Tokens from outside a launch pass straight through.
///
/// The token is opened (decoded, its signature checked) once here and handed to the
/// `FhirCaller` extractor in the request's extensions, which makes the other checks.
pub(crate) async fn record_fhir(State(app): State<App>, mut request: Request, next: Next) -> Response {
    let now = app.clock.now();
    let opened = bearer(request.headers()).and_then(|t| app.auth.open_bearer(t));
    let traced = opened.as_ref().and_then(|o| app.auth.trace_of(o, now));
    if let Some(opened) = opened {
        request.extensions_mut().insert(opened);
    }
    let Some(token) = traced else {
        return next.run(request).await;
    };
    let path = request.uri().path_and_query().map(|p| p.as_str()).unwrap_or_default();
    let relative = path.strip_prefix("/fhir").unwrap_or(path).trim_start_matches('/');
    let line = format!("{} {}", request.method(), if relative.is_empty() { "(base)" } else { relative });
    let resource_type = relative
        .split(['/', '?'])
        .next()
        .filter(|segment| smartlaunch_fhir::resource_types::is_resource_type(segment))
        .map(str::to_owned);
    let response = next.run(request).await;
    let status = response.status();
    let flags = if token.expired { vec![Flag::expired_token()] } else { Vec::new() };
    let outcome = format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or_default());
    let event = LaunchEvent {
        flags,
        fhir: Some(FhirCall { status: status.as_u16(), resource_type }),
        // The simulation refuses every call of a live token; an expired one is the app's fault.
        simulated: token.simulates_refusal && !token.expired && status == StatusCode::UNAUTHORIZED,
        ..LaunchEvent::new(Step::Fhir, line, outcome, now)
    };
    app.auth.record(&token.trace, event).await;
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
    flags: Vec<Flag>,
    checks: Vec<CheckLine>,
    simulated: bool,
}

#[derive(Template)]
#[template(path = "inspector.html")]
struct InspectorPage {
    summary: LaunchSummary,
    /// The context of the newest successful token response.
    context: Option<TokenContext>,
    /// The consent page's outcome, when the user saw it.
    consent: Option<String>,
    hints: Vec<Flag>,
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
    let found = match app.auth.launch_record(&trace).await {
        Ok(record) => app.auth.launch_summary(&trace, app.clock.now()).await.map(|summary| (record, summary)),
        Err(e) => Err(e),
    };
    let (record, summary) = match found {
        Ok(found) => found,
        Err(e) => {
            tracing::error!("inspector: {e}");
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The launch could not be read.",
            );
        }
    };
    let mut events = record.events;
    settle_outcomes(&mut events);
    let analysis = analyse(&events, summary.public);
    let unused = analysis.unused;
    let flag_count = events.iter().map(|e| e.flags.len()).sum::<usize>() + unused.len() + analysis.hints.len();
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
            simulated: e.simulated,
        })
        .collect();
    let first = (page - 1) * PAGE_SIZE + 1;
    render(
        StatusCode::OK,
        &InspectorPage {
            summary,
            context: analysis.context,
            consent: analysis.consent.map(|c| c.describe()),
            hints: analysis.hints,
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
