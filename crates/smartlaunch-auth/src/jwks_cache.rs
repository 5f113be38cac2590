//! Client key sets registered by URL (`jwks_uri`): fetched through a [`JwksFetcher`] (the
//! binary's implementation uses reqwest with a timeout and a size cap), cached for as long as
//! the response's `Cache-Control` allows, and refetched once when an assertion names a `kid`
//! the cached set lacks (key rotation).  A forced refetch of one URL happens at most once per
//! [`REFETCH_INTERVAL`], so a stream of made-up kids cannot turn the server into a fetch loop.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use crate::jwk::{parse_key_set, PublicJwk};
use crate::UnixTime;

/// Cache lifetime when the response says nothing.
pub const DEFAULT_TTL: i64 = 300;
/// The longest a fetched key set is trusted without a refetch, whatever the response says.
pub const MAX_TTL: i64 = 24 * 3600;
/// At most one forced refetch (unknown `kid`) per URL in this many seconds.
pub const REFETCH_INTERVAL: i64 = 5;
/// Most URLs cached at once.
const MAX_ENTRIES: usize = 10_000;

/// A fetched JWK Set document.
#[derive(Debug, Clone)]
pub struct FetchedJwks {
    pub body: serde_json::Value,
    /// `Cache-Control: max-age` (`Some(0)` for `no-store`/`no-cache`); `None`: not given.
    pub max_age: Option<i64>,
}

/// Fetches a `jwks_uri`.  Errors are texts for the developer (no response body echoed).
pub trait JwksFetcher: Send + Sync + 'static {
    fn fetch<'a>(&'a self, url: &'a str) -> Pin<Box<dyn Future<Output = Result<FetchedJwks, String>> + Send + 'a>>;
}

/// A fetcher for servers that never fetch (core tests, or a deployment that allows only `jwks`).
pub struct NoFetch;

impl JwksFetcher for NoFetch {
    fn fetch<'a>(&'a self, _url: &'a str) -> Pin<Box<dyn Future<Output = Result<FetchedJwks, String>> + Send + 'a>> {
        Box::pin(async { Err("this server does not fetch jwks_uri".to_owned()) })
    }
}

struct Entry {
    keys: Arc<Vec<PublicJwk>>,
    expires_at: UnixTime,
    forced_at: Option<UnixTime>,
}

/// The cache of fetched key sets, by URL.
pub struct JwksCache {
    fetcher: Arc<dyn JwksFetcher>,
    entries: Mutex<HashMap<String, Entry>>,
}

/// Why keys could not be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysUnavailable(pub String);

impl JwksCache {
    pub fn new(fetcher: Arc<dyn JwksFetcher>) -> JwksCache {
        JwksCache { fetcher, entries: Mutex::new(HashMap::new()) }
    }

    /// The key set at `url`: cached while fresh, fetched otherwise.  With `kid`, a cached set
    /// that lacks it is refetched once (at most once per [`REFETCH_INTERVAL`]).
    pub async fn keys(
        &self,
        url: &str,
        kid: Option<&str>,
        now: UnixTime,
    ) -> Result<Arc<Vec<PublicJwk>>, KeysUnavailable> {
        let cached = {
            let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            entries.get(url).map(|e| (e.keys.clone(), e.expires_at > now, e.forced_at))
        };
        let force = match &cached {
            Some((keys, true, forced_at)) => {
                let has_kid = kid.is_none_or(|kid| keys.iter().any(|k| k.kid == kid));
                if has_kid || forced_at.is_some_and(|at| now - at < REFETCH_INTERVAL) {
                    return Ok(keys.clone());
                }
                true
            }
            _ => false,
        };
        let fetched =
            self.fetcher.fetch(url).await.map_err(|e| KeysUnavailable(format!("fetching jwks_uri failed: {e}")))?;
        let keys = Arc::new(
            parse_key_set(&fetched.body)
                .map_err(|e| KeysUnavailable(format!("the JWK Set at jwks_uri is not valid: {e}")))?,
        );
        let ttl = fetched.max_age.unwrap_or(DEFAULT_TTL).clamp(0, MAX_TTL);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(url) {
            entries.retain(|_, e| e.expires_at > now);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(
            url.to_owned(),
            Entry { keys: keys.clone(), expires_at: now + ttl, forced_at: force.then_some(now) },
        );
        Ok(keys)
    }

    /// Forgets a URL's keys (its client was updated or removed).
    pub fn forget(&self, url: &str) {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).remove(url);
    }
}

/// The `max-age` of a `Cache-Control` header value: `Some(0)` for `no-store` or `no-cache`.
pub fn cache_control_max_age(value: &str) -> Option<i64> {
    let mut max_age = None;
    for directive in value.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(0);
        }
        if let Some(v) = lower.strip_prefix("max-age=") {
            max_age = v.trim_matches('"').parse::<i64>().ok();
        }
    }
    max_age
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing_key::{KeyKind, SigningKey};
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Served {
        jwks: Mutex<serde_json::Value>,
        max_age: Option<i64>,
        fetches: AtomicUsize,
    }

    impl JwksFetcher for Served {
        fn fetch<'a>(
            &'a self,
            _url: &'a str,
        ) -> Pin<Box<dyn Future<Output = Result<FetchedJwks, String>> + Send + 'a>> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            let body = self.jwks.lock().unwrap().clone();
            Box::pin(async move { Ok(FetchedJwks { body, max_age: self.max_age }) })
        }
    }

    fn served(key: &SigningKey, max_age: Option<i64>) -> Arc<Served> {
        Arc::new(Served { jwks: Mutex::new(key.public_jwks()), max_age, fetches: AtomicUsize::new(0) })
    }

    #[tokio::test]
    async fn cached_until_max_age_then_refetched() {
        let key = SigningKey::generate(KeyKind::Es384).unwrap();
        let s = served(&key, Some(60));
        let cache = JwksCache::new(s.clone());
        cache.keys("u", Some(key.kid()), 0).await.unwrap();
        cache.keys("u", Some(key.kid()), 59).await.unwrap();
        assert_eq!(s.fetches.load(Ordering::SeqCst), 1);
        cache.keys("u", Some(key.kid()), 60).await.unwrap();
        assert_eq!(s.fetches.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_unknown_kid_refetches_once_per_interval() {
        let old = SigningKey::generate(KeyKind::Es384).unwrap();
        let new = SigningKey::generate(KeyKind::Es384).unwrap();
        let s = served(&old, None);
        let cache = JwksCache::new(s.clone());
        cache.keys("u", Some(old.kid()), 0).await.unwrap();
        *s.jwks.lock().unwrap() = new.public_jwks();
        let keys = cache.keys("u", Some(new.kid()), 1).await.unwrap();
        assert_eq!(keys[0].kid, new.kid(), "rotation is picked up at once");
        for _ in 0..10 {
            let keys = cache.keys("u", Some("made-up"), 2).await.unwrap();
            assert!(keys.iter().all(|k| k.kid != "made-up"));
        }
        assert_eq!(s.fetches.load(Ordering::SeqCst), 2, "made-up kids do not cause a fetch each");
        cache.keys("u", Some("made-up"), 1 + REFETCH_INTERVAL).await.unwrap();
        assert_eq!(s.fetches.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn no_store_is_honoured_and_bad_sets_are_errors() {
        let key = SigningKey::generate(KeyKind::Es384).unwrap();
        let s = served(&key, Some(0));
        let cache = JwksCache::new(s.clone());
        cache.keys("u", None, 0).await.unwrap();
        cache.keys("u", None, 0).await.unwrap();
        assert_eq!(s.fetches.load(Ordering::SeqCst), 2);
        *s.jwks.lock().unwrap() = serde_json::json!({"keys": "x"});
        assert!(cache.keys("v", None, 0).await.unwrap_err().0.contains("not valid"));
        assert!(JwksCache::new(Arc::new(NoFetch)).keys("u", None, 0).await.is_err());
    }

    #[test]
    fn cache_control_is_read() {
        assert_eq!(cache_control_max_age("public, max-age=600"), Some(600));
        assert_eq!(cache_control_max_age("no-store"), Some(0));
        assert_eq!(cache_control_max_age("max-age=60, no-cache"), Some(0));
        assert_eq!(cache_control_max_age("public"), None);
    }
}
