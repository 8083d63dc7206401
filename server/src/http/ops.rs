//! Operations: liveness, readiness, Prometheus metrics and the request-metrics middleware.

use super::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::sync::{LazyLock, OnceLock, RwLock};
use std::time::Instant;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// How often histogram samples are folded into their buckets.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Histogram buckets. A histogram without an entry here would be exported as a summary (whose
/// quantiles cannot be added up across nodes); full names win over the suffix.
fn buckets() -> [(Matcher, &'static [f64]); 4] {
    [
        (Matcher::Full("http_request_duration_seconds".into()), &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
        // Ingest to delivered: milliseconds when all is well, hours through retries.
        (
            Matcher::Full("switchyard_delivery_latency_seconds".into()),
            &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 10800.0, 86400.0],
        ),
        // Events per group commit (at most 2,000).
        (Matcher::Full("ingest_group_events".into()), &[1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0]),
        // Ack latency, commit time and other durations: sub-millisecond up to seconds.
        (Matcher::Suffix("_seconds".into()), &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
    ]
}

/// The process-wide recorder (installed once, also when tests start several servers).
pub fn metrics_handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = buckets().into_iter().fold(PrometheusBuilder::new(), |b, (matcher, buckets)| {
                b.set_buckets_for_metric(matcher, buckets).expect("static buckets")
            });
            let handle = builder.install_recorder().expect("no other metrics recorder is installed");
            // Histograms keep every sample until they are folded into their buckets, which
            // `install_recorder` leaves to us: without this, a server nobody scrapes grows by
            // every request's samples.
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                })
                .expect("start the metrics upkeep thread");
            metrics::gauge!("switchyard_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            handle
        })
        .clone()
}

pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/metrics", get(metrics))
}

/// The process is up.
async fn healthz() -> &'static str {
    "ok\n"
}

/// The database answers and every migration is applied.
async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.ready().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")).into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}

/// Counts requests and their durations by method, route and status: a tower layer rather than
/// `from_fn`, which would box every request's future and clone the route behind it.
#[derive(Clone, Copy)]
pub struct Track;

impl<S> tower::Layer<S> for Track {
    type Service = Tracked<S>;
    fn layer(&self, inner: S) -> Tracked<S> {
        Tracked { inner }
    }
}

#[derive(Clone)]
pub struct Tracked<S> {
    inner: S,
}

impl<S> tower::Service<Request> for Tracked<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let method = method_label(req.method());
        let route = req.extensions().get::<MatchedPath>().cloned();
        TrackedFuture { inner: self.inner.call(req), start: Instant::now(), method, route }
    }
}

pin_project_lite::pin_project! {
    pub struct TrackedFuture<F> {
        #[pin]
        inner: F,
        start: Instant,
        method: &'static str,
        route: Option<MatchedPath>,
    }
}

impl<F, E> Future for TrackedFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        if let Ok(res) = &out {
            let (count, duration) = request_metrics(this.method, this.route.as_ref().map_or("unmatched", MatchedPath::as_str), res.status().as_u16());
            count.increment(1);
            duration.record(this.start.elapsed().as_secs_f64());
        }
        Poll::Ready(out)
    }
}

/// The method as a label: the standard ones by name, any other as `other` (a client must not be
/// able to create new series at will).
fn method_label(method: &Method) -> &'static str {
    [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::HEAD, Method::OPTIONS]
        .iter()
        .zip(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
        .find_map(|(m, label)| (m == method).then_some(label))
        .unwrap_or("other")
}

type RequestMetrics = (metrics::Counter, metrics::Histogram);

/// The handles of a (method, route, status) series, registered on first use: a request then
/// costs a map lookup instead of building and hashing its labels in the registry.
fn request_metrics(method: &'static str, route: &str, status: u16) -> RequestMetrics {
    static SERIES: LazyLock<RwLock<HashMap<String, HashMap<(&'static str, u16), RequestMetrics>>>> = LazyLock::new(Default::default);
    if let Some(found) = SERIES.read().unwrap_or_else(|p| p.into_inner()).get(route).and_then(|m| m.get(&(method, status))) {
        return found.clone();
    }
    let labels = [("method", method.to_string()), ("route", route.to_string()), ("status", status.to_string())];
    let made = (metrics::counter!("http_requests_total", &labels), metrics::histogram!("http_request_duration_seconds", &labels));
    let mut series = SERIES.write().unwrap_or_else(|p| p.into_inner());
    series.entry(route.to_string()).or_default().insert((method, status), made.clone());
    made
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicIsize, Ordering};

    /// Bytes allocated and not yet freed by this test binary.
    static LIVE: AtomicIsize = AtomicIsize::new(0);

    struct Counting;

    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static ALLOC: Counting = Counting;

    /// Histogram samples are folded into their buckets without anyone scraping `/metrics`: the
    /// memory holding them is freed within a few upkeep periods.
    #[test]
    fn histogram_samples_do_not_pile_up_unscraped() {
        metrics_handle();
        let before = LIVE.load(Ordering::Relaxed);
        for i in 0..2_000_000u32 {
            metrics::histogram!("test_upkeep_seconds").record(f64::from(i % 100) / 1000.0);
        }
        // 2,000,000 samples of 24 bytes each: about 47 MB held until the upkeep folds them.
        let held = LIVE.load(Ordering::Relaxed) - before;
        assert!(held > 20 << 20, "the samples should be held for a while ({held} bytes)");
        // A server keeps recording: the samples folded away are freed as later ones are recorded
        // (the buckets free their blocks through an epoch that recording moves on).
        let deadline = Instant::now() + UPKEEP_EVERY * 5;
        let mut left = held;
        while Instant::now() < deadline {
            for _ in 0..1_000 {
                metrics::histogram!("test_upkeep_seconds").record(0.001);
            }
            std::thread::sleep(UPKEEP_EVERY / 100);
            left = LIVE.load(Ordering::Relaxed) - before;
            if left < 8 << 20 {
                return;
            }
        }
        panic!("{left} of {held} bytes of histogram samples are still held after {:?}", UPKEEP_EVERY * 5);
    }
}
