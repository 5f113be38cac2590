//! Bulk Data export: the job table and the keyset-paged reads of resources an export makes
//! ([`ExportStore`]).

use smartlaunch_fhir::export::{
    Compartment, ExportJob, ExportQuery, ExportSnapshot, ExportSpec, ExportStore, JobOutcome, JobStatus, PastVersion,
};
use smartlaunch_fhir::resource_types::R4_RESOURCE_TYPES;
use smartlaunch_fhir::store::StoreError;

use rusqlite::Connection;
use tokio::sync::OwnedSemaphorePermit;

use crate::conn::{all, exec, one, query_all, values};
use crate::search::{where_sql, Bind, Dialect, Liveness, Sql};
use crate::{DbError, SqliteDb};

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
        let job = job.clone();
        // One statement on the one writer: two racing kick-offs cannot both pass.
        let done = self
            .writer
            .statement(move |conn| {
                exec(
                    conn,
                    "INSERT INTO export_jobs (id, client_id, request_url, spec, status, transaction_time, progress, \
                     created_at, expires_at) SELECT $1, $2, $3, $4, 'active', $5, $6, $7, $8 \
                     WHERE (SELECT COUNT(*) FROM export_jobs WHERE client_id = $2 AND status = 'active') < $9 \
                     AND (SELECT COUNT(*) FROM export_jobs WHERE status = 'active') < $10",
                    &[
                        &job.id,
                        &job.client_id,
                        &job.request_url,
                        &spec,
                        &job.transaction_time,
                        &job.progress,
                        &job.created_at,
                        &job.expires_at,
                        &max_per_client,
                        &max_total,
                    ],
                )
                .map_err(DbError::from)
            })
            .await
            .map_err(err)?;
        Ok(done == 1)
    }

    async fn export_job(&self, id: &str) -> Result<Option<ExportJob>, StoreError> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM export_jobs WHERE id = ?");
        let row: Option<JobRow> = self.read.read(|c| one(c, &sql, &[&id])).map_err(err)?;
        row.map(job_of).transpose()
    }

    async fn active_export_jobs(&self) -> Result<Vec<ExportJob>, StoreError> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM export_jobs WHERE status = 'active' ORDER BY created_at, id");
        let rows: Vec<JobRow> = self.read.read(|c| all(c, &sql, &[])).map_err(err)?;
        rows.into_iter().map(job_of).collect()
    }

    async fn export_job_ids(&self) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = self.read.read(|c| all(c, "SELECT id FROM export_jobs", &[])).map_err(err)?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    async fn set_export_progress(&self, id: &str, progress: &str) -> Result<bool, StoreError> {
        let (id, progress) = (id.to_owned(), progress.to_owned());
        let done = self
            .writer
            .statement(move |conn| {
                exec(conn, "UPDATE export_jobs SET progress = ? WHERE id = ? AND status = 'active'", &[&progress, &id])
                    .map_err(DbError::from)
            })
            .await
            .map_err(err)?;
        Ok(done == 1)
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
        let (id, error, status) = (id.to_owned(), error.map(str::to_owned), status.as_str());
        let done = self
            .writer
            .statement(move |conn| {
                exec(
                    conn,
                    "UPDATE export_jobs SET status = $1, outcome = $2, error = $3, progress = $1, expires_at = $4 \
                     WHERE id = $5 AND status = 'active'",
                    &[&status, &outcome, &error, &expires_at, &id],
                )
                .map_err(DbError::from)
            })
            .await
            .map_err(err)?;
        Ok(done == 1)
    }

    async fn delete_export_job(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        let done = self
            .writer
            .statement(move |conn| exec(conn, "DELETE FROM export_jobs WHERE id = ?", &[&id]).map_err(DbError::from))
            .await
            .map_err(err)?;
        Ok(done == 1)
    }

    async fn purge_export_jobs(&self, now: i64) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = self
            .writer
            .statement(move |conn| {
                all(conn, "DELETE FROM export_jobs WHERE expires_at <= ? RETURNING id", &[&now]).map_err(DbError::from)
            })
            .await
            .map_err(err)?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    type Snapshot = Snapshot;

    async fn export_snapshot(&self) -> Result<Snapshot, StoreError> {
        // At most one per export job running (`MAX_CONCURRENT_JOBS`): a kick-off beyond waits.
        let permit = self.exports.clone().acquire_owned().await.map_err(err)?;
        let read = self.read.clone();
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection, DbError> {
            let conn = read.open()?;
            // Deferred: the snapshot is taken at the first read and held until the end.
            conn.execute_batch("BEGIN")?;
            Ok(conn)
        })
        .await
        .map_err(err)?
        .map_err(err)?;
        Ok(Snapshot { conn: Some(conn), _permit: permit })
    }
}

/// A read transaction on a connection of its own (so that a running export never takes a
/// reader of the FHIR API).  SQLite (WAL) gives it one snapshot from its first read to its end;
/// dropping it closes the connection, which ends the transaction.  Each read moves the
/// connection to the blocking pool and back: an export's pages take milliseconds.
pub struct Snapshot {
    conn: Option<Connection>,
    _permit: OwnedSemaphorePermit,
}

impl Snapshot {
    async fn with<T, F>(&mut self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        // Gone only if an earlier read was cancelled midway: the snapshot is over.
        let conn = self.conn.take().ok_or_else(|| StoreError("export snapshot: the read was interrupted".into()))?;
        let (conn, out) = tokio::task::spawn_blocking(move || {
            let out = f(&conn);
            (conn, out)
        })
        .await
        .map_err(err)?;
        self.conn = Some(conn);
        out.map_err(err)
    }
}

impl ExportSnapshot for Snapshot {
    async fn resource_types(&mut self) -> Result<Vec<String>, StoreError> {
        self.with(|conn| {
            // One probe per R4 type through the primary key: cheaper than a DISTINCT over every row.
            let mut present = Vec::new();
            for ty in R4_RESOURCE_TYPES {
                let any: Option<(i64,)> = one(
                    conn,
                    "SELECT EXISTS (SELECT 1 FROM resources WHERE resource_type = ? AND deleted = 0)",
                    &[ty],
                )?;
                if any == Some((1,)) {
                    present.push((*ty).to_owned());
                }
            }
            Ok(present)
        })
        .await
    }

    async fn page(
        &mut self,
        query: &ExportQuery<'_>,
        after_id: &str,
        limit: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut sql = Sql::new(Dialect::Sqlite);
        sql.push("SELECT r.id, r.content FROM resources r WHERE ");
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
        self.with(move |conn| {
            let mut stmt = conn.prepare(&sql.text)?;
            query_all(&mut stmt, &values(&sql.binds))
        })
        .await
    }

    async fn changed_after(
        &mut self,
        resource_type: &str,
        until: &str,
        after_id: &str,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        let (ty, until, after_id) = (resource_type.to_owned(), until.to_owned(), after_id.to_owned());
        let rows: Vec<(String,)> = self
            .with(move |conn| {
                all(
                    conn,
                    "SELECT id FROM resources WHERE resource_type = ? AND last_updated > ? AND id > ? ORDER BY id LIMIT ?",
                    &[&ty, &until, &after_id, &limit],
                )
            })
            .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    async fn version_at(
        &mut self,
        resource_type: &str,
        id: &str,
        until: &str,
    ) -> Result<Option<PastVersion>, StoreError> {
        let (ty, id, until) = (resource_type.to_owned(), id.to_owned(), until.to_owned());
        let row: Option<(String, String, i64)> = self
            .with(move |conn| {
                one(
                    conn,
                    "SELECT content, last_updated, deleted FROM resource_versions \
                     WHERE resource_type = ? AND id = ? AND last_updated <= ? ORDER BY version_id DESC LIMIT 1",
                    &[&ty, &id, &until],
                )
            })
            .await?;
        Ok(row.map(|(json, last_updated, deleted)| PastVersion { json, last_updated, deleted: deleted != 0 }))
    }
}
