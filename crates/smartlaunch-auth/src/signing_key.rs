//! The app side of `private_key_jwt`: a client's private key (generated, or loaded from PKCS#8
//! PEM), its public JWK and signed client assertions (spec digest §1.6, "asymmetric").  Used by
//! `smartlaunch keys generate`, `smartlaunch token`, the benchmark and the tests.

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING,
    RSA_PKCS1_SHA256, RSA_PKCS1_SHA384,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use crate::jwk::Alg;
use crate::secrets::random_token;

/// The kinds of key pair `smartlaunch keys generate` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// EC P-384, signing ES384 (the default: small keys, fast, a SMART SHALL).
    Es384,
    Es256,
    /// RSA 2048, signing RS384.
    Rs384,
    Rs256,
}

impl KeyKind {
    pub fn parse(alg: &str) -> Result<KeyKind, String> {
        match alg.to_ascii_uppercase().as_str() {
            "ES384" => Ok(KeyKind::Es384),
            "ES256" => Ok(KeyKind::Es256),
            "RS384" => Ok(KeyKind::Rs384),
            "RS256" => Ok(KeyKind::Rs256),
            other => Err(format!("unsupported algorithm `{other}`; use ES384, RS384, ES256 or RS256")),
        }
    }
}

enum Pair {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

/// A private signing key with its algorithm and `kid` (the RFC 7638 thumbprint of its public key).
pub struct SigningKey {
    pair: Pair,
    alg: Alg,
    kid: String,
}

impl SigningKey {
    /// A fresh key pair.
    pub fn generate(kind: KeyKind) -> Result<SigningKey, String> {
        let pair = match kind {
            KeyKind::Es384 => Pair::Ec(EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).map_err(err)?),
            KeyKind::Es256 => Pair::Ec(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(err)?),
            KeyKind::Rs384 | KeyKind::Rs256 => Pair::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).map_err(err)?),
        };
        SigningKey::new(pair, Some(kind))
    }

    /// A key from a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).  `kind` chooses the algorithm of
    /// an RSA key (RS384 unless RS256 is asked); an EC key's curve decides its own.
    pub fn from_pem(pem: &str, kind: Option<KeyKind>) -> Result<SigningKey, String> {
        let (label, der) =
            pem_rfc7468::decode_vec(pem.trim().as_bytes()).map_err(|e| format!("the key file is not PEM: {e}"))?;
        if label != "PRIVATE KEY" {
            return Err(format!(
                "the key file holds a `{label}`; use a PKCS#8 `PRIVATE KEY` (convert with `openssl pkcs8 -topk8 -nocrypt`)"
            ));
        }
        let pair = if let Ok(k) = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &der) {
            Pair::Ec(k)
        } else if let Ok(k) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der) {
            Pair::Ec(k)
        } else {
            Pair::Rsa(
                RsaKeyPair::from_pkcs8(&der).map_err(|e| format!("the key is not an RSA, P-256 or P-384 key: {e}"))?,
            )
        };
        SigningKey::new(pair, kind)
    }

    fn new(pair: Pair, kind: Option<KeyKind>) -> Result<SigningKey, String> {
        let alg = match (&pair, kind) {
            (Pair::Ec(k), _) if std::ptr::eq(k.algorithm(), &ECDSA_P384_SHA384_FIXED_SIGNING) => Alg::Es384,
            (Pair::Ec(_), _) => Alg::Es256,
            (Pair::Rsa(_), Some(KeyKind::Rs256)) => Alg::Rs256,
            (Pair::Rsa(_), _) => Alg::Rs384,
        };
        match (alg, kind) {
            (Alg::Es384, Some(KeyKind::Es256)) | (Alg::Es256, Some(KeyKind::Es384)) => {
                return Err(format!("this EC key signs {}: its curve decides the algorithm", alg.as_str()))
            }
            (Alg::Es384 | Alg::Es256, Some(KeyKind::Rs384 | KeyKind::Rs256)) => {
                return Err("this is an EC key: use ES384 or ES256".into())
            }
            (Alg::Rs384 | Alg::Rs256, Some(KeyKind::Es384 | KeyKind::Es256)) => {
                return Err("this is an RSA key: use RS384 or RS256".into())
            }
            _ => {}
        }
        let mut key = SigningKey { pair, alg, kid: String::new() };
        key.kid = key.thumbprint();
        Ok(key)
    }

    pub fn alg(&self) -> Alg {
        self.alg
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public JWK: `kty`, `kid`, `alg`, `use: sig` and the public members.
    pub fn public_jwk(&self) -> Value {
        let mut jwk = self.thumbprint_members();
        let obj = jwk.as_object_mut().expect("an object");
        obj.insert("kid".into(), self.kid.clone().into());
        obj.insert("alg".into(), self.alg.as_str().into());
        obj.insert("use".into(), "sig".into());
        jwk
    }

    /// The public JWK Set to register (`jwks`) or serve at a `jwks_uri`.
    pub fn public_jwks(&self) -> Value {
        json!({ "keys": [self.public_jwk()] })
    }

    /// The private key as PKCS#8 PEM.
    pub fn to_pem(&self) -> Result<String, String> {
        let der = match &self.pair {
            Pair::Ec(k) => k.to_pkcs8v1().map_err(err)?.as_ref().to_vec(),
            Pair::Rsa(k) => {
                let der: Pkcs8V1Der = AsDer::as_der(k).map_err(err)?;
                der.as_ref().to_vec()
            }
        };
        pem_rfc7468::encode_string("PRIVATE KEY", pem_rfc7468::LineEnding::LF, &der).map_err(err)
    }

    /// Signs `message` (a JWS signing input) with this key's algorithm.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        let rng = SystemRandom::new();
        match &self.pair {
            Pair::Ec(k) => Ok(k.sign(&rng, message).map_err(err)?.as_ref().to_vec()),
            Pair::Rsa(k) => {
                let mut sig = vec![0u8; k.public_modulus_len()];
                let padding = if self.alg == Alg::Rs256 { &RSA_PKCS1_SHA256 } else { &RSA_PKCS1_SHA384 };
                k.sign(padding, &rng, message, &mut sig).map_err(err)?;
                Ok(sig)
            }
        }
    }

    /// A signed JWT with this key's `alg` and `kid` and the given extra header members (a
    /// `null` value removes a member).
    pub fn sign_jwt(&self, claims: &Value, extra_header: &[(&str, Value)]) -> Result<String, String> {
        let mut header = json!({ "alg": self.alg.as_str(), "kid": self.kid, "typ": "JWT" });
        for (k, v) in extra_header {
            match (v.is_null(), header.as_object_mut()) {
                (true, Some(h)) => {
                    h.remove(*k);
                }
                _ => header[*k] = v.clone(),
            }
        }
        let mut jwt =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let sig = self.sign(jwt.as_bytes())?;
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(sig));
        Ok(jwt)
    }

    /// A client assertion for `client_id` at `token_url` (SMART backend services): `iss` = `sub`
    /// = client_id, `aud` = the token URL, `exp` = `now` + 5 minutes, a fresh random `jti`.
    pub fn client_assertion(&self, client_id: &str, token_url: &str, now: i64) -> Result<String, String> {
        self.sign_jwt(
            &json!({
                "iss": client_id, "sub": client_id, "aud": token_url,
                "exp": now + 300, "iat": now, "jti": random_token(16),
            }),
            &[],
        )
    }

    /// The RFC 7638 members in lexicographic order.
    fn thumbprint_members(&self) -> Value {
        match &self.pair {
            Pair::Ec(k) => {
                let point = k.public_key().as_ref();
                let size = (point.len() - 1) / 2;
                let crv = if self.alg == Alg::Es384 { "P-384" } else { "P-256" };
                json!({
                    "crv": crv, "kty": "EC",
                    "x": URL_SAFE_NO_PAD.encode(&point[1..1 + size]),
                    "y": URL_SAFE_NO_PAD.encode(&point[1 + size..]),
                })
            }
            Pair::Rsa(k) => {
                let (n, e) = crate::keys::rsa_public_components(k.public_key().as_ref()).unwrap_or((&[], &[]));
                json!({ "e": URL_SAFE_NO_PAD.encode(e), "kty": "RSA", "n": URL_SAFE_NO_PAD.encode(n) })
            }
        }
    }

    /// The RFC 7638 JWK thumbprint (SHA-256, base64url): serde_json writes object members in
    /// lexicographic order and without whitespace, as the RFC asks.
    fn thumbprint(&self) -> String {
        let canonical = self.thumbprint_members().to_string();
        URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes()))
    }
}

fn err(e: impl std::fmt::Display) -> String {
    format!("key operation failed: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trips_and_keeps_the_kid() {
        for kind in [KeyKind::Es384, KeyKind::Es256, KeyKind::Rs384] {
            let key = SigningKey::generate(kind).unwrap();
            let pem = key.to_pem().unwrap();
            assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
            let back = SigningKey::from_pem(&pem, None).unwrap();
            assert_eq!(back.kid(), key.kid());
            assert_eq!(back.alg(), key.alg());
        }
        let rsa = SigningKey::generate(KeyKind::Rs384).unwrap();
        let as_256 = SigningKey::from_pem(&rsa.to_pem().unwrap(), Some(KeyKind::Rs256)).unwrap();
        assert_eq!(as_256.alg(), Alg::Rs256);
        assert!(SigningKey::from_pem(&rsa.to_pem().unwrap(), Some(KeyKind::Es384)).is_err());
    }

    #[test]
    fn the_thumbprint_matches_rfc7638() {
        // RFC 7638 §3.1's example key and thumbprint.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let members = json!({ "e": "AQAB", "kty": "RSA", "n": n }).to_string();
        let tp = URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, members.as_bytes()));
        assert_eq!(tp, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }
}
