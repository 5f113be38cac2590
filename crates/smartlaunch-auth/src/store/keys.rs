//! [`KeyStore`]: the server's signing keys, shared by every node on one database.

use std::future::Future;

use super::StoreResult;
use crate::error::StoreError;
use crate::keys::KeyMaterial;
use crate::UnixTime;

/// The signing keys (id_token and access-token signatures).
pub trait KeyStore: Send + Sync {
    /// The signing keys, if any were stored yet.
    fn keys(&self) -> impl Future<Output = StoreResult<Option<KeyMaterial>>> + Send;
    /// Stores `fresh` unless keys exist (another node may have raced us); returns the stored keys.
    fn insert_keys_if_absent(&self, fresh: &KeyMaterial) -> impl Future<Output = StoreResult<KeyMaterial>> + Send;

    /// Every stored set of keys with the time it was added (issue 10: keys rotated
    /// consistently).  A store without rotation has the one set of [`KeyStore::keys`].
    fn all_keys(&self) -> impl Future<Output = StoreResult<Vec<(KeyMaterial, UnixTime)>>> + Send {
        async { Ok(self.keys().await?.map(|k| vec![(k, 0)]).unwrap_or_default()) }
    }

    /// Adds a set of keys at `now` (a rotation): every node signs with it once it is active
    /// ([`KEY_ACTIVATION`](crate::keys::KEY_ACTIVATION)) and announces it on the change feed.
    fn add_keys(&self, keys: &KeyMaterial, now: UnixTime) -> impl Future<Output = StoreResult<()>> + Send {
        let _ = (keys, now);
        async { Err(StoreError("this database cannot rotate the signing keys".into())) }
    }

    /// Deletes the set of keys `kid`; false when there is none.  The store announces it on the
    /// change feed (every node then stops verifying with it).
    fn delete_key(&self, kid: &str) -> impl Future<Output = StoreResult<bool>> + Send {
        let _ = kid;
        async { Err(StoreError("this database cannot retire signing keys".into())) }
    }

    /// Whether every stored key must be sealed with the key encryption key
    /// ([`crate::key_encryption`]): true on a database shared by nodes (PostgreSQL), whose
    /// server, backups and replicas are outside the nodes' trust boundary; a key stored in
    /// plaintext there is refused, never used.
    fn requires_sealed_keys(&self) -> bool {
        false
    }
}
