//! The EHR's data browser on PostgreSQL (issue 9, item 6): what a patient's compartment holds,
//! by resource type.  The same queries as the SQLite store's (`crate::browse`).

use smartlaunch_fhir::store::StoreError;

use super::PgDb;
use crate::resources::err;
use crate::Listed;

const COUNTS: &str = "SELECT c.resource_type, COUNT(*) FROM resource_compartments c \
     JOIN resources r ON r.resource_type = c.resource_type AND r.id = c.id \
     WHERE c.patient_id = $1 AND NOT r.deleted GROUP BY c.resource_type ORDER BY c.resource_type";
const RESOURCES: &str = "SELECT r.last_updated, r.content FROM resource_compartments c \
     JOIN resources r ON r.resource_type = c.resource_type AND r.id = c.id \
     WHERE c.patient_id = $1 AND c.resource_type = $2 AND NOT r.deleted \
     ORDER BY r.sort_key DESC NULLS LAST, r.id LIMIT $3";

impl PgDb {
    /// How many current resources of each type are in a patient's compartment, by type name.
    pub async fn compartment_counts(&self, patient_id: &str) -> Result<Vec<(String, i64)>, StoreError> {
        sqlx::query_as(COUNTS).bind(patient_id).fetch_all(&self.pool).await.map_err(err)
    }

    /// The current resources of one type in a patient's compartment, at most `limit`, newest
    /// first.
    pub async fn compartment_resources(
        &self,
        patient_id: &str,
        resource_type: &str,
        limit: i64,
    ) -> Result<Vec<Listed>, StoreError> {
        let rows: Vec<(String, String)> = sqlx::query_as(RESOURCES)
            .bind(patient_id)
            .bind(resource_type)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        rows.into_iter()
            .map(|(last_updated, content)| {
                Ok(Listed { last_updated, resource: serde_json::from_str(&content).map_err(err)? })
            })
            .collect()
    }
}
