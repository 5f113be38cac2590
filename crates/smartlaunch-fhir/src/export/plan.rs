//! What a backend service may export, and the plan of a job: for each resource type, the access
//! constraints its `system/` scopes give (the same [`crate::access::constraints`] a search
//! uses, granular filters included) joined with the `_typeFilter` queries; and every type left
//! out, with the reason the manifest's `error` file gives (Bulk Data IG v2.0.0, "Bulk Data
//! Kick-off Request": "the server SHALL limit the data returned to only those FHIR resources
//! for which the client is authorized").

use serde::{Deserialize, Serialize};
use serde_json::Value;
use smart_scopes::{Interaction, Level, ScopeSet};

use super::params::parse_type_filter;
use super::{ExportError, ExportLevel, ExportParams};
use crate::access::{constraints, Denied, Requester};
use crate::compartment::{has_patient_compartment, patients_of};
use crate::search::eval::matches_all;
use crate::search::query::Clause;
use crate::search::Constraint;

/// The most patients of a Group an export covers (→ 400 `too-costly` at kick-off).
pub const MAX_GROUP_MEMBERS: usize = 10_000;

/// Everything a job needs to run, fixed at kick-off and stored with the job: a restarted
/// server plans it again from this alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportSpec {
    pub level: ExportLevel,
    #[serde(flatten)]
    pub params: ExportParams,
    /// The kick-off token's scopes: the job exports what they allowed then.
    pub scope: String,
    /// A Group export: the ids of the Group's active Patient members at kick-off.
    #[serde(default)]
    pub members: Vec<String>,
}

/// Whose compartments an export is limited to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compartment {
    /// A system export: everything.
    All,
    /// A Patient export: resources in any patient's compartment.
    AnyPatient,
    /// A Group export: resources in these patients' compartments.
    Patients(Vec<String>),
}

impl Compartment {
    /// Whether a resource in these patients' compartments is covered.
    pub fn covers(&self, patients: &[String]) -> bool {
        match self {
            Compartment::All => true,
            Compartment::AnyPatient => !patients.is_empty(),
            Compartment::Patients(members) => patients.iter().any(|p| members.contains(p)),
        }
    }
}

/// One type to export, and under which constraints (a union; each is one granting scope's
/// filter joined with one `_typeFilter` query of the type).
#[derive(Debug, Clone, PartialEq)]
pub struct TypePlan {
    pub resource_type: String,
    pub access: Vec<Constraint>,
}

impl TypePlan {
    /// Whether a version of a resource belongs in the export, decided on its own JSON: the
    /// snapshot of a resource changed after `transactionTime` is the version it had then, and
    /// the search index only knows the current one.  The same rules as the store's query:
    /// `_since` (inclusive), the compartment, and one of the constraints.
    pub fn admits(&self, compartment: &Compartment, since: Option<&str>, version: &Value, last_updated: &str) -> bool {
        if since.is_some_and(|s| last_updated < s) {
            return false;
        }
        let patients = patients_of(version);
        compartment.covers(&patients)
            && self
                .access
                .iter()
                .any(|c| c.compartment.as_ref().is_none_or(|p| patients.contains(p)) && matches_all(version, &c.filter))
    }
}

/// A type the export leaves out, and why (an OperationOutcome line of the `error` file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excluded {
    pub resource_type: String,
    /// `error` (the scopes leave it out) or `warning` (it has no place in this export).
    pub severity: &'static str,
    pub diagnostics: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub types: Vec<TypePlan>,
    pub excluded: Vec<Excluded>,
    pub compartment: Compartment,
}

/// The requester of an export: the token's scopes and no launch context.
fn requester(scopes: &ScopeSet) -> Requester<'_> {
    Requester { scopes, patient: None, fhir_user: None }
}

/// May this token start an export?  Only a backend service's: `system/` scopes, one of which
/// grants search, and no patient or user in context (a launch token is for one user's app).
pub fn may_export(req: &Requester<'_>) -> Result<(), ExportError> {
    if req.patient.is_some() || req.fhir_user.is_some() {
        return Err(ExportError::Forbidden(
            "Bulk Data export is for backend services: this access token carries a patient or user context \
             (it comes from an app launch). Get a client_credentials token with system/ scopes (e.g. system/*.rs)"
                .into(),
        ));
    }
    let searches =
        req.scopes.resource_scopes().any(|s| s.level == Level::System && s.interactions.contains(Interaction::Search));
    if !searches {
        return Err(ExportError::Forbidden(
            "Bulk Data export needs a system/ scope that allows search, such as system/*.rs, system/Observation.rs \
             or (v1) system/*.read"
                .into(),
        ));
    }
    Ok(())
}

/// The types a Patient- or Group-level export covers: those with a Patient compartment.
pub fn compartment_types() -> impl Iterator<Item = &'static str> {
    crate::resource_types::R4_RESOURCE_TYPES.iter().copied().filter(|t| has_patient_compartment(t))
}

/// Plans a job: `present` are the types the store holds live resources of (the types an
/// export without `_type` implies).  Deterministic, so a job planned again after a restart
/// exports the same.
pub fn plan(spec: &ExportSpec, present: &[String]) -> Result<Plan, ExportError> {
    let scopes = ScopeSet::parse(&spec.scope)
        .map_err(|e| ExportError::Forbidden(format!("the job's scopes do not parse: {e}")))?;
    let req = requester(&scopes);
    let patient_level = !matches!(spec.level, ExportLevel::System);
    let compartment = match &spec.level {
        ExportLevel::System => Compartment::All,
        ExportLevel::Patient => Compartment::AnyPatient,
        ExportLevel::Group(_) => Compartment::Patients(spec.members.clone()),
    };
    let mut filters: Vec<(String, Vec<Clause>)> = Vec::new();
    for query in &spec.params.type_filters {
        filters.push(parse_type_filter(query)?);
    }
    let candidates: Vec<String> = match &spec.params.types {
        Some(types) => types.clone(),
        None => {
            let mut present: Vec<String> =
                present.iter().filter(|t| !patient_level || has_patient_compartment(t)).cloned().collect();
            present.sort();
            present.dedup();
            present
        }
    };
    let mut plan = Plan { types: Vec::new(), excluded: Vec::new(), compartment };
    for ty in candidates {
        if patient_level && !has_patient_compartment(&ty) {
            plan.excluded.push(Excluded {
                diagnostics: format!(
                    "{ty} was not exported: it is in no Patient compartment, and a Patient- or Group-level export \
                     holds only the compartments of its patients (ask a system-level $export for it)"
                ),
                resource_type: ty,
                severity: "warning",
            });
            continue;
        }
        match constraints(&req, Interaction::Search, &ty) {
            Ok(access) => {
                let own: Vec<&Vec<Clause>> = filters.iter().filter(|(t, _)| *t == ty).map(|(_, c)| c).collect();
                let access = if own.is_empty() {
                    access
                } else {
                    // (scope₁ ∨ scope₂) ∧ (filter₁ ∨ filter₂) = ∨ (scopeᵢ ∧ filterⱼ)
                    access
                        .iter()
                        .flat_map(|a| {
                            own.iter().map(move |f| Constraint {
                                compartment: a.compartment.clone(),
                                filter: a.filter.iter().chain(f.iter()).cloned().collect(),
                            })
                        })
                        .collect()
                };
                plan.types.push(TypePlan { resource_type: ty, access });
            }
            Err(denied) => plan.excluded.push(Excluded {
                diagnostics: match denied {
                    Denied::NoScope { .. } => format!(
                        "{ty} was not exported: no scope of the access token allows searching it (it needs \
                         system/{ty}.rs or system/{ty}.s, or v1 system/{ty}.read)"
                    ),
                    Denied::OutsideGrant => format!(
                        "{ty} was not exported: the access token's scopes on {ty} carry filters this server cannot \
                         evaluate, which admit nothing"
                    ),
                },
                resource_type: ty,
                severity: "error",
            }),
        }
    }
    Ok(plan)
}

/// A Unix time as a FHIR instant at one-second precision, UTC (`2026-01-02T03:04:05Z`): the
/// format of the store's `lastUpdated`, so that instants compare as strings.
pub fn instant_of(unix: i64) -> String {
    let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    format!("{}T{:02}:{:02}:{:02}Z", crate::demo::civil_date(days), secs / 3600, secs / 60 % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(level: ExportLevel, scope: &str, types: Option<&[&str]>, filters: &[&str]) -> ExportSpec {
        ExportSpec {
            level,
            params: ExportParams {
                types: types.map(|t| t.iter().map(|s| s.to_string()).collect()),
                since: None,
                type_filters: filters.iter().map(|s| s.to_string()).collect(),
            },
            scope: scope.into(),
            members: vec!["p1".into()],
        }
    }

    fn present() -> Vec<String> {
        ["Observation", "Patient", "Practitioner", "Condition"].iter().map(|s| s.to_string()).collect()
    }

    fn planned(p: &Plan) -> Vec<&str> {
        p.types.iter().map(|t| t.resource_type.as_str()).collect()
    }

    fn excluded(p: &Plan) -> Vec<(&str, &str)> {
        p.excluded.iter().map(|e| (e.resource_type.as_str(), e.severity)).collect()
    }

    #[test]
    fn only_backend_tokens_that_can_search_may_export() {
        let all = ScopeSet::parse("system/*.rs").unwrap();
        assert!(may_export(&requester(&all)).is_ok());
        let v1 = ScopeSet::parse("system/*.read").unwrap();
        assert!(may_export(&requester(&v1)).is_ok());
        let launch = Requester { scopes: &all, patient: Some("p1"), fhir_user: None };
        assert!(matches!(may_export(&launch), Err(ExportError::Forbidden(m)) if m.contains("patient or user context")));
        let user = Requester { scopes: &all, patient: None, fhir_user: Some("Practitioner/d") };
        assert!(may_export(&user).is_err());
        for scope in ["system/*.r", "system/*.cud", "user/*.rs", "patient/*.rs", "openid"] {
            let s = ScopeSet::parse(scope).unwrap();
            assert!(matches!(may_export(&requester(&s)), Err(ExportError::Forbidden(_))), "{scope}");
        }
    }

    #[test]
    fn a_system_export_implies_every_type_present_and_reports_those_not_granted() {
        let p =
            plan(&spec(ExportLevel::System, "system/Observation.rs system/Patient.r", None, &[]), &present()).unwrap();
        assert_eq!(planned(&p), ["Observation"]);
        assert_eq!(excluded(&p), [("Condition", "error"), ("Patient", "error"), ("Practitioner", "error")]);
        assert!(p.excluded[1].diagnostics.contains("system/Patient.rs"), "read without search is not export");
        let p = plan(&spec(ExportLevel::System, "system/*.rs", None, &[]), &present()).unwrap();
        assert_eq!(planned(&p), ["Condition", "Observation", "Patient", "Practitioner"]);
        assert!(p.excluded.is_empty());
    }

    #[test]
    fn requested_types_are_all_accounted_for() {
        let types: &[&str] = &["Patient", "Encounter", "Condition"];
        let p =
            plan(&spec(ExportLevel::System, "system/Patient.rs system/Encounter.s", Some(types), &[]), &[]).unwrap();
        assert_eq!(planned(&p), ["Patient", "Encounter"], "asked for, granted, none stored: still planned");
        assert_eq!(excluded(&p), [("Condition", "error")]);
    }

    #[test]
    fn patient_and_group_exports_cover_compartment_types_only() {
        let p = plan(&spec(ExportLevel::Patient, "system/*.rs", None, &[]), &present()).unwrap();
        assert_eq!(planned(&p), ["Condition", "Observation", "Patient"], "Practitioner has no patient compartment");
        assert!(p.excluded.is_empty(), "not asked for, so not reported");
        assert_eq!(p.compartment, Compartment::AnyPatient);
        let p =
            plan(&spec(ExportLevel::Group("g".into()), "system/*.rs", Some(&["Patient", "Practitioner"]), &[]), &[])
                .unwrap();
        assert_eq!(planned(&p), ["Patient"]);
        assert_eq!(excluded(&p), [("Practitioner", "warning")]);
        assert_eq!(p.compartment, Compartment::Patients(vec!["p1".into()]));
        assert!(compartment_types().any(|t| t == "Observation") && !compartment_types().any(|t| t == "Medication"));
    }

    #[test]
    fn granular_scopes_and_type_filters_combine_as_a_union_of_conjunctions() {
        let scope = "system/Observation.rs?category=laboratory system/Observation.rs?category=vital-signs";
        let filters = ["Observation?status=final", "Observation?code=8867-4"];
        let p = plan(&spec(ExportLevel::System, scope, Some(&["Observation"]), &filters), &[]).unwrap();
        assert_eq!(p.types[0].access.len(), 4);
        assert!(p.types[0].access.iter().all(|c| c.filter.len() == 2 && c.compartment.is_none()));
        let unevaluable =
            plan(&spec(ExportLevel::System, "system/Observation.rs?nope=1", None, &[]), &present()).unwrap();
        assert!(unevaluable
            .excluded
            .iter()
            .any(|e| e.resource_type == "Observation" && e.diagnostics.contains("cannot evaluate")));
    }

    #[test]
    fn a_past_version_is_judged_on_its_own_json() {
        let scope =
            "system/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory";
        let p = plan(&spec(ExportLevel::Group("g".into()), scope, Some(&["Observation"]), &[]), &[]).unwrap();
        let obs = |subject: &str, category: &str| {
            json!({"resourceType": "Observation", "id": "o", "subject": {"reference": format!("Patient/{subject}")},
                   "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}]})
        };
        let t = &p.types[0];
        let at = "2026-01-02T00:00:00Z";
        assert!(t.admits(&p.compartment, None, &obs("p1", "laboratory"), at));
        assert!(!t.admits(&p.compartment, None, &obs("p1", "vital-signs"), at), "the scope's filter");
        assert!(!t.admits(&p.compartment, None, &obs("p2", "laboratory"), at), "not a member");
        assert!(t.admits(&p.compartment, Some(at), &obs("p1", "laboratory"), at), "_since is inclusive");
        assert!(!t.admits(&p.compartment, Some("2026-01-02T00:00:01Z"), &obs("p1", "laboratory"), at));
    }

    #[test]
    fn instants_are_utc_seconds() {
        assert_eq!(instant_of(0), "1970-01-01T00:00:00Z");
        assert_eq!(instant_of(1_767_323_045), "2026-01-02T03:04:05Z");
    }
}
