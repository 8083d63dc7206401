//! `swbench deliver`: measures the delivery engine end to end. It runs a receiver, creates a
//! source and an enabled webhook destination pointing at it, then (1) sends COUNT events in
//! batches of 100 and measures how fast they are delivered, sampling the queue depth each second,
//! and (2) sends single track calls at half that rate for 10 s and measures ingest-to-delivered
//! latency per event. Prints the figures.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Seen = Arc<Mutex<HashMap<String, Instant>>>;

async fn receiver(seen: Seen) -> String {
    use axum::http::HeaderMap;
    let app = axum::Router::new().fallback(move |headers: HeaderMap| {
        let seen = seen.clone();
        async move {
            if let Some(id) = headers.get("webhook-id").and_then(|v| v.to_str().ok()) {
                seen.lock().unwrap().entry(id.to_string()).or_insert_with(Instant::now);
            }
            axum::http::StatusCode::NO_CONTENT
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn field<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let i = json.find(&format!("\"{key}\":\""))? + key.len() + 4;
    json[i..].split('"').next()
}

fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .unwrap_or(0.0)
        / 1024.0
}

async fn queue_depth(c: &reqwest::Client, server: &str) -> f64 {
    let Ok(r) = c.get(format!("{server}/metrics")).send().await else { return -1.0 };
    let text = r.text().await.unwrap_or_default();
    text.lines().find(|l| l.starts_with("switchyard_queue_depth")).and_then(|l| l.split_whitespace().last()?.parse().ok()).unwrap_or(-1.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

pub async fn run(server: &str, token: &str, pid: u32, count: usize) {
    let c = reqwest::Client::new();
    let seen: Seen = Arc::default();
    let hook = receiver(seen.clone()).await;
    let post = |path: &str, body: String| c.post(format!("{server}{path}")).bearer_auth(token).header("content-type", "application/json").body(body).send();
    let src = post("/api/sources", r#"{"name":"bench-deliver"}"#.into()).await.unwrap().text().await.unwrap();
    let key = field(&src, "write_key").expect("write key").to_string();
    let dest = format!(
        r#"{{"name":"bench-hook","integration":"webhook","enabled":true,"sources":["bench-deliver"],"settings":{{"url":"{hook}"}},"delivery":{{"schedule":[0.5]}}}}"#
    );
    let r = post("/api/destinations", dest).await.unwrap();
    assert!(r.status().is_success(), "create destination: {}", r.text().await.unwrap());
    let auth = format!("Basic {}", b64(&format!("{key}:")));
    let send = |path: &'static str, body: String| c.post(format!("{server}{path}")).header("authorization", auth.clone()).header("content-type", "application/json").body(body).send();

    // 1. Throughput: COUNT events in batches of 100, as fast as ingest takes them.
    let started = Instant::now();
    let mut peak_rss: f64 = 0.0;
    let mut depths = Vec::new();
    let sender = async {
        for b in 0..count.div_ceil(100) {
            let msgs: Vec<String> = (0..100)
                .map(|i| b * 100 + i)
                .filter(|n| *n < count)
                .map(|n| format!(r#"{{"type":"track","userId":"user-{u}","event":"Order Completed","messageId":"t-{n}","properties":{{"total":42.5}}}}"#, u = n % 1000))
                .collect();
            let r = send("/v1/batch", format!(r#"{{"batch":[{}]}}"#, msgs.join(","))).await.unwrap();
            assert!(r.status().is_success());
        }
    };
    let watcher = async {
        let mut next = Instant::now();
        loop {
            if seen.lock().unwrap().len() >= count || started.elapsed() > Duration::from_secs(300) {
                break;
            }
            if Instant::now() >= next {
                depths.push(queue_depth(&c, server).await as i64);
                peak_rss = peak_rss.max(rss_mb(pid));
                next += Duration::from_secs(1);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::join!(sender, watcher);
    let elapsed = started.elapsed().as_secs_f64();
    let delivered = seen.lock().unwrap().len();
    let rate = delivered as f64 / elapsed;
    println!("throughput: {delivered} of {count} events delivered in {elapsed:.1} s = {rate:.0} events/s (batching off)");
    println!("queue depth each second: {depths:?}");

    // 2. Latency at half that rate, single track calls, 10 s.
    let target = (rate / 2.0).max(10.0);
    let total = (target * 10.0) as usize;
    let mut sent_at: HashMap<String, Instant> = HashMap::with_capacity(total);
    let t0 = Instant::now();
    let mut inflight = Vec::new();
    for n in 0..total {
        let due = t0 + Duration::from_secs_f64(n as f64 / target);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        let id = format!("l-{n}");
        sent_at.insert(id.clone(), due);
        let body = format!(r#"{{"userId":"user-{}","event":"Order Completed","messageId":"{id}"}}"#, n % 1000);
        inflight.push(tokio::spawn(send("/v1/track", body)));
        peak_rss = peak_rss.max(if n % 500 == 0 { rss_mb(pid) } else { 0.0 });
    }
    for h in inflight {
        let _ = h.await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.lock().unwrap().len() < count + total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = seen.lock().unwrap();
    let mut lat: Vec<f64> = sent_at.iter().filter_map(|(id, s)| seen.get(id).map(|r| r.duration_since(*s).as_secs_f64() * 1000.0)).collect();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "latency at {target:.0} events/s (single track calls, 10 s): {} of {total} delivered, ingest-to-delivered p50 {:.1} ms, p99 {:.1} ms",
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );
    println!("server RSS: {:.1} MB peak sampled, {:.1} MB at the end", peak_rss.max(rss_mb(pid)), rss_mb(pid));
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}
