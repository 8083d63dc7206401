//! The durable queue in the database: delivery rows and their states, claims with a lease
//! (`FOR UPDATE SKIP LOCKED` on PostgreSQL), attempts, dead letters and replays.

use super::batch_rows::Shape;
use crate::store::{get, new_id, now_ms, Backend, Store};
use serde_json::Value;
use sqlx::Row;
use std::collections::HashMap;

/// A claimed delivery.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub destination_id: String,
    pub event_seq: i64,
    pub message_id: String,
    pub attempts: i64,
    pub created_at: i64,
    /// A batch row's events (seqs, this row's first); empty for a row of one event.
    pub members: Vec<i64>,
}

/// Claims due deliveries: not paused, enabled destinations, and, in ordered lanes, only the
/// oldest unfinished event of each user.
///
/// A claim only sets the lease: the delivery stays pending (or retrying) and is "in flight" while
/// its lease runs, so a crashed worker's jobs come back when the lease ends, without a sweep. The
/// claim changes no indexed column, which lets PostgreSQL update the row in place (a HOT update:
/// no new index entries). On a SQLite file the lease is held in memory and nothing is written.
///
/// Each destination is claimed from through its own part of the due index (oldest due first),
/// the destinations taken in turn from a rotating start until the claim is full: a paused
/// destination's backlog is never walked, and one destination's backlog does not hold back the
/// others.
///
/// `limit` counts events (a batch row counts its events). On PostgreSQL, which locks every row a
/// claim looks at, `rows` caps them (from what the caller saw of rows' sizes); a SQLite claim
/// reads rows one at a time until it has its events.
pub async fn claim(store: &Store, limit: i64, rows: i64, lease_ms: i64) -> anyhow::Result<Vec<Job>> {
    // On PostgreSQL the ids go through an array, so the update finds its rows by primary key
    // whatever the planner thinks of the queue's size (a semi-join could scan the whole table).
    let (ids, close, lock) = match store.backend() {
        Backend::Postgres => ("= ANY(ARRAY(", "))", "FOR UPDATE OF d SKIP LOCKED"),
        Backend::Sqlite => ("IN (", ")", ""),
    };
    // $1: the lease's end, $2: now, $3: how many events, $4: the destination, $5: how many rows.
    let due = "FROM deliveries d JOIN destinations x ON x.id = d.destination_id
            WHERE d.destination_id = $4 AND d.state IN ('pending', 'retrying') AND d.next_attempt_at <= $2
              AND (d.lease_until IS NULL OR d.lease_until <= $2)
              AND x.enabled = 1
              AND (x.paused_until IS NULL OR x.paused_until <= $2)
              AND (d.order_key IS NULL OR NOT EXISTS (
                  SELECT 1 FROM deliveries e WHERE e.destination_id = d.destination_id AND e.order_key = d.order_key
                    AND e.event_seq < d.event_seq AND e.state IN ('pending', 'retrying')))
            ORDER BY d.next_attempt_at, d.event_seq LIMIT $5";
    static TURN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let turn = TURN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut jobs = match store.direct() {
        // On a SQLite file the leases are held in memory (see `direct::Leases`): the claim only reads.
        Some(direct) => {
            let sql = format!("SELECT d.id, d.destination_id, d.event_seq, d.message_id, d.attempts, d.created_at, d.members {due}");
            super::sqlite_queue::claim(direct, &sql, CLAIMABLE, turn, limit, lease_ms).await?
        }
        None => {
            // The rows in due order up to `limit` events (the row that reaches it included).
            let sql = format!(
                "UPDATE deliveries SET lease_until = $1, updated_at = $2 WHERE id {ids}SELECT id FROM (
                    SELECT id, SUM(events) OVER (ORDER BY next_attempt_at, event_seq ROWS UNBOUNDED PRECEDING) - events AS before
                    FROM (SELECT d.id, d.events, d.next_attempt_at, d.event_seq {due} {lock}) l) w WHERE before < $3{close}
                 RETURNING id, destination_id, event_seq, message_id, attempts, created_at, members, events"
            );
            claim_pooled(store, &sql, turn, limit, rows, lease_ms).await?
        }
    };
    jobs.sort_by_key(|j| j.event_seq);
    Ok(jobs)
}

/// The destinations a claim may take from (`$1`: now).
pub(super) const CLAIMABLE: &str = "SELECT id FROM destinations WHERE enabled = 1 AND (paused_until IS NULL OR paused_until <= $1) ORDER BY id";

/// The order in which a claim visits `n` destinations, starting at `turn`.
pub(super) fn rotation(n: usize, turn: usize) -> impl Iterator<Item = usize> {
    (0..n).map(move |i| (turn + i) % n.max(1))
}

/// The queue's own transactions on PostgreSQL (routing, claims, results) do not wait for their
/// commit to reach the disk: events are stored durably by ingest, and what these write is derived
/// from them. If the last fraction of a second of them is lost (a crash of PostgreSQL or of the
/// machine), events are routed again (the position and the deliveries move together), a lease
/// is taken again, or an event delivered again (at least once). That wait was most of a delivery's
/// latency at low load.
pub(super) const QUEUE_COMMIT: &str = "SET LOCAL synchronous_commit = off";

/// PostgreSQL plans the queue's statements from statistics that lag behind a table growing from
/// empty: a plan made while `deliveries` was small, kept by a prepared statement, scanned the whole
/// table for each of a claim's ids (a third of the database's time while draining a backlog).
/// These settings, for the transaction only, keep the statements on their indexes.
///
/// A transaction whose PostgreSQL settings (`SET LOCAL …`) are sent with its `BEGIN`, in one
/// round trip; on SQLite a write transaction (`write`) or a read one, without settings.
pub(super) async fn begin_with(store: &Store, write: bool, settings: &str) -> anyhow::Result<sqlx::Transaction<'static, sqlx::Any>> {
    Ok(match store.backend() {
        Backend::Postgres => store.pool().begin_with(format!("BEGIN; {settings}")).await?,
        Backend::Sqlite if write => store.begin().await?,
        Backend::Sqlite => store.pool().begin().await?,
    })
}

async fn claim_pooled(store: &Store, sql: &str, turn: usize, limit: i64, max_rows: i64, lease_ms: i64) -> anyhow::Result<Vec<Job>> {
    let now = now_ms();
    let _turn = store.write_turn().await;
    // Walk the due index in order and stop at the limit: a bitmap scan (which the planner picks
    // when its statistics lag behind a growing queue) reads every entry the index still holds for
    // claimed and finished deliveries, 10 to 100 ms a claim under load.
    let mut tx = begin_with(store, true, &format!("SET LOCAL enable_bitmapscan = off; SET LOCAL enable_seqscan = off; {QUEUE_COMMIT}")).await?;
    let destinations: Vec<String> = sqlx::query_scalar(CLAIMABLE).bind(now).fetch_all(&mut *tx).await?;
    let mut rows = Vec::new();
    let mut events = 0;
    for i in rotation(destinations.len(), turn) {
        let left = limit - events;
        if left <= 0 {
            break;
        }
        let found = sqlx::query(sql).bind(now + lease_ms).bind(now).bind(left).bind(&destinations[i]).bind(max_rows.min(left)).fetch_all(&mut *tx).await?;
        for r in &found {
            events += get::<i64>(r, "events").unwrap_or(1);
        }
        rows.extend(found);
    }
    tx.commit().await?;
    rows.iter()
        .map(|r| {
            Ok(Job {
                id: get(r, "id")?,
                destination_id: get(r, "destination_id")?,
                event_seq: get(r, "event_seq")?,
                message_id: get(r, "message_id")?,
                attempts: get::<i64>(r, "attempts")?,
                created_at: get(r, "created_at")?,
                members: super::batch_rows::parse(get(r, "members")?),
            })
        })
        .collect()
}

/// The stored events of claimed jobs, by seq: the parsed payload and when it was received.
pub async fn load_events(store: &Store, seqs: Vec<i64>) -> anyhow::Result<HashMap<i64, (Value, i64)>> {
    let parse = |p: &str| serde_json::from_str::<Value>(p).unwrap_or_default();
    if let Some(direct) = store.direct() {
        let found = super::sqlite_queue::load_events(direct, seqs).await?;
        return Ok(found.into_iter().map(|(seq, (p, at))| (seq, (parse(&p), at))).collect());
    }
    let mut events = HashMap::with_capacity(seqs.len());
    for part in seqs.chunks(100) {
        let marks: Vec<String> = (1..=part.len()).map(|i| format!("${i}")).collect();
        let sql = format!("SELECT seq, payload, received_at FROM events WHERE seq IN ({})", marks.join(", "));
        let mut q = sqlx::query_as::<_, (i64, String, i64)>(&sql);
        for seq in part {
            q = q.bind(*seq);
        }
        for (seq, p, at) in q.fetch_all(store.pool()).await? {
            events.insert(seq, (parse(&p), at));
        }
    }
    Ok(events)
}

/// Gives claimed jobs back at once (shutdown).
pub async fn release(store: &Store, ids: &[String]) -> anyhow::Result<()> {
    if let Some(direct) = store.direct() {
        direct.leases().release(ids);
        return Ok(());
    }
    for id in ids {
        sqlx::query("UPDATE deliveries SET lease_until = NULL WHERE id = $1 AND state IN ('pending', 'retrying')")
            .bind(id)
            .execute(store.pool())
            .await?;
    }
    Ok(())
}

/// Counts a failure (returns failures in a row) or, with `ok`, resets the count and closes the breaker.
pub async fn note_result(store: &Store, destination_id: &str, ok: bool) -> anyhow::Result<i64> {
    if ok {
        sqlx::query("UPDATE destinations SET consecutive_failures = 0, circuit_reason = NULL WHERE id = $1 AND (consecutive_failures > 0 OR circuit_reason IS NOT NULL)")
            .bind(destination_id)
            .execute(store.pool())
            .await?;
        return Ok(0);
    }
    let mut tx = store.begin().await?;
    sqlx::query("UPDATE destinations SET consecutive_failures = consecutive_failures + 1 WHERE id = $1").bind(destination_id).execute(&mut *tx).await?;
    let n: i64 = sqlx::query_scalar("SELECT consecutive_failures FROM destinations WHERE id = $1").bind(destination_id).fetch_one(&mut *tx).await?;
    tx.commit().await?;
    Ok(n)
}

/// Opens the breaker: paused until the probe time, with the reason shown on the destination.
pub async fn open_circuit(store: &Store, destination_id: &str, until: i64, reason: &str) -> anyhow::Result<()> {
    sqlx::query("UPDATE destinations SET paused_until = $1, circuit_reason = $2 WHERE id = $3 AND (paused_until IS NULL OR paused_until < $1)")
        .bind(until)
        .bind(reason)
        .bind(destination_id)
        .execute(store.pool())
        .await?;
    Ok(())
}

pub async fn pause_destination(store: &Store, destination_id: &str, until: Option<i64>) -> anyhow::Result<()> {
    sqlx::query("UPDATE destinations SET paused_until = $1 WHERE id = $2").bind(until).bind(destination_id).execute(store.pool()).await?;
    Ok(())
}

pub use super::listing::{attempts, deliveries, replays, AttemptOut, DeliveryOut, ReplayRecord};

/// Which dead letters a replay takes when no ids are given.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeadFilter {
    /// Dead-lettered at or after this time (ms since the epoch).
    pub since: Option<i64>,
    /// Dead-lettered at or before this time (ms).
    pub until: Option<i64>,
    /// Only those whose reason contains this text (for example `answered 400`).
    pub reason_contains: Option<String>,
}

/// Puts dead letters back in the queue (all, or the given ids); returns how many, recording the replay.
pub async fn replay(
    store: &Store,
    destination_id: &str,
    ids: Option<&[String]>,
    filter: &DeadFilter,
    actor: &str,
    recorded: &str,
) -> anyhow::Result<(String, u64)> {
    let now = now_ms();
    let replay_id = new_id("rpl");
    let mut tx = store.begin().await?;
    let mut count = 0;
    // Each replayed delivery is marked with its replay: `replays` tells how they ended.
    let base = "UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = $1, created_at = $1, updated_at = $1, reason = NULL, replay_id = $2 \
                WHERE destination_id = $3 AND state = 'dead'";
    match ids {
        Some(ids) => {
            for id in ids {
                count += sqlx::query(&format!("{base} AND id = $4")).bind(now).bind(&replay_id).bind(destination_id).bind(id).execute(&mut *tx).await?.rows_affected();
            }
        }
        None => {
            let text = filter.reason_contains.as_deref().unwrap_or("").replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
            count = sqlx::query(&format!("{base} AND updated_at >= $4 AND updated_at <= $5 AND COALESCE(reason, '') LIKE $6 ESCAPE '\\'"))
                .bind(now)
                .bind(&replay_id)
                .bind(destination_id)
                .bind(filter.since.unwrap_or(0))
                .bind(filter.until.unwrap_or(i64::MAX))
                .bind(format!("%{text}%"))
                .execute(&mut *tx)
                .await?
                .rows_affected()
        }
    }
    sqlx::query("INSERT INTO replays (id, destination_id, actor, at, count, filter) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(&replay_id)
        .bind(destination_id)
        .bind(actor)
        .bind(now)
        .bind(count as i64)
        .bind(recorded)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((replay_id, count))
}

/// Discards dead letters (all, or the given ids).
pub async fn discard(store: &Store, destination_id: &str, ids: Option<&[String]>) -> anyhow::Result<u64> {
    let base = "UPDATE deliveries SET state = 'discarded', updated_at = $1 WHERE destination_id = $2 AND state = 'dead'";
    let now = now_ms();
    Ok(match ids {
        Some(ids) => {
            let mut n = 0;
            for id in ids {
                n += sqlx::query(&format!("{base} AND id = $3")).bind(now).bind(destination_id).bind(id).execute(store.pool()).await?.rows_affected();
            }
            n
        }
        None => sqlx::query(base).bind(now).bind(destination_id).execute(store.pool()).await?.rows_affected(),
    })
}

/// Pending, retrying and in-flight deliveries (in flight ones are pending or retrying with a
/// lease), and the age of the oldest of them (ms); counted through the ready index.
///
/// On PostgreSQL it runs on that index without parallel workers: with 200,000 deliveries pending a
/// count took 54 ms (pg_stat_statements), the planner being free to scan the whole table in parallel.
pub async fn depth(store: &Store) -> anyhow::Result<(i64, i64)> {
    let mut tx = begin_with(store, false, "SET LOCAL enable_seqscan = off; SET LOCAL max_parallel_workers_per_gather = 0").await?;
    let row = sqlx::query("SELECT CAST(COALESCE(SUM(events), 0) AS BIGINT) AS n, MIN(created_at) AS oldest FROM deliveries WHERE state IN ('pending', 'retrying')").fetch_one(&mut *tx).await?;
    tx.commit().await?;
    let n = row.try_get::<i64, _>("n").unwrap_or(0);
    let oldest = row.try_get::<Option<i64>, _>("oldest").ok().flatten();
    Ok((n, oldest.map_or(0, |o| now_ms() - o)))
}

/// Deletes attempts, and finished deliveries, older than `before` (ms).
pub async fn prune(store: &Store, before: i64) -> anyhow::Result<u64> {
    let a = sqlx::query("DELETE FROM attempts WHERE at < $1").bind(before).execute(store.pool()).await?.rows_affected();
    let d = sqlx::query("DELETE FROM deliveries WHERE updated_at < $1 AND state IN ('succeeded', 'filtered', 'rejected', 'discarded')")
        .bind(before)
        .execute(store.pool())
        .await?
        .rows_affected();
    Ok(a + d)
}

/// What a worker writes after a claim: all of it in one transaction.
pub struct Written {
    pub job: Job,
    pub attempts: Vec<AttemptRec>,
    /// New state, attempts counted, next attempt time, reason.
    pub state: &'static str,
    pub count: i64,
    pub next_attempt_at: i64,
    pub reason: Option<String>,
    pub shape: super::batch_rows::Shape,
}

pub struct AttemptRec {
    /// A member of a batch logged with its first event: that attempt's log row id. On a SQLite
    /// file a delivered member gets no row of its own; its delivery points to the batch's row.
    pub bulk_of: Option<String>,
    pub id: String,
    /// The event's (a batch row's events each have their own).
    pub message_id: String,
    /// Events in the request.
    pub events: i64,
    pub latency_ms: i64,
    pub outcome: &'static str,
    pub status: Option<i64>,
    pub request: String,
    pub response: String,
    /// The response's headers (a JSON object), on the logged request's row.
    pub response_headers: Option<String>,
}

/// Writes the attempts and new states of a claim's jobs in one transaction; adds `failures` to the
/// destination's failures in a row (after resetting them when `delivered`); returns that count.
pub async fn write_results(store: &Store, destination_id: &str, results: Vec<Written>, delivered: bool, failures: i64, pause_until: Option<i64>) -> anyhow::Result<i64> {
    if let Some(direct) = store.direct() {
        return super::sqlite_queue::write_results(direct, destination_id.to_string(), results, delivered, failures, pause_until).await;
    }
    let now = now_ms();
    let _turn = store.write_turn().await;
    let mut tx = begin_with(store, true, &format!("SET LOCAL enable_seqscan = off; {QUEUE_COMMIT}")).await?;
    // Attempts in multi-row inserts; succeeded deliveries in one update; the rest one by one.
    let rows: Vec<(&Written, &AttemptRec)> = results.iter().flat_map(|w| w.attempts.iter().map(move |a| (w, a))).collect();
    for part in rows.chunks(25) {
        let marks: Vec<String> = (0..part.len()).map(|i| (1..=12).map(|c| format!("${}", i * 12 + c)).collect::<Vec<_>>().join(", ")).collect();
        let sql = format!(
            "INSERT INTO attempts (id, delivery_id, destination_id, message_id, at, latency_ms, outcome, status, request, response, events, response_headers) VALUES ({})",
            marks.join("), (")
        );
        let mut q = sqlx::query(&sql);
        for (w, a) in part {
            q = q.bind(&a.id).bind(&w.job.id).bind(&w.job.destination_id).bind(&a.message_id).bind(now);
            q = q.bind(a.latency_ms).bind(a.outcome).bind(a.status).bind(&a.request).bind(&a.response).bind(a.events).bind(&a.response_headers);
        }
        q.execute(&mut *tx).await?;
    }
    let settled_as_one = |w: &&Written| w.state == "succeeded" && w.count == w.job.attempts + 1;
    let succeeded: Vec<&Written> = results.iter().filter(|w| w.shape != Shape::New).filter(settled_as_one).collect();
    for part in succeeded.chunks(100) {
        let marks: Vec<String> = (0..part.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "UPDATE deliveries SET state = 'succeeded', attempts = attempts + 1, next_attempt_at = $1, reason = NULL, lease_until = NULL, updated_at = $1 \
             WHERE id IN ({})",
            marks.join(", ")
        );
        let mut q = sqlx::query(&sql).bind(now);
        for w in part {
            q = q.bind(&w.job.id);
        }
        q.execute(&mut *tx).await?;
    }
    for w in results.iter().filter(|w| w.shape == Shape::Single) {
        sqlx::query("UPDATE deliveries SET members = NULL, events = 1 WHERE id = $1").bind(&w.job.id).execute(&mut *tx).await?;
    }
    for w in results.iter().filter(|w| w.shape == Shape::New) {
        sqlx::query(
            "INSERT INTO deliveries (id, destination_id, event_seq, message_id, state, attempts, next_attempt_at, created_at, updated_at, reason) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&w.job.id)
        .bind(&w.job.destination_id)
        .bind(w.job.event_seq)
        .bind(&w.job.message_id)
        .bind(w.state)
        .bind(w.count)
        .bind(w.next_attempt_at)
        .bind(w.job.created_at)
        .bind(now)
        .bind(&w.reason)
        .execute(&mut *tx)
        .await?;
    }
    for w in results.iter().filter(|w| w.shape != Shape::New && !settled_as_one(w)) {
        sqlx::query("UPDATE deliveries SET state = $1, attempts = $2, next_attempt_at = $3, reason = $4, lease_until = NULL, updated_at = $5 WHERE id = $6")
            .bind(w.state)
            .bind(w.count)
            .bind(w.next_attempt_at)
            .bind(&w.reason)
            .bind(now)
            .bind(&w.job.id)
            .execute(&mut *tx)
            .await?;
    }
    if delivered {
        sqlx::query("UPDATE destinations SET consecutive_failures = 0, circuit_reason = NULL WHERE id = $1 AND (consecutive_failures > 0 OR circuit_reason IS NOT NULL)")
            .bind(destination_id)
            .execute(&mut *tx)
            .await?;
    }
    let mut in_a_row = 0;
    if failures > 0 {
        sqlx::query("UPDATE destinations SET consecutive_failures = consecutive_failures + $1 WHERE id = $2").bind(failures).bind(destination_id).execute(&mut *tx).await?;
        in_a_row = sqlx::query_scalar("SELECT consecutive_failures FROM destinations WHERE id = $1").bind(destination_id).fetch_one(&mut *tx).await?;
    }
    if let Some(until) = pause_until {
        sqlx::query("UPDATE destinations SET paused_until = $1 WHERE id = $2 AND (paused_until IS NULL OR paused_until < $1)").bind(until).bind(destination_id).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(in_a_row)
}
