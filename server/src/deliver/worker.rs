//! Workers: claim due deliveries, map each event with the destination's current configuration,
//! send it through the transport, record the attempt, and decide: done, retry later (schedule,
//! `Retry-After`, a 429/503 pausing the whole destination), or dead-letter.

use super::batch_rows;
use super::queue::{self, AttemptRec, Job, Written};
use super::schedule::{PolicyPatch, RetryPolicy};
use crate::integrations::{handlers, sample, Integrations};
use crate::store::{new_id, now_ms, Store};
use crate::transport::{cut, Attempt, Outcome};
use model::integration::{Manifest, PartialOthers};
use model::mapping::Built;
use futures_util::StreamExt;
use serde_json::Value;
use std::collections::HashMap;

pub struct Worker {
    pub store: Store,
    pub integrations: Integrations,
    pub base_policy: RetryPolicy,
    pub flow: super::flow::Flow,
    pub alerts: super::alerts::Alerts,
    pub ready: super::ready::Cache,
}

#[derive(Debug)]
enum Verdict {
    Delivered,
    Retry { retry_after: Option<f64>, pause: bool, reason: String },
    Dead(String),
    /// Dead because the destination refused this one event of a batch (its answer named it): the
    /// destination itself works, so this is no failure of it (circuit breaker).
    Refused(String),
    /// Sent again at once without counting an attempt: the destination took none of a batch whose
    /// answer refused other events (`batching.partial.others = "retry"`).
    Resend(String),
    /// Dead because the destination's configuration cannot work (bad overrides, an integration
    /// no longer in the catalog, credentials refused with 401 or 403): alerted as misconfigured.
    Misconfigured(String),
    Rejected(String),
    Filtered(String),
    /// Flow control: back in the queue at this time, without an attempt.
    Deferred(i64),
}

impl Verdict {
    /// Which of two outcomes for one event wins (several actions, several requests).
    fn rank(&self) -> u8 {
        match self {
            Verdict::Filtered(_) | Verdict::Deferred(_) => 0,
            Verdict::Delivered => 1,
            Verdict::Resend(_) => 2,
            Verdict::Retry { .. } => 3,
            Verdict::Rejected(_) => 4,
            Verdict::Dead(_) | Verdict::Misconfigured(_) | Verdict::Refused(_) => 5,
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
    /// otherwise one by one, up to the destination's concurrency; then writes every attempt and
    /// new state in one transaction.
    pub async fn run_group(&self, claimed: Vec<Job>) -> anyhow::Result<()> {
        let Some(first) = claimed.first() else { return Ok(()) };
        let mut conn = self.store.pool().acquire().await?;
        let Some(row) = crate::store::destination(&mut conn, &first.destination_id).await? else { return Ok(()) };
        drop(conn);
        let events = queue::load_events(&self.store, batch_rows::seqs(&claimed)).await?;
        // One job per event from here on; `settle` writes them back per row.
        let jobs = batch_rows::expand(&claimed, &events);
        let claimed = &claimed;
        let loaded = self.integrations.catalog.get(&row.integration).cloned();
        let ready = match &loaded {
            Some(l) => Some(self.ready.get(&self.integrations, &row, l)?),
            None => None,
        };
        let patch = match &ready {
            Some(r) => r.patch.clone(),
            None => serde_json::from_value::<PolicyPatch>(row.delivery.clone()).unwrap_or_default(),
        };
        let policy = patch.apply(&self.base_policy);
        let size = ready.as_ref().map_or(1, |r| r.batch_size());
        if let Some(r) = ready.as_ref().filter(|r| r.batch_size() > 1 && jobs.len() < r.batch_size() && r.batch_wait_ms > 0) {
            // A partial batch waits for more events until the end of the time window its oldest
            // event fell in: windows are aligned, so everything deferred in one window comes due
            // (and is claimed) together.
            let oldest = jobs.iter().map(|j| j.created_at).min().unwrap_or(0);
            let due = (oldest / r.batch_wait_ms + 1) * r.batch_wait_ms;
            if due > now_ms() {
                let done = jobs.into_iter().map(|j| (j, Verdict::Deferred(due), Vec::new())).collect();
                return self.settle(claimed, done, &row, &patch, &policy, &events).await;
            }
        }
        let chunks: Vec<Vec<Job>> = jobs.chunks(size).map(<[Job]>::to_vec).collect();
        let (row, events, loaded, patch_ref, ready) = (&row, &events, &loaded, &patch, &ready);
        let results: Vec<anyhow::Result<Vec<(Job, Verdict, Vec<AttemptRec>)>>> = futures_util::stream::iter(chunks)
            .map(|chunk| async move { self.run(chunk, row, events, loaded.as_deref(), ready.as_deref(), patch_ref).await })
            .buffer_unordered(patch.concurrency.unwrap_or(super::flow::DEFAULT_CONCURRENCY) as usize)
            .collect()
            .await;
        let mut done = Vec::new();
        for r in results {
            match r {
                Ok(list) => done.extend(list),
                Err(e) => tracing::warn!(destination = %row.name, error = %e, "delivery failed; the lease will bring it back"),
            }
        }
        self.settle(claimed, done, row, &patch, &policy, events).await
    }

    /// Delivers jobs of one destination as one batch (or one job); nothing is written here.
    async fn run(
        &self,
        jobs: Vec<Job>,
        row: &crate::store::DestinationRow,
        events: &HashMap<i64, (Value, i64)>,
        loaded: Option<&crate::integrations::Loaded>,
        ready: Option<&super::ready::Ready>,
        patch: &PolicyPatch,
    ) -> anyhow::Result<Vec<(Job, Verdict, Vec<AttemptRec>)>> {
        // Flow control: over the rate or concurrency limit, the jobs wait without an attempt.
        let default_rate = loaded.and_then(|l| l.manifest.capabilities.rate_limit);
        let _permit = match self.flow.admit(&row.id, patch.rate_limit.or(default_rate), patch.concurrency.unwrap_or(super::flow::DEFAULT_CONCURRENCY)).await {
            Ok(permit) => permit,
            Err(wait) => {
                let at = now_ms() + wait.as_millis() as i64;
                return Ok(jobs.into_iter().map(|j| (j, Verdict::Deferred(at), Vec::new())).collect());
            }
        };
        let (Some(loaded), Some(ready)) = (loaded, ready) else {
            let why = format!("integration '{}' is not in the catalog", row.integration);
            return Ok(jobs.into_iter().map(|j| (j, Verdict::Misconfigured(why.clone()), Vec::new())).collect());
        };
        self.attempt(jobs, loaded, ready, events).await
    }

    /// Turns verdicts into new states, writes them with the attempts in one transaction, and feeds
    /// the circuit breaker and the alerts.
    async fn settle(
        &self,
        claimed: &[Job],
        done: Vec<(Job, Verdict, Vec<AttemptRec>)>,
        row: &crate::store::DestinationRow,
        patch: &PolicyPatch,
        policy: &RetryPolicy,
        events: &HashMap<i64, (Value, i64)>,
    ) -> anyhow::Result<()> {
        let now = now_ms();
        let (mut delivered, mut failures, mut pause_until, mut dead) = (false, 0i64, None::<i64>, None::<String>);
        let mut misconfigured = None::<String>;
        let mut written = Vec::with_capacity(done.len());
        for (job, verdict, attempts) in done {
            let count = job.attempts + 1;
            let label = match &verdict {
                Verdict::Delivered => "delivered",
                Verdict::Retry { .. } | Verdict::Resend(_) => "retrying",
                Verdict::Dead(_) | Verdict::Misconfigured(_) | Verdict::Refused(_) => "dead",
                Verdict::Rejected(_) => "rejected",
                Verdict::Filtered(_) => "filtered",
                Verdict::Deferred(_) => "deferred",
            };
            if matches!(verdict, Verdict::Deferred(_)) {
                metrics::counter!("switchyard_deliveries_deferred_total", "destination" => row.name.clone()).increment(1);
            } else {
                metrics::counter!("switchyard_deliveries_total", "destination" => row.name.clone(), "outcome" => label).increment(1);
            }
            let (state, count, next, reason) = match verdict {
                Verdict::Deferred(at) => ("pending", job.attempts, at, None),
                Verdict::Delivered => {
                    delivered = true;
                    if let Some((_, received_at)) = events.get(&job.event_seq) {
                        metrics::histogram!("switchyard_delivery_latency_seconds").record((now - received_at).max(0) as f64 / 1000.0);
                    }
                    ("succeeded", count, now, None)
                }
                Verdict::Rejected(r) => ("rejected", count, now, Some(r)),
                Verdict::Filtered(r) => ("filtered", count, now, Some(r)),
                Verdict::Misconfigured(r) => {
                    failures += 1;
                    misconfigured = Some(r.clone());
                    ("dead", count, now, Some(r))
                }
                Verdict::Dead(r) => {
                    failures += 1;
                    dead = Some(r.clone());
                    ("dead", count, now, Some(r))
                }
                Verdict::Refused(r) => {
                    dead = Some(r.clone());
                    ("dead", count, now, Some(r))
                }
                Verdict::Resend(r) => ("retrying", job.attempts, now, Some(r)),
                Verdict::Retry { retry_after, pause, reason } => {
                    failures += 1;
                    let age = std::time::Duration::from_millis((now - job.created_at).max(0) as u64);
                    if policy.exhausted(count as u32, age) {
                        let r = format!("gave up after {count} attempts: {reason}");
                        dead = Some(r.clone());
                        ("dead", count, now, Some(r))
                    } else {
                        let scheduled = policy.delay(count as u32).as_millis() as i64;
                        let after = retry_after.map(|s| (s.min(policy.retry_after_cap_secs) * 1000.0) as i64);
                        let wait = after.map_or(scheduled, |a| a.max(scheduled));
                        if pause {
                            // A 429 or 503 holds back the whole destination until then.
                            pause_until = Some(pause_until.map_or(now + wait, |p: i64| p.max(now + wait)));
                        }
                        ("retrying", count, now + wait, Some(reason))
                    }
                }
            };
            written.push(Written { job, attempts, state, count, next_attempt_at: next, reason, shape: batch_rows::Shape::Same });
        }
        let written = batch_rows::collapse(claimed, written);
        let last = written.iter().rev().find_map(|w| w.reason.clone()).unwrap_or_default();
        let in_a_row = queue::write_results(&self.store, &row.id, written, delivered, failures, pause_until).await?;
        if failures > 0 && in_a_row >= patch.breaker_failures.unwrap_or(20) as i64 {
            let probe = (patch.breaker_probe_secs.unwrap_or(60.0) * 1000.0) as i64;
            let why = format!("{in_a_row} failures in a row; last: {last}");
            queue::open_circuit(&self.store, &row.id, now + probe, &why).await?;
            self.alerts.notify(&row.name, "paused", &why);
        }
        // Misconfigured shows on the destination until it is saved again; refused credentials
        // also until a delivery succeeds.
        if let Some(r) = misconfigured {
            let mut conn = self.store.pool().acquire().await?;
            crate::store::set_destination_status(&mut conn, &row.id, Some(&r)).await?;
            self.alerts.notify(&row.name, "misconfigured", &r);
        } else if delivered && row.status_reason.as_deref().is_some_and(crate::integrations::destination::credentials_refused) {
            let mut conn = self.store.pool().acquire().await?;
            crate::store::set_destination_status(&mut conn, &row.id, None).await?;
        }
        if let Some(r) = dead {
            self.alerts.notify(&row.name, "dead_letter", &r);
        }
        Ok(())
    }

    /// Maps the events and sends the requests; one verdict (and its attempts) per job.
    async fn attempt(
        &self,
        jobs: Vec<Job>,
        loaded: &crate::integrations::Loaded,
        ready: &super::ready::Ready,
        events: &HashMap<i64, (Value, i64)>,
    ) -> anyhow::Result<Vec<(Job, Verdict, Vec<AttemptRec>)>> {
        let m = &loaded.manifest;
        let mut verdicts: Vec<Verdict> = jobs
            .iter()
            .map(|j| match events.get(&j.event_seq) {
                Some(_) => Verdict::Filtered("no action of the integration takes this event".into()),
                None => Verdict::Dead("the event is no longer stored (past the retention period?)".into()),
            })
            .collect();
        let mut records: Vec<Vec<AttemptRec>> = jobs.iter().map(|_| Vec::new()).collect();
        // Positions of the stored events among the jobs.
        let present: Vec<usize> = (0..jobs.len()).filter(|i| events.contains_key(&jobs[*i].event_seq)).collect();
        let values: Vec<&Value> = present.iter().map(|i| &events[&jobs[*i].event_seq].0).collect();
        let (settings, secrets) = (&ready.settings, &ready.secrets);
        let prepared = match &ready.prepared {
            Ok(p) => p,
            Err(e) => return Ok(jobs.into_iter().map(|j| (j, Verdict::Misconfigured(e.clone()), Vec::new())).collect()),
        };
        let built = handlers::for_handler(m.handler.as_deref()).map(prepared, settings, &values, now_ms() / 1000);
        let transport = self.integrations.transports.get(&m.capabilities.transport);
        for b in built {
            match b {
                Built::Rejected { reason, event, .. } => {
                    let j = present[event];
                    records[j].push(AttemptRec {
                        bulk_of: None,
                        id: new_id("att"),
                        message_id: jobs[j].message_id.clone(),
                        events: 1,
                        latency_ms: 0,
                        outcome: "rejected",
                        status: None,
                        request: "{}".into(),
                        response: reason.clone(),
                        response_headers: None,
                    });
                    verdicts[j].merge(Verdict::Rejected(reason));
                }
                Built::Request { request, events: idx, .. } => {
                    let mut a = transport.send(settings, &request).await;
                    a.mask(secrets);
                    let detail = a.detail.clone();
                    let headers = a.headers.as_ref().map(|h| serde_json::to_string(h).unwrap_or_default());
                    let outcome = match a.outcome {
                        Outcome::Delivered => "delivered",
                        Outcome::Retryable => "retryable",
                        Outcome::Permanent => "permanent",
                    };
                    let shown = cut(sample::redact_text(&request, secrets), self.integrations.log_request_bytes);
                    let why = match a.status {
                        Some(s) => format!("answered {s}: {}", cut(detail.clone(), 200)),
                        None => cut(detail.clone(), 300),
                    };
                    // A batch's request is logged once, with its first event; the others point to it
                    // (by the logged attempt's id, which a privacy deletion follows).
                    let logged = new_id("att");
                    let pointer = if idx.len() > 1 {
                        let first = idx.first().and_then(|i| events.get(&jobs[present[*i]].event_seq)).and_then(|(e, _)| e.get("messageId").cloned());
                        serde_json::json!({"batch": {"size": idx.len(), "logged_with": first, "attempt": logged}}).to_string()
                    } else {
                        String::new()
                    };
                    let size = idx.len() as i64;
                    // A batch answer naming the events it refused: those are dead, the others as it says.
                    let partial = partly(m, &a, idx.len());
                    for (k, i) in idx.into_iter().enumerate() {
                        let j = present[i];
                        let (outcome, v) = match &partial {
                            Some((refused, _)) if refused.contains(&k) => ("permanent", Verdict::Refused(format!("refused in its batch: {why}"))),
                            Some((_, PartialOthers::Delivered)) => ("delivered", Verdict::Delivered),
                            Some((_, PartialOthers::Retry)) => {
                                ("retryable", Verdict::Resend(format!("sent again without the events its batch's answer refused ({why})")))
                            }
                            None => (outcome, match a.outcome {
                                Outcome::Delivered => Verdict::Delivered,
                                Outcome::Permanent if matches!(a.status, Some(401) | Some(403)) => Verdict::Misconfigured(why.clone()),
                                Outcome::Permanent => Verdict::Dead(why.clone()),
                                Outcome::Retryable => {
                                    let pause = matches!(a.status, Some(429) | Some(503));
                                    Verdict::Retry { retry_after: a.retry_after, pause, reason: why.clone() }
                                }
                            }),
                        };
                        records[j].push(AttemptRec {
                            // Events of one request that end differently each keep a row of their own.
                            bulk_of: (k > 0 && partial.is_none()).then(|| logged.clone()),
                            id: if k == 0 { logged.clone() } else { new_id("att") },
                            message_id: jobs[j].message_id.clone(),
                            events: size,
                            latency_ms: a.latency_ms as i64,
                            outcome,
                            status: a.status.map(i64::from),
                            request: if k == 0 { shown.clone() } else { pointer.clone() },
                            response: match &v {
                                _ if k == 0 => detail.clone(),
                                Verdict::Refused(r) => r.clone(),
                                _ => String::new(),
                            },
                            response_headers: if k == 0 { headers.clone() } else { None },
                        });
                        verdicts[j].merge(v);
                    }
                }
            }
        }
        Ok(jobs.into_iter().zip(verdicts).zip(records).map(|((j, v), r)| (j, v, r)).collect())
    }
}

/// The positions in a batch that its answer names as refused, and what became of the others
/// (the integration's `batching.partial`); None when the answer is the whole batch's.
fn partly(m: &Manifest, a: &Attempt, size: usize) -> Option<(Vec<usize>, PartialOthers)> {
    let p = m.capabilities.batching.as_ref()?.partial.as_ref()?;
    if !a.status.is_some_and(|s| p.status.contains(&s)) {
        return None;
    }
    let body: Value = serde_json::from_str(a.body.as_deref()?).ok()?;
    let refused = model::mapping::refused_positions(p, &body, size);
    (!refused.is_empty()).then_some((refused, p.others))
}
