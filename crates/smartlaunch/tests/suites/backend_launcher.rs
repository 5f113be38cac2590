//! The developer launcher's "backend service" type and the launch inspector for backend token
//! requests (issue 8, item 6), over real HTTP: the launcher form, the result card, simulated
//! errors as the client sees them, and every check of each token request in the inspector.

use reqwest::StatusCode;
use serde_json::{json, Value};
use smartlaunch_auth::client_assertion::JWT_BEARER;
use smartlaunch_auth::signing_key::{KeyKind, SigningKey};

use super::ehr_launch::{create_launch, ehr_app};
use crate::support::*;

const NOTE: &str = "simulated by the developer launcher";

/// What the launcher's backend-service card shows.
struct Card {
    client_id: String,
    token_url: String,
    fhir_base: String,
    scopes: String,
    command: String,
    inspect: String,
}

/// Posts the launcher form with the backend-service type and `fields`; the browser is left on
/// the answer.
async fn post_backend(b: &mut Browser<'_>, fields: &[(&str, &str)]) {
    b.get(&format!("{}/launcher", b.server.base)).await;
    let csrf = b.csrf();
    let mut form = vec![("csrf", csrf.as_str()), ("launch_type", "backend")];
    form.extend_from_slice(fields);
    b.post("/launcher", &form).await;
}

/// The card of a backend-service session made with `fields`.
async fn session(s: &Server, fields: &[(&str, &str)]) -> Card {
    let mut b = Browser::new(s);
    post_backend(&mut b, fields).await;
    card(&b.page)
}

fn card(page: &str) -> Card {
    let value = |id: &str| attr_after(page, &format!("id=\"{id}\" value=\"")).unwrap_or_else(|| panic!("{id}: {page}"));
    let command = page
        .split("id=\"token_command\"")
        .nth(1)
        .and_then(|rest| rest.split_once('>'))
        .and_then(|(_, rest)| rest.split_once("</textarea>"))
        .map(|(text, _)| html_unescape(text))
        .unwrap_or_else(|| panic!("no command: {page}"));
    let inspect = attr_after(page, "<a href=\"/launcher/inspect/").expect("an inspector link");
    Card {
        client_id: value("issued_client_id"),
        token_url: value("token_url"),
        fhir_base: value("backend_fhir_base"),
        scopes: value("allowed_scopes"),
        command,
        inspect: format!("/launcher/inspect/{inspect}"),
    }
}

/// The options of the `<select>` with this id.
fn select(page: &str, id: &str) -> String {
    let start = page.find(&format!("<select id=\"{id}\"")).unwrap_or_else(|| panic!("no select {id}"));
    let len = page[start..].find("</select>").unwrap();
    page[start..start + len].to_owned()
}

async fn inspector(s: &Server, path: &str) -> String {
    html_unescape(&s.http.get(format!("{}{path}", s.base)).send().await.unwrap().text().await.unwrap())
}

async fn oauth_error(r: reqwest::Response) -> (StatusCode, String, String) {
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    (status, body["error"].as_str().unwrap().to_owned(), body["error_description"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn the_backend_type_starts_a_session_for_a_registered_service_and_shows_what_it_needs() {
    let s = Server::start().await;
    let c = s.backend_client("system/*.rs").await;
    ehr_app(&s, "Chart App").await;
    let mut b = Browser::new(&s);
    b.get(&format!("{}/launcher", s.base)).await;
    assert!(b.page.contains("name=\"launch_type\" value=\"backend\""), "the type is offered");
    let backends = select(&b.page, "backend_client_id");
    assert!(backends.contains(&format!("value=\"{}\"", c.client_id)) && !backends.contains("Chart App"));
    assert!(!select(&b.page, "client_id").contains(&c.client_id), "a backend service is not an app to launch");
    // Each type offers only its own simulated errors.
    let app_errors = select(&b.page, "simulate_error");
    let backend_errors = select(&b.page, "backend_simulate_error");
    assert!(app_errors.contains("fhir_expired_token") && !app_errors.contains("backend_invalid_scope"));
    assert!(
        backend_errors.contains("backend_invalid_client_assertion") && backend_errors.contains("backend_invalid_scope")
    );
    assert!(!backend_errors.contains("token_invalid_code") && !backend_errors.contains("authorize_"));

    post_backend(&mut b, &[("backend_client_id", &c.client_id)]).await;
    let card = card(&b.page);
    assert_eq!(card.client_id, c.client_id);
    assert_eq!(card.token_url, s.token_url());
    assert_eq!(card.fhir_base, s.fhir);
    assert_eq!(card.scopes, "system/*.rs");
    assert_eq!(
        card.command,
        format!(
            "smartlaunch token --client-id {} --key <your key.pem> --token-url {} --scope 'system/*.rs'",
            c.client_id,
            s.token_url()
        )
    );
    assert!(b.page.contains("name=\"launch_type\" value=\"backend\" checked"), "the form keeps the type");

    // The service's requests land in the inspector: the token, and the FHIR calls made with it.
    let token = c.token_response("system/Patient.rs").await;
    let access = token["access_token"].as_str().unwrap();
    assert_eq!(s.read("Patient?_count=2", access).await.status(), StatusCode::OK);
    let page = inspector(&s, &card.inspect).await;
    for expected in [
        "POST /auth/token",
        "200: tokens issued",
        "client_credentials",
        "private_key_jwt",
        "granted scope",
        "system/Patient.rs",
        "Client authentication checks",
        "kid `",
        "in the registered jwks",
        "✓ passed",
        "GET Patient?_count=2",
        "No spec problems found so far.",
    ] {
        assert!(page.contains(expected), "the inspector shows “{expected}”:\n{page}");
    }
    assert!(!page.contains(access), "the token is never shown");
    assert!(!page.contains("✗ failed") && !page.contains("not checked (an earlier"), "every check passed");
    s.stop().await;
}

#[tokio::test]
async fn an_ad_hoc_backend_service_is_registered_from_its_pasted_jwks() {
    let s = Server::start_with(Some("reg-secret")).await;
    let key = SigningKey::generate(KeyKind::Es384).unwrap();
    let jwks = key.public_jwks().to_string();
    let scope = "system/Patient.rs system/Observation.rs";
    let fields = [("jwks", jwks.as_str()), ("backend_scope", scope), ("backend_name", "Nightly export")];
    // Registering here is registration: the registration token guards it.
    let mut b = Browser::new(&s);
    post_backend(&mut b, &fields).await;
    assert!(
        b.page.contains("role=\"alert\">registration on this server requires an initial access token"),
        "{}",
        b.page
    );
    let mut with_token = fields.to_vec();
    with_token.push(("registration_token", "reg-secret"));
    let mut b = Browser::new(&s);
    post_backend(&mut b, &with_token).await;
    let card = card(&b.page);
    assert_eq!(card.scopes, scope);
    // The form now offers the service as registered: posting it again makes no second client.
    assert!(select(&b.page, "backend_client_id").contains(&format!("value=\"{}\" selected", card.client_id)));
    assert!(!html_unescape(&b.page).contains("\"kty\":\"EC\""), "the pasted JWK Set is not kept: {}", b.page);
    assert!(card.command.ends_with(&format!("--scope '{scope}'")), "{}", card.command);
    let c = BackendClient { server: &s, client_id: card.client_id.clone(), key, registration: Value::Null };
    assert_eq!(c.token_response("system/Observation.rs").await["scope"], "system/Observation.rs");
    let page = inspector(&s, &card.inspect).await;
    assert!(page.contains("200: tokens issued") && page.contains("system/Observation.rs"), "{page}");
    // Now it is a registered backend service the launcher offers, by its name.
    b.get(&format!("{}/launcher", s.base)).await;
    assert!(select(&b.page, "backend_client_id").contains(&format!("Nightly export ({})", card.client_id)));

    // Mistakes are explained on the page.
    for (fields, expect) in [
        (vec![("jwks", "not json"), ("backend_scope", "system/*.rs")], "the JWK Set is not JSON"),
        (vec![("jwks", jwks.as_str())], "give the system/ scopes"),
        (vec![("jwks", jwks.as_str()), ("backend_scope", "patient/*.rs")], "system/"),
        (vec![], "choose a registered backend service"),
    ] {
        let mut fields = fields;
        fields.push(("registration_token", "reg-secret"));
        post_backend(&mut b, &fields).await;
        assert!(b.page.contains("role=\"alert\">") && b.page.contains(expect), "{expect}: {}", b.page);
    }
    s.stop().await;
}

#[tokio::test]
async fn simulated_backend_errors_reach_the_client_as_real_ones_and_only_for_backend_services() {
    let s = Server::start().await;
    let c = s.backend_client("system/*.rs").await;
    let card = session(
        &s,
        &[("backend_client_id", &c.client_id), ("backend_simulate_error", "backend_invalid_client_assertion")],
    )
    .await;
    for _ in 0..2 {
        let (status, error, description) = oauth_error(c.token_with(&c.assertion(), "system/Patient.rs").await).await;
        assert_eq!((status, error.as_str()), (StatusCode::UNAUTHORIZED, "invalid_client"));
        assert!(description.contains("client assertion") && description.contains(NOTE), "{description}");
    }
    let page = inspector(&s, &card.inspect).await;
    assert!(page.contains("401 invalid_client: the client assertion is not valid (simulated"), "{page}");
    assert_eq!(page.matches("<span class=\"badge simulated\"").count(), 2, "each simulated answer is marked: {page}");
    assert!(!page.contains("✗ failed"), "the assertion itself passed every check");

    // A new session replaces the old one: now the scope fails.
    session(&s, &[("backend_client_id", &c.client_id), ("backend_simulate_error", "backend_invalid_scope")]).await;
    let (status, error, description) = oauth_error(c.token_with(&c.assertion(), "system/Patient.rs").await).await;
    assert_eq!((status, error.as_str()), (StatusCode::BAD_REQUEST, "invalid_scope"));
    assert!(description.contains(NOTE), "{description}");
    session(&s, &[("backend_client_id", &c.client_id)]).await;
    c.token("system/Patient.rs").await;

    // An app launch's error is refused for a backend service, and a backend one for an app.
    let mut b = Browser::new(&s);
    post_backend(&mut b, &[("backend_client_id", &c.client_id), ("backend_simulate_error", "fhir_expired_token")])
        .await;
    assert!(
        b.page.contains("role=\"alert\">the simulated error `fhir_expired_token` is for app launches"),
        "{}",
        b.page
    );
    let app = ehr_app(&s, "App").await;
    post_backend(&mut b, &[("backend_client_id", &app)]).await;
    assert!(b.page.contains("role=\"alert\">“App” is not a backend service"), "{}", b.page);
    let body = json!({"client_id": app, "patient": "pat-001", "options": {"simulate_error": "backend_invalid_scope"}});
    let r = create_launch(&s, body, None).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let e: Value = r.json().await.unwrap();
    assert!(e["error_description"].as_str().unwrap().contains("is for a backend-service session"), "{e}");
    s.stop().await;
}

#[tokio::test]
async fn the_inspector_lists_every_check_and_flags_a_reused_jti_a_long_exp_and_a_wrong_aud() {
    let s = Server::start().await;
    let c = s.backend_client("system/*.rs").await;
    let other = s.backend_client("system/*.rs").await;
    let card = session(&s, &[("backend_client_id", &c.client_id)]).await;
    let scope = "system/Patient.rs";
    let now = unix_now();
    let good = c.assertion();
    assert_eq!(c.token_with(&good, scope).await.status(), StatusCode::OK);
    let (status, _, replay) = oauth_error(c.token_with(&good, scope).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{replay}");
    // 320 s: accepted within the clock-skew tolerance, but more than the spec's 5 minutes.
    let long = c.assertion_with(json!({"exp": now + 320}), &[]);
    assert_eq!(c.token_with(&long, scope).await.status(), StatusCode::OK);
    let too_long = c.assertion_with(json!({"exp": now + 3600}), &[]);
    assert_eq!(c.token_with(&too_long, scope).await.status(), StatusCode::UNAUTHORIZED);
    let wrong_aud = c.assertion_with(json!({"aud": s.fhir}), &[]);
    assert_eq!(c.token_with(&wrong_aud, scope).await.status(), StatusCode::UNAUTHORIZED);
    // An unknown kid: the key is not found, the signature never checked; the claims still are.
    let unknown_kid = c.assertion_with(json!({}), &[("kid", json!("made-up"))]);
    assert_eq!(c.token_with(&unknown_kid, scope).await.status(), StatusCode::UNAUTHORIZED);
    // A header that fails (alg none) is recorded too: the claims name the client.
    let b64 = |v: Value| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, v.to_string());
    let claims =
        json!({"iss": c.client_id, "sub": c.client_id, "aud": s.token_url(), "exp": now + 60, "jti": random(8)});
    let none = format!("{}.{}.", b64(json!({"alg": "none", "kid": c.key.kid()})), b64(claims));
    assert_eq!(c.token_with(&none, scope).await.status(), StatusCode::UNAUTHORIZED);
    // Another client's requests are not this session's.
    other.token(scope).await;
    let r = s
        .token(&[
            ("grant_type", "client_credentials"),
            ("scope", scope),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", &other.assertion()),
        ])
        .await;
    assert_eq!(r.status(), StatusCode::OK);

    let page = inspector(&s, &card.inspect).await;
    assert_eq!(page.matches("POST /auth/token").count(), 7, "every request of this client, none of another's:\n{page}");
    assert!(!page.contains(&other.client_id));
    // `exp` was set from the test's clock: a second may tick before the server reads it.
    let ahead = |text: &str, seconds: i64| {
        [seconds, seconds - 1].iter().any(|s| page.contains(&text.replace("{}", &s.to_string())))
    };
    assert!(ahead("long exp: exp is {} s ahead", 320), "the inspector flags the 320 s exp:\n{page}");
    assert!(ahead("long exp: exp is {} s ahead", 3600), "the inspector flags the 3600 s exp:\n{page}");
    assert!(
        ahead("✗ failed: `exp` is {} s ahead; an assertion may be valid for at most 300 s", 3600),
        "the check fails the 3600 s exp:\n{page}"
    );
    for expected in [
        "jti reused: this assertion's jti was used before",
        "used before",
        "accepted only within the 30 s clock-skew tolerance",
        "(refused)",
        &format!("wrong aud: “{}” is not this server's token URL", s.fhir),
        &format!("token_endpoint of smart-configuration: {}", s.token_url()),
        "✗ failed: no registered key has the kid `made-up`",
        "not checked (an earlier check failed)",
        "alg `none` is refused",
        "spec problems found",
    ] {
        assert!(page.contains(expected), "the inspector shows “{expected}”:\n{page}");
    }
    for claim in [
        "client_assertion_type",
        "alg",
        "kid",
        "key",
        "signature",
        "iss",
        "sub",
        "aud",
        "exp",
        "nbf",
        "jti",
        "jti replay",
    ] {
        assert!(page.contains(&format!("<th scope=\"row\"><code>{claim}</code></th>")), "{claim} is listed");
    }
    assert!(page.contains(" s ahead)"), "exp shows how far ahead it is");
    s.stop().await;
}

#[tokio::test]
async fn the_backend_type_needs_the_admin_token_when_the_sandbox_is_locked() {
    let s = Server::start_configured(|settings| settings.admin_token = Some("admin-secret".into())).await;
    let key = SigningKey::generate(KeyKind::Es384).unwrap();
    let jwks = key.public_jwks().to_string();
    let fields = [("jwks", jwks.as_str()), ("backend_scope", "system/*.rs")];
    let mut b = Browser::new(&s);
    post_backend(&mut b, &fields).await;
    assert!(b.page.contains("role=\"alert\">this server requires its admin token"), "{}", b.page);
    assert!(!b.page.contains("id=\"token_url\""), "no session");
    let mut wrong = fields.to_vec();
    wrong.push(("admin_token", "wrong"));
    post_backend(&mut b, &wrong).await;
    assert!(b.page.contains("role=\"alert\">the admin token is not valid"), "{}", b.page);
    let mut authorized = fields.to_vec();
    authorized.push(("admin_token", "admin-secret"));
    post_backend(&mut b, &authorized).await;
    let card = card(&b.page);
    assert!(!b.page.contains("Recent launches"), "with an admin token, sessions are not listed to anyone");
    let c = BackendClient { server: &s, client_id: card.client_id.clone(), key, registration: Value::Null };
    c.token("system/Patient.rs").await;
    assert!(inspector(&s, &card.inspect).await.contains("200: tokens issued"));
    s.stop().await;
}

#[tokio::test]
async fn a_session_made_at_one_node_is_seen_by_another_once_its_cached_client_expires() {
    let a = Server::start().await;
    let c = a.backend_client("system/*.rs").await;
    let dir = a.dir.clone();
    let b = Server::start_configured(|s| s.data_dir = dir).await;
    let at_b = |c: &BackendClient<'_>| {
        let assertion = c.assertion_with(json!({"aud": b.token_url()}), &[]);
        let form = [
            ("grant_type", "client_credentials".to_owned()),
            ("scope", "system/Patient.rs".to_owned()),
            ("client_assertion_type", JWT_BEARER.to_owned()),
            ("client_assertion", assertion),
        ];
        b.http.post(b.token_url()).form(&form).send()
    };
    // Node b caches the client (no session yet).
    assert_eq!(at_b(&c).await.unwrap().status(), StatusCode::OK);
    let card =
        session(&a, &[("backend_client_id", &c.client_id), ("backend_simulate_error", "backend_invalid_scope")]).await;
    // Node a sees its session at once.
    assert_eq!(c.token_with(&c.assertion(), "system/Patient.rs").await.status(), StatusCode::BAD_REQUEST);
    // Node b, once its cached entry (2 s) has expired.
    b.clock.advance(3);
    assert_eq!(at_b(&c).await.unwrap().status(), StatusCode::BAD_REQUEST);
    let page = inspector(&b, &card.inspect).await;
    assert!(page.contains("invalid_scope") && page.contains(&b.token_url()), "b records under the same trace:\n{page}");
    b.stop().await;
    a.stop().await;
}
