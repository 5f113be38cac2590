//! Why a FHIR interaction was refused, as one typed value: each variant knows its HTTP status,
//! its OperationOutcome issue code (R4 `IssueType`) and its diagnostics.  The HTTP layer renders
//! it; a batch puts it in its entry's `response.outcome`.

use serde_json::{json, Value};

use crate::access::Denied;
use crate::limits::RESPONSE_BUDGET_BYTES;
use crate::store::StoreError;
use crate::validate::Invalid;

/// An OperationOutcome with one issue, how every FHIR refusal is answered: severity `fatal`
/// for the server's fault (`status` ≥ 500), `error` otherwise.
pub fn operation_outcome(status: u16, code: &str, diagnostics: &str) -> Value {
    let severity = if status >= 500 { "fatal" } else { "error" };
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{ "severity": severity, "code": code, "diagnostics": diagnostics }]
    })
}

/// A refused FHIR interaction (→ an OperationOutcome with one issue).
#[derive(Debug, Clone)]
pub enum FhirError {
    /// 400 `invalid`: the request is malformed; the text says what to fix.
    Invalid(String),
    /// 400 `not-supported`: an interaction this server does not offer where it was asked.
    NotSupported(String),
    /// 400 `too-costly`: the response would pass [`RESPONSE_BUDGET_BYTES`]; the text says how
    /// to ask for less.
    OverBudget(String),
    /// 403 `forbidden`: the token's scopes or launch context do not allow it.
    Forbidden(Denied),
    /// 403 `forbidden`: a conditional create without the search scope its condition needs.
    ConditionNeedsSearch { resource_type: String },
    /// 404 `not-supported`: not a FHIR R4 resource type.
    UnknownType(String),
    /// 404 `not-found`: no such resource or version.
    NotFound(String),
    /// 409 `conflict`: the resource changed during the request; the text says what to retry.
    Conflict(String),
    /// 410 `deleted`: the resource's current version is a deletion.
    Gone { resource_type: String, id: String, version_id: i64 },
    /// 412 `conflict`: `If-Match` names another version than the current one.
    VersionMismatch { if_match: i64, current: i64 },
    /// 412 `conflict`: `If-Match` was sent for a resource that does not exist.
    NothingToMatch { resource_type: String, id: String },
    /// 412 `duplicate`: `If-None-Exist` matches more than one resource.
    Duplicate,
    /// 413 `too-costly`: the request passes a limit of this server; the text names it.
    TooLarge(String),
    /// One entry of a transaction was refused (the whole transaction with it): its error,
    /// prefixed by the entry's 0-based index.
    Entry { index: usize, error: Box<FhirError> },
    /// 500 `exception`: the store failed while the server tried to `what`.
    Store { what: &'static str, error: StoreError },
}

impl FhirError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Self::Invalid(_) | Self::NotSupported(_) | Self::OverBudget(_) => 400,
            Self::Forbidden(_) | Self::ConditionNeedsSearch { .. } => 403,
            Self::UnknownType(_) | Self::NotFound(_) => 404,
            Self::Conflict(_) => 409,
            Self::Gone { .. } => 410,
            Self::VersionMismatch { .. } | Self::NothingToMatch { .. } | Self::Duplicate => 412,
            Self::TooLarge(_) => 413,
            Self::Entry { error, .. } => error.status(),
            Self::Store { .. } => 500,
        }
    }

    /// The OperationOutcome issue code (R4 value set `issue-type`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid",
            Self::NotSupported(_) | Self::UnknownType(_) => "not-supported",
            Self::OverBudget(_) | Self::TooLarge(_) => "too-costly",
            Self::Forbidden(_) | Self::ConditionNeedsSearch { .. } => "forbidden",
            Self::NotFound(_) => "not-found",
            Self::Conflict(_) | Self::VersionMismatch { .. } | Self::NothingToMatch { .. } => "conflict",
            Self::Gone { .. } => "deleted",
            Self::Duplicate => "duplicate",
            Self::Entry { error, .. } => error.code(),
            Self::Store { .. } => "exception",
        }
    }

    /// What went wrong and how to fix it, for the app developer (never a secret).
    pub fn diagnostics(&self) -> String {
        match self {
            Self::Invalid(m) | Self::NotSupported(m) | Self::NotFound(m) | Self::Conflict(m) | Self::TooLarge(m) => {
                m.clone()
            }
            Self::OverBudget(what_to_do) => format!(
                "the response would pass this server's response budget of {} MiB: {what_to_do}",
                RESPONSE_BUDGET_BYTES / (1024 * 1024)
            ),
            Self::Forbidden(denied) => denied.message(),
            Self::ConditionNeedsSearch { resource_type: ty } => format!(
                "a conditional create needs a search scope on {ty} (e.g. patient/{ty}.s) to evaluate If-None-Exist"
            ),
            Self::UnknownType(ty) => format!("`{ty}` is not a FHIR R4 resource type"),
            Self::Gone { resource_type, id, version_id } => {
                format!("{resource_type}/{id} was deleted (version {version_id})")
            }
            Self::VersionMismatch { if_match, current } => {
                format!("If-Match names version {if_match}, but the current version is {current}")
            }
            Self::NothingToMatch { resource_type, id } => {
                format!("If-Match was sent but {resource_type}/{id} does not exist")
            }
            Self::Duplicate => "If-None-Exist matches more than one resource".into(),
            Self::Entry { index, error } => format!("entry {index}: {}", error.diagnostics()),
            Self::Store { what, .. } => format!("the server could not {what}"),
        }
    }

    /// The `ETag` version to send with the refusal (a deletion's version), if any.
    pub fn version_id(&self) -> Option<i64> {
        match self {
            Self::Gone { version_id, .. } => Some(*version_id),
            _ => None,
        }
    }

    /// The OperationOutcome of this refusal.
    pub fn operation_outcome(&self) -> Value {
        operation_outcome(self.status(), self.code(), &self.diagnostics())
    }

    /// A store failure while the server tried to `what` (a phrase: "read the resource").
    pub(crate) fn store(what: &'static str) -> impl FnOnce(StoreError) -> FhirError {
        move |error| FhirError::Store { what, error }
    }

    /// This error as the refusal of transaction entry `index`.
    pub(crate) fn in_entry(self, index: usize) -> FhirError {
        FhirError::Entry { index, error: Box::new(self) }
    }
}

impl std::fmt::Display for FhirError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status(), self.code(), self.diagnostics())
    }
}

impl std::error::Error for FhirError {}

impl From<Denied> for FhirError {
    fn from(denied: Denied) -> FhirError {
        FhirError::Forbidden(denied)
    }
}

impl From<Invalid> for FhirError {
    fn from(invalid: Invalid) -> FhirError {
        FhirError::Invalid(invalid.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_has_its_status_and_issue_code() {
        let gone = FhirError::Gone { resource_type: "Patient".into(), id: "p".into(), version_id: 3 };
        assert_eq!((gone.status(), gone.code(), gone.version_id()), (410, "deleted", Some(3)));
        let entry = FhirError::Duplicate.in_entry(2);
        assert_eq!((entry.status(), entry.code()), (412, "duplicate"));
        assert!(entry.diagnostics().starts_with("entry 2: "));
        let store = FhirError::Store { what: "read the resource", error: StoreError("disk".into()) };
        assert_eq!(store.operation_outcome()["issue"][0]["severity"], "fatal");
        assert!(!store.diagnostics().contains("disk"), "the store's message is logged, not sent");
    }
}
