//! The app gallery (`/apps`): the registered apps, and a form that registers one with the same
//! effect (and the same rules) as RFC 7591 dynamic registration.  Each app can be edited and
//! deleted ([`super::app_edit`], RFC 7592's rules).

use askama::Template;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use smartlaunch_auth::client::{Client, RegistrationRequest, TokenEndpointAuthMethod};
use smartlaunch_auth::service::Registrant;
use smartlaunch_auth::store::ClientStore;
use smartlaunch_auth::RegistrationError;

use crate::server::App;
use crate::web::pages::{error_page, render};
use crate::web::{field, form_pairs, reload_client_origins, signin};

struct AppRow {
    /// The query string naming this app (`client_id=…`), for its edit and delete links.
    query: String,
    client_id: String,
    name: String,
    kind: &'static str,
    launch_uri: String,
    redirect_uris: Vec<String>,
    scope: String,
}

/// The kinds of app the form registers.
#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A browser or device app: no secret, PKCE.
    #[default]
    Public,
    /// A server with a client secret (`client_secret_basic`).
    Symmetric,
    /// A server that signs assertions with its private key (`private_key_jwt`).
    Asymmetric,
    /// A backend service: `client_credentials` with `private_key_jwt` and system/ scopes.
    Backend,
}

impl Kind {
    fn parse(value: Option<&str>) -> Kind {
        match value {
            Some("confidential" | "symmetric") => Kind::Symmetric,
            Some("asymmetric") => Kind::Asymmetric,
            Some("backend") => Kind::Backend,
            _ => Kind::Public,
        }
    }

    fn uses_keys(self) -> bool {
        matches!(self, Kind::Asymmetric | Kind::Backend)
    }
}

/// What the form was filled with, to show it again after an error.
#[derive(Default)]
struct Filled {
    name: String,
    kind: Kind,
    redirect_uris: String,
    launch_uri: String,
    scope: String,
    jwks: String,
    jwks_uri: String,
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
    /// What an edit or delete just did.
    notice: Option<String>,
}

/// What kind of app a client is, in the gallery's words.
pub(super) fn kind_of(c: &Client) -> &'static str {
    match c.metadata.token_endpoint_auth_method {
        _ if c.allows_grant("client_credentials") && !c.allows_grant("authorization_code") => "backend service",
        TokenEndpointAuthMethod::None => "public",
        TokenEndpointAuthMethod::PrivateKeyJwt => "confidential (private key)",
        _ => "confidential (secret)",
    }
}

/// The gallery after an edit or a delete, saying what was done.
pub(super) async fn page_with_notice(app: &App, notice: String) -> Response {
    page(app, Filled::default(), None, None, Some(notice)).await
}

async fn page(
    app: &App,
    filled: Filled,
    error: Option<String>,
    registered: Option<Registered>,
    notice: Option<String>,
) -> Response {
    let mut apps: Vec<AppRow> = app
        .db
        .clients()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|c| AppRow {
            kind: kind_of(&c),
            query: serde_urlencoded::to_string([("client_id", &c.client_id)]).unwrap_or_default(),
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
        notice,
    };
    signin::with_form_cookie(render(status, &body), cookie)
}

/// `GET /apps`.
pub(crate) async fn show(State(app): State<App>) -> Response {
    page(&app, Filled::default(), None, None, None).await
}

/// The RFC 7591 request the form stands for.  The keys of a private-key app are pasted as a
/// JWK Set or given by URL.
fn registration_request(filled: &Filled) -> Result<RegistrationRequest, String> {
    let (grant_types, method): (&[&str], &str) = match filled.kind {
        Kind::Public => (&["authorization_code", "refresh_token"], "none"),
        Kind::Symmetric => (&["authorization_code", "refresh_token"], "client_secret_basic"),
        Kind::Asymmetric => (&["authorization_code", "refresh_token"], "private_key_jwt"),
        Kind::Backend => (&["client_credentials"], "private_key_jwt"),
    };
    let jwks = match (filled.kind.uses_keys(), filled.jwks.is_empty()) {
        (true, false) => Some(serde_json::from_str::<serde_json::Value>(&filled.jwks).map_err(|e| {
            format!("The JWK Set is not valid JSON ({e}): paste the public JWKS, {{\"keys\": [...]}}.")
        })?),
        _ => None,
    };
    let nonempty = |s: &str| Some(s.to_owned()).filter(|s| !s.is_empty());
    Ok(RegistrationRequest {
        client_name: nonempty(&filled.name),
        redirect_uris: Some(filled.redirect_uris.split_whitespace().map(str::to_owned).collect()),
        grant_types: Some(grant_types.iter().map(|g| g.to_string()).collect()),
        token_endpoint_auth_method: Some(method.into()),
        scope: nonempty(&filled.scope),
        initiate_login_uri: nonempty(&filled.launch_uri).filter(|_| filled.kind != Kind::Backend),
        jwks,
        jwks_uri: nonempty(&filled.jwks_uri).filter(|_| filled.kind.uses_keys()),
        ..Default::default()
    })
}

/// `POST /apps`: registers an app from the form.
pub(crate) async fn register(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let form = form_pairs(&body);
    if !signin::form_token_ok(&headers, &form) {
        return error_page(StatusCode::BAD_REQUEST, "The form has expired", "Please reload the page and try again.");
    }
    let text = |name: &str| field(&form, name).unwrap_or_default().trim().to_owned();
    let filled = Filled {
        name: text("client_name"),
        kind: Kind::parse(field(&form, "client_type")),
        redirect_uris: text("redirect_uris"),
        launch_uri: text("initiate_login_uri"),
        scope: text("scope"),
        jwks: text("jwks"),
        jwks_uri: text("jwks_uri"),
    };
    let request = match registration_request(&filled) {
        Ok(r) => r,
        Err(e) => return page(&app, filled, Some(e), None, None).await,
    };
    let token = field(&form, "registration_token").filter(|t| !t.is_empty());
    // The form is guarded by its double-submit cookie; a post that the browser says came from
    // a page of another origin (which can plant that cookie from another port of this host) is
    // cross-site: it may not name /dev/callback or make a backend service.
    let cross_site = crate::web::is_from_another_origin(&headers);
    let registrant = Registrant { bearer: token, host: crate::web::host(&headers), cross_site };
    match app.auth.register(request, registrant, app.clock.now()).await {
        Ok(done) => {
            reload_client_origins(&app).await;
            let registered = Registered {
                name: done.client.metadata.client_name.clone(),
                client_id: done.client.client_id.clone(),
                client_secret: done.client_secret,
            };
            page(&app, Filled::default(), None, Some(registered), None).await
        }
        Err(RegistrationError::ServerError(e)) => {
            tracing::error!("app gallery: {e}");
            error_page(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", "The app could not be registered.")
        }
        Err(e) => {
            let mut filled = filled;
            // A private key pasted by mistake is not sent back to the browser.
            if serde_json::from_str(&filled.jwks).is_ok_and(|v| smartlaunch_auth::jwk::has_private_member(&v)) {
                filled.jwks.clear();
            }
            page(&app, filled, Some(e.description().to_owned()), None, None).await
        }
    }
}
