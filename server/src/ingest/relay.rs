//! The live feed across nodes sharing one PostgreSQL database, over LISTEN/NOTIFY.
//!
//! A node with an open stream announces the source it watches on `switchyard_live_watch`, at once
//! and then every few seconds. A node accepting that source's messages sends them on
//! `switchyard_live`, several to a notification within NOTIFY's 8,000-byte limit. A message too
//! large for one travels without its payload, which the watching node reads from the database
//! once it is committed. Nothing is sent while nobody watches.

use super::live::LiveMessage;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, Notify};

const MESSAGES: &str = "switchyard_live";
const WATCHES: &str = "switchyard_live_watch";
const ANNOUNCE_EVERY: Duration = Duration::from_secs(5);
/// A watch not announced again within this long has ended.
const WATCH_FRESH: Duration = Duration::from_secs(15);
const PACKET_BYTES: usize = 7_500;

#[derive(Serialize, Deserialize)]
struct Packet {
    node: String,
    messages: Vec<Wire>,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    source: String,
    status: String,
    message_id: Option<String>,
    kind: Option<String>,
    reason: Option<String>,
    received_at: i64,
    /// None when it was too large to travel: the receiver reads it from the database.
    payload: Option<Value>,
}

pub(super) struct Relay {
    node: String,
    /// Open streams on this node, by source.
    watching: Mutex<HashMap<String, usize>>,
    /// Sources other nodes watch, with their last announcement.
    wanted: Mutex<HashMap<String, Instant>>,
    out: mpsc::Sender<Wire>,
    announce: Notify,
}

impl Relay {
    pub(super) fn start(url: &str, pool: sqlx::AnyPool, local: broadcast::Sender<Arc<LiveMessage>>) -> Arc<Relay> {
        let (out, rx) = mpsc::channel(4096);
        let relay = Arc::new(Relay {
            node: crate::store::random_token(),
            watching: Mutex::new(HashMap::new()),
            wanted: Mutex::new(HashMap::new()),
            out,
            announce: Notify::new(),
        });
        tokio::spawn(relay.clone().listen(url.to_string(), pool.clone(), local));
        tokio::spawn(relay.clone().announce(pool.clone()));
        tokio::spawn(send_out(relay.node.clone(), pool, rx));
        relay
    }

    pub(super) fn wanted_elsewhere(&self, source: &str) -> bool {
        lock(&self.wanted).get(source).is_some_and(|at| at.elapsed() < WATCH_FRESH)
    }

    pub(super) fn forward(&self, msg: &LiveMessage) {
        if !self.wanted_elsewhere(&msg.source_id) {
            return;
        }
        let wire = Wire {
            source: msg.source_id.clone(),
            status: msg.status.to_string(),
            message_id: msg.message_id.clone(),
            kind: msg.kind.clone(),
            reason: msg.reason.clone(),
            received_at: msg.received_at,
            payload: Some((*msg.payload).clone()),
        };
        if self.out.try_send(wire).is_err() {
            metrics::counter!("live_relay_dropped_total").increment(1);
        }
    }

    pub(super) fn watch(&self, source: &str) {
        let mut watching = lock(&self.watching);
        let n = watching.entry(source.to_string()).or_default();
        *n += 1;
        if *n == 1 {
            self.announce.notify_one();
        }
    }

    pub(super) fn unwatch(&self, source: &str) {
        let mut watching = lock(&self.watching);
        if let Some(n) = watching.get_mut(source) {
            *n -= 1;
            if *n == 0 {
                watching.remove(source);
            }
        }
    }

    async fn announce(self: Arc<Self>, pool: sqlx::AnyPool) {
        loop {
            let sources: Vec<String> = lock(&self.watching).keys().cloned().collect();
            for source in sources {
                notify(&pool, WATCHES, &format!("{}\t{source}", self.node)).await;
            }
            tokio::select! {
                _ = tokio::time::sleep(ANNOUNCE_EVERY) => {}
                _ = self.announce.notified() => {}
            }
        }
    }

    async fn listen(self: Arc<Self>, url: String, pool: sqlx::AnyPool, local: broadcast::Sender<Arc<LiveMessage>>) {
        loop {
            match sqlx::postgres::PgListener::connect(&url).await {
                Ok(mut listener) => match listener.listen_all([MESSAGES, WATCHES]).await {
                    Ok(()) => {
                        // Watches are announced again after a reconnection.
                        self.announce.notify_one();
                        loop {
                            match listener.recv().await {
                                Ok(n) => self.received(n.channel(), n.payload(), &pool, &local),
                                Err(e) => {
                                    tracing::warn!(error = %e, "the live relay lost its connection");
                                    break;
                                }
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "the live relay cannot listen"),
                },
                Err(e) => tracing::warn!(error = %e, "the live relay cannot connect"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    fn received(&self, channel: &str, payload: &str, pool: &sqlx::AnyPool, local: &broadcast::Sender<Arc<LiveMessage>>) {
        if channel == WATCHES {
            if let Some((node, source)) = payload.split_once('\t') {
                if node != self.node {
                    lock(&self.wanted).insert(source.to_string(), Instant::now());
                }
            }
            return;
        }
        let Ok(packet) = serde_json::from_str::<Packet>(payload) else {
            tracing::warn!("the live relay received a packet it cannot read");
            return;
        };
        if packet.node == self.node || local.receiver_count() == 0 {
            return;
        }
        for wire in packet.messages {
            match wire.payload.clone() {
                Some(payload) => {
                    let _ = local.send(Arc::new(live_message(wire, payload)));
                }
                None => {
                    let (pool, local) = (pool.clone(), local.clone());
                    tokio::spawn(async move {
                        let payload = stored_payload(&pool, &wire).await.unwrap_or(Value::Null);
                        let _ = local.send(Arc::new(live_message(wire, payload)));
                    });
                }
            }
        }
    }
}

fn live_message(wire: Wire, payload: Value) -> LiveMessage {
    LiveMessage {
        source_id: wire.source,
        status: if wire.status == "accepted" { "accepted" } else { "rejected" },
        message_id: wire.message_id,
        kind: wire.kind,
        reason: wire.reason,
        received_at: wire.received_at,
        payload: Arc::new(payload),
    }
}

/// A large message's payload, once the node that accepted it has committed it (it published the
/// message before its commit, so this waits up to two seconds).
async fn stored_payload(pool: &sqlx::AnyPool, wire: &Wire) -> Option<Value> {
    for _ in 0..20 {
        let row = if wire.status == "accepted" {
            sqlx::query("SELECT payload FROM events WHERE source_id = $1 AND message_id = $2 ORDER BY seq DESC LIMIT 1")
                .bind(&wire.source)
                .bind(wire.message_id.as_deref().unwrap_or_default())
                .fetch_optional(pool)
                .await
        } else {
            sqlx::query("SELECT payload FROM rejections WHERE source_id = $1 AND received_at = $2 AND reason = $3 ORDER BY seq DESC LIMIT 1")
                .bind(&wire.source)
                .bind(wire.received_at)
                .bind(wire.reason.as_deref().unwrap_or_default())
                .fetch_optional(pool)
                .await
        };
        match row {
            Ok(Some(row)) => return row.try_get::<String, _>("payload").ok().and_then(|text| serde_json::from_str(&text).ok()),
            Ok(None) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => {
                tracing::warn!(error = %e, "the live relay cannot read a large message");
                return None;
            }
        }
    }
    None
}

async fn send_out(node: String, pool: sqlx::AnyPool, mut rx: mpsc::Receiver<Wire>) {
    while let Some(first) = rx.recv().await {
        let mut wires = vec![first];
        while wires.len() < 256 {
            match rx.try_recv() {
                Ok(w) => wires.push(w),
                Err(_) => break,
            }
        }
        for packet in pack(&node, wires) {
            notify(&pool, MESSAGES, &packet).await;
        }
    }
}

/// Packs messages into notifications of at most `PACKET_BYTES`, dropping the payload of any
/// message that would not fit alone.
fn pack(node: &str, wires: Vec<Wire>) -> Vec<String> {
    let head = serde_json::to_string(node).expect("a string serializes");
    let overhead = head.len() + 24;
    let mut packets = Vec::new();
    let mut parts: Vec<String> = Vec::new();
    let mut size = overhead;
    for mut wire in wires {
        let mut text = serde_json::to_string(&wire).expect("JSON values serialize");
        if text.len() + overhead > PACKET_BYTES {
            wire.payload = None;
            text = serde_json::to_string(&wire).expect("JSON values serialize");
            if text.len() + overhead > PACKET_BYTES {
                metrics::counter!("live_relay_dropped_total").increment(1);
                continue;
            }
        }
        if size + text.len() + 1 > PACKET_BYTES {
            packets.push(format!("{{\"node\":{head},\"messages\":[{}]}}", parts.join(",")));
            parts.clear();
            size = overhead;
        }
        size += text.len() + 1;
        parts.push(text);
    }
    if !parts.is_empty() {
        packets.push(format!("{{\"node\":{head},\"messages\":[{}]}}", parts.join(",")));
    }
    packets
}

async fn notify(pool: &sqlx::AnyPool, channel: &str, payload: &str) {
    if let Err(e) = sqlx::query("SELECT 1 AS sent FROM pg_notify($1, $2)").bind(channel).bind(payload).execute(pool).await {
        tracing::warn!(error = %e, "the live relay cannot notify the other nodes");
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(n: usize) -> Wire {
        Wire {
            source: "src_1".into(),
            status: "accepted".into(),
            message_id: Some(format!("m{n}")),
            kind: Some("track".into()),
            reason: None,
            received_at: 1,
            payload: Some(serde_json::json!({"pad": "x".repeat(n)})),
        }
    }

    #[test]
    fn packets_stay_under_the_notify_limit_and_large_payloads_travel_apart() {
        let packets = pack("node", vec![wire(3000), wire(3000), wire(3000), wire(20_000), wire(10)]);
        assert!(packets.iter().all(|p| p.len() <= PACKET_BYTES), "{:?}", packets.iter().map(String::len).collect::<Vec<_>>());
        let read: Vec<Packet> = packets.iter().map(|p| serde_json::from_str(p).unwrap()).collect();
        let wires: Vec<&Wire> = read.iter().flat_map(|p| p.messages.iter()).collect();
        assert_eq!(wires.len(), 5, "every message is sent");
        assert_eq!(wires.iter().filter(|w| w.payload.is_none()).map(|w| w.message_id.as_deref().unwrap()).collect::<Vec<_>>(), ["m20000"]);
        assert!(read.len() >= 2, "three 3 KB messages do not fit one packet");
        assert!(read.iter().all(|p| p.node == "node"));
    }
}
