//! Client public keys: a registered JWK Set, checked at registration and used to verify
//! `private_key_jwt` client assertions (spec digest §1.6 "asymmetric", checklist 45–50).
//!
//! Signatures are verified with aws-lc-rs directly: RS256/RS384 (RSASSA-PKCS1-v1_5, 2048 to
//! 8192 bits) and ES256/ES384 (ECDSA, fixed-length `r‖s` as JWS sends it).  Nothing else is
//! accepted: no `none`, no HMAC (a public key used as an HMAC secret), no other curve.

use aws_lc_rs::signature::{
    self, RsaPublicKeyComponents, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED,
    RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_2048_8192_SHA384,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

/// Most keys one client may register.
pub const MAX_KEYS: usize = 20;
/// Largest JWK Set document accepted, by value or fetched from a `jwks_uri`.
pub const MAX_JWKS_BYTES: usize = 64 * 1024;
/// Smallest RSA modulus accepted (the spec's and NIST's floor).
pub const MIN_RSA_BITS: usize = 2048;
const MAX_RSA_BITS: usize = 8192;

/// The signature algorithms accepted for client assertions (RS384 and ES384 are the spec's
/// SHALLs; RS256 and ES256 are accepted too), in the order discovery lists them.
pub const ALGORITHMS: [&str; 4] = ["RS384", "ES384", "RS256", "ES256"];

/// An accepted JWS algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Rs256,
    Rs384,
    Es256,
    Es384,
}

impl Alg {
    /// The algorithm a JOSE header names, or why it is refused.
    pub fn parse(alg: &str) -> Result<Alg, String> {
        match alg {
            "RS256" => Ok(Alg::Rs256),
            "RS384" => Ok(Alg::Rs384),
            "ES256" => Ok(Alg::Es256),
            "ES384" => Ok(Alg::Es384),
            "none" | "None" | "NONE" => {
                Err("alg `none` is refused: sign the assertion with a registered key (RS384 or ES384)".into())
            }
            a if a.to_ascii_uppercase().starts_with("HS") => Err(format!(
                "alg `{}` is refused: a client assertion is signed with the client's private key, never an HMAC secret (use RS384 or ES384)",
                short(a)
            )),
            a => Err(format!("alg `{}` is not supported; use RS384, ES384, RS256 or ES256", short(a))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Rs384 => "RS384",
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
        }
    }
}

/// A public key's material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMaterial {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// `curve` is `P-256` or `P-384`; `point` is the uncompressed SEC1 point `04‖x‖y`.
    Ec {
        curve: Curve,
        point: Vec<u8>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
}

/// One registered public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicJwk {
    pub kid: String,
    /// The `alg` the key is limited to, when its JWK names one.
    pub alg: Option<Alg>,
    pub material: KeyMaterial,
}

impl PublicJwk {
    /// Whether this key can verify `alg` (type, curve and the key's own `alg`).
    pub fn fits(&self, alg: Alg) -> bool {
        if self.alg.is_some_and(|a| a != alg) {
            return false;
        }
        matches!(
            (&self.material, alg),
            (KeyMaterial::Rsa { .. }, Alg::Rs256 | Alg::Rs384)
                | (KeyMaterial::Ec { curve: Curve::P256, .. }, Alg::Es256)
                | (KeyMaterial::Ec { curve: Curve::P384, .. }, Alg::Es384)
        )
    }

    /// Verifies a JWS signature over `message` (`header.payload`).
    pub fn verify(&self, alg: Alg, message: &[u8], signature: &[u8]) -> bool {
        match (&self.material, alg) {
            (KeyMaterial::Rsa { n, e }, Alg::Rs256 | Alg::Rs384) => {
                let params = if alg == Alg::Rs256 { &RSA_PKCS1_2048_8192_SHA256 } else { &RSA_PKCS1_2048_8192_SHA384 };
                RsaPublicKeyComponents { n: n.as_slice(), e: e.as_slice() }.verify(params, message, signature).is_ok()
            }
            (KeyMaterial::Ec { curve: Curve::P256, point }, Alg::Es256) => {
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).verify(message, signature).is_ok()
            }
            (KeyMaterial::Ec { curve: Curve::P384, point }, Alg::Es384) => {
                UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, point).verify(message, signature).is_ok()
            }
            _ => false,
        }
    }
}

/// Parses and checks a JWK Set: 1 to [`MAX_KEYS`] signing keys, each with a unique `kid`, RSA of
/// at least 2048 bits or EC on P-256/P-384, and public only (a private member is refused, since
/// the private key was sent by mistake and must be replaced).
pub fn parse_key_set(jwks: &Value) -> Result<Vec<PublicJwk>, String> {
    let keys = jwks.get("keys").and_then(Value::as_array).ok_or("a JWK Set is a JSON object with a `keys` array")?;
    if keys.is_empty() {
        return Err("the JWK Set has no keys".into());
    }
    if keys.len() > MAX_KEYS {
        return Err(format!("a JWK Set may hold at most {MAX_KEYS} keys"));
    }
    let mut parsed: Vec<PublicJwk> = Vec::with_capacity(keys.len());
    for (i, key) in keys.iter().enumerate() {
        let jwk = parse_key(key).map_err(|why| match key.get("kid").and_then(Value::as_str) {
            Some(kid) => format!("key `{}`: {why}", short(kid)),
            None => format!("key #{}: {why}", i + 1),
        })?;
        if parsed.iter().any(|k| k.kid == jwk.kid) {
            return Err(format!("two keys share the kid `{}`: each kid must be unique", short(&jwk.kid)));
        }
        parsed.push(jwk);
    }
    Ok(parsed)
}

/// The private members of RSA, EC and symmetric JWKs (RFC 7518 §6).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Whether a JWK Set holds secret material (a pasted private key must not be shown again).
pub fn has_private_member(jwks: &Value) -> bool {
    let keys = jwks.get("keys").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    keys.iter().filter_map(Value::as_object).any(|k| PRIVATE_MEMBERS.iter().any(|m| k.contains_key(*m)))
}

fn parse_key(key: &Value) -> Result<PublicJwk, String> {
    let obj = key.as_object().ok_or("a key must be a JSON object")?;
    if let Some(m) = PRIVATE_MEMBERS.iter().find(|m| obj.contains_key(**m)) {
        return Err(if *m == "k" {
            "symmetric (`oct`) keys cannot be registered: register the public half of an RSA or EC key pair".into()
        } else {
            format!(
                "this is a private key (it has `{m}`): register only the public key — and since the private key has now been sent, generate a new key pair"
            )
        });
    }
    let text = |name: &str| obj.get(name).and_then(Value::as_str);
    let kid = text("kid").filter(|k| !k.is_empty()).ok_or("every key needs a `kid`, so an assertion can name it")?;
    if kid.len() > 256 || kid.chars().any(char::is_control) {
        return Err("the kid must be at most 256 printable characters".into());
    }
    if let Some(u) = obj.get("use") {
        if u.as_str() != Some("sig") {
            return Err("`use` must be `sig` (or absent): these keys verify client assertions".into());
        }
    }
    if let Some(ops) = obj.get("key_ops") {
        let ok = ops.as_array().is_some_and(|ops| ops.iter().any(|o| o.as_str() == Some("verify")));
        if !ok {
            return Err("`key_ops` must include `verify` (or be absent)".into());
        }
    }
    let alg = match obj.get("alg") {
        None => None,
        Some(a) => Some(Alg::parse(a.as_str().ok_or("`alg` must be a string")?)?),
    };
    let b64 = |name: &str| -> Result<Vec<u8>, String> {
        let v = text(name).ok_or_else(|| format!("`{name}` is missing"))?;
        URL_SAFE_NO_PAD.decode(v.trim_end_matches('=')).map_err(|_| format!("`{name}` is not base64url"))
    };
    let material = match text("kty") {
        Some("RSA") => {
            let n = b64("n")?;
            let e = b64("e")?;
            let n_trimmed = trim_zeros(&n);
            let bits = n_trimmed.len() * 8 - n_trimmed.first().map_or(8, |b| b.leading_zeros() as usize);
            if bits < MIN_RSA_BITS {
                return Err(format!("the RSA key has {bits} bits; at least {MIN_RSA_BITS} are required"));
            }
            if bits > MAX_RSA_BITS {
                return Err(format!("the RSA key has {bits} bits; at most {MAX_RSA_BITS} are accepted"));
            }
            // e = 1 makes a signature the encoded message itself (anyone could forge it); an
            // even e is no RSA key.  Real keys use 65537 (or 3).
            let e_trimmed = trim_zeros(&e);
            let odd = e_trimmed.last().is_some_and(|b| b & 1 == 1);
            if !odd || e_trimmed == [1] || e.len() > 8 {
                return Err("the RSA exponent `e` is not valid (it must be odd and at least 3, usually 65537)".into());
            }
            KeyMaterial::Rsa { n: n_trimmed.to_vec(), e: trim_zeros(&e).to_vec() }
        }
        Some("EC") => {
            let (curve, size) = match text("crv") {
                Some("P-256") => (Curve::P256, 32),
                Some("P-384") => (Curve::P384, 48),
                Some(other) => {
                    return Err(format!(
                        "the curve `{}` is not supported; use P-384 (ES384) or P-256 (ES256)",
                        short(other)
                    ))
                }
                None => return Err("`crv` is missing".into()),
            };
            let x = b64("x")?;
            let y = b64("y")?;
            if x.len() != size || y.len() != size {
                return Err(format!("`x` and `y` must be {size} bytes each for this curve"));
            }
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            // Reject a point not on the curve now, not at the first assertion.
            let probe =
                if curve == Curve::P256 { &signature::ECDSA_P256_SHA256_FIXED } else { &ECDSA_P384_SHA384_FIXED };
            if aws_lc_rs::signature::ParsedPublicKey::new(probe, &point).is_err() {
                return Err("`x` and `y` are not a point on the curve".into());
            }
            KeyMaterial::Ec { curve, point }
        }
        Some("oct") => {
            return Err(
                "symmetric (`oct`) keys cannot be registered: register the public half of an RSA or EC key pair".into(),
            )
        }
        Some(other) => return Err(format!("kty `{}` is not supported; use RSA or EC", short(other))),
        None => return Err("`kty` is missing".into()),
    };
    let jwk = PublicJwk { kid: kid.to_owned(), alg, material };
    if let Some(alg) = alg {
        if !jwk.fits(alg) {
            return Err(format!("alg {} does not fit this key's type or curve", alg.as_str()));
        }
    }
    Ok(jwk)
}

fn trim_zeros(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[start..]
}

fn short(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing_key::{KeyKind, SigningKey};
    use serde_json::json;

    #[test]
    fn generated_keys_parse_and_verify_their_signatures() {
        for kind in [KeyKind::Es384, KeyKind::Es256, KeyKind::Rs384, KeyKind::Rs256] {
            let key = SigningKey::generate(kind).unwrap();
            let set = parse_key_set(&json!({ "keys": [key.public_jwk()] })).unwrap();
            let sig = key.sign(b"a.b").unwrap();
            assert!(set[0].fits(key.alg()), "{kind:?}");
            assert!(set[0].verify(key.alg(), b"a.b", &sig), "{kind:?}");
            assert!(!set[0].verify(key.alg(), b"a.c", &sig), "{kind:?}");
        }
    }

    #[test]
    fn private_symmetric_small_and_odd_keys_are_refused() {
        let key = SigningKey::generate(KeyKind::Es384).unwrap();
        let mut private = key.public_jwk();
        private["d"] = json!("AAAA");
        let e = parse_key_set(&json!({ "keys": [private] })).unwrap_err();
        assert!(e.contains("private key") && e.contains("`d`"), "{e}");
        let e = parse_key_set(&json!({ "keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}] })).unwrap_err();
        assert!(e.contains("symmetric"), "{e}");
        let small = json!({"kty": "RSA", "kid": "s", "n": URL_SAFE_NO_PAD.encode([0xff; 128]), "e": "AQAB"});
        assert!(parse_key_set(&json!({ "keys": [small] })).unwrap_err().contains("1024 bits"));
        let mut no_kid = key.public_jwk();
        no_kid.as_object_mut().unwrap().remove("kid");
        assert!(parse_key_set(&json!({ "keys": [no_kid] })).unwrap_err().contains("kid"));
        let mut p521 = key.public_jwk();
        p521["crv"] = json!("P-521");
        assert!(parse_key_set(&json!({ "keys": [p521] })).unwrap_err().contains("P-521"));
        let mut off_curve = key.public_jwk();
        off_curve["x"] = json!(URL_SAFE_NO_PAD.encode([7u8; 48]));
        assert!(parse_key_set(&json!({ "keys": [off_curve] })).is_err());
        let mut wrong_alg = key.public_jwk();
        wrong_alg["alg"] = json!("RS384");
        assert!(parse_key_set(&json!({ "keys": [wrong_alg] })).is_err());
        assert!(parse_key_set(&json!({ "keys": [key.public_jwk(), key.public_jwk()] }))
            .unwrap_err()
            .contains("unique"));
        assert!(parse_key_set(&json!({ "keys": [] })).is_err());
        assert!(parse_key_set(&json!([key.public_jwk()])).is_err());
    }

    #[test]
    fn refused_algorithms_say_why() {
        assert!(Alg::parse("none").unwrap_err().contains("none"));
        assert!(Alg::parse("HS256").unwrap_err().contains("HMAC"));
        assert!(Alg::parse("PS384").unwrap_err().contains("not supported"));
        assert_eq!(Alg::parse("ES384").unwrap(), Alg::Es384);
    }

    /// Review (issue 8): RSA public exponent 1 (or even) makes "verification" the identity
    /// (or breaks it); such a key must be refused at registration, and a signature that is just
    /// the PKCS#1 v1.5 encoding of the message must never verify.
    #[test]
    fn review_rsa_exponent_one_or_even_is_refused_and_cannot_be_forged() {
        let n = [0xffu8; 256];
        let key = |e: &[u8]| json!({"kty": "RSA", "kid": "weak", "n": URL_SAFE_NO_PAD.encode(n), "e": URL_SAFE_NO_PAD.encode(e)});
        // The forgery a key with e = 1 would allow: s = EM, since s^1 mod n = EM.
        let message = b"header.payload";
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA384, message);
        let prefix: [u8; 19] = [
            0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04,
            0x30,
        ];
        let mut em = vec![0x00, 0x01];
        em.resize(256 - 19 - 48 - 1, 0xff);
        em.push(0x00);
        em.extend_from_slice(&prefix);
        em.extend_from_slice(digest.as_ref());
        assert_eq!(em.len(), 256);
        let weak =
            PublicJwk { kid: "weak".into(), alg: None, material: KeyMaterial::Rsa { n: n.to_vec(), e: vec![1] } };
        assert!(!weak.verify(Alg::Rs384, message, &em), "a forged signature verifies with e = 1");
        for e in [&[1u8][..], &[2], &[1, 0, 0]] {
            assert!(parse_key_set(&json!({ "keys": [key(e)] })).is_err(), "e = {e:?} is accepted at registration");
        }
    }

    #[test]
    fn a_key_fits_only_its_algorithms() {
        let ec = SigningKey::generate(KeyKind::Es384).unwrap();
        let set = parse_key_set(&json!({ "keys": [ec.public_jwk()] })).unwrap();
        assert!(set[0].fits(Alg::Es384));
        assert!(!set[0].fits(Alg::Es256));
        assert!(!set[0].fits(Alg::Rs384));
    }
}
