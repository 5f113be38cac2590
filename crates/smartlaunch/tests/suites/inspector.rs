//! The inspector that teaches (issue 9, item 4): the summary header, simulated answers marked
//! and never held against the app, flags with fixes, the consent outcome, links from the
//! chart and `/account` (only for their user), and the per-client trace switch for launches
//! made by hand.

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::ehr_launch::{create_launch, desk_sign_in, ehr_app, launch_from, launch_of};
use crate::support::*;

const SCOPE: &str = "launch openid fhirUser patient/Patient.rs patient/Observation.rs offline_access";

async fn page(s: &Server, url: &str) -> String {
    s.http.get(url).send().await.unwrap().text().await.unwrap()
}

/// An EHR launch from the launch API for the clinician and pat-001: its inspector URL and the
/// authorization parameters (with `launch`) and verifier.
async fn api_launch(s: &Server, client: &str, options: Value) -> (String, Vec<(String, String)>, String) {
    let body = json!({
        "client_id": client, "patient": "pat-001", "user": "clinician", "options": options,
        "intent": "reconcile-medications",
        "fhirContext": [{"reference": "Questionnaire/phq-9", "role": "https://example.org/role/to-complete"}],
    });
    let r = create_launch(s, body, None).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.unwrap();
    let launch = launch_of(s, created["launch_url"].as_str().unwrap());
    let verifier = random(32);
    let mut params = s.authorize_params(client, SCOPE, &verifier);
    params.push(("launch".into(), launch));
    (created["inspect_url"].as_str().unwrap().to_owned(), params, verifier)
}

#[tokio::test]
async fn the_summary_shows_the_app_user_patient_options_kind_context_and_consent() {
    let s = Server::start().await;
    let client = ehr_app(&s, "Summary App").await;
    let (inspect, params, verifier) = api_launch(&s, &client, json!({"skip_sign_in": true})).await;
    let mut b = Browser::new(&s);
    b.get(&s.authorize_url(&params)).await;
    assert!(b.is_consent(), "{}", b.page);
    let Landing::App(url) = b.consent(true, Some(&["launch", "openid", "patient/Patient.rs"])).await else {
        panic!("{}", b.page)
    };
    let token = redeem(&s, &client, &query_of(&url)["code"], &verifier).await;
    assert_eq!(s.read("Patient/pat-001", token["access_token"].as_str().unwrap()).await.status(), 200);
    let page = page(&s, &inspect).await;
    for expected in [
        "<h2 id=\"summary-title\">Summary</h2>",
        "Summary App",
        &client,
        "<dt>Client type</dt><dd>public</dd>",
        "<dt>Launch kind</dt><dd>EHR launch, single use</dd>",
        "(clinician)",
        "<dt>Patient</dt><dd><code>pat-001</code></dd>",
        "<dt>Options</dt><dd>skip sign-in</dd>",
        "approved 3 of 6 requested scopes: launch openid patient/Patient.rs",
        "<dt>Granted scope</dt><dd><code>launch openid patient/Patient.rs</code></dd>",
        "<dt>patient</dt><dd><code>pat-001</code></dd>",
        "Questionnaire/phq-9 (role https://example.org/role/to-complete)",
        "<dt>intent</dt><dd><code>reconcile-medications</code></dd>",
        "<dt>need_patient_banner</dt>",
        "<dt>refresh_token</dt><dd>none</dd>",
        "<dt>id_token</dt><dd>issued</dd>",
        "redirect to the app with a code",
    ] {
        assert!(page.contains(expected), "the inspector shows “{expected}”:\n{page}");
    }
    for secret in [token["access_token"].as_str().unwrap(), token["id_token"].as_str().unwrap()] {
        assert!(!page.contains(secret), "no token value is recorded");
    }
    // The same scopes again: the remembered consent skips the page, and the inspector says so.
    let (inspect, mut params, _) = api_launch(&s, &client, json!({"skip_sign_in": true})).await;
    for (k, v) in params.iter_mut() {
        if k == "scope" {
            *v = "launch openid patient/Patient.rs".into();
        }
    }
    let Landing::App(_) = Browser::new(&s).get(&s.authorize_url(&params)).await else { panic!("no page") };
    let again = self::page(&s, &inspect).await;
    assert!(again.contains("consent-outcome\">not asked: the user approved these scopes for this app before"));
    assert!(!again.contains("→ then"), "a consent not asked settles no answer: {again}");
    s.stop().await;
}

#[tokio::test]
async fn after_a_deny_the_consent_outcome_is_denied() {
    let s = Server::start().await;
    let client = ehr_app(&s, "Denied App").await;
    let (inspect, params, _) = api_launch(&s, &client, json!({"skip_sign_in": true})).await;
    let mut b = Browser::new(&s);
    b.get(&s.authorize_url(&params)).await;
    let Landing::App(url) = b.consent(false, None).await else { panic!("{}", b.page) };
    assert_eq!(query_of(&url)["error"], "access_denied");
    let page = page(&s, &inspect).await;
    assert!(page.contains("<dd class=\"consent-outcome\">denied</dd>"), "{page}");
    assert!(page.contains("denied: redirect to the app with error=access_denied"), "{page}");
    assert!(page.contains("the consent page → then denied (see Consent below)"), "{page}");
    let last_answer = page.rsplit("<td>Consent</td>").next().unwrap();
    assert!(!last_answer.contains("the consent page"), "the last answer is the decision: {last_answer}");
    s.stop().await;
}

#[tokio::test]
async fn simulated_fhir_refusals_are_marked_and_never_blame_the_app() {
    let s = Server::start().await;
    let client = ehr_app(&s, "Simulated App").await;
    let options = json!({"skip_sign_in": true, "skip_consent": true, "simulate_error": "fhir_expired_token"});
    let (inspect, params, verifier) = api_launch(&s, &client, options).await;
    let Landing::App(url) = Browser::new(&s).get(&s.authorize_url(&params)).await else { panic!("redirect") };
    let token = redeem(&s, &client, &query_of(&url)["code"], &verifier).await;
    assert_eq!(s.read("Patient/pat-001", token["access_token"].as_str().unwrap()).await.status(), 401);
    let page = page(&s, &inspect).await;
    assert!(page.contains("401 Unauthorized <span class=\"badge simulated\""), "{page}");
    assert!(page.contains("simulated error: At the FHIR API: expired access token"), "{page}");
    assert!(!page.contains("Scopes granted but never used"), "a simulated refusal is not the app's fault: {page}");
    assert!(!page.contains("An expired access token was used"), "{page}");
    s.stop().await;
}

#[tokio::test]
async fn a_refresh_token_sent_by_another_client_is_flagged_with_its_fix() {
    let s = Server::start().await;
    let client = ehr_app(&s, "Refreshing App").await;
    let other = ehr_app(&s, "Other App").await;
    let (inspect, params, verifier) =
        api_launch(&s, &client, json!({"skip_sign_in": true, "skip_consent": true})).await;
    let Landing::App(url) = Browser::new(&s).get(&s.authorize_url(&params)).await else { panic!("redirect") };
    let token = redeem(&s, &client, &query_of(&url)["code"], &verifier).await;
    let refresh = token["refresh_token"].as_str().unwrap();
    let form = [("grant_type", "refresh_token"), ("refresh_token", refresh), ("client_id", other.as_str())];
    assert_eq!(s.token(&form).await.status(), 400);
    let page = page(&s, &inspect).await;
    assert!(
        page.contains(&format!("The refresh token was sent by “{other}”, but it was issued to “{client}”")),
        "{page}"
    );
    assert!(page.contains("<strong>Fix:</strong> A refresh token works only for the client it was issued to"));
    assert!(!page.contains(refresh));
    s.stop().await;
}

/// Posts the trace switch form of `/launcher/trace` for `client`.
async fn switch(s: &Server, client: &str, minutes: &str) -> StatusCode {
    let mut b = Browser::new(s);
    b.get(&format!("{}/launcher/trace", s.base)).await;
    let csrf = b.csrf();
    b.post_status("/launcher/trace", &[("csrf", &csrf), ("client_id", client), ("minutes", minutes)]).await
}

async fn hand_traces(s: &Server) -> Vec<String> {
    let page = page(s, &format!("{}/launcher/trace", s.base)).await;
    page.split("href=\"/launcher/inspect/").skip(1).map(|r| r.split('"').next().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn the_trace_switch_traces_hand_made_launches_while_it_is_on() {
    let s = Server::start().await;
    let client = s.public_app().await;
    // Off: a hand-made launch is not traced.
    let (code, verifier) = launch(&s, &client, "openid patient/*.rs", "patient", None).await;
    redeem(&s, &client, &code, &verifier).await;
    assert!(hand_traces(&s).await.is_empty());

    // The form wants its CSRF token.
    let r =
        s.http.post(format!("{}/launcher/trace", s.base)).form(&[("client_id", client.as_str()), ("minutes", "60")]);
    assert_eq!(r.send().await.unwrap().status(), StatusCode::BAD_REQUEST);
    assert_eq!(switch(&s, &client, "100000").await, StatusCode::BAD_REQUEST, "bounded");
    assert_eq!(switch(&s, "nobody", "60").await, StatusCode::BAD_REQUEST);
    assert_eq!(switch(&s, &client, "60").await, StatusCode::SEE_OTHER);
    assert!(page(&s, &format!("{}/launcher/trace", s.base)).await.contains("<strong>on</strong> until"));

    // On: a sloppy hand-made standalone launch is traced, authorize to FHIR call.
    let verifier = random(32);
    let mut params = s.authorize_params(&client, "launch openid patient/Patient.rs patient/Obsrvation.rs", &verifier);
    params.retain(|(k, _)| k != "aud");
    params.push(("aud".into(), format!("{}/", s.fhir)));
    let mut b = Browser::new(&s);
    let mut landing = b.get(&s.authorize_url(&params)).await;
    let url = loop {
        match landing {
            Landing::App(url) => break url,
            Landing::Page(_) if b.is_sign_in() => landing = b.sign_in("patient", "patient").await,
            Landing::Page(_) if b.is_consent() => landing = b.consent(true, None).await,
            Landing::Page(p) => panic!("{p}: {}", b.page),
        }
    };
    let token = redeem(&s, &client, &query_of(&url)["code"], &verifier).await;
    assert_eq!(s.read("Patient/pat-001", token["access_token"].as_str().unwrap()).await.status(), 200);
    let traces = hand_traces(&s).await;
    assert_eq!(traces.len(), 1, "one traced launch");
    let inspect = page(&s, &format!("{}/launcher/inspect/{}", s.base, traces[0])).await;
    for expected in [
        "made by hand (traced by the trace switch)",
        "GET /auth/authorize",
        "200: tokens issued",
        "GET Patient/pat-001",
        "differs from the FHIR base",
        "The `launch` scope in a standalone launch",
        "“Obsrvation”, which is not a FHIR R4 resource type",
        "<strong>Fix:</strong>",
    ] {
        assert!(inspect.contains(expected), "“{expected}”:\n{inspect}");
    }
    let launcher = page(&s, &format!("{}/launcher", s.base)).await;
    assert!(launcher.contains(&format!("/launcher/inspect/{}", traces[0])), "listed among the launcher's launches");

    // Off again, and expired: not traced.
    assert_eq!(switch(&s, &client, "off").await, StatusCode::SEE_OTHER);
    let (code, verifier) = launch(&s, &client, "openid patient/*.rs", "patient", None).await;
    redeem(&s, &client, &code, &verifier).await;
    assert_eq!(hand_traces(&s).await.len(), 1);
    assert_eq!(switch(&s, &client, "15").await, StatusCode::SEE_OTHER);
    s.clock.advance(15 * 60 + 1);
    let (code, verifier) = launch(&s, &client, "openid patient/*.rs", "patient", None).await;
    redeem(&s, &client, &code, &verifier).await;
    assert_eq!(hand_traces(&s).await.len(), 1, "the switch expired");
    s.stop().await;
}

#[tokio::test]
async fn the_trace_switch_needs_the_admin_token_on_a_locked_server() {
    let s = Server::start_configured(|c| c.admin_token = Some("admin-secret".into())).await;
    let client = s.public_app().await;
    assert_eq!(switch(&s, &client, "60").await, StatusCode::BAD_REQUEST, "no token: refused");
    let mut b = Browser::new(&s);
    b.get(&format!("{}/launcher/trace", s.base)).await;
    assert!(b.page.contains("name=\"admin_token\""));
    let csrf = b.csrf();
    let form = [("csrf", csrf.as_str()), ("client_id", client.as_str()), ("minutes", "60"), ("admin_token", "wrong")];
    assert_eq!(b.post_status("/launcher/trace", &form).await, StatusCode::BAD_REQUEST);
    let form =
        [("csrf", csrf.as_str()), ("client_id", client.as_str()), ("minutes", "60"), ("admin_token", "admin-secret")];
    assert_eq!(b.post_status("/launcher/trace", &form).await, StatusCode::SEE_OTHER);
    s.stop().await;
}

#[tokio::test]
async fn the_chart_and_account_link_to_the_inspector_only_for_their_user() {
    let s = Server::start().await;
    let client = ehr_app(&s, "Chart App").await;
    let mut clinician = Browser::new(&s);
    desk_sign_in(&s, &mut clinician, "/ehr", "clinician").await;
    clinician.get(&format!("{}/ehr/patients/pat-001", s.base)).await;
    let csrf = clinician.csrf();
    let launch_url =
        launch_from(&s, &clinician, "/ehr/launch", &[("csrf", &csrf), ("client_id", &client), ("patient", "pat-001")])
            .await;
    let launch = launch_of(&s, &launch_url);
    clinician.get(&format!("{}/ehr/patients/pat-001", s.base)).await;
    assert!(clinician.page.contains("Your launches from this chart"), "{}", clinician.page);
    let trace = clinician.page.split("href=\"/launcher/inspect/").nth(1).unwrap().split('"').next().unwrap().to_owned();

    // The clinician approves it; /account links to the inspector.
    let verifier = random(32);
    let mut params = s.authorize_params(&client, "launch openid patient/*.rs", &verifier);
    params.push(("launch".into(), launch));
    let landing = clinician.get(&s.authorize_url(&params)).await;
    let Landing::App(_) = (if clinician.is_consent() { clinician.consent(true, None).await } else { landing }) else {
        panic!("{}", clinician.page)
    };
    clinician.get(&format!("{}/account", s.base)).await;
    assert!(clinician.page.contains(&format!("href=\"/launcher/inspect/{trace}\"")), "{}", clinician.page);

    // Another user sees neither.
    let mut patient = Browser::new(&s);
    desk_sign_in(&s, &mut patient, "/portal", "patient").await;
    patient.get(&format!("{}/portal", s.base)).await;
    assert!(!patient.page.contains(&trace) && !patient.page.contains("Your launches from this chart"));
    patient.get(&format!("{}/account", s.base)).await;
    assert!(!patient.page.contains(&trace));
    s.stop().await;
}

#[tokio::test]
async fn simulated_answers_at_authorize_token_and_refresh_are_marked_simulated() {
    let s = Server::start().await;
    let client = ehr_app(&s, "Simulating App").await;
    let options = |e: &str| json!({"skip_sign_in": true, "skip_consent": true, "simulate_error": e});
    // Authorize: invalid_scope back to the app.
    let (inspect, params, _) = api_launch(&s, &client, options("authorize_invalid_scope")).await;
    let Landing::App(url) = Browser::new(&s).get(&s.authorize_url(&params)).await else { panic!("redirect") };
    assert_eq!(query_of(&url)["error"], "invalid_scope");
    let body = page(&s, &inspect).await;
    assert!(body.contains("(simulated by the developer launcher) <span class=\"badge simulated\""), "{body}");
    // Token: the code is refused.
    let (inspect, params, verifier) = api_launch(&s, &client, options("token_invalid_code")).await;
    let Landing::App(url) = Browser::new(&s).get(&s.authorize_url(&params)).await else { panic!("redirect") };
    let code = query_of(&url)["code"].clone();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", &s.redirect_uri()),
        ("code_verifier", &verifier),
        ("client_id", &client),
    ];
    assert_eq!(s.token(&form).await.status(), 400);
    let body = page(&s, &inspect).await;
    assert_eq!(body.matches("<span class=\"badge simulated\"").count(), 1, "only the token answer: {body}");
    // Refresh: the refresh token has "expired".
    let (inspect, params, verifier) = api_launch(&s, &client, options("token_expired_refresh_token")).await;
    let Landing::App(url) = Browser::new(&s).get(&s.authorize_url(&params)).await else { panic!("redirect") };
    let token = redeem(&s, &client, &query_of(&url)["code"], &verifier).await;
    let refresh = token["refresh_token"].as_str().unwrap();
    let form = [("grant_type", "refresh_token"), ("refresh_token", refresh), ("client_id", client.as_str())];
    assert_eq!(s.token(&form).await.status(), 400);
    let body = page(&s, &inspect).await;
    assert_eq!(body.matches("<span class=\"badge simulated\"").count(), 1, "only the refresh answer: {body}");
    assert!(
        body.contains("expired; sign in again (simulated by the developer launcher) <span class=\"badge simulated\"")
    );
    s.stop().await;
}
