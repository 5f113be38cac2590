//! FHIR Bulk Data export (issue 8, item 4; Bulk Data Access IG v2.0.0) over real HTTP: kick-off,
//! poll, manifest, download and cancel; what a token's scopes let it export (and what is
//! reported as left out); who may see a job; the limits; and jobs across a restart.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::header::{ACCEPT, CONTENT_LOCATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use smartlaunch_auth::signing_key::SigningKey;
use smartlaunch_fhir::demo;
use smartlaunch_fhir::export::{
    ExportJob, ExportLevel, ExportParams, ExportSpec, ExportStore, MAX_ACTIVE_JOBS_PER_CLIENT,
};

use crate::support::*;

const LABS: &str = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory";

/// A kick-off request as the IG has it: `Prefer: respond-async`, `Accept: application/fhir+json`.
async fn kickoff(s: &Server, token: &str, path: &str) -> reqwest::Response {
    s.http
        .get(format!("{}/{path}", s.fhir))
        .bearer_auth(token)
        .header("Prefer", "respond-async")
        .header(ACCEPT, "application/fhir+json")
        .send()
        .await
        .unwrap()
}

/// Kicks off and returns the status URL.
async fn start(s: &Server, token: &str, path: &str) -> String {
    let r = kickoff(s, token, path).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED, "{path}: {}", r.text().await.unwrap());
    let location = r.headers()[CONTENT_LOCATION].to_str().unwrap().to_owned();
    let id = location.strip_prefix(&format!("{}/$export-status/", s.fhir)).expect("a status URL of ours");
    assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "128 random bits: {id}");
    location
}

/// Polls a status URL until the manifest comes (every 202 carries X-Progress and Retry-After).
async fn manifest(s: &Server, token: &str, status_url: &str) -> Value {
    for _ in 0..600 {
        let r = s.http.get(status_url).bearer_auth(token).send().await.unwrap();
        match r.status() {
            StatusCode::ACCEPTED => {
                assert!(r.headers().contains_key("x-progress") && r.headers().contains_key(RETRY_AFTER));
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            StatusCode::OK => {
                assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
                let m: Value = r.json().await.unwrap();
                assert_eq!(m["requiresAccessToken"], true);
                assert!(m["transactionTime"].as_str().unwrap().ends_with('Z'));
                return m;
            }
            other => panic!("status {other}: {}", r.text().await.unwrap()),
        }
    }
    panic!("the export did not finish in 30 s")
}

/// Downloads every output file: type → resources; each file's line count is the manifest's.
async fn download(s: &Server, token: &str, m: &Value) -> BTreeMap<String, Vec<Value>> {
    let mut out = BTreeMap::new();
    for entry in m["output"].as_array().unwrap() {
        let lines = lines(s, token, entry["url"].as_str().unwrap()).await;
        assert_eq!(lines.len() as u64, entry["count"].as_u64().unwrap(), "{entry}");
        assert!(lines.iter().all(|r| r["resourceType"] == entry["type"]));
        assert!(out.insert(entry["type"].as_str().unwrap().to_owned(), lines).is_none(), "one file per type");
    }
    out
}

async fn lines(s: &Server, token: &str, url: &str) -> Vec<Value> {
    let r = s.http.get(url).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), 200, "{url}");
    assert_eq!(r.headers()[CONTENT_TYPE], "application/fhir+ndjson");
    let text = r.text().await.unwrap();
    assert!(text.is_empty() || text.ends_with('\n'));
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The OperationOutcomes of the manifest's `error` files: (type, severity) each.
async fn errors(s: &Server, token: &str, m: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in m["error"].as_array().unwrap() {
        assert_eq!(entry["type"], "OperationOutcome");
        for o in lines(s, token, entry["url"].as_str().unwrap()).await {
            let issue = &o["issue"][0];
            assert!(!issue["diagnostics"].as_str().unwrap().is_empty());
            out.push((
                issue["expression"][0].as_str().unwrap().to_owned(),
                issue["severity"].as_str().unwrap().to_owned(),
            ));
        }
    }
    out
}

fn ids(resources: &[Value]) -> BTreeSet<String> {
    resources.iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect()
}

fn demo_ids(keep: impl Fn(&Value) -> bool) -> BTreeSet<String> {
    oracle(keep)
}

fn of_type(ty: &'static str) -> impl Fn(&Value) -> bool {
    move |r: &Value| r["resourceType"] == ty
}

fn is_lab(r: &Value) -> bool {
    r["category"].as_array().into_iter().flatten().flat_map(|c| c["coding"].as_array().into_iter().flatten()).any(|c| {
        c["system"] == "http://terminology.hl7.org/CodeSystem/observation-category" && c["code"] == "laboratory"
    })
}

fn subject_in(r: &Value, patients: &[&str]) -> bool {
    let s = r["subject"]["reference"].as_str().or(r["patient"]["reference"].as_str()).unwrap_or_default();
    patients.iter().any(|p| s == format!("Patient/{p}"))
}

async fn outcome_of(r: reqwest::Response, status: StatusCode, says: &str) {
    assert_eq!(r.status(), status);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    let diagnostics = body["issue"][0]["diagnostics"].as_str().unwrap();
    assert!(diagnostics.contains(says), "`{diagnostics}` should say `{says}`");
}

#[tokio::test]
async fn a_system_export_delivers_every_resource_once_and_counts_it() {
    let s = Server::start().await;
    let t = s.backend_token("system/*.rs").await;
    let status = start(&s, &t, "$export").await;
    let m = manifest(&s, &t, &status).await;
    assert_eq!(m["request"], format!("{}/$export", s.fhir));
    assert_eq!(m["error"], json!([]), "every type is granted");
    let files = download(&s, &t, &m).await;
    let data = demo::generate().resources;
    let types: BTreeSet<&str> = data.iter().map(|r| r["resourceType"].as_str().unwrap()).collect();
    assert_eq!(files.keys().map(String::as_str).collect::<BTreeSet<_>>(), types);
    for (ty, resources) in &files {
        assert_eq!(ids(resources).len(), resources.len(), "{ty}: no duplicates");
        assert_eq!(ids(resources), demo_ids(|r| r["resourceType"] == ty.as_str()), "{ty}");
    }
    let group = &files["Group"][0];
    assert_eq!(
        (group["id"].as_str(), group["member"].as_array().unwrap().len()),
        (Some(demo::DEMO_GROUP), demo::PATIENT_COUNT)
    );
    s.stop().await;
}

#[tokio::test]
async fn type_since_and_type_filter_narrow_the_export() {
    let s = Server::start().await;
    let t = s.backend_token("system/*.cruds").await;
    let m = manifest(&s, &t, &start(&s, &t, "$export?_type=Patient,Observation&_outputFormat=ndjson").await).await;
    let files = download(&s, &t, &m).await;
    assert_eq!(files.keys().collect::<Vec<_>>(), ["Observation", "Patient"]);
    assert_eq!(ids(&files["Observation"]), demo_ids(of_type("Observation")));

    let filter = format!("Observation?category={}", urlencode(LABS));
    let m = manifest(
        &s,
        &t,
        &start(&s, &t, &format!("$export?_type=Observation&_typeFilter={}", urlencode(&filter))).await,
    )
    .await;
    let files = download(&s, &t, &m).await;
    assert_eq!(ids(&files["Observation"]), demo_ids(|r| r["resourceType"] == "Observation" && is_lab(r)));
    // Two queries are OR-ed; Patient, in _type without a filter, comes whole.
    let vitals = "Observation?category=vital-signs";
    let both = format!("{filter},{vitals}");
    let m = manifest(
        &s,
        &t,
        &start(&s, &t, &format!("$export?_type=Observation,Patient&_typeFilter={}", urlencode(&both))).await,
    )
    .await;
    let files = download(&s, &t, &m).await;
    assert_eq!(
        files["Observation"].len(),
        demo_ids(of_type("Observation")).len(),
        "labs and vital signs are all of them"
    );
    assert_eq!(ids(&files["Patient"]), demo_ids(of_type("Patient")));

    // _since: only what changed at or after the instant (one-second precision).
    s.clock.advance(10);
    let created: Value = send(&s, Method::POST, "Observation", &t, Some(&observation("pat-003", 61.0)), None)
        .await
        .json()
        .await
        .unwrap();
    let since = created["meta"]["lastUpdated"].as_str().unwrap();
    let m = manifest(
        &s,
        &t,
        &start(&s, &t, &format!("$export?_type=Observation,Patient&_since={}", urlencode(since))).await,
    )
    .await;
    let files = download(&s, &t, &m).await;
    assert_eq!(files.keys().collect::<Vec<_>>(), ["Observation"], "no Patient changed since; no empty file");
    assert_eq!(ids(&files["Observation"]), BTreeSet::from([created["id"].as_str().unwrap().to_owned()]));
    s.stop().await;
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn patient_and_group_exports_cover_their_patients_compartments() {
    let s = Server::start().await;
    let t = s.backend_token("system/*.cruds").await;
    let m = manifest(&s, &t, &start(&s, &t, "Patient/$export?_type=Patient,Condition,Practitioner").await).await;
    let files = download(&s, &t, &m).await;
    assert_eq!(ids(&files["Patient"]), demo_ids(of_type("Patient")));
    assert_eq!(ids(&files["Condition"]), demo_ids(of_type("Condition")));
    assert!(!files.contains_key("Practitioner"));
    assert_eq!(errors(&s, &t, &m).await, [("Practitioner".to_owned(), "warning".to_owned())], "no compartment");

    let group = json!({"resourceType": "Group", "type": "person", "actual": true, "member": [
        {"entity": {"reference": "Patient/pat-002"}}, {"entity": {"reference": "Patient/pat-005"}},
        {"entity": {"reference": "Patient/pat-007"}, "inactive": true}]});
    let r = send(&s, Method::POST, "Group", &t, Some(&group), None).await;
    let group_id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let m =
        manifest(&s, &t, &start(&s, &t, &format!("Group/{group_id}/$export?_type=Patient,Observation")).await).await;
    assert_eq!(m["request"], format!("{}/Group/{group_id}/$export?_type=Patient,Observation", s.fhir));
    let files = download(&s, &t, &m).await;
    assert_eq!(ids(&files["Patient"]), BTreeSet::from(["pat-002".to_owned(), "pat-005".to_owned()]), "active members");
    let members = ["pat-002", "pat-005"];
    assert_eq!(ids(&files["Observation"]), demo_ids(|r| r["resourceType"] == "Observation" && subject_in(r, &members)));

    let m = manifest(&s, &t, &start(&s, &t, &format!("Group/{}/$export", demo::DEMO_GROUP)).await).await;
    let files = download(&s, &t, &m).await;
    assert_eq!(ids(&files["Patient"]).len(), demo::PATIENT_COUNT, "the seeded Group holds every demo patient");
    assert!(!files.contains_key("Practitioner"), "a Group export holds its patients' compartments");
    outcome_of(kickoff(&s, &t, "Group/no-such-group/$export").await, StatusCode::NOT_FOUND, "does not exist").await;
    // The Group routes did not shadow the resource routes.
    assert_eq!(s.read(&format!("Group/{}", demo::DEMO_GROUP), &t).await.status(), 200);
    assert_eq!(s.read(&format!("Group/{}/_history", demo::DEMO_GROUP), &t).await.status(), 200);
    s.stop().await;
}

#[tokio::test]
async fn what_the_scopes_leave_out_is_reported_never_dropped_and_granular_scopes_apply() {
    let s = Server::start().await;
    let t =
        s.backend_token(&format!("system/Patient.rs system/Observation.rs?category={LABS} system/Condition.r")).await;
    let m = manifest(&s, &t, &start(&s, &t, "$export").await).await;
    let files = download(&s, &t, &m).await;
    assert_eq!(files.keys().collect::<Vec<_>>(), ["Observation", "Patient"]);
    assert_eq!(ids(&files["Observation"]), demo_ids(|r| r["resourceType"] == "Observation" && is_lab(r)));
    let data = demo::generate().resources;
    let left_out: BTreeSet<String> = data
        .iter()
        .map(|r| r["resourceType"].as_str().unwrap().to_owned())
        .filter(|ty| ty != "Patient" && ty != "Observation")
        .collect();
    let reported = errors(&s, &t, &m).await;
    assert!(reported.iter().all(|(_, severity)| severity == "error"));
    assert_eq!(
        reported.iter().map(|(ty, _)| ty.clone()).collect::<BTreeSet<_>>(),
        left_out,
        "Condition.r is no search"
    );

    // A type asked for is reported even when nothing of it is stored.
    let m = manifest(&s, &t, &start(&s, &t, "$export?_type=Patient,Device").await).await;
    assert_eq!(errors(&s, &t, &m).await, [("Device".to_owned(), "error".to_owned())]);
    s.stop().await;
}

#[tokio::test]
async fn only_backend_service_tokens_may_export() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let patient = token(&s, &client, "launch/patient patient/*.rs", "patient").await;
    outcome_of(kickoff(&s, &patient, "$export").await, StatusCode::FORBIDDEN, "backend services").await;
    outcome_of(kickoff(&s, &patient, "Patient/$export").await, StatusCode::FORBIDDEN, "backend services").await;
    let doctor = token(&s, &client, "user/*.rs", "clinician").await;
    outcome_of(kickoff(&s, &doctor, "Group/demo-patients/$export").await, StatusCode::FORBIDDEN, "backend services")
        .await;
    for scope in ["system/Observation.r", "system/*.cud"] {
        let t = s.backend_token(scope).await;
        outcome_of(kickoff(&s, &t, "$export").await, StatusCode::FORBIDDEN, "allows search").await;
    }
    let r = s.http.get(format!("{}/$export", s.fhir)).header("Prefer", "respond-async").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    s.stop().await;
}

#[tokio::test]
async fn the_kickoff_refuses_what_it_cannot_honour() {
    let s = Server::start().await;
    let t = s.backend_token("system/*.rs").await;
    let r = s.http.get(format!("{}/$export", s.fhir)).bearer_auth(&t).send().await.unwrap();
    outcome_of(r, StatusCode::BAD_REQUEST, "Prefer: respond-async").await;
    let r = s
        .http
        .get(format!("{}/$export", s.fhir))
        .bearer_auth(&t)
        .header("Prefer", "respond-async")
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    outcome_of(r, StatusCode::BAD_REQUEST, "application/fhir+json").await;
    let huge = vec!["Patient"; 2_000].join(",");
    let filters = vec!["Observation?status=final"; 21].join(",");
    let cases = [
        ("$export?_outputFormat=text/csv".to_owned(), "_outputFormat"),
        ("$export?_type=Patient,NotAType".to_owned(), "not a FHIR R4 resource type"),
        (format!("$export?_type={huge}"), "more than 1000 entries"),
        ("$export?_since=yesterday".to_owned(), "FHIR instant"),
        ("$export?_elements=id".to_owned(), "not supported"),
        ("$export?frobnicate=1".to_owned(), "unknown kick-off parameter"),
        (format!("$export?_typeFilter={}", urlencode("Observation?nope=1")), "unknown or unsupported"),
        (format!("$export?_typeFilter={}", urlencode("Observation?_include=Observation:patient")), "cannot filter"),
        (format!("$export?_type=Patient&_typeFilter={}", urlencode("Observation?status=final")), "_type leaves out"),
        (format!("$export?_typeFilter={}", urlencode(&filters)), "at most 20"),
    ];
    for (path, says) in cases {
        outcome_of(kickoff(&s, &t, &path).await, StatusCode::BAD_REQUEST, says).await;
    }
    // Prefer: handling=lenient ignores what is not implemented.
    let r = s
        .http
        .get(format!("{}/$export?_elements=id&frobnicate=1&_type=Patient", s.fhir))
        .bearer_auth(&t)
        .header("Prefer", "respond-async, handling=lenient")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED, "lenient, and no Accept header");
    // A POSTed Parameters resource works like the query.
    let parameters = json!({"resourceType": "Parameters", "parameter": [
        {"name": "_type", "valueString": "Patient"}, {"name": "_outputFormat", "valueString": "application/fhir+ndjson"}]});
    let r = s
        .http
        .post(format!("{}/Patient/$export", s.fhir))
        .bearer_auth(&t)
        .header("Prefer", "respond-async")
        .header(CONTENT_TYPE, "application/fhir+json")
        .body(parameters.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let status = r.headers()[CONTENT_LOCATION].to_str().unwrap().to_owned();
    let m = manifest(&s, &t, &status).await;
    assert_eq!(m["request"], format!("{}/Patient/$export", s.fhir));
    assert_eq!(download(&s, &t, &m).await.keys().collect::<Vec<_>>(), ["Patient"]);
    s.stop().await;
}

#[tokio::test]
async fn a_cancelled_job_is_gone_with_its_files() {
    let s = Server::start().await;
    let t = s.backend_token("system/*.rs").await;
    let status = start(&s, &t, "$export").await;
    let m = manifest(&s, &t, &status).await;
    let file = m["output"][0]["url"].as_str().unwrap().to_owned();
    let id = status.rsplit('/').next().unwrap().to_owned();
    assert!(s.dir.join("exports").join(&id).is_dir());
    let r = s.http.delete(&status).bearer_auth(&t).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    outcome_of(s.http.get(&status).bearer_auth(&t).send().await.unwrap(), StatusCode::NOT_FOUND, "no export job").await;
    assert_eq!(s.http.get(&file).bearer_auth(&t).send().await.unwrap().status(), 404);
    assert_eq!(s.http.delete(&status).bearer_auth(&t).send().await.unwrap().status(), 404);
    assert!(!s.dir.join("exports").join(&id).exists(), "the files are deleted");
    // Cancelled while it runs (or just after): gone either way.
    let status = start(&s, &t, "$export").await;
    assert_eq!(s.http.delete(&status).bearer_auth(&t).send().await.unwrap().status(), StatusCode::ACCEPTED);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(s.http.get(&status).bearer_auth(&t).send().await.unwrap().status(), 404);
    assert!(!s.dir.join("exports").join(status.rsplit('/').next().unwrap()).exists());
    s.stop().await;
}

#[tokio::test]
async fn another_client_can_neither_poll_nor_download_nor_cancel_a_job() {
    let s = Server::start().await;
    let owner = s.backend_token("system/*.rs").await;
    let other = s.backend_token("system/*.rs").await;
    let status = start(&s, &owner, "$export?_type=Patient").await;
    let m = manifest(&s, &owner, &status).await;
    let file = m["output"][0]["url"].as_str().unwrap().to_owned();
    outcome_of(s.http.get(&status).bearer_auth(&other).send().await.unwrap(), StatusCode::NOT_FOUND, "no export job")
        .await;
    assert_eq!(s.http.get(&file).bearer_auth(&other).send().await.unwrap().status(), 404);
    assert_eq!(s.http.delete(&status).bearer_auth(&other).send().await.unwrap().status(), 404);
    assert_eq!(s.http.get(&file).send().await.unwrap().status(), 401, "a bearer token is required");
    assert_eq!(s.http.get(&status).send().await.unwrap().status(), 401);
    // The owner still has it all.
    assert_eq!(manifest(&s, &owner, &status).await, m);
    assert_eq!(lines(&s, &owner, &file).await.len(), demo::PATIENT_COUNT);
    s.stop().await;
}

/// A client that is both an app and a backend service: a token from one of its app launches
/// (one patient's) is still that client's, but it may not poll, download or cancel the
/// client's Bulk Data export of every patient (a leaked patient token is not a backend token).
#[tokio::test]
async fn a_patient_token_of_the_exporting_client_can_neither_poll_nor_download_nor_cancel() {
    let s = Server::start().await;
    let key = SigningKey::generate(smartlaunch_auth::signing_key::KeyKind::Es384).unwrap();
    let registration = s
        .register(json!({
            "client_name": "App And Backend", "redirect_uris": [s.redirect_uri()],
            "grant_types": ["authorization_code", "client_credentials"],
            "token_endpoint_auth_method": "private_key_jwt", "jwks": key.public_jwks(),
            "scope": "system/*.rs launch/patient patient/*.rs",
        }))
        .await;
    let client = BackendClient {
        server: &s,
        client_id: registration["client_id"].as_str().unwrap().to_owned(),
        key,
        registration,
    };
    let system = client.token("system/*.rs").await;
    let status = start(&s, &system, "$export?_type=Patient").await;
    let m = manifest(&s, &system, &status).await;
    let file = m["output"][0]["url"].as_str().unwrap().to_owned();

    let (code, verifier) = launch(&s, &client.client_id, "launch/patient patient/*.rs", "patient", None).await;
    let r = s
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &s.redirect_uri()),
            ("code_verifier", &verifier),
            ("client_assertion_type", smartlaunch_auth::client_assertion::JWT_BEARER),
            ("client_assertion", &client.assertion()),
        ])
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let patient = r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
    assert_eq!(s.read("Patient?_count=1000", &patient).await.status(), 200, "a working patient token");

    outcome_of(s.http.get(&status).bearer_auth(&patient).send().await.unwrap(), StatusCode::FORBIDDEN, "backend").await;
    outcome_of(s.http.get(&file).bearer_auth(&patient).send().await.unwrap(), StatusCode::FORBIDDEN, "backend").await;
    outcome_of(s.http.delete(&status).bearer_auth(&patient).send().await.unwrap(), StatusCode::FORBIDDEN, "backend")
        .await;
    // The backend token still has it all.
    assert_eq!(lines(&s, &system, &file).await.len(), demo::PATIENT_COUNT);
    s.stop().await;
}

#[tokio::test]
async fn job_ids_and_file_names_cannot_reach_outside_the_job() {
    let s = Server::start().await;
    let t = s.backend_token("system/*.rs").await;
    let status = start(&s, &t, "$export?_type=Patient").await;
    manifest(&s, &t, &status).await;
    let id = status.rsplit('/').next().unwrap();
    let probes = [
        "$export-status/..%2F..%2Fsmartlaunch.db".to_owned(),
        "$export-status/%2e%2e".to_owned(),
        format!("$export-status/{}", id.to_uppercase()),
        format!("$export-file/{id}/..%2F..%2Fsmartlaunch.db"),
        format!("$export-file/{id}/%2e%2e%2fsmartlaunch.db"),
        format!("$export-file/{id}/Observation.ndjson"),
        format!("$export-file/{id}/smartlaunch.db"),
        "$export-file/..%2F..%2F/smartlaunch.db".to_owned(),
    ];
    for probe in probes {
        let r = s.http.get(format!("{}/{probe}", s.fhir)).bearer_auth(&t).send().await.unwrap();
        assert_eq!(r.status(), 404, "{probe}");
        assert!(!r.text().await.unwrap().contains("SQLite"), "{probe}");
    }
    assert_eq!(s.read(&format!("$export-file/{id}/Patient.ndjson"), &t).await.status(), 200);
    s.stop().await;
}

#[tokio::test]
async fn active_jobs_are_limited_per_client_and_expired_jobs_are_gone() {
    let s = Server::start().await;
    let client = s.backend_client("system/*.rs").await;
    let t = client.token("system/*.rs").await;
    // Jobs this client left queued (stored directly: they would finish too fast to count).
    let db = s.open_db().await;
    let spec = ExportSpec {
        level: ExportLevel::System,
        params: ExportParams::default(),
        scope: "system/*.rs".into(),
        members: vec![],
    };
    let now = unix_now();
    for n in 0..MAX_ACTIVE_JOBS_PER_CLIENT {
        let job = ExportJob::new(format!("{n:032x}"), client.client_id.clone(), "x".into(), spec.clone(), now);
        assert!(db.insert_export_job(&job, 100, 100).await.unwrap());
    }
    let r = kickoff(&s, &t, "$export").await;
    assert!(r.headers().contains_key(RETRY_AFTER));
    outcome_of(r, StatusCode::TOO_MANY_REQUESTS, "at most 5 per client").await;
    let other_client = s.backend_client("system/*.rs").await;
    let other = other_client.token("system/*.rs").await;
    let status = start(&s, &other, "$export?_type=Patient").await;
    for n in 0..MAX_ACTIVE_JOBS_PER_CLIENT {
        assert!(db.delete_export_job(&format!("{n:032x}")).await.unwrap());
    }
    db.close().await;
    let m = manifest(&s, &other, &status).await;
    let file = m["output"][0]["url"].as_str().unwrap().to_owned();
    // A finished job lives an hour.
    s.clock.advance(3_600);
    let other = token_an_hour_later(&other_client).await;
    outcome_of(s.http.get(&status).bearer_auth(&other).send().await.unwrap(), StatusCode::NOT_FOUND, "expired").await;
    assert_eq!(s.http.get(&file).bearer_auth(&other).send().await.unwrap().status(), 404);
    start(&s, &token_an_hour_later(&client).await, "$export?_type=Patient").await; // the slots are free again
    s.stop().await;
}

/// A token after the server's clock moved an hour on (the client assertion's times too).
async fn token_an_hour_later(client: &BackendClient<'_>) -> String {
    let now = unix_now() + 3_600;
    let assertion = client.assertion_with(json!({"iat": now, "exp": now + 240}), &[]);
    let r = client.token_with(&assertion, "system/*.rs").await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned()
}

/// The same registered client, on another server handle (the same data directory and address).
fn on<'a>(server: &'a Server, client_id: &str, key: SigningKey) -> BackendClient<'a> {
    BackendClient { server, client_id: client_id.to_owned(), key, registration: Value::Null }
}

/// A job the server was running when it stopped is run again at the next start, and its
/// snapshot is its transactionTime: what changed later is exported as it was then.
#[tokio::test]
async fn jobs_survive_a_restart_and_export_their_snapshot() {
    let dir = std::env::temp_dir().join(format!("smartlaunch-it-restart-{}", random(8)));
    // The same address both times, so that the client's tokens are for the same FHIR base.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let configure = |d: std::path::PathBuf| {
        move |s: &mut smartlaunch::Settings| {
            s.data_dir = d;
            s.listen = format!("127.0.0.1:{port}").parse().unwrap();
        }
    };
    let mut a = Server::start_configured(configure(dir.clone())).await;
    a.dir = dir.clone();
    let BackendClient { client_id, key, .. } = a.backend_client("system/*.cruds").await;
    let client = on(&a, &client_id, key);
    let t = client.token("system/*.cruds").await;
    let kicked = start(&a, &t, "$export?_type=Patient").await;
    let kicked_id = kicked.rsplit('/').next().unwrap().to_owned();
    // A job left running by a crash: stored active, with a partial file.
    let db = a.open_db().await;
    let spec = ExportSpec {
        level: ExportLevel::System,
        params: ExportParams { types: Some(vec!["Observation".into(), "Condition".into()]), ..Default::default() },
        scope: "system/*.rs".into(),
        members: vec![],
    };
    let now = unix_now();
    let crashed = ExportJob::new("c".repeat(32), client.client_id.clone(), format!("{}/$export", a.fhir), spec, now);
    assert!(db.insert_export_job(&crashed, 100, 100).await.unwrap());
    db.close().await;
    std::fs::create_dir_all(dir.join("exports").join(&crashed.id)).unwrap();
    std::fs::write(dir.join("exports").join(&crashed.id).join("Observation.ndjson"), "{\"half\":").unwrap();
    std::fs::create_dir_all(dir.join("exports").join("f".repeat(32))).unwrap();
    // Changes after its transactionTime.
    a.clock.advance(10);
    let data = demo::generate().resources;
    let first_obs = data.iter().find(|r| r["resourceType"] == "Observation").unwrap().clone();
    let mut amended = first_obs.clone();
    amended["status"] = json!("amended");
    let path = format!("Observation/{}", first_obs["id"].as_str().unwrap());
    assert_eq!(send(&a, Method::PUT, &path, &t, Some(&amended), None).await.status(), 200);
    let condition = data.iter().find(|r| r["resourceType"] == "Condition").unwrap();
    let condition_path = format!("Condition/{}", condition["id"].as_str().unwrap());
    assert_eq!(send(&a, Method::DELETE, &condition_path, &t, None, None).await.status(), 204);
    assert_eq!(send(&a, Method::POST, "Observation", &t, Some(&observation("pat-001", 1.0)), None).await.status(), 201);
    let BackendClient { key, .. } = client;
    a.running.take().unwrap().stop().await;

    let mut b = Server::start_configured(configure(dir.clone())).await;
    b.dir = dir.clone();
    b.owns_database = true;
    let client = on(&b, &client_id, key);
    let t = client.token("system/*.rs").await;
    let status = format!("{}/$export-status/{}", b.fhir, crashed.id);
    let m = manifest(&b, &t, &status).await;
    assert_eq!(m["transactionTime"], crashed.transaction_time);
    let files = download(&b, &t, &m).await;
    assert_eq!(ids(&files["Observation"]), demo_ids(of_type("Observation")), "not the one created later");
    let exported = files["Observation"].iter().find(|o| o["id"] == first_obs["id"]).unwrap();
    assert_eq!(
        (exported["status"].clone(), exported["meta"]["versionId"].clone()),
        (first_obs["status"].clone(), json!("1"))
    );
    assert_eq!(ids(&files["Condition"]), demo_ids(of_type("Condition")), "deleted after: still in the snapshot");
    // The job kicked off before the stop is complete too, and the orphan directory is gone.
    let m = manifest(&b, &t, &format!("{}/$export-status/{kicked_id}", b.fhir)).await;
    assert_eq!(download(&b, &t, &m).await["Patient"].len(), demo::PATIENT_COUNT);
    assert!(!dir.join("exports").join("f".repeat(32)).exists());
    b.stop().await;
}

#[tokio::test]
async fn the_capability_statement_advertises_the_export_operations() {
    let s = Server::start().await;
    let cs: Value = s.http.get(format!("{}/metadata", s.fhir)).send().await.unwrap().json().await.unwrap();
    assert_eq!(cs["instantiates"], json!(["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"]));
    let rest = &cs["rest"][0];
    assert_eq!(
        rest["operation"],
        json!([{"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"}])
    );
    let operation =
        |ty: &str| rest["resource"].as_array().unwrap().iter().find(|r| r["type"] == ty).unwrap()["operation"].clone();
    assert_eq!(
        operation("Patient"),
        json!([{"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"}])
    );
    assert_eq!(
        operation("Group"),
        json!([{"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"}])
    );
    assert_eq!(operation("Observation"), Value::Null);
    s.stop().await;
}
