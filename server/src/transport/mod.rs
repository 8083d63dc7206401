//! Transports: how a built request reaches its destination (HTTP or a broker), and how a
//! destination's connection is tested. Outcomes are classified here: delivered, retryable
//! (transport failures, 408, 429, 5xx) or permanent (other 4xx, refused addresses).

mod brokers;
mod guard;
mod http;
mod mqtt;

pub use guard::{is_private, private_on_save};

use async_trait::async_trait;
use model::integration::{Manifest, Request};
use serde::Serialize;
use serde_json::{Map, Value};
use std::time::Instant;

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Delivered,
    /// Worth trying again later (the delivery engine retries).
    Retryable,
    /// Will not work however often it is tried.
    Permanent,
}

/// One send: the outcome, what came back, how long it took.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Attempt {
    pub outcome: Outcome,
    /// HTTP status, when there was a response.
    pub status: Option<u16>,
    /// The response body (cut) or the broker's acknowledgement or the error.
    pub detail: String,
    pub latency_ms: u64,
    /// Seconds the destination asked to wait (`Retry-After`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<f64>,
}

impl Attempt {
    fn timed(started: Instant, outcome: Outcome, status: Option<u16>, detail: impl Into<String>) -> Attempt {
        Attempt { outcome, status, detail: detail.into(), latency_ms: started.elapsed().as_millis() as u64, retry_after: None }
    }
}

/// The code side of sending: one request (which may carry a batch), and testing the connection.
#[async_trait]
pub trait Transport: Send + Sync {
    async fn send(&self, settings: &Map<String, Value>, request: &Request) -> Attempt;
    async fn test_connection(&self, manifest: &Manifest, settings: &Map<String, Value>) -> Result<String, String>;
}

/// Every transport of this build.
pub struct Transports {
    http: http::Http,
    nats: brokers::Nats,
    rabbitmq: brokers::Rabbit,
    mqtt: mqtt::Mqtt,
    redis: brokers::Redis,
    postgres: brokers::Postgres,
}

impl Transports {
    /// `allow_private`: let HTTP destinations reach loopback and private addresses (tests, local development).
    pub fn new(allow_private: bool) -> Transports {
        Transports {
            http: http::Http::new(allow_private),
            nats: brokers::Nats,
            rabbitmq: brokers::Rabbit,
            mqtt: mqtt::Mqtt,
            redis: brokers::Redis,
            postgres: brokers::Postgres,
        }
    }

    pub fn get(&self, transport: &str) -> &dyn Transport {
        match transport {
            "nats" => &self.nats,
            "rabbitmq" => &self.rabbitmq,
            "mqtt" => &self.mqtt,
            "redis" => &self.redis,
            "postgres" => &self.postgres,
            _ => &self.http,
        }
    }
}

/// A setting's text value.
pub(crate) fn text<'a>(settings: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    settings.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}
