//! The live feed across nodes: a stream open on one node shows what another node accepts.

use crate::harness::{Db, TestServer};
use crate::ingest::{basic, with_source, KEY};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Reads the stream until `done` holds for its text, failing after `secs`.
pub(crate) async fn read_until(stream: &mut reqwest::Response, secs: u64, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut text = String::new();
    while !done(&text) {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, stream.chunk()).await.unwrap_or_else(|_| panic!("not seen within {secs} s: {text}"));
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap().expect("the stream stays open")));
    }
    text
}

async fn track(node: &TestServer, body: Value) -> u16 {
    node.client().post(node.at("/v1/track")).header("Authorization", basic(KEY)).json(&body).send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn a_stream_on_one_node_shows_what_another_node_accepts() {
    let env = crate::env_or_skip!(Db::Postgres);
    let (a, token, source) = with_source(&env, &[]).await;
    let b = env.start().await;
    let mut live = b.client().get(b.at(&format!("/api/sources/{source}/live"))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(live.status(), 200);

    // Node A learns of the watch within moments; until then its messages are not relayed.
    let mut text = String::new();
    for i in 0..50 {
        assert_eq!(track(&a, json!({"userId": "u", "event": "Relayed", "messageId": format!("r-{i}")})).await, 200);
        if let Ok(Ok(Some(chunk))) = tokio::time::timeout(Duration::from_millis(200), live.chunk()).await {
            text.push_str(&String::from_utf8_lossy(&chunk));
            if text.contains("\"Relayed\"") {
                break;
            }
        }
    }
    assert!(text.contains("event: accepted") && text.contains("\"Relayed\""), "node B shows node A's message: {text}");

    // A rejected message, and one too large for a notification (its payload is read back).
    assert_eq!(track(&a, json!({"userId": "u", "messageId": "r-bad"})).await, 400);
    let pad = "x".repeat(20_000);
    assert_eq!(track(&a, json!({"userId": "u", "event": "Large", "messageId": "r-large", "properties": {"pad": pad}})).await, 200);
    let text = read_until(&mut live, 10, |t| t.contains("r-bad") && t.contains(&pad)).await;
    assert!(text.contains("event: rejected"), "{text}");

    // Node B's own messages are shown once, not again through the relay.
    assert_eq!(track(&b, json!({"userId": "u", "event": "Local", "messageId": "r-local"})).await, 200);
    assert_eq!(track(&a, json!({"userId": "u", "event": "After", "messageId": "r-after"})).await, 200);
    let text = read_until(&mut live, 10, |t| t.contains("r-after")).await;
    assert_eq!(text.matches("\"status\":\"accepted\",\"messageId\":\"r-local\"").count(), 1, "{text}");
}
