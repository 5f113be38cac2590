//! The launcher's backend-service type: a session for a registered `private_key_jwt` client
//! (or one registered here from its JWK Set) whose token requests the inspector records.

use smartlaunch_auth::client::RegistrationRequest;
use smartlaunch_auth::launch::SimulatedError;
use smartlaunch_auth::service::IssuedBackendSession;
use smartlaunch_auth::LaunchError;

use crate::server::App;
use crate::web::field;

/// The result card of a backend-service session.
pub(super) struct BackendCard {
    pub(super) session: IssuedBackendSession,
    /// The simulated error's label, if any.
    pub(super) error: Option<&'static str>,
    /// A `smartlaunch token` command line that gets a token for the session's client.
    pub(super) command: String,
}

impl BackendCard {
    pub(super) fn new(session: IssuedBackendSession) -> BackendCard {
        let command = format!(
            "smartlaunch token --client-id {} --key <your key.pem> --token-url {} --scope {}",
            shell_quote(&session.client_id),
            shell_quote(&session.token_url),
            shell_quote(if session.scope.is_empty() { "system/*.rs" } else { &session.scope }),
        );
        BackendCard { error: session.simulate_error.map(SimulatedError::label), command, session }
    }
}

/// A word for a POSIX shell: as is when it is plain, else in single quotes.
fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ':' | '@' | '%' | '+' | '='));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// The backend-service session the form describes; a JWK Set (or JWKS URL) and scopes register
/// a backend service first.
pub(super) async fn backend_session(app: &App, form: &[(String, String)]) -> Result<IssuedBackendSession, LaunchError> {
    let text = |name: &str| field(form, name).map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
    let simulate_error = match text("backend_simulate_error") {
        None => None,
        Some(name) => Some(
            SimulatedError::from_name(&name)
                .ok_or_else(|| LaunchError::Invalid(format!("no simulated error “{name}”")))?,
        ),
    };
    let client_id = match (text("jwks"), text("jwks_uri"), text("backend_client_id")) {
        (None, None, Some(client_id)) => client_id,
        (None, None, None) => return Err(LaunchError::Invalid(
            "choose a registered backend service, or paste its JWK Set (or give its JWKS URL) and its system/ scopes"
                .into(),
        )),
        (jwks, jwks_uri, _) => {
            // Registering a client here is registration too: the registration token guards it.
            app.auth
                .check_registration_token(field(form, "registration_token").filter(|t| !t.is_empty()))
                .map_err(|e| LaunchError::Invalid(e.description().to_owned()))?;
            throwaway_backend(app, jwks, jwks_uri, text("backend_scope"), text("backend_name"))
                .await
                .map_err(LaunchError::Invalid)?
        }
    };
    app.auth.create_backend_session(&client_id, simulate_error, app.clock.now()).await
}

/// Registers a backend service (`private_key_jwt`, `client_credentials`) for a JWK Set or JWKS
/// URL and the `system/` scopes typed into the launcher.
async fn throwaway_backend(
    app: &App,
    jwks: Option<String>,
    jwks_uri: Option<String>,
    scope: Option<String>,
    name: Option<String>,
) -> Result<String, String> {
    let jwks = jwks
        .map(|text| serde_json::from_str::<serde_json::Value>(&text))
        .transpose()
        .map_err(|e| format!("the JWK Set is not JSON: {e}"))?;
    let scope = scope.ok_or("give the system/ scopes the backend service may have, e.g. system/*.rs")?;
    let request = RegistrationRequest {
        client_name: Some(name.unwrap_or_else(|| "Launcher backend service".into())),
        grant_types: Some(vec!["client_credentials".into()]),
        token_endpoint_auth_method: Some("private_key_jwt".into()),
        scope: Some(scope),
        jwks,
        jwks_uri,
        ..Default::default()
    };
    let registered = app.auth.add_client(request, app.clock.now()).await.map_err(|e| e.description().to_owned())?;
    Ok(registered.client.client_id)
}
