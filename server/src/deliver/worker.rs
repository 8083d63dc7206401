//! Workers: claim due deliveries, map each event with the destination's current configuration,
//! send it through the transport, record the attempt, and decide: done, retry later (schedule,
//! `Retry-After`, a 429/503 pausing the whole destination), or dead-letter.

use super::queue::{self, Job, NewAttempt};
use super::schedule::{PolicyPatch, RetryPolicy};
use crate::integrations::{destination, handlers, sample, Integrations};
use crate::store::{now_ms, Store};
use crate::transport::Outcome;
use model::mapping::{effective_settings, Built, Prepared};
use futures_util::StreamExt;
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

#[derive(Debug)]
enum Verdict {
    Delivered,
    Retry { retry_after: Option<f64>, pause: bool, reason: String },
    Dead(String),
    Rejected(String),
    Filtered(String),
}

impl Verdict {
    /// Which of two outcomes for one event wins (several actions, several requests).
    fn rank(&self) -> u8 {
        match self {
            Verdict::Filtered(_) => 0,
            Verdict::Delivered => 1,
            Verdict::Retry { .. } => 2,
            Verdict::Rejected(_) => 3,
            Verdict::Dead(_) => 4,
        }
    }

    fn merge(&mut self, other: Verdict) {
        if other.rank() > self.rank() {
            *self = other;
        }
    }
}

impl Worker {
    /// Delivers claimed jobs of one destination: in batches where the integration batches,
    /// otherwise one by one, up to the destination's concurrency.
    pub async fn run_group(&self, jobs: Vec<Job>) -> anyhow::Result<()> {
        let Some(first) = jobs.first() else { return Ok(()) };
        let mut conn = self.store.pool().acquire().await?;
        let Some(row) = crate::store::destination(&mut conn, &first.destination_id).await? else { return Ok(()) };
        drop(conn);
        let size = self
            .integrations
            .catalog
            .get(&row.integration)
            .and_then(|l| l.manifest.capabilities.batching.as_ref())
            .map_or(1, |b| b.max_size.max(1) as usize);
        let chunks: Vec<Vec<Job>> = jobs.chunks(size).map(<[Job]>::to_vec).collect();
        let row = &row;
        futures_util::stream::iter(chunks)
            .map(|chunk| async move {
                if let Err(e) = self.run(chunk, row).await {
                    tracing::warn!(destination = %row.name, error = %e, "delivery failed; the lease will bring it back");
                }
            })
            .buffer_unordered(16)
            .collect::<Vec<()>>()
            .await;
        Ok(())
    }

    /// Delivers jobs of one destination as one batch (or one job) and records their new states.
    async fn run(&self, jobs: Vec<Job>, row: &crate::store::DestinationRow) -> anyhow::Result<()> {
        let mut events = Vec::with_capacity(jobs.len());
        let mut conn = self.store.pool().acquire().await?;
        for job in &jobs {
            let e: Option<(String, i64)> =
                sqlx::query_as("SELECT payload, received_at FROM events WHERE seq = $1").bind(job.event_seq).fetch_optional(&mut *conn).await?;
            events.push(e.map(|(p, at)| (serde_json::from_str::<Value>(&p).unwrap_or_default(), at)));
        }
        drop(conn);
        let patch = serde_json::from_value::<PolicyPatch>(row.delivery.clone()).unwrap_or_default();
        let policy = patch.apply(&self.base_policy);
        // Flow control: over the rate or concurrency limit, the jobs wait without an attempt.
        let default_rate = self.integrations.catalog.get(&row.integration).and_then(|l| l.manifest.capabilities.rate_limit);
        let _permit = match self.flow.admit(&row.id, patch.rate_limit.or(default_rate), patch.concurrency.unwrap_or(16)) {
            Ok(permit) => permit,
            Err(wait) => {
                for job in &jobs {
                    queue::defer(&self.store, &job.id, now_ms() + wait.as_millis() as i64).await?;
                }
                return Ok(());
            }
        };
        let verdicts = match self.integrations.catalog.get(&row.integration) {
            None => jobs.iter().map(|_| Verdict::Dead(format!("integration '{}' is not in the catalog", row.integration))).collect(),
            Some(loaded) => self.attempt(&jobs, row, loaded, &events).await?,
        };
        for ((job, verdict), event) in jobs.iter().zip(verdicts).zip(&events) {
            if matches!(verdict, Verdict::Delivered) {
                if let Some((_, received_at)) = event {
                    let secs = (now_ms() - received_at).max(0) as f64 / 1000.0;
                    metrics::histogram!("switchyard_delivery_latency_seconds").record(secs);
                }
            }
            self.settle(job, verdict, row, &patch, &policy).await?;
        }
        Ok(())
    }

    /// Records a job's new state: done, retry later, or dead-letter; feeds the circuit breaker.
    async fn settle(&self, job: &Job, verdict: Verdict, row: &crate::store::DestinationRow, patch: &PolicyPatch, policy: &RetryPolicy) -> anyhow::Result<()> {
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

    /// Maps the events and sends the requests; one verdict per job.
    async fn attempt(
        &self,
        jobs: &[Job],
        row: &crate::store::DestinationRow,
        loaded: &crate::integrations::Loaded,
        events: &[Option<(Value, i64)>],
    ) -> anyhow::Result<Vec<Verdict>> {
        let m = &loaded.manifest;
        let mut verdicts: Vec<Verdict> = events
            .iter()
            .map(|e| match e {
                Some(_) => Verdict::Filtered("no action of the integration takes this event".into()),
                None => Verdict::Dead("the event is no longer stored (past the retention period?)".into()),
            })
            .collect();
        // Positions of the stored events among the jobs.
        let present: Vec<usize> = (0..events.len()).filter(|i| events[*i].is_some()).collect();
        let values: Vec<Value> = present.iter().map(|i| events[*i].as_ref().map(|e| e.0.clone()).unwrap_or_default()).collect();
        let full = destination::full_settings(loaded, &self.integrations.cipher, row)?;
        let settings = effective_settings(&full, false);
        let prepared = match Prepared::new(m, &row.actions) {
            Ok(p) => p,
            Err(e) => return Ok(jobs.iter().map(|_| Verdict::Dead(format!("misconfigured: {e}"))).collect()),
        };
        let built = handlers::for_handler(m.handler.as_deref()).map(&prepared, &settings, &values, now_ms() / 1000);
        let secrets = sample::secret_values(&self.integrations.cipher.open(&row.secrets)?, &full);
        let transport = self.integrations.transports.get(&m.capabilities.transport);
        for b in built {
            match b {
                Built::Rejected { reason, event, .. } => {
                    let job = &jobs[present[event]];
                    let a = NewAttempt { job, latency_ms: 0, outcome: "rejected", status: None, request: "{}".into(), response: reason.clone() };
                    queue::record_attempt(&self.store, a).await?;
                    verdicts[present[event]].merge(Verdict::Rejected(reason));
                }
                Built::Request { request, events: idx, .. } => {
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
                    let shown = cut(sample::redact(&request, &secrets).to_string(), KEEP_REQUEST);
                    let why = match a.status {
                        Some(s) => format!("answered {s}: {}", cut(detail.clone(), 200)),
                        None => cut(detail.clone(), 300),
                    };
                    for i in idx {
                        let record = NewAttempt {
                            job: &jobs[present[i]],
                            latency_ms: a.latency_ms as i64,
                            outcome,
                            status: a.status.map(i64::from),
                            request: shown.clone(),
                            response: detail.clone(),
                        };
                        queue::record_attempt(&self.store, record).await?;
                        let v = match a.outcome {
                            Outcome::Delivered => Verdict::Delivered,
                            Outcome::Permanent => Verdict::Dead(why.clone()),
                            Outcome::Retryable => {
                                let pause = matches!(a.status, Some(429) | Some(503));
                                Verdict::Retry { retry_after: a.retry_after, pause, reason: why.clone() }
                            }
                        };
                        verdicts[present[i]].merge(v);
                    }
                }
            }
        }
        Ok(verdicts)
    }
}
