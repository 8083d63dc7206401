//! Which events a destination takes: event types, event-name allow and deny lists, the per-event
//! `integrations` object, a condition (evaluated by the mapping engine) and "only when traits changed".

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Filters {
    /// Event types to send; empty means every type the integration handles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_types: Vec<String>,
    /// Track event names to send; empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_events: Vec<String>,
    /// Track event names never to send.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny_events: Vec<String>,
    /// A condition over the event, e.g. `properties.revenue > 100`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// Identify calls go out only when the user's traits differ from the last ones sent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub only_changed_traits: bool,
}

/// Why an event was not sent, or `None` when the static filters let it through (the condition and
/// the traits check are the engine's and the router's).
pub fn static_reason(f: &Filters, handled: &[String], event: &Map<String, Value>, names: &[&str]) -> Option<String> {
    let ty = event.get("type").and_then(Value::as_str).unwrap_or_default();
    if !handled.iter().any(|t| t == ty) {
        return Some(format!("the integration does not handle {ty} events"));
    }
    if !f.event_types.is_empty() && !f.event_types.iter().any(|t| t == ty) {
        return Some(format!("{ty} events are filtered out"));
    }
    if ty == "track" {
        let name = event.get("event").and_then(Value::as_str).unwrap_or_default();
        if f.deny_events.iter().any(|n| n == name) {
            return Some(format!("event '{name}' is on the deny list"));
        }
        if !f.allow_events.is_empty() && !f.allow_events.iter().any(|n| n == name) {
            return Some(format!("event '{name}' is not on the allow list"));
        }
    }
    if !integrations_allow(event, names) {
        return Some("turned off by the event's integrations object".into());
    }
    None
}

/// Segment's per-event switch: `{"All": false, "Slack": true}`. A destination is named by any of
/// `names` (integration name, slug, destination name); a non-boolean value (options) counts as on.
pub fn integrations_allow(event: &Map<String, Value>, names: &[&str]) -> bool {
    let Some(obj) = event.get("integrations").and_then(Value::as_object) else { return true };
    let on = |v: &Value| v.as_bool().unwrap_or(true);
    for (k, v) in obj {
        if names.iter().any(|n| n.eq_ignore_ascii_case(k)) {
            return on(v);
        }
    }
    obj.get("All").or_else(|| obj.get("all")).is_none_or(on)
}

/// True when identify traits differ from the last ones sent (no earlier traits: changed).
pub fn traits_changed(last: Option<&Value>, now: Option<&Value>) -> bool {
    last.is_none_or(|l| Some(l) != now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn integrations_object_by_name_or_all() {
        let names = ["Slack", "slack", "my-slack"];
        assert!(integrations_allow(&ev(json!({})), &names));
        assert!(!integrations_allow(&ev(json!({"integrations": {"All": false}})), &names));
        assert!(integrations_allow(&ev(json!({"integrations": {"All": false, "Slack": true}})), &names));
        assert!(!integrations_allow(&ev(json!({"integrations": {"slack": false}})), &names));
        assert!(integrations_allow(&ev(json!({"integrations": {"All": false, "my-slack": {"channel": "x"}}})), &names));
        assert!(integrations_allow(&ev(json!({"integrations": {"Mixpanel": false}})), &names));
    }

    #[test]
    fn types_and_names() {
        let handled = vec!["track".to_string(), "identify".to_string()];
        let f = Filters { allow_events: vec!["Buy".into()], deny_events: vec!["Spam".into()], ..Default::default() };
        assert!(static_reason(&f, &handled, &ev(json!({"type": "track", "event": "Buy"})), &[]).is_none());
        assert!(static_reason(&f, &handled, &ev(json!({"type": "track", "event": "Look"})), &[]).unwrap().contains("allow list"));
        assert!(static_reason(&f, &handled, &ev(json!({"type": "page"})), &[]).unwrap().contains("does not handle"));
        let f = Filters { event_types: vec!["identify".into()], deny_events: vec!["Spam".into()], ..Default::default() };
        assert!(static_reason(&f, &handled, &ev(json!({"type": "track", "event": "Buy"})), &[]).unwrap().contains("filtered out"));
        assert!(traits_changed(None, Some(&json!({"a": 1}))));
        assert!(!traits_changed(Some(&json!({"a": 1})), Some(&json!({"a": 1}))));
    }
}
