//! The Vitals demo app (issue 11) against the real server: it registers itself, an EHR launch
//! shows the patient's charts (with the banner the launch asks for), the EHR's style is
//! applied, and after a restart the same browser sees its patient again (`offline_access`).
//! The browser e2e suite (tests/e2e/vitals.test.js) does the same in Chromium inside the EHR.

use std::path::Path;

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::{json, Value};
use smartlaunch::demo_app::{bind, start, DemoAppSettings, RunningDemoApp};

use super::ehr_launch::create_launch;
use crate::support::*;

async fn demo_app(s: &Server, dir: &Path, port: u16) -> RunningDemoApp {
    let (listener, url) = bind(format!("127.0.0.1:{port}").parse().unwrap(), "127.0.0.1").await.unwrap();
    let settings = DemoAppSettings { fhir_base: s.fhir.clone(), data_dir: dir.to_owned(), registration_token: None };
    start(listener, url, settings).await.unwrap()
}

/// The app's side of a browser: its cookies for the app's origin.
#[derive(Default)]
struct AppCookies(std::collections::BTreeMap<String, String>);

impl AppCookies {
    fn take(&mut self, r: &reqwest::Response) {
        for v in r.headers().get_all(SET_COOKIE) {
            let (pair, attributes) = v.to_str().unwrap().split_once(';').unwrap_or((v.to_str().unwrap(), ""));
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || attributes.contains("Max-Age=0") {
                self.0.remove(name);
            } else {
                self.0.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    fn header(&self) -> String {
        self.0.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    async fn get(&mut self, s: &Server, url: &str) -> reqwest::Response {
        let r = s.http.get(url).header(COOKIE, self.header()).send().await.unwrap();
        self.take(&r);
        r
    }
}

/// Launches the demo app from the launch API for pat-001 and returns its page.
async fn launch(s: &Server, demo: &RunningDemoApp, cookies: &mut AppCookies) -> String {
    let r = create_launch(
        s,
        json!({"client_id": demo.client_id, "patient": "pat-001", "user": "Practitioner/pract-001"}),
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let launch_url = r.json::<Value>().await.unwrap()["launch_url"].as_str().unwrap().to_owned();
    assert!(launch_url.starts_with(&demo.launch_url()), "{launch_url}");

    let r = cookies.get(s, &launch_url).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let authorize = r.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(authorize.starts_with(&format!("{}/auth/authorize?", s.base)), "{authorize}");
    let mut browser = Browser::new(s);
    let mut landing = browser.get(&authorize).await;
    let callback = loop {
        match landing {
            Landing::App(url) => break url,
            Landing::Page(_) if browser.is_sign_in() => landing = browser.sign_in("clinician", "clinician").await,
            Landing::Page(_) if browser.is_consent() => landing = browser.consent(true, None).await,
            Landing::Page(p) => panic!("unexpected page {p}: {}", browser.page),
        }
    };
    assert!(callback.starts_with(&format!("{}/callback?", demo.url)), "{callback}");
    let r = cookies.get(s, &callback).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{:?}", r.text().await);
    assert_eq!(r.headers()[LOCATION], "/");
    page(s, demo, cookies).await
}

async fn page(s: &Server, demo: &RunningDemoApp, cookies: &mut AppCookies) -> String {
    let r = cookies.get(s, &format!("{}/", demo.url)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains(&format!("frame-ancestors 'self' {}", s.base)), "{csp}");
    r.text().await.unwrap()
}

#[tokio::test]
async fn the_demo_app_registers_launches_charts_and_resumes_after_a_restart() {
    let s = Server::start().await;
    let dir = s.dir.join("vitals");
    let demo = demo_app(&s, &dir, 0).await;
    let port: u16 = demo.url.rsplit(':').next().unwrap().parse().unwrap();

    // Registered with its launch URL: the EHR offers it.
    let reg: Value = serde_json::from_slice(&std::fs::read(dir.join("registration.json")).unwrap()).unwrap();
    assert_eq!(reg["client_id"], demo.client_id.as_str());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("registration.json")).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the client secret's file is the owner's only");
    }

    // Without a session it explains how to launch it.
    let mut stranger = AppCookies::default();
    let welcome = page(&s, &demo, &mut stranger).await;
    assert!(welcome.contains("Launch it standalone"));

    let mut cookies = AppCookies::default();
    let html = launch(&s, &demo, &mut cookies).await;
    assert!(html.contains("aria-label=\"Patient\""), "the launch API's launch wants a banner");
    assert!(html.contains("<h1>Vital signs</h1>") && html.contains("<svg class=\"chart\""), "{html}");
    for vital in ["Body weight", "Blood pressure", "Heart rate"] {
        assert!(html.contains(vital), "{vital} charted");
    }
    assert!(html.contains("Signed in as Practitioner/pract-001"));
    assert!(html.contains("--background:"), "the EHR's style: {html}");
    // Another browser sees none of it.
    assert!(!page(&s, &demo, &mut stranger).await.contains("<svg"));

    // The app restarts: the browser's session is resumed from what it saved.
    demo.stop().await;
    let demo = demo_app(&s, &dir, port).await;
    assert_eq!(demo.client_id, reg["client_id"].as_str().unwrap(), "the kept registration is used again");
    let again = page(&s, &demo, &mut cookies).await;
    assert!(again.contains("<svg class=\"chart\""), "{again}");
    assert!(!again.contains("role=\"alert\""), "fresh data, not only the last seen: {again}");

    // The grant ends at the server (RFC 7009 revocation of its refresh token): the app cannot
    // refresh, says so, and forgets what it saved (no patient data after a revocation).
    let saved: Value = serde_json::from_slice(&std::fs::read(dir.join("sessions.json")).unwrap()).unwrap();
    let entry = saved.as_object().unwrap().values().next().unwrap();
    let refresh_token = entry["session"]["tokens"]["refresh_token"].as_str().unwrap();
    let r = s
        .http
        .post(format!("{}/auth/revoke", s.base))
        .basic_auth(reg["client_id"].as_str().unwrap(), reg["client_secret"].as_str())
        .form(&[("token", refresh_token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = cookies.get(&s, &format!("{}/", demo.url)).await;
    let ended = r.text().await.unwrap();
    assert!(ended.contains("authorization has ended") && !ended.contains("<svg"), "{ended}");
    let saved: Value = serde_json::from_slice(&std::fs::read(dir.join("sessions.json")).unwrap()).unwrap();
    assert!(saved.as_object().unwrap().is_empty(), "nothing of the patient kept: {saved}");

    // A new launch, then sign-out: forgotten, also across restarts.
    launch(&s, &demo, &mut cookies).await;
    let r = s.http.post(format!("{}/signout", demo.url)).header(COOKIE, cookies.header()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    cookies.take(&r);
    assert!(!page(&s, &demo, &mut cookies).await.contains("<svg"));
    demo.stop().await;
    s.stop().await;
}

#[tokio::test]
async fn when_the_server_cannot_be_reached_the_app_shows_what_it_last_saw() {
    let mut s = Server::start().await;
    let dir = s.dir.join("vitals");
    let demo = demo_app(&s, &dir, 0).await;
    let mut cookies = AppCookies::default();
    assert!(launch(&s, &demo, &mut cookies).await.contains("<svg class=\"chart\""));
    // The FHIR server goes away (its data directory stays for `stop`).
    s.running.take().unwrap().stop().await;
    let r = cookies.get(&s, &format!("{}/", demo.url)).await;
    let last_seen = r.text().await.unwrap();
    assert!(last_seen.contains("role=\"alert\"") && last_seen.contains("last seen"), "{last_seen}");
    assert!(last_seen.contains("<svg class=\"chart\""), "the saved charts: {last_seen}");
    demo.stop().await;
    s.stop().await;
}

#[tokio::test]
async fn a_launch_naming_another_server_or_a_forged_callback_gets_an_error_page() {
    let s = Server::start().await;
    let dir = s.dir.join("vitals");
    let demo = demo_app(&s, &dir, 0).await;
    let mut cookies = AppCookies::default();
    let r = cookies.get(&s, &format!("{}/launch?iss=https%3A%2F%2Fevil.example%2Ffhir&launch=x", demo.url)).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("not on this app"));
    let r = cookies.get(&s, &format!("{}/callback?code=stolen&state=whatever", demo.url)).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "no pending authorization in this browser");
    demo.stop().await;
    s.stop().await;
}
