//! Users: email, argon2id password hash, role.

use super::audit::{record, Actor};
use super::{get, map_unique, new_id, now_ms, Result, Store, StoreError};
use model::{Role, UserOut};
use serde_json::json;
use sqlx::any::AnyRow;

#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: String,
    pub email: String,
    pub password_hash: String,
    pub role: Role,
    pub created_at: i64,
}

impl UserRow {
    pub fn out(&self) -> UserOut {
        UserOut { id: self.id.clone(), email: self.email.clone(), role: self.role, created_at: self.created_at }
    }
}

fn from_row(row: &AnyRow) -> Result<UserRow> {
    let role: String = get(row, "role")?;
    Ok(UserRow {
        id: get(row, "id")?,
        email: get(row, "email")?,
        password_hash: get(row, "password_hash")?,
        role: role.parse().unwrap_or(Role::Viewer),
        created_at: get(row, "created_at")?,
    })
}

impl Store {
    pub async fn user_count(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(&self.pool).await?)
    }

    pub async fn create_user(&self, actor: &Actor, email: &str, password_hash: &str, role: Role) -> Result<UserRow> {
        let now = now_ms();
        let user = UserRow {
            id: new_id("usr"),
            email: email.to_string(),
            password_hash: password_hash.to_string(),
            role,
            created_at: now,
        };
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO users (id, email, password_hash, role, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(&user.id)
        .bind(&user.email)
        .bind(&user.password_hash)
        .bind(role.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| map_unique(e, "email", email))?;
        record(&mut tx, actor, "user.create", Some(&user.id), json!({"email": email, "role": role})).await?;
        tx.commit().await?;
        Ok(user)
    }

    /// Creates the first owner, but only while there are no users at all (the setup link).
    pub async fn create_first_owner(&self, email: &str, password_hash: &str) -> Result<Option<UserRow>> {
        let mut tx = self.begin().await?;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(&mut *tx).await?;
        if n > 0 {
            return Ok(None);
        }
        let now = now_ms();
        let user = UserRow {
            id: new_id("usr"),
            email: email.into(),
            password_hash: password_hash.into(),
            role: Role::Owner,
            created_at: now,
        };
        sqlx::query(
            "INSERT INTO users (id, email, password_hash, role, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(&user.id)
        .bind(email)
        .bind(password_hash)
        .bind(Role::Owner.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        record(&mut tx, &Actor::Setup, "user.create", Some(&user.id), json!({"email": email, "role": "owner"})).await?;
        tx.commit().await?;
        Ok(Some(user))
    }

    pub async fn user_by_email(&self, email: &str) -> Result<Option<UserRow>> {
        let row = sqlx::query("SELECT * FROM users WHERE email = $1").bind(email).fetch_optional(&self.pool).await?;
        row.as_ref().map(from_row).transpose()
    }

    pub async fn user_by_id(&self, id: &str) -> Result<Option<UserRow>> {
        let row = sqlx::query("SELECT * FROM users WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Users newest first.
    pub async fn users_page(&self, limit: usize, before: Option<&str>) -> Result<(Vec<UserRow>, Option<String>)> {
        self.id_page("users", limit, before, from_row, |u| u.id.clone()).await
    }

    async fn owners_other_than(tx: &mut sqlx::AnyConnection, id: &str) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE role = 'owner' AND id <> $1")
            .bind(id)
            .fetch_one(tx)
            .await?)
    }

    /// Changes a role. Refuses (returns `Ok(false)`) to demote the last owner.
    pub async fn set_user_role(&self, actor: &Actor, id: &str, role: Role) -> Result<bool> {
        let mut tx = self.begin().await?;
        let Some(old) = sqlx::query("SELECT * FROM users WHERE id = $1").bind(id).fetch_optional(&mut *tx).await? else {
            return Err(StoreError::NotFound);
        };
        let old = from_row(&old)?;
        if old.role == Role::Owner && role != Role::Owner && Self::owners_other_than(&mut tx, id).await? == 0 {
            return Ok(false);
        }
        sqlx::query("UPDATE users SET role = $1, updated_at = $2 WHERE id = $3")
            .bind(role.as_str())
            .bind(now_ms())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        record(&mut tx, actor, "user.update", Some(id), json!({"email": old.email, "role": {"from": old.role, "to": role}})).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Removes a user and their sessions. Refuses (returns `Ok(false)`) to remove the last owner.
    pub async fn delete_user(&self, actor: &Actor, id: &str) -> Result<bool> {
        let mut tx = self.begin().await?;
        let Some(old) = sqlx::query("SELECT * FROM users WHERE id = $1").bind(id).fetch_optional(&mut *tx).await? else {
            return Err(StoreError::NotFound);
        };
        let old = from_row(&old)?;
        if old.role == Role::Owner && Self::owners_other_than(&mut tx, id).await? == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM users WHERE id = $1").bind(id).execute(&mut *tx).await?;
        record(&mut tx, actor, "user.delete", Some(id), json!({"email": old.email})).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn set_user_password(&self, actor: &Actor, id: &str, password_hash: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        let n = sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3")
            .bind(password_hash)
            .bind(now_ms())
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        record(&mut tx, actor, "user.password", Some(id), json!({})).await?;
        tx.commit().await?;
        Ok(())
    }
}
