//! The launcher's “forget remembered consent for this app and user” (issue 9, item 5): a
//! remembered consent silently skips the consent page, so a developer can reset it and see
//! the page again.  It does what the user's “Revoke access” on `/account` does, and like the
//! rest of the launcher it needs the sandbox powers.

use askama::Template;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use smartlaunch_auth::store::UserStore;
use smartlaunch_auth::LaunchError;

use crate::server::App;
use crate::web::pages::{error_page, render};
use crate::web::{field, host, signin};

#[derive(Template)]
#[template(path = "consent_reset.html")]
struct ResetPage {
    /// What was done, or why nothing was.
    outcome: Outcome,
}

enum Outcome {
    /// The remembered consent (its scopes, if there was one) and the tokens are gone.
    Forgotten {
        app: String,
        user: String,
        scopes: Option<String>,
    },
    Refused(String),
}

fn refused(status: StatusCode, why: String) -> Response {
    render(status, &ResetPage { outcome: Outcome::Refused(why) })
}

/// `POST /launcher/forget-consent`: `client_id` and `user` (a username) name the consent.
pub(crate) async fn forget(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let form = match signin::posted_form(&headers, &body) {
        Ok(form) => form,
        Err(refused) => return refused.page("the launcher"),
    };
    let admin = signin::admin_token(&form, &headers);
    if let Err(e) = app.auth.check_powers(admin, host(&headers)) {
        let status = match e {
            LaunchError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            _ => StatusCode::FORBIDDEN,
        };
        return refused(status, e.to_string());
    }
    let client_id = field(&form, "client_id").unwrap_or_default();
    let username = field(&form, "user").unwrap_or_default();
    let now = app.clock.now();
    let client = match app.auth.client(client_id, now).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return refused(StatusCode::BAD_REQUEST, format!("no registered app has the client_id “{client_id}”"))
        }
        Err(e) => return server_error(e.to_string()),
    };
    let user = match app.db.user_by_username(username).await {
        Ok(Some(u)) => u,
        Ok(None) => return refused(StatusCode::BAD_REQUEST, format!("there is no user “{username}”")),
        Err(e) => return server_error(e.to_string()),
    };
    match app.auth.forget_consent(&user.id, &client.client_id, now).await {
        Ok(scopes) => render(
            StatusCode::OK,
            &ResetPage {
                outcome: Outcome::Forgotten {
                    app: client.metadata.client_name.clone(),
                    user: format!("{} ({})", user.display_name, user.username),
                    scopes,
                },
            },
        ),
        Err(e) => server_error(e.to_string()),
    }
}

fn server_error(e: String) -> Response {
    tracing::error!("forget consent: {e}");
    error_page(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", "The consent could not be forgotten.")
}
