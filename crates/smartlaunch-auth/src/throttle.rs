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
    /// The key of an account that exists: never evicted to make room while its failures count
    /// (there are only as many as there are users), so a flood of made-up names cannot reset it.
    kept: bool,
}

/// One sign-in attempt's throttle keys.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// `user:<name, lower case>`.
    account: String,
    /// Whether that account exists.
    account_exists: bool,
    /// `addr:<ip>` when the address is known.
    address: Option<String>,
}

impl Attempt {
    pub fn new(username: &str, account_exists: bool, client_addr: Option<&str>) -> Attempt {
        Attempt {
            account: format!("user:{}", username.to_lowercase()),
            account_exists,
            address: client_addr.map(|a| format!("addr:{a}")),
        }
    }

    fn keys(&self) -> impl Iterator<Item = (&str, u32, bool)> {
        std::iter::once((self.account.as_str(), ACCOUNT_FREE_FAILURES, self.account_exists))
            .chain(self.address.as_deref().map(|a| (a, ADDRESS_FREE_FAILURES, false)))
    }
}

/// Counts sign-in attempts by account and by address.  An attempt is counted as a failure
/// when it starts, in the same step that checks the keys, so concurrent guesses cannot all
/// pass the check before the first failures are recorded; a success takes its count back.
/// After a key's free failures each further one blocks it for a delay that doubles (1, 2, 4 …
/// s) up to [`MAX_DELAY`].  In memory: a restart forgets (and with several nodes each
/// throttles on its own — a store-backed throttle can come with the scale-out).
#[derive(Debug, Default)]
pub struct SignInThrottle {
    keys: Mutex<HashMap<String, Failures>>,
}

impl SignInThrottle {
    /// Starts an attempt: `Err(retry_after)` while any of its keys is blocked (nothing is
    /// counted then), else counts it as a failure until [`SignInThrottle::succeeded`].
    pub fn begin(&self, attempt: &Attempt, now: UnixTime) -> Result<(), i64> {
        let mut map = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let wait = attempt.keys().filter_map(|(k, ..)| map.get(k)).map(|f| f.blocked_until - now).max().unwrap_or(0);
        if wait > 0 {
            return Err(wait);
        }
        if map.len() >= MAX_KEYS {
            make_room(&mut map, now);
        }
        for (key, free, kept) in attempt.keys() {
            let f = map.entry(key.to_owned()).or_insert(Failures { count: 0, last: now, blocked_until: 0, kept });
            if f.last <= now - FORGET_AFTER {
                f.count = 0;
            }
            f.count = f.count.saturating_add(1);
            f.last = now;
            f.kept |= kept;
            if f.count > free {
                let doublings = (f.count - free - 1).min(20);
                f.blocked_until = now + (1i64 << doublings).min(MAX_DELAY);
            }
        }
        Ok(())
    }

    /// The password was right: the account starts afresh, and the address's count takes this
    /// attempt back (its delay, if one started, runs out as it would).
    pub fn succeeded(&self, attempt: &Attempt) {
        let mut map = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&attempt.account);
        if let Some(f) = attempt.address.as_deref().and_then(|a| map.get_mut(a)) {
            f.count = f.count.saturating_sub(1);
        }
    }
}

/// Frees room in a full table: first what is neither blocked nor an existing account's recent
/// count, then whatever is not an existing account's.
fn make_room(map: &mut HashMap<String, Failures>, now: UnixTime) {
    let recent = |f: &Failures| f.last > now - FORGET_AFTER;
    map.retain(|_, f| f.blocked_until > now || (f.kept && recent(f)));
    if map.len() >= MAX_KEYS {
        map.retain(|_, f| f.kept && recent(f));
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

    fn attempt(user: &str, addr: &str) -> Attempt {
        Attempt::new(user, true, Some(addr))
    }

    /// A failed attempt, as `check_password` makes it.
    fn fail(t: &SignInThrottle, a: &Attempt, now: UnixTime) -> Result<(), i64> {
        t.begin(a, now)
    }

    #[test]
    fn an_account_is_free_for_five_failures_then_delays_double() {
        let t = SignInThrottle::default();
        let a = attempt("clinician", "10.0.0.1");
        for _ in 0..ACCOUNT_FREE_FAILURES {
            assert_eq!(fail(&t, &a, 1000), Ok(()));
        }
        assert_eq!(fail(&t, &a, 1000), Ok(()), "the sixth attempt is still answered");
        assert_eq!(fail(&t, &a, 1000), Err(1));
        assert_eq!(fail(&t, &a, 1001), Ok(()));
        assert_eq!(fail(&t, &a, 1001), Err(2));
        assert_eq!(fail(&t, &a, 1003), Ok(()));
        assert_eq!(fail(&t, &a, 1003), Err(4));
        assert_eq!(fail(&t, &attempt("clinician", "10.0.0.2"), 1003), Err(4), "the account, from anywhere");
        assert_eq!(fail(&t, &attempt("patient", "10.0.0.2"), 1003), Ok(()), "other accounts are not");
    }

    #[test]
    fn concurrent_attempts_are_counted_before_their_passwords_are_checked() {
        let t = SignInThrottle::default();
        let a = attempt("clinician", "10.0.0.1");
        // Sixty guesses arrive at once: none has finished hashing when the others start.
        let passed = (0..60).filter(|_| t.begin(&a, 1000).is_ok()).count();
        assert_eq!(passed as u32, ACCOUNT_FREE_FAILURES + 1);
    }

    #[test]
    fn delays_stop_growing_and_never_lock_for_good() {
        let t = SignInThrottle::default();
        let a = attempt("clinician", "10.0.0.1");
        let mut now = 1000;
        for _ in 0..30 {
            now += MAX_DELAY;
            assert_eq!(fail(&t, &a, now), Ok(()));
        }
        assert_eq!(t.begin(&a, now), Err(MAX_DELAY));
        assert_eq!(t.begin(&a, now + MAX_DELAY), Ok(()), "the delay ends");
        assert_eq!(t.begin(&a, now + 2 * MAX_DELAY + FORGET_AFTER), Ok(()));
        assert_eq!(t.begin(&a, now + 2 * MAX_DELAY + FORGET_AFTER), Ok(()), "an hour later the count starts again");
    }

    #[test]
    fn an_address_guessing_many_accounts_is_throttled() {
        let t = SignInThrottle::default();
        for i in 0..=ADDRESS_FREE_FAILURES {
            assert_eq!(fail(&t, &attempt(&format!("u{i}"), "10.0.0.9"), 1000), Ok(()));
        }
        assert_eq!(t.begin(&attempt("someone-else", "10.0.0.9"), 1000), Err(1));
        assert_eq!(t.begin(&attempt("someone-else", "10.0.0.8"), 1000), Ok(()));
    }

    #[test]
    fn success_clears_the_account_and_takes_back_the_address_count() {
        let t = SignInThrottle::default();
        let a = attempt("clinician", "10.0.0.1");
        for _ in 0..ACCOUNT_FREE_FAILURES {
            fail(&t, &a, 1000).unwrap();
        }
        t.begin(&a, 1000).unwrap();
        t.succeeded(&a);
        assert_eq!(t.begin(&Attempt::new("clinician", true, None), 1000), Ok(()));
        // Many good sign-ins from one address (a shared proxy) never throttle it.
        let t = SignInThrottle::default();
        for _ in 0..100 {
            let a = attempt("clinician", "10.0.0.1");
            t.begin(&a, 1000).unwrap();
            t.succeeded(&a);
        }
    }

    #[test]
    fn a_flood_of_made_up_names_does_not_reset_a_real_accounts_count() {
        let t = SignInThrottle::default();
        let victim = attempt("clinician", "203.0.113.1");
        let mut now = 10_000;
        for _ in 0..7 {
            now += 10;
            fail(&t, &victim, now).unwrap();
        }
        now += 100;
        for n in 0..MAX_KEYS as u32 {
            let junk = Attempt::new(&format!("junk{n}"), false, Some(&format!("2001:db8::{:x}", n / 20)));
            let _ = t.begin(&junk, now);
        }
        fail(&t, &victim, now).unwrap();
        assert_eq!(t.begin(&victim, now), Err(4), "the account's count survived the flood");
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
