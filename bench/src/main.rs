//! `swbench ceiling` serves a bare axum handler that answers 200 without storing anything (the
//! ceiling for this machine); `swbench open-loop` sends requests at a fixed rate and reports their
//! latency from each one's scheduled time (`open_loop.rs`).

mod deliver;
mod disk;
mod open_loop;

use std::time::Duration;

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
            open_loop::run(&args[1], &args[2], &body, rate, Duration::from_secs_f64(secs)).await
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
