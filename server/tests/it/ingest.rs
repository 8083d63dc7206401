//! The Segment-compatible tracking API against the real binary, on SQLite and PostgreSQL.

use crate::both;
use crate::harness::{Db, TestEnv, TestServer};
use serde_json::{json, Value};
use std::io::Write;
use std::time::Duration;

pub(crate) const KEY: &str = "wk_web_example";

pub(crate) fn basic(key: &str) -> String {
    use base64::Engine;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{key}:")))
}

/// A server with source `web` (write key `wk_web_example`) from a workspace file, and an admin token.
pub(crate) async fn with_source(env: &TestEnv, extra_env: &[(&str, &str)]) -> (TestServer, String, String) {
    let file = env.dir.path().join("ws.toml");
    std::fs::write(&file, format!("[[sources]]\nname = \"web\"\ntype = \"web\"\nwrite_key = \"{KEY}\"\n")).unwrap();
    let token = env.token("admin", "admin");
    let mut cmd = env.cli();
    cmd.env("SWITCHYARD_LOG", "info").args(["serve", "--listen", "127.0.0.1:0", "--workspace", file.to_str().unwrap()]);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let server = TestServer::spawn(cmd);
    let sources: Value = server.client().get(server.at("/api/sources")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    let id = sources["items"][0]["id"].as_str().unwrap().to_string();
    (server, token, id)
}

pub(crate) async fn events(server: &TestServer, token: &str, source: &str) -> Vec<Value> {
    let page: Value = server.client().get(server.at(&format!("/api/sources/{source}/events?limit=1000"))).bearer_auth(token).send().await.unwrap().json().await.unwrap();
    page["items"].as_array().unwrap().clone()
}

/// Every stored messageId of a source, newest first, page by page.
pub(crate) async fn message_ids(server: &TestServer, token: &str, source: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut url = server.at(&format!("/api/sources/{source}/events?limit=1000"));
    loop {
        let page: Value = server.client().get(&url).bearer_auth(token).send().await.unwrap().json().await.unwrap();
        ids.extend(page["items"].as_array().unwrap().iter().map(|e| e["messageId"].as_str().unwrap().to_string()));
        match page["next"].as_str() {
            Some(n) => url = server.at(&format!("/api/sources/{source}/events?limit=1000&before={n}")),
            None => return ids,
        }
    }
}

async fn accepts_what_sdks_send_and_refuses_bad_input(db: Db) {
    let env = crate::env_or_skip!(db);
    let (server, token, source) = with_source(&env, &[]).await;
    let c = server.client();
    let post = |path: &str| c.post(server.at(path));

    // Basic auth, text/plain, clock skew: the client is an hour behind and sent 2 s after the event.
    let now = time::OffsetDateTime::now_utc();
    let fmt = |t: time::OffsetDateTime| t.format(&time::format_description::well_known::Rfc3339).unwrap();
    let client_time = now - time::Duration::hours(1);
    let res = post("/v1/track")
        .header("Authorization", basic(KEY))
        .header("Content-Type", "text/plain")
        .body(json!({"userId": "u1", "event": "Order Completed", "messageId": "m-1", "properties": {"total": 42},
                     "timestamp": fmt(client_time), "sentAt": fmt(client_time + time::Duration::seconds(2))}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"success": true}));

    // writeKey in the body; analytics.js's short route; a null field counts as absent.
    let res = post("/v1/p").json(&json!({"writeKey": KEY, "anonymousId": "a1", "userId": null, "name": "Home", "messageId": "m-2"})).send().await.unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    // gzip.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(json!({"userId": "u1", "traits": {"plan": "pro"}, "messageId": "m-3"}).to_string().as_bytes()).unwrap();
    let res = post("/v1/identify").header("Authorization", basic(KEY)).header("Content-Encoding", "gzip").body(gz.finish().unwrap()).send().await.unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    // A duplicate messageId is acknowledged and stored once.
    let res = post("/v1/track").header("Authorization", basic(KEY)).json(&json!({"userId": "u1", "event": "Order Completed", "messageId": "m-1"})).send().await.unwrap();
    assert_eq!(res.status(), 200);

    let stored = events(&server, &token, &source).await;
    assert_eq!(stored.len(), 3, "{stored:#?}");
    let track = stored.iter().find(|e| e["messageId"] == "m-1").unwrap();
    assert_eq!(track["type"], "track");
    let p = &track["payload"];
    assert_eq!(p["event"], "Order Completed");
    assert_eq!(p["properties"]["total"], 42);
    assert_eq!(p["context"]["ip"], "127.0.0.1");
    assert!(p.get("writeKey").is_none());
    let parse = |v: &Value| time::OffsetDateTime::parse(v.as_str().unwrap(), &time::format_description::well_known::Rfc3339).unwrap();
    let corrected = parse(&p["timestamp"]);
    let received = parse(&p["receivedAt"]);
    let skew = (received - corrected).whole_milliseconds();
    assert!((1900..=2100).contains(&skew), "timestamp is receivedAt minus 2 s, was {skew} ms");
    assert!((parse(&p["originalTimestamp"]) - client_time).whole_milliseconds().abs() < 1, "the client's time is kept");
    let page = stored.iter().find(|e| e["messageId"] == "m-2").unwrap();
    assert_eq!(page["type"], "page");
    assert!(page["payload"].get("userId").is_none());
    assert_eq!(stored.iter().find(|e| e["messageId"] == "m-3").unwrap()["payload"]["traits"]["plan"], "pro");

    // Refusals, in the Tracking API's error shape.
    let res = post("/v1/track").header("Authorization", basic("wk_nope")).json(&json!({"userId": "u", "event": "x"})).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "invalid_write_key");
    assert!(body["message"].is_string());
    let res = post("/v1/track").json(&json!({"userId": "u", "event": "x"})).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let big = "x".repeat(40 * 1024);
    let res = post("/v1/track").header("Authorization", basic(KEY)).json(&json!({"userId": "u", "event": "x", "properties": {"big": big}})).send().await.unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("limit of 32768 bytes per message"), "{body}");
    let res = post("/v1/track").header("Authorization", basic(KEY)).body("{\"userId\": \"u\",").send().await.unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("line 1 column"), "{body}");
    let res = post("/v1/track").header("Authorization", basic(KEY)).json(&json!({"userId": "u", "event": null})).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["message"], "event is required for track");
    let huge = "y".repeat(600 * 1024);
    let res = post("/v1/batch").header("Authorization", basic(KEY)).json(&json!({"batch": [], "pad": huge})).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.json::<Value>().await.unwrap()["message"].as_str().unwrap().contains("bytes per request"));

    // A batch with some invalid messages: the valid ones are stored, each refusal is listed.
    let res = post("/v1/batch")
        .header("Authorization", basic(KEY))
        .json(&json!({"batch": [
            {"type": "track", "userId": "u2", "event": "Signed Up", "messageId": "b-1"},
            {"type": "track", "userId": "u2", "messageId": "b-2"},
            {"type": "group", "userId": "u2", "groupId": "g1", "messageId": "b-3"},
            {"type": "launch", "userId": "u2", "messageId": "b-4"},
            {"type": "alias", "userId": "u2", "previousId": "a1", "messageId": "b-5"},
            {"type": "screen", "anonymousId": "a2", "name": "Home", "messageId": "b-6"}
        ], "context": {"library": {"name": "test"}}, "sentAt": "2026-01-01T00:00:00.000Z"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let rejected = body["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 2, "{body}");
    assert_eq!(rejected[0]["index"], 1);
    assert_eq!(rejected[0]["messageId"], "b-2");
    assert_eq!(rejected[0]["reason"], "event is required for track");
    assert_eq!(rejected[1]["index"], 3);
    let stored = events(&server, &token, &source).await;
    assert_eq!(stored.len(), 7);
    let screen = stored.iter().find(|e| e["messageId"] == "b-6").unwrap();
    assert_eq!(screen["payload"]["context"]["library"]["name"], "test", "batch-level context is merged");
    assert_eq!(screen["payload"]["sentAt"], "2026-01-01T00:00:00.000Z", "batch-level sentAt is merged");
    let rej: Value = c.get(server.at(&format!("/api/sources/{source}/rejections"))).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    let reasons: Vec<&str> = rej["items"].as_array().unwrap().iter().map(|r| r["reason"].as_str().unwrap()).collect();
    assert!(reasons.contains(&"event is required for track"), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("\"launch\"")), "{reasons:?}");

    // Browsers: preflight and CORS headers.
    let res = c
        .request(reqwest::Method::OPTIONS, server.at("/v1/batch"))
        .header("Origin", "https://shop.example.com")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type,authorization")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(res.headers()["access-control-allow-origin"], "https://shop.example.com");
    assert_eq!(res.headers()["access-control-allow-headers"], "content-type,authorization");

    // Metrics count by source and type.
    let metrics = c.get(server.at("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(&format!("ingest_accepted_total{{source=\"{source}\",type=\"track\"}}")), "{metrics}");
    assert!(metrics.contains("ingest_rejected_total"), "{metrics}");
    assert!(metrics.contains("ingest_ack_seconds"), "{metrics}");
}
both!(accepts_what_sdks_send_and_refuses_bad_input);

async fn acknowledged_events_survive_kill_9(db: Db) {
    let env = crate::env_or_skip!(db);
    let (mut server, token, source) = with_source(&env, &[]).await;
    let url = server.at("/v1/batch");
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let (url, acked) = (url.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let c = reqwest::Client::new();
            for i in 0.. {
                let ids: Vec<String> = (0..10).map(|j| format!("w{worker}-{i}-{j}")).collect();
                let batch: Vec<Value> = ids.iter().map(|id| json!({"type": "track", "userId": "u", "event": "Burst", "messageId": id})).collect();
                match c.post(&url).header("Authorization", basic(KEY)).json(&json!({"batch": batch})).send().await {
                    Ok(res) if res.status() == 200 => acked.lock().unwrap().extend(ids),
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    server.child.kill().unwrap(); // SIGKILL
    let _ = server.child.wait();
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().unwrap().clone();
    eprintln!("{db:?}: {} events acknowledged before kill -9", acked.len());
    assert!(acked.len() >= 50, "the burst got going: {} acknowledged", acked.len());
    drop(server);
    let server = env.start().await;
    let stored: std::collections::HashSet<String> = message_ids(&server, &token, &source).await.into_iter().collect();
    let lost: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(lost.is_empty(), "{} of {} acknowledged events lost, e.g. {:?}", lost.len(), acked.len(), &lost[..lost.len().min(5)]);
}
both!(acknowledged_events_survive_kill_9);

#[tokio::test]
async fn write_keys_rotate_revoke_and_sources_are_managed() {
    let env = crate::env_or_skip!(Db::Sqlite);
    let token = env.token("ed", "editor");
    let viewer = env.token("v", "viewer");
    let server = env.start().await;
    let c = server.client();
    let res = c.post(server.at("/api/sources")).bearer_auth(&viewer).json(&json!({"name": "app"})).send().await.unwrap();
    assert_eq!(res.status(), 403, "viewers read only");
    let res = c.post(server.at("/api/sources")).bearer_auth(&token).json(&json!({"name": "bad name", "allowed_origins": ["shop"]})).send().await.unwrap();
    assert_eq!(res.status(), 422);
    let fields: Vec<String> = res.json::<Value>().await.unwrap()["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap().to_string()).collect();
    assert_eq!(fields, ["name", "allowed_origins[0]"]);
    let res = c.post(server.at("/api/sources")).bearer_auth(&token).json(&json!({"name": "app", "type": "mobile"})).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let src: Value = res.json().await.unwrap();
    let id = src["id"].as_str().unwrap().to_string();
    let old_key = src["write_key"].as_str().unwrap().to_string();
    assert_eq!(src["type"], "mobile");
    let send = |key: String| {
        let c = c.clone();
        let url = server.at("/v1/track");
        async move { c.post(url).header("Authorization", basic(&key)).json(&json!({"userId": "u", "event": "e"})).send().await.unwrap().status() }
    };
    assert_eq!(send(old_key.clone()).await, 200);

    // Rotation with an overlap: both keys work; with no overlap the old one stops at once.
    let rotated: Value = c.post(server.at(&format!("/api/sources/{id}/write-keys"))).bearer_auth(&token).json(&json!({"overlap_seconds": 3600})).send().await.unwrap().json().await.unwrap();
    let keys = rotated["write_keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    let new_key = rotated["write_key"].as_str().unwrap().to_string();
    assert_ne!(new_key, old_key);
    assert_eq!(send(old_key.clone()).await, 200);
    assert_eq!(send(new_key.clone()).await, 200);
    let rotated: Value = c.post(server.at(&format!("/api/sources/{id}/write-keys"))).bearer_auth(&token).json(&json!({"overlap_seconds": 0})).send().await.unwrap().json().await.unwrap();
    let newest = rotated["write_key"].as_str().unwrap().to_string();
    assert_eq!(send(old_key.clone()).await, 401);
    assert_eq!(send(new_key.clone()).await, 401);
    assert_eq!(send(newest.clone()).await, 200);
    let key_id = rotated["write_keys"][0]["id"].as_str().unwrap();
    assert_eq!(c.delete(server.at(&format!("/api/sources/{id}/write-keys/{key_id}"))).bearer_auth(&token).send().await.unwrap().status(), 204);
    assert_eq!(send(newest.clone()).await, 401, "revoked");

    // Rename, origins, rate limit; snippets carry the URL and key.
    let res = c.post(server.at(&format!("/api/sources/{id}/write-keys"))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let key = res.json::<Value>().await.unwrap()["write_key"].as_str().unwrap().to_string();
    let patched: Value = c
        .patch(server.at(&format!("/api/sources/{id}")))
        .bearer_auth(&token)
        .json(&json!({"name": "mobile-app", "allowed_origins": ["https://shop.example.com"], "rate_limit": 5}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(patched["name"], "mobile-app");
    let from = |origin: &'static str| {
        let c = c.clone();
        let url = server.at("/v1/track");
        let key = key.clone();
        async move { c.post(url).header("Authorization", basic(&key)).header("Origin", origin).json(&json!({"userId": "u", "event": "e"})).send().await.unwrap().status() }
    };
    assert_eq!(from("https://evil.example.com").await, 403);
    assert_eq!(from("https://shop.example.com").await, 200);
    // A batch larger than a second's worth passes when the bucket is full (here after a second
    // of quiet), and uses it up.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let batch: Vec<Value> = (0..10).map(|_| json!({"type": "track", "userId": "u", "event": "e"})).collect();
    let send_batch = || c.post(server.at("/v1/batch")).header("Authorization", basic(&key)).json(&json!({"batch": batch})).send();
    assert_eq!(send_batch().await.unwrap().status(), 200);
    let res = send_batch().await.unwrap();
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
    let snippets: Value = c.get(server.at(&format!("/api/sources/{id}/snippets"))).bearer_auth(&viewer).send().await.unwrap().json().await.unwrap();
    for s in ["analytics_js", "analytics_node", "rudder_python", "rudder_js"] {
        let text = snippets[s].as_str().unwrap();
        assert!(text.contains(&key) && text.contains(&server.url), "{s}: {text}");
    }
    assert_eq!(c.delete(server.at(&format!("/api/sources/{id}"))).bearer_auth(&token).send().await.unwrap().status(), 204);
    assert_eq!(c.get(server.at(&format!("/api/sources/{id}"))).bearer_auth(&token).send().await.unwrap().status(), 404);
    assert_eq!(from("https://shop.example.com").await, 401, "a deleted source's keys stop working");
}

#[tokio::test]
async fn limits_are_configurable_and_the_live_feed_streams() {
    let env = crate::env_or_skip!(Db::Sqlite);
    let (mut server, token, source) = with_source(&env, &[("SWITCHYARD_MAX_BATCH_MESSAGES", "3")]).await;
    let c = server.client();
    let batch: Vec<Value> = (0..4).map(|i| json!({"type": "track", "userId": "u", "event": "e", "messageId": format!("l{i}")})).collect();
    let res = c.post(server.at("/v1/batch")).header("Authorization", basic(KEY)).json(&json!({"batch": batch})).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.json::<Value>().await.unwrap()["message"].as_str().unwrap().contains("limit is 3 messages per batch"));

    let mut live = c.get(server.at(&format!("/api/sources/{source}/live"))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(live.status(), 200);
    assert_eq!(live.headers()["content-type"], "text/event-stream");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let res = c.post(server.at("/v1/track")).header("Authorization", basic(KEY)).json(&json!({"userId": "u", "event": "Live One", "messageId": "live-1"})).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = c.post(server.at("/v1/track")).header("Authorization", basic(KEY)).json(&json!({"userId": "u", "messageId": "live-2"})).send().await.unwrap();
    assert_eq!(res.status(), 400);
    let mut text = String::new();
    while !(text.contains("live-1") && text.contains("live-2")) {
        let chunk = tokio::time::timeout(Duration::from_secs(5), live.chunk()).await.expect("live events arrive").unwrap().unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.contains("event: accepted") && text.contains("event: rejected"), "{text}");
    assert!(text.contains("Live One"), "{text}");
    // An open stream does not hold up a graceful shutdown.
    let status = server.terminate(Duration::from_secs(10)).expect("stops with a live stream open");
    assert!(status.success());
}

async fn privacy_deletes_and_suppresses_a_user(db: Db) {
    let env = crate::env_or_skip!(db);
    let (server, token, source) = with_source(&env, &[]).await;
    let c = server.client();
    let send = |user: &str, id: &str| {
        let body = json!({"userId": user, "anonymousId": format!("anon-{user}"), "event": "Viewed", "messageId": id});
        c.post(server.at("/v1/track")).header("Authorization", basic(KEY)).json(&body).send()
    };
    for (user, id) in [("alice", "p-1"), ("alice", "p-2"), ("bob", "p-3")] {
        assert_eq!(send(user, id).await.unwrap().status(), 200);
    }
    let res = c.post(server.at("/v1/track")).header("Authorization", basic(KEY)).json(&json!({"anonymousId": "anon-alice", "messageId": "p-bad"})).send().await.unwrap();
    assert_eq!(res.status(), 400, "a rejected message of alice's is kept too");

    let viewer = env.token("v", "viewer");
    let res = c.post(server.at("/api/privacy/deletions")).bearer_auth(&viewer).json(&json!({"userId": "alice"})).send().await.unwrap();
    assert_eq!(res.status(), 403);
    let res = c.post(server.at("/api/privacy/deletions")).bearer_auth(&token).json(&json!({})).send().await.unwrap();
    assert_eq!(res.status(), 422);
    let res = c
        .post(server.at("/api/privacy/deletions"))
        .bearer_auth(&token)
        .json(&json!({"userId": "alice", "anonymousId": "anon-alice", "suppress": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let out: Value = res.json().await.unwrap();
    assert_eq!(out["events_deleted"], 2, "{out}");
    assert_eq!(out["rejections_deleted"], 1, "{out}");
    let left: Vec<String> = events(&server, &token, &source).await.iter().map(|e| e["messageId"].as_str().unwrap().to_string()).collect();
    assert_eq!(left, ["p-3"]);

    // Suppressed: acknowledged, not stored. Bob is unaffected.
    assert_eq!(send("alice", "p-4").await.unwrap().status(), 200);
    assert_eq!(send("bob", "p-5").await.unwrap().status(), 200);
    let left: Vec<String> = events(&server, &token, &source).await.iter().map(|e| e["messageId"].as_str().unwrap().to_string()).collect();
    assert_eq!(left, ["p-5", "p-3"]);

    // The CLI does the same, audited; lifting the suppression lets events in again.
    let out = env.run(&["privacy", "delete", "--user-id", "bob"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("deleted 2 events"));
    let sups: Value = c.get(server.at("/api/privacy/suppressions")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    let sid = sups["items"][0]["id"].as_str().unwrap();
    assert_eq!(c.delete(server.at(&format!("/api/privacy/suppressions/{sid}"))).bearer_auth(&token).send().await.unwrap().status(), 204);
    assert_eq!(send("alice", "p-6").await.unwrap().status(), 200);
    let left: Vec<String> = events(&server, &token, &source).await.iter().map(|e| e["messageId"].as_str().unwrap().to_string()).collect();
    assert_eq!(left, ["p-6"]);
    let audit: Value = c.get(server.at("/api/audit")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    let actions: Vec<String> = audit["items"].as_array().unwrap().iter().map(|e| format!("{} {}", e["actor"].as_str().unwrap(), e["action"].as_str().unwrap())).collect();
    assert!(actions.contains(&"token:admin privacy.delete".to_string()) && actions.contains(&"cli privacy.delete".to_string()), "{actions:?}");
    assert!(!audit.to_string().contains("alice"), "the audit log does not repeat the deleted ids");

    // Rejected messages are found by the exact id (no wildcards, case counts), numeric ids too.
    let track = |body: Value| c.post(server.at("/v1/track")).header("Authorization", basic(KEY)).json(&body).send();
    for user in [json!("a_c"), json!("abc"), json!("A_C"), json!(42), json!("42")] {
        assert_eq!(track(json!({"userId": user})).await.unwrap().status(), 400);
    }
    assert_eq!(track(json!({"userId": 42, "event": "Numeric"})).await.unwrap().status(), 200);
    let delete = |user: &str| c.post(server.at("/api/privacy/deletions")).bearer_auth(&token).json(&json!({"userId": user})).send();
    let out: Value = delete("a_c").await.unwrap().json().await.unwrap();
    assert_eq!((&out["events_deleted"], &out["rejections_deleted"]), (&json!(0), &json!(1)), "{out}");
    let out: Value = delete("42").await.unwrap().json().await.unwrap();
    assert_eq!((&out["events_deleted"], &out["rejections_deleted"]), (&json!(1), &json!(2)), "{out}");
    let rej: Value = c.get(server.at(&format!("/api/sources/{source}/rejections"))).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    let users: Vec<&Value> = rej["items"].as_array().unwrap().iter().map(|r| &r["payload"]["userId"]).collect();
    assert_eq!(users, [&json!("A_C"), &json!("abc")]);
}
both!(privacy_deletes_and_suppresses_a_user);

#[tokio::test]
async fn a_message_with_odd_characters_does_not_fail_its_batch() {
    for db in [Db::Sqlite, Db::Postgres] {
        let env = crate::env_or_skip!(db);
        let (server, token, source) = with_source(&env, &[]).await;
        let batch = json!({"batch": [
            {"type": "track", "userId": "u", "event": "ok-1", "messageId": "n-1"},
            {"type": "track", "userId": "u", "event": "nul", "messageId": "n-2", "properties": {"s": "a\u{0}b"}},
            {"type": "track", "userId": "u\u{0}", "event": "bad id", "messageId": "n-3"},
            {"type": "track", "userId": "u", "event": "ok-2", "messageId": "n-4"}
        ]});
        let res = server.client().post(server.at("/v1/batch")).header("Authorization", basic(KEY)).json(&batch).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["rejected"].as_array().map(Vec::len), Some(1), "{db:?}: {body}");
        let ids: Vec<String> = events(&server, &token, &source).await.iter().map(|e| e["messageId"].as_str().unwrap().to_string()).collect();
        assert_eq!(ids, ["n-4", "n-2", "n-1"], "{db:?}");
    }
}

async fn cut_connections_leave_no_half_done_work(db: Db) {
    let env = crate::env_or_skip!(db);
    let (server, token, source) = with_source(&env, &[]).await;
    let url = server.at("/v1/batch");
    let batch_of = |i: usize| -> Value {
        let items: Vec<Value> = (0..20).map(|j| json!({"type": "track", "userId": "u", "event": "Cut", "messageId": format!("cut-{i}-{j}")})).collect();
        json!({"batch": items})
    };
    // Clients that give up after a few milliseconds: many requests are cut mid-flight.
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (url, body) = (url.clone(), batch_of(i));
        tasks.push(tokio::spawn(async move {
            let c = reqwest::Client::builder().timeout(Duration::from_millis(1 + 2 * (i % 25) as u64)).build().unwrap();
            matches!(c.post(&url).header("Authorization", basic(KEY)).json(&body).send().await, Ok(r) if r.status() == 200)
        }));
    }
    let mut cut = 0;
    for t in tasks {
        if !t.await.unwrap() {
            cut += 1;
        }
    }
    let stored_before = server::store::Store::open(&env.database_url).await.unwrap().event_count(&source).await.unwrap();
    eprintln!("{db:?}: {cut} of 200 requests were cut; {stored_before} of 4000 messages stored before the retries");
    assert!(cut > 0, "some requests were cut");
    // Their SDKs retry: every message is then stored exactly once.
    let c = server.client();
    for i in 0..200 {
        let res = c.post(&url).header("Authorization", basic(KEY)).json(&batch_of(i)).send().await.unwrap();
        assert_eq!(res.status(), 200);
    }
    let ids = message_ids(&server, &token, &source).await;
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "no message is stored twice");
    assert_eq!(ids.len(), 4000, "every message is stored");
}
both!(cut_connections_leave_no_half_done_work);
