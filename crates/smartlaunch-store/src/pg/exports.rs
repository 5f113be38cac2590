//! Bulk Data export on PostgreSQL (issue 8, item 4; issue 10, item 5): the job table, the
//! keyset-paged reads of a job's snapshot ([`ExportStore`]), and the claim that lets exactly
//! one of several nodes run a job ([`PgDb::claim_export_job`]).
//!
//! - The kick-off limits (per client, in all) are checked and the job inserted under one
//!   transaction-scoped advisory lock, so kick-offs racing on any nodes are counted one after
//!   the other.
//! - A job's snapshot is a `REPEATABLE READ, READ ONLY` transaction on a connection of the
//!   pool, held across the job's awaits: every read sees the database as at its first read.
//! - A job runs on the node holding its claim: a session-level advisory lock on a connection
//!   of its own, kept while the job runs.  `pg_try_advisory_lock` never waits, so of nodes
//!   racing to claim one job exactly one wins; a node that dies loses its connection and with
//!   it the lock, so another node may claim the job and start it again (same
//!   `transactionTime`, same data).

use smartlaunch_fhir::export::{
    Compartment, ExportJob, ExportQuery, ExportSnapshot, ExportStore, JobOutcome, JobStatus, PastVersion,
};
use smartlaunch_fhir::resource_types::R4_RESOURCE_TYPES;
use smartlaunch_fhir::store::StoreError;
use sqlx::pool::PoolConnection;
use sqlx::{Postgres, Transaction};

use super::PgDb;
use crate::resources::err;
use crate::search::{where_sql, Bind, Dialect, Liveness, Sql};

type JobRow = (String, String, String, String, String, String, String, Option<String>, Option<String>, i64, i64);

const JOB_COLUMNS: &str =
    "id, client_id, request_url, spec, status, transaction_time, progress, outcome, error, created_at, expires_at";

/// The transaction-scoped advisory lock under which kick-offs count the active jobs.
const KICK_OFF_LOCK: i64 = super::MIGRATION_LOCK + 2;
/// The first key of the claims' advisory locks (the second is the hash of the job id).  The
/// two-key locks are a key space apart from the one-key locks above.
const CLAIM_CLASS: i32 = 0x6578_706f; // "expo"

const INSERT: &str = "INSERT INTO export_jobs (id, client_id, request_url, spec, status, transaction_time, \
     progress, created_at, expires_at) \
     SELECT $1, $2, $3, $4, 'active', $5, $6, $7, $8 \
     WHERE (SELECT COUNT(*) FROM export_jobs WHERE client_id = $2 AND status = 'active') < $9 \
     AND (SELECT COUNT(*) FROM export_jobs WHERE status = 'active') < $10";
const FINISH: &str = "UPDATE export_jobs SET status = $1, outcome = $2, error = $3, progress = $1, expires_at = $4 \
     WHERE id = $5 AND status = 'active'";
/// The R4 types with a live resource, in the list's order: one probe of the primary key each.
const PRESENT_TYPES: &str = "SELECT t FROM unnest($1::text[]) WITH ORDINALITY AS u(t, n) \
     WHERE EXISTS (SELECT 1 FROM resources WHERE resource_type = u.t AND NOT deleted) ORDER BY n";
const CHANGED_AFTER: &str =
    "SELECT id FROM resources WHERE resource_type = $1 AND last_updated > $2 AND id > $3 ORDER BY id LIMIT $4";
const VERSION_AT: &str = "SELECT content, last_updated, deleted FROM resource_versions \
     WHERE resource_type = $1 AND id = $2 AND last_updated <= $3 ORDER BY version_id DESC LIMIT 1";

fn job_of(row: JobRow) -> Result<ExportJob, StoreError> {
    let (id, client_id, request_url, spec, status, transaction_time, progress, outcome, error, created_at, expires_at) =
        row;
    let spec = serde_json::from_str(&spec).map_err(err)?;
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

impl ExportStore for PgDb {
    async fn insert_export_job(
        &self,
        job: &ExportJob,
        max_per_client: i64,
        max_total: i64,
    ) -> Result<bool, StoreError> {
        let spec = serde_json::to_string(&job.spec).map_err(err)?;
        let mut tx = self.pool.begin().await.map_err(err)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(KICK_OFF_LOCK).execute(&mut *tx).await.map_err(err)?;
        let done = sqlx::query(INSERT)
            .bind(&job.id)
            .bind(&job.client_id)
            .bind(&job.request_url)
            .bind(spec)
            .bind(&job.transaction_time)
            .bind(&job.progress)
            .bind(job.created_at)
            .bind(job.expires_at)
            .bind(max_per_client)
            .bind(max_total)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        tx.commit().await.map_err(err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn export_job(&self, id: &str) -> Result<Option<ExportJob>, StoreError> {
        let row: Option<JobRow> = sqlx::query_as(&format!("SELECT {JOB_COLUMNS} FROM export_jobs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?;
        row.map(job_of).transpose()
    }

    async fn active_export_jobs(&self) -> Result<Vec<ExportJob>, StoreError> {
        let rows: Vec<JobRow> = sqlx::query_as(&format!(
            "SELECT {JOB_COLUMNS} FROM export_jobs WHERE status = 'active' ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(err)?;
        rows.into_iter().map(job_of).collect()
    }

    async fn export_job_ids(&self) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT id FROM export_jobs").fetch_all(&self.pool).await.map_err(err)?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    async fn set_export_progress(&self, id: &str, progress: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE export_jobs SET progress = $1 WHERE id = $2 AND status = 'active'")
            .bind(progress)
            .bind(id)
            .execute(&self.pool)
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
        let done = sqlx::query(FINISH)
            .bind(status.as_str())
            .bind(outcome)
            .bind(error)
            .bind(expires_at)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_export_job(&self, id: &str) -> Result<bool, StoreError> {
        let done =
            sqlx::query("DELETE FROM export_jobs WHERE id = $1").bind(id).execute(&self.pool).await.map_err(err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn purge_export_jobs(&self, now: i64) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as("DELETE FROM export_jobs WHERE expires_at <= $1 RETURNING id")
            .bind(now)
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    type Snapshot = PgSnapshot;

    async fn export_snapshot(&self) -> Result<PgSnapshot, StoreError> {
        let tx = self.pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").await.map_err(err)?;
        Ok(PgSnapshot { tx })
    }
}

impl PgDb {
    /// Claims an active job for this node to run: `None` when another node holds it (or it is
    /// no longer active).  The claim lasts until it is released or dropped, and ends with the
    /// node: it is a session advisory lock on a connection of its own (closed when dropped).
    pub async fn claim_export_job(&self, id: &str) -> Result<Option<PgExportClaim>, StoreError> {
        let mut connection = self.pool.acquire().await.map_err(err)?;
        // Dropped anywhere (a cancelled task, an error below), the connection closes and the
        // server releases the lock; it never goes back to the pool still holding it.
        connection.close_on_drop();
        let (claimed,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1, hashtext($2))")
            .bind(CLAIM_CLASS)
            .bind(id)
            .fetch_one(&mut *connection)
            .await
            .map_err(err)?;
        if !claimed {
            return Ok(None);
        }
        // Checked under the lock: a job another node finished before releasing it stays done.
        let active: Option<(bool,)> = sqlx::query_as("SELECT status = 'active' FROM export_jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *connection)
            .await
            .map_err(err)?;
        let claim = PgExportClaim { connection, id: id.to_owned() };
        match active {
            Some((true,)) => Ok(Some(claim)),
            _ => {
                claim.release().await?;
                Ok(None)
            }
        }
    }
}

/// A node's claim on an export job ([`PgDb::claim_export_job`]).
pub struct PgExportClaim {
    connection: PoolConnection<Postgres>,
    id: String,
}

impl PgExportClaim {
    /// Ends the claim at once (the lock is released before this returns).
    pub async fn release(mut self) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_advisory_unlock($1, hashtext($2))")
            .bind(CLAIM_CLASS)
            .bind(&self.id)
            .execute(&mut *self.connection)
            .await
            .map_err(err)?;
        Ok(())
    }
}

/// A job's read transaction (`REPEATABLE READ, READ ONLY`): one snapshot from its first read
/// to its end; dropping it ends it.
pub struct PgSnapshot {
    tx: Transaction<'static, Postgres>,
}

impl ExportSnapshot for PgSnapshot {
    async fn resource_types(&mut self) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> =
            sqlx::query_as(PRESENT_TYPES).bind(R4_RESOURCE_TYPES).fetch_all(&mut *self.tx).await.map_err(err)?;
        Ok(rows.into_iter().map(|(t,)| t).collect())
    }

    async fn page(
        &mut self,
        query: &ExportQuery<'_>,
        after_id: &str,
        limit: i64,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut sql = Sql::new(Dialect::Postgres);
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
        let (text, args) = sql.into_pg_parts();
        // Unnamed: planned with the values (see `search` in pg/resources.rs).
        sqlx::query_as_with(&format!("SELECT r.id, r.content FROM resources r WHERE {text}"), args)
            .persistent(false)
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
        let rows: Vec<(String,)> = sqlx::query_as(CHANGED_AFTER)
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
        let row: Option<(String, String, bool)> = sqlx::query_as(VERSION_AT)
            .bind(resource_type)
            .bind(id)
            .bind(until)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(err)?;
        Ok(row.map(|(json, last_updated, deleted)| PastVersion { json, last_updated, deleted }))
    }
}
