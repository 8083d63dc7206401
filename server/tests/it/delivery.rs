//! The delivery engine end to end: events sent to the Tracking API reach a real receiver through
//! an enabled webhook destination; retries, Retry-After with a destination pause, dead-letter and
//! replay; the attempt log.

use crate::both;
use crate::harness::{Db, TestServer};
use crate::receiver::Receiver;
use base64::Engine as _;
use serde_json::{json, Value};
use std::time::Duration;

pub struct World {
    pub server: TestServer,
    pub token: String,
    pub key: String,
    pub dest: String,
    pub rx: Receiver,
}

/// A server, a source, a receiver and an enabled webhook destination with a fast retry schedule.
async fn world(env: &crate::harness::TestEnv, delivery: Value) -> World {
    let server = env.start_with(&["--allow-private-destinations"]).await;
    world_on(env, server, Receiver::start().await, delivery).await
}

pub async fn world_on(env: &crate::harness::TestEnv, server: TestServer, rx: Receiver, delivery: Value) -> World {
    let token = env.token("a", "admin");
    let c = server.client();
    let src: Value = c.post(server.at("/api/sources")).bearer_auth(&token).json(&json!({"name": "web"})).send().await.unwrap().json().await.unwrap();
    let key = src["write_key"].as_str().unwrap().to_string();
    let body = json!({"name": "hook", "integration": "webhook", "enabled": true, "sources": ["web"],
        "settings": {"url": format!("{}/in", rx.url)}, "delivery": delivery,
        "actions": {"send": {"mapping": {"body": {"event": {"@path": "$.event"}, "user": {"@path": "$.userId"}, "id": {"@path": "$.messageId"}}}}}});
    let r = c.post(server.at("/api/destinations")).bearer_auth(&token).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let d: Value = r.json().await.unwrap();
    World { dest: d["id"].as_str().unwrap().to_string(), server, token, key, rx }
}

impl World {
    pub async fn track(&self, id: &str) {
        self.track_as(id, "u1").await
    }

    pub async fn track_as(&self, id: &str, user: &str) {
        let auth = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{}:", self.key)));
        let r = self.server.client().post(self.server.at("/v1/track")).header("Authorization", auth)
            .json(&json!({"userId": user, "event": "Order Completed", "messageId": id})).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }

    pub async fn get(&self, path: &str) -> Value {
        let url = self.server.at(&format!("/api/destinations/{}{path}", self.dest));
        self.server.client().get(url).bearer_auth(&self.token).send().await.unwrap().json().await.unwrap()
    }

    /// Waits until the event's delivery reaches `state`.
    pub async fn state_of(&self, id: &str, state: &str) -> Value {
        for _ in 0..300 {
            let list = self.get("/deliveries").await;
            if let Some(d) = list["items"].as_array().unwrap().iter().find(|d| d["message_id"] == id && d["state"] == state) {
                return d.clone();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{id} never reached {state}: {}", self.get("/deliveries").await);
    }
}

async fn delivered_mapped_and_signed(db: Db) {
    let env = crate::env_or_skip!(db);
    let w = world(&env, json!({"schedule": [0.2]})).await;
    w.track("m-1").await;
    let got = w.rx.wait_for(1, 10).await;
    assert_eq!(got.len(), 1);
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body, json!({"event": "Order Completed", "user": "u1", "id": "m-1"}), "the mapped body");
    assert_eq!(got[0].headers["webhook-id"], "m-1");
    assert!(got[0].headers["webhook-signature"].to_str().unwrap().starts_with("v1,"));
    let d = w.state_of("m-1", "succeeded").await;
    assert_eq!(d["attempts"], 1);
    let attempts = w.get("/attempts?message_id=m-1").await;
    let a = &attempts["items"][0];
    assert_eq!((a["outcome"].as_str(), a["status"].as_i64()), (Some("delivered"), Some(200)));
    assert_eq!(a["request"]["url"], format!("{}/in", w.rx.url));

    // A privacy deletion also removes the user's deliveries and attempts (they hold copies).
    let c = w.server.client();
    let r: Value = c.post(w.server.at("/api/privacy/deletions")).bearer_auth(&w.token).json(&json!({"userId": "u1"})).send().await.unwrap().json().await.unwrap();
    assert_eq!(r["deliveries_deleted"], 1, "{r}");
    assert!(w.get("/attempts").await["items"].as_array().unwrap().is_empty());
}
both!(delivered_mapped_and_signed);

async fn retries_then_succeeds(db: Db) {
    let env = crate::env_or_skip!(db);
    let w = world(&env, json!({"schedule": [0.2, 0.2, 0.2]})).await;
    w.rx.answer(&[(500, None), (500, None), (500, None)]);
    w.track("m-retry").await;
    let d = w.state_of("m-retry", "succeeded").await;
    assert_eq!(d["attempts"], 4);
    let got = w.rx.requests();
    assert_eq!(got.len(), 4, "three failures, then one success, then nothing more");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(w.rx.requests().len(), 4);
    let attempts = w.get("/attempts?message_id=m-retry").await;
    let outcomes: Vec<&str> = attempts["items"].as_array().unwrap().iter().map(|a| a["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["delivered", "retryable", "retryable", "retryable"]);
}
both!(retries_then_succeeds);

/// A claim only sets a lease: while the receiver holds the request, the delivery is listed (and
/// filtered) as in flight, then as succeeded, with one attempt.
async fn a_claimed_delivery_is_in_flight_until_it_ends(db: Db) {
    let env = crate::env_or_skip!(db);
    let w = world(&env, json!({"schedule": [0.2]})).await;
    w.rx.delay_ms.store(1500, std::sync::atomic::Ordering::SeqCst);
    w.track("m-slow").await;
    let d = w.state_of("m-slow", "in_flight").await;
    assert_eq!(d["attempts"], 0, "{d}");
    let listed = w.get("/deliveries?state=in_flight").await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(w.get("/deliveries?state=pending").await["items"].as_array().unwrap().len(), 0);
    let d = w.state_of("m-slow", "succeeded").await;
    assert_eq!(d["attempts"], 1);
    assert_eq!(w.rx.requests().len(), 1, "delivered once");
    assert_eq!(w.get("/deliveries?state=in_flight").await["items"].as_array().unwrap().len(), 0);
}
both!(a_claimed_delivery_is_in_flight_until_it_ends);

async fn retry_after_pauses_the_destination(db: Db) {
    let env = crate::env_or_skip!(db);
    let w = world(&env, json!({"schedule": [0.1]})).await;
    w.rx.answer(&[(429, Some("2"))]);
    w.track("m-429").await;
    w.state_of("m-429", "succeeded").await;
    let got = w.rx.requests();
    assert_eq!(got.len(), 2);
    let gap = got[1].at - got[0].at;
    assert!(gap >= Duration::from_secs(2), "no new request for 2 s after the 429: {gap:?}");
}
both!(retry_after_pauses_the_destination);

async fn permanent_failure_dead_letters_and_replay_delivers(db: Db) {
    let env = crate::env_or_skip!(db);
    let w = world(&env, json!({"schedule": [0.1]})).await;
    w.rx.status.store(400, std::sync::atomic::Ordering::SeqCst);
    w.track("m-400").await;
    let d = w.state_of("m-400", "dead").await;
    assert!(d["reason"].as_str().unwrap().contains("400"), "{d}");
    let dead = w.get("/dead-letter").await;
    assert_eq!(dead["items"].as_array().unwrap().len(), 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(w.rx.requests().len(), 1, "a 400 is not retried");

    // Fixed: replay delivers it.
    w.rx.status.store(200, std::sync::atomic::Ordering::SeqCst);
    let c = w.server.client();
    let url = w.server.at(&format!("/api/destinations/{}/dead-letter/replay", w.dest));
    let none: Value = c.post(&url).bearer_auth(&w.token).json(&json!({"filter": {"reason_contains": "answered 500"}})).send().await.unwrap().json().await.unwrap();
    assert_eq!(none["count"], 0, "the filter keeps it out: {none}");
    let body = json!({"filter": {"reason_contains": "answered 400", "since": 0}});
    let r: Value = c.post(&url).bearer_auth(&w.token).json(&body).send().await.unwrap().json().await.unwrap();
    assert_eq!(r["count"], 1);
    w.state_of("m-400", "succeeded").await;
    assert_eq!(w.rx.requests().len(), 2);
    assert_eq!(w.get("/dead-letter").await["items"].as_array().unwrap().len(), 0);
}
both!(permanent_failure_dead_letters_and_replay_delivers);

#[tokio::test]
async fn pause_holds_back_and_resume_delivers() {
    let env = crate::env_or_skip!(Db::Sqlite);
    let w = world(&env, json!({})).await;
    let c = w.server.client();
    let r = c.post(w.server.at(&format!("/api/destinations/{}/pause", w.dest))).bearer_auth(&w.token).send().await.unwrap();
    assert_eq!(r.status(), 204);
    w.track("m-paused").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(w.rx.requests().is_empty(), "nothing is sent while paused");
    let r = c.post(w.server.at(&format!("/api/destinations/{}/resume", w.dest))).bearer_auth(&w.token).send().await.unwrap();
    assert_eq!(r.status(), 204);
    w.state_of("m-paused", "succeeded").await;
}

#[tokio::test]
async fn rate_limit_is_respected() {
    let env = crate::env_or_skip!(Db::Sqlite);
    let w = world(&env, json!({"rate_limit": 5})).await;
    for i in 0..15 {
        w.track(&format!("r{i}")).await;
    }
    let got = w.rx.wait_for(15, 20).await;
    assert_eq!(got.len(), 15);
    // A burst of 5, then 5 per second: the last 10 need at least 2 s.
    let span = got[14].at - got[0].at;
    assert!(span >= Duration::from_millis(1800), "15 requests at 5/s took {span:?}");
    let closest = got[5..].windows(2).map(|w| w[1].at - w[0].at).min().unwrap();
    assert!(closest >= Duration::from_millis(120), "after the burst, one every 200 ms: {closest:?}");
}

#[tokio::test]
async fn identify_only_when_traits_changed() {
    let env = crate::env_or_skip!(Db::Sqlite);
    let w = world(&env, json!({})).await;
    let c = w.server.client();
    let patch = json!({"filters": {"only_changed_traits": true}, "actions": {}});
    let r = c.patch(w.server.at(&format!("/api/destinations/{}", w.dest))).bearer_auth(&w.token).json(&patch).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let auth = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{}:", w.key)));
    for (id, plan) in [("i1", "free"), ("i2", "free"), ("i3", "pro")] {
        let body = json!({"userId": "u9", "messageId": id, "traits": {"plan": plan}});
        let r = c.post(w.server.at("/v1/identify")).header("Authorization", &auth).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    w.state_of("i3", "succeeded").await;
    let d = w.state_of("i2", "filtered").await;
    assert!(d["reason"].as_str().unwrap().contains("traits have not changed"), "{d}");
    // The webhook is not ordered: i1 and i3 may be sent at once, in either order.
    let mut ids: Vec<String> = w.rx.requests().iter().map(|r| r.headers["webhook-id"].to_str().unwrap().to_string()).collect();
    ids.sort();
    assert_eq!(ids, ["i1", "i3"]);
}

/// Events stored while a source had no destination are not sent to one created later (on SQLite the
/// router reads past them without saving its position at once).
async fn earlier_events_are_not_sent_to_a_new_destination(db: Db) {
    let env = crate::env_or_skip!(db);
    let server = env.start_with(&["--allow-private-destinations"]).await;
    let rx = Receiver::start().await;
    let token = env.token("a", "admin");
    let c = server.client();
    let src: Value = c.post(server.at("/api/sources")).bearer_auth(&token).json(&json!({"name": "web"})).send().await.unwrap().json().await.unwrap();
    let auth = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{}:", src["write_key"].as_str().unwrap())));
    let track = |id: &'static str| {
        c.post(server.at("/v1/track")).header("Authorization", &auth).json(&json!({"userId": "u1", "event": "Order Completed", "messageId": id})).send()
    };
    for id in ["before-1", "before-2", "before-3"] {
        assert_eq!(track(id).await.unwrap().status(), 200);
    }
    // Long enough for the router to read them, shorter than the interval it saves at.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let body = json!({"name": "hook", "integration": "webhook", "enabled": true, "sources": ["web"], "settings": {"url": format!("{}/in", rx.url)}});
    assert_eq!(c.post(server.at("/api/destinations")).bearer_auth(&token).json(&body).send().await.unwrap().status(), 201);
    assert_eq!(track("after").await.unwrap().status(), 200);
    assert_eq!(rx.wait_for(1, 10).await.len(), 1);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let ids: Vec<String> = rx.requests().iter().map(|r| r.headers["webhook-id"].to_str().unwrap().to_string()).collect();
    assert_eq!(ids, ["after"]);
}
both!(earlier_events_are_not_sent_to_a_new_destination);
