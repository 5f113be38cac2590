//! Issue 7, the smaller holes (finding 7) and operations: attack tests for each defence —
//! spoofed app names, introspection across apps, transport-security headers, request ids and
//! logs, the health check, graceful shutdown.

use reqwest::header::{LOCATION, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::*;

const PATIENT_SCOPE: &str = "launch/patient openid fhirUser offline_access patient/*.rs";

/// A right-to-left override: "Evil " then "ppA dooG" displayed backwards.
const SPOOFED_NAME: &str = "Evil \u{202E}ppA dooG";

#[tokio::test]
async fn registration_refuses_bidi_and_control_characters_in_client_name() {
    let s = Server::start().await;
    for name in [SPOOFED_NAME, "a\u{2067}b", "a\u{200F}b", "a\u{061C}b", "tab\there", "bell\u{7}"] {
        let r = s
            .http
            .post(format!("{}/auth/register", s.base))
            .json(&json!({"client_name": name, "redirect_uris": [s.redirect_uri()], "token_endpoint_auth_method": "none"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{name:?}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "invalid_client_metadata", "{name:?}");
        assert!(body["error_description"].as_str().unwrap().contains("client_name"), "{body}");
    }
    // The app gallery's form goes through the same rule.
    let mut b = Browser::new(&s);
    b.get(&format!("{}/apps", s.base)).await;
    let csrf = b.csrf();
    let redirect = s.redirect_uri();
    let form = [
        ("csrf", csrf.as_str()),
        ("client_name", SPOOFED_NAME),
        ("client_type", "public"),
        ("redirect_uris", redirect.as_str()),
    ];
    b.post("/apps", &form).await;
    assert!(b.page.contains("bidirectional-control"), "{}", b.page);
    assert!(!b.page.contains("client_id"), "nothing registered");
    // Plain names in any script are fine.
    let reg = s.register(json!({"client_name": "أطفال 儿童 Growth", "redirect_uris": [s.redirect_uri()]})).await;
    assert_eq!(reg["client_name"], "أطفال 儿童 Growth");
    s.stop().await;
}

#[tokio::test]
async fn registration_by_the_command_line_refuses_bidi_characters() {
    let dir = std::env::temp_dir().join(format!("smartlaunch-cli-{}", random(6)));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_smartlaunch"))
        .args(["clients", "add", "--name", SPOOFED_NAME, "--redirect-uri", "http://127.0.0.1:9/cb", "--data"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bidirectional-control"), "{stderr}");
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn an_apps_access_token_introspects_only_tokens_of_its_own_grant() {
    let s = Server::start().await;
    let (app_a, app_b) = (s.public_app().await, s.public_app().await);
    let (resource_server, secret) = s.confidential_app("client_secret_basic").await;
    let (code, verifier) = launch(&s, &app_a, PATIENT_SCOPE, "patient", None).await;
    let a = redeem(&s, &app_a, &code, &verifier).await;
    let (code, verifier) = launch(&s, &app_b, PATIENT_SCOPE, "patient", None).await;
    let b = redeem(&s, &app_b, &code, &verifier).await;
    let url = format!("{}/auth/introspect", s.base);
    let by_bearer = |caller: &Value, token: &Value| {
        let (caller, token) = (caller["access_token"].as_str().unwrap(), token.as_str().unwrap().to_owned());
        s.http.post(&url).bearer_auth(caller).form(&[("token", token)]).send()
    };
    for other in [&b["access_token"], &b["refresh_token"]] {
        let i: Value = by_bearer(&a, other).await.unwrap().json().await.unwrap();
        assert_eq!(i, json!({"active": false}), "another app's token is not described");
    }
    for own in [&a["access_token"], &a["refresh_token"]] {
        let i: Value = by_bearer(&a, own).await.unwrap().json().await.unwrap();
        assert_eq!(i["active"], true, "its own grant");
        assert_eq!(i["client_id"], app_a);
    }
    // A confidential client (a resource server) may introspect any token.
    for any in [&b["access_token"], &b["refresh_token"]] {
        let token = any.as_str().unwrap();
        let r = s.http.post(&url).basic_auth(&resource_server, Some(&secret)).form(&[("token", token)]).send();
        let i: Value = r.await.unwrap().json().await.unwrap();
        assert_eq!(i["active"], true);
        assert_eq!(i["client_id"], app_b);
    }
    s.stop().await;
}

/// The server's plain-http address (the public URL may say https).
fn bound(s: &Server) -> String {
    format!("http://{}", s.running.as_ref().unwrap().addr)
}

#[tokio::test]
async fn behind_an_https_public_url_every_response_has_hsts_and_every_cookie_is_secure() {
    let s = Server::start_configured(|c| c.public_url = Some("https://sandbox.example".into())).await;
    let base = bound(&s);
    // The sign-in pages set a CSRF cookie; signing in sets the session cookie.
    let mut cookies = Vec::new();
    for path in ["/account", "/ehr", "/portal", "/apps", "/healthz", "/fhir/metadata", "/nowhere"] {
        let r = s.http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000", "{path}");
        cookies.extend(r.headers().get_all(SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_owned()));
    }
    let page = s.http.get(format!("{base}/account")).send().await.unwrap();
    let csrf_cookie = page.headers()[SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_owned();
    let csrf = attr_after(&page.text().await.unwrap(), "name=\"csrf\" value=\"").unwrap();
    let r = s
        .http
        .post(format!("{base}/account/signin"))
        .header("cookie", csrf_cookie)
        .form(&[("csrf", csrf.as_str()), ("username", "patient"), ("password", "patient")])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    cookies.extend(r.headers().get_all(SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_owned()));
    assert!(cookies.iter().any(|c| c.starts_with("smartlaunch_csrf=")), "{cookies:?}");
    assert!(cookies.iter().any(|c| c.starts_with("smartlaunch_session=")), "{cookies:?}");
    for c in &cookies {
        assert_eq!(c.matches("; Secure").count(), 1, "Secure, once: {c}");
    }
    s.stop().await;

    // Over plain http there is no HSTS (browsers ignore it there anyway).
    let s = Server::start().await;
    let r = s.http.get(format!("{}/account", s.base)).send().await.unwrap();
    assert!(r.headers().get("strict-transport-security").is_none());
    assert!(!r.headers()[SET_COOKIE].to_str().unwrap().contains("Secure"));
    s.stop().await;
}

#[tokio::test]
async fn flow_redirects_carrying_codes_send_no_referrer_and_nothing_is_sniffed() {
    let s = Server::start().await;
    let client = s.public_app().await;
    // A first launch signs the browser in and remembers the consent.
    let verifier = random(32);
    let mut browser = Browser::new(&s);
    let params = s.authorize_params(&client, PATIENT_SCOPE, &verifier);
    let mut landing = browser.get(&s.authorize_url(&params)).await;
    while let Landing::Page(_) = landing {
        landing = if browser.is_sign_in() {
            browser.sign_in("patient", "patient").await
        } else if browser.is_consent() {
            browser.consent(true, None).await
        } else {
            panic!("unexpected page: {}", browser.page)
        };
    }
    // Now /auth/authorize answers with a redirect that carries the code.
    let session = format!("smartlaunch_session={}", browser.cookie.clone().unwrap());
    let r = s.http.get(s.authorize_url(&params)).header("cookie", &session).send().await.unwrap();
    assert!(r.status().is_redirection());
    assert!(r.headers()[LOCATION].to_str().unwrap().contains("code="), "{:?}", r.headers());
    assert_eq!(r.headers()["referrer-policy"], "no-referrer");
    // The error redirect and the redirect to the flow pages too.
    let mut bad = params.clone();
    bad.retain(|(k, _)| k != "code_challenge_method");
    let r = s.http.get(s.authorize_url(&bad)).send().await.unwrap();
    assert!(r.status().is_redirection() && r.headers()[LOCATION].to_str().unwrap().contains("error="));
    assert_eq!(r.headers()["referrer-policy"], "no-referrer");
    let r = s.http.get(s.authorize_url(&params)).send().await.unwrap();
    assert!(r.headers()[LOCATION].to_str().unwrap().contains("/auth/flow/"));
    assert_eq!(r.headers()["referrer-policy"], "no-referrer");
    // No MIME sniffing on any response: JSON, OAuth errors, FHIR, 404s.
    let token_error = s.http.post(format!("{}/auth/token", s.base)).form(&[("grant_type", "x")]).send();
    let responses = [
        s.http.get(format!("{}/fhir/metadata", s.base)).send().await.unwrap(),
        s.http.get(format!("{}/.well-known/jwks.json", s.base)).send().await.unwrap(),
        token_error.await.unwrap(),
        s.http.get(format!("{}/fhir/Patient/pat-001", s.base)).send().await.unwrap(),
        s.http.get(format!("{}/nowhere", s.base)).send().await.unwrap(),
        s.http.get(format!("{}/healthz", s.base)).send().await.unwrap(),
    ];
    for r in responses {
        assert_eq!(r.headers()["x-content-type-options"], "nosniff", "{}", r.url());
    }
    s.stop().await;
}

#[tokio::test]
async fn every_response_carries_a_request_id_of_our_own() {
    let s = Server::start().await;
    let mut ids = std::collections::HashSet::new();
    for path in ["/healthz", "/fhir/metadata", "/nowhere"] {
        let r = s
            .http
            .get(format!("{}{path}", s.base))
            .header("x-request-id", "forged-by-the-client")
            .send()
            .await
            .unwrap();
        let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_eq!(id.len(), 36, "a UUID, not the client's: {id}");
        assert!(ids.insert(id), "unique");
    }
    s.stop().await;
}

#[tokio::test]
async fn healthz_answers_ok_while_the_database_answers_and_503_when_it_does_not() {
    let s = Server::start().await;
    let r = s.http.get(format!("{}/healthz", s.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let backend = if s.database_url.is_some() { "postgresql" } else { "sqlite" };
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"status": "ok", "database": {"backend": backend, "reachable": true}})
    );
    s.running.as_ref().unwrap().close_database().await;
    let r = s.http.get(format!("{}/healthz", s.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = r.json::<Value>().await.unwrap();
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["database"], json!({"backend": backend, "reachable": false}));
    s.stop().await;
}

/// Removes ANSI colour sequences from log output.
fn plain(log: &str) -> String {
    let mut out = String::new();
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test]
async fn sigterm_finishes_the_request_in_flight_and_exits_0_and_the_log_holds_no_query() {
    use std::io::{BufRead, Read, Write};
    let dir = std::env::temp_dir().join(format!("smartlaunch-term-{}", random(6)));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_smartlaunch"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&dir)
        .env("RUST_LOG", "smartlaunch=info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Collect stdout on a thread; learn the address from the banner.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    let addr = loop {
        let line = rx.recv_timeout(std::time::Duration::from_secs(60)).expect("the server starts");
        log.push(line.clone());
        if let Some(rest) = line.split("(listening on ").nth(1) {
            break rest.trim_end_matches(')').to_owned();
        }
    };
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let secret = "code-SECRET-in-the-query";
    http.get(format!("http://{addr}/auth/authorize?code={secret}&launch={secret}")).send().await.unwrap();

    // A registration whose body is still arriving when SIGTERM comes.
    let body = json!({"client_name": "Slow", "redirect_uris": ["http://127.0.0.1:9/cb"], "token_endpoint_auth_method": "none"})
        .to_string();
    let (head, tail) = body.split_at(body.len() / 2);
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        stream,
        "POST /auth/register HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{head}",
        body.len()
    )
    .unwrap();
    stream.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    // SAFETY: sends a signal to the child we spawned.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    std::thread::sleep(std::time::Duration::from_millis(500));
    stream.write_all(tail.as_bytes()).unwrap();
    let mut response = String::new();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 201"), "the request in flight completes: {response}");

    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(15), "the server exits within its grace period");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    reader.join().unwrap();
    log.extend(rx.try_iter());
    let log = plain(&log.join("\n"));
    assert!(log.contains("SIGTERM"), "{log}");
    assert!(log.contains("path=/auth/authorize") && log.contains("status=201"), "{log}");
    assert!(log.contains("method=POST") && log.contains("latency_ms="), "{log}");
    assert!(!log.contains(secret), "queries are never logged: {log}");
    std::fs::remove_dir_all(dir).ok();
}

/// Review (issue 10): `DATABASE_URL=` set by mistake (empty) on a node meant for a shared
/// PostgreSQL database used to start it on a SQLite database of its own, silently.  It is
/// refused; unset, the server runs on SQLite, and the banner says which database it runs on.
#[test]
fn an_empty_database_url_is_refused_and_the_banner_names_the_database() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    if crate::ON_POSTGRES {
        return; // About the command line only: once is enough.
    }
    let dir = std::env::temp_dir().join(format!("smartlaunch-empty-url-{}", random(6)));
    let serve = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_smartlaunch"));
        command.args(["serve", "--listen", "127.0.0.1:0", "--data"]).arg(&dir);
        command.env_remove("SMARTLAUNCH_KEY_ENCRYPTION_KEY").stdout(Stdio::piped()).stderr(Stdio::piped());
        command
    };
    let mut refused = serve().env("DATABASE_URL", "").spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while refused.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            refused.kill().unwrap();
            panic!("a server started with an empty DATABASE_URL");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = refused.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("set but empty"), "{stderr}");

    let mut server = serve().env_remove("DATABASE_URL").spawn().unwrap();
    let stdout = std::io::BufReader::new(server.stdout.take().unwrap());
    let banner = stdout.lines().map_while(Result::ok).take(40).find(|line| line.contains("Database"));
    server.kill().unwrap();
    server.wait().unwrap();
    let expected = format!("SQLite at {}", dir.join("smartlaunch.db").display());
    assert!(banner.as_deref().is_some_and(|line| line.contains(&expected)), "{banner:?}");
    std::fs::remove_dir_all(&dir).ok();
}
