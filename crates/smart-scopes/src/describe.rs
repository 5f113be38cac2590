//! Plain-language descriptions of scopes, for the consent page (checklist item 39: wildcard
//! scopes say that they cover future data types too).

use crate::{Interaction, Level, ResourceScope, Scope};

/// Who reads a description: the same permission is worded for a clinician at an EHR, or for a
/// patient at their portal (whose record is their own, and who has no "EHR session").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    Clinician,
    Patient,
}

impl Scope {
    /// A sentence a clinician (or a developer) can understand.
    pub fn describe(&self) -> String {
        self.describe_for(Reader::Clinician)
    }

    /// A sentence `reader` can understand.
    pub fn describe_for(&self, reader: Reader) -> String {
        match (self, reader) {
            (Scope::Resource(r), _) => r.describe(reader),
            (Scope::Launch, Reader::Clinician) => "Use the context of the EHR session you launched it from".to_owned(),
            (Scope::Launch, Reader::Patient) => {
                "Use what you had open in your patient portal when you started it".to_owned()
            }
            (Scope::LaunchPatient, Reader::Clinician) => "Know which patient is selected".to_owned(),
            (Scope::LaunchPatient, Reader::Patient) => "Know whose health record it works with (yours)".to_owned(),
            (Scope::LaunchEncounter, Reader::Clinician) => "Know which encounter (visit) is selected".to_owned(),
            (Scope::LaunchEncounter, Reader::Patient) => "Know which of your visits is selected".to_owned(),
            (Scope::LaunchContext { resource, .. }, _) => format!("Know which {resource} is selected"),
            (Scope::OpenId, _) => "Confirm your identity".to_owned(),
            (Scope::FhirUser, _) => "Know who you are in the health record".to_owned(),
            (Scope::OfflineAccess, _) => "Keep access when you are not using it, until you revoke it".to_owned(),
            (Scope::OnlineAccess, _) => "Keep access while you are signed in".to_owned(),
            (Scope::Other(s), _) => format!("Unrecognised permission “{s}” (will not be granted)"),
        }
    }
}

impl ResourceScope {
    fn describe(&self, reader: Reader) -> String {
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
        let whose = match (self.level, reader) {
            (Level::Patient, Reader::Clinician) => "of the selected patient",
            (Level::Patient, Reader::Patient) => "in your health record",
            (Level::User, _) => "that you can access",
            (Level::System, _) => "on the server",
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
    use crate::{Reader, Scope};

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

    #[test]
    fn a_patient_reads_of_their_own_record_and_no_ehr_session() {
        let d = |s: &str| s.parse::<Scope>().unwrap().describe_for(Reader::Patient);
        assert_eq!(d("patient/Observation.rs"), "Read and search Observation records in your health record");
        assert_eq!(d("launch"), "Use what you had open in your patient portal when you started it");
        for s in ["launch", "launch/patient", "launch/encounter", "patient/*.rs", "openid", "fhirUser"] {
            assert!(!d(s).contains("EHR") && !d(s).contains("selected patient"), "{s}: {}", d(s));
        }
        assert!(s_clinician("launch").contains("EHR session"));
    }

    fn s_clinician(s: &str) -> String {
        s.parse::<Scope>().unwrap().describe_for(Reader::Clinician)
    }
}
