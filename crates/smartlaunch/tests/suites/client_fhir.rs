//! smartlaunch-client's FHIR calls against the real server (issue 11): create, read, update
//! and delete, paging over 1,000 resources, the context patient as the default compartment,
//! OperationOutcomes as typed errors, and backend services with a Bulk Data `$export`.

use futures_util::{StreamExt, TryStreamExt};
use serde_json::{json, Value};
use smartlaunch_auth::signing_key::{KeyKind, SigningKey};
use smartlaunch_client::{BackendService, Error, ExportRequest, PrivateKey};

use super::client_launch::{app, registered, standalone_session, STANDALONE_SCOPE};
use crate::support::*;

/// A backend service of the library with a fresh key of `kind`, allowed `scope`.
async fn backend(s: &Server, kind: KeyKind, scope: &str) -> BackendService {
    let key = SigningKey::generate(kind).unwrap();
    let reg = s
        .register(json!({
            "client_name": "Library Backend",
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": key.public_jwks(),
            "scope": scope,
        }))
        .await;
    let pem = key.to_pem().unwrap();
    let private = match kind {
        KeyKind::Rs384 => PrivateKey::rs384(key.kid(), &pem).unwrap(),
        _ => PrivateKey::es384(key.kid(), &pem).unwrap(),
    };
    BackendService::builder(reg["client_id"].as_str().unwrap(), private).scope(scope).connect(&s.fhir).await.unwrap()
}

fn vital(patient: &str, i: usize) -> Value {
    json!({
        "resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": format!("2024-01-01T00:{:02}:{:02}Z", i / 60 % 60, i % 60),
        "valueQuantity": {"value": 60 + (i % 40), "unit": "beats/minute"}
    })
}

#[tokio::test]
async fn a_backend_service_writes_and_pages_over_1000_resources_with_one_token() {
    let s = Server::start().await;
    let service = backend(&s, KeyKind::Es384, "system/Patient.cruds system/Observation.cruds").await;
    let fhir = service.fhir();
    let patient = fhir
        .create(&json!({"resourceType": "Patient", "name": [{"given": ["Paging"], "family": "Test"}]}))
        .await
        .unwrap();
    let pid = patient["id"].as_str().unwrap().to_owned();
    assert_eq!(smartlaunch_client::resource::patient_name(&patient).as_deref(), Some("Paging Test"));

    let created: Vec<Value> = futures_util::stream::iter(0..1000)
        .map(|i| {
            let (fhir, obs) = (fhir.clone(), vital(&pid, i));
            async move { fhir.create(&obs).await }
        })
        .buffer_unordered(16)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(created.len(), 1000);

    let found: Vec<Value> =
        fhir.search("Observation", &[("patient", &pid), ("_count", "100")]).try_collect().await.unwrap();
    assert_eq!(found.len(), 1000, "every page followed");
    let ids: std::collections::BTreeSet<&str> = found.iter().map(|o| o["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 1000, "no resource twice");
    assert_eq!(service.tokens_fetched(), 1, "one token for 1,002 calls: cached until shortly before expiry");

    // Update and delete, and a read of what is gone is a typed 404/410.
    let mut first = found[0].clone();
    first["valueQuantity"]["value"] = json!(99);
    let updated = fhir.update(&first).await.unwrap();
    assert_eq!(updated["valueQuantity"]["value"], 99);
    assert_ne!(updated["meta"]["versionId"], found[0]["meta"]["versionId"]);
    let id = first["id"].as_str().unwrap();
    fhir.delete("Observation", id).await.unwrap();
    let gone = fhir.read("Observation", id).await.unwrap_err();
    assert!(gone.is_not_found(), "{gone}");
    s.stop().await;
}

#[tokio::test]
async fn the_context_patient_is_the_default_compartment_and_refusals_are_typed() {
    let s = Server::start().await;
    let (client, auth) = registered(&s, "none", None).await;
    let app = app(&s, &client, STANDALONE_SCOPE, auth);
    let session = standalone_session(&s, &app).await;
    let fhir = session.fhir();
    assert_eq!(fhir.patient_id().unwrap(), "pat-001");

    let mine: Vec<Value> = fhir.search_patient("Observation", &[("_count", "7")]).unwrap().try_collect().await.unwrap();
    assert!(!mine.is_empty());
    assert!(mine.iter().all(|o| o["subject"]["reference"] == "Patient/pat-001"), "only the context patient's");
    let me: Vec<Value> = fhir.search_patient("Patient", &[]).unwrap().try_collect().await.unwrap();
    assert_eq!(me.len(), 1);

    // Writing for the context patient works; naming another patient is the server's refusal,
    // as a typed error with the OperationOutcome's issue.
    let created = fhir.create(&vital("pat-001", 1)).await.unwrap();
    assert_eq!(created["subject"]["reference"], "Patient/pat-001");
    match fhir.create(&vital("pat-002", 1)).await {
        Err(Error::Fhir { status, issues }) => {
            assert_eq!(status, 403);
            assert!(!issues.is_empty() && issues[0].diagnostics.is_some(), "{issues:?}");
        }
        other => panic!("{other:?}"),
    }
    let other = fhir.read("Patient", "pat-002").await.unwrap_err();
    assert!(other.is_forbidden() || other.is_not_found(), "{other}");

    // A paging link to another server is never sent the token.
    let foreign = json!({"link": [{"relation": "next", "url": "https://evil.example/fhir/Observation?page=2"}]});
    assert!(matches!(fhir.next_page(&foreign).await, Err(Error::ForeignUrl(_))));
    let sideways = json!({"link": [{"relation": "next", "url": format!("{}/../steal", s.fhir)}]});
    assert!(matches!(fhir.next_page(&sideways).await, Err(Error::ForeignUrl(_))));
    s.stop().await;
}

#[tokio::test]
async fn a_backend_service_exports_and_streams_the_ndjson() {
    let s = Server::start().await;
    let service = backend(&s, KeyKind::Rs384, "system/Patient.rs system/Observation.rs").await;
    let fhir = service.fhir();
    let patients: Vec<Value> = fhir.search("Patient", &[("_count", "200")]).try_collect().await.unwrap();

    let job = fhir.export(&ExportRequest::system().types(["Patient"])).await.unwrap();
    assert!(job.status_url.starts_with(&s.fhir));
    let manifest = job.wait().await.unwrap();
    assert!(manifest.requires_access_token);
    assert!(!manifest.output.is_empty());
    let mut exported = 0;
    for file in &manifest.output {
        assert_eq!(file.resource_type, "Patient");
        let lines: Vec<Value> = job.download(&manifest, file).await.unwrap().try_collect().await.unwrap();
        assert!(lines.iter().all(|r| r["resourceType"] == "Patient"));
        exported += lines.len();
    }
    assert_eq!(exported, patients.len(), "every patient, once");

    // A kick-off the server cannot honour is a typed refusal with the server's reason.
    match fhir.export(&ExportRequest::system().since("yesterday")).await {
        Err(Error::Fhir { status: 400, issues }) => {
            assert!(issues[0].diagnostics.as_deref().unwrap().contains("FHIR instant"), "{issues:?}")
        }
        other => panic!("{:?}", other.err()),
    }
    job.cancel().await.unwrap();
    assert!(job.poll().await.unwrap_err().is_not_found());
    s.stop().await;
}
