//! The sandbox page (`/sandbox`, issue 9 item 6): what this sandbox holds, and the guarded
//! "Reset the sandbox" button — CSRF (double submit), the sandbox powers
//! (`AuthService::check_powers`, with an admin token field where one is configured) and a typed
//! confirmation.  The reset restores the demo data and accounts and removes everything added
//! ([`crate::sandbox::reset_database`]); then this server's memory follows: revoked tokens,
//! the client cache, the CORS origins, the export jobs.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use smartlaunch_auth::config::SandboxMode;

use crate::server::{instant, App};
use crate::web::pages::{error_page, render};
use crate::web::{field, form_pairs, host, reload_client_origins, see_other, signin};

/// What the reset form expects in its confirmation field.
const CONFIRMATION: &str = "reset";

#[derive(Template)]
#[template(path = "sandbox.html")]
struct SandboxPage {
    csrf: String,
    /// The powers are off on this server: the page says how to turn them on.
    closed: bool,
    token_required: bool,
    /// The powers answer this request without a token.
    open_here: bool,
    problem: Option<String>,
    done: bool,
}

fn page(app: &App, headers: &HeaderMap, status: StatusCode, problem: Option<String>, done: bool) -> Response {
    let mode = app.auth.config.sandbox_mode();
    let (csrf, cookie) = signin::form_token("/sandbox");
    let body = SandboxPage {
        csrf,
        closed: mode == SandboxMode::Closed,
        token_required: mode == SandboxMode::AdminToken,
        open_here: mode == SandboxMode::Open && app.auth.check_powers(None, host(headers)).is_ok(),
        problem,
        done,
    };
    signin::with_form_cookie(render(status, &body), cookie)
}

/// `GET /sandbox` (`?reset=done` after a reset).
pub(crate) async fn show(State(app): State<App>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let query = form_pairs(query.unwrap_or_default().as_bytes());
    page(&app, &headers, StatusCode::OK, None, field(&query, "reset") == Some("done"))
}

/// `POST /sandbox/reset`: resets the sandbox after the checks, then shows the page again.
pub(crate) async fn reset(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let form = match signin::posted_form(&headers, &body) {
        Ok(form) => form,
        Err(refused) => return refused.page("the sandbox page"),
    };
    let admin = signin::admin_token(&form, &headers);
    if let Err(e) = app.auth.check_powers(admin, host(&headers)) {
        return page(&app, &headers, StatusCode::FORBIDDEN, Some(format!("{e}. Nothing was changed.")), false);
    }
    if field(&form, "confirm").map(str::trim) != Some(CONFIRMATION) {
        let problem =
            format!("Type \u{201c}{CONFIRMATION}\u{201d} in the confirmation field to reset. Nothing was changed.");
        return page(&app, &headers, StatusCode::BAD_REQUEST, Some(problem), false);
    }
    let now = app.clock.now();
    match crate::sandbox::reset_database(&app.db, now, &instant(now)).await {
        Ok(report) => {
            app.auth.forget_after_reset(&report.clients, now);
            for job in &report.export_jobs {
                app.exports.cancel(job).await;
            }
            reload_client_origins(&app).await;
            tracing::info!(
                "sandbox reset: {} apps and {} export jobs removed",
                report.clients.len(),
                report.export_jobs.len()
            );
            see_other("/sandbox?reset=done")
        }
        Err(e) => {
            tracing::error!("sandbox reset: {e}");
            error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The sandbox could not be reset; nothing was changed.",
            )
        }
    }
}
