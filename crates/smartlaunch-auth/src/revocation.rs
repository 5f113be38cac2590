//! The in-memory list of revoked grants that the resource server checks on every request
//! without I/O.  Filled from the store at start and on every revocation; entries older than
//! the access-token lifetime are pruned, since no token of theirs can still be valid.

use std::collections::HashMap;
use std::sync::RwLock;

use crate::UnixTime;

#[derive(Default)]
pub struct RevocationList {
    revoked: RwLock<HashMap<String, UnixTime>>,
}

impl RevocationList {
    pub fn revoke(&self, grant_id: &str, at: UnixTime) {
        let mut map = self.revoked.write().unwrap_or_else(|p| p.into_inner());
        map.insert(grant_id.to_owned(), at);
    }

    pub fn is_revoked(&self, grant_id: &str) -> bool {
        let map = self.revoked.read().unwrap_or_else(|p| p.into_inner());
        !map.is_empty() && map.contains_key(grant_id)
    }

    /// Forgets revocations older than `before`.
    pub fn prune(&self, before: UnixTime) {
        let mut map = self.revoked.write().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, at| *at >= before);
    }
}
