//! The storage an export needs: its jobs, and the resources paged in id order (keyset paging,
//! so a page costs the same at the end of a type as at its start and nothing is held in memory
//! beyond one page).  The SQLite and PostgreSQL implementations are in `smartlaunch-store`.

use std::future::Future;

use super::job::{ExportJob, JobOutcome, JobStatus};
use super::plan::Compartment;
use crate::search::Constraint;
use crate::store::StoreError;

/// One page of a type's export: its live resources that one of `access` admits, in the
/// compartment, last updated in `[since, until]`.
#[derive(Debug, Clone, Copy)]
pub struct ExportQuery<'a> {
    pub resource_type: &'a str,
    pub access: &'a [Constraint],
    pub compartment: &'a Compartment,
    pub since: Option<&'a str>,
    /// The job's `transactionTime`.
    pub until: &'a str,
}

/// The version of a resource as it was at an instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastVersion {
    pub json: String,
    pub last_updated: String,
    pub deleted: bool,
}

pub trait ExportStore: Send + Sync + 'static {
    /// Stores a new job unless its client has `max_per_client` jobs active, or all clients
    /// `max_total`; checked and inserted atomically.  `false`: too many.
    fn insert_export_job(
        &self,
        job: &ExportJob,
        max_per_client: i64,
        max_total: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    fn export_job(&self, id: &str) -> impl Future<Output = Result<Option<ExportJob>, StoreError>> + Send;
    /// Jobs queued or running (to resume at start).
    fn active_export_jobs(&self) -> impl Future<Output = Result<Vec<ExportJob>, StoreError>> + Send;
    /// The ids of every job (to remove directories no job owns).
    fn export_job_ids(&self) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
    /// Records an active job's progress; `false` when the job is gone (cancelled, purged).
    fn set_export_progress(&self, id: &str, progress: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Finishes an active job; `false` when it is gone.
    fn finish_export_job(
        &self,
        id: &str,
        status: JobStatus,
        outcome: Option<&JobOutcome>,
        error: Option<&str>,
        expires_at: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Deletes a job (cancellation); `false` when there was none.
    fn delete_export_job(&self, id: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Deletes the jobs that expired at or before `now`; returns their ids (their files go too).
    fn purge_export_jobs(&self, now: i64) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// A consistent view of the resources for one job: every read of it sees the database as
    /// it was at its first read (a read transaction), so that the two passes of a type (the
    /// resources unchanged since `transactionTime`, then the past versions of those changed
    /// after) neither miss nor repeat a resource written meanwhile.
    fn export_snapshot(&self) -> impl Future<Output = Result<Self::Snapshot, StoreError>> + Send;

    type Snapshot: ExportSnapshot;
}

/// The reads of one job ([`ExportStore::export_snapshot`]).
pub trait ExportSnapshot: Send {
    /// The resource types with at least one live resource.
    fn resource_types(&mut self) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
    /// Up to `limit` resources `(id, json)` of the query with ids after `after_id`, in id order.
    fn page(
        &mut self,
        query: &ExportQuery<'_>,
        after_id: &str,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<(String, String)>, StoreError>> + Send;
    /// Up to `limit` ids of the type's resources (deleted ones too) last updated after `until`,
    /// with ids after `after_id`, in id order: the resources whose snapshot is a past version.
    fn changed_after(
        &mut self,
        resource_type: &str,
        until: &str,
        after_id: &str,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
    /// The newest version of a resource last updated at or before `until`.
    fn version_at(
        &mut self,
        resource_type: &str,
        id: &str,
        until: &str,
    ) -> impl Future<Output = Result<Option<PastVersion>, StoreError>> + Send;
}
