//! Applying the change feed (crate::changes) to what this node keeps in memory: the
//! revocation list, the client cache and the signing keys (issue 10, "Stateless nodes").

use std::sync::Arc;

use super::AuthService;
use crate::changes::{Change, FeedEvent};
use crate::config::AuthConfig;
use crate::error::StoreError;
use crate::key_encryption::{open_material, require_sealed, seal_material, KeyEncryptionKey};
use crate::keys::{newest_kid, KeyMaterial, SigningKeys};
use crate::store::{AuthStore, KeyStore};
use crate::UnixTime;

/// The stored keys, decrypted with the configured key encryption key, ready at `now`.  A wrong
/// key encryption key is an error, never a reason to make new keys; so is a plaintext key in a
/// store whose keys must be sealed ([`KeyStore::requires_sealed_keys`]).
pub(super) async fn load_keys<S: KeyStore>(
    store: &S,
    config: &AuthConfig,
    now: UnixTime,
) -> Result<SigningKeys, StoreError> {
    open_keys(store.all_keys().await?, store.requires_sealed_keys(), config, now)
}

/// [`load_keys`] of rows already read; `sealed_required`: [`KeyStore::requires_sealed_keys`].
fn open_keys(
    stored: Vec<(KeyMaterial, UnixTime)>,
    sealed_required: bool,
    config: &AuthConfig,
    now: UnixTime,
) -> Result<SigningKeys, StoreError> {
    let mut opened = Vec::new();
    for (material, added_at) in stored {
        if sealed_required {
            require_sealed(&material).map_err(|e| StoreError(e.to_string()))?;
        }
        let material =
            open_material(config.key_encryption_key.as_ref(), &material).map_err(|e| StoreError(e.to_string()))?;
        opened.push((material, added_at));
    }
    SigningKeys::load_set(&opened, config.access_token_lifetime, now).map_err(StoreError)
}

impl<S: AuthStore> AuthService<S> {
    /// Applies one event of the change feed at `now`.  A [`FeedEvent::Resync`] reloads
    /// everything from the store; on an error the caller retries it (until then, changes
    /// made elsewhere while the feed was down may not be applied).
    pub async fn apply_change(&self, event: &FeedEvent, now: UnixTime) -> Result<(), StoreError> {
        match event {
            FeedEvent::Change(Change::GrantRevoked { grant, at }) => self.revocations.revoke(grant, *at),
            FeedEvent::Change(Change::UserClientRevoked { user, client, at }) => {
                self.revocations.revoke_user_client(user, client, *at);
                self.clients.forget(client);
            }
            FeedEvent::Change(Change::ClientChanged { client }) => self.clients.forget(client),
            FeedEvent::Change(Change::ClientsCleared) => self.clients.clear(),
            FeedEvent::Change(Change::KeysRotated) => self.reload_keys_or_keep(now).await,
            // Never skipped (the caller retries an error): the retired key may be compromised.
            FeedEvent::Change(Change::KeyRetired { .. }) => self.reload_keys(now).await?,
            FeedEvent::Resync => self.resync(now).await?,
        }
        Ok(())
    }

    /// Reloads from the store what other nodes may have changed while this node was not
    /// listening: the revocations of the access-token lifetime, the keys, and (by emptying
    /// the cache) the clients.  Only the revocations can fail it (to be retried): keys that
    /// cannot be opened must not hold up the revocations that follow on the feed.
    async fn resync(&self, now: UnixTime) -> Result<(), StoreError> {
        self.load_revocations(now).await?;
        self.clients.clear();
        self.reload_keys_or_keep(now).await;
        Ok(())
    }

    /// Reloads the keys; when they cannot be loaded (a row sealed with another key encryption
    /// key, the store down), keeps signing and verifying with the keys it has, loudly: the
    /// next rotation or resync tries again.
    async fn reload_keys_or_keep(&self, now: UnixTime) {
        if let Err(e) = self.reload_keys(now).await {
            tracing::error!("signing keys: cannot reload ({e}); this node keeps its current keys");
        }
    }

    /// Fills the revocation list with the revocations no unexpired token can predate.  A
    /// server without a change feed (SQLite) calls it every few seconds, so that what another
    /// process revoked (`smartlaunch clients remove`) is refused soon.
    pub async fn load_revocations(&self, now: UnixTime) -> Result<(), StoreError> {
        let since = now - self.config.access_token_lifetime;
        for (grant, at) in self.store.revoked_grants(since).await? {
            self.revocations.revoke(&grant, at);
        }
        for (user, client, at) in self.store.access_revocations(since).await? {
            self.revocations.revoke_user_client(&user, &client, at);
        }
        Ok(())
    }

    /// Loads the keys from the store (a rotation, a resync).
    async fn reload_keys(&self, now: UnixTime) -> Result<(), StoreError> {
        let loaded = load_keys(&self.store, &self.config, now).await?;
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(loaded);
        Ok(())
    }

    /// For a server without a change feed (SQLite), every few seconds: when the store's newest
    /// key is not the newest one loaded (`smartlaunch keys rotate` ran in another process), or
    /// a loaded key is no longer stored (`smartlaunch keys retire`), the keys are loaded again.
    /// Returns whether they were.
    pub async fn reload_keys_if_rotated(&self, now: UnixTime) -> Result<bool, StoreError> {
        let stored = self.store.all_keys().await?;
        let loaded = self.signing_keys();
        // Rotated (a newer key), or retired (a key this node verifies with is gone).
        let retired = loaded.kids().iter().any(|kid| !stored.iter().any(|(k, _)| k.kid == *kid));
        if newest_kid(&stored) == loaded.kids().first().copied() && !retired {
            return Ok(false);
        }
        let loaded = open_keys(stored, self.store.requires_sealed_keys(), &self.config, now)?;
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(loaded);
        Ok(true)
    }

    /// `smartlaunch keys rotate`: adds a new set of signing keys, encrypted like the others.
    /// Every node loads it (the change feed), publishes it in the JWKS at once and signs with
    /// it [`KEY_ACTIVATION`](crate::keys::KEY_ACTIVATION) seconds later; the keys it replaces
    /// still verify until the tokens they signed have expired.  Returns the new key id.
    pub async fn rotate_keys(&self, now: UnixTime) -> Result<String, StoreError> {
        let kid = add_signing_keys(&self.store, self.config.key_encryption_key.as_ref(), now).await?;
        self.reload_keys(now).await?;
        Ok(kid)
    }

    /// The keys this node signs and verifies with now.
    pub(super) fn signing_keys(&self) -> Arc<SigningKeys> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Adds a new set of signing keys to `store` at `now`, sealed with `kek` (see
/// [`AuthService::rotate_keys`]); returns its key id.  It reads none of the stored keys, so it
/// also replaces a key no node can use (sealed with a lost key encryption key, or stored
/// unencrypted where keys must be sealed).
pub async fn add_signing_keys<S: KeyStore>(
    store: &S,
    kek: Option<&KeyEncryptionKey>,
    now: UnixTime,
) -> Result<String, StoreError> {
    let fresh = tokio::task::spawn_blocking(KeyMaterial::generate)
        .await
        .map_err(|e| StoreError(format!("key generation: {e}")))?;
    let sealed = seal_material(kek, &fresh).map_err(StoreError)?;
    store.add_keys(&sealed, now).await?;
    Ok(fresh.kid)
}

/// What [`retire_signing_key`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRetirement {
    /// Deleted: every node stops verifying with it (the change feed).
    Retired,
    /// No stored key has this id.
    Unknown,
    /// It is the newest key, the one that signs: rotate first (`keys rotate`), then retire it.
    Newest,
}

/// `smartlaunch keys retire`: deletes the set of keys `kid` at once, for a compromised key —
/// unlike a rotation, which lets the replaced key verify until its tokens expire, the tokens it
/// signed are refused by every node from then on.  The newest key (the signer, or the one
/// about to sign) is never retired: a node must keep a key to sign with.  Like
/// [`add_signing_keys`] it opens no stored key.
pub async fn retire_signing_key<S: KeyStore>(store: &S, kid: &str) -> Result<KeyRetirement, StoreError> {
    if newest_kid(&store.all_keys().await?) == Some(kid) {
        return Ok(KeyRetirement::Newest);
    }
    Ok(match store.delete_key(kid).await? {
        true => KeyRetirement::Retired,
        false => KeyRetirement::Unknown,
    })
}
