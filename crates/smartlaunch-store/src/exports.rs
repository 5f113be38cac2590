//! Bulk Data export: the job table and the keyset-paged reads of resources an export makes
//! ([`ExportStore`]).

use smartlaunch_fhir::export::{
    Compartment, ExportJob, ExportQuery, ExportSnapshot, ExportSpec, ExportStore, JobOutcome, JobStatus, PastVersion,
};
use smartlaunch_fhir::resource_types::R4_RESOURCE_TYPES;
use smartlaunch_fhir::store::StoreError;

use sqlx::{Sqlite, Transaction};

use crate::search::{where_sql, Bind, Dialect, Liveness, Sql};
use crate::SqliteDb;

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

type JobRow = (String, String, String, String, String, String, String, Option<String>, Option<String>, i64, i64);

const JOB_COLUMNS: &str =
    "id, client_id, request_url, spec, status, transaction_time, progress, outcome, error, created_at, expires_at";

fn job_of(row: JobRow) -> Result<ExportJob, StoreError> {
    let (id, client_id, request_url, spec, status, transaction_time, progress, outcome, error, created_at, expires_at) =
        row;
    let spec: ExportSpec = serde_json::from_str(&spec).map_err(err)?;
    let outcome: Option<JobOutcome> = outcome.map(|o| serde_json::from_str(&o)).transpose().map_err(err)?;
    let status = JobStatus::parse(&status).ok_or_else(|| StoreError(format!("export job {id}: status {status}")))?;
    Ok(ExportJob {
        id,
        client_id,
        request_url,
        spec,
        status,
        transaction_time,
        progress,
        outcome,
        error,
        created_at,
        expires_at,
    })
}

impl ExportStore for SqliteDb {
    async fn insert_export_job(
        &self,
        job: &ExportJob,
        max_per_client: i64,
        max_total: i64,
    ) -> Result<bool, StoreError> {
        let spec = serde_json::to_string(&job.spec).map_err(err)?;
        // One statement on the one writer connection: two racing kick-offs cannot both pass.
        let done = sqlx::query(
            "INSERT INTO export_jobs (id, client_id, request_url, spec, status, transaction_time, progress, created_at, expires_at) \
             SELECT ?, ?, ?, ?, 'active', ?, ?, ?, ? \
             WHERE (SELECT COUNT(*) FROM export_jobs WHERE client_id = ? AND status = 'active') < ? \
             AND (SELECT COUNT(*) FROM export_jobs WHERE status = 'active') < ?",
        )
        .bind(&job.id)
        .bind(&job.client_id)
        .bind(&job.request_url)
        .bind(spec)
        .bind(&job.transaction_time)
        .bind(&job.progress)
        .bind(job.created_at)
        .bind(job.expires_at)
        .bind(&job.client_id)
        .bind(max_per_client)
        .bind(max_total)
        .execute(&self.write)
        .await
        .map_err(err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn export_job(&self, id: &str) -> Result<Option<ExportJob>, StoreError> {
        let row: Option<JobRow> = sqlx::query_as(&format!("SELECT {JOB_COLUMNS} FROM export_jobs WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.read)
            .await
            .map_err(err)?;
        row.map(job_of).transpose()
    }

    async fn active_export_jobs(&self) -> Result<Vec<ExportJob>, StoreError> {
        let rows: Vec<JobRow> = sqlx::query_as(&format!(
            "SELECT {JOB_COLUMNS} FROM export_jobs WHERE status = 'active' ORDER BY created_at, id"
        ))
        .fetch_all(&self.read)
        .await
        .map_err(err)?;
        rows.into_iter().map(job_of).collect()
    }

    async fn export_job_ids(&self) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT id FROM export_jobs").fetch_all(&self.read).await.map_err(err)?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    async fn set_export_progress(&self, id: &str, progress: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE export_jobs SET progress = ? WHERE id = ? AND status = 'active'")
            .bind(progress)
            .bind(id)
            .execute(&self.write)
            .await
            .map_err(err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn finish_export_job(
        &self,
        id: &str,
        status: JobStatus,
        outcome: Option<&JobOutcome>,
        error: Option<&str>,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        let outcome = outcome.map(serde_json::to_string).transpose().map_err(err)?;
        let done = sqlx::query(
            "UPDATE export_jobs SET status = ?, outcome = ?, error = ?, progress = ?, expires_at = ? \
             WHERE id = ? AND status = 'active'",
        )
        .bind(status.as_str())
        .bind(outcome)
        .bind(error)
        .bind(status.as_str())
        .bind(expires_at)
        .bind(id)
        .execute(&self.write)
        .await
        .map_err(err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_export_job(&self, id: &str) -> Result<bool, StoreError> {
        let done =
            sqlx::query("DELETE FROM export_jobs WHERE id = ?").bind(id).execute(&self.write).await.map_err(err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn purge_export_jobs(&self, now: i64) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as("DELETE FROM export_jobs WHERE expires_at <= ? RETURNING id")
            .bind(now)
            .fetch_all(&self.write)
            .await
            .map_err(err)?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    type Snapshot = Snapshot;

    async fn export_snapshot(&self) -> Result<Snapshot, StoreError> {
        Ok(Snapshot { tx: self.exports.begin().await.map_err(err)? })
    }
}

/// A read transaction on the exports' own connections (so that a running export never takes a
/// connection the FHIR API reads with).  SQLite (WAL) gives it one snapshot from its first
/// read to its end; dropping it ends it.
pub struct Snapshot {
    tx: Transaction<'static, Sqlite>,
}

impl ExportSnapshot for Snapshot {
    async fn resource_types(&mut self) -> Result<Vec<String>, StoreError> {
        // One probe per R4 type through the primary key: cheaper than a DISTINCT over every row.
        let mut present = Vec::new();
        for ty in R4_RESOURCE_TYPES {
            let (any,): (i64,) =
                sqlx::query_as("SELECT EXISTS (SELECT 1 FROM resources WHERE resource_type = ? AND deleted = 0)")
                    .bind(ty)
                    .fetch_one(&mut *self.tx)
                    .await
                    .map_err(err)?;
            if any == 1 {
                present.push((*ty).to_owned());
            }
        }
        Ok(present)
    }

    async fn page(
        &mut self,
        query: &ExportQuery<'_>,
        after_id: &str,
        limit: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut sql = Sql::new(Dialect::Sqlite);
        where_sql(&mut sql, query.resource_type, &[], query.access, Liveness::Live);
        sql.push(" AND r.id > ").bind(Bind::Text(after_id.to_owned()));
        sql.push(" AND r.last_updated <= ").bind(Bind::Text(query.until.to_owned()));
        if let Some(since) = query.since {
            sql.push(" AND r.last_updated >= ").bind(Bind::Text(since.to_owned()));
        }
        let in_compartment = " AND EXISTS (SELECT 1 FROM resource_compartments c \
                              WHERE c.resource_type = r.resource_type AND c.id = r.id";
        match query.compartment {
            Compartment::All => {}
            Compartment::AnyPatient => {
                sql.push(in_compartment).push(")");
            }
            Compartment::Patients(members) if members.is_empty() => {
                sql.push(" AND FALSE");
            }
            Compartment::Patients(members) => {
                sql.push(in_compartment).push(" AND c.patient_id IN (");
                for (n, m) in members.iter().enumerate() {
                    sql.push(if n > 0 { ", " } else { "" }).bind(Bind::Text(m.clone()));
                }
                sql.push("))");
            }
        }
        sql.push(" ORDER BY r.id LIMIT ").bind(Bind::Int(limit));
        let (text, args) = sql.into_parts();
        sqlx::query_as_with(&format!("SELECT r.id, r.content FROM resources r WHERE {text}"), args)
            .fetch_all(&mut *self.tx)
            .await
            .map_err(err)
    }

    async fn changed_after(
        &mut self,
        resource_type: &str,
        until: &str,
        after_id: &str,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM resources WHERE resource_type = ? AND last_updated > ? AND id > ? ORDER BY id LIMIT ?",
        )
        .bind(resource_type)
        .bind(until)
        .bind(after_id)
        .bind(limit)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(err)?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    async fn version_at(
        &mut self,
        resource_type: &str,
        id: &str,
        until: &str,
    ) -> Result<Option<PastVersion>, StoreError> {
        let row: Option<(String, String, i64)> = sqlx::query_as(
            "SELECT content, last_updated, deleted FROM resource_versions \
             WHERE resource_type = ? AND id = ? AND last_updated <= ? ORDER BY version_id DESC LIMIT 1",
        )
        .bind(resource_type)
        .bind(id)
        .bind(until)
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(err)?;
        Ok(row.map(|(json, last_updated, deleted)| PastVersion { json, last_updated, deleted: deleted != 0 }))
    }
}
