//! Fixtures: settings and input events with the requests (or rejections) they must produce.
//! `switchyard integrations test` runs them; the format is in docs/integrations.md.

use super::{handlers, settings, Loaded};
use model::integration::Request;
use model::mapping::{effective_settings, Built, Prepared};
use serde_json::{json, Map, Value};

/// The default send time of fixtures (seconds): 2026-01-01T00:00:00Z.
pub const FIXTURE_NOW: i64 = 1_767_225_600;

/// Actions whose requests a fixture expects.
pub fn expected_actions(doc: &Value) -> impl Iterator<Item = &str> {
    expectations(doc)
        .filter(|e| e.get("request").is_some() || e.get("publish").is_some())
        .filter_map(|e| e.get("action").and_then(Value::as_str))
}

/// True when the fixture expects a rejected event or invalid settings.
pub fn expects_rejection(doc: &Value) -> bool {
    doc.get("expect_settings_errors").is_some() || expectations(doc).any(|e| e.get("rejected").is_some())
}

fn expectations(doc: &Value) -> impl Iterator<Item = &Value> {
    doc.get("expect").and_then(Value::as_array).into_iter().flatten()
}

/// Runs one fixture; `Err` says how the outcome differed from the expectation.
pub fn run(loaded: &Loaded, doc: &Value) -> Result<(), String> {
    let empty = Map::new();
    let incoming = doc.get("settings").and_then(Value::as_object).unwrap_or(&empty);
    let settings = settings::prepare(loaded, incoming, None);
    if let Some(want) = doc.get("expect_settings_errors").and_then(Value::as_array) {
        let got = match settings {
            Ok(_) => return Err("the settings were accepted, but errors were expected".into()),
            Err(errors) => errors,
        };
        for w in want {
            let field = w.get("field").and_then(Value::as_str).unwrap_or_default();
            let found = got.iter().any(|g| {
                g.field == field && w.get("message").and_then(Value::as_str).is_none_or(|m| g.message.contains(m))
            });
            if !found {
                return Err(format!("expected a settings error {w}, got {}", serde_json::to_string(&got).unwrap_or_default()));
            }
        }
        return Ok(());
    }
    let settings = settings.map_err(|e| format!("settings rejected: {}", serde_json::to_string(&e).unwrap_or_default()))?;
    let actions = doc.get("actions").and_then(Value::as_object).unwrap_or(&empty);
    let batch_size = doc.get("batch_size").and_then(Value::as_u64).map(|n| n as u32);
    let prepared = Prepared::new(&loaded.manifest, actions).map_err(|e| format!("actions: {e}"))?.with_batch_size(&loaded.manifest, batch_size);
    let events: Vec<Value> = match (doc.get("event"), doc.get("events").and_then(Value::as_array)) {
        (Some(e), None) => vec![e.clone()],
        (None, Some(list)) => list.clone(),
        _ => return Err("give either 'event' or 'events'".into()),
    };
    let now = doc.get("now").and_then(Value::as_i64).unwrap_or(FIXTURE_NOW);
    let test = doc.get("test").and_then(Value::as_bool).unwrap_or(false);
    let built = handlers::for_handler(loaded.manifest.handler.as_deref()).map(&prepared, &effective_settings(&settings, test), &events.iter().collect::<Vec<_>>(), now);
    let got: Vec<Value> = built.iter().map(outcome).collect();
    let want: Vec<&Value> = expectations(doc).collect();
    if got.len() != want.len() {
        return Err(format!("expected {} outcome(s), got {}: {}", want.len(), got.len(), pretty(&Value::Array(got))));
    }
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        if !matches(g, w) {
            return Err(format!("outcome {i} differs\n  expected: {}\n  got:      {}", pretty(w), pretty(g)));
        }
    }
    Ok(())
}

fn outcome(b: &Built) -> Value {
    match b {
        Built::Request { action, events, request: Request::Http(r) } => json!({"action": action, "events": events, "request": r}),
        Built::Request { action, events, request: Request::Publish(p) } => json!({"action": action, "events": events, "publish": p}),
        Built::Rejected { action, event, reason } => json!({"action": action, "event": event, "rejected": reason}),
    }
}

/// Requests and messages must be equal; a rejection must contain the expected text; `events`
/// and `event` are compared only when the fixture names them.
fn matches(got: &Value, want: &Value) -> bool {
    let Some(w) = want.as_object() else { return false };
    w.iter().all(|(k, wv)| match (k.as_str(), got.get(k)) {
        ("rejected", Some(Value::String(g))) => wv.as_str().is_some_and(|w| g.contains(w)),
        (_, Some(g)) => g == wv,
        (_, None) => false,
    })
}

fn pretty(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}
