//! The inspector's flags: each place an app broke the spec (or will break elsewhere), typed,
//! with what went wrong and a concrete fix (issue 9, "an inspector that teaches").

use serde::{Deserialize, Deserializer, Serialize};
use smart_scopes::{Scope, ScopeError};

use crate::client_assertion::{CLOCK_SKEW, MAX_LIFETIME};

/// What kind of mistake a flag names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagKind {
    /// No PKCE `code_challenge` (SMART 2: SHALL).
    NoPkce,
    /// No `state`.
    NoState,
    /// A `state` with less than 122 bits of entropy.
    WeakState,
    /// An `aud` that is not the launch's FHIR base.
    WrongAud,
    /// An `aud` that is the FHIR base but for a trailing slash: accepted here, refused by
    /// servers that compare exactly.
    AudTrailingSlash,
    /// The `launch` scope in a standalone launch (no `launch` parameter).
    LaunchScopeStandalone,
    /// A scope that is not valid SMART syntax.
    MalformedScope,
    /// A resource scope naming a type FHIR R4 does not have.
    UnknownResourceType,
    /// A FHIR call with an expired access token.
    ExpiredToken,
    /// A refresh token sent a second time.
    RefreshReused,
    /// A refresh token sent by a client it was not issued to.
    RefreshOtherClient,
    /// `offline_access` asked by a public app that never refreshes (a view-time hint).
    OfflineNeverRefreshed,
    /// A backend service's assertion `jti` used before.
    JtiReused,
    /// A backend service's assertion valid for too long.
    LongExp,
    /// A backend service's assertion `aud` that is not the token URL.
    AssertionAud,
    /// A flag recorded before flags were typed (its text only).
    Recorded,
}

/// One flag: the problem and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flag {
    pub kind: FlagKind,
    pub problem: String,
    /// A concrete fix (empty only for flags recorded before flags had fixes).
    pub fix: String,
}

/// A flag as stored: typed, or the bare text of an event recorded before issue 9.
#[derive(Deserialize)]
#[serde(untagged)]
enum StoredFlag {
    Typed {
        kind: FlagKind,
        problem: String,
        #[serde(default)]
        fix: String,
    },
    Text(String),
}

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Flag, D::Error> {
        Ok(match StoredFlag::deserialize(d)? {
            StoredFlag::Typed { kind, problem, fix } => Flag { kind, problem, fix },
            StoredFlag::Text(problem) => Flag { kind: FlagKind::Recorded, problem, fix: String::new() },
        })
    }
}

/// A fresh 128-bit state in a browser, for the fixes below.
const RANDOM_STATE_JS: &str =
    "Array.from(crypto.getRandomValues(new Uint8Array(16)), b => b.toString(16).padStart(2, '0')).join('')";

impl Flag {
    fn new(kind: FlagKind, problem: impl Into<String>, fix: impl Into<String>) -> Flag {
        Flag { kind, problem: problem.into(), fix: fix.into() }
    }

    pub fn no_pkce() -> Flag {
        Flag::new(
            FlagKind::NoPkce,
            "No PKCE: the request has no code_challenge (SMART 2: SHALL)",
            "Send code_challenge = BASE64URL(SHA-256(code_verifier)) with code_challenge_method=S256, and the \
             code_verifier (43–128 random characters) in the token request. fhirclient.js does this by itself \
             when the server's smart-configuration lists S256 (pkceMode \"ifSupported\").",
        )
    }

    pub fn no_state() -> Flag {
        Flag::new(
            FlagKind::NoState,
            "No state: the app cannot tell its own authorization answer from a forged one",
            format!(
                "Send a fresh, unguessable state (at least 122 bits, e.g. {RANDOM_STATE_JS}) and check that the \
                 redirect brings the same value back before redeeming the code."
            ),
        )
    }

    /// A state of ~`bits` bits; `state_len` characters of letters and digits, 16 of them, is
    /// fhirclient.js's own default.
    pub fn weak_state(bits: usize, fhirclient_default: bool) -> Flag {
        let fix = if fhirclient_default {
            format!(
                "This looks like fhirclient.js's default state (16 letters and digits from Math.random, ~95 bits). \
                 fhirclient.js has no option for the state's length; pass your own state with the stateKey option \
                 of FHIR.oauth2.authorize, e.g. stateKey: {RANDOM_STATE_JS} (128 bits from the browser's CSPRNG)."
            )
        } else {
            format!(
                "Generate the state from a cryptographic random source with at least 122 bits, e.g. 16 random \
                 bytes as 32 hex characters ({RANDOM_STATE_JS}) or 22+ base64url characters."
            )
        };
        Flag::new(
            FlagKind::WeakState,
            format!("state has ~{bits} bits; the spec asks for at least 122 bits of entropy"),
            fix,
        )
    }

    pub fn wrong_aud(aud: &str, expected: &str) -> Flag {
        Flag::new(
            FlagKind::WrongAud,
            format!("aud “{aud}” is not the FHIR base the app was launched with ({expected})"),
            format!(
                "Send aud={expected}: the iss of the launch (EHR launch) or the FHIR base the user chose \
                 (standalone), exactly as given."
            ),
        )
    }

    pub fn aud_trailing_slash(aud: &str, expected: &str) -> Flag {
        Flag::new(
            FlagKind::AudTrailingSlash,
            format!(
                "aud “{aud}” differs from the FHIR base ({expected}) by a trailing slash: accepted here, but \
                 servers that compare aud exactly will refuse it"
            ),
            format!("Send the iss exactly as the launch gave it, without adding a slash: aud={expected}."),
        )
    }

    pub fn launch_scope_standalone() -> Flag {
        Flag::new(
            FlagKind::LaunchScopeStandalone,
            "The `launch` scope in a standalone launch: it is for an EHR launch, with the launch parameter",
            "In a standalone launch ask for launch/patient (and launch/encounter) to get a patient in context; \
             keep `launch` for EHR launches, where you also send the launch parameter from the launch URL.",
        )
    }

    pub fn malformed_scope(error: &ScopeError) -> Flag {
        Flag::new(
            FlagKind::MalformedScope,
            format!("Malformed scope: {error}"),
            "Write resource scopes as <patient|user|system>/<ResourceType or *>.<c r u d s, in that order> \
             (e.g. patient/Observation.rs) or in v1 syntax (patient/Observation.read); separate scopes by \
             single spaces.",
        )
    }

    pub fn unknown_resource_type(scope: &str, resource_type: &str) -> Flag {
        Flag::new(
            FlagKind::UnknownResourceType,
            format!("Scope {scope} names “{resource_type}”, which is not a FHIR R4 resource type"),
            "Use the resource type's exact FHIR name (case matters: Observation, MedicationRequest, \
             AllergyIntolerance…), or * for every type.",
        )
    }

    pub fn expired_token() -> Flag {
        Flag::new(
            FlagKind::ExpiredToken,
            "An expired access token was used",
            "Refresh before expires_in runs out (fhirclient.js's client.request refreshes by itself when it \
             has a refresh token), or send the user through authorize again.",
        )
    }

    pub fn refresh_reused() -> Flag {
        Flag::new(
            FlagKind::RefreshReused,
            "A used refresh token was sent again: the server revoked the whole authorization",
            "Each refresh answers with a new refresh_token: store it and drop the old one; never retry a refresh \
             with a token that was already sent.",
        )
    }

    pub fn refresh_other_client(sent_by: &str, issued_to: &str) -> Flag {
        Flag::new(
            FlagKind::RefreshOtherClient,
            format!("The refresh token was sent by “{sent_by}”, but it was issued to “{issued_to}”"),
            "A refresh token works only for the client it was issued to: refresh with the same client_id (and \
             credentials) that redeemed the code.",
        )
    }

    pub fn offline_never_refreshed() -> Flag {
        Flag::new(
            FlagKind::OfflineNeverRefreshed,
            "offline_access was granted to a public app that never refreshed: a long-lived refresh token sits \
             in the browser for nothing",
            "Ask for offline_access only if the app refreshes while the user is away; a browser app that just \
             runs while open can use online_access, or no refresh token at all.",
        )
    }

    pub fn jti_reused() -> Flag {
        Flag::new(
            FlagKind::JtiReused,
            "jti reused: this assertion's jti was used before",
            "Sign a new assertion with a fresh random jti (e.g. a UUID v4) for every token request.",
        )
    }

    /// `fate`: "refused", or accepted within the clock-skew tolerance.
    pub fn long_exp(ahead: i64, refused: bool) -> Flag {
        let fate = if refused {
            "refused".to_owned()
        } else {
            format!("accepted only within the {CLOCK_SKEW} s clock-skew tolerance")
        };
        Flag::new(
            FlagKind::LongExp,
            format!(
                "long exp: exp is {ahead} s ahead; an assertion may be valid for at most {MAX_LIFETIME} s ({fate})"
            ),
            "Set exp to now + at most 5 minutes (e.g. now + 240 s) when you sign each assertion.",
        )
    }

    pub fn assertion_aud(sent: &str, expected: &str) -> Flag {
        Flag::new(
            FlagKind::AssertionAud,
            format!("wrong aud: “{sent}” is not this server's token URL"),
            format!("Set the assertion's aud to the token_endpoint of smart-configuration: {expected}"),
        )
    }
}

/// Flags for a requested scope string: each malformed scope, and each resource scope whose
/// type `known_type` does not know (`None`: types are not checked).
pub fn scope_flags(scope: &str, known_type: Option<fn(&str) -> bool>) -> Vec<Flag> {
    let mut flags = Vec::new();
    for raw in scope.split(' ').filter(|s| !s.is_empty()) {
        match raw.parse::<Scope>() {
            Err(e) => flags.push(Flag::malformed_scope(&e)),
            Ok(Scope::Resource(r)) => {
                if let (Some(ty), Some(known)) = (r.resource_type.as_deref(), known_type) {
                    if !known(ty) {
                        flags.push(Flag::unknown_resource_type(raw, ty));
                    }
                }
            }
            Ok(_) => {}
        }
    }
    flags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_text_flags_still_read_and_new_ones_round_trip() {
        let old: Vec<Flag> = serde_json::from_str(r#"["No PKCE: send code_challenge"]"#).unwrap();
        assert_eq!(old[0].kind, FlagKind::Recorded);
        assert_eq!(old[0].problem, "No PKCE: send code_challenge");
        let flag = Flag::no_pkce();
        let back: Flag = serde_json::from_str(&serde_json::to_string(&flag).unwrap()).unwrap();
        assert_eq!(back, flag);
    }

    #[test]
    fn every_flag_has_a_fix() {
        let e = "patient/Observation.x".parse::<Scope>().unwrap_err();
        for flag in [
            Flag::no_pkce(),
            Flag::no_state(),
            Flag::weak_state(96, true),
            Flag::weak_state(12, false),
            Flag::wrong_aud("a", "b"),
            Flag::aud_trailing_slash("b/", "b"),
            Flag::launch_scope_standalone(),
            Flag::malformed_scope(&e),
            Flag::unknown_resource_type("patient/Foo.rs", "Foo"),
            Flag::expired_token(),
            Flag::refresh_reused(),
            Flag::refresh_other_client("a", "b"),
            Flag::offline_never_refreshed(),
            Flag::jti_reused(),
            Flag::long_exp(400, false),
            Flag::assertion_aud("a", "b"),
        ] {
            assert!(!flag.problem.is_empty() && flag.fix.len() > 20, "{flag:?}");
        }
    }

    #[test]
    fn fhirclient_default_state_names_the_state_key_option() {
        let flag = Flag::weak_state(96, true);
        assert!(flag.fix.contains("stateKey") && flag.fix.contains("no option for the state's length"));
        assert!(flag.fix.contains("crypto.getRandomValues"));
        assert!(!Flag::weak_state(12, false).fix.contains("stateKey"));
    }

    #[test]
    fn scope_flags_name_malformed_scopes_and_unknown_types() {
        let known: fn(&str) -> bool = |t| ["Patient", "Observation"].contains(&t);
        let flags = scope_flags(
            "openid patient/Patient.rs patient/Obsrvation.rs user/Observation.xyz patient/*.rs",
            Some(known),
        );
        let kinds: Vec<FlagKind> = flags.iter().map(|f| f.kind).collect();
        assert_eq!(kinds, [FlagKind::UnknownResourceType, FlagKind::MalformedScope], "{flags:?}");
        assert!(flags[0].problem.contains("Obsrvation") && flags[0].fix.contains("exact FHIR name"));
        assert!(flags[1].problem.contains("user/Observation.xyz"), "{flags:?}");
        assert!(scope_flags("patient/Obsrvation.rs", None).is_empty(), "types unchecked without a list");
    }
}
