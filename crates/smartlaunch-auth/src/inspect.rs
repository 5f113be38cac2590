//! The launch inspector's record: each request an app makes during a launch (discovery,
//! authorize, token, refresh, FHIR calls), with secrets masked, and the places where the app
//! broke the spec (digest §4, app-side rules).

use serde::{Deserialize, Serialize};

use crate::authorize::AuthorizationRequest;
use crate::UnixTime;

/// The step of the launch a request belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Discovery,
    Authorize,
    Token,
    Refresh,
    Fhir,
}

impl Step {
    pub fn label(self) -> &'static str {
        match self {
            Step::Discovery => "Discovery",
            Step::Authorize => "Authorize",
            Step::Token => "Token",
            Step::Refresh => "Refresh",
            Step::Fhir => "FHIR API",
        }
    }
}

/// One request of a launch, as the inspector shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchEvent {
    pub at: UnixTime,
    pub step: Step,
    /// What was asked, e.g. `GET /fhir/Patient/pat-001`.
    pub request: String,
    /// Parameters, with codes, verifiers, secrets and launch ids masked.
    pub details: Vec<(String, String)>,
    /// What the server answered, e.g. `200` or `400 invalid_grant`.
    pub outcome: String,
    /// Where the app broke the spec.
    pub flags: Vec<String>,
}

/// A launch's inspector record as kept: its newest events, oldest first, and how many earlier
/// ones were dropped (issue 7 "Bounded data").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LaunchRecord {
    pub events: Vec<LaunchEvent>,
    pub dropped: u64,
}

/// The first four characters of a secret, then an ellipsis: enough to tell two apart.
pub fn mask(secret: &str) -> String {
    let shown: String = secret.chars().take(4).collect();
    format!("{shown}… ({} characters)", secret.chars().count())
}

/// An estimate of the entropy of a `state` value: 4 bits per character if it is hex, 6 if it
/// is base64url, else 5 (an upper bound for other printable text).
pub fn state_bits(state: &str) -> usize {
    let per_char = if state.bytes().all(|b| b.is_ascii_hexdigit()) {
        4
    } else if state.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        6
    } else {
        5
    };
    state.len() * per_char
}

/// The authorize event of a request made for a launch whose FHIR base is `expected_aud`.
pub fn authorize_event(req: &AuthorizationRequest, expected_aud: &str, now: UnixTime) -> LaunchEvent {
    let mut details = Vec::new();
    let mut add = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            details.push((k.to_owned(), v));
        }
    };
    add("response_type", req.response_type.clone());
    add("client_id", req.client_id.clone());
    add("redirect_uri", req.redirect_uri.clone());
    add("scope", req.scope.clone());
    add("state", req.state.as_deref().map(|s| format!("{} characters (~{} bits)", s.chars().count(), state_bits(s))));
    add("aud", req.aud.clone().or_else(|| req.resource.clone()));
    add("code_challenge_method", req.code_challenge_method.clone());
    add("code_challenge", req.code_challenge.as_deref().map(mask));
    add("launch", req.launch.as_deref().map(mask));
    let mut flags = Vec::new();
    if req.code_challenge.as_deref().is_none_or(str::is_empty) {
        flags.push("No PKCE: send code_challenge with code_challenge_method=S256 (SMART 2: SHALL)".to_owned());
    }
    match req.state.as_deref() {
        None | Some("") => flags.push("No state: send an unguessable state and check it on return".to_owned()),
        Some(s) if state_bits(s) < 122 => {
            flags.push(format!("state has ~{} bits; the spec asks for at least 122 bits of entropy", state_bits(s)))
        }
        Some(_) => {}
    }
    let aud = req.aud.as_deref().or(req.resource.as_deref()).unwrap_or_default();
    if aud.strip_suffix('/').unwrap_or(aud) != expected_aud {
        flags.push(format!("aud “{aud}” is not the FHIR base the app was launched with ({expected_aud})"));
    }
    LaunchEvent {
        at: now,
        step: Step::Authorize,
        request: "GET /auth/authorize".into(),
        details,
        outcome: String::new(),
        flags,
    }
}

/// The granted resource scopes that no FHIR call of the launch used (by resource type).
pub fn unused_scopes(granted: &str, events: &[LaunchEvent]) -> Vec<String> {
    let used: Vec<&str> = events
        .iter()
        .filter(|e| e.step == Step::Fhir && e.outcome.starts_with('2'))
        .filter_map(|e| e.request.split(' ').nth(1))
        .filter_map(|path| path.split('?').next())
        .filter_map(|path| path.split('/').find(|seg| seg.chars().next().is_some_and(|c| c.is_ascii_uppercase())))
        .collect();
    granted
        .split_whitespace()
        .filter(|s| s.starts_with("patient/") || s.starts_with("user/") || s.starts_with("system/"))
        .filter(|s| {
            let ty = s.split_once('/').map(|(_, rest)| rest).unwrap_or_default();
            let ty = ty.split(['.', '?']).next().unwrap_or_default();
            !(if ty == "*" { !used.is_empty() } else { used.contains(&ty) })
        })
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(pairs: &[(&str, &str)]) -> AuthorizationRequest {
        AuthorizationRequest::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn authorize_flags_name_each_mistake() {
        let good = request(&[
            ("state", "0123456789abcdef0123456789abcdef"),
            ("aud", "http://x/fhir"),
            ("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"),
            ("launch", "secret-launch-id"),
        ]);
        let e = authorize_event(&good, "http://x/fhir", 1);
        assert!(e.flags.is_empty(), "{:?}", e.flags);
        assert!(e.details.iter().any(|(k, v)| k == "launch" && v.starts_with("secr…")), "masked");
        let bad = request(&[("state", "abc"), ("aud", "http://elsewhere/fhir")]);
        let flags = authorize_event(&bad, "http://x/fhir", 1).flags;
        assert_eq!(flags.len(), 3, "{flags:?}");
        assert!(flags[0].starts_with("No PKCE") && flags[1].contains("~12 bits") && flags[2].contains("elsewhere"));
    }

    #[test]
    fn unused_scopes_are_those_no_successful_call_touched() {
        let call = |path: &str, outcome: &str| LaunchEvent {
            at: 0,
            step: Step::Fhir,
            request: format!("GET {path}"),
            details: vec![],
            outcome: outcome.into(),
            flags: vec![],
        };
        let events = [call("/fhir/Patient/p1", "200"), call("/fhir/Condition?patient=p1", "403")];
        let unused = unused_scopes("openid patient/Patient.rs patient/Condition.rs patient/Observation.rs", &events);
        assert_eq!(unused, ["patient/Condition.rs", "patient/Observation.rs"]);
        assert!(unused_scopes("patient/*.rs", &events).is_empty());
        assert_eq!(state_bits("0123456789abcdef0123456789abcdef"), 128);
    }
}
