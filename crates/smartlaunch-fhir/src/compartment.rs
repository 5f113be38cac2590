//! The R4 Patient compartment (CompartmentDefinition/patient): which patients' compartments a
//! resource belongs to.  Each resource type lists the elements (paths of references) that
//! place it in a Patient's compartment; a resource may belong to several.

use serde_json::Value;

/// Elements, as dotted paths, whose `Patient/…` references put a resource in that patient's
/// compartment (R4 CompartmentDefinition-patient, its search parameters resolved to elements).
/// Types not listed are in no patient compartment (Practitioner, Organization, Medication, …).
fn compartment_paths(resource_type: &str) -> &'static [&'static str] {
    match resource_type {
        "Account"
        | "AdverseEvent"
        | "ChargeItem"
        | "ClinicalImpression"
        | "DeviceUseStatement"
        | "DiagnosticReport"
        | "Encounter"
        | "Flag"
        | "Goal"
        | "ImagingStudy"
        | "MeasureReport"
        | "Media"
        | "MedicationRequest"
        | "MedicationStatement"
        | "RequestGroup"
        | "RiskAssessment"
        | "Specimen" => &["subject"],
        "AllergyIntolerance" => &["patient", "recorder", "asserter"],
        "Appointment" => &["participant.actor"],
        "AppointmentResponse" | "Schedule" => &["actor"],
        "AuditEvent" => &["agent.who", "entity.what"],
        "Basic" => &["subject", "author"],
        "BodyStructure"
        | "ClaimResponse"
        | "Consent"
        | "CoverageEligibilityRequest"
        | "CoverageEligibilityResponse"
        | "DetectedIssue"
        | "EpisodeOfCare"
        | "FamilyMemberHistory"
        | "Immunization"
        | "ImmunizationEvaluation"
        | "ImmunizationRecommendation"
        | "MolecularSequence"
        | "NutritionOrder"
        | "RelatedPerson"
        | "SupplyDelivery"
        | "VisionPrescription" => &["patient"],
        "CarePlan" => &["subject", "activity.detail.performer"],
        "CareTeam" => &["subject", "participant.member"],
        "Claim" | "ExplanationOfBenefit" => &["patient", "payee.party"],
        "Communication" => &["subject", "sender", "recipient"],
        "CommunicationRequest" => &["subject", "sender", "recipient", "requester"],
        "Composition" => &["subject", "author", "attester.party"],
        "Condition" => &["subject", "asserter"],
        "Coverage" => &["policyHolder", "subscriber", "beneficiary", "payor"],
        "DeviceRequest" | "ServiceRequest" => &["subject", "performer"],
        "DocumentManifest" => &["subject", "author", "recipient"],
        "DocumentReference" | "QuestionnaireResponse" => &["subject", "author"],
        "EnrollmentRequest" => &["candidate"],
        "Group" => &["member.entity"],
        "Invoice" => &["subject", "recipient"],
        "List" => &["subject", "source"],
        "MedicationAdministration" => &["subject", "performer.actor"],
        "MedicationDispense" => &["subject", "receiver"],
        "Observation" => &["subject", "performer"],
        "Patient" => &["link.other"],
        "Person" => &["link.target"],
        "Procedure" => &["subject", "performer.actor"],
        "Provenance" => &["target"],
        "ResearchSubject" => &["individual"],
        _ => &[],
    }
}

/// Whether resources of a type can be in a Patient compartment (a Patient is in its own): the
/// types a Patient- or Group-level Bulk Data export covers.
pub fn has_patient_compartment(resource_type: &str) -> bool {
    resource_type == "Patient" || !compartment_paths(resource_type).is_empty()
}

/// Collects the `reference` strings found at a dotted path (arrays are walked at every level).
fn references_at<'a>(value: &'a Value, path: &str, out: &mut Vec<&'a str>) {
    match value {
        Value::Array(items) => items.iter().for_each(|item| references_at(item, path, out)),
        Value::Object(map) => match path.split_once('.') {
            Some((head, rest)) => {
                if let Some(next) = map.get(head) {
                    references_at(next, rest, out);
                }
            }
            None => match map.get(path) {
                Some(Value::Array(items)) => {
                    out.extend(items.iter().filter_map(|r| r.get("reference").and_then(Value::as_str)))
                }
                Some(r) => out.extend(r.get("reference").and_then(Value::as_str)),
                None => {}
            },
        },
        _ => {}
    }
}

/// The ids of every patient whose compartment holds this resource (a Patient is in its own).
pub fn patients_of(resource: &Value) -> Vec<String> {
    let Some(resource_type) = resource.get("resourceType").and_then(Value::as_str) else {
        return Vec::new();
    };
    let mut patients: Vec<String> = Vec::new();
    if resource_type == "Patient" {
        patients.extend(resource.get("id").and_then(Value::as_str).map(str::to_owned));
    }
    let mut references = Vec::new();
    for path in compartment_paths(resource_type) {
        references_at(resource, path, &mut references);
    }
    for r in references {
        if let Some(id) = r.strip_prefix("Patient/").filter(|id| crate::is_valid_id(id)) {
            if !patients.iter().any(|p| p == id) {
                patients.push(id.to_owned());
            }
        }
    }
    patients
}

/// The element holding a resource's *patient reference*: the one patient the resource is about
/// (`Observation.subject`, `AllergyIntolerance.patient`, `Coverage.beneficiary`, …), as the R4
/// compartment definition's first parameter for the type gives it.  `None` for a Patient (its
/// own id) and for types with no single such element (Appointment, Group, Provenance, …).
fn patient_reference_path(resource_type: &str) -> Option<&'static str> {
    match resource_type {
        "Coverage" => Some("beneficiary"),
        "ResearchSubject" => Some("individual"),
        "EnrollmentRequest" => Some("candidate"),
        ty => compartment_paths(ty).iter().copied().find(|p| *p == "subject" || *p == "patient"),
    }
}

/// The `Patient/{id}` ids that `references` name, relative or absolute.
fn patient_ids(references: &[&str]) -> Vec<String> {
    references
        .iter()
        .filter_map(|r| match crate::search::extract::split_reference(r) {
            Some((Some(ty), id)) if ty == "Patient" => Some(id),
            _ => None,
        })
        .collect()
}

/// Whether a resource belongs to `patient` alone, the rule for a patient-level write (issue 7,
/// item 4): its patient reference names that patient (a Patient: its own id), and no element of
/// the compartment definition names another patient (`Observation.performer` = someone else is
/// refused).  A type with no patient reference element belongs to the patient when the patient's
/// compartment holds it and no other's does.  Types outside every patient compartment
/// (Practitioner, Medication, …) belong to no patient.
pub fn belongs_to(resource: &Value, patient: &str) -> bool {
    let Some(resource_type) = resource.get("resourceType").and_then(Value::as_str) else {
        return false;
    };
    let mut named = Vec::new();
    for path in compartment_paths(resource_type) {
        references_at(resource, path, &mut named);
    }
    let named = patient_ids(&named);
    if named.iter().any(|p| p != patient) {
        return false;
    }
    if resource_type == "Patient" {
        return resource.get("id").and_then(Value::as_str) == Some(patient);
    }
    match patient_reference_path(resource_type) {
        Some(path) => {
            let mut own = Vec::new();
            references_at(resource, path, &mut own);
            let own_len = own.len();
            let own = patient_ids(&own);
            own_len > 0 && own.len() == own_len && own.iter().all(|p| p == patient)
        }
        None => !named.is_empty(),
    }
}

/// The first patient whose compartment holds the resource (its subject or patient).
pub fn patient_of(resource: &Value) -> Option<String> {
    patients_of(resource).into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compartment_membership() {
        assert_eq!(patient_of(&json!({"resourceType": "Patient", "id": "p1"})).as_deref(), Some("p1"));
        assert_eq!(
            patient_of(&json!({"resourceType": "Observation", "subject": {"reference": "Patient/p2"}})).as_deref(),
            Some("p2")
        );
        assert_eq!(
            patient_of(&json!({"resourceType": "AllergyIntolerance", "patient": {"reference": "Patient/p3"}}))
                .as_deref(),
            Some("p3")
        );
        assert_eq!(patient_of(&json!({"resourceType": "Practitioner", "id": "d1"})), None);
        assert_eq!(patient_of(&json!({"resourceType": "Observation", "subject": {"reference": "Group/g"}})), None);
    }

    #[test]
    fn a_resource_belongs_to_the_patient_its_patient_reference_names() {
        let obs = |subject: &str, performer: &str| json!({"resourceType": "Observation", "subject": {"reference": subject}, "performer": [{"reference": performer}]});
        assert!(belongs_to(&obs("Patient/a", "Practitioner/x"), "a"));
        assert!(belongs_to(&obs("Patient/a", "Patient/a"), "a"));
        assert!(!belongs_to(&obs("Patient/b", "Patient/a"), "a"), "the subject is another patient");
        assert!(!belongs_to(&obs("Patient/a", "Patient/b"), "a"), "a compartment element names another patient");
        assert!(!belongs_to(&obs("http://x/fhir/Patient/b", "Patient/a"), "a"), "absolute references count");
        assert!(!belongs_to(&obs("Group/g", "Patient/a"), "a"), "the subject is not the patient");
        assert!(!belongs_to(&json!({"resourceType": "Observation", "performer": [{"reference": "Patient/a"}]}), "a"));
        let allergy = json!({"resourceType": "AllergyIntolerance", "patient": {"reference": "Patient/a"},
                             "recorder": {"reference": "Patient/b"}});
        assert!(!belongs_to(&allergy, "a"));
        assert!(belongs_to(&json!({"resourceType": "Patient", "id": "a"}), "a"));
        assert!(!belongs_to(&json!({"resourceType": "Patient", "id": "b"}), "a"));
        assert!(!belongs_to(
            &json!({"resourceType": "Patient", "id": "a", "link": [{"other": {"reference": "Patient/b"}}]}),
            "a"
        ));
        let appt = |p: &str| json!({"resourceType": "Appointment", "participant": [{"actor": {"reference": p}}]});
        assert!(belongs_to(&appt("Patient/a"), "a") && !belongs_to(&appt("Practitioner/x"), "a"));
        assert!(!belongs_to(&json!({"resourceType": "Practitioner", "id": "a"}), "a"));
        assert!(belongs_to(&json!({"resourceType": "Coverage", "beneficiary": {"reference": "Patient/a"}}), "a"));
    }

    #[test]
    fn a_resource_can_be_in_several_compartments() {
        let obs = json!({"resourceType": "Observation", "subject": {"reference": "Patient/a"},
                         "performer": [{"reference": "Practitioner/x"}, {"reference": "Patient/b"}]});
        assert_eq!(patients_of(&obs), vec!["a", "b"]);
        let appt = json!({"resourceType": "Appointment", "participant": [{"actor": {"reference": "Patient/c"}}, {"actor": {"reference": "Patient/c"}}]});
        assert_eq!(patients_of(&appt), vec!["c"]);
        let linked = json!({"resourceType": "Patient", "id": "p", "link": [{"other": {"reference": "Patient/q"}}]});
        assert_eq!(patients_of(&linked), vec!["p", "q"]);
        assert!(
            patients_of(&json!({"resourceType": "Observation", "subject": {"reference": "Patient/bad id"}})).is_empty()
        );
    }
}
