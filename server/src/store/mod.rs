//! One storage layer over sqlx's `Any` driver: SQLite (default, a file in the data dir) or
//! PostgreSQL (`postgres://…`). SQL is written once in the dialect both accept (`$1` parameters,
//! TEXT and BIGINT columns); migrations live in `migrations/{sqlite,postgres}`.

mod audit;
mod destinations;
pub mod direct;
pub mod events;
pub mod privacy;
mod privacy_batches;
mod migrate;
pub mod sessions;
mod sources;
mod tokens;
mod users;

pub use audit::{AuditEntry, Actor};
pub use destinations::{all_destinations, create_destination, delete_destination, destination, destination_by_name, record_secret_access, set_destination_status, update_destination, DestinationRow, DestinationWrite};
pub use sources::{all_sources, create_source, replace_write_key, source_by_id, source_by_name, update_source, KeyOwner, SourceFields, SourceRow, SourceType, WriteKeyOut};
pub use tokens::{TokenRow, NewToken};
pub use users::UserRow;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Errors of the storage layer that callers act on; everything else is `Other`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} '{value}' is already taken")]
    Taken { what: &'static str, value: String },
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Other(#[from] sqlx::Error),
}

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// The SQLite file (None on PostgreSQL), for the dedicated event writer.
    sqlite_path: Option<std::path::PathBuf>,
    fsync: bool,
    /// The delivery queue's own connection to that file (see `direct`).
    direct: Option<direct::Direct>,
    /// Signalled after each commit of this process's event writers (see `events_stored`).
    stored: Arc<tokio::sync::Notify>,
}

/// How long a SQLite writer waits for another process's write (the server's writer while the CLI
/// runs, or the other way round) before giving up.
const SQLITE_BUSY_TIMEOUT_MS: u64 = 10_000;

/// See `Store::write_turn`; the event writer's thread takes it with `blocking_lock`.
pub static SQLITE_WRITERS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl Store {
    /// Opens (creating a SQLite file when needed) and migrates the database.
    pub async fn open(url: &str) -> anyhow::Result<Store> {
        Store::open_with(url, false).await
    }

    /// As `open`; `fsync` makes SQLite sync every commit to disk (survives power loss).
    pub async fn open_with(url: &str, fsync: bool) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = backend_of(url)?;
        let url = if backend == Backend::Sqlite && !url.contains("mode=") {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}mode=rwc")
        } else {
            url.to_string()
        };
        let mut opts = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 8 } else { 16 })
            .acquire_timeout(Duration::from_secs(30));
        if backend == Backend::Sqlite {
            let synchronous = if fsync { "FULL" } else { "NORMAL" };
            opts = opts.after_connect(move |conn, _meta| {
                Box::pin(async move {
                    conn.execute(format!("PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}").as_str())
                        .await?;
                    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
                        .fetch_one(&mut *conn)
                        .await?;
                    if !mode.eq_ignore_ascii_case("wal") {
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                    }
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    conn.execute(format!("PRAGMA synchronous = {synchronous}").as_str()).await?;
                    Ok(())
                })
            });
        }
        if backend == Backend::Postgres {
            // No JIT: the planner's cost for a claim grows with the queue (it cannot tell how many
            // due rows the walk will skip), past jit_above_cost, and compiling then took ~300 ms
            // of a claim that runs in 2 ms. Nothing here runs long enough to gain from it.
            //
            // Data pages these sessions write out (evicting them from shared buffers) are handed
            // to the disk at once instead of waiting as dirty OS pages. PostgreSQL's default for
            // sessions (0: never) let a burst of ingest leave ~700 MB dirty; the kernel wrote it
            // all back 30 s later (`dirty_expire_centisecs`), and the commits' WAL syncs queued
            // behind it for ~0.5 s: ingest p99 at 6,000 calls/s 185-192 ms, with this 7.5-8.3 ms
            // (same throughput). See README, Benchmark.
            opts = opts.after_connect(|conn, _meta| Box::pin(async move { conn.execute(POSTGRES_SESSION).await.map(|_| ()) }));
        }
        let pool = opts.connect(&url).await.map_err(|e| {
            anyhow::anyhow!("cannot open the database {}: {e}", redact(&url))
        })?;
        let sqlite_path = (backend == Backend::Sqlite).then(|| sqlite_file(&url)).flatten();
        let direct = sqlite_path.clone().map(|p| direct::Direct::open(p, fsync));
        let store = Store { pool, backend, sqlite_path, fsync, direct, stored: Arc::default() };
        migrate::run(&store).await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The SQLite database file and whether commits fsync, for writers that bypass the pool.
    pub fn sqlite_file(&self) -> Option<(&std::path::Path, bool)> {
        self.sqlite_path.as_deref().map(|p| (p, self.fsync))
    }

    /// Signalled after each commit of this process's event writers: the router waits on it
    /// instead of only polling (events stored by other processes are found by its poll).
    pub fn events_stored(&self) -> &Arc<tokio::sync::Notify> {
        &self.stored
    }

    /// On a SQLite file, the delivery queue's own connection.
    pub fn direct(&self) -> Option<&direct::Direct> {
        self.direct.as_ref()
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// On SQLite, the turn of one of the busy writers of this process (the event writer, the
    /// delivery router, claims and results), taken before `BEGIN IMMEDIATE`: they queue here in
    /// order instead of colliding on the database lock, where SQLite's busy handler backs off in
    /// sleeps of up to 100 ms. Other writes rely on the busy timeout alone.
    pub async fn write_turn(&self) -> Option<tokio::sync::MutexGuard<'static, ()>> {
        match self.backend {
            Backend::Sqlite => Some(SQLITE_WRITERS.lock().await),
            Backend::Postgres => None,
        }
    }

    /// A write transaction. On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`) so the
    /// busy timeout applies instead of a "database is locked" error halfway through.
    pub async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// True when the database answers and every migration is applied.
    pub async fn ready(&self) -> anyhow::Result<()> {
        migrate::check_applied(self).await
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The file of a `sqlite://PATH?…` or `sqlite:PATH` URL (none for in-memory databases).
fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or("");
    (!path.is_empty() && !path.contains(":memory:")).then(|| std::path::PathBuf::from(path))
}

pub fn backend_of(url: &str) -> anyhow::Result<Backend> {
    if url.starts_with("sqlite:") {
        Ok(Backend::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Backend::Postgres)
    } else {
        anyhow::bail!("expected a URL starting with sqlite: or postgres://")
    }
}

/// A URL with its password hidden, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Settings of every PostgreSQL session of the pool (see `Store::open`).
pub const POSTGRES_SESSION: &str = "SET jit = off; SET backend_flush_after = '256kB'";

static IDS: Mutex<Option<ulid::Generator>> = Mutex::new(None);

/// A new opaque id: a prefix and a time-ordered ULID, so ids sort newest last.
pub fn new_id(prefix: &str) -> String {
    let mut guard = IDS.lock().unwrap_or_else(|p| p.into_inner());
    let generator = guard.get_or_insert_with(ulid::Generator::new);
    let id = generator.generate().unwrap_or_else(|_| ulid::Ulid::new());
    format!("{prefix}_{}", id.to_string().to_lowercase())
}

/// Maps a unique violation on one of our named constraints to `Taken`.
pub(crate) fn map_unique(err: sqlx::Error, what: &'static str, value: &str) -> StoreError {
    if let sqlx::Error::Database(db) = &err {
        if db.is_unique_violation() {
            return StoreError::Taken { what, value: value.to_string() };
        }
    }
    StoreError::Other(err)
}

/// A page of rows fetched newest first: returns the items and the cursor for the next page.
pub(crate) fn page<T>(mut rows: Vec<T>, limit: usize, id: impl Fn(&T) -> String) -> (Vec<T>, Option<String>) {
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(&id)
    } else {
        None
    };
    (rows, next)
}

impl Store {
    /// One page of `table`, newest first by its time-ordered `id`.
    pub(crate) async fn id_page<T>(
        &self,
        table: &str,
        limit: usize,
        before: Option<&str>,
        from_row: fn(&AnyRow) -> Result<T>,
        id: fn(&T) -> String,
    ) -> Result<(Vec<T>, Option<String>)> {
        let rows = sqlx::query(&format!("SELECT * FROM {table} WHERE ($1 IS NULL OR id < $1) ORDER BY id DESC LIMIT $2"))
            .bind(before)
            .bind(limit as i64 + 1)
            .fetch_all(&self.pool)
            .await?;
        let items = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
        Ok(page(items, limit, id))
    }
}

pub(crate) fn get<T>(row: &AnyRow, col: &str) -> Result<T>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    Ok(row.try_get(col)?)
}

/// 32 random bytes, hex: for one-time links.
pub fn random_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

pub use tokens::hash_token as tokens_hash;
