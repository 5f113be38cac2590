//! Attacks on the authorization flow, the launches and the sign-in forms (issue 7): a flow link
//! opened in a victim's browser, login CSRF, a leaked launch id, the open-sandbox powers beyond
//! loopback, password guessing, floods of token and registration requests.  Each test is an
//! attack that succeeded before the defence it names.

use reqwest::header::{HOST, LOCATION, RETRY_AFTER, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use smartlaunch::RateLimits;

use super::ehr_launch::{create_launch, desk_sign_in, ehr_app, launch_from, launch_of, EHR_SCOPE};
use crate::support::*;

/// A victim's browser, signed in to the EHR as the clinician.
async fn victim(s: &Server) -> Browser<'_> {
    let mut v = Browser::new(s);
    desk_sign_in(s, &mut v, "/ehr", "clinician").await;
    assert!(v.cookie.is_some(), "the victim is signed in");
    v
}

/// What an attacker holds after starting an authorization for someone else's public app from
/// its own machine: the flow's path, its flow cookie, and the CSRF value of the page.
struct Started {
    path: String,
    cookie: String,
    csrf: String,
}

async fn attacker_starts(s: &Server, client: &str, scope: &str) -> Started {
    let r = s.http.get(s.authorize_url(&s.authorize_params(client, scope, &random(32)))).send().await.unwrap();
    let path = r.headers()[LOCATION].to_str().unwrap().to_owned();
    let set = r.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(set.starts_with("smartlaunch_flow=") && set.contains("HttpOnly") && set.contains("SameSite=Lax"));
    assert!(set.contains(&format!("Path={path}")), "the flow cookie is scoped to its flow: {set}");
    let cookie = set.split(';').next().unwrap().to_owned();
    let page = s.http.get(format!("{}{path}", s.base)).header("cookie", &cookie).send().await.unwrap();
    let page = page.text().await.unwrap();
    let csrf = attr_after(&page, "name=\"csrf\" value=\"").unwrap();
    Started { path, cookie, csrf }
}

/// Posts a step as the attacker (its own cookie) and returns the status and `Location`.
async fn attacker_posts(s: &Server, started: &Started, step: &str, form: &[(&str, &str)]) -> (u16, String) {
    let r = s
        .http
        .post(format!("{}{}/{step}", s.base, started.path))
        .header("cookie", &started.cookie)
        .form(form)
        .send()
        .await
        .unwrap();
    let location = r.headers().get(LOCATION).map(|l| l.to_str().unwrap().to_owned()).unwrap_or_default();
    (r.status().as_u16(), location)
}

#[tokio::test]
async fn a_flow_link_opened_in_a_victims_browser_neither_sees_nor_borrows_its_session() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let mut v = victim(&s).await;
    let a = attacker_starts(&s, &client, "openid fhirUser user/*.cruds offline_access").await;
    // The victim's browser opens the link (a link, or a page that sets `location`).
    v.get(&format!("{}{}", s.base, a.path)).await;
    assert!(v.page.contains("This sign-in belongs to another browser"), "{}", v.page);
    // The victim's session did not join: the attacker still sees the sign-in page, and its
    // consent, with the CSRF value it holds, gets no code.
    let page = s.http.get(format!("{}{}", s.base, a.path)).header("cookie", &a.cookie).send().await.unwrap();
    assert!(page.text().await.unwrap().contains("<h1>Sign in</h1>"));
    let (status, location) =
        attacker_posts(&s, &a, "consent", &[("csrf", &a.csrf), ("decision", "allow"), ("scope", "user/*.cruds")]).await;
    assert_eq!(status, 400);
    assert!(!location.contains("code="), "the attacker never holds a code: {location}");
    // A form the attacker's page makes the victim's browser post (its CSRF value, the victim's
    // cookies) does nothing either.
    let flow = a.path.clone();
    let csrf = a.csrf.clone();
    let status = v.post_status(&format!("{flow}/consent"), &[("csrf", &csrf), ("decision", "allow")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let status = v.post_status(&format!("{flow}/patient"), &[("csrf", &csrf), ("patient", "pat-001")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A session the browser gets after starting a flow does not join it either.
    let mut late = Browser::new(&s);
    late.get(&s.authorize_url(&s.authorize_params(&client, "patient/*.rs", &random(32)))).await;
    assert!(late.is_sign_in());
    let flow_page = late.url.clone();
    desk_sign_in(&s, &mut late, "/ehr", "clinician").await;
    late.get(&flow_page).await;
    assert!(late.is_sign_in(), "only a sign-in inside the flow (or a session it started with) joins it");
    s.stop().await;
}

#[tokio::test]
async fn login_csrf_on_any_sign_in_form_signs_nobody_in() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let mut v = victim(&s).await;
    let session = v.cookie.clone();
    // The flow's sign-in form, auto-submitted by another site with the attacker's credentials
    // and the CSRF value of the attacker's own flow.
    let a = attacker_starts(&s, &client, "patient/*.rs").await;
    let r = s
        .http
        .post(format!("{}{}/signin", s.base, a.path))
        .header("cookie", format!("smartlaunch_session={}", session.clone().unwrap()))
        .form(&[("csrf", a.csrf.as_str()), ("username", "patient"), ("password", "patient")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.headers().get(SET_COOKIE).is_none(), "no session is set");
    // The other sign-in forms use a double-submit cookie another site cannot set.
    for form in ["/ehr/signin", "/portal/signin", "/account/signin"] {
        let r = s
            .http
            .post(format!("{}{form}", s.base))
            .form(&[("csrf", "from-another-site"), ("username", "patient"), ("password", "patient")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{form}");
        assert!(r.headers().get(SET_COOKIE).is_none(), "{form}");
    }
    // And the forms of signed-in pages need the page's CSRF value.
    for (path, form) in [
        ("/ehr/launch", vec![("csrf", "x"), ("client_id", client.as_str()), ("patient", "pat-001")]),
        ("/account/revoke", vec![("csrf", "x"), ("client_id", client.as_str())]),
        ("/auth/signout", vec![("csrf", "x")]),
        ("/launcher", vec![("csrf", "x"), ("launch_type", "ehr"), ("client_id", client.as_str())]),
        ("/apps", vec![("csrf", "x"), ("client_name", "Evil"), ("redirect_uris", "https://evil.example/cb")]),
    ] {
        let status = v.post_status(path, &form).await;
        assert!(status == StatusCode::BAD_REQUEST || status == StatusCode::FORBIDDEN, "{path}: {status}");
    }
    // The victim is still who they were.
    v.get(&format!("{}/ehr", s.base)).await;
    assert_eq!(v.cookie, session);
    assert!(v.page.contains("Susan Clark"), "{}", v.page);
    s.stop().await;
}

#[tokio::test]
async fn a_leaked_launch_id_completes_only_for_the_launching_user() {
    let s = Server::start().await;
    let client = ehr_app(&s, "Leaky App").await;
    // An EHR launch: the clinician's chart launches the app.
    let ehr = victim(&s).await;
    let csrf = {
        let mut chart = Browser::new(&s);
        chart.cookie = ehr.cookie.clone();
        chart.get(&format!("{}/ehr/patients/pat-001", s.base)).await;
        attr_after(&chart.page, "name=\"csrf\" value=\"").unwrap()
    };
    let form = [("csrf", csrf.as_str()), ("client_id", &client), ("patient", "pat-001")];
    let leaked = launch_of(&s, &launch_from(&s, &ehr, "/ehr/launch", &form).await);
    // An API launch that names the user (no skip sign-in).
    let body = json!({"client_id": client, "patient": "pat-002", "user": "clinician"});
    let created: Value = create_launch(&s, body, None).await.json().await.unwrap();
    let api_leaked = launch_of(&s, created["launch_url"].as_str().unwrap());
    for launch in [leaked, api_leaked] {
        // A browser with no session gets the sign-in page, not a code…
        let mut thief = Browser::new(&s);
        let mut params = s.authorize_params(&client, EHR_SCOPE, &random(32));
        params.push(("launch".into(), launch));
        let landing = thief.get(&s.authorize_url(&params)).await;
        assert!(matches!(landing, Landing::Page(_)) && thief.is_sign_in(), "{landing:?}");
        // …and nobody but the launch's user may sign in there.
        let landing = thief.sign_in("patient", "patient").await;
        assert!(matches!(landing, Landing::Page(_)), "{landing:?}");
        assert!(thief.page.contains("This launch is for another user") && thief.page.contains("clinician"));
        assert!(thief.cookie.is_none(), "no session was opened");
    }
    // A browser signed in as another user is refused at once (the app hears why).
    let mut patient = Browser::new(&s);
    desk_sign_in(&s, &mut patient, "/portal", "patient").await;
    let body = json!({"client_id": client, "patient": "pat-002", "user": "clinician"});
    let created: Value = create_launch(&s, body, None).await.json().await.unwrap();
    let mut params = s.authorize_params(&client, EHR_SCOPE, &random(32));
    params.push(("launch".into(), launch_of(&s, created["launch_url"].as_str().unwrap())));
    let Landing::App(url) = patient.get(&s.authorize_url(&params)).await else { panic!("{}", patient.page) };
    assert_eq!(query_of(&url)["error"], "invalid_request");
    s.stop().await;
}

#[tokio::test]
async fn open_sandbox_powers_are_off_beyond_loopback_without_an_admin_token() {
    // Listening on every interface, no admin token, no --open-sandbox.
    let s = Server::start_configured(|c| c.listen = "0.0.0.0:0".parse().unwrap()).await;
    assert_eq!(s.running.as_ref().unwrap().sandbox_mode, smartlaunch_auth::config::SandboxMode::Closed);
    let client = ehr_app(&s, "Closed App").await;
    let body =
        json!({"client_id": client, "patient": "pat-001", "user": "clinician", "options": {"skip_sign_in": true}});
    let r = create_launch(&s, body.clone(), None).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let error: Value = r.json().await.unwrap();
    assert!(error["error_description"].as_str().unwrap().contains("--admin-token"));
    let mut b = Browser::new(&s);
    b.get(&format!("{}/launcher", s.base)).await;
    assert!(b.page.contains("The launcher is off"));
    assert!(!b.page.contains("Recent launches"));
    let csrf = b.csrf();
    let form = [
        ("csrf", csrf.as_str()),
        ("launch_type", "ehr"),
        ("client_id", &client),
        ("user", "clinician"),
        ("patient", "pat-001"),
        ("skip_sign_in", "on"),
    ];
    b.post("/launcher", &form).await;
    assert!(!b.page.contains("id=\"launch_url\""), "no launch was created");
    assert!(b.page.contains("role=\"alert\">the launch API and the launcher are off"), "{}", b.page);
    s.stop().await;

    // The operator opens them explicitly; on loopback they are open by default.
    let s = Server::start_configured(|c| {
        c.listen = "0.0.0.0:0".parse().unwrap();
        c.open_sandbox = true;
    })
    .await;
    assert_eq!(s.running.as_ref().unwrap().sandbox_mode, smartlaunch_auth::config::SandboxMode::Open);
    s.stop().await;
    let s = Server::start().await;
    assert_eq!(s.running.as_ref().unwrap().sandbox_mode, smartlaunch_auth::config::SandboxMode::Open);
    s.stop().await;
}

#[tokio::test]
async fn the_registration_token_guards_every_way_to_register() {
    let s = Server::start_with(Some("reg-secret")).await;
    let mut b = Browser::new(&s);
    b.get(&format!("{}/launcher", s.base)).await;
    let csrf = b.csrf();
    let mut form = vec![
        ("csrf", csrf.clone()),
        ("launch_type", "ehr".to_string()),
        ("user", "clinician".to_string()),
        ("patient", "pat-001".to_string()),
        ("launch_uri", "http://127.0.0.1:9/adhoc/launch".to_string()),
        ("redirect_uri", "http://127.0.0.1:9/adhoc/callback".to_string()),
    ];
    let borrowed: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    b.post("/launcher", &borrowed).await;
    assert!(b.page.contains("requires an initial access token"), "{}", b.page);
    assert!(!b.page.contains("id=\"launch_url\""));
    form[0].1 = b.csrf();
    form.push(("registration_token", "reg-secret".into()));
    let borrowed: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    b.post("/launcher", &borrowed).await;
    assert!(b.page.contains("id=\"launch_url\""), "with the token the ad-hoc app is registered: {}", b.page);
    // The gallery and RFC 7591 want it too.
    b.get(&format!("{}/apps", s.base)).await;
    let csrf = b.csrf();
    let gallery = [("csrf", csrf.as_str()), ("client_name", "No Token"), ("redirect_uris", "http://127.0.0.1:9/cb")];
    b.post("/apps", &gallery).await;
    assert!(b.page.contains("initial access token"), "{}", b.page);
    let r = s
        .http
        .post(format!("{}/auth/register", s.base))
        .json(&json!({"client_name": "x", "redirect_uris": ["http://127.0.0.1:9/cb"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    s.stop().await;
}

/// One sign-in at `/ehr/signin` as the clinician, with a fresh form from the page.
async fn ehr_guess(s: &Server, password: &str) -> reqwest::Response {
    let r = s.http.get(format!("{}/ehr", s.base)).send().await.unwrap();
    let cookie = r.headers()[SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_owned();
    let csrf = attr_after(&r.text().await.unwrap(), "name=\"csrf\" value=\"").unwrap();
    s.http
        .post(format!("{}/ehr/signin", s.base))
        .header("cookie", cookie)
        .form(&[("csrf", csrf.as_str()), ("username", "clinician"), ("password", password)])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn password_guessing_is_throttled_with_growing_delays() {
    let s = Server::start().await;
    // Nine wrong guesses, each after the previous delay ran out: five are free, then the delays
    // double (1, 2, 4, 8 s).
    for i in 0..9 {
        s.clock.advance(300);
        let r = ehr_guess(&s, "wrong").await;
        assert_eq!(r.status(), StatusCode::OK, "failure {i} shows the form again");
    }
    // Now the account waits, even with the right password, and is told how long.
    let r = ehr_guess(&s, "clinician").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: i64 = r.headers()[RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((7..=8).contains(&wait), "the fourth delay is 8 s: {wait}");
    assert!(r.headers().get(SET_COOKIE).is_none());
    // The flow's sign-in is throttled the same way.
    let client = s.public_app().await;
    let mut f = Browser::new(&s);
    f.get(&s.authorize_url(&s.authorize_params(&client, "patient/*.rs", &random(32)))).await;
    f.sign_in("clinician", "clinician").await;
    assert!(f.page.contains("Too many failed sign-ins"), "{}", f.page);
    assert!(f.cookie.is_none());
    // The delay ends: never a permanent lockout.
    s.clock.advance(wait);
    assert_eq!(ehr_guess(&s, "clinician").await.status(), StatusCode::SEE_OTHER, "signed in after the delay");
    s.stop().await;
}

#[tokio::test]
async fn token_and_registration_floods_get_429_with_retry_after() {
    let s = Server::start_configured(|c| {
        c.rate_limits = RateLimits { authorize_per_second: 10, token_per_second: 2, registrations_per_minute: 2 };
    })
    .await;
    let mut statuses = Vec::new();
    for i in 0..3 {
        let r = s
            .http
            .post(format!("{}/auth/register", s.base))
            .json(&json!({"client_name": format!("Flood {i}"), "redirect_uris": ["http://127.0.0.1:9/cb"],
                          "token_endpoint_auth_method": "none"}))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(r.headers()[RETRY_AFTER].to_str().unwrap().parse::<u64>().unwrap() >= 1);
            let body: Value = r.json().await.unwrap();
            assert!(body["error_description"].as_str().unwrap().contains("too many registration requests"));
        }
    }
    assert_eq!(statuses, [201, 201, 429]);
    let mut limited = 0;
    for _ in 0..8 {
        let r = s.token(&[("grant_type", "authorization_code"), ("code", "guess"), ("client_id", "x")]).await;
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            limited += 1;
            assert!(r.headers().contains_key(RETRY_AFTER));
        }
    }
    assert!(limited >= 3, "a burst of 4, then 2 per second: {limited} of 8 refused");
    // Pages are not counted: only POSTs.
    for _ in 0..5 {
        assert_eq!(s.http.get(format!("{}/apps", s.base)).send().await.unwrap().status(), StatusCode::OK);
    }
    s.stop().await;
}

#[tokio::test]
async fn sixty_four_concurrent_sign_ins_queue_for_the_hashing_pool() {
    let server = Process::start(&[]);
    // 64 sign-ins at once, each hashed (the throttle lets them through): 64 names, 16 from each
    // of four loopback addresses.  An unknown name costs the same argon2id hash as a known one.
    let clients: Vec<reqwest::Client> = (2..6)
        .map(|last| {
            let from = std::net::IpAddr::from([127, 0, 0, last]);
            reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).local_address(from).build().unwrap()
        })
        .collect();
    let sign_in = |http: reqwest::Client, base: String, username: String| async move {
        let r = http.get(format!("{base}/ehr")).send().await.unwrap();
        let cookie = r.headers()[SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_owned();
        let csrf = attr_after(&r.text().await.unwrap(), "name=\"csrf\" value=\"").unwrap();
        let form = [("csrf", csrf.as_str()), ("username", username.as_str()), ("password", "guess")];
        http.post(format!("{base}/ehr/signin")).header("cookie", cookie).form(&form).send().await.unwrap().status()
    };
    // Warm up (the allocator's arenas, the dummy hash), then the baseline.
    assert_eq!(sign_in(clients[0].clone(), server.base.clone(), "warm-up".into()).await, StatusCode::OK);
    let before = server.peak_mib();
    let all: Vec<_> = (0..64)
        .map(|i| tokio::spawn(sign_in(clients[i % 4].clone(), server.base.clone(), format!("nobody-{i}"))))
        .collect();
    for t in all {
        assert_eq!(t.await.unwrap(), StatusCode::OK, "every sign-in is checked (and fails)");
    }
    let after = server.peak_mib();
    // One argon2id hash holds ~19 MiB: unbounded, 64 at once took 830 MiB or more.
    assert!(after - before < 150, "64 concurrent sign-ins grew the peak RSS from {before} to {after} MiB");
}

/// Review F1: a throttle that checks, then hashes, then counts lets a burst of concurrent
/// guesses through before the first failure is recorded.  Attempts are counted as they start.
#[tokio::test]
async fn concurrent_password_guesses_are_counted_before_they_are_checked() {
    let s = Server::start().await;
    // Each guess with its own fresh /ehr form (double-submit cookie + csrf), fetched first.
    let mut forms = Vec::new();
    for _ in 0..60 {
        let r = s.http.get(format!("{}/ehr", s.base)).send().await.unwrap();
        let cookie = r.headers()[SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_owned();
        let csrf = attr_after(&r.text().await.unwrap(), "name=\"csrf\" value=\"").unwrap();
        forms.push((cookie, csrf));
    }
    let guesses: Vec<_> = forms
        .into_iter()
        .enumerate()
        .map(|(i, (cookie, csrf))| {
            let (http, base) = (s.http.clone(), s.base.clone());
            tokio::spawn(async move {
                let password = format!("guess-{i}");
                let form = [("csrf", csrf.as_str()), ("username", "clinician"), ("password", password.as_str())];
                http.post(format!("{base}/ehr/signin"))
                    .header("cookie", cookie)
                    .form(&form)
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    let mut checked = 0;
    for g in guesses {
        // 200: the form again, "incorrect" (the password was hashed and compared); 429: throttled.
        if g.await.unwrap() == StatusCode::OK {
            checked += 1;
        }
    }
    assert!(checked <= 6, "{checked} of 60 concurrent guesses at one account were checked (5 are free)");
    s.stop().await;
}

/// Review F2: a DNS-rebinding page (its own name resolving to 127.0.0.1) reached the loopback
/// sandbox's powers: a clinician token with no sign-in and no consent, for its own redirect URI.
/// A sandbox open on loopback answers its powers only to loopback names.
#[tokio::test]
async fn a_foreign_host_does_not_get_the_loopback_powers() {
    let s = Server::start().await;
    let port = s.base.rsplit(':').next().unwrap().to_owned();
    let evil = format!("rebind.attacker.example:{port}");
    let app = s
        .http
        .post(format!("{}/auth/register", s.base))
        .header(HOST, &evil)
        .json(&json!({"client_name": "x", "redirect_uris": ["https://attacker.example/cb"],
                      "token_endpoint_auth_method": "none", "initiate_login_uri": "https://attacker.example/launch"}))
        .send()
        .await
        .unwrap();
    let client = app.json::<Value>().await.unwrap()["client_id"].as_str().unwrap().to_owned();
    let r = s
        .http
        .post(format!("{}/api/launches", s.base))
        .header(HOST, &evil)
        .json(&json!({"client_id": client, "user": "clinician", "patient": "pat-002",
                      "options": {"skip_sign_in": true, "skip_consent": true}}))
        .send()
        .await
        .unwrap();
    let status = r.status();
    if status == StatusCode::CREATED {
        // Show what the page gets: a code for a clinician's user/*.cruds, no user involved.
        let launch = r.json::<Value>().await.unwrap()["launch"].as_str().unwrap().to_owned();
        let verifier = random(32);
        let mut params = s.authorize_params(&client, "openid fhirUser launch user/*.cruds", &verifier);
        params
            .iter_mut()
            .filter(|(k, _)| k == "redirect_uri")
            .for_each(|(_, v)| *v = "https://attacker.example/cb".into());
        params.push(("launch".into(), launch));
        let r = s.http.get(s.authorize_url(&params)).header(HOST, &evil).send().await.unwrap();
        let location = r.headers().get(LOCATION).map(|l| l.to_str().unwrap().to_owned()).unwrap_or_default();
        panic!("a request for Host {evil} created a skip-sign-in launch and got {location}");
    }
    assert_eq!(status, StatusCode::FORBIDDEN);
    let error: Value = r.json().await.unwrap();
    assert!(error["error_description"].as_str().unwrap().contains("DNS rebinding"));
    // The launcher does not list the recent launches to that name either, but does to localhost.
    let page = s.http.get(format!("{}/launcher", s.base)).header(HOST, &evil).send().await.unwrap();
    assert!(!page.text().await.unwrap().contains("Recent launches"));
    let body = json!({"client_id": client, "user": "clinician", "patient": "pat-002"});
    let r = s.http.post(format!("{}/api/launches", s.base)).header(HOST, format!("localhost:{port}")).json(&body);
    assert_eq!(r.send().await.unwrap().status(), StatusCode::CREATED, "localhost is the sandbox's own name");
    s.stop().await;
}

/// Review F3: an update-as-create over another patient's deleted resource took over its id and
/// history (references from that patient's chart would resolve to it).  A deleted resource is
/// judged by the compartments it was deleted from, in PUT as in a transaction.
#[tokio::test]
async fn a_patient_cannot_take_over_another_patients_deleted_resource() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let doctor = token(&s, &client, "openid fhirUser user/*.cruds", "clinician").await;
    let patient = token(&s, &client, "openid fhirUser launch/patient patient/*.cruds", "patient").await;
    let r = send(&s, Method::DELETE, "Observation/obs-002-1-3", &doctor, None, None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let mut mine = observation("pat-001", 1.0);
    mine["id"] = json!("obs-002-1-3");
    // The same write in a transaction is refused (it checks the deleted version's compartment).
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": mine, "request": {"method": "PUT", "url": "Observation/obs-002-1-3"}}]});
    let (tx_status, _) = post_bundle(&s, &patient, &bundle).await;
    assert_eq!(tx_status, StatusCode::FORBIDDEN, "the transaction path refuses it");
    let r = send(&s, Method::PUT, "Observation/obs-002-1-3", &patient, Some(&mine), None).await;
    let status = r.status();
    assert_eq!(status, StatusCode::FORBIDDEN, "PUT over pat-002's deleted Observation: {status}");
    s.stop().await;
}

/// Review F4: a launch that names no user completed for whoever signed in, a patient user
/// included, with the launch's patient in context (pat-001's account got pat-002).  A patient
/// user shares only their own record; the launch API refuses a patient user with another's.
#[tokio::test]
async fn a_launch_without_a_user_does_not_give_a_patient_user_another_patient() {
    let s = Server::start().await;
    let client = ehr_app(&s, "Review").await;
    let r = create_launch(&s, json!({"client_id": client, "patient": "pat-002"}), None).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let launch = launch_of(&s, r.json::<Value>().await.unwrap()["launch_url"].as_str().unwrap());
    let verifier = random(32);
    let mut params = s.authorize_params(&client, "launch openid fhirUser patient/*.rs", &verifier);
    params.push(("launch".into(), launch));
    let mut b = Browser::new(&s);
    let mut landing = b.get(&s.authorize_url(&params)).await;
    if b.is_sign_in() {
        landing = b.sign_in("patient", "patient").await;
    }
    if b.is_consent() {
        landing = b.consent(true, None).await;
    }
    if let Landing::App(url) = &landing {
        if let Some(code) = query_of(url).get("code") {
            let t = redeem(&s, &client, code, &verifier).await;
            let read = s.read("Patient/pat-002", t["access_token"].as_str().unwrap()).await.status();
            panic!("the patient user (pat-001) got patient={} and reads Patient/pat-002: {read}", t["patient"]);
        }
    }
    let Landing::App(url) = landing else { panic!("{}", b.page) };
    assert_eq!(query_of(&url)["error"], "access_denied");
    let body = json!({"client_id": client, "user": "patient", "patient": "pat-002"});
    assert_eq!(create_launch(&s, body, None).await.status(), StatusCode::BAD_REQUEST);
    s.stop().await;
}

/// Review F6: each registration route had its own bucket and the launcher's ad-hoc apps none.
/// One budget per address now covers `/auth/register`, `/apps` and `/launcher`.
#[tokio::test]
async fn launcher_ad_hoc_apps_share_the_registration_rate_limit() {
    let s = Server::start().await;
    let mut registered = 0;
    for i in 0..40 {
        let r = s.http.get(format!("{}/launcher", s.base)).send().await.unwrap();
        let cookie = r.headers()[SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_owned();
        let csrf = attr_after(&r.text().await.unwrap(), "name=\"csrf\" value=\"").unwrap();
        let launch_uri = format!("http://127.0.0.1:9/launch-{i}");
        let form = [
            ("csrf", csrf.as_str()),
            ("launch_type", "ehr"),
            ("launch_uri", launch_uri.as_str()),
            ("redirect_uri", "http://127.0.0.1:9/cb"),
            ("user", "clinician"),
        ];
        let r = s.http.post(format!("{}/launcher", s.base)).header("cookie", cookie).form(&form).send().await.unwrap();
        if r.status() == StatusCode::OK && r.text().await.unwrap().contains("launch=") {
            registered += 1;
        }
    }
    assert!(registered <= 30, "{registered} ad-hoc apps registered from one address within a minute (limit 30)");
    s.stop().await;
}

/// Review F7: every authorization request may store a pending authorization (~9 KB with a
/// 4 KiB `state` and `nonce`) for 30 minutes; one address filled the database as fast as it
/// could send.  `/auth/authorize` is limited per address (10/s, burst 50).
#[tokio::test]
async fn authorize_floods_are_limited_per_address() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let mut params = s.authorize_params(&client, "openid fhirUser patient/*.rs", &random(32));
    params.push(("nonce".into(), "N".repeat(4096)));
    params.iter_mut().filter(|(k, _)| k == "state").for_each(|(_, v)| *v = "S".repeat(4096));
    let mut stored = 0;
    for _ in 0..300 {
        let r = s.http.post(format!("{}/auth/authorize", s.base)).form(&params).send().await.unwrap();
        if r.status() == StatusCode::SEE_OTHER && r.headers().contains_key(SET_COOKIE) {
            stored += 1;
        }
    }
    assert!(stored <= 60, "{stored} of 300 back-to-back authorization requests from one address were stored");
    s.stop().await;
}
