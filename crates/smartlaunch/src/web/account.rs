//! The management page (`management_endpoint`, spec digest §1.1): a user sees the apps they
//! authorized and revokes them.

use askama::Template;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use smart_scopes::ScopeSet;
use smartlaunch_auth::secrets::secrets_equal;
use smartlaunch_auth::store::GrantStore;

use crate::server::{instant, App};
use crate::web::pages::{error_page, render};
use crate::web::{field, form_pairs, see_other, signin, ClientAddr};

struct ScopeRow {
    raw: String,
    label: String,
}

struct AppRow {
    client_id: String,
    name: String,
    approved: String,
    refreshable: bool,
    scopes: Vec<ScopeRow>,
    /// The inspector of the user's newest traced launch of this app (issue 9).
    trace: Option<String>,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    user_name: Option<String>,
    csrf: String,
    failed: bool,
    apps: Vec<AppRow>,
}

/// `GET /account`.
pub(crate) async fn show(State(app): State<App>, headers: HeaderMap) -> Response {
    page(&app, &headers, false).await
}

async fn page(app: &App, headers: &HeaderMap, failed: bool) -> Response {
    let now = app.clock.now();
    let Some((session, user)) = signin::signed_in(app, headers).await else {
        let (csrf, cookie) = signin::form_token("/account");
        let page = render(StatusCode::OK, &AccountPage { user_name: None, csrf, failed, apps: Vec::new() });
        return signin::with_form_cookie(page, cookie);
    };
    let authorizations = match app.db.user_authorizations(&user.id, now).await {
        Ok(a) => a,
        Err(e) => {
            tracing::error!("account page: {e}");
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The apps could not be listed.",
            );
        }
    };
    let mut apps = Vec::new();
    for a in authorizations {
        let name = match app.auth.client(&a.client_id, now).await {
            Ok(Some(c)) => c.metadata.client_name.clone(),
            _ => continue,
        };
        let scopes = ScopeSet::parse(&a.scope)
            .map(|s| s.iter().map(|s| ScopeRow { raw: s.to_string(), label: s.describe() }).collect())
            .unwrap_or_default();
        let approved = instant(a.approved_at).replace('T', " ").trim_end_matches('Z').to_owned() + " UTC";
        apps.push(AppRow {
            client_id: a.client_id,
            name,
            approved,
            refreshable: a.refreshable,
            scopes,
            trace: a.trace,
        });
    }
    render(StatusCode::OK, &AccountPage { user_name: Some(user.display_name), csrf: session.csrf, failed: false, apps })
}

/// `POST /account/signin`.
pub(crate) async fn sign_in(
    State(app): State<App>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match signin::sign_in(&app, &headers, addr.as_deref(), &form_pairs(&body), "/account").await {
        signin::Outcome::SignedIn(response) | signin::Outcome::Error(response) => response,
        signin::Outcome::Failed => page(&app, &HeaderMap::new(), true).await,
    }
}

/// `POST /account/revoke`: revokes everything the signed-in user gave one app.
pub(crate) async fn revoke(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let form = form_pairs(&body);
    let now = app.clock.now();
    let Some((session, user)) = signin::signed_in(&app, &headers).await else {
        return see_other("/account");
    };
    if !secrets_equal(&session.csrf, field(&form, "csrf").unwrap_or_default()) {
        return error_page(StatusCode::BAD_REQUEST, "The form has expired", "Please reload the page and try again.");
    }
    let client_id = field(&form, "client_id").unwrap_or_default();
    if client_id.is_empty() || client_id.len() > 256 {
        return error_page(StatusCode::BAD_REQUEST, "No such app", "The app to revoke was not named.");
    }
    match app.auth.revoke_user_client(&user.id, client_id, now).await {
        Ok(()) => see_other("/account"),
        Err(e) => {
            tracing::error!("revoke: {e}");
            error_page(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", "The access could not be revoked.")
        }
    }
}
