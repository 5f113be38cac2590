//! An export job: its record, its limits and lifetime, what a status request is answered, and
//! the completion manifest (Bulk Data IG v2.0.0, "Bulk Data Status Request" and "Response -
//! Complete Status").

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::plan::{Excluded, ExportSpec};
use super::ERROR_FILE;

/// Jobs that run at once; more wait their turn (each pages through the store and writes files).
pub const MAX_CONCURRENT_JOBS: usize = 2;
/// Jobs one client may have queued or running (→ 429 beyond).
pub const MAX_ACTIVE_JOBS_PER_CLIENT: i64 = 5;
/// Jobs queued or running in all (→ 429 beyond): a flood of clients cannot queue without bound.
pub const MAX_ACTIVE_JOBS: i64 = 50;
/// Seconds a finished job (completed or failed) and its files are kept.
pub const COMPLETED_JOB_LIFETIME: i64 = 3_600;
/// Seconds a job may stay queued or running before it is deleted as stuck.
pub const ACTIVE_JOB_MAX_AGE: i64 = 24 * 3_600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    /// Queued or running.
    Active,
    Completed,
    Failed,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Active => "active",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<JobStatus> {
        match s {
            "active" => Some(JobStatus::Active),
            "completed" => Some(JobStatus::Completed),
            "failed" => Some(JobStatus::Failed),
            _ => None,
        }
    }
}

/// One file of a finished job: a type's resources, or the OperationOutcomes of [`ERROR_FILE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    #[serde(rename = "type")]
    pub resource_type: String,
    /// The file name in the job's directory.
    pub file: String,
    /// How many lines (resources) it holds.
    pub count: u64,
}

/// What a completed job produced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobOutcome {
    pub output: Vec<FileEntry>,
    pub error: Vec<FileEntry>,
}

impl JobOutcome {
    /// Whether `file` is one of the job's files.
    pub fn has_file(&self, file: &str) -> bool {
        self.output.iter().chain(&self.error).any(|f| f.file == file)
    }
}

/// An export job as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportJob {
    /// 128 random bits, hex ([`super::is_job_id`]).
    pub id: String,
    /// The client that started it: only its tokens see the job.
    pub client_id: String,
    /// The kick-off URL (the manifest's `request`).
    pub request_url: String,
    pub spec: ExportSpec,
    pub status: JobStatus,
    /// The instant the export is a snapshot of (the manifest's `transactionTime`).
    pub transaction_time: String,
    /// What the job is doing (the `X-Progress` header).
    pub progress: String,
    /// A completed job's files.
    pub outcome: Option<JobOutcome>,
    /// A failed job's reason.
    pub error: Option<String>,
    pub created_at: i64,
    /// When the job and its files are deleted (status requests get 404 from then on).
    pub expires_at: i64,
}

impl ExportJob {
    /// A new job, queued.
    pub fn new(id: String, client_id: String, request_url: String, spec: ExportSpec, now: i64) -> ExportJob {
        ExportJob {
            id,
            client_id,
            request_url,
            spec,
            status: JobStatus::Active,
            transaction_time: super::instant_of(now),
            progress: "queued".into(),
            outcome: None,
            error: None,
            created_at: now,
            expires_at: now + ACTIVE_JOB_MAX_AGE,
        }
    }

    /// The expiry of a job that finishes at `now`.
    pub fn finished_expiry(now: i64) -> i64 {
        now + COMPLETED_JOB_LIFETIME
    }
}

/// What a status request (or a file request) about a job is answered.
#[derive(Debug, Clone, PartialEq)]
pub enum StatusView<'a> {
    /// 404: no such job, another client's, or expired; the text says which without telling
    /// another client that the job exists.
    NotFound(&'static str),
    /// 202 with `X-Progress`.
    InProgress(&'a str),
    /// 200 with the manifest.
    Complete(&'a JobOutcome),
    /// 500 with an OperationOutcome.
    Failed(&'a str),
}

impl<'a> StatusView<'a> {
    /// The view of `job` for a token of `client_id` at `now`.
    pub fn of(job: Option<&'a ExportJob>, client_id: &str, now: i64) -> StatusView<'a> {
        const UNKNOWN: &str = "no export job of this client has this id (it may have been cancelled)";
        match job {
            None => StatusView::NotFound(UNKNOWN),
            Some(job) if job.client_id != client_id => StatusView::NotFound(UNKNOWN),
            Some(job) if job.expires_at <= now => {
                StatusView::NotFound("this export job has expired; its files were deleted (start a new export)")
            }
            Some(job) => match (job.status, &job.outcome) {
                (JobStatus::Completed, Some(outcome)) => StatusView::Complete(outcome),
                (JobStatus::Failed, _) | (JobStatus::Completed, None) => {
                    StatusView::Failed(job.error.as_deref().unwrap_or("the export failed"))
                }
                (JobStatus::Active, _) => StatusView::InProgress(&job.progress),
            },
        }
    }
}

/// The completion manifest: `files_base` is the URL the job's file names are appended to.
pub fn manifest(job: &ExportJob, outcome: &JobOutcome, files_base: &str) -> Value {
    let url = |f: &FileEntry| format!("{files_base}/{}", f.file);
    json!({
        "transactionTime": job.transaction_time,
        "request": job.request_url,
        "requiresAccessToken": true,
        "output": outcome.output.iter().map(|f| json!({ "type": f.resource_type, "url": url(f), "count": f.count })).collect::<Vec<_>>(),
        "error": outcome.error.iter().map(|f| json!({ "type": "OperationOutcome", "url": url(f), "count": f.count })).collect::<Vec<_>>(),
    })
}

/// The OperationOutcome line of the error file for a type left out.
pub fn excluded_outcome(e: &Excluded) -> String {
    let code = if e.severity == "error" { "forbidden" } else { "not-supported" };
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{
            "severity": e.severity,
            "code": code,
            "diagnostics": e.diagnostics,
            "expression": [e.resource_type],
        }]
    })
    .to_string()
}

/// The error file's entry in the manifest for `count` lines.
pub fn error_file(count: u64) -> FileEntry {
    FileEntry { resource_type: "OperationOutcome".into(), file: ERROR_FILE.into(), count }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::{ExportLevel, ExportParams};

    fn job(now: i64) -> ExportJob {
        let spec = ExportSpec {
            level: ExportLevel::System,
            params: ExportParams::default(),
            scope: "system/*.rs".into(),
            members: vec![],
        };
        ExportJob::new("0".repeat(32), "client-a".into(), "http://x/fhir/$export".into(), spec, now)
    }

    #[test]
    fn a_job_is_seen_only_by_its_client_and_only_until_it_expires() {
        let mut j = job(1_000);
        assert_eq!(StatusView::of(Some(&j), "client-a", 1_001), StatusView::InProgress("queued"));
        assert!(matches!(StatusView::of(Some(&j), "client-b", 1_001), StatusView::NotFound(_)));
        assert!(matches!(StatusView::of(None, "client-a", 1_001), StatusView::NotFound(_)));
        assert_eq!(j.transaction_time, "1970-01-01T00:16:40Z");
        j.status = JobStatus::Completed;
        j.outcome = Some(JobOutcome::default());
        j.expires_at = ExportJob::finished_expiry(2_000);
        assert!(matches!(
            StatusView::of(Some(&j), "client-a", 2_000 + COMPLETED_JOB_LIFETIME - 1),
            StatusView::Complete(_)
        ));
        assert_eq!(
            StatusView::of(Some(&j), "client-a", 2_000 + COMPLETED_JOB_LIFETIME),
            StatusView::NotFound("this export job has expired; its files were deleted (start a new export)")
        );
        j.status = JobStatus::Failed;
        j.error = Some("disk full".into());
        assert_eq!(StatusView::of(Some(&j), "client-a", 2_001), StatusView::Failed("disk full"));
    }

    #[test]
    fn the_manifest_names_every_file_with_its_count() {
        let j = job(0);
        let outcome = JobOutcome {
            output: vec![FileEntry { resource_type: "Patient".into(), file: "Patient.ndjson".into(), count: 3 }],
            error: vec![error_file(1)],
        };
        let m = manifest(&j, &outcome, "http://x/fhir/$export-file/j");
        assert_eq!(m["transactionTime"], "1970-01-01T00:00:00Z");
        assert_eq!(m["request"], "http://x/fhir/$export");
        assert_eq!(m["requiresAccessToken"], true);
        assert_eq!(
            m["output"],
            json!([{"type": "Patient", "url": "http://x/fhir/$export-file/j/Patient.ndjson", "count": 3}])
        );
        assert_eq!(m["error"][0]["type"], "OperationOutcome");
        assert!(outcome.has_file("errors.ndjson") && !outcome.has_file("Observation.ndjson"));
        let line: Value = serde_json::from_str(&excluded_outcome(&Excluded {
            resource_type: "Condition".into(),
            severity: "error",
            diagnostics: "no scope".into(),
        }))
        .unwrap();
        assert_eq!(line["issue"][0]["code"], "forbidden");
        assert_eq!(line["issue"][0]["expression"][0], "Condition");
    }
}
