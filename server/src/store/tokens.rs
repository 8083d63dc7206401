//! API tokens: shown once, stored as a SHA-256 hash, used as `Authorization: Bearer …`.

use super::audit::{record, Actor};
use super::{get, new_id, now_ms, Result, Store, StoreError};
use model::Role;
use rand::RngCore;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TokenRow {
    pub id: String,
    pub name: String,
    #[schema(value_type = String)]
    pub role: Role,
    /// The first characters of the token, to recognise it.
    pub prefix: String,
    pub created_by: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// A token just made: `secret` is shown this once and never stored.
pub struct NewToken {
    pub row: TokenRow,
    pub secret: String,
}

pub fn hash_token(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn from_row(row: &AnyRow) -> Result<TokenRow> {
    let role: String = get(row, "role")?;
    Ok(TokenRow {
        id: get(row, "id")?,
        name: get(row, "name")?,
        role: role.parse().unwrap_or(Role::Viewer),
        prefix: get(row, "prefix")?,
        created_by: get(row, "created_by")?,
        created_at: get(row, "created_at")?,
        revoked_at: get(row, "revoked_at")?,
    })
}

impl Store {
    pub async fn create_token(&self, actor: &Actor, name: &str, role: Role) -> Result<NewToken> {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let secret = format!("sy_{}", hex::encode(bytes));
        let row = TokenRow {
            id: new_id("tok"),
            name: name.into(),
            role,
            prefix: secret[..10].to_string(),
            created_by: actor.label(),
            created_at: now_ms(),
            revoked_at: None,
        };
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO api_tokens (id, name, role, token_hash, prefix, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&row.id)
        .bind(&row.name)
        .bind(role.as_str())
        .bind(hash_token(&secret))
        .bind(&row.prefix)
        .bind(&row.created_by)
        .bind(row.created_at)
        .execute(&mut *tx)
        .await?;
        record(&mut tx, actor, "token.create", Some(&row.id), json!({"name": name, "role": role})).await?;
        tx.commit().await?;
        Ok(NewToken { row, secret })
    }

    /// The live (not revoked) token with this secret.
    pub async fn token_by_secret(&self, secret: &str) -> Result<Option<TokenRow>> {
        let row = sqlx::query("SELECT * FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL")
            .bind(hash_token(secret))
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    pub async fn tokens_page(&self, limit: usize, before: Option<&str>) -> Result<(Vec<TokenRow>, Option<String>)> {
        self.id_page("api_tokens", limit, before, from_row, |t| t.id.clone()).await
    }

    pub async fn revoke_token(&self, actor: &Actor, id: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        let n = sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now_ms())
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        record(&mut tx, actor, "token.revoke", Some(id), json!({})).await?;
        tx.commit().await?;
        Ok(())
    }
}
