//! What serde cannot see in a manifest: references between fields, formats of values, lists of
//! allowed words. Each problem names the field it is about.

use super::schema::{validate, Field, FieldType, TEST_VALUES};
use super::{Manifest, CATEGORIES, CHANNELS, TRANSPORTS};
use crate::event::EventType;
use serde_json::Map;

/// Every problem found, as `field: problem`.
pub fn check(m: &Manifest) -> Vec<String> {
    let mut p = Vec::new();
    if !is_slug(&m.slug) {
        p.push(format!("slug: '{}' must be lower-case letters, digits and dashes", m.slug));
    }
    if !is_semver(&m.version) {
        p.push(format!("version: '{}' is not a semantic version such as 1.0.0", m.version));
    }
    if m.name.trim().is_empty() {
        p.push("name: is empty".into());
    }
    if m.description.trim().is_empty() {
        p.push("description: is empty".into());
    }
    if !is_color(&m.branding.color) {
        p.push(format!("branding.color: '{}' must be #rrggbb", m.branding.color));
    }
    for (key, v) in [("website", &m.branding.website), ("docs", &m.branding.docs)] {
        if !v.starts_with("https://") {
            p.push(format!("branding.{key}: '{v}' must be an https:// link"));
        }
    }
    if !m.branding.logo.ends_with(".svg") {
        p.push(format!("branding.logo: '{}' must be an .svg file", m.branding.logo));
    }
    if m.categories.is_empty() {
        p.push("categories: name at least one".into());
    }
    for c in m.categories.iter().filter(|c| !CATEGORIES.contains(&c.as_str())) {
        p.push(format!("categories: '{c}' is not one of {}", CATEGORIES.join(", ")));
    }
    let caps = &m.capabilities;
    for t in caps.event_types.iter().filter(|t| EventType::parse(t).is_none()) {
        p.push(format!("capabilities.event_types: '{t}' is not a Segment event type"));
    }
    for c in caps.channels.iter().filter(|c| !CHANNELS.contains(&c.as_str())) {
        p.push(format!("capabilities.channels: '{c}' is not one of {}", CHANNELS.join(", ")));
    }
    if !TRANSPORTS.contains(&caps.transport.as_str()) {
        p.push(format!("capabilities.transport: '{}' is not one of {}", caps.transport, TRANSPORTS.join(", ")));
    }
    if caps.batching.as_ref().is_some_and(|b| b.max_size < 1) {
        p.push("capabilities.batching.max_size: must be at least 1".into());
    }
    if caps.batching.as_ref().is_some_and(|b| b.default_size.is_some_and(|d| d < 1 || d > b.max_size)) {
        p.push("capabilities.batching.default_size: must be between 1 and max_size".into());
    }
    if let Some(partial) = caps.batching.as_ref().and_then(|b| b.partial.as_ref()) {
        if partial.status.is_empty() || partial.status.iter().any(|s| !(100..=599).contains(s)) {
            p.push("capabilities.batching.partial.status: name the HTTP statuses (100–599) of such answers".into());
        }
        if partial.failed.is_empty() {
            p.push("capabilities.batching.partial.failed: name at least one JSON path".into());
        }
    }
    check_fields(&m.settings, "settings", true, &mut p);
    if m.settings.iter().any(|f| f.key == TEST_VALUES) {
        p.push(format!("settings: '{TEST_VALUES}' is reserved"));
    }
    if m.actions.is_empty() {
        p.push("actions: name at least one".into());
    }
    for (i, a) in m.actions.iter().enumerate() {
        let at = format!("actions[{i}] ({})", a.key);
        if !is_key(&a.key) || m.actions[..i].iter().any(|b| b.key == a.key) {
            p.push(format!("{at}.key: must be a unique lower_snake_case word"));
        }
        if a.subscribe.trim().is_empty() {
            p.push(format!("{at}.subscribe: is empty"));
        }
        check_fields(&a.fields, &format!("{at}.fields"), false, &mut p);
        let http = caps.transport == "http";
        match (&a.request, &a.publish, m.handler.is_some()) {
            (Some(_), Some(_), _) => p.push(format!("{at}: has both request and publish")),
            (None, Some(_), _) if http => p.push(format!("{at}.publish: an http integration sends requests")),
            (Some(_), None, _) if !http => p.push(format!("{at}.request: a {} integration publishes", caps.transport)),
            (None, None, false) => p.push(format!("{at}: needs a request or publish template (or a handler)")),
            _ => {}
        }
    }
    p
}

fn check_fields(fields: &[Field], at: &str, settings: bool, p: &mut Vec<String>) {
    for (i, f) in fields.iter().enumerate() {
        let fat = format!("{at}.{}", f.key);
        if !is_key(&f.key) || fields[..i].iter().any(|g| g.key == f.key) {
            p.push(format!("{fat}: the key must be a unique lower_snake_case word"));
        }
        if f.label.trim().is_empty() {
            p.push(format!("{fat}.label: is empty"));
        }
        let select = matches!(f.ty, FieldType::Select | FieldType::MultiSelect);
        if select == f.options.is_empty() {
            p.push(format!("{fat}.options: {}", if select { "a select needs options" } else { "only selects have options" }));
        }
        if (f.ty == FieldType::ObjectList) == f.fields.is_empty() {
            p.push(format!("{fat}.fields: only object lists have sub-fields, and they need some"));
        }
        if f.ty != FieldType::Url && !f.schemes.is_empty() {
            p.push(format!("{fat}.schemes: only URL fields have schemes"));
        }
        if settings && matches!(f.ty, FieldType::Object | FieldType::Any) {
            p.push(format!("{fat}.type: object and any are for action fields"));
        }
        if let Some(pat) = &f.pattern {
            if regex_lite::Regex::new(pat).is_err() {
                p.push(format!("{fat}.pattern: is not a valid regular expression"));
            }
        }
        for (name, w) in [("visible_when", &f.visible_when), ("required_when", &f.required_when)] {
            if let Some(w) = w {
                if !fields.iter().any(|g| g.key == w.field && g.key != f.key) {
                    p.push(format!("{fat}.{name}.field: '{}' is not another field here", w.field));
                }
            }
        }
        if settings {
            if let Some(d) = &f.default {
                let one = std::slice::from_ref(f);
                let mut probe = Map::new();
                probe.insert(f.key.clone(), d.clone());
                let plain: Vec<Field> = one.iter().map(|f| Field { visible_when: None, required_when: None, ..f.clone() }).collect();
                if let Err(errors) = validate(&plain, &probe) {
                    p.push(format!("{fat}.default: {}", errors[0].message));
                }
            }
            if f.ty == FieldType::ObjectList {
                check_fields(&f.fields, &fat, true, p);
            }
        }
    }
}

fn is_key(s: &str) -> bool {
    !s.is_empty() && s.starts_with(|c: char| c.is_ascii_lowercase()) && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn is_slug(s: &str) -> bool {
    !s.is_empty() && s.starts_with(|c: char| c.is_ascii_lowercase()) && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn is_semver(s: &str) -> bool {
    let core = s.split(['-', '+']).next().unwrap_or_default();
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3 && parts.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) && (p.len() == 1 || !p.starts_with('0')))
}

fn is_color(s: &str) -> bool {
    s.len() == 7 && s.starts_with('#') && s[1..].chars().all(|c| c.is_ascii_hexdigit())
}
