//! [`PatientDirectory`] on PostgreSQL: the patient and encounter pickers' reads of the FHIR
//! data (checklist items 33, 36).

use smartlaunch_auth::store::{PatientDirectory, StoreResult};

use crate::auth_rows::err;
use crate::pg::PgDb;

const PATIENT_EXISTS: &str = "SELECT 1 FROM resources WHERE resource_type = 'Patient' AND id = $1 AND deleted = FALSE";
/// Newest first; an encounter without a date last, as SQLite orders NULL (PostgreSQL puts
/// NULLs first in a descending order unless told).
const ENCOUNTER_IDS: &str = "SELECT r.id FROM resource_compartments c \
     JOIN resources r ON r.resource_type = c.resource_type AND r.id = c.id \
     WHERE c.patient_id = $1 AND c.resource_type = 'Encounter' AND r.deleted = FALSE \
     ORDER BY r.sort_key DESC NULLS LAST, r.id";

impl PatientDirectory for PgDb {
    async fn patient_exists(&self, patient_id: &str) -> StoreResult<bool> {
        let row: Option<(i32,)> =
            sqlx::query_as(PATIENT_EXISTS).bind(patient_id).fetch_optional(&self.pool).await.map_err(err)?;
        Ok(row.is_some())
    }

    async fn patient_encounters(&self, patient_id: &str) -> StoreResult<Vec<String>> {
        let rows: Vec<(String,)> =
            sqlx::query_as(ENCOUNTER_IDS).bind(patient_id).fetch_all(&self.pool).await.map_err(err)?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }
}
