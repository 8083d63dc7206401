//! The Segment-compatible tracking API (`/v1/...`): write-key auth, body decoding and limits,
//! validation and enrichment, then the group-commit writer. Answers in the Tracking API's JSON
//! shape (`success`, `code`, `message`) that SDKs read.

mod body;
mod cors;
mod enrich;
mod keys;
pub mod live;
mod relay;
mod routes;
mod shallow;
mod sqlite_writer;
mod wal_vfs;
pub mod suppress;
pub mod writer;

pub use keys::KeyCache;
pub use routes::{router, worker_router};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

/// Input limits, checked after decompression.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_message_bytes: usize,
    pub max_request_bytes: usize,
    pub max_batch_messages: usize,
}

impl Limits {
    /// The most a body may hold as sent (gzip included); `max_request_bytes` is checked after
    /// decompression.
    pub fn max_raw_bytes(&self) -> usize {
        self.max_request_bytes.max(1 << 20) * 2
    }
}

/// Everything the `/v1` routes share.
pub struct Ingest {
    pub writer: writer::EventWriter,
    pub keys: KeyCache,
    pub limits: Limits,
    pub live: live::LiveFeed,
    pub trusted_proxies: Vec<IpAddr>,
    pub suppressions: suppress::Suppressions,
    limiters: Mutex<HashMap<String, (i64, Arc<DefaultDirectRateLimiter>)>>,
}

impl Ingest {
    pub fn new(writer: writer::EventWriter, keys: KeyCache, limits: Limits, trusted_proxies: Vec<IpAddr>) -> Self {
        Ingest { writer, keys, limits, live: live::LiveFeed::new(), trusted_proxies, suppressions: suppress::Suppressions::new(std::time::Duration::from_secs(2)), limiters: Mutex::new(HashMap::new()) }
    }

    /// `Err(seconds)` when `n` more events would pass the source's rate limit.
    pub fn check_rate(&self, source_id: &str, per_second: Option<i64>, n: usize) -> Result<(), u64> {
        let Some(rate) = per_second.and_then(|r| NonZeroU32::new(r.clamp(1, u32::MAX as i64) as u32)) else {
            return Ok(());
        };
        let limiter = {
            let mut map = self.limiters.lock().unwrap_or_else(|p| p.into_inner());
            let entry = map.entry(source_id.to_string()).or_insert_with(|| (0, Arc::new(RateLimiter::direct(Quota::per_second(rate)))));
            if entry.0 != rate.get() as i64 {
                *entry = (rate.get() as i64, Arc::new(RateLimiter::direct(Quota::per_second(rate))));
            }
            entry.1.clone()
        };
        // A request takes at most a full bucket: a batch of more than a second's worth passes
        // when the bucket is full (and empties it) rather than never.
        let n = NonZeroU32::new(n.clamp(1, rate.get() as usize) as u32).expect("at least one");
        match limiter.check_n(n) {
            Ok(Ok(())) => Ok(()),
            // Denied now: the bucket is full again within a second.
            _ => Err(1),
        }
    }
}
