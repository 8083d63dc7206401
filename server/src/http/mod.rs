//! The HTTP server: the JSON API under `/api`, operations endpoints, the admin app.

mod account;
mod audit;
mod catalog;
mod deliveries;
mod destination_test;
mod destinations;
pub mod auth;
mod limiter;
mod ops;
mod pages;
mod preview;
mod privacy;
pub mod problem;
mod sources;
pub use sources::SnippetsOut;
mod tokens;
mod users;

use crate::config::Config;
use crate::store::sessions::DbSessionStore;
use crate::store::Store;
use axum::extract::FromRef;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use leptos::config::LeptosOptions;
use problem::ApiError;
use serde::Deserialize;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tower_sessions::cookie::{Key, SameSite};
use tower_sessions::{Expiry, SessionManagerLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

/// What every handler can reach. Behind one `Arc`: axum clones the state for every extractor
/// of every request, and cloning the fields one by one was ~3% of a single-call ingest profile.
#[derive(Clone)]
pub struct AppState(Arc<AppStateFields>);

impl std::ops::Deref for AppState {
    type Target = AppStateFields;
    fn deref(&self) -> &AppStateFields {
        &self.0
    }
}

pub struct AppStateFields {
    pub store: Store,
    pub config: Arc<Config>,
    pub setup: Arc<SetupToken>,
    pub login_limiter: Arc<limiter::LoginLimiter>,
    pub leptos: LeptosOptions,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    pub ingest: Arc<crate::ingest::Ingest>,
    /// Turns true when the server stops: long-lived streams end then.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    pub integrations: crate::integrations::Integrations,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos.clone()
    }
}

/// The one-time token of the setup link, held while no user exists.
#[derive(Default)]
pub struct SetupToken(Mutex<Option<String>>);

impl SetupToken {
    pub fn set(&self, token: String) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(token);
    }
    pub fn clear(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
    pub fn matches(&self, candidate: &str) -> bool {
        let guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_deref() {
            // Compare hashes so the time taken says nothing about the token.
            Some(token) => crate::store::tokens_hash(token) == crate::store::tokens_hash(candidate),
            None => false,
        }
    }
}

/// `?limit=` (default 100, at most 1,000) and `?before=CURSOR` of every list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// How many items to return (1–1000, default 100).
    pub limit: Option<i64>,
    /// The `next` cursor of the previous page.
    pub before: Option<String>,
}

impl ListParams {
    pub fn limit(&self) -> Result<usize, ApiError> {
        match self.limit {
            None => Ok(100),
            Some(n) if (1..=1000).contains(&n) => Ok(n as usize),
            Some(n) => Err(ApiError::field("limit", format!("must be between 1 and 1000, got {n}"))),
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Switchyard API", description = "The JSON API of the Switchyard admin app and scripts. \
        Authenticate with a session cookie (from POST /api/auth/login) or `Authorization: Bearer TOKEN`."),
    modifiers(&SecurityAddon)
)]
struct ApiDoc;

struct SecurityAddon;

impl utoipa::Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
        components.add_security_scheme("session", SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("sy_session"))));
        openapi.security = Some(vec![
            utoipa::openapi::security::SecurityRequirement::new("bearer", Vec::<String>::new()),
            utoipa::openapi::security::SecurityRequirement::new("session", Vec::<String>::new()),
        ]);
    }
}

/// The API routes and the OpenAPI document generated from them.
fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(account::router())
        .merge(users::router())
        .merge(tokens::router())
        .merge(sources::router())
        .merge(catalog::router())
        .merge(destinations::router())
        .merge(destination_test::router())
        .merge(preview::router())
        .merge(deliveries::router())
        .merge(audit::router())
        .merge(privacy::router())
        .split_for_parts()
}

pub fn openapi() -> utoipa::openapi::OpenApi {
    api().1
}

pub fn leptos_options() -> LeptosOptions {
    LeptosOptions::builder().output_name("app").site_pkg_dir("pkg").hash_files(false).build()
}

pub fn router(state: AppState, session_key: &[u8]) -> Router {
    let (api, doc) = api();
    let doc = Arc::new(doc);
    let secure = state.config.public_url.as_deref().is_some_and(|u| u.starts_with("https://"));
    let sessions = SessionManagerLayer::new(DbSessionStore(state.store.clone()))
        .with_name("sy_session")
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(secure)
        .with_expiry(Expiry::OnInactivity(time::Duration::days(7)))
        .with_signed(Key::from(session_key));
    let admin = Router::new()
        .merge(api)
        .route("/api/openapi.json", get(move || async move { Json((*doc).clone()) }))
        .route("/api/{*rest}", axum::routing::any(|| async { ApiError::NotFound("API route") }))
        .merge(pages::router(&state))
        .layer(sessions);
    // A worker node takes no events (its Tracking API routes say where to send them).
    let tracking = match state.config.mode {
        crate::config::Mode::Worker => crate::ingest::worker_router(),
        _ => crate::ingest::router(),
    };
    Router::new()
        .merge(tracking)
        .merge(admin)
        .merge(ops::router())
        .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "not found\n").into_response() })
        .layer(ops::Track)
        .with_state(state)
}

/// Builds the state, prints the setup link when there are no users, and serves until `shutdown`
/// resolves; then stops accepting and lets in-flight requests finish.
pub async fn serve(
    config: Config,
    store: Store,
    keys: crate::keys::Keys,
    integrations: crate::integrations::Integrations,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let bound = listener.local_addr()?;
    let dedupe = Duration::from_secs(config.dedupe_window_secs);
    let (writer, writer_done) = crate::ingest::writer::EventWriter::start(
        store.clone(),
        crate::ingest::writer::WriterOptions {
            queue: config.ingest_queue,
            commit_interval: Duration::from_micros(config.commit_interval_us),
            ..crate::ingest::writer::WriterOptions::for_backend(store.backend(), dedupe)
        },
    );
    let ingest = Arc::new(crate::ingest::Ingest::new(
        writer,
        crate::ingest::KeyCache::new(Duration::from_secs(2)),
        crate::ingest::Limits {
            max_message_bytes: config.max_message_bytes,
            max_request_bytes: config.max_request_bytes,
            max_batch_messages: config.max_batch_messages,
        },
        config.trusted_proxies.clone(),
    ));
    if store.backend() == crate::store::Backend::Postgres {
        ingest.live.start_relay(&config.database_url, store.pool().clone());
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let retention_days = config.event_retention_days as i64;
    let attempt_days = config.attempt_retention_days as i64;
    let state = AppState(Arc::new(AppStateFields {
        store: store.clone(),
        config: Arc::new(config),
        setup: Arc::new(SetupToken::default()),
        login_limiter: Arc::new(limiter::LoginLimiter::new(5, Duration::from_secs(60))),
        leptos: leptos_options(),
        metrics: ops::metrics_handle(),
        ingest,
        shutdown: stop_rx,
        integrations,
    }));
    let alerts = crate::deliver::alerts::Alerts::new(state.config.alert_url.clone());
    let misconfigured = crate::integrations::destination::check_all(&store, &state.integrations.catalog, &state.integrations.cipher, &alerts).await?;
    if misconfigured > 0 {
        tracing::warn!(misconfigured, "some destinations are misconfigured: see their status");
    }
    if store.user_count().await? == 0 {
        let token = crate::store::random_token();
        state.setup.set(token.clone());
        let link = format!("{}/setup?token={token}", state.config.base_url(bound));
        tracing::warn!(%link, "no users yet: open the setup link to create the owner (it works once)");
        eprintln!("\n  No users yet. Create the owner at:\n  {link}\n");
    }
    let sweeper = tokio::spawn({
        let store = store.clone();
        async move {
            loop {
                if let Err(e) = store.delete_expired_sessions().await {
                    tracing::warn!(error = %e, "cannot delete expired sessions");
                }
                let now = crate::store::now_ms();
                match store.prune_events(now - retention_days * 86_400_000, now - dedupe.as_millis() as i64).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deleted = n, "removed events past the retention period"),
                    Err(e) => tracing::warn!(error = %e, "cannot prune the event log"),
                }
                match crate::deliver::queue::prune(&store, now - attempt_days * 86_400_000).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deleted = n, "removed attempts and finished deliveries past the retention period"),
                    Err(e) => tracing::warn!(error = %e, "cannot prune the attempt log"),
                }
                tokio::time::sleep(Duration::from_secs(600)).await;
            }
        }
    });
    let _delivery_lock = match (state.config.mode.delivers(), store.direct().and(store.sqlite_file())) {
        (true, Some((db, _))) => Some(crate::store::direct::delivery_lock(db)?),
        _ => None,
    };
    if state.config.mode.delivers() && state.config.delivery_timeout_secs >= state.config.delivery_lease_secs {
        tracing::warn!(
            delivery_timeout_secs = state.config.delivery_timeout_secs,
            delivery_lease_secs = state.config.delivery_lease_secs,
            "the delivery timeout is not shorter than the lease: a slow destination's deliveries may be claimed again while in flight"
        );
    }
    let engine = state.config.mode.delivers().then(|| {
        tokio::spawn(crate::deliver::vacuum::run(store.clone(), state.config.queue_vacuum_rows, state.shutdown.clone()));
        let lease = (state.config.delivery_lease_secs * 1000) as i64;
        crate::deliver::start(store.clone(), state.integrations.clone(), lease, state.config.retry.clone(), alerts, state.shutdown.clone())
    });
    let app = router(state, &keys.session);
    tracing::info!("listening on http://{bound}");
    let result = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        })
        .await;
    sweeper.abort();
    // The engine stops claiming at once and gives in-flight deliveries a deadline.
    if let Some(engine) = engine {
        let _ = tokio::time::timeout(Duration::from_secs(15), engine).await;
    }
    // Every handler is done, so every writer handle is dropped: wait for the last commits.
    let _ = writer_done.await;
    tracing::info!("stopped");
    result.map_err(Into::into)
}
