//! `swbench ceiling` serves a bare axum handler that answers 200 without storing anything (the
//! ceiling for this machine); `swbench open-loop` sends requests at a fixed rate, whatever the
//! answers' latency, and reports latency measured from each request's scheduled time (so a slow
//! server cannot hide its queueing, unlike a closed-loop tool such as wrk).

mod deliver;

use std::time::{Duration, Instant};

fn usage() -> ! {
    eprintln!(
        "usage: swbench ceiling\n       swbench open-loop URL AUTH_HEADER BODY_FILE RATE_PER_SEC SECONDS\n\
         swbench deliver SERVER_URL ADMIN_TOKEN SERVER_PID COUNT\n\
         (BODY_FILE may contain {{n}}, replaced by a unique number per request)"
    );
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ceiling") => ceiling().await,
        Some("deliver") if args.len() == 5 => {
            let pid: u32 = args[3].parse().unwrap_or_else(|_| usage());
            let count: usize = args[4].parse().unwrap_or_else(|_| usage());
            deliver::run(&args[1], &args[2], pid, count).await
        }
        Some("open-loop") if args.len() == 6 => {
            let rate: f64 = args[4].parse().unwrap_or_else(|_| usage());
            let secs: f64 = args[5].parse().unwrap_or_else(|_| usage());
            let body = std::fs::read_to_string(&args[3]).unwrap_or_else(|e| {
                eprintln!("swbench: cannot read {}: {e}", args[3]);
                std::process::exit(2)
            });
            open_loop(&args[1], &args[2], &body, rate, Duration::from_secs_f64(secs)).await
        }
        _ => usage(),
    }
}

async fn ceiling() {
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/v1/{kind}",
        post(|body: axum::body::Bytes| async move {
            std::hint::black_box(body);
            axum::Json(serde_json_ok())
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    println!("listening on http://{}", listener.local_addr().unwrap());
    axum::serve(listener, app).await.expect("serve");
}

fn serde_json_ok() -> &'static str {
    r#"{"success":true}"#
}

async fn open_loop(url: &str, auth: &str, body: &str, rate: f64, duration: Duration) {
    let client = reqwest::Client::builder().pool_max_idle_per_host(512).build().expect("client");
    let interval = Duration::from_secs_f64(1.0 / rate);
    let total = (duration.as_secs_f64() * rate) as u64;
    let start = Instant::now() + Duration::from_millis(50);
    let run = std::process::id();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Duration, bool)>();
    for i in 0..total {
        let scheduled = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(scheduled.into()).await;
        let req = client
            .post(url)
            .header("Authorization", auth)
            .header("Content-Type", "application/json")
            .body(body.replace("{n}", &format!("{run}-{i}")));
        let tx = tx.clone();
        tokio::spawn(async move {
            let ok = matches!(req.send().await, Ok(r) if r.status().is_success());
            let _ = tx.send((scheduled.elapsed(), ok));
        });
    }
    drop(tx);
    let mut latencies = Vec::with_capacity(total as usize);
    let mut failed = 0u64;
    while let Some((lat, ok)) = rx.recv().await {
        if ok {
            latencies.push(lat);
        } else {
            failed += 1;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| latencies.get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1))).copied().unwrap_or_default();
    println!(
        "rate={:.0}/s sent={} ok={} failed={} achieved={:.0}/s p50_ms={:.3} p99_ms={:.3} max_ms={:.3}",
        rate,
        total,
        latencies.len(),
        failed,
        latencies.len() as f64 / elapsed,
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
}
