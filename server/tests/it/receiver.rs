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
}

impl Receiver {
    pub async fn start() -> Receiver {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let status = Arc::new(AtomicU16::new(200));
        let script: Arc<Mutex<std::collections::VecDeque<(u16, Option<String>)>>> = Arc::default();
        let (g, s, sc) = (got.clone(), status.clone(), script.clone());
        let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let (g, s, sc) = (g.clone(), s.clone(), sc.clone());
            async move {
                let at = std::time::Instant::now();
                g.lock().unwrap().push(Received { at, method: method.to_string(), path: uri.to_string(), headers, body });
                let (code, retry_after) = sc.lock().unwrap().pop_front().unwrap_or((s.load(Ordering::SeqCst), None));
                let mut h = HeaderMap::new();
                if let Some(ra) = retry_after {
                    h.insert("retry-after", ra.parse().unwrap());
                }
                (StatusCode::from_u16(code).unwrap(), h, "received")
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url, got, status, script }
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
