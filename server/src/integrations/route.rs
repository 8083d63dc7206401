//! Whether a destination takes an event: its filters (event types, allow/deny lists, the
//! condition) and the event's `integrations` object. The router of the delivery engine and test
//! deliveries use the same check.

use super::Loaded;
use model::integration::filters::{static_reason, Filters};
use model::mapping::{Condition, Ctx};
use serde_json::Value;

/// `None` when the destination takes the event, else why not.
pub fn filtered(loaded: &Loaded, destination_name: &str, filters: &Value, event: &Value) -> Option<String> {
    let f: Filters = serde_json::from_value(filters.clone()).unwrap_or_default();
    let m = &loaded.manifest;
    let obj = event.as_object()?;
    let names = [m.name.as_str(), m.slug.as_str(), destination_name];
    if let Some(reason) = static_reason(&f, &m.capabilities.event_types, obj, &names) {
        return Some(reason);
    }
    let condition = f.condition.as_deref().filter(|c| !c.trim().is_empty())?;
    match Condition::compile(condition).and_then(|c| c.holds(&Ctx::new(event))) {
        Ok(true) => None,
        Ok(false) => Some(format!("the condition '{condition}' does not hold")),
        Err(e) => Some(e),
    }
}
