//! Transports: how a built request reaches its destination (HTTP or a broker), and how a
//! destination's connection is tested. Outcomes are classified here: delivered, retryable
//! (transport failures, 408, 429, 5xx) or permanent (other 4xx, refused addresses).

mod brokers;
mod guard;
mod http;
mod mqtt;

pub use guard::{is_private, private_on_save};
pub(crate) use http::cut;

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
    /// The response's headers (HTTP), names in lower case; cookies masked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<std::collections::BTreeMap<String, String>>,
    /// The whole response body (HTTP), for reading which events of a batch were refused.
    #[serde(skip)]
    pub body: Option<String>,
}

impl Attempt {
    /// Masks the destination's secret values wherever an answer may echo them (body, headers).
    pub fn mask(&mut self, secrets: &[String]) {
        for s in secrets.iter().filter(|s| s.len() >= 4) {
            let masked = |t: &str| t.replace(s.as_str(), crate::integrations::settings::MASK);
            self.detail = masked(&self.detail);
            for v in self.headers.iter_mut().flat_map(|h| h.values_mut()) {
                *v = masked(v);
            }
        }
    }

    fn timed(started: Instant, outcome: Outcome, status: Option<u16>, detail: impl Into<String>) -> Attempt {
        Attempt { outcome, status, detail: detail.into(), latency_ms: started.elapsed().as_millis() as u64, retry_after: None, headers: None, body: None }
    }
}

/// The code side of sending: one request (which may carry a batch), and testing the connection.
#[async_trait]
pub trait Transport: Send + Sync {
    async fn send(&self, settings: &Map<String, Value>, request: &Request) -> Attempt;
    async fn test_connection(&self, manifest: &Manifest, settings: &Map<String, Value>) -> Result<String, String>;
}

/// How the transports behave (config).
#[derive(Debug, Clone)]
pub struct Options {
    /// Let HTTP destinations reach loopback and private addresses (tests, local development).
    pub allow_private: bool,
    /// How long an HTTP request may take, connection included.
    pub timeout: std::time::Duration,
    /// How much of a response body an attempt keeps (bytes).
    pub response_bytes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { allow_private: false, timeout: std::time::Duration::from_secs(10), response_bytes: 4096 }
    }
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
    pub fn new(options: &Options) -> Transports {
        Transports {
            http: http::Http::new(options),
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
