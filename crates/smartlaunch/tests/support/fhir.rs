//! FHIR helpers shared by the suites: tokens for a scope and user, requests, and oracles
//! computed from the demo data set itself.

use std::collections::BTreeSet;

use reqwest::header::CONTENT_TYPE;
use reqwest::StatusCode;
use serde_json::{json, Value};
use smartlaunch_fhir::demo;

use super::{launch, redeem, Server};

/// An access token for `scope`, from a standalone launch as `user` (a clinician asking for
/// `patient/` scopes picks pat-001).
pub async fn token(s: &Server, client: &str, scope: &str, user: &str) -> String {
    let patient = (user == "clinician" && scope.contains("patient/")).then_some("pat-001");
    let (code, verifier) = launch(s, client, scope, user, patient).await;
    redeem(s, client, &code, &verifier).await["access_token"].as_str().unwrap().to_owned()
}

pub fn observation(patient: &str, value: f64) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "code": { "coding": [{ "system": "http://loinc.org", "code": "8867-4" }] },
        "subject": { "reference": format!("Patient/{patient}") },
        "valueQuantity": { "value": value, "unit": "/min" }
    })
}

pub async fn send(
    s: &Server,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<&Value>,
    if_match: Option<&str>,
) -> reqwest::Response {
    let mut r = s.http.request(method, format!("{}/{path}", s.fhir)).bearer_auth(token);
    if let Some(b) = body {
        r = r.header(CONTENT_TYPE, "application/fhir+json").body(b.to_string());
    }
    if let Some(m) = if_match {
        r = r.header("If-Match", m);
    }
    r.send().await.unwrap()
}

pub async fn search(s: &Server, token: &str, query: &str) -> (StatusCode, Value) {
    let r = s.http.get(format!("{}/{query}", s.fhir)).bearer_auth(token).send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// All ids of a search, following `next` links.
pub async fn all_ids(s: &Server, token: &str, query: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let mut url = format!("{}/{query}", s.fhir);
    loop {
        let bundle: Value = s.http.get(&url).bearer_auth(token).send().await.unwrap().json().await.unwrap();
        assert_eq!(bundle["resourceType"], "Bundle", "{bundle}");
        for e in bundle["entry"].as_array().into_iter().flatten() {
            assert!(ids.insert(e["resource"]["id"].as_str().unwrap().to_owned()), "no duplicates across pages");
        }
        match bundle["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next") {
            Some(next) => url = next["url"].as_str().unwrap().to_owned(),
            None => return ids,
        }
    }
}

pub fn oracle(keep: impl Fn(&Value) -> bool) -> BTreeSet<String> {
    demo::generate().resources.iter().filter(|r| keep(r)).map(|r| r["id"].as_str().unwrap().to_owned()).collect()
}

pub fn is_obs_of(r: &Value, patient: &str) -> bool {
    r["resourceType"] == "Observation" && r["subject"]["reference"] == format!("Patient/{patient}")
}

pub fn has_code(r: &Value, field: &str, code: &str) -> bool {
    let v = &r[field];
    let codings = if v.is_array() {
        v.as_array().unwrap().iter().flat_map(|c| c["coding"].as_array().unwrap().clone()).collect::<Vec<_>>()
    } else {
        v["coding"].as_array().cloned().unwrap_or_default()
    };
    codings.iter().any(|c| c["code"] == code)
}

/// Posts a batch or transaction Bundle to the FHIR base.
pub async fn post_bundle(s: &Server, token: &str, bundle: &Value) -> (StatusCode, Value) {
    let r = s
        .http
        .post(&s.fhir)
        .bearer_auth(token)
        .header(CONTENT_TYPE, "application/fhir+json")
        .body(bundle.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap())
}
