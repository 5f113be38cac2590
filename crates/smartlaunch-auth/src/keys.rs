//! The server's keys: an RSA key that signs id_tokens (RS256, published in the JWKS;
//! checklist items 87, 89) and an HMAC key for access tokens, which only this server verifies.
//!
//! Access tokens are HS256 JWTs so that the resource server checks them without I/O and
//! without an RSA signature per launch; third parties ask the introspection endpoint.
//!
//! id_tokens are signed with the RSA key parsed once at start (`aws-lc-rs`): encoding through
//! `jsonwebtoken` would parse and check the private key again for every token, which costs more
//! than the signature itself.

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair, RsaKeyPair, RSA_PKCS1_SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::BearerError;
use crate::launch::{LaunchContext, SimulatedError};
use crate::secrets::{hash_token, random_token};
use crate::UnixTime;

/// The persisted key material (what the store keeps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMaterial {
    pub kid: String,
    /// PKCS#8 DER of the RSA private key.
    pub rsa_pkcs8: Vec<u8>,
    /// The HMAC secret for access tokens.
    pub hmac_secret: Vec<u8>,
}

impl KeyMaterial {
    /// Generates fresh keys: RSA-2048 and a 256-bit HMAC secret.
    pub fn generate() -> KeyMaterial {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key generation failed");
        let der: Pkcs8V1Der = AsDer::as_der(&pair).expect("RSA key serialisation failed");
        let rsa_pkcs8 = der.as_ref().to_vec();
        let kid = hash_token(&URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()))[..16].to_owned();
        let hmac_secret = URL_SAFE_NO_PAD.decode(random_token(32)).expect("own base64");
        KeyMaterial { kid, rsa_pkcs8, hmac_secret }
    }
}

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    /// The FHIR base the token is for (checklist item 25).
    pub aud: String,
    /// The user id, or the client id when no user is involved.
    pub sub: String,
    pub client_id: String,
    pub scope: String,
    /// The grant (authorization) this token belongs to: revoking it revokes the token.
    pub grant: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encounter: Option<String>,
    /// Relative `fhirUser` (`Practitioner/…`), when a user signed in.
    #[serde(default, rename = "fhirUser", skip_serializing_if = "Option::is_none")]
    pub fhir_user: Option<String>,
    pub iat: UnixTime,
    pub exp: UnixTime,
    pub jti: String,
    /// An EHR launch's further context, for introspection to echo (checklist item 95).
    #[serde(default, rename = "ctx", skip_serializing_if = "Option::is_none")]
    pub context: Option<Box<LaunchContext>>,
    /// A FHIR-API failure the developer launcher asked for.
    #[serde(default, rename = "sim", skip_serializing_if = "Option::is_none")]
    pub simulate_error: Option<SimulatedError>,
    /// The launch inspector's key, when the token came from a launch.
    #[serde(default, rename = "trc", skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

/// The claims of an OpenID Connect id_token (spec digest §1.9).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdTokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: UnixTime,
    pub iat: UnixTime,
    pub auth_time: UnixTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Absolute URL of the user's FHIR resource (checklist items 88, 90).
    #[serde(rename = "fhirUser", skip_serializing_if = "Option::is_none")]
    pub fhir_user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Seconds a rotated-in key is published (JWKS, and known to every node through the change
/// feed, which takes milliseconds) before it signs: a node never meets a token signed with a key
/// it has not loaded yet.
pub const KEY_ACTIVATION: UnixTime = 10;

/// The order of stored keys, newest first: by the time they were added, then by `kid`.
fn newest_first(a: &(KeyMaterial, UnixTime), b: &(KeyMaterial, UnixTime)) -> std::cmp::Ordering {
    b.1.cmp(&a.1).then_with(|| b.0.kid.cmp(&a.0.kid))
}

/// The id of the newest of the stored keys (the one [`SigningKeys::load_set`] puts first).
pub fn newest_kid(stored: &[(KeyMaterial, UnixTime)]) -> Option<&str> {
    stored.iter().min_by(|a, b| newest_first(a, b)).map(|(m, _)| m.kid.as_str())
}

/// One loaded set of keys (one row of the store).
struct LoadedKey {
    kid: String,
    rsa: RsaKeyPair,
    /// The base64url JOSE header of every id_token: `{"alg":"RS256","kid":…,"typ":"JWT"}`.
    id_token_header: String,
    /// The header of access tokens (HS256 with this `kid`).
    access_header: Header,
    jwk: serde_json::Value,
    hmac_encode: EncodingKey,
    hmac_decode: DecodingKey,
    /// From when it signs.
    active_from: UnixTime,
    /// When the last token it signed has expired (`None`: the newest key).
    retire_at: Option<UnixTime>,
}

impl LoadedKey {
    fn load(material: &KeyMaterial) -> Result<LoadedKey, String> {
        let pair = RsaKeyPair::from_pkcs8(&material.rsa_pkcs8).map_err(|e| format!("stored RSA key: {e}"))?;
        let (n, e) = rsa_public_components(pair.public_key().as_ref()).ok_or("stored RSA key: bad public key")?;
        let header = serde_json::json!({ "alg": "RS256", "kid": material.kid, "typ": "JWT" });
        let id_token_header = URL_SAFE_NO_PAD.encode(header.to_string());
        let jwk = serde_json::json!({
            "kty": "RSA",
            "kid": material.kid,
            "use": "sig",
            "alg": "RS256",
            "n": URL_SAFE_NO_PAD.encode(n),
            "e": URL_SAFE_NO_PAD.encode(e),
        });
        let mut access_header = Header::new(Algorithm::HS256);
        access_header.kid = Some(material.kid.clone());
        Ok(LoadedKey {
            kid: material.kid.clone(),
            rsa: pair,
            id_token_header,
            access_header,
            jwk,
            hmac_encode: EncodingKey::from_secret(&material.hmac_secret).map_err(|e| format!("HMAC key: {e}"))?,
            hmac_decode: DecodingKey::from_secret(&material.hmac_secret).map_err(|e| format!("HMAC key: {e}"))?,
            active_from: UnixTime::MIN,
            retire_at: None,
        })
    }

    fn live(&self, now: UnixTime) -> bool {
        self.retire_at.is_none_or(|at| now < at)
    }
}

/// Loaded keys, ready to sign and verify: the newest signs (once active), and the keys it
/// replaced still verify, and stay in the JWKS, until every token they signed has expired
/// (issue 10, "signing keys … rotated consistently").
pub struct SigningKeys {
    /// Newest first; never empty.
    keys: Vec<LoadedKey>,
    validation: Validation,
}

impl SigningKeys {
    /// One set of keys, active at once.
    pub fn load(material: &KeyMaterial) -> Result<SigningKeys, String> {
        SigningKeys::load_set(&[(material.clone(), 0)], 0, 0)
    }

    /// The stored keys with the times they were added (any order), for tokens that live
    /// `token_lifetime` seconds, at `now`: keys whose every token has expired are left out.
    pub fn load_set(
        stored: &[(KeyMaterial, UnixTime)],
        token_lifetime: UnixTime,
        now: UnixTime,
    ) -> Result<SigningKeys, String> {
        let mut sorted: Vec<&(KeyMaterial, UnixTime)> = stored.iter().collect();
        sorted.sort_by(|a, b| newest_first(a, b));
        let mut keys: Vec<LoadedKey> = Vec::with_capacity(sorted.len());
        for (i, (material, added_at)) in sorted.iter().enumerate() {
            let mut key = LoadedKey::load(material)?;
            if i + 1 < sorted.len() {
                key.active_from = added_at + KEY_ACTIVATION;
            }
            // Signed until the newer key became active; valid a token lifetime after that.
            key.retire_at = keys.last().map(|newer| newer.active_from.max(0) + token_lifetime);
            if !key.live(now) {
                break;
            }
            keys.push(key);
        }
        if keys.is_empty() {
            return Err("no signing keys".into());
        }
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry and audience are checked against the injected clock in `verify_access_token`.
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        Ok(SigningKeys { keys, validation })
    }

    /// The ids of the loaded keys, newest first.
    pub fn kids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.kid.as_str()).collect()
    }

    /// The key that signs at `at`: the newest active one.
    fn signer(&self, at: UnixTime) -> &LoadedKey {
        let oldest = &self.keys[self.keys.len() - 1];
        self.keys.iter().find(|k| k.active_from <= at).unwrap_or(oldest)
    }

    /// The key that signed `token` (by its `kid`; a token without one predates rotation and was
    /// signed by the oldest key).
    fn verifier(&self, token: &str) -> Option<&LoadedKey> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        match header.kid {
            Some(kid) => self.keys.iter().find(|k| k.kid == kid),
            None => self.keys.last(),
        }
    }

    /// The public JWK Set (`jwks_uri`) at `now`: bare RSA keys with `kid`, `use`, `alg`, the
    /// newest first, until their last id_token has expired.
    pub fn jwks(&self, now: UnixTime) -> serde_json::Value {
        let keys: Vec<&serde_json::Value> = self.keys.iter().filter(|k| k.live(now)).map(|k| &k.jwk).collect();
        serde_json::json!({ "keys": keys })
    }

    /// Signs an id_token with RS256 (RSASSA-PKCS1-v1_5 with SHA-256, checklist item 89), with
    /// the key active at its `iat`.
    pub fn sign_id_token(&self, claims: &IdTokenClaims) -> String {
        let key = self.signer(claims.iat);
        let payload = serde_json::to_vec(claims).expect("claims serialise");
        let mut token = format!("{}.{}", key.id_token_header, URL_SAFE_NO_PAD.encode(payload));
        let mut signature = vec![0u8; key.rsa.public_modulus_len()];
        key.rsa
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), token.as_bytes(), &mut signature)
            .expect("RS256 signing with a loaded key cannot fail");
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(signature));
        token
    }

    /// Signs an access token (HS256) with the key active at its `iat`.
    pub fn sign_access_token(&self, claims: &AccessClaims) -> String {
        let key = self.signer(claims.iat);
        jsonwebtoken::encode(&key.access_header, claims, &key.hmac_encode).expect("HS256 signing cannot fail")
    }

    /// Checks signature, expiry and audience of an access token (checklist item 77).
    /// Revocation is checked by the caller against the revocation list.
    pub fn verify_access_token(&self, token: &str, audience: &str, now: UnixTime) -> Result<AccessClaims, BearerError> {
        self.open_access_token(token).ok_or(MALFORMED)?.check_for(audience, now)
    }

    /// Decodes a token whose signature is ours, and nothing more: expired or not, and from a
    /// key retired or not (the launch inspector records uses of expired tokens).  A FHIR call
    /// opens its token once, for the inspector and for the caller's checks
    /// ([`OpenedToken::check`]).
    pub fn open_access_token(&self, token: &str) -> Option<OpenedToken> {
        let key = self.verifier(token)?;
        let data = jsonwebtoken::decode::<AccessClaims>(token, &key.hmac_decode, &self.validation).ok()?;
        Some(OpenedToken { claims: data.claims, key_retire_at: key.retire_at })
    }

    /// Signature and expiry only: the caller checks `aud` (introspection accepts every FHIR
    /// base of this server).
    pub fn verify_access_token_for_any_audience(
        &self,
        token: &str,
        now: UnixTime,
    ) -> Result<AccessClaims, BearerError> {
        self.open_access_token(token).ok_or(MALFORMED)?.check(now)
    }
}

const MALFORMED: BearerError = BearerError::Invalid("the access token is malformed or its signature is invalid");

/// An access token with our signature, decoded ([`SigningKeys::open_access_token`]); not yet
/// checked for expiry, audience or the retirement of its key.
#[derive(Debug, Clone)]
pub struct OpenedToken {
    pub claims: AccessClaims,
    /// When the key that signed it stops verifying.
    key_retire_at: Option<UnixTime>,
}

impl OpenedToken {
    /// Its claims, if its key still verifies and it has not expired at `now`.
    pub fn check(self, now: UnixTime) -> Result<AccessClaims, BearerError> {
        if self.key_retire_at.is_some_and(|at| now >= at) {
            return Err(MALFORMED);
        }
        if self.claims.exp <= now {
            return Err(BearerError::Invalid("the access token has expired"));
        }
        Ok(self.claims)
    }

    /// [`OpenedToken::check`], and that it is for the FHIR base `audience`.
    pub fn check_for(self, audience: &str, now: UnixTime) -> Result<AccessClaims, BearerError> {
        let claims = self.check(now)?;
        if claims.aud != audience {
            return Err(BearerError::Invalid("the access token was issued for another FHIR server (aud)"));
        }
        Ok(claims)
    }
}

/// Reads `n` and `e` from a PKCS#1 `RSAPublicKey ::= SEQUENCE { n INTEGER, e INTEGER }`.
pub(crate) fn rsa_public_components(der: &[u8]) -> Option<(&[u8], &[u8])> {
    fn read_tlv(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        let (&t, rest) = input.split_first()?;
        if t != tag {
            return None;
        }
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (first as usize, rest)
        } else {
            let n = (first & 0x7f) as usize;
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | *b as usize);
            (len, &rest[n..])
        };
        (rest.len() >= len).then(|| rest.split_at(len))
    }
    fn strip_zero(i: &[u8]) -> &[u8] {
        match i {
            [0, rest @ ..] if !rest.is_empty() => rest,
            _ => i,
        }
    }
    let (seq, _) = read_tlv(der, 0x30)?;
    let (n, rest) = read_tlv(seq, 0x02)?;
    let (e, _) = read_tlv(rest, 0x02)?;
    Some((strip_zero(n), strip_zero(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> (KeyMaterial, SigningKeys) {
        let m = KeyMaterial::generate();
        let k = SigningKeys::load(&m).unwrap();
        (m, k)
    }

    #[test]
    fn id_token_verifies_with_the_published_jwk() {
        let (_, k) = keys();
        let claims = IdTokenClaims {
            iss: "http://x".into(),
            sub: "u".into(),
            aud: "c".into(),
            exp: 2_000_000_000,
            iat: 1,
            auth_time: 1,
            nonce: Some("n".into()),
            fhir_user: Some("http://x/fhir/Patient/p".into()),
            name: None,
        };
        let token = k.sign_id_token(&claims);
        let jwks = k.jwks(1);
        let jwk = &jwks["keys"][0];
        assert_eq!(jwk["alg"], "RS256");
        assert_eq!(jwk["use"], "sig");
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), jwk["kid"].as_str());
        let dk = DecodingKey::from_rsa_components(jwk["n"].as_str().unwrap(), jwk["e"].as_str().unwrap()).unwrap();
        let mut v = Validation::new(Algorithm::RS256);
        v.set_audience(&["c"]);
        let decoded = jsonwebtoken::decode::<IdTokenClaims>(&token, &dk, &v).unwrap();
        assert_eq!(decoded.claims.nonce.as_deref(), Some("n"));
    }

    #[test]
    fn access_tokens_check_expiry_audience_and_signature() {
        let (_, k) = keys();
        let claims = AccessClaims {
            iss: "i".into(),
            aud: "http://x/fhir".into(),
            sub: "u".into(),
            client_id: "c".into(),
            scope: "patient/*.rs".into(),
            grant: "g".into(),
            patient: Some("p".into()),
            encounter: None,
            fhir_user: None,
            iat: 100,
            exp: 200,
            jti: "j".into(),
            context: Some(Box::new(LaunchContext { intent: Some("i".into()), ..Default::default() })),
            simulate_error: None,
            trace: None,
        };
        let t = k.sign_access_token(&claims);
        assert_eq!(k.verify_access_token(&t, "http://x/fhir", 150).unwrap(), claims);
        assert!(k.verify_access_token(&t, "http://x/fhir", 200).is_err(), "expired at exp");
        assert!(k.verify_access_token(&t, "http://evil/fhir", 150).is_err());
        let (_, other) = keys();
        assert!(other.verify_access_token(&t, "http://x/fhir", 150).is_err(), "foreign signature");
        let mut tampered = t.clone();
        tampered.insert(t.find('.').unwrap() + 3, 'A');
        assert!(k.verify_access_token(&tampered, "http://x/fhir", 150).is_err());
    }

    /// An opened token (one decode per FHIR call) is only its signature checked: expiry,
    /// audience and the retirement of its key are checked by `check`/`check_for`, as by
    /// `verify_access_token`.
    #[test]
    fn an_opened_token_is_checked_for_expiry_audience_and_its_keys_retirement() {
        let (old, new) = (KeyMaterial::generate(), KeyMaterial::generate());
        let before = SigningKeys::load_set(&[(old.clone(), 0)], 100, 1_000).unwrap();
        // A token that outlives its key (its exp is past the key's retirement).
        let long = AccessClaims { exp: 1_000_000, ..access(1_000) };
        let t = before.sign_access_token(&long);
        let rotated = SigningKeys::load_set(&[(old, 0), (new, 1_000)], 100, 1_000).unwrap();
        let opened = rotated.open_access_token(&t).unwrap();
        assert_eq!(opened.clone().check_for("a", 1_050).unwrap(), long);
        assert!(opened.clone().check_for("b", 1_050).is_err(), "another FHIR base");
        let retired = 1_000 + KEY_ACTIVATION + 100;
        assert!(opened.clone().check(retired).is_err(), "its key is retired");
        assert!(rotated.verify_access_token_for_any_audience(&t, retired).is_err());
        let expired = before.sign_access_token(&access(1_000));
        let opened = before.open_access_token(&expired).expect("opened though expired: the inspector records it");
        assert!(opened.check(1_100).is_err(), "expired at exp");
        assert!(SigningKeys::load_set(&[(KeyMaterial::generate(), 0)], 100, 1_000)
            .unwrap()
            .open_access_token(&t)
            .is_none());
    }

    fn access(iat: UnixTime) -> AccessClaims {
        AccessClaims {
            iss: "i".into(),
            aud: "a".into(),
            sub: "u".into(),
            client_id: "c".into(),
            scope: "patient/*.rs".into(),
            grant: "g".into(),
            patient: None,
            encounter: None,
            fhir_user: None,
            iat,
            exp: iat + 100,
            jti: "j".into(),
            context: None,
            simulate_error: None,
            trace: None,
        }
    }

    /// Rotation: the new key signs once active; tokens of the old key verify, and the old key
    /// stays in the JWKS, until the last of them has expired; then it is gone.
    #[test]
    fn a_rotated_key_signs_once_active_and_the_old_one_verifies_until_its_tokens_expire() {
        let (old, new) = (KeyMaterial::generate(), KeyMaterial::generate());
        let before = SigningKeys::load_set(&[(old.clone(), 0)], 100, 1_000).unwrap();
        let by_old = before.sign_access_token(&access(1_000));
        let set = [(old.clone(), 0), (new.clone(), 1_000)];
        let rotated = SigningKeys::load_set(&set, 100, 1_000).unwrap();
        assert_eq!(rotated.kids(), [new.kid.as_str(), old.kid.as_str()]);
        let kid_of = |t: &str| jsonwebtoken::decode_header(t).unwrap().kid.unwrap();
        assert_eq!(kid_of(&rotated.sign_access_token(&access(1_005))), old.kid, "not active yet");
        let by_new = rotated.sign_access_token(&access(1_000 + KEY_ACTIVATION));
        assert_eq!(kid_of(&by_new), new.kid);
        assert!(rotated.verify_access_token_for_any_audience(&by_old, 1_050).is_ok(), "the old key verifies");
        assert!(rotated.verify_access_token_for_any_audience(&by_new, 1_050).is_ok());
        assert!(before.verify_access_token_for_any_audience(&by_new, 1_050).is_err(), "an unknown kid");
        assert_eq!(rotated.jwks(1_050)["keys"].as_array().unwrap().len(), 2, "both published");
        let retired = 1_000 + KEY_ACTIVATION + 100;
        assert_eq!(rotated.jwks(retired)["keys"].as_array().unwrap().len(), 1, "the old key's tokens have expired");
        assert!(rotated.verify_access_token_for_any_audience(&by_old, retired).is_err());
        let reloaded = SigningKeys::load_set(&set, 100, retired).unwrap();
        assert_eq!(reloaded.kids(), [new.kid.as_str()], "a retired key is not loaded");
        let id = |iat| IdTokenClaims {
            iss: "i".into(),
            sub: "u".into(),
            aud: "c".into(),
            exp: iat + 100,
            iat,
            auth_time: iat,
            nonce: None,
            fhir_user: None,
            name: None,
        };
        assert_eq!(kid_of(&rotated.sign_id_token(&id(1_000 + KEY_ACTIVATION))), new.kid);
        assert_eq!(kid_of(&rotated.sign_id_token(&id(1_001))), old.kid);
    }

    #[test]
    fn material_round_trips() {
        let (m, _) = keys();
        assert_eq!(m.kid.len(), 16);
        assert!(SigningKeys::load(&m).is_ok());
    }
}
