//! Limits on password guessing: sign-in throttling per account and per client address, and a
//! bounded pool for the (deliberately slow, memory-hungry) argon2id hashes.  docs/SECURITY.md
//! lists the values and the tests that attack them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use crate::users::verify_password;
use crate::UnixTime;

/// Failed sign-ins an account may have before each further one costs a delay.
pub const ACCOUNT_FREE_FAILURES: u32 = 5;
/// Failed sign-ins one address may have (over all accounts) before delays start.
pub const ADDRESS_FREE_FAILURES: u32 = 20;
/// The longest delay: throttling slows guessing down, it never locks an account for good.
pub const MAX_DELAY: i64 = 300;
/// Failures older than this are forgotten.
pub const FORGET_AFTER: i64 = 3600;
/// The most keys tracked at once (a flood of made-up usernames cannot grow memory further).
const MAX_KEYS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: UnixTime,
    blocked_until: UnixTime,
}

/// Counts failed sign-ins by key (`user:<name>`, `addr:<ip>`).  After a key's free failures
/// each further failure blocks it for a delay that doubles (1, 2, 4 … s) up to [`MAX_DELAY`];
/// a success clears the account's count.  In memory: a restart forgets (and with several
/// nodes each throttles on its own — a store-backed throttle can come with the scale-out).
#[derive(Debug, Default)]
pub struct SignInThrottle {
    keys: Mutex<HashMap<String, Failures>>,
}

impl SignInThrottle {
    /// `Err(retry_after)` while any of the keys is blocked.
    pub fn check(&self, keys: &[String], now: UnixTime) -> Result<(), i64> {
        let map = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let wait = keys.iter().filter_map(|k| map.get(k)).map(|f| f.blocked_until - now).max().unwrap_or(0);
        if wait > 0 {
            Err(wait)
        } else {
            Ok(())
        }
    }

    /// Records a failed sign-in under every key.
    pub fn failed(&self, keys: &[String], now: UnixTime) {
        let mut map = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_KEYS {
            map.retain(|_, f| f.last > now - FORGET_AFTER && f.blocked_until > now);
            if map.len() >= MAX_KEYS {
                map.clear();
            }
        }
        for key in keys {
            let free = if key.starts_with("addr:") { ADDRESS_FREE_FAILURES } else { ACCOUNT_FREE_FAILURES };
            let f = map.entry(key.clone()).or_insert(Failures { count: 0, last: now, blocked_until: 0 });
            if f.last <= now - FORGET_AFTER {
                f.count = 0;
            }
            f.count = f.count.saturating_add(1);
            f.last = now;
            if f.count > free {
                let doublings = (f.count - free - 1).min(20);
                f.blocked_until = now + (1i64 << doublings).min(MAX_DELAY);
            }
        }
    }

    /// A successful sign-in clears the key (the account's; the address keeps its count).
    pub fn succeeded(&self, key: &str) {
        self.keys.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

/// Runs argon2id verifications on the blocking pool, at most `permits` at a time: each one
/// takes ~19 MiB and a core for tens of milliseconds, so 64 concurrent sign-ins queue here
/// instead of taking a gigabyte.
#[derive(Debug, Clone)]
pub struct HashingPool {
    permits: Arc<Semaphore>,
}

impl HashingPool {
    pub fn new(permits: usize) -> HashingPool {
        HashingPool { permits: Arc::new(Semaphore::new(permits.max(1))) }
    }

    /// One permit per core (at most 4).
    pub fn for_this_machine() -> HashingPool {
        HashingPool::new(std::thread::available_parallelism().map_or(2, |n| n.get()).min(4))
    }

    /// Verifies `password` against `hash` (`None`: a dummy hash, so timing does not reveal
    /// whether the user exists).
    pub async fn verify(&self, hash: Option<String>, password: String) -> Result<bool, String> {
        let _permit = self.permits.acquire().await.map_err(|e| e.to_string())?;
        tokio::task::spawn_blocking(move || verify_password(hash.as_deref(), &password))
            .await
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(user: &str, addr: &str) -> Vec<String> {
        vec![format!("user:{user}"), format!("addr:{addr}")]
    }

    #[test]
    fn an_account_is_free_for_five_failures_then_delays_double() {
        let t = SignInThrottle::default();
        let k = keys("clinician", "10.0.0.1");
        for _ in 0..ACCOUNT_FREE_FAILURES {
            assert_eq!(t.check(&k, 1000), Ok(()));
            t.failed(&k, 1000);
        }
        assert_eq!(t.check(&k, 1000), Ok(()), "five failures cost nothing");
        t.failed(&k, 1000);
        assert_eq!(t.check(&k, 1000), Err(1));
        t.failed(&k, 1001);
        assert_eq!(t.check(&k, 1001), Err(2));
        t.failed(&k, 1003);
        assert_eq!(t.check(&k, 1003), Err(4));
        assert_eq!(t.check(&keys("clinician", "10.0.0.2"), 1003), Err(4), "the account is throttled from anywhere");
        assert_eq!(t.check(&keys("patient", "10.0.0.2"), 1003), Ok(()), "other accounts are not");
    }

    #[test]
    fn delays_stop_growing_and_never_lock_for_good() {
        let t = SignInThrottle::default();
        let k = keys("clinician", "10.0.0.1");
        for i in 0..200 {
            t.failed(&k, 1000 + i);
        }
        assert_eq!(t.check(&k, 1199), Err(MAX_DELAY - 0));
        assert_eq!(t.check(&k, 1199 + MAX_DELAY), Ok(()), "the delay ends");
        t.failed(&k, 1199 + FORGET_AFTER + 1);
        assert_eq!(t.check(&k, 1199 + FORGET_AFTER + 1), Ok(()), "an hour later the count starts again");
    }

    #[test]
    fn an_address_guessing_many_accounts_is_throttled() {
        let t = SignInThrottle::default();
        for i in 0..=ADDRESS_FREE_FAILURES {
            t.failed(&keys(&format!("u{i}"), "10.0.0.9"), 1000);
        }
        assert_eq!(t.check(&keys("someone-else", "10.0.0.9"), 1000), Err(1));
        assert_eq!(t.check(&keys("someone-else", "10.0.0.8"), 1000), Ok(()));
    }

    #[test]
    fn success_clears_the_account() {
        let t = SignInThrottle::default();
        let k = keys("clinician", "10.0.0.1");
        for _ in 0..=ACCOUNT_FREE_FAILURES {
            t.failed(&k, 1000);
        }
        t.succeeded("user:clinician");
        assert_eq!(t.check(&k[..1], 1000), Ok(()));
    }

    #[tokio::test]
    async fn the_hashing_pool_runs_at_most_its_permits_at_once() {
        let pool = HashingPool::new(1);
        let hash = crate::users::hash_password("pw");
        let a = pool.verify(Some(hash.clone()), "pw".into());
        let b = pool.verify(Some(hash), "nope".into());
        let (a, b) = tokio::join!(a, b);
        assert_eq!((a, b), (Ok(true), Ok(false)));
        assert_eq!(pool.permits.available_permits(), 1);
    }
}
