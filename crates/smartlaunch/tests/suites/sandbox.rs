//! Sandbox management (issue 9, item 6): the reset (the `/sandbox` button and `smartlaunch
//! reset`), the EHR's read-only FHIR data browser, the new-patient form, and the portal's
//! plain names for observations (item 7).

use reqwest::header::LOCATION;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use smartlaunch_auth::store::{ClientStore, LaunchStore, UserStore};
use smartlaunch_fhir::store::{Expected, ResourceStore};
use smartlaunch_store::Db;

use super::ehr_launch::{create_launch, desk_sign_in, ehr_app, launch_of};
use crate::support::*;

const USER_SCOPE: &str = "openid fhirUser user/*.cruds";

/// Opens the server's database beside it: what the pages can't show.
async fn db_of(s: &Server) -> Db {
    s.open_db().await
}

/// The `/sandbox` page in a fresh browser: its form token and cookie.
async fn sandbox_form(s: &Server) -> Browser<'_> {
    let mut b = Browser::new(s);
    b.get(&format!("{}/sandbox", s.base)).await;
    assert!(b.page.contains("Reset the sandbox"), "{}", b.page);
    b
}

async fn post_reset(b: &Browser<'_>, form: &[(&str, &str)]) -> reqwest::Response {
    let cookies = b.other_cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
    b.server
        .http
        .post(format!("{}/sandbox/reset", b.server.base))
        .header(reqwest::header::COOKIE, cookies)
        .form(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_reset_button_restores_the_demo_data_and_removes_apps_grants_launches_and_users() {
    let s = Server::start().await;
    let db = db_of(&s).await;
    let demo = smartlaunch_fhir::demo::generate();
    // An app with a grant and a token, a launch, a changed Patient, an added user, a session.
    let app = ehr_app(&s, "Reset Me").await;
    let old_token = token(&s, &app, USER_SCOPE, "clinician").await;
    let mut amy: Value = s.read("Patient/pat-001", &old_token).await.json().await.unwrap();
    amy["name"][0]["family"] = json!("Changed");
    assert_eq!(send(&s, Method::PUT, "Patient/pat-001", &old_token, Some(&amy), None).await.status(), 200);
    let created = create_launch(&s, json!({"client_id": app, "patient": "pat-001", "user": "clinician"}), None).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let launch_url = created.json::<Value>().await.unwrap()["launch_url"].as_str().unwrap().to_owned();
    let launch = launch_of(&s, &launch_url);
    // The server reads the launch (an authorization request that names it, from another
    // client): on SQLite it keeps the row in memory from then on.
    let with_launch = |client_id: &str| {
        let mut params = s.authorize_params(client_id, "launch openid", "v".repeat(43).as_str());
        params.push(("launch".into(), launch.clone()));
        s.authorize_url(&params)
    };
    let r = s.http.get(with_launch("no-such-client")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(smartlaunch::seed::add_user(&db, "visitor", "visitor-pw", "Patient/pat-002", "Visitor").await.unwrap());
    let mut ehr = Browser::new(&s);
    desk_sign_in(&s, &mut ehr, "/ehr", "clinician").await;
    assert!(ehr.page.contains("<h1>Patients</h1>"));
    let allowed = |r: &reqwest::Response| r.headers().contains_key(reqwest::header::ACCESS_CONTROL_ALLOW_ORIGIN);
    assert!(allowed(
        &s.http
            .get(format!("{}/Patient", s.fhir))
            .header(reqwest::header::ORIGIN, "http://127.0.0.1:9")
            .send()
            .await
            .unwrap()
    ));

    let b = sandbox_form(&s).await;
    let csrf = b.csrf();
    let r = post_reset(&b, &[("csrf", &csrf), ("confirm", "reset")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/sandbox?reset=done");
    let done = s.http.get(format!("{}/sandbox?reset=done", s.base)).send().await.unwrap().text().await.unwrap();
    assert!(done.contains("The sandbox was reset"));

    // The app's origin is no longer a CORS origin (the running server's list was reloaded).
    let r = s
        .http
        .get(format!("{}/Patient", s.fhir))
        .header(reqwest::header::ORIGIN, "http://127.0.0.1:9")
        .send()
        .await
        .unwrap();
    assert!(!allowed(&r), "the removed app's origin is not trusted any more");
    // The token no longer works, at once (the running server's revocation list).
    assert_eq!(s.read("Patient/pat-001", &old_token).await.status(), StatusCode::UNAUTHORIZED);
    // The app, its launch and the added user are gone; the demo users are back.
    assert!(db.clients().await.unwrap().is_empty());
    assert!(db.launch(&smartlaunch_auth::secrets::hash_token(&launch)).await.unwrap().is_none());
    let mut users: Vec<String> = db.users().await.unwrap().into_iter().map(|u| u.username).collect();
    users.sort();
    assert_eq!(users, ["clinician", "patient"]);
    // The data is exactly a fresh start's: every demo resource at version 1, nothing else.
    assert_eq!(db.count().await.unwrap(), demo.resources.len() as i64);
    let stored = db.read("Patient", "pat-001").await.unwrap().unwrap();
    assert_eq!(stored.version_id, 1);
    assert!(stored.json.contains("\"Shaw\""), "{}", stored.json);
    // Everyone was signed out; the demo users still sign in, and a new app works.
    ehr.get(&format!("{}/ehr", s.base)).await;
    assert!(ehr.page.contains("<h1>Sign in</h1>"));
    desk_sign_in(&s, &mut ehr, "/ehr", "clinician").await;
    assert!(ehr.page.contains("<h1>Patients</h1>"));
    let mut portal = Browser::new(&s);
    desk_sign_in(&s, &mut portal, "/portal", "patient").await;
    assert!(portal.page.contains("Amy Shaw"));
    let again = ehr_app(&s, "After Reset").await;
    let fresh = token(&s, &again, USER_SCOPE, "clinician").await;
    assert_eq!(s.read("Patient/pat-001", &fresh).await.status(), StatusCode::OK);
    // The old launch is unknown to the running server too (not kept in its memory).
    let r = s.http.get(with_launch(&again)).send().await.unwrap();
    let location = r.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(location.contains("error=invalid_request") && location.contains("names+no+launch"), "{location}");
    s.stop().await;
}

#[tokio::test]
async fn the_reset_needs_the_form_token_a_typed_confirmation_and_the_sandbox_powers() {
    let s = Server::start().await;
    let app = ehr_app(&s, "Stays").await;
    let db = db_of(&s).await;
    let b = sandbox_form(&s).await;
    let csrf = b.csrf();
    // No form token, or another one: refused.
    let r = post_reset(&Browser::new(&s), &[("csrf", &csrf), ("confirm", "reset")]).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("The form has expired"));
    let r = post_reset(&b, &[("csrf", "forged"), ("confirm", "reset")]).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // No confirmation, or a wrong one.
    for confirm in ["", "yes", "RESET!"] {
        let r = post_reset(&b, &[("csrf", &csrf), ("confirm", confirm)]).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert!(r.text().await.unwrap().contains("in the confirmation field to reset. Nothing was changed."));
    }
    // Another Host than this server's own (DNS rebinding): no powers.
    let cookies = b.other_cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
    let r = s
        .http
        .post(format!("{}/sandbox/reset", s.base))
        .header(reqwest::header::COOKIE, cookies)
        .header(reqwest::header::HOST, "attacker.example")
        .form(&[("csrf", csrf.as_str()), ("confirm", "reset")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(db.clients().await.unwrap().len(), 1, "nothing was reset");
    assert!(db.client(&app).await.unwrap().is_some());
    s.stop().await;

    // With an admin token: the form asks for it, and only the right one resets.
    let s = Server::start_configured(|c| c.admin_token = Some("admin-secret".into())).await;
    ehr_app(&s, "Stays").await;
    let b = sandbox_form(&s).await;
    assert!(b.page.contains("name=\"admin_token\""));
    let csrf = b.csrf();
    for token in ["", "wrong"] {
        let r = post_reset(&b, &[("csrf", &csrf), ("confirm", "reset"), ("admin_token", token)]).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(r.text().await.unwrap().contains("admin token"));
    }
    let db = db_of(&s).await;
    assert_eq!(db.clients().await.unwrap().len(), 1);
    let r = post_reset(&b, &[("csrf", &csrf), ("confirm", "reset"), ("admin_token", "admin-secret")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(db.clients().await.unwrap().is_empty());
    s.stop().await;

    // A closed sandbox (beyond loopback, no admin token): the page says how to enable it.
    let s = Server::start_configured(|c| c.listen = "0.0.0.0:0".parse().unwrap()).await;
    ehr_app(&s, "Stays").await;
    let mut b = Browser::new(&s);
    b.get(&format!("{}/sandbox", s.base)).await;
    assert!(b.page.contains("Resetting is off") && b.page.contains("--admin-token"), "{}", b.page);
    assert!(!b.page.contains("name=\"confirm\""));
    let csrf = attr_after(&b.page, "name=\"csrf\"").unwrap_or_default();
    let r = post_reset(&b, &[("csrf", &csrf), ("confirm", "reset")]).await;
    assert!(r.status() == StatusCode::FORBIDDEN || r.status() == StatusCode::BAD_REQUEST);
    assert_eq!(db_of(&s).await.clients().await.unwrap().len(), 1);
    s.stop().await;
}

#[tokio::test]
async fn the_command_line_reset_restores_a_stopped_sandbox_and_refuses_a_running_one() {
    let bin = env!("CARGO_BIN_EXE_smartlaunch");
    let mut s = Server::start().await;
    let app = ehr_app(&s, "CLI").await;
    // The server's database: its data directory, or its PostgreSQL database.
    let database: Vec<String> = s.database_url.iter().flat_map(|url| ["--database".to_owned(), url.clone()]).collect();
    // While the server runs: refused, nothing changed.
    let out = std::process::Command::new(bin)
        .args(["reset", "--yes", "--data"])
        .arg(&s.dir)
        .args(&database)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("a smartlaunch server is using") && stderr.contains("/sandbox"), "{stderr}");
    let dir = s.dir.clone();
    s.running.take().unwrap().stop().await;
    let db = s.open_db().await;
    assert!(db.client(&app).await.unwrap().is_some());
    db.put(&json!({"resourceType": "Patient", "id": "extra"}), Expected::Absent, "2026-01-01T00:00:00Z").await.unwrap();
    db.close().await;
    // Without a terminal to confirm on and without --yes: refused.
    let out = std::process::Command::new(bin)
        .args(["reset", "--data"])
        .arg(&dir)
        .args(&database)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--yes"));
    // Stopped, with --yes: reset.
    let out =
        std::process::Command::new(bin).args(["reset", "--yes", "--data"]).arg(&dir).args(&database).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 apps"));
    let db = s.open_db().await;
    assert!(db.clients().await.unwrap().is_empty());
    assert!(db.read("Patient", "extra").await.unwrap().is_none());
    assert_eq!(db.count().await.unwrap(), smartlaunch_fhir::demo::generate().resources.len() as i64);
    assert_eq!(db.users().await.unwrap().len(), 2);
    db.close().await;
    s.stop().await;
}

#[tokio::test]
async fn the_data_browser_shows_each_resources_json_to_clinicians_only() {
    let s = Server::start().await;
    // Signed out: the EHR's sign-in form, no data.
    let r = s.http.get(format!("{}/ehr/data?q=Shaw", s.base)).send().await.unwrap();
    let page = r.text().await.unwrap();
    assert!(page.contains("<h1>Sign in</h1>") && !page.contains("Amy Shaw"));
    // A patient user: the wrong-desk page.
    let mut patient = Browser::new(&s);
    desk_sign_in(&s, &mut patient, "/portal", "patient").await;
    for path in ["/ehr/data?q=Shaw", "/ehr/data/Patient/pat-001", "/ehr/data/Observation/obs-001-1-1"] {
        let r = s
            .http
            .get(format!("{}{path}", s.base))
            .header(reqwest::header::COOKIE, format!("smartlaunch_session={}", patient.cookie.clone().unwrap()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
        assert!(!r.text().await.unwrap().contains("obs-001-1-1"));
    }
    // A clinician: search, the compartment by type, a list, a resource's JSON.
    let mut ehr = Browser::new(&s);
    desk_sign_in(&s, &mut ehr, "/ehr", "clinician").await;
    assert!(ehr.page.contains("href=\"/ehr/data\""), "the patient list links to the data browser");
    ehr.get(&format!("{}/ehr/data?q=Shaw", s.base)).await;
    assert!(ehr.page.contains("<a href=\"/ehr/data/Patient/pat-001\">Amy Shaw</a>"), "{}", ehr.page);
    ehr.get(&format!("{}/ehr/data/Patient/pat-001", s.base)).await;
    let observations = smartlaunch_fhir::demo::generate()
        .resources
        .iter()
        .filter(|r| r["resourceType"] == "Observation" && r["subject"]["reference"] == "Patient/pat-001")
        .count();
    assert!(
        ehr.page.contains(&format!("?type=Observation\">Observation</a></td><td>{observations}</td>")),
        "{}",
        ehr.page
    );
    assert!(ehr.page.contains("&#34;family&#34;: &#34;Shaw&#34;"), "the Patient's own JSON, escaped: {}", ehr.page);
    ehr.get(&format!("{}/ehr/data/Patient/pat-001?type=Observation", s.base)).await;
    assert!(ehr.page.contains("href=\"/ehr/data/Observation/obs-001-1-1\""));
    ehr.get(&format!("{}/ehr/data/Observation/obs-001-1-1", s.base)).await;
    assert!(ehr.page.contains("&#34;resourceType&#34;: &#34;Observation&#34;"), "{}", ehr.page);
    assert!(ehr.page.contains("&#34;versionId&#34;"), "as the FHIR API serves it, with meta");
    // The chart links to the browser.
    ehr.get(&format!("{}/ehr/patients/pat-001", s.base)).await;
    assert!(ehr.page.contains("href=\"/ehr/data/Patient/pat-001\""));
    // Not found: a 404 page, never a 500.
    for path in [
        "/ehr/data/Patient/nobody",
        "/ehr/data/Foo/pat-001",
        "/ehr/data/Observation/bad_id!",
        "/ehr/data/Patient/pat-001/x",
    ] {
        let r = s
            .http
            .get(format!("{}{path}", s.base))
            .header(reqwest::header::COOKIE, format!("smartlaunch_session={}", ehr.cookie.clone().unwrap()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
    // Markup in a resource is shown as text.
    let db = db_of(&s).await;
    let evil = json!({"resourceType": "Observation", "id": "evil", "status": "final",
        "code": {"text": "<script>alert(1)</script>"}, "subject": {"reference": "Patient/pat-001"}});
    db.put(&evil, Expected::Absent, "2026-10-15T00:00:00Z").await.unwrap();
    for path in ["/ehr/data/Observation/evil", "/ehr/data/Patient/pat-001?type=Observation"] {
        ehr.get(&format!("{}{path}", s.base)).await;
        assert!(!ehr.page.contains("<script>alert"), "{path}");
        assert!(ehr.page.contains("&#60;script&#62;alert(1)&#60;/script&#62;"), "{path}: {}", ehr.page);
    }
    s.stop().await;
}

async fn post_new_patient(s: &Server, ehr: &Browser<'_>, form: &[(&str, &str)]) -> reqwest::Response {
    s.http
        .post(format!("{}/ehr/patients/new", s.base))
        .header(reqwest::header::COOKIE, format!("smartlaunch_session={}", ehr.cookie.clone().unwrap()))
        .form(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_new_patient_form_writes_a_patient_and_vitals_or_names_each_mistake() {
    let s = Server::start().await;
    let db = db_of(&s).await;
    let before = db.count().await.unwrap();
    let mut ehr = Browser::new(&s);
    desk_sign_in(&s, &mut ehr, "/ehr", "clinician").await;
    ehr.get(&format!("{}/ehr/patients/new", s.base)).await;
    assert!(ehr.page.contains("<h1>New patient</h1>") && ehr.page.contains("<label for=\"height\">"));
    let csrf = ehr.csrf();
    let valid = [
        ("csrf", csrf.as_str()),
        ("given", "Ada"),
        ("family", "Lovelace"),
        ("gender", "female"),
        ("birth_date", "1980-12-10"),
        ("height", "165"),
        ("weight", "61.5"),
        ("systolic", "118"),
        ("diastolic", "76"),
    ];
    // Out of range: a clear message, the form filled again, nothing written.
    let mut bad = valid.to_vec();
    bad[5] = ("height", "500");
    bad[7] = ("systolic", "70");
    let r = post_new_patient(&s, &ehr, &bad).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let page = r.text().await.unwrap();
    assert!(page.contains("Height must be between 40 and 250 cm."), "{page}");
    assert!(page.contains("The systolic blood pressure must be higher than the diastolic."));
    assert!(page.contains("value=\"Lovelace\""));
    assert_eq!(db.count().await.unwrap(), before, "nothing was written");
    // No form token: refused.
    let mut forged = valid.to_vec();
    forged[0] = ("csrf", "forged");
    assert_eq!(post_new_patient(&s, &ehr, &forged).await.status(), StatusCode::BAD_REQUEST);
    assert_eq!(db.count().await.unwrap(), before);
    // A patient user may not.
    let mut patient = Browser::new(&s);
    desk_sign_in(&s, &mut patient, "/portal", "patient").await;
    assert_eq!(post_new_patient(&s, &patient, &valid).await.status(), StatusCode::FORBIDDEN);
    // Valid: the Patient, an Encounter and four Observations, then the chart.
    let r = post_new_patient(&s, &ehr, &valid).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let chart = r.headers()[LOCATION].to_str().unwrap().to_owned();
    let id = chart.strip_prefix("/ehr/patients/").unwrap().to_owned();
    assert!(smartlaunch_fhir::is_valid_id(&id));
    assert_eq!(db.count().await.unwrap(), before + 6);
    ehr.get(&format!("{}{chart}", s.base)).await;
    assert!(ehr.page.contains("<h1>Ada Lovelace</h1>"), "{}", ehr.page);
    assert!(ehr.page.contains("Body mass index (BMI) [Ratio]</td><td>22.6 kg/m2"), "{}", ehr.page);
    assert!(ehr.page.contains("118 mmHg / 76 mmHg"));
    let patient: Value = serde_json::from_str(&db.read("Patient", &id).await.unwrap().unwrap().json).unwrap();
    assert_eq!(patient["generalPractitioner"][0]["reference"], "Practitioner/pract-001");
    s.stop().await;
}

#[tokio::test]
async fn the_portal_names_observations_in_plain_words_and_the_ehr_keeps_the_codes_names() {
    let s = Server::start().await;
    let mut portal = Browser::new(&s);
    desk_sign_in(&s, &mut portal, "/portal", "patient").await;
    assert!(portal.page.contains("<td>Body mass index</td>"), "{}", portal.page);
    assert!(portal.page.contains("<td>Weight</td>") && portal.page.contains("<td>Blood pressure</td>"));
    assert!(portal.page.contains("<td>Cholesterol</td>"));
    assert!(!portal.page.contains("[Ratio]") && !portal.page.contains("Mass/volume"));
    let mut ehr = Browser::new(&s);
    desk_sign_in(&s, &mut ehr, "/ehr", "clinician").await;
    ehr.get(&format!("{}/ehr/patients/pat-001", s.base)).await;
    assert!(ehr.page.contains("Body mass index (BMI) [Ratio]"));
    assert!(ehr.page.contains("Cholesterol [Mass/volume] in Serum or Plasma"));
    s.stop().await;
}
