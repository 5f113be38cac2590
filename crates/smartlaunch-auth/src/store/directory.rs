//! [`PatientDirectory`]: the little the authorization flow reads from the FHIR data (the
//! patient and encounter pickers, checklist items 33 and 36).

use std::future::Future;

use super::StoreResult;

/// Patients and their encounters, as the pickers see them.
pub trait PatientDirectory: Send + Sync {
    /// Whether the Patient exists (a picked patient must be real).
    fn patient_exists(&self, patient_id: &str) -> impl Future<Output = StoreResult<bool>> + Send;
    /// The ids of the patient's encounters, newest first.
    fn patient_encounters(&self, patient_id: &str) -> impl Future<Output = StoreResult<Vec<String>>> + Send;
}
