//! Search under the token's scopes: compartment, granular filters, `_include`.

use super::*;
use crate::service::{Search, TypePath};

fn search(ty: &str, query: &str) -> Search {
    let params = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    Search::new(TypePath::parse(ty).unwrap(), params, false)
}

fn ids(bundle: &Value) -> Vec<String> {
    let mut ids: Vec<String> = bundle["entry"]
        .as_array()
        .map(|entries| entries.iter().map(|e| e["resource"]["id"].as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_search_holds_only_what_the_scopes_admit() {
    let store = seeded().await;
    let s = service(&store);
    let doctor = clinician("user/*.rs");
    let all = json_of(&s.search(&doctor.context(), search("Observation", "")).await.unwrap());
    assert_eq!((all["type"].as_str(), all["total"].as_i64()), (Some("searchset"), Some(3)));
    let a = patient_a("patient/*.rs");
    let own = json_of(&s.search(&a.context(), search("Observation", "")).await.unwrap());
    assert_eq!(ids(&own), ["lab-a", "vit-a"], "patient a's compartment only");
    assert_eq!(own["total"], 2);
    let asked_for_b = json_of(&s.search(&a.context(), search("Observation", "patient=b")).await.unwrap());
    assert_eq!(asked_for_b["total"], 0, "a parameter never widens the grant");
    let labs = patient_a(
        "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
    );
    let granular = json_of(&s.search(&labs.context(), search("Observation", "")).await.unwrap());
    assert_eq!(ids(&granular), ["lab-a"], "the granular filter");
    let backend = system("system/Observation.rs");
    assert_eq!(json_of(&s.search(&backend.context(), search("Observation", "")).await.unwrap())["total"], 3);
}

#[tokio::test]
async fn a_search_without_its_scope_or_with_bad_parameters_is_refused() {
    let store = seeded().await;
    let s = service(&store);
    let read_only = patient_a("patient/Observation.r");
    assert!(matches!(s.search(&read_only.context(), search("Observation", "")).await, Err(FhirError::Forbidden(_))));
    let a = patient_a("patient/*.rs");
    let bad = s.search(&a.context(), search("Observation", "date=notadate")).await.unwrap_err();
    assert_eq!(bad.status(), 400);
    let strict = Search { strict: true, ..search("Observation", "nonsense=1") };
    assert_eq!(status(s.search(&a.context(), strict).await), 400, "Prefer: handling=strict");
    assert_eq!(status(s.search(&a.context(), search("Observation", "nonsense=1")).await), 200, "lenient");
}

#[tokio::test]
async fn paging_links_point_back_through_the_base() {
    let store = seeded().await;
    let doctor = clinician("user/*.rs");
    let page = json_of(&service(&store).search(&doctor.context(), search("Observation", "_count=1")).await.unwrap());
    assert_eq!(page["entry"].as_array().unwrap().len(), 1);
    let next = page["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next").unwrap();
    assert_eq!(next["url"], format!("{BASE}/Observation?_count=1&_offset=1"));
    assert_eq!(page["entry"][0]["search"]["mode"], "match");
}

#[tokio::test]
async fn included_resources_are_those_the_token_may_read() {
    let store = seeded().await;
    let s = service(&store);
    let both = patient_a("patient/Observation.rs patient/Patient.r");
    let with =
        json_of(&s.search(&both.context(), search("Observation", "_include=Observation:subject")).await.unwrap());
    let modes: Vec<&str> =
        with["entry"].as_array().unwrap().iter().map(|e| e["search"]["mode"].as_str().unwrap()).collect();
    assert_eq!(modes, ["match", "match", "include"], "patient a, once");
    let no_patient = patient_a("patient/Observation.rs");
    let without =
        json_of(&s.search(&no_patient.context(), search("Observation", "_include=Observation:subject")).await.unwrap());
    assert_eq!(ids(&without), ["lab-a", "vit-a"], "no read scope on Patient: nothing included");
    let doctor = clinician("user/*.rs");
    let rev = json_of(
        &s.search(&doctor.context(), search("Patient", "_id=a&_revinclude=Observation:subject")).await.unwrap(),
    );
    assert_eq!(ids(&rev), ["a", "lab-a", "vit-a"]);
}

#[tokio::test]
async fn summary_count_and_elements_shape_the_answer() {
    let store = seeded().await;
    let s = service(&store);
    let doctor = clinician("user/*.rs");
    let count = json_of(&s.search(&doctor.context(), search("Observation", "_summary=count")).await.unwrap());
    assert!(count.get("entry").is_none() && count["total"] == 3);
    let subset =
        json_of(&s.search(&doctor.context(), search("Observation", "_elements=status&_count=1")).await.unwrap());
    let resource = &subset["entry"][0]["resource"];
    assert!(resource.get("subject").is_none() && resource["status"] == "final");
    assert_eq!(resource["meta"]["tag"][0]["code"], "SUBSETTED");
}
