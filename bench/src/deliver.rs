//! `swbench deliver`: measures the delivery engine end to end. It runs a receiver, creates a
//! source and an enabled webhook destination pointing at it, then, with batching off and then on
//! (100 events per request):
//! - backlog: the destination paused, COUNT events are stored; resumed, how fast they drain;
//! - sustained: COUNT more events sent as fast as ingest takes them (8 requests of 100 in flight),
//!   the ingest rate and the delivered rate side by side, with the queue depth each second;
//! - batching off, also: single track calls (64 in flight), one event per request in and out,
//!   the ingest rate and the delivered rate side by side; then single track calls at half that
//!   rate for 10 s, ingest-to-delivered latency per event (`SWBENCH_DUMP=FILE` writes each one).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Seen = Arc<Mutex<HashMap<String, Instant>>>;

async fn receiver(seen: Seen) -> String {
    use axum::http::HeaderMap;
    #[derive(serde::Deserialize)]
    struct Item {
        #[serde(rename = "messageId")]
        message_id: String,
    }
    let app = axum::Router::new().fallback(move |headers: HeaderMap, body: axum::body::Bytes| {
        let seen = seen.clone();
        async move {
            let now = Instant::now();
            match headers.get("webhook-id").and_then(|v| v.to_str().ok()) {
                // A batch: the body is an array of events.
                Some(id) if id.starts_with("batch_") => {
                    let items: Vec<Item> = serde_json::from_slice(&body).unwrap_or_default();
                    let mut seen = seen.lock().unwrap();
                    for i in items {
                        seen.entry(i.message_id).or_insert(now);
                    }
                }
                Some(id) => {
                    seen.lock().unwrap().entry(id.to_string()).or_insert(now);
                }
                None => {}
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
    let api = |method: reqwest::Method, path: &str, body: String| {
        c.request(method, format!("{server}{path}")).bearer_auth(token).header("content-type", "application/json").body(body).send()
    };
    let src = api(reqwest::Method::POST, "/api/sources", r#"{"name":"bench-deliver"}"#.into()).await.unwrap().text().await.unwrap();
    let key = field(&src, "write_key").expect("write key").to_string();
    let dest = format!(
        r#"{{"name":"bench-hook","integration":"webhook","enabled":true,"sources":["bench-deliver"],"settings":{{"url":"{hook}"}},"delivery":{{"schedule":[0.5]}}}}"#
    );
    let r = api(reqwest::Method::POST, "/api/destinations", dest).await.unwrap();
    let ok = r.status().is_success();
    let text = r.text().await.unwrap();
    assert!(ok, "create destination: {text}");
    let id = field(&text, "id").expect("destination id").to_string();
    let b = Bench { c: c.clone(), server: server.to_string(), auth: format!("Basic {}", b64(&format!("{key}:"))), seen: seen.clone(), pid, count, peak_rss: Mutex::new(0.0) };
    let mut sustained_off = 0.0;
    let mut modes = vec![("batching off", r#"{"schedule":[0.5]}"#), ("batching on, 100 per request", r#"{"schedule":[0.5],"batch_size":100,"batch_wait_ms":50}"#)];
    // SWBENCH_BATCHED_ONLY=1 runs only the batched phases (for comparing changes quickly).
    if std::env::var("SWBENCH_BATCHED_ONLY").is_ok_and(|v| v == "1") {
        modes.remove(0);
        sustained_off = -1.0;
    }
    for (mode, delivery) in modes {
        let r = api(reqwest::Method::PATCH, &format!("/api/destinations/{id}"), format!(r#"{{"delivery":{delivery}}}"#)).await.unwrap();
        assert!(r.status().is_success(), "set delivery options: {}", r.text().await.unwrap());
        let tag = if sustained_off == 0.0 { "a" } else { "b" };
        // Backlog: stored while the destination is paused, then drained.
        api(reqwest::Method::POST, &format!("/api/destinations/{id}/pause"), String::new()).await.unwrap();
        b.ingest(&format!("{tag}q")).await;
        while queue_depth(&c, server).await < count as f64 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let before = seen.lock().unwrap().len();
        let started = Instant::now();
        api(reqwest::Method::POST, &format!("/api/destinations/{id}/resume"), String::new()).await.unwrap();
        let depths = b.wait_delivered(before + count, started).await;
        let drained = (seen.lock().unwrap().len() - before) as f64 / started.elapsed().as_secs_f64();
        println!("backlog ({mode}): {count} stored events drained at {drained:.0} events/s; queue depth each second: {depths:?}");
        // Sustained: ingest and delivery at once.
        let before = seen.lock().unwrap().len();
        let started = Instant::now();
        let prefix = format!("{tag}s");
        let (ingested, depths) = tokio::join!(b.ingest(&prefix), b.wait_delivered(before + count, started));
        let elapsed = started.elapsed().as_secs_f64();
        let rate = (seen.lock().unwrap().len() - before) as f64 / elapsed;
        let ingest_rate = count as f64 / ingested;
        println!(
            "sustained ({mode}): ingest took {count} events at {ingest_rate:.0} events/s, all delivered in {elapsed:.1} s = {rate:.0} events/s ({:.0}% of the ingest rate); queue depth each second: {depths:?}",
            100.0 * rate / ingest_rate
        );
        if sustained_off == 0.0 {
            sustained_off = rate;
            // The latency test sends single track calls, which cost ingest far more than batches:
            // its "maximum load" is the end-to-end rate with single calls (64 in flight).
            let before = seen.lock().unwrap().len();
            let started = Instant::now();
            let (ingested, _) = tokio::join!(b.single("ss"), b.wait_delivered(before + count, started));
            let single = (seen.lock().unwrap().len() - before) as f64 / started.elapsed().as_secs_f64();
            let single_ingest = count as f64 / ingested;
            println!(
                "sustained ({mode}, single track calls, 64 in flight): ingest took {count} events at {single_ingest:.0} events/s, all delivered at {single:.0} events/s ({:.0}% of the ingest rate)",
                100.0 * single / single_ingest
            );
            // SWBENCH_LATENCY_RATE=N measures the latency at N events/s instead.
            let rate = std::env::var("SWBENCH_LATENCY_RATE").ok().and_then(|r| r.parse().ok()).unwrap_or(single / 2.0);
            b.latency(rate).await;
        }
    }
    b.note_rss();
    println!("server RSS: {:.1} MB peak sampled, {:.1} MB at the end", *b.peak_rss.lock().unwrap(), rss_mb(pid));
}

struct Bench {
    c: reqwest::Client,
    server: String,
    auth: String,
    seen: Seen,
    pid: u32,
    count: usize,
    peak_rss: Mutex<f64>,
}

impl Bench {
    fn note_rss(&self) {
        let mut peak = self.peak_rss.lock().unwrap();
        *peak = peak.max(rss_mb(self.pid));
    }

    fn send(&self, path: &str, body: String) -> impl std::future::Future<Output = reqwest::Result<reqwest::Response>> + 'static {
        self.c.post(format!("{}{path}", self.server)).header("authorization", &self.auth).header("content-type", "application/json").body(body).send()
    }

    /// Sends COUNT track events (ids `{prefix}-n`) in batches of 100, 8 requests in flight;
    /// returns the seconds until the last was acknowledged.
    async fn ingest(&self, prefix: &str) -> f64 {
        use futures_util::StreamExt;
        let started = Instant::now();
        let bodies: Vec<String> = (0..self.count.div_ceil(100))
            .map(|b| {
                let msgs: Vec<String> = (b * 100..((b + 1) * 100).min(self.count))
                    .map(|n| format!(r#"{{"type":"track","userId":"user-{u}","event":"Order Completed","messageId":"{prefix}-{n}","properties":{{"total":42.5}}}}"#, u = n % 1000))
                    .collect();
                format!(r#"{{"batch":[{}]}}"#, msgs.join(","))
            })
            .collect();
        futures_util::stream::iter(bodies)
            .map(|body| self.send("/v1/batch", body))
            .buffer_unordered(8)
            .for_each(|r| async move { assert!(r.unwrap().status().is_success()) })
            .await;
        started.elapsed().as_secs_f64()
    }

    /// Sends COUNT single track calls (ids `{prefix}-n`), 64 in flight; returns the seconds until
    /// the last was acknowledged.
    async fn single(&self, prefix: &str) -> f64 {
        use futures_util::StreamExt;
        let started = Instant::now();
        futures_util::stream::iter(0..self.count)
            .map(|n| self.send("/v1/track", format!(r#"{{"userId":"user-{}","event":"Order Completed","messageId":"{prefix}-{n}"}}"#, n % 1000)))
            .buffer_unordered(64)
            .for_each(|r| async move { assert!(r.unwrap().status().is_success()) })
            .await;
        started.elapsed().as_secs_f64()
    }

    /// Waits until `total` events have arrived (at most 300 s), sampling the queue depth and the
    /// server's RSS each second.
    async fn wait_delivered(&self, total: usize, started: Instant) -> Vec<i64> {
        {
            let mut seen = self.seen.lock().unwrap();
            let more = total.saturating_sub(seen.len());
            seen.reserve(more);
        }
        let mut depths = Vec::new();
        let mut next = Instant::now();
        while self.seen.lock().unwrap().len() < total && started.elapsed() < Duration::from_secs(300) {
            if Instant::now() >= next {
                depths.push(queue_depth(&self.c, &self.server).await as i64);
                self.note_rss();
                next += Duration::from_secs(1);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        depths
    }

    /// Single track calls at `target` per second for 10 s; prints ingest-to-delivered p50/p99.
    async fn latency(&self, target: f64) {
        let target = target.max(10.0);
        let total = (target * 10.0) as usize;
        // Growing the receiver's map mid-phase rehashes every id seen so far while its lock is
        // held: a stall of ~100 ms in the receiver, which showed as a latency tail at the end of
        // the phase (SQLite, 8,000 events/s).
        let before = {
            let mut seen = self.seen.lock().unwrap();
            seen.reserve(total);
            seen.len()
        };
        let mut sent_at: HashMap<String, Instant> = HashMap::with_capacity(total);
        let probe = crate::disk::Probe::start();
        let t0 = Instant::now();
        if std::env::var("SWBENCH_DUMP").is_ok() {
            eprintln!("latency phase starts at unix {:.3}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs_f64());
        }
        let mut inflight = Vec::new();
        for n in 0..total {
            let due = t0 + Duration::from_secs_f64(n as f64 / target);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                tokio::time::sleep(wait).await;
            }
            let id = format!("l-{n}");
            sent_at.insert(id.clone(), due);
            let body = format!(r#"{{"userId":"user-{}","event":"Order Completed","messageId":"{id}"}}"#, n % 1000);
            let send = self.send("/v1/track", body);
            inflight.push(tokio::spawn(async move {
                let _ = send.await;
                Instant::now()
            }));
            if n % 500 == 0 {
                self.note_rss();
            }
        }
        let mut acked = Vec::with_capacity(total);
        for h in inflight {
            acked.push(h.await.ok());
        }
        let disk = probe.map(crate::disk::Probe::finish);
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.seen.lock().unwrap().len() < before + total && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let snapshot = self.seen.lock().unwrap().clone();
        // SWBENCH_DUMP=FILE writes each event's scheduled offset, ack latency and delivered
        // latency (ms; -1 when missing), to see whether a tail is ingest or delivery, and when.
        if let Some(mut f) = std::env::var("SWBENCH_DUMP").ok().and_then(|p| std::fs::File::create(p).ok()) {
            use std::io::Write;
            for (n, ack) in acked.iter().enumerate() {
                let due = t0 + Duration::from_secs_f64(n as f64 / target);
                let ms = |t: Option<&Instant>| t.map_or(-1.0, |t| t.duration_since(due).as_secs_f64() * 1e3);
                let _ = writeln!(f, "{:.1} {:.2} {:.2}", due.duration_since(t0).as_secs_f64() * 1e3, ms(ack.as_ref()), ms(snapshot.get(&format!("l-{n}"))));
            }
        }
        let mut lat: Vec<f64> = sent_at.iter().filter_map(|(id, s)| snapshot.get(id).map(|r| r.duration_since(*s).as_secs_f64() * 1000.0)).collect();
        lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "latency at {target:.0} events/s (single track calls, 10 s, batching off): {} of {total} delivered, ingest-to-delivered p50 {:.1} ms, p99 {:.1} ms",
            lat.len(),
            percentile(&lat, 0.5),
            percentile(&lat, 0.99)
        );
        if let Some(d) = disk {
            println!("latency phase: {d}");
        }
    }
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}
