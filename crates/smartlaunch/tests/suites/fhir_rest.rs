//! The FHIR REST interactions (issue 3 item 1) and their SMART enforcement (checklist 77–81).

use reqwest::header::{CONTENT_TYPE, ETAG, LAST_MODIFIED, LOCATION};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::*;

#[tokio::test]
async fn create_read_update_vread_history_delete() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let t = token(&s, &client, "user/*.cruds", "clinician").await;
    use reqwest::Method as M;

    let r = send(&s, M::POST, "Observation", &t, Some(&observation("pat-002", 60.0)), None).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()[ETAG], "W/\"1\"");
    assert!(r.headers().contains_key(LAST_MODIFIED));
    let location = r.headers()[LOCATION].to_str().unwrap().to_owned();
    let created: Value = r.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("{}/Observation/{id}/_history/1", s.fhir));
    assert_eq!(created["meta"]["versionId"], "1");

    let r = send(&s, M::GET, &format!("Observation/{id}"), &t, None, None).await;
    assert_eq!(r.status(), 200);
    let mut current: Value = r.json().await.unwrap();
    current["valueQuantity"]["value"] = json!(62.0);
    let r = send(&s, M::PUT, &format!("Observation/{id}"), &t, Some(&current), None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()[ETAG], "W/\"2\"");
    // If-Match: a stale version is refused, the current one accepted.
    current["valueQuantity"]["value"] = json!(64.0);
    let r = send(&s, M::PUT, &format!("Observation/{id}"), &t, Some(&current), Some("W/\"1\"")).await;
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    let oo: Value = r.json().await.unwrap();
    assert_eq!(oo["resourceType"], "OperationOutcome");
    let r = send(&s, M::PUT, &format!("Observation/{id}"), &t, Some(&current), Some("W/\"2\"")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()[ETAG], "W/\"3\"");

    let v1: Value =
        send(&s, M::GET, &format!("Observation/{id}/_history/1"), &t, None, None).await.json().await.unwrap();
    assert_eq!(v1["valueQuantity"]["value"], 60.0);
    let r = send(&s, M::GET, &format!("Observation/{id}/_history/9"), &t, None, None).await;
    assert_eq!(r.status(), 404);

    let r = send(&s, M::DELETE, &format!("Observation/{id}"), &t, None, Some("W/\"1\"")).await;
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    let r = send(&s, M::DELETE, &format!("Observation/{id}"), &t, None, None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(send(&s, M::GET, &format!("Observation/{id}"), &t, None, None).await.status(), StatusCode::GONE);
    assert_eq!(send(&s, M::GET, &format!("Observation/{id}/_history/1"), &t, None, None).await.status(), 200);
    let history: Value =
        send(&s, M::GET, &format!("Observation/{id}/_history"), &t, None, None).await.json().await.unwrap();
    assert_eq!(history["type"], "history");
    let methods: Vec<&str> =
        history["entry"].as_array().unwrap().iter().map(|e| e["request"]["method"].as_str().unwrap()).collect();
    assert_eq!(methods, ["DELETE", "PUT", "PUT", "POST"], "newest first");
    assert_eq!(history["entry"][1]["resource"]["meta"]["versionId"], "3");
    // Deleting again is harmless; a deleted resource can be re-created with PUT.
    assert_eq!(
        send(&s, M::DELETE, &format!("Observation/{id}"), &t, None, None).await.status(),
        StatusCode::NO_CONTENT
    );
    let r = send(&s, M::PUT, &format!("Observation/{id}"), &t, Some(&current), None).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()[ETAG], "W/\"5\"", "create 1, updates 2-3, delete 4 (the second delete adds nothing)");

    // Update-as-create with a client-chosen id.
    let mut fresh = observation("pat-003", 70.0);
    fresh["id"] = json!("client-chosen-1");
    let r = send(&s, M::PUT, "Observation/client-chosen-1", &t, Some(&fresh), None).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = send(
        &s,
        M::PUT,
        "Observation/never-existed",
        &t,
        Some(&json!({"resourceType": "Observation", "id": "never-existed"})),
        Some("W/\"1\""),
    )
    .await;
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    s.stop().await;
}

#[tokio::test]
async fn invalid_resources_get_a_400_operation_outcome() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let t = token(&s, &client, "user/*.cruds", "clinician").await;
    let post = |path: &str, body: &str, ct: &str| {
        let (http, url, t) = (s.http.clone(), format!("{}/{path}", s.fhir), t.clone());
        let (body, ct) = (body.to_owned(), ct.to_owned());
        async move { http.post(url).bearer_auth(t).header(CONTENT_TYPE, ct).body(body).send().await.unwrap() }
    };
    for (body, why) in [
        ("{", "not JSON"),
        ("[1]", "JSON object"),
        ("{}", "no resourceType"),
        (r#"{"resourceType":"Patient"}"#, "URL names Observation"),
        (r#"{"resourceType":"Observation","id":"bad id!"}"#, "not a valid FHIR id"),
    ] {
        let r = post("Observation", body, "application/fhir+json").await;
        assert_eq!(r.status(), 400, "{why}");
        let oo: Value = r.json().await.unwrap();
        assert!(oo["issue"][0]["diagnostics"].as_str().unwrap().contains(why), "{oo}");
    }
    assert_eq!(
        post("Observation", r#"{"resourceType":"Observation"}"#, "text/plain").await.status(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    assert_eq!(
        post("Observation", r#"{"resourceType":"Observation"}"#, "application/json").await.status(),
        StatusCode::CREATED
    );
    assert_eq!(post("Foo", r#"{"resourceType":"Foo"}"#, "application/fhir+json").await.status(), 404);
    // Served as application/fhir+json, or as application/json to a client that asks for it.
    let served = |accept: &'static str| {
        let (http, url, t) = (s.http.clone(), format!("{}/Patient/pat-001", s.fhir), t.clone());
        async move {
            let r = http.get(url).bearer_auth(t).header("Accept", accept).send().await.unwrap();
            r.headers()[CONTENT_TYPE].to_str().unwrap().to_owned()
        }
    };
    assert!(served("application/fhir+json").await.starts_with("application/fhir+json"));
    assert!(served("*/*").await.starts_with("application/fhir+json"));
    assert!(served("application/json").await.starts_with("application/json"));
    let put = |path: &str, body: Value, if_match: Option<&str>| {
        let (http, url, t) = (s.http.clone(), format!("{}/{path}", s.fhir), t.clone());
        let if_match = if_match.map(str::to_owned);
        async move {
            let mut r =
                http.put(url).bearer_auth(t).header(CONTENT_TYPE, "application/fhir+json").body(body.to_string());
            if let Some(m) = if_match {
                r = r.header("If-Match", m);
            }
            r.send().await.unwrap().status()
        }
    };
    assert_eq!(put("Observation/a", json!({"resourceType": "Observation", "id": "b"}), None).await, 400);
    assert_eq!(put("Observation/a", json!({"resourceType": "Observation"}), None).await, 400);
    assert_eq!(put("Observation/a", json!({"resourceType": "Observation", "id": "a"}), Some("nonsense")).await, 400);
    s.stop().await;
}

#[tokio::test]
async fn writes_are_enforced_per_scope_letter_and_compartment() {
    let s = Server::start().await;
    let client = s.public_app().await;
    use reqwest::Method as M;
    // patient/Observation.c: create for the context patient only, and no read.
    let create_only = token(&s, &client, "launch/patient patient/Observation.c", "patient").await;
    let r = send(&s, M::POST, "Observation", &create_only, Some(&observation("pat-001", 70.0)), None).await;
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    assert_eq!(
        send(&s, M::POST, "Observation", &create_only, Some(&observation("pat-002", 70.0)), None).await.status(),
        403
    );
    assert_eq!(
        send(&s, M::GET, &format!("Observation/{id}"), &create_only, None, None).await.status(),
        403,
        "write never implies read"
    );
    assert_eq!(
        send(
            &s,
            M::POST,
            "Condition",
            &create_only,
            Some(&json!({"resourceType": "Condition", "subject": {"reference": "Patient/pat-001"}})),
            None
        )
        .await
        .status(),
        403
    );

    // patient/*.rs: reads only.
    let read_only = token(&s, &client, "launch/patient patient/*.rs", "patient").await;
    assert_eq!(send(&s, M::GET, &format!("Observation/{id}"), &read_only, None, None).await.status(), 200);
    assert_eq!(
        send(&s, M::POST, "Observation", &read_only, Some(&observation("pat-001", 1.0)), None).await.status(),
        403
    );
    let mut own: Value =
        send(&s, M::GET, "Observation/obs-001-1-1", &read_only, None, None).await.json().await.unwrap();
    assert_eq!(send(&s, M::PUT, "Observation/obs-001-1-1", &read_only, Some(&own), None).await.status(), 403);
    assert_eq!(send(&s, M::DELETE, "Observation/obs-001-1-1", &read_only, None, None).await.status(), 403);

    // patient/*.cruds: own compartment only, and nothing may be moved out of it.
    let full = token(&s, &client, "launch/patient patient/*.cruds", "patient").await;
    own["status"] = json!("amended");
    assert_eq!(send(&s, M::PUT, "Observation/obs-001-1-1", &full, Some(&own), None).await.status(), 200);
    own["subject"] = json!({"reference": "Patient/pat-002"});
    assert_eq!(send(&s, M::PUT, "Observation/obs-001-1-1", &full, Some(&own), None).await.status(), 403);
    let mut other: Value = json!({"resourceType": "Observation", "id": "obs-002-1-1", "status": "final", "subject": {"reference": "Patient/pat-001"}});
    assert_eq!(
        send(&s, M::PUT, "Observation/obs-002-1-1", &full, Some(&other), None).await.status(),
        403,
        "another patient's resource"
    );
    other["id"] = json!("obs-002-1-1");
    assert_eq!(send(&s, M::DELETE, "Observation/obs-002-1-1", &full, None, None).await.status(), 403);
    assert_eq!(send(&s, M::GET, "Observation/obs-002-1-1/_history", &full, None, None).await.status(), 403);
    assert_eq!(send(&s, M::GET, "Observation/obs-002-1-1/_history/1", &full, None, None).await.status(), 403);
    assert_eq!(send(&s, M::DELETE, &format!("Observation/{id}"), &full, None, None).await.status(), 204);
    assert_eq!(
        send(&s, M::POST, "Practitioner", &full, Some(&json!({"resourceType": "Practitioner"})), None).await.status(),
        403,
        "outside every patient compartment"
    );

    // A patient user's user/ scopes follow their own compartment; a practitioner's reach all.
    let patient_user = token(&s, &client, "user/*.cruds", "patient").await;
    assert_eq!(
        send(&s, M::POST, "Observation", &patient_user, Some(&observation("pat-002", 1.0)), None).await.status(),
        403
    );
    assert_eq!(
        send(&s, M::POST, "Observation", &patient_user, Some(&observation("pat-001", 1.0)), None).await.status(),
        201
    );
    let clinician = token(&s, &client, "user/*.cruds", "clinician").await;
    assert_eq!(
        send(&s, M::POST, "Practitioner", &clinician, Some(&json!({"resourceType": "Practitioner"})), None)
            .await
            .status(),
        201
    );
    assert_eq!(send(&s, M::DELETE, "Observation/obs-002-1-1", &clinician, None, None).await.status(), 204);
    s.stop().await;
}

#[tokio::test]
async fn conditional_create_with_if_none_exist() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let t = token(&s, &client, "user/*.cruds", "clinician").await;
    let patient = json!({"resourceType": "Patient", "identifier": [{"system": "urn:test:mrn", "value": "77"}]});
    let post = |token: String, condition: Option<&'static str>| {
        let (http, url, body) = (s.http.clone(), format!("{}/Patient", s.fhir), patient.to_string());
        async move {
            let mut r = http.post(url).bearer_auth(token).header(CONTENT_TYPE, "application/fhir+json").body(body);
            if let Some(c) = condition {
                r = r.header("If-None-Exist", c);
            }
            r.send().await.unwrap()
        }
    };
    let first = post(t.clone(), Some("identifier=urn:test:mrn|77")).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let id = first.json::<Value>().await.unwrap()["id"].clone();
    let again = post(t.clone(), Some("identifier=urn:test:mrn|77")).await;
    assert_eq!(again.status(), StatusCode::OK, "no second copy");
    assert_eq!(again.json::<Value>().await.unwrap()["id"], id);
    assert_eq!(post(t.clone(), None).await.status(), StatusCode::CREATED);
    assert_eq!(
        post(t.clone(), Some("identifier=urn:test:mrn|77")).await.status(),
        StatusCode::PRECONDITION_FAILED,
        "two matches"
    );
    assert_eq!(post(t.clone(), Some("nonsense=1")).await.status(), StatusCode::BAD_REQUEST);
    let no_search = token(&s, &client, "user/Patient.c", "clinician").await;
    assert_eq!(post(no_search, Some("identifier=urn:test:mrn|77")).await.status(), StatusCode::FORBIDDEN);
    s.stop().await;
}

async fn total(s: &Server, token: &str, query: &str) -> u64 {
    let b: Value =
        s.http.get(format!("{}/{query}", s.fhir)).bearer_auth(token).send().await.unwrap().json().await.unwrap();
    b["total"].as_u64().unwrap()
}

#[tokio::test]
async fn transactions_resolve_references_and_are_all_or_nothing() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let t = token(&s, &client, "user/*.cruds", "clinician").await;
    let bundle = json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:6b1e0c1a-0000-4000-8000-000000000001",
             "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:tx", "value": "1"}], "name": [{"family": "Transact"}]},
             "request": {"method": "POST", "url": "Patient"}},
            {"fullUrl": "urn:uuid:6b1e0c1a-0000-4000-8000-000000000002",
             "resource": {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
                          "subject": {"reference": "urn:uuid:6b1e0c1a-0000-4000-8000-000000000001"}},
             "request": {"method": "POST", "url": "Encounter"}},
            {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                          "subject": {"reference": "urn:uuid:6b1e0c1a-0000-4000-8000-000000000001"},
                          "encounter": {"reference": "urn:uuid:6b1e0c1a-0000-4000-8000-000000000002"}},
             "request": {"method": "POST", "url": "Observation"}},
            {"resource": {"resourceType": "Practitioner", "id": "tx-dr", "name": [{"family": "Tx"}]},
             "request": {"method": "PUT", "url": "Practitioner/tx-dr"}}
        ]
    });
    let (status, response) = post_bundle(&s, &t, &bundle).await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(response["type"], "transaction-response");
    let statuses: Vec<&str> =
        response["entry"].as_array().unwrap().iter().map(|e| e["response"]["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["201 Created", "201 Created", "201 Created", "201 Created"]);
    let patient_location = response["entry"][0]["response"]["location"].as_str().unwrap();
    let patient_id = patient_location.split('/').nth(1).unwrap();
    let obs_location = response["entry"][2]["response"]["location"].as_str().unwrap();
    let obs_path = obs_location.split("/_history").next().unwrap();
    let obs: Value = s.read(obs_path, &t).await.json().await.unwrap();
    assert_eq!(obs["subject"]["reference"], format!("Patient/{patient_id}"), "urn:uuid references resolved");
    assert!(obs["encounter"]["reference"].as_str().unwrap().starts_with("Encounter/"));
    assert_eq!(total(&s, &t, &format!("Observation?patient={patient_id}")).await, 1);

    // A failing entry rolls everything back.
    let failing = json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            {"resource": {"resourceType": "Patient", "identifier": [{"system": "urn:tx", "value": "2"}]}, "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Practitioner", "id": "tx-dr"}, "request": {"method": "PUT", "url": "Practitioner/tx-dr", "ifMatch": "W/\"9\""}}
        ]
    });
    assert_eq!(post_bundle(&s, &t, &failing).await.0, StatusCode::PRECONDITION_FAILED);
    let invalid = json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            {"resource": {"resourceType": "Patient", "identifier": [{"system": "urn:tx", "value": "2"}]}, "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Observation", "id": "bad id"}, "request": {"method": "PUT", "url": "Observation/x"}}
        ]
    });
    assert_eq!(post_bundle(&s, &t, &invalid).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(total(&s, &t, "Patient?identifier=urn:tx|2").await, 0, "nothing of a failed transaction is stored");
    assert_eq!(total(&s, &t, "Patient?identifier=urn:tx|1").await, 1);

    // Each entry is checked against the scopes: one forbidden entry refuses the whole Bundle.
    let p = token(&s, &client, "launch/patient patient/*.cruds", "patient").await;
    let mixed = json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "mine"}, "subject": {"reference": "Patient/pat-001"}}, "request": {"method": "POST", "url": "Observation"}},
            {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "theirs"}, "subject": {"reference": "Patient/pat-002"}}, "request": {"method": "POST", "url": "Observation"}}
        ]
    });
    let before = total(&s, &t, "Observation?patient=pat-001&_summary=count").await;
    let (status, oo) = post_bundle(&s, &p, &mixed).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(oo["issue"][0]["diagnostics"].as_str().unwrap().starts_with("entry 1"));
    assert_eq!(total(&s, &t, "Observation?patient=pat-001&_summary=count").await, before, "nothing stored");
    s.stop().await;
}

#[tokio::test]
async fn batch_entries_succeed_or_fail_one_by_one() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let p = token(&s, &client, "launch/patient patient/*.cruds", "patient").await;
    let bundle = json!({
        "resourceType": "Bundle", "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": "Patient/pat-001"}},
            {"request": {"method": "GET", "url": "Patient/pat-002"}},
            {"resource": observation("pat-001", 80.0), "request": {"method": "POST", "url": "Observation"}},
            {"request": {"method": "GET", "url": "Observation?patient=pat-001&_summary=count"}},
            {"request": {"method": "PATCH", "url": "Patient/pat-001"}}
        ]
    });
    let (status, response) = post_bundle(&s, &p, &bundle).await;
    assert_eq!(status, 200);
    assert_eq!(response["type"], "batch-response");
    let statuses: Vec<&str> =
        response["entry"].as_array().unwrap().iter().map(|e| e["response"]["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["200 OK", "403 Forbidden", "201 Created", "200 OK", "400 Bad Request"]);
    assert_eq!(response["entry"][0]["resource"]["id"], "pat-001");
    assert_eq!(response["entry"][1]["response"]["outcome"]["resourceType"], "OperationOutcome");
    assert!(response["entry"][3]["resource"]["total"].as_u64().unwrap() > 10);
    assert_eq!(
        post_bundle(&s, &p, &json!({"resourceType": "Bundle", "type": "collection"})).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(post_bundle(&s, &p, &json!({"resourceType": "Patient"})).await.0, StatusCode::BAD_REQUEST);
    s.stop().await;
}

#[tokio::test]
async fn type_history_lists_versions_within_the_grant() {
    let s = Server::start().await;
    let client = s.public_app().await;
    use reqwest::Method as M;
    let t = token(&s, &client, "user/*.cruds", "clinician").await;
    let created: Value =
        send(&s, M::POST, "Observation", &t, Some(&observation("pat-001", 50.0)), None).await.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let mut updated = created.clone();
    updated["status"] = json!("amended");
    assert_eq!(send(&s, M::PUT, &format!("Observation/{id}"), &t, Some(&updated), None).await.status(), 200);
    let (all_observations, _) = {
        let b: Value = send(&s, M::GET, "Observation?_summary=count", &t, None, None).await.json().await.unwrap();
        (b["total"].as_u64().unwrap(), ())
    };
    let history: Value = send(&s, M::GET, "Observation/_history?_count=2", &t, None, None).await.json().await.unwrap();
    assert_eq!(history["type"], "history");
    assert_eq!(history["total"].as_u64().unwrap(), all_observations + 1, "every version: one update added one");
    assert_eq!(history["entry"][0]["request"]["method"], "PUT", "newest first");
    assert_eq!(history["entry"][1]["request"]["method"], "POST");
    assert!(history["link"].as_array().unwrap().iter().any(|l| l["relation"] == "next"));
    // A patient token sees only its own compartment's history; without `s`, none.
    let p = token(&s, &client, "launch/patient patient/*.rs", "patient").await;
    let own: Value = send(&s, M::GET, "Observation/_history?_count=1000", &p, None, None).await.json().await.unwrap();
    assert!(own["entry"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["resource"]["subject"]["reference"] == "Patient/pat-001"));
    let no_search = token(&s, &client, "launch/patient patient/Observation.r", "patient").await;
    assert_eq!(send(&s, M::GET, "Observation/_history", &no_search, None, None).await.status(), 403);
    s.stop().await;
}
