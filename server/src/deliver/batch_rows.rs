//! Batch rows: a destination that batches and keeps no order per user gets one delivery row per
//! batch of events the router routes together, so a batch costs one row to route, claim and settle
//! instead of one per event. A worker sends a row's events like any others. When they all end
//! alike (delivered, or all retrying or deferred for the same reason) the row is settled as one;
//! otherwise, and when they are dead, it is split into a row per event, from where each goes its
//! own way. The API lists a
//! batch row once per event, and finds an event's attempts through the row that holds it.

use super::queue::{Job, Written};
use crate::store::new_id;
use serde_json::Value;
use std::collections::HashMap;

/// What a result write does with a delivery row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Updates the row as it is.
    Same,
    /// Updates a batch row that keeps only its first event (split).
    Single,
    /// Inserts a new row for an event split from its batch row.
    New,
}

/// The seqs of a batch row's events, from its `members` column (empty for a row of one event).
pub fn parse(members: Option<String>) -> Vec<i64> {
    members.and_then(|m| serde_json::from_str(&m).ok()).unwrap_or_default()
}

/// For the deliveries a router step makes, in seq order: `(destination, seq, pending)` and each
/// destination's batch size (1: a row per event). Returns per delivery `None` when it went into
/// an earlier row's batch, else the members of its row (empty: a row of its own).
pub fn group(rows: &[(&str, i64, bool)], size_of: impl Fn(&str) -> usize) -> Vec<Option<Vec<i64>>> {
    let mut out: Vec<Option<Vec<i64>>> = Vec::with_capacity(rows.len());
    let mut open: HashMap<&str, usize> = HashMap::new();
    for (i, (dest, seq, pending)) in rows.iter().enumerate() {
        let size = size_of(dest);
        if !pending || size <= 1 {
            out.push(Some(Vec::new()));
            continue;
        }
        match open.get(dest).copied() {
            Some(head) if out[head].as_ref().is_some_and(|m| m.len() < size) => {
                out[head].as_mut().expect("a head has members").push(*seq);
                out.push(None);
            }
            _ => {
                open.insert(dest, i);
                out.push(Some(vec![*seq]));
            }
        }
    }
    for m in out.iter_mut().flatten() {
        if m.len() == 1 {
            m.clear();
        }
    }
    out
}

/// The seqs of the events of claimed rows.
pub fn seqs(rows: &[Job]) -> Vec<i64> {
    rows.iter().flat_map(|j| if j.members.is_empty() { vec![j.event_seq] } else { j.members.clone() }).collect()
}

/// Claimed rows as one job per event: a batch row's events share its id.
pub fn expand(rows: &[Job], events: &HashMap<i64, (Value, i64)>) -> Vec<Job> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        if row.members.is_empty() {
            out.push(row.clone());
            continue;
        }
        for seq in &row.members {
            let message_id = match events.get(seq).and_then(|(e, _)| e.get("messageId")) {
                Some(Value::String(s)) => s.clone(),
                _ if *seq == row.event_seq => row.message_id.clone(),
                _ => String::new(),
            };
            out.push(Job { event_seq: *seq, message_id, members: Vec::new(), ..row.clone() });
        }
    }
    out
}

/// Results per event back to results per row: a batch row whose events all ended alike is written
/// as one (with its requests' log rows and a pointer to each request logged elsewhere); otherwise its first event
/// keeps the row and the others get rows of their own.
pub fn collapse(rows: &[Job], written: Vec<Written>) -> Vec<Written> {
    let batches: HashMap<&str, &Job> = rows.iter().filter(|r| !r.members.is_empty()).map(|r| (r.id.as_str(), r)).collect();
    if batches.is_empty() {
        return written;
    }
    let mut out = Vec::with_capacity(written.len());
    let mut of_row: HashMap<String, Vec<Written>> = HashMap::new();
    for w in written {
        match batches.contains_key(w.job.id.as_str()) {
            true => of_row.entry(w.job.id.clone()).or_default().push(w),
            false => out.push(w),
        }
    }
    for (id, mut parts) in of_row {
        let row = batches[id.as_str()];
        // Dead letters always get rows of their own, so they are replayed and discarded one by one.
        let alike = parts[0].state != "dead" && parts.iter().all(|w| w.state == parts[0].state && w.count == parts[0].count && w.reason == parts[0].reason);
        if alike && parts.len() == row.members.len() {
            // The row's logged requests, and one pointer to each request logged with another row.
            let mut attempts: Vec<_> = parts.iter_mut().flat_map(|w| std::mem::take(&mut w.attempts)).collect();
            let logged: Vec<String> = attempts.iter().filter(|a| a.bulk_of.is_none()).map(|a| a.id.clone()).collect();
            let mut pointed: Vec<String> = Vec::new();
            attempts.retain(|a| match &a.bulk_of {
                None => true,
                Some(to) if logged.contains(to) || pointed.contains(to) => false,
                Some(to) => {
                    pointed.push(to.clone());
                    true
                }
            });
            let first = parts.swap_remove(0);
            out.push(Written { job: row.clone(), attempts, shape: Shape::Same, ..first });
            continue;
        }
        for mut w in parts {
            if w.job.event_seq == row.event_seq {
                w.shape = Shape::Single;
            } else {
                w.job.id = new_id("dlv");
                w.shape = Shape::New;
            }
            out.push(w);
        }
    }
    out
}

/// The batch rows that hold the given events (seqs), with their members; of one destination or all.
pub async fn containers(conn: &mut sqlx::AnyConnection, destination: Option<&str>, seqs: &[i64]) -> sqlx::Result<Vec<(String, i64, Vec<i64>)>> {
    let destinations: Vec<String> = match destination {
        Some(d) => vec![d.to_string()],
        None => sqlx::query_scalar("SELECT id FROM destinations").fetch_all(&mut *conn).await?,
    };
    let mut out: Vec<(String, i64, Vec<i64>)> = Vec::new();
    for d in &destinations {
        for seq in seqs {
            // A destination's batch rows hold runs of its events in seq order: the one holding an
            // event is the last to start at or before it, if any does.
            let found: Option<(String, i64, Option<String>)> = sqlx::query_as(
                "SELECT id, event_seq, members FROM deliveries WHERE destination_id = $1 AND event_seq <= $2 AND members IS NOT NULL \
                 ORDER BY event_seq DESC LIMIT 1",
            )
            .bind(d)
            .bind(seq)
            .fetch_optional(&mut *conn)
            .await?;
            if let Some((id, first, members)) = found {
                let members = parse(members);
                if members.contains(seq) && !out.iter().any(|(o, _, _)| *o == id) {
                    out.push((id, first, members));
                }
            }
        }
    }
    Ok(out)
}

/// The messageIds of stored events, by seq.
pub async fn message_ids(conn: &mut sqlx::AnyConnection, seqs: &[i64]) -> sqlx::Result<HashMap<i64, String>> {
    let mut out = HashMap::with_capacity(seqs.len());
    for part in seqs.chunks(100) {
        let marks: Vec<String> = (1..=part.len()).map(|i| format!("${i}")).collect();
        let sql = format!("SELECT seq, message_id FROM events WHERE seq IN ({})", marks.join(", "));
        let mut q = sqlx::query_as::<_, (i64, String)>(&sql);
        for s in part {
            q = q.bind(*s);
        }
        out.extend(q.fetch_all(&mut *conn).await?);
    }
    Ok(out)
}

/// Privacy: takes the given (deleted) events out of the batch rows holding them (`held`, from
/// `containers`), with those rows' logged requests (which contain the events); a row left without
/// events is deleted.
pub async fn forget(conn: &mut sqlx::AnyConnection, seqs: &[i64], held: Vec<(String, i64, Vec<i64>)>) -> sqlx::Result<u64> {
    let mut deleted = 0;
    let gone: Vec<String> = if held.is_empty() { Vec::new() } else { message_ids(conn, seqs).await?.into_values().collect() };
    for (id, _, members) in held {
        // The row's requests of several events, and the deleted events' own requests.
        sqlx::query(
            "DELETE FROM attempts WHERE (delivery_id = $1 AND events > 1) OR id IN (SELECT attempt_id FROM deliveries WHERE id = $1 AND attempt_id IS NOT NULL)",
        )
        .bind(&id)
        .execute(&mut *conn)
        .await?;
        for m in &gone {
            sqlx::query("DELETE FROM attempts WHERE delivery_id = $1 AND message_id = $2").bind(&id).bind(m).execute(&mut *conn).await?;
        }
        let left: Vec<i64> = members.into_iter().filter(|s| !seqs.contains(s)).collect();
        let Some(first) = left.first().copied() else {
            deleted += sqlx::query("DELETE FROM deliveries WHERE id = $1").bind(&id).execute(&mut *conn).await?.rows_affected();
            continue;
        };
        let message_id = message_ids(conn, &[first]).await?.remove(&first).unwrap_or_default();
        let members = (left.len() > 1).then(|| serde_json::to_string(&left).unwrap_or_default());
        sqlx::query("UPDATE deliveries SET event_seq = $1, message_id = $2, members = $3, events = $4, attempt_id = NULL WHERE id = $5")
            .bind(first)
            .bind(message_id)
            .bind(members)
            .bind(left.len() as i64)
            .bind(&id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::group;

    #[test]
    fn pending_events_of_batching_destinations_share_rows() {
        let rows = [("a", 1, true), ("b", 1, true), ("a", 2, false), ("a", 3, true), ("a", 4, true), ("b", 4, true), ("a", 5, true)];
        let got = group(&rows, |d| if d == "a" { 2 } else { 1 });
        assert_eq!(got, vec![Some(vec![1, 3]), Some(vec![]), Some(vec![]), None, Some(vec![4, 5]), Some(vec![]), None]);
        // A batch of one event is a row of its own.
        assert_eq!(group(&[("a", 7, true)], |_| 10), vec![Some(vec![])]);
    }
}
