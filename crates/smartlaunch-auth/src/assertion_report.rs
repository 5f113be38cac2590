//! The checks of a `private_key_jwt` client assertion as data: which check, what the request
//! carried, and whether it passed or why not.  The token endpoint's `error_description` is the
//! first failure's text; the launch inspector lists every check and flags from the typed
//! results (a reused `jti`, a long `exp`, a wrong `aud`), never from the text.

use crate::client_assertion::{JWT_BEARER, MAX_ASSERTION_LEN, MAX_JTI_LEN, MAX_LIFETIME};
use crate::jwk::Alg;

/// A check on a client assertion.  Declared in the order a request's error reports them: the
/// error names the first check, in this order, that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Check {
    /// `client_assertion_type` is the JWT bearer URN.
    AssertionType,
    /// `client_assertion` is a compact JWS with a JSON header and claims.
    Jws,
    Alg,
    /// No `crit` header: no JWS extension is understood (RFC 7515 §4.1.11).
    Crit,
    Typ,
    Kid,
    /// A `jku` header, accepted only when it is the registered `jwks_uri`.
    Jku,
    /// `iss` names a registered client that uses `private_key_jwt` (and `client_id`, if sent,
    /// agrees).
    Client,
    /// A registered key (in `jwks` or at `jwks_uri`) has the `kid` and fits the `alg`.
    Key,
    Signature,
    Iss,
    Sub,
    Aud,
    Exp,
    Nbf,
    /// A `jti` is present and not too long.
    Jti,
    /// The `jti` was never used before (the replay store).
    JtiFresh,
}

impl Check {
    pub const ALL: [Check; 17] = [
        Check::AssertionType,
        Check::Jws,
        Check::Alg,
        Check::Crit,
        Check::Typ,
        Check::Kid,
        Check::Jku,
        Check::Client,
        Check::Key,
        Check::Signature,
        Check::Iss,
        Check::Sub,
        Check::Aud,
        Check::Exp,
        Check::Nbf,
        Check::Jti,
        Check::JtiFresh,
    ];

    /// The name the inspector shows (the parameter, header member or claim).
    pub fn label(self) -> &'static str {
        match self {
            Check::AssertionType => "client_assertion_type",
            Check::Jws => "client_assertion",
            Check::Alg => "alg",
            Check::Crit => "crit",
            Check::Typ => "typ",
            Check::Kid => "kid",
            Check::Jku => "jku",
            Check::Client => "client (iss)",
            Check::Key => "key",
            Check::Signature => "signature",
            Check::Iss => "iss",
            Check::Sub => "sub",
            Check::Aud => "aud",
            Check::Exp => "exp",
            Check::Nbf => "nbf",
            Check::Jti => "jti",
            Check::JtiFresh => "jti replay",
        }
    }
}

/// Why a check failed.  [`Failure::description`] is the `error_description` the app reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    AssertionTypeMissing,
    AssertionTypeUnsupported(String),
    AssertionMissing,
    TooLong,
    NotJws,
    NotBase64(&'static str),
    HeaderNotJson,
    PayloadNotObject,
    NoSignature,
    NoAlg,
    /// `alg` refused (`none`, HMAC, unknown), with the reason.
    Alg(String),
    Crit,
    /// `typ` missing or not `JWT`.
    Typ,
    NoKid,
    JkuNotString,
    NoIss,
    ClientIdDiffers,
    UnknownIss(String),
    /// The client is registered for this other authentication method.
    AuthMethod(&'static str),
    JkuDiffers,
    JkuWithJwks,
    /// The registered keys could not be had (an invalid `jwks`, a failed `jwks_uri` fetch).
    KeysUnavailable(String),
    UnknownKid(String),
    KeyDoesNotFit {
        kid: String,
        alg: Alg,
    },
    Signature {
        kid: String,
        alg: Alg,
    },
    IssSub {
        client_id: String,
    },
    /// `aud` is not the token URL, which is `expected`.
    Aud {
        expected: String,
    },
    ExpMissing,
    Expired {
        ago: i64,
    },
    ExpTooFar {
        ahead: i64,
    },
    NbfNotNumber,
    NotYetValid,
    JtiMissing,
    JtiTooLong,
    JtiReused,
}

impl Failure {
    /// What the app developer reads: the claim or check that failed, and how to fix it.
    pub fn description(&self) -> String {
        match self {
            Failure::AssertionTypeMissing => format!("client_assertion_type is required: `{JWT_BEARER}`"),
            Failure::AssertionTypeUnsupported(t) => {
                format!("client_assertion_type `{t}` is not supported; use `{JWT_BEARER}`")
            }
            Failure::AssertionMissing => {
                "client_assertion is required with client_assertion_type: a JWT signed with the client's key".into()
            }
            Failure::TooLong => format!("client_assertion is longer than {MAX_ASSERTION_LEN} bytes"),
            Failure::NotJws => {
                "client_assertion is not a signed JWT (three base64url parts separated by dots)".into()
            }
            Failure::NotBase64(part) => format!("the client_assertion {part} is not base64url"),
            Failure::HeaderNotJson => "the client_assertion header is not JSON".into(),
            Failure::PayloadNotObject => "the client_assertion payload is not a JSON object".into(),
            Failure::NoSignature => "the client_assertion has no signature".into(),
            Failure::NoAlg => "the client_assertion header has no `alg`".into(),
            Failure::Alg(why) => why.clone(),
            Failure::Crit => {
                "the client_assertion header has `crit`: no JWS extension is supported; remove it".into()
            }
            Failure::Typ => "the client_assertion header needs `typ`: `JWT`".into(),
            Failure::NoKid => {
                "the client_assertion header has no `kid`: name the key that signed it (its kid in your JWK Set)".into()
            }
            Failure::JkuNotString => "the client_assertion header `jku` must be a string".into(),
            Failure::NoIss => "the client_assertion has no `iss`: it must be the client_id".into(),
            Failure::ClientIdDiffers => "client_id differs from the client_assertion's `iss`".into(),
            Failure::UnknownIss(iss) => format!("the assertion's `iss` `{iss}` is not a registered client_id"),
            Failure::AuthMethod(method) => format!("this client is registered for {method}, not private_key_jwt"),
            Failure::JkuDiffers => {
                "the header `jku` differs from the registered jwks_uri: keys are taken only from the registration".into()
            }
            Failure::JkuWithJwks => {
                "the header has a `jku`, but this client registered its keys by value (jwks): remove jku".into()
            }
            Failure::KeysUnavailable(why) => why.clone(),
            Failure::UnknownKid(kid) => format!(
                "no registered key has the kid `{kid}`: register the key (or update the client's JWK Set) first"
            ),
            Failure::KeyDoesNotFit { kid, alg } => {
                format!("the key `{kid}` cannot verify {}: check the key type, curve and alg", alg.as_str())
            }
            Failure::Signature { kid, alg } => {
                format!("the signature does not verify with the registered key `{kid}` ({})", alg.as_str())
            }
            Failure::IssSub { client_id } => format!("`iss` and `sub` must both be the client_id `{client_id}`"),
            Failure::Aud { expected } => format!("`aud` must be this server's token URL `{expected}`"),
            Failure::ExpMissing => "`exp` is missing or not a number (seconds since 1970)".into(),
            Failure::Expired { ago } => {
                format!("the assertion expired {ago} s ago (`exp`); sign a fresh one for each request")
            }
            Failure::ExpTooFar { ahead } => {
                format!("`exp` is {ahead} s ahead; an assertion may be valid for at most {MAX_LIFETIME} s")
            }
            Failure::NbfNotNumber => "`nbf` must be a number".into(),
            Failure::NotYetValid => "the assertion is not valid yet (`nbf` is in the future)".into(),
            Failure::JtiMissing => "`jti` is missing: give every assertion a unique random id".into(),
            Failure::JtiTooLong => format!("`jti` is longer than {MAX_JTI_LEN} characters"),
            Failure::JtiReused => {
                "this client_assertion's `jti` was already used: sign a new assertion, with a fresh jti, for every request"
                    .into()
            }
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description())
    }
}

/// One check made: what the request carried (as the inspector shows it) and the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub check: Check,
    pub sent: String,
    pub result: Result<(), Failure>,
}

/// Every check made on one client assertion.  A check that could not be made (an earlier one
/// failed, so the key or the claims were never reached) is absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssertionReport {
    checks: Vec<Checked>,
    /// How far ahead `exp` was at the check (negative: past), when it is a number.
    pub exp_ahead: Option<i64>,
}

impl AssertionReport {
    pub fn record(&mut self, check: Check, sent: impl Into<String>, result: Result<(), Failure>) {
        self.checks.push(Checked { check, sent: sent.into(), result });
    }

    /// The checks made, in the order they were made.
    pub fn checks(&self) -> &[Checked] {
        &self.checks
    }

    pub fn get(&self, check: Check) -> Option<&Checked> {
        self.checks.iter().find(|c| c.check == check)
    }

    /// Why `check` failed, if it was made and failed.
    pub fn failure(&self, check: Check) -> Option<&Failure> {
        self.get(check).and_then(|c| c.result.as_ref().err())
    }

    /// The failure a request's error names: the first in [`Check`] order.
    pub fn first_failure(&self) -> Option<&Failure> {
        self.checks
            .iter()
            .filter_map(|c| c.result.as_ref().err().map(|f| (c.check, f)))
            .min_by_key(|(check, _)| *check)
            .map(|(_, f)| f)
    }

    /// `Ok` when every check made passed, else the first failure.
    pub fn verdict(&self) -> Result<(), Failure> {
        self.first_failure().map_or(Ok(()), |f| Err(f.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_names_the_earliest_check_whatever_the_order_they_ran_in() {
        let mut report = AssertionReport::default();
        report.record(Check::Aud, "https://elsewhere", Err(Failure::Aud { expected: "https://x/token".into() }));
        report.record(Check::Key, "kid k", Err(Failure::UnknownKid("k".into())));
        report.record(Check::Exp, "in 60 s", Ok(()));
        assert_eq!(report.first_failure(), Some(&Failure::UnknownKid("k".into())));
        assert!(report.verdict().unwrap_err().description().contains("kid `k`"));
        assert!(matches!(report.failure(Check::Aud), Some(Failure::Aud { expected }) if expected == "https://x/token"));
        assert_eq!(report.failure(Check::Exp), None);
        assert_eq!(report.get(Check::Nbf), None, "not made");
        assert_eq!(AssertionReport::default().verdict(), Ok(()));
    }
}
