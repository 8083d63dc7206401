use super::*;
use crate::store::Store;

fn event(id: &str, user: usize) -> NewEvent {
    NewEvent {
        source_id: "src_1".into(),
        message_id: id.into(),
        kind: "track",
        user_id: Some(format!("u-{user}")),
        anonymous_id: (user % 2 == 0).then(|| format!("a-{user}")),
        received_at: now_ms(),
        payload: format!(r#"{{"messageId":"{id}"}}"#),
    }
}

/// One transaction for `jobs`: the writer loop's `gather` in one go.
fn commit(conn: &mut Connection, jobs: &[Job], cutoff: i64) -> rusqlite::Result<Vec<Vec<Outcome>>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let all = store(&tx, jobs, cutoff)?;
    tx.commit()?;
    Ok(all)
}

fn job(events: Vec<NewEvent>) -> Job {
    Job { events, rejections: Vec::new(), reply: tokio::sync::oneshot::channel().0 }
}

/// A group goes in as multi-row inserts of every size (32, 8, 1): the rows keep the group's
/// order and their fields, and a message sent twice (within the group, or already in the log)
/// is stored once.
#[tokio::test]
async fn a_group_is_stored_in_order_and_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.db");
    Store::open(&format!("sqlite://{}", path.display())).await.unwrap();
    let mut conn = connect(&path, false).unwrap();
    commit(&mut conn, &[job(vec![event("old", 0)])], 0).unwrap();
    let first: Vec<NewEvent> = (0..45).map(|i| event(&format!("m-{i}"), i)).collect();
    let mut second: Vec<NewEvent> = (45..52).map(|i| event(&format!("m-{i}"), i)).collect();
    second.push(event("m-3", 3));
    second.push(event("old", 0));
    let outcomes = commit(&mut conn, &[job(first), job(second)], 0).unwrap();
    assert!(outcomes[0].iter().all(|o| *o == Outcome::Stored), "{outcomes:?}");
    assert_eq!(outcomes[1][..7].to_vec(), vec![Outcome::Stored; 7]);
    assert_eq!(outcomes[1][7..].to_vec(), vec![Outcome::Duplicate; 2]);
    let mut rows = conn.prepare("SELECT message_id, user_id, anonymous_id, type, payload FROM events ORDER BY seq").unwrap();
    let rows: Vec<(String, Option<String>, Option<String>, String, String)> =
        rows.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))).unwrap().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 53);
    for (i, (id, user, anon, kind, payload)) in rows.iter().skip(1).enumerate() {
        assert_eq!(*id, format!("m-{i}"));
        assert_eq!(*user, Some(format!("u-{i}")));
        assert_eq!(*anon, (i % 2 == 0).then(|| format!("a-{i}")));
        assert_eq!(kind, "track");
        assert_eq!(*payload, format!(r#"{{"messageId":"m-{i}"}}"#));
    }
}

/// A group's transaction takes in the jobs that arrive while it is open, stores each take at
/// once (a message repeated in a later take is found by the lookup), and commits them
/// together at `due`: until then another connection sees none of them.
#[tokio::test]
async fn a_group_takes_in_what_arrives_until_it_is_due() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.db");
    let store = Store::open(&format!("sqlite://{}", path.display())).await.unwrap();
    let (tx, mut rx) = mpsc::channel::<Job>(16);
    let late = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        let (reply, answer) = tokio::sync::oneshot::channel();
        tx.blocking_send(Job { events: vec![event("m-1", 1), event("m-2", 2)], rejections: Vec::new(), reply }).unwrap();
        answer
    });
    let writer = std::thread::spawn(move || {
        let mut conn = connect(&path, false).unwrap();
        let mut jobs = vec![job(vec![event("m-1", 1)])];
        let due = Instant::now() + Duration::from_millis(800);
        let outcomes = gather(&mut conn, &mut rx, &mut jobs, due, 2000, 0).unwrap();
        (outcomes, jobs.len(), Instant::now() >= due)
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let open: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events").fetch_one(store.pool()).await.unwrap();
    assert_eq!(open, 0, "another connection saw the group before its commit");
    let (outcomes, taken, waited) = writer.join().unwrap();
    drop(late.join().unwrap());
    assert!(waited, "the group committed before it was due");
    assert_eq!(taken, 2);
    assert_eq!(outcomes, vec![vec![Outcome::Stored], vec![Outcome::Duplicate, Outcome::Stored]]);
    let ids: Vec<String> = sqlx::query_scalar("SELECT message_id FROM events ORDER BY seq").fetch_all(store.pool()).await.unwrap();
    assert_eq!(ids, vec!["m-1", "m-2"]);
}

/// Through the WAL VFS (each commit's frames in one write): what a commit stored is there for
/// another connection at once, a transaction larger than the page cache (whose frames are
/// written early and rewritten in place) and one larger than what the VFS gathers come out
/// whole, and the database reopens intact.
#[tokio::test]
async fn commits_through_the_wal_vfs_are_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.db");
    let store = Store::open(&format!("sqlite://{}", path.display())).await.unwrap();
    let mut conn = connect(&path, false).unwrap();
    conn.pragma_update(None, "cache_size", 50).unwrap();
    let mut expected = 0i64;
    for (group, size) in [(1usize, 10usize), (40, 100), (3, 9000), (600, 4000)] {
        let events: Vec<NewEvent> = (0..group)
            .map(|i| {
                let mut e = event(&format!("g{group}-{i}"), i);
                e.payload = format!(r#"{{"pad":"{}"}}"#, "x".repeat(size));
                e
            })
            .collect();
        let (ins, outs) = (super::super::wal_vfs::WRITES_IN.get(), super::super::wal_vfs::WRITES_OUT.get());
        commit(&mut conn, &[job(events)], 0).unwrap();
        let (ins, outs) = (super::super::wal_vfs::WRITES_IN.get() - ins, super::super::wal_vfs::WRITES_OUT.get() - outs);
        assert!(outs >= 1, "the WAL VFS wrote nothing for a group of {group}");
        if group <= 40 {
            assert!(outs * 3 <= ins, "{ins} WAL writes went out in {outs} for a group of {group}");
        }
        expected += group as i64;
        let seen: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events").fetch_one(store.pool()).await.unwrap();
        assert_eq!(seen, expected, "another connection reads the commit of {group} events");
        let total: i64 = sqlx::query_scalar("SELECT SUM(LENGTH(payload)) FROM events WHERE message_id LIKE ?").bind(format!("g{group}-%")).fetch_one(store.pool()).await.unwrap();
        assert_eq!(total, (group * (size + 10)) as i64);
    }
    drop(conn);
    store.pool().close().await;
    let reopened = Connection::open(&path).unwrap();
    let check: String = reopened.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
    let count: i64 = reopened.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0)).unwrap();
    assert_eq!(count, expected);
}

/// The checkpointer syncs the database file through SQLite's own handle (before it rewinds the
/// WAL in the writers' turn): it works on a database file, and says so when there is no file.
#[test]
fn the_database_file_is_synced_through_sqlites_handle() {
    let dir = tempfile::tempdir().unwrap();
    let conn = Connection::open(dir.path().join("t.db")).unwrap();
    conn.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1);").unwrap();
    assert!(super::passive(&conn).is_some_and(|frames| frames > 0), "a checkpoint of the log ran");
    super::sync_database(&conn).expect("a database file syncs");
    // A temporary database has no file until it grows.
    let temp = Connection::open("").unwrap();
    let err = super::sync_database(&temp).expect_err("nothing to sync");
    assert!(err.contains("no file handle") || err.contains("cannot be synced"), "{err}");
}

/// A message SQLite refuses fails only itself: its group's transaction is rolled back whole
/// (rows stored before the refusal included, so none is reported as a duplicate afterwards) and
/// its messages are stored one by one, the refused one kept as a rejection.
#[tokio::test]
async fn a_refused_message_fails_only_itself() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.db");
    let store = Store::open(&format!("sqlite://{}", path.display())).await.unwrap();
    sqlx::query("CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.message_id = 'bad' BEGIN SELECT RAISE(ABORT, 'no bad messages'); END")
        .execute(store.pool())
        .await
        .unwrap();
    let (tx, rx) = mpsc::channel::<Job>(16);
    let mut answers = Vec::new();
    for events in [vec![event("a", 1), event("b", 2)], vec![event("bad", 3), event("c", 4)]] {
        let (reply, answer) = tokio::sync::oneshot::channel();
        tx.send(Job { events, rejections: Vec::new(), reply }).await.unwrap();
        answers.push(answer);
    }
    drop(tx);
    let group = Grouping { max_group: 2000, dedupe_ms: 60_000, interval: Duration::from_millis(1) };
    let (depth, stored) = (Arc::new(AtomicI64::new(2)), Arc::new(tokio::sync::Notify::new()));
    let writer = std::thread::spawn(move || run(&path, false, Arc::new(Mutex::new(rx)), group, depth, stored));
    let mut outcomes = Vec::new();
    for answer in answers {
        outcomes.push(answer.await.unwrap().unwrap());
    }
    writer.join().unwrap();
    assert_eq!(outcomes[0], vec![Outcome::Stored, Outcome::Stored]);
    assert!(matches!(&outcomes[1][0], Outcome::Refused(r) if r.reason.contains("no bad messages")), "{:?}", outcomes[1]);
    assert_eq!(outcomes[1][1], Outcome::Stored);
    let ids: Vec<String> = sqlx::query_scalar("SELECT message_id FROM events ORDER BY seq").fetch_all(store.pool()).await.unwrap();
    assert_eq!(ids, vec!["a", "b", "c"]);
    let kept: Vec<String> = sqlx::query_scalar("SELECT message_id FROM rejections").fetch_all(store.pool()).await.unwrap();
    assert_eq!(kept, vec!["bad"]);
}
