//! The router: follows the event log by `seq` with a durable position, and for each event
//! creates a delivery per enabled destination of its source (pending, or filtered with the
//! reason) in the same transaction that moves the position, so a stored event is routed exactly
//! once even across crashes. On PostgreSQL several writers can commit out of order: a gap in `seq`
//! is waited for (up to a few seconds, then taken as a rolled-back insert).

use crate::integrations::{route, Integrations, Loaded};
use crate::store::{get, new_id, now_ms, Backend, Store};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const BATCH: i64 = 500;
const GAP_WAIT: Duration = Duration::from_secs(5);

struct Dest {
    id: String,
    name: String,
    loaded: Arc<Loaded>,
    filters: Value,
    ordered: bool,
    only_changed_traits: bool,
}

pub struct Router {
    store: Store,
    integrations: Integrations,
    /// The first missing seq and when it was first seen missing.
    gap: Option<(i64, Instant)>,
}

impl Router {
    pub fn new(store: Store, integrations: Integrations) -> Router {
        Router { store, integrations, gap: None }
    }

    async fn destinations(&self, conn: &mut sqlx::AnyConnection) -> anyhow::Result<HashMap<String, Vec<Dest>>> {
        let rows = sqlx::query(
            "SELECT d.id, d.name, d.integration, d.filters, d.delivery, ds.source_id FROM destinations d \
             JOIN destination_sources ds ON ds.destination_id = d.id WHERE d.enabled = 1",
        )
        .fetch_all(&mut *conn)
        .await?;
        let mut by_source: HashMap<String, Vec<Dest>> = HashMap::new();
        for r in &rows {
            let integration: String = get(r, "integration")?;
            let Some(loaded) = self.integrations.catalog.get(&integration) else { continue };
            let filters: String = get(r, "filters")?;
            let delivery: String = get(r, "delivery")?;
            let patch: super::schedule::PolicyPatch = serde_json::from_str(&delivery).unwrap_or_default();
            let ordered = patch.ordered.unwrap_or(loaded.manifest.capabilities.ordering);
            by_source.entry(get(r, "source_id")?).or_default().push(Dest {
                id: get(r, "id")?,
                name: get(r, "name")?,
                loaded: loaded.clone(),
                only_changed_traits: serde_json::from_str::<model::integration::filters::Filters>(&filters).is_ok_and(|f| f.only_changed_traits),
                filters: serde_json::from_str(&filters).unwrap_or_default(),
                ordered,
            });
        }
        Ok(by_source)
    }

    /// Routes the next batch; returns how many events it routed.
    pub async fn step(&mut self) -> anyhow::Result<usize> {
        let _turn = self.store.write_turn().await;
        let mut tx = self.store.begin().await?;
        let lock = if self.store.backend() == Backend::Postgres { " FOR UPDATE" } else { "" };
        let position: i64 = sqlx::query_scalar(&format!("SELECT position FROM router_state WHERE name = 'events'{lock}")).fetch_one(&mut *tx).await?;
        let rows = sqlx::query("SELECT seq, source_id, message_id, payload FROM events WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(position)
            .bind(BATCH)
            .fetch_all(&mut *tx)
            .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        // Take only a run without gaps (a gap older than GAP_WAIT was a rolled-back insert).
        let mut take = 0;
        let mut expected = position + 1;
        for r in &rows {
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
        if take == 0 {
            return Ok(0);
        }
        self.gap = None;
        let dests = self.destinations(&mut tx).await?;
        let now = now_ms();
        let mut last = position;
        let mut rows_out = Vec::new();
        for r in &rows[..take] {
            let seq: i64 = get(r, "seq")?;
            last = seq;
            let source: String = get(r, "source_id")?;
            let Some(list) = dests.get(&source) else { continue };
            let message_id: String = get(r, "message_id")?;
            let payload: String = get(r, "payload")?;
            let event: Value = serde_json::from_str(&payload).unwrap_or_default();
            for d in list {
                let mut reason = route::filtered(&d.loaded, &d.name, &d.filters, &event);
                if reason.is_none() && d.only_changed_traits && event.get("type").and_then(Value::as_str) == Some("identify") {
                    reason = traits_unchanged(&mut tx, &d.id, &event).await?;
                }
                let state = if reason.is_some() { "filtered" } else { "pending" };
                let lane = d.ordered.then(|| lane(&event)).flatten();
                rows_out.push(NewDelivery { destination_id: &d.id, seq, message_id: message_id.clone(), lane, state, reason });
            }
        }
        insert_deliveries(&mut tx, &rows_out, now).await?;
        sqlx::query("UPDATE router_state SET position = $1 WHERE name = 'events'").bind(last).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(take)
    }
}

struct NewDelivery<'a> {
    destination_id: &'a str,
    seq: i64,
    message_id: String,
    lane: Option<String>,
    state: &'static str,
    reason: Option<String>,
}

/// Inserts new deliveries, many rows per statement.
async fn insert_deliveries(conn: &mut sqlx::AnyConnection, rows: &[NewDelivery<'_>], now: i64) -> anyhow::Result<()> {
    for part in rows.chunks(25) {
        let marks: Vec<String> =
            (0..part.len()).map(|i| format!("${}, ${}, ${}, ${}, ${}, ${}, 0, $1, $1, $1, ${}", i * 7 + 2, i * 7 + 3, i * 7 + 4, i * 7 + 5, i * 7 + 6, i * 7 + 7, i * 7 + 8)).collect();
        let sql = format!(
            "INSERT INTO deliveries (id, destination_id, event_seq, message_id, order_key, state, attempts, next_attempt_at, created_at, updated_at, reason) VALUES ({})",
            marks.join("), (")
        );
        let mut q = sqlx::query(&sql).bind(now);
        for d in part {
            q = q.bind(new_id("dlv")).bind(d.destination_id).bind(d.seq).bind(&d.message_id).bind(&d.lane).bind(d.state).bind(&d.reason);
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

/// For "only when traits changed": `Some(reason)` when this user's traits are the ones last routed
/// to the destination; otherwise remembers them.
async fn traits_unchanged(conn: &mut sqlx::AnyConnection, destination_id: &str, event: &Value) -> anyhow::Result<Option<String>> {
    use sha2::{Digest, Sha256};
    let Some(user) = lane(event) else { return Ok(None) };
    let traits = event.get("traits").or_else(|| event.pointer("/context/traits")).cloned().unwrap_or(Value::Null);
    let hash = hex::encode(Sha256::digest(traits.to_string().as_bytes()));
    let last: Option<String> = sqlx::query_scalar("SELECT traits_hash FROM destination_traits WHERE destination_id = $1 AND user_key = $2")
        .bind(destination_id)
        .bind(&user)
        .fetch_optional(&mut *conn)
        .await?;
    if last.as_deref() == Some(hash.as_str()) {
        return Ok(Some("the user's traits have not changed since the last identify sent".into()));
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
