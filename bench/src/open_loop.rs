//! `swbench open-loop`: requests at a fixed rate whatever the answers' latency, latency measured
//! from each request's scheduled time (so a slow server cannot hide its queueing, unlike a
//! closed-loop tool such as wrk). Plain HTTP/1.1 over kept-alive TCP connections, so the client
//! costs little of the CPU it shares with the server: connection `k` of `C` sends requests
//! `k`, `k + C`, `k + 2C`, ...; one that is still waiting when its next turn comes sends late,
//! and the lateness counts in the latency (the client's own timer lateness does not).

use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CONNECTIONS: u64 = 64;

pub async fn run(url: &str, auth: &str, body: &str, rate: f64, duration: Duration) {
    let rest = url.strip_prefix("http://").unwrap_or_else(|| fail("only http:// URLs"));
    let (host, path) = rest.split_once('/').map(|(h, p)| (h.to_string(), format!("/{p}"))).unwrap_or((rest.to_string(), "/".into()));
    let total = (duration.as_secs_f64() * rate) as u64;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now() + Duration::from_millis(200);
    let run = std::process::id();
    // Slow disk syncs meanwhile explain a tail that is not the server's (see disk.rs).
    let probe = crate::disk::Probe::start();
    let mut tasks = Vec::new();
    for k in 0..CONNECTIONS.min(total) {
        let (host, path, auth, body) = (host.clone(), path.clone(), auth.to_string(), body.to_string());
        tasks.push(tokio::spawn(async move {
            let mut conn = TcpStream::connect(&host).await.unwrap_or_else(|e| fail(&format!("connect to {host}: {e}")));
            conn.set_nodelay(true).ok();
            let mut buf = Vec::with_capacity(4096);
            let mut results = Vec::new();
            let mut i = k;
            while i < total {
                let scheduled = start + interval.mul_f64(i as f64);
                // Idle at its turn, the connection's lateness is this client's timer (tokio's
                // granularity is a millisecond): latency counts from the send. Busy at its turn,
                // the wait for the previous answer counts too.
                let from = if Instant::now() < scheduled {
                    tokio::time::sleep_until(scheduled.into()).await;
                    Instant::now()
                } else {
                    scheduled
                };
                let text = body.replace("{n}", &format!("{run}-{i}"));
                let request = format!(
                    "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
                    text.len()
                );
                let ok = match conn.write_all(request.as_bytes()).await {
                    Ok(()) => read_response(&mut conn, &mut buf).await.unwrap_or(false),
                    Err(_) => false,
                };
                results.push((from.elapsed(), ok, scheduled));
                i += CONNECTIONS;
            }
            results
        }));
    }
    // SWBENCH_DUMP=FILE writes each request's scheduled offset and latency (ms), to see when a
    // tail happens.
    let mut dump = std::env::var("SWBENCH_DUMP").ok().and_then(|p| std::fs::File::create(p).ok());
    let mut latencies = Vec::with_capacity(total as usize);
    let mut failed = 0u64;
    for t in tasks {
        for (lat, ok, at) in t.await.expect("a connection task") {
            if let Some(f) = dump.as_mut() {
                use std::io::Write;
                let _ = writeln!(f, "{:.1} {:.3}", at.duration_since(start).as_secs_f64() * 1e3, lat.as_secs_f64() * 1e3);
            }
            if ok {
                latencies.push(lat);
            } else {
                failed += 1;
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let (disk_max, disk_slow) = probe.map_or((f64::NAN, 0), crate::disk::Probe::finish_figures);
    latencies.sort();
    let pct = |p: f64| latencies.get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1))).copied().unwrap_or_default();
    println!(
        "rate={:.0}/s sent={} ok={} failed={} achieved={:.0}/s p50_ms={:.3} p99_ms={:.3} max_ms={:.3} disk_sync_max_ms={disk_max:.1} disk_syncs_over_20ms={disk_slow}",
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

/// Reads one response (headers and a `Content-Length` body); whether its status is 2xx.
async fn read_response(conn: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    buf.clear();
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
            while buf.len() < end + 4 + length {
                read_more(conn, buf).await?;
            }
            return Ok(head.starts_with("http/1.1 2"));
        }
        read_more(conn, buf).await?;
    }
}

async fn read_more(conn: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut chunk = [0u8; 4096];
    let n = conn.read(&mut chunk).await?;
    if n == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

fn fail(msg: &str) -> ! {
    eprintln!("swbench: {msg}");
    std::process::exit(2)
}
