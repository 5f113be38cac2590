//! Instance and type history: each version shown is judged on its own.

use super::*;
use crate::service::{Delete, InstancePath, TypePath, Update};

fn path(id: &str) -> InstancePath {
    InstancePath::parse("Observation", id).unwrap()
}

/// `lab-b` moved from patient b to patient a (version 2), then deleted (version 3).
async fn moved_then_deleted() -> MemoryStore {
    let store = seeded().await;
    let s = service(&store);
    let doctor = clinician("user/*.cruds");
    let update = Update { path: path("lab-b"), resource: obs("lab-b", "a", LAB), if_match: None };
    s.update(&doctor.context(), update).await.unwrap();
    s.delete(&doctor.context(), Delete { path: path("lab-b"), if_match: None }).await.unwrap();
    store
}

fn methods(bundle: &Value) -> Vec<&str> {
    bundle["entry"].as_array().unwrap().iter().map(|e| e["request"]["method"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn instance_history_is_newest_first_with_the_entries_of_each_version() {
    let store = moved_then_deleted().await;
    let doctor = clinician("user/*.rs");
    let bundle = json_of(&service(&store).history(&doctor.context(), &path("lab-b")).await.unwrap());
    assert_eq!((bundle["type"].as_str(), bundle["total"].as_u64()), (Some("history"), Some(3)));
    assert_eq!(methods(&bundle), ["DELETE", "PUT", "POST"]);
    assert_eq!(bundle["entry"][1]["resource"]["subject"]["reference"], "Patient/a");
    assert_eq!(bundle["entry"][0]["response"]["etag"], "W/\"3\"");
    assert!(bundle["entry"][0].get("resource").is_none(), "a deletion has no content");
    assert_eq!(bundle["entry"][2]["fullUrl"], format!("{BASE}/Observation/lab-b"));
    assert_eq!(bundle["link"][0]["url"], format!("{BASE}/Observation/lab-b/_history"));
}

#[tokio::test]
async fn instance_history_omits_the_versions_of_another_patient() {
    let store = moved_then_deleted().await;
    let s = service(&store);
    let a = patient_a("patient/*.rs");
    let bundle = json_of(&s.history(&a.context(), &path("lab-b")).await.unwrap());
    assert_eq!(methods(&bundle), ["DELETE", "PUT"], "version 1 was b's");
    assert_eq!(bundle["total"], 2);
    let b = Token { scopes: ScopeSet::parse("patient/*.rs").unwrap(), patient: Some("b"), user: None };
    let bundle = json_of(&s.history(&b.context(), &path("lab-b")).await.unwrap());
    assert_eq!(methods(&bundle), ["POST"], "b sees only the version that was b's");
}

#[tokio::test]
async fn instance_history_of_which_no_version_is_visible_is_refused() {
    let store = seeded().await;
    let s = service(&store);
    let a = patient_a("patient/*.rs");
    assert!(matches!(s.history(&a.context(), &path("lab-b")).await, Err(FhirError::Forbidden(_))));
    assert_eq!(status(s.history(&a.context(), &path("nothing")).await), 404);
    let labs = patient_a(
        "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
    );
    assert_eq!(status(s.history(&labs.context(), &path("vit-a")).await), 403, "the filter, on each version");
    assert_eq!(status(s.history(&labs.context(), &path("lab-a")).await), 200);
}

#[tokio::test]
async fn type_history_pages_the_versions_within_the_grant() {
    let store = moved_then_deleted().await;
    let s = service(&store);
    let ty = TypePath::parse("Observation").unwrap();
    let doctor = clinician("user/*.rs");
    let all = json_of(&s.type_history(&doctor.context(), &ty, &[]).await.unwrap());
    assert_eq!(all["total"], 5, "three observations, lab-b in three versions");
    let paged = [("_count".to_owned(), "2".to_owned())];
    let page = json_of(&s.type_history(&doctor.context(), &ty, &paged).await.unwrap());
    assert_eq!(page["entry"].as_array().unwrap().len(), 2);
    assert_eq!(page["link"][1]["relation"], "next");
    assert_eq!(page["link"][1]["url"], format!("{BASE}/Observation/_history?_count=2&_offset=2"));

    let a = patient_a("patient/*.rs");
    let own = json_of(&s.type_history(&a.context(), &ty, &[]).await.unwrap());
    assert!(own.get("total").is_none(), "a restricted token gets no total");
    let shown: Vec<(String, String)> = own["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (e["request"]["url"].as_str().unwrap().to_owned(), e["request"]["method"].as_str().unwrap().to_owned())
        })
        .collect();
    assert!(!shown.contains(&("Observation/lab-b".into(), "POST".into())), "b's version 1 is omitted: {shown:?}");
    assert!(shown.contains(&("Observation/lab-b".into(), "PUT".into())));
    assert!(shown.contains(&("Observation/lab-a".into(), "POST".into())));
    let no_search = patient_a("patient/Observation.r");
    assert_eq!(status(s.type_history(&no_search.context(), &ty, &[]).await), 403);
}
