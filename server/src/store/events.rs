//! The event log: appended by the ingest writer in groups, read back newest first.

use super::{get, Result, Store};
use serde::Serialize;
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::AnyConnection;

/// An accepted, enriched message on its way into the log.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub source_id: String,
    pub message_id: String,
    pub kind: &'static str,
    pub user_id: Option<String>,
    pub anonymous_id: Option<String>,
    pub received_at: i64,
    pub payload: String,
}

/// A message that was refused, kept so people can see why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRejection {
    pub source_id: String,
    pub message_id: Option<String>,
    pub kind: Option<String>,
    pub reason: String,
    pub received_at: i64,
    pub payload: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventOut {
    pub id: String,
    #[serde(rename = "messageId")]
    pub message_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub source_id: String,
    #[serde(rename = "userId")]
    pub user_id: Option<String>,
    #[serde(rename = "anonymousId")]
    pub anonymous_id: Option<String>,
    /// Milliseconds since the epoch.
    pub received_at: i64,
    /// The message as stored: what the SDK sent plus the enrichment.
    pub payload: Value,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RejectionOut {
    pub id: String,
    #[serde(rename = "messageId")]
    pub message_id: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub reason: String,
    pub received_at: i64,
    pub payload: Value,
}

/// SQLite keeps no `event_dedupe` table (migration 7): it has one writer, so deduplication looks
/// the message up in the log. PostgreSQL's nodes write at once; its dedupe table settles races.
fn dedupes_in_log(conn: &AnyConnection) -> bool {
    conn.backend_name() == "SQLite"
}

/// Rows a multi-row statement carries at most (parameter limits: SQLite 32,766, PostgreSQL 65,535).
const CHUNK: usize = 512;

/// Splits rows into chunks whose sizes are powers of two (at most `CHUNK`), so that the few
/// statement shapes are prepared once and reused from the statement cache.
fn chunks(rows: &[usize]) -> Vec<&[usize]> {
    let mut out = Vec::new();
    let mut rest = rows;
    while !rest.is_empty() {
        let size = if rest.len() >= CHUNK { CHUNK } else { 1 << (usize::BITS - 1 - rest.len().leading_zeros()) };
        let (head, tail) = rest.split_at(size);
        out.push(head);
        rest = tail;
    }
    out
}

/// Inserts many events in a few statements; an event whose (source, messageId) was seen within
/// the dedupe window, or earlier in `events`, is not stored. Returns, per event, whether it was.
pub async fn insert_events(conn: &mut AnyConnection, events: &[&NewEvent], dedupe_cutoff: i64) -> Result<Vec<bool>> {
    use std::collections::HashSet;
    if dedupes_in_log(conn) {
        let mut stored = Vec::with_capacity(events.len());
        for e in events {
            stored.push(insert_event(conn, e, dedupe_cutoff).await?);
        }
        return Ok(stored);
    }
    let mut stored = vec![false; events.len()];
    // First occurrence within this group wins; later ones are duplicates without asking.
    let mut seen = HashSet::with_capacity(events.len());
    let firsts: Vec<usize> = (0..events.len()).filter(|&i| seen.insert((events[i].source_id.as_str(), events[i].message_id.as_str()))).collect();
    for chunk in chunks(&firsts) {
        let mut sql = String::from("INSERT INTO event_dedupe (source_id, message_id, received_at) VALUES ");
        for (n, _) in chunk.iter().enumerate() {
            let b = n * 3;
            sql.push_str(&format!("{}(${}, ${}, ${})", if n > 0 { ", " } else { "" }, b + 1, b + 2, b + 3));
        }
        let cutoff_param = chunk.len() * 3 + 1;
        sql.push_str(&format!(
            " ON CONFLICT (source_id, message_id) DO UPDATE SET received_at = excluded.received_at \
              WHERE event_dedupe.received_at < ${cutoff_param} RETURNING source_id, message_id"
        ));
        let mut q = sqlx::query(&sql);
        for &i in chunk {
            q = q.bind(&events[i].source_id).bind(&events[i].message_id).bind(events[i].received_at);
        }
        let fresh: HashSet<(String, String)> = q
            .bind(dedupe_cutoff)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| Ok((get::<String>(r, "source_id")?, get::<String>(r, "message_id")?)))
            .collect::<Result<_>>()?;
        let mut new: Vec<usize> = chunk
            .iter()
            .copied()
            .filter(|&i| fresh.contains(&(events[i].source_id.clone(), events[i].message_id.clone())))
            .collect();
        if new.is_empty() {
            continue;
        }
        // The events insert, too, in power-of-two shapes.
        let fresh_rows = std::mem::take(&mut new);
        for part in chunks(&fresh_rows) {
            insert_rows(conn, events, part).await?;
            new.extend_from_slice(part);
        }
        for &i in &new {
            stored[i] = true;
        }
    }
    Ok(stored)
}

async fn insert_rows(conn: &mut AnyConnection, events: &[&NewEvent], new: &[usize]) -> Result<()> {
    {
        let mut sql = String::from("INSERT INTO events (source_id, message_id, type, user_id, anonymous_id, received_at, payload) VALUES ");
        for (n, _) in new.iter().enumerate() {
            let b = n * 7;
            sql.push_str(&format!(
                "{}(${}, ${}, ${}, ${}, ${}, ${}, ${})",
                if n > 0 { ", " } else { "" },
                b + 1, b + 2, b + 3, b + 4, b + 5, b + 6, b + 7
            ));
        }
        let mut q = sqlx::query(&sql);
        for &i in new {
            q = bind_event(q, events[i]);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Inserts one event unless (source, messageId) was seen within the dedupe window.
/// Returns whether it was stored.
pub async fn insert_event(conn: &mut AnyConnection, e: &NewEvent, dedupe_cutoff: i64) -> Result<bool> {
    if dedupes_in_log(conn) {
        let insert = sqlx::query(
            "INSERT INTO events (source_id, message_id, type, user_id, anonymous_id, received_at, payload) \
             SELECT $1, $2, $3, $4, $5, $6, $7 \
             WHERE NOT EXISTS (SELECT 1 FROM events WHERE source_id = $1 AND message_id = $2 AND received_at >= $8)",
        );
        let stored = bind_event(insert, e).bind(dedupe_cutoff).execute(&mut *conn).await?.rows_affected();
        return Ok(stored > 0);
    }
    let fresh = sqlx::query(
        "INSERT INTO event_dedupe (source_id, message_id, received_at) VALUES ($1, $2, $3) \
         ON CONFLICT (source_id, message_id) DO UPDATE SET received_at = excluded.received_at \
         WHERE event_dedupe.received_at < $4",
    )
    .bind(&e.source_id)
    .bind(&e.message_id)
    .bind(e.received_at)
    .bind(dedupe_cutoff)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        > 0;
    if fresh {
        let insert = sqlx::query(
            "INSERT INTO events (source_id, message_id, type, user_id, anonymous_id, received_at, payload) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        );
        bind_event(insert, e).execute(&mut *conn).await?;
    }
    Ok(fresh)
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Binds an event's seven columns, in the order of the `events` inserts.
fn bind_event<'q>(q: AnyQuery<'q>, e: &'q NewEvent) -> AnyQuery<'q> {
    q.bind(&e.source_id).bind(&e.message_id).bind(e.kind).bind(&e.user_id).bind(&e.anonymous_id).bind(e.received_at).bind(&e.payload)
}

pub async fn insert_rejection(conn: &mut AnyConnection, r: &NewRejection) -> Result<()> {
    sqlx::query("INSERT INTO rejections (source_id, message_id, type, reason, received_at, payload) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(&r.source_id)
        .bind(&r.message_id)
        .bind(&r.kind)
        .bind(&r.reason)
        .bind(r.received_at)
        .bind(&r.payload)
        .execute(conn)
        .await?;
    Ok(())
}

fn parse_cursor(before: Option<&str>) -> Option<i64> {
    before.and_then(|b| b.trim_start_matches("evt_").trim_start_matches("rej_").parse().ok())
}

fn event_from_row(row: &AnyRow) -> Result<EventOut> {
    let seq: i64 = get(row, "seq")?;
    let payload: String = get(row, "payload")?;
    Ok(EventOut {
        id: format!("evt_{seq}"),
        message_id: get(row, "message_id")?,
        kind: get(row, "type")?,
        source_id: get(row, "source_id")?,
        user_id: get(row, "user_id")?,
        anonymous_id: get(row, "anonymous_id")?,
        received_at: get(row, "received_at")?,
        payload: serde_json::from_str(&payload).unwrap_or(Value::Null),
    })
}

fn rejection_from_row(row: &AnyRow) -> Result<RejectionOut> {
    let seq: i64 = get(row, "seq")?;
    let payload: String = get(row, "payload")?;
    Ok(RejectionOut {
        id: format!("rej_{seq}"),
        message_id: get(row, "message_id")?,
        kind: get(row, "type")?,
        reason: get(row, "reason")?,
        received_at: get(row, "received_at")?,
        payload: serde_json::from_str(&payload).unwrap_or(Value::Null),
    })
}

impl Store {
    /// A source's events, newest first.
    pub async fn events_page(&self, source_id: &str, limit: usize, before: Option<&str>) -> Result<(Vec<EventOut>, Option<String>)> {
        let rows = sqlx::query("SELECT * FROM events WHERE source_id = $1 AND ($2 IS NULL OR seq < $2) ORDER BY seq DESC LIMIT $3")
            .bind(source_id)
            .bind(parse_cursor(before))
            .bind(limit as i64 + 1)
            .fetch_all(&self.pool)
            .await?;
        let items = rows.iter().map(event_from_row).collect::<Result<Vec<_>>>()?;
        Ok(super::page(items, limit, |e| e.id.clone()))
    }

    /// A source's rejected messages, newest first.
    pub async fn rejections_page(&self, source_id: &str, limit: usize, before: Option<&str>) -> Result<(Vec<RejectionOut>, Option<String>)> {
        let rows = sqlx::query("SELECT * FROM rejections WHERE source_id = $1 AND ($2 IS NULL OR seq < $2) ORDER BY seq DESC LIMIT $3")
            .bind(source_id)
            .bind(parse_cursor(before))
            .bind(limit as i64 + 1)
            .fetch_all(&self.pool)
            .await?;
        let items = rows.iter().map(rejection_from_row).collect::<Result<Vec<_>>>()?;
        Ok(super::page(items, limit, |e| e.id.clone()))
    }

    /// How many events the log holds for a source (tests and the overview).
    pub async fn event_count(&self, source_id: &str) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE source_id = $1").bind(source_id).fetch_one(&self.pool).await?)
    }

    /// Deletes events and rejections received before `cutoff` and (PostgreSQL) dedupe entries
    /// older than `dedupe_cutoff`; returns the number of events deleted.
    ///
    /// The log is cut by seq, before its first event received at or after `cutoff`: seqs follow
    /// arrival (up to a commit's delay), and no index on `received_at` has to be kept up by every
    /// insert. Finding that event walks the expired events, which are deleted anyway.
    pub async fn prune_events(&self, cutoff: i64, dedupe_cutoff: i64) -> Result<u64> {
        let n = sqlx::query(
            "DELETE FROM events WHERE seq < COALESCE(\
               (SELECT seq FROM events WHERE received_at >= $1 ORDER BY seq LIMIT 1), \
               (SELECT MAX(seq) + 1 FROM events))",
        )
        .bind(cutoff)
        .execute(&self.pool)
        .await?
        .rows_affected();
        sqlx::query("DELETE FROM rejections WHERE received_at < $1").bind(cutoff).execute(&self.pool).await?;
        if self.backend == super::Backend::Postgres {
            sqlx::query("DELETE FROM event_dedupe WHERE received_at < $1").bind(dedupe_cutoff).execute(&self.pool).await?;
        }
        Ok(n)
    }
}
