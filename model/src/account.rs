//! Users and roles.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What a user or API token may do. Ordered: each role can do everything the ones below it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Role {
    Viewer,
    Editor,
    Admin,
    Owner,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Owner, Role::Admin, Role::Editor, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    /// Owners and admins manage users, tokens and settings.
    pub fn can_manage_users(self) -> bool {
        self >= Role::Admin
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "editor" => Ok(Role::Editor),
            "admin" => Ok(Role::Admin),
            "owner" => Ok(Role::Owner),
            other => Err(format!(
                "unknown role '{other}' (expected owner, admin, editor or viewer)"
            )),
        }
    }
}

/// A user as the API shows it (never with a password hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserOut {
    pub id: String,
    pub email: String,
    pub role: Role,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
}

/// Who is calling: answered by `GET /api/me`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MeOut {
    pub id: String,
    pub email: String,
    pub role: Role,
}

/// Checks the shape of an email address at the boundary (one `@`, something on each side, a dot
/// in the domain). Returns the trimmed, lowercased address.
pub fn parse_email(raw: &str) -> Result<String, String> {
    let email = raw.trim().to_lowercase();
    let Some((local, domain)) = email.split_once('@') else {
        return Err("must contain '@'".into());
    };
    if local.is_empty() || domain.is_empty() || domain.contains('@') {
        return Err("must look like name@example.com".into());
    }
    if !domain.contains('.') || domain.starts_with('.') || domain.ends_with('.') {
        return Err("the domain must contain a dot, like example.com".into());
    }
    if email.len() > 254 || email.chars().any(char::is_whitespace) {
        return Err("must be at most 254 characters without spaces".into());
    }
    Ok(email)
}

/// Passwords: at least 8 characters, at most 1024.
pub fn check_password(pw: &str) -> Result<(), String> {
    let n = pw.chars().count();
    if n < 8 {
        return Err("must be at least 8 characters".into());
    }
    if n > 1024 {
        return Err("must be at most 1024 characters".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Owner > Role::Admin && Role::Admin > Role::Editor && Role::Editor > Role::Viewer);
        assert!(Role::Admin.can_manage_users());
        assert!(!Role::Editor.can_manage_users());
        assert_eq!("admin".parse::<Role>(), Ok(Role::Admin));
        assert!("root".parse::<Role>().unwrap_err().contains("root"));
    }

    #[test]
    fn emails_are_checked() {
        assert_eq!(parse_email(" Ann@Example.com ").unwrap(), "ann@example.com");
        assert!(parse_email("ann").is_err());
        assert!(parse_email("ann@localhost").is_err());
        assert!(parse_email("@x.io").is_err());
        assert!(parse_email("a b@x.io").is_err());
    }

    #[test]
    fn passwords_have_a_minimum_length() {
        assert!(check_password("short").is_err());
        assert!(check_password("long enough").is_ok());
    }
}
