//! SMART access decisions on resources (spec digest §1.8, checklist items 77–81).

use serde_json::Value;
use smart_scopes::{Interaction, Level, ScopeSet};

use crate::compartment::{belongs_to, patients_of};
use crate::search::eval::matches_all;
use crate::search::query::parse_filter;
use crate::search::Constraint;

/// Who is asking: the granted scopes and launch context of a validated access token.
#[derive(Debug, Clone, Copy)]
pub struct Requester<'a> {
    pub scopes: &'a ScopeSet,
    /// The patient in context (`patient/` scopes are limited to it).
    pub patient: Option<&'a str>,
    /// The signed-in user, relative: `Practitioner/…` or `Patient/…`.
    pub fhir_user: Option<&'a str>,
}

/// Why access is refused (→ 403 OperationOutcome).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No granted scope names this type and interaction.
    NoScope { needed: String },
    /// Scopes name the type, but this resource is outside what they cover (another patient).
    OutsideGrant,
}

impl Denied {
    pub fn message(&self) -> String {
        match self {
            Denied::NoScope { needed } => format!("the access token has no scope for this interaction; it needs {needed}"),
            Denied::OutsideGrant => {
                "the granted scopes do not cover this resource (it is outside the patient in context or the user's access)".into()
            }
        }
    }
}

/// May the requester do `interaction` on a resource of `resource_type` that sits in the
/// compartments of `compartment_patients` (see [`crate::compartment::patients_of`])?  Scopes
/// form a union; each one applies its level: `patient/` — the context patient's compartment;
/// `user/` — a patient user's own compartment, a practitioner everything; `system/` —
/// everything.  Granular `?param=value` scopes admit nothing here: they are evaluated as search
/// constraints by the caller (never widened).
pub fn may(
    req: &Requester<'_>,
    interaction: Interaction,
    resource_type: &str,
    compartment_patients: &[String],
) -> Result<(), Denied> {
    let in_compartment = |p: &str| compartment_patients.iter().any(|c| c == p);
    let mut any = false;
    for scope in req.scopes.grants(resource_type, interaction) {
        any = true;
        if !scope.filter.is_empty() {
            continue;
        }
        if reaches(req, scope.level, in_compartment) {
            return Ok(());
        }
    }
    if any {
        Err(Denied::OutsideGrant)
    } else {
        Err(no_scope(interaction, resource_type))
    }
}

/// May the requester read (or, in a type history, search) this version of a resource (vread,
/// history: issue 7, item 5)?  Like
/// [`may`], but everything is decided on the version's own JSON: the patient compartments it
/// was in, and each granular scope's `?param=value` filter evaluated on it in memory (a filter
/// this server cannot evaluate admits nothing).  A deleted version has no JSON: the caller
/// passes the version it deleted.
pub fn may_read_version(req: &Requester<'_>, interaction: Interaction, resource: &Value) -> Result<(), Denied> {
    let patients = patients_of(resource);
    decide(req, interaction, resource, |p| patients.iter().any(|c| c == p))
}

/// May the requester create, update or delete this resource (issue 7, item 4)?  A patient-level
/// scope (`patient/`, or `user/` of a signed-in patient) writes only resources that belong to
/// that patient alone ([`belongs_to`]: the patient reference names the patient, and no
/// compartment element names another).  An update is checked on the stored version and on the
/// new body, a delete on the stored version.  Granular scopes are evaluated on the resource.
pub fn may_write(req: &Requester<'_>, interaction: Interaction, resource: &Value) -> Result<(), Denied> {
    decide(req, interaction, resource, |p| belongs_to(resource, p))
}

/// Whether a scope of `level` reaches a resource: `patient/` — the context patient is
/// `in_reach`; `user/` — a patient user's own record is, or the user is a practitioner;
/// `system/` — always.
fn reaches(req: &Requester<'_>, level: Level, in_reach: impl Fn(&str) -> bool) -> bool {
    match level {
        Level::Patient => req.patient.is_some_and(&in_reach),
        Level::User => match req.fhir_user.and_then(|u| u.strip_prefix("Patient/")) {
            Some(own) => in_reach(own),
            None => req.fhir_user.is_some_and(|u| u.starts_with("Practitioner/")),
        },
        Level::System => true,
    }
}

/// The union of scopes granting `interaction` on the resource: each admits it when its level
/// reaches the resource (`in_reach` of the context patient or the patient user; a practitioner's
/// `user/` and `system/` reach everything) and its filter, if any, matches the resource.
fn decide(
    req: &Requester<'_>,
    interaction: Interaction,
    resource: &Value,
    in_reach: impl Fn(&str) -> bool,
) -> Result<(), Denied> {
    let resource_type = resource.get("resourceType").and_then(Value::as_str).unwrap_or_default();
    let mut any = false;
    for scope in req.scopes.grants(resource_type, interaction) {
        any = true;
        let admitted = reaches(req, scope.level, &in_reach)
            && (scope.filter.is_empty()
                || parse_filter(resource_type, &scope.filter).is_some_and(|f| matches_all(resource, &f)));
        if admitted {
            return Ok(());
        }
    }
    if any {
        Err(Denied::OutsideGrant)
    } else {
        Err(no_scope(interaction, resource_type))
    }
}

/// The union of constraints under which the requester may do `interaction` on `resource_type`
/// through a search (or a granular read): one per granting scope, with its level's compartment
/// and its `?param=value` filter.  A scope whose filter this server cannot evaluate, or a
/// `patient/` scope without a patient in context, contributes nothing: a search is never widened.
pub fn constraints(
    req: &Requester<'_>,
    interaction: Interaction,
    resource_type: &str,
) -> Result<Vec<Constraint>, Denied> {
    let mut any = false;
    let mut out = Vec::new();
    for scope in req.scopes.grants(resource_type, interaction) {
        any = true;
        let compartment = match scope.level {
            Level::Patient => match req.patient {
                Some(p) => Some(p.to_owned()),
                None => continue,
            },
            Level::User => match req.fhir_user {
                Some(u) if u.starts_with("Practitioner/") => None,
                Some(u) => match u.strip_prefix("Patient/") {
                    Some(own) => Some(own.to_owned()),
                    None => continue,
                },
                None => continue,
            },
            Level::System => None,
        };
        let Some(filter) = parse_filter(resource_type, &scope.filter) else {
            continue;
        };
        out.push(Constraint { compartment, filter });
    }
    match (any, out.is_empty()) {
        (false, _) => Err(no_scope(interaction, resource_type)),
        (true, true) => Err(Denied::OutsideGrant),
        (true, false) => Ok(out),
    }
}

fn no_scope(interaction: Interaction, resource_type: &str) -> Denied {
    let letter = match interaction {
        Interaction::Create => "c",
        Interaction::Read => "r",
        Interaction::Update => "u",
        Interaction::Delete => "d",
        Interaction::Search => "s",
    };
    Denied::NoScope {
        needed: format!("patient/{resource_type}.{letter} or user/{resource_type}.{letter} (or a wildcard)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compartment::patients_of;
    use serde_json::{json, Value};

    fn check(scopes: &str, patient: Option<&str>, user: Option<&str>, resource: Value) -> Result<(), Denied> {
        let scopes = ScopeSet::parse(scopes).unwrap();
        let req = Requester { scopes: &scopes, patient, fhir_user: user };
        let ty = resource["resourceType"].as_str().unwrap().to_owned();
        may(&req, Interaction::Read, &ty, &patients_of(&resource))
    }

    #[test]
    fn patient_scopes_see_only_the_context_patient() {
        let p1 = json!({"resourceType": "Patient", "id": "p1"});
        let p2 = json!({"resourceType": "Patient", "id": "p2"});
        assert!(check("patient/*.rs", Some("p1"), None, p1.clone()).is_ok());
        assert_eq!(check("patient/*.rs", Some("p1"), None, p2), Err(Denied::OutsideGrant));
        assert!(check("patient/Patient.r", Some("p1"), None, p1.clone()).is_ok());
        assert!(matches!(check("patient/Observation.rs", Some("p1"), None, p1.clone()), Err(Denied::NoScope { .. })));
        assert!(
            matches!(check("patient/Patient.c", Some("p1"), None, p1), Err(Denied::NoScope { .. })),
            "write never implies read"
        );
    }

    #[test]
    fn user_scopes_follow_the_user() {
        let p1 = json!({"resourceType": "Patient", "id": "p1"});
        let dr = json!({"resourceType": "Practitioner", "id": "d1"});
        assert!(check("user/*.rs", None, Some("Practitioner/d1"), p1.clone()).is_ok());
        assert!(check("user/*.rs", None, Some("Practitioner/d1"), dr.clone()).is_ok());
        assert!(check("user/*.rs", None, Some("Patient/p1"), p1).is_ok());
        assert_eq!(
            check("user/*.rs", None, Some("Patient/p2"), json!({"resourceType": "Patient", "id": "p1"})),
            Err(Denied::OutsideGrant)
        );
        assert_eq!(check("patient/*.rs", Some("p1"), None, dr), Err(Denied::OutsideGrant));
    }

    #[test]
    fn interactions_map_to_their_letters() {
        let scopes = ScopeSet::parse("patient/Observation.c patient/Condition.rs user/Encounter.cud").unwrap();
        let req = Requester { scopes: &scopes, patient: Some("p"), fhir_user: Some("Practitioner/d") };
        let p = vec!["p".to_string()];
        assert!(may(&req, Interaction::Create, "Observation", &p).is_ok());
        assert!(may(&req, Interaction::Read, "Observation", &p).is_err(), "write never implies read");
        assert!(may(&req, Interaction::Search, "Condition", &p).is_ok());
        assert!(may(&req, Interaction::Update, "Condition", &p).is_err());
        assert!(may(&req, Interaction::Delete, "Encounter", &[]).is_ok(), "a practitioner's user/ scope");
        assert!(may(&req, Interaction::Create, "Observation", &["q".to_string()]).is_err(), "another patient");
    }

    #[test]
    fn search_constraints_are_a_union_of_scopes() {
        let scopes = ScopeSet::parse(
            "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory \
             patient/Observation.rs?category=vital-signs patient/Observation.s?nope=1",
        )
        .unwrap();
        let req = Requester { scopes: &scopes, patient: Some("p"), fhir_user: None };
        let c = constraints(&req, Interaction::Search, "Observation").unwrap();
        assert_eq!(c.len(), 2, "the unsupported filter contributes nothing");
        assert!(c.iter().all(|c| c.compartment.as_deref() == Some("p") && c.filter.len() == 1));
        assert!(matches!(constraints(&req, Interaction::Search, "Condition"), Err(Denied::NoScope { .. })));
        let no_context = Requester { scopes: &scopes, patient: None, fhir_user: None };
        assert_eq!(constraints(&no_context, Interaction::Search, "Observation"), Err(Denied::OutsideGrant));
        let all = ScopeSet::parse("user/*.rs").unwrap();
        let doctor = Requester { scopes: &all, patient: None, fhir_user: Some("Practitioner/d") };
        assert_eq!(constraints(&doctor, Interaction::Search, "Observation").unwrap(), vec![Constraint::everything()]);
    }

    fn requester<'a>(scopes: &'a ScopeSet, patient: Option<&'a str>, user: Option<&'a str>) -> Requester<'a> {
        Requester { scopes, patient, fhir_user: user }
    }

    fn obs(subject: &str, performer: &str, category: &str) -> Value {
        json!({"resourceType": "Observation", "id": "o", "status": "final",
               "subject": {"reference": subject}, "performer": [{"reference": performer}],
               "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}]})
    }

    #[test]
    fn a_patient_writes_only_resources_whose_patient_reference_is_the_patient() {
        let scopes = ScopeSet::parse("patient/Observation.cud").unwrap();
        let a = requester(&scopes, Some("a"), None);
        assert!(may_write(&a, Interaction::Create, &obs("Patient/a", "Practitioner/x", "vital-signs")).is_ok());
        assert_eq!(
            may_write(&a, Interaction::Create, &obs("Patient/b", "Patient/a", "vital-signs")),
            Err(Denied::OutsideGrant),
            "subject = another patient, performer = the context patient (the attack of issue 7)"
        );
        assert_eq!(
            may_write(&a, Interaction::Update, &obs("Patient/a", "Patient/b", "vital-signs")),
            Err(Denied::OutsideGrant),
            "a compartment element names another patient"
        );
        assert_eq!(may_write(&a, Interaction::Delete, &obs("Patient/b", "Patient/b", "x")), Err(Denied::OutsideGrant));
        assert!(matches!(
            may_write(
                &a,
                Interaction::Create,
                &json!({"resourceType": "Condition", "subject": {"reference": "Patient/a"}})
            ),
            Err(Denied::NoScope { .. })
        ));
        let user_scopes = ScopeSet::parse("user/*.cud").unwrap();
        let patient_user = requester(&user_scopes, None, Some("Patient/a"));
        assert!(may_write(&patient_user, Interaction::Create, &obs("Patient/a", "Patient/a", "x")).is_ok());
        assert!(may_write(&patient_user, Interaction::Create, &obs("Patient/b", "Patient/a", "x")).is_err());
        let doctor = requester(&user_scopes, None, Some("Practitioner/d"));
        assert!(may_write(&doctor, Interaction::Create, &obs("Patient/b", "Patient/a", "x")).is_ok());
    }

    #[test]
    fn granular_write_scopes_are_evaluated_on_the_resource() {
        let scopes = ScopeSet::parse("patient/Observation.c?category=laboratory").unwrap();
        let a = requester(&scopes, Some("a"), None);
        assert!(may_write(&a, Interaction::Create, &obs("Patient/a", "Practitioner/x", "laboratory")).is_ok());
        assert!(may_write(&a, Interaction::Create, &obs("Patient/a", "Practitioner/x", "vital-signs")).is_err());
    }

    #[test]
    fn each_version_is_read_under_its_own_compartment_and_filter() {
        let labs = ScopeSet::parse(
            "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
        )
        .unwrap();
        let a = requester(&labs, Some("a"), None);
        assert!(may_read_version(&a, Interaction::Read, &obs("Patient/a", "Practitioner/x", "laboratory")).is_ok());
        assert_eq!(
            may_read_version(&a, Interaction::Read, &obs("Patient/a", "Practitioner/x", "vital-signs")),
            Err(Denied::OutsideGrant),
            "an earlier vital-signs version of a re-categorised lab"
        );
        let all = ScopeSet::parse("patient/Observation.rs").unwrap();
        let a = requester(&all, Some("a"), None);
        assert_eq!(
            may_read_version(&a, Interaction::Read, &obs("Patient/b", "Practitioner/x", "laboratory")),
            Err(Denied::OutsideGrant),
            "an earlier version that was another patient's"
        );
        assert!(
            may_read_version(&a, Interaction::Read, &obs("Patient/b", "Patient/a", "x")).is_ok(),
            "reads use the whole compartment"
        );
        let unsupported = ScopeSet::parse("patient/Observation.rs?nope=1").unwrap();
        let a = requester(&unsupported, Some("a"), None);
        assert!(may_read_version(&a, Interaction::Read, &obs("Patient/a", "Patient/a", "x")).is_err(), "never widened");
    }

    #[test]
    fn granular_scopes_admit_nothing_they_cannot_evaluate() {
        let p1 = json!({"resourceType": "Patient", "id": "p1"});
        assert_eq!(check("patient/Patient.r?gender=female", Some("p1"), None, p1), Err(Denied::OutsideGrant));
    }
}
