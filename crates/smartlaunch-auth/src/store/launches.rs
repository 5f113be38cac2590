//! [`LaunchStore`] and [`LaunchRedemption`]: EHR launches and developer-launcher simulations
//! (checklist items 19, 20, 26), and backend-service sessions.

use std::future::Future;

use super::StoreResult;
use crate::launch::{BackendSession, Launch};
use crate::UnixTime;

/// Launches and backend-service sessions, as created and listed.
pub trait LaunchStore: Send + Sync {
    fn insert_launch(&self, launch: &Launch) -> impl Future<Output = StoreResult<()>> + Send;
    /// Stores a backend-service session, replacing the client's previous one.
    fn put_backend_session(&self, session: &BackendSession) -> impl Future<Output = StoreResult<()>> + Send;
    /// The newest backend-service sessions, newest first (the launcher's list).
    fn recent_backend_sessions(&self, limit: i64) -> impl Future<Output = StoreResult<Vec<BackendSession>>> + Send;
    /// The newest launches, newest first (the launcher's list).
    fn recent_launches(&self, limit: i64) -> impl Future<Output = StoreResult<Vec<Launch>>> + Send;
    /// A launch by the hash of its id, with when it was used (expired ones too, to say why).
    fn launch(&self, id_hash: &str) -> impl Future<Output = StoreResult<Option<(Launch, Option<UnixTime>)>>> + Send;
}

/// The single use of a `launch` id: like a code, redeemed once by one conditional update.
pub trait LaunchRedemption: Send + Sync {
    /// Marks a live launch used with one conditional update: of racing uses exactly one gets true.
    fn use_launch(&self, id_hash: &str, now: UnixTime) -> impl Future<Output = StoreResult<bool>> + Send;
}
