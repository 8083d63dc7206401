//! The delivery queue's hot path on a SQLite file, through the store's own connection
//! (`store::direct`): the same statements as the sqlx path in `queue` and `router`, prepared once
//! and run a row at a time on one thread, each claim or result write in one hand-off.

use super::batch_rows::Shape;
use super::queue::{Job, Written};
use super::router::{DestRow, DESTINATIONS};
use crate::store::direct::{write, Direct};
use crate::store::{new_id, now_ms};
use rusqlite::{params, OptionalExtension};
use std::collections::HashMap;

/// sqlx's `$n` parameters as SQLite's numbered `?n`.
fn numbered(sql: &str) -> String {
    sql.replace('$', "?")
}

/// See `queue::claim`: the claimable destinations, then each one's due deliveries, leased in
/// memory (`direct::Leases`): nothing is written. A destination's leased deliveries stay first in
/// its due order while they are in flight, so each read asks for that many more rows and skips them.
pub async fn claim(direct: &Direct, sql: &str, claimable: &str, turn: usize, limit: i64, lease_ms: i64) -> anyhow::Result<Vec<Job>> {
    let (sql, claimable) = (numbered(sql), numbered(claimable));
    let leases = direct.leases().clone();
    direct
        .run(move |conn| {
            let now = now_ms();
            let destinations: Vec<String> = conn.prepare_cached(&claimable)?.query_map([now], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
            let mut st = conn.prepare_cached(&sql)?;
            leases.with(now, |held| {
                let (mut jobs, mut events) = (Vec::new(), 0);
                for i in super::queue::rotation(destinations.len(), turn) {
                    let left = limit - events;
                    if left <= 0 {
                        break;
                    }
                    // Rows are read one at a time and only until the claim has its events.
                    let rows = st.query_map(params![now + lease_ms, now, left, destinations[i], left + held.len() as i64], |r| {
                        Ok(Job {
                            id: r.get("id")?,
                            destination_id: r.get("destination_id")?,
                            event_seq: r.get("event_seq")?,
                            message_id: r.get("message_id")?,
                            attempts: r.get("attempts")?,
                            created_at: r.get("created_at")?,
                            members: super::batch_rows::parse(r.get("members")?),
                        })
                    })?;
                    for job in rows {
                        let job = job?;
                        if held.contains_key(&job.id) {
                            continue;
                        }
                        events += job.members.len().max(1) as i64;
                        jobs.push(job);
                        if events >= limit {
                            break;
                        }
                    }
                }
                for job in &jobs {
                    held.insert(job.id.clone(), now + lease_ms);
                }
                Ok(jobs)
            })
        })
        .await
}

/// The payload and receive time of stored events, by seq.
pub async fn load_events(direct: &Direct, seqs: Vec<i64>) -> anyhow::Result<HashMap<i64, (String, i64)>> {
    direct
        .run(move |conn| {
            let mut st = conn.prepare_cached("SELECT payload, received_at FROM events WHERE seq = ?1")?;
            let mut out = HashMap::with_capacity(seqs.len());
            for seq in seqs {
                if let Some(found) = st.query_row([seq], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))).optional()? {
                    out.insert(seq, found);
                }
            }
            Ok(out)
        })
        .await
}

/// See `queue::write_results`; the leases of the written deliveries end once they are committed.
pub async fn write_results(direct: &Direct, destination_id: String, results: Vec<Written>, delivered: bool, failures: i64, pause_until: Option<i64>) -> anyhow::Result<i64> {
    let leases = direct.leases().clone();
    direct
        .run(move |conn| {
            let now = now_ms();
            let in_a_row = write(conn, |tx| {
                let mut attempt = tx.prepare_cached(
                    "INSERT INTO attempts (id, delivery_id, destination_id, message_id, at, latency_ms, outcome, status, request, response, events, response_headers) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                )?;
                let mut succeeded = tx.prepare_cached(
                    "UPDATE deliveries SET state = 'succeeded', attempts = attempts + 1, next_attempt_at = ?1, reason = NULL, lease_until = NULL, updated_at = ?1, attempt_id = ?3 WHERE id = ?2",
                )?;
                let mut other =
                    tx.prepare_cached("UPDATE deliveries SET state = ?1, attempts = ?2, next_attempt_at = ?3, reason = ?4, lease_until = NULL, updated_at = ?5, attempt_id = COALESCE(?7, attempt_id) WHERE id = ?6")?;
                for w in &results {
                    let j = &w.job;
                    // A delivered batch member points to its batch's row (found through the event's messageId).
                    let mut bulk = None;
                    for a in &w.attempts {
                        match &a.bulk_of {
                            Some(logged) if a.outcome == "delivered" => bulk = Some(logged),
                            _ => {
                                attempt.execute(params![a.id, j.id, j.destination_id, a.message_id, now, a.latency_ms, a.outcome, a.status, a.request, a.response, a.events, a.response_headers])?;
                            }
                        }
                    }
                    if w.shape == Shape::New {
                        tx.prepare_cached(
                            "INSERT INTO deliveries (id, destination_id, event_seq, message_id, state, attempts, next_attempt_at, created_at, updated_at, reason, attempt_id) \
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                        )?
                        .execute(params![j.id, j.destination_id, j.event_seq, j.message_id, w.state, w.count, w.next_attempt_at, j.created_at, now, w.reason, bulk])?;
                        continue;
                    }
                    if w.shape == Shape::Single {
                        tx.prepare_cached("UPDATE deliveries SET members = NULL, events = 1 WHERE id = ?1")?.execute([&j.id])?;
                    }
                    if w.state == "succeeded" && w.count == j.attempts + 1 {
                        succeeded.execute(params![now, j.id, bulk])?;
                    } else {
                        other.execute(params![w.state, w.count, w.next_attempt_at, w.reason, now, j.id, bulk])?;
                    }
                }
                if delivered {
                    tx.prepare_cached(
                        "UPDATE destinations SET consecutive_failures = 0, circuit_reason = NULL WHERE id = ?1 AND (consecutive_failures > 0 OR circuit_reason IS NOT NULL)",
                    )?
                    .execute([&destination_id])?;
                }
                let mut in_a_row = 0;
                if failures > 0 {
                    tx.prepare_cached("UPDATE destinations SET consecutive_failures = consecutive_failures + ?1 WHERE id = ?2")?.execute(params![failures, destination_id])?;
                    in_a_row = tx.prepare_cached("SELECT consecutive_failures FROM destinations WHERE id = ?1")?.query_row([&destination_id], |r| r.get(0))?;
                }
                if let Some(until) = pause_until {
                    tx.prepare_cached("UPDATE destinations SET paused_until = ?1 WHERE id = ?2 AND (paused_until IS NULL OR paused_until < ?1)")?
                        .execute(params![until, destination_id])?;
                }
                Ok(in_a_row)
            })?;
            leases.release(results.iter().map(|w| &w.job.id));
            Ok(in_a_row)
        })
        .await
}

/// The router's position, the log's last seq and, when `behind(position, last)` says there is
/// something to route, the enabled destinations (one hop to the queue's thread: through the sqlx
/// pool, that query was the router's largest cost per step while nothing was routed).
pub async fn position(direct: &Direct, behind: impl FnOnce(i64, Option<i64>) -> bool + Send + 'static) -> anyhow::Result<(i64, Option<i64>, Option<Vec<DestRow>>)> {
    direct
        .run(|conn| {
            let position = conn.prepare_cached("SELECT position FROM router_state WHERE name = 'events'")?.query_row([], |r| r.get(0))?;
            let end = conn.prepare_cached("SELECT MAX(seq) FROM events")?.query_row([], |r| r.get(0))?;
            if !behind(position, end) {
                return Ok((position, end, None));
            }
            let rows = conn
                .prepare_cached(DESTINATIONS)?
                .query_map([], |r| {
                    Ok(DestRow { id: r.get(0)?, name: r.get(1)?, integration: r.get(2)?, filters: r.get(3)?, delivery: r.get(4)?, source_id: r.get(5)? })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((position, end, Some(rows)))
        })
        .await
}

/// The events in (after, upto] of the given sources, at most `limit`: seq, source, messageId and payload.
pub async fn events_of(direct: &Direct, after: i64, upto: i64, sources: Vec<String>, limit: usize) -> anyhow::Result<Vec<(i64, String, String, String)>> {
    direct
        .run(move |conn| {
            // One indexed range per source (events_source_seq), merged by seq.
            let mut st = conn.prepare_cached("SELECT seq, message_id, payload FROM events WHERE source_id = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq LIMIT ?4")?;
            let mut out = Vec::new();
            for s in &sources {
                let rows = st.query_map(params![s, after, upto, limit as i64], |r| Ok((r.get(0)?, s.clone(), r.get(1)?, r.get(2)?)))?;
                for row in rows {
                    out.push(row?);
                }
            }
            out.sort_by_key(|e: &(i64, String, String, String)| e.0);
            out.truncate(limit);
            Ok(out)
        })
        .await
}

/// A delivery the router creates.
pub struct NewRow {
    pub destination_id: String,
    pub seq: i64,
    pub message_id: String,
    pub lane: Option<String>,
    pub reason: Option<String>,
    /// For "only when traits changed": the user and the hash of the traits.
    pub traits: Option<(String, String)>,
    /// A batch row's events (see `batch_rows`); empty for a row of one event.
    pub members: Vec<i64>,
}

/// Moves the router's position from `from` to `to` (nothing happens when it is no longer at
/// `from`) and inserts the deliveries; returns how many are pending, or None when not moved.
pub async fn route(direct: &Direct, from: i64, to: i64, rows: Vec<NewRow>) -> anyhow::Result<Option<usize>> {
    direct
        .run(move |conn| {
            let now = now_ms();
            write(conn, |tx| {
                let moved = tx.prepare_cached("UPDATE router_state SET position = ?1 WHERE name = 'events' AND position = ?2")?.execute(params![to, from])?;
                if moved == 0 {
                    return Ok(None);
                }
                let mut insert = tx.prepare_cached(
                    "INSERT INTO deliveries (id, destination_id, event_seq, message_id, order_key, state, attempts, next_attempt_at, created_at, updated_at, reason, members, events) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?7, ?7, ?8, ?9, ?10)",
                )?;
                let mut pending = 0;
                for mut d in rows {
                    if let Some((user, hash)) = &d.traits {
                        d.reason = traits_unchanged(tx, &d.destination_id, user, hash)?;
                    }
                    let state = if d.reason.is_some() { "filtered" } else { "pending" };
                    pending += usize::from(d.reason.is_none());
                    let members = (!d.members.is_empty()).then(|| serde_json::to_string(&d.members).unwrap_or_default());
                    insert.execute(params![new_id("dlv"), d.destination_id, d.seq, d.message_id, d.lane, state, now, d.reason, members, d.members.len().max(1) as i64])?;
                }
                Ok(Some(pending))
            })
        })
        .await
}

fn traits_unchanged(tx: &rusqlite::Transaction, destination_id: &str, user: &str, hash: &str) -> rusqlite::Result<Option<String>> {
    let last: Option<String> = tx
        .prepare_cached("SELECT traits_hash FROM destination_traits WHERE destination_id = ?1 AND user_key = ?2")?
        .query_row([destination_id, user], |r| r.get(0))
        .optional()?;
    if last.as_deref() == Some(hash) {
        return Ok(Some(super::router::TRAITS_UNCHANGED.into()));
    }
    tx.prepare_cached(
        "INSERT INTO destination_traits (destination_id, user_key, traits_hash) VALUES (?1, ?2, ?3) \
         ON CONFLICT (destination_id, user_key) DO UPDATE SET traits_hash = excluded.traits_hash",
    )?
    .execute([destination_id, user, hash])?;
    Ok(None)
}
