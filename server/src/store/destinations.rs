//! Destinations: an integration slug, settings, the sources they listen to.

use super::audit::{record, Actor};
use super::{get, map_unique, new_id, now_ms, Result};
use serde_json::{json, Map, Value};
use sqlx::any::AnyRow;
use sqlx::AnyConnection;

#[derive(Debug, Clone, PartialEq)]
pub struct DestinationRow {
    pub id: String,
    pub name: String,
    pub integration: String,
    pub enabled: bool,
    /// Resolved setting values.
    pub settings: Map<String, Value>,
    /// Setting name → environment variable it was read from.
    pub settings_env: Map<String, Value>,
    /// Source names, sorted.
    pub sources: Vec<String>,
    /// Secret setting values, sealed with the secrets key.
    pub secrets: String,
    /// Action overrides: `{action: {enabled, mapping}}`.
    pub actions: Map<String, Value>,
    pub filters: Value,
    /// `ok` or `misconfigured`.
    pub status: String,
    pub status_reason: Option<String>,
    /// Paused (by a 429/503, the circuit breaker or by hand) until this time (ms), if set.
    pub paused_until: Option<i64>,
    /// Set while the circuit breaker holds the destination paused: why.
    pub circuit_reason: Option<String>,
    /// Retry options (`deliver::schedule::PolicyPatch`).
    pub delivery: Value,
}

/// What a write sets on a destination.
#[derive(Debug, Clone, PartialEq)]
pub struct DestinationWrite {
    pub integration: String,
    pub enabled: bool,
    pub settings: Map<String, Value>,
    pub settings_env: Map<String, Value>,
    /// Source ids.
    pub source_ids: Vec<String>,
    /// Sealed secret values.
    pub secrets: String,
    pub actions: Map<String, Value>,
    pub filters: Value,
}

fn json_map(text: &str) -> Map<String, Value> {
    serde_json::from_str(text).unwrap_or_default()
}

async fn from_row(conn: &mut AnyConnection, row: &AnyRow) -> Result<DestinationRow> {
    let id: String = get(row, "id")?;
    let sources: Vec<String> = sqlx::query_scalar(
        "SELECT s.name FROM destination_sources ds JOIN sources s ON s.id = ds.source_id WHERE ds.destination_id = $1 ORDER BY s.name",
    )
    .bind(&id)
    .fetch_all(conn)
    .await?;
    let enabled: i64 = get(row, "enabled")?;
    Ok(DestinationRow {
        id,
        name: get(row, "name")?,
        integration: get(row, "integration")?,
        enabled: enabled != 0,
        settings: json_map(&get::<String>(row, "settings")?),
        settings_env: json_map(&get::<String>(row, "settings_env")?),
        sources,
        secrets: get(row, "secrets")?,
        actions: json_map(&get::<String>(row, "actions")?),
        filters: serde_json::from_str(&get::<String>(row, "filters")?).unwrap_or_default(),
        status: get(row, "status")?,
        status_reason: get(row, "status_reason")?,
        paused_until: get(row, "paused_until")?,
        circuit_reason: get(row, "circuit_reason")?,
        delivery: serde_json::from_str(&get::<String>(row, "delivery")?).unwrap_or_default(),
    })
}

pub async fn all_destinations(conn: &mut AnyConnection) -> Result<Vec<DestinationRow>> {
    let rows = sqlx::query("SELECT * FROM destinations ORDER BY name").fetch_all(&mut *conn).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        out.push(from_row(conn, row).await?);
    }
    Ok(out)
}

pub async fn destination_by_name(conn: &mut AnyConnection, name: &str) -> Result<Option<DestinationRow>> {
    let row = sqlx::query("SELECT * FROM destinations WHERE name = $1").bind(name).fetch_optional(&mut *conn).await?;
    match row {
        Some(row) => Ok(Some(from_row(conn, &row).await?)),
        None => Ok(None),
    }
}

async fn set_sources(conn: &mut AnyConnection, id: &str, source_ids: &[String]) -> Result<()> {
    sqlx::query("DELETE FROM destination_sources WHERE destination_id = $1").bind(id).execute(&mut *conn).await?;
    for sid in source_ids {
        sqlx::query("INSERT INTO destination_sources (destination_id, source_id) VALUES ($1, $2)")
            .bind(id)
            .bind(sid)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

pub async fn create_destination(conn: &mut AnyConnection, actor: &Actor, name: &str, w: &DestinationWrite) -> Result<String> {
    let id = new_id("dst");
    let now = now_ms();
    sqlx::query(
        "INSERT INTO destinations (id, name, integration, enabled, settings, settings_env, created_at, updated_at, secrets, actions, filters) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9, $10)",
    )
    .bind(&id)
    .bind(name)
    .bind(&w.integration)
    .bind(w.enabled as i64)
    .bind(Value::Object(w.settings.clone()).to_string())
    .bind(Value::Object(w.settings_env.clone()).to_string())
    .bind(now)
    .bind(&w.secrets)
    .bind(Value::Object(w.actions.clone()).to_string())
    .bind(w.filters.to_string())
    .execute(&mut *conn)
    .await
    .map_err(|e| map_unique(e, "destination name", name))?;
    set_sources(conn, &id, &w.source_ids).await?;
    record(conn, actor, "destination.create", Some(&id), json!({"name": name, "integration": w.integration})).await?;
    Ok(id)
}

pub async fn update_destination(conn: &mut AnyConnection, actor: &Actor, id: &str, name: &str, w: &DestinationWrite) -> Result<()> {
    sqlx::query(
        "UPDATE destinations SET integration = $1, enabled = $2, settings = $3, settings_env = $4, updated_at = $5, \
         secrets = $7, actions = $8, filters = $9, status = 'ok', status_reason = NULL WHERE id = $6",
    )
    .bind(&w.integration)
    .bind(w.enabled as i64)
    .bind(Value::Object(w.settings.clone()).to_string())
    .bind(Value::Object(w.settings_env.clone()).to_string())
    .bind(now_ms())
    .bind(id)
    .bind(&w.secrets)
    .bind(Value::Object(w.actions.clone()).to_string())
    .bind(w.filters.to_string())
    .execute(&mut *conn)
    .await?;
    set_sources(conn, id, &w.source_ids).await?;
    // Setting values may be secret: the audit entry names the keys, never the values.
    let keys: Vec<&String> = w.settings.keys().collect();
    record(conn, actor, "destination.update", Some(id), json!({"name": name, "settings": keys, "enabled": w.enabled})).await
}

pub async fn destination(conn: &mut AnyConnection, id: &str) -> Result<Option<DestinationRow>> {
    let row = sqlx::query("SELECT * FROM destinations WHERE id = $1").bind(id).fetch_optional(&mut *conn).await?;
    match row {
        Some(row) => Ok(Some(from_row(conn, &row).await?)),
        None => Ok(None),
    }
}

/// Marks a destination ok or misconfigured (with the reason).
pub async fn set_destination_status(conn: &mut AnyConnection, id: &str, reason: Option<&str>) -> Result<()> {
    sqlx::query("UPDATE destinations SET status = $1, status_reason = $2 WHERE id = $3")
        .bind(if reason.is_some() { "misconfigured" } else { "ok" })
        .bind(reason)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn delete_destination(conn: &mut AnyConnection, actor: &Actor, id: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM destinations WHERE id = $1").bind(id).execute(&mut *conn).await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    record(conn, actor, "destination.delete", Some(id), json!({})).await?;
    Ok(true)
}

/// Records that an admin revealed or rotated a secret (never the value).
pub async fn record_secret_access(conn: &mut AnyConnection, actor: &Actor, id: &str, action: &str, key: &str) -> Result<()> {
    record(conn, actor, action, Some(id), json!({"setting": key})).await
}
