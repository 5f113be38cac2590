//! FHIR Bulk Data export (Bulk Data Access IG v2.0.0, "Export"): the kick-off parameters, what
//! a backend service may export and how, the job record and its manifest.  No I/O: the job
//! runner (the binary) pages through an [`ExportStore`] and writes the NDJSON files.
//!
//! Rules kept here (docs/DESIGN.md, "Bulk Data export"):
//! - only a backend-service token exports: `system/` scopes, no patient or user in context;
//! - a type is exported when a `system/` scope grants **search** (`s`: v2 `.rs`/`.s`, v1
//!   `.read`) on it — an export is a search of the whole type — under that scope's granular
//!   filters; every type asked for (or implied) that the scopes leave out is reported in the
//!   manifest's `error` file, never silently dropped;
//! - `_since` is inclusive at the server's one-second precision, and the export is a snapshot
//!   at `transactionTime` (a resource changed later is exported as it was then).

mod job;
mod params;
mod plan;
mod store;

pub use job::{
    error_file, excluded_outcome, manifest, ExportJob, FileEntry, JobOutcome, JobStatus, StatusView,
    ACTIVE_JOB_MAX_AGE, COMPLETED_JOB_LIFETIME, MAX_ACTIVE_JOBS, MAX_ACTIVE_JOBS_PER_CLIENT, MAX_CONCURRENT_JOBS,
};
pub use params::{parameters_to_pairs, parse_kickoff, ExportLevel, ExportParams, MAX_TYPE_FILTERS};
pub use plan::{
    compartment_types, instant_of, may_export, plan, Compartment, Excluded, ExportSpec, Plan, TypePlan,
    MAX_GROUP_MEMBERS,
};
pub use store::{ExportQuery, ExportSnapshot, ExportStore, PastVersion};

/// The OperationDefinitions this server implements (CapabilityStatement `operation`s).
pub const EXPORT_DEFINITION: &str = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export";
pub const PATIENT_EXPORT_DEFINITION: &str = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export";
pub const GROUP_EXPORT_DEFINITION: &str = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export";
/// The CapabilityStatement a Bulk Data server `instantiates`.
pub const BULK_DATA_CAPABILITY: &str = "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data";

/// The media type of the output files.
pub const NDJSON: &str = "application/fhir+ndjson";

/// The file of a job that holds the OperationOutcomes of its `error` entries.
pub const ERROR_FILE: &str = "errors.ndjson";

/// Why a kick-off (or a status or file request) is refused: one variant per answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    /// 400 `invalid`: a malformed parameter or header.
    #[error("{0}")]
    Invalid(String),
    /// 400 `not-supported`: a parameter or value this server does not implement.
    #[error("{0}")]
    NotSupported(String),
    /// 400 `too-costly`: past one of the limits.
    #[error("{0}")]
    TooCostly(String),
    /// 403 `forbidden`: the token may not export.
    #[error("{0}")]
    Forbidden(String),
}

impl ExportError {
    /// The OperationOutcome `issue.code`.
    pub fn code(&self) -> &'static str {
        match self {
            ExportError::Invalid(_) => "invalid",
            ExportError::NotSupported(_) => "not-supported",
            ExportError::TooCostly(_) => "too-costly",
            ExportError::Forbidden(_) => "forbidden",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            ExportError::Forbidden(_) => 403,
            _ => 400,
        }
    }
}

/// Whether `id` can name an export job: exactly 32 lowercase hex digits (128 random bits).
/// Checked before an id is used in a query or a path, so no id can climb out of the exports
/// directory.
pub fn is_job_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether `name` can be a file of a job: `{ResourceType}.ndjson` of an R4 type, or
/// [`ERROR_FILE`].
pub fn is_file_name(name: &str) -> bool {
    name == ERROR_FILE || name.strip_suffix(".ndjson").is_some_and(crate::resource_types::is_resource_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_and_file_names_cannot_name_anything_else() {
        assert!(is_job_id("0123456789abcdef0123456789abcdef"));
        for bad in [
            "",
            "../etc/passwd",
            "0123456789ABCDEF0123456789abcdef",
            "0123456789abcdef0123456789abcde",
            "0123456789abcdef0123456789abcdef0",
            "..%2f..%2fsmartlaunch.db",
        ] {
            assert!(!is_job_id(bad), "{bad}");
        }
        assert!(is_file_name("Observation.ndjson"));
        assert!(is_file_name(ERROR_FILE));
        for bad in
            ["../smartlaunch.db", "Observation.ndjson/..", "Nope.ndjson", "Observation", ".ndjson", "smartlaunch.db"]
        {
            assert!(!is_file_name(bad), "{bad}");
        }
    }
}
