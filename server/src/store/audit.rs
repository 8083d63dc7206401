//! The audit log: who changed what, and when. Writers call `record` inside the transaction that
//! makes the change, so a change and its audit entry commit together.

use super::{get, new_id, now_ms, Result, Store};
use serde::Serialize;
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::AnyConnection;

/// Who made a change.
#[derive(Debug, Clone, PartialEq)]
pub enum Actor {
    User { id: String, email: String },
    Token { id: String, name: String },
    /// The command line on the server's machine.
    Cli,
    /// The one-time setup link.
    Setup,
}

impl Actor {
    pub fn label(&self) -> String {
        match self {
            Actor::User { email, .. } => format!("user:{email}"),
            Actor::Token { name, .. } => format!("token:{name}"),
            Actor::Cli => "cli".into(),
            Actor::Setup => "setup".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: String,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    /// `user:EMAIL`, `token:NAME`, `cli` or `setup`.
    pub actor: String,
    /// What was done, such as `user.create` or `source.update`.
    pub action: String,
    /// The id or name of what was changed.
    pub target: Option<String>,
    pub detail: Value,
}

pub async fn record(
    conn: &mut AnyConnection,
    actor: &Actor,
    action: &str,
    target: Option<&str>,
    detail: Value,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (id, at, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(new_id("aud"))
    .bind(now_ms())
    .bind(actor.label())
    .bind(action)
    .bind(target)
    .bind(detail.to_string())
    .execute(conn)
    .await?;
    Ok(())
}

fn from_row(row: &AnyRow) -> Result<AuditEntry> {
    let detail: String = get(row, "detail")?;
    Ok(AuditEntry {
        id: get(row, "id")?,
        at: get(row, "at")?,
        actor: get(row, "actor")?,
        action: get(row, "action")?,
        target: get(row, "target")?,
        detail: serde_json::from_str(&detail).unwrap_or(Value::Null),
    })
}

impl Store {
    /// Audit entries newest first.
    pub async fn audit_page(&self, limit: usize, before: Option<&str>) -> Result<(Vec<AuditEntry>, Option<String>)> {
        self.id_page("audit_log", limit, before, from_row, |e| e.id.clone()).await
    }

    /// Writes one audit entry on its own (for changes that are not a database write).
    pub async fn audit(&self, actor: &Actor, action: &str, target: Option<&str>, detail: Value) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        record(&mut conn, actor, action, target, detail).await
    }
}
