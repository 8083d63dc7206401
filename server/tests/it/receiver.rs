//! A real HTTP receiver for delivery tests: records every request and answers with the status
//! it is told to.

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
pub struct Received {
    pub at: std::time::Instant,
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    pub got: Arc<Mutex<Vec<Received>>>,
    pub status: Arc<AtomicU16>,
    /// Answers to give first, in order: (status, Retry-After).
    pub script: Arc<Mutex<std::collections::VecDeque<(u16, Option<String>)>>>,
    /// `webhook-id` → how many more times to answer it 500.
    pub fail_ids: Arc<Mutex<std::collections::HashMap<String, u32>>>,
    /// Milliseconds to wait before answering.
    pub delay_ms: Arc<std::sync::atomic::AtomicU64>,
    /// The body of every answer ("received" unless set).
    pub reply: Arc<Mutex<String>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let status = Arc::new(AtomicU16::new(200));
        let script: Arc<Mutex<std::collections::VecDeque<(u16, Option<String>)>>> = Arc::default();
        let fail_ids: Arc<Mutex<std::collections::HashMap<String, u32>>> = Arc::default();
        let delay_ms = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let reply = Arc::new(Mutex::new("received".to_string()));
        let (g, s, sc, f, dl, rp) = (got.clone(), status.clone(), script.clone(), fail_ids.clone(), delay_ms.clone(), reply.clone());
        let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let (g, s, sc, f, dl, rp) = (g.clone(), s.clone(), sc.clone(), f.clone(), dl.clone(), rp.clone());
            async move {
                let at = std::time::Instant::now();
                let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
                g.lock().unwrap().push(Received { at, method: method.to_string(), path: uri.to_string(), headers, body });
                let delay = dl.load(Ordering::SeqCst);
                if delay > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
                }
                let failing = {
                    let mut f = f.lock().unwrap();
                    match f.get_mut(&id) {
                        Some(n) if *n > 0 => {
                            *n -= 1;
                            true
                        }
                        _ => false,
                    }
                };
                let scripted = if failing { Some((500, None)) } else { sc.lock().unwrap().pop_front() };
                let (code, retry_after) = scripted.unwrap_or((s.load(Ordering::SeqCst), None));
                let mut h = HeaderMap::new();
                h.insert("x-receiver", "switchyard-tests".parse().unwrap());
                if let Some(ra) = retry_after {
                    h.insert("retry-after", ra.parse().unwrap());
                }
                if (300..400).contains(&code) {
                    h.insert("location", "/elsewhere".parse().unwrap());
                }
                let body = rp.lock().unwrap().clone();
                (StatusCode::from_u16(code).unwrap(), h, body)
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url, got, status, script, fail_ids, delay_ms, reply }
    }

    pub fn requests(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

impl Receiver {
    pub fn answer(&self, answers: &[(u16, Option<&str>)]) {
        self.script.lock().unwrap().extend(answers.iter().map(|(c, r)| (*c, r.map(String::from))));
    }

    /// Waits until at least `n` requests arrived (at most `secs` seconds).
    pub async fn wait_for(&self, n: usize, secs: u64) -> Vec<Received> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let got = self.requests();
            if got.len() >= n || std::time::Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}
