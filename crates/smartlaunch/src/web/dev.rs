//! `/dev/callback`: the built-in redirect URI for an app launched by hand (the README's
//! walkthrough).  It shows the authorization response it received — `code` and `state`, or
//! `error` and `error_description` (RFC 6749 §4.1.2, spec digest §1.4) — and a ready-to-copy
//! token command, so a developer without an app of their own has no dead page to copy the code
//! from and no race with its 60-second lifetime.
//!
//! It renders its own query string only (escaped by askama), is never cached, and sends no
//! `Referer`.  Who may register it as a redirect URI is decided at registration
//! (`AuthService::check_own_redirect_uris`): a registrant with the sandbox powers only.

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;

use crate::server::App;
use crate::web::pages::render;
use crate::web::{field, form_pairs};

/// The longest value shown: a code this server issues is 43 characters.
const MAX_SHOWN: usize = 200;
/// The longest code put into a shell line.
const MAX_CODE: usize = 128;

/// What the authorization server sent to the callback.
enum Answer {
    /// A code, and the shell lines to redeem it (none when the code could not be ours).
    Code { code: String, state: Option<String>, shell: Option<Shell> },
    /// An error response.
    Error { error: String, description: Option<String>, state: Option<String> },
    /// Neither: someone opened the page by hand.
    Nothing,
}

/// The lines a developer pastes into their shell.
struct Shell {
    code_line: String,
    token_command: String,
}

#[derive(Template)]
#[template(path = "dev_callback.html")]
struct CallbackPage {
    answer: Answer,
    redirect_uri: String,
}

/// `GET /dev/callback`.
pub(crate) async fn callback(State(app): State<App>, RawQuery(query): RawQuery) -> Response {
    let pairs = form_pairs(query.unwrap_or_default().as_bytes());
    let shown = |name: &str| field(&pairs, name).map(|v| v.chars().take(MAX_SHOWN).collect::<String>());
    let answer = match (shown("code"), shown("error")) {
        (_, Some(error)) => Answer::Error { error, description: shown("error_description"), state: shown("state") },
        (Some(code), None) => Answer::Code { shell: shell_lines(&code), code, state: shown("state") },
        (None, None) => Answer::Nothing,
    };
    let redirect_uri = callback_uri(&app.auth.config.public_url);
    let mut page = render(StatusCode::OK, &CallbackPage { answer, redirect_uri });
    // `render` already sets both; they are this page's whole point, so they are stated here.
    page.headers_mut().insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    page.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    page
}

/// `{public_url}/dev/callback`.
pub(crate) fn callback_uri(public_url: &str) -> String {
    format!("{}/dev/callback", public_url.trim_end_matches('/'))
}

/// The shell lines for `code`, only when it is made of the characters of a code this server
/// issues (base64url): the page renders whatever query it is given, and a crafted link must
/// not hand a developer a command line to paste.
fn shell_lines(code: &str) -> Option<Shell> {
    let safe = !code.is_empty()
        && code.len() <= MAX_CODE
        && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    safe.then(|| Shell {
        code_line: format!("CODE={code}"),
        token_command: format!(
            "curl -s \"$BASE/auth/token\" -d grant_type=authorization_code \\\n  -d code={code} \\\n  -d redirect_uri=\"$BASE/dev/callback\" \\\n  -d client_id=\"$CLIENT_ID\" -d code_verifier=\"$VERIFIER\""
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_code_of_our_alphabet_gets_shell_lines() {
        let shell = shell_lines("Abc-_09").unwrap();
        assert_eq!(shell.code_line, "CODE=Abc-_09");
        assert!(shell.token_command.contains("\n  -d code=Abc-_09 \\\n"));
        for bad in ["", "a;rm -rf ~", "a$(id)", "a`id`", "a b", "a'b", "a\"b", "a\nb", &"a".repeat(129)] {
            assert!(shell_lines(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn the_callback_uri_is_under_the_public_url() {
        assert_eq!(callback_uri("http://127.0.0.1:8080"), "http://127.0.0.1:8080/dev/callback");
        assert_eq!(callback_uri("https://x.example/"), "https://x.example/dev/callback");
    }
}
