//! Flow control per destination (per node): a rate limit (governor's GCRA) and a concurrency
//! limit. A job over either limit is deferred rather than held, so claims never outlive their lease.

use governor::{clock::Clock, clock::DefaultClock, DefaultDirectRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

struct Limits {
    rate: Option<(u32, Arc<DefaultDirectRateLimiter>)>,
    concurrency: (u32, Arc<Semaphore>),
}

#[derive(Default)]
pub struct Flow {
    by_destination: Mutex<HashMap<String, Limits>>,
}

/// How long to wait when only the concurrency limit is in the way.
const BUSY_WAIT: Duration = Duration::from_millis(50);

impl Flow {
    /// A permit to send now, or how long to wait. Limits follow the destination's current settings.
    pub fn admit(&self, destination: &str, rate: Option<u32>, concurrency: u32) -> Result<OwnedSemaphorePermit, Duration> {
        let mut map = self.by_destination.lock().unwrap_or_else(|p| p.into_inner());
        let limits = map.entry(destination.to_string()).or_insert_with(|| Limits { rate: None, concurrency: (0, Arc::new(Semaphore::new(0))) });
        match (rate.and_then(NonZeroU32::new), &limits.rate) {
            (Some(r), Some((old, _))) if *old == r.get() => {}
            (Some(r), _) => limits.rate = Some((r.get(), Arc::new(RateLimiter::direct(Quota::per_second(r))))),
            (None, _) => limits.rate = None,
        }
        if limits.concurrency.0 != concurrency {
            limits.concurrency = (concurrency, Arc::new(Semaphore::new(concurrency.max(1) as usize)));
        }
        let permit = limits.concurrency.1.clone().try_acquire_owned().map_err(|_| BUSY_WAIT)?;
        if let Some((_, limiter)) = &limits.rate {
            if let Err(not_until) = limiter.check() {
                return Err(not_until.wait_time_from(DefaultClock::default().now()));
            }
        }
        Ok(permit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_and_concurrency() {
        let f = Flow::default();
        let a = f.admit("d", Some(2), 5).unwrap();
        let _b = f.admit("d", Some(2), 5).unwrap();
        assert!(f.admit("d", Some(2), 5).unwrap_err() > Duration::ZERO, "the third in a second waits");
        drop(a);
        let _c = f.admit("e", None, 1).unwrap();
        assert_eq!(f.admit("e", None, 1).unwrap_err(), BUSY_WAIT, "one in flight at most");
    }
}
