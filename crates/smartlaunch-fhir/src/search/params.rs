//! The search parameters served, per resource type (R4 definitions, each resolved to the
//! element paths it indexes).

/// The kind of a search parameter (R4 search parameter types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Token,
    String,
    Date,
    Reference,
    Quantity,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Token => "token",
            Kind::String => "string",
            Kind::Date => "date",
            Kind::Reference => "reference",
            Kind::Quantity => "quantity",
        }
    }
}

/// One search parameter: its name, kind, and the element paths (dotted; arrays walked) it
/// indexes.  Choice elements are listed one by one (`effectiveDateTime`, `effectivePeriod`).
#[derive(Debug, Clone, Copy)]
pub struct SearchParam {
    pub name: &'static str,
    pub kind: Kind,
    pub paths: &'static [&'static str],
}

const fn p(name: &'static str, kind: Kind, paths: &'static [&'static str]) -> SearchParam {
    SearchParam { name, kind, paths }
}

use Kind::{Date, Quantity, Reference, String as Str, Token};

const SUBJECT: &[&str] = &["subject"];

/// The parameters of each type (besides `_id` and `_lastUpdated`, which every type has).
pub fn params_of(resource_type: &str) -> &'static [SearchParam] {
    match resource_type {
        "Patient" => {
            const {
                &[
                    p("identifier", Token, &["identifier"]),
                    p("name", Str, &["name"]),
                    p("family", Str, &["name.family"]),
                    p("given", Str, &["name.given"]),
                    p("birthdate", Date, &["birthDate"]),
                    p("gender", Token, &["gender"]),
                    p("active", Token, &["active"]),
                    p("address", Str, &["address"]),
                    p("address-city", Str, &["address.city"]),
                    p("address-postalcode", Str, &["address.postalCode"]),
                    p("telecom", Token, &["telecom"]),
                    p("general-practitioner", Reference, &["generalPractitioner"]),
                    p("organization", Reference, &["managingOrganization"]),
                ]
            }
        }
        "Practitioner" => {
            const {
                &[
                    p("identifier", Token, &["identifier"]),
                    p("name", Str, &["name"]),
                    p("family", Str, &["name.family"]),
                    p("given", Str, &["name.given"]),
                    p("gender", Token, &["gender"]),
                    p("active", Token, &["active"]),
                ]
            }
        }
        "Organization" => {
            const {
                &[
                    p("identifier", Token, &["identifier"]),
                    p("name", Str, &["name", "alias"]),
                    p("active", Token, &["active"]),
                    p("type", Token, &["type"]),
                    p("address", Str, &["address"]),
                ]
            }
        }
        "Location" => {
            const {
                &[
                    p("identifier", Token, &["identifier"]),
                    p("name", Str, &["name", "alias"]),
                    p("status", Token, &["status"]),
                    p("type", Token, &["type"]),
                    p("address", Str, &["address"]),
                    p("organization", Reference, &["managingOrganization"]),
                ]
            }
        }
        "Encounter" => {
            const {
                &[
                    p("identifier", Token, &["identifier"]),
                    p("patient", Reference, SUBJECT),
                    p("subject", Reference, SUBJECT),
                    p("status", Token, &["status"]),
                    p("class", Token, &["class"]),
                    p("type", Token, &["type"]),
                    p("date", Date, &["period"]),
                    p("participant", Reference, &["participant.individual"]),
                    p("practitioner", Reference, &["participant.individual"]),
                    p("service-provider", Reference, &["serviceProvider"]),
                ]
            }
        }
        "Observation" => {
            const {
                &[
                    p("identifier", Token, &["identifier"]),
                    p("patient", Reference, SUBJECT),
                    p("subject", Reference, SUBJECT),
                    p("code", Token, &["code"]),
                    p("category", Token, &["category"]),
                    p("status", Token, &["status"]),
                    p("date", Date, &["effectiveDateTime", "effectivePeriod", "effectiveInstant"]),
                    p("encounter", Reference, &["encounter"]),
                    p("performer", Reference, &["performer"]),
                    p("value-quantity", Quantity, &["valueQuantity"]),
                    p("component-code", Token, &["component.code"]),
                ]
            }
        }
        "Condition" => {
            const {
                &[
                    p("identifier", Token, &["identifier"]),
                    p("patient", Reference, SUBJECT),
                    p("subject", Reference, SUBJECT),
                    p("code", Token, &["code"]),
                    p("category", Token, &["category"]),
                    p("clinical-status", Token, &["clinicalStatus"]),
                    p("verification-status", Token, &["verificationStatus"]),
                    p("onset-date", Date, &["onsetDateTime", "onsetPeriod"]),
                    p("recorded-date", Date, &["recordedDate"]),
                    p("encounter", Reference, &["encounter"]),
                ]
            }
        }
        "MedicationRequest" => {
            const {
                &[
                    p("identifier", Token, &["identifier"]),
                    p("patient", Reference, SUBJECT),
                    p("subject", Reference, SUBJECT),
                    p("status", Token, &["status"]),
                    p("intent", Token, &["intent"]),
                    p("code", Token, &["medicationCodeableConcept"]),
                    p("medication", Reference, &["medicationReference"]),
                    p("authoredon", Date, &["authoredOn"]),
                    p("encounter", Reference, &["encounter"]),
                    p("requester", Reference, &["requester"]),
                ]
            }
        }
        "AllergyIntolerance" => {
            const {
                &[
                    p("identifier", Token, &["identifier"]),
                    p("patient", Reference, &["patient"]),
                    p("code", Token, &["code"]),
                    p("clinical-status", Token, &["clinicalStatus"]),
                    p("verification-status", Token, &["verificationStatus"]),
                    p("category", Token, &["category"]),
                    p("criticality", Token, &["criticality"]),
                    p("type", Token, &["type"]),
                    p("date", Date, &["recordedDate"]),
                ]
            }
        }
        "Immunization" => {
            const {
                &[
                    p("identifier", Token, &["identifier"]),
                    p("patient", Reference, &["patient"]),
                    p("status", Token, &["status"]),
                    p("vaccine-code", Token, &["vaccineCode"]),
                    p("date", Date, &["occurrenceDateTime"]),
                ]
            }
        }
        "Procedure" => {
            const {
                &[
                    p("identifier", Token, &["identifier"]),
                    p("patient", Reference, SUBJECT),
                    p("subject", Reference, SUBJECT),
                    p("code", Token, &["code"]),
                    p("category", Token, &["category"]),
                    p("status", Token, &["status"]),
                    p("date", Date, &["performedDateTime", "performedPeriod"]),
                    p("encounter", Reference, &["encounter"]),
                ]
            }
        }
        "DiagnosticReport" => {
            const {
                &[
                    p("identifier", Token, &["identifier"]),
                    p("patient", Reference, SUBJECT),
                    p("subject", Reference, SUBJECT),
                    p("code", Token, &["code"]),
                    p("category", Token, &["category"]),
                    p("status", Token, &["status"]),
                    p("date", Date, &["effectiveDateTime", "effectivePeriod"]),
                    p("issued", Date, &["issued"]),
                    p("encounter", Reference, &["encounter"]),
                    p("result", Reference, &["result"]),
                ]
            }
        }
        "DocumentReference" => {
            const {
                &[
                    p("identifier", Token, &["identifier"]),
                    p("patient", Reference, SUBJECT),
                    p("subject", Reference, SUBJECT),
                    p("type", Token, &["type"]),
                    p("category", Token, &["category"]),
                    p("status", Token, &["status"]),
                    p("date", Date, &["date"]),
                    p("period", Date, &["context.period"]),
                    p("encounter", Reference, &["context.encounter"]),
                ]
            }
        }
        "CarePlan" => {
            const {
                &[
                    p("identifier", Token, &["identifier"]),
                    p("patient", Reference, SUBJECT),
                    p("subject", Reference, SUBJECT),
                    p("status", Token, &["status"]),
                    p("intent", Token, &["intent"]),
                    p("category", Token, &["category"]),
                    p("date", Date, &["period"]),
                    p("encounter", Reference, &["encounter"]),
                ]
            }
        }
        "Goal" => {
            const {
                &[
                    p("identifier", Token, &["identifier"]),
                    p("patient", Reference, SUBJECT),
                    p("subject", Reference, SUBJECT),
                    p("lifecycle-status", Token, &["lifecycleStatus"]),
                    p("category", Token, &["category"]),
                    p("target-date", Date, &["target.dueDate"]),
                ]
            }
        }
        _ => &[],
    }
}

/// The definition of `name` on `resource_type`.
pub fn param(resource_type: &str, name: &str) -> Option<&'static SearchParam> {
    params_of(resource_type).iter().find(|p| p.name == name)
}

/// The types with search parameters beyond `_id` and `_lastUpdated`.
pub const SEARCHABLE_TYPES: &[&str] = &[
    "AllergyIntolerance",
    "CarePlan",
    "Condition",
    "DiagnosticReport",
    "DocumentReference",
    "Encounter",
    "Goal",
    "Immunization",
    "Location",
    "MedicationRequest",
    "Observation",
    "Organization",
    "Patient",
    "Practitioner",
    "Procedure",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_searchable_type_has_parameters_with_unique_names() {
        for ty in SEARCHABLE_TYPES {
            let ps = params_of(ty);
            assert!(!ps.is_empty(), "{ty}");
            let mut names: Vec<&str> = ps.iter().map(|p| p.name).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), ps.len(), "{ty}");
        }
        assert_eq!(param("Observation", "code").unwrap().kind, Kind::Token);
        assert!(param("Observation", "nope").is_none());
    }
}
