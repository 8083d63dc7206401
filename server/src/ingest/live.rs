//! The live feed: every accepted and rejected message, for the debugger (SSE).

use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
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
pub struct LiveFeed(broadcast::Sender<Arc<LiveMessage>>);

impl LiveFeed {
    pub fn new() -> Self {
        LiveFeed(broadcast::channel(1024).0)
    }

    /// Nobody listening is fine: the message is simply not shown anywhere.
    pub fn publish(&self, msg: LiveMessage) {
        if self.0.receiver_count() > 0 {
            let _ = self.0.send(Arc::new(msg));
        }
    }

    /// Whether anyone listens (so messages are only copied for the feed when someone does).
    pub fn active(&self) -> bool {
        self.0.receiver_count() > 0
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LiveMessage>> {
        self.0.subscribe()
    }
}

impl Default for LiveFeed {
    fn default() -> Self {
        Self::new()
    }
}
