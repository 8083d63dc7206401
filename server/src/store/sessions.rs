//! tower-sessions' store over our own `sessions` table (both dialects).

use super::{now_ms, Store};
use async_trait::async_trait;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

#[derive(Debug, Clone)]
pub struct DbSessionStore(pub Store);

fn backend(e: impl std::fmt::Display) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

fn expiry_ms(record: &Record) -> i64 {
    (record.expiry_date.unix_timestamp_nanos() / 1_000_000) as i64
}

#[async_trait]
impl SessionStore for DbSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let data = serde_json::to_string(&record.data).map_err(|e| session_store::Error::Encode(e.to_string()))?;
        // Ids are 128 random bits; on the astronomically unlikely collision, draw again.
        for _ in 0..3 {
            let done = sqlx::query("INSERT INTO sessions (id, data, expires_at) VALUES ($1, $2, $3)")
                .bind(record.id.to_string())
                .bind(&data)
                .bind(expiry_ms(record))
                .execute(self.0.pool())
                .await;
            match done {
                Ok(_) => return Ok(()),
                Err(sqlx::Error::Database(db)) if db.is_unique_violation() => record.id = Id::default(),
                Err(e) => return Err(backend(e)),
            }
        }
        Err(backend("could not find a free session id"))
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let data = serde_json::to_string(&record.data).map_err(|e| session_store::Error::Encode(e.to_string()))?;
        let id = record.id.to_string();
        let updated = sqlx::query("UPDATE sessions SET data = $1, expires_at = $2 WHERE id = $3")
            .bind(&data)
            .bind(expiry_ms(record))
            .bind(&id)
            .execute(self.0.pool())
            .await
            .map_err(backend)?
            .rows_affected();
        if updated == 0 {
            sqlx::query("INSERT INTO sessions (id, data, expires_at) VALUES ($1, $2, $3)")
                .bind(&id)
                .bind(&data)
                .bind(expiry_ms(record))
                .execute(self.0.pool())
                .await
                .map_err(backend)?;
        }
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let row: Option<(String, i64)> =
            sqlx::query_as("SELECT data, expires_at FROM sessions WHERE id = $1 AND expires_at > $2")
                .bind(id.to_string())
                .bind(now_ms())
                .fetch_optional(self.0.pool())
                .await
                .map_err(backend)?;
        let Some((data, expires_at)) = row else { return Ok(None) };
        let data = serde_json::from_str(&data).map_err(|e| session_store::Error::Decode(e.to_string()))?;
        let expiry_date = time::OffsetDateTime::from_unix_timestamp_nanos(expires_at as i128 * 1_000_000)
            .map_err(|e| session_store::Error::Decode(e.to_string()))?;
        Ok(Some(Record { id: *id, data, expiry_date }))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        sqlx::query("DELETE FROM sessions WHERE id = $1")
            .bind(id.to_string())
            .execute(self.0.pool())
            .await
            .map_err(backend)?;
        Ok(())
    }
}

impl Store {
    /// Removes expired sessions; returns how many.
    pub async fn delete_expired_sessions(&self) -> super::Result<u64> {
        Ok(sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now_ms())
            .execute(self.pool())
            .await?
            .rows_affected())
    }
}
