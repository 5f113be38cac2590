//! Batch (entries succeed or fail one by one, through the same rules) and transaction (all or
//! nothing).

use serde_json::json;

use super::*;
use crate::limits::MAX_BATCH_ENTRIES;
use crate::store::ResourceStore;

fn statuses(bundle: &Value) -> Vec<&str> {
    bundle["entry"].as_array().unwrap().iter().map(|e| e["response"]["status"].as_str().unwrap()).collect()
}

fn entry(method: &str, url: &str, resource: Option<Value>) -> Value {
    let mut e = json!({ "request": { "method": method, "url": url } });
    if let Some(r) = resource {
        e["resource"] = r;
    }
    e
}

fn bundle(kind: &str, entries: Vec<Value>) -> Value {
    json!({ "resourceType": "Bundle", "type": kind, "entry": entries })
}

#[tokio::test]
async fn batch_entries_succeed_or_fail_one_by_one() {
    let store = seeded().await;
    let s = service(&store);
    let a = patient_a("launch/patient patient/*.cruds");
    let batch = bundle(
        "batch",
        vec![
            entry("GET", "Patient/a", None),
            entry("GET", "Patient/b", None),
            entry("POST", "Observation", Some(obs("x", "a", VITALS))),
            entry("GET", "Observation?patient=a&_summary=count", None),
            entry("PATCH", "Patient/a", None),
            entry("GET", "Foo/1", None),
            entry("PUT", "Observation/lab-a", Some(obs("lab-a", "a", LAB))),
            entry("DELETE", "Observation/lab-b", None),
        ],
    );
    let response = json_of(&s.bundle(&a.context(), batch).await.unwrap());
    assert_eq!(response["type"], "batch-response");
    assert_eq!(
        statuses(&response),
        [
            "200 OK",
            "403 Forbidden",
            "201 Created",
            "200 OK",
            "400 Bad Request",
            "404 Not Found",
            "200 OK",
            "403 Forbidden"
        ]
    );
    assert_eq!(response["entry"][0]["resource"]["id"], "a");
    assert_eq!(response["entry"][0]["response"]["etag"], "W/\"1\"");
    assert_eq!(response["entry"][1]["response"]["outcome"]["issue"][0]["code"], "forbidden");
    let created = &response["entry"][2]["response"];
    assert!(created["location"].as_str().unwrap().starts_with(&format!("{BASE}/Observation/new-")));
    assert_eq!(response["entry"][3]["resource"]["total"], 3);
    assert_eq!(response["entry"][4]["response"]["outcome"]["issue"][0]["code"], "not-supported");
    assert_eq!(response["entry"][6]["response"]["etag"], "W/\"2\"");
    assert_eq!(store.read("Observation", "lab-b").await.unwrap().unwrap().version_id, 1, "b's stays");
}

#[tokio::test]
async fn a_condition_that_is_not_a_string_is_refused_never_ignored() {
    let store = seeded().await;
    let s = service(&store);
    let doctor = clinician("user/*.cruds");
    let mut numeric = entry("PUT", "Observation/lab-a", Some(obs("lab-a", "a", LAB)));
    numeric["request"]["ifMatch"] = json!(9);
    let mut listed = entry("POST", "Patient", Some(patient("ignored")));
    listed["request"]["ifNoneExist"] = json!(["_id=a"]);
    let response = json_of(&s.bundle(&doctor.context(), bundle("batch", vec![numeric, listed])).await.unwrap());
    assert_eq!(statuses(&response), ["400 Bad Request", "400 Bad Request"]);
    assert!(response["entry"][0]["response"]["outcome"]["issue"][0]["diagnostics"]
        .as_str()
        .unwrap()
        .contains("request.ifMatch must be a string"));
    assert_eq!(store.read("Observation", "lab-a").await.unwrap().unwrap().version_id, 1, "nothing written");
}

#[tokio::test]
async fn batch_entries_carry_if_match_if_none_exist_and_a_deletions_etag() {
    let store = seeded().await;
    let s = service(&store);
    let doctor = clinician("user/*.cruds");
    let mut stale = entry("PUT", "Observation/lab-a", Some(obs("lab-a", "a", LAB)));
    stale["request"]["ifMatch"] = json!("W/\"9\"");
    let mut bad_etag = entry("DELETE", "Observation/lab-a", None);
    bad_etag["request"]["ifMatch"] = json!("nonsense");
    let mut conditional = entry("POST", "Patient", Some(patient("ignored")));
    conditional["request"]["ifNoneExist"] = json!("_id=a");
    let batch = bundle(
        "batch",
        vec![
            stale,
            bad_etag,
            conditional,
            entry("DELETE", "Observation/vit-a", None),
            entry("GET", "Observation/vit-a", None),
            entry("GET", "Observation/vit-a/_history/1", None),
            entry("GET", "Observation/vit-a/_history", None),
            entry("GET", "Observation/_history?_count=1", None),
        ],
    );
    let response = json_of(&s.bundle(&doctor.context(), batch).await.unwrap());
    assert_eq!(
        statuses(&response),
        [
            "412 Precondition Failed",
            "400 Bad Request",
            "200 OK",
            "204 No Content",
            "410 Gone",
            "200 OK",
            "200 OK",
            "200 OK"
        ]
    );
    assert_eq!(response["entry"][2]["resource"]["id"], "a", "the existing match");
    assert_eq!(response["entry"][3]["response"]["etag"], "W/\"2\"");
    assert_eq!(response["entry"][4]["response"]["etag"], "W/\"2\"", "a deletion's version");
    assert_eq!(response["entry"][4]["response"]["outcome"]["issue"][0]["code"], "deleted");
    assert_eq!(response["entry"][6]["resource"]["type"], "history");
}

#[tokio::test]
async fn bundles_are_bounded_and_typed() {
    let store = seeded().await;
    let s = service(&store);
    let doctor = clinician("user/*.rs");
    let read = entry("GET", "Patient/a", None);
    let too_many = bundle("batch", vec![read; MAX_BATCH_ENTRIES + 1]);
    let e = s.bundle(&doctor.context(), too_many).await.unwrap_err();
    assert!(matches!(&e, FhirError::TooLarge(m) if m.contains("at most 1000 entries per batch")), "{e:?}");
    assert_eq!(e.status(), 413);
    assert_eq!(status(s.bundle(&doctor.context(), bundle("collection", vec![])).await), 400);
    assert_eq!(status(s.bundle(&doctor.context(), patient("a")).await), 400);
}

#[tokio::test]
async fn a_transaction_resolves_references_and_writes_everything() {
    let store = seeded().await;
    let s = service(&store);
    let doctor = clinician("user/*.cruds");
    let mut new_patient = entry("POST", "Patient", Some(json!({ "resourceType": "Patient" })));
    new_patient["fullUrl"] = json!("urn:uuid:p");
    let mut reading = obs("ignored", "a", VITALS);
    reading["subject"]["reference"] = json!("urn:uuid:p");
    let tx = bundle(
        "transaction",
        vec![
            new_patient,
            entry("POST", "Observation", Some(reading)),
            entry("PUT", "Observation/lab-a", Some(obs("lab-a", "a", LAB))),
            entry("DELETE", "Observation/vit-a", None),
            entry("DELETE", "Observation/never", None),
        ],
    );
    let response = json_of(&s.bundle(&doctor.context(), tx).await.unwrap());
    assert_eq!(response["type"], "transaction-response");
    assert_eq!(statuses(&response), ["201 Created", "201 Created", "200 OK", "204 No Content", "204 No Content"]);
    let patient_id = response["entry"][0]["response"]["location"].as_str().unwrap().split('/').nth(1).unwrap();
    let obs_id = response["entry"][1]["response"]["location"].as_str().unwrap().split('/').nth(1).unwrap();
    let written = store.read("Observation", obs_id).await.unwrap().unwrap();
    assert_eq!(json_of(&written.json)["subject"]["reference"], format!("Patient/{patient_id}"));
    assert_eq!(written.last_updated, NOW_INSTANT);
    assert!(response["entry"][4]["response"].get("etag").is_none(), "nothing was there to delete");
}

#[tokio::test]
async fn a_failing_transaction_entry_rolls_everything_back() {
    let store = seeded().await;
    let s = service(&store);
    let doctor = clinician("user/*.cruds");
    let before = store.count().await.unwrap();
    let mut stale = entry("PUT", "Observation/lab-a", Some(obs("lab-a", "a", LAB)));
    stale["request"]["ifMatch"] = json!("W/\"9\"");
    let tx = bundle("transaction", vec![entry("POST", "Patient", Some(json!({ "resourceType": "Patient" }))), stale]);
    let e = s.bundle(&doctor.context(), tx).await.unwrap_err();
    assert!(matches!(&e, FhirError::Entry { index: 1, error } if matches!(**error, FhirError::VersionMismatch { .. })));
    assert_eq!(e.status(), 412);
    let invalid = bundle(
        "transaction",
        vec![
            entry("POST", "Patient", Some(json!({ "resourceType": "Patient" }))),
            entry("PUT", "Observation/x", Some(json!({ "resourceType": "Observation", "id": "bad id" }))),
        ],
    );
    let e = s.bundle(&doctor.context(), invalid).await.unwrap_err();
    assert_eq!((e.status(), e.diagnostics().starts_with("entry 1: ")), (400, true));
    assert_eq!(store.count().await.unwrap(), before, "nothing of a failed transaction is stored");
    assert_eq!(store.read("Observation", "lab-a").await.unwrap().unwrap().version_id, 1);
}

#[tokio::test]
async fn a_transaction_with_one_forbidden_entry_writes_nothing() {
    let store = seeded().await;
    let s = service(&store);
    let a = patient_a("launch/patient patient/*.cruds");
    let before = store.count().await.unwrap();
    let tx = bundle(
        "transaction",
        vec![
            entry("POST", "Observation", Some(obs("mine", "a", VITALS))),
            entry("POST", "Observation", Some(obs("theirs", "b", VITALS))),
        ],
    );
    let e = s.bundle(&a.context(), tx).await.unwrap_err();
    assert_eq!((e.status(), e.code()), (403, "forbidden"));
    assert!(e.diagnostics().starts_with("entry 1: "));
    let delete_theirs = bundle("transaction", vec![entry("DELETE", "Observation/lab-b", None)]);
    assert_eq!(status(s.bundle(&a.context(), delete_theirs).await), 403);
    let delete_missing_patient = bundle("transaction", vec![entry("DELETE", "Patient/nobody", None)]);
    assert_eq!(status(s.bundle(&a.context(), delete_missing_patient).await), 403, "as a direct delete");
    assert_eq!(store.count().await.unwrap(), before);
}

/// A patient token trying every batch and transaction path into another patient's resource:
/// each is refused (403, never a 412 or 404 that would tell versions or existence apart), a
/// search or type history leaves it out, a conditional create does not answer with it, and
/// nothing of it is written.
#[tokio::test]
async fn batch_and_transaction_entries_never_reach_another_patients_resource() {
    let store = seeded().await;
    let s = service(&store);
    let a = patient_a("launch/patient patient/*.cruds");
    let mut moved = obs("lab-b", "a", LAB);
    moved["performer"] = json!([{ "reference": "Patient/a" }]);
    let mut create = entry("POST", "Observation", Some(obs("x", "a", LAB)));
    create["request"]["ifNoneExist"] = json!("_id=lab-b");
    let mut stale = entry("PUT", "Observation/lab-b", Some(moved.clone()));
    stale["request"]["ifMatch"] = json!("W/\"9\"");
    let mut matching = entry("DELETE", "Observation/lab-b", None);
    matching["request"]["ifMatch"] = json!("W/\"1\"");
    let batch = bundle(
        "batch",
        vec![
            entry("GET", "Observation/lab-b", None),
            entry("GET", "Observation/lab-b/_history", None),
            entry("GET", "Observation/lab-b/_history/1", None),
            entry("PUT", "Observation/lab-b", Some(moved.clone())),
            stale,
            matching,
            entry("GET", "Patient/b/_history", None),
            entry("GET", "Observation?_id=lab-b", None),
            entry("GET", "Observation/_history", None),
            create,
        ],
    );
    let response = json_of(&s.bundle(&a.context(), batch).await.unwrap());
    assert_eq!(
        statuses(&response)[..7],
        ["403 Forbidden"; 7],
        "read, history, vread, update, update with a wrong If-Match, delete with the right one"
    );
    assert_eq!(response["entry"][7]["resource"]["total"], 0, "a search by _id leaves it out");
    let history = response["entry"][8]["resource"]["entry"].to_string();
    assert!(!history.contains("lab-b"), "type history leaves it out: {history}");
    assert_eq!(statuses(&response)[9], "201 Created", "If-None-Exist does not see it, so nothing is answered");
    assert_ne!(response["entry"][9]["resource"]["id"], "lab-b");

    for entries in [
        vec![entry("PUT", "Observation/lab-b", Some(moved.clone()))],
        vec![entry("DELETE", "Observation/lab-b", None)],
        vec![entry("POST", "Observation", Some(obs("y", "a", LAB))), entry("DELETE", "Patient/b", None)],
    ] {
        let refused = s.bundle(&a.context(), bundle("transaction", entries)).await.unwrap_err();
        assert_eq!(refused.status(), 403, "{refused}");
    }
    let b = store.read("Observation", "lab-b").await.unwrap().unwrap();
    assert_eq!((b.version_id, b.deleted, b.compartments), (1, false, vec!["b".to_owned()]), "b's stays b's");
}
