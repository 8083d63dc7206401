//! Sources and their write keys.

use super::audit::{record, Actor};
use super::{get, map_unique, new_id, now_ms, page, Result, Store};
use rand::RngCore;
use serde::Serialize;
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::AnyConnection;

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SourceRow {
    pub id: String,
    pub name: String,
    /// The newest live write key.
    pub write_key: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

const SELECT: &str = "SELECT s.id, s.name, s.created_at, s.updated_at, \
    (SELECT k.key FROM write_keys k WHERE k.source_id = s.id AND k.revoked_at IS NULL ORDER BY k.id DESC LIMIT 1) AS write_key \
    FROM sources s";

fn from_row(row: &AnyRow) -> Result<SourceRow> {
    Ok(SourceRow {
        id: get(row, "id")?,
        name: get(row, "name")?,
        write_key: get(row, "write_key")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

pub fn generate_write_key() -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("wk_{}", hex::encode(bytes))
}

pub async fn source_by_name(conn: &mut AnyConnection, name: &str) -> Result<Option<SourceRow>> {
    let row = sqlx::query(&format!("{SELECT} WHERE s.name = $1")).bind(name).fetch_optional(conn).await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn all_sources(conn: &mut AnyConnection) -> Result<Vec<SourceRow>> {
    let rows = sqlx::query(&format!("{SELECT} ORDER BY s.name")).fetch_all(conn).await?;
    rows.iter().map(from_row).collect()
}

pub async fn create_source(conn: &mut AnyConnection, actor: &Actor, name: &str, write_key: Option<&str>) -> Result<SourceRow> {
    let now = now_ms();
    let id = new_id("src");
    sqlx::query("INSERT INTO sources (id, name, created_at, updated_at) VALUES ($1, $2, $3, $3)")
        .bind(&id)
        .bind(name)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(|e| map_unique(e, "source name", name))?;
    let key = write_key.map(str::to_string).unwrap_or_else(generate_write_key);
    add_write_key(conn, &id, &key).await?;
    record(conn, actor, "source.create", Some(&id), json!({"name": name})).await?;
    Ok(SourceRow { id, name: name.into(), write_key: Some(key), created_at: now, updated_at: now })
}

async fn add_write_key(conn: &mut AnyConnection, source_id: &str, key: &str) -> Result<()> {
    sqlx::query("INSERT INTO write_keys (id, source_id, key, created_at) VALUES ($1, $2, $3, $4)")
        .bind(new_id("wk"))
        .bind(source_id)
        .bind(key)
        .bind(now_ms())
        .execute(conn)
        .await
        .map_err(|e| map_unique(e, "write key", "(hidden)"))?;
    Ok(())
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

impl Store {
    /// Sources newest first.
    pub async fn sources_page(&self, limit: usize, before: Option<&str>) -> Result<(Vec<SourceRow>, Option<String>)> {
        let rows = sqlx::query(&format!("{SELECT} WHERE ($1 IS NULL OR s.id < $1) ORDER BY s.id DESC LIMIT $2"))
            .bind(before)
            .bind(limit as i64 + 1)
            .fetch_all(&self.pool)
            .await?;
        let items = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
        Ok(page(items, limit, |s| s.id.clone()))
    }
}
