//! The enforcement matrix (issue 3, acceptance 2; checklist 77–86): for each kind of token, every
//! interaction on a resource inside and outside the token's reach gives exactly the right answer,
//! and every search returns exactly the allowed ids — nothing missing, nothing extra.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{json, Value};
use smartlaunch_fhir::demo;

use crate::support::*;

/// What a token may see of one resource type.
#[derive(Clone, Copy, Debug)]
enum Sees {
    /// Nothing: reads and searches of the type are refused (403).
    Refused,
    /// The Patient compartment of pat-001 (the launch's patient, or the signed-in patient).
    Own,
    /// pat-001's laboratory Observations only (a granular scope).
    OwnLabs,
    /// Every patient's laboratory Observations (a granular `system/` scope).
    Labs,
    /// Everything in the sandbox (a practitioner's `user/` scopes).
    All,
}

/// One row of the matrix: a token and what it must get.
struct Row {
    scope: &'static str,
    /// The demo account of a launch, or [`BACKEND`]: a backend service's `client_credentials`
    /// token (no user, no patient).
    user: &'static str,
    observations: Sees,
    patients: Sees,
    conditions: Sees,
    /// Statuses of the `READS` cells, in order.
    reads: [u16; 11],
    /// Statuses of the `WRITES` cells, in order.
    writes: [u16; 11],
    /// Statuses of the five entries of the batch (checked one by one).
    batch: [u16; 5],
    /// Status of a transaction creating one Observation for pat-001.
    transaction: u16,
    /// Status of a transaction creating an Observation of pat-002 performed by pat-001 (issue 7,
    /// finding 4: access is not granted by *any* compartment element naming the patient).
    transaction_into_another_chart: u16,
}

const READ_CELLS: [&str; 11] = [
    "Observation/{lab_in}",
    "Observation/{vital_in}",
    "Observation/{lab_out}",
    "Observation/{lab_in}/_history/1",
    "Observation/{lab_out}/_history/1",
    "Observation/{lab_in}/_history",
    "Observation/{lab_out}/_history",
    "Patient/pat-001",
    "Patient/pat-002",
    "Condition/{condition_in}",
    "Condition/{condition_out}",
];

const WRITE_CELLS: [&str; 11] = [
    "create Observation for pat-001",
    "create Observation for pat-002",
    "update pat-001's Observation",
    "update pat-002's Observation",
    "delete pat-001's Observation",
    "delete pat-002's Observation",
    "create Condition for pat-001",
    // Issue 7, finding 4: a patient-level write needs the resource's patient reference to be the
    // patient, and no compartment element naming another patient.
    "create Observation of pat-002 performed by pat-001",
    "create Observation of pat-001 performed by pat-002",
    "update pat-001's Observation to subject pat-002, performer pat-001",
    "update pat-002's Observation to subject pat-001 (the stored version is checked too)",
];

const SEARCH_CELLS: [&str; 7] = [
    "Observation",
    "Observation?patient=pat-002",
    "Observation?patient=pat-001&category=laboratory",
    "Observation/_history",
    "Patient",
    "Patient?_id=pat-002",
    "Condition?patient=pat-001,pat-002",
];

/// The `user` of a row whose token is a backend service's (`system/` scopes).
const BACKEND: &str = "backend service";

const IN: [u16; 11] = [200, 200, 403, 200, 403, 200, 403, 200, 403, 200, 403];
const ALL: [u16; 11] = [200; 11];
const NONE: [u16; 11] = [403; 11];

fn rows() -> Vec<Row> {
    use Sees::*;
    let refused = [403; 11];
    vec![
        Row {
            scope: "launch/patient patient/*.rs",
            user: "patient",
            observations: Own,
            patients: Own,
            conditions: Own,
            reads: IN,
            writes: refused,
            batch: [200, 403, 403, 403, 403],
            transaction: 403,
            transaction_into_another_chart: 403,
        },
        Row {
            scope: "launch/patient patient/*.rs",
            user: "clinician",
            observations: Own,
            patients: Own,
            conditions: Own,
            reads: IN,
            writes: refused,
            batch: [200, 403, 403, 403, 403],
            transaction: 403,
            transaction_into_another_chart: 403,
        },
        Row {
            scope: "launch/patient patient/Observation.rs",
            user: "patient",
            observations: Own,
            patients: Refused,
            conditions: Refused,
            reads: [200, 200, 403, 200, 403, 200, 403, 403, 403, 403, 403],
            writes: refused,
            batch: [200, 403, 403, 403, 403],
            transaction: 403,
            transaction_into_another_chart: 403,
        },
        Row {
            scope: "launch/patient patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
            user: "patient",
            observations: OwnLabs,
            patients: Refused,
            conditions: Refused,
            reads: [200, 403, 403, 200, 403, 200, 403, 403, 403, 403, 403],
            writes: refused,
            batch: [200, 403, 403, 403, 403],
            transaction: 403,
            transaction_into_another_chart: 403,
        },
        Row {
            scope: "launch/patient patient/Observation.c",
            user: "patient",
            observations: Refused,
            patients: Refused,
            conditions: Refused,
            reads: NONE,
            writes: [201, 403, 403, 403, 403, 403, 403, 403, 403, 403, 403],
            batch: [403, 403, 201, 403, 403],
            transaction: 200,
            transaction_into_another_chart: 403,
        },
        Row {
            scope: "user/*.cruds",
            user: "clinician",
            observations: All,
            patients: All,
            conditions: All,
            reads: ALL,
            writes: [201, 201, 200, 200, 204, 204, 201, 201, 201, 200, 200],
            batch: [200, 200, 201, 201, 201],
            transaction: 200,
            transaction_into_another_chart: 200,
        },
        Row {
            scope: "user/*.cruds",
            user: "patient",
            observations: Own,
            patients: Own,
            conditions: Own,
            reads: IN,
            writes: [201, 403, 200, 403, 204, 403, 201, 403, 403, 403, 403],
            batch: [200, 403, 201, 403, 403],
            transaction: 200,
            transaction_into_another_chart: 403,
        },
        // Backend services (issue 8, item 3): `system/` reaches every patient; the interaction
        // letters and granular filters are enforced as for any other level.
        Row {
            scope: "system/*.rs",
            user: BACKEND,
            observations: All,
            patients: All,
            conditions: All,
            reads: ALL,
            writes: refused,
            batch: [200, 200, 403, 403, 403],
            transaction: 403,
            transaction_into_another_chart: 403,
        },
        Row {
            scope: "system/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
            user: BACKEND,
            observations: Labs,
            patients: Refused,
            conditions: Refused,
            reads: [200, 403, 200, 200, 200, 200, 200, 403, 403, 403, 403],
            writes: refused,
            batch: [200, 200, 403, 403, 403],
            transaction: 403,
            transaction_into_another_chart: 403,
        },
        Row {
            scope: "system/Observation.r",
            user: BACKEND,
            observations: Refused,
            patients: Refused,
            conditions: Refused,
            reads: [200, 200, 200, 200, 200, 200, 200, 403, 403, 403, 403],
            writes: refused,
            batch: [200, 200, 403, 403, 403],
            transaction: 403,
            transaction_into_another_chart: 403,
        },
        Row {
            scope: "system/Observation.c",
            user: BACKEND,
            observations: Refused,
            patients: Refused,
            conditions: Refused,
            reads: NONE,
            writes: [201, 201, 403, 403, 403, 403, 403, 201, 201, 403, 403],
            batch: [403, 403, 201, 201, 201],
            transaction: 200,
            transaction_into_another_chart: 200,
        },
        Row {
            scope: "system/*.cruds",
            user: BACKEND,
            observations: All,
            patients: All,
            conditions: All,
            reads: ALL,
            writes: [201, 201, 200, 200, 204, 204, 201, 201, 201, 200, 200],
            batch: [200, 200, 201, 201, 201],
            transaction: 200,
            transaction_into_another_chart: 200,
        },
    ]
}

fn patient_of(r: &Value) -> Option<String> {
    match r["resourceType"].as_str()? {
        "Patient" => Some(r["id"].as_str()?.to_owned()),
        _ => r["subject"]["reference"].as_str()?.strip_prefix("Patient/").map(str::to_owned),
    }
}

fn is_lab(r: &Value) -> bool {
    r["category"].as_array().into_iter().flatten().flat_map(|c| c["coding"].as_array().into_iter().flatten()).any(|c| {
        c["system"] == "http://terminology.hl7.org/CodeSystem/observation-category" && c["code"] == "laboratory"
    })
}

impl Sees {
    fn allows(self, r: &Value) -> bool {
        match self {
            Sees::Refused => false,
            Sees::Own => patient_of(r).as_deref() == Some("pat-001"),
            Sees::OwnLabs => patient_of(r).as_deref() == Some("pat-001") && is_lab(r),
            Sees::Labs => is_lab(r),
            Sees::All => true,
        }
    }
}

/// The demo resources of one type that a search cell asks for, before any scope applies.
fn asked(cell: &str, r: &Value) -> bool {
    let ty = r["resourceType"].as_str().unwrap();
    let patient = patient_of(r);
    match cell {
        "Observation" | "Observation/_history" => ty == "Observation",
        "Observation?patient=pat-002" => ty == "Observation" && patient.as_deref() == Some("pat-002"),
        "Observation?patient=pat-001&category=laboratory" => {
            ty == "Observation" && patient.as_deref() == Some("pat-001") && is_lab(r)
        }
        "Patient" => ty == "Patient",
        "Patient?_id=pat-002" => ty == "Patient" && r["id"] == "pat-002",
        "Condition?patient=pat-001,pat-002" => {
            ty == "Condition" && matches!(patient.as_deref(), Some("pat-001" | "pat-002"))
        }
        other => unreachable!("{other}"),
    }
}

/// An Observation of `subject` whose performer is `performer` (both patients).
fn performed(subject: &str, performer: &str) -> Value {
    let mut o = observation(subject, 6.0);
    o["performer"] = json!([{"reference": format!("Patient/{performer}")}]);
    o
}

fn first_id(resources: &[Value], keep: impl Fn(&Value) -> bool) -> String {
    resources.iter().find(|r| keep(r)).map(|r| r["id"].as_str().unwrap().to_owned()).expect("demo data has one")
}

#[tokio::test]
async fn every_token_gets_exactly_its_due_on_every_interaction() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let data = demo::generate().resources;
    let obs_of =
        |p: &'static str| move |r: &Value| r["resourceType"] == "Observation" && patient_of(r).as_deref() == Some(p);
    let lab_in = first_id(&data, |r| obs_of("pat-001")(r) && is_lab(r));
    let vital_in = first_id(&data, |r| obs_of("pat-001")(r) && !is_lab(r));
    let lab_out = first_id(&data, |r| obs_of("pat-002")(r) && is_lab(r));
    let condition_of =
        |p: &'static str| move |r: &Value| r["resourceType"] == "Condition" && patient_of(r).as_deref() == Some(p);
    let condition_in = first_id(&data, condition_of("pat-001"));
    let condition_out = first_id(&data, condition_of("pat-002"));
    let fill = |cell: &str| {
        cell.replace("{lab_in}", &lab_in)
            .replace("{vital_in}", &vital_in)
            .replace("{lab_out}", &lab_out)
            .replace("{condition_in}", &condition_in)
            .replace("{condition_out}", &condition_out)
    };
    let rows = rows();
    let mut tokens = Vec::new();
    for row in &rows {
        tokens.push(match row.user {
            BACKEND => s.backend_token(row.scope).await,
            user => token(&s, &client, row.scope, user).await,
        });
    }

    // Reads and searches first, while the store holds exactly the demo data.
    let mut failures = Vec::new();
    for (row, t) in rows.iter().zip(&tokens) {
        for (cell, want) in READ_CELLS.iter().zip(row.reads) {
            let got = s.read(&fill(cell), t).await.status().as_u16();
            if got != want {
                failures.push(format!("{} as {}: GET {} → {got}, want {want}", row.scope, row.user, fill(cell)));
            }
        }
        for cell in SEARCH_CELLS {
            let sees = match cell.split(['?', '/']).next().unwrap() {
                "Observation" => row.observations,
                "Patient" => row.patients,
                _ => row.conditions,
            };
            let (status, _) = search(&s, t, cell).await;
            let got = match status.as_u16() {
                200 => Some(all_ids(&s, t, cell).await),
                403 => None,
                other => panic!("{} as {}: GET {cell} → {other}", row.scope, row.user),
            };
            let want = (!matches!(sees, Sees::Refused)).then(|| {
                data.iter()
                    .filter(|r| asked(cell, r) && sees.allows(r))
                    .map(|r| r["id"].as_str().unwrap().to_owned())
                    .collect::<BTreeSet<_>>()
            });
            if got != want {
                failures.push(format!("{} as {}: GET {cell} → {got:?}, want {want:?}", row.scope, row.user));
            }
        }
    }

    // Writes: each row works on targets of its own, created by a practitioner.
    let admin = token(&s, &client, "user/*.cruds", "clinician").await;
    let target = |patient: &'static str| {
        let (s, admin) = (&s, &admin);
        async move {
            let r = send(s, Method::POST, "Observation", admin, Some(&observation(patient, 1.0)), None).await;
            r.json::<Value>().await.unwrap()
        }
    };
    for (row, t) in rows.iter().zip(&tokens) {
        let (mut own, mut other) = (target("pat-001").await, target("pat-002").await);
        own["status"] = json!("amended");
        other["status"] = json!("amended");
        let own_path = format!("Observation/{}", own["id"].as_str().unwrap());
        let other_path = format!("Observation/{}", other["id"].as_str().unwrap());
        let condition = json!({"resourceType": "Condition", "subject": {"reference": "Patient/pat-001"}});
        let mut moved = target("pat-001").await;
        let moved_path = format!("Observation/{}", moved["id"].as_str().unwrap());
        moved["subject"] = json!({"reference": "Patient/pat-002"});
        moved["performer"] = json!([{"reference": "Patient/pat-001"}]);
        let mut taken = target("pat-002").await;
        let taken_path = format!("Observation/{}", taken["id"].as_str().unwrap());
        taken["subject"] = json!({"reference": "Patient/pat-001"});
        let got = [
            send(&s, Method::POST, "Observation", t, Some(&observation("pat-001", 2.0)), None).await,
            send(&s, Method::POST, "Observation", t, Some(&observation("pat-002", 2.0)), None).await,
            send(&s, Method::PUT, &own_path, t, Some(&own), None).await,
            send(&s, Method::PUT, &other_path, t, Some(&other), None).await,
            send(&s, Method::DELETE, &own_path, t, None, None).await,
            send(&s, Method::DELETE, &other_path, t, None, None).await,
            send(&s, Method::POST, "Condition", t, Some(&condition), None).await,
            send(&s, Method::POST, "Observation", t, Some(&performed("pat-002", "pat-001")), None).await,
            send(&s, Method::POST, "Observation", t, Some(&performed("pat-001", "pat-002")), None).await,
            send(&s, Method::PUT, &moved_path, t, Some(&moved), None).await,
            send(&s, Method::PUT, &taken_path, t, Some(&taken), None).await,
        ]
        .map(|r| r.status().as_u16());
        for ((cell, got), want) in WRITE_CELLS.iter().zip(got).zip(row.writes) {
            if got != want {
                failures.push(format!("{} as {}: {cell} → {got}, want {want}", row.scope, row.user));
            }
        }

        let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "GET", "url": format!("Observation/{lab_in}")}},
            {"request": {"method": "GET", "url": format!("Observation/{lab_out}")}},
            {"resource": observation("pat-001", 3.0), "request": {"method": "POST", "url": "Observation"}},
            {"resource": observation("pat-002", 3.0), "request": {"method": "POST", "url": "Observation"}},
            {"resource": performed("pat-002", "pat-001"), "request": {"method": "POST", "url": "Observation"}}
        ]});
        let (status, response) = post_bundle(&s, t, &batch).await;
        assert_eq!(status, 200);
        let got: Vec<u16> = response["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["response"]["status"].as_str().unwrap()[..3].parse().unwrap())
            .collect();
        if got != row.batch {
            failures.push(format!("{} as {}: batch → {got:?}, want {:?}", row.scope, row.user, row.batch));
        }

        let transaction = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": observation("pat-001", 4.0), "request": {"method": "POST", "url": "Observation"}}
        ]});
        let got = post_bundle(&s, t, &transaction).await.0.as_u16();
        if got != row.transaction {
            failures.push(format!("{} as {}: transaction → {got}, want {}", row.scope, row.user, row.transaction));
        }
        let into_another_chart = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": observation("pat-001", 5.0), "request": {"method": "POST", "url": "Observation"}},
            {"resource": performed("pat-002", "pat-001"), "request": {"method": "POST", "url": "Observation"}}
        ]});
        let got = post_bundle(&s, t, &into_another_chart).await.0.as_u16();
        if got != row.transaction_into_another_chart {
            failures.push(format!(
                "{} as {}: transaction into another chart → {got}, want {}",
                row.scope, row.user, row.transaction_into_another_chart
            ));
        }
    }
    assert!(failures.is_empty(), "{} cells wrong:\n{}", failures.len(), failures.join("\n"));
    s.stop().await;
}

/// The versions of one resource that a history Bundle shows.
fn versions_of(history: &Value, id: &str) -> Vec<String> {
    history["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["fullUrl"].as_str().is_some_and(|u| u.ends_with(&format!("/Observation/{id}"))))
        .map(|e| e["response"]["etag"].as_str().unwrap().to_owned())
        .collect()
}

/// Issue 7, finding 5: a granular scope is evaluated on every version a response shows, not
/// only on the current one.
#[tokio::test]
async fn a_lab_only_token_never_sees_the_vital_signs_version_of_a_recategorised_observation() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let admin = token(&s, &client, "user/*.cruds", "clinician").await;
    let category = |code: &str| json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": code}]}]);
    let mut obs = observation("pat-001", 7.0);
    obs["category"] = category("vital-signs");
    let mut created: Value =
        send(&s, Method::POST, "Observation", &admin, Some(&obs), None).await.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    created["category"] = category("laboratory");
    let path = format!("Observation/{id}");
    assert_eq!(send(&s, Method::PUT, &path, &admin, Some(&created), None).await.status(), 200);

    let labs = token(
        &s,
        &client,
        "launch/patient patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
        "patient",
    )
    .await;
    assert_eq!(s.read(&path, &labs).await.status(), 200, "the current version is a lab");
    assert_eq!(s.read(&format!("{path}/_history/2"), &labs).await.status(), 200);
    assert_eq!(s.read(&format!("{path}/_history/1"), &labs).await.status(), 403, "version 1 was vital signs");
    let history: Value = s.read(&format!("{path}/_history"), &labs).await.json().await.unwrap();
    assert_eq!(versions_of(&history, &id), ["W/\"2\""], "instance history omits version 1");
    let history: Value = s.read("Observation/_history?_count=1000", &labs).await.json().await.unwrap();
    assert_eq!(versions_of(&history, &id), ["W/\"2\""], "type history omits version 1");
    assert!(history.get("total").is_none(), "a restricted token is not told how many versions there are");
    let all: Value = s.read(&format!("{path}/_history"), &admin).await.json().await.unwrap();
    assert_eq!(versions_of(&all, &id), ["W/\"2\"", "W/\"1\""]);
    s.stop().await;
}

/// Issue 7, finding 5: the patient compartment is that of each version.
#[tokio::test]
async fn a_patient_never_sees_versions_from_before_a_resource_was_moved_to_them() {
    let s = Server::start().await;
    let client = s.public_app().await;
    let admin = token(&s, &client, "user/*.cruds", "clinician").await;
    let mut created: Value = send(&s, Method::POST, "Observation", &admin, Some(&observation("pat-002", 8.0)), None)
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    created["subject"] = json!({"reference": "Patient/pat-001"});
    let path = format!("Observation/{id}");
    assert_eq!(send(&s, Method::PUT, &path, &admin, Some(&created), None).await.status(), 200);

    for scope in ["launch/patient patient/*.rs", "user/*.rs"] {
        let p = token(&s, &client, scope, "patient").await;
        assert_eq!(s.read(&path, &p).await.status(), 200, "{scope}: it is pat-001's now");
        assert_eq!(s.read(&format!("{path}/_history/2"), &p).await.status(), 200, "{scope}");
        assert_eq!(s.read(&format!("{path}/_history/1"), &p).await.status(), 403, "{scope}: version 1 was pat-002's");
        let history: Value = s.read(&format!("{path}/_history"), &p).await.json().await.unwrap();
        assert_eq!(versions_of(&history, &id), ["W/\"2\""], "{scope}: instance history");
        let history: Value = s.read("Observation/_history?_count=1000", &p).await.json().await.unwrap();
        assert_eq!(versions_of(&history, &id), ["W/\"2\""], "{scope}: type history");
    }
    // Moved back and deleted: pat-001 sees its version and not the deletion of pat-002's.
    let other = token(&s, &client, "launch/patient patient/*.rs", "patient").await;
    created["subject"] = json!({"reference": "Patient/pat-002"});
    assert_eq!(send(&s, Method::PUT, &path, &admin, Some(&created), None).await.status(), 200);
    assert_eq!(send(&s, Method::DELETE, &path, &admin, None, None).await.status(), 204);
    let history: Value = s.read(&format!("{path}/_history"), &other).await.json().await.unwrap();
    assert_eq!(versions_of(&history, &id), ["W/\"2\""], "only the version that was pat-001's");
    assert_eq!(s.read(&format!("{path}/_history/4"), &other).await.status(), 403, "a deletion of pat-002's");
    s.stop().await;
}
