//! Tracking-API messages (the Segment spec): the six types and the rules a message must follow.

use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Identify,
    Track,
    Page,
    Screen,
    Group,
    Alias,
}

impl EventType {
    pub const ALL: [EventType; 6] =
        [EventType::Identify, EventType::Track, EventType::Page, EventType::Screen, EventType::Group, EventType::Alias];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Identify => "identify",
            EventType::Track => "track",
            EventType::Page => "page",
            EventType::Screen => "screen",
            EventType::Group => "group",
            EventType::Alias => "alias",
        }
    }

    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The type a route stands for: `/v1/track` and analytics.js's short `/v1/t`.
    pub fn from_route(segment: &str) -> Option<EventType> {
        match segment {
            "i" => Some(EventType::Identify),
            "t" => Some(EventType::Track),
            "p" => Some(EventType::Page),
            "s" => Some(EventType::Screen),
            "g" => Some(EventType::Group),
            "a" => Some(EventType::Alias),
            other => EventType::parse(other),
        }
    }
}

/// Fields sent as `null` count as absent.
pub fn drop_nulls(msg: &mut Map<String, Value>) {
    msg.retain(|_, v| !v.is_null());
}

/// An id may be a non-empty string or a number (some SDKs send numeric user ids).
fn check_id(msg: &Map<String, Value>, key: &str) -> Result<bool, String> {
    match msg.get(key) {
        None => Ok(false),
        Some(Value::String(s)) if s.trim().is_empty() => Err(format!("{key} must not be empty")),
        Some(Value::String(s)) if s.contains('\0') => Err(format!("{key} must not contain NUL characters")),
        Some(Value::String(s)) if s.len() > 512 => Err(format!("{key} must be at most 512 bytes")),
        Some(Value::String(_)) | Some(Value::Number(_)) => Ok(true),
        Some(_) => Err(format!("{key} must be a string")),
    }
}

fn check_object(msg: &Map<String, Value>, key: &str) -> Result<(), String> {
    match msg.get(key) {
        None | Some(Value::Object(_)) => Ok(()),
        Some(_) => Err(format!("{key} must be an object")),
    }
}

/// Checks a message (nulls already dropped) against the spec for its type. `is_timestamp` decides
/// whether a string is an ISO 8601 date-time (the caller's parser).
pub fn validate(msg: &Map<String, Value>, ty: EventType, is_timestamp: impl Fn(&str) -> bool) -> Result<(), String> {
    let has_user = check_id(msg, "userId")?;
    let has_anon = check_id(msg, "anonymousId")?;
    if !has_user && !has_anon {
        return Err("userId or anonymousId is required".into());
    }
    match msg.get("messageId") {
        None => {}
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 256 && !s.contains('\0') => {}
        Some(_) => return Err("messageId must be a non-empty string of at most 256 bytes".into()),
    }
    match ty {
        EventType::Track => match msg.get("event") {
            Some(Value::String(s)) if !s.trim().is_empty() && !s.contains('\0') => {}
            Some(Value::String(_)) => return Err("event must not be empty".into()),
            Some(_) => return Err("event must be a string".into()),
            None => return Err("event is required for track".into()),
        },
        EventType::Group => {
            if !check_id(msg, "groupId")? {
                return Err("groupId is required for group".into());
            }
        }
        EventType::Alias => {
            if !check_id(msg, "previousId")? {
                return Err("previousId is required for alias".into());
            }
        }
        EventType::Page | EventType::Screen => {
            if let Some(name) = msg.get("name") {
                if !name.is_string() {
                    return Err("name must be a string".into());
                }
            }
        }
        EventType::Identify => {}
    }
    for key in ["traits", "properties", "context", "integrations"] {
        check_object(msg, key)?;
    }
    for key in ["timestamp", "sentAt", "originalTimestamp"] {
        match msg.get(key) {
            None => {}
            Some(Value::String(s)) if is_timestamp(s) => {}
            Some(_) => return Err(format!("{key} must be an ISO 8601 date-time, like 2026-01-31T12:00:00.000Z")),
        }
    }
    Ok(())
}

/// The string form of an id field (numbers become their decimal text).
pub fn id_text(msg: &Map<String, Value>, key: &str) -> Option<String> {
    match msg.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(v: Value, ty: EventType) -> Result<(), String> {
        let mut m = v.as_object().unwrap().clone();
        drop_nulls(&mut m);
        validate(&m, ty, |s| s.contains('T'))
    }

    #[test]
    fn follows_the_spec() {
        assert!(check(json!({"userId": "u1", "event": "Bought"}), EventType::Track).is_ok());
        assert!(check(json!({"anonymousId": "a1", "event": "Bought"}), EventType::Track).is_ok());
        assert_eq!(check(json!({"event": "Bought"}), EventType::Track).unwrap_err(), "userId or anonymousId is required");
        assert_eq!(check(json!({"userId": "u1"}), EventType::Track).unwrap_err(), "event is required for track");
        assert_eq!(check(json!({"userId": "u1"}), EventType::Group).unwrap_err(), "groupId is required for group");
        assert_eq!(check(json!({"userId": "u1"}), EventType::Alias).unwrap_err(), "previousId is required for alias");
        assert!(check(json!({"userId": 42, "traits": {"a": 1}}), EventType::Identify).is_ok());
        assert_eq!(check(json!({"userId": "u", "traits": [1]}), EventType::Identify).unwrap_err(), "traits must be an object");
        assert!(check(json!({"userId": "u", "timestamp": "yesterday"}), EventType::Page).unwrap_err().contains("ISO 8601"));
        assert!(check(json!({"userId": "u", "event": "x", "properties": null, "anonymousId": null}), EventType::Track).is_ok());
        assert!(check(json!({"userId": "u\u{0}x"}), EventType::Identify).unwrap_err().contains("NUL"));
    }

    #[test]
    fn routes_name_types() {
        assert_eq!(EventType::from_route("t"), Some(EventType::Track));
        assert_eq!(EventType::from_route("identify"), Some(EventType::Identify));
        assert_eq!(EventType::from_route("batch"), None);
    }
}
