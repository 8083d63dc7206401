//! A second door to the SQLite file for the delivery engine's busiest queries (routing, claims,
//! loading claimed events, results): one thread with its own connection and cached prepared
//! statements. sqlx's SQLite driver runs each connection on its own thread and hands every
//! statement and every row across (see `ingest/sqlite_writer.rs` for what that cost the event
//! writer); here a whole claim or a whole result write is one hand-off.

use rusqlite::{Connection, Transaction, TransactionBehavior};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

type Task = Box<dyn FnOnce(&mut Connection) + Send>;

#[derive(Clone)]
pub struct Direct {
    tasks: mpsc::Sender<Task>,
    leases: Leases,
}

/// The delivery leases of this process on a SQLite file: delivery id → end of the lease (ms).
///
/// One process delivers from a SQLite file (`serve` holds its delivery lock), and a lease only
/// has to outlive a crash of the worker that holds it, which here is a crash of the process: so
/// claims are kept here instead of written to the file, which saves a row write per delivery.
/// Claims and result writes both run on the queue's thread, so a claim never sees a delivery whose
/// result is committed as still leased, nor one that is leased as free.
#[derive(Clone, Default)]
pub struct Leases(Arc<Mutex<HashMap<String, i64>>>);

impl Leases {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The deliveries leased at `now` (expired leases are forgotten).
    pub fn held(&self, now: i64) -> Vec<String> {
        self.with(now, |map| map.keys().cloned().collect())
    }

    /// Runs `f` with the set of leases that still run at `now`; `f` may add to it.
    pub fn with<T>(&self, now: i64, f: impl FnOnce(&mut HashMap<String, i64>) -> T) -> T {
        let mut map = self.map();
        map.retain(|_, until| *until > now);
        f(&mut map)
    }

    /// Ends the leases of these deliveries.
    pub fn release<'a>(&self, ids: impl IntoIterator<Item = &'a String>) {
        let mut map = self.map();
        for id in ids {
            map.remove(id);
        }
    }
}

impl std::fmt::Debug for Direct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Direct")
    }
}

fn connect(path: &Path, fsync: bool) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_millis(super::SQLITE_BUSY_TIMEOUT_MS))?;
    conn.pragma_update(None, "synchronous", if fsync { "FULL" } else { "NORMAL" })?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // The event writer's checkpointer keeps the WAL short; checkpointing from here after commits
    // (SQLite's default at 1,000 pages) ran a checkpoint on most of this connection's commits,
    // in the write turn, once the log had grown past that without being restarted. Only a log
    // nobody else checkpoints (no event writer in this process) gets that far now.
    conn.pragma_update(None, "wal_autocheckpoint", 10_000)?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

impl Direct {
    /// Starts the thread; it ends when the last handle is dropped.
    pub fn open(path: PathBuf, fsync: bool) -> Direct {
        let (tasks, rx) = mpsc::channel::<Task>();
        let spawned = std::thread::Builder::new().name("sqlite-queue".into()).spawn(move || {
            let mut conn = None;
            while let Ok(task) = rx.recv() {
                if conn.is_none() {
                    conn = connect(&path, fsync)
                        .map_err(|e| tracing::error!(error = %e, path = %path.display(), "the delivery queue cannot open the database"))
                        .ok();
                }
                // Without a connection the task is dropped, and its caller told so.
                if let Some(c) = conn.as_mut() {
                    task(c);
                }
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the delivery queue's SQLite thread");
        }
        Direct { tasks, leases: Leases::default() }
    }

    pub fn leases(&self) -> &Leases {
        &self.leases
    }

    /// Runs `f` on the connection's thread and returns what it returned.
    pub async fn run<T: Send + 'static>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static) -> anyhow::Result<T> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.tasks
            .send(Box::new(move |c| {
                let _ = reply.send(f(c));
            }))
            .map_err(|_| anyhow::anyhow!("the delivery queue's SQLite thread has stopped"))?;
        Ok(answer.await.map_err(|_| anyhow::anyhow!("the delivery queue cannot open the database"))??)
    }
}

/// A write transaction in this process's turn among SQLite writers (see `Store::write_turn`).
pub fn write<T>(conn: &mut Connection, f: impl FnOnce(&Transaction) -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let _turn = super::SQLITE_WRITERS.blocking_lock();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let out = f(&tx)?;
    tx.commit()?;
    Ok(out)
}

/// Held by the one `serve` that delivers from a SQLite file (its leases live in its memory, see
/// `Leases`): a second one would deliver the same events. Released when the process ends, however
/// it ends.
pub fn delivery_lock(db: &Path) -> anyhow::Result<std::fs::File> {
    let mut name = db.as_os_str().to_owned();
    name.push("-delivery.lock");
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&name)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another `switchyard serve` is delivering from {}: only one process may deliver from a SQLite file \
             (start this one with --mode ingest, or use PostgreSQL for several worker nodes)",
            db.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => Err(anyhow::anyhow!("cannot lock {}: {e}", std::path::Path::new(&name).display())),
    }
}
