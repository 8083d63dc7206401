//! Test deliveries through the real mapping and transport: a webhook to a real receiver (signed,
//! with Content-Length), a rejection, a refused private address, test-connection.

use crate::harness::Db;
use crate::receiver::Receiver;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};

fn verify(secret: &str, id: &str, ts: &str, body: &[u8]) -> String {
    let key = base64::engine::general_purpose::STANDARD.decode(secret.trim_start_matches("whsec_")).unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

#[tokio::test]
async fn webhook_test_delivery_reaches_a_real_receiver_signed() {
    let env = crate::env_or_skip!(Db::Sqlite);
    let admin = env.token("a", "admin");
    let server = env.start_with(&["--allow-private-destinations"]).await;
    let rx = Receiver::start().await;
    let c = server.client();
    let body = json!({"name": "hook", "integration": "webhook",
        "settings": {"url": format!("{}/in", rx.url), "headers": {"X-Team": "growth"}}});
    let d: Value = c.post(server.at("/api/destinations")).bearer_auth(&admin).json(&body).send().await.unwrap().json().await.unwrap();
    let id = d["id"].as_str().unwrap();

    let conn: Value = c.post(server.at(&format!("/api/destinations/{id}/test-connection"))).bearer_auth(&admin).send().await.unwrap().json().await.unwrap();
    assert_eq!(conn["ok"], true, "{conn}");

    let event = json!({"type": "track", "event": "Order Completed", "userId": "u1", "messageId": "m-test-1", "properties": {"total": 9.5}});
    let out: Value = c.post(server.at(&format!("/api/destinations/{id}/test"))).bearer_auth(&admin).json(&json!({"event": event})).send().await.unwrap().json().await.unwrap();
    let result = &out["results"][0];
    assert_eq!(result["attempt"]["outcome"], "delivered", "{out}");
    assert_eq!(result["attempt"]["status"], 200);

    let got = rx.requests();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/in"));
    let sent: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(sent, event, "the whole event, as sent");
    assert_eq!(r.headers["content-length"].to_str().unwrap(), r.body.len().to_string());
    assert_eq!(r.headers["x-team"], "growth");
    assert_eq!(r.headers["webhook-id"], "m-test-1");
    let secret: Value = c.post(server.at(&format!("/api/destinations/{id}/secrets/signing_secret/reveal"))).bearer_auth(&admin).send().await.unwrap().json().await.unwrap();
    assert!(!out.to_string().contains(secret["value"].as_str().unwrap()), "no secret in what comes back: {out}");
    let ts = r.headers["webhook-timestamp"].to_str().unwrap();
    let want = verify(secret["value"].as_str().unwrap(), "m-test-1", ts, &r.body);
    assert_eq!(r.headers["webhook-signature"].to_str().unwrap(), want);

    // A failing receiver: 500 is retryable, 400 permanent.
    rx.status.store(500, std::sync::atomic::Ordering::SeqCst);
    let out: Value = c.post(server.at(&format!("/api/destinations/{id}/test"))).bearer_auth(&admin).send().await.unwrap().json().await.unwrap();
    assert_eq!(out["results"][0]["attempt"]["outcome"], "retryable", "{out}");
    assert_eq!(out["event"]["type"], "track", "a sample event when none is given");
    rx.status.store(400, std::sync::atomic::Ordering::SeqCst);
    let out: Value = c.post(server.at(&format!("/api/destinations/{id}/test"))).bearer_auth(&admin).send().await.unwrap().json().await.unwrap();
    assert_eq!(out["results"][0]["attempt"]["outcome"], "permanent", "{out}");

    // A body mapped from a missing field is rejected with the reason, nothing is sent.
    let patch = json!({"actions": {"send": {"mapping": {"body": {"@path": "$.properties.nothing"}}}}});
    let r = c.patch(server.at(&format!("/api/destinations/{id}"))).bearer_auth(&admin).json(&patch).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let before = rx.requests().len();
    let out: Value = c.post(server.at(&format!("/api/destinations/{id}/test"))).bearer_auth(&admin).send().await.unwrap().json().await.unwrap();
    assert!(out["results"][0]["rejected"].as_str().unwrap().contains("required field 'body'"), "{out}");
    assert_eq!(rx.requests().len(), before);
}

#[tokio::test]
async fn sends_to_private_addresses_are_refused_at_send_time() {
    // Saved while allowed, then the server runs without the allowance: the send is refused.
    let env = crate::env_or_skip!(Db::Sqlite);
    let admin = env.token("a", "admin");
    let rx = Receiver::start().await;
    let id = {
        let server = env.start_with(&["--allow-private-destinations"]).await;
        let body = json!({"name": "hook", "integration": "webhook", "settings": {"url": format!("{}/in", rx.url.replace("127.0.0.1", "localhost"))}});
        let d: Value = server.client().post(server.at("/api/destinations")).bearer_auth(&admin).json(&body).send().await.unwrap().json().await.unwrap();
        d["id"].as_str().unwrap().to_string()
    };
    let server = env.start().await;
    let out: Value = server.client().post(server.at(&format!("/api/destinations/{id}/test"))).bearer_auth(&admin).send().await.unwrap().json().await.unwrap();
    let attempt = &out["results"][0]["attempt"];
    assert_eq!(attempt["outcome"], "permanent", "{out}");
    assert!(attempt["detail"].as_str().unwrap().contains("private address"), "{out}");
    assert!(rx.requests().is_empty());
}

#[tokio::test]
async fn filters_and_the_integrations_object_keep_events_out() {
    let env = crate::env_or_skip!(Db::Sqlite);
    let admin = env.token("a", "admin");
    let server = env.start_with(&["--allow-private-destinations"]).await;
    let rx = Receiver::start().await;
    let c = server.client();
    let body = json!({"name": "orders", "integration": "webhook", "settings": {"url": rx.url},
        "filters": {"allow_events": ["Order Completed"], "condition": "properties.total | float >= 10"}});
    let d: Value = c.post(server.at("/api/destinations")).bearer_auth(&admin).json(&body).send().await.unwrap().json().await.unwrap();
    let id = d["id"].as_str().unwrap();
    let send = |event: Value| c.post(server.at(&format!("/api/destinations/{id}/test"))).bearer_auth(&admin).json(&json!({"event": event})).send();
    let cases = [
        (json!({"type": "track", "event": "Order Completed", "messageId": "1", "properties": {"total": 12}}), None),
        (json!({"type": "track", "event": "Signed Up", "messageId": "2"}), Some("not on the allow list")),
        (json!({"type": "track", "event": "Order Completed", "messageId": "3", "properties": {"total": 5}}), Some("does not hold")),
        (json!({"type": "track", "event": "Order Completed", "messageId": "4", "properties": {"total": 50}, "integrations": {"All": false}}), Some("integrations object")),
        (json!({"type": "track", "event": "Order Completed", "messageId": "5", "properties": {"total": 50}, "integrations": {"All": false, "orders": true}}), None),
        (json!({"type": "track", "event": "Order Completed", "messageId": "6", "properties": {"total": 50}, "integrations": {"Webhook": false}}), Some("integrations object")),
    ];
    for (event, want) in cases {
        let out: Value = send(event.clone()).await.unwrap().json().await.unwrap();
        match want {
            None => assert_eq!(out["results"][0]["attempt"]["outcome"], "delivered", "{event}: {out}"),
            Some(w) => assert!(out["filtered"].as_str().is_some_and(|f| f.contains(w)), "{event}: {out}"),
        }
    }
    let ids: Vec<String> = rx.requests().iter().map(|r| r.headers["webhook-id"].to_str().unwrap().to_string()).collect();
    assert_eq!(ids, ["1", "5"]);
    // A condition that does not compile is refused on save.
    let r = c.patch(server.at(&format!("/api/destinations/{id}"))).bearer_auth(&admin).json(&json!({"filters": {"condition": "type =="}})).send().await.unwrap();
    assert_eq!(r.status(), 422);
}

#[tokio::test]
async fn mapping_preview_maps_without_sending() {
    let env = crate::env_or_skip!(Db::Sqlite);
    let editor = env.token("e", "editor");
    let server = env.start().await;
    let c = server.client();
    let body = json!({"settings": {"webhook_url": "https://hooks.slack.com/services/T/B/X"},
        "actions": {"post_event": {"mapping": {"text": "{{ properties.total }} from {{ userId }}"}}},
        "event": {"type": "track", "event": "Order Completed", "userId": "u7", "properties": {"total": 30}}});
    let out: Value = c.post(server.at("/api/catalog/slack/preview")).bearer_auth(&editor).json(&body).send().await.unwrap().json().await.unwrap();
    assert_eq!(out["results"][0]["request"]["json"]["text"], "30 from u7", "{out}");
    assert_eq!(out["results"][0]["request"]["url"], "https://hooks.slack.com/services/T/B/X");
    let bad = json!({"actions": {"post_event": {"mapping": {"text": {"@path": "properties"}}}}});
    let r = c.post(server.at("/api/catalog/slack/preview")).bearer_auth(&editor).json(&bad).send().await.unwrap();
    assert_eq!(r.status(), 422);
    let p: Value = r.json().await.unwrap();
    assert!(p.to_string().contains("actions.post_event.fields.text"), "{p}");
}

/// A test delivery goes to the test values when set, and counts nowhere: no delivery, no attempt,
/// no delivery metric. Its answer shows the response's headers.
#[tokio::test]
async fn test_deliveries_use_test_values_and_count_nowhere() {
    let env = crate::env_or_skip!(Db::Sqlite);
    let admin = env.token("a", "admin");
    let server = env.start_with(&["--allow-private-destinations"]).await;
    let (live, test) = (Receiver::start().await, Receiver::start().await);
    let c = server.client();
    let src: Value = c.post(server.at("/api/sources")).bearer_auth(&admin).json(&json!({"name": "web"})).send().await.unwrap().json().await.unwrap();
    assert!(src["id"].is_string(), "{src}");
    let body = json!({"name": "hook", "integration": "webhook", "enabled": true, "sources": ["web"],
        "settings": {"url": format!("{}/live", live.url), "test_values": {"url": format!("{}/test", test.url)}}});
    let r = c.post(server.at("/api/destinations")).bearer_auth(&admin).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let d: Value = r.json().await.unwrap();
    let id = d["id"].as_str().unwrap();
    let out: Value = c.post(server.at(&format!("/api/destinations/{id}/test"))).bearer_auth(&admin).send().await.unwrap().json().await.unwrap();
    let attempt = &out["results"][0]["attempt"];
    assert_eq!(attempt["outcome"], "delivered", "{out}");
    assert_eq!(attempt["headers"]["x-receiver"], "switchyard-tests", "{out}");
    assert_eq!(test.requests().len(), 1, "the test URL got the test event");
    assert_eq!(test.requests()[0].path, "/test");
    assert!(live.requests().is_empty(), "the production URL got nothing");
    for path in ["deliveries", "attempts"] {
        let list: Value = c.get(server.at(&format!("/api/destinations/{id}/{path}"))).bearer_auth(&admin).send().await.unwrap().json().await.unwrap();
        assert!(list["items"].as_array().unwrap().is_empty(), "{path}: {list}");
    }
    let metrics = c.get(server.at("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(!metrics.contains("switchyard_deliveries_total"), "{metrics}");
}
