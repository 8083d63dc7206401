//! Integration manifests: what a destination type is (branding, categories, capabilities), the
//! settings it takes (a typed schema) and what it does with an event (actions).
//!
//! The types here are plain data. `check` finds what serde cannot (unknown field references, bad
//! colors, versions); `schema` validates a destination's settings against the manifest and compiles
//! to wasm, so the admin app can run the same rules in the browser.

pub mod check;
pub mod filters;
pub mod schema;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use schema::{Choice, Field, FieldType, When};

/// One integration, as written in `integrations/<slug>/manifest.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Lower-case and plain: `webhook`, `mixpanel`, `nats`.
    pub slug: String,
    /// Semantic version of the manifest (`1.2.0`).
    pub version: String,
    pub name: String,
    /// Markdown.
    pub description: String,
    pub branding: Branding,
    pub categories: Vec<String>,
    pub capabilities: Capabilities,
    /// The settings form, in display order.
    #[serde(default)]
    pub settings: Vec<Field>,
    pub actions: Vec<Action>,
    /// Sent by "test connection": a request built from the settings alone (HTTP integrations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_connection: Option<RequestTemplate>,
    /// Set for integrations implemented in Rust (the name of the handler); declarative ones have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Branding {
    /// File name of the SVG logo beside the manifest.
    #[serde(default = "default_logo")]
    pub logo: String,
    /// `#rrggbb`.
    pub color: String,
    pub website: String,
    /// Link to the vendor's API documentation this integration follows.
    pub docs: String,
}

fn default_logo() -> String {
    "logo.svg".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// Segment event types the integration can receive (`track`, `identify`, …).
    pub event_types: Vec<String>,
    /// Where events may come from: `server`, `web`, `mobile`.
    pub channels: Vec<String>,
    /// Present when several events can go in one request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batching: Option<Batching>,
    /// Default requests per second (a destination may override it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
    /// Events of one user must arrive in order.
    #[serde(default)]
    pub ordering: bool,
    /// The destination can be sent a test event.
    #[serde(default)]
    pub test_delivery: bool,
    #[serde(default)]
    pub audience_sync: bool,
    /// What the transport is: `http` or a broker (`nats`, `rabbitmq`, `mqtt`, `redis`, `postgres`).
    #[serde(default = "default_transport")]
    pub transport: String,
}

fn default_transport() -> String {
    "http".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batching {
    pub max_size: u32,
    /// Events per request unless a destination sets `batch_size` (default `max_size`); 1 means
    /// batching is off until a destination turns it on.
    #[serde(default)]
    pub default_size: Option<u32>,
    /// How long a partial batch may wait, in milliseconds.
    #[serde(default = "default_batch_wait")]
    pub max_wait_ms: u32,
    /// How the destination answers a batch some of whose events it refused; absent, a batch
    /// succeeds or fails as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial: Option<PartialFailures>,
}

/// A batch answer that names the events the destination refused (each is dead-lettered with the
/// answer), so the others need not share their fate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartialFailures {
    /// The HTTP statuses of such answers, e.g. `[400]`.
    pub status: Vec<u16>,
    /// JSON paths into the answer's body, each selecting positions (from 0) of refused events in
    /// the batch, e.g. `$.failed_records[*].index`. An answer in which they select nothing is
    /// taken as the whole batch's.
    pub failed: Vec<String>,
    /// What became of the batch's other events: `delivered` (the destination took them) or
    /// `retry` (it took none of them: they are sent again, without the refused ones).
    pub others: PartialOthers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartialOthers {
    Delivered,
    Retry,
}

fn default_batch_wait() -> u32 {
    1000
}

/// What an integration does with one kind of event: a subscription, the fields it maps, and the
/// request (or broker message) it makes from them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Action {
    pub key: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Condition over the event (the condition language), e.g. `type == "track"`.
    pub subscribe: String,
    /// On for new destinations.
    #[serde(default = "yes")]
    pub default: bool,
    /// The mapped fields (`payload` in the request template), each with a default mapping.
    #[serde(default)]
    pub fields: Vec<Field>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestTemplate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<PublishTemplate>,
}

fn yes() -> bool {
    true
}

/// An HTTP request made from `{settings, payload, payloads, event}`: strings may hold templates,
/// `headers`, `query` and the body are mappings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestTemplate {
    #[serde(default = "default_method")]
    pub method: String,
    pub url: String,
    /// A mapping to an object of header values.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub headers: Value,
    /// A mapping to an object of query parameters.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub query: Value,
    /// JSON body (a mapping).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<Value>,
    /// Form body (a mapping to an object of strings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form: Option<Value>,
}

fn default_method() -> String {
    "POST".into()
}

/// A broker message made from `{settings, payload, event}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishTemplate {
    /// Subject, topic, routing key, stream or table (a template).
    pub target: String,
    /// Message key, where the broker has one (a template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The message (a mapping).
    pub payload: Value,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub headers: Value,
}

/// A request an action produced, before it is sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Request {
    Http(HttpRequest),
    Publish(Publish),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    /// Header names in lower case, sorted.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form: Option<std::collections::BTreeMap<String, String>>,
    /// `json` as sent, when a handler serialised it already (to sign it): the transport sends
    /// these bytes instead of serialising a batch of events once more. Not part of the request's
    /// JSON form.
    #[serde(skip)]
    pub body: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Publish {
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub payload: Value,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub headers: std::collections::BTreeMap<String, String>,
}

/// The catalog's short form of a manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CatalogItem {
    pub slug: String,
    pub name: String,
    pub version: String,
    pub description: String,
    /// URL of the SVG logo.
    pub logo: String,
    pub color: String,
    pub categories: Vec<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub capabilities: Value,
}

/// Categories a manifest may name.
pub const CATEGORIES: &[&str] = &[
    "Advertising",
    "Analytics",
    "Broker",
    "CRM",
    "Customer Success",
    "Email Marketing",
    "Marketing Automation",
    "Messaging",
    "Raw Data",
    "Storage",
    "Webhooks",
];

pub const CHANNELS: &[&str] = &["server", "web", "mobile"];
pub const TRANSPORTS: &[&str] = &["http", "nats", "rabbitmq", "mqtt", "redis", "postgres"];
