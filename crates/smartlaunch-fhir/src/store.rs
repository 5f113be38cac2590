//! The resource storage the FHIR API needs; the sqlx implementation is in `smartlaunch-store`.

use std::future::Future;

use serde_json::Value;

/// A storage failure (the server's fault).
#[derive(Debug, Clone, thiserror::Error)]
#[error("storage: {0}")]
pub struct StoreError(pub String);

/// A stored resource: its JSON exactly as served, and its compartment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResource {
    pub json: String,
    pub version_id: i64,
    /// `meta.lastUpdated` (FHIR instant).
    pub last_updated: String,
    /// The patient whose compartment holds it.
    pub patient_id: Option<String>,
}

pub trait ResourceStore: Send + Sync + 'static {
    fn read(
        &self,
        resource_type: &str,
        id: &str,
    ) -> impl Future<Output = Result<Option<StoredResource>, StoreError>> + Send;
    /// Stores resources (new versions of existing ids) in one transaction; `now` is the
    /// `meta.lastUpdated` instant.
    fn put_all(&self, resources: &[Value], now: &str) -> impl Future<Output = Result<usize, StoreError>> + Send;
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
