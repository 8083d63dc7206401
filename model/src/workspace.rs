//! The workspace file: sources and destinations as code (`switchyard workspace apply/export`).
//!
//! Unknown keys are an error so that a typo never silently does nothing.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceFile {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destinations: Vec<DestinationSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    pub name: String,
    /// `web`, `server` (the default) or `mobile`: which SDK snippets the app shows.
    #[serde(default = "server_type", rename = "type")]
    pub kind: String,
    /// Generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_key: Option<String>,
    /// Browser origins allowed to send events (`https://shop.example.com`); empty means any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
    /// Events per second accepted from this source; absent means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<i64>,
}

fn server_type() -> String {
    "server".into()
}

/// Source types.
pub const SOURCE_TYPES: [&str; 3] = ["web", "server", "mobile"];

/// An allowed origin is `scheme://host[:port]`, nothing more.
pub fn check_origin(origin: &str) -> Result<(), String> {
    let Some((scheme, rest)) = origin.split_once("://") else {
        return Err(format!("'{origin}' must look like https://shop.example.com"));
    };
    if !matches!(scheme, "http" | "https") || rest.is_empty() || rest.contains('/') || rest.contains(char::is_whitespace) {
        return Err(format!("'{origin}' must be scheme://host[:port] with no path, like https://shop.example.com"));
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationSpec {
    pub name: String,
    /// Catalog slug, such as `webhook`.
    pub integration: String,
    /// Names of the sources whose events this destination receives.
    #[serde(default)]
    pub sources: Vec<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Setting values; a value written `{ env = "VAR" }` is read from the environment at apply
    /// time and exported back in that form.
    #[serde(default)]
    pub settings: Map<String, Value>,
    /// Action overrides: `{ action = { enabled = true, mapping = { field = … } } }`.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub actions: Map<String, Value>,
    /// Event types, allow/deny lists, condition (see the integration docs).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub filters: Map<String, Value>,
    /// Retry and flow-control options (`schedule`, `max_attempts`, `rate_limit`, …).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub delivery: Map<String, Value>,
}

fn yes() -> bool {
    true
}

/// If `value` is `{ env = "VAR" }`, the variable's name.
pub fn env_reference(value: &Value) -> Option<&str> {
    let obj = value.as_object()?;
    if obj.len() != 1 {
        return None;
    }
    obj.get("env")?.as_str()
}

/// The `{ env = "VAR" }` form of a reference.
pub fn env_value(var: &str) -> Value {
    let mut m = Map::new();
    m.insert("env".into(), Value::String(var.into()));
    Value::Object(m)
}

/// Names are what files and people use to point at things: 1–64 characters of letters, digits,
/// `-`, `_` and `.`, starting with a letter or digit.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err("must be 1 to 64 characters".into());
    }
    let first = name.chars().next().unwrap_or(' ');
    if !first.is_ascii_alphanumeric() {
        return Err("must start with a letter or digit".into());
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || "-_.".contains(*c))) {
        return Err(format!("may not contain '{c}' (letters, digits, '-', '_' and '.' only)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_references_are_recognised() {
        assert_eq!(env_reference(&env_value("HOOK_TOKEN")), Some("HOOK_TOKEN"));
        assert_eq!(env_reference(&serde_json::json!({"env": "A", "x": 1})), None);
        assert_eq!(env_reference(&serde_json::json!("plain")), None);
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("orders-hook").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("-x").is_err());
        assert!(check_name("a b").unwrap_err().contains("' '"));
    }
}
