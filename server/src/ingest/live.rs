//! The live feed: every accepted and rejected message, for the debugger (SSE). On PostgreSQL the
//! nodes relay what their watchers want to one another (`relay`), so a debugger open on one node
//! sees the messages any node accepts.

use super::relay::Relay;
use serde::Serialize;
use serde_json::Value;
use std::sync::{Arc, OnceLock};
use tokio::sync::broadcast;

#[derive(Debug, Clone, Serialize)]
pub struct LiveMessage {
    #[serde(skip)]
    pub source_id: String,
    /// `accepted` or `rejected`.
    pub status: &'static str,
    #[serde(rename = "messageId")]
    pub message_id: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub received_at: i64,
    pub payload: Arc<Value>,
}

#[derive(Clone)]
pub struct LiveFeed {
    local: broadcast::Sender<Arc<LiveMessage>>,
    relay: Arc<OnceLock<Arc<Relay>>>,
}

/// Held by an open stream: while it lives, other nodes are asked for its source's messages.
pub struct Watching(Option<(Arc<Relay>, String)>);

impl Drop for Watching {
    fn drop(&mut self) {
        if let Some((relay, source)) = self.0.take() {
            relay.unwatch(&source);
        }
    }
}

impl LiveFeed {
    pub fn new() -> Self {
        LiveFeed { local: broadcast::channel(1024).0, relay: Arc::new(OnceLock::new()) }
    }

    /// Relays messages between the nodes sharing this PostgreSQL database.
    pub fn start_relay(&self, database_url: &str, pool: sqlx::AnyPool) {
        let relay = Relay::start(database_url, pool, self.local.clone());
        let _ = self.relay.set(relay);
    }

    /// Nobody listening is fine: the message is simply not shown anywhere.
    pub fn publish(&self, msg: LiveMessage) {
        let msg = Arc::new(msg);
        if let Some(relay) = self.relay.get() {
            relay.forward(&msg);
        }
        if self.local.receiver_count() > 0 {
            let _ = self.local.send(msg);
        }
    }

    /// Whether anyone, here or on another node, watches this source (so messages are only copied
    /// for the feed when someone does).
    pub fn wanted(&self, source_id: &str) -> bool {
        self.local.receiver_count() > 0 || self.relay.get().is_some_and(|r| r.wanted_elsewhere(source_id))
    }

    /// The messages of every source (the caller filters), and a guard that keeps asking the other
    /// nodes for `source_id`'s messages while it lives.
    pub fn subscribe(&self, source_id: &str) -> (broadcast::Receiver<Arc<LiveMessage>>, Watching) {
        let rx = self.local.subscribe();
        let watching = Watching(self.relay.get().map(|relay| {
            relay.watch(source_id);
            (relay.clone(), source_id.to_string())
        }));
        (rx, watching)
    }
}

impl Default for LiveFeed {
    fn default() -> Self {
        Self::new()
    }
}
