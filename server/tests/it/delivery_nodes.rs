//! The delivery engine under stress: per-user order while one user's events fail, a worker
//! killed with SIGKILL mid-delivery, two worker processes sharing one PostgreSQL database, and the
//! PostgreSQL queue's upkeep (its vacuum, claims updating rows in place).

use crate::delivery::{world_on, World};
use crate::harness::{Db, TestServer};
use crate::receiver::Receiver;
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;

fn ids(rx: &Receiver) -> Vec<String> {
    rx.requests().iter().map(|r| r.headers["webhook-id"].to_str().unwrap().to_string()).collect()
}

async fn a_failing_event_holds_back_only_its_users_lane(db: Db) {
    let env = crate::env_or_skip!(db);
    let server = env.start_with(&["--allow-private-destinations"]).await;
    let rx = Receiver::start().await;
    rx.fail_ids.lock().unwrap().insert("a1".into(), 2);
    let w: World = world_on(&env, server, rx.clone(), json!({"schedule": [0.3, 0.3], "ordered": true})).await;
    w.track_as("a1", "alice").await;
    w.track_as("a2", "alice").await;
    w.track_as("b1", "bob").await;
    w.state_of("a2", "succeeded").await;
    w.state_of("b1", "succeeded").await;
    let seen = ids(&rx);
    let pos = |id: &str| seen.iter().position(|s| s == id).unwrap();
    let last_a1 = seen.iter().rposition(|s| s == "a1").unwrap();
    assert_eq!(seen.iter().filter(|s| *s == "a1").count(), 3, "{seen:?}");
    assert!(pos("a2") > last_a1, "alice's second event waits for her first: {seen:?}");
    assert!(pos("b1") < last_a1, "bob is not held back by alice: {seen:?}");
}
crate::both!(a_failing_event_holds_back_only_its_users_lane);

async fn sigkill_during_delivery_loses_nothing(db: Db) {
    let env = crate::env_or_skip!(db);
    let spawn = || {
        let mut cmd = env.cli();
        cmd.env("SWITCHYARD_LOG", "info").env("SWITCHYARD_DELIVERY_LEASE_SECS", "1");
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--allow-private-destinations"]);
        TestServer::spawn(cmd)
    };
    let rx = Receiver::start().await;
    rx.delay_ms.store(3_000, std::sync::atomic::Ordering::SeqCst);
    let w = world_on(&env, spawn(), rx.clone(), json!({"schedule": [0.2]})).await;
    for i in 0..20 {
        w.track(&format!("k{i}")).await;
    }
    // Deliveries are in flight (the receiver holds them): kill the server without warning.
    rx.wait_for(1, 10).await;
    let World { mut server, token, dest, .. } = w;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    rx.delay_ms.store(0, std::sync::atomic::Ordering::SeqCst);
    let server = spawn();
    let c = server.client();
    let mut done = 0;
    for _ in 0..500 {
        let url = server.at(&format!("/api/destinations/{dest}/deliveries?state=succeeded&limit=1000"));
        let list: serde_json::Value = c.get(url).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
        done = list["items"].as_array().unwrap().len();
        if done == 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(done, 20, "every acknowledged event is delivered after the crash");
    let seen = ids(&rx);
    for i in 0..20 {
        assert!(seen.contains(&format!("k{i}")), "k{i} missing: {seen:?}");
    }
}
crate::both!(sigkill_during_delivery_loses_nothing);

#[tokio::test]
async fn two_worker_nodes_deliver_each_event_once() {
    let env = crate::env_or_skip!(Db::Postgres);
    let rx = Receiver::start().await;
    // Events go to an ingest node, which delivers nothing; two worker nodes deliver them.
    let ingest = env.start_with(&["--allow-private-destinations", "--mode", "ingest"]).await;
    let a = env.start_with(&["--allow-private-destinations", "--mode", "worker"]).await;
    let b = env.start_with(&["--allow-private-destinations", "--mode", "worker"]).await;
    let w = world_on(&env, ingest, rx.clone(), json!({})).await;
    // A worker takes no events: SDKs get a 503 (they keep the event and retry) saying why.
    let r = a.client().post(a.at("/v1/track")).basic_auth(&w.key, Some("")).json(&json!({"userId": "u", "event": "E"})).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "not_an_ingest_node", "{body}");
    let n = 200;
    for i in 0..n {
        w.track(&format!("n{i}")).await;
    }
    let got = rx.wait_for(n, 30).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for id in ids(&rx) {
        *counts.entry(id).or_default() += 1;
    }
    assert_eq!(counts.len(), n, "every event arrived ({} requests)", got.len());
    assert!(counts.values().all(|c| *c == 1), "each exactly once: {:?}", counts.iter().filter(|(_, c)| **c > 1).collect::<Vec<_>>());
    drop((a, b));
}

/// `n` events through two worker processes to a destination limited to `rate` per second.
async fn two_nodes_at(rate: u32, n: usize) {
    let env = crate::env_or_skip!(Db::Postgres);
    let rx = Receiver::start().await;
    let a = env.start_with(&["--allow-private-destinations"]).await;
    let b = env.start_with(&["--allow-private-destinations", "--mode", "worker"]).await;
    let w = world_on(&env, a, rx.clone(), json!({"rate_limit": rate})).await;
    // All stored at once (one batch), so the burst is spent at once: events trickling in would
    // each find a slot refilled meanwhile, stretching the burst past its first `rate` requests.
    let batch: Vec<serde_json::Value> = (0..n).map(|i| json!({"type": "track", "userId": "u1", "event": "E", "messageId": format!("s{i}")})).collect();
    let r = w.server.client().post(w.server.at("/v1/batch")).basic_auth(&w.key, Some("")).json(&json!({"batch": batch})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let got = rx.wait_for(n, 30).await;
    assert_eq!(got.len(), n);
    // A burst of a second's worth, then `rate` per second for both nodes together (each on its
    // own would allow `rate`): the others need (n - rate) / rate seconds.
    let r = rate as usize;
    let least = Duration::from_secs_f64((n - r) as f64 / rate as f64);
    let span = got[n - 1].at - got[0].at;
    assert!(span >= least.mul_f64(0.9), "{n} requests at {rate}/s over two nodes took {span:?}");
    assert!(span <= least * 2, "slots are not wasted: {n} requests at {rate}/s took {span:?}");
    let after = &got[r..];
    let in_a_second = after.iter().map(|x| after.iter().filter(|o| o.at >= x.at && o.at - x.at < Duration::from_millis(950)).count()).max().unwrap();
    let offsets: Vec<u128> = got.iter().map(|x| (x.at - got[0].at).as_millis()).collect();
    assert!(in_a_second <= r + 1 + r / 10, "after the burst, {rate} in any second (and a little for timing): {in_a_second}: {offsets:?}");
    drop(b);
}

#[tokio::test]
async fn two_nodes_share_a_destinations_rate_limit() {
    two_nodes_at(5, 20).await;
}

/// At 50/s the nodes reserve two slots at a time.
#[tokio::test]
async fn two_nodes_share_a_faster_rate_limit() {
    two_nodes_at(50, 150).await;
}

#[tokio::test]
async fn sustained_failure_opens_the_breaker_alerts_and_recovers() {
    let env = crate::env_or_skip!(Db::Sqlite);
    let alerts = Receiver::start().await;
    let mut cmd = env.cli();
    cmd.env("SWITCHYARD_LOG", "info").env("SWITCHYARD_ALERT_URL", format!("{}/alerts", alerts.url));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--allow-private-destinations"]);
    let rx = Receiver::start().await;
    rx.status.store(500, std::sync::atomic::Ordering::SeqCst);
    let delivery = json!({"schedule": [0.05], "breaker_failures": 3, "breaker_probe_secs": 1.5});
    let w = world_on(&env, TestServer::spawn(cmd), rx.clone(), delivery).await;
    for i in 0..3 {
        w.track(&format!("c{i}")).await;
    }
    let got = alerts.wait_for(1, 10).await;
    let alert: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(alert["kind"], "paused", "{alert}");
    assert!(alert["text"].as_str().unwrap().contains("'hook'"), "{alert}");
    let d: serde_json::Value = w.server.client().get(w.server.at(&format!("/api/destinations/{}", w.dest))).bearer_auth(&w.token).send().await.unwrap().json().await.unwrap();
    assert!(d["circuit_reason"].as_str().unwrap().contains("failures in a row"), "{d}");
    assert!(d["paused_until"].as_i64().is_some());
    // While open, nothing is sent; once the receiver recovers the probe succeeds and all is delivered.
    let before = rx.requests().len();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(rx.requests().len(), before, "paused: no requests");
    rx.status.store(200, std::sync::atomic::Ordering::SeqCst);
    for i in 0..3 {
        w.state_of(&format!("c{i}"), "succeeded").await;
    }
    let d: serde_json::Value = w.server.client().get(w.server.at(&format!("/api/destinations/{}", w.dest))).bearer_auth(&w.token).send().await.unwrap().json().await.unwrap();
    assert!(d["circuit_reason"].is_null(), "the breaker closed: {d}");
}

/// How often the deliveries table was vacuumed by hand (not by autovacuum): the engine's own.
/// The deliveries table's statistics: vacuums, updates, and updates made in place (HOT).
async fn queue_stats(env: &crate::harness::TestEnv) -> (i64, i64, i64) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&env.database_url).await.unwrap();
    sqlx::query_as("SELECT vacuum_count, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'deliveries'").fetch_one(&mut conn).await.unwrap()
}

async fn queue_vacuums(env: &crate::harness::TestEnv) -> i64 {
    queue_stats(env).await.0
}

#[tokio::test]
async fn the_engine_vacuums_its_queue_on_postgres() {
    let env = crate::env_or_skip!(Db::Postgres);
    let mut cmd = env.cli();
    cmd.env("SWITCHYARD_LOG", "info").env("SWITCHYARD_QUEUE_VACUUM_ROWS", "2").args(["serve", "--listen", "127.0.0.1:0", "--allow-private-destinations"]);
    let rx = Receiver::start().await;
    let w = world_on(&env, TestServer::spawn(cmd), rx.clone(), json!({})).await;
    assert_eq!(queue_vacuums(&env).await, 0);
    // Each delivery leaves dead row versions behind (claimed, then succeeded). PostgreSQL prunes
    // some of them as it goes (claims update in place), which lowers the dead-row count the engine
    // reads: the threshold here is low enough that what is left crosses it.
    for i in 0..20 {
        w.track(&format!("v{i}")).await;
    }
    rx.wait_for(20, 20).await;
    let mut vacuums = 0;
    for _ in 0..100 {
        vacuums = queue_vacuums(&env).await;
        if vacuums > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(vacuums > 0, "the queue was vacuumed once it held more dead rows than the threshold");
    // Below the threshold (the default, 5,000) it is left alone.
    let env = crate::env_or_skip!(Db::Postgres);
    let rx = Receiver::start().await;
    let w = world_on(&env, env.start_with(&["--allow-private-destinations"]).await, rx.clone(), json!({})).await;
    for i in 0..20 {
        w.track(&format!("w{i}")).await;
    }
    rx.wait_for(20, 20).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(queue_vacuums(&env).await, 0, "20 deliveries leave fewer dead rows than the default threshold");
}

#[tokio::test]
async fn claims_of_a_backlog_update_in_place_on_postgres() {
    use base64::Engine as _;
    let env = crate::env_or_skip!(Db::Postgres);
    let rx = Receiver::start().await;
    // Ordered, so each event has a row of its own (a user each, so they go out together).
    let w = world_on(&env, env.start_with(&["--allow-private-destinations"]).await, rx.clone(), json!({"ordered": true})).await;
    let c = w.server.client();
    let r = c.post(w.server.at(&format!("/api/destinations/{}/pause", w.dest))).bearer_auth(&w.token).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    // A backlog routed while the destination is paused: the router fills the table's pages first,
    // then every delivery is claimed (one update, which sets only the lease) and settled (another,
    // which changes the state and cannot stay in place).
    const N: usize = 3000;
    let auth = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{}:", w.key)));
    for b in 0..N / 100 {
        let batch: Vec<_> = (0..100).map(|i| json!({"type": "track", "userId": format!("u{b}-{i}"), "event": "E", "messageId": format!("h{b}-{i}")})).collect();
        let r = c.post(w.server.at("/v1/batch")).header("Authorization", &auth).json(&json!({"batch": batch})).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    for _ in 0..300 {
        if w.get("/deliveries?limit=1").await["items"][0]["message_id"] == format!("h{}-99", N / 100 - 1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = c.post(w.server.at(&format!("/api/destinations/{}/resume", w.dest))).bearer_auth(&w.token).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(rx.wait_for(N, 120).await.len(), N);
    // PostgreSQL reports table statistics a moment after the transactions.
    let mut seen = (0, 0);
    for _ in 0..150 {
        let (_, updates, hot) = queue_stats(&env).await;
        seen = (updates, hot);
        if seen.0 >= 2 * N as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (updates, hot) = seen;
    assert!(updates >= 2 * N as i64, "{updates} updates for {N} deliveries claimed and settled");
    // With too little room on each page (fill factor 70) about half of the claims moved their row
    // and wrote three index entries each; at 40 they stay in place.
    assert!(hot as f64 >= 0.95 * N as f64, "{hot} of {updates} updates in place; at least {} claims should be", N * 95 / 100);
}

/// On a SQLite file the delivery leases live in the delivering process's memory, so a second
/// process that would deliver from the same file is refused, with the reason; an ingest-only one
/// may share it.
#[tokio::test]
async fn one_process_delivers_from_a_sqlite_file() {
    let env = crate::env_or_skip!(Db::Sqlite);
    let _first = env.start().await;
    let mut cmd = env.cli();
    cmd.args(["serve", "--listen", "127.0.0.1:0"]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut second = cmd.spawn().unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = second.kill();
            panic!("a second delivering server started on the same SQLite file");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let out = second.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!status.success(), "{text}");
    assert!(text.contains("only one process may deliver from a SQLite file"), "{text}");
    let ingest = env.start_with(&["--mode", "ingest"]).await;
    let health = ingest.client().get(ingest.at("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}
