//! The authorization server's signing keys (its `jwks_uri`), cached by URL and looked up by
//! `kid`, and the id_token signature check that uses them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tokio::sync::Mutex;

use crate::id_token::IdTokenClaims;
use crate::Error;

/// How long a fetched key set is used before it is fetched again.
const FRESH_FOR: Duration = Duration::from_secs(3600);
/// An unknown `kid` fetches the set again, but not more often than this (a token naming
/// random kids cannot make the app hammer the server).
const REFETCH_AFTER: Duration = Duration::from_secs(10);
/// At most this many servers' key sets are kept.
const MAX_SETS: usize = 1000;
/// The algorithms an id_token may be signed with: asymmetric only (never `none` or HMAC,
/// whose key would be the app's own secret).
const ALGORITHMS: [Algorithm; 7] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// Key sets by URL.
#[derive(Default)]
pub struct JwksCache {
    sets: Mutex<HashMap<String, (JwkSet, Instant)>>,
}

impl JwksCache {
    async fn fetch(http: &reqwest::Client, uri: &str) -> Result<JwkSet, Error> {
        let r = http.get(uri).header(reqwest::header::ACCEPT, "application/json").send().await?;
        if !r.status().is_success() {
            return Err(Error::InvalidIdToken(format!("the key set at {uri} answered {}", r.status())));
        }
        let body = super::read_limited(r, super::SMALL_BODY).await?;
        serde_json::from_slice(&body)
            .map_err(|e| Error::InvalidIdToken(format!("the key set at {uri} is not a JWK Set: {e}")))
    }

    /// The key for `kid` from the set at `uri`, fetching it when unknown or stale.
    async fn key(&self, http: &reqwest::Client, uri: &str, kid: Option<&str>) -> Result<DecodingKey, Error> {
        let cached = {
            let sets = self.sets.lock().await;
            sets.get(uri).map(|(set, at)| {
                let fresh = at.elapsed() <= FRESH_FOR && (find(set, kid).is_some() || at.elapsed() <= REFETCH_AFTER);
                (set.clone(), fresh)
            })
        };
        // The fetch runs outside the lock: one slow key set holds up no other server's logins.
        let set = match cached {
            Some((set, true)) => set,
            _ => {
                let set = Self::fetch(http, uri).await?;
                let mut sets = self.sets.lock().await;
                if sets.len() >= MAX_SETS && !sets.contains_key(uri) {
                    sets.clear();
                }
                sets.insert(uri.to_owned(), (set.clone(), Instant::now()));
                set
            }
        };
        let jwk = find(&set, kid).ok_or_else(|| {
            Error::InvalidIdToken(format!("no key {} in the server's key set", kid.unwrap_or("(no kid)")))
        })?;
        DecodingKey::from_jwk(jwk).map_err(|e| Error::InvalidIdToken(format!("the server's key does not load: {e}")))
    }

    /// Verifies the id_token's signature with the server's key, then its claims.
    pub async fn verify_id_token(
        &self,
        http: &reqwest::Client,
        jwks_uri: &str,
        id_token: &str,
        check: impl FnOnce(&IdTokenClaims) -> Result<(), Error>,
    ) -> Result<IdTokenClaims, Error> {
        let header = jsonwebtoken::decode_header(id_token)
            .map_err(|e| Error::InvalidIdToken(format!("its header does not parse: {e}")))?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(Error::InvalidIdToken(format!("it is signed with {:?}, which is not accepted", header.alg)));
        }
        let key = self.key(http, jwks_uri, header.kid.as_deref()).await?;
        let mut validation = Validation::new(header.alg);
        // The claims are checked by `IdTokenClaims::check`, with the launch's nonce.
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<IdTokenClaims>(id_token, &key, &validation)
            .map_err(|e| Error::InvalidIdToken(format!("its signature does not verify: {e}")))?;
        check(&data.claims)?;
        Ok(data.claims)
    }
}

/// The key named `kid`, or the set's only key when the token names none.
fn find<'a>(set: &'a JwkSet, kid: Option<&str>) -> Option<&'a jsonwebtoken::jwk::Jwk> {
    match kid {
        Some(kid) => set.find(kid),
        None if set.keys.len() == 1 => set.keys.first(),
        None => None,
    }
}
