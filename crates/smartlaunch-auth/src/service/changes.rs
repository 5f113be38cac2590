//! Applying the change feed (crate::changes) to what this node keeps in memory: the
//! revocation list, the client cache and the signing keys (issue 10, "Stateless nodes").

use std::sync::Arc;

use super::AuthService;
use crate::changes::{Change, FeedEvent};
use crate::error::StoreError;
use crate::keys::SigningKeys;
use crate::store::AuthStore;
use crate::UnixTime;

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
            FeedEvent::Change(Change::KeysRotated) => self.reload_keys().await?,
            FeedEvent::Resync => self.resync(now).await?,
        }
        Ok(())
    }

    /// Reloads from the store what other nodes may have changed while this node was not
    /// listening: the revocations of the access-token lifetime, the keys, and (by emptying
    /// the cache) the clients.
    async fn resync(&self, now: UnixTime) -> Result<(), StoreError> {
        self.load_revocations(now).await?;
        self.clients.clear();
        self.reload_keys().await
    }

    /// Fills the revocation list with the revocations no unexpired token can predate.
    pub(super) async fn load_revocations(&self, now: UnixTime) -> Result<(), StoreError> {
        let since = now - self.config.access_token_lifetime;
        for (grant, at) in self.store.revoked_grants(since).await? {
            self.revocations.revoke(&grant, at);
        }
        for (user, client, at) in self.store.access_revocations(since).await? {
            self.revocations.revoke_user_client(&user, &client, at);
        }
        Ok(())
    }

    /// Loads the newest keys from the store.
    async fn reload_keys(&self) -> Result<(), StoreError> {
        let Some(material) = self.store.keys().await? else {
            return Err(StoreError("the signing keys are gone from the database".into()));
        };
        if material.kid != self.signing_keys().kid() {
            let loaded = SigningKeys::load(&material).map_err(StoreError)?;
            *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(loaded);
        }
        Ok(())
    }

    /// The keys this node signs and verifies with now.
    pub(super) fn signing_keys(&self) -> Arc<SigningKeys> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
