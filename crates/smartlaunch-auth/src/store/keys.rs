//! [`KeyStore`]: the server's signing keys, shared by every node on one database.

use std::future::Future;

use super::StoreResult;
use crate::keys::KeyMaterial;

/// The signing keys (id_token and access-token signatures).
pub trait KeyStore: Send + Sync {
    /// The signing keys, if any were stored yet.
    fn keys(&self) -> impl Future<Output = StoreResult<Option<KeyMaterial>>> + Send;
    /// Stores `fresh` unless keys exist (another node may have raced us); returns the stored keys.
    fn insert_keys_if_absent(&self, fresh: &KeyMaterial) -> impl Future<Output = StoreResult<KeyMaterial>> + Send;
}
