//! The event writer: request handlers hand it messages and wait for the commit; it commits many
//! requests' messages in one transaction (group commit). The work runs in its own tasks, so a
//! client that disconnects cannot cancel a half-done write: a message is stored fully or not at all.

use crate::store::events::{insert_event, insert_events, insert_rejection, NewEvent, NewRejection};
use crate::store::{now_ms, Backend, Store};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Mutex};

/// What happened to one accepted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Stored,
    Duplicate,
    /// The database refused this one message (the others of its group were stored); it was kept
    /// as this rejection instead.
    Refused(NewRejection),
}

/// A message the database refused: its outcome, holding the rejection to keep in its place.
pub(super) fn refused(e: &NewEvent, error: &dyn std::fmt::Display) -> Outcome {
    tracing::warn!(error = %error, message_id = %e.message_id, "the database refused a message");
    Outcome::Refused(NewRejection {
        source_id: e.source_id.clone(),
        message_id: Some(e.message_id.clone()),
        kind: Some(e.kind.to_string()),
        reason: format!("the database refused this message: {error}"),
        received_at: e.received_at,
        payload: e.payload.clone(),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("the write queue is full")]
    Busy,
    #[error("the event store is unavailable: {0}")]
    Failed(String),
}

pub(super) struct Job {
    pub(super) events: Vec<NewEvent>,
    pub(super) rejections: Vec<NewRejection>,
    pub(super) reply: oneshot::Sender<Result<Vec<Outcome>, String>>,
}

/// Requests that may wait for a commit by default (config `ingest_queue`).
pub const DEFAULT_QUEUE: usize = 4096;

#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Requests waiting for a commit before new ones get 503.
    pub queue: usize,
    /// Most messages committed in one transaction.
    pub max_group: usize,
    /// A message id seen again within this window is acknowledged and not stored again.
    pub dedupe_window: Duration,
    /// Parallel writers (SQLite has one writer; PostgreSQL gains from a few).
    pub writers: usize,
    /// SQLite: while messages keep arriving, commits are at most this far apart, so that each
    /// group holds what arrived meanwhile; the group's transaction stores them as they come
    /// (`sqlite_writer::gather`). Committing as soon as a message waits made groups of
    /// one or two messages under load, each paying a commit's fixed cost (its WAL frames for the
    /// indexes' pages, page 1 and the sequence): the writer then took a quarter of the server's
    /// CPU and the request handlers waited for a core (README, Benchmark). Zero: no wait.
    pub commit_interval: Duration,
}

/// Commits are at most this far apart by default (config `commit_interval_us`).
pub const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_micros(500);

impl WriterOptions {
    pub fn for_backend(backend: Backend, dedupe_window: Duration) -> Self {
        WriterOptions {
            queue: DEFAULT_QUEUE,
            max_group: 2000,
            dedupe_window,
            writers: if backend == Backend::Sqlite { 1 } else { 4 },
            commit_interval: DEFAULT_COMMIT_INTERVAL,
        }
    }
}

#[derive(Clone)]
pub struct EventWriter {
    tx: mpsc::Sender<Job>,
    depth: Arc<AtomicI64>,
}

impl EventWriter {
    /// Starts the writer tasks; they stop once every `EventWriter` clone is dropped and the queue
    /// is drained (await the handle to know every accepted message was committed).
    pub fn start(store: Store, opts: WriterOptions) -> (EventWriter, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel::<Job>(opts.queue);
        let rx = Arc::new(Mutex::new(rx));
        let depth = Arc::new(AtomicI64::new(0));
        let mut tasks = Vec::new();
        if let Some((path, fsync)) = store.sqlite_file() {
            // SQLite has one writer: a thread of its own, talking to SQLite directly.
            let (path, rx, depth) = (path.to_path_buf(), rx.clone(), depth.clone());
            let group = super::sqlite_writer::Grouping { max_group: opts.max_group, dedupe_ms: opts.dedupe_window.as_millis() as i64, interval: opts.commit_interval };
            let stored = store.events_stored().clone();
            tasks.push(tokio::task::spawn_blocking(move || super::sqlite_writer::run(&path, fsync, rx, group, depth, stored)));
        }
        for _ in 0..if tasks.is_empty() { opts.writers.max(1) } else { 0 } {
            let (store, rx, opts, depth) = (store.clone(), rx.clone(), opts.clone(), depth.clone());
            tasks.push(tokio::spawn(async move { run(store, rx, opts, depth).await }));
        }
        let handle = tokio::spawn(async move {
            for t in tasks {
                let _ = t.await;
            }
        });
        (EventWriter { tx, depth }, handle)
    }

    /// Requests waiting for their commit.
    pub fn depth(&self) -> i64 {
        self.depth.load(Ordering::Relaxed)
    }

    /// Stores the messages and returns once they are committed.
    pub async fn write(&self, events: Vec<NewEvent>, rejections: Vec<NewRejection>) -> Result<Vec<Outcome>, WriteError> {
        let (reply, answer) = oneshot::channel();
        let job = Job { events, rejections, reply };
        queued(&self.depth, 1);
        self.tx.try_send(job).map_err(|e| {
            queued(&self.depth, -1);
            match e {
                mpsc::error::TrySendError::Full(_) => WriteError::Busy,
                mpsc::error::TrySendError::Closed(_) => WriteError::Failed("the server is shutting down".into()),
            }
        })?;
        answer.await.map_err(|_| WriteError::Failed("the writer stopped".into()))?.map_err(WriteError::Failed)
    }
}

async fn run(store: Store, rx: Arc<Mutex<mpsc::Receiver<Job>>>, opts: WriterOptions, depth: Arc<AtomicI64>) {
    loop {
        // Take the first waiting job, then whatever else is queued, up to a group's worth.
        let jobs = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { return };
            let mut n = first.events.len() + first.rejections.len();
            let mut jobs = vec![first];
            while n < opts.max_group {
                match rx.try_recv() {
                    Ok(job) => {
                        n += job.events.len() + job.rejections.len();
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
            jobs
        };
        let count = jobs.len() as i64;
        let cutoff = now_ms() - opts.dedupe_window.as_millis() as i64;
        let size: usize = jobs.iter().map(|j| j.events.len()).sum();
        let started = std::time::Instant::now();
        let committed = commit(&store, &jobs, cutoff).await;
        match committed {
            Ok(outcomes) => {
                for (job, outcome) in jobs.into_iter().zip(outcomes) {
                    let _ = job.reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, jobs = count, "a group commit failed; writing its messages one by one");
                for job in jobs {
                    let result = one_by_one(&store, &job, cutoff).await;
                    let _ = job.reply.send(result);
                }
            }
        }
        store.events_stored().notify_one();
        group_done(&depth, count, size, started);
    }
}

/// Requests queued (or, negative, answered). The gauge moves by increments, so that concurrent
/// updates cannot leave it at a stale value.
pub(super) fn queued(depth: &AtomicI64, n: i64) {
    static GAUGE: LazyLock<metrics::Gauge> = LazyLock::new(|| metrics::gauge!("ingest_write_queue_depth"));
    depth.fetch_add(n, Ordering::Relaxed);
    GAUGE.increment(n as f64);
}

/// Bookkeeping after a group: commit time, group size, queue depth.
pub(super) fn group_done(depth: &AtomicI64, jobs: i64, events: usize, started: std::time::Instant) {
    metrics::histogram!("ingest_commit_seconds").record(started.elapsed().as_secs_f64());
    metrics::histogram!("ingest_group_events").record(events as f64);
    queued(depth, -jobs);
}

/// One transaction for every message of every job.
async fn commit(store: &Store, jobs: &[Job], cutoff: i64) -> crate::store::Result<Vec<Vec<Outcome>>> {
    let mut tx = store.begin().await?;
    let events: Vec<&NewEvent> = jobs.iter().flat_map(|j| j.events.iter()).collect();
    let mut stored = insert_events(&mut tx, &events, cutoff).await?.into_iter();
    for job in jobs {
        for r in &job.rejections {
            insert_rejection(&mut tx, r).await?;
        }
    }
    tx.commit().await?;
    Ok(jobs
        .iter()
        .map(|job| job.events.iter().map(|_| if stored.next().unwrap_or(false) { Outcome::Stored } else { Outcome::Duplicate }).collect())
        .collect())
}

/// After a failed group: each message in its own transaction, so one the database refuses does
/// not fail the others (it is kept as a rejection). Fails only when the database is unreachable.
async fn one_by_one(store: &Store, job: &Job, cutoff: i64) -> Result<Vec<Outcome>, String> {
    let mut outcomes = Vec::with_capacity(job.events.len());
    let mut reachable = false;
    for e in &job.events {
        let mut tx = store.begin().await.map_err(|e| e.to_string())?;
        reachable = true;
        match insert_event(&mut tx, e, cutoff).await {
            Ok(stored) => {
                tx.commit().await.map_err(|e| e.to_string())?;
                outcomes.push(if stored { Outcome::Stored } else { Outcome::Duplicate });
            }
            // Anything but the message's own fault (a lost connection, a timeout) fails the
            // request, which the client retries: the messages stored meanwhile are duplicates then.
            Err(err) if !refusal(&err) => return Err(err.to_string()),
            Err(err) => {
                drop(tx);
                let outcome = refused(e, &err);
                if let Outcome::Refused(r) = &outcome {
                    keep(store, r).await;
                }
                outcomes.push(outcome);
            }
        }
    }
    for r in &job.rejections {
        keep(store, r).await;
    }
    if !reachable && !job.events.is_empty() {
        return Err("no database connection".into());
    }
    Ok(outcomes)
}

/// Whether the database refused the message itself: a constraint, or data it cannot store
/// (PostgreSQL's classes 22 and 23).
fn refusal(err: &crate::store::StoreError) -> bool {
    match err {
        crate::store::StoreError::Other(sqlx::Error::Database(db)) => {
            db.kind() != sqlx::error::ErrorKind::Other || db.code().is_some_and(|c| c.starts_with("22") || c.starts_with("23"))
        }
        _ => false,
    }
}

/// Stores one rejection in a transaction of its own; one the database refuses too is logged (the
/// answer lists it all the same).
async fn keep(store: &Store, r: &NewRejection) {
    let kept = async {
        let mut tx = store.begin().await?;
        insert_rejection(&mut tx, r).await?;
        tx.commit().await?;
        crate::store::Result::Ok(())
    };
    if let Err(e) = kept.await {
        tracing::warn!(error = %e, message_id = ?r.message_id, "a rejected message could not be kept");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str) -> NewEvent {
        NewEvent {
            source_id: "src_1".into(),
            message_id: id.into(),
            kind: "track",
            user_id: Some("u-1".into()),
            anonymous_id: None,
            received_at: now_ms(),
            payload: format!(r#"{{"type":"track","event":"E","userId":"u-1","messageId":"{id}"}}"#),
        }
    }

    /// On SQLite, while messages keep coming, commits are at most `commit_interval` apart and
    /// take everything that arrived meanwhile; a message after a quiet spell is committed at once.
    #[tokio::test]
    async fn sqlite_commits_are_spaced_while_messages_keep_coming() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}", dir.path().join("w.db").display())).await.unwrap();
        let interval = Duration::from_millis(400);
        let opts = WriterOptions { commit_interval: interval, ..WriterOptions::for_backend(Backend::Sqlite, Duration::from_secs(60)) };
        let (writer, done) = EventWriter::start(store.clone(), opts);
        let started = std::time::Instant::now();
        assert_eq!(writer.write(vec![event("m-0")], Vec::new()).await.unwrap(), vec![Outcome::Stored]);
        assert!(started.elapsed() < interval, "the first message waited: {:?}", started.elapsed());
        // Right behind it: these wait for the interval, all in the next group.
        let writes = (1..=10).map(|i| writer.write(vec![event(&format!("m-{i}"))], Vec::new()));
        for outcome in futures_util::future::join_all(writes).await {
            assert_eq!(outcome.unwrap(), vec![Outcome::Stored]);
        }
        assert!(started.elapsed() >= interval, "the second group did not wait: {:?}", started.elapsed());
        tokio::time::sleep(interval).await;
        let quiet = std::time::Instant::now();
        assert_eq!(writer.write(vec![event("m-11")], Vec::new()).await.unwrap(), vec![Outcome::Stored]);
        assert!(quiet.elapsed() < interval, "a message after a quiet spell waited: {:?}", quiet.elapsed());
        let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events").fetch_one(store.pool()).await.unwrap();
        assert_eq!(stored, 12);
        drop(writer);
        done.await.unwrap();
    }

    /// Each commit signals `Store::events_stored`, which the router waits on between its polls.
    #[tokio::test]
    async fn a_commit_wakes_the_router() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}", dir.path().join("w.db").display())).await.unwrap();
        let (writer, done) = EventWriter::start(store.clone(), WriterOptions::for_backend(Backend::Sqlite, Duration::from_secs(60)));
        let woken = store.events_stored().notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        assert_eq!(writer.write(vec![event("m-1")], Vec::new()).await.unwrap(), vec![Outcome::Stored]);
        tokio::time::timeout(Duration::from_secs(10), woken).await.expect("the commit signalled the router");
        drop(writer);
        done.await.unwrap();
    }
}
