//! Retry schedules as data: delays after the 1st, 2nd… failure, then a steady interval, each
//! with ±20% jitter, up to a maximum age or number of attempts.

use rand::Rng;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Seconds to wait after each failure in turn.
    pub schedule: Vec<f64>,
    /// Seconds between attempts once the schedule is used up.
    pub then_every: f64,
    /// Give up (dead-letter) after this many seconds since the event was routed.
    pub max_age_secs: f64,
    /// Give up after this many attempts (none: only the age counts).
    pub max_attempts: Option<u32>,
    /// The longest a `Retry-After` may hold an event back, in seconds.
    pub retry_after_cap_secs: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            schedule: vec![1.0, 5.0, 30.0, 120.0, 600.0, 3600.0],
            then_every: 3.0 * 3600.0,
            max_age_secs: 24.0 * 3600.0,
            max_attempts: None,
            retry_after_cap_secs: 3600.0,
        }
    }
}

/// A destination's `delivery` options: any of the policy's keys, laid over the defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyPatch {
    pub schedule: Option<Vec<f64>>,
    pub then_every: Option<f64>,
    pub max_age_secs: Option<f64>,
    pub max_attempts: Option<u32>,
    pub retry_after_cap_secs: Option<f64>,
    /// Deliver each user's events in order (default: what the integration needs).
    pub ordered: Option<bool>,
    /// Requests per second to this destination (default: the integration's; per node).
    pub rate_limit: Option<u32>,
    /// Requests in flight at once to this destination (default 16; per node).
    pub concurrency: Option<u32>,
    /// Failures in a row that open the circuit breaker (pause the destination); default 20.
    pub breaker_failures: Option<u32>,
    /// Seconds the breaker keeps the destination paused before the next probe; default 60.
    pub breaker_probe_secs: Option<f64>,
    /// Events per request, for integrations that batch (default: the integration's).
    pub batch_size: Option<u32>,
    /// How long a partial batch may wait for more events, in milliseconds (default: the integration's).
    pub batch_wait_ms: Option<u32>,
}

impl PolicyPatch {
    /// Checks the options; `batching` is the integration's batching capability, if any.
    pub fn check(&self, batching: Option<&model::integration::Batching>) -> Result<(), String> {
        match (self.batch_size, batching) {
            (Some(n), Some(b)) if n < 1 || n > b.max_size => return Err(format!("batch_size: must be between 1 and {}", b.max_size)),
            (Some(n), None) if n != 1 => return Err("batch_size: this integration sends one event per request".into()),
            _ => {}
        }
        if self.batch_wait_ms.is_some_and(|w| w > 60_000) {
            return Err("batch_wait_ms: at most 60000".into());
        }
        let bad = |v: f64| !(v.is_finite() && v >= 0.0);
        if self.schedule.as_ref().is_some_and(|s| s.iter().any(|v| bad(*v))) {
            return Err("schedule: delays must be seconds, 0 or more".into());
        }
        for (k, v) in [("then_every", self.then_every), ("max_age_secs", self.max_age_secs), ("retry_after_cap_secs", self.retry_after_cap_secs)] {
            if v.is_some_and(|v| bad(v) || v == 0.0 && k == "then_every") {
                return Err(format!("{k}: must be a positive number of seconds"));
            }
        }
        if self.rate_limit == Some(0) || self.concurrency == Some(0) {
            return Err("rate_limit and concurrency must be at least 1".into());
        }
        Ok(())
    }

    pub fn apply(&self, base: &RetryPolicy) -> RetryPolicy {
        RetryPolicy {
            schedule: self.schedule.clone().unwrap_or_else(|| base.schedule.clone()),
            then_every: self.then_every.unwrap_or(base.then_every),
            max_age_secs: self.max_age_secs.unwrap_or(base.max_age_secs),
            max_attempts: self.max_attempts.or(base.max_attempts),
            retry_after_cap_secs: self.retry_after_cap_secs.unwrap_or(base.retry_after_cap_secs),
        }
    }
}

impl RetryPolicy {
    /// The wait after `failures` failures (1 = after the first), with ±20% jitter.
    pub fn delay(&self, failures: u32) -> Duration {
        let base = self.schedule.get(failures.saturating_sub(1) as usize).copied().unwrap_or(self.then_every);
        let jitter = rand::thread_rng().gen_range(0.8..=1.2);
        Duration::from_secs_f64(base * jitter)
    }

    /// True when an event that has failed `failures` times and is `age` old is given up.
    pub fn exhausted(&self, failures: u32, age: Duration) -> bool {
        self.max_attempts.is_some_and(|m| failures >= m) || age.as_secs_f64() >= self.max_age_secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_follow_the_schedule_with_jitter() {
        let p = RetryPolicy::default();
        for (failures, base) in [(1, 1.0), (2, 5.0), (6, 3600.0), (7, 10800.0), (40, 10800.0)] {
            let d = p.delay(failures).as_secs_f64();
            assert!(d >= base * 0.8 - 1e-9 && d <= base * 1.2 + 1e-9, "{failures}: {d}");
        }
        assert!(!p.exhausted(100, Duration::from_secs(3600)));
        assert!(p.exhausted(1, Duration::from_secs(86_400)));
        let q = PolicyPatch { max_attempts: Some(3), ..Default::default() }.apply(&p);
        assert!(q.exhausted(3, Duration::ZERO));
        assert!(PolicyPatch { schedule: Some(vec![-1.0]), ..Default::default() }.check(None).is_err());
        let b = model::integration::Batching { max_size: 100, default_size: None, max_wait_ms: 10, partial: None };
        assert!(PolicyPatch { batch_size: Some(100), ..Default::default() }.check(Some(&b)).is_ok());
        assert!(PolicyPatch { batch_size: Some(101), ..Default::default() }.check(Some(&b)).is_err());
        assert!(PolicyPatch { batch_size: Some(2), ..Default::default() }.check(None).is_err());
    }
}
