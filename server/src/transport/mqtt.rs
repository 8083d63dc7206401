//! MQTT: publish with QoS 1 and wait for the broker's PUBACK.

use super::{text, Attempt, Outcome, Transport};
use async_trait::async_trait;
use model::integration::{Manifest, Request};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Map, Value};
use std::time::{Duration, Instant};

pub struct Mqtt;

fn options(settings: &Map<String, Value>) -> Result<MqttOptions, String> {
    let url = text(settings, "url").ok_or("url is not set")?;
    let u = url::Url::parse(url).map_err(|e| format!("'{url}': {e}"))?;
    let tls = u.scheme() == "mqtts";
    let host = u.host_str().ok_or("the URL has no host")?.to_string();
    let port = u.port().unwrap_or(if tls { 8883 } else { 1883 });
    let id = text(settings, "client_id").map(String::from).unwrap_or_else(|| format!("switchyard-{}", ulid::Ulid::new().to_string().to_lowercase()));
    let mut o = MqttOptions::new(id, host, port);
    o.set_keep_alive(Duration::from_secs(10));
    if let (Some(user), Some(pass)) = (text(settings, "username"), text(settings, "password")) {
        o.set_credentials(user, pass);
    }
    if tls {
        o.set_transport(rumqttc::Transport::tls_with_default_config());
    }
    Ok(o)
}

/// Connects, optionally publishes, and waits for CONNACK (and PUBACK).
async fn run(settings: &Map<String, Value>, publish: Option<(&str, Vec<u8>)>) -> Result<String, String> {
    let (client, mut events) = AsyncClient::new(options(settings)?, 10);
    if let Some((topic, payload)) = &publish {
        let retain = settings.get("retain").and_then(Value::as_bool).unwrap_or(false);
        client.publish(*topic, QoS::AtLeastOnce, retain, payload.clone()).await.map_err(|e| e.to_string())?;
    }
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) if publish.is_none() => break,
            Ok(Event::Incoming(Packet::PubAck(_))) => break,
            Ok(_) => {}
            Err(e) => return Err(format!("MQTT: {e}")),
        }
    }
    let _ = client.disconnect().await;
    Ok(match publish {
        Some((topic, _)) => format!("acknowledged by the broker (QoS 1, topic {topic})"),
        None => "connected to the MQTT broker".into(),
    })
}

#[async_trait]
impl Transport for Mqtt {
    async fn send(&self, settings: &Map<String, Value>, request: &Request) -> Attempt {
        let started = Instant::now();
        let Request::Publish(p) = request else {
            return Attempt::timed(started, Outcome::Permanent, None, "an MQTT destination got an HTTP request");
        };
        let payload = serde_json::to_vec(&p.payload).unwrap_or_default();
        match tokio::time::timeout(Duration::from_secs(10), run(settings, Some((&p.target, payload)))).await {
            Ok(Ok(ack)) => Attempt::timed(started, Outcome::Delivered, None, ack),
            Ok(Err(e)) => Attempt::timed(started, Outcome::Retryable, None, e),
            Err(_) => Attempt::timed(started, Outcome::Retryable, None, "no PUBACK within 10 s"),
        }
    }

    async fn test_connection(&self, _m: &Manifest, settings: &Map<String, Value>) -> Result<String, String> {
        tokio::time::timeout(Duration::from_secs(10), run(settings, None)).await.map_err(|_| "no CONNACK within 10 s".to_string())?
    }
}
