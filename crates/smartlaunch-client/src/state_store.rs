//! Where a [`PendingAuthorization`] waits for the callback, bound to one browser.
//!
//! The browser carries a value (a cookie) that the store turns back into the pending
//! authorization, once.  A callback opened in another browser — a link sent to a victim, a
//! code injected into someone else's session — has no such value and is refused, whatever its
//! `state`.  Two implementations: [`MemoryStore`] (the cookie is a random handle; the server
//! keeps the rest) and [`SignedCookieStore`] (the cookie is the record, HMAC-signed; nothing
//! kept on the server, so any node of a cluster can take the callback).

use std::collections::HashMap;
use std::sync::Mutex;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::authorize::PendingAuthorization;
use crate::pkce::random_token;
use crate::Error;

/// How long a browser may take between `authorize` and the callback (seconds).
pub const MAX_AGE: u64 = 600;

/// Keeps pending authorizations for browsers.
pub trait AuthorizationStore: Send + Sync {
    /// Keeps `pending`; returns the value the browser must carry back (a cookie's value).
    fn save(&self, pending: &PendingAuthorization) -> Result<String, Error>;
    /// Gives back the pending authorization of the browser carrying `carried`, at most once,
    /// and only within [`MAX_AGE`] of its start.
    fn take(&self, carried: Option<&str>, now: u64) -> Result<PendingAuthorization, Error>;
}

fn fresh(pending: PendingAuthorization, now: u64) -> Result<PendingAuthorization, Error> {
    if now.saturating_sub(pending.created_at) > MAX_AGE {
        return Err(Error::StateMismatch("the authorization was started more than 10 minutes ago; launch again"));
    }
    Ok(pending)
}

const NO_PENDING: Error =
    Error::StateMismatch("this browser has no pending authorization (another browser, or already used)");

/// Pending authorizations in this process's memory, behind random 256-bit handles.
pub struct MemoryStore {
    pending: Mutex<HashMap<String, PendingAuthorization>>,
    capacity: usize,
}

impl Default for MemoryStore {
    fn default() -> MemoryStore {
        MemoryStore::with_capacity(10_000)
    }
}

impl MemoryStore {
    /// A store that holds at most `capacity` pending authorizations (expired ones are dropped
    /// first), so a flood of launches cannot grow memory without bound.
    pub fn with_capacity(capacity: usize) -> MemoryStore {
        MemoryStore { pending: Mutex::new(HashMap::new()), capacity }
    }

    pub fn len(&self) -> usize {
        self.pending.lock().map(|p| p.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl AuthorizationStore for MemoryStore {
    fn save(&self, pending: &PendingAuthorization) -> Result<String, Error> {
        let handle = random_token(32)?;
        let mut map =
            self.pending.lock().map_err(|_| Error::Config("the pending-authorization store was poisoned".into()))?;
        if map.len() >= self.capacity {
            let now = pending.created_at;
            map.retain(|_, p| now.saturating_sub(p.created_at) <= MAX_AGE);
        }
        if map.len() >= self.capacity {
            return Err(Error::Config(format!("more than {} launches are waiting for their callback", self.capacity)));
        }
        map.insert(handle.clone(), pending.clone());
        Ok(handle)
    }

    fn take(&self, carried: Option<&str>, now: u64) -> Result<PendingAuthorization, Error> {
        let carried = carried.ok_or(NO_PENDING)?;
        let mut map =
            self.pending.lock().map_err(|_| Error::Config("the pending-authorization store was poisoned".into()))?;
        fresh(map.remove(carried).ok_or(NO_PENDING)?, now)
    }
}

/// Pending authorizations carried by the browser itself, signed with HMAC-SHA256.
///
/// The record holds the PKCE verifier; it travels in an `HttpOnly` cookie over the app's own
/// origin only.  A replayed cookie gets at most a second look at a code the token endpoint
/// redeems once.
pub struct SignedCookieStore {
    key: Vec<u8>,
}

impl SignedCookieStore {
    /// `key`: at least 32 random bytes, the same on every node of the app.
    pub fn new(key: &[u8]) -> Result<SignedCookieStore, Error> {
        if key.len() < 32 {
            return Err(Error::Config("the cookie signing key must be at least 32 bytes".into()));
        }
        Ok(SignedCookieStore { key: key.to_vec() })
    }

    fn mac(&self) -> Result<Hmac<Sha256>, Error> {
        Hmac::<Sha256>::new_from_slice(&self.key).map_err(|e| Error::Config(e.to_string()))
    }
}

impl AuthorizationStore for SignedCookieStore {
    fn save(&self, pending: &PendingAuthorization) -> Result<String, Error> {
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(pending).map_err(|e| Error::Config(e.to_string()))?);
        let mut mac = self.mac()?;
        mac.update(body.as_bytes());
        Ok(format!("{body}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())))
    }

    fn take(&self, carried: Option<&str>, now: u64) -> Result<PendingAuthorization, Error> {
        let (body, tag) = carried.and_then(|c| c.split_once('.')).ok_or(NO_PENDING)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| NO_PENDING)?;
        let mut mac = self.mac()?;
        mac.update(body.as_bytes());
        mac.verify_slice(&tag)
            .map_err(|_| Error::StateMismatch("the pending-authorization cookie's signature is wrong"))?;
        let json = URL_SAFE_NO_PAD.decode(body).map_err(|_| NO_PENDING)?;
        fresh(serde_json::from_slice(&json).map_err(|_| NO_PENDING)?, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(created_at: u64) -> PendingAuthorization {
        PendingAuthorization {
            state: random_token(32).unwrap(),
            code_verifier: "v".into(),
            nonce: None,
            fhir_base: "https://ehr.example/fhir".into(),
            client_id: "app".into(),
            redirect_uri: "https://app.example/cb".into(),
            scope: "patient/*.rs".into(),
            token_endpoint: "https://ehr.example/token".into(),
            issuer: None,
            jwks_uri: None,
            created_at,
        }
    }

    fn stores() -> Vec<Box<dyn AuthorizationStore>> {
        vec![Box::new(MemoryStore::default()), Box::new(SignedCookieStore::new(&[7u8; 32]).unwrap())]
    }

    #[test]
    fn the_browser_that_started_gets_it_back_and_a_browser_without_the_cookie_does_not() {
        for store in stores() {
            let p = pending(100);
            let carried = store.save(&p).unwrap();
            assert!(matches!(store.take(None, 101), Err(Error::StateMismatch(_))));
            assert!(matches!(store.take(Some("forged.value"), 101), Err(Error::StateMismatch(_))));
            assert_eq!(store.take(Some(&carried), 101).unwrap(), p);
        }
    }

    #[test]
    fn an_old_authorization_is_refused() {
        for store in stores() {
            let carried = store.save(&pending(100)).unwrap();
            assert!(matches!(store.take(Some(&carried), 100 + MAX_AGE + 1), Err(Error::StateMismatch(_))));
        }
    }

    #[test]
    fn the_memory_store_gives_each_one_back_once_and_stays_bounded() {
        let store = MemoryStore::with_capacity(2);
        let a = store.save(&pending(0)).unwrap();
        assert!(store.take(Some(&a), 1).is_ok());
        assert!(store.take(Some(&a), 1).is_err(), "a second callback with the same cookie");
        store.save(&pending(0)).unwrap();
        store.save(&pending(0)).unwrap();
        assert!(store.save(&pending(1)).is_err(), "full of fresh ones");
        assert!(store.save(&pending(MAX_AGE + 10)).is_ok(), "expired ones make room");
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn a_cookie_changed_by_the_browser_or_signed_with_another_key_is_refused() {
        let store = SignedCookieStore::new(&[7u8; 32]).unwrap();
        let mut p = pending(0);
        let carried = store.save(&p).unwrap();
        p.fhir_base = "https://evil.example/fhir".into();
        let (_, tag) = carried.split_once('.').unwrap();
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&p).unwrap());
        assert!(store.take(Some(&format!("{body}.{tag}")), 1).is_err());
        let other = SignedCookieStore::new(&[8u8; 32]).unwrap();
        assert!(other.take(Some(&carried), 1).is_err());
        assert!(SignedCookieStore::new(&[1u8; 16]).is_err());
    }
}
