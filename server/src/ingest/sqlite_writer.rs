//! The SQLite event writer: one thread with its own connection and cached prepared statements.
//!
//! Measured on the 2-core machine: through sqlx (the `Any` driver, multi-row statements) a group
//! commit cost about 46 µs per event, while SQLite itself needs about 9 µs (the same inserts from
//! Python's sqlite3). The per-statement overhead of sqlx's worker-thread design was the limit, so
//! the hot path talks to SQLite directly. Everything else still goes through the sqlx pool.

use super::writer::{Job, Outcome};
use crate::store::events::{NewEvent, NewRejection};
use crate::store::now_ms;
use rusqlite::{params, Connection, TransactionBehavior};
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::collections::HashSet;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Mutex};

/// Deduplication looks the message up in the log (index `events_message_id`, migration 14: by
/// the id alone, the source and window checked on the rows found): this writer is the only one,
/// so nothing can come between the lookup and the insert.
const SEEN: &str = "SELECT 1 FROM events WHERE source_id = ?1 AND message_id = ?2 AND received_at >= ?3";
/// `OR ROLLBACK`: a statement that fails ends the whole transaction, which the writer then stores
/// message by message (`one_by_one`) anyway; so SQLite need not keep a statement journal (a copy
/// of every page a multi-row insert touches, to undo just that statement), which took a tenth of
/// the writer's time.
const EVENT: &str = "INSERT OR ROLLBACK INTO events (source_id, message_id, type, user_id, anonymous_id, received_at, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
const REJECTION: &str = "INSERT INTO rejections (source_id, message_id, type, reason, received_at, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

fn connect(path: &Path, fsync: bool) -> rusqlite::Result<Connection> {
    // Each commit's WAL frames in one write (see `wal_vfs`); the default VFS if it cannot be had.
    let conn = match super::wal_vfs::register() {
        Ok(()) => Connection::open_with_flags_and_vfs(path, rusqlite::OpenFlags::default(), super::wal_vfs::NAME)?,
        Err(e) => {
            tracing::warn!(error = %e, "the event writer writes WAL frames one by one");
            Connection::open(path)?
        }
    };
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "synchronous", if fsync { "FULL" } else { "NORMAL" })?;
    // Read back, so the log says what SQLite will do (1: NORMAL, 2: FULL).
    let level: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
    let level = match level {
        2 => "FULL: every commit is synced to the disk",
        1 => "NORMAL: commits survive a crash of the process",
        _ => "other",
    };
    tracing::info!("event writer durability: synchronous={level}");
    // Checkpoints run on their own thread (`checkpointer`), not in the middle of a commit that
    // requests are waiting for.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    conn.set_prepared_statement_cache_capacity(8);
    Ok(conn)
}

/// How often the checkpointer copies the WAL into the database file. Each checkpoint's fsyncs
/// hold up the writer's commits for a moment; small, frequent ones keep the pauses short (measured
/// on the 2-core machine at 12,000 single calls/s: p99 3.5 ms every 20 ms, 5.2 ms every 50 ms,
/// 7.1 ms every 100 ms).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(20);
/// A WAL larger than this (the checkpointer could not catch up) is checkpointed by the writer
/// itself, waiting for readers: rare, and it keeps the file from growing without bound.
const WAL_LIMIT_BYTES: u64 = 64 << 20;

/// Copies the WAL into the database without blocking the writer (PASSIVE), until `stop`.
/// Publishes the WAL's length in frames (-1: no checkpointer, the writer checkpoints itself).
fn checkpointer(path: std::path::PathBuf, stop: Arc<std::sync::atomic::AtomicBool>, frames: Arc<AtomicI64>) {
    let conn = match Connection::open(&path).and_then(|c| c.busy_timeout(Duration::from_secs(1)).map(|_| c)) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "the WAL checkpointer cannot open the database; the writer checkpoints itself");
            frames.store(-1, Ordering::Relaxed);
            return;
        }
    };
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(CHECKPOINT_EVERY);
        // A checkpoint that could not run (another connection's was under way) answers -1, which
        // must not read as "no checkpointer": the writer would start checkpointing after its
        // commits for good.
        let log = passive(&conn);
        if let Some(log) = log {
            frames.store(log, Ordering::Relaxed);
        }
        // Under steady writes the log is never rewound: the writer's next transaction starts
        // before a checkpoint has copied all of it. Past REWIND_BYTES, a second checkpoint in the
        // writers' turn copies the few frames committed meanwhile, so the next transaction
        // starts the log over (instead of the writer's RESTART waiting for readers).
        if log.is_some_and(|l| l * PAGE_BYTES > REWIND_BYTES) {
            // That checkpoint syncs the WAL, copies what is left and syncs the database file,
            // which writes out every page the earlier checkpoints copied (tens of MB under load):
            // done in the writers' turn, it held the writer up for 20–50 ms about once a second.
            // Done first outside the turn (sync, checkpoint the frames committed meanwhile, sync
            // again), the one in the turn has only a few milliseconds' frames left.
            let synced = sync_database(&conn).and_then(|()| {
                passive(&conn);
                sync_database(&conn)
            });
            if let Err(e) = synced {
                tracing::debug!(error = %e, "sync the database file before rewinding the WAL");
            }
            let _turn = crate::store::SQLITE_WRITERS.blocking_lock();
            passive(&conn);
        }
    }
}

/// The log's length in frames after a passive checkpoint, or None when it could not run.
fn passive(conn: &Connection) -> Option<i64> {
    match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1)) {
        Ok(log) if log >= 0 => Some(log),
        Ok(_) => None,
        Err(e) => {
            tracing::debug!(error = %e, "passive checkpoint");
            None
        }
    }
}

/// Syncs the connection's database file to the disk, through SQLite's own file handle (a file
/// opened beside SQLite's and closed again would drop the process's locks on the database).
fn sync_database(conn: &Connection) -> Result<(), String> {
    use rusqlite::ffi;
    let mut file: *mut ffi::sqlite3_file = std::ptr::null_mut();
    // SAFETY: the handle is this connection's, alive for the call; FILE_POINTER writes the main
    // database's `sqlite3_file` (owned by the connection) into `file`, whose methods stay valid
    // while the connection is open.
    unsafe {
        let rc = ffi::sqlite3_file_control(conn.handle(), c"main".as_ptr(), ffi::SQLITE_FCNTL_FILE_POINTER, (&raw mut file).cast());
        if rc != ffi::SQLITE_OK || file.is_null() || (*file).pMethods.is_null() {
            return Err(format!("no file handle (code {rc})"));
        }
        let Some(sync) = (*(*file).pMethods).xSync else {
            return Err("the file cannot be synced".into());
        };
        match sync(file, ffi::SQLITE_SYNC_NORMAL) {
            ffi::SQLITE_OK => Ok(()),
            rc => Err(format!("sync failed (code {rc})")),
        }
    }
}

/// See `checkpointer`.
const REWIND_BYTES: i64 = 32 << 20;

/// SQLite's default page size, to turn WAL frames into bytes.
const PAGE_BYTES: i64 = 4096;

/// How the writer forms its groups (see `WriterOptions`).
pub(super) struct Grouping {
    pub max_group: usize,
    pub dedupe_ms: i64,
    pub interval: Duration,
}

/// Stores one event unless the log has it: whether it was stored.
fn insert(tx: &Connection, e: &NewEvent, cutoff: i64) -> rusqlite::Result<bool> {
    let fresh = !tx.prepare_cached(SEEN)?.exists(params![e.source_id, e.message_id, cutoff])?;
    if fresh {
        insert_rows(tx, &[e])?;
    }
    Ok(fresh)
}

fn reject(tx: &Connection, r: &NewRejection) -> rusqlite::Result<()> {
    tx.prepare_cached(REJECTION)?.execute(params![r.source_id, r.message_id, r.kind, r.reason, r.received_at, r.payload])?;
    Ok(())
}

/// Stores the jobs' messages in the open transaction: each one's outcomes.
fn store(tx: &Connection, jobs: &[Job], cutoff: i64) -> rusqlite::Result<Vec<Vec<Outcome>>> {
    let mut all = Vec::with_capacity(jobs.len());
    let mut fresh: Vec<&NewEvent> = Vec::new();
    {
        let mut seen = tx.prepare_cached(SEEN)?;
        // A message sent twice among these jobs: the log cannot tell, since their rows are
        // inserted after every lookup (the rows of jobs stored earlier in the transaction are
        // found by the lookup).
        let mut in_group: HashSet<(&str, &str)> = HashSet::with_capacity(jobs.iter().map(|j| j.events.len()).sum());
        for job in jobs {
            let mut outcomes = Vec::with_capacity(job.events.len());
            for e in &job.events {
                let duplicate = !in_group.insert((&e.source_id, &e.message_id)) || seen.exists(params![e.source_id, e.message_id, cutoff])?;
                if !duplicate {
                    fresh.push(e);
                }
                outcomes.push(if duplicate { Outcome::Duplicate } else { Outcome::Stored });
            }
            all.push(outcomes);
        }
    }
    insert_rows(tx, &fresh)?;
    for job in jobs {
        for r in &job.rejections {
            reject(tx, r)?;
        }
    }
    Ok(all)
}

/// How often a group's transaction takes in the jobs that arrived meanwhile.
const TAKE_EVERY: Duration = Duration::from_micros(200);

/// One group: its transaction begins with `jobs` and takes in the jobs that arrive until `due`
/// (every `TAKE_EVERY`, up to `max_group` messages), storing each batch of them at once, then
/// commits. Storing as they come, rather than all at `due`, spreads the writer's work over the
/// interval while the request handlers run: with everything stored at `due`, every connection
/// could be waiting for that one commit while a core stood idle (README, Benchmark).
fn gather(conn: &mut Connection, rx: &mut mpsc::Receiver<Job>, jobs: &mut Vec<Job>, due: Instant, max_group: usize, cutoff: i64) -> rusqlite::Result<Vec<Vec<Outcome>>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut all = Vec::with_capacity(jobs.len());
    let mut n: usize = jobs.iter().map(|j| j.events.len() + j.rejections.len()).sum();
    loop {
        while n < max_group {
            match rx.try_recv() {
                Ok(job) => {
                    n += job.events.len() + job.rejections.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        if all.len() < jobs.len() {
            let stored = store(&tx, &jobs[all.len()..], cutoff)?;
            all.extend(stored);
        }
        let now = Instant::now();
        if n >= max_group || now >= due {
            break;
        }
        std::thread::sleep((due - now).min(TAKE_EVERY));
    }
    tx.commit()?;
    Ok(all)
}

/// Rows per multi-row insert, largest first: a group's events go in as few statements as these
/// sizes allow. One statement per event cost each row the statement's start and end (cursors on
/// the table and both indexes, `sqlite_sequence` read and written).
const ROWS_PER_INSERT: [usize; 3] = [32, 8, 1];

/// `EVENT` with room for each of `ROWS_PER_INSERT`'s row counts.
static MULTI_ROW: LazyLock<Vec<String>> = LazyLock::new(|| {
    ROWS_PER_INSERT
        .iter()
        .map(|&n| {
            let row = "(?, ?, ?, ?, ?, ?, ?)";
            let (head, _) = EVENT.split_at(EVENT.find("VALUES").expect("EVENT has VALUES") + "VALUES ".len());
            format!("{head}{}", vec![row; n].join(", "))
        })
        .collect()
});

fn insert_rows(tx: &Connection, rows: &[&NewEvent]) -> rusqlite::Result<()> {
    let mut rest = rows;
    while !rest.is_empty() {
        let size = ROWS_PER_INSERT.iter().position(|&n| n <= rest.len()).expect("the last size is 1");
        let (chunk, tail) = rest.split_at(ROWS_PER_INSERT[size]);
        let mut insert = tx.prepare_cached(&MULTI_ROW[size])?;
        for (i, e) in chunk.iter().enumerate() {
            let at = i * 7;
            insert.raw_bind_parameter(at + 1, &e.source_id)?;
            insert.raw_bind_parameter(at + 2, &e.message_id)?;
            insert.raw_bind_parameter(at + 3, e.kind)?;
            insert.raw_bind_parameter(at + 4, &e.user_id)?;
            insert.raw_bind_parameter(at + 5, &e.anonymous_id)?;
            insert.raw_bind_parameter(at + 6, e.received_at)?;
            insert.raw_bind_parameter(at + 7, &e.payload)?;
        }
        insert.raw_execute()?;
        rest = tail;
    }
    Ok(())
}

/// After a failed group: each message in its own transaction, so one refusal fails only itself
/// (the refused message is kept as a rejection).
fn one_by_one(conn: &mut Connection, job: &Job, cutoff: i64) -> Result<Vec<Outcome>, String> {
    let mut outcomes = Vec::with_capacity(job.events.len());
    for e in &job.events {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| e.to_string())?;
        match insert(&tx, e, cutoff) {
            Ok(stored) => {
                tx.commit().map_err(|e| e.to_string())?;
                outcomes.push(if stored { Outcome::Stored } else { Outcome::Duplicate });
            }
            // Anything but the message's own fault (the disk, a lock) fails the request, which
            // the client retries: the messages stored meanwhile are duplicates then.
            Err(err) if !refusal(&err) => return Err(err.to_string()),
            Err(err) => {
                drop(tx);
                let outcome = super::writer::refused(e, &err);
                if let Outcome::Refused(r) = &outcome {
                    keep(conn, r);
                }
                outcomes.push(outcome);
            }
        }
    }
    for r in &job.rejections {
        keep(conn, r);
    }
    Ok(outcomes)
}

/// Whether SQLite refused the message itself (a constraint, too big, a type it cannot hold).
fn refusal(err: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::{ConstraintViolation, TooBig, TypeMismatch};
    matches!(err, rusqlite::Error::SqliteFailure(e, _) if matches!(e.code, ConstraintViolation | TooBig | TypeMismatch))
}

/// Stores one rejection in a transaction of its own; one the database refuses too is logged.
fn keep(conn: &mut Connection, r: &NewRejection) {
    let kept = conn.transaction_with_behavior(TransactionBehavior::Immediate).and_then(|tx| {
        reject(&tx, r)?;
        tx.commit()
    });
    if let Err(e) = kept {
        tracing::warn!(error = %e, message_id = ?r.message_id, "a rejected message could not be kept");
    }
}

/// The writer loop, on a blocking thread: wait for a job, open a group with it that takes in the
/// jobs arriving until `interval` after the last commit (`gather`, up to `max_group` messages),
/// commit them in one transaction, answer each. `stored` is signalled after each commit (the
/// router waits on it).
pub(super) fn run(path: &Path, fsync: bool, rx: Arc<Mutex<mpsc::Receiver<Job>>>, group: Grouping, depth: Arc<AtomicI64>, stored: Arc<tokio::sync::Notify>) {
    let Grouping { max_group, dedupe_ms, interval } = group;
    let mut conn = match connect(path, fsync) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::error!(error = %e, path = %path.display(), "the event writer cannot open the database");
            None
        }
    };
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let frames = Arc::new(AtomicI64::new(0));
    let checkpoints = std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn({
            let (path, stop, frames) = (path.to_path_buf(), stop.clone(), frames.clone());
            move || checkpointer(path, stop, frames)
        })
        .ok();
    let mut commits = 0u64;
    let mut rx = rx.blocking_lock();
    let mut last_commit = Instant::now().checked_sub(interval).unwrap_or_else(Instant::now);
    while let Some(first) = rx.blocking_recv() {
        // While messages keep coming, commits are at most `interval` apart: the messages that
        // arrive meanwhile join this group (see `WriterOptions::commit_interval`).
        let due = last_commit + interval;
        let mut jobs = vec![first];
        if conn.is_none() {
            conn = connect(path, fsync).ok();
        }
        let Some(c) = conn.as_mut() else {
            let count = jobs.len() as i64;
            for job in jobs {
                let _ = job.reply.send(Err("the event store is unavailable".into()));
            }
            super::writer::queued(&depth, -count);
            continue;
        };
        let cutoff = now_ms() - dedupe_ms;
        let started = Instant::now();
        let turn = crate::store::SQLITE_WRITERS.blocking_lock();
        let result = gather(c, &mut *rx, &mut jobs, due, max_group, cutoff);
        last_commit = Instant::now();
        let count = jobs.len() as i64;
        let size: usize = jobs.iter().map(|j| j.events.len()).sum();
        match result {
            Ok(outcomes) => {
                for (job, outcome) in jobs.into_iter().zip(outcomes) {
                    let _ = job.reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, jobs = count, "a group commit failed; writing its messages one by one");
                for job in jobs {
                    let result = one_by_one(c, &job, cutoff);
                    let _ = job.reply.send(result);
                }
            }
        }
        drop(turn);
        stored.notify_one();
        super::writer::group_done(&depth, count, size, started);
        commits += 1;
        if commits % 64 == 0 {
            let wal_frames = frames.load(Ordering::Relaxed);
            if let Some(c) = conn.as_ref() {
                if wal_frames < 0 || checkpoints.is_none() {
                    // No checkpointer: let SQLite checkpoint after commits, as by default.
                    let _ = c.pragma_update(None, "wal_autocheckpoint", 1000);
                } else if wal_frames * PAGE_BYTES > WAL_LIMIT_BYTES as i64 {
                    // Restart the log (the file is reused from its start, so this is rare).
                    let _ = c.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()));
                    frames.store(0, Ordering::Relaxed);
                }
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(t) = checkpoints {
        let _ = t.join();
    }
    // Leave a small WAL behind for the next start.
    if let Some(c) = conn.as_ref() {
        let _ = c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    }
}

#[cfg(test)]
#[path = "sqlite_writer_tests.rs"]
mod tests;
