//! A destination's rate limit shared by all nodes on PostgreSQL. It is GCRA, as governor's is on
//! one node, with its state (the theoretical arrival time of the next request) in a row per
//! destination (`destination_rate`, by the database's clock). A node reserves a few send slots at a
//! time (about 50 ms' worth, one statement), only when the first of them is due soon, and spends
//! them itself; a slot left unused for long is dropped, never spent late, so no window gets more
//! than its share. A job that finds no slot soon is deferred until one would be free.

use crate::store::Store;
use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A reserved slot not spent within this long after its time is dropped.
const STALE: Duration = Duration::from_millis(100);
/// Slots reserved at a time: this long at the destination's rate (at least one, at most `MOST`).
const AHEAD_MS: u32 = 50;
const MOST: u32 = 64;

/// Reserves `n` slots at `$2` µs apart (`$2` is n × interval) after the destination's last
/// reserved one, if the first of them is due within `$4` µs given a burst of `$3` µs (GCRA's
/// tolerance). Returns the new arrival time when it moved (else NULL), the one before, and the
/// database's now.
const RESERVE: &str = "WITH t AS (SELECT (extract(epoch FROM now()) * 1000000)::bigint AS now), \
     moved AS (INSERT INTO destination_rate (destination_id, tat) SELECT $1, t.now + $2 FROM t \
       ON CONFLICT (destination_id) DO UPDATE SET tat = GREATEST(destination_rate.tat, (SELECT now FROM t)) + $2 \
       WHERE destination_rate.tat - $3 <= (SELECT now FROM t) + $4 \
       RETURNING tat) \
     SELECT (SELECT tat FROM moved), (SELECT tat FROM destination_rate WHERE destination_id = $1), (SELECT now FROM t)";

struct Slots {
    rate: u32,
    at: VecDeque<Instant>,
}

pub struct SharedRate {
    store: Store,
    slots: Mutex<HashMap<String, Slots>>,
}

/// The send times of `n` slots reserved up to `tat` at `interval` apart, allowing a burst of
/// `burst` (all in microseconds by the database's clock), as offsets from the database's `now`.
pub fn offsets(tat: i64, now: i64, n: u32, interval: i64, burst: i64) -> Vec<i64> {
    let start = tat - i64::from(n) * interval;
    (0..i64::from(n)).map(|i| (start + i * interval - burst - now).max(0)).collect()
}

/// A destination's reserved slots, dropped when its rate changed.
fn slots_of<'m>(map: &'m mut HashMap<String, Slots>, destination: &str, rate: u32) -> &'m mut Slots {
    let s = map.entry(destination.to_string()).or_insert_with(|| Slots { rate, at: VecDeque::new() });
    if s.rate != rate {
        *s = Slots { rate, at: VecDeque::new() };
    }
    s
}

impl SharedRate {
    pub fn new(store: Store) -> Self {
        SharedRate { store, slots: Mutex::new(HashMap::new()) }
    }

    /// Waits for a slot up to `short`; when none is free that soon, returns how long until one is.
    pub async fn take(&self, destination: &str, rate: NonZeroU32, short: Duration) -> Result<(), Duration> {
        for _ in 0..2 {
            let next = {
                let mut map = self.slots.lock().unwrap_or_else(|p| p.into_inner());
                let s = slots_of(&mut map, destination, rate.get());
                let now = Instant::now();
                while s.at.front().is_some_and(|t| *t + STALE < now) {
                    s.at.pop_front();
                }
                s.at.pop_front()
            };
            if let Some(t) = next {
                tokio::time::sleep_until(t.into()).await;
                return Ok(());
            }
            self.reserve(destination, rate, short).await?;
        }
        Err(Duration::from_millis(10))
    }

    /// Reserves this node's next few slots, if the first is due within `short`; else returns how
    /// long until it would be.
    async fn reserve(&self, destination: &str, rate: NonZeroU32, short: Duration) -> Result<(), Duration> {
        let r = rate.get();
        let n = (r * AHEAD_MS / 1000).clamp(1, MOST);
        let interval = 1_000_000 / i64::from(r);
        let burst = i64::from(r - 1) * interval;
        let got: Result<(Option<i64>, Option<i64>, i64), _> = sqlx::query_as(RESERVE)
            .bind(destination)
            .bind(i64::from(n) * interval)
            .bind(burst)
            .bind(short.as_micros() as i64)
            .fetch_one(self.store.pool())
            .await;
        let (tat, now) = match got {
            Ok((Some(tat), _, now)) => (tat, now),
            // Not moved: the first free slot is later than `short`.
            Ok((None, before, now)) => return Err(Duration::from_micros((before.unwrap_or(now) - burst - now).max(1_000) as u64)),
            Err(e) => {
                tracing::warn!(destination, error = %e, "cannot reserve send slots of the shared rate limit; deferring");
                return Err(Duration::from_secs(1));
            }
        };
        let base = Instant::now();
        let mut map = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let s = slots_of(&mut map, destination, r);
        for off in offsets(tat, now, n, interval, burst) {
            s.at.push_back(base + Duration::from_micros(off as u64));
        }
        s.at.make_contiguous().sort();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::offsets;

    #[test]
    fn slots_follow_the_arrival_time() {
        // Idle destination, 5/s (200 ms apart), burst of 5: the first five may go at once.
        let now = 1_000_000_000;
        assert_eq!(offsets(now + 200_000, now, 1, 200_000, 800_000), vec![0]);
        // Far behind: the slots are spaced from the arrival time minus the burst.
        let tat = now + 2_000_000;
        assert_eq!(offsets(tat, now, 3, 200_000, 800_000), vec![600_000, 800_000, 1_000_000]);
        // No burst: evenly spaced from now.
        assert_eq!(offsets(now + 300_000, now, 3, 100_000, 0), vec![0, 100_000, 200_000]);
    }
}
