//! The launch API (`POST /api/launches`): other tools (a CDS Hooks sandbox, test suites) create
//! EHR launches the way the EHR simulator does, and get the app's launch URL to open.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use smartlaunch_auth::launch::{FhirContextItem, LaunchContext, LaunchOptions};
use smartlaunch_auth::service::NewLaunch;
use smartlaunch_auth::store::UserStore;
use smartlaunch_auth::LaunchError;

use crate::server::{instant, App};
use crate::web::{bearer, host};

/// The JSON body of `POST /api/launches`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LaunchRequest {
    client_id: String,
    patient: Option<String>,
    encounter: Option<String>,
    /// A username, or a `fhirUser` reference (`Practitioner/…`, relative or absolute).
    user: Option<String>,
    #[serde(rename = "fhirContext", default)]
    fhir_context: Vec<FhirContextItem>,
    intent: Option<String>,
    tenant: Option<String>,
    need_patient_banner: Option<bool>,
    /// Developer options: `skip_sign_in`, `skip_consent`, `always_ask_consent`, `simulate_error`.
    #[serde(default)]
    options: LaunchOptions,
    /// A reusable (development) launch: usable any number of times for this many minutes
    /// (at most 60); absent: single use.
    reusable_minutes: Option<i64>,
}

fn error(status: StatusCode, code: &str, description: &str) -> Response {
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"error": code, "error_description": description}).to_string(),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"smartlaunch\""));
    }
    response
}

fn launch_error(e: &LaunchError) -> Response {
    match e {
        LaunchError::Invalid(m) => error(StatusCode::BAD_REQUEST, "invalid_request", m),
        LaunchError::Unauthorized(m) => error(StatusCode::UNAUTHORIZED, "invalid_token", m),
        LaunchError::Forbidden(m) => error(StatusCode::FORBIDDEN, "access_denied", m),
        LaunchError::Internal(m) => {
            tracing::error!("launch API: {m}");
            error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "the launch could not be stored")
        }
    }
}

/// `POST /api/launches` → `201 {launch, launch_url, expires_at}`.
pub(crate) async fn create_launch(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(e) = app.auth.check_powers(bearer(&headers), host(&headers)) {
        return launch_error(&e);
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request",
            "send the launch as Content-Type: application/json",
        );
    }
    let request: LaunchRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_request", &format!("the launch JSON: {e}")),
    };
    let user_id = match request.user.as_deref() {
        None => None,
        Some(user) => match find_user(&app, user).await {
            Ok(Some(id)) => Some(id),
            Ok(None) => {
                return error(StatusCode::BAD_REQUEST, "invalid_request", &format!("no user “{user}” can sign in here"))
            }
            Err(e) => return launch_error(&e),
        },
    };
    let new = NewLaunch {
        client_id: request.client_id,
        user_id,
        session_id: None,
        patient: request.patient,
        encounter: request.encounter,
        context: LaunchContext {
            fhir_context: request.fhir_context,
            intent: request.intent,
            tenant: request.tenant,
            need_patient_banner: Some(request.need_patient_banner.unwrap_or(true)),
            smart_style_url: Some(crate::web::ehr::style_url(&app)),
        },
        options: request.options,
        standalone: false,
        patient_choices: Vec::new(),
        reusable_for: request.reusable_minutes.map(|m| m.saturating_mul(60)),
    };
    match app.auth.create_launch(new, app.clock.now()).await {
        Ok(issued) => (
            StatusCode::CREATED,
            [(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")],
            json!({
                "launch": issued.launch,
                "launch_url": issued.launch_url,
                "expires_at": instant(issued.expires_at),
                "inspect_url": format!("{}/launcher/inspect/{}", app.auth.config.public_url, issued.trace_id),
            })
            .to_string(),
        )
            .into_response(),
        Err(e) => launch_error(&e),
    }
}

/// A user by username or by `fhirUser` (relative, or absolute under our FHIR base).
async fn find_user(app: &App, user: &str) -> Result<Option<String>, LaunchError> {
    let base = format!("{}/", app.auth.config.fhir_base());
    let found = match user.strip_prefix(&base).unwrap_or(user) {
        reference if reference.contains('/') => app.db.user_by_fhir_user(reference).await?,
        username => app.db.user_by_username(username).await?,
    };
    Ok(found.map(|u| u.id))
}

/// The SMART App Launch styles of the EHR simulator (spec digest §3): what a framed app uses to
/// look at home inside the EHR.
pub(crate) fn smart_style() -> Value {
    json!({
        "color_background": "#f6f7f9",
        "color_error": "#b00020",
        "color_highlight": "#0b5cad",
        "color_modal_backdrop": "rgba(0, 0, 0, 0.4)",
        "color_success": "#1e7d32",
        "color_text": "#1b1f24",
        "dim_border_radius": "4px",
        "dim_font_size": "16px",
        "dim_spacing_size": "16px",
        "font_family_body": "system-ui, -apple-system, \"Segoe UI\", Roboto, sans-serif",
        "font_family_heading": "system-ui, -apple-system, \"Segoe UI\", Roboto, sans-serif"
    })
}
