//! The launch inspector's record: each request an app makes during a launch (discovery,
//! authorize, token, refresh, FHIR calls), with secrets masked, and the places where the app
//! broke the spec (digest §4, app-side rules).

mod analysis;
mod flags;

use serde::{Deserialize, Serialize};
use smart_scopes::Scope;

use crate::authorize::AuthorizationRequest;
use crate::client_assertion::{AssertionReport, Check, Failure, MAX_LIFETIME};
use crate::error::TokenError;
use crate::token::{TokenRequest, TokenResponse};
use crate::UnixTime;

pub use analysis::{analyse, settle_outcomes, Analysis, ConsentOutcome, LaunchSummary, TokenContext};
pub use flags::{scope_flags, Flag, FlagKind};

/// The step of the launch a request belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Discovery,
    Authorize,
    Token,
    Refresh,
    Fhir,
    /// The user's decision on the consent page.
    Consent,
}

impl Step {
    pub fn label(self) -> &'static str {
        match self {
            Step::Discovery => "Discovery",
            Step::Authorize => "Authorize",
            Step::Token => "Token",
            Step::Refresh => "Refresh",
            Step::Fhir => "FHIR API",
            Step::Consent => "Consent",
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
    /// Where the app broke the spec, each with its fix (events recorded before issue 9 carry
    /// bare texts: [`FlagKind::Recorded`]).
    pub flags: Vec<Flag>,
    /// The checks the server made (a backend service's client assertion), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckLine>,
    /// The answer was a failure the developer launcher asked for (a simulated error), not the
    /// app's fault: it never counts against the app.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub simulated: bool,
    /// The context a successful token response carried (token values never recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<TokenContext>,
    /// The user's decision (a [`Step::Consent`] event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<ConsentOutcome>,
    /// What a FHIR call addressed and how it ended (a [`Step::Fhir`] event), typed so that the
    /// analysis never reads it back from `request` or `outcome`.  Calls recorded before it
    /// existed have none and count as no use of a scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fhir: Option<FhirCall>,
}

/// A FHIR API call of a launch, as the inspector's analysis needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FhirCall {
    /// The HTTP status of the answer.
    pub status: u16,
    /// The resource type the call's path starts with (`Patient/p1` → `Patient`); none for
    /// calls at the base (batch, transaction, `metadata`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
}

impl FhirCall {
    /// A 2xx answer.
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

impl LaunchEvent {
    /// An event with no details, flags or checks.
    pub fn new(step: Step, request: impl Into<String>, outcome: impl Into<String>, at: UnixTime) -> LaunchEvent {
        LaunchEvent {
            at,
            step,
            request: request.into(),
            details: Vec::new(),
            outcome: outcome.into(),
            flags: Vec::new(),
            checks: Vec::new(),
            simulated: false,
            context: None,
            consent: None,
            fhir: None,
        }
    }
}

/// One check of a request as the inspector lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckLine {
    /// The parameter, header member or claim checked.
    pub name: String,
    /// What the request carried.
    pub sent: String,
    pub verdict: Verdict,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Passed,
    Failed,
    /// Not reached: an earlier check failed.
    NotChecked,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::Failed => "failed",
            Verdict::NotChecked => "not checked",
        }
    }
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

/// What the authorize event checks a request against: the FHIR base of the launch, whether
/// the request came with a `launch` parameter (an EHR launch), and the FHIR resource types.
#[derive(Debug, Clone, Copy)]
pub struct AuthorizeContext<'a> {
    pub expected_aud: &'a str,
    /// `None`: resource types are not checked.
    pub known_type: Option<fn(&str) -> bool>,
}

/// The authorize event of a request made for a launch whose FHIR base is `expected_aud`.
pub fn authorize_event(req: &AuthorizationRequest, ctx: AuthorizeContext<'_>, now: UnixTime) -> LaunchEvent {
    let expected_aud = ctx.expected_aud;
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
        flags.push(Flag::no_pkce());
    }
    match req.state.as_deref() {
        None | Some("") => flags.push(Flag::no_state()),
        Some(s) if state_bits(s) < 122 => flags.push(Flag::weak_state(state_bits(s), looks_like_fhirclient_state(s))),
        Some(_) => {}
    }
    let aud = req.aud.as_deref().or(req.resource.as_deref()).unwrap_or_default();
    let trimmed = aud.strip_suffix('/').unwrap_or(aud);
    if trimmed != expected_aud {
        flags.push(Flag::wrong_aud(aud, expected_aud));
    } else if aud != expected_aud {
        flags.push(Flag::aud_trailing_slash(aud, expected_aud));
    }
    let scope = req.scope.as_deref().unwrap_or_default();
    if req.launch.as_deref().is_none_or(str::is_empty)
        && scope.split(' ').any(|s| s.parse() == Ok(smart_scopes::Scope::Launch))
    {
        flags.push(Flag::launch_scope_standalone());
    }
    flags.extend(scope_flags(scope, ctx.known_type));
    LaunchEvent { details, flags, ..LaunchEvent::new(Step::Authorize, "GET /auth/authorize", "", now) }
}

/// fhirclient.js's default state: 16 characters of `[A-Za-z0-9]` (`randomString(16)`).
fn looks_like_fhirclient_state(state: &str) -> bool {
    state.len() == 16 && state.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// What the token endpoint answered, as the inspector shows it.
pub fn token_outcome(result: &Result<TokenResponse, TokenError>) -> String {
    match result {
        Ok(_) => "200: tokens issued".to_owned(),
        Err(e) => format!("{} {}: {}", e.status(), e.code(), e.description()),
    }
}

/// The record of a token request by a client with a backend-service session: the grant, how
/// the client authenticated, every check of its assertion, the scope asked for and granted,
/// the answer, and the flags.
pub fn backend_token_event(
    req: &TokenRequest,
    method: &str,
    report: &AssertionReport,
    result: &Result<TokenResponse, TokenError>,
    now: UnixTime,
) -> LaunchEvent {
    let mut details = vec![
        ("grant_type".to_owned(), req.grant_type.clone().unwrap_or_else(|| "missing".into())),
        ("client authentication".to_owned(), method.to_owned()),
        ("scope requested".to_owned(), req.scope.clone().unwrap_or_else(|| "none".into())),
    ];
    if let Ok(r) = result {
        details.push(("granted scope".to_owned(), r.scope.clone()));
        details.push(("expires_in".to_owned(), format!("{} s", r.expires_in)));
    }
    LaunchEvent {
        details,
        flags: assertion_flags(report),
        checks: if report.checks().is_empty() { Vec::new() } else { check_lines(report) },
        ..LaunchEvent::new(Step::Token, "POST /auth/token", token_outcome(result), now)
    }
}

/// Every check of a client assertion, in [`Check`] order; those never reached (an earlier
/// check failed) listed as not checked.
pub fn check_lines(report: &AssertionReport) -> Vec<CheckLine> {
    Check::ALL
        .iter()
        .map(|&check| match report.get(check) {
            Some(c) => CheckLine {
                name: check.label().to_owned(),
                sent: c.sent.clone(),
                verdict: if c.result.is_ok() { Verdict::Passed } else { Verdict::Failed },
                note: c.result.as_ref().err().map(Failure::description).unwrap_or_default(),
            },
            None => CheckLine {
                name: check.label().to_owned(),
                sent: String::new(),
                verdict: Verdict::NotChecked,
                note: String::new(),
            },
        })
        .collect()
}

/// Where a backend service's client assertion broke the spec: a reused `jti`, an `exp` more
/// than [`MAX_LIFETIME`] ahead (refused, or accepted only thanks to the clock-skew tolerance),
/// a wrong `aud` (with the right one).
pub fn assertion_flags(report: &AssertionReport) -> Vec<Flag> {
    let mut flags = Vec::new();
    if report.failure(Check::JtiFresh) == Some(&Failure::JtiReused) {
        flags.push(Flag::jti_reused());
    }
    if let Some(ahead) = report.exp_ahead.filter(|&ahead| ahead > MAX_LIFETIME) {
        flags.push(Flag::long_exp(ahead, report.failure(Check::Exp).is_some()));
    }
    if let Some(Failure::Aud { expected }) = report.failure(Check::Aud) {
        let sent = report.get(Check::Aud).map_or("", |c| c.sent.as_str());
        flags.push(Flag::assertion_aud(sent, expected));
    }
    flags
}

/// The granted resource scopes that no FHIR call of the launch used (by resource type).
pub fn unused_scopes(granted: &str, events: &[LaunchEvent]) -> Vec<String> {
    let used: Vec<&str> = events
        .iter()
        .filter(|e| e.step == Step::Fhir && !e.simulated)
        .filter_map(|e| e.fhir.as_ref().filter(|call| call.succeeded()))
        .filter_map(|call| call.resource_type.as_deref())
        .collect();
    granted
        .split_whitespace()
        .filter(|s| match s.parse::<Scope>() {
            Ok(Scope::Resource(r)) => match r.resource_type.as_deref() {
                None => used.is_empty(),
                Some(ty) => !used.contains(&ty),
            },
            _ => false,
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

    const CTX: AuthorizeContext<'static> =
        AuthorizeContext { expected_aud: "http://x/fhir", known_type: Some(|t| t == "Patient" || t == "Observation") };

    fn kinds(e: &LaunchEvent) -> Vec<FlagKind> {
        e.flags.iter().map(|f| f.kind).collect()
    }

    #[test]
    fn authorize_flags_name_each_mistake_with_its_fix() {
        let good = request(&[
            ("state", "0123456789abcdef0123456789abcdef"),
            ("aud", "http://x/fhir"),
            ("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"),
            ("launch", "secret-launch-id"),
            ("scope", "launch openid patient/Patient.rs"),
        ]);
        let e = authorize_event(&good, CTX, 1);
        assert!(e.flags.is_empty(), "{:?}", e.flags);
        assert!(e.details.iter().any(|(k, v)| k == "launch" && v.starts_with("secr…")), "masked");
        let bad = request(&[("state", "abc"), ("aud", "http://elsewhere/fhir")]);
        let e = authorize_event(&bad, CTX, 1);
        assert_eq!(kinds(&e), [FlagKind::NoPkce, FlagKind::WeakState, FlagKind::WrongAud], "{:?}", e.flags);
        assert!(e.flags[1].problem.contains("~12 bits") && e.flags[2].problem.contains("elsewhere"));
        assert!(e.flags[0].fix.contains("S256") && e.flags[2].fix.contains("aud=http://x/fhir"));
        let none = authorize_event(&request(&[("aud", "http://x/fhir")]), CTX, 1);
        assert_eq!(kinds(&none), [FlagKind::NoPkce, FlagKind::NoState]);
        assert!(none.flags[1].fix.contains("getRandomValues"));
    }

    #[test]
    fn fhirclient_default_state_gets_the_state_key_fix() {
        let e = authorize_event(
            &request(&[("state", "aB3dE6gH9jK2mN5p"), ("aud", "http://x/fhir"), ("code_challenge", "c")]),
            CTX,
            1,
        );
        assert_eq!(kinds(&e), [FlagKind::WeakState]);
        assert!(e.flags[0].problem.contains("~96 bits"), "{:?}", e.flags);
        assert!(e.flags[0].fix.contains("fhirclient.js") && e.flags[0].fix.contains("stateKey"));
    }

    #[test]
    fn a_trailing_slash_aud_a_standalone_launch_scope_and_bad_scopes_are_flagged() {
        let base = [("state", "0123456789abcdef0123456789abcdef"), ("code_challenge", "c")];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut pairs = base.to_vec();
            pairs.extend_from_slice(extra);
            authorize_event(&request(&pairs), CTX, 1)
        };
        let slash = with(&[("aud", "http://x/fhir/")]);
        assert_eq!(kinds(&slash), [FlagKind::AudTrailingSlash]);
        assert!(slash.flags[0].fix.contains("aud=http://x/fhir.") && slash.flags[0].problem.contains("exactly"));
        let standalone = with(&[("aud", "http://x/fhir"), ("scope", "launch openid patient/Patient.rs")]);
        assert_eq!(kinds(&standalone), [FlagKind::LaunchScopeStandalone]);
        assert!(standalone.flags[0].fix.contains("launch/patient"));
        let scopes = with(&[("aud", "http://x/fhir"), ("scope", "patient/Observaton.rs patient/Patient.bogus")]);
        assert_eq!(kinds(&scopes), [FlagKind::UnknownResourceType, FlagKind::MalformedScope], "{:?}", scopes.flags);
    }

    #[test]
    fn unused_scopes_are_those_no_successful_real_call_touched() {
        let call = |path: &str, status: u16, ty: &str| LaunchEvent {
            fhir: Some(FhirCall { status, resource_type: Some(ty.into()) }),
            ..LaunchEvent::new(Step::Fhir, format!("GET {path}"), status.to_string(), 0)
        };
        let events = [call("Patient/p1", 200, "Patient"), call("Condition?patient=p1", 403, "Condition")];
        let unused = unused_scopes("openid patient/Patient.rs patient/Condition.rs patient/Observation.rs", &events);
        assert_eq!(unused, ["patient/Condition.rs", "patient/Observation.rs"]);
        assert!(unused_scopes("patient/*.rs", &events).is_empty());
        assert_eq!(state_bits("0123456789abcdef0123456789abcdef"), 128);
        let simulated = LaunchEvent { simulated: true, ..call("Observation?patient=p1", 200, "Observation") };
        assert_eq!(unused_scopes("patient/Observation.rs", &[simulated]), ["patient/Observation.rs"]);
        // The recorded text is never read back: a call without its typed answer uses nothing.
        let untyped = LaunchEvent::new(Step::Fhir, "GET Observation?patient=p1", "200 OK", 0);
        assert_eq!(unused_scopes("patient/Observation.rs", &[untyped]), ["patient/Observation.rs"]);
    }

    fn report_for(claims: serde_json::Value, reused: bool) -> AssertionReport {
        let mut report = AssertionReport::default();
        crate::client_assertion::check_claims(&claims, "svc", "https://x/auth/token", 1000, &mut report);
        let fresh = if reused { Err(Failure::JtiReused) } else { Ok(()) };
        report.record(Check::JtiFresh, if reused { "used before" } else { "first use" }, fresh);
        report
    }

    fn good() -> serde_json::Value {
        serde_json::json!({"iss": "svc", "sub": "svc", "aud": "https://x/auth/token", "exp": 1240, "jti": "j"})
    }

    #[test]
    fn a_good_assertion_has_no_flags_and_lists_every_check() {
        let report = report_for(good(), false);
        assert!(assertion_flags(&report).is_empty());
        let lines = check_lines(&report);
        assert_eq!(lines.len(), Check::ALL.len());
        let line = |name: &str| lines.iter().find(|l| l.name == name).unwrap();
        assert_eq!((line("aud").verdict, line("aud").sent.as_str()), (Verdict::Passed, "https://x/auth/token"));
        assert_eq!(line("exp").sent, "1240 (240 s ahead)");
        assert_eq!(line("jti replay").sent, "first use");
        assert_eq!(line("signature").verdict, Verdict::NotChecked, "not made in this report");
    }

    #[test]
    fn a_reused_jti_a_long_exp_and_a_wrong_aud_are_flagged() {
        let flags = assertion_flags(&report_for(good(), true));
        assert_eq!(flags.len(), 1);
        assert!(flags[0].problem.starts_with("jti reused") && flags[0].fix.contains("fresh random jti"));

        let mut long = good();
        long["exp"] = serde_json::json!(1000 + MAX_LIFETIME + 10);
        let flags = assertion_flags(&report_for(long.clone(), false));
        assert_eq!(flags.len(), 1, "{flags:?}");
        assert!(
            flags[0].problem.contains("310 s ahead") && flags[0].problem.contains("clock-skew tolerance"),
            "{flags:?}"
        );
        assert!(flags[0].fix.contains("at most 5 minutes"));
        long["exp"] = serde_json::json!(1000 + 3600);
        let report = report_for(long, false);
        assert!(
            assertion_flags(&report)[0].problem.contains("3600 s ahead")
                && assertion_flags(&report)[0].problem.contains("(refused)")
        );
        let exp = check_lines(&report).into_iter().find(|l| l.name == "exp").unwrap();
        assert_eq!(exp.verdict, Verdict::Failed);
        assert!(exp.note.contains("at most 300 s"));

        let mut aud = good();
        aud["aud"] = serde_json::json!("https://x/fhir");
        let flags = assertion_flags(&report_for(aud, false));
        assert_eq!(flags[0].problem, "wrong aud: “https://x/fhir” is not this server's token URL");
        assert!(flags[0].fix.ends_with("https://x/auth/token"));
    }

    #[test]
    fn a_backend_token_event_shows_the_grant_the_scopes_and_the_outcome() {
        let req = TokenRequest {
            grant_type: Some("client_credentials".into()),
            scope: Some("system/Patient.rs".into()),
            ..Default::default()
        };
        let refused = Err(TokenError::InvalidClient("the client assertion's `jti` was already used".into()));
        let e = backend_token_event(&req, "private_key_jwt", &report_for(good(), true), &refused, 7);
        assert_eq!((e.step, e.at), (Step::Token, 7));
        assert!(e.outcome.starts_with("401 invalid_client"));
        assert!(e.details.contains(&("scope requested".into(), "system/Patient.rs".into())));
        assert!(!e.details.iter().any(|(k, _)| k == "granted scope"));
        assert_eq!(e.checks.len(), Check::ALL.len());
        assert_eq!(e.flags.len(), 1);
        let secret = backend_token_event(&req, "client_secret_basic", &AssertionReport::default(), &refused, 7);
        assert!(secret.checks.is_empty(), "no assertion, no assertion checks");
    }
}
