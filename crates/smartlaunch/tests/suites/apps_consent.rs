//! Issue 9: `/apps` edits and deletes an app with RFC 7592's rules under the sandbox powers,
//! and remembered consent is visible (the consent page says so) and resettable (the launcher's
//! "forget remembered consent", and its "always ask for consent" option).

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::ehr_launch::{create_launch, desk_sign_in, ehr_app, launch_of, EHR_SCOPE, LAUNCH_URI};
use crate::support::*;

const NEW_REDIRECT: &str = "http://127.0.0.1:9/app/new-callback";

async fn post_form(b: &mut Browser<'_>, path: &str, form: &[(&str, &str)]) {
    b.post(path, form).await;
}

/// The edit form of `client` as the gallery fills it, with `redirect_uris` replaced.
async fn edit_form(b: &mut Browser<'_>, client: &str, redirect_uris: &str) -> Vec<(&'static str, String)> {
    b.get(&format!("{}/apps/edit?client_id={client}", b.server.base)).await;
    assert!(b.page.contains("<h1>Edit "), "{}", b.page);
    vec![
        ("csrf", b.csrf()),
        ("client_id", client.to_owned()),
        ("client_name", attr_after(&b.page, "name=\"client_name\" value=\"").unwrap()),
        ("redirect_uris", redirect_uris.to_owned()),
        ("initiate_login_uri", attr_after(&b.page, "name=\"initiate_login_uri\" value=\"").unwrap()),
        ("scope", String::new()),
    ]
}

fn borrowed<'a>(form: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    form.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Where authorize sends a browser for `redirect_uri`: the app (a valid request shows the
/// sign-in page first) or an error page of ours.
async fn authorize_page(s: &Server, client: &str, redirect_uri: &str) -> String {
    let mut params = s.authorize_params(client, "openid fhirUser patient/*.rs", &random(32));
    params.iter_mut().filter(|(k, _)| k == "redirect_uri").for_each(|(_, v)| *v = redirect_uri.to_owned());
    let mut b = Browser::new(s);
    b.get(&s.authorize_url(&params)).await;
    b.page
}

#[tokio::test]
async fn editing_an_app_at_apps_changes_what_authorize_accepts_with_rfc_7592_rules() {
    let s = Server::start().await;
    let reg = s
        .register(json!({"client_name": "Editable App", "redirect_uris": [s.redirect_uri()],
            "initiate_login_uri": LAUNCH_URI, "token_endpoint_auth_method": "none"}))
        .await;
    let client = reg["client_id"].as_str().unwrap().to_owned();
    let mut b = Browser::new(&s);
    b.get(&format!("{}/apps", s.base)).await;
    assert!(b.page.contains(&format!("href=\"/apps/edit?client_id={client}\"")), "{}", b.page);
    assert!(b.page.contains(&format!("href=\"/apps/delete?client_id={client}\"")));

    // The form is filled with the app's metadata; the edit replaces the redirect URI.
    let form = edit_form(&mut b, &client, NEW_REDIRECT).await;
    assert!(b.page.contains(&format!(">{}</textarea>", s.redirect_uri())), "prefilled: {}", b.page);
    assert!(b.page.contains(&format!("value=\"{LAUNCH_URI}\"")));
    post_form(&mut b, "/apps/edit", &borrowed(&form)).await;
    assert!(b.page.contains("Editable App is updated"), "{}", b.page);
    assert!(authorize_page(&s, &client, NEW_REDIRECT).await.contains("<h1>Sign in</h1>"), "the new URI works");
    let old = authorize_page(&s, &client, &s.redirect_uri()).await;
    assert!(!old.contains("<h1>Sign in</h1>") && old.contains("redirect_uri"), "the old one is refused: {old}");

    // The app's own RFC 7592 token still manages it (an edit at /apps does not spend it).
    let uri = reg["registration_client_uri"].as_str().unwrap();
    let token = reg["registration_access_token"].as_str().unwrap();
    let read = s.http.get(uri).bearer_auth(token).send().await.unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    let current: Value = read.json().await.unwrap();
    assert_eq!(current["redirect_uris"], json!([NEW_REDIRECT]));
    let token = current["registration_access_token"].as_str().unwrap();

    // Invalid data: the same error as an RFC 7592 PUT, and nothing changes.
    let mut bad = edit_form(&mut b, &client, "http://evil.example/cb").await;
    post_form(&mut b, "/apps/edit", &borrowed(&bad)).await;
    let mut put = current.clone();
    put["redirect_uris"] = json!(["http://evil.example/cb"]);
    let r = s.http.put(uri).bearer_auth(token).json(&put).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let rfc: Value = r.json().await.unwrap();
    assert_eq!(alert_of(&b.page), rfc["error_description"].as_str().unwrap(), "the same error as PUT");
    assert!(b.page.contains("http://evil.example/cb</textarea>"), "the form keeps what was typed");
    assert!(authorize_page(&s, &client, NEW_REDIRECT).await.contains("<h1>Sign in</h1>"), "unchanged");

    // A tampered form cannot change the authentication method or the grant types.
    bad = edit_form(&mut b, &client, NEW_REDIRECT).await;
    bad.push(("token_endpoint_auth_method", "client_secret_basic".into()));
    bad.push(("grant_types", "client_credentials".into()));
    bad[2].1 = "Renamed App".into();
    post_form(&mut b, "/apps/edit", &borrowed(&bad)).await;
    let again: Value = s.http.get(uri).bearer_auth(token).send().await.unwrap().json().await.unwrap();
    assert_eq!(again["client_name"], "Renamed App");
    assert_eq!(again["token_endpoint_auth_method"], "none");
    assert_eq!(again["grant_types"], json!(["authorization_code"]));

    // No CSRF token: refused, nothing changes.
    let mut forged = edit_form(&mut b, &client, "http://127.0.0.1:9/forged").await;
    forged[0].1 = "forged".into();
    assert_eq!(b.post_status("/apps/edit", &borrowed(&forged)).await, StatusCode::BAD_REQUEST);
    forged.remove(0);
    assert_eq!(b.post_status("/apps/edit", &borrowed(&forged)).await, StatusCode::BAD_REQUEST);
    assert!(!authorize_page(&s, &client, "http://127.0.0.1:9/forged").await.contains("<h1>Sign in</h1>"));

    // An unknown app is a 404 page, not an error of the server.
    let r = s.http.get(format!("{}/apps/edit?client_id=nobody", s.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test]
async fn deleting_an_app_at_apps_revokes_its_tokens_and_the_charts_stop_offering_it() {
    let s = Server::start().await;
    let client = ehr_app(&s, "Doomed App").await;
    // A live access token of the app.
    let body = json!({"client_id": client, "patient": "pat-001", "user": "clinician",
        "options": {"skip_consent": true, "skip_sign_in": true}});
    let created: Value = create_launch(&s, body, None).await.json().await.unwrap();
    let verifier = random(32);
    let mut params = s.authorize_params(&client, EHR_SCOPE, &verifier);
    params.push(("launch".into(), launch_of(&s, created["launch_url"].as_str().unwrap())));
    let Landing::App(url) = Browser::new(&s).get(&s.authorize_url(&params)).await else { panic!("no code") };
    let token = redeem(&s, &client, &query_of(&url)["code"], &verifier).await;
    let access = token["access_token"].as_str().unwrap();
    assert_eq!(s.read("Patient/pat-001", access).await.status(), StatusCode::OK);
    let mut ehr = Browser::new(&s);
    desk_sign_in(&s, &mut ehr, "/ehr", "clinician").await;
    ehr.get(&format!("{}/ehr/patients/pat-001", s.base)).await;
    assert!(ehr.page.contains("Launch Doomed App"));

    // The confirmation says what deleting does; the delete needs its CSRF token.
    let mut b = Browser::new(&s);
    b.get(&format!("{}/apps/delete?client_id={client}", s.base)).await;
    assert!(b.page.contains("<h1>Delete Doomed App?</h1>") && b.page.contains("revoked"), "{}", b.page);
    let csrf = b.csrf();
    assert_eq!(b.post_status("/apps/delete", &[("client_id", &client)]).await, StatusCode::BAD_REQUEST);
    assert_eq!(s.read("Patient/pat-001", access).await.status(), StatusCode::OK, "not deleted without CSRF");
    post_form(&mut b, "/apps/delete", &[("csrf", &csrf), ("client_id", &client)]).await;
    assert!(b.page.contains("Doomed App (") && b.page.contains("is deleted"), "{}", b.page);
    assert!(!b.page.contains(&format!("<code>{client}</code>")), "no longer listed");
    assert_eq!(s.read("Patient/pat-001", access).await.status(), StatusCode::UNAUTHORIZED, "its token is revoked");
    ehr.get(&format!("{}/ehr/patients/pat-001", s.base)).await;
    assert!(!ehr.page.contains("Doomed App"), "the chart no longer offers it");
    let r = s.http.get(format!("{}/apps/delete?client_id={client}", s.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test]
async fn editing_and_deleting_apps_follow_the_sandbox_mode() {
    let s = Server::start_configured(|c| c.admin_token = Some("admin-secret".into())).await;
    let client = ehr_app(&s, "Guarded App").await;
    let mut b = Browser::new(&s);
    let mut form = edit_form(&mut b, &client, NEW_REDIRECT).await;
    assert!(b.page.contains("id=\"admin_token\""), "the form asks for the admin token");
    post_form(&mut b, "/apps/edit", &borrowed(&form)).await;
    assert!(b.page.contains("role=\"alert\">this server requires its admin token"), "{}", b.page);
    form = edit_form(&mut b, &client, NEW_REDIRECT).await;
    form.push(("admin_token", "wrong".into()));
    assert_eq!(b.post_status("/apps/edit", &borrowed(&form)).await, StatusCode::UNAUTHORIZED);
    assert!(authorize_page(&s, &client, &s.redirect_uri()).await.contains("<h1>Sign in</h1>"), "unchanged");
    form.pop();
    form.push(("admin_token", "admin-secret".into()));
    post_form(&mut b, "/apps/edit", &borrowed(&form)).await;
    assert!(b.page.contains("Guarded App is updated"), "{}", b.page);
    assert!(authorize_page(&s, &client, NEW_REDIRECT).await.contains("<h1>Sign in</h1>"));

    b.get(&format!("{}/apps/delete?client_id={client}", s.base)).await;
    let csrf = b.csrf();
    let without = [("csrf", csrf.as_str()), ("client_id", client.as_str())];
    assert_eq!(b.post_status("/apps/delete", &without).await, StatusCode::UNAUTHORIZED);
    post_form(&mut b, "/apps/delete", &[("csrf", &csrf), ("client_id", &client), ("admin_token", "admin-secret")])
        .await;
    assert!(b.page.contains("is deleted"), "{}", b.page);
    s.stop().await;

    // An open sandbox on loopback answers only at its own names (DNS rebinding): a page at
    // another name cannot edit, delete or forget, even with a valid form token.
    let open = Server::start().await;
    let client = ehr_app(&open, "Rebound App").await;
    let evil = open.base.replace("127.0.0.1", "rebound.example").trim_start_matches("http://").to_owned();
    for (path, extra) in [("/apps/edit", Some(("redirect_uris", NEW_REDIRECT))), ("/apps/delete", None)] {
        let mut form = vec![("csrf", "tok"), ("client_id", client.as_str()), ("client_name", "Rebound App")];
        form.extend(extra);
        let r = open
            .http
            .post(format!("{}{path}", open.base))
            .header(reqwest::header::HOST, &evil)
            .header(reqwest::header::COOKIE, "smartlaunch_csrf=tok")
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
        assert!(r.text().await.unwrap().contains("DNS rebinding"), "{path}");
    }
    let forget = [("csrf", "tok"), ("client_id", client.as_str()), ("user", "clinician")];
    let r = open
        .http
        .post(format!("{}/launcher/forget-consent", open.base))
        .header(reqwest::header::HOST, &evil)
        .header(reqwest::header::COOKIE, "smartlaunch_csrf=tok")
        .form(&forget)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(authorize_page(&open, &client, &open.redirect_uri()).await.contains("<h1>Sign in</h1>"), "unchanged");
    open.stop().await;

    // A closed sandbox (beyond loopback, no admin token) refuses, and says why.
    let closed = Server::start_configured(|c| c.listen = "0.0.0.0:0".parse().unwrap()).await;
    let client = ehr_app(&closed, "Closed App").await;
    let mut b = Browser::new(&closed);
    let form = edit_form(&mut b, &client, NEW_REDIRECT).await;
    assert!(b.page.contains("Editing apps is off"), "{}", b.page);
    post_form(&mut b, "/apps/edit", &borrowed(&form)).await;
    assert!(alert_of(&b.page).starts_with("editing and deleting apps is off"), "{}", b.page);
    b.get(&format!("{}/apps/delete?client_id={client}", closed.base)).await;
    let csrf = b.csrf();
    assert_eq!(b.post_status("/apps/delete", &[("csrf", &csrf), ("client_id", &client)]).await, StatusCode::FORBIDDEN);
    closed.stop().await;
}

/// Launches `client` for the clinician (vouched for: no sign-in) with `options`, in a fresh
/// browser; answers the browser where authorize left it.
async fn launch_for_clinician<'a>(s: &'a Server, client: &str, options: Value) -> (Landing, Browser<'a>) {
    let body = json!({"client_id": client, "patient": "pat-001", "user": "clinician", "options": options});
    let created = create_launch(s, body, None).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.unwrap();
    let mut params = s.authorize_params(client, EHR_SCOPE, &random(32));
    params.push(("launch".into(), launch_of(s, created["launch_url"].as_str().unwrap())));
    let mut b = Browser::new(s);
    let landing = b.get(&s.authorize_url(&params)).await;
    (landing, b)
}

#[tokio::test]
async fn remembered_consent_is_announced_can_be_forced_and_forgotten() {
    let s = Server::start().await;
    let client = ehr_app(&s, "Consent App").await;
    let vouched = json!({"skip_sign_in": true});
    let (_, mut b) = launch_for_clinician(&s, &client, vouched.clone()).await;
    assert!(b.is_consent(), "{}", b.page);
    assert!(
        b.page.contains("Smartlaunch will remember what you allow for Consent App: next time Consent App asks"),
        "{}",
        b.page
    );
    assert!(b.page.contains("href=\"/account\""));
    assert!(!b.page.contains("always ask"), "no forcing note on a plain launch");
    let Landing::App(first) = b.consent(true, None).await else { panic!("allowed: {}", b.page) };
    assert!(first.contains("code="));

    // Remembered: the next launch skips the page …
    let (landing, _) = launch_for_clinician(&s, &client, vouched.clone()).await;
    assert!(matches!(landing, Landing::App(ref u) if u.contains("code=")), "{landing:?}");
    // … unless the launch says "always ask for consent".
    let (landing, b) =
        launch_for_clinician(&s, &client, json!({"skip_sign_in": true, "always_ask_consent": true})).await;
    assert!(matches!(landing, Landing::Page(_)) && b.is_consent(), "{}", b.page);
    assert!(b.page.contains("“always ask for consent”"), "{}", b.page);

    // Both "skip consent" and "always ask": a clear error, from the API and the launcher.
    let both = json!({"client_id": client, "patient": "pat-001", "user": "clinician",
        "options": {"skip_consent": true, "always_ask_consent": true}});
    let r = create_launch(&s, both, None).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert!(body["error_description"].as_str().unwrap().contains("contradict each other"), "{body}");
    let mut launcher = Browser::new(&s);
    launcher.get(&format!("{}/launcher", s.base)).await;
    assert!(launcher.page.contains("name=\"always_ask_consent\""));
    assert!(launcher.page.contains("action=\"/launcher/forget-consent\""));
    let csrf = launcher.csrf();
    let form = [
        ("csrf", csrf.as_str()),
        ("launch_type", "ehr"),
        ("client_id", &client),
        ("user", "clinician"),
        ("patient", "pat-001"),
        ("skip_consent", "on"),
        ("always_ask_consent", "on"),
    ];
    post_form(&mut launcher, "/launcher", &form).await;
    assert!(launcher.page.contains("role=\"alert\">“skip consent” and “always ask for consent” contradict"));
    assert!(launcher.page.contains("name=\"always_ask_consent\" checked"), "the form keeps the choice");

    // Forget: needs the CSRF token; then the consent and the user's tokens for the app are gone.
    let csrf = launcher.csrf();
    let forget = [("csrf", csrf.as_str()), ("client_id", client.as_str()), ("user", "clinician")];
    assert_eq!(launcher.post_status("/launcher/forget-consent", &forget[1..]).await, StatusCode::BAD_REQUEST);
    let (landing, _) = launch_for_clinician(&s, &client, vouched.clone()).await;
    assert!(matches!(landing, Landing::App(_)), "still remembered after a forged forget");
    post_form(&mut launcher, "/launcher/forget-consent", &forget).await;
    assert!(launcher.page.contains("<h1 role=\"status\">Consent forgotten</h1>"), "{}", launcher.page);
    assert!(launcher.page.contains("<code>launch openid fhirUser patient/*.rs</code>"), "what was removed");
    assert!(launcher.page.contains("revoked"), "and that the tokens are revoked");
    let (landing, b) = launch_for_clinician(&s, &client, vouched.clone()).await;
    assert!(matches!(landing, Landing::Page(_)) && b.is_consent(), "asked again: {}", b.page);
    // Forgetting again says there was nothing; an unknown user or app is a clear error.
    let csrf = launcher_csrf(&mut launcher).await;
    post_form(
        &mut launcher,
        "/launcher/forget-consent",
        &[("csrf", &csrf), ("client_id", &client), ("user", "clinician")],
    )
    .await;
    assert!(launcher.page.contains("there was nothing to forget"), "{}", launcher.page);
    let csrf = launcher_csrf(&mut launcher).await;
    let unknown = [("csrf", csrf.as_str()), ("client_id", client.as_str()), ("user", "nobody")];
    assert_eq!(launcher.post_status("/launcher/forget-consent", &unknown).await, StatusCode::BAD_REQUEST);
    s.stop().await;
}

#[tokio::test]
async fn forgetting_consent_revokes_the_users_tokens_and_follows_the_sandbox_mode() {
    let s = Server::start_configured(|c| c.admin_token = Some("admin-secret".into())).await;
    let client = ehr_app(&s, "Token App").await;
    let body =
        json!({"client_id": client, "patient": "pat-001", "user": "clinician", "options": {"skip_sign_in": true}});
    let created: Value = create_launch(&s, body, Some("admin-secret")).await.json().await.unwrap();
    let verifier = random(32);
    let mut params = s.authorize_params(&client, EHR_SCOPE, &verifier);
    params.push(("launch".into(), launch_of(&s, created["launch_url"].as_str().unwrap())));
    let mut b = Browser::new(&s);
    b.get(&s.authorize_url(&params)).await;
    let Landing::App(url) = b.consent(true, None).await else { panic!("{}", b.page) };
    let token = redeem(&s, &client, &query_of(&url)["code"], &verifier).await;
    let access = token["access_token"].as_str().unwrap();
    assert_eq!(s.read("Patient/pat-001", access).await.status(), StatusCode::OK);

    let mut launcher = Browser::new(&s);
    let csrf = launcher_csrf(&mut launcher).await;
    assert!(launcher.page.contains("id=\"forget_admin_token\""));
    let without = [("csrf", csrf.as_str()), ("client_id", client.as_str()), ("user", "clinician")];
    assert_eq!(launcher.post_status("/launcher/forget-consent", &without).await, StatusCode::UNAUTHORIZED);
    assert_eq!(s.read("Patient/pat-001", access).await.status(), StatusCode::OK, "nothing forgotten");
    let with =
        [("csrf", csrf.as_str()), ("client_id", &client), ("user", "clinician"), ("admin_token", "admin-secret")];
    post_form(&mut launcher, "/launcher/forget-consent", &with).await;
    assert!(launcher.page.contains("Consent forgotten"), "{}", launcher.page);
    assert_eq!(s.read("Patient/pat-001", access).await.status(), StatusCode::UNAUTHORIZED, "as /account's revoke");
    s.stop().await;
}

/// Opens the launcher and answers its form token.
async fn launcher_csrf(b: &mut Browser<'_>) -> String {
    b.get(&format!("{}/launcher", b.server.base)).await;
    b.csrf()
}

/// The text of the page's alert.
fn alert_of(page: &str) -> String {
    let alert = page.split("role=\"alert\">").nth(1).and_then(|a| a.split("</p>").next());
    html_unescape(alert.unwrap_or_else(|| panic!("no alert: {page}")))
}

/// The `smartlaunch_csrf` value a page on another port of this host plants (cookies ignore
/// the port, so its cookie reaches this server) and posts along.
const PLANTED: &str = "planted-by-a-page-on-another-port";

/// A form post from a page at `http://127.0.0.1:3000` that planted [`PLANTED`] as the form
/// cookie; `site` is the `Sec-Fetch-Site` the browser sends with it.
async fn planted_post(s: &Server, path: &str, fields: &[(&str, &str)], site: &str) -> (StatusCode, String) {
    let mut form = vec![("csrf", PLANTED)];
    form.extend_from_slice(fields);
    let r = s
        .http
        .post(format!("{}{path}", s.base))
        .header(reqwest::header::COOKIE, format!("smartlaunch_csrf={PLANTED}"))
        .header("sec-fetch-site", site)
        .header(reqwest::header::ORIGIN, "http://127.0.0.1:3000")
        .form(&form)
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

#[tokio::test]
async fn a_page_on_another_port_cannot_plant_the_form_cookie_and_post_the_sandbox_forms() {
    let s = Server::start().await;
    let client = ehr_app(&s, "Planted Target").await;
    let evil = "https://evil.example/steal";
    let edit = [
        ("client_id", client.as_str()),
        ("client_name", "Planted Target"),
        ("redirect_uris", evil),
        ("initiate_login_uri", LAUNCH_URI),
    ];
    let callback = format!("{}/dev/callback", s.base);
    let register =
        [("client_name", "Planted Callback"), ("client_type", "public"), ("redirect_uris", callback.as_str())];
    let attacks: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("/apps/edit", edit.to_vec()),
        ("/apps", register.to_vec()),
        ("/launcher/trace", vec![("client_id", client.as_str()), ("minutes", "60")]),
        ("/launcher/forget-consent", vec![("client_id", client.as_str()), ("user", "clinician")]),
        (
            "/launcher",
            vec![("launch_type", "ehr"), ("client_id", client.as_str()), ("user", "clinician"), ("patient", "pat-001")],
        ),
        ("/launcher/links/delete", vec![("link", "0123")]),
        ("/sandbox/reset", vec![("confirm", "reset")]),
        ("/apps/delete", vec![("client_id", client.as_str())]),
    ];
    for site in ["same-site", "cross-site"] {
        for (path, fields) in &attacks {
            let (status, page) = planted_post(&s, path, fields, site).await;
            // The gallery shows a refused registration on its form (400), the rest answer 403.
            let refused = if *path == "/apps" { StatusCode::BAD_REQUEST } else { StatusCode::FORBIDDEN };
            assert_eq!(status, refused, "{site} POST {path}: {page}");
        }
    }
    // Nothing changed: the app is there with its redirect URI, no trace switch is on, and no
    // app names /dev/callback.
    let mut b = Browser::new(&s);
    b.get(&format!("{}/apps/edit?client_id={client}", s.base)).await;
    assert!(b.page.contains(&s.redirect_uri()) && !b.page.contains(evil), "{}", b.page);
    b.get(&format!("{}/launcher/trace", s.base)).await;
    assert!(!b.page.contains("<strong>on</strong>"), "{}", b.page);
    b.get(&format!("{}/apps", s.base)).await;
    assert!(!b.page.contains("Planted Callback"), "{}", b.page);
    // The same post from this server's own page (same-origin) is the form working as meant.
    let (status, page) = planted_post(&s, "/apps/edit", &edit, "same-origin").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    b.get(&format!("{}/apps/edit?client_id={client}", s.base)).await;
    assert!(b.page.contains(evil), "{}", b.page);
    s.stop().await;
}

#[tokio::test]
async fn a_page_on_another_port_cannot_sign_the_browser_in_to_an_account_of_its_choosing() {
    // Login CSRF: a page on another port plants the sign-in form's cookie and posts the
    // attacker's own credentials, so that the victim's browser would act as the attacker.
    let s = Server::start().await;
    let credentials = [("username", "clinician"), ("password", "clinician")];
    for path in ["/ehr/signin", "/portal/signin", "/account/signin"] {
        for site in ["same-site", "cross-site"] {
            let r = s
                .http
                .post(format!("{}{path}", s.base))
                .header(reqwest::header::COOKIE, format!("smartlaunch_csrf={PLANTED}"))
                .header("sec-fetch-site", site)
                .form(&[&[("csrf", PLANTED)][..], &credentials[..]].concat())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{site} POST {path}");
            assert!(r.headers().get(reqwest::header::SET_COOKIE).is_none(), "{site} POST {path}: no session");
        }
        // The same post from the server's own sign-in page signs in.
        let r = s
            .http
            .post(format!("{}{path}", s.base))
            .header(reqwest::header::COOKIE, format!("smartlaunch_csrf={PLANTED}"))
            .header("sec-fetch-site", "same-origin")
            .form(&[&[("csrf", PLANTED)][..], &credentials[..]].concat())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "same-origin POST {path}");
        let cookie = r.headers().get(reqwest::header::SET_COOKIE).unwrap().to_str().unwrap();
        assert!(cookie.starts_with("smartlaunch_session="), "{cookie}");
    }
    s.stop().await;
}
