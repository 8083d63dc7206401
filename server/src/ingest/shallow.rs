//! Messages parsed one level deep. Top-level fields that are scalars become values (validation
//! and enrichment read and write only those); nested objects and arrays (`properties`, `traits`,
//! `context`...) stay the JSON text they arrived as until something must look inside, which on
//! the way to the event log is only `context.ip`. Building them as values and writing them out
//! again was the largest part of a single call's own work (session 16's profile).

use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// A JSON object, one level deep.
#[derive(Debug)]
pub struct Shallow {
    /// Every top-level field. A nested object or array stands here as an empty placeholder of
    /// its kind (what validation asks of it is its kind); fields added to a placeholder object
    /// (`context.ip`) are merged into its text on output.
    pub fields: Map<String, Value>,
    /// The text of each nested field, as sent.
    nested: Vec<(String, Box<RawValue>)>,
}

impl Shallow {
    /// Parses a JSON object's text.
    pub fn parse(text: &[u8]) -> serde_json::Result<Shallow> {
        Shallow::parse_checking(text, Check::All)
    }

    /// Parses a JSON object's text, checking the escapes of the nested fields `check` names; the
    /// others are left to whoever reads them (a batch's messages are checked one by one).
    pub fn parse_checking(text: &[u8], check: Check) -> serde_json::Result<Shallow> {
        let top: Vec<(String, Box<RawValue>)> = serde_json::from_slice::<RawObject>(text)?.0;
        let mut fields = Map::new();
        let mut nested: Vec<(String, Box<RawValue>)> = Vec::new();
        for (key, raw) in top {
            // A key sent twice: the last one wins, as when parsing into a map.
            if nested.iter().any(|(k, _)| *k == key) {
                nested.retain(|(k, _)| *k != key);
            }
            let placeholder = match raw.get().as_bytes().first() {
                Some(b'{') => Value::Object(Map::new()),
                Some(b'[') => Value::Array(Vec::new()),
                _ => {
                    fields.insert(key, serde_json::from_str(raw.get())?);
                    continue;
                }
            };
            if check.covers(&key) {
                check_escapes(raw.get())?;
            }
            fields.insert(key.clone(), placeholder);
            nested.push((key, raw));
        }
        Ok(Shallow { fields, nested })
    }

    /// The text of a nested field.
    pub fn raw(&self, key: &str) -> Option<&RawValue> {
        if !matches!(self.fields.get(key), Some(Value::Object(_) | Value::Array(_))) {
            return None;
        }
        self.nested.iter().find(|(k, _)| k == key).map(|(_, r)| &**r)
    }

    /// Removes a field, returning the text of a nested one.
    pub fn take_raw(&mut self, key: &str) -> Option<Box<RawValue>> {
        self.fields.remove(key);
        let at = self.nested.iter().position(|(k, _)| k == key)?;
        Some(self.nested.swap_remove(at).1)
    }

    /// Sets a field to a nested value given as text, unless the message has the field.
    pub fn default_raw(&mut self, key: &str, raw: &RawValue) {
        if self.fields.contains_key(key) {
            return;
        }
        let placeholder = if raw.get().starts_with('[') { Value::Array(Vec::new()) } else { Value::Object(Map::new()) };
        self.fields.insert(key.to_string(), placeholder);
        self.nested.push((key.to_string(), raw.to_owned()));
    }

    /// The length of the object's text, near enough for a size limit (the nested fields as
    /// sent, the scalars as they will be written).
    pub fn size(&self) -> usize {
        let nested: usize = self.nested.iter().map(|(k, r)| k.len() + r.get().len() + 4).sum();
        let scalars: usize = self.fields.iter().filter(|(k, _)| self.raw(k).is_none()).map(|(k, v)| k.len() + 4 + scalar_len(v)).sum();
        nested + scalars + 2
    }

    /// The object's JSON text.
    pub fn to_json(&self) -> String {
        // Room for the nested text and a generous share per scalar (`size` would look each up).
        let nested: usize = self.nested.iter().map(|(k, r)| k.len() + r.get().len() + 4).sum();
        let mut out: Vec<u8> = Vec::with_capacity(nested + 48 * self.fields.len() + 2);
        out.push(b'{');
        for (i, (key, value)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write(&mut out, key);
            out.push(b':');
            match (self.raw(key), value) {
                (Some(raw), Value::Object(added)) if !added.is_empty() => out.extend_from_slice(merged(raw, added).as_bytes()),
                (Some(raw), _) => out.extend_from_slice(raw.get().as_bytes()),
                (None, v) => write(&mut out, v),
            }
        }
        out.push(b'}');
        String::from_utf8(out).expect("JSON text is UTF-8")
    }

    /// The whole object as a value (for the live feed and rejected messages).
    pub fn into_value(self) -> Value {
        serde_json::from_str(&self.to_json()).unwrap_or(Value::Null)
    }

    /// The object as a value whose nested fields are their text, for a message whose text cannot
    /// be read whole (it is shown as sent).
    pub fn into_value_unchecked(self) -> Value {
        let mut fields = self.fields;
        for (k, raw) in self.nested {
            if let Some(v @ (Value::Object(_) | Value::Array(_))) = fields.get_mut(&k) {
                *v = Value::String(raw.get().to_string());
            }
        }
        Value::Object(fields)
    }
}

/// Which nested fields `Shallow::parse_checking` checks for escapes that cannot become text.
#[derive(Clone, Copy)]
pub enum Check<'a> {
    All,
    AllBut(&'a str),
    None,
}

impl Check<'_> {
    fn covers(self, key: &str) -> bool {
        match self {
            Check::All => true,
            Check::AllBut(skipped) => skipped != key,
            Check::None => false,
        }
    }
}

/// A JSON object's fields in order, each value as its text.
struct RawObject(Vec<(String, Box<RawValue>)>);

impl<'de> serde::Deserialize<'de> for RawObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = RawObject;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<RawObject, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(12));
                while let Some(entry) = map.next_entry::<String, Box<RawValue>>()? {
                    fields.push(entry);
                }
                Ok(RawObject(fields))
            }
        }
        d.deserialize_map(Fields)
    }
}

/// Text kept as sent is checked like text that is parsed: `\u` escapes of UTF-16 surrogates must
/// pair up (a lone one cannot become a string, and would fail whoever reads the event later).
fn check_escapes(text: &str) -> serde_json::Result<()> {
    let suspicious = text.match_indices("\\u").any(|(at, _)| matches!(text.as_bytes().get(at + 2), Some(b'd' | b'D')));
    if suspicious {
        serde_json::from_str::<Value>(text)?;
    }
    Ok(())
}

/// A nested object's text with fields added where it has none of that name. The fields are
/// appended to the text as sent: only its keys are read (parsing and writing it again as a
/// `Shallow` was a tenth of a single call's handler, for `context.ip`).
fn merged(raw: &RawValue, added: &Map<String, Value>) -> String {
    let text = raw.get();
    let Ok(Keys(keys)) = serde_json::from_str::<Keys>(text) else {
        return text.to_string();
    };
    let mut out = Vec::with_capacity(text.len() + 48 * added.len());
    // An object's text ends with its closing brace (a raw value carries no whitespace around it).
    out.extend_from_slice(&text.as_bytes()[..text.len() - 1]);
    let mut empty = keys.is_empty();
    for (k, v) in added.iter().filter(|(k, _)| !keys.iter().any(|have| have == k.as_str())) {
        if !empty {
            out.push(b',');
        }
        empty = false;
        write(&mut out, k);
        out.push(b':');
        write(&mut out, v);
    }
    out.push(b'}');
    String::from_utf8(out).expect("JSON text is UTF-8")
}

/// The keys of a JSON object (its values are skipped).
struct Keys(Vec<String>);

impl<'de> serde::Deserialize<'de> for Keys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Keys;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Keys, A::Error> {
                let mut keys = Vec::new();
                while let Some((k, serde::de::IgnoredAny)) = map.next_entry::<std::borrow::Cow<'de, str>, serde::de::IgnoredAny>()? {
                    keys.push(k.into_owned());
                }
                Ok(Keys(keys))
            }
        }
        d.deserialize_map(Visit)
    }
}

fn write<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    serde_json::to_writer(out, value).expect("strings and JSON values serialize");
}

fn scalar_len(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len() + 2,
        Value::Null => 4,
        Value::Bool(_) => 5,
        Value::Number(_) => 8,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_nested_text_and_writes_scalars() {
        let text = r#"{"userId":"u1","properties":{"total":42.5, "items":[1,2]},"context":{"library":{"name":"x"}},"n":null,"tags":["a"]}"#;
        let mut m = Shallow::parse(text.as_bytes()).unwrap();
        assert_eq!(m.fields["userId"], "u1");
        assert!(m.fields["properties"].is_object() && m.fields["tags"].is_array());
        assert_eq!(m.raw("properties").unwrap().get(), r#"{"total":42.5, "items":[1,2]}"#);
        m.fields.remove("n");
        m.fields.insert("messageId".into(), json!("m-1"));
        if let Some(Value::Object(ctx)) = m.fields.get_mut("context") {
            ctx.insert("ip".into(), json!("10.0.0.1"));
        }
        let out: Value = serde_json::from_str(&m.to_json()).unwrap();
        assert_eq!(
            out,
            json!({"userId": "u1", "messageId": "m-1", "properties": {"total": 42.5, "items": [1, 2]},
                   "context": {"library": {"name": "x"}, "ip": "10.0.0.1"}, "tags": ["a"]})
        );
    }

    #[test]
    fn a_given_context_ip_wins_and_a_new_context_is_written() {
        let mut m = Shallow::parse(r#"{"context":{"ip":"1.1.1.1"}}"#.as_bytes()).unwrap();
        if let Some(Value::Object(ctx)) = m.fields.get_mut("context") {
            ctx.insert("ip".into(), json!("10.0.0.1"));
        }
        assert_eq!(m.to_json(), r#"{"context":{"ip":"1.1.1.1"}}"#);
        let mut m = Shallow::parse(r#"{"a":1}"#.as_bytes()).unwrap();
        m.fields.insert("context".into(), json!({"ip": "10.0.0.1"}));
        assert_eq!(m.to_json(), r#"{"a":1,"context":{"ip":"10.0.0.1"}}"#);
    }

    #[test]
    fn added_context_fields_follow_the_text_as_sent() {
        let with_ip = |text: &str| {
            let mut m = Shallow::parse(text.as_bytes()).unwrap();
            if let Some(Value::Object(ctx)) = m.fields.get_mut("context") {
                ctx.insert("ip".into(), json!("10.0.0.1"));
            }
            m.to_json()
        };
        assert_eq!(with_ip(r#"{"context":{"z":1, "a":{"b":[1]}}}"#), r#"{"context":{"z":1, "a":{"b":[1]},"ip":"10.0.0.1"}}"#);
        assert_eq!(with_ip(r#"{"context":{ }}"#), r#"{"context":{ "ip":"10.0.0.1"}}"#);
        assert_eq!(with_ip(r#"{"context":{}}"#), r#"{"context":{"ip":"10.0.0.1"}}"#);
        assert_eq!(with_ip(r#"{"context":{"i\u0070":"1.1.1.1"}}"#), r#"{"context":{"i\u0070":"1.1.1.1"}}"#, "an escaped key is still the same key");
        let out: Value = serde_json::from_str(&with_ip(r#"{"context":{"a":"x","ip":null}}"#)).unwrap();
        assert_eq!(out["context"]["ip"], Value::Null, "a given ip is kept, even null");
    }

    #[test]
    fn refuses_what_a_full_parse_refuses() {
        assert!(Shallow::parse(r#"{"p":{"a":"\ud800"}}"#.as_bytes()).is_err(), "a lone surrogate");
        assert!(Shallow::parse(r#"{"p":{"a":"\ud83d\ude00"}}"#.as_bytes()).is_ok(), "a pair");
        assert!(Shallow::parse(r#"{"p":{"a":1,}}"#.as_bytes()).is_err());
        assert!(Shallow::parse(r#"[1]"#.as_bytes()).is_err());
        assert!(Shallow::parse("{\"p\":{\"a\":\"x\u{1}\"}}".as_bytes()).is_err(), "a control character");
    }

    #[test]
    fn the_last_of_a_repeated_key_wins() {
        let m = Shallow::parse(r#"{"p":{"a":1},"p":{"b":2},"s":1,"s":2}"#.as_bytes()).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&m.to_json()).unwrap(), json!({"p": {"b": 2}, "s": 2}));
    }
}
