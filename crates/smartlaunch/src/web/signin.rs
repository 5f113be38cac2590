//! Sign-in forms outside an authorization request (the management page, the EHR simulator, the
//! patient portal).  There is no session yet to hold a CSRF token, so the form carries a random
//! token that must equal a cookie set with the form (double submit), scoped to the page's path.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use smartlaunch_auth::secrets::{random_token, secrets_equal};
use smartlaunch_auth::service::Credentials;
use smartlaunch_auth::store::Session;
use smartlaunch_auth::users::User;
use smartlaunch_auth::AuthorizeError;

use crate::server::App;
use crate::web::pages::{error_page, throttled_page};
use crate::web::{
    bearer, field, form_pairs, from_another_origin_page, is_from_another_origin, see_other, session_cookie,
    session_set_cookie,
};

const CSRF_COOKIE: &str = "smartlaunch_csrf";

/// A fresh form token, and the cookie that must come back with it (only to `path`).
pub(crate) fn form_token(path: &str) -> (String, HeaderValue) {
    let csrf = random_token(24);
    let cookie = format!("{CSRF_COOKIE}={csrf}; Path={path}; HttpOnly; SameSite=Strict");
    (csrf, HeaderValue::from_str(&cookie).expect("URL-safe"))
}

/// Whether a posted form carries the double-submit token of one of the browser's form-token
/// cookies (a page's cookie and its parent path's, e.g. `/launcher` and `/launcher/trace`,
/// may both come along).
pub(crate) fn form_token_ok(headers: &HeaderMap, form: &[(String, String)]) -> bool {
    let posted = field(form, "csrf").unwrap_or_default();
    !posted.is_empty()
        && headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .any(|(n, v)| n == CSRF_COOKIE && secrets_equal(v, posted))
}

/// Why a posted sandbox-power form was refused before anything was done.
pub(crate) enum FormRefused {
    /// A page of another origin sent it (`Sec-Fetch-Site`): see [`is_from_another_origin`].
    AnotherOrigin,
    /// Its double-submit token is missing or wrong (an expired page, or a forged post).
    Expired,
}

impl FormRefused {
    /// The page that says so, telling the user to reload `page` (nothing was changed).
    pub(crate) fn page(self, page: &str) -> Response {
        match self {
            FormRefused::AnotherOrigin => from_another_origin_page(),
            FormRefused::Expired => error_page(
                StatusCode::BAD_REQUEST,
                "The form has expired",
                &format!("Please reload {page} and try again. Nothing was changed."),
            ),
        }
    }
}

/// A posted sandbox-power form (launcher, launch links, forget consent, trace switch, reset),
/// once it is known to come from this server's own page: not from a page of another origin,
/// and with its double-submit token.
pub(crate) fn posted_form(headers: &HeaderMap, body: &[u8]) -> Result<Vec<(String, String)>, FormRefused> {
    if is_from_another_origin(headers) {
        return Err(FormRefused::AnotherOrigin);
    }
    let form = form_pairs(body);
    if !form_token_ok(headers, &form) {
        return Err(FormRefused::Expired);
    }
    Ok(form)
}

/// The admin token a sandbox-power form presents: its `admin_token` field, else the request's
/// `Authorization: Bearer` token.
pub(crate) fn admin_token<'a>(form: &'a [(String, String)], headers: &'a HeaderMap) -> Option<&'a str> {
    field(form, "admin_token").filter(|t| !t.is_empty()).or(bearer(headers))
}

/// Adds the form token's cookie to a rendered sign-in page.
pub(crate) fn with_form_cookie(mut page: Response, cookie: HeaderValue) -> Response {
    page.headers_mut().insert(header::SET_COOKIE, cookie);
    page
}

/// The signed-in session and user of the request, if any.
pub(crate) async fn signed_in(app: &App, headers: &HeaderMap) -> Option<(Session, User)> {
    let cookie = session_cookie(headers)?;
    app.auth.session_user(&cookie, app.clock.now()).await.ok().flatten()
}

/// What a sign-in form post came to.
pub(crate) enum Outcome {
    /// Signed in: the response (a redirect to `next`, with the session cookie).
    SignedIn(Response),
    /// Wrong username or password: show the form again.
    Failed,
    /// An expired form or a server failure: this page says so.
    Error(Response),
}

/// Handles a posted sign-in form: checks that it came from this server's own page (its
/// double-submit token, and `Sec-Fetch-Site`), the password, and opens a session.
pub(crate) async fn sign_in(
    app: &App,
    headers: &HeaderMap,
    client_addr: Option<&str>,
    form: &[(String, String)],
    next: &str,
) -> Outcome {
    // A page on another port of this host can plant the form-token cookie (cookies ignore the
    // port): such a post would sign the browser in to an account of the attacker's choosing.
    if is_from_another_origin(headers) {
        return Outcome::Error(from_another_origin_page());
    }
    if !form_token_ok(headers, form) {
        return Outcome::Error(error_page(
            StatusCode::BAD_REQUEST,
            "The form has expired",
            "Please reload the page and sign in again.",
        ));
    }
    let credentials = Credentials {
        username: field(form, "username").unwrap_or_default(),
        password: field(form, "password").unwrap_or_default(),
        client_addr,
    };
    match app.auth.open_session(credentials, app.clock.now()).await {
        Ok((signed_in, _, _)) => {
            let mut response = see_other(next);
            response.headers_mut().insert(header::SET_COOKIE, session_set_cookie(app, &signed_in.session_cookie));
            Outcome::SignedIn(response)
        }
        Err(AuthorizeError::SignInFailed) => Outcome::Failed,
        Err(AuthorizeError::Throttled { retry_after }) => Outcome::Error(throttled_page(retry_after)),
        Err(e) => {
            tracing::error!("sign-in: {e}");
            Outcome::Error(error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The sign-in could not be completed.",
            ))
        }
    }
}
