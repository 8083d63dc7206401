//! Workers: claim due deliveries, map each event with the destination's current configuration,
//! send it through the transport, record the attempt, and decide: done, retry later (schedule,
//! `Retry-After`, a 429/503 pausing the whole destination), or dead-letter.

use super::queue::{self, Job, NewAttempt};
use super::schedule::{PolicyPatch, RetryPolicy};
use crate::integrations::{destination, handlers, sample, Integrations};
use crate::store::{now_ms, Store};
use crate::transport::Outcome;
use model::mapping::{effective_settings, Built, Prepared};
use serde_json::Value;

/// What an attempt log keeps of a request body.
const KEEP_REQUEST: usize = 16 * 1024;

pub struct Worker {
    pub store: Store,
    pub integrations: Integrations,
    pub base_policy: RetryPolicy,
    pub flow: super::flow::Flow,
    pub alerts: super::alerts::Alerts,
}

fn cut(mut s: String, n: usize) -> String {
    if s.len() > n {
        let mut end = n;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

enum Verdict {
    Delivered,
    Retry { retry_after: Option<f64>, pause: bool, reason: String },
    Dead(String),
    Rejected(String),
    Filtered(String),
}

impl Worker {
    /// Delivers one claimed job and records its new state.
    pub async fn run(&self, job: Job) -> anyhow::Result<()> {
        let mut conn = self.store.pool().acquire().await?;
        let Some(row) = crate::store::destination(&mut conn, &job.destination_id).await? else { return Ok(()) };
        let event: Option<(String, i64)> = sqlx::query_as("SELECT payload, received_at FROM events WHERE seq = $1")
            .bind(job.event_seq)
            .fetch_optional(&mut *conn)
            .await?;
        drop(conn);
        let patch = serde_json::from_value::<PolicyPatch>(row.delivery.clone()).unwrap_or_default();
        let policy = patch.apply(&self.base_policy);
        // Flow control: over the rate or concurrency limit, the job waits without an attempt.
        let default_rate = self.integrations.catalog.get(&row.integration).and_then(|l| l.manifest.capabilities.rate_limit);
        let _permit = match self.flow.admit(&row.id, patch.rate_limit.or(default_rate), patch.concurrency.unwrap_or(16)) {
            Ok(permit) => permit,
            Err(wait) => return queue::defer(&self.store, &job.id, now_ms() + wait.as_millis() as i64).await,
        };
        let verdict = match (self.integrations.catalog.get(&row.integration), event) {
            (None, _) => Verdict::Dead(format!("integration '{}' is not in the catalog", row.integration)),
            (_, None) => Verdict::Dead("the event is no longer stored (past the retention period?)".into()),
            (Some(loaded), Some((payload, received_at))) => {
                let event: Value = serde_json::from_str(&payload).unwrap_or_default();
                let v = self.attempt(&job, &row, loaded, &event).await?;
                if matches!(v, Verdict::Delivered) {
                    let secs = (now_ms() - received_at).max(0) as f64 / 1000.0;
                    metrics::histogram!("switchyard_delivery_latency_seconds").record(secs);
                }
                v
            }
        };
        let (label, state) = match &verdict {
            Verdict::Delivered => ("delivered", "succeeded"),
            Verdict::Retry { .. } => ("retrying", "retrying"),
            Verdict::Dead(_) => ("dead", "dead"),
            Verdict::Rejected(_) => ("rejected", "rejected"),
            Verdict::Filtered(_) => ("filtered", "filtered"),
        };
        metrics::counter!("switchyard_deliveries_total", "destination" => row.name.clone(), "outcome" => label).increment(1);
        let attempts = job.attempts + 1;
        let now = now_ms();
        // The circuit breaker counts transport outcomes only (not rejections or filters).
        match &verdict {
            Verdict::Delivered => {
                queue::note_result(&self.store, &job.destination_id, true).await?;
            }
            Verdict::Retry { reason, .. } | Verdict::Dead(reason) => {
                let failures = queue::note_result(&self.store, &job.destination_id, false).await?;
                if failures >= patch.breaker_failures.unwrap_or(20) as i64 {
                    let probe = (patch.breaker_probe_secs.unwrap_or(60.0) * 1000.0) as i64;
                    let why = format!("{failures} failures in a row; last: {reason}");
                    queue::open_circuit(&self.store, &job.destination_id, now + probe, &why).await?;
                    self.alerts.notify(&row.name, "paused", &why);
                }
                if let Verdict::Dead(r) = &verdict {
                    self.alerts.notify(&row.name, "dead_letter", r);
                }
            }
            _ => {}
        }
        match verdict {
            Verdict::Delivered => queue::finish(&self.store, &job.id, state, attempts, now, None).await,
            Verdict::Dead(r) | Verdict::Rejected(r) | Verdict::Filtered(r) => queue::finish(&self.store, &job.id, state, attempts, now, Some(&r)).await,
            Verdict::Retry { retry_after, pause, reason } => {
                let age = std::time::Duration::from_millis((now - job.created_at).max(0) as u64);
                if policy.exhausted(attempts as u32, age) {
                    return queue::finish(&self.store, &job.id, "dead", attempts, now, Some(&format!("gave up after {attempts} attempts: {reason}"))).await;
                }
                let scheduled = policy.delay(attempts as u32).as_millis() as i64;
                let after = retry_after.map(|s| (s.min(policy.retry_after_cap_secs) * 1000.0) as i64);
                let wait = after.map_or(scheduled, |a| a.max(scheduled));
                if pause {
                    // A 429 or 503 holds back the whole destination until then.
                    queue::pause_destination(&self.store, &job.destination_id, Some(now + wait)).await?;
                }
                queue::finish(&self.store, &job.id, state, attempts, now + wait, Some(&reason)).await
            }
        }
    }

    async fn attempt(&self, job: &Job, row: &crate::store::DestinationRow, loaded: &crate::integrations::Loaded, event: &Value) -> anyhow::Result<Verdict> {
        let m = &loaded.manifest;
        let full = destination::full_settings(loaded, &self.integrations.cipher, row)?;
        let settings = effective_settings(&full, false);
        let prepared = match Prepared::new(m, &row.actions) {
            Ok(p) => p,
            Err(e) => return Ok(Verdict::Dead(format!("misconfigured: {e}"))),
        };
        let now = now_ms() / 1000;
        let built = handlers::for_handler(m.handler.as_deref()).map(&prepared, &settings, std::slice::from_ref(event), now);
        if built.is_empty() {
            return Ok(Verdict::Filtered("no action of the integration takes this event".into()));
        }
        let secrets = sample::secret_values(&self.integrations.cipher.open(&row.secrets)?, &full);
        let transport = self.integrations.transports.get(&m.capabilities.transport);
        let mut verdict = Verdict::Delivered;
        for b in built {
            match b {
                Built::Rejected { reason, .. } => {
                    let a = NewAttempt { job, latency_ms: 0, outcome: "rejected", status: None, request: "{}".into(), response: reason.clone() };
                    queue::record_attempt(&self.store, a).await?;
                    verdict = Verdict::Rejected(reason);
                }
                Built::Request { request, .. } => {
                    let a = transport.send(&settings, &request).await;
                    let mut detail = a.detail.clone();
                    for s in secrets.iter().filter(|s| s.len() >= 4) {
                        detail = detail.replace(s.as_str(), crate::integrations::settings::MASK);
                    }
                    let outcome = match a.outcome {
                        Outcome::Delivered => "delivered",
                        Outcome::Retryable => "retryable",
                        Outcome::Permanent => "permanent",
                    };
                    let record = NewAttempt {
                        job,
                        latency_ms: a.latency_ms as i64,
                        outcome,
                        status: a.status.map(i64::from),
                        request: cut(sample::redact(&request, &secrets).to_string(), KEEP_REQUEST),
                        response: detail.clone(),
                    };
                    queue::record_attempt(&self.store, record).await?;
                    let why = match a.status {
                        Some(s) => format!("answered {s}: {}", cut(detail, 200)),
                        None => cut(detail, 300),
                    };
                    match a.outcome {
                        Outcome::Delivered => {}
                        Outcome::Permanent => verdict = Verdict::Dead(why),
                        Outcome::Retryable if !matches!(verdict, Verdict::Dead(_) | Verdict::Rejected(_)) => {
                            let pause = matches!(a.status, Some(429) | Some(503));
                            verdict = Verdict::Retry { retry_after: a.retry_after, pause, reason: why };
                        }
                        Outcome::Retryable => {}
                    }
                }
            }
        }
        Ok(verdict)
    }
}
