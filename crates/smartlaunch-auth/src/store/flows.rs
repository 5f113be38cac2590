//! [`FlowStore`] and [`CodeStore`]: authorization requests in progress, the consent that lets
//! a later request skip its page, and the authorization codes they end with (checklist items
//! 29–31).

use std::future::Future;

use super::{CodeGrant, CodeRedemption, PendingAuthorization, StoreResult};
use crate::UnixTime;

/// Pending authorization requests and remembered consents.
pub trait FlowStore: Send + Sync {
    fn insert_pending(&self, pending: &PendingAuthorization) -> impl Future<Output = StoreResult<()>> + Send;
    fn pending(
        &self,
        id: &str,
        now: UnixTime,
    ) -> impl Future<Output = StoreResult<Option<PendingAuthorization>>> + Send;
    fn update_pending(&self, pending: &PendingAuthorization) -> impl Future<Output = StoreResult<()>> + Send;
    /// Removes the pending request; false when it was already gone (a racing completion).
    fn delete_pending(&self, id: &str) -> impl Future<Output = StoreResult<bool>> + Send;

    /// The scopes a user last approved for a client.
    fn consent(&self, user_id: &str, client_id: &str) -> impl Future<Output = StoreResult<Option<String>>> + Send;
    fn put_consent(
        &self,
        user_id: &str,
        client_id: &str,
        scope: &str,
        now: UnixTime,
    ) -> impl Future<Output = StoreResult<()>> + Send;
}

/// Authorization codes: stored by hash, single use, replay recognised until they expire.
pub trait CodeStore: Send + Sync {
    fn insert_code(
        &self,
        code_hash: &str,
        grant: &CodeGrant,
        expires_at: UnixTime,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Marks the code used with one conditional update: of racing redemptions exactly one
    /// gets [`CodeRedemption::Redeemed`].
    fn redeem_code(&self, code_hash: &str, now: UnixTime) -> impl Future<Output = StoreResult<CodeRedemption>> + Send;
}
