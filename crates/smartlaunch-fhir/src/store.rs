//! The resource storage the FHIR API needs; the SQLite and PostgreSQL implementations are in `smartlaunch-store`.

use std::future::Future;

use serde_json::Value;

use crate::search::query::SearchRequest;
use crate::search::Constraint;

/// A storage failure (the server's fault).
#[derive(Debug, Clone, thiserror::Error)]
#[error("storage: {0}")]
pub struct StoreError(pub String);

/// A stored version of a resource: its JSON exactly as served, and its compartments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResource {
    pub resource_type: String,
    pub id: String,
    /// The JSON with `meta.versionId` and `meta.lastUpdated` (empty for a deletion).
    pub json: String,
    pub version_id: i64,
    /// `meta.lastUpdated` (FHIR instant).
    pub last_updated: String,
    pub deleted: bool,
    /// The patients whose compartments hold the resource (its current version).
    pub compartments: Vec<String>,
}

/// What a write expects to find, checked in the same transaction (optimistic locking).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// No live resource with this id (create, update-as-create).
    Absent,
    /// Exactly this current version (`If-Match`, or the version the caller checked access on).
    Version(i64),
    /// Whatever is there (import: the file is the source of truth).
    Any,
}

/// Why a write did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// The current version is not the expected one (`None`: there is no live resource).
    #[error("the resource changed: its current version is {0:?}")]
    Conflict(Option<i64>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One write of a transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOp {
    Put { resource: Value, expected: Expected },
    Delete { resource_type: String, id: String, expected: Expected },
}

/// One page of search results (the matches' JSON, in order) and the total number of matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPage {
    pub resources: Vec<String>,
    pub total: i64,
    /// The page stopped early: the next match would have passed `SearchRequest::max_bytes`
    /// (the response budget, [`crate::limits::RESPONSE_BUDGET_BYTES`]).
    pub over_budget: bool,
}

/// Versions of resources, newest first, and how many there are in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionPage {
    pub versions: Vec<StoredResource>,
    pub total: i64,
    /// The page stopped early: the next version would have passed the byte budget.
    pub over_budget: bool,
}

pub trait ResourceStore: Send + Sync + 'static {
    /// Runs a search of `resource_type` under the access constraints (a union; none: nothing).
    fn search(
        &self,
        resource_type: &str,
        request: &SearchRequest,
        access: &[Constraint],
    ) -> impl Future<Output = Result<SearchPage, StoreError>> + Send;
    /// Whether one live resource satisfies one of the access constraints (granular reads).
    fn matches(
        &self,
        resource_type: &str,
        id: &str,
        access: &[Constraint],
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The current version (a deleted resource is returned with `deleted`).
    fn read(
        &self,
        resource_type: &str,
        id: &str,
    ) -> impl Future<Output = Result<Option<StoredResource>, StoreError>> + Send;
    /// One version.
    fn vread(
        &self,
        resource_type: &str,
        id: &str,
        version_id: i64,
    ) -> impl Future<Output = Result<Option<StoredResource>, StoreError>> + Send;
    /// Type history: versions of the resources of a type that the access constraints admit
    /// (through their current version: candidates, each version still to be checked), newest
    /// first, holding at most `max_bytes` of JSON; and the total.
    fn type_history(
        &self,
        resource_type: &str,
        access: &[Constraint],
        count: i64,
        offset: i64,
        max_bytes: usize,
    ) -> impl Future<Output = Result<VersionPage, StoreError>> + Send;
    /// Every version of one resource, newest first, holding at most `max_bytes` of JSON.
    fn history(
        &self,
        resource_type: &str,
        id: &str,
        max_bytes: usize,
    ) -> impl Future<Output = Result<VersionPage, StoreError>> + Send;
    /// Stores a new version of `resource` (which has `resourceType` and `id`), setting
    /// `meta.versionId` and `meta.lastUpdated = now`, if the current state is `expected`.
    fn put(
        &self,
        resource: &Value,
        expected: Expected,
        now: &str,
    ) -> impl Future<Output = Result<StoredResource, WriteError>> + Send;
    /// Deletes (a new, deleted version) if the current state is `Expected::Version`.
    fn delete(
        &self,
        resource_type: &str,
        id: &str,
        expected: Expected,
        now: &str,
    ) -> impl Future<Output = Result<StoredResource, WriteError>> + Send;
    /// Applies every write in one database transaction: all or nothing.  On failure, the index
    /// of the write that failed and why.
    fn transaction(
        &self,
        ops: &[WriteOp],
        now: &str,
    ) -> impl Future<Output = Result<Vec<StoredResource>, (usize, WriteError)>> + Send;
    /// Stores resources (new versions of existing ids) in one transaction (seeding, import).
    fn put_all(&self, resources: Vec<Value>, now: &str) -> impl Future<Output = Result<usize, StoreError>> + Send;
    /// How many resources are stored (0 on a fresh database).
    fn count(&self) -> impl Future<Output = Result<i64, StoreError>> + Send;
    /// Patients whose name contains `name` (case-insensitive), ordered by name; and the total.
    fn search_patients(
        &self,
        name: &str,
        offset: i64,
        limit: i64,
    ) -> impl Future<Output = Result<(Vec<Value>, i64), StoreError>> + Send;
    /// The patient's encounters, newest first.
    fn encounters_of(&self, patient_id: &str) -> impl Future<Output = Result<Vec<Value>, StoreError>> + Send;
}
