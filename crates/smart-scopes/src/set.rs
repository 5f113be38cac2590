//! A space-separated set of scopes: parsing, negotiation and the resource-server question.

use std::fmt;

use crate::{Interaction, Level, ResourceScope, Scope, ScopeError};

/// An ordered, duplicate-free set of scopes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeSet {
    scopes: Vec<Scope>,
}

impl ScopeSet {
    /// Parses a space-separated scope string.  Malformed SMART scopes are an error (the app
    /// developer must fix them); unknown non-SMART scopes are kept as [`Scope::Other`].
    pub fn parse(s: &str) -> Result<ScopeSet, ScopeError> {
        let mut set = ScopeSet::default();
        for token in s.split([' ', '\t', '\n', '\r']).filter(|t| !t.is_empty()) {
            set.insert(token.parse()?);
        }
        Ok(set)
    }

    pub fn insert(&mut self, scope: Scope) {
        if !self.scopes.contains(&scope) {
            self.scopes.push(scope);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.scopes.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.scopes.is_empty()
    }

    pub fn len(&self) -> usize {
        self.scopes.len()
    }

    pub fn contains(&self, scope: &Scope) -> bool {
        self.scopes.contains(scope)
    }

    /// The resource scopes of the set.
    pub fn resource_scopes(&self) -> impl Iterator<Item = &ResourceScope> {
        self.scopes.iter().filter_map(|s| match s {
            Scope::Resource(r) => Some(r),
            _ => None,
        })
    }

    /// Whether any resource scope has the given level (e.g. a `patient/` scope, spec digest §1.4).
    pub fn has_level(&self, level: Level) -> bool {
        self.resource_scopes().any(|r| r.level == level)
    }

    /// Whether everything `self` allows is also allowed by `other` (refresh narrowing,
    /// remembered consent).
    pub fn is_subset_of(&self, other: &ScopeSet) -> bool {
        self.scopes.iter().all(|s| match s {
            Scope::Resource(r) => other.resource_scopes().any(|o| r.is_covered_by(o)),
            s => other.contains(s),
        })
    }

    /// What the server grants when `self` is requested and the client may have at most
    /// `allowed` (`None`: no registered limit).  Resource scopes are narrowed to what both allow;
    /// other scopes pass when allowed; [`Scope::Other`] is never granted (checklist item 40).
    pub fn negotiate(&self, allowed: Option<&ScopeSet>) -> ScopeSet {
        let mut granted = ScopeSet::default();
        for scope in &self.scopes {
            match (scope, allowed) {
                (Scope::Other(_), _) => {}
                (s, None) => granted.insert(s.clone()),
                (Scope::Resource(r), Some(allowed)) => {
                    if allowed.resource_scopes().any(|a| r.is_covered_by(a)) {
                        granted.insert(scope.clone());
                    } else {
                        for a in allowed.resource_scopes() {
                            if let Some(narrowed) = r.intersect(a) {
                                granted.insert(Scope::Resource(narrowed));
                            }
                        }
                    }
                }
                (s, Some(allowed)) => {
                    if allowed.contains(s) {
                        granted.insert(s.clone());
                    }
                }
            }
        }
        granted
    }

    /// The set without the scopes `keep` rejects.
    pub fn retain(&self, mut keep: impl FnMut(&Scope) -> bool) -> ScopeSet {
        ScopeSet { scopes: self.scopes.iter().filter(|s| keep(s)).cloned().collect() }
    }

    /// The resource scopes that allow `interaction` on `resource_type` (checklist items 77–81).
    /// Scopes form a union: the caller applies each one's level and filter and allows the
    /// request when any of them admits it.
    pub fn grants<'a>(
        &'a self,
        resource_type: &'a str,
        interaction: Interaction,
    ) -> impl Iterator<Item = &'a ResourceScope> + 'a {
        self.resource_scopes().filter(move |r| r.interactions.contains(interaction) && r.covers_type(resource_type))
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.scopes.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            s.fmt(f)?;
        }
        Ok(())
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> ScopeSet {
        let mut set = ScopeSet::default();
        for s in iter {
            set.insert(s);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &str) -> ScopeSet {
        ScopeSet::parse(s).unwrap()
    }

    #[test]
    fn parse_dedups_and_renders_in_order() {
        let s = set("openid  fhirUser openid patient/*.rs");
        assert_eq!(s.to_string(), "openid fhirUser patient/*.rs");
        assert_eq!(s.len(), 3);
        assert!(ScopeSet::parse("openid patient/Observation.sr").is_err());
    }

    #[test]
    fn negotiation_without_limit_drops_only_unknown_scopes() {
        let granted = set("openid profile patient/*.rs launch/patient __ext").negotiate(None);
        assert_eq!(granted.to_string(), "openid patient/*.rs launch/patient");
    }

    #[test]
    fn negotiation_narrows_to_the_client_limit() {
        let allowed = set("openid fhirUser launch/patient patient/*.rs offline_access");
        let granted =
            set("openid fhirUser launch/patient patient/*.cruds online_access user/*.rs").negotiate(Some(&allowed));
        assert_eq!(granted.to_string(), "openid fhirUser launch/patient patient/*.rs");
        let obs = set("patient/Observation.rs").negotiate(Some(&allowed));
        assert_eq!(obs.to_string(), "patient/Observation.rs");
        let lab = set("patient/Observation.rs?category=laboratory").negotiate(Some(&set("patient/Observation.r")));
        assert_eq!(lab.to_string(), "patient/Observation.r?category=laboratory");
    }

    #[test]
    fn subset_is_used_for_refresh_and_remembered_consent() {
        let granted = set("openid fhirUser offline_access patient/*.rs");
        assert!(set("patient/Observation.rs").is_subset_of(&granted));
        assert!(set("offline_access patient/*.r").is_subset_of(&granted));
        assert!(!set("patient/*.cruds").is_subset_of(&granted));
        assert!(!set("user/Observation.rs").is_subset_of(&granted));
        assert!(!set("online_access").is_subset_of(&granted));
        assert!(ScopeSet::default().is_subset_of(&granted));
    }

    #[test]
    fn grants_answers_the_resource_server_question() {
        let s = set("patient/Observation.rs?category=laboratory patient/Patient.r user/*.c");
        assert_eq!(s.grants("Observation", Interaction::Search).count(), 1);
        assert_eq!(s.grants("Patient", Interaction::Read).count(), 1);
        assert_eq!(s.grants("Patient", Interaction::Search).count(), 0);
        assert_eq!(s.grants("Condition", Interaction::Create).count(), 1);
        assert_eq!(s.grants("Condition", Interaction::Read).count(), 0, "write never implies read");
    }
}
