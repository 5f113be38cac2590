//! [`Housekeeping`]: deleting what the [`Retention`](crate::retention::Retention) rules no
//! longer keep.

use std::future::Future;

use super::StoreResult;
use crate::retention::Purge;

/// The periodic purge.
pub trait Housekeeping: Send + Sync {
    /// Deletes what the housekeeping run `purge` names: expired pending requests, sessions,
    /// refresh tokens, launches and backend-service sessions, unused expired codes, used codes
    /// past the replay window, expired assertion `jti`s and old inspector events.
    fn purge_expired(&self, purge: &Purge) -> impl Future<Output = StoreResult<()>> + Send;
}
