//! The developer launcher of issue 9: the app's own client_id, ad-hoc apps used again rather
//! than duplicated, reusable launches, permanent launch links, the EHR frame, the Patient
//! field's name search and the settings remembered per browser — and the attacks on each.

use reqwest::header::{LOCATION, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::ehr_launch::{create_launch, ehr_app, launch_of, EHR_SCOPE, LAUNCH_URI};
use crate::support::*;

const OWN_LAUNCH: &str = "http://127.0.0.1:9/mine/launch.html";
const OWN_REDIRECT: &str = "http://127.0.0.1:9/mine/index.html";

/// A browser on the launcher page.
async fn launcher(s: &Server) -> Browser<'_> {
    let mut b = Browser::new(s);
    b.get(&format!("{}/launcher", s.base)).await;
    assert!(b.page.contains("<h1>Developer launcher</h1>"), "{}", b.page);
    b
}

/// Posts the launcher form (with the page's CSRF value) and returns the status.
async fn post(b: &mut Browser<'_>, fields: &[(&str, &str)]) -> StatusCode {
    if !b.page.contains("name=\"csrf\"") {
        // After the EHR frame (no form there): back to the launcher.
        b.get(&format!("{}/launcher", b.server.base)).await;
    }
    let csrf = b.csrf();
    let mut form: Vec<(&str, &str)> = vec![("csrf", &csrf), ("launch_type", "ehr"), ("user", "clinician")];
    for (k, v) in fields {
        form.retain(|(name, _)| name != k);
        form.push((k, v));
    }
    let r = b
        .server
        .http
        .post(format!("{}/launcher", b.server.base))
        .header(reqwest::header::COOKIE, cookies(b))
        .form(&form)
        .send()
        .await
        .unwrap();
    let status = r.status();
    b.take_cookie(&r);
    b.page = r.text().await.unwrap();
    status
}

fn cookies(b: &Browser<'_>) -> String {
    b.other_cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
}

fn alert(b: &Browser<'_>) -> String {
    let start = b.page.find("role=\"alert\">").unwrap_or_else(|| panic!("no alert: {}", b.page)) + 13;
    html_unescape(&b.page[start..start + b.page[start..].find('<').unwrap()])
}

fn issued_client(b: &Browser<'_>) -> String {
    let start = b.page.find("id=\"issued_client_id\">").unwrap_or_else(|| panic!("no card: {}", b.page)) + 22;
    b.page[start..start + b.page[start..].find('<').unwrap()].to_owned()
}

fn launch_url(b: &Browser<'_>) -> String {
    attr_after(&b.page, "id=\"launch_url\" value=\"").unwrap_or_else(|| panic!("no launch URL: {}", b.page))
}

/// Authorizes `client` with `launch` in a fresh browser and returns the app's redirect query.
async fn authorize(s: &Server, client: &str, launch: &str) -> std::collections::HashMap<String, String> {
    authorize_in(s, &mut Browser::new(s), client, launch).await
}

async fn authorize_in(
    s: &Server,
    b: &mut Browser<'_>,
    client: &str,
    launch: &str,
) -> std::collections::HashMap<String, String> {
    let mut params = s.authorize_params(client, EHR_SCOPE, &random(32));
    params.push(("launch".into(), launch.into()));
    match b.get(&s.authorize_url(&params)).await {
        Landing::App(url) => query_of(&url),
        Landing::Page(p) => panic!("stopped at {p}: {}", b.page),
    }
}

const SKIPS: [(&str, &str); 2] = [("skip_sign_in", "on"), ("skip_consent", "on")];

#[tokio::test]
async fn the_apps_own_client_id_is_registered_once_and_shown_on_the_card() {
    let s = Server::start().await;
    let mut b = launcher(&s).await;
    let own = [("launch_uri", OWN_LAUNCH), ("redirect_uri", OWN_REDIRECT), ("own_client_id", "my_web_app")];
    assert_eq!(post(&mut b, &[&own[..], &[("patient", "pat-001")]].concat()).await, StatusCode::OK);
    assert_eq!(issued_client(&b), "my_web_app");
    assert!(b.page.contains("id=\"client_type\">public (no client secret)"), "{}", b.page);
    assert!(b.page.contains("(registered now)"));
    assert!(b.page.contains(&format!("id=\"fhir_base\" value=\"{}\"", s.fhir)));
    // The app, configured with its own client_id, uses the launch with no registration step.
    let launch = launch_of_url(&launch_url(&b));
    let mut params = s.authorize_params("my_web_app", EHR_SCOPE, &random(32));
    params[2].1 = OWN_REDIRECT.into();
    params.push(("launch".into(), launch));
    let mut fresh = Browser::new(&s);
    fresh.get(&s.authorize_url(&params)).await;
    assert!(fresh.is_sign_in(), "the client_id and launch are accepted; the user signs in: {}", fresh.page);

    // Created again: the same registration, not a duplicate.
    assert_eq!(post(&mut b, &[&own[..], &SKIPS[..], &[("patient", "pat-001")]].concat()).await, StatusCode::OK);
    assert_eq!(issued_client(&b), "my_web_app");
    assert!(b.page.contains("used again"), "{}", b.page);
    let mut params = s.authorize_params("my_web_app", EHR_SCOPE, &random(32));
    params[2].1 = OWN_REDIRECT.into();
    params.push(("launch".into(), launch_of_url(&launch_url(&b))));
    let Landing::App(url) = Browser::new(&s).get(&s.authorize_url(&params)).await else { panic!("skips") };
    assert!(url.starts_with(OWN_REDIRECT) && query_of(&url).contains_key("code"), "{url}");
    // Without a client_id too: the first Create registers, the next ones use it again.
    let generated = [("launch_uri", "http://127.0.0.1:9/gen/launch"), ("redirect_uri", "http://127.0.0.1:9/gen/cb")];
    post(&mut b, &[&generated[..], &[("patient", "pat-001")]].concat()).await;
    let first = issued_client(&b);
    post(&mut b, &[&generated[..], &[("patient", "pat-001")]].concat()).await;
    assert_eq!(issued_client(&b), first);
    let page = s.http.get(format!("{}/launcher", s.base)).send().await.unwrap().text().await.unwrap();
    // The launch form's app list (the "forget remembered consent" card lists the apps again).
    let page = page.split("id=\"forget-consent\"").next().unwrap();
    assert_eq!(page.matches("Launcher app at http://127.0.0.1:9/gen/launch (").count(), 1, "one registration");
    assert_eq!(page.matches("Launcher app at http://127.0.0.1:9/mine/launch.html (").count(), 1);
    s.stop().await;
}

fn launch_of_url(url: &str) -> String {
    query_of(url)["launch"].clone()
}

#[tokio::test]
async fn a_taken_or_malformed_client_id_is_refused_with_what_to_do() {
    let s = Server::start().await;
    let taken = ehr_app(&s, "Registered Elsewhere").await;
    let mut b = launcher(&s).await;
    let status = post(
        &mut b,
        &[
            ("launch_uri", OWN_LAUNCH),
            ("redirect_uri", OWN_REDIRECT),
            ("own_client_id", &taken),
            ("patient", "pat-001"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let text = alert(&b);
    assert!(text.contains(&format!("“{taken}” is taken by the app “Registered Elsewhere”")), "{text}");
    assert!(text.contains("/apps") && text.contains("choose another client_id"), "{text}");
    for bad in ["my app", "a/b", "<script>", "é", &"x".repeat(65)] {
        let status = post(
            &mut b,
            &[
                ("launch_uri", OWN_LAUNCH),
                ("redirect_uri", OWN_REDIRECT),
                ("own_client_id", bad),
                ("patient", "pat-001"),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(alert(&b).contains("letters, digits or . _ ~ -"), "{bad}: {}", alert(&b));
    }
    // Nothing was registered under a refused id; RFC 7591 registration still assigns ids.
    let page = s.http.get(format!("{}/launcher", s.base)).send().await.unwrap().text().await.unwrap();
    assert!(!page.contains("Launcher app at"));
    s.stop().await;
}

#[tokio::test]
async fn an_own_client_id_may_not_name_another_page_of_this_server_as_its_redirect_uri() {
    // The own-redirect rule (docs/SECURITY.md, "The built-in callback page") holds for the
    // ad-hoc app under a chosen client_id as for one with a generated id: a code must never
    // land on one of our own pages other than /dev/callback.
    let s = Server::start().await;
    let mut b = launcher(&s).await;
    for own in [None, Some("mine_own_page")] {
        let redirect = format!("{}/launcher", s.base);
        let mut fields = vec![("launch_uri", OWN_LAUNCH), ("redirect_uri", redirect.as_str()), ("patient", "pat-001")];
        if let Some(id) = own {
            fields.push(("own_client_id", id));
        }
        let status = post(&mut b, &fields).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{own:?}: {}", b.page);
        assert!(alert(&b).contains("is an address of this server"), "{own:?}: {}", alert(&b));
    }
    let page = s.http.get(format!("{}/launcher", s.base)).send().await.unwrap().text().await.unwrap();
    assert!(!page.contains("mine_own_page"), "nothing registered under the chosen id");
    // /dev/callback stays allowed to the launcher (its caller has the sandbox powers).
    let callback = format!("{}/dev/callback", s.base);
    let fields = [
        ("launch_uri", OWN_LAUNCH),
        ("redirect_uri", callback.as_str()),
        ("own_client_id", "mine_dev_callback"),
        ("patient", "pat-001"),
    ];
    assert_eq!(post(&mut b, &fields).await, StatusCode::OK, "{}", b.page);
    assert_eq!(issued_client(&b), "mine_dev_callback");
    s.stop().await;
}

#[tokio::test]
async fn registering_an_ad_hoc_app_needs_the_registration_token_and_the_admin_token() {
    let s = Server::start_configured(|c| {
        c.registration_token = Some("reg-secret".into());
        c.admin_token = Some("admin-secret".into());
    })
    .await;
    let mut b = launcher(&s).await;
    let own = [("launch_uri", OWN_LAUNCH), ("redirect_uri", OWN_REDIRECT), ("own_client_id", "my_web_app")];
    assert_eq!(post(&mut b, &[&own[..], &[("patient", "pat-001")]].concat()).await, StatusCode::BAD_REQUEST);
    assert!(alert(&b).contains("admin token"), "{}", alert(&b));
    let with_admin = [("admin_token", "admin-secret"), ("patient", "pat-001")];
    assert_eq!(post(&mut b, &[&own[..], &with_admin[..]].concat()).await, StatusCode::BAD_REQUEST);
    assert!(alert(&b).contains("initial access token"), "{}", alert(&b));
    let tokens = [("admin_token", "admin-secret"), ("registration_token", "reg-secret"), ("patient", "pat-001")];
    assert_eq!(post(&mut b, &[&own[..], &tokens[..]].concat()).await, StatusCode::OK);
    assert_eq!(issued_client(&b), "my_web_app");
    // The remembered settings never hold a token.
    let remembered = b.other_cookies.get("smartlaunch_launcher").cloned().unwrap_or_default();
    assert!(remembered.contains("my_web_app") && !remembered.contains("secret"), "{remembered}");
    s.stop().await;
}

#[tokio::test]
async fn another_clients_authorize_request_is_told_which_client_the_launch_was_for() {
    let s = Server::start().await;
    let client = ehr_app(&s, "EHR App").await;
    let other = ehr_app(&s, "Other App").await;
    let created: Value =
        create_launch(&s, json!({"client_id": client, "patient": "pat-001"}), None).await.json().await.unwrap();
    let launch = launch_of(&s, created["launch_url"].as_str().unwrap());
    let q = authorize(&s, &other, &launch).await;
    assert_eq!(q["error"], "invalid_request");
    assert!(q["error_description"].contains(&format!("made for the client_id “{client}”")), "{q:?}");
    s.stop().await;
}

#[tokio::test]
async fn a_reusable_launch_serves_its_client_and_user_again_until_it_expires() {
    let s = Server::start().await;
    let client = ehr_app(&s, "Dev App").await;
    let other = ehr_app(&s, "Other App").await;
    let mut b = launcher(&s).await;
    let form = [("client_id", client.as_str()), ("patient", "pat-001"), ("reuse", "10")];
    assert_eq!(post(&mut b, &[&form[..], &SKIPS[..]].concat()).await, StatusCode::OK);
    assert!(b.page.contains("id=\"launch_kind\">EHR launch, reusable (dev)"), "{}", b.page);
    assert!(b.page.contains("reusable for 10 minutes"));
    let launch = launch_of(&s, &launch_url(&b));
    // The developer's reload loop: the same launch, again and again.
    for _ in 0..3 {
        let q = authorize(&s, &client, &launch).await;
        assert!(q.contains_key("code"), "{q:?}");
    }
    // Still bound to its client and its user.
    let q = authorize(&s, &other, &launch).await;
    assert!(q["error_description"].contains(&format!("“{client}”")), "{q:?}");
    let mut patient_browser = Browser::new(&s);
    let public = s.public_app().await;
    let params = s.authorize_params(&public, "openid", &random(32));
    let mut landing = patient_browser.get(&s.authorize_url(&params)).await;
    while let Landing::Page(_) = landing {
        landing = if patient_browser.is_sign_in() {
            patient_browser.sign_in("patient", "patient").await
        } else {
            patient_browser.consent(true, None).await
        };
    }
    let q = authorize_in(&s, &mut patient_browser, &client, &launch).await;
    assert!(q["error_description"].contains("another user's"), "{q:?}");
    // Until it expires.
    s.clock.advance(601);
    let q = authorize(&s, &client, &launch).await;
    assert!(q["error_description"].contains("expired"), "{q:?}");

    // The default stays single use: a reload is refused.
    post(&mut b, &[("client_id", client.as_str()), ("patient", "pat-001"), ("reuse", "once"), SKIPS[0], SKIPS[1]])
        .await;
    assert!(b.page.contains("id=\"launch_kind\">EHR launch, single use"));
    let launch = launch_of(&s, &launch_url(&b));
    assert!(authorize(&s, &client, &launch).await.contains_key("code"));
    let q = authorize(&s, &client, &launch).await;
    assert!(q["error_description"].contains("already used"), "{q:?}");
    // Only the offered lifetimes, and only for EHR launches.
    assert_eq!(post(&mut b, &[("client_id", client.as_str()), ("reuse", "100000")]).await, StatusCode::BAD_REQUEST);
    assert_eq!(
        post(&mut b, &[("client_id", client.as_str()), ("reuse", "10"), ("launch_type", "provider-standalone")]).await,
        StatusCode::BAD_REQUEST
    );
    // The launch API takes it too, bounded.
    let body = json!({"client_id": client, "patient": "pat-001", "user": "clinician", "reusable_minutes": 30,
        "options": {"skip_sign_in": true, "skip_consent": true}});
    let created: Value = create_launch(&s, body, None).await.json().await.unwrap();
    let launch = launch_of(&s, created["launch_url"].as_str().unwrap());
    assert!(authorize(&s, &client, &launch).await.contains_key("code"));
    assert!(authorize(&s, &client, &launch).await.contains_key("code"));
    let too_long = json!({"client_id": client, "patient": "pat-001", "reusable_minutes": 61});
    assert_eq!(create_launch(&s, too_long, None).await.status(), StatusCode::BAD_REQUEST);
    s.stop().await;
}

#[tokio::test]
async fn the_ehr_frame_loads_the_launch_url_of_a_server_side_launch() {
    let s = Server::start().await;
    let client = ehr_app(&s, "Framed App").await;
    let mut b = launcher(&s).await;
    let form = [("client_id", client.as_str()), ("patient", "pat-001"), ("open_in", "frame"), ("intent", "review")];
    assert_eq!(post(&mut b, &[&form[..], &SKIPS[..]].concat()).await, StatusCode::OK);
    assert!(b.page.contains("<h1>Amy Shaw</h1>"), "the chart: {}", b.page);
    let src = attr_after(&b.page, "name=\"app-frame\" title=\"App\" src=\"").unwrap();
    assert!(src.starts_with(&format!("{LAUNCH_URI}?")), "{src}");
    assert!(b.page.contains("sandbox=\"allow-scripts"), "the frame stays sandboxed");
    assert!(b.page.contains("href=\"/launcher/inspect/") && !b.page.contains("aria-label=\"Use the encounter"));
    let verifier = random(32);
    let mut params = s.authorize_params(&client, EHR_SCOPE, &verifier);
    params.push(("launch".into(), launch_of(&s, &src)));
    let Landing::App(url) = Browser::new(&s).get(&s.authorize_url(&params)).await else { panic!("skips") };
    let token = redeem(&s, &client, &query_of(&url)["code"], &verifier).await;
    assert_eq!(token["need_patient_banner"], false, "inside the frame the chart shows the patient");
    assert_eq!(token["intent"], "review");
    assert!(token["smart_style_url"].as_str().unwrap().ends_with("/ehr/smart-style/v1.json"));
    // In a new tab: the app shows its own banner.
    post(&mut b, &[("client_id", client.as_str()), ("patient", "pat-001"), ("open_in", "tab"), SKIPS[0], SKIPS[1]])
        .await;
    let verifier = random(32);
    let mut p = s.authorize_params(&client, EHR_SCOPE, &verifier);
    p.push(("launch".into(), launch_of(&s, &launch_url(&b))));
    let Landing::App(url) = Browser::new(&s).get(&s.authorize_url(&p)).await else { panic!("skips") };
    assert_eq!(redeem(&s, &client, &query_of(&url)["code"], &verifier).await["need_patient_banner"], true);
    // The portal frame for a portal launch.
    let portal_app = ehr_app(&s, "Portal App").await;
    let portal =
        [("client_id", portal_app.as_str()), ("launch_type", "portal"), ("user", "patient"), ("open_in", "frame")];
    assert_eq!(post(&mut b, &portal).await, StatusCode::OK, "{}", b.page);
    assert!(b.page.contains("smartlaunch patient portal") && b.page.contains("<h1>Amy Shaw</h1>"));
    // Not for a standalone launch; not without a patient.
    let standalone = [("client_id", client.as_str()), ("launch_type", "provider-standalone"), ("open_in", "frame")];
    assert_eq!(post(&mut b, &standalone).await, StatusCode::BAD_REQUEST);
    assert_eq!(post(&mut b, &[("client_id", client.as_str()), ("open_in", "frame")]).await, StatusCode::BAD_REQUEST);
    // No query string decides what a frame loads: the chart ignores one.
    let mut ehr = Browser::new(&s);
    super::ehr_launch::desk_sign_in(&s, &mut ehr, "/ehr", "clinician").await;
    ehr.get(&format!("{}/ehr/patients/pat-001?launch_url=https://evil.example/&src=https://evil.example/", s.base))
        .await;
    assert!(!ehr.page.contains("evil.example"));
    assert!(ehr.page.contains("src=\"/ehr/app-frame\""));
    s.stop().await;
}

#[tokio::test]
async fn the_patient_field_searches_names() {
    let s = Server::start().await;
    let client = ehr_app(&s, "App").await;
    let mut b = launcher(&s).await;
    // One match: used.
    assert_eq!(post(&mut b, &[("client_id", client.as_str()), ("patient", "amy shaw")]).await, StatusCode::OK);
    assert!(b.page.contains("name=\"patient\" value=\"pat-001\""), "the form now names the patient by id");
    // Several: offered, with the rest of the form kept.
    let several = [("client_id", client.as_str()), ("patient", "ar"), ("intent", "keep-me")];
    assert_eq!(post(&mut b, &several).await, StatusCode::BAD_REQUEST);
    assert!(b.page.contains("Several patients match “ar”"), "{}", b.page);
    assert!(b.page.contains("name=\"patient_choice\" value=\"pat-002\"") && b.page.contains("Daniel Garcia"));
    assert!(b.page.contains("name=\"intent\" value=\"keep-me\""));
    assert!(b.page.contains(&format!("<option value=\"{client}\" selected>")));
    let picked = [("client_id", client.as_str()), ("patient", "ar"), ("patient_choice", "pat-002"), SKIPS[0], SKIPS[1]];
    assert_eq!(post(&mut b, &picked).await, StatusCode::OK);
    let launch = launch_of(&s, &launch_url(&b));
    let created = authorize(&s, &client, &launch).await;
    assert!(created.contains_key("code"), "{created:?}");
    // None: a clear error.
    assert_eq!(
        post(&mut b, &[("client_id", client.as_str()), ("patient", "Nobody Atall")]).await,
        StatusCode::BAD_REQUEST
    );
    assert!(alert(&b).contains("no patient has the id “Nobody Atall” or a name matching it"), "{}", alert(&b));
    // Ids still work, several for a standalone picker.
    let standalone =
        [("client_id", client.as_str()), ("launch_type", "provider-standalone"), ("patient", "pat-001, pat-002")];
    assert_eq!(post(&mut b, &standalone).await, StatusCode::OK);
    s.stop().await;
}

#[tokio::test]
async fn the_launcher_remembers_its_last_settings_per_browser() {
    let s = Server::start().await;
    let client = ehr_app(&s, "Remembered App").await;
    let mut b = launcher(&s).await;
    post(&mut b, &[("client_id", client.as_str()), ("patient", "pat-003"), ("intent", "again"), ("reuse", "30")]).await;
    b.get(&format!("{}/launcher", s.base)).await;
    assert!(b.page.contains("name=\"intent\" value=\"again\""), "{}", b.page);
    assert!(b.page.contains("name=\"patient\" value=\"pat-003\""));
    assert!(b.page.contains("<option value=\"30\" selected>"));
    assert!(b.page.contains(&format!("<option value=\"{client}\" selected>")));
    // Another browser starts fresh; a forged cookie only fills fields (escaped).
    let fresh = launcher(&s).await;
    assert!(!fresh.page.contains("value=\"again\""));
    let forged = "smartlaunch_launcher=intent=%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E";
    let page = s
        .http
        .get(format!("{}/launcher", s.base))
        .header(reqwest::header::COOKIE, forged)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("<script>alert(1)") && page.contains("&#34;&#62;&#60;script&#62;"), "escaped");
    s.stop().await;
}

/// Saves the form as a launch link; returns the link's URL.
async fn save_link(b: &mut Browser<'_>, client: &str, extra: &[(&str, &str)]) -> String {
    let form = [("client_id", client), ("patient", "pat-001"), ("save_link", "on"), ("link_name", "Amy, skips")];
    assert_eq!(post(b, &[&form[..], &SKIPS[..], extra].concat()).await, StatusCode::OK, "{}", b.page);
    attr_after(&b.page, "id=\"launch_link\" value=\"").unwrap_or_else(|| panic!("no link: {}", b.page))
}

#[tokio::test]
async fn a_launch_link_makes_a_fresh_single_use_launch_each_time_until_deleted() {
    let s = Server::start().await;
    let reg = s
        .register(json!({
            "client_name": "Linked App",
            "redirect_uris": [s.redirect_uri()],
            "initiate_login_uri": LAUNCH_URI,
            "token_endpoint_auth_method": "none",
        }))
        .await;
    let client = reg["client_id"].as_str().unwrap().to_owned();
    let mut b = launcher(&s).await;
    let link = save_link(&mut b, &client, &[("reuse", "60")]).await;
    assert!(link.starts_with(&format!("{}/launcher/link/", s.base)));
    let id = link.rsplit('/').next().unwrap().to_owned();
    assert!(id.len() >= 43, "256 random bits");
    let page = s.http.get(format!("{}/launcher", s.base)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Amy, skips") && !page.contains(&id), "listed, but its id is never shown again");
    let open = || async {
        let r = s.http.get(&link).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        r.headers()[LOCATION].to_str().unwrap().to_owned()
    };
    let (first, second) = (open().await, open().await);
    assert_ne!(first, second, "a fresh launch each time");
    for url in [&first, &second] {
        let launch = launch_of(&s, url);
        assert!(authorize(&s, &client, &launch).await.contains_key("code"));
        let q = authorize(&s, &client, &launch).await;
        assert!(q["error_description"].contains("already used"), "single use, whatever the form said: {q:?}");
    }
    // A link into the EHR frame renders the chart with the app in it.
    let framed = save_link(&mut b, &client, &[("open_in", "frame")]).await;
    let page = s.http.get(&framed).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("<h1>Amy Shaw</h1>") && page.contains(&format!("src=\"{LAUNCH_URI}?")), "{page}");

    // Attacks: an unknown id, an over-long one.
    for bad in ["nope", &"A".repeat(43), &"A".repeat(500)] {
        let r = s.http.get(format!("{}/launcher/link/{bad}", s.base)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{bad}");
    }
    // Deleted: gone.
    b.get(&format!("{}/launcher", s.base)).await;
    // The framed link's handle (links saved in the same second list in either order).
    let handle = smartlaunch_auth::secrets::hash_token(framed.rsplit('/').next().unwrap());
    assert!(b.page.contains(&format!("name=\"link\" value=\"{handle}\"")), "listed for deletion");
    let csrf = b.csrf();
    assert_eq!(
        b.post_status("/launcher/links/delete", &[("csrf", "forged"), ("link", &handle)]).await,
        StatusCode::BAD_REQUEST
    );
    b.post("/launcher/links/delete", &[("csrf", &csrf), ("link", &handle)]).await;
    let gone = s.http.get(&framed).send().await.unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    assert!(gone.text().await.unwrap().contains("may have been deleted"));
    // The app removed (RFC 7592): the link explains instead of launching.
    let r = s
        .http
        .delete(reg["registration_client_uri"].as_str().unwrap())
        .bearer_auth(reg["registration_access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = s.http.get(&link).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("no longer works"));
    s.stop().await;
}

#[tokio::test]
async fn launch_links_open_only_where_the_sandbox_powers_need_no_token() {
    let s = Server::start_configured(|c| c.admin_token = Some("admin-secret".into())).await;
    let client = ehr_app(&s, "App").await;
    let mut b = launcher(&s).await;
    let link = save_link(&mut b, &client, &[("admin_token", "admin-secret")]).await;
    // A browser cannot send the admin token: the link is refused, whoever holds it.
    let r = s.http.get(&link).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("admin token"));
    let r = s.http.get(&link).bearer_auth("admin-secret").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "a tool with the token may open it");
    // Links are not listed to anyone there, and deleting needs the token.
    let page = s.http.get(format!("{}/launcher", s.base)).send().await.unwrap().text().await.unwrap();
    assert!(!page.contains("Launch links</h2>"));
    let csrf = b.csrf();
    assert_eq!(b.post_status("/launcher/links/delete", &[("csrf", &csrf), ("link", "x")]).await, StatusCode::FORBIDDEN);
    assert!(r.headers().get_all(SET_COOKIE).iter().count() == 0);
    s.stop().await;
}
