//! Integrations that are code: a manifest still describes them (settings, actions, fixtures), and
//! a Rust type does what a template cannot.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use model::integration::Request;
use model::mapping::{Built, Prepared};
use model::FieldError;
use serde_json::{Map, Value};
use sha2::Sha256;

/// What a code integration may change about the declarative behaviour.
pub trait Integration: Send + Sync {
    /// Checks beyond the settings schema.
    fn validate(&self, _settings: &Map<String, Value>) -> Vec<FieldError> {
        Vec::new()
    }

    /// Maps events to requests; `now` is the send time in seconds (fixtures fix it).
    fn map(&self, prepared: &Prepared, settings: &Map<String, Value>, events: &[&Value], _now: i64) -> Vec<Built> {
        prepared.build(settings, events)
    }
}

/// Manifests without a handler.
pub struct Declarative;
impl Integration for Declarative {}

/// Standard Webhooks signatures on top of the declarative request.
pub struct Webhook;

impl Integration for Webhook {
    fn validate(&self, settings: &Map<String, Value>) -> Vec<FieldError> {
        match settings.get("signing_secret").and_then(Value::as_str) {
            Some(s) if secret_key(s).is_none() => {
                vec![FieldError { field: "signing_secret".into(), message: "must be whsec_ followed by base64".into() }]
            }
            _ => Vec::new(),
        }
    }

    fn map(&self, prepared: &Prepared, settings: &Map<String, Value>, events: &[&Value], now: i64) -> Vec<Built> {
        let mut built = prepared.build(settings, events);
        let key = settings.get("signing_secret").and_then(Value::as_str).and_then(secret_key);
        for b in &mut built {
            if let Built::Request { events: idx, request: Request::Http(req), .. } = b {
                let ids: Vec<&str> = idx.iter().map(|i| events[*i].get("messageId").and_then(Value::as_str).unwrap_or_default()).collect();
                let id = match ids.as_slice() {
                    [one] => one.to_string(),
                    // A batch: the same events give the same id, so a retried batch can be recognised.
                    many => format!("batch_{}", &hex::encode(<Sha256 as sha2::Digest>::digest(many.join(",").as_bytes()))[..32]),
                };
                let body = req.json.as_ref().map(|j| j.to_string()).unwrap_or_default();
                req.headers.insert("webhook-id".into(), id.clone());
                req.headers.insert("webhook-timestamp".into(), now.to_string());
                if let Some(key) = &key {
                    req.headers.insert("webhook-signature".into(), sign(key, &id, now, &body));
                }
                req.body = req.json.is_some().then_some(body);
            }
        }
        built
    }
}

/// The key bytes of a `whsec_…` secret.
fn secret_key(secret: &str) -> Option<Vec<u8>> {
    B64.decode(secret.strip_prefix("whsec_")?).ok().filter(|k| !k.is_empty())
}

/// `v1,` and the base64 HMAC-SHA256 of `{id}.{timestamp}.{body}` (Standard Webhooks).
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}

/// Handler names this build knows.
pub fn known(name: &str) -> bool {
    matches!(name, "webhook")
}

/// The code behind a manifest.
pub fn for_handler(name: Option<&str>) -> &'static dyn Integration {
    match name {
        Some("webhook") => &Webhook,
        _ => &Declarative,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // The example in the Standard Webhooks specification.
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body), "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
