//! Read-only queries of the EHR's data browser (issue 9, item 6): what a patient's compartment
//! holds, by resource type.

use serde_json::Value;
use smartlaunch_fhir::store::StoreError;

use crate::conn::all;
use crate::SqliteDb;

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

/// A current resource as the browser lists it.
#[derive(Debug, Clone)]
pub struct Listed {
    pub last_updated: String,
    pub resource: Value,
}

impl SqliteDb {
    /// How many current resources of each type are in a patient's compartment, by type name.
    pub async fn compartment_counts(&self, patient_id: &str) -> Result<Vec<(String, i64)>, StoreError> {
        let patient_id = patient_id.to_owned();
        // A count over the whole compartment: off the runtime's workers.
        self.read
            .read_blocking(move |c| {
                all(
                    c,
                    "SELECT c.resource_type, COUNT(*) FROM resource_compartments c \
                     JOIN resources r ON r.resource_type = c.resource_type AND r.id = c.id \
                     WHERE c.patient_id = ? AND r.deleted = 0 GROUP BY c.resource_type ORDER BY c.resource_type",
                    &[&patient_id],
                )
            })
            .await
            .map_err(err)
    }

    /// The current resources of one type in a patient's compartment, at most `limit`, newest
    /// first.
    pub async fn compartment_resources(
        &self,
        patient_id: &str,
        resource_type: &str,
        limit: i64,
    ) -> Result<Vec<Listed>, StoreError> {
        let (patient_id, resource_type) = (patient_id.to_owned(), resource_type.to_owned());
        let rows: Vec<(String, String)> = self
            .read
            .read_blocking(move |c| {
                all(
                    c,
                    "SELECT r.last_updated, r.content FROM resource_compartments c \
                     JOIN resources r ON r.resource_type = c.resource_type AND r.id = c.id \
                     WHERE c.patient_id = ? AND c.resource_type = ? AND r.deleted = 0 \
                     ORDER BY r.sort_key DESC, r.id LIMIT ?",
                    &[&patient_id, &resource_type, &limit],
                )
            })
            .await
            .map_err(err)?;
        rows.into_iter()
            .map(|(last_updated, content)| {
                Ok(Listed { last_updated, resource: serde_json::from_str(&content).map_err(err)? })
            })
            .collect()
    }
}
