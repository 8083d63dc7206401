//! The delivery engine: a router that turns stored events into deliveries, and workers that
//! send them with retries, dead-letter, ordering per user and an attempt log (see README).

pub mod alerts;
pub mod batch_rows;
pub mod flow;
mod listing;
pub mod queue;
pub mod ready;
pub mod router;
pub mod schedule;
mod shared_rate;
mod sqlite_queue;
pub mod vacuum;
pub mod worker;

use crate::integrations::Integrations;
use crate::store::Store;
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often an idle router looks for new events, and an idle worker for due deliveries. The
/// router is also woken by this process's event writers after each commit (events stored by
/// other nodes are found by the poll), and wakes the workers of its node when it has routed
/// something. Its steps are at least ROUTER_SPACING apart, so under a stream of small commits
/// events still gather into few transactions (each holds SQLite's write turn); waking it cut
/// ingest-to-delivered p50 by about the half poll it used to wait (see README, Delivery).
const ROUTER_IDLE: Duration = Duration::from_millis(10);
const ROUTER_SPACING: Duration = Duration::from_millis(2);
const IDLE: Duration = Duration::from_millis(50);
/// Events per claim (a batch row counts its events), and claim loops per node: while one loop sends, another writes its results.
/// (small claims keep latency low; after a full one, under a backlog, claims grow)
const CLAIM: i64 = 64;
const CLAIM_BACKLOG: i64 = 512;
const LOOPS: usize = 4;
const CONCURRENCY: usize = 16;
/// In-flight deliveries get this long to finish at shutdown; the rest are released.
const DRAIN: Duration = Duration::from_secs(10);

/// Starts the router and the workers; they stop when `shutdown` turns true.
pub fn start(
    store: Store,
    integrations: Integrations,
    lease_ms: i64,
    base_policy: schedule::RetryPolicy,
    alerts: alerts::Alerts,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let mut router = router::Router::new(store.clone(), integrations.clone());
    let mut stop_router = shutdown.clone();
    // The router wakes one idle claim loop after routing something; a loop whose claim came back
    // full wakes another, so loops join in under load and stay out of each other's way otherwise.
    let routed = Arc::new(tokio::sync::Notify::new());
    let wake = routed.clone();
    let stored = store.events_stored().clone();
    let routing = tokio::spawn(async move {
        loop {
            // A step that took less than a batch waits for the next commit (or poll), and at
            // least ROUTER_SPACING, so routing happens in few transactions however fast events arrive.
            match router.step().await {
                Ok(routed) => {
                    if routed.pending > 0 {
                        wake.notify_one();
                    }
                    if routed.full {
                        continue;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "router step failed"),
            }
            let stopping = tokio::select! {
                _ = async {
                    tokio::time::sleep(ROUTER_SPACING).await;
                    let _ = tokio::time::timeout(ROUTER_IDLE - ROUTER_SPACING, stored.notified()).await;
                } => false,
                r = stop_router.wait_for(|s| *s) => r.is_ok(),
            };
            if stopping {
                break;
            }
        }
    });
    let worker = Arc::new(worker::Worker {
        store: store.clone(),
        integrations,
        base_policy,
        // One node on a SQLite file; on PostgreSQL the rate limits are shared by every node.
        flow: match store.backend() {
            crate::store::Backend::Sqlite => flow::Flow::default(),
            crate::store::Backend::Postgres => flow::Flow::shared(store.clone()),
        },
        alerts,
        ready: Default::default(),
    });
    let loops: Vec<_> = (0..LOOPS)
        .map(|i| tokio::spawn(claim_loop(i == 0, worker.clone(), store.clone(), lease_ms, routed.clone(), shutdown.clone())))
        .collect();
    tokio::spawn(async move {
        for l in loops {
            let _ = l.await;
        }
        let _ = routing.await;
    })
}

/// Claims due deliveries and runs them, until shutdown; `samples_depth` also samples the queue depth
/// (expired leases need no sweep: the claim takes them).
async fn claim_loop(
    samples_depth: bool,
    worker: Arc<worker::Worker>,
    store: Store,
    lease_ms: i64,
    routed: Arc<tokio::sync::Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last_sample = std::time::Instant::now() - Duration::from_secs(60);
    let (mut limit, mut per_row) = (CLAIM, 1);
    loop {
        if *shutdown.borrow() {
            break;
        }
        if samples_depth && last_sample.elapsed() >= Duration::from_secs(1) {
            last_sample = std::time::Instant::now();
            if let Ok((depth, oldest)) = queue::depth(&store).await {
                metrics::gauge!("switchyard_queue_depth").set(depth as f64);
                metrics::gauge!("switchyard_queue_oldest_age_seconds").set(oldest as f64 / 1000.0);
            }
        }
        let jobs = match queue::claim(&store, limit, (limit / per_row).max(2), lease_ms).await {
            Ok(j) => j,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim deliveries");
                Vec::new()
            }
        };
        if jobs.is_empty() {
            let stopping = tokio::select! {
                _ = tokio::time::sleep(IDLE) => false,
                _ = routed.notified() => false,
                r = shutdown.wait_for(|s| *s) => r.is_ok(),
            };
            if stopping {
                break;
            }
            continue;
        }
        // Limits count events; a batch row holds many, so the next claim looks at fewer rows.
        let events: usize = jobs.iter().map(|j| j.members.len().max(1)).sum();
        let full = events as i64 >= limit;
        per_row = (events / jobs.len()).max(1) as i64;
        limit = if full { CLAIM_BACKLOG } else { CLAIM };
        if full {
            routed.notify_one();
        }
        let ids: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();
        // One group per destination (claim order kept): batches form within a group.
        let mut groups: Vec<Vec<queue::Job>> = Vec::new();
        for job in jobs {
            match groups.iter_mut().find(|g| g[0].destination_id == job.destination_id) {
                Some(g) => g.push(job),
                None => groups.push(vec![job]),
            }
        }
        let run = futures_util::stream::iter(groups)
            .map(|group| {
                let w = worker.clone();
                async move {
                    if let Err(e) = w.run_group(group).await {
                        tracing::warn!(error = %e, "delivery failed; the lease will bring it back");
                    }
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect::<Vec<()>>();
        let mut stop = shutdown.clone();
        tokio::pin!(run);
        let stopping = tokio::select! {
            _ = &mut run => false,
            r = stop.wait_for(|s| *s) => r.is_ok(),
        };
        if stopping {
            // Stop claiming; give what is in flight a deadline, then hand the rest back.
            if tokio::time::timeout(DRAIN, &mut run).await.is_err() {
                let _ = queue::release(&store, &ids).await;
            }
            break;
        }
    }
}
