//! The EHR launch (issue 4; checklist items 19, 20, 26, 63, 66, 75, 95): launches created by
//! the launch API, the EHR simulator and the patient portal, and what may not be done with them.

use reqwest::header::{CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::*;

pub(super) const LAUNCH_URI: &str = "http://127.0.0.1:9/app/launch";
pub(super) const EHR_SCOPE: &str = "launch openid fhirUser patient/*.rs";

pub(super) async fn ehr_app(s: &Server, name: &str) -> String {
    let reg = s
        .register(json!({
            "client_name": name,
            "redirect_uris": [s.redirect_uri()],
            "initiate_login_uri": LAUNCH_URI,
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "none",
        }))
        .await;
    reg["client_id"].as_str().unwrap().to_owned()
}

pub(super) async fn create_launch(s: &Server, body: Value, admin: Option<&str>) -> reqwest::Response {
    let mut r = s.http.post(format!("{}/api/launches", s.base)).json(&body);
    if let Some(token) = admin {
        r = r.bearer_auth(token);
    }
    r.send().await.unwrap()
}

/// The `launch` value of a launch URL, after checking its `iss`.
pub(super) fn launch_of(s: &Server, launch_url: &str) -> String {
    assert!(launch_url.starts_with(&format!("{LAUNCH_URI}?")), "{launch_url}");
    let q = query_of(launch_url);
    assert_eq!(q["iss"], s.fhir, "iss is the FHIR base (item 19)");
    q["launch"].clone()
}

/// What the app sees after authorizing with `launch` in `browser`: the redirect's query, and
/// the PKCE verifier.  Consents to everything offered; stops at any other page.
async fn authorize_with_launch(
    s: &Server,
    browser: &mut Browser<'_>,
    client: &str,
    launch: &str,
    scope: &str,
) -> (std::collections::HashMap<String, String>, String) {
    let verifier = random(32);
    let mut params = s.authorize_params(client, scope, &verifier);
    params.push(("launch".into(), launch.into()));
    let mut landing = browser.get(&s.authorize_url(&params)).await;
    loop {
        match landing {
            Landing::App(url) => return (query_of(&url), verifier),
            Landing::Page(_) if browser.is_consent() => landing = browser.consent(true, None).await,
            // A launch for a user, opened where that user has no session: they sign in.
            Landing::Page(_) if browser.is_sign_in() => landing = browser.sign_in("clinician", "clinician").await,
            Landing::Page(p) => panic!("unexpected page {p}: {}", browser.page),
        }
    }
}

async fn token_for(
    s: &Server,
    client: &str,
    app_query: &std::collections::HashMap<String, String>,
    verifier: &str,
) -> Value {
    let code = app_query.get("code").unwrap_or_else(|| panic!("no code: {app_query:?}"));
    redeem(s, client, code, verifier).await
}

#[tokio::test]
async fn launch_api_launches_deliver_their_context_to_the_app() {
    let s = Server::start().await;
    let client = ehr_app(&s, "Questionnaire App").await;
    let encounter = "enc-001-1";
    let r = create_launch(
        &s,
        json!({
            "client_id": client, "patient": "pat-001", "encounter": encounter, "user": "Practitioner/pract-001",
            "fhirContext": [{"reference": "Questionnaire/phq-9", "role": "https://example.org/role/to-complete"}],
            "intent": "complete-questionnaire", "tenant": "north-clinic"
        }),
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.unwrap();
    let launch = launch_of(&s, created["launch_url"].as_str().unwrap());
    assert_eq!(created["launch"], launch.as_str());
    assert!(created["expires_at"].as_str().unwrap().ends_with('Z'));

    // The launch names its user, who signs in (this browser has no session); no picker: the
    // launch carries the context.
    let mut browser = Browser::new(&s);
    let (query, verifier) = authorize_with_launch(&s, &mut browser, &client, &launch, EHR_SCOPE).await;
    assert_eq!(query["state"], "state-0123456789abcdef");
    let token = token_for(&s, &client, &query, &verifier).await;
    assert_eq!(token["patient"], "pat-001");
    assert_eq!(token["encounter"], encounter);
    assert_eq!(
        token["fhirContext"],
        json!([{"reference": "Questionnaire/phq-9", "role": "https://example.org/role/to-complete"}])
    );
    assert_eq!(token["intent"], "complete-questionnaire");
    assert_eq!(token["tenant"], "north-clinic");
    assert_eq!(token["need_patient_banner"], true, "the API's default: the app is not framed by us");
    assert!(token["scope"].as_str().unwrap().split(' ').any(|s| s == "launch"));
    assert_eq!(
        jwt_claims(token["id_token"].as_str().unwrap())["fhirUser"],
        format!("{}/Practitioner/pract-001", s.fhir)
    );
    let style: Value =
        s.http.get(token["smart_style_url"].as_str().unwrap()).send().await.unwrap().json().await.unwrap();
    assert!(style["color_background"].as_str().unwrap().starts_with('#'));

    // Introspection echoes every launch-context parameter (item 95).
    let access = token["access_token"].as_str().unwrap();
    let r = s
        .http
        .post(format!("{}/auth/introspect", s.base))
        .bearer_auth(access)
        .form(&[("token", access)])
        .send()
        .await
        .unwrap();
    let introspected: Value = r.json().await.unwrap();
    assert_eq!(introspected["active"], true);
    for key in ["patient", "encounter", "fhirContext", "intent", "tenant", "need_patient_banner", "smart_style_url"] {
        assert_eq!(introspected[key], token[key], "{key}");
    }
    // Bad launch requests say what is wrong.
    let bad = [
        (json!({"client_id": "nobody"}), "no registered app"),
        (json!({"client_id": client, "patient": "pat-404"}), "does not exist"),
        (json!({"client_id": client, "patient": "pat-002", "encounter": encounter}), "not one of"),
        (json!({"client_id": client, "encounter": encounter}), "needs its patient"),
        (json!({"client_id": client, "fhirContext": [{"reference": "Patient/pat-002"}]}), "goes in `patient`"),
        (
            json!({"client_id": client, "fhirContext": [{"type": "Questionnaire"}]}),
            "reference, canonical or identifier",
        ),
        (json!({"client_id": client, "user": "nobody"}), "no user"),
        (json!({"client_id": client, "colour": "red"}), "unknown field"),
    ];
    for (body, why) in bad {
        let r = create_launch(&s, body.clone(), None).await;
        assert_eq!(r.status(), 400, "{body}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"], "invalid_request");
        assert!(e["error_description"].as_str().unwrap().contains(why), "{body}: {e}");
    }
    let no_launch_url = s.public_app().await;
    let r = create_launch(&s, json!({"client_id": no_launch_url}), None).await;
    assert!(r.text().await.unwrap().contains("no launch URL"));
    let r = s.http.post(format!("{}/api/launches", s.base)).body("{}").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    s.stop().await;
}

#[tokio::test]
async fn a_launch_serves_one_client_once_before_it_expires_and_only_its_user() {
    let s = Server::start().await;
    let client = ehr_app(&s, "EHR App").await;
    let other_client = ehr_app(&s, "Other App").await;
    let new_launch = |user: Option<&'static str>| {
        let (s, client) = (&s, client.clone());
        async move {
            let mut body = json!({"client_id": client, "patient": "pat-001"});
            if let Some(u) = user {
                body["user"] = json!(u);
            }
            let created: Value = create_launch(s, body, None).await.json().await.unwrap();
            launch_of(s, created["launch_url"].as_str().unwrap())
        }
    };
    let refused = |query: &std::collections::HashMap<String, String>, why: &str| {
        assert_eq!(query.get("error").map(String::as_str), Some("invalid_request"), "{query:?}");
        assert!(query["error_description"].contains(why), "{query:?}");
        assert_eq!(query["state"], "state-0123456789abcdef");
    };

    // Another client cannot use it, and trying does not use it up (item 26).
    let launch = new_launch(Some("clinician")).await;
    let (q, _) = authorize_with_launch(&s, &mut Browser::new(&s), &other_client, &launch, EHR_SCOPE).await;
    refused(&q, &format!("made for the client_id “{client}”"));
    let (q, verifier) = authorize_with_launch(&s, &mut Browser::new(&s), &client, &launch, EHR_SCOPE).await;
    assert_eq!(token_for(&s, &client, &q, &verifier).await["patient"], "pat-001");
    // Once only.
    let (q, _) = authorize_with_launch(&s, &mut Browser::new(&s), &client, &launch, EHR_SCOPE).await;
    refused(&q, "already used");
    // Unknown, or without the launch scope.
    let (q, _) = authorize_with_launch(&s, &mut Browser::new(&s), &client, "made-up", EHR_SCOPE).await;
    refused(&q, "names no launch");
    let launch = new_launch(Some("clinician")).await;
    let mut params = s.authorize_params(&client, "openid patient/*.rs", &random(32));
    params.push(("launch".into(), launch.clone()));
    let Landing::App(url) = Browser::new(&s).get(&s.authorize_url(&params)).await else { panic!("no redirect") };
    assert_eq!(query_of(&url)["error"], "invalid_scope");
    // Not after five minutes.
    s.clock.advance(301);
    let (q, _) = authorize_with_launch(&s, &mut Browser::new(&s), &client, &launch, EHR_SCOPE).await;
    refused(&q, "expired");

    // A browser signed in as someone else cannot use the clinician's launch.
    let launch = new_launch(Some("clinician")).await;
    let mut patient_browser = Browser::new(&s);
    let (code, _) = launch_in(&s, &mut patient_browser, &s.public_app().await, "patient").await;
    assert!(!code.is_empty() && patient_browser.cookie.is_some());
    let (q, _) = authorize_with_launch(&s, &mut patient_browser, &client, &launch, EHR_SCOPE).await;
    refused(&q, "another user's");

    // A launch without a user: the user signs in, and gets the launch's patient.
    let launch = new_launch(None).await;
    let verifier = random(32);
    let mut params = s.authorize_params(&client, EHR_SCOPE, &verifier);
    params.push(("launch".into(), launch));
    let mut b = Browser::new(&s);
    b.get(&s.authorize_url(&params)).await;
    assert!(b.is_sign_in());
    let Landing::App(url) = b.sign_in("clinician", "clinician").await else {
        panic!("the clinician's consent is remembered: {}", b.page)
    };
    assert_eq!(token_for(&s, &client, &query_of(&url), &verifier).await["patient"], "pat-001");
    s.stop().await;
}

/// Signs `user` in through a standalone launch of `client` in `browser` (leaving the session).
async fn launch_in(s: &Server, browser: &mut Browser<'_>, client: &str, user: &str) -> (String, String) {
    let verifier = random(32);
    let mut landing = browser.get(&s.authorize_url(&s.authorize_params(client, "openid", &verifier))).await;
    loop {
        match landing {
            Landing::App(url) => return (query_of(&url)["code"].clone(), verifier),
            Landing::Page(_) if browser.is_sign_in() => landing = browser.sign_in(user, user).await,
            Landing::Page(_) if browser.is_consent() => landing = browser.consent(true, None).await,
            Landing::Page(p) => panic!("unexpected page {p}"),
        }
    }
}

#[tokio::test]
async fn the_launch_api_wants_the_admin_token_when_one_is_set() {
    let s = Server::start_configured(|settings| settings.admin_token = Some("admin-secret".into())).await;
    let client = ehr_app(&s, "App").await;
    let body = json!({"client_id": client, "patient": "pat-001"});
    let r = create_launch(&s, body.clone(), None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers()[WWW_AUTHENTICATE].to_str().unwrap().starts_with("Bearer"));
    assert_eq!(create_launch(&s, body.clone(), Some("wrong")).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(create_launch(&s, body, Some("admin-secret")).await.status(), StatusCode::CREATED);
    let launcher = s.http.get(format!("{}/launcher", s.base)).send().await.unwrap().text().await.unwrap();
    assert!(!launcher.contains("Recent launches"), "with an admin token, launches are not listed to anyone");
    s.stop().await;
}

/// Signs in at an EHR or portal sign-in form (`/ehr` or `/portal`).
pub(super) async fn desk_sign_in(s: &Server, browser: &mut Browser<'_>, desk: &str, user: &str) {
    browser.get(&format!("{}{desk}", s.base)).await;
    assert!(browser.page.contains("<h1>Sign in</h1>"), "{}", browser.page);
    let csrf = browser.csrf();
    browser.post(&format!("{desk}/signin"), &[("csrf", &csrf), ("username", user), ("password", user)]).await;
}

/// Posts a chart's launch form; returns the launch URL the EHR sends the frame to.
pub(super) async fn launch_from(s: &Server, browser: &Browser<'_>, action: &str, form: &[(&str, &str)]) -> String {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::COOKIE,
        format!("smartlaunch_session={}", browser.cookie.clone().unwrap()).parse().unwrap(),
    );
    let r = s.http.post(format!("{}{action}", s.base)).headers(headers).form(form).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{}", r.text().await.unwrap());
    r.headers()[LOCATION].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn ehr_and_portal_launch_apps_with_their_context_and_online_access_ends_with_the_ehr_session() {
    let s = Server::start().await;
    let client = ehr_app(&s, "Chart App").await;
    let mut ehr = Browser::new(&s);
    desk_sign_in(&s, &mut ehr, "/ehr", "clinician").await;
    assert!(ehr.page.contains("<h1>Patients</h1>"), "{}", ehr.page);
    assert!(ehr.page.contains("href=\"/ehr/patients/pat-001\""));
    ehr.get(&format!("{}/ehr/patients/pat-001?encounter=enc-001-2", s.base)).await;
    assert!(ehr.page.contains("Launch Chart App"), "a control named Launch <client_name>");
    assert!(ehr.page.contains("aria-label=\"Patient banner\""));
    assert!(ehr.page.contains("<iframe class=\"app\" name=\"app-frame\""));
    assert!(ehr.page.contains("name=\"encounter\" value=\"enc-001-2\""), "the chosen encounter goes with the launch");
    let csrf = attr_after(&ehr.page, "name=\"csrf\" value=\"").unwrap();
    let form = [("csrf", csrf.as_str()), ("client_id", &client), ("patient", "pat-001"), ("encounter", "enc-001-2")];
    let launch = launch_of(&s, &launch_from(&s, &ehr, "/ehr/launch", &form).await);
    let scope = "launch openid fhirUser patient/*.rs online_access";
    let (q, verifier) = authorize_with_launch(&s, &mut ehr, &client, &launch, scope).await;
    let token = token_for(&s, &client, &q, &verifier).await;
    assert_eq!((token["patient"].as_str(), token["encounter"].as_str()), (Some("pat-001"), Some("enc-001-2")));
    assert_eq!(token["need_patient_banner"], false, "framed inside the EHR");
    assert_eq!(
        jwt_claims(token["id_token"].as_str().unwrap())["fhirUser"],
        format!("{}/Practitioner/pract-001", s.fhir)
    );
    let refresh = token["refresh_token"].as_str().expect("online_access gives a refresh token").to_owned();
    let r = s.token(&[("grant_type", "refresh_token"), ("refresh_token", &refresh), ("client_id", &client)]).await;
    assert_eq!(r.status(), 200);
    let refreshed: Value = r.json().await.unwrap();
    assert_eq!(
        (refreshed["patient"].as_str(), refreshed["need_patient_banner"].as_bool()),
        (Some("pat-001"), Some(false))
    );
    let refresh = refreshed["refresh_token"].as_str().unwrap().to_owned();
    // In a new window the app shows its own patient banner.
    let window = [("csrf", csrf.as_str()), ("client_id", &client), ("patient", "pat-001"), ("window", "1")];
    let launch = launch_of(&s, &launch_from(&s, &ehr, "/ehr/launch", &window).await);
    let (q, verifier) = authorize_with_launch(&s, &mut ehr, &client, &launch, EHR_SCOPE).await;
    assert_eq!(token_for(&s, &client, &q, &verifier).await["need_patient_banner"], true);
    // A form with a forged CSRF token launches nothing.
    let forged = [("csrf", "forged"), ("client_id", client.as_str()), ("patient", "pat-001")];
    let r = s
        .http
        .post(format!("{}/ehr/launch", s.base))
        .header(reqwest::header::COOKIE, format!("smartlaunch_session={}", ehr.cookie.clone().unwrap()))
        .form(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Signing out of the EHR ends online_access (item 75).
    ehr.get(&format!("{}/ehr", s.base)).await;
    let csrf = attr_after(&ehr.page, "action=\"/auth/signout\"><input type=\"hidden\" name=\"csrf\" value=\"").unwrap();
    ehr.post("/auth/signout", &[("csrf", &csrf)]).await;
    let r = s.token(&[("grant_type", "refresh_token"), ("refresh_token", &refresh), ("client_id", &client)]).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("online_access ended"));

    // The portal: the patient's own chart, launching with their own context.
    let clinician_only = s
        .register(json!({"client_name": "Clinician Only", "redirect_uris": [s.redirect_uri()], "initiate_login_uri": LAUNCH_URI,
                         "token_endpoint_auth_method": "none", "scope": "launch openid user/*.rs"}))
        .await;
    assert!(clinician_only["client_id"].is_string());
    let mut portal = Browser::new(&s);
    desk_sign_in(&s, &mut portal, "/portal", "patient").await;
    assert!(portal.page.contains("Launch Chart App"), "{}", portal.page);
    assert!(!portal.page.contains("Launch Clinician Only"), "the portal shows patient-facing apps only");
    let csrf = attr_after(&portal.page, "name=\"csrf\" value=\"").unwrap();
    let launch_url =
        launch_from(&s, &portal, "/portal/launch", &[("csrf", &csrf), ("client_id", &client), ("patient", "pat-002")])
            .await;
    let (q, verifier) = authorize_with_launch(&s, &mut portal, &client, &launch_of(&s, &launch_url), EHR_SCOPE).await;
    let token = token_for(&s, &client, &q, &verifier).await;
    assert_eq!(token["patient"], "pat-001", "the portal launches with the patient's own record, whatever is posted");
    assert_eq!(jwt_claims(token["id_token"].as_str().unwrap())["fhirUser"], format!("{}/Patient/pat-001", s.fhir));
    // The EHR's launches are listed on the launcher, each with its inspector.
    let launcher = s.http.get(format!("{}/launcher", s.base)).send().await.unwrap().text().await.unwrap();
    assert!(launcher.contains("Recent launches") && launcher.contains("<td>Chart App</td>"));
    let inspect = launcher.split("href=\"/launcher/inspect/").nth(1).unwrap().split('"').next().unwrap();
    let page = s.http.get(format!("{}/launcher/inspect/{inspect}", s.base)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("GET /auth/authorize") && page.contains("200: tokens issued"), "{page}");
    // Each desk is for its own kind of user.
    portal.get(&format!("{}/ehr", s.base)).await;
    assert!(portal.page.contains("This is not your desk"));
    let r = s.http.get(format!("{}/ehr/patients/pat-001", s.base)).send().await.unwrap();
    assert!(r.text().await.unwrap().contains("<h1>Sign in</h1>"), "signed out: the sign-in form");
    let r = s.http.get(format!("{}/ehr/smart-style/v1.json", s.base)).send().await.unwrap();
    assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
    s.stop().await;
}

#[tokio::test]
async fn the_app_gallery_registers_apps_like_rfc_7591() {
    let s = Server::start_with(Some("gallery-token")).await;
    let mut b = Browser::new(&s);
    b.get(&format!("{}/apps", s.base)).await;
    assert!(b.page.contains("<h1>Registered apps</h1>") && b.page.contains("Registration token"));
    let csrf = b.csrf();
    let form = |token: &'static str, redirect: &'static str| {
        let csrf = csrf.clone();
        vec![
            ("csrf", csrf),
            ("client_name", "Gallery App".to_string()),
            ("client_type", "confidential".to_string()),
            ("redirect_uris", redirect.to_string()),
            ("initiate_login_uri", LAUNCH_URI.to_string()),
            ("scope", "launch openid patient/*.rs".to_string()),
            ("registration_token", token.to_string()),
        ]
    };
    post_form(&mut b, "/apps", form("wrong", "http://127.0.0.1:9/app/callback")).await;
    assert!(b.page.contains("role=\"alert\">the initial access token is not valid"), "{}", b.page);
    let csrf = b.csrf();
    let mut bad = form("gallery-token", "http://evil.example/cb");
    bad[0].1 = csrf;
    post_form(&mut b, "/apps", bad).await;
    assert!(b.page.contains("role=\"alert\""), "a non-local http redirect URI is refused");
    assert!(b.page.contains("value=\"Gallery App\""), "the form keeps what was typed");
    let csrf = b.csrf();
    let mut good = form("gallery-token", "http://127.0.0.1:9/app/callback");
    good[0].1 = csrf;
    post_form(&mut b, "/apps", good).await;
    assert!(b.page.contains("Gallery App is registered"), "{}", b.page);
    let client_id = b.page.split("<dt>client_id</dt><dd><code>").nth(1).unwrap().split('<').next().unwrap().to_owned();
    let secret = b.page.split("<dt>client_secret</dt><dd><code>").nth(1).unwrap().split('<').next().unwrap().to_owned();
    assert_eq!(client_id.len(), 32);
    assert!(secret.len() >= 32, "the secret is shown once");
    b.get(&format!("{}/apps", s.base)).await;
    assert!(b.page.contains(&client_id) && !b.page.contains(&secret), "listed; the secret never again");
    // The app is a real client: the launch API accepts it, and its secret authenticates.
    let created = create_launch(&s, json!({"client_id": client_id, "patient": "pat-001"}), None).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let r = s
        .http
        .post(format!("{}/auth/token", s.base))
        .basic_auth(&client_id, Some(&secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", "x"),
            ("redirect_uri", "http://127.0.0.1:9/app/callback"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant", "authenticated; only the code is wrong");
    // A post without the form's cookie registers nothing.
    let r = s
        .http
        .post(format!("{}/apps", s.base))
        .form(&[("csrf", "x"), ("client_name", "Forged"), ("redirect_uris", "http://127.0.0.1:9/cb")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    s.stop().await;
}

async fn post_form(b: &mut Browser<'_>, path: &str, form: Vec<(&'static str, String)>) {
    let borrowed: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    b.post(path, &borrowed).await;
}

#[tokio::test]
async fn each_simulated_error_happens_at_the_step_it_names() {
    let s = Server::start().await;
    let note = "simulated by the developer launcher";
    for name in [
        "authorize_invalid_client",
        "authorize_invalid_redirect_uri",
        "authorize_invalid_scope",
        "token_invalid_client_secret",
        "token_invalid_code",
        "token_invalid_scope",
        "token_expired_refresh_token",
        "fhir_invalid_token",
        "fhir_expired_token",
        "",
    ] {
        // A fresh app each time: skip_consent must skip a consent that was never given.
        let client = ehr_app(&s, "Error App").await;
        let mut options = json!({"skip_consent": true, "skip_sign_in": true});
        if !name.is_empty() {
            options["simulate_error"] = json!(name);
        }
        let body = json!({"client_id": client, "patient": "pat-001", "user": "clinician", "options": options});
        let created: Value = create_launch(&s, body, None).await.json().await.unwrap();
        let launch = launch_of(&s, created["launch_url"].as_str().unwrap());
        let verifier = random(32);
        let mut params = s.authorize_params(&client, "launch openid patient/*.rs offline_access", &verifier);
        params.push(("launch".into(), launch));
        let mut b = Browser::new(&s);
        let landing = b.get(&s.authorize_url(&params)).await;
        let url = match (name, landing) {
            ("authorize_invalid_client" | "authorize_invalid_redirect_uri", Landing::Page(_)) => {
                assert!(b.page.contains("is not registered") && b.page.contains(note), "{name}: {}", b.page);
                continue;
            }
            ("authorize_invalid_scope", Landing::App(url)) => {
                assert_eq!(query_of(&url)["error"], "invalid_scope");
                continue;
            }
            (_, Landing::App(url)) => url,
            (_, Landing::Page(p)) => panic!("{name}: no page may show with skip_consent: {p}"),
        };
        let code = query_of(&url)["code"].clone();
        let r = s
            .token(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &s.redirect_uri()),
                ("code_verifier", &verifier),
                ("client_id", &client),
            ])
            .await;
        let expected = match name {
            "token_invalid_client_secret" => Some((401, "invalid_client")),
            "token_invalid_code" => Some((400, "invalid_grant")),
            "token_invalid_scope" => Some((400, "invalid_scope")),
            _ => None,
        };
        if let Some((status, error)) = expected {
            assert_eq!(r.status(), status, "{name}");
            let e: Value = r.json().await.unwrap();
            assert_eq!(e["error"], error, "{name}");
            assert!(e["error_description"].as_str().unwrap().contains(note));
            continue;
        }
        assert_eq!(r.status(), 200, "{name}");
        let token: Value = r.json().await.unwrap();
        let refresh = token["refresh_token"].as_str().unwrap();
        let r = s.token(&[("grant_type", "refresh_token"), ("refresh_token", refresh), ("client_id", &client)]).await;
        assert_eq!(r.status() == 200, name != "token_expired_refresh_token", "{name}: refresh");
        let read = s.read("Patient/pat-001", token["access_token"].as_str().unwrap()).await;
        match name {
            "fhir_invalid_token" | "fhir_expired_token" => {
                assert_eq!(read.status(), 401, "{name}");
                let challenge = read.headers()[WWW_AUTHENTICATE].to_str().unwrap().to_owned();
                assert!(challenge.contains("invalid_token"), "{challenge}");
                let why = if name == "fhir_expired_token" { "expired" } else { "not valid" };
                assert!(read.text().await.unwrap().contains(why), "{name}");
            }
            _ => assert_eq!(read.status(), 200, "{name}"),
        }
    }
    let bad =
        create_launch(&s, json!({"client_id": ehr_app(&s, "X").await, "options": {"simulate_error": "boom"}}), None)
            .await;
    assert_eq!(bad.status(), 400);
    s.stop().await;
}

#[tokio::test]
async fn the_developer_launcher_creates_launches_with_options() {
    let s = Server::start().await;
    let client = ehr_app(&s, "Launcher App").await;
    let mut b = Browser::new(&s);
    b.get(&format!("{}/launcher", s.base)).await;
    assert!(b.page.contains("<h1>Developer launcher</h1>") && b.page.contains("Launcher App"));
    assert!(b.page.contains("At the FHIR API: expired access token"), "every simulated error is offered");
    let csrf = b.csrf();
    let form = vec![
        ("csrf", csrf.clone()),
        ("launch_type", "ehr".to_string()),
        ("client_id", client.clone()),
        ("user", "clinician".to_string()),
        ("patient", "pat-002".to_string()),
        ("encounter", "latest".to_string()),
        ("fhir_context", "Questionnaire/phq-9\nPlanDefinition/pd-1".to_string()),
        ("intent", "review".to_string()),
        ("skip_consent", "on".to_string()),
        ("simulate_error", String::new()),
    ];
    post_form(&mut b, "/launcher", form.clone()).await;
    let launch_url = attr_after(&b.page, "id=\"launch_url\" value=\"").unwrap_or_else(|| panic!("{}", b.page));
    // The form keeps its choices, to tweak and launch again.
    for kept in [
        "name=\"patient\" value=\"pat-002\"",
        "name=\"encounter\" value=\"latest\" checked",
        "name=\"skip_consent\" checked",
        "name=\"intent\" value=\"review\"",
        "PlanDefinition/pd-1</textarea>",
    ] {
        assert!(b.page.contains(kept), "{kept}");
    }
    assert!(b.page.contains(&format!("<option value=\"{client}\" selected>")));
    assert!(!b.page.contains("name=\"skip_sign_in\" checked") && !b.page.contains("value=\"none\" checked"));
    let verifier = random(32);
    let mut params = s.authorize_params(&client, EHR_SCOPE, &verifier);
    params.push(("launch".into(), launch_of(&s, &launch_url)));
    // Without "skip sign-in" the launch's user signs in (nobody else may); skip consent
    // then shows no further page.
    let mut fresh = Browser::new(&s);
    fresh.get(&s.authorize_url(&params)).await;
    assert!(fresh.is_sign_in(), "the launch's user signs in: {}", fresh.page);
    let Landing::App(url) = fresh.sign_in("clinician", "clinician").await else { panic!("skip consent: no page") };
    let token = token_for(&s, &client, &query_of(&url), &verifier).await;
    assert_eq!(token["patient"], "pat-002");
    assert!(token["encounter"].as_str().unwrap().starts_with("enc-002-"), "the most recent encounter");
    assert_eq!(
        token["fhirContext"],
        json!([{"reference": "Questionnaire/phq-9"}, {"reference": "PlanDefinition/pd-1"}])
    );
    assert_eq!(token["intent"], "review");

    // A launch URL and redirect URI that are not registered yet register a throwaway app.
    let csrf = b.csrf();
    let mut typed = form.clone();
    typed[0].1 = csrf;
    typed[2].1 = String::new();
    typed.push(("launch_uri", "http://127.0.0.1:9/other/launch".to_string()));
    typed.push(("redirect_uri", "http://127.0.0.1:9/other/callback".to_string()));
    post_form(&mut b, "/launcher", typed).await;
    let launch_url = attr_after(&b.page, "id=\"launch_url\" value=\"").unwrap_or_else(|| panic!("{}", b.page));
    assert!(launch_url.starts_with("http://127.0.0.1:9/other/launch?iss="));

    // Mistakes are explained on the page.
    let csrf = b.csrf();
    let mut portal_as_clinician = form;
    portal_as_clinician[0].1 = csrf;
    portal_as_clinician[1].1 = "portal".into();
    post_form(&mut b, "/launcher", portal_as_clinician).await;
    assert!(b.page.contains("role=\"alert\">a patient launch needs a patient user"), "{}", b.page);
    s.stop().await;
}

#[tokio::test]
async fn a_standalone_simulation_is_the_same_server_behind_its_own_fhir_base() {
    let s = Server::start().await;
    let client = ehr_app(&s, "Standalone App").await;
    let other = ehr_app(&s, "Other App").await;
    let (sim, b) = simulation(&s, &client, "pat-003").await;
    assert!(sim.starts_with(&format!("{}/sim/", s.base)) && sim.ends_with("/fhir"), "{sim}");
    let launch_url = attr_after(&b.page, "id=\"launch_url\" value=\"").unwrap();
    assert_eq!(query_of(&launch_url)["iss"], sim, "a standalone launch URL carries only iss");

    // Discovery works at the simulation's base; the app authorizes with aud = that base.
    let d: Value =
        s.http.get(format!("{sim}/.well-known/smart-configuration")).send().await.unwrap().json().await.unwrap();
    assert_eq!(d["authorization_endpoint"], format!("{}/auth/authorize", s.base));
    let authorize = |client: &str, verifier: &str| {
        let mut params = s.authorize_params(client, "launch/patient openid fhirUser patient/*.rs", verifier);
        params.retain(|(k, _)| k != "aud");
        params.push(("aud".into(), sim.clone()));
        s.authorize_url(&params)
    };
    let verifier = random(32);
    let Landing::App(url) = Browser::new(&s).get(&authorize(&client, &verifier)).await else {
        panic!("skip sign-in and skip consent: no page")
    };
    let token = token_for(&s, &client, &query_of(&url), &verifier).await;
    assert_eq!(token["patient"], "pat-003");
    let access = token["access_token"].as_str().unwrap();
    assert_eq!(jwt_claims(access)["aud"], sim);
    assert_eq!(jwt_claims(token["id_token"].as_str().unwrap())["fhirUser"], format!("{sim}/Practitioner/pract-001"));
    let r = s.http.get(format!("{sim}/Patient/pat-003")).bearer_auth(access).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let page: Value = s
        .http
        .get(format!("{sim}/Observation?patient=pat-003&_count=2"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let next =
        page["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next").unwrap()["url"].as_str().unwrap();
    assert!(next.starts_with(&format!("{sim}/Observation?")), "links stay on the simulation's base: {next}");
    assert_eq!(s.http.get(next).bearer_auth(access).send().await.unwrap().status(), 200);
    assert_eq!(s.read("Patient/pat-003", access).await.status(), 401, "the token is for the simulation's base only");

    // Only its app may use it: it vouches for its user.
    let Landing::App(url) = Browser::new(&s).get(&authorize(&other, &random(32))).await else { panic!("redirect") };
    assert!(query_of(&url)["error_description"].contains("another app"));
    let unknown = format!("{}/sim/nope/fhir", s.base);
    let mut params = s.authorize_params(&client, "openid", &random(32));
    params.retain(|(k, _)| k != "aud");
    params.push(("aud".into(), unknown));
    let Landing::App(url) = Browser::new(&s).get(&s.authorize_url(&params)).await else { panic!("redirect") };
    assert!(query_of(&url)["error_description"].contains("unknown or has expired"));
    s.stop().await;
}

#[tokio::test]
async fn the_inspector_shows_each_request_masks_secrets_and_flags_mistakes() {
    let s = Server::start().await;
    let client = ehr_app(&s, "Sloppy App").await;
    let body = json!({"client_id": client, "patient": "pat-001", "user": "clinician", "options": {"skip_consent": true, "skip_sign_in": true}});
    let created: Value = create_launch(&s, body, None).await.json().await.unwrap();
    let launch = launch_of(&s, created["launch_url"].as_str().unwrap());
    let inspect_url = created["inspect_url"].as_str().unwrap().to_owned();
    assert!(inspect_url.starts_with(&format!("{}/launcher/inspect/", s.base)));
    let scope = "launch openid patient/Patient.rs patient/Observation.rs offline_access";

    // A first try without PKCE and with a short state: refused, and flagged.
    let verifier = random(32);
    let mut sloppy = s.authorize_params(&client, scope, &verifier);
    sloppy.retain(|(k, _)| k != "code_challenge" && k != "code_challenge_method" && k != "state");
    sloppy.push(("state".into(), "abc".into()));
    sloppy.push(("launch".into(), launch.clone()));
    let Landing::App(url) = Browser::new(&s).get(&s.authorize_url(&sloppy)).await else { panic!("redirect") };
    assert_eq!(query_of(&url)["error"], "invalid_request");
    // Then properly: a code, tokens, a FHIR read, a refresh token sent twice, an expired token.
    let mut params = s.authorize_params(&client, scope, &verifier);
    params.push(("launch".into(), launch));
    let Landing::App(url) = Browser::new(&s).get(&s.authorize_url(&params)).await else { panic!("redirect") };
    let code = query_of(&url)["code"].clone();
    let token = redeem(&s, &client, &code, &verifier).await;
    let access = token["access_token"].as_str().unwrap().to_owned();
    let refresh = token["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(s.read("Patient/pat-001", &access).await.status(), 200);
    let form = [("grant_type", "refresh_token"), ("refresh_token", refresh.as_str()), ("client_id", client.as_str())];
    assert_eq!(s.token(&form).await.status(), 200);
    assert_eq!(s.token(&form).await.status(), 400, "reused");
    s.clock.advance(3601);
    assert_eq!(s.read("Patient/pat-001", &access).await.status(), 401);

    let page = s.http.get(&inspect_url).send().await.unwrap().text().await.unwrap();
    for expected in [
        "No PKCE",
        "state has ~12 bits",
        "redirect to the app with error=invalid_request",
        "redirect to the app with a code",
        "200: tokens issued",
        "GET Patient/pat-001",
        "200 OK",
        "A used refresh token was sent again",
        "An expired access token was used",
        "Scopes granted but never used",
        "patient/Observation.rs",
    ] {
        assert!(page.contains(expected), "the inspector shows “{expected}”:\n{page}");
    }
    for secret in [code.as_str(), verifier.as_str(), access.as_str(), refresh.as_str()] {
        assert!(!page.contains(secret), "secrets are masked");
    }
    assert!(!page.contains("<li><code>patient/Patient.rs</code>"), "a used scope is not flagged");
    let empty = s.http.get(format!("{}/launcher/inspect/unknown", s.base)).send().await.unwrap().text().await.unwrap();
    assert!(empty.contains("No requests yet"));
    s.stop().await;
}

#[tokio::test]
async fn a_simulation_with_several_patients_offers_only_those_in_the_picker() {
    let s = Server::start().await;
    let client = ehr_app(&s, "Picker App").await;
    let (sim, _) = simulation(&s, &client, "pat-002, pat-004").await;
    let verifier = random(32);
    let mut params = s.authorize_params(&client, "launch/patient openid patient/*.rs", &verifier);
    params.retain(|(k, _)| k != "aud");
    params.push(("aud".into(), sim));
    let mut browser = Browser::new(&s);
    browser.get(&s.authorize_url(&params)).await;
    assert!(browser.is_patient_picker(), "{}", browser.page);
    assert!(browser.page.contains("name=\"patient\" value=\"pat-002\"") && browser.page.contains("value=\"pat-004\""));
    assert!(!browser.page.contains("value=\"pat-001\""), "only the launch's patients");
    browser.pick_patient("pat-003").await;
    assert!(browser.page.contains("not one this launch offers"), "{}", browser.page);
    browser.get(&s.authorize_url(&params)).await;
    let Landing::App(url) = browser.pick_patient("pat-004").await else { panic!("{}", browser.page) };
    assert_eq!(token_for(&s, &client, &query_of(&url), &verifier).await["patient"], "pat-004");
    s.stop().await;
}

/// A provider standalone simulation from the launcher (skip sign-in, skip consent) for
/// `patients`: its FHIR base, and the browser left on the launcher's result page.
async fn simulation<'a>(s: &'a Server, client: &str, patients: &str) -> (String, Browser<'a>) {
    let mut b = Browser::new(s);
    b.get(&format!("{}/launcher", s.base)).await;
    let form = vec![
        ("csrf", b.csrf()),
        ("launch_type", "provider-standalone".to_string()),
        ("client_id", client.to_owned()),
        ("user", "clinician".to_string()),
        ("patient", patients.to_string()),
        ("encounter", "none".to_string()),
        ("skip_sign_in", "on".to_string()),
        ("skip_consent", "on".to_string()),
    ];
    post_form(&mut b, "/launcher", form).await;
    let sim = attr_after(&b.page, "id=\"fhir_base\" value=\"").unwrap_or_else(|| panic!("{}", b.page));
    (sim, b)
}

#[tokio::test]
async fn the_ehr_frame_grants_no_device_or_clipboard_access() {
    let s = Server::start().await;
    ehr_app(&s, "Chart App").await;
    let mut ehr = Browser::new(&s);
    desk_sign_in(&s, &mut ehr, "/ehr", "clinician").await;
    ehr.get(&format!("{}/ehr/patients/pat-001", s.base)).await;
    let frame = ehr.page.split("<iframe class=\"app\"").nth(1).unwrap().split('>').next().unwrap().to_owned();
    let allow = attr_after(&frame, "allow=\"").unwrap_or_default();
    for power in ["camera", "microphone", "geolocation", "clipboard-read", "clipboard-write", "display-capture", "usb"]
    {
        assert!(!allow.contains(power), "the frame must not delegate {power}: {frame}");
    }
    // Real apps still run: scripts, same-origin storage, forms and popups stay allowed.
    let sandbox = attr_after(&frame, "sandbox=\"").unwrap();
    for token in ["allow-scripts", "allow-same-origin", "allow-forms", "allow-popups"] {
        assert!(sandbox.split(' ').any(|t| t == token), "{sandbox}");
    }
    s.stop().await;
}

#[tokio::test]
async fn the_inspector_keeps_the_newest_500_requests_of_a_launch_and_pages_them() {
    let s = Server::start().await;
    let client = ehr_app(&s, "Busy App").await;
    let body = json!({"client_id": client, "patient": "pat-001", "user": "clinician", "options": {"skip_consent": true, "skip_sign_in": true}});
    let created: Value = create_launch(&s, body, None).await.json().await.unwrap();
    let launch = launch_of(&s, created["launch_url"].as_str().unwrap());
    let inspect_url = created["inspect_url"].as_str().unwrap().to_owned();
    let verifier = random(32);
    let mut params = s.authorize_params(&client, EHR_SCOPE, &verifier);
    params.push(("launch".into(), launch));
    let Landing::App(url) = Browser::new(&s).get(&s.authorize_url(&params)).await else { panic!("redirect") };
    let token = redeem(&s, &client, &query_of(&url)["code"], &verifier).await;
    let access = token["access_token"].as_str().unwrap().to_owned();
    // 3 (authorize, consent skipped, token) + 520 FHIR calls: the oldest 23 go.
    for i in 0..520 {
        assert_eq!(s.read(&format!("Patient/pat-001?n={i}"), &access).await.status(), 200);
    }
    // Read at once: the page sees every request made before it (the queue is flushed).
    let page = s.http.get(&inspect_url).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("23 earlier requests were dropped"), "{page}");
    assert!(page.contains("Requests 1–50 of 500"), "{page}");
    assert!(page.contains("GET Patient/pat-001?n=20<") && page.contains("GET Patient/pat-001?n=69<"), "{page}");
    assert!(!page.contains("n=19<") && !page.contains("n=70<"), "oldest first, 50 per page");
    let next = attr_after(&page, "rel=\"next\" href=\"").unwrap();
    assert!(next.ends_with("?page=2"), "{next}");
    let page2 = s.http.get(format!("{}{next}", s.base)).send().await.unwrap().text().await.unwrap();
    assert!(page2.contains("Requests 51–100 of 500") && page2.contains("n=70<") && page2.contains("rel=\"prev\""));
    let last = s.http.get(format!("{inspect_url}?page=99")).send().await.unwrap().text().await.unwrap();
    assert!(last.contains("Requests 451–500 of 500") && last.contains("n=519<") && !last.contains("rel=\"next\""));
    s.stop().await;
}
