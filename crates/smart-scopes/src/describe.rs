//! Plain-language descriptions of scopes, for the consent page (checklist item 39: wildcard
//! scopes say that they cover future data types too).

use crate::{Interaction, Level, ResourceScope, Scope};

impl Scope {
    /// A sentence a patient or clinician can understand.
    pub fn describe(&self) -> String {
        match self {
            Scope::Resource(r) => r.describe(),
            Scope::Launch => "Use the context of the EHR session you launched it from".to_owned(),
            Scope::LaunchPatient => "Know which patient is selected".to_owned(),
            Scope::LaunchEncounter => "Know which encounter (visit) is selected".to_owned(),
            Scope::LaunchContext { resource, .. } => format!("Know which {resource} is selected"),
            Scope::OpenId => "Confirm your identity".to_owned(),
            Scope::FhirUser => "Know who you are in the health record".to_owned(),
            Scope::OfflineAccess => "Keep access when you are not using it, until you revoke it".to_owned(),
            Scope::OnlineAccess => "Keep access while you are signed in".to_owned(),
            Scope::Other(s) => format!("Unrecognised permission “{s}” (will not be granted)"),
        }
    }
}

impl ResourceScope {
    fn describe(&self) -> String {
        let verbs: Vec<&str> = [
            (Interaction::Read, "read"),
            (Interaction::Search, "search"),
            (Interaction::Create, "create"),
            (Interaction::Update, "update"),
            (Interaction::Delete, "delete"),
        ]
        .iter()
        .filter(|(i, _)| self.interactions.contains(*i))
        .map(|(_, v)| *v)
        .collect();
        let verbs = match verbs.as_slice() {
            [one] => (*one).to_owned(),
            [init @ .., last] => format!("{} and {last}", init.join(", ")),
            [] => String::new(),
        };
        let what = match &self.resource_type {
            Some(t) => format!("{t} records"),
            None => "all kinds of records (including kinds added in the future)".to_owned(),
        };
        let whose = match self.level {
            Level::Patient => "of the selected patient",
            Level::User => "that you can access",
            Level::System => "on the server",
        };
        let mut text = format!("{}{} {what} {whose}", verbs[..1].to_uppercase(), &verbs[1..]);
        if !self.filter.is_empty() {
            let only: Vec<String> = self.filter.iter().map(|(k, v)| format!("{k} = {v}")).collect();
            text.push_str(&format!(", only where {}", only.join(" and ")));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use crate::Scope;

    #[test]
    fn descriptions_are_plain_language() {
        let d = |s: &str| s.parse::<Scope>().unwrap().describe();
        assert_eq!(d("patient/Observation.rs"), "Read and search Observation records of the selected patient");
        assert_eq!(d("user/*.cruds"), "Read, search, create, update and delete all kinds of records (including kinds added in the future) that you can access");
        assert_eq!(
            d("patient/Observation.rs?category=laboratory"),
            "Read and search Observation records of the selected patient, only where category = laboratory"
        );
        assert_eq!(d("openid"), "Confirm your identity");
    }
}
