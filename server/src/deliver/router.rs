//! The router: follows the event log by `seq` with a durable position, and for each event
//! creates a delivery per enabled destination of its source (pending, or filtered with the
//! reason) in the same transaction that moves the position, so a stored event is routed exactly
//! once even across crashes. On PostgreSQL several writers can commit out of order: a gap in `seq`
//! is waited for (up to a few seconds, then taken as a rolled-back insert).

use super::{batch_rows, sqlite_queue};
use crate::integrations::{route, Integrations, Loaded};
use crate::store::{get, new_id, now_ms, Backend, Store};
use sqlx::Row;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The enabled destinations and their sources.
pub(super) const DESTINATIONS: &str = "SELECT d.id, d.name, d.integration, d.filters, d.delivery, ds.source_id FROM destinations d \
    JOIN destination_sources ds ON ds.destination_id = d.id WHERE d.enabled = 1";

/// An enabled destination of a source, as stored (`DESTINATIONS`).
pub(super) struct DestRow {
    pub id: String,
    pub name: String,
    pub integration: String,
    pub filters: String,
    pub delivery: String,
    pub source_id: String,
}

/// Events looked at per step (seq and source only).
const SCAN: i64 = 5000;
/// Events with destinations routed per step (their payloads are read and deliveries written).
const ROUTED: usize = 500;
/// On PostgreSQL a step costs round trips (the scan, the events, the inserts, the commit) more
/// than rows: larger steps keep the one router ahead of several claiming workers.
const ROUTED_PG: usize = 2000;
/// Rows per multi-row insert of deliveries (9 parameters each).
const INSERT_ROWS: usize = 100;
const GAP_WAIT: Duration = Duration::from_secs(5);
/// Events per batch row of a destination that sends them one per request.
const ROW_OF_SINGLES: usize = 100;

struct Dest {
    id: String,
    name: String,
    loaded: Arc<Loaded>,
    filters: Value,
    ordered: bool,
    only_changed_traits: bool,
    /// Events per batch row (1: a row per event): see `batch_rows`.
    group: usize,
}

pub struct Router {
    store: Store,
    integrations: Integrations,
    /// The first missing seq and when it was first seen missing.
    gap: Option<(i64, Instant)>,
    /// PostgreSQL: the position this router last moved the log to (read again when another
    /// node's router moved it first), saving a round trip per step.
    position: Option<i64>,
    /// SQLite: how far the router has read events that no destination receives without saving
    /// its position, when it last saved it, and the sources that had destinations then.
    unsaved: Option<i64>,
    saved_at: Instant,
    receiving: Vec<String>,
}

/// A span of events nobody receives moves the saved position at most this often (each save is a
/// commit in the write turn, which single-call ingest felt at 100 a second).
const SAVE_EVERY: Duration = Duration::from_secs(1);

impl Router {
    pub fn new(store: Store, integrations: Integrations) -> Router {
        Router { store, integrations, gap: None, position: None, unsaved: None, saved_at: Instant::now(), receiving: Vec::new() }
    }

    async fn destinations(&self, conn: &mut sqlx::AnyConnection) -> anyhow::Result<HashMap<String, Vec<Dest>>> {
        let rows = sqlx::query(DESTINATIONS).fetch_all(&mut *conn).await?;
        let rows = rows
            .iter()
            .map(|r| {
                Ok(DestRow {
                    id: get(r, "id")?,
                    name: get(r, "name")?,
                    integration: get(r, "integration")?,
                    filters: get(r, "filters")?,
                    delivery: get(r, "delivery")?,
                    source_id: get(r, "source_id")?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(self.by_source(rows))
    }

    /// The enabled destinations by source, ready to route to.
    fn by_source(&self, rows: Vec<DestRow>) -> HashMap<String, Vec<Dest>> {
        let mut by_source: HashMap<String, Vec<Dest>> = HashMap::new();
        for DestRow { id, name, integration, filters, delivery, source_id } in rows {
            let Some(loaded) = self.integrations.catalog.get(&integration) else { continue };
            let patch: super::schedule::PolicyPatch = serde_json::from_str(&delivery).unwrap_or_default();
            let ordered = patch.ordered.unwrap_or(loaded.manifest.capabilities.ordering);
            let only_changed_traits = serde_json::from_str::<model::integration::filters::Filters>(&filters).is_ok_and(|f| f.only_changed_traits);
            // Batch rows (a batch per row, or up to ROW_OF_SINGLES events sent one by one), unless
            // the destination keeps order per user or compares traits (both decided per event).
            let batching = loaded.manifest.capabilities.batching.as_ref();
            let size = batching.map_or(1, |b| patch.batch_size.unwrap_or(b.default_size.unwrap_or(b.max_size)).clamp(1, b.max_size.max(1)) as usize);
            let group = match () {
                _ if ordered || only_changed_traits => 1,
                _ if size > 1 => size,
                _ => ROW_OF_SINGLES,
            };
            by_source.entry(source_id).or_default().push(Dest {
                id,
                name,
                loaded: loaded.clone(),
                only_changed_traits,
                filters: serde_json::from_str(&filters).unwrap_or_default(),
                ordered,
                group,
            });
        }
        by_source
    }

    /// Routes the next events: up to `ROUTED` events with destinations on SQLite; on PostgreSQL,
    /// up to `ROUTED_PG` of at most `SCAN` events in all.
    ///
    /// The events are read and matched against the destinations outside any transaction (the log
    /// only grows at its end); then, holding the write turn, one transaction moves the position
    /// from where it was read (compare and set: when another node's router moved it first, this
    /// step does nothing) and inserts the deliveries. Only the events of sources with
    /// destinations are read.
    pub async fn step(&mut self) -> anyhow::Result<Routed> {
        if let Some(direct) = self.store.direct().cloned() {
            return self.step_direct(&direct).await;
        }
        let mut conn = self.store.pool().acquire().await?;
        let position: i64 = match self.position {
            Some(p) => p,
            None => sqlx::query_scalar("SELECT position FROM router_state WHERE name = 'events'").fetch_one(&mut *conn).await?,
        };
        let span = self.scan_span(&mut conn, position).await?;
        let Some(Span { last, full, dests, events }) = span else {
            return Ok(Routed::default());
        };
        drop(conn);
        let mut rows_out = Vec::new();
        let mut filtered = Vec::new();
        for (seq, source, message_id, event) in &events {
            for d in &dests[source] {
                let reason = route::filtered(&d.loaded, &d.name, &d.filters, event);
                if reason.is_some() {
                    filtered.push(d.name.as_str());
                }
                let traits = (reason.is_none() && d.only_changed_traits && event.get("type").and_then(Value::as_str) == Some("identify")).then_some(event);
                let lane = d.ordered.then(|| lane(event)).flatten();
                rows_out.push((NewDelivery { destination_id: &d.id, seq: *seq, message_id: message_id.clone(), lane, state: "pending", reason, members: Vec::new() }, traits));
            }
        }
        let rows_out = in_rows(&dests, rows_out, |(d, t)| (d.destination_id, d.seq, d.reason.is_none() && t.is_none()), |(d, _), m| d.members = m);

        let _turn = self.store.write_turn().await;
        let mut tx = super::queue::begin_with(&self.store, true, super::queue::QUEUE_COMMIT).await?;
        let moved = sqlx::query("UPDATE router_state SET position = $1 WHERE name = 'events' AND position = $2")
            .bind(last)
            .bind(position)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if moved == 0 {
            self.position = None;
            return Ok(Routed::default());
        }
        let mut out = Vec::with_capacity(rows_out.len());
        for (mut d, traits) in rows_out {
            if let Some(event) = traits {
                d.reason = traits_unchanged(&mut tx, d.destination_id, event).await?;
            }
            if d.reason.is_some() {
                d.state = "filtered";
            }
            out.push(d);
        }
        insert_deliveries(&mut tx, &out, now_ms()).await?;
        tx.commit().await?;
        count_filtered(&filtered);
        self.position = Some(last);
        Ok(Routed { full, pending: out.iter().filter(|d| d.state == "pending").count() })
    }

    /// On a SQLite file, through the queue's own connection. SQLite has one writer, so the log has
    /// no gaps to wait for: up to its end now, only the events of sources with destinations are
    /// read (through the (source, seq) index), so a flood of events nobody receives costs a few
    /// queries, not a row each; and how far it has read such events is saved about once a second
    /// (at once when the set of sources with destinations changes, and with the next deliveries).
    async fn step_direct(&mut self, direct: &crate::store::direct::Direct) -> anyhow::Result<Routed> {
        // Where this router has read to: past the saved position when it has not saved lately.
        let unsaved = self.unsaved;
        let read_to = move |saved: i64| unsaved.filter(|u| *u > saved).unwrap_or(saved);
        let (mut saved, end, rows) = sqlite_queue::position(direct, move |saved, end| end.is_some_and(|e| e > read_to(saved))).await?;
        let position = read_to(saved);
        let (Some(end), Some(rows)) = (end.filter(|e| *e > position), rows) else { return Ok(Routed::default()) };
        let dests = self.by_source(rows);
        let mut sources: Vec<String> = dests.keys().cloned().collect();
        sources.sort();
        if sources != self.receiving {
            // The events read so far were nobody's under the destinations of then: save that now,
            // so that after a restart they are not read again for a new destination.
            if position > saved && sqlite_queue::route(direct, saved, position, Vec::new()).await?.is_some() {
                saved = position;
            }
            self.receiving = sources.clone();
            self.unsaved = None;
        }
        let found = if sources.is_empty() { Vec::new() } else { sqlite_queue::events_of(direct, position, end, sources, ROUTED).await? };
        let full = found.len() == ROUTED;
        let last = if full { found[ROUTED - 1].0 } else { end };
        let mut rows = Vec::new();
        let mut filtered = Vec::new();
        for (seq, source, message_id, payload) in found {
            let event: Value = serde_json::from_str(&payload).unwrap_or_default();
            for d in &dests[&source] {
                let reason = route::filtered(&d.loaded, &d.name, &d.filters, &event);
                if reason.is_some() {
                    filtered.push(d.name.as_str());
                }
                let traits = (reason.is_none() && d.only_changed_traits && event.get("type").and_then(Value::as_str) == Some("identify")).then(|| traits_key(&event)).flatten();
                let lane = d.ordered.then(|| lane(&event)).flatten();
                rows.push(sqlite_queue::NewRow { destination_id: d.id.clone(), seq, message_id: message_id.clone(), lane, reason, traits, members: Vec::new() });
            }
        }
        let rows = in_rows(&dests, rows, |r| (r.destination_id.as_str(), r.seq, r.reason.is_none() && r.traits.is_none()), |r, m| r.members = m);
        if rows.is_empty() && self.saved_at.elapsed() < SAVE_EVERY {
            self.unsaved = Some(last);
            return Ok(Routed::default());
        }
        self.unsaved = None;
        self.saved_at = Instant::now();
        Ok(match sqlite_queue::route(direct, saved, last, rows).await? {
            Some(pending) => {
                count_filtered(&filtered);
                Routed { full, pending }
            }
            None => Routed::default(),
        })
    }

    /// PostgreSQL's writers commit out of order: the events after `position` are scanned (seq and
    /// source only) up to the first gap, which is waited for (see `without_gaps`).
    async fn scan_span(&mut self, conn: &mut sqlx::AnyConnection, position: i64) -> anyhow::Result<Option<Span>> {
        let rows = sqlx::query("SELECT seq, source_id FROM events WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(position)
            .bind(SCAN)
            .fetch_all(&mut *conn)
            .await?;
        let mut take = self.without_gaps(position, &rows)?;
        if take == 0 {
            return Ok(None);
        }
        let mut full = take == rows.len() && rows.len() as i64 == SCAN;
        let dests = self.destinations(conn).await?;
        let mut routed: Vec<&str> = Vec::new();
        let mut with_dests = 0;
        for (i, r) in rows[..take].iter().enumerate() {
            let source: &str = r.try_get("source_id")?;
            if dests.contains_key(source) {
                if !routed.contains(&source) {
                    routed.push(source);
                }
                with_dests += 1;
                if with_dests == ROUTED_PG {
                    full = i + 1 < take || full;
                    take = i + 1;
                    break;
                }
            }
        }
        let last: i64 = get(&rows[take - 1], "seq")?;
        let events = if routed.is_empty() { Vec::new() } else { routed_events(conn, position, last, &routed).await? };
        Ok(Some(Span { last, full, dests, events }))
    }

    /// How many of `rows` (from `position + 1` on) follow one another without a gap; a gap older
    /// than GAP_WAIT was a rolled-back insert (PostgreSQL's writers can commit out of order).
    fn without_gaps(&mut self, position: i64, rows: &[sqlx::any::AnyRow]) -> anyhow::Result<usize> {
        let mut take = 0;
        let mut expected = position + 1;
        for r in rows {
            let seq: i64 = get(r, "seq")?;
            if seq != expected && self.store.backend() == Backend::Postgres {
                match self.gap {
                    Some((g, since)) if g == expected && since.elapsed() >= GAP_WAIT => {}
                    Some((g, _)) if g == expected => break,
                    _ => {
                        self.gap = Some((expected, Instant::now()));
                        break;
                    }
                }
            }
            expected = seq + 1;
            take += 1;
        }
        if take > 0 {
            self.gap = None;
        }
        Ok(take)
    }
}

/// What a step routes: events up to `last` (those of sources with destinations in `events`).
struct Span {
    last: i64,
    full: bool,
    dests: HashMap<String, Vec<Dest>>,
    events: Vec<(i64, String, String, Value)>,
}

/// The events in (after, upto] of the given sources: seq, source, messageId and parsed payload.
async fn routed_events(conn: &mut sqlx::AnyConnection, after: i64, upto: i64, sources: &[&str]) -> anyhow::Result<Vec<(i64, String, String, Value)>> {
    let marks: Vec<String> = (0..sources.len()).map(|i| format!("${}", i + 3)).collect();
    let sql = format!(
        "SELECT seq, source_id, message_id, payload FROM events WHERE seq > $1 AND seq <= $2 AND source_id IN ({}) ORDER BY seq LIMIT {ROUTED_PG}",
        marks.join(", ")
    );
    let mut q = sqlx::query(&sql).bind(after).bind(upto);
    for s in sources {
        q = q.bind(*s);
    }
    let mut out = Vec::new();
    for r in q.fetch_all(&mut *conn).await? {
        let payload: String = get(&r, "payload")?;
        out.push((get(&r, "seq")?, get(&r, "source_id")?, get(&r, "message_id")?, serde_json::from_str(&payload).unwrap_or_default()));
    }
    Ok(out)
}

/// The deliveries of a step in batch rows (see `batch_rows::group`): `key` gives a delivery's
/// destination, seq and whether it is pending; `set` gives a row its members.
fn in_rows<T>(dests: &HashMap<String, Vec<Dest>>, rows: Vec<T>, key: impl for<'a> Fn(&'a T) -> (&'a str, i64, bool), set: impl Fn(&mut T, Vec<i64>)) -> Vec<T> {
    let sizes: HashMap<&str, usize> = dests.values().flatten().map(|d| (d.id.as_str(), d.group)).collect();
    let grouped = batch_rows::group(&rows.iter().map(key).collect::<Vec<_>>(), |d| sizes[d]);
    rows.into_iter()
        .zip(grouped)
        .filter_map(|(mut r, m)| {
            let m = m?;
            set(&mut r, m);
            Some(r)
        })
        .collect()
}

/// What a router step did.
#[derive(Debug, Default)]
pub struct Routed {
    /// It took a whole batch: more may be waiting.
    pub full: bool,
    /// Deliveries it made ready to send.
    pub pending: usize,
}

struct NewDelivery<'a> {
    destination_id: &'a str,
    seq: i64,
    message_id: String,
    lane: Option<String>,
    state: &'static str,
    reason: Option<String>,
    members: Vec<i64>,
}

/// Inserts new deliveries, many rows per statement.
async fn insert_deliveries(conn: &mut sqlx::AnyConnection, rows: &[NewDelivery<'_>], now: i64) -> anyhow::Result<()> {
    for part in rows.chunks(INSERT_ROWS) {
        let marks: Vec<String> =
            (0..part.len()).map(|i| format!("${}, ${}, ${}, ${}, ${}, ${}, 0, $1, $1, $1, ${}, ${}, ${}", i * 9 + 2, i * 9 + 3, i * 9 + 4, i * 9 + 5, i * 9 + 6, i * 9 + 7, i * 9 + 8, i * 9 + 9, i * 9 + 10)).collect();
        let sql = format!(
            "INSERT INTO deliveries (id, destination_id, event_seq, message_id, order_key, state, attempts, next_attempt_at, created_at, updated_at, reason, members, events) VALUES ({})",
            marks.join("), (")
        );
        let mut q = sqlx::query(&sql).bind(now);
        for d in part {
            let members = (!d.members.is_empty()).then(|| serde_json::to_string(&d.members).unwrap_or_default());
            q = q.bind(new_id("dlv")).bind(d.destination_id).bind(d.seq).bind(&d.message_id).bind(&d.lane).bind(d.state).bind(&d.reason);
            q = q.bind(members).bind(d.members.len().max(1) as i64);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// The user's lane: userId, else anonymousId.
fn lane(event: &Value) -> Option<String> {
    ["userId", "anonymousId"].iter().find_map(|k| match event.get(*k) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

pub(super) const TRAITS_UNCHANGED: &str = "the user's traits have not changed since the last identify sent";

/// For "only when traits changed": the user's lane and a hash of the event's traits.
fn traits_key(event: &Value) -> Option<(String, String)> {
    use sha2::{Digest, Sha256};
    let user = lane(event)?;
    let traits = event.get("traits").or_else(|| event.pointer("/context/traits")).cloned().unwrap_or(Value::Null);
    Some((user, hex::encode(Sha256::digest(traits.to_string().as_bytes()))))
}

/// For "only when traits changed": `Some(reason)` when this user's traits are the ones last routed
/// to the destination; otherwise remembers them.
async fn traits_unchanged(conn: &mut sqlx::AnyConnection, destination_id: &str, event: &Value) -> anyhow::Result<Option<String>> {
    let Some((user, hash)) = traits_key(event) else { return Ok(None) };
    let last: Option<String> = sqlx::query_scalar("SELECT traits_hash FROM destination_traits WHERE destination_id = $1 AND user_key = $2")
        .bind(destination_id)
        .bind(&user)
        .fetch_optional(&mut *conn)
        .await?;
    if last.as_deref() == Some(hash.as_str()) {
        return Ok(Some(TRAITS_UNCHANGED.into()));
    }
    sqlx::query(
        "INSERT INTO destination_traits (destination_id, user_key, traits_hash) VALUES ($1, $2, $3) \
         ON CONFLICT (destination_id, user_key) DO UPDATE SET traits_hash = excluded.traits_hash",
    )
    .bind(destination_id)
    .bind(&user)
    .bind(&hash)
    .execute(&mut *conn)
    .await?;
    Ok(None)
}

/// Events kept out by destinations' filters count as deliveries `filtered`, once the step that
/// routed them has committed (a step another node's router beat counts nothing).
fn count_filtered(destinations: &[&str]) {
    for d in destinations {
        metrics::counter!("switchyard_deliveries_total", "destination" => d.to_string(), "outcome" => "filtered").increment(1);
    }
}
