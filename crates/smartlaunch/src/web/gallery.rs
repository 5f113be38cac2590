//! The app gallery (`/apps`): the registered apps, and a form that registers one with the same
//! effect (and the same rules) as RFC 7591 dynamic registration.

use askama::Template;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use smartlaunch_auth::client::RegistrationRequest;
use smartlaunch_auth::secrets::secrets_equal;
use smartlaunch_auth::store::AuthStore;
use smartlaunch_auth::RegistrationError;

use crate::server::App;
use crate::web::pages::{error_page, render};
use crate::web::{cookie, field, form_pairs, reload_client_origins, signin};

struct AppRow {
    client_id: String,
    name: String,
    kind: &'static str,
    launch_uri: String,
    redirect_uris: Vec<String>,
    scope: String,
}

/// What the form was filled with, to show it again after an error.
#[derive(Default)]
struct Filled {
    name: String,
    confidential: bool,
    redirect_uris: String,
    launch_uri: String,
    scope: String,
}

/// A registration that just succeeded: the secret is shown this once.
struct Registered {
    name: String,
    client_id: String,
    client_secret: Option<String>,
}

#[derive(Template)]
#[template(path = "apps.html")]
struct AppsPage {
    apps: Vec<AppRow>,
    csrf: String,
    token_required: bool,
    filled: Filled,
    error: Option<String>,
    registered: Option<Registered>,
}

async fn page(app: &App, filled: Filled, error: Option<String>, registered: Option<Registered>) -> Response {
    let mut apps: Vec<AppRow> = app
        .db
        .clients()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|c| AppRow {
            kind: if c.is_confidential() { "confidential" } else { "public" },
            name: c.metadata.client_name,
            launch_uri: c.metadata.initiate_login_uri.unwrap_or_default(),
            redirect_uris: c.metadata.redirect_uris,
            scope: c.metadata.scope.unwrap_or_else(|| "any".into()),
            client_id: c.client_id,
        })
        .collect();
    apps.sort_by_key(|a| a.name.to_lowercase());
    let (csrf, cookie) = signin::form_token("/apps");
    let status = if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let body = AppsPage {
        apps,
        csrf,
        token_required: app.auth.config.registration_token.is_some(),
        filled,
        error,
        registered,
    };
    signin::with_form_cookie(render(status, &body), cookie)
}

/// `GET /apps`.
pub(crate) async fn show(State(app): State<App>) -> Response {
    page(&app, Filled::default(), None, None).await
}

/// `POST /apps`: registers an app from the form.
pub(crate) async fn register(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let form = form_pairs(&body);
    let posted = field(&form, "csrf").unwrap_or_default();
    if !cookie(&headers, "smartlaunch_csrf").is_some_and(|c| !c.is_empty() && secrets_equal(&c, posted)) {
        return error_page(StatusCode::BAD_REQUEST, "The form has expired", "Please reload the page and try again.");
    }
    let text = |name: &str| field(&form, name).unwrap_or_default().trim().to_owned();
    let filled = Filled {
        name: text("client_name"),
        confidential: field(&form, "client_type") == Some("confidential"),
        redirect_uris: text("redirect_uris"),
        launch_uri: text("initiate_login_uri"),
        scope: text("scope"),
    };
    let request = RegistrationRequest {
        client_name: Some(filled.name.clone()).filter(|n| !n.is_empty()),
        redirect_uris: Some(filled.redirect_uris.split_whitespace().map(str::to_owned).collect()),
        grant_types: Some(vec!["authorization_code".into(), "refresh_token".into()]),
        response_types: None,
        token_endpoint_auth_method: Some(if filled.confidential { "client_secret_basic" } else { "none" }.into()),
        scope: Some(filled.scope.clone()).filter(|s| !s.is_empty()),
        initiate_login_uri: Some(filled.launch_uri.clone()).filter(|u| !u.is_empty()),
        ..Default::default()
    };
    let token = field(&form, "registration_token").filter(|t| !t.is_empty());
    match app.auth.register(request, token, app.clock.now()).await {
        Ok(done) => {
            reload_client_origins(&app).await;
            let registered = Registered {
                name: done.client.metadata.client_name.clone(),
                client_id: done.client.client_id.clone(),
                client_secret: done.client_secret,
            };
            page(&app, Filled::default(), None, Some(registered)).await
        }
        Err(RegistrationError::ServerError(e)) => {
            tracing::error!("app gallery: {e}");
            error_page(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", "The app could not be registered.")
        }
        Err(e) => page(&app, filled, Some(e.description().to_owned()), None).await,
    }
}
