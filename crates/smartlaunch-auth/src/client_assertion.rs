//! `private_key_jwt` client assertions (RFC 7523 §3, SMART App Launch 2.2 "Client
//! Authentication: Asymmetric", spec digest §1.6): the rules on the JOSE header and the claims.
//! The key comes from the client's registration ([`crate::service`] finds it); the `jti`
//! replay check is the store's.  Every failure says which claim or check failed.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

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
const MAX_JTI_LEN: usize = 256;

/// A client assertion, parsed but not yet verified.
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

impl ClientAssertion {
    /// Parses the compact JWS and checks its header: a supported `alg`, a `kid`, `typ` JWT.
    /// The order of the checks is the order of the error an app sees first.
    pub fn parse(assertion: &str) -> Result<ClientAssertion, String> {
        if assertion.len() > MAX_ASSERTION_LEN {
            return Err(format!("client_assertion is longer than {MAX_ASSERTION_LEN} bytes"));
        }
        let mut parts = assertion.split('.');
        let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err("client_assertion is not a signed JWT (three base64url parts separated by dots)".into());
        };
        let decode = |part: &str, what: &str| -> Result<Vec<u8>, String> {
            URL_SAFE_NO_PAD.decode(part).map_err(|_| format!("the client_assertion {what} is not base64url"))
        };
        let header: Value = serde_json::from_slice(&decode(h, "header")?)
            .map_err(|_| "the client_assertion header is not JSON".to_owned())?;
        let alg = header.get("alg").and_then(Value::as_str).ok_or("the client_assertion header has no `alg`")?;
        let alg = Alg::parse(alg)?;
        // RFC 7515 §4.1.11: extensions in `crit` must be understood; we understand none (e.g.
        // `b64: false`, RFC 7797, would change what the signature covers).
        if header.get("crit").is_some() {
            return Err("the client_assertion header has `crit`: no JWS extension is supported; remove it".into());
        }
        // `typ` is required and fixed (asym: "typ … Fixed value: JWT", checklist item 47).
        if !header.get("typ").and_then(Value::as_str).is_some_and(|t| t.eq_ignore_ascii_case("JWT")) {
            return Err("the client_assertion header needs `typ`: `JWT`".into());
        }
        let kid =
            header.get("kid").and_then(Value::as_str).filter(|k| !k.is_empty()).ok_or(
                "the client_assertion header has no `kid`: name the key that signed it (its kid in your JWK Set)",
            )?;
        let jku = match header.get("jku") {
            None => None,
            Some(v) => Some(v.as_str().ok_or("the client_assertion header `jku` must be a string")?.to_owned()),
        };
        let claims: Value = serde_json::from_slice(&decode(p, "payload")?)
            .map_err(|_| "the client_assertion payload is not a JSON object".to_owned())?;
        if !claims.is_object() {
            return Err("the client_assertion payload is not a JSON object".into());
        }
        if s.is_empty() {
            return Err("the client_assertion has no signature".into());
        }
        Ok(ClientAssertion {
            alg,
            kid: kid.to_owned(),
            jku,
            claims,
            signing_input_len: h.len() + 1 + p.len(),
            raw: assertion.to_owned(),
            signature: decode(s, "signature")?,
        })
    }

    /// The `iss` claim: the client the assertion says it is.
    pub fn issuer(&self) -> Option<&str> {
        self.claims.get("iss").and_then(Value::as_str)
    }

    /// A `jku` header is accepted only when it is the client's registered `jwks_uri`.
    pub fn check_jku(&self, registered_jwks_uri: Option<&str>) -> Result<(), String> {
        match (&self.jku, registered_jwks_uri) {
            (None, _) => Ok(()),
            (Some(jku), Some(uri)) if jku == uri => Ok(()),
            (Some(_), Some(_)) => {
                Err("the header `jku` differs from the registered jwks_uri: keys are taken only from the registration"
                    .into())
            }
            (Some(_), None) => {
                Err("the header has a `jku`, but this client registered its keys by value (jwks): remove jku".into())
            }
        }
    }

    /// The registered key the header's `kid` names and that fits its `alg`; `None` when no key
    /// has that kid (the caller may refetch a `jwks_uri` once).
    pub fn select_key<'k>(&self, keys: &'k [PublicJwk]) -> Option<Result<&'k PublicJwk, String>> {
        let key = keys.iter().find(|k| k.kid == self.kid)?;
        Some(if key.fits(self.alg) {
            Ok(key)
        } else {
            Err(format!(
                "the key `{}` cannot verify {}: check the key type, curve and alg",
                short(&self.kid),
                self.alg.as_str()
            ))
        })
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
        if !key.verify(self.alg, &self.raw.as_bytes()[..self.signing_input_len], &self.signature) {
            return Err(format!(
                "the signature does not verify with the registered key `{}` ({})",
                short(&self.kid),
                self.alg.as_str()
            ));
        }
        let text = |name: &str| self.claims.get(name).and_then(Value::as_str);
        match (text("iss"), text("sub")) {
            (Some(i), Some(s)) if i == client_id && s == client_id => {}
            _ => return Err(format!("`iss` and `sub` must both be the client_id `{}`", short(client_id))),
        }
        let aud_ok = match self.claims.get("aud") {
            Some(Value::String(a)) => a == token_url,
            Some(Value::Array(a)) => a.iter().any(|a| a.as_str() == Some(token_url)),
            _ => false,
        };
        if !aud_ok {
            return Err(format!("`aud` must be this server's token URL `{token_url}`"));
        }
        let exp = self
            .claims
            .get("exp")
            .and_then(Value::as_i64)
            .ok_or("`exp` is missing or not a number (seconds since 1970)")?;
        if exp <= now {
            return Err(format!(
                "the assertion expired {} s ago (`exp`); sign a fresh one for each request",
                now.saturating_sub(exp)
            ));
        }
        if exp > now.saturating_add(MAX_LIFETIME + CLOCK_SKEW) {
            return Err(format!(
                "`exp` is {} s ahead; an assertion may be valid for at most {MAX_LIFETIME} s",
                exp.saturating_sub(now)
            ));
        }
        if let Some(nbf) = self.claims.get("nbf") {
            let nbf = nbf.as_i64().ok_or("`nbf` must be a number")?;
            if nbf > now + CLOCK_SKEW {
                return Err("the assertion is not valid yet (`nbf` is in the future)".into());
            }
        }
        let jti =
            text("jti").filter(|j| !j.is_empty()).ok_or("`jti` is missing: give every assertion a unique random id")?;
        if jti.len() > MAX_JTI_LEN {
            return Err(format!("`jti` is longer than {MAX_JTI_LEN} characters"));
        }
        Ok(VerifiedAssertion { jti: jti.to_owned(), exp })
    }
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
}
