//! A short-lived in-memory cache of registered clients, each with its live backend-service
//! session if it has one.  Every launch looks its client up twice (authorize and token);
//! registrations change rarely.  Entries live `TTL` seconds, so a client removed by another
//! process (the command line, another node) stops working within that time, and a backend
//! session created at another node is seen within it; changes through this process are visible
//! at once.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::client::Client;
use crate::launch::BackendSession;
use crate::UnixTime;

/// Seconds a cached client is trusted.
pub const TTL: UnixTime = 2;
/// Entries kept at most; the cache is cleared when it would grow past this.
const MAX_ENTRIES: usize = 10_000;

/// A registered client, its backend-service session and its trace switch, as found at one
/// time (one query for all three).
#[derive(Debug, Clone)]
pub struct CachedClient {
    pub client: Arc<Client>,
    pub backend_session: Option<Arc<BackendSession>>,
    /// Until when the client's "trace this app's next launches" switch is on.
    pub trace_until: Option<UnixTime>,
}

impl CachedClient {
    /// The client's backend-service session, if it is still live at `now`.
    pub fn live_session(&self, now: UnixTime) -> Option<Arc<BackendSession>> {
        self.backend_session.clone().filter(|s| s.is_live(now))
    }

    /// Whether the client's trace switch is on at `now`.
    pub fn traced(&self, now: UnixTime) -> bool {
        self.trace_until.is_some_and(|until| until > now)
    }
}

#[derive(Default)]
pub struct ClientCache {
    entries: RwLock<HashMap<String, (CachedClient, UnixTime)>>,
}

impl ClientCache {
    pub fn get(&self, client_id: &str, now: UnixTime) -> Option<CachedClient> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        entries.get(client_id).filter(|(_, at)| now < at + TTL).map(|(c, _)| c.clone())
    }

    pub fn put(&self, entry: CachedClient, now: UnixTime) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(entry.client.client_id.clone(), (entry, now));
    }

    pub fn forget(&self, client_id: &str) {
        self.entries.write().unwrap_or_else(|p| p.into_inner()).remove(client_id);
    }

    /// Forgets every client (the change feed reconnected: changes may have been missed).
    pub fn clear(&self) {
        self.entries.write().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{ClientMetadata, TokenEndpointAuthMethod};

    fn client(id: &str) -> CachedClient {
        let client = Arc::new(Client {
            client_id: id.into(),
            metadata: ClientMetadata {
                client_name: "A".into(),
                redirect_uris: vec![],
                grant_types: vec![],
                token_endpoint_auth_method: TokenEndpointAuthMethod::None,
                scope: None,
                initiate_login_uri: None,
                logo_uri: None,
                jwks: None,
                jwks_uri: None,
            },
            secret_hash: None,
            registration_token_hash: None,
            created_at: 0,
        });
        CachedClient { client, backend_session: None, trace_until: None }
    }

    #[test]
    fn entries_expire_and_can_be_forgotten() {
        let cache = ClientCache::default();
        cache.put(client("a"), 100);
        assert!(cache.get("a", 101).is_some());
        assert!(cache.get("a", 102).is_none(), "expired after the TTL");
        cache.put(client("a"), 200);
        cache.forget("a");
        assert!(cache.get("a", 200).is_none());
        cache.put(client("a"), 200);
        cache.clear();
        assert!(cache.get("a", 200).is_none());
    }

    #[test]
    fn the_trace_switch_comes_with_the_cached_client_and_expires() {
        let cache = ClientCache::default();
        cache.put(CachedClient { trace_until: Some(150), ..client("a") }, 100);
        let hit = cache.get("a", 101).unwrap();
        assert!(hit.traced(101) && !hit.traced(150), "on until its time, from the cache (no query)");
        assert!(!client("b").traced(0), "no switch: not traced");
    }
}
