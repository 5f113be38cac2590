//! The in-memory revocation list that the resource server checks on every request without
//! I/O.  It holds revoked grants and "everything a user gave a client before time T" (the
//! management page's "revoke access").  Filled from the store at start and on every
//! revocation; entries older than the access-token lifetime are pruned, since no token they
//! could match is still valid.

use std::collections::HashMap;
use std::sync::RwLock;

use crate::keys::AccessClaims;
use crate::UnixTime;

#[derive(Default)]
pub struct RevocationList {
    grants: RwLock<HashMap<String, UnixTime>>,
    /// (user id, client id) → tokens issued at or before this time are revoked.  The user
    /// [`ALL_USERS`] stands for every token of the client (a removed client).
    user_clients: RwLock<HashMap<(String, String), UnixTime>>,
}

/// The user id of a revocation of every token a client holds (the client was removed).
pub const ALL_USERS: &str = "*";

impl RevocationList {
    pub fn revoke(&self, grant_id: &str, at: UnixTime) {
        let mut map = self.grants.write().unwrap_or_else(|p| p.into_inner());
        map.insert(grant_id.to_owned(), at);
    }

    pub fn revoke_user_client(&self, user_id: &str, client_id: &str, at: UnixTime) {
        // The latest cut-off wins: a revocation heard late (another node's, a resync) or made
        // by a node whose clock is behind never lowers it.
        let mut map = self.user_clients.write().unwrap_or_else(|p| p.into_inner());
        let cutoff = map.entry((user_id.to_owned(), client_id.to_owned())).or_insert(at);
        *cutoff = (*cutoff).max(at);
    }

    /// Whether an access token with these claims has been revoked.
    pub fn is_revoked(&self, claims: &AccessClaims) -> bool {
        let grants = self.grants.read().unwrap_or_else(|p| p.into_inner());
        if !grants.is_empty() && grants.contains_key(&claims.grant) {
            return true;
        }
        drop(grants);
        let user_clients = self.user_clients.read().unwrap_or_else(|p| p.into_inner());
        if user_clients.is_empty() {
            return false;
        }
        let before = |user: &str| {
            user_clients.get(&(user.to_owned(), claims.client_id.clone())).is_some_and(|at| claims.iat <= *at)
        };
        before(&claims.sub) || before(ALL_USERS)
    }

    /// Forgets revocations older than `before`.
    pub fn prune(&self, before: UnixTime) {
        self.grants.write().unwrap_or_else(|p| p.into_inner()).retain(|_, at| *at >= before);
        self.user_clients.write().unwrap_or_else(|p| p.into_inner()).retain(|_, at| *at >= before);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(sub: &str, client: &str, iat: UnixTime) -> AccessClaims {
        AccessClaims {
            iss: "i".into(),
            aud: "a".into(),
            sub: sub.into(),
            client_id: client.into(),
            scope: "system/*.rs".into(),
            grant: format!("g-{sub}-{iat}"),
            patient: None,
            encounter: None,
            fhir_user: None,
            iat,
            exp: iat + 300,
            jti: "j".into(),
            context: None,
            simulate_error: None,
            trace: None,
        }
    }

    #[test]
    fn a_revocation_heard_late_never_lowers_the_cutoff() {
        let list = RevocationList::default();
        list.revoke_user_client("user-1", "app", 200);
        // Another node's earlier revocation (or a node whose clock is behind) arrives later.
        list.revoke_user_client("user-1", "app", 100);
        assert!(list.is_revoked(&claims("user-1", "app", 150)), "issued before the latest revocation");
        assert!(!list.is_revoked(&claims("user-1", "app", 201)));
    }

    #[test]
    fn a_removed_client_loses_every_token_issued_until_then() {
        let list = RevocationList::default();
        list.revoke_user_client(ALL_USERS, "svc", 100);
        assert!(list.is_revoked(&claims("svc", "svc", 100)), "a backend token (sub = client)");
        assert!(list.is_revoked(&claims("user-1", "svc", 50)), "a user's token");
        assert!(!list.is_revoked(&claims("svc", "svc", 101)), "issued after (a client registered again)");
        assert!(!list.is_revoked(&claims("svc", "other", 50)), "another client");
        list.revoke_user_client("user-2", "app", 100);
        assert!(list.is_revoked(&claims("user-2", "app", 90)));
        assert!(!list.is_revoked(&claims("user-3", "app", 90)));
    }
}
