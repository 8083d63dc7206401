//! Messages parsed one level deep, borrowing the request's text. Each top-level field stays the
//! JSON text it arrived as: validation reads the few scalars it checks from that text, and the
//! stored payload is the text as sent, field by field, with what the server sets written after
//! it. Nested objects and arrays (`properties`, `traits`, `context`...) are never taken apart;
//! `context.ip` is appended to the context's text. Building every field as a value and writing it
//! out again was most of a single call's own work (sessions 16 and 19's profiles).

use model::event::{Field, Fields};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::borrow::Cow;

/// A JSON object, one level deep: its fields in the order sent (a repeated key keeps its last
/// value, as when parsing into a map), then the fields the server added.
#[derive(Debug)]
pub struct Shallow<'a> {
    fields: Vec<(Cow<'a, str>, Slot<'a>)>,
}

#[derive(Debug)]
enum Slot<'a> {
    /// The text as sent.
    Sent(&'a RawValue),
    /// An object as sent, with fields added where it has none of that name (`context.ip`).
    Extended(&'a RawValue, Vec<(&'static str, Value)>),
    /// Set by the server.
    Set(Value),
}

impl<'a> Shallow<'a> {
    /// Parses a JSON object's text.
    pub fn parse(text: &'a [u8]) -> serde_json::Result<Shallow<'a>> {
        Shallow::parse_checking(text, Check::All)
    }

    /// Parses a JSON object's text, checking the escapes of the nested fields `check` names; the
    /// others are left to whoever reads them (a batch's messages are checked one by one).
    /// Scalars are always checked as a full parse would: numbers in range, strings' escapes.
    pub fn parse_checking(text: &'a [u8], check: Check) -> serde_json::Result<Shallow<'a>> {
        let RawObject::<false> { fields, .. } = serde_json::from_slice(text)?;
        Shallow::checked(fields, check)
    }

    /// A batch body's fields but `batch`, checked as `parse_checking` checks them, and the texts
    /// of its `batch` array's messages, read in the same pass (reading the array as one field's
    /// text and then again into its messages cost about a tenth of a batch request's server CPU,
    /// README: Benchmark, session 21). None when the body is not an object with a `batch` array:
    /// the general parse then says what is wrong.
    pub fn parse_batch(text: &'a [u8]) -> Option<(Shallow<'a>, Vec<&'a RawValue>)> {
        let RawObject::<true> { fields, batch } = serde_json::from_slice(text).ok()?;
        Some((Shallow::checked(fields, Check::All).ok()?, batch?))
    }

    fn checked(top: Vec<(Key<'a>, &'a RawValue)>, check: Check) -> serde_json::Result<Shallow<'a>> {
        let mut fields: Vec<(Cow<'a, str>, Slot<'a>)> = Vec::with_capacity(top.len() + 6);
        for (Key(key), raw) in top {
            let text = raw.get();
            match text.as_bytes().first() {
                Some(b'{' | b'[') if check.covers(&key) => check_escapes(text)?,
                Some(b'"') => check_escapes(text)?,
                Some(b'-' | b'0'..=b'9') => {
                    serde_json::from_str::<serde_json::Number>(text)?;
                }
                _ => {}
            }
            if let Some(at) = fields.iter().position(|(k, _)| *k == key) {
                fields.remove(at);
            }
            fields.push((key, Slot::Sent(raw)));
        }
        Ok(Shallow { fields })
    }

    fn slot(&self, key: &str) -> Option<&Slot<'a>> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, s)| s)
    }

    /// The text of a field as sent, whatever its kind.
    pub fn sent(&self, key: &str) -> Option<&'a RawValue> {
        match self.slot(key)? {
            Slot::Sent(raw) | Slot::Extended(raw, _) => Some(*raw),
            Slot::Set(_) => None,
        }
    }

    /// The text of a nested field (an object or an array) as sent.
    pub fn raw(&self, key: &str) -> Option<&'a RawValue> {
        self.sent(key).filter(|r| r.get().starts_with(['{', '[']))
    }

    /// Removes a field, returning the text of a nested one.
    pub fn take_raw(&mut self, key: &str) -> Option<&'a RawValue> {
        let raw = self.raw(key);
        self.remove(key);
        raw
    }

    /// Sets a field to text as sent (a batch's context, for one of its messages), unless the
    /// message has the field.
    pub fn default_raw(&mut self, key: &'a str, raw: &'a RawValue) {
        if self.field(key).is_none() {
            self.remove(key);
            self.fields.push((Cow::Borrowed(key), Slot::Sent(raw)));
        }
    }

    /// Sets a field (in place when the message has it).
    pub fn set(&mut self, key: &'static str, value: Value) {
        match self.fields.iter_mut().find(|(k, _)| k == key) {
            Some((_, slot)) => *slot = Slot::Set(value),
            None => self.fields.push((Cow::Borrowed(key), Slot::Set(value))),
        }
    }

    pub fn remove(&mut self, key: &str) {
        self.fields.retain(|(k, _)| k != key);
    }

    /// Adds `name` to the object `key` unless it has a field of that name; an absent object is
    /// created. A field that is not an object is left alone (validation refuses it).
    pub fn add_to_object(&mut self, key: &'static str, name: &'static str, value: Value) {
        let Some((_, slot)) = self.fields.iter_mut().find(|(k, _)| k == key) else {
            self.set(key, Value::Object(Map::from_iter([(name.to_string(), value)])));
            return;
        };
        match slot {
            Slot::Sent(raw) if raw.get() == "null" => *slot = Slot::Set(Value::Object(Map::from_iter([(name.to_string(), value)]))),
            Slot::Sent(raw) if raw.get().starts_with('{') => {
                let raw = *raw;
                *slot = Slot::Extended(raw, vec![(name, value)]);
            }
            Slot::Extended(_, added) if !added.iter().any(|(k, _)| *k == name) => added.push((name, value)),
            Slot::Set(Value::Object(object)) => {
                object.entry(name).or_insert(value);
            }
            _ => {}
        }
    }

    /// A string field's text.
    pub fn str_field(&self, key: &str) -> Option<Cow<'_, str>> {
        match self.field(key)? {
            Field::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The string form of an id field (numbers become their decimal text).
    pub fn id_text(&self, key: &str) -> Option<String> {
        match self.field(key)? {
            Field::Str(s) => Some(s.into_owned()),
            Field::Number => self.value(key).map(|v| v.to_string()),
            _ => None,
        }
    }

    /// A field as a value (`None` when absent or not readable).
    pub fn value(&self, key: &str) -> Option<Value> {
        match self.slot(key)? {
            Slot::Sent(raw) => serde_json::from_str(raw.get()).ok(),
            slot @ Slot::Extended(..) => serde_json::from_str(&self.text(slot)).ok(),
            Slot::Set(v) => Some(v.clone()),
        }
    }

    /// A field's JSON text.
    pub fn text_of(&self, key: &str) -> Option<String> {
        self.slot(key).map(|s| self.text(s))
    }

    fn text(&self, slot: &Slot) -> String {
        let mut out = Vec::new();
        write_slot(&mut out, slot);
        String::from_utf8(out).expect("JSON text is UTF-8")
    }

    /// The length of the object's text, near enough for a size limit.
    pub fn size(&self) -> usize {
        let field = |slot: &Slot| match slot {
            Slot::Sent(raw) | Slot::Extended(raw, _) => raw.get().len(),
            Slot::Set(v) => scalar_len(v),
        };
        self.fields.iter().map(|(k, s)| k.len() + 4 + field(s)).sum::<usize>() + 2
    }

    /// The object's JSON text. Fields sent as `null` are left out (they count as absent).
    pub fn to_json(&self) -> String {
        let sent: usize = self.fields.iter().map(|(k, s)| k.len() + 4 + if let Slot::Sent(r) | Slot::Extended(r, _) = s { r.get().len() } else { 32 }).sum();
        let mut out: Vec<u8> = Vec::with_capacity(sent + 64);
        out.push(b'{');
        for (key, slot) in &self.fields {
            if matches!(slot, Slot::Sent(raw) if raw.get() == "null") {
                continue;
            }
            if out.len() > 1 {
                out.push(b',');
            }
            write(&mut out, key.as_ref());
            out.push(b':');
            write_slot(&mut out, slot);
        }
        out.push(b'}');
        String::from_utf8(out).expect("JSON text is UTF-8")
    }

    /// The whole object as a value (for the live feed and rejected messages).
    pub fn into_value(self) -> Value {
        serde_json::from_str(&self.to_json()).unwrap_or(Value::Null)
    }

    /// The object as a value whose unreadable fields are their text, for a message whose text
    /// cannot be read whole (it is shown as sent).
    pub fn into_value_unchecked(self) -> Value {
        let fields = self.fields.iter().map(|(k, slot)| {
            let text = self.text(slot);
            let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
            (k.to_string(), value)
        });
        Value::Object(fields.collect())
    }
}

impl Fields for Shallow<'_> {
    fn field(&self, key: &str) -> Option<Field<'_>> {
        match self.slot(key)? {
            Slot::Sent(raw) | Slot::Extended(raw, _) => kind(raw.get()),
            Slot::Set(v) => match v {
                Value::Null => None,
                Value::String(s) => Some(Field::Str(Cow::Borrowed(s))),
                Value::Number(_) => Some(Field::Number),
                Value::Bool(_) => Some(Field::Bool),
                Value::Object(_) => Some(Field::Object),
                Value::Array(_) => Some(Field::Array),
            },
        }
    }
}

/// What a value's text is (`null`: absent); a string's text is read without copying unless it
/// has escapes.
fn kind(text: &str) -> Option<Field<'_>> {
    Some(match text.as_bytes().first()? {
        b'"' if !text.contains('\\') => Field::Str(Cow::Borrowed(&text[1..text.len() - 1])),
        b'"' => Field::Str(Cow::Owned(serde_json::from_str(text).ok()?)),
        b'{' => Field::Object,
        b'[' => Field::Array,
        b't' | b'f' => Field::Bool,
        b'n' => return None,
        _ => Field::Number,
    })
}

fn write_slot(out: &mut Vec<u8>, slot: &Slot) {
    match slot {
        Slot::Sent(raw) => out.extend_from_slice(raw.get().as_bytes()),
        Slot::Extended(raw, added) => merge(out, raw, added),
        Slot::Set(v) => write(out, v),
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

/// A key as sent: borrowed from the text unless it has escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_string())))
            }
            fn visit_string<E>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        d.deserialize_str(Visit)
    }
}

/// A JSON object's fields in order, each value as its text; with `SPLIT_BATCH`, a `batch` field
/// (the last one sent, as for any field) is split into its elements' texts instead.
struct RawObject<'a, const SPLIT_BATCH: bool> {
    fields: Vec<(Key<'a>, &'a RawValue)>,
    batch: Option<Vec<&'a RawValue>>,
}

impl<'de, const SPLIT_BATCH: bool> serde::Deserialize<'de> for RawObject<'de, SPLIT_BATCH> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields<const S: bool>;
        impl<'de, const S: bool> serde::de::Visitor<'de> for Fields<S> {
            type Value = RawObject<'de, S>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<RawObject<'de, S>, A::Error> {
                let mut object = RawObject { fields: Vec::with_capacity(map.size_hint().unwrap_or(12)), batch: None };
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    if S && key.0 == "batch" {
                        object.batch = Some(map.next_value()?);
                    } else {
                        object.fields.push((key, map.next_value()?));
                    }
                }
                Ok(object)
            }
        }
        d.deserialize_map(Fields::<SPLIT_BATCH>)
    }
}

/// Text kept as sent is checked like text that is parsed: `\u` escapes of UTF-16 surrogates must
/// pair up (a lone one cannot become a string, and would fail whoever reads the event later).
fn check_escapes(text: &str) -> serde_json::Result<()> {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(at) = text.get(from..).and_then(|rest| rest.find('\\')) {
        let at = from + at;
        match bytes.get(at + 1) {
            Some(b'u') if matches!(bytes.get(at + 2), Some(b'd' | b'D')) => {
                serde_json::from_str::<Value>(text)?;
                return Ok(());
            }
            // An escaped character: skip both (`\\` must not start another escape).
            _ => from = at + 2,
        }
    }
    Ok(())
}

/// A nested object's text with fields added where it has none of that name: the fields are
/// appended to the text as sent. Only its keys are read, and only when its text could hold the
/// name (quoted, or with escapes).
fn merge(out: &mut Vec<u8>, raw: &RawValue, added: &[(&'static str, Value)]) {
    let text = raw.get();
    let could_have = |name: &str| text.contains('\\') || text.contains(&format!("\"{name}\""));
    let keys = if added.iter().any(|(name, _)| could_have(name)) {
        match serde_json::from_str::<Keys>(text) {
            Ok(Keys(keys)) => keys,
            Err(_) => return out.extend_from_slice(text.as_bytes()),
        }
    } else {
        Vec::new()
    };
    // An object's text ends with its closing brace (a raw value carries no whitespace around it).
    out.extend_from_slice(&text.as_bytes()[..text.len() - 1]);
    let mut empty = text[1..text.len() - 1].trim().is_empty();
    for (k, v) in added.iter().filter(|(k, _)| !keys.iter().any(|have| have == k)) {
        if !empty {
            out.push(b',');
        }
        empty = false;
        write(out, k);
        out.push(b':');
        write(out, v);
    }
    out.push(b'}');
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
                while let Some((Key(k), serde::de::IgnoredAny)) = map.next_entry::<Key<'de>, serde::de::IgnoredAny>()? {
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
        other => other.to_string().len(),
    }
}

#[cfg(test)]
#[path = "shallow_tests.rs"]
mod tests;
