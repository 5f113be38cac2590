//! The home page: where the FHIR base and the demo accounts are, and who is signed in.

use askama::Template;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use smartlaunch_auth::store::{ClientStore, UserStore};

use crate::server::App;
use crate::web::pages::render;
use crate::web::{field, form_pairs, see_other, session_clear_cookie, session_cookie};

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage<'a> {
    public_url: &'a str,
    fhir_base: &'a str,
    client_count: usize,
    user_name: Option<String>,
    csrf: String,
    clinician: String,
    patient: String,
}

/// `GET /`.
pub(crate) async fn home(State(app): State<App>, headers: HeaderMap) -> Response {
    let now = app.clock.now();
    let signed_in = match session_cookie(&headers) {
        Some(c) => app.auth.session_user(&c, now).await.ok().flatten(),
        None => None,
    };
    let describe = |user: Option<smartlaunch_auth::users::User>| {
        user.map(|u| format!("{} ({})", u.display_name, u.fhir_user)).unwrap_or_else(|| "not present".into())
    };
    render(
        StatusCode::OK,
        &HomePage {
            public_url: &app.auth.config.public_url,
            fhir_base: &app.auth.config.fhir_base(),
            client_count: app.db.clients().await.map(|c| c.len()).unwrap_or(0),
            user_name: signed_in.as_ref().map(|(_, u)| u.display_name.clone()),
            csrf: signed_in.map(|(s, _)| s.csrf).unwrap_or_default(),
            clinician: describe(app.db.user_by_username("clinician").await.ok().flatten()),
            patient: describe(app.db.user_by_username("patient").await.ok().flatten()),
        },
    )
}

/// `POST /auth/signout`: ends the signed-in session.
pub(crate) async fn sign_out(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let form = form_pairs(&body);
    if let Some(cookie) = session_cookie(&headers) {
        if let Err(e) = app.auth.sign_out(&cookie, field(&form, "csrf").unwrap_or_default(), app.clock.now()).await {
            return crate::web::pages::error_page(StatusCode::BAD_REQUEST, "Sign-out failed", &e.to_string());
        }
    }
    let mut response = see_other("/");
    response.headers_mut().insert(header::SET_COOKIE, session_clear_cookie());
    response
}
