//! [`GrantStore`]: grants and their refresh-token families, revocations, and what each user
//! approved (checklist items 71–76, RFC 7009).

use std::future::Future;

use super::{Grant, RefreshToken, StoreResult, UserAuthorization};
use crate::UnixTime;

/// Grants, refresh tokens (by hash), revocations and the management page's list.
pub trait GrantStore: Send + Sync {
    /// Stores a grant and the first refresh token of its family, in one transaction.
    fn insert_grant(&self, grant: &Grant, refresh: &RefreshToken) -> impl Future<Output = StoreResult<()>> + Send;
    fn grant(&self, id: &str) -> impl Future<Output = StoreResult<Option<Grant>>> + Send;
    fn refresh_token(&self, token_hash: &str) -> impl Future<Output = StoreResult<Option<RefreshToken>>> + Send;
    /// Marks `old_hash` used and stores `new` in one transaction; false (and nothing stored)
    /// when `old_hash` was already used: a racing or replayed refresh.
    fn rotate_refresh(
        &self,
        old_hash: &str,
        new: &RefreshToken,
        now: UnixTime,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Records the revocation of a grant (stored or not) and deletes its refresh tokens.
    fn revoke_grant(&self, grant_id: &str, now: UnixTime) -> impl Future<Output = StoreResult<()>> + Send;
    /// Grants revoked at or after `since` (to fill the revocation list at start).
    fn revoked_grants(&self, since: UnixTime) -> impl Future<Output = StoreResult<Vec<(String, UnixTime)>>> + Send;

    /// "Revoke access": records that every token the user gave the client until `now` is
    /// revoked, deletes the remembered consent and revokes the stored grants, in one transaction.
    fn revoke_user_client(
        &self,
        user_id: &str,
        client_id: &str,
        now: UnixTime,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// (user, client, at) revocations made at or after `since`.
    fn access_revocations(
        &self,
        since: UnixTime,
    ) -> impl Future<Output = StoreResult<Vec<(String, String, UnixTime)>>> + Send;
    /// The apps a user has approved: (client id, approved scopes, when, has a live refresh token).
    fn user_authorizations(
        &self,
        user_id: &str,
        now: UnixTime,
    ) -> impl Future<Output = StoreResult<Vec<UserAuthorization>>> + Send;
}
