//! [`SessionStore`]: signed-in browser sessions (the cookie's hash), which `online_access`
//! refresh tokens live no longer than (checklist item 75).

use std::future::Future;

use super::{Session, StoreResult};
use crate::users::User;
use crate::UnixTime;

/// Signed-in browser sessions.
pub trait SessionStore: Send + Sync {
    fn insert_session(&self, session: &Session) -> impl Future<Output = StoreResult<()>> + Send;
    /// A live session (not expired at `now`).
    fn session(&self, id_hash: &str, now: UnixTime) -> impl Future<Output = StoreResult<Option<Session>>> + Send;
    /// A live session and its user, in one query.
    fn session_user(
        &self,
        id_hash: &str,
        now: UnixTime,
    ) -> impl Future<Output = StoreResult<Option<(Session, User)>>> + Send;
    fn delete_session(&self, id_hash: &str) -> impl Future<Output = StoreResult<()>> + Send;
}
