//! How long the event log remembers: retention, and the deduplication window, on SQLite and
//! PostgreSQL.

use crate::both;
use crate::harness::Db;
use crate::ingest::{basic, events, with_source, KEY};
use serde_json::json;
use std::time::Duration;

async fn retention_removes_old_events_and_dedupe_entries(db: Db) {
    use sqlx::Row;
    let env = crate::env_or_skip!(db);
    let store = server::store::Store::open(&env.database_url).await.unwrap();
    let postgres = store.backend() == server::store::Backend::Postgres;
    let day = 86_400_000i64;
    let now = server::store::now_ms();
    // In log order: two expired events, one within the period, then one stamped 40 days ago
    // after it (the log is cut by seq, before the first event still within the period).
    for (id, age_days) in [("old", 40), ("older", 41), ("recent", 2), ("late", 40)] {
        let mut sqls = vec![
            "INSERT INTO events (source_id, message_id, type, received_at, payload) VALUES ('src_x', $1, 'track', $2, '{}')",
            "INSERT INTO rejections (source_id, message_id, reason, received_at, payload) VALUES ('src_x', $1, 'r', $2, '{}')",
        ];
        // SQLite deduplicates through the log itself (migration 7).
        if postgres {
            sqls.push("INSERT INTO event_dedupe (source_id, message_id, received_at) VALUES ('src_x', $1, $2)");
        }
        for sql in sqls {
            sqlx::query(sql).bind(id).bind(now - age_days * day).execute(store.pool()).await.unwrap();
        }
    }
    let deleted = store.prune_events(now - 30 * day, now - day).await.unwrap();
    assert_eq!(deleted, 2);
    let left: Vec<String> = sqlx::query("SELECT message_id FROM events ORDER BY seq").fetch_all(store.pool()).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(left, ["recent", "late"]);
    if postgres {
        let dedupe: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM event_dedupe").fetch_one(store.pool()).await.unwrap();
        assert_eq!(dedupe, 0, "all are older than the one-day dedupe window");
    }
    let rejections: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM rejections").fetch_one(store.pool()).await.unwrap();
    assert_eq!(rejections, 1);
    // Everything expired: the whole log goes.
    assert_eq!(store.prune_events(now + day, now).await.unwrap(), 2);
    assert_eq!(store.event_count("src_x").await.unwrap(), 0);
    store.close().await;
}
both!(retention_removes_old_events_and_dedupe_entries);

async fn a_message_id_is_stored_again_after_the_dedupe_window(db: Db) {
    let env = crate::env_or_skip!(db);
    let (server, token, source) = with_source(&env, &[("SWITCHYARD_DEDUPE_WINDOW_SECS", "2")]).await;
    let send = |id: &'static str| {
        let req = server.client().post(server.at("/v1/batch")).header("Authorization", basic(KEY));
        // The same message twice in one batch, as a retrying client might.
        let one = json!({"type": "track", "userId": "u1", "event": "Signed Up", "messageId": id});
        req.json(&json!({"batch": [one.clone(), one]})).send()
    };
    assert_eq!(send("w-1").await.unwrap().status(), 200);
    assert_eq!(send("w-1").await.unwrap().status(), 200);
    assert_eq!(events(&server, &token, &source).await.len(), 1, "a retry within the window is not stored again");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(send("w-1").await.unwrap().status(), 200);
    let stored = events(&server, &token, &source).await;
    assert_eq!(stored.len(), 2, "past the window the message is new again: {stored:#?}");
    assert!(stored.iter().all(|e| e["messageId"] == "w-1"));
}
both!(a_message_id_is_stored_again_after_the_dedupe_window);

/// The attempt log's retention (`attempt_retention_days`): old attempts go, and old finished
/// deliveries; a delivery still waiting (or dead, for replay) stays whatever its age.
async fn attempt_retention_removes_old_attempts_and_finished_deliveries(db: Db) {
    let env = crate::env_or_skip!(db);
    let store = server::store::Store::open(&env.database_url).await.unwrap();
    let day = 86_400_000i64;
    let now = server::store::now_ms();
    sqlx::query("INSERT INTO destinations (id, name, integration, created_at, updated_at) VALUES ('x', 'x', 'webhook', $1, $1)").bind(now).execute(store.pool()).await.unwrap();
    for (id, age_days) in [("a-old", 8), ("a-new", 1)] {
        sqlx::query("INSERT INTO attempts (id, delivery_id, destination_id, message_id, at, latency_ms, outcome, request, response) VALUES ($1, 'd', 'x', 'm', $2, 1, 'delivered', '{}', '')")
            .bind(id)
            .bind(now - age_days * day)
            .execute(store.pool())
            .await
            .unwrap();
    }
    for (id, state, age_days) in [("d-done-old", "succeeded", 8), ("d-done-new", "succeeded", 1), ("d-dead-old", "dead", 8), ("d-pending-old", "pending", 8)] {
        sqlx::query("INSERT INTO deliveries (id, destination_id, event_seq, message_id, state, attempts, next_attempt_at, created_at, updated_at) VALUES ($1, 'x', 1, 'm', $2, 1, $3, $3, $3)")
            .bind(id)
            .bind(state)
            .bind(now - age_days * day)
            .execute(store.pool())
            .await
            .unwrap();
    }
    let deleted = server::deliver::queue::prune(&store, now - 7 * day).await.unwrap();
    assert_eq!(deleted, 2, "one attempt and one finished delivery");
    let attempts: Vec<String> = sqlx::query_scalar("SELECT id FROM attempts").fetch_all(store.pool()).await.unwrap();
    assert_eq!(attempts, ["a-new"]);
    let mut deliveries: Vec<String> = sqlx::query_scalar("SELECT id FROM deliveries").fetch_all(store.pool()).await.unwrap();
    deliveries.sort();
    assert_eq!(deliveries, ["d-dead-old", "d-done-new", "d-pending-old"]);
    store.close().await;
}
both!(attempt_retention_removes_old_attempts_and_finished_deliveries);
