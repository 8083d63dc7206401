//! Privacy and requests of several events. A request of several events is logged once, with its
//! first event's delivery row (`attempts.events > 1`): an ordered destination's row of one event, or
//! a batch row; the other rows' attempts point to it (`{"batch": {"size", "logged_with",
//! "attempt"}}`). Deleting a user removes every logged request holding one of their events,
//! whichever row it is logged with, and the pointers to it stop naming its first event.

use super::Result;
use serde_json::{json, Value};

type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// A pointer's request: the logged attempt's id (absent in pointers written before it was kept),
/// the first event's messageId and the batch's size.
struct Pointer {
    attempt: Option<String>,
    logged_with: Option<String>,
    size: Value,
}

fn pointer(request: &str) -> Option<Pointer> {
    let Ok(Value::Object(p)) = serde_json::from_str::<Value>(request) else { return None };
    let batch = p.get("batch").filter(|_| p.len() == 1)?;
    let text = |k: &str| batch.get(k).and_then(Value::as_str).map(str::to_string);
    Some(Pointer { attempt: text("attempt"), logged_with: text("logged_with"), size: batch.get("size").cloned().unwrap_or(Value::Null) })
}

/// A logged request of several events: (id, destination, written at, messageId of its first event).
type Logged = (String, String, i64, String);

const LOGGED: &str = "SELECT id, destination_id, at, message_id FROM attempts";

/// Deletes the logged requests of several events that hold an event of the user (`of_user`
/// selects their event seqs from `value`; `batch_rows` are the batch rows holding one of them),
/// and unlinks the pointers to them.
pub async fn forget(tx: &mut Tx, of_user: &str, value: &str, batch_rows: &[&str]) -> Result<()> {
    const OF: &str = "SELECT id, destination_id, at, message_id, request FROM attempts WHERE events > 1 AND delivery_id IN";
    let sql = format!("{OF} (SELECT id FROM deliveries WHERE event_seq IN ({of_user}))");
    let mut rows: Vec<(String, String, i64, String, String)> = sqlx::query_as(&sql).bind(value).fetch_all(&mut **tx).await?;
    for part in batch_rows.chunks(500) {
        let marks: Vec<String> = (1..=part.len()).map(|i| format!("${i}")).collect();
        let sql = format!("{OF} ({})", marks.join(", "));
        let mut q = sqlx::query_as(&sql);
        for id in part {
            q = q.bind(*id);
        }
        rows.extend(q.fetch_all(&mut **tx).await?);
    }
    let mut logged: Vec<Logged> = Vec::new();
    for (id, destination, at, message_id, request) in rows {
        match pointer(&request) {
            // Their own event's request: it is deleted with their deliveries, but others may point to it.
            None => logged.push((id, destination, at, message_id)),
            Some(Pointer { attempt: Some(target), .. }) => {
                logged.extend(sqlx::query_as::<_, Logged>(&format!("{LOGGED} WHERE id = $1")).bind(target).fetch_all(&mut **tx).await?);
            }
            // Written in the same transaction as the request it points to, under the first event's id.
            Some(Pointer { logged_with: Some(first), .. }) => {
                let sql = format!("{LOGGED} WHERE destination_id = $1 AND at = $2 AND message_id = $3 AND events > 1 AND request NOT LIKE '{{\"batch\":%'");
                logged.extend(sqlx::query_as::<_, Logged>(&sql).bind(&destination).bind(at).bind(first).fetch_all(&mut **tx).await?);
            }
            Some(_) => {}
        }
    }
    for (id, destination, at, first) in &logged {
        sqlx::query("DELETE FROM attempts WHERE id = $1").bind(id).execute(&mut **tx).await?;
        // The pointers to it were written with it.
        let others: Vec<(String, String)> =
            sqlx::query_as("SELECT id, request FROM attempts WHERE destination_id = $1 AND at = $2 AND events > 1").bind(destination).bind(at).fetch_all(&mut **tx).await?;
        for (other, request) in others {
            let Some(p) = pointer(&request) else { continue };
            let to_it = match &p.attempt {
                Some(target) => target == id,
                None => p.logged_with.as_deref() == Some(first.as_str()),
            };
            if to_it {
                let unlinked = json!({"batch": {"size": p.size, "logged_with": null, "removed": "the request held a deleted user's event"}});
                sqlx::query("UPDATE attempts SET request = $1 WHERE id = $2").bind(unlinked.to_string()).bind(other).execute(&mut **tx).await?;
            }
        }
    }
    Ok(())
}
