//! Tracking-API messages (the Segment spec): the six types and the rules a message must follow.

use serde_json::{Map, Value};
use std::borrow::Cow;

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

/// What validation asks of a message's field: its kind, and a string's text.
#[derive(Debug, Clone, PartialEq)]
pub enum Field<'a> {
    Str(Cow<'a, str>),
    Number,
    Bool,
    Object,
    Array,
}

/// A message's top-level fields as validation reads them: a field sent as `null` is absent.
pub trait Fields {
    fn field(&self, key: &str) -> Option<Field<'_>>;
}

impl Fields for Map<String, Value> {
    fn field(&self, key: &str) -> Option<Field<'_>> {
        Some(match self.get(key)? {
            Value::Null => return None,
            Value::String(s) => Field::Str(Cow::Borrowed(s)),
            Value::Number(_) => Field::Number,
            Value::Bool(_) => Field::Bool,
            Value::Object(_) => Field::Object,
            Value::Array(_) => Field::Array,
        })
    }
}

/// An id may be a non-empty string or a number (some SDKs send numeric user ids).
fn check_id(msg: &impl Fields, key: &str) -> Result<bool, String> {
    match msg.field(key) {
        None => Ok(false),
        Some(Field::Str(s)) if s.trim().is_empty() => Err(format!("{key} must not be empty")),
        Some(Field::Str(s)) if s.contains('\0') => Err(format!("{key} must not contain NUL characters")),
        Some(Field::Str(s)) if s.len() > 512 => Err(format!("{key} must be at most 512 bytes")),
        Some(Field::Str(_)) | Some(Field::Number) => Ok(true),
        Some(_) => Err(format!("{key} must be a string")),
    }
}

fn check_object(msg: &impl Fields, key: &str) -> Result<(), String> {
    match msg.field(key) {
        None | Some(Field::Object) => Ok(()),
        Some(_) => Err(format!("{key} must be an object")),
    }
}

/// Checks a message against the spec for its type. `is_timestamp` decides whether a string is
/// an ISO 8601 date-time (the caller's parser).
pub fn validate(msg: &impl Fields, ty: EventType, is_timestamp: impl Fn(&str) -> bool) -> Result<(), String> {
    let has_user = check_id(msg, "userId")?;
    let has_anon = check_id(msg, "anonymousId")?;
    if !has_user && !has_anon {
        return Err("userId or anonymousId is required".into());
    }
    match msg.field("messageId") {
        None => {}
        Some(Field::Str(s)) if !s.is_empty() && s.len() <= 256 && !s.contains('\0') => {}
        Some(_) => return Err("messageId must be a non-empty string of at most 256 bytes".into()),
    }
    match ty {
        EventType::Track => match msg.field("event") {
            Some(Field::Str(s)) if !s.trim().is_empty() && !s.contains('\0') => {}
            Some(Field::Str(_)) => return Err("event must not be empty".into()),
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
            if !matches!(msg.field("name"), None | Some(Field::Str(_))) {
                return Err("name must be a string".into());
            }
        }
        EventType::Identify => {}
    }
    for key in ["traits", "properties", "context", "integrations"] {
        check_object(msg, key)?;
    }
    for key in ["timestamp", "sentAt", "originalTimestamp"] {
        match msg.field(key) {
            None => {}
            Some(Field::Str(s)) if is_timestamp(&s) => {}
            Some(_) => return Err(format!("{key} must be an ISO 8601 date-time, like 2026-01-31T12:00:00.000Z")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(v: Value, ty: EventType) -> Result<(), String> {
        validate(v.as_object().unwrap(), ty, |s| s.contains('T'))
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
