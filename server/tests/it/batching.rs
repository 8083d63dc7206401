//! Batching: integrations that batch (the Segment forwarder) and the webhook when a destination
//! asks for batches; partial batches wait for their time window; limits are checked on save.

use crate::delivery::world_on;
use crate::harness::Db;
use crate::receiver::Receiver;
use base64::Engine as _;
use serde_json::{json, Value};
use std::time::Duration;

/// Events in the receiver's requests so far (a batch body is an array; other bodies count one).
fn items(rx: &Receiver) -> Vec<Vec<String>> {
    rx.requests()
        .iter()
        .map(|r| match serde_json::from_slice::<Value>(&r.body).unwrap() {
            Value::Array(list) => list.iter().map(|e| e["id"].as_str().unwrap_or_default().to_string()).collect(),
            one => vec![one["id"].as_str().unwrap_or_default().to_string()],
        })
        .collect()
}

async fn wait_items(rx: &Receiver, n: usize) -> Vec<Vec<String>> {
    for _ in 0..300 {
        let got = items(rx);
        if got.iter().map(Vec::len).sum::<usize>() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("fewer than {n} events arrived: {:?}", items(rx));
}

#[tokio::test]
async fn webhook_sends_batches_when_a_destination_asks() {
    let env = crate::env_or_skip!(Db::Sqlite);
    let server = env.start_with(&["--allow-private-destinations"]).await;
    let rx = Receiver::start().await;
    let w = world_on(&env, server, rx.clone(), json!({"batch_size": 10, "batch_wait_ms": 2000})).await;
    // 25 events stored together: full batches of 10 go at once, and the rest with them.
    let batch: Vec<Value> = (0..25).map(|i| json!({"type": "track", "userId": "u1", "event": "E", "messageId": format!("w{i}")})).collect();
    let auth = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{}:", w.key)));
    let r = w.server.client().post(w.server.at("/v1/batch")).header("Authorization", &auth).json(&json!({"batch": batch})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut got = wait_items(&rx, 25).await;
    // The three requests go out concurrently: put them in order of their first event.
    got.sort_by_key(|b| b[0][1..].parse::<u32>().unwrap());
    assert_eq!(got.iter().map(Vec::len).collect::<Vec<_>>(), [10, 10, 5], "{got:?}");
    assert_eq!(got.concat(), (0..25).map(|i| format!("w{i}")).collect::<Vec<_>>());
    for r in rx.requests() {
        let id = r.headers["webhook-id"].to_str().unwrap();
        assert!(id.starts_with("batch_") && id.len() == 38, "{id}");
        assert!(r.headers["webhook-signature"].to_str().unwrap().starts_with("v1,"));
    }
    w.state_of("w24", "succeeded").await;
    let attempts: Value = w.get("/attempts?message_id=w24").await;
    assert_eq!(attempts["items"][0]["outcome"], "delivered");
    // A batch that succeeded is logged once: the member's attempt is its batch's request.
    assert!(attempts["items"][0]["request"].to_string().contains("w24"), "{attempts}");
    let all: Value = w.get("/attempts").await;
    assert_eq!(all["items"].as_array().unwrap().len(), 3, "one log row per request: {all}");

    // Three events sent one by one: a partial batch waits for its window instead of going alone.
    rx.got.lock().unwrap().clear();
    for i in 0..3 {
        w.track(&format!("s{i}")).await;
    }
    let got = wait_items(&rx, 3).await;
    assert!(got.len() < 3, "the events waited for each other: {got:?}");
    assert_eq!(got.concat(), ["s0", "s1", "s2"]);
}

#[tokio::test]
async fn batch_size_is_checked_against_the_integration() {
    let env = crate::env_or_skip!(Db::Sqlite);
    let server = env.start_with(&["--allow-private-destinations"]).await;
    let w = world_on(&env, server, Receiver::start().await, json!({})).await;
    let c = w.server.client();
    let r = c.patch(w.server.at(&format!("/api/destinations/{}", w.dest))).bearer_auth(&w.token)
        .json(&json!({"delivery": {"batch_size": 5000}})).send().await.unwrap();
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("batch_size: must be between 1 and 1000"));
    let body = json!({"name": "chat", "integration": "slack", "enabled": false, "sources": ["web"],
        "settings": {"webhook_url": "https://hooks.slack.com/services/T0/B0/x"}, "delivery": {"batch_size": 10}});
    let r = c.post(w.server.at("/api/destinations")).bearer_auth(&w.token).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("one event per request"));
}

#[tokio::test]
async fn batching_destinations_get_one_request_for_many_events() {
    let env = crate::env_or_skip!(Db::Sqlite);
    let server = env.start_with(&["--allow-private-destinations"]).await;
    let rx = Receiver::start().await;
    let w = world_on(&env, server, rx.clone(), json!({})).await;
    // A Segment-compatible forwarder (batches of up to 15) next to the webhook.
    let c = w.server.client();
    let body = json!({"name": "fwd", "integration": "segment", "enabled": true, "sources": ["web"],
        "settings": {"endpoint": format!("{}/seg", rx.url), "write_key": "wk-downstream"}});
    let d: serde_json::Value = c.post(w.server.at("/api/destinations")).bearer_auth(&w.token).json(&body).send().await.unwrap().json().await.unwrap();
    let fwd = d["id"].as_str().unwrap().to_string();
    c.post(w.server.at(&format!("/api/destinations/{fwd}/pause"))).bearer_auth(&w.token).send().await.unwrap();
    for i in 0..10 {
        w.track_as(&format!("b{i}"), &format!("user-{i}")).await;
    }
    // Routed while paused; resumed, the ten due events go out together.
    for _ in 0..200 {
        let list: serde_json::Value = c.get(w.server.at(&format!("/api/destinations/{fwd}/deliveries?state=pending"))).bearer_auth(&w.token).send().await.unwrap().json().await.unwrap();
        if list["items"].as_array().unwrap().len() == 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.post(w.server.at(&format!("/api/destinations/{fwd}/resume"))).bearer_auth(&w.token).send().await.unwrap();
    let mut batches = Vec::new();
    for _ in 0..250 {
        batches = rx.requests().into_iter().filter(|r| r.path.starts_with("/seg")).collect();
        let total: usize = batches.iter().map(|r| serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["batch"].as_array().map_or(1, Vec::len)).sum();
        if total >= 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(batches.len(), 1, "one request: {:?}", batches.iter().map(|b| b.path.clone()).collect::<Vec<_>>());
    assert_eq!(batches[0].path, "/seg/v1/batch");
    let sent: serde_json::Value = serde_json::from_slice(&batches[0].body).unwrap();
    let ids: Vec<&str> = sent["batch"].as_array().unwrap().iter().map(|m| m["messageId"].as_str().unwrap()).collect();
    assert_eq!(ids, (0..10).map(|i| format!("b{i}")).collect::<Vec<_>>());
    // The attempts are written once the answer is in, a moment after the receiver saw the request.
    for i in 0..10 {
        let url = w.server.at(&format!("/api/destinations/{fwd}/attempts?message_id=b{i}"));
        let mut list = serde_json::Value::Null;
        for _ in 0..250 {
            list = c.get(&url).bearer_auth(&w.token).send().await.unwrap().json().await.unwrap();
            if !list["items"].as_array().unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(list["items"][0]["outcome"], "delivered", "b{i}: {list}");
    }
}

/// Partial failures per event: a batch answer naming refused events (the webhook's 207 with
/// `{"failed": [...]}`) dead-letters only those, without counting against the destination; the
/// others are delivered, each with a delivered attempt of its own (also when the event the request
/// is logged with was refused).
async fn a_batch_answer_naming_refused_events_fails_only_those(db: crate::harness::Db) {
    let env = crate::env_or_skip!(db);
    let server = env.start_with(&["--allow-private-destinations"]).await;
    let rx = Receiver::start().await;
    let w = world_on(&env, server, rx.clone(), json!({"batch_size": 10, "batch_wait_ms": 300, "schedule": [0.1], "breaker_failures": 1})).await;
    rx.answer(&[(207, None)]);
    *rx.reply.lock().unwrap() = r#"{"failed": [0, 3]}"#.into();
    let batch: Vec<Value> = (0..5).map(|i| json!({"type": "track", "userId": format!("u{i}"), "event": "E", "messageId": format!("p{i}")})).collect();
    let auth = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{}:", w.key)));
    let r = w.server.client().post(w.server.at("/v1/batch")).header("Authorization", &auth).json(&json!({"batch": batch})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let got = wait_items(&rx, 5).await;
    assert_eq!(got, [vec!["p0", "p1", "p2", "p3", "p4"]], "one request");
    for id in ["p1", "p2", "p4"] {
        w.state_of(id, "succeeded").await;
        let attempts = w.get(&format!("/attempts?message_id={id}")).await;
        assert_eq!(attempts["items"][0]["outcome"], "delivered", "{id}: {attempts}");
        assert_eq!(attempts["items"][0]["message_id"], id, "{attempts}");
    }
    for id in ["p0", "p3"] {
        let d = w.state_of(id, "dead").await;
        assert!(d["reason"].as_str().unwrap().starts_with("refused in its batch: answered 207"), "{d}");
    }
    let dead = w.get("/dead-letter").await;
    assert_eq!(dead["items"].as_array().unwrap().len(), 2, "{dead}");
    let attempts = w.get("/attempts?message_id=p3").await;
    assert_eq!(attempts["items"][0]["outcome"], "permanent", "{attempts}");
    // With a breaker that opens at the first failure: refused events are no failure of the destination.
    let d = w.get("").await;
    assert!(d["circuit_reason"].is_null() && d["paused_until"].is_null(), "{d}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(rx.requests().len(), 1, "nothing was sent again");
}
crate::both!(a_batch_answer_naming_refused_events_fails_only_those);
