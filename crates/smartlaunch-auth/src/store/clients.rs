//! [`ClientStore`]: registered clients (RFC 7591/7592) and, as in fosite's `ClientManager`, the
//! `jti`s of their `private_key_jwt` assertions (spec digest checklist item 49).

use std::future::Future;

use super::{ClientEntryRow, StoreResult};
use crate::client::Client;
use crate::UnixTime;

/// Registered clients, the client-cache row, RFC 7592 updates and deletion, and the assertion
/// `jti` replay record.
pub trait ClientStore: Send + Sync {
    fn insert_client(&self, client: &Client) -> impl Future<Output = StoreResult<()>> + Send;
    fn client(&self, client_id: &str) -> impl Future<Output = StoreResult<Option<Client>>> + Send;
    /// A client with its backend-service session if one is live at `now`, in one query (the
    /// client cache holds both: a token request of a client without a session costs nothing
    /// more).
    fn client_and_backend_session(
        &self,
        client_id: &str,
        now: UnixTime,
    ) -> impl Future<Output = StoreResult<Option<ClientEntryRow>>> + Send;
    fn clients(&self) -> impl Future<Output = StoreResult<Vec<Client>>> + Send;
    /// Replaces a client's metadata and registration token hash (RFC 7592), only while its
    /// registration token hash is still `spent_token_hash` (one conditional statement, so of
    /// requests racing with one token exactly one wins); false otherwise or when it does not
    /// exist.
    fn update_client(
        &self,
        client: &Client,
        spent_token_hash: Option<&str>,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Records a `private_key_jwt` assertion's `jti` (hashed) until `expires_at`: true the first
    /// time, false when a live record exists (a replay).  One atomic statement, so of racing
    /// uses exactly one gets true, on every node that shares the database.
    fn use_assertion_jti(
        &self,
        client_id: &str,
        jti_hash: &str,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Removes a client and revokes everything issued to it (its stored grants, and every
    /// access token until `now`: an access revocation of user [`ALL_USERS`]); false when it
    /// did not exist.  One transaction across clients, grants, codes, consents and launches.
    ///
    /// [`ALL_USERS`]: crate::revocation::ALL_USERS
    fn delete_client(&self, client_id: &str, now: UnixTime) -> impl Future<Output = StoreResult<bool>> + Send;
}
