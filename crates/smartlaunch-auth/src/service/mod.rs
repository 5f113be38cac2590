//! [`AuthService`]: the protocol core's one entry point.  Handlers call one method per request.

mod backend;
mod changes;
mod client_auth;
mod consent;
mod flow;
mod inspector;
mod introspection;
mod launch;
mod own_redirects;
mod registration;
mod reset;
#[cfg(test)]
mod tests;
mod token_endpoint;

use std::sync::{Arc, RwLock};

use crate::client::Client;
use crate::client_cache::{CachedClient, ClientCache};
use crate::config::AuthConfig;
use crate::error::{BearerError, StoreError};
use crate::inspect::LaunchRecord;
use crate::jwks_cache::{JwksCache, JwksFetcher, NoFetch};
use crate::key_encryption::seal_material;
use crate::keys::{AccessClaims, KeyMaterial, OpenedToken, SigningKeys};
use crate::launch::SimulatedError;
use crate::retention::Retention;
use crate::revocation::RevocationList;
use crate::store::AuthStore;
use crate::throttle::{HashingPool, SignInThrottle};
use crate::UnixTime;

pub use changes::{add_signing_keys, retire_signing_key, KeyRetirement};
pub use consent::{consent_forced, ConsentForced};
pub use flow::{Credentials, FlowStep, Progress};
pub use inspector::{HAND_MADE, MAX_TRACE_SWITCH};
pub use introspection::Caller;
pub use launch::{IssuedBackendSession, IssuedLaunch, NewLaunch, LAUNCH_LIFETIME, REUSABLE_MAX, SIMULATION_LIFETIME};
pub use registration::{is_chosen_client_id, Registered, Registrant, CHOSEN_CLIENT_ID_MAX};

/// What the launch inspector learns from an access token before a FHIR call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracedToken {
    /// The launch inspector's key.
    pub trace: String,
    pub expired: bool,
    /// The developer launcher asked for every FHIR call with this token to be refused (401).
    pub simulates_refusal: bool,
}

/// The authorization server: configuration, keys, the revocation list and the store.
pub struct AuthService<S> {
    pub store: S,
    pub config: AuthConfig,
    /// Swapped when another node rotates the keys (the change feed).
    keys: RwLock<Arc<SigningKeys>>,
    revocations: RevocationList,
    clients: ClientCache,
    sign_ins: SignInThrottle,
    hashing: HashingPool,
    key_sets: JwksCache,
}

impl<S: AuthStore> AuthService<S> {
    /// Opens the service on a store: loads the signing keys (creating them on first start) and
    /// the recently revoked grants.  Where keys must be sealed (PostgreSQL), a first start
    /// without a key encryption key is refused rather than storing a plaintext key.
    pub async fn open(store: S, config: AuthConfig, now: UnixTime) -> Result<AuthService<S>, StoreError> {
        if store.keys().await?.is_none() {
            if store.requires_sealed_keys() && config.key_encryption_key.is_none() {
                return Err(StoreError(crate::key_encryption::KeyDecryptError::NoKey.to_string()));
            }
            let fresh = tokio::task::spawn_blocking(KeyMaterial::generate)
                .await
                .map_err(|e| StoreError(format!("key generation: {e}")))?;
            let sealed = seal_material(config.key_encryption_key.as_ref(), &fresh).map_err(StoreError)?;
            store.insert_keys_if_absent(&sealed).await?;
        }
        let keys = changes::load_keys(&store, &config, now).await?;
        let auth = AuthService {
            store,
            config,
            keys: RwLock::new(Arc::new(keys)),
            revocations: RevocationList::default(),
            clients: ClientCache::default(),
            sign_ins: SignInThrottle::default(),
            hashing: HashingPool::for_this_machine(),
            key_sets: JwksCache::new(Arc::new(NoFetch)),
        };
        auth.load_revocations(now).await?;
        Ok(auth)
    }

    /// The service with `fetcher` for clients that register keys by URL (`jwks_uri`); without
    /// it, such clients cannot authenticate.
    pub fn with_jwks_fetcher(mut self, fetcher: Arc<dyn JwksFetcher>) -> AuthService<S> {
        self.key_sets = JwksCache::new(fetcher);
        self
    }

    /// A registered client, through the short-lived client cache.
    pub async fn client(&self, client_id: &str, now: UnixTime) -> Result<Option<Arc<Client>>, StoreError> {
        Ok(self.client_entry(client_id, now).await?.map(|c| c.client))
    }

    /// A registered client with its backend-service session and trace switch, through the
    /// short-lived client cache: one query (for all) per client per
    /// [`TTL`](crate::client_cache::TTL) seconds.
    pub(crate) async fn client_entry(
        &self,
        client_id: &str,
        now: UnixTime,
    ) -> Result<Option<CachedClient>, StoreError> {
        if client_id.is_empty() || client_id.len() > 256 {
            return Ok(None);
        }
        if let Some(hit) = self.clients.get(client_id, now) {
            return Ok(Some(hit));
        }
        let found =
            self.store.client_and_backend_session(client_id, now).await?.map(|(client, session, trace_until)| {
                CachedClient { client: Arc::new(client), backend_session: session.map(Arc::new), trace_until }
            });
        if let Some(c) = &found {
            self.clients.put(c.clone(), now);
        }
        Ok(found)
    }

    /// Removes a client and revokes everything issued to it, access tokens included (a
    /// backend service's tokens have no stored grant).
    pub async fn remove_client(&self, client_id: &str, now: UnixTime) -> Result<bool, StoreError> {
        self.clients.forget(client_id);
        let removed = self.store.delete_client(client_id, now).await?;
        self.revocations.revoke_user_client(crate::revocation::ALL_USERS, client_id, now);
        Ok(removed)
    }

    /// The public JWK Set at `now` (a rotated-out key stays until its tokens expired).
    pub fn jwks(&self, now: UnixTime) -> serde_json::Value {
        self.signing_keys().jwks(now)
    }

    /// Validates a bearer token for the FHIR API at our FHIR base.
    pub fn verify_bearer(&self, token: &str, now: UnixTime) -> Result<AccessClaims, BearerError> {
        self.verify_bearer_for(token, &self.config.fhir_base(), now)
    }

    /// Validates a bearer token for the FHIR API at `fhir_base` (ours, or a simulation's):
    /// signature, expiry, audience and revocation (checklist item 77), with no I/O.
    pub fn verify_bearer_for(&self, token: &str, fhir_base: &str, now: UnixTime) -> Result<AccessClaims, BearerError> {
        let claims = self.signing_keys().verify_access_token(token, fhir_base, now)?;
        self.check_live(claims)
    }

    /// Like [`AuthService::verify_bearer`], for a token of any of our FHIR bases.
    pub fn verify_bearer_any(&self, token: &str, now: UnixTime) -> Result<AccessClaims, BearerError> {
        let claims = self.signing_keys().verify_access_token_for_any_audience(token, now)?;
        if !self.config.is_our_audience(&claims.aud) {
            return Err(BearerError::Invalid("the access token was issued for another FHIR server (aud)"));
        }
        self.check_live(claims)
    }

    /// Decodes a bearer token with our signature, checking nothing else: a FHIR call opens its
    /// token once, for the launch inspector ([`AuthService::trace_of`]) and for the caller's
    /// checks ([`AuthService::verify_opened_for`]).
    pub fn open_bearer(&self, token: &str) -> Option<OpenedToken> {
        self.signing_keys().open_access_token(token)
    }

    /// [`AuthService::verify_bearer_for`] of a token already opened.
    pub fn verify_opened_for(
        &self,
        opened: OpenedToken,
        fhir_base: &str,
        now: UnixTime,
    ) -> Result<AccessClaims, BearerError> {
        self.check_live(opened.check_for(fhir_base, now)?)
    }

    /// The launch-inspector view of an opened token; no other check (the FHIR handler makes
    /// those).
    pub fn trace_of(&self, opened: &OpenedToken, now: UnixTime) -> Option<TracedToken> {
        let claims = &opened.claims;
        Some(TracedToken {
            trace: claims.trace.clone()?,
            expired: claims.exp <= now,
            simulates_refusal: claims
                .simulate_error
                .is_some_and(|e| matches!(e, SimulatedError::FhirInvalidToken | SimulatedError::FhirExpiredToken)),
        })
    }

    fn check_live(&self, claims: AccessClaims) -> Result<AccessClaims, BearerError> {
        if self.revocations.is_revoked(&claims) {
            return Err(BearerError::Invalid("the access token has been revoked"));
        }
        match claims.simulate_error {
            Some(SimulatedError::FhirInvalidToken) => {
                return Err(BearerError::Invalid("the access token is not valid (simulated by the developer launcher)"))
            }
            Some(SimulatedError::FhirExpiredToken) => {
                return Err(BearerError::Invalid("the access token has expired (simulated by the developer launcher)"))
            }
            _ => {}
        }
        Ok(claims)
    }

    /// Revokes a grant: its refresh tokens and access tokens stop working at once.
    pub async fn revoke_grant(&self, grant_id: &str, now: UnixTime) -> Result<(), StoreError> {
        self.store.revoke_grant(grant_id, now).await?;
        self.revocations.revoke(grant_id, now);
        Ok(())
    }

    /// "Revoke access" on the management page: forgets the user's consent for the client,
    /// revokes its refresh-token families and every access token issued to it until now.
    pub async fn revoke_user_client(&self, user_id: &str, client_id: &str, now: UnixTime) -> Result<(), StoreError> {
        self.store.revoke_user_client(user_id, client_id, now).await?;
        self.revocations.revoke_user_client(user_id, client_id, now);
        Ok(())
    }

    /// Housekeeping: deletes what the [`Retention`] rules no longer keep and forgets
    /// revocations no token can outlive.
    pub async fn purge_expired(&self, now: UnixTime) -> Result<(), StoreError> {
        self.revocations.prune(now - self.config.access_token_lifetime);
        self.store.purge_expired(&Retention::default().purge(now)).await
    }

    /// A launch's inspector record (at most
    /// [`MAX_EVENTS_PER_TRACE`](crate::retention::MAX_EVENTS_PER_TRACE) events), with the number
    /// of events dropped.  Unknown traces have an empty record.
    pub async fn launch_record(&self, trace: &str) -> Result<LaunchRecord, StoreError> {
        if trace.len() > 64 {
            return Ok(LaunchRecord::default());
        }
        self.store.launch_record(trace).await
    }
}
