//! `private_key_jwt` client assertions (RFC 7523 §3, SMART App Launch 2.2 "Client
//! Authentication: Asymmetric", spec digest §1.6): the rules on the JOSE header and the claims.
//! The key comes from the client's registration ([`crate::service`] finds it); the `jti`
//! replay check is the store's.  Every check is recorded in an [`AssertionReport`]: the first
//! failure is the error the app reads, and the launch inspector lists them all.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

pub use crate::assertion_report::{AssertionReport, Check, Checked, Failure};
use crate::jwk::{Alg, PublicJwk};
use crate::UnixTime;

/// The only `client_assertion_type` (RFC 7523 §2.2).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// An assertion may be valid for at most this long (spec: `exp` no more than 5 minutes ahead).
pub const MAX_LIFETIME: i64 = 300;
/// Clock difference tolerated between the app and this server on `exp` and `nbf` beyond
/// [`MAX_LIFETIME`], so that an app whose clock runs a little ahead is not refused.  An expired
/// assertion (`exp` ≤ now) gets no leeway.
pub const CLOCK_SKEW: i64 = 30;
/// The longest assertion accepted.
pub const MAX_ASSERTION_LEN: usize = 8 * 1024;
/// The longest `jti` accepted.
pub const MAX_JTI_LEN: usize = 256;

/// A client assertion whose header passed its checks, not yet verified.
#[derive(Debug, Clone)]
pub struct ClientAssertion {
    pub alg: Alg,
    pub kid: String,
    pub jku: Option<String>,
    pub claims: Value,
    signing_input_len: usize,
    raw: String,
    signature: Vec<u8>,
}

/// What a verified assertion tells the replay check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAssertion {
    pub jti: String,
    pub exp: UnixTime,
}

/// A client assertion taken apart, its header checked.
#[derive(Debug, Clone)]
pub enum Parsed {
    Assertion(ClientAssertion),
    /// The header failed a check (recorded in the report); the claims, readable, still name
    /// the client, so the launch inspector can record the request.
    BadHeader(Value),
    /// Not a JWT with a JSON header and claims.
    Unreadable,
}

impl ClientAssertion {
    /// Parses the compact JWS and checks its header: a supported `alg`, no `crit`, `typ` JWT, a
    /// `kid`.  The order of the checks ([`Check`]) is the order of the error an app sees first.
    pub fn parse(assertion: &str) -> Result<ClientAssertion, String> {
        let mut report = AssertionReport::default();
        match ClientAssertion::parse_checked(assertion, &mut report) {
            Parsed::Assertion(a) => Ok(a),
            Parsed::BadHeader(_) | Parsed::Unreadable => {
                Err(report.first_failure().map(Failure::description).unwrap_or_default())
            }
        }
    }

    /// Parses the compact JWS and checks its header, recording each check (`client_assertion`,
    /// `alg`, `crit`, `typ`, `kid`, a `jku` that is not a string, a missing signature) in `report`.
    pub fn parse_checked(assertion: &str, report: &mut AssertionReport) -> Parsed {
        let (header, claims, signing_input_len, signature) = match decode(assertion) {
            Ok(parts) => parts,
            Err(failure) => {
                report.record(Check::Jws, format!("{} characters", assertion.len()), Err(failure));
                return Parsed::Unreadable;
            }
        };
        report.record(Check::Jws, format!("a JWT ({} characters)", assertion.len()), Ok(()));
        let text = |name: &str| header.get(name).and_then(Value::as_str);
        let alg = match text("alg") {
            None => Err(Failure::NoAlg),
            Some(alg) => Alg::parse(alg).map_err(Failure::Alg),
        };
        report.record(Check::Alg, text("alg").map_or_else(|| "missing".to_owned(), short), alg.clone().map(|_| ()));
        // RFC 7515 §4.1.11: extensions in `crit` must be understood; we understand none (e.g.
        // `b64: false`, RFC 7797, would change what the signature covers).
        let crit_ok = header.get("crit").is_none();
        let crit_sent = header.get("crit").map_or_else(|| "absent".to_owned(), |c| short(&value_text(c)));
        report.record(Check::Crit, crit_sent, if crit_ok { Ok(()) } else { Err(Failure::Crit) });
        // `typ` is required and fixed (asym: "typ … Fixed value: JWT", checklist item 47).
        let typ_ok = text("typ").is_some_and(|t| t.eq_ignore_ascii_case("JWT"));
        let typ_sent = header.get("typ").map_or_else(|| "missing".to_owned(), |t| short(&value_text(t)));
        report.record(Check::Typ, typ_sent, if typ_ok { Ok(()) } else { Err(Failure::Typ) });
        let kid = text("kid").filter(|k| !k.is_empty()).ok_or(Failure::NoKid);
        report.record(Check::Kid, kid.clone().map_or_else(|_| "missing".to_owned(), short), kid.clone().map(|_| ()));
        let jku = match header.get("jku") {
            None => Ok(None),
            Some(Value::String(jku)) => Ok(Some(jku.clone())),
            Some(other) => {
                report.record(Check::Jku, short(&value_text(other)), Err(Failure::JkuNotString));
                Err(Failure::JkuNotString)
            }
        };
        let signature = match signature {
            Ok(s) => Ok(s),
            Err(failure) => {
                report.record(Check::Signature, "missing or not base64url", Err(failure.clone()));
                Err(failure)
            }
        };
        match (alg, crit_ok && typ_ok, kid, jku, signature) {
            (Ok(alg), true, Ok(kid), Ok(jku), Ok(signature)) => Parsed::Assertion(ClientAssertion {
                alg,
                kid: kid.to_owned(),
                jku,
                claims,
                signing_input_len,
                raw: assertion.to_owned(),
                signature,
            }),
            _ => Parsed::BadHeader(claims),
        }
    }

    /// The `iss` claim: the client the assertion says it is.
    pub fn issuer(&self) -> Option<&str> {
        issuer(&self.claims)
    }

    /// A `jku` header is accepted only when it is the client's registered `jwks_uri`.
    pub fn check_jku(&self, registered_jwks_uri: Option<&str>) -> Result<(), String> {
        let mut report = AssertionReport::default();
        self.check_jku_into(registered_jwks_uri, &mut report);
        report.verdict().map_err(|f| f.description())
    }

    /// [`ClientAssertion::check_jku`], recorded in `report`.
    pub fn check_jku_into(&self, registered_jwks_uri: Option<&str>, report: &mut AssertionReport) {
        let result = match (&self.jku, registered_jwks_uri) {
            (None, _) => Ok(()),
            (Some(jku), Some(uri)) if jku == uri => Ok(()),
            (Some(_), Some(_)) => Err(Failure::JkuDiffers),
            (Some(_), None) => Err(Failure::JkuWithJwks),
        };
        report.record(Check::Jku, self.jku.as_deref().map_or_else(|| "absent".to_owned(), short), result);
    }

    /// The registered key the header's `kid` names and that fits its `alg`; `None` when no key
    /// has that kid (the caller may refetch a `jwks_uri` once).
    pub fn select_key<'k>(&self, keys: &'k [PublicJwk]) -> Option<Result<&'k PublicJwk, String>> {
        match self.find_key(keys) {
            Err(Failure::UnknownKid(_)) => None,
            found => Some(found.map_err(|f| f.description())),
        }
    }

    /// The registered key the header's `kid` names, if it fits the `alg`.
    pub fn find_key<'k>(&self, keys: &'k [PublicJwk]) -> Result<&'k PublicJwk, Failure> {
        let key = keys.iter().find(|k| k.kid == self.kid).ok_or_else(|| Failure::UnknownKid(short(&self.kid)))?;
        if key.fits(self.alg) {
            Ok(key)
        } else {
            Err(Failure::KeyDoesNotFit { kid: short(&self.kid), alg: self.alg })
        }
    }

    /// Verifies the signature with `key`, then the claims: `iss` = `sub` = `client_id`, `aud` =
    /// the token URL, `exp` not past and at most 5 minutes ahead, `nbf` not ahead, a `jti`.
    pub fn verify(
        &self,
        key: &PublicJwk,
        client_id: &str,
        token_url: &str,
        now: UnixTime,
    ) -> Result<VerifiedAssertion, String> {
        let mut report = AssertionReport::default();
        self.check_signature(key, &mut report);
        check_claims(&self.claims, client_id, token_url, now, &mut report);
        report.verdict().map_err(|f| f.description())?;
        verified(&self.claims).ok_or_else(|| Failure::JtiMissing.description())
    }

    /// Verifies the signature with `key`, recorded in `report`.
    pub fn check_signature(&self, key: &PublicJwk, report: &mut AssertionReport) {
        let ok = key.verify(self.alg, &self.raw.as_bytes()[..self.signing_input_len], &self.signature);
        let failure = Failure::Signature { kid: short(&self.kid), alg: self.alg };
        report.record(
            Check::Signature,
            format!("{} with the key `{}`", self.alg.as_str(), short(&self.kid)),
            if ok { Ok(()) } else { Err(failure) },
        );
    }
}

/// The `iss` claim of an assertion's claims.
pub fn issuer(claims: &Value) -> Option<&str> {
    claims.get("iss").and_then(Value::as_str)
}

/// Checks the claims, each on its own, recording every one in `report`: `iss` = `sub` =
/// `client_id`, `aud` = the token URL, `exp` not past and at most 5 minutes ahead (plus
/// [`CLOCK_SKEW`]), `nbf` not ahead, a `jti` of at most [`MAX_JTI_LEN`] characters.
pub fn check_claims(claims: &Value, client_id: &str, token_url: &str, now: UnixTime, report: &mut AssertionReport) {
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    let sent = |name: &str| claims.get(name).map_or_else(|| "missing".to_owned(), |v| short(&value_text(v)));
    for (check, name) in [(Check::Iss, "iss"), (Check::Sub, "sub")] {
        let ok = text(name) == Some(client_id);
        report.record(
            check,
            sent(name),
            if ok { Ok(()) } else { Err(Failure::IssSub { client_id: short(client_id) }) },
        );
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => a == token_url,
        Some(Value::Array(a)) => a.iter().any(|a| a.as_str() == Some(token_url)),
        _ => false,
    };
    let aud = if aud_ok { Ok(()) } else { Err(Failure::Aud { expected: token_url.to_owned() }) };
    report.record(Check::Aud, sent("aud"), aud);
    // Saturating: an extreme `exp` is refused, never an overflow.
    let exp = claims.get("exp").and_then(Value::as_i64);
    report.exp_ahead = exp.map(|exp| exp.saturating_sub(now));
    let exp_result = match exp {
        None => Err(Failure::ExpMissing),
        Some(exp) if exp <= now => Err(Failure::Expired { ago: now.saturating_sub(exp) }),
        Some(exp) if exp > now.saturating_add(MAX_LIFETIME + CLOCK_SKEW) => {
            Err(Failure::ExpTooFar { ahead: exp.saturating_sub(now) })
        }
        Some(_) => Ok(()),
    };
    let exp_sent = match exp {
        Some(exp) if exp > now => format!("{exp} ({} s ahead)", exp.saturating_sub(now)),
        Some(exp) => format!("{exp} ({} s ago)", now.saturating_sub(exp)),
        None => sent("exp"),
    };
    report.record(Check::Exp, exp_sent, exp_result);
    let nbf = match claims.get("nbf") {
        None => Ok(()),
        Some(nbf) => match nbf.as_i64() {
            None => Err(Failure::NbfNotNumber),
            Some(nbf) if nbf > now.saturating_add(CLOCK_SKEW) => Err(Failure::NotYetValid),
            Some(_) => Ok(()),
        },
    };
    report.record(Check::Nbf, claims.get("nbf").map_or_else(|| "absent".to_owned(), |v| short(&value_text(v))), nbf);
    let jti = match text("jti").filter(|j| !j.is_empty()) {
        None => Err(Failure::JtiMissing),
        Some(j) if j.len() > MAX_JTI_LEN => Err(Failure::JtiTooLong),
        Some(_) => Ok(()),
    };
    report.record(Check::Jti, sent("jti"), jti);
}

/// The `jti` and `exp` of claims that passed [`check_claims`].
pub fn verified(claims: &Value) -> Option<VerifiedAssertion> {
    Some(VerifiedAssertion {
        jti: claims.get("jti").and_then(Value::as_str)?.to_owned(),
        exp: claims.get("exp").and_then(Value::as_i64)?,
    })
}

type Decoded = (Value, Value, usize, Result<Vec<u8>, Failure>);

/// Splits a compact JWS into its JSON header and claims, the length of the signing input, and
/// the signature (its absence is the signature check's failure, made after the header's).
fn decode(assertion: &str) -> Result<Decoded, Failure> {
    if assertion.len() > MAX_ASSERTION_LEN {
        return Err(Failure::TooLong);
    }
    let mut parts = assertion.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(Failure::NotJws);
    };
    let decode = |part: &str, what: &'static str| URL_SAFE_NO_PAD.decode(part).map_err(|_| Failure::NotBase64(what));
    let header: Value = serde_json::from_slice(&decode(h, "header")?).map_err(|_| Failure::HeaderNotJson)?;
    if !header.is_object() {
        return Err(Failure::HeaderNotJson);
    }
    let claims: Value = serde_json::from_slice(&decode(p, "payload")?).map_err(|_| Failure::PayloadNotObject)?;
    if !claims.is_object() {
        return Err(Failure::PayloadNotObject);
    }
    let signature = if s.is_empty() { Err(Failure::NoSignature) } else { decode(s, "signature") };
    Ok((header, claims, h.len() + 1 + p.len(), signature))
}

/// A JSON value as the inspector shows it: a string without its quotes.
fn value_text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

fn short(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwk::parse_key_set;
    use crate::signing_key::{KeyKind, SigningKey};
    use serde_json::json;

    const TOKEN_URL: &str = "https://ehr.example/auth/token";
    const NOW: i64 = 1_800_000_000;

    fn key_and_set(kind: KeyKind) -> (SigningKey, Vec<PublicJwk>) {
        let key = SigningKey::generate(kind).unwrap();
        let set = parse_key_set(&key.public_jwks()).unwrap();
        (key, set)
    }

    fn claims() -> Value {
        json!({"iss": "app", "sub": "app", "aud": TOKEN_URL, "exp": NOW + 300, "jti": "j1"})
    }

    fn check(key: &SigningKey, set: &[PublicJwk], claims: Value) -> Result<VerifiedAssertion, String> {
        let a = ClientAssertion::parse(&key.sign_jwt(&claims, &[]).unwrap())?;
        a.select_key(set).ok_or("unknown kid")??;
        a.verify(&set[0], "app", TOKEN_URL, NOW)
    }

    #[test]
    fn a_good_assertion_verifies_with_each_algorithm() {
        for kind in [KeyKind::Rs384, KeyKind::Es384, KeyKind::Rs256, KeyKind::Es256] {
            let (key, set) = key_and_set(kind);
            assert_eq!(check(&key, &set, claims()).unwrap(), VerifiedAssertion { jti: "j1".into(), exp: NOW + 300 });
        }
        let (key, set) = key_and_set(KeyKind::Es384);
        let mut c = claims();
        c["aud"] = json!(["other", TOKEN_URL]);
        assert!(check(&key, &set, c).is_ok(), "aud may be an array holding the token URL");
    }

    #[test]
    fn each_claim_is_checked_and_named() {
        let (key, set) = key_and_set(KeyKind::Es384);
        let cases: [(&str, Value, &str); 9] = [
            ("aud", json!("https://ehr.example/fhir"), "`aud`"),
            ("iss", json!("other"), "`iss` and `sub`"),
            ("sub", json!("other"), "`iss` and `sub`"),
            ("exp", json!(NOW - 1), "expired"),
            ("exp", json!(NOW), "expired"),
            ("exp", json!(NOW + 3600), "at most 300 s"),
            ("exp", json!("soon"), "`exp`"),
            ("nbf", json!(NOW + 600), "`nbf`"),
            ("jti", json!(""), "`jti`"),
        ];
        for (claim, value, expect) in cases {
            let mut c = claims();
            c[claim] = value.clone();
            let e = check(&key, &set, c).unwrap_err();
            assert!(e.contains(expect), "{claim}={value}: {e}");
        }
        let mut c = claims();
        c.as_object_mut().unwrap().remove("jti");
        assert!(check(&key, &set, c).unwrap_err().contains("`jti`"));
        let mut c = claims();
        c["exp"] = json!(NOW + MAX_LIFETIME + CLOCK_SKEW);
        assert!(check(&key, &set, c).is_ok(), "a little clock skew is tolerated");
    }

    #[test]
    fn a_signature_of_another_key_or_a_tampered_payload_fails() {
        let (key, set) = key_and_set(KeyKind::Es384);
        let (other, _) = key_and_set(KeyKind::Es384);
        // Signed by another key that claims this key's kid.
        let forged = other.sign_jwt(&claims(), &[("kid", json!(key.kid()))]).unwrap();
        let a = ClientAssertion::parse(&forged).unwrap();
        let k = a.select_key(&set).unwrap().unwrap();
        assert!(a.verify(k, "app", TOKEN_URL, NOW).unwrap_err().contains("signature"));
        // A payload changed after signing.
        let good = key.sign_jwt(&claims(), &[]).unwrap();
        let parts: Vec<&str> = good.split('.').collect();
        let mut c = claims();
        c["sub"] = json!("app");
        c["exp"] = json!(NOW + 200);
        let tampered = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(c.to_string()), parts[2]);
        let a = ClientAssertion::parse(&tampered).unwrap();
        assert!(a.verify(&set[0], "app", TOKEN_URL, NOW).unwrap_err().contains("signature"));
    }

    #[test]
    fn headers_none_hmac_and_missing_kid_are_refused() {
        let b64 = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let body = b64(claims());
        let none = format!("{}.{body}.", b64(json!({"alg": "none", "kid": "k"})));
        assert!(ClientAssertion::parse(&none).unwrap_err().contains("none"));
        let hs = format!("{}.{body}.c2ln", b64(json!({"alg": "HS256", "kid": "k"})));
        assert!(ClientAssertion::parse(&hs).unwrap_err().contains("HMAC"));
        let no_kid = format!("{}.{body}.c2ln", b64(json!({"alg": "ES384", "typ": "JWT"})));
        let no_typ = format!("{}.{body}.c2ln", b64(json!({"alg": "ES384", "kid": "k"})));
        assert!(ClientAssertion::parse(&no_typ).unwrap_err().contains("typ"));
        assert!(ClientAssertion::parse(&no_kid).unwrap_err().contains("kid"));
        let typ = format!("{}.{body}.c2ln", b64(json!({"alg": "ES384", "kid": "k", "typ": "at+jwt"})));
        assert!(ClientAssertion::parse(&typ).unwrap_err().contains("typ"));
        assert!(ClientAssertion::parse("a.b").is_err());
        assert!(ClientAssertion::parse(&"a".repeat(MAX_ASSERTION_LEN + 1)).is_err());
    }

    /// Review (issue 8): an `exp` far in the past must be refused, not overflow `now - exp`
    /// (a panic in debug builds, a wrapped number in the message in release builds).
    #[test]
    fn review_an_extreme_exp_is_refused_without_overflow() {
        let (key, set) = key_and_set(KeyKind::Es384);
        for exp in [i64::MIN, i64::MIN + 1, i64::MAX] {
            let mut c = claims();
            c["exp"] = json!(exp);
            let e = std::panic::catch_unwind(|| check(&key, &set, c.clone()));
            let e = e.unwrap_or_else(|_| panic!("exp = {exp} panics"));
            assert!(e.unwrap_err().contains("exp"), "exp = {exp}");
        }
    }

    /// Review (issue 8): RFC 7515 §4.1.11: a `crit` header names extensions the recipient must
    /// understand (e.g. `b64: false`, RFC 7797, which changes what is signed); we understand
    /// none, so an assertion with `crit` is refused.
    #[test]
    fn review_a_crit_header_is_refused() {
        let (key, _) = key_and_set(KeyKind::Es384);
        let with_crit = key.sign_jwt(&claims(), &[("crit", json!(["b64"])), ("b64", json!(false))]).unwrap();
        assert!(ClientAssertion::parse(&with_crit).unwrap_err().contains("crit"));
    }

    #[test]
    fn keys_are_chosen_by_kid_and_alg_and_jku_must_be_the_registered_one() {
        let (key, set) = key_and_set(KeyKind::Es384);
        let a = ClientAssertion::parse(&key.sign_jwt(&claims(), &[("kid", json!("nope"))]).unwrap()).unwrap();
        assert!(a.select_key(&set).is_none());
        let (rsa, _) = key_and_set(KeyKind::Rs384);
        let a = ClientAssertion::parse(&rsa.sign_jwt(&claims(), &[("kid", json!(key.kid()))]).unwrap()).unwrap();
        assert!(a.select_key(&set).unwrap().is_err(), "an RS384 header cannot use an EC key");
        let with_jku =
            |jku: &str| ClientAssertion::parse(&key.sign_jwt(&claims(), &[("jku", json!(jku))]).unwrap()).unwrap();
        assert!(with_jku("https://app/jwks").check_jku(Some("https://app/jwks")).is_ok());
        assert!(with_jku("https://evil/jwks").check_jku(Some("https://app/jwks")).is_err());
        assert!(with_jku("https://evil/jwks").check_jku(None).is_err());
    }

    #[test]
    fn a_bad_header_is_recorded_and_its_claims_still_name_the_client() {
        let (key, _) = key_and_set(KeyKind::Es384);
        let b64 = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let none = format!("{}.{}.", b64(json!({"alg": "none", "kid": "k"})), b64(claims()));
        let mut report = AssertionReport::default();
        let Parsed::BadHeader(found) = ClientAssertion::parse_checked(&none, &mut report) else { panic!("bad header") };
        assert_eq!(issuer(&found), Some("app"));
        assert!(matches!(report.failure(Check::Alg), Some(Failure::Alg(why)) if why.contains("none")));
        assert_eq!(report.get(Check::Alg).unwrap().sent, "none");
        assert_eq!(report.failure(Check::Signature), Some(&Failure::NoSignature));
        assert!(matches!(report.first_failure(), Some(Failure::Alg(_))), "alg is reported before the signature");
        let mut report = AssertionReport::default();
        assert!(matches!(ClientAssertion::parse_checked("a.b", &mut report), Parsed::Unreadable));
        assert_eq!(report.failure(Check::Jws), Some(&Failure::NotJws));
        let mut report = AssertionReport::default();
        let good = key.sign_jwt(&claims(), &[]).unwrap();
        assert!(matches!(ClientAssertion::parse_checked(&good, &mut report), Parsed::Assertion(_)));
        assert_eq!(report.verdict(), Ok(()));
        assert_eq!(report.get(Check::Kid).unwrap().sent, key.kid());
    }

    #[test]
    fn every_claim_is_checked_on_its_own_and_recorded() {
        let mut c = claims();
        c["aud"] = json!("https://ehr.example/fhir");
        c["exp"] = json!(NOW + 320);
        c["sub"] = json!("other");
        let mut report = AssertionReport::default();
        check_claims(&c, "app", TOKEN_URL, NOW, &mut report);
        assert_eq!(report.failure(Check::Iss), None);
        assert_eq!(report.failure(Check::Sub), Some(&Failure::IssSub { client_id: "app".into() }));
        assert_eq!(report.failure(Check::Aud), Some(&Failure::Aud { expected: TOKEN_URL.into() }));
        assert_eq!(report.get(Check::Aud).unwrap().sent, "https://ehr.example/fhir");
        assert_eq!(report.failure(Check::Exp), None, "320 s is within the skew tolerance");
        assert_eq!(report.exp_ahead, Some(320));
        assert_eq!(report.get(Check::Exp).unwrap().sent, format!("{} (320 s ahead)", NOW + 320));
        assert_eq!(report.get(Check::Nbf).unwrap().sent, "absent");
        assert!(report.get(Check::Jti).unwrap().result.is_ok());
        assert_eq!(report.first_failure(), Some(&Failure::IssSub { client_id: "app".into() }), "sub before aud");
        c["exp"] = json!(NOW + 3600);
        let mut report = AssertionReport::default();
        check_claims(&c, "app", TOKEN_URL, NOW, &mut report);
        assert_eq!(report.failure(Check::Exp), Some(&Failure::ExpTooFar { ahead: 3600 }));
    }
}
