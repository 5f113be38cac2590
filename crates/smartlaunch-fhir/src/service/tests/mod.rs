//! Unit tests of the FHIR service without HTTP: an in-memory store ([`super::memory`]), a
//! fixed time and predictable ids.  One test (at least) per REST rule and per refusal.

mod bundles;
mod history;
mod instance;
mod search;

use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{json, Value};
use smart_scopes::ScopeSet;

use super::memory::MemoryStore;
use super::{Context, FhirError, FhirService, Outcome};
use crate::access::Requester;
use crate::store::{ResourceStore, StoredResource};

/// The injected time: 2026-05-28T20:26:40Z.
const NOW: i64 = 1_780_000_000;
const NOW_INSTANT: &str = "2026-05-28T20:26:40Z";
const BASE: &str = "https://ehr.test/fhir";
const LAB: &str = "laboratory";
const VITALS: &str = "vital-signs";

/// Ids for created resources: `new-1`, `new-2`, … (unique across the tests of a run).
fn next_id() -> String {
    static N: AtomicUsize = AtomicUsize::new(1);
    format!("new-{}", N.fetch_add(1, Ordering::Relaxed))
}

fn service(store: &MemoryStore) -> FhirService<'_, MemoryStore> {
    FhirService::new(store, &next_id)
}

/// A token: its scopes, the patient in context, and the signed-in user.
struct Token {
    scopes: ScopeSet,
    patient: Option<&'static str>,
    user: Option<&'static str>,
}

impl Token {
    fn context(&self) -> Context<'_> {
        Context {
            requester: Requester { scopes: &self.scopes, patient: self.patient, fhir_user: self.user },
            base: BASE,
            now: NOW,
        }
    }
}

/// A patient-level token for patient `a` (`launch/patient`).
fn patient_a(scopes: &str) -> Token {
    Token { scopes: ScopeSet::parse(scopes).unwrap(), patient: Some("a"), user: None }
}

/// A practitioner's `user/` token.
fn clinician(scopes: &str) -> Token {
    Token { scopes: ScopeSet::parse(scopes).unwrap(), patient: None, user: Some("Practitioner/d") }
}

/// A backend service's `system/` token.
fn system(scopes: &str) -> Token {
    Token { scopes: ScopeSet::parse(scopes).unwrap(), patient: None, user: None }
}

fn patient(id: &str) -> Value {
    json!({ "resourceType": "Patient", "id": id, "name": [{ "family": id }] })
}

fn obs(id: &str, subject: &str, category: &str) -> Value {
    json!({
        "resourceType": "Observation", "id": id, "status": "final", "code": { "text": "x" },
        "subject": { "reference": format!("Patient/{subject}") },
        "category": [{ "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category
        }] }]
    })
}

/// Patients `a` and `b`, practitioner `d`; `a` has a lab (`lab-a`) and vitals (`vit-a`), `b` a
/// lab (`lab-b`).
async fn seeded() -> MemoryStore {
    let store = MemoryStore::default();
    let resources = vec![
        patient("a"),
        patient("b"),
        json!({ "resourceType": "Practitioner", "id": "d" }),
        obs("lab-a", "a", LAB),
        obs("vit-a", "a", VITALS),
        obs("lab-b", "b", LAB),
    ];
    store.put_all(resources, "2026-01-01T00:00:00Z").await.unwrap();
    store
}

/// The status of a refusal (for tables of expected outcomes).
fn status<T: std::fmt::Debug>(result: Result<T, FhirError>) -> u16 {
    match result {
        Ok(_) => 200,
        Err(e) => e.status(),
    }
}

/// The version an outcome wrote or showed.
fn stored(outcome: Outcome) -> StoredResource {
    match outcome {
        Outcome::Resource(v) | Outcome::Created(v) | Outcome::Updated(v) | Outcome::Existing(v) => v,
        Outcome::Deleted(Some(v)) => v,
        other => panic!("no version in {other:?}"),
    }
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}
