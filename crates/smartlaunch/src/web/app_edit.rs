//! Editing and deleting an app at `/apps` (issue 9): an edit is an RFC 7592 §2.2 update and a
//! delete an RFC 7592 §2.3 delete, with the same rules
//! ([`AuthService::edit_client`](smartlaunch_auth::AuthService::edit_client)), made with the
//! sandbox powers instead of the app's registration access token: on an open sandbox without
//! a token, with the admin token where one is configured, never on a closed sandbox.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use smartlaunch_auth::client::{Client, RegistrationRequest, TokenEndpointAuthMethod};
use smartlaunch_auth::config::SandboxMode;
use smartlaunch_auth::service::Registrant;
use smartlaunch_auth::store::ClientStore;
use smartlaunch_auth::RegistrationError;

use crate::server::App;
use crate::web::gallery::{kind_of, page_with_notice};
use crate::web::pages::{error_page, render};
use crate::web::{field, form_pairs, host, is_from_another_origin, reload_client_origins, signin};

/// The editable metadata, as the form shows it.
struct Filled {
    name: String,
    redirect_uris: String,
    launch_uri: String,
    scope: String,
    jwks: String,
    jwks_uri: String,
}

impl Filled {
    fn of(client: &Client) -> Filled {
        let m = &client.metadata;
        Filled {
            name: m.client_name.clone(),
            redirect_uris: m.redirect_uris.join("\n"),
            launch_uri: m.initiate_login_uri.clone().unwrap_or_default(),
            scope: m.scope.clone().unwrap_or_default(),
            jwks: m.jwks.as_ref().map(|j| serde_json::to_string_pretty(j).unwrap_or_default()).unwrap_or_default(),
            jwks_uri: m.jwks_uri.clone().unwrap_or_default(),
        }
    }

    fn posted(form: &[(String, String)]) -> Filled {
        let text = |name: &str| field(form, name).unwrap_or_default().trim().to_owned();
        Filled {
            name: text("client_name"),
            redirect_uris: text("redirect_uris"),
            launch_uri: text("initiate_login_uri"),
            scope: text("scope"),
            jwks: text("jwks"),
            jwks_uri: text("jwks_uri"),
        }
    }

    /// The RFC 7592 §2.2 update the form stands for: the client's whole metadata, with what
    /// the form edits replaced.  The grant types and authentication method are not editable
    /// (a new method is a new client), nor is the secret, which is never shown again.
    fn update_request(&self, client: &Client) -> Result<RegistrationRequest, String> {
        let m = &client.metadata;
        let keys = m.token_endpoint_auth_method == TokenEndpointAuthMethod::PrivateKeyJwt;
        let jwks = match (keys, self.jwks.is_empty()) {
            (true, false) => Some(serde_json::from_str::<serde_json::Value>(&self.jwks).map_err(|e| {
                format!("The JWK Set is not valid JSON ({e}): paste the public JWKS, {{\"keys\": [...]}}.")
            })?),
            _ => None,
        };
        let nonempty = |s: &str| Some(s.to_owned()).filter(|s| !s.is_empty());
        Ok(RegistrationRequest {
            client_id: Some(client.client_id.clone()),
            client_name: nonempty(&self.name),
            redirect_uris: Some(self.redirect_uris.split_whitespace().map(str::to_owned).collect()),
            grant_types: Some(m.grant_types.clone()),
            token_endpoint_auth_method: Some(m.token_endpoint_auth_method.as_str().to_owned()),
            scope: nonempty(&self.scope),
            initiate_login_uri: nonempty(&self.launch_uri),
            logo_uri: m.logo_uri.clone(),
            jwks,
            jwks_uri: nonempty(&self.jwks_uri).filter(|_| keys),
            ..Default::default()
        })
    }
}

/// How the page asks for the sandbox powers.
struct Powers {
    /// An admin token is configured: the form has its field.
    token_required: bool,
    /// A closed sandbox: editing and deleting are off.
    closed: bool,
}

impl Powers {
    fn of(app: &App) -> Powers {
        let mode = app.auth.config.sandbox_mode();
        Powers { token_required: mode == SandboxMode::AdminToken, closed: mode == SandboxMode::Closed }
    }
}

#[derive(Template)]
#[template(path = "app_edit.html")]
struct EditPage {
    client_id: String,
    name: String,
    kind: &'static str,
    has_redirects: bool,
    uses_keys: bool,
    has_secret: bool,
    filled: Filled,
    csrf: String,
    powers: Powers,
    problem: Option<String>,
}

#[derive(Template)]
#[template(path = "app_delete.html")]
struct DeletePage {
    client_id: String,
    name: String,
    kind: &'static str,
    launch_uri: Option<String>,
    csrf: String,
    powers: Powers,
    problem: Option<String>,
}

fn edit_page(app: &App, client: &Client, filled: Filled, problem: Option<(StatusCode, String)>) -> Response {
    let (csrf, cookie) = signin::form_token("/apps");
    let (status, problem) = problem.map_or((StatusCode::OK, None), |(s, p)| (s, Some(p)));
    let m = &client.metadata;
    let body = EditPage {
        client_id: client.client_id.clone(),
        name: m.client_name.clone(),
        kind: kind_of(client),
        has_redirects: client.allows_grant("authorization_code"),
        uses_keys: m.token_endpoint_auth_method == TokenEndpointAuthMethod::PrivateKeyJwt,
        has_secret: m.token_endpoint_auth_method.uses_secret(),
        filled,
        csrf,
        powers: Powers::of(app),
        problem,
    };
    signin::with_form_cookie(render(status, &body), cookie)
}

fn delete_page(app: &App, client: &Client, problem: Option<(StatusCode, String)>) -> Response {
    let (csrf, cookie) = signin::form_token("/apps");
    let (status, problem) = problem.map_or((StatusCode::OK, None), |(s, p)| (s, Some(p)));
    let body = DeletePage {
        client_id: client.client_id.clone(),
        name: client.metadata.client_name.clone(),
        kind: kind_of(client),
        launch_uri: client.metadata.initiate_login_uri.clone(),
        csrf,
        powers: Powers::of(app),
        problem,
    };
    signin::with_form_cookie(render(status, &body), cookie)
}

/// The app a request names, or the page that says there is none.
async fn named_client(app: &App, client_id: Option<&str>) -> Result<Client, Response> {
    let missing = || {
        error_page(
            StatusCode::NOT_FOUND,
            "No such app",
            "No registered app has this client_id: it may have been deleted. Go back to /apps.",
        )
    };
    let id = client_id.filter(|id| !id.is_empty() && id.len() <= 256).ok_or_else(missing)?;
    match app.db.client(id).await {
        Ok(Some(client)) => Ok(client),
        Ok(None) => Err(missing()),
        Err(e) => {
            tracing::error!("app gallery: {e}");
            Err(error_page(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", "The app could not be read."))
        }
    }
}

/// The status a refused edit or delete answers with.
fn status_of(e: &RegistrationError) -> StatusCode {
    match e {
        RegistrationError::InvalidToken(_) => StatusCode::UNAUTHORIZED,
        RegistrationError::Forbidden(_) => StatusCode::FORBIDDEN,
        RegistrationError::NotFound(_) => StatusCode::NOT_FOUND,
        RegistrationError::ServerError(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// The posted form if it passes its double-submit CSRF check (the `/apps` form token).
fn checked_form(headers: &HeaderMap, body: &Bytes) -> Option<Vec<(String, String)>> {
    let form = form_pairs(body);
    signin::form_token_ok(headers, &form).then_some(form)
}

fn expired_form() -> Response {
    error_page(StatusCode::BAD_REQUEST, "The form has expired", "Please reload the page and try again.")
}

/// Who edits or deletes: the admin token from the form (or `Authorization: Bearer`), and the
/// `Host` (an open sandbox on loopback answers only at its own names).  The form is guarded by
/// its double-submit cookie; a post that the browser says came from a page of another origin
/// (which can plant that cookie from another port of this host) is cross-site.
fn registrant<'a>(form: &'a [(String, String)], headers: &'a HeaderMap) -> Registrant<'a> {
    Registrant {
        bearer: signin::admin_token(form, headers),
        host: host(headers),
        cross_site: is_from_another_origin(headers),
    }
}

/// `GET /apps/edit?client_id=…`: the edit form, filled with the app's metadata.
pub(crate) async fn show_edit(State(app): State<App>, RawQuery(query): RawQuery) -> Response {
    let query = form_pairs(query.unwrap_or_default().as_bytes());
    match named_client(&app, field(&query, "client_id")).await {
        Ok(client) => edit_page(&app, &client, Filled::of(&client), None),
        Err(page) => page,
    }
}

/// `POST /apps/edit`: applies the edit with RFC 7592's rules; a refused edit changes nothing
/// and shows the form again with the same error RFC 7592 would answer.
pub(crate) async fn edit(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(form) = checked_form(&headers, &body) else {
        return expired_form();
    };
    let client = match named_client(&app, field(&form, "client_id")).await {
        Ok(client) => client,
        Err(page) => return page,
    };
    let filled = Filled::posted(&form);
    let request = match filled.update_request(&client) {
        Ok(r) => r,
        Err(e) => return edit_page(&app, &client, filled, Some((StatusCode::BAD_REQUEST, e))),
    };
    match app.auth.edit_client(request, registrant(&form, &headers)).await {
        Ok(edited) => {
            reload_client_origins(&app).await;
            page_with_notice(
                &app,
                format!(
                    "{} is updated: authorize now checks its new metadata (its redirect URIs, launch URL and scopes).",
                    edited.metadata.client_name
                ),
            )
            .await
        }
        Err(RegistrationError::ServerError(e)) => {
            tracing::error!("app gallery: {e}");
            error_page(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", "The app could not be updated.")
        }
        Err(e) => edit_page(&app, &client, filled, Some((status_of(&e), e.description().to_owned()))),
    }
}

/// `GET /apps/delete?client_id=…`: what deleting the app does, and the button that does it.
pub(crate) async fn show_delete(State(app): State<App>, RawQuery(query): RawQuery) -> Response {
    let query = form_pairs(query.unwrap_or_default().as_bytes());
    match named_client(&app, field(&query, "client_id")).await {
        Ok(client) => delete_page(&app, &client, None),
        Err(page) => page,
    }
}

/// `POST /apps/delete`: deletes the app and revokes everything issued to it.
pub(crate) async fn delete(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(form) = checked_form(&headers, &body) else {
        return expired_form();
    };
    let client = match named_client(&app, field(&form, "client_id")).await {
        Ok(client) => client,
        Err(page) => return page,
    };
    match app.auth.delete_client_as_admin(&client.client_id, registrant(&form, &headers), app.clock.now()).await {
        Ok(deleted) => {
            reload_client_origins(&app).await;
            page_with_notice(
                &app,
                format!(
                    "{} ({}) is deleted: its tokens are revoked, its remembered consents are gone, and the EHR charts no longer offer it.",
                    deleted.metadata.client_name, deleted.client_id
                ),
            )
            .await
        }
        Err(RegistrationError::ServerError(e)) => {
            tracing::error!("app gallery: {e}");
            error_page(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", "The app could not be deleted.")
        }
        Err(e) => delete_page(&app, &client, Some((status_of(&e), e.description().to_owned()))),
    }
}
