//! Sources and their write keys.

use super::audit::{record, Actor};
use super::{get, map_unique, new_id, now_ms, page, Result, Store, StoreError};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::AnyConnection;

/// Which SDK snippets a source shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SourceType {
    Web,
    Server,
    Mobile,
}

impl SourceType {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceType::Web => "web",
            SourceType::Server => "server",
            SourceType::Mobile => "mobile",
        }
    }
    fn parse(s: &str) -> SourceType {
        match s {
            "web" => SourceType::Web,
            "mobile" => SourceType::Mobile,
            _ => SourceType::Server,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct WriteKeyOut {
    pub id: String,
    pub key: String,
    pub created_at: i64,
    /// After a rotation, the old key works until then (ms since the epoch).
    pub expires_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SourceRow {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: SourceType,
    /// Browser origins allowed to send events; empty means any.
    pub allowed_origins: Vec<String>,
    /// Events per second accepted from this source; none means no limit.
    pub rate_limit: Option<i64>,
    /// The newest live write key.
    pub write_key: Option<String>,
    /// Every live write key, newest first.
    pub write_keys: Vec<WriteKeyOut>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The settable parts of a source.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceFields {
    pub name: String,
    pub kind: SourceType,
    pub allowed_origins: Vec<String>,
    pub rate_limit: Option<i64>,
}

const LIVE: &str = "revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)";

async fn from_row(conn: &mut AnyConnection, row: &AnyRow) -> Result<SourceRow> {
    let id: String = get(row, "id")?;
    let keys = sqlx::query(&format!("SELECT id, key, created_at, expires_at FROM write_keys WHERE source_id = $1 AND {LIVE} ORDER BY id DESC"))
        .bind(&id)
        .bind(now_ms())
        .fetch_all(&mut *conn)
        .await?;
    let write_keys = keys
        .iter()
        .map(|k| {
            Ok(WriteKeyOut { id: get(k, "id")?, key: get(k, "key")?, created_at: get(k, "created_at")?, expires_at: get(k, "expires_at")? })
        })
        .collect::<Result<Vec<_>>>()?;
    let origins: String = get(row, "allowed_origins")?;
    let kind: String = get(row, "type")?;
    Ok(SourceRow {
        id,
        name: get(row, "name")?,
        kind: SourceType::parse(&kind),
        allowed_origins: serde_json::from_str(&origins).unwrap_or_default(),
        rate_limit: get(row, "rate_limit")?,
        write_key: write_keys.iter().find(|k| k.expires_at.is_none()).or(write_keys.first()).map(|k| k.key.clone()),
        write_keys,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

async fn rows(conn: &mut AnyConnection, rows: Vec<AnyRow>) -> Result<Vec<SourceRow>> {
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        out.push(from_row(conn, row).await?);
    }
    Ok(out)
}

pub fn generate_write_key() -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("wk_{}", hex::encode(bytes))
}

pub async fn source_by_name(conn: &mut AnyConnection, name: &str) -> Result<Option<SourceRow>> {
    let row = sqlx::query("SELECT * FROM sources WHERE name = $1").bind(name).fetch_optional(&mut *conn).await?;
    match row {
        Some(row) => Ok(Some(from_row(conn, &row).await?)),
        None => Ok(None),
    }
}

pub async fn source_by_id(conn: &mut AnyConnection, id: &str) -> Result<Option<SourceRow>> {
    let row = sqlx::query("SELECT * FROM sources WHERE id = $1").bind(id).fetch_optional(&mut *conn).await?;
    match row {
        Some(row) => Ok(Some(from_row(conn, &row).await?)),
        None => Ok(None),
    }
}

pub async fn all_sources(conn: &mut AnyConnection) -> Result<Vec<SourceRow>> {
    let all = sqlx::query("SELECT * FROM sources ORDER BY name").fetch_all(&mut *conn).await?;
    rows(conn, all).await
}

pub async fn create_source(conn: &mut AnyConnection, actor: &Actor, f: &SourceFields, write_key: Option<&str>) -> Result<SourceRow> {
    let now = now_ms();
    let id = new_id("src");
    sqlx::query(
        "INSERT INTO sources (id, name, type, allowed_origins, rate_limit, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6)",
    )
    .bind(&id)
    .bind(&f.name)
    .bind(f.kind.as_str())
    .bind(json!(f.allowed_origins).to_string())
    .bind(f.rate_limit)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(|e| map_unique(e, "source name", &f.name))?;
    let key = write_key.map(str::to_string).unwrap_or_else(generate_write_key);
    add_write_key(conn, &id, &key).await?;
    record(conn, actor, "source.create", Some(&id), json!({"name": f.name, "type": f.kind})).await?;
    Ok(source_by_id(conn, &id).await?.expect("just created"))
}

pub async fn update_source(conn: &mut AnyConnection, actor: &Actor, id: &str, f: &SourceFields) -> Result<()> {
    let n = sqlx::query("UPDATE sources SET name = $1, type = $2, allowed_origins = $3, rate_limit = $4, updated_at = $5 WHERE id = $6")
        .bind(&f.name)
        .bind(f.kind.as_str())
        .bind(json!(f.allowed_origins).to_string())
        .bind(f.rate_limit)
        .bind(now_ms())
        .bind(id)
        .execute(&mut *conn)
        .await
        .map_err(|e| map_unique(e, "source name", &f.name))?
        .rows_affected();
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    record(conn, actor, "source.update", Some(id), json!({"name": f.name, "type": f.kind, "allowed_origins": f.allowed_origins, "rate_limit": f.rate_limit})).await
}

async fn add_write_key(conn: &mut AnyConnection, source_id: &str, key: &str) -> Result<String> {
    let id = new_id("wk");
    sqlx::query("INSERT INTO write_keys (id, source_id, key, created_at) VALUES ($1, $2, $3, $4)")
        .bind(&id)
        .bind(source_id)
        .bind(key)
        .bind(now_ms())
        .execute(conn)
        .await
        .map_err(|e| map_unique(e, "write key", "(hidden)"))?;
    Ok(id)
}

/// Makes `key` the source's only live write key.
pub async fn replace_write_key(conn: &mut AnyConnection, actor: &Actor, source: &SourceRow, key: &str) -> Result<()> {
    let now = now_ms();
    sqlx::query("UPDATE write_keys SET revoked_at = $1 WHERE source_id = $2 AND revoked_at IS NULL")
        .bind(now)
        .bind(&source.id)
        .execute(&mut *conn)
        .await?;
    add_write_key(conn, &source.id, key).await?;
    sqlx::query("UPDATE sources SET updated_at = $1 WHERE id = $2").bind(now).bind(&source.id).execute(&mut *conn).await?;
    record(conn, actor, "source.update", Some(&source.id), json!({"name": source.name, "write_key": "replaced"})).await
}

/// The source a live write key belongs to.
pub struct KeyOwner {
    pub source_id: String,
    pub name: String,
    pub allowed_origins: Vec<String>,
    pub rate_limit: Option<i64>,
}

impl Store {
    /// Sources newest first.
    pub async fn sources_page(&self, limit: usize, before: Option<&str>) -> Result<(Vec<SourceRow>, Option<String>)> {
        let mut conn = self.pool.acquire().await?;
        let found = sqlx::query("SELECT * FROM sources WHERE ($1 IS NULL OR id < $1) ORDER BY id DESC LIMIT $2")
            .bind(before)
            .bind(limit as i64 + 1)
            .fetch_all(&mut *conn)
            .await?;
        let items = rows(&mut conn, found).await?;
        Ok(page(items, limit, |s| s.id.clone()))
    }

    pub async fn source(&self, id: &str) -> Result<Option<SourceRow>> {
        let mut conn = self.pool.acquire().await?;
        source_by_id(&mut conn, id).await
    }

    pub async fn create_source(&self, actor: &Actor, f: &SourceFields) -> Result<SourceRow> {
        let mut tx = self.begin().await?;
        let row = create_source(&mut tx, actor, f, None).await?;
        tx.commit().await?;
        Ok(row)
    }

    pub async fn update_source(&self, actor: &Actor, id: &str, f: &SourceFields) -> Result<SourceRow> {
        let mut tx = self.begin().await?;
        update_source(&mut tx, actor, id, f).await?;
        let row = source_by_id(&mut tx, id).await?.ok_or(StoreError::NotFound)?;
        tx.commit().await?;
        Ok(row)
    }

    /// Deletes a source and its write keys (its stored events stay until retention removes them).
    pub async fn delete_source(&self, actor: &Actor, id: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        let name: Option<String> = sqlx::query_scalar("SELECT name FROM sources WHERE id = $1").bind(id).fetch_optional(&mut *tx).await?;
        let name = name.ok_or(StoreError::NotFound)?;
        sqlx::query("DELETE FROM write_keys WHERE source_id = $1").bind(id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM destination_sources WHERE source_id = $1").bind(id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM sources WHERE id = $1").bind(id).execute(&mut *tx).await?;
        record(&mut tx, actor, "source.delete", Some(id), json!({"name": name})).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A new write key. With `overlap_ms`, a rotation: the other live keys stop working after it.
    pub async fn add_write_key(&self, actor: &Actor, source_id: &str, overlap_ms: Option<i64>) -> Result<SourceRow> {
        let mut tx = self.begin().await?;
        source_by_id(&mut tx, source_id).await?.ok_or(StoreError::NotFound)?;
        let now = now_ms();
        if let Some(overlap) = overlap_ms {
            sqlx::query(&format!("UPDATE write_keys SET expires_at = $1 WHERE source_id = $3 AND {LIVE} AND (expires_at IS NULL OR expires_at > $1)"))
                .bind(now + overlap)
                .bind(now)
                .bind(source_id)
                .execute(&mut *tx)
                .await?;
        }
        let key_id = add_write_key(&mut tx, source_id, &generate_write_key()).await?;
        record(&mut tx, actor, "source.write_key.create", Some(source_id), json!({"key_id": key_id, "overlap_ms": overlap_ms})).await?;
        let row = source_by_id(&mut tx, source_id).await?.ok_or(StoreError::NotFound)?;
        tx.commit().await?;
        Ok(row)
    }

    pub async fn revoke_write_key(&self, actor: &Actor, source_id: &str, key_id: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        let n = sqlx::query("UPDATE write_keys SET revoked_at = $1 WHERE id = $2 AND source_id = $3 AND revoked_at IS NULL")
            .bind(now_ms())
            .bind(key_id)
            .bind(source_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        record(&mut tx, actor, "source.write_key.revoke", Some(source_id), json!({"key_id": key_id})).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Who owns a live write key.
    pub async fn write_key_owner(&self, key: &str) -> Result<Option<KeyOwner>> {
        let row = sqlx::query(
            "SELECT s.id, s.name, s.allowed_origins, s.rate_limit FROM write_keys k JOIN sources s ON s.id = k.source_id \
             WHERE k.key = $1 AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > $2)",
        )
        .bind(key)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let origins: String = get(&row, "allowed_origins")?;
        Ok(Some(KeyOwner {
            source_id: get(&row, "id")?,
            name: get(&row, "name")?,
            allowed_origins: serde_json::from_str(&origins).unwrap_or_default(),
            rate_limit: get(&row, "rate_limit")?,
        }))
    }
}
