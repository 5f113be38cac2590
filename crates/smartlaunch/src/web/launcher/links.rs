//! Permanent launch links (issue 9, "reusable launches"): the launcher saves its form under a
//! 256-bit random id (kept hashed); each opening of `/launcher/link/{id}` creates a fresh
//! single-use launch from it and opens the app (or the EHR frame).  Opening, saving and
//! deleting a link all need the sandbox powers — in an admin-token deployment a browser sends
//! no token, so links open only on an open sandbox (docs/SECURITY.md, "Launch links").

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use smartlaunch_auth::secrets::{hash_token, random_token};
use smartlaunch_auth::LaunchError;
use smartlaunch_store::LaunchLink;

use super::form::{plan, NotYet};
use crate::server::App;
use crate::web::pages::error_page;
use crate::web::{bearer, field, form_pairs, host, see_other, signin};

/// The longest name of a link.
const NAME_MAX: usize = 100;

/// The longest saved form (the launcher's fields; bounded like the remembered settings).
const FORM_MAX: usize = 8 * 1024;

/// A link as the launcher lists it.
pub(super) struct LinkRow {
    pub(super) handle: String,
    pub(super) name: String,
    pub(super) time: String,
}

/// The fields a link keeps: the launch, never a token, the CSRF value or the reuse choice (each
/// opening makes a single-use launch) — and the app by its client_id (resolved when the link
/// was saved), so opening a link never registers an app.
fn saved_form(form: &[(String, String)], client_id: &str) -> Vec<(String, String)> {
    const DROPPED: [&str; 11] = [
        "csrf",
        "own_client_id",
        "admin_token",
        "registration_token",
        "reuse",
        "client_id",
        "launch_uri",
        "redirect_uri",
        "save_link",
        "link_name",
        "patient_choice",
    ];
    let mut kept: Vec<(String, String)> =
        form.iter().filter(|(k, _)| !DROPPED.contains(&k.as_str())).cloned().collect();
    kept.push(("client_id".into(), client_id.to_owned()));
    kept
}

/// Saves the form as a link; the link's URL (shown once: only its hash is kept).
pub(super) async fn save(
    app: &App,
    form: &[(String, String)],
    client_id: &str,
    patient: Option<&str>,
) -> Result<String, String> {
    let mut kept = saved_form(form, client_id);
    // The patient as resolved (a name search picks one patient; the link keeps its id).
    if let Some(p) = patient {
        kept.retain(|(k, _)| k != "patient");
        kept.push(("patient".into(), p.to_owned()));
    }
    let encoded = serde_urlencoded::to_string(&kept).map_err(|e| e.to_string())?;
    if encoded.len() > FORM_MAX {
        return Err(format!("the form is too long to save as a link (at most {FORM_MAX} bytes)"));
    }
    let name = field(form, "link_name").map(str::trim).filter(|n| !n.is_empty()).unwrap_or("Launch link");
    let id = random_token(32);
    let link = LaunchLink {
        id_hash: hash_token(&id),
        name: name.chars().take(NAME_MAX).collect(),
        form: encoded,
        created_at: app.clock.now(),
    };
    app.db.insert_launch_link(&link).await.map_err(|e| e.to_string())?;
    Ok(format!("{}/launcher/link/{id}", app.auth.config.public_url))
}

/// The saved links, newest first.
pub(super) async fn rows(app: &App) -> Vec<LinkRow> {
    app.db
        .launch_links()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|l| LinkRow { handle: l.id_hash, name: l.name, time: super::when(l.created_at) })
        .collect()
}

/// `GET /launcher/link/{id}`: a fresh single-use launch from the saved form, opened.
pub(crate) async fn open(State(app): State<App>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Err(e) = app.auth.check_powers(bearer(&headers), host(&headers)) {
        return error_page(
            StatusCode::FORBIDDEN,
            "Launch links are off here",
            &format!("{e}. A launch link opens only where the launcher needs no admin token (an open sandbox)."),
        );
    }
    let unknown = || {
        error_page(
            StatusCode::NOT_FOUND,
            "No such launch link",
            "This launch link does not exist (it may have been deleted). Make a new one in the launcher.",
        )
    };
    if id.len() > 128 {
        return unknown();
    }
    let link = match app.db.launch_link(&hash_token(&id)).await {
        Ok(Some(link)) => link,
        Ok(None) => return unknown(),
        Err(e) => {
            tracing::error!("launch link: {e}");
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The link could not be read.",
            );
        }
    };
    let form = form_pairs(link.form.as_bytes());
    let planned = match plan(&app, &form).await {
        Ok(planned) => planned,
        Err(NotYet::Problem(p)) => return broken(&link.name, &p),
        Err(NotYet::PickPatient(_)) => return broken(&link.name, "its patient is no longer one patient"),
    };
    let (in_frame, portal, user_name) = (planned.in_frame, planned.portal, planned.user_name);
    let patient = planned.new.patient.clone();
    match app.auth.create_launch(planned.new, app.clock.now()).await {
        Ok(issued) => match (&issued.launch_url, in_frame) {
            (Some(_), true) => {
                crate::web::ehr::launcher_chart(&app, portal, patient.as_deref(), &user_name, &issued).await
            }
            (Some(url), false) => see_other(url),
            (None, _) => broken(&link.name, "the app has no launch URL"),
        },
        Err(LaunchError::Internal(e)) => {
            tracing::error!("launch link: {e}");
            error_page(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", "The launch could not be created.")
        }
        Err(e) => broken(&link.name, &e.to_string()),
    }
}

/// A link whose saved launch no longer works (e.g. its app was removed).
fn broken(name: &str, problem: &str) -> Response {
    error_page(
        StatusCode::BAD_REQUEST,
        "The launch link no longer works",
        &format!("“{name}”: {problem}. Delete it in the launcher and save a new one."),
    )
}

/// `POST /launcher/links/delete`: deletes a link (its handle is the id's hash).
pub(crate) async fn delete(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let form = match signin::posted_form(&headers, &body) {
        Ok(form) => form,
        Err(refused) => return refused.page("the launcher"),
    };
    let admin = signin::admin_token(&form, &headers);
    if let Err(e) = app.auth.check_powers(admin, host(&headers)) {
        return error_page(StatusCode::FORBIDDEN, "The link was not deleted", &e.to_string());
    }
    let handle = field(&form, "link").unwrap_or_default();
    if handle.len() > 128 {
        return error_page(StatusCode::BAD_REQUEST, "No such launch link", "The link to delete is not known.");
    }
    match app.db.delete_launch_link(handle).await {
        Ok(true) => see_other("/launcher"),
        Ok(false) => error_page(StatusCode::NOT_FOUND, "No such launch link", "The link was deleted already."),
        Err(e) => {
            tracing::error!("launch link: {e}");
            error_page(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", "The link could not be deleted.")
        }
    }
}
