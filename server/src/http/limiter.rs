//! Failed sign-ins per IP and per account: after `max` failures within `window`, further attempts
//! get HTTP 429 until the oldest failure leaves the window.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct LoginLimiter {
    max: usize,
    window: Duration,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl LoginLimiter {
    pub fn new(max: usize, window: Duration) -> Self {
        LoginLimiter { max, window, failures: Mutex::new(HashMap::new()) }
    }

    /// `Err(seconds to wait)` when any of `keys` has too many recent failures.
    pub fn check(&self, keys: &[String]) -> Result<(), u64> {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let mut wait = None;
        for key in keys {
            if let Some(q) = map.get_mut(key) {
                while q.front().is_some_and(|t| now.duration_since(*t) >= self.window) {
                    q.pop_front();
                }
                if q.len() >= self.max {
                    let oldest = *q.front().expect("non-empty");
                    let left = self.window.saturating_sub(now.duration_since(oldest)).as_secs().max(1);
                    wait = Some(wait.map_or(left, |w: u64| w.max(left)));
                }
            }
        }
        // Keep the map from growing without bound under a spray of addresses.
        if map.len() > 100_000 {
            map.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < self.window));
        }
        wait.map_or(Ok(()), Err)
    }

    pub fn fail(&self, keys: &[String]) {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for key in keys {
            map.entry(key.clone()).or_default().push_back(now);
        }
    }

    pub fn succeed(&self, account_key: &str) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(account_key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_max_failures_and_forgets_after_the_window() {
        let l = LoginLimiter::new(2, Duration::from_millis(50));
        let k = vec!["ip:1".to_string()];
        assert!(l.check(&k).is_ok());
        l.fail(&k);
        l.fail(&k);
        assert!(l.check(&k).is_err());
        assert!(l.check(&["ip:2".to_string()]).is_ok());
        std::thread::sleep(Duration::from_millis(60));
        assert!(l.check(&k).is_ok());
    }
}
