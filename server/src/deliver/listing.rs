//! What the API shows of a destination's queue: its deliveries (a batch row once per event) and
//! its attempt log (of one event: its own requests and those of the batch row holding it).

use crate::store::{get, now_ms, Backend, Store};
use serde::Serialize;
use sqlx::Row;
use std::collections::HashMap;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryOut {
    pub id: String,
    pub message_id: String,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub reason: Option<String>,
    /// A delivery of a batch of events routed together: how many (each is listed, with this id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AttemptOut {
    pub id: String,
    pub delivery_id: String,
    pub message_id: String,
    pub at: i64,
    pub latency_ms: i64,
    /// `delivered`, `retryable`, `permanent` or `rejected`.
    pub outcome: String,
    pub status: Option<i64>,
    #[schema(value_type = Object)]
    pub request: serde_json::Value,
    pub response: String,
    /// The response's headers, when there was a response (names in lower case).
    #[schema(value_type = Option<Object>)]
    pub response_headers: Option<serde_json::Value>,
}

/// Deliveries of a destination, newest first; `state` filters. A pending or retrying delivery
/// whose lease runs is shown (and filtered) as `in_flight`.
pub async fn deliveries(store: &Store, destination_id: &str, state: Option<&str>, limit: i64) -> anyhow::Result<Vec<DeliveryOut>> {
    // $4: now, and on a SQLite file $5: the deliveries leased in memory (a JSON array).
    let now = now_ms();
    let leased = store.direct().map(|d| serde_json::to_string(&d.leases().held(now)).unwrap_or_default());
    let shown = match leased {
        Some(_) => "CASE WHEN state IN ('pending', 'retrying') AND (lease_until > $4 OR id IN (SELECT value FROM json_each($5))) THEN 'in_flight' ELSE state END",
        None => "CASE WHEN state IN ('pending', 'retrying') AND lease_until > $4 THEN 'in_flight' ELSE state END",
    };
    // Dead letters are read through their own (partial) index, which needs the state written out.
    let by_state = if state == Some("dead") { "state = 'dead' AND $2 = 'dead'".to_string() } else { format!("($2 = '' OR {shown} = $2)") };
    let sql = format!(
        "SELECT id, message_id, {shown} AS state, attempts, next_attempt_at, created_at, updated_at, reason, members FROM deliveries \
         WHERE destination_id = $1 AND {by_state} ORDER BY event_seq DESC, id DESC LIMIT $3"
    );
    let mut q = sqlx::query(&sql).bind(destination_id).bind(state.unwrap_or("")).bind(limit).bind(now);
    if let Some(leased) = leased {
        q = q.bind(leased);
    }
    let rows = q.fetch_all(store.pool()).await?;
    // A batch row is listed once per event, newest first.
    let mut members = Vec::with_capacity(rows.len());
    for r in &rows {
        members.push(super::batch_rows::parse(get(r, "members")?));
    }
    let seqs: Vec<i64> = members.iter().flatten().copied().collect();
    let ids = if seqs.is_empty() { HashMap::new() } else { super::batch_rows::message_ids(&mut *store.pool().acquire().await?, &seqs).await? };
    let mut out = Vec::with_capacity(rows.len());
    for (r, members) in rows.iter().zip(members) {
        let one = DeliveryOut {
            id: get(r, "id")?,
            message_id: get(r, "message_id")?,
            state: get(r, "state")?,
            attempts: get::<i64>(r, "attempts")?,
            next_attempt_at: get(r, "next_attempt_at")?,
            created_at: get(r, "created_at")?,
            updated_at: get(r, "updated_at")?,
            reason: get(r, "reason")?,
            batch: (!members.is_empty()).then_some(members.len() as i64),
        };
        for seq in members.iter().skip(1).rev() {
            out.push(DeliveryOut { message_id: ids.get(seq).cloned().unwrap_or_default(), reason: one.reason.clone(), id: one.id.clone(), state: one.state.clone(), ..one });
        }
        out.push(one);
    }
    out.truncate(limit as usize);
    Ok(out)
}

/// Attempts of a destination (or of one event), newest first.
pub async fn attempts(store: &Store, destination_id: &str, message_id: Option<&str>, limit: i64) -> anyhow::Result<Vec<AttemptOut>> {
    // On a SQLite file a delivered batch member's attempt is its batch's row, which its delivery
    // points to; the member's delivery is found through its event (index events_message_id).
    let bulk = match store.backend() {
        Backend::Sqlite => {
            " OR id IN (SELECT d.attempt_id FROM deliveries d WHERE d.destination_id = $1 AND d.attempt_id IS NOT NULL AND d.event_seq IN \
               (SELECT e.seq FROM events e JOIN destination_sources s ON s.source_id = e.source_id WHERE s.destination_id = $1 AND e.message_id = $2))"
        }
        Backend::Postgres => "",
    };
    // An event of a batch row: that row's requests of several events (or pointers to them); its
    // requests of one event are logged under their event's messageId.
    let mut held = String::new();
    let mut rows_of = Vec::new();
    if let Some(m) = message_id {
        let mut conn = store.pool().acquire().await?;
        let seqs: Vec<i64> = sqlx::query_scalar(
            "SELECT e.seq FROM events e JOIN destination_sources s ON s.source_id = e.source_id WHERE s.destination_id = $1 AND e.message_id = $2",
        )
        .bind(destination_id)
        .bind(m)
        .fetch_all(&mut *conn)
        .await?;
        rows_of = super::batch_rows::containers(&mut conn, Some(destination_id), &seqs).await?.into_iter().map(|(id, _, _)| id).collect();
        if !rows_of.is_empty() {
            let marks: Vec<String> = (0..rows_of.len()).map(|i| format!("${}", i + 4)).collect();
            let marks = marks.join(", ");
            held = format!(" OR (delivery_id IN ({marks}) AND events > 1) OR id IN (SELECT attempt_id FROM deliveries WHERE id IN ({marks}) AND attempt_id IS NOT NULL)");
        }
    }
    let sql = format!("SELECT * FROM attempts WHERE destination_id = $1 AND ($2 = '' OR message_id = $2{bulk}{held}) ORDER BY at DESC, id DESC LIMIT $3");
    let mut q = sqlx::query(&sql).bind(destination_id).bind(message_id.unwrap_or("")).bind(limit);
    for id in &rows_of {
        q = q.bind(id);
    }
    let rows = q.fetch_all(store.pool()).await?;
    rows.iter()
        .map(|r| {
            let request: String = get(r, "request")?;
            Ok(AttemptOut {
                id: get(r, "id")?,
                delivery_id: get(r, "delivery_id")?,
                message_id: get(r, "message_id")?,
                at: get(r, "at")?,
                latency_ms: get(r, "latency_ms")?,
                outcome: get(r, "outcome")?,
                status: r.try_get::<Option<i64>, _>("status").ok().flatten(),
                request: serde_json::from_str(&request).unwrap_or(serde_json::Value::String(request)),
                response: get(r, "response")?,
                response_headers: r.try_get::<Option<String>, _>("response_headers").ok().flatten().and_then(|h| serde_json::from_str(&h).ok()),
            })
        })
        .collect()
}


/// A replay of dead letters: who asked, when, which, how many, and how they ended so far.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReplayRecord {
    pub id: String,
    pub actor: String,
    pub at: i64,
    /// Dead letters put back in the queue.
    pub count: i64,
    /// What was asked for: `{"ids": [...]}` or `{"filter": {...}}`.
    #[schema(value_type = Object)]
    pub request: serde_json::Value,
    /// The replayed deliveries by their state now (`succeeded`, `dead`, `pending`, `retrying`,
    /// `in_flight`, `discarded`…); `gone`: no longer this replay's (replayed again by a later
    /// replay, or removed after the retention period).
    pub outcome: std::collections::BTreeMap<String, i64>,
}

/// The destination's replays, newest first, with their outcome.
pub async fn replays(store: &Store, destination_id: &str, limit: i64) -> anyhow::Result<Vec<ReplayRecord>> {
    let rows = sqlx::query("SELECT id, actor, at, count, filter FROM replays WHERE destination_id = $1 ORDER BY at DESC, id DESC LIMIT $2")
        .bind(destination_id)
        .bind(limit)
        .fetch_all(store.pool())
        .await?;
    // $2: now, and on a SQLite file $3: the deliveries leased in memory (a JSON array).
    let now = now_ms();
    let leased = store.direct().map(|d| serde_json::to_string(&d.leases().held(now)).unwrap_or_default());
    let lease = match leased {
        Some(_) => "(lease_until > $2 OR id IN (SELECT value FROM json_each($3)))",
        None => "lease_until > $2",
    };
    let by_state = format!(
        "SELECT CASE WHEN state IN ('pending', 'retrying') AND {lease} THEN 'in_flight' ELSE state END AS shown, COUNT(*) AS n \
         FROM deliveries WHERE replay_id = $1 GROUP BY shown"
    );
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let id: String = get(r, "id")?;
        let mut q = sqlx::query(&by_state).bind(&id).bind(now);
        if let Some(leased) = &leased {
            q = q.bind(leased);
        }
        let mut outcome = std::collections::BTreeMap::new();
        for c in q.fetch_all(store.pool()).await? {
            outcome.insert(get::<String>(&c, "shown")?, get::<i64>(&c, "n")?);
        }
        let count: i64 = get(r, "count")?;
        let gone = count - outcome.values().sum::<i64>();
        if gone > 0 {
            outcome.insert("gone".into(), gone);
        }
        let filter: String = get(r, "filter")?;
        out.push(ReplayRecord {
            id,
            actor: get(r, "actor")?,
            at: get(r, "at")?,
            count,
            request: serde_json::from_str(&filter).unwrap_or(serde_json::Value::String(filter)),
            outcome,
        });
    }
    Ok(out)
}
