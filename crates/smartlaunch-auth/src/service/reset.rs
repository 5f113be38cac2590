//! What a running server holds in memory about the apps, after a sandbox reset removed them
//! from the store (issue 9, item 6).

use super::AuthService;
use crate::revocation::ALL_USERS;
use crate::store::AuthStore;
use crate::UnixTime;

impl<S: AuthStore> AuthService<S> {
    /// After a sandbox reset removed `clients` (and recorded their tokens as revoked in the
    /// store): every access token issued to them up to `now` is refused from now on, and the
    /// client cache forgets them (an app registered again with the same client_id is a new
    /// app).  The sign-in throttle is kept: a reset must not reset a password-guessing limit.
    pub fn forget_after_reset(&self, clients: &[String], now: UnixTime) {
        for client_id in clients {
            self.revocations.revoke_user_client(ALL_USERS, client_id, now);
            self.clients.forget(client_id);
        }
    }
}
