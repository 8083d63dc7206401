//! A destination's settings on the server: secrets kept when the client sends them back masked or
//! leaves them out, generated where the manifest says so, validated by the schema and the
//! integration's code, and masked on the way out.

use super::{handlers, Loaded};
use base64::Engine as _;
use model::integration::schema::{self, FieldType, TEST_VALUES};
use model::integration::Field;
use model::mapping::{Condition, Prepared};
use model::FieldError;
use rand::RngCore;
use serde_json::{Map, Value};

/// What a masked secret looks like in API answers; sending it back keeps the stored value.
pub const MASK: &str = "••••••";

fn is_secret(f: &Field) -> bool {
    f.ty == FieldType::Secret
}

/// Checks new settings for an integration. `existing`: the stored settings (update), whose secrets
/// are kept when `incoming` leaves them out or sends them masked.
pub fn prepare(loaded: &Loaded, incoming: &Map<String, Value>, existing: Option<&Map<String, Value>>) -> Result<Map<String, Value>, Vec<FieldError>> {
    let fields = &loaded.manifest.settings;
    let mut s = incoming.clone();
    keep_secrets(fields, &mut s, existing);
    if let (Some(Value::Object(test)), Some(old)) = (s.get_mut(TEST_VALUES), existing.and_then(|e| e.get(TEST_VALUES)).and_then(Value::as_object)) {
        keep_secrets(fields, test, Some(old));
    }
    for f in fields.iter().filter(|f| is_secret(f)) {
        if let Some(prefix) = &f.generate {
            if s.get(&f.key).is_none_or(schema::is_empty) {
                s.insert(f.key.clone(), Value::String(generate(prefix)));
            }
        }
    }
    let valid = schema::validate(fields, &s)?;
    let errors = handlers::for_handler(loaded.manifest.handler.as_deref()).validate(&valid);
    if errors.is_empty() {
        Ok(valid)
    } else {
        Err(errors)
    }
}

/// The password in a URL's user info (`scheme://user:password@host/…`), as byte range.
fn url_password(url: &str) -> Option<std::ops::Range<usize>> {
    let start = url.find("://")? + 3;
    let authority_end = url[start..].find(['/', '?', '#']).map_or(url.len(), |i| start + i);
    let at = url[start..authority_end].rfind('@')? + start;
    let colon = url[start..at].find(':')? + start;
    (colon + 1 < at).then_some(colon + 1..at)
}

/// The URL with its password replaced by the mask.
pub fn mask_url(url: &str) -> String {
    match url_password(url) {
        Some(r) => format!("{}{MASK}{}", &url[..r.start], &url[r.end..]),
        None => url.to_string(),
    }
}

/// The password of a URL, if it has one (a secret to redact).
pub fn url_secret(url: &str) -> Option<&str> {
    url_password(url).map(|r| &url[r])
}

fn keep_secrets(fields: &[Field], s: &mut Map<String, Value>, existing: Option<&Map<String, Value>>) {
    // A URL sent back with its password masked keeps the stored password.
    for f in fields.iter().filter(|f| f.ty == FieldType::Url) {
        let old = existing.and_then(|e| e.get(&f.key)).and_then(Value::as_str);
        if let (Some(Value::String(new)), Some(old)) = (s.get_mut(&f.key), old) {
            if let (Some(r), Some(pw)) = (url_password(new).filter(|r| &new[r.clone()] == MASK), url_secret(old)) {
                *new = format!("{}{pw}{}", &new[..r.start], &new[r.end..]);
            }
        }
    }
    for f in fields.iter().filter(|f| is_secret(f)) {
        let sent = s.get(&f.key);
        let masked = sent.is_none() || sent.and_then(Value::as_str) == Some(MASK);
        if masked {
            match existing.and_then(|e| e.get(&f.key)) {
                Some(old) => {
                    s.insert(f.key.clone(), old.clone());
                }
                None => {
                    s.remove(&f.key);
                }
            }
        }
    }
}

/// `prefix` followed by 24 random bytes in base64.
pub fn generate(prefix: &str) -> String {
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// The settings with every secret value replaced by [`MASK`].
pub fn mask(loaded: &Loaded, settings: &Map<String, Value>) -> Map<String, Value> {
    let mut out = settings.clone();
    mask_in(&loaded.manifest.settings, &mut out);
    if let Some(Value::Object(test)) = out.get_mut(TEST_VALUES) {
        mask_in(&loaded.manifest.settings, test);
    }
    out
}

fn mask_in(fields: &[Field], s: &mut Map<String, Value>) {
    for f in fields {
        match (f.ty, s.get_mut(&f.key)) {
            (FieldType::Secret, Some(v)) => *v = Value::String(MASK.into()),
            (FieldType::Url, Some(Value::String(u))) => *u = mask_url(u),
            _ => {}
        }
    }
}

/// Splits settings into (plain, secret) maps; secrets include those under `test_values`.
pub fn split_secrets(loaded: &Loaded, settings: &Map<String, Value>) -> (Map<String, Value>, Map<String, Value>) {
    let mut plain = settings.clone();
    let mut secret = Map::new();
    for f in loaded.manifest.settings.iter().filter(|f| is_secret(f)) {
        if let Some(v) = plain.remove(&f.key) {
            secret.insert(f.key.clone(), v);
        }
        if let Some(Value::Object(test)) = plain.get_mut(TEST_VALUES) {
            if let Some(v) = test.remove(&f.key) {
                secret.insert(format!("{TEST_VALUES}.{}", f.key), v);
            }
        }
    }
    (plain, secret)
}

/// Puts secrets split off by [`split_secrets`] back.
pub fn join_secrets(plain: &Map<String, Value>, secret: &Map<String, Value>) -> Map<String, Value> {
    let mut out = plain.clone();
    for (k, v) in secret {
        match k.strip_prefix(&format!("{TEST_VALUES}.")) {
            Some(key) => {
                let test = out.entry(TEST_VALUES).or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(t) = test {
                    t.insert(key.to_string(), v.clone());
                }
            }
            None => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out
}

/// Checks action overrides (`{action: {enabled, mapping}}`) and a filter condition.
pub fn check_actions(loaded: &Loaded, actions: &Map<String, Value>, condition: Option<&str>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Err(e) = Prepared::new(&loaded.manifest, actions) {
        errors.push(FieldError { field: e.at, message: e.message });
    }
    if let Some(Err(m)) = condition.map(Condition::compile) {
        errors.push(FieldError { field: "filters.condition".into(), message: m });
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_passwords_are_masked_and_kept() {
        assert_eq!(mask_url("amqp://guest:guest@127.0.0.1:5672/%2f"), format!("amqp://guest:{MASK}@127.0.0.1:5672/%2f"));
        assert_eq!(mask_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(mask_url("https://h.example/a@b"), "https://h.example/a@b");
        assert_eq!(url_secret("postgres://u:p%40ss@db/x"), Some("p%40ss"));
    }
}
