//! The library's errors: what went wrong, typed, so an app decides by variant and never by text.

use serde::Deserialize;

/// An error code of RFC 6749 (§4.1.2.1 for the authorization response, §5.2 for the token
/// endpoint) or RFC 7009/6750.  Codes outside the RFCs are kept in [`OAuthErrorCode::Other`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OAuthErrorCode {
    InvalidRequest,
    UnauthorizedClient,
    AccessDenied,
    UnsupportedResponseType,
    InvalidScope,
    ServerError,
    TemporarilyUnavailable,
    InvalidClient,
    InvalidGrant,
    UnsupportedGrantType,
    Other(String),
}

impl OAuthErrorCode {
    pub fn parse(code: &str) -> OAuthErrorCode {
        match code {
            "invalid_request" => Self::InvalidRequest,
            "unauthorized_client" => Self::UnauthorizedClient,
            "access_denied" => Self::AccessDenied,
            "unsupported_response_type" => Self::UnsupportedResponseType,
            "invalid_scope" => Self::InvalidScope,
            "server_error" => Self::ServerError,
            "temporarily_unavailable" => Self::TemporarilyUnavailable,
            "invalid_client" => Self::InvalidClient,
            "invalid_grant" => Self::InvalidGrant,
            "unsupported_grant_type" => Self::UnsupportedGrantType,
            other => Self::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::AccessDenied => "access_denied",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::InvalidScope => "invalid_scope",
            Self::ServerError => "server_error",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::Other(code) => code,
        }
    }
}

/// An error the authorization server reported, with its description for the developer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}", code.as_str(), description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
pub struct OAuthError {
    pub code: OAuthErrorCode,
    pub description: Option<String>,
    pub uri: Option<String>,
}

/// The JSON body of an RFC 6749 §5.2 error.
#[derive(Deserialize)]
pub(crate) struct OAuthErrorBody {
    pub error: String,
    pub error_description: Option<String>,
    pub error_uri: Option<String>,
}

impl From<OAuthErrorBody> for OAuthError {
    fn from(b: OAuthErrorBody) -> OAuthError {
        OAuthError { code: OAuthErrorCode::parse(&b.error), description: b.error_description, uri: b.error_uri }
    }
}

/// One issue of a FHIR OperationOutcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeIssue {
    /// `fatal`, `error`, `warning` or `information`.
    pub severity: String,
    /// The issue type code (`not-found`, `forbidden`, `invalid`, …).
    pub code: String,
    pub diagnostics: Option<String>,
}

/// Everything that can go wrong in a launch or a FHIR call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The `iss` of an EHR launch (or a standalone FHIR base) is not on the app's allow-list.
    #[error("the FHIR server {0} is not on this app's list of allowed issuers; add it with `allowed_issuers`, or refuse the launch")]
    IssuerNotAllowed(String),
    /// A URL the app was given or the server announced is not usable.
    #[error("{what} is not a usable URL ({url}): {reason}")]
    BadUrl { what: &'static str, url: String, reason: String },
    /// Discovery found no SMART configuration (neither `.well-known/smart-configuration` nor the
    /// CapabilityStatement's `oauth-uris` extension).
    #[error("SMART discovery failed for {iss}: {reason}")]
    Discovery { iss: String, reason: String },
    /// The server does not announce a capability this step needs.
    #[error("the server does not support {capability} (not in its smart-configuration): {needed_for}")]
    MissingCapability { capability: String, needed_for: &'static str },
    /// The callback's `state` differs from the one this browser's authorization was started
    /// with (a forged or crossed callback), or the browser has no pending authorization.
    #[error("the callback's state does not match an authorization started in this browser: {0}")]
    StateMismatch(&'static str),
    /// The authorization server redirected back with an error (RFC 6749 §4.1.2.1), or its token
    /// endpoint refused (§5.2).
    #[error("the authorization server refused: {0}")]
    OAuth(#[from] OAuthError),
    /// The callback has neither `code` nor `error`.
    #[error("the callback is malformed: {0}")]
    BadCallback(&'static str),
    /// The token response is not what SMART requires (no bearer token, a bad scope…).
    #[error("the token response is not usable: {0}")]
    BadTokenResponse(String),
    /// The id_token failed verification: its signature, issuer, audience, expiry or nonce.
    #[error("the id_token is not valid: {0}")]
    InvalidIdToken(String),
    /// The session has no refresh token (no `offline_access`/`online_access` granted) and the
    /// access token has expired.
    #[error("the access token has expired and the session has no refresh token: authorize again")]
    Expired,
    /// A patient-compartment call in a session without a patient in context.
    #[error("the session has no patient in context (ask for launch/patient, or launch from a chart)")]
    NoPatient,
    /// A paging link or a download URL points outside the FHIR server the token is for; it is
    /// not followed, so the token does not leak.
    #[error("{0} is not on the FHIR server this token is for; not followed")]
    ForeignUrl(String),
    /// The FHIR server answered with an error status; the OperationOutcome's issues, when sent.
    #[error("FHIR {status}{}", issues.first().map(|i| format!(" ({}): {}", i.code, i.diagnostics.as_deref().unwrap_or(""))).unwrap_or_default())]
    Fhir { status: u16, issues: Vec<OutcomeIssue> },
    /// A response could not be read as the JSON it should be.
    #[error("could not read the server's response: {0}")]
    BadResponse(String),
    /// The app's own configuration is wrong (a key that does not parse, a short cookie key…).
    #[error("configuration: {0}")]
    Config(String),
    /// The network or HTTP layer failed.
    #[cfg(feature = "http")]
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    /// A Bulk Data export failed or was refused.
    #[error("bulk export: {0}")]
    Export(String),
}

impl Error {
    /// Whether this is the FHIR server's 404 (a read of a resource that does not exist).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Fhir { status: 404, .. } | Error::Fhir { status: 410, .. })
    }

    /// Whether the server refused the request for lack of a scope or of access (401/403).
    pub fn is_forbidden(&self) -> bool {
        matches!(self, Error::Fhir { status: 401, .. } | Error::Fhir { status: 403, .. })
    }
}

/// Reads the issues of an OperationOutcome (FHIR R4 §2.23); empty for any other body.
pub fn outcome_issues(body: &serde_json::Value) -> Vec<OutcomeIssue> {
    if body.get("resourceType").and_then(|t| t.as_str()) != Some("OperationOutcome") {
        return Vec::new();
    }
    let text = |v: &serde_json::Value, k: &str| v.get(k).and_then(|s| s.as_str()).map(str::to_owned);
    body.get("issue")
        .and_then(|i| i.as_array())
        .map(|issues| {
            issues
                .iter()
                .map(|i| OutcomeIssue {
                    severity: text(i, "severity").unwrap_or_default(),
                    code: text(i, "code").unwrap_or_default(),
                    diagnostics: text(i, "diagnostics").or_else(|| i.get("details").and_then(|d| text(d, "text"))),
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_rfc_6749_code_round_trips_and_others_are_kept() {
        for code in [
            "invalid_request",
            "unauthorized_client",
            "access_denied",
            "unsupported_response_type",
            "invalid_scope",
            "server_error",
            "temporarily_unavailable",
            "invalid_client",
            "invalid_grant",
            "unsupported_grant_type",
        ] {
            let parsed = OAuthErrorCode::parse(code);
            assert!(!matches!(parsed, OAuthErrorCode::Other(_)), "{code}");
            assert_eq!(parsed.as_str(), code);
        }
        assert_eq!(OAuthErrorCode::parse("login_required"), OAuthErrorCode::Other("login_required".into()));
    }

    #[test]
    fn an_operation_outcome_becomes_typed_issues() {
        let body = json!({"resourceType": "OperationOutcome", "issue": [
            {"severity": "error", "code": "forbidden", "diagnostics": "no scope allows read of Condition"},
            {"severity": "warning", "code": "processing", "details": {"text": "from details"}}
        ]});
        let issues = outcome_issues(&body);
        assert_eq!(issues.len(), 2);
        assert_eq!(issues[0].code, "forbidden");
        assert_eq!(issues[1].diagnostics.as_deref(), Some("from details"));
        assert!(outcome_issues(&json!({"resourceType": "Patient"})).is_empty());
    }
}
