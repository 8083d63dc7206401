//! The delivery engine's edges against a real receiver: a 503 pausing the whole destination,
//! timeouts and 408, replays recorded with how they ended, discard, the attempt log's headers and
//! cut sizes, refused credentials alerted as misconfigured, redirects not followed, disabling.

use crate::both;
use crate::delivery::{world_on, World};
use crate::harness::{Db, TestEnv, TestServer};
use crate::receiver::Receiver;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// A server allowed to reach the receiver, with these environment variables.
fn serve(env: &TestEnv, vars: &[(&str, String)]) -> TestServer {
    let mut cmd = env.cli();
    cmd.env("SWITCHYARD_LOG", "info");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--allow-private-destinations"]);
    TestServer::spawn(cmd)
}

async fn world(env: &TestEnv, delivery: Value) -> World {
    world_on(env, serve(env, &[]), Receiver::start().await, delivery).await
}

impl World {
    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let url = self.server.at(&format!("/api/destinations/{}{path}", self.dest));
        let mut req = self.server.client().request(method, url).bearer_auth(&self.token);
        // Null: no body at all.
        if !body.is_null() {
            req = req.json(&body);
        }
        let r = req.send().await.unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap_or(Value::Null)
    }

    async fn destination(&self) -> Value {
        let url = self.server.at(&format!("/api/destinations/{}", self.dest));
        self.server.client().get(url).bearer_auth(&self.token).send().await.unwrap().json().await.unwrap()
    }
}

/// A 503 with `Retry-After` holds back every event of the destination, not only its own: another
/// user's event sent meanwhile waits too. The attempt keeps the response's headers.
async fn a_503_holds_back_the_whole_destination(db: Db) {
    let env = crate::env_or_skip!(db);
    let w = world(&env, json!({"schedule": [0.1]})).await;
    w.rx.answer(&[(503, Some("2"))]);
    w.track_as("p-1", "u1").await;
    w.rx.wait_for(1, 10).await;
    w.track_as("p-2", "u2").await;
    w.state_of("p-2", "succeeded").await;
    w.state_of("p-1", "succeeded").await;
    let got = w.rx.requests();
    assert_eq!(got.len(), 3, "one 503, then each event once");
    for r in &got[1..] {
        let gap = r.at - got[0].at;
        assert!(gap >= Duration::from_millis(1950), "no request to the destination for 2 s after the 503: {gap:?}");
    }
    let attempts = w.get("/attempts?message_id=p-1").await;
    let failed = &attempts["items"][1];
    assert_eq!((failed["status"].as_i64(), failed["outcome"].as_str()), (Some(503), Some("retryable")), "{attempts}");
    assert_eq!(failed["response_headers"]["retry-after"], "2", "{failed}");
    assert_eq!(failed["response_headers"]["x-receiver"], "switchyard-tests", "{failed}");
}
both!(a_503_holds_back_the_whole_destination);

/// A request that outlives `delivery_timeout_secs` and a 408 are both retried.
#[tokio::test]
async fn timeouts_and_408_are_retried() {
    let env = crate::env_or_skip!(Db::Sqlite);
    let server = serve(&env, &[("SWITCHYARD_DELIVERY_TIMEOUT_SECS", "1".into())]);
    let w = world_on(&env, server, Receiver::start().await, json!({"schedule": [0.2]})).await;
    w.rx.delay_ms.store(1600, Ordering::SeqCst);
    w.track("t-1").await;
    w.rx.wait_for(1, 10).await;
    w.rx.delay_ms.store(0, Ordering::SeqCst);
    let d = w.state_of("t-1", "succeeded").await;
    assert_eq!(d["attempts"], 2, "{d}");
    let attempts = w.get("/attempts?message_id=t-1").await;
    let first = &attempts["items"][1];
    assert_eq!(first["outcome"], "retryable", "{first}");
    assert!(first["status"].is_null(), "no answer within the timeout: {first}");
    assert!(first["response"].as_str().unwrap().contains("timed out"), "{first}");
    assert!(first["latency_ms"].as_i64().unwrap() < 1500, "cut off at 1 s: {first}");

    w.rx.answer(&[(408, None)]);
    w.track("t-2").await;
    let d = w.state_of("t-2", "succeeded").await;
    assert_eq!(d["attempts"], 2, "{d}");
}

/// Replays are listed with who asked, what, how many and how their deliveries ended; dead letters
/// can be discarded. Also: `max_attempts` gives up and dead-letters.
async fn replays_are_recorded_with_how_they_ended(db: Db) {
    let env = crate::env_or_skip!(db);
    let w = world(&env, json!({"schedule": [0.1], "max_attempts": 1})).await;
    w.rx.status.store(400, Ordering::SeqCst);
    w.track_as("r-1", "u1").await;
    w.track_as("r-2", "u2").await;
    w.state_of("r-1", "dead").await;
    w.state_of("r-2", "dead").await;

    // Replay all (no body): r-1 is delivered, r-2 fails again and is given up after one attempt.
    w.rx.status.store(200, Ordering::SeqCst);
    w.rx.fail_ids.lock().unwrap().insert("r-2".into(), 100);
    let r = w.send(reqwest::Method::POST, "/dead-letter/replay", Value::Null).await;
    assert_eq!(r["count"], 2, "{r}");
    w.state_of("r-1", "succeeded").await;
    let again = w.state_of("r-2", "dead").await;
    assert!(again["reason"].as_str().unwrap().contains("gave up after 1 attempts: answered 500"), "{again}");

    let replays = w.get("/replays").await;
    let one = &replays["items"][0];
    assert_eq!(replays["items"].as_array().unwrap().len(), 1, "{replays}");
    assert_eq!(one["id"], r["replay_id"]);
    assert_eq!(one["actor"], "token:a", "{one}");
    assert_eq!((one["count"].as_i64(), &one["outcome"]), (Some(2), &json!({"succeeded": 1, "dead": 1})), "{one}");
    assert!(one["at"].as_i64().unwrap() > 0);

    // Discard the one still dead: it leaves the dead-letter list and shows as discarded.
    let id = again["id"].as_str().unwrap();
    let n = w.send(reqwest::Method::DELETE, "/dead-letter", json!({"ids": [id]})).await;
    assert_eq!(n["count"], 1, "{n}");
    assert!(w.get("/dead-letter").await["items"].as_array().unwrap().is_empty());
    w.state_of("r-2", "discarded").await;
    let replays = w.get("/replays").await;
    assert_eq!(replays["items"][0]["outcome"], json!({"succeeded": 1, "discarded": 1}), "{replays}");
}
both!(replays_are_recorded_with_how_they_ended);

/// `attempt_request_bytes` and `attempt_response_bytes` cut what the attempt log keeps.
#[tokio::test]
async fn the_attempt_log_cuts_bodies_as_configured() {
    let env = crate::env_or_skip!(Db::Sqlite);
    let vars = [("SWITCHYARD_ATTEMPT_REQUEST_BYTES", "100".to_string()), ("SWITCHYARD_ATTEMPT_RESPONSE_BYTES", "64".to_string())];
    let w = world_on(&env, serve(&env, &vars), Receiver::start().await, json!({})).await;
    *w.rx.reply.lock().unwrap() = "y".repeat(1000);
    w.track("c-1").await;
    w.state_of("c-1", "succeeded").await;
    let a = &w.get("/attempts?message_id=c-1").await["items"][0];
    let request = a["request"].as_str().expect("a cut request is kept as text");
    assert!(request.ends_with('…') && request.len() <= 100 + '…'.len_utf8(), "{request}");
    let response = a["response"].as_str().unwrap();
    assert_eq!(response, format!("{}…", "y".repeat(64)));
}

/// A 401 (or 403) dead-letters the event and alerts that the destination is misconfigured, which
/// its status shows until a delivery succeeds.
#[tokio::test]
async fn refused_credentials_alert_as_misconfigured() {
    let env = crate::env_or_skip!(Db::Sqlite);
    let alerts = Receiver::start().await;
    let server = serve(&env, &[("SWITCHYARD_ALERT_URL", format!("{}/alerts", alerts.url))]);
    let w = world_on(&env, server, Receiver::start().await, json!({"schedule": [0.1]})).await;
    w.rx.status.store(401, Ordering::SeqCst);
    w.track("k-1").await;
    w.state_of("k-1", "dead").await;
    let got = alerts.wait_for(1, 10).await;
    let alert: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(alert["kind"], "misconfigured", "{alert}");
    assert!(alert["reason"].as_str().unwrap().contains("answered 401"), "{alert}");
    let d = w.destination().await;
    assert_eq!(d["status"], "misconfigured", "{d}");
    assert!(d["status_reason"].as_str().unwrap().contains("answered 401"), "{d}");
    // Also after a restart (the start-up check knows nothing of refused credentials).
    let mut w = w;
    let _ = w.server.child.kill();
    let _ = w.server.child.wait();
    w.server = serve(&env, &[]);
    assert_eq!(w.destination().await["status"], "misconfigured");

    w.rx.status.store(200, Ordering::SeqCst);
    w.send(reqwest::Method::POST, "/dead-letter/replay", json!({})).await;
    w.state_of("k-1", "succeeded").await;
    for _ in 0..50 {
        if w.destination().await["status"] == "ok" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the status stayed misconfigured after a delivery: {}", w.destination().await);
}

/// A redirect is an answer, not followed: the event is dead-lettered with it, and the operator
/// alerted that the destination is dead-lettering.
#[tokio::test]
async fn redirects_are_not_followed() {
    let env = crate::env_or_skip!(Db::Sqlite);
    let alerts = Receiver::start().await;
    let server = serve(&env, &[("SWITCHYARD_ALERT_URL", format!("{}/alerts", alerts.url))]);
    let w = world_on(&env, server, Receiver::start().await, json!({"schedule": [0.1]})).await;
    w.rx.answer(&[(302, None)]);
    w.track("x-1").await;
    let d = w.state_of("x-1", "dead").await;
    assert!(d["reason"].as_str().unwrap().contains("answered 302"), "{d}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = w.rx.requests();
    assert_eq!(got.len(), 1, "the Location was not requested");
    assert_eq!(got[0].path, "/in");
    let alert: Value = serde_json::from_slice(&alerts.wait_for(1, 10).await[0].body).unwrap();
    assert_eq!((alert["kind"].as_str(), alert["destination"].as_str()), (Some("dead_letter"), Some("hook")), "{alert}");
}

/// `concurrency` caps the requests a destination has in flight at once.
#[tokio::test]
async fn the_concurrency_limit_holds() {
    let env = crate::env_or_skip!(Db::Sqlite);
    let w = world(&env, json!({"concurrency": 2})).await;
    w.rx.delay_ms.store(300, Ordering::SeqCst);
    for i in 0..6 {
        w.track_as(&format!("n-{i}"), &format!("u{i}")).await;
    }
    let got = w.rx.wait_for(6, 20).await;
    assert_eq!(got.len(), 6);
    // Each request is held 300 ms: at most two may start within any 250 ms.
    let most = got.iter().map(|a| got.iter().filter(|b| b.at >= a.at && b.at - a.at < Duration::from_millis(250)).count()).max().unwrap();
    assert!(most <= 2, "{most} requests started within 250 ms");
    let span = got[5].at - got[0].at;
    assert!(span >= Duration::from_millis(550), "three rounds of two: {span:?}");
}

/// A disabled destination is left out of routing and claims; enabled again, it gets new events.
#[tokio::test]
async fn a_disabled_destination_gets_nothing_until_enabled() {
    let env = crate::env_or_skip!(Db::Sqlite);
    let w = world(&env, json!({})).await;
    let url = w.server.at(&format!("/api/destinations/{}", w.dest));
    let c = w.server.client();
    let r = c.patch(&url).bearer_auth(&w.token).json(&json!({"enabled": false})).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    w.track("e-1").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(w.rx.requests().is_empty(), "nothing reaches a disabled destination");
    assert!(w.get("/deliveries").await["items"].as_array().unwrap().is_empty(), "nor is anything queued for it");
    let r = c.patch(&url).bearer_auth(&w.token).json(&json!({"enabled": true})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    w.track("e-2").await;
    w.state_of("e-2", "succeeded").await;
    let got = w.rx.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].headers["webhook-id"], "e-2");
}

/// Shutdown lets a delivery in flight finish and records it: after a restart it is not sent again.
/// (Multi-threaded: the receiver must answer while this thread waits for the server to exit.)
#[tokio::test(flavor = "multi_thread")]
async fn shutdown_finishes_a_delivery_in_flight() {
    let env = crate::env_or_skip!(Db::Sqlite);
    let mut w = world(&env, json!({})).await;
    w.rx.delay_ms.store(1500, Ordering::SeqCst);
    w.track("s-1").await;
    w.rx.wait_for(1, 10).await;
    let status = w.server.terminate(Duration::from_secs(12)).expect("the server stops within the drain deadline");
    assert!(status.success(), "{status:?}");
    w.rx.delay_ms.store(0, Ordering::SeqCst);
    w.server = serve(&env, &[]);
    let d = w.state_of("s-1", "succeeded").await;
    assert_eq!(d["attempts"], 1, "{d}: {}", w.get("/attempts?message_id=s-1").await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(w.rx.requests().len(), 1, "delivered once, not again after the restart");
}

/// The engine's metrics: deliveries by destination and outcome, the latency histogram, the queue.
#[tokio::test]
async fn delivery_metrics_are_exported() {
    let env = crate::env_or_skip!(Db::Sqlite);
    let w = world(&env, json!({"schedule": [0.1]})).await;
    w.track("g-1").await;
    w.state_of("g-1", "succeeded").await;
    w.rx.status.store(400, Ordering::SeqCst);
    w.track("g-2").await;
    w.state_of("g-2", "dead").await;
    let lines = [
        "switchyard_deliveries_total{destination=\"hook\",outcome=\"delivered\"} 1",
        "switchyard_deliveries_total{destination=\"hook\",outcome=\"dead\"} 1",
        "switchyard_delivery_latency_seconds_count 1",
        "switchyard_delivery_latency_seconds_bucket{le=",
        // The queue is sampled every second.
        "switchyard_queue_depth 0",
        "switchyard_queue_oldest_age_seconds 0",
    ];
    let mut text = String::new();
    for _ in 0..60 {
        text = w.server.client().get(w.server.at("/metrics")).send().await.unwrap().text().await.unwrap();
        if lines.iter().all(|l| text.contains(l)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let missing: Vec<&&str> = lines.iter().filter(|l| !text.contains(*l)).collect();
    panic!("missing {missing:?} in:\n{text}");
}

/// Without `allow_private_destinations`, the engine refuses private addresses at send time, both
/// an IP literal and a name resolving to loopback (saved while it was allowed).
#[tokio::test]
async fn private_addresses_are_refused_at_send_time() {
    let env = crate::env_or_skip!(Db::Sqlite);
    let rx = Receiver::start().await;
    let port = rx.url.rsplit(':').next().unwrap();
    let file = env.dir.path().join("ws.toml");
    let mut text = String::from("[[sources]]\nname = \"web\"\nwrite_key = \"wk_private_test\"\n");
    for (name, host) in [("by-ip", "127.0.0.1"), ("by-name", "localhost")] {
        text += &format!("[[destinations]]\nname = \"{name}\"\nintegration = \"webhook\"\nsources = [\"web\"]\nenabled = true\n[destinations.settings]\nurl = \"http://{host}:{port}/in\"\n");
    }
    std::fs::write(&file, text).unwrap();
    let out = env.cli().env("SWITCHYARD_ALLOW_PRIVATE_DESTINATIONS", "true").args(["workspace", "apply", file.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let server = env.start().await;
    let token = env.token("a", "admin");
    let r = server.client().post(server.at("/v1/track")).basic_auth("wk_private_test", Some(""))
        .json(&json!({"userId": "u1", "event": "E", "messageId": "v-1"})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let list: Value = server.client().get(server.at("/api/destinations")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    for d in list["items"].as_array().unwrap() {
        let url = server.at(&format!("/api/destinations/{}/deliveries", d["id"].as_str().unwrap()));
        let mut state = Value::Null;
        for _ in 0..300 {
            let got: Value = server.client().get(&url).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
            state = got["items"][0].clone();
            if state["state"] == "dead" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(state["state"], "dead", "{}: {state}", d["name"]);
        assert!(state["reason"].as_str().unwrap().contains("private address"), "{}: {state}", d["name"]);
    }
    assert!(rx.requests().is_empty(), "nothing reached the private address");
}

/// The global retry settings apply to destinations without their own; a destination's
/// `retry_after_cap_secs` caps what `Retry-After` asks for.
#[tokio::test]
async fn global_retry_settings_and_the_retry_after_cap() {
    let env = crate::env_or_skip!(Db::Sqlite);
    let vars = [("SWITCHYARD_RETRY_SCHEDULE", "0.1,0.1".to_string()), ("SWITCHYARD_RETRY_MAX_ATTEMPTS", "2".to_string())];
    let w = world_on(&env, serve(&env, &vars), Receiver::start().await, json!({})).await;
    w.rx.status.store(500, Ordering::SeqCst);
    w.track("q-1").await;
    let d = w.state_of("q-1", "dead").await;
    assert!(d["reason"].as_str().unwrap().starts_with("gave up after 2 attempts"), "{d}");
    assert_eq!(w.rx.requests().len(), 2);

    w.rx.status.store(200, Ordering::SeqCst);
    w.send(reqwest::Method::PATCH, "", json!({"delivery": {"retry_after_cap_secs": 0.5}})).await;
    w.rx.answer(&[(429, Some("3600"))]);
    w.track("q-2").await;
    w.state_of("q-2", "succeeded").await;
    let got = w.rx.requests();
    let gap = got[got.len() - 1].at - got[got.len() - 2].at;
    assert!(gap >= Duration::from_millis(450) && gap < Duration::from_secs(3), "Retry-After: 3600 capped at 0.5 s: {gap:?}");
}

/// Routing in the engine: the destination's filters, its condition and the event's `integrations`
/// object keep events out, each recorded as filtered with the reason; the rest are delivered.
async fn filters_keep_events_out_of_the_queue_with_the_reason(db: Db) {
    let env = crate::env_or_skip!(db);
    let w = world(&env, json!({})).await;
    let filters = json!({"filters": {"allow_events": ["Order Completed"], "condition": "properties.total | float >= 10"}});
    w.send(reqwest::Method::PATCH, "", filters).await;
    let cases = [
        ("f-1", json!({"event": "Order Completed", "properties": {"total": 12}}), None),
        ("f-2", json!({"event": "Signed Up"}), Some("not on the allow list")),
        ("f-3", json!({"event": "Order Completed", "properties": {"total": 5}}), Some("does not hold")),
        ("f-4", json!({"event": "Order Completed", "properties": {"total": 50}, "integrations": {"All": false}}), Some("integrations object")),
        ("f-5", json!({"event": "Order Completed", "properties": {"total": 50}, "integrations": {"All": false, "hook": true}}), None),
    ];
    for (id, fields, _) in &cases {
        let mut event = json!({"userId": "u1", "messageId": id});
        event.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
        let r = w.server.client().post(w.server.at("/v1/track")).basic_auth(&w.key, Some("")).json(&event).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    for (id, _, why) in &cases {
        match why {
            None => {
                w.state_of(id, "succeeded").await;
            }
            Some(why) => {
                let d = w.state_of(id, "filtered").await;
                assert!(d["reason"].as_str().unwrap().contains(why), "{id}: {d}");
            }
        }
    }
    let metrics = w.server.client().get(w.server.at("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("switchyard_deliveries_total{destination=\"hook\",outcome=\"filtered\"} 3"), "{metrics}");
    let mut sent: Vec<String> = w.rx.requests().iter().map(|r| r.headers["webhook-id"].to_str().unwrap().to_string()).collect();
    sent.sort();
    assert_eq!(sent, ["f-1", "f-5"]);
}
both!(filters_keep_events_out_of_the_queue_with_the_reason);

/// A destination that refuses connections is retried like a 5xx, then dead-lettered.
#[tokio::test]
async fn connection_errors_are_retried() {
    let env = crate::env_or_skip!(Db::Sqlite);
    let w = world(&env, json!({"schedule": [0.1], "max_attempts": 2})).await;
    // A port that was just free: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    w.send(reqwest::Method::PATCH, "", json!({"settings": {"url": format!("http://{closed}/in")}})).await;
    w.track("c-1").await;
    let d = w.state_of("c-1", "dead").await;
    assert!(d["reason"].as_str().unwrap().starts_with("gave up after 2 attempts"), "{d}");
    let attempts = w.get("/attempts?message_id=c-1").await;
    let outcomes: Vec<&str> = attempts["items"].as_array().unwrap().iter().map(|a| a["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["retryable", "retryable"], "{attempts}");
    assert!(attempts["items"][0]["response"].as_str().unwrap().contains("onnect"), "{attempts}");
}
