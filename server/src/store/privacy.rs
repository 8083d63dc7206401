//! Privacy: delete what is stored about a user, and suppress their further events.

use super::audit::{record, Actor};
use super::{get, new_id, now_ms, Result, Store, StoreError};
use serde::Serialize;
use serde_json::json;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SuppressionOut {
    pub id: String,
    #[serde(rename = "userId")]
    pub user_id: Option<String>,
    #[serde(rename = "anonymousId")]
    pub anonymous_id: Option<String>,
    pub created_by: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct DeletionOut {
    /// Events removed from the event log.
    pub events_deleted: u64,
    /// Rejected messages removed.
    pub rejections_deleted: u64,
    /// Deliveries and their attempts (requests and responses) removed.
    pub deliveries_deleted: u64,
    /// The suppression created, when asked for.
    pub suppression: Option<SuppressionOut>,
}

/// Texts that mark a rejected message's payload (compact JSON, as serde_json writes it) as this
/// user's: `"userId":"a_c"`, and for an id that is the text of a number, `"userId":42` followed by
/// `,` or `}` (SDKs may send numeric ids; the event log stores them as text).
///
/// Found by plain substring search (`instr`, `strpos`): LIKE would read `_` and `%` in ids as
/// wildcards and, on SQLite, ignore case; PostgreSQL's JSON operators fail on payloads holding
/// `\u0000`, which rejected messages may.
fn marks(key: &str, value: &str) -> Vec<String> {
    let mut out = vec![format!("\"{key}\":{}", serde_json::Value::String(value.to_string()))];
    if let Some(n) = serde_json::from_str::<serde_json::Number>(value).ok().filter(|n| n.to_string() == value) {
        out.extend([",", "}"].map(|end| format!("\"{key}\":{n}{end}")));
    }
    out
}

impl Store {
    /// Deletes every stored event and rejected message of this user (by userId and/or
    /// anonymousId), optionally suppressing their future events; audited.
    pub async fn delete_user_data(&self, actor: &Actor, user_id: Option<&str>, anonymous_id: Option<&str>, suppress: bool) -> Result<DeletionOut> {
        let mut tx = self.begin().await?;
        let mut out = DeletionOut::default();
        for (column, key, value) in [("user_id", "userId", user_id), ("anonymous_id", "anonymousId", anonymous_id)] {
            let Some(value) = value else { continue };
            // What the "only when traits changed" filter remembers of this user.
            sqlx::query("DELETE FROM destination_traits WHERE user_key = $1").bind(value).execute(&mut *tx).await?;
            // The attempt log holds copies of the events in its requests: it goes first.
            let of_user = format!("SELECT seq FROM events WHERE {column} = $1");
            // Batch rows holding the user's events lose them first (with their logged requests).
            let seqs: Vec<i64> = sqlx::query_scalar(&of_user).bind(value).fetch_all(&mut *tx).await?;
            let held = crate::deliver::batch_rows::containers(&mut *tx, None, &seqs).await?;
            // Requests of several events holding one of theirs, wherever they are logged (with
            // another event or another batch row), and the pointers to them.
            let rows: Vec<&str> = held.iter().map(|(id, _, _)| id.as_str()).collect();
            super::privacy_batches::forget(&mut tx, &of_user, value, &rows).await?;
            out.deliveries_deleted += crate::deliver::batch_rows::forget(&mut *tx, &seqs, held).await?;
            sqlx::query(&format!(
                "DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE event_seq IN ({of_user})) \
                 OR id IN (SELECT attempt_id FROM deliveries WHERE attempt_id IS NOT NULL AND event_seq IN ({of_user}))"
            ))
                .bind(value)
                .execute(&mut *tx)
                .await?;
            out.deliveries_deleted += sqlx::query(&format!("DELETE FROM deliveries WHERE event_seq IN ({of_user})"))
                .bind(value)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            out.events_deleted += sqlx::query(&format!("DELETE FROM events WHERE {column} = $1"))
                .bind(value)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            let contains = match self.backend {
                super::Backend::Sqlite => "instr(payload, $1) > 0",
                super::Backend::Postgres => "strpos(payload, $1) > 0",
            };
            for mark in marks(key, value) {
                out.rejections_deleted += sqlx::query(&format!("DELETE FROM rejections WHERE {contains}"))
                    .bind(mark)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            }
        }
        if suppress {
            let s = SuppressionOut {
                id: new_id("sup"),
                user_id: user_id.map(str::to_string),
                anonymous_id: anonymous_id.map(str::to_string),
                created_by: actor.label(),
                created_at: now_ms(),
            };
            sqlx::query("INSERT INTO suppressions (id, user_id, anonymous_id, created_by, created_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(&s.id)
                .bind(&s.user_id)
                .bind(&s.anonymous_id)
                .bind(&s.created_by)
                .bind(s.created_at)
                .execute(&mut *tx)
                .await?;
            out.suppression = Some(s);
        }
        // The audit entry says that data was deleted, not whose: it names the ids only by hash.
        let hash = |v: Option<&str>| v.map(crate::store::tokens_hash).map(|h| h[..16].to_string());
        record(
            &mut tx,
            actor,
            "privacy.delete",
            None,
            json!({"userId_sha256": hash(user_id), "anonymousId_sha256": hash(anonymous_id), "suppress": suppress,
                   "events_deleted": out.events_deleted, "rejections_deleted": out.rejections_deleted}),
        )
        .await?;
        tx.commit().await?;
        Ok(out)
    }

    pub async fn suppressions(&self) -> Result<Vec<SuppressionOut>> {
        let rows = sqlx::query("SELECT * FROM suppressions ORDER BY id DESC").fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(SuppressionOut {
                    id: get(r, "id")?,
                    user_id: get(r, "user_id")?,
                    anonymous_id: get(r, "anonymous_id")?,
                    created_by: get(r, "created_by")?,
                    created_at: get(r, "created_at")?,
                })
            })
            .collect()
    }

    pub async fn delete_suppression(&self, actor: &Actor, id: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        let n = sqlx::query("DELETE FROM suppressions WHERE id = $1").bind(id).execute(&mut *tx).await?.rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        record(&mut tx, actor, "privacy.unsuppress", Some(id), json!({})).await?;
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::marks;

    #[test]
    fn marks_name_the_exact_id_and_its_numeric_form() {
        assert_eq!(marks("userId", "a_c"), [r#""userId":"a_c""#]);
        assert_eq!(marks("userId", "42"), [r#""userId":"42""#, r#""userId":42,"#, r#""userId":42}"#]);
        assert_eq!(marks("anonymousId", "4.5"), [r#""anonymousId":"4.5""#, r#""anonymousId":4.5,"#, r#""anonymousId":4.5}"#]);
        // Only the form serde_json writes: "042" and " 42" are no numbers in a stored payload.
        assert_eq!(marks("userId", "042").len(), 1);
        assert_eq!(marks("userId", " 42").len(), 1);
        assert_eq!(marks("userId", "say \"hi\""), [r#""userId":"say \"hi\"""#]);
    }
}
