//! FHIR search (issue 3 item 2) and its SMART enforcement: every answer is compared with an
//! oracle computed from the demo data set itself.

use std::collections::BTreeSet;

use serde_json::{json, Value};
use smartlaunch_fhir::demo;

use crate::support::*;

#[tokio::test]
async fn token_reference_date_string_and_quantity_searches() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let t = token(&s, &client, "user/*.rs", "clinician").await;
    let hr = all_ids(&s, &t, "Observation?code=http://loinc.org|8867-4&_count=100").await;
    assert_eq!(hr, oracle(|r| r["resourceType"] == "Observation" && has_code(r, "code", "8867-4")));
    assert_eq!(all_ids(&s, &t, "Observation?code=8867-4&_count=100").await, hr, "code without system");
    assert!(all_ids(&s, &t, "Observation?code=http://other|8867-4").await.is_empty());
    assert!(all_ids(&s, &t, "Observation?code=|8867-4").await.is_empty(), "|code means no system");

    let labs = oracle(|r| is_obs_of(r, "pat-001") && has_code(r, "category", "laboratory"));
    let q = "Observation?patient=pat-001&category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory&_count=7";
    assert_eq!(all_ids(&s, &t, q).await, labs);
    assert_eq!(all_ids(&s, &t, "Observation?subject=Patient/pat-001&category=laboratory").await, labs);

    // Dates: partial dates are ranges; prefixes ge / lt / eq.
    let since = oracle(|r| is_obs_of(r, "pat-001") && r["effectiveDateTime"].as_str().unwrap() >= "2026-05");
    assert!(!since.is_empty());
    assert_eq!(all_ids(&s, &t, "Observation?patient=pat-001&date=ge2026-05").await, since);
    let before = oracle(|r| is_obs_of(r, "pat-001") && r["effectiveDateTime"].as_str().unwrap() < "2026-05");
    assert_eq!(all_ids(&s, &t, "Observation?patient=pat-001&date=lt2026-05").await, before);
    let day = oracle(|r| is_obs_of(r, "pat-001")).into_iter().next().unwrap();
    let resource = demo::generate().resources.into_iter().find(|r| r["id"] == day.as_str()).unwrap();
    let date = &resource["effectiveDateTime"].as_str().unwrap()[..10];
    let same_day = oracle(|r| is_obs_of(r, "pat-001") && r["effectiveDateTime"].as_str().unwrap().starts_with(date));
    assert_eq!(all_ids(&s, &t, &format!("Observation?patient=pat-001&date={date}")).await, same_day);
    assert_eq!(all_ids(&s, &t, &format!("Observation?patient=pat-001&date=eq{date}")).await, same_day);
    let own = oracle(|r| is_obs_of(r, "pat-001"));
    let other_days: BTreeSet<String> = own.difference(&same_day).cloned().collect();
    assert_eq!(all_ids(&s, &t, &format!("Observation?patient=pat-001&date=ne{date}")).await, other_days);
    // gt / le against a partial date: after the whole month, or starting within or before it.
    let after = oracle(|r| is_obs_of(r, "pat-001") && r["effectiveDateTime"].as_str().unwrap() >= "2026-06");
    assert_eq!(all_ids(&s, &t, "Observation?patient=pat-001&date=gt2026-05").await, after);
    let up_to = own.difference(&after).cloned().collect::<BTreeSet<_>>();
    assert_eq!(all_ids(&s, &t, "Observation?patient=pat-001&date=le2026-05").await, up_to);
    assert!(!after.is_empty() && !up_to.is_empty() && !other_days.is_empty());

    // Strings: prefix, case- and accent-insensitive; :exact; :contains.
    let (_, b) = search(&s, &t, "Patient?name=sha").await;
    assert_eq!(b["total"], 1);
    assert_eq!(b["entry"][0]["resource"]["id"], "pat-001");
    assert_eq!(search(&s, &t, "Patient?family:exact=shaw").await.1["total"], 0);
    assert_eq!(search(&s, &t, "Patient?family:exact=Shaw").await.1["total"], 1);
    assert_eq!(
        search(&s, &t, "Patient?family:contains=HA").await.1["total"],
        oracle(|r| r["resourceType"] == "Patient"
            && r["name"][0]["family"].as_str().unwrap().to_lowercase().contains("ha"))
        .len()
    );
    let w = token(&s, &client, "user/*.cruds", "clinician").await;
    let r = s
        .http
        .post(format!("{}/Patient", s.fhir))
        .bearer_auth(&w)
        .header("Content-Type", "application/fhir+json")
        .body(
            json!({"resourceType": "Patient", "name": [{"family": "Ångström", "given": ["Zoë"]}], "gender": "female"})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(search(&s, &t, "Patient?name=zoe").await.1["total"], 1);
    assert_eq!(search(&s, &t, "Patient?family=angstrom&gender=female").await.1["total"], 1);
    assert_eq!(search(&s, &t, "Patient?birthdate:missing=true").await.1["total"], 1);
    assert_eq!(search(&s, &t, "Patient?birthdate:missing=false").await.1["total"], 24);

    // Quantities.
    let fast = oracle(|r| {
        r["resourceType"] == "Observation"
            && has_code(r, "code", "8867-4")
            && r["valueQuantity"]["value"].as_f64().unwrap() > 90.0
    });
    assert_eq!(all_ids(&s, &t, "Observation?code=8867-4&value-quantity=gt90&_count=100").await, fast);

    // _id, _lastUpdated, tokens on plain codes, references by id.
    assert_eq!(search(&s, &t, "Patient?_id=pat-002,pat-003").await.1["total"], 2);
    assert_eq!(search(&s, &t, "Patient?_lastUpdated=ge2000-01-01&_count=0").await.1["total"], 25);
    assert_eq!(
        all_ids(&s, &t, "Condition?patient=pat-001&clinical-status=active").await,
        oracle(|r| r["resourceType"] == "Condition" && r["subject"]["reference"] == "Patient/pat-001")
    );
    assert_eq!(
        all_ids(&s, &t, "Encounter?patient=pat-002").await,
        oracle(|r| r["resourceType"] == "Encounter" && r["subject"]["reference"] == "Patient/pat-002")
    );
    assert_eq!(all_ids(&s, &t, "AllergyIntolerance?patient=pat-001").await.len(), 2);
    s.stop().await;
}

#[tokio::test]
async fn paging_sorting_summary_elements_and_handling() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let t = token(&s, &client, "user/*.rs", "clinician").await;
    let (status, first) = search(&s, &t, "Observation?patient=pat-001&_count=10&_sort=-date").await;
    assert_eq!(status, 200);
    let total = first["total"].as_u64().unwrap() as usize;
    assert_eq!(total, oracle(|r| is_obs_of(r, "pat-001")).len());
    assert_eq!(first["entry"].as_array().unwrap().len(), 10);
    let dates: Vec<&str> = first["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["effectiveDateTime"].as_str().unwrap())
        .collect();
    assert!(dates.windows(2).all(|w| w[0] >= w[1]), "newest first: {dates:?}");
    let links = first["link"].as_array().unwrap();
    assert!(links.iter().all(|l| l["url"].as_str().unwrap().starts_with(&s.fhir)), "absolute links");
    let next = links.iter().find(|l| l["relation"] == "next").unwrap()["url"].as_str().unwrap().to_owned();
    let second: Value = s.http.get(&next).bearer_auth(&t).send().await.unwrap().json().await.unwrap();
    assert!(second["link"].as_array().unwrap().iter().any(|l| l["relation"] == "previous"));
    assert_eq!(all_ids(&s, &t, "Observation?patient=pat-001&_count=3").await.len(), total);

    let (_, count) = search(&s, &t, "Observation?patient=pat-001&_summary=count").await;
    assert_eq!(count["total"].as_u64().unwrap() as usize, total);
    assert!(count.get("entry").is_none());
    let (_, elements) = search(&s, &t, "Patient?_id=pat-001&_elements=gender").await;
    let p = &elements["entry"][0]["resource"];
    assert_eq!(p["gender"], "female");
    assert!(p.get("name").is_none() && p["meta"]["tag"][0]["code"] == "SUBSETTED");

    // Unknown parameters: ignored (lenient, the default) or refused under handling=strict.
    assert_eq!(search(&s, &t, "Patient?foo=bar&_count=0").await.1["total"], 24);
    let r = s
        .http
        .get(format!("{}/Patient?foo=bar", s.fhir))
        .bearer_auth(&t)
        .header("Prefer", "handling=strict")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(search(&s, &t, "Observation?date=yesterday").await.0, 400);
    assert_eq!(search(&s, &t, "Observation?_count=x").await.0, 400);

    // POST _search is the same search.
    let r = s
        .http
        .post(format!("{}/Patient/_search", s.fhir))
        .bearer_auth(&t)
        .form(&[("name", "sha")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["total"], 1);
    s.stop().await;
}

#[tokio::test]
async fn searches_return_exactly_what_the_scopes_allow() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let own = oracle(|r| is_obs_of(r, "pat-001"));
    let all_obs = oracle(|r| r["resourceType"] == "Observation");

    // patient/*.rs: the context patient's compartment only, whatever is asked.
    let t = token(&s, &client, "launch/patient patient/*.rs", "patient").await;
    assert_eq!(all_ids(&s, &t, "Observation?_count=100").await, own);
    assert!(all_ids(&s, &t, "Observation?patient=pat-002").await.is_empty(), "never widened");
    assert_eq!(all_ids(&s, &t, "Patient").await, BTreeSet::from(["pat-001".to_string()]));

    // patient/Observation.rs?category=…|laboratory: labs of the patient, and reads likewise.
    let lab_scope = "launch/patient patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory";
    let t = token(&s, &client, lab_scope, "patient").await;
    let labs = oracle(|r| is_obs_of(r, "pat-001") && has_code(r, "category", "laboratory"));
    assert_eq!(all_ids(&s, &t, "Observation").await, labs);
    let lab = labs.iter().next().unwrap();
    let vital = own.difference(&labs).next().unwrap();
    assert_eq!(s.read(&format!("Observation/{lab}"), &t).await.status(), 200);
    assert_eq!(s.read(&format!("Observation/{vital}"), &t).await.status(), 403);
    assert_eq!(search(&s, &t, "Condition").await.0, 403);

    // Two granular scopes on one type are a union.
    let both = format!("{lab_scope} patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs");
    let t = token(&s, &client, &both, "patient").await;
    assert_eq!(all_ids(&s, &t, "Observation?_count=200").await, own);

    // patient/Observation.r (no s) cannot search; write scopes never read.
    let t = token(&s, &client, "launch/patient patient/Observation.r patient/Condition.c", "patient").await;
    assert_eq!(search(&s, &t, "Observation").await.0, 403);
    assert_eq!(search(&s, &t, "Condition").await.0, 403);

    // user/ scopes: a practitioner sees all; a patient user their own compartment.
    let t = token(&s, &client, "user/Observation.rs", "clinician").await;
    assert_eq!(search(&s, &t, "Observation?_summary=count").await.1["total"].as_u64().unwrap() as usize, all_obs.len());
    let t = token(&s, &client, "user/Observation.rs", "patient").await;
    assert_eq!(all_ids(&s, &t, "Observation?_count=100").await, own);
    s.stop().await;
}

fn modes(bundle: &Value) -> Vec<(String, String)> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["search"]["mode"].as_str().unwrap().to_owned(),
                e["resource"]["resourceType"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn include_and_revinclude_one_level_within_the_grant() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let t = token(&s, &client, "user/*.rs", "clinician").await;
    let (_, b) =
        search(&s, &t, "Observation?_id=obs-001-1-1&_include=Observation:patient&_include=Observation:encounter").await;
    let m = modes(&b);
    assert_eq!(m[0], ("match".into(), "Observation".into()));
    assert!(m.contains(&("include".into(), "Patient".into())) && m.contains(&("include".into(), "Encounter".into())));
    assert_eq!(b["total"], 1, "total counts matches only");
    let (_, b) = search(&s, &t, "Patient?_id=pat-001&_revinclude=Condition:subject").await;
    let conditions = modes(&b).iter().filter(|(mode, ty)| mode == "include" && ty == "Condition").count();
    assert_eq!(
        conditions,
        oracle(|r| r["resourceType"] == "Condition" && r["subject"]["reference"] == "Patient/pat-001").len()
    );
    let (_, b) = search(&s, &t, "Encounter?patient=pat-001&_include=Encounter:participant").await;
    assert!(modes(&b).contains(&("include".into(), "Practitioner".into())));

    // A patient token: included resources outside the grant are omitted, never widened.
    let t = token(&s, &client, "launch/patient patient/Observation.rs", "patient").await;
    let (status, b) = search(&s, &t, "Observation?_id=obs-001-1-1&_include=Observation:patient").await;
    assert_eq!(status, 200);
    assert_eq!(modes(&b), vec![("match".to_string(), "Observation".to_string())]);
    let t = token(&s, &client, "launch/patient patient/*.rs", "patient").await;
    let (_, b) = search(
        &s,
        &t,
        "Encounter?patient=pat-001&_include=Encounter:participant&_revinclude=Observation:encounter&_count=1",
    )
    .await;
    let m = modes(&b);
    assert!(!m.iter().any(|(_, ty)| ty == "Practitioner"), "not in the patient's compartment");
    assert!(m.iter().any(|(mode, ty)| mode == "include" && ty == "Observation"));
    let (_, b) = search(&s, &t, "Encounter?patient=pat-002&_revinclude=Observation:encounter").await;
    assert!(b.get("entry").is_none_or(|e| e.as_array().unwrap().is_empty()));
    s.stop().await;
}
