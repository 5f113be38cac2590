//! The clock the server reads once per request and passes to the protocol core.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync + 'static {
    /// Seconds since the Unix epoch.
    fn now(&self) -> i64;
}

/// Wall-clock time, optionally shifted (tests move it forward to expire codes and tokens).
#[derive(Default)]
pub struct SystemClock {
    offset: AtomicI64,
}

impl SystemClock {
    /// Moves this clock `seconds` into the future.
    pub fn advance(&self, seconds: i64) {
        self.offset.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        wall + self.offset.load(Ordering::SeqCst)
    }
}
