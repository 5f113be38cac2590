//! The R4 Patient compartment: which patient a resource belongs to.
//!
//! This covers the resource types the server holds today through their patient reference
//! elements (`subject`, `patient`, `beneficiary`); the full CompartmentDefinition comes with
//! the search engine.

use serde_json::Value;

/// The reference elements that place a resource in a Patient's compartment, per type.
fn patient_elements(resource_type: &str) -> &'static [&'static str] {
    match resource_type {
        "Observation"
        | "Condition"
        | "MedicationRequest"
        | "Encounter"
        | "DiagnosticReport"
        | "Procedure"
        | "CarePlan"
        | "Goal"
        | "DocumentReference"
        | "MedicationStatement"
        | "ServiceRequest"
        | "CareTeam" => &["subject", "patient"],
        "AllergyIntolerance" | "Immunization" => &["patient"],
        "Coverage" => &["beneficiary"],
        _ => &[],
    }
}

/// The id of the patient whose compartment holds this resource, if any.
pub fn patient_of(resource: &Value) -> Option<String> {
    let resource_type = resource.get("resourceType")?.as_str()?;
    if resource_type == "Patient" {
        return resource.get("id")?.as_str().map(str::to_owned);
    }
    patient_elements(resource_type).iter().find_map(|element| {
        resource.get(*element)?.get("reference")?.as_str()?.strip_prefix("Patient/").map(str::to_owned)
    })
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
}
