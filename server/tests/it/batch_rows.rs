//! Batch rows: a destination that batches gets one delivery row per batch of events routed
//! together. The API still lists and looks up each event; a batch that fails is retried as one;
//! one whose events end differently is split into a row per event; a privacy deletion takes a
//! user's events out of the batches holding them.

use crate::both;
use crate::delivery::{world_on, World};
use crate::harness::Db;
use crate::receiver::Receiver;
use base64::Engine as _;
use serde_json::{json, Value};
use std::time::Duration;

async fn world(db: Db, delivery: Value) -> (crate::harness::TestEnv, World) {
    let env = crate::harness::TestEnv::new(db).await.expect("the test's database");
    let server = env.start_with(&["--allow-private-destinations"]).await;
    let w = world_on(&env, server, Receiver::start().await, delivery).await;
    (env, w)
}

/// Sends events in one batch call: (messageId, userId, properties).
async fn send(w: &World, events: &[(&str, &str, Value)]) {
    let batch: Vec<Value> = events.iter().map(|(id, user, p)| json!({"type": "track", "userId": user, "event": "E", "messageId": id, "properties": p})).collect();
    let auth = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{}:", w.key)));
    let r = w.server.client().post(w.server.at("/v1/batch")).header("Authorization", &auth).json(&json!({"batch": batch})).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// The deliveries listed for the destination: messageId → (delivery id, state, reason).
async fn listed(w: &World) -> std::collections::HashMap<String, (String, String, Value)> {
    let list = w.get("/deliveries").await;
    list["items"].as_array().unwrap().iter().map(|d| (d["message_id"].as_str().unwrap().to_string(), (d["id"].as_str().unwrap().to_string(), d["state"].as_str().unwrap().to_string(), d["reason"].clone()))).collect()
}

/// Deletes what is stored about a user; returns the destination's attempt log after.
async fn forget(w: &World, user: &str) -> Value {
    let r = w.server.client().post(w.server.at("/api/privacy/deletions")).bearer_auth(&w.token).json(&json!({"userId": user})).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    w.get("/attempts").await
}

/// Pauses or resumes the destination.
async fn act(w: &World, what: &str) {
    let r = w.server.client().post(w.server.at(&format!("/api/destinations/{}/{what}", w.dest))).bearer_auth(&w.token).send().await.unwrap();
    assert!(r.status().is_success(), "{what}: {}", r.status());
}

/// Waits until `n` deliveries are listed (routed, whatever their state).
async fn routed(w: &World, n: usize) {
    for _ in 0..200 {
        if listed(w).await.len() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{n} deliveries were not routed: {}", w.get("/deliveries").await);
}

/// Waits until every listed event is in a final state and at least `n` are listed.
async fn settled(w: &World, n: usize) -> std::collections::HashMap<String, (String, String, Value)> {
    for _ in 0..400 {
        let got = listed(w).await;
        if got.len() >= n && got.values().all(|(_, s, _)| ["succeeded", "rejected", "dead", "filtered"].contains(&s.as_str())) {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the deliveries did not settle: {}", w.get("/deliveries").await);
}

async fn a_failed_batch_is_retried_as_one(db: Db) {
    let (_env, w) = world(db, json!({"batch_size": 4, "batch_wait_ms": 100, "schedule": [0.3]})).await;
    w.rx.answer(&[(500, None)]);
    send(&w, &[("r0", "u1", json!({})), ("r1", "u2", json!({})), ("r2", "u3", json!({})), ("r3", "u4", json!({}))]).await;
    let got = w.rx.wait_for(2, 10).await;
    assert_eq!(got.len(), 2, "the failed request and its retry");
    assert_eq!(got[0].body, got[1].body, "the same four events again");
    assert_eq!(serde_json::from_slice::<Value>(&got[1].body).unwrap().as_array().unwrap().len(), 4);
    let all = settled(&w, 4).await;
    // One row for the four events: listed once each, under one id.
    let ids: std::collections::HashSet<&String> = all.values().map(|(id, _, _)| id).collect();
    assert_eq!(ids.len(), 1, "{all:?}");
    assert!(all.values().all(|(_, s, _)| s == "succeeded"), "{all:?}");
    let page = w.get("/deliveries").await;
    assert_eq!(page["items"][0]["batch"], 4, "{page}");
    // Each event's attempts are its batch's: the failure, then the success.
    let attempts = w.get("/attempts?message_id=r2").await;
    let outcomes: Vec<&str> = attempts["items"].as_array().unwrap().iter().map(|a| a["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["delivered", "retryable"], "{attempts}");
    assert!(attempts["items"][0]["request"].to_string().contains("r2"), "{attempts}");
}
both!(a_failed_batch_is_retried_as_one);

async fn a_batch_whose_events_end_differently_is_split(db: Db) {
    let (env, w) = world(db, json!({"batch_size": 4, "batch_wait_ms": 100})).await;
    // The body comes from `properties.p`: an event without it is rejected, the others are sent.
    let c = w.server.client();
    let actions = json!({"send": {"mapping": {"body": {"@path": "$.properties.p"}}}});
    let r = c.patch(w.server.at(&format!("/api/destinations/{}", w.dest))).bearer_auth(&w.token).json(&json!({"actions": actions})).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    send(&w, &[("s0", "u1", json!({"p": 0})), ("s1", "u2", json!({})), ("s2", "u3", json!({"p": 2})), ("s3", "u4", json!({"p": 3}))]).await;
    let all = settled(&w, 4).await;
    let got = w.rx.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(serde_json::from_slice::<Value>(&got[0].body).unwrap(), json!([0, 2, 3]));
    assert_eq!(all["s1"].1, "rejected");
    assert!(all["s1"].2.as_str().unwrap().contains("required field 'body' has no value"), "{all:?}");
    for id in ["s0", "s2", "s3"] {
        assert_eq!(all[id].1, "succeeded", "{id}: {all:?}");
    }
    // Split: a row per event now.
    let ids: std::collections::HashSet<&String> = all.values().map(|(id, _, _)| id).collect();
    assert_eq!(ids.len(), 4, "{all:?}");
    for id in ["s0", "s3"] {
        let attempts = w.get(&format!("/attempts?message_id={id}")).await;
        assert_eq!(attempts["items"][0]["outcome"], "delivered", "{id}: {attempts}");
    }
    let attempts = w.get("/attempts?message_id=s1").await;
    assert_eq!(attempts["items"][0]["outcome"], "rejected", "{attempts}");
    drop(env);
}
both!(a_batch_whose_events_end_differently_is_split);

async fn a_deleted_users_events_leave_their_batch(db: Db) {
    let (_env, w) = world(db, json!({"batch_size": 10, "batch_wait_ms": 100})).await;
    act(&w, "pause").await;
    // The batch's first event and one in the middle are the deleted user's.
    let users = ["gone", "u1", "u2", "gone", "u3", "u4"];
    let events: Vec<(String, &str)> = users.iter().enumerate().map(|(i, u)| (format!("p{i}"), *u)).collect();
    let events: Vec<(&str, &str, Value)> = events.iter().map(|(id, u)| (id.as_str(), *u, json!({}))).collect();
    send(&w, &events).await;
    for _ in 0..200 {
        if listed(&w).await.len() == 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(listed(&w).await.len(), 6, "routed while paused");
    forget(&w, "gone").await;
    let left = listed(&w).await;
    let mut ids: Vec<&String> = left.keys().collect();
    ids.sort();
    assert_eq!(ids, ["p1", "p2", "p4", "p5"]);
    act(&w, "resume").await;
    let all = settled(&w, 4).await;
    assert_eq!(all.len(), 4);
    let got = w.rx.requests();
    assert_eq!(got.len(), 1);
    let sent: Vec<String> = serde_json::from_slice::<Value>(&got[0].body).unwrap().as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(sent, ["p1", "p2", "p4", "p5"], "the deleted user's events are not sent");
    // After delivery, deleting another user takes the logged request (which holds their event).
    let attempts = forget(&w, "u2").await;
    assert!(!attempts.to_string().contains("p2"), "{attempts}");
    let left = listed(&w).await;
    assert_eq!(left.len(), 3, "{left:?}");
}
both!(a_deleted_users_events_leave_their_batch);

async fn a_dead_batch_leaves_a_dead_letter_per_event(db: Db) {
    let (_env, w) = world(db, json!({"batch_size": 3, "batch_wait_ms": 100})).await;
    w.rx.answer(&[(400, None)]);
    send(&w, &[("d0", "u1", json!({})), ("d1", "u2", json!({})), ("d2", "u3", json!({}))]).await;
    let all = settled(&w, 3).await;
    assert!(all.values().all(|(_, s, _)| s == "dead"), "{all:?}");
    let ids: std::collections::HashSet<&String> = all.values().map(|(id, _, _)| id).collect();
    assert_eq!(ids.len(), 3, "a row each: {all:?}");
    // Replaying one dead letter sends that event alone.
    let c = w.server.client();
    let r = c.post(w.server.at(&format!("/api/destinations/{}/dead-letter/replay", w.dest))).bearer_auth(&w.token).json(&json!({"ids": [all["d1"].0]})).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let got = w.rx.wait_for(2, 10).await;
    let sent: Vec<String> = serde_json::from_slice::<Value>(&got[1].body).unwrap().as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(sent, ["d1"]);
    let all = settled(&w, 3).await;
    assert_eq!((all["d0"].1.as_str(), all["d1"].1.as_str(), all["d2"].1.as_str()), ("dead", "succeeded", "dead"));
}
both!(a_dead_batch_leaves_a_dead_letter_per_event);

async fn events_sent_one_by_one_share_a_row_and_keep_their_own_attempts(db: Db) {
    let (_env, w) = world(db, json!({})).await;
    act(&w, "pause").await;
    send(&w, &[("o0", "keep", json!({})), ("o1", "gone", json!({})), ("o2", "keep", json!({}))]).await;
    routed(&w, 3).await;
    act(&w, "resume").await;
    let all = settled(&w, 3).await;
    assert_eq!(w.rx.requests().len(), 3, "a request per event");
    let ids: std::collections::HashSet<&String> = all.values().map(|(id, _, _)| id).collect();
    assert_eq!(ids.len(), 1, "routed together, one row: {all:?}");
    for id in ["o0", "o1", "o2"] {
        let attempts = w.get(&format!("/attempts?message_id={id}")).await;
        let items = attempts["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{id}: only its own request: {attempts}");
        assert_eq!(items[0]["message_id"], id);
        assert!(items[0]["request"].to_string().contains(id), "{attempts}");
    }
    let attempts = forget(&w, "gone").await;
    let left: Vec<&str> = attempts["items"].as_array().unwrap().iter().map(|a| a["message_id"].as_str().unwrap()).collect();
    assert_eq!(left.len(), 2, "{attempts}");
    assert!(!left.contains(&"o1") && !attempts.to_string().contains("gone"), "{attempts}");
}
both!(events_sent_one_by_one_share_a_row_and_keep_their_own_attempts);

/// An ordered destination that batches keeps a row per event; a batch's request is logged with its
/// first event and the others point to it. Deleting a user whose event rode in another user's
/// request takes that request too, whether it failed or was delivered.
async fn a_deleted_user_leaves_no_request_logged_with_another_users_event(db: Db) {
    let (_env, w) = world(db, json!({"ordered": true, "batch_size": 3, "batch_wait_ms": 100, "schedule": [0.3]})).await;
    w.rx.answer(&[(500, None)]);
    send(&w, &[("q0", "keep", json!({})), ("q-of-gone", "gone", json!({})), ("q2", "also", json!({}))]).await;
    let all = settled(&w, 3).await;
    let got = w.rx.requests();
    assert_eq!(serde_json::from_slice::<Value>(&got[0].body).unwrap().as_array().unwrap().len(), 3, "one request, which failed");
    assert!(all.values().all(|(_, s, _)| s == "succeeded"), "{all:?}");
    let before = w.get("/attempts").await;
    assert!(before.to_string().contains("gone"), "the logged requests hold the user's event: {before}");
    let after = forget(&w, "gone").await;
    // (Ids are Crockford base32, without the letter o.)
    assert!(!after.to_string().contains("gone"), "neither their event nor its messageId is left: {after}");
    // The other events' deliveries stay listed.
    let left = listed(&w).await;
    assert!(left.contains_key("q0") && left.contains_key("q2") && !left.contains_key("q-of-gone"), "{left:?}");
}
both!(a_deleted_user_leaves_no_request_logged_with_another_users_event);

/// Two batch rows sent in one request: the request is logged with the first row, the second row
/// points to it. Deleting a user whose event is in the second row takes that request too.
async fn a_deleted_user_leaves_no_request_logged_with_another_batch_row(db: Db) {
    let (_env, w) = world(db, json!({"batch_size": 4, "batch_wait_ms": 100})).await;
    act(&w, "pause").await;
    send(&w, &[("b0", "keep", json!({})), ("b1", "keep", json!({}))]).await;
    routed(&w, 2).await;
    // Their event is not the first of its row (which the row's own seq would find).
    send(&w, &[("b2", "also", json!({})), ("b-of-gone", "gone", json!({}))]).await;
    routed(&w, 4).await;
    act(&w, "resume").await;
    let all = settled(&w, 4).await;
    let rows: std::collections::HashSet<&String> = all.values().map(|(id, _, _)| id).collect();
    assert_eq!(rows.len(), 2, "two router steps, two rows: {all:?}");
    let got = w.rx.requests();
    assert_eq!(got.len(), 1, "both rows in one request");
    assert_eq!(serde_json::from_slice::<Value>(&got[0].body).unwrap().as_array().unwrap().len(), 4);
    assert!(w.get("/attempts").await.to_string().contains("gone"), "the logged request holds their event");
    let after = forget(&w, "gone").await;
    assert!(!after.to_string().contains("gone"), "neither their event nor its messageId is left: {after}");
    let left = listed(&w).await;
    assert_eq!(left.len(), 3, "{left:?}");
}
both!(a_deleted_user_leaves_no_request_logged_with_another_batch_row);
