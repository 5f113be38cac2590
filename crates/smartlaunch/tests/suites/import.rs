//! `smartlaunch import` (issue 3 item 5): Synthea-style transaction Bundles, NDJSON, a summary,
//! and all or nothing per Bundle.

use serde_json::{json, Value};

use crate::support::*;

#[tokio::test]
async fn import_loads_bundles_and_ndjson_all_or_nothing_per_bundle() {
    let dir = std::env::temp_dir().join(format!("smartlaunch-import-{}", random(6)));
    let files = dir.join("files");
    std::fs::create_dir_all(files.join("nested")).unwrap();
    let synthea = json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:00000000-0000-4000-8000-0000000000aa",
             "resource": {"resourceType": "Patient", "identifier": [{"system": "https://github.com/synthetichealth/synthea", "value": "s-1"}],
                          "name": [{"family": "Imported", "given": ["Iris"]}], "gender": "female", "birthDate": "1980-02-03"},
             "request": {"method": "POST", "url": "Patient"}},
            {"fullUrl": "urn:uuid:00000000-0000-4000-8000-0000000000bb",
             "resource": {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
                          "subject": {"reference": "urn:uuid:00000000-0000-4000-8000-0000000000aa"}, "period": {"start": "2020-01-01T10:00:00Z"}},
             "request": {"method": "POST", "url": "Encounter"}},
            {"fullUrl": "urn:uuid:00000000-0000-4000-8000-0000000000cc",
             "resource": {"resourceType": "Observation", "status": "final",
                          "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
                          "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
                          "subject": {"reference": "urn:uuid:00000000-0000-4000-8000-0000000000aa"},
                          "encounter": {"reference": "urn:uuid:00000000-0000-4000-8000-0000000000bb"},
                          "effectiveDateTime": "2020-01-01T10:00:00Z", "valueQuantity": {"value": 99, "unit": "mg/dL"}},
             "request": {"method": "POST", "url": "Observation"}}
        ]
    });
    std::fs::write(files.join("synthea.json"), synthea.to_string()).unwrap();
    let broken = json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            {"resource": {"resourceType": "Patient", "name": [{"family": "Broken"}]}, "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Observation", "id": "not valid!"}, "request": {"method": "PUT", "url": "Observation/x"}}
        ]
    });
    std::fs::write(files.join("nested/broken.json"), broken.to_string()).unwrap();
    let lines: Vec<String> = (1..=3)
        .map(|i| {
            json!({"resourceType": "Observation", "id": format!("nd-{i}"), "status": "final", "code": {"text": "nd"},
                         "subject": {"reference": "Patient/pat-001"}})
            .to_string()
        })
        .collect();
    std::fs::write(files.join("obs.ndjson"), lines.join("\n")).unwrap();
    std::fs::write(files.join("ignored.txt"), "not FHIR").unwrap();
    // A bad line: nothing of its chunk is stored.
    let bad = [
        json!({"resourceType": "Observation", "id": "bad-chunk-1", "status": "final", "code": {"text": "x"}})
            .to_string(),
        "{\"resourceType\": \"NoSuchType\"}".to_string(),
    ];
    std::fs::write(files.join("bad.ndjson"), bad.join("\n")).unwrap();
    // A Bundle that deletes takes the transactional path, after the bulk writes before it.
    let deletes = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "DELETE", "url": "Observation/nd-3"}},
        {"resource": {"resourceType": "Observation", "id": "nd-4", "status": "final", "code": {"text": "nd"}},
         "request": {"method": "PUT", "url": "Observation/nd-4"}}
    ]});
    std::fs::write(files.join("zz-deletes.json"), deletes.to_string()).unwrap();

    // SQLite in the data directory, or (the suites on PostgreSQL) a PostgreSQL database.
    let database_url = database_for(&dir).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_smartlaunch"))
        .args(["import", "--data"])
        .arg(dir.join("data"))
        .args(database_url.iter().flat_map(|url| ["--database", url.as_str()]))
        .arg(&files)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "a broken Bundle is reported as a failure");
    assert!(stdout.contains("imported 7 resources from 5 files"), "{stdout}");
    assert!(stdout.contains("Observation") && stdout.contains("broken.json"), "{stdout}");
    assert!(stdout.contains("bad.ndjson: line 2"), "{stdout}");

    // The server sees the imported data, with references resolved, and nothing of the broken Bundle.
    let clock = std::sync::Arc::new(smartlaunch::SystemClock::default());
    let settings = test_settings(&dir.join("data"), database_url.clone());
    let running = smartlaunch::start(settings, clock.clone()).await.unwrap();
    let s = Server {
        running: Some(running),
        clock,
        base: String::new(),
        fhir: String::new(),
        http: reqwest::Client::new(),
        dir: dir.clone(),
        owns_database: database_url.is_some(),
        database_url,
    };
    let s = s.with_urls();
    let client = s.public_app().await;
    let (code, verifier) = launch(&s, &client, "user/*.rs", "clinician", None).await;
    let t = redeem(&s, &client, &code, &verifier).await["access_token"].as_str().unwrap().to_owned();
    let get = |q: &str| {
        let (http, url, t) = (s.http.clone(), format!("{}/{q}", s.fhir), t.clone());
        async move { http.get(url).bearer_auth(t).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let patients = get("Patient?family=imported").await;
    assert_eq!(patients["total"], 1);
    let id = patients["entry"][0]["resource"]["id"].as_str().unwrap().to_owned();
    let labs = get(&format!("Observation?patient={id}&category=laboratory")).await;
    assert_eq!(labs["total"], 1);
    assert!(labs["entry"][0]["resource"]["encounter"]["reference"].as_str().unwrap().starts_with("Encounter/"));
    assert_eq!(get("Patient?family=broken").await["total"], 0, "all or nothing per Bundle");
    assert_eq!(get("Observation?_id=nd-1,nd-2,nd-3,nd-4").await["total"], 3, "nd-3 deleted, nd-4 added");
    assert_eq!(get("Observation?_id=bad-chunk-1").await["total"], 0);
    s.stop().await;
}
