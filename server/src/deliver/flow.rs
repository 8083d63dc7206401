//! Flow control per destination: a rate limit (governor's GCRA on one node; on PostgreSQL the
//! same algorithm shared by all nodes, `shared_rate`) and a concurrency limit per node. A job
//! waits briefly for either (a concurrency permit up to 5 s, a rate slot up to 250 ms); beyond
//! that it is deferred rather than held, so claims never outlive their lease.

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
    /// The rate limits shared by the nodes (PostgreSQL), instead of governor's.
    shared: Option<super::shared_rate::SharedRate>,
}

/// Requests in flight per destination and node unless `delivery.concurrency` says otherwise.
pub const DEFAULT_CONCURRENCY: u32 = 64;
/// How long a job waits for a concurrency permit before it is deferred instead (well inside a lease).
const HOLD: Duration = Duration::from_secs(5);
/// Waits for the rate limit up to this long are slept through; longer ones defer the job.
const SHORT: Duration = Duration::from_millis(250);
/// How long to defer when the concurrency limit stays in the way.
const BUSY_WAIT: Duration = Duration::from_millis(50);

impl Flow {
    /// Flow control whose rate limits hold across all the nodes of this database.
    pub fn shared(store: crate::store::Store) -> Self {
        Flow { shared: Some(super::shared_rate::SharedRate::new(store)), ..Flow::default() }
    }

    /// A permit to send now, or how long to wait. Limits follow the destination's current settings.
    pub async fn admit(&self, destination: &str, rate: Option<u32>, concurrency: u32) -> Result<OwnedSemaphorePermit, Duration> {
        let (semaphore, limiter) = {
            let mut map = self.by_destination.lock().unwrap_or_else(|p| p.into_inner());
            let limits = map.entry(destination.to_string()).or_insert_with(|| Limits { rate: None, concurrency: (0, Arc::new(Semaphore::new(0))) });
            // With the shared limit (PostgreSQL) governor is not used.
            let local = rate.and_then(NonZeroU32::new).filter(|_| self.shared.is_none());
            match (local, &limits.rate) {
                (Some(r), Some((old, _))) if *old == r.get() => {}
                (Some(r), _) => limits.rate = Some((r.get(), Arc::new(RateLimiter::direct(Quota::per_second(r))))),
                (None, _) => limits.rate = None,
            }
            if limits.concurrency.0 != concurrency {
                limits.concurrency = (concurrency, Arc::new(Semaphore::new(concurrency.max(1) as usize)));
            }
            (limits.concurrency.1.clone(), limits.rate.as_ref().map(|(_, l)| l.clone()))
        };
        let permit = match tokio::time::timeout(HOLD, semaphore.acquire_owned()).await {
            Ok(Ok(p)) => p,
            _ => return Err(BUSY_WAIT),
        };
        if let (Some(shared), Some(r)) = (&self.shared, rate.and_then(NonZeroU32::new)) {
            shared.take(destination, r, SHORT).await?;
        }
        if let Some(limiter) = limiter {
            while let Err(not_until) = limiter.check() {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                if wait > SHORT {
                    return Err(wait);
                }
                tokio::time::sleep(wait).await;
            }
        }
        Ok(permit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn rate_and_concurrency() {
        let f = Flow::default();
        let a = f.admit("d", Some(2), 5).await.unwrap();
        let _b = f.admit("d", Some(2), 5).await.unwrap();
        assert!(f.admit("d", Some(2), 5).await.unwrap_err() > SHORT, "the third in a second is deferred");
        drop(a);
        let _c = f.admit("e", None, 1).await.unwrap();
        assert_eq!(f.admit("e", None, 1).await.unwrap_err(), BUSY_WAIT, "one in flight at most, after waiting for it");
        let f2 = std::sync::Arc::new(Flow::default());
        let held = f2.admit("g", None, 1).await.unwrap();
        let g = f2.clone();
        let waiter = tokio::spawn(async move { g.admit("g", None, 1).await.is_ok() });
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(held);
        assert!(waiter.await.unwrap(), "a permit freed within the hold time is taken");
    }
}
