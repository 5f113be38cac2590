//! read, vread, create (conditional), update (If-Match, update-as-create), delete.

use serde_json::json;

use super::*;
use crate::service::{parse_if_match, Create, Delete, InstancePath, TypePath, Update};
use crate::store::ResourceStore;

fn path(ty: &str, id: &str) -> InstancePath {
    InstancePath::parse(ty, id).unwrap()
}

fn create(ty: &str, resource: Value, if_none_exist: Option<&str>) -> Create {
    let condition = if_none_exist.map(|c| form_urlencoded::parse(c.as_bytes()).into_owned().collect());
    Create { resource_type: TypePath::parse(ty).unwrap(), resource, if_none_exist: condition }
}

fn update(ty: &str, id: &str, resource: Value, if_match: Option<i64>) -> Update {
    Update { path: path(ty, id), resource, if_match }
}

#[tokio::test]
async fn read_answers_the_current_version_with_its_version_id() {
    let store = seeded().await;
    let t = patient_a("patient/*.rs");
    let v = service(&store).read(&t.context(), &path("Observation", "lab-a")).await.unwrap();
    assert_eq!((v.version_id, v.deleted), (1, false));
    assert_eq!(json_of(&v.json)["id"], "lab-a");
}

#[tokio::test]
async fn read_of_a_deleted_resource_is_gone_with_the_deletions_version() {
    let store = seeded().await;
    let t = clinician("user/*.cruds");
    let s = service(&store);
    s.delete(&t.context(), Delete { path: path("Observation", "vit-a"), if_match: None }).await.unwrap();
    let e = s.read(&t.context(), &path("Observation", "vit-a")).await.unwrap_err();
    assert!(matches!(e, FhirError::Gone { version_id: 2, .. }), "{e:?}");
    assert_eq!((e.status(), e.code(), e.version_id()), (410, "deleted", Some(2)));
}

#[tokio::test]
async fn a_missing_resource_is_404_only_when_the_token_could_have_touched_it() {
    let store = seeded().await;
    let s = service(&store);
    let doctor = clinician("user/*.rs");
    assert!(matches!(s.read(&doctor.context(), &path("Observation", "nope")).await, Err(FhirError::NotFound(_))));
    let a = patient_a("patient/*.rs");
    assert_eq!(status(s.read(&a.context(), &path("Observation", "nope")).await), 404);
    assert_eq!(
        status(s.read(&a.context(), &path("Patient", "nope")).await),
        403,
        "another patient's id: existence does not leak"
    );
    let no_scope = patient_a("patient/Condition.rs");
    assert_eq!(status(s.read(&no_scope.context(), &path("Observation", "nope")).await), 403);
}

#[tokio::test]
async fn read_is_refused_outside_the_compartment_and_the_granular_filter() {
    let store = seeded().await;
    let s = service(&store);
    let a = patient_a("patient/*.rs");
    assert!(matches!(s.read(&a.context(), &path("Observation", "lab-b")).await, Err(FhirError::Forbidden(_))));
    let labs = patient_a(
        "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
    );
    assert!(s.read(&labs.context(), &path("Observation", "lab-a")).await.is_ok(), "evaluated on the index");
    assert_eq!(status(s.read(&labs.context(), &path("Observation", "vit-a")).await), 403);
    let write_only = patient_a("patient/Observation.c");
    assert_eq!(status(s.read(&write_only.context(), &path("Observation", "lab-a")).await), 403, "c never reads");
    let backend = system("system/*.rs");
    assert!(s.read(&backend.context(), &path("Observation", "lab-b")).await.is_ok(), "system/ reaches all");
}

#[tokio::test]
async fn vread_shows_a_version_judged_on_its_own_json() {
    let store = seeded().await;
    let s = service(&store);
    let doctor = clinician("user/*.cruds");
    // lab-b moves from patient b to patient a: version 1 is still b's.
    s.update(&doctor.context(), update("Observation", "lab-b", obs("lab-b", "a", LAB), None)).await.unwrap();
    let a = patient_a("patient/*.rs");
    assert_eq!(s.vread(&a.context(), &path("Observation", "lab-b"), 2).await.unwrap().version_id, 2);
    assert_eq!(status(s.vread(&a.context(), &path("Observation", "lab-b"), 1).await), 403, "b's version");
    let unknown = s.vread(&doctor.context(), &path("Observation", "lab-b"), 9).await.unwrap_err();
    assert!(matches!(&unknown, FhirError::NotFound(m) if m.contains("no version 9")), "{unknown:?}");
    s.delete(&doctor.context(), Delete { path: path("Observation", "lab-b"), if_match: None }).await.unwrap();
    let deleted = s.vread(&a.context(), &path("Observation", "lab-b"), 3).await.unwrap_err();
    assert_eq!(deleted.status(), 410, "a deletion, judged by the version it deleted (a's)");
    assert_eq!(status(s.vread(&a.context(), &path("Observation", "lab-a"), 1).await), 200);
}

#[tokio::test]
async fn create_assigns_the_id_the_version_and_the_injected_time() {
    let store = seeded().await;
    let t = patient_a("patient/Observation.c");
    let created = service(&store).create(&t.context(), create("Observation", obs("ignored", "a", VITALS), None)).await;
    let v = match created.unwrap() {
        Outcome::Created(v) => v,
        other => panic!("{other:?}"),
    };
    assert!(v.id.starts_with("new-") && v.version_id == 1);
    let json = json_of(&v.json);
    assert_eq!(json["id"], v.id.as_str(), "the server's id replaces the client's");
    assert_eq!(json["meta"]["lastUpdated"], NOW_INSTANT);
    assert_eq!(v.last_updated, NOW_INSTANT);
}

#[tokio::test]
async fn create_checks_the_resource_and_its_patient_reference() {
    let store = seeded().await;
    let s = service(&store);
    let t = patient_a("patient/Observation.c");
    let wrong_type = s.create(&t.context(), create("Observation", patient("x"), None)).await;
    assert!(matches!(&wrong_type, Err(FhirError::Invalid(m)) if m.contains("URL names Observation")));
    assert_eq!(status(s.create(&t.context(), create("Observation", json!([1]), None)).await), 400);
    assert_eq!(
        status(s.create(&t.context(), create("Observation", obs("x", "b", LAB), None)).await),
        403,
        "another patient's"
    );
    let mut performed = obs("x", "b", LAB);
    performed["performer"] = json!([{ "reference": "Patient/a" }]);
    assert_eq!(status(s.create(&t.context(), create("Observation", performed, None)).await), 403, "issue 7 attack");
    let practitioner = json!({ "resourceType": "Practitioner" });
    let t = patient_a("patient/*.c");
    assert_eq!(status(s.create(&t.context(), create("Practitioner", practitioner, None)).await), 403);
}

#[tokio::test]
async fn conditional_create_creates_on_no_match_answers_one_and_refuses_many() {
    let store = seeded().await;
    let s = service(&store);
    let t = clinician("user/*.cruds");
    let mrn = |id: &str| json!({ "resourceType": "Patient", "id": id, "identifier": [{ "system": "urn:mrn", "value": "77" }] });
    let condition = Some("identifier=urn:mrn|77");
    let first = s.create(&t.context(), create("Patient", mrn("x"), condition)).await.unwrap();
    let Outcome::Created(first) = first else { panic!("{first:?}") };
    let before = store.count().await.unwrap();
    let again = s.create(&t.context(), create("Patient", mrn("y"), condition)).await.unwrap();
    assert_eq!(again, Outcome::Existing(first.clone()), "the match is answered");
    assert_eq!(store.count().await.unwrap(), before, "nothing written");
    assert!(matches!(s.create(&t.context(), create("Patient", mrn("z"), None)).await, Ok(Outcome::Created(_))));
    let many = s.create(&t.context(), create("Patient", mrn("w"), condition)).await.unwrap_err();
    assert!(matches!(many, FhirError::Duplicate));
    assert_eq!((many.status(), many.code()), (412, "duplicate"));
    let bad = s.create(&t.context(), create("Patient", mrn("v"), Some("nonsense=1"))).await.unwrap_err();
    assert!(matches!(&bad, FhirError::Invalid(m) if m.starts_with("If-None-Exist: ")), "{bad:?}");
    let no_search = clinician("user/Patient.c");
    let refused = s.create(&no_search.context(), create("Patient", mrn("u"), condition)).await.unwrap_err();
    assert!(matches!(refused, FhirError::ConditionNeedsSearch { .. }));
    assert_eq!(refused.status(), 403);
}

#[tokio::test]
async fn update_with_if_match_writes_only_over_the_named_version() {
    let store = seeded().await;
    let s = service(&store);
    let t = clinician("user/*.cruds");
    let mut amended = obs("lab-a", "a", LAB);
    amended["status"] = json!("amended");
    let v2 = s.update(&t.context(), update("Observation", "lab-a", amended.clone(), Some(1))).await.unwrap();
    assert!(matches!(&v2, Outcome::Updated(v) if v.version_id == 2));
    let stale = s.update(&t.context(), update("Observation", "lab-a", amended.clone(), Some(1))).await.unwrap_err();
    assert!(matches!(stale, FhirError::VersionMismatch { if_match: 1, current: 2 }));
    assert_eq!((stale.status(), stale.code()), (412, "conflict"));
    let v3 = s.update(&t.context(), update("Observation", "lab-a", amended.clone(), None)).await.unwrap();
    assert_eq!(stored(v3).version_id, 3, "without If-Match: over the current version");
    let nothing = s.update(&t.context(), update("Observation", "fresh", obs("fresh", "a", LAB), Some(1))).await;
    assert!(matches!(nothing, Err(FhirError::NothingToMatch { .. })));
    assert_eq!(parse_if_match("nonsense").unwrap_err().status(), 400, "a malformed If-Match");
}

#[tokio::test]
async fn update_as_create_and_recreation_after_delete_answer_created() {
    let store = seeded().await;
    let s = service(&store);
    let t = clinician("user/*.cruds");
    let created = s.update(&t.context(), update("Observation", "chosen", obs("chosen", "a", LAB), None)).await;
    assert!(matches!(created, Ok(Outcome::Created(ref v)) if v.version_id == 1 && v.id == "chosen"));
    s.delete(&t.context(), Delete { path: path("Observation", "chosen"), if_match: None }).await.unwrap();
    let again = s.update(&t.context(), update("Observation", "chosen", obs("chosen", "a", LAB), None)).await;
    assert!(matches!(again, Ok(Outcome::Created(ref v)) if v.version_id == 3));
    let mismatch = s.update(&t.context(), update("Observation", "other", obs("chosen", "a", LAB), None)).await;
    assert!(matches!(&mismatch, Err(FhirError::Invalid(m)) if m.contains("differs")));
    let mut no_id = obs("x", "a", LAB);
    no_id.as_object_mut().unwrap().remove("id");
    assert_eq!(status(s.update(&t.context(), update("Observation", "x", no_id, None)).await), 400);
}

#[tokio::test]
async fn an_update_naming_another_patient_is_refused() {
    let store = seeded().await;
    let s = service(&store);
    let a = patient_a("launch/patient patient/*.cruds");
    let mut own = obs("lab-a", "a", LAB);
    own["status"] = json!("amended");
    assert!(s.update(&a.context(), update("Observation", "lab-a", own, None)).await.is_ok());
    let moved = s.update(&a.context(), update("Observation", "lab-a", obs("lab-a", "b", LAB), None)).await;
    assert_eq!(status(moved), 403, "moved out of reach");
    let theirs = s.update(&a.context(), update("Observation", "lab-b", obs("lab-b", "a", LAB), None)).await;
    assert_eq!(status(theirs), 403, "the stored version is another patient's");
    let created = s.update(&a.context(), update("Observation", "new-b", obs("new-b", "b", LAB), None)).await;
    assert_eq!(status(created), 403, "update-as-create for another patient");
    // A deleted resource of b's cannot be taken over by recreating it.
    let doctor = clinician("user/*.cruds");
    s.delete(&doctor.context(), Delete { path: path("Observation", "lab-b"), if_match: None }).await.unwrap();
    let takeover = s.update(&a.context(), update("Observation", "lab-b", obs("lab-b", "a", LAB), None)).await;
    assert_eq!(status(takeover), 403);
}

#[tokio::test]
async fn delete_writes_a_deleted_version_once_and_honours_if_match() {
    let store = seeded().await;
    let s = service(&store);
    let t = clinician("user/*.cruds");
    let delete = |id: &str, if_match| Delete { path: path("Observation", id), if_match };
    let stale = s.delete(&t.context(), delete("lab-a", Some(7))).await.unwrap_err();
    assert!(matches!(stale, FhirError::VersionMismatch { if_match: 7, current: 1 }));
    let deleted = s.delete(&t.context(), delete("lab-a", Some(1))).await.unwrap().unwrap();
    assert!(deleted.deleted && deleted.version_id == 2);
    assert_eq!(s.delete(&t.context(), delete("lab-a", None)).await.unwrap(), None, "again: nothing written");
    assert_eq!(s.delete(&t.context(), delete("never", Some(3))).await.unwrap(), None, "nothing there");
    assert_eq!(store.history("Observation", "lab-a", usize::MAX).await.unwrap().versions.len(), 2);
}

#[tokio::test]
async fn delete_is_refused_outside_the_grant() {
    let store = seeded().await;
    let s = service(&store);
    let delete = |ty: &str, id: &str| Delete { path: path(ty, id), if_match: None };
    let a = patient_a("patient/*.cruds");
    assert_eq!(status(s.delete(&a.context(), delete("Observation", "lab-b")).await), 403, "another patient's");
    assert_eq!(status(s.delete(&a.context(), delete("Patient", "nobody")).await), 403, "another patient's id");
    let read_only = patient_a("patient/*.rs");
    assert_eq!(status(s.delete(&read_only.context(), delete("Observation", "lab-a")).await), 403);
    assert_eq!(status(s.delete(&a.context(), delete("Observation", "lab-a")).await), 200);
}

#[tokio::test]
async fn each_interaction_needs_its_own_scope_letter() {
    let store = seeded().await;
    let s = service(&store);
    let reader = patient_a("patient/Observation.r");
    let cx = reader.context();
    assert!(s.read(&cx, &path("Observation", "lab-a")).await.is_ok());
    let refusals = [
        status(s.create(&cx, create("Observation", obs("x", "a", LAB), None)).await),
        status(s.update(&cx, update("Observation", "lab-a", obs("lab-a", "a", LAB), None)).await),
        status(s.delete(&cx, Delete { path: path("Observation", "lab-a"), if_match: None }).await),
        status(
            s.search(&cx, crate::service::Search::new(TypePath::parse("Observation").unwrap(), vec![], false)).await,
        ),
        status(s.type_history(&cx, &TypePath::parse("Observation").unwrap(), &[]).await),
    ];
    assert_eq!(refusals, [403; 5], "c, u, d, s are not r");
    let e = s.delete(&cx, Delete { path: path("Observation", "lab-a"), if_match: None }).await.unwrap_err();
    assert!(matches!(&e, FhirError::Forbidden(crate::access::Denied::NoScope { needed }) if needed.contains(".d")));
    let backend = system("system/Observation.rs");
    let write = s.create(&backend.context(), create("Observation", obs("x", "a", LAB), None)).await;
    assert_eq!(status(write), 403, "system/ reads do not write");
}
