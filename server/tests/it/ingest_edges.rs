//! The tracking API's edges: oversized bodies, messages the database refuses, a full write queue,
//! trusted proxies, the less used routes, roles, and the ingest metrics.

use crate::both;
use crate::harness::{Db, TestEnv, TestServer};
use crate::ingest::{basic, events, message_ids, with_source, KEY};
use serde_json::{json, Value};
use std::collections::HashSet;

async fn post(server: &TestServer, path: &str, body: &Value) -> reqwest::Response {
    server.client().post(server.at(path)).header("Authorization", basic(KEY)).json(body).send().await.unwrap()
}

/// Over the request limit before decompression too: the body is read and answered in the Tracking
/// API's shape, not cut off with a bare 413 or a reset connection.
#[tokio::test]
async fn an_oversized_body_is_answered_with_the_limit() {
    let env = crate::env_or_skip!(Db::Sqlite);
    let (server, _, _) = with_source(&env, &[]).await;
    let pad = "z".repeat(3 << 20);
    for path in ["/v1/batch", "/v1/track"] {
        let res = post(&server, path, &json!({"userId": "u", "event": "e", "batch": [], "pad": pad})).await;
        assert_eq!(res.status(), 400, "{path}");
        let body: Value = res.json().await.expect("a JSON answer");
        assert_eq!(body["code"], "request_too_large", "{body}");
        assert_eq!(body["message"], "the request is larger than the limit of 512000 bytes per request", "{body}");
    }
    assert_eq!(post(&server, "/v1/track", &json!({"userId": "u", "event": "after"})).await.status(), 200);
}

/// No input gets past validation that the databases refuse (NUL characters are refused in every
/// column stored as text; the JSON payload escapes them), so a constraint added to the test's own
/// database plays that part: messageIds starting with `refuse-` cannot be stored.
async fn a_message_the_database_refuses_is_rejected_alone(db: Db) {
    let env = crate::env_or_skip!(db);
    let (server, token, source) = with_source(&env, &[]).await;
    let store = server::store::Store::open(&env.database_url).await.unwrap();
    let refuse = match db {
        Db::Postgres => "ALTER TABLE events ADD CONSTRAINT refuse_test CHECK (message_id NOT LIKE 'refuse-%')",
        Db::Sqlite => "CREATE TRIGGER refuse_test BEFORE INSERT ON events WHEN NEW.message_id LIKE 'refuse-%' \
                       BEGIN SELECT RAISE(ABORT, 'refused by refuse_test'); END",
    };
    sqlx::query(refuse).execute(store.pool()).await.unwrap();
    let mut live = server.client().get(server.at(&format!("/api/sources/{source}/live"))).bearer_auth(&token).send().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;

    let res = post(&server, "/v1/batch", &json!({"batch": [
        {"type": "track", "userId": "u", "event": "ok", "messageId": "d-1"},
        {"type": "track", "userId": "u", "event": "refused", "messageId": "refuse-2"},
        {"type": "track", "userId": "u", "event": "ok", "messageId": "d-3"},
        {"type": "track", "userId": "u", "event": "NUL id", "messageId": "d-\u{0}4"},
        {"type": null, "userId": "u", "event": "no type", "messageId": "d-5"}
    ]}))
    .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let rejected = body["rejected"].as_array().unwrap();
    let summary: Vec<(u64, &str)> = rejected.iter().map(|r| (r["index"].as_u64().unwrap(), r["messageId"].as_str().unwrap())).collect();
    assert_eq!(summary, [(1, "refuse-2"), (3, "d-\u{0}4"), (4, "d-5")], "{body}");
    assert!(rejected[0]["reason"].as_str().unwrap().starts_with("the database refused this message: "), "{body}");
    assert!(rejected[0]["reason"].as_str().unwrap().contains("refuse_test"), "{body}");
    assert_eq!(rejected[2]["reason"], "type is required in a batch", "nulls count as absent: {body}");
    let stored: Vec<String> = events(&server, &token, &source).await.iter().map(|e| e["messageId"].as_str().unwrap().to_string()).collect();
    assert_eq!(stored, ["d-3", "d-1"]);

    // All three are kept with their reasons (a NUL in a rejected messageId is stored as U+FFFD).
    let rej: Value = server.client().get(server.at(&format!("/api/sources/{source}/rejections"))).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    let kept: HashSet<&str> = rej["items"].as_array().unwrap().iter().map(|r| r["messageId"].as_str().unwrap()).collect();
    assert_eq!(kept, HashSet::from(["refuse-2", "d-\u{fffd}4", "d-5"]), "{rej}");
    let refused = rej["items"].as_array().unwrap().iter().find(|r| r["messageId"] == "refuse-2").unwrap();
    assert_eq!((&refused["type"], &refused["payload"]["event"]), (&json!("track"), &json!("refused")), "{refused}");
    let text = crate::live::read_until(&mut live, 10, |t| t.contains("refuse-2") && t.contains("d-3")).await;
    let refused_line = text.lines().find(|l| l.contains("refuse-2")).unwrap();
    assert!(refused_line.contains("\"status\":\"rejected\"") && refused_line.contains("the database refused"), "{text}");

    // A single call with such a message is refused, in the Tracking API's error shape.
    let res = post(&server, "/v1/track", &json!({"userId": "u", "event": "refused", "messageId": "refuse-6"})).await;
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!((&body["success"], &body["code"]), (&json!(false), &json!("refused_by_database")), "{body}");
    assert!(body["message"].as_str().unwrap().starts_with("the database refused this message: "), "{body}");
}
both!(a_message_the_database_refuses_is_rejected_alone);

/// With room for one waiting request, a burst gets 503s with `Retry-After`; every request answered
/// 200 is stored, and nothing answered 503 is.
async fn a_full_write_queue_answers_503_and_loses_nothing(db: Db) {
    let env = crate::env_or_skip!(db);
    let (server, token, source) = with_source(&env, &[("SWITCHYARD_INGEST_QUEUE", "1")]).await;
    let client = reqwest::Client::new();
    let (mut acked, mut busy) = (Vec::new(), 0);
    for round in 0..5 {
        let mut tasks = Vec::new();
        for i in 0..48 {
            let (client, url) = (client.clone(), server.at("/v1/batch"));
            tasks.push(tokio::spawn(async move {
                let ids: Vec<String> = (0..200).map(|j| format!("q-{round}-{i}-{j}")).collect();
                let batch: Vec<Value> = ids.iter().map(|id| json!({"type": "track", "userId": "u", "event": "Queued", "messageId": id})).collect();
                let res = client.post(url).header("Authorization", basic(KEY)).json(&json!({"batch": batch})).send().await.unwrap();
                let (status, retry_after) = (res.status().as_u16(), res.headers().get("retry-after").cloned());
                (status, retry_after, res.json::<Value>().await.unwrap(), ids)
            }));
        }
        for t in tasks {
            let (status, retry_after, body, ids) = t.await.unwrap();
            match status {
                200 => acked.extend(ids),
                503 => {
                    busy += 1;
                    assert_eq!(retry_after.expect("Retry-After"), "1");
                    assert_eq!((&body["success"], &body["code"]), (&json!(false), &json!("overloaded")), "{body}");
                    assert!(body["message"].is_string(), "{body}");
                }
                other => panic!("unexpected {other}: {body}"),
            }
        }
        if busy > 0 {
            break;
        }
    }
    eprintln!("{db:?}: {busy} requests answered 503, {} messages acknowledged", acked.len());
    assert!(busy > 0, "a queue of one overflows under a burst");
    assert!(!acked.is_empty());
    let stored = message_ids(&server, &token, &source).await;
    assert_eq!(stored.len(), acked.len(), "stored exactly what was acknowledged");
    assert_eq!(stored.into_iter().collect::<HashSet<_>>(), acked.into_iter().collect::<HashSet<_>>());
}
both!(a_full_write_queue_answers_503_and_loses_nothing);

async fn client_ip(server: &TestServer, token: &str, source: &str, forwarded: &str) -> Value {
    let id = format!("ip-{}", crate::harness::hex_id());
    let req = server.client().post(server.at("/v1/track")).header("Authorization", basic(KEY)).header("X-Forwarded-For", forwarded);
    assert_eq!(req.json(&json!({"userId": "u", "event": "e", "messageId": id})).send().await.unwrap().status(), 200);
    let stored = events(server, token, source).await;
    stored.iter().find(|e| e["messageId"] == id.as_str()).unwrap()["payload"]["context"]["ip"].clone()
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let env = crate::env_or_skip!(Db::Sqlite);
    let (server, token, source) = with_source(&env, &[("SWITCHYARD_TRUSTED_PROXIES", "127.0.0.1, 10.0.0.1")]).await;
    assert_eq!(client_ip(&server, &token, &source, "203.0.113.9").await, "203.0.113.9");
    // The nearest address that is not a trusted proxy; spoofed entries before it do not count.
    assert_eq!(client_ip(&server, &token, &source, "198.51.100.7, 203.0.113.9, 10.0.0.1").await, "203.0.113.9");
    assert_eq!(client_ip(&server, &token, &source, "not an address").await, "127.0.0.1");

    let other = TestEnv::new(Db::Sqlite).await.unwrap();
    let (server, token, source) = with_source(&other, &[("SWITCHYARD_TRUSTED_PROXIES", "10.0.0.1")]).await;
    assert_eq!(client_ip(&server, &token, &source, "203.0.113.9").await, "127.0.0.1", "the peer is no trusted proxy");
}

#[tokio::test]
async fn other_routes_auth_together_and_roles() {
    let env = crate::env_or_skip!(Db::Sqlite);
    let (server, token, source) = with_source(&env, &[]).await;
    let c = server.client();
    let one = |id: &str| json!({"batch": [{"type": "track", "userId": "u", "event": "e", "messageId": id}]});
    assert_eq!(post(&server, "/v1/import", &one("r-import")).await.status(), 200);
    // RudderStack's beacon: the key in the query, the body labelled text/plain.
    let res = c.post(server.at(&format!("/beacon/v1/batch?writeKey={KEY}"))).header("Content-Type", "text/plain").body(one("r-beacon").to_string()).send().await.unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    assert_eq!(c.post(server.at("/v1/m")).body(r#"{"series":[]}"#).send().await.unwrap().status(), 200);
    // Basic auth and the body's writeKey at once, the same key.
    let res = post(&server, "/v1/track", &json!({"writeKey": KEY, "userId": "u", "event": "e", "messageId": "r-both"})).await;
    assert_eq!(res.status(), 200);
    let mut stored = message_ids(&server, &token, &source).await;
    stored.sort();
    assert_eq!(stored, ["r-beacon", "r-both", "r-import"]);
    assert!(events(&server, &token, &source).await.iter().all(|e| e["payload"].get("writeKey").is_none()));

    let res = c.post(server.at("/api/sources")).bearer_auth(&token).json(&json!({"name": "web"})).send().await.unwrap();
    assert_eq!(res.status(), 409, "the name is taken");

    // Viewers use the debugger: events, rejections and the live stream.
    assert_eq!(post(&server, "/v1/track", &json!({"userId": "u", "messageId": "r-bad"})).await.status(), 400);
    let viewer = env.token("v", "viewer");
    let get = |path: String| c.get(server.at(&path)).bearer_auth(&viewer).send();
    let page: Value = get(format!("/api/sources/{source}/events")).await.unwrap().json().await.unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 3);
    let page: Value = get(format!("/api/sources/{source}/rejections")).await.unwrap().json().await.unwrap();
    assert_eq!(page["items"][0]["messageId"], "r-bad");
    let live = get(format!("/api/sources/{source}/live")).await.unwrap();
    assert_eq!((live.status().as_u16(), live.headers()["content-type"].to_str().unwrap()), (200, "text/event-stream"));
}

/// Counters by source and type, the ack-latency and commit histograms (with buckets, so Prometheus
/// gets histograms rather than summaries), and the write queue's depth back at zero.
#[tokio::test]
async fn ingest_metrics_count_what_happened() {
    let env = crate::env_or_skip!(Db::Sqlite);
    let (server, _, source) = with_source(&env, &[]).await;
    for body in [json!({"userId": "u", "event": "a"}), json!({"userId": "u", "event": "b"})] {
        assert_eq!(post(&server, "/v1/track", &body).await.status(), 200);
    }
    assert_eq!(post(&server, "/v1/identify", &json!({"userId": "u"})).await.status(), 200);
    let batch = json!({"batch": [{"type": "page", "userId": "u"}, {"type": "track", "userId": "u"}, {"userId": "u"}]});
    assert_eq!(post(&server, "/v1/batch", &batch).await.status(), 200);
    let res = server.client().post(server.at("/v1/track")).header("Authorization", basic("wk_unknown")).json(&json!({})).send().await.unwrap();
    assert_eq!(res.status(), 401);

    let metrics = server.client().get(server.at("/metrics")).send().await.unwrap().text().await.unwrap();
    let value = |series: &str| -> f64 {
        let line = metrics.lines().find(|l| l.rsplit_once(' ').is_some_and(|(name, _)| name == series));
        line.unwrap_or_else(|| panic!("no {series} in\n{metrics}")).rsplit_once(' ').unwrap().1.parse().unwrap()
    };
    let by = |name: &str, ty: &str| value(&format!("{name}{{source=\"{source}\",type=\"{ty}\"}}"));
    assert_eq!((by("ingest_accepted_total", "track"), by("ingest_accepted_total", "identify"), by("ingest_accepted_total", "page")), (2.0, 1.0, 1.0));
    assert_eq!((by("ingest_rejected_total", "track"), by("ingest_rejected_total", "unknown")), (1.0, 1.0));
    assert_eq!(value("ingest_ack_seconds_count"), 4.0, "one per answered request that reached the writer");
    assert_eq!(value("ingest_ack_seconds_bucket{le=\"+Inf\"}"), 4.0);
    assert!(value("ingest_ack_seconds_sum") > 0.0);
    assert_eq!(value("ingest_group_events_count"), value("ingest_commit_seconds_count"));
    assert_eq!(value("ingest_group_events_sum"), 4.0, "four events stored");
    assert_eq!(value("ingest_write_queue_depth"), 0.0);
    for histogram in ["ingest_ack_seconds", "ingest_commit_seconds", "ingest_group_events", "http_request_duration_seconds"] {
        assert!(metrics.contains(&format!("# TYPE {histogram} histogram")), "{histogram}: {metrics}");
    }
}

/// `durability = fsync` reaches the event writer's connection (SQLite's own answer, logged at
/// start), and events are acknowledged and stored under it as under the default.
#[tokio::test]
async fn fsync_durability_reaches_the_event_writer() {
    for (setting, want) in [(None, "synchronous=NORMAL"), (Some("fsync"), "synchronous=FULL")] {
        let env = crate::env_or_skip!(Db::Sqlite);
        let vars: Vec<(&str, &str)> = setting.map(|s| ("SWITCHYARD_DURABILITY", s)).into_iter().collect();
        let (server, token, source) = with_source(&env, &vars).await;
        let r = post(&server, "/v1/track", &json!({"userId": "u1", "event": "E", "messageId": "d-1"})).await;
        assert_eq!(r.status(), 200);
        assert_eq!(events(&server, &token, &source).await.len(), 1);
        // The log is read from the server's stderr by a thread of its own: give it a moment.
        let line = format!("event writer durability: {want}");
        for _ in 0..100 {
            if server.log_text().contains(&line) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(server.log_text().contains(&line), "{setting:?}: {}", server.log_text());
    }
}

/// Nested fields are stored as they were sent (nulls and all), the batch's context merged and
/// `context.ip` added; a message whose text cannot become a string (a lone UTF-16 surrogate) is
/// rejected alone.
#[tokio::test]
async fn nested_fields_are_kept_and_a_lone_surrogate_rejects_only_its_message() {
    let env = crate::env_or_skip!(Db::Sqlite);
    let (server, token, source) = with_source(&env, &[]).await;
    let body = r#"{"batch":[
        {"type":"track","userId":"u","event":"e","messageId":"s-1","properties":{"emoji":"\ud83d\ude00","nested":{"a":[1,{"b":null}]}}},
        {"type":"track","userId":"u","event":"e","messageId":"s-2","properties":{"bad":"\ud800"}},
        {"type":"identify","userId":"u","messageId":"s-3","context":{"ip":"1.2.3.4","locale":"de"},"traits":null}
    ],"context":{"library":{"name":"t"}}}"#;
    let res = server.client().post(server.at("/v1/batch")).header("Authorization", basic(KEY)).body(body).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer["rejected"].as_array().map(Vec::len), Some(1), "{answer}");
    assert_eq!(answer["rejected"][0]["messageId"], "s-2", "{answer}");
    assert!(answer["rejected"][0]["reason"].as_str().unwrap().starts_with("the message is not valid JSON: "), "{answer}");
    let stored = events(&server, &token, &source).await;
    let first = &stored.iter().find(|e| e["messageId"] == "s-1").expect("s-1 stored")["payload"];
    assert_eq!(first["properties"], json!({"emoji": "\u{1F600}", "nested": {"a": [1, {"b": null}]}}), "{first}");
    assert_eq!(first["context"]["library"]["name"], "t", "{first}");
    assert_eq!(first["context"]["ip"], "127.0.0.1", "{first}");
    let third = &stored.iter().find(|e| e["messageId"] == "s-3").expect("s-3 stored")["payload"];
    assert_eq!(third["context"], json!({"ip": "1.2.3.4", "locale": "de"}), "its own context wins, and its ip: {third}");
    assert!(third.get("traits").is_none(), "a null field counts as absent: {third}");
    // A single call with a lone surrogate is refused with the position, as malformed JSON is.
    let res = server.client().post(server.at("/v1/track")).header("Authorization", basic(KEY)).body(r#"{"userId":"u","event":"e","properties":{"x":"\udc00"}}"#).send().await.unwrap();
    assert_eq!(res.status(), 400);
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer["code"], "invalid_json", "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("column"), "{answer}");
}

/// Deduplication is per source: the same messageId sent to two sources is stored in each, and a
/// repeat within a source (in a later call, or twice in one batch) is stored once. SQLite finds
/// the id through an index on the id alone (migration 14) and checks the source on the row.
async fn message_ids_are_deduplicated_per_source(db: Db) {
    let env = crate::env_or_skip!(db);
    let (server, token, first) = with_source(&env, &[]).await;
    let c = server.client();
    let res = c.post(server.at("/api/sources")).bearer_auth(&token).json(&json!({"name": "app", "type": "server"})).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.unwrap();
    let (second, key) = (created["id"].as_str().unwrap().to_string(), created["write_key"].as_str().unwrap().to_string());
    let send = |key: String, path: &'static str, body: Value| {
        let (c, url) = (c.clone(), server.at(path));
        async move { c.post(url).header("Authorization", basic(&key)).json(&body).send().await.unwrap().status() }
    };
    let track = |id: &str| json!({"userId": "u", "event": "e", "messageId": id});
    assert_eq!(send(KEY.into(), "/v1/track", track("shared-1")).await, 200);
    assert_eq!(send(key.clone(), "/v1/track", track("shared-1")).await, 200);
    assert_eq!(send(key.clone(), "/v1/track", track("shared-1")).await, 200, "a duplicate is acknowledged");
    let twice = json!({"batch": [
        {"type": "track", "userId": "u", "event": "e", "messageId": "twice-2"},
        {"type": "track", "userId": "u", "event": "e", "messageId": "twice-2"},
        {"type": "track", "userId": "u", "event": "e", "messageId": "shared-1"}
    ]});
    assert_eq!(send(KEY.into(), "/v1/batch", twice.clone()).await, 200);
    assert_eq!(send(key.clone(), "/v1/batch", twice).await, 200);
    for source in [&first, &second] {
        let mut ids = message_ids(&server, &token, source).await;
        ids.sort();
        assert_eq!(ids, ["shared-1", "twice-2"], "source {source}");
    }
}
both!(message_ids_are_deduplicated_per_source);
