//! The settings schema: typed fields with validation, conditional visibility and requiredness.
//! Validation returns one error per field and runs the same in the server and in the browser.

use crate::api::FieldError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The key under which a destination's settings hold test values for credential fields.
pub const TEST_VALUES: &str = "test_values";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    String,
    /// Several lines of text.
    Text,
    /// Write-only: encrypted at rest, never returned, shown masked.
    Secret,
    Number,
    Integer,
    Boolean,
    Select,
    MultiSelect,
    Url,
    KeyValue,
    StringList,
    ObjectList,
    /// A mapping expression (see the mapping language).
    Mapping,
    /// Action fields only: any JSON object, or any value.
    Object,
    Any,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Choice {
    pub value: String,
    pub label: String,
}

/// A condition on another field's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct When {
    pub field: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub one_of: Vec<Value>,
    /// True: the field has a value; false: it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    pub key: String,
    #[serde(rename = "type")]
    pub ty: FieldType,
    pub label: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub placeholder: String,
    /// A value (settings) or a mapping (action fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    #[serde(default)]
    pub required: bool,
    /// A regular expression the whole string must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_length: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
    /// Select and multi-select.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<Choice>,
    /// URL fields: allowed schemes (default `https` and `http`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schemes: Vec<String>,
    /// Object lists: the fields of each object.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<Field>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visible_when: Option<When>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_when: Option<When>,
    /// A credential that may have a separate value for test deliveries.
    #[serde(default)]
    pub test_value: bool,
    /// Secrets only: generated when none is given, as this prefix followed by 24 random bytes in
    /// base64 (e.g. `whsec_`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate: Option<String>,
}

impl When {
    pub fn holds(&self, values: &Map<String, Value>) -> bool {
        let v = values.get(&self.field).filter(|v| !is_empty(v));
        if let Some(set) = self.set {
            return v.is_some() == set;
        }
        if let Some(eq) = &self.equals {
            return v == Some(eq);
        }
        if !self.one_of.is_empty() {
            return v.is_some_and(|v| self.one_of.contains(v));
        }
        v.is_some()
    }
}

/// Null, an empty string, an empty list or object: "no value".
pub fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// Keys of the secret fields.
pub fn secret_keys(fields: &[Field]) -> impl Iterator<Item = &str> {
    fields.iter().filter(|f| f.ty == FieldType::Secret).map(|f| f.key.as_str())
}

/// Validates settings against the fields; on success returns them with defaults filled in and
/// hidden fields dropped.
pub fn validate(fields: &[Field], settings: &Map<String, Value>) -> Result<Map<String, Value>, Vec<FieldError>> {
    let mut errors = Vec::new();
    for key in settings.keys() {
        if key != TEST_VALUES && !fields.iter().any(|f| &f.key == key) {
            errors.push(err(key, "is not a setting of this integration"));
        }
    }
    let out = validate_object(fields, settings, "", &mut errors);
    let mut out = out;
    if let Some(test) = settings.get(TEST_VALUES).filter(|v| !v.is_null()) {
        match test.as_object() {
            None => errors.push(err(TEST_VALUES, "must be an object")),
            Some(test) => {
                let mut clean = Map::new();
                for (key, value) in test {
                    let name = format!("{TEST_VALUES}.{key}");
                    match fields.iter().find(|f| &f.key == key && f.test_value) {
                        None => errors.push(err(&name, "has no test value")),
                        Some(f) if !is_empty(value) => {
                            if let Some(m) = check_value(f, value, &name, &mut errors) {
                                errors.push(err(&name, &m));
                            } else {
                                clean.insert(key.clone(), value.clone());
                            }
                        }
                        Some(_) => {}
                    }
                }
                if !clean.is_empty() {
                    out.insert(TEST_VALUES.into(), Value::Object(clean));
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn validate_object(fields: &[Field], values: &Map<String, Value>, prefix: &str, errors: &mut Vec<FieldError>) -> Map<String, Value> {
    // Conditions see the values with defaults filled in.
    let mut effective = values.clone();
    for f in fields {
        if effective.get(&f.key).is_none_or(is_empty) {
            if let Some(d) = &f.default {
                effective.insert(f.key.clone(), d.clone());
            }
        }
    }
    let mut out = Map::new();
    for f in fields {
        if f.visible_when.as_ref().is_some_and(|w| !w.holds(&effective)) {
            continue;
        }
        let name = format!("{prefix}{}", f.key);
        let required = f.required || f.required_when.as_ref().is_some_and(|w| w.holds(&effective));
        match effective.get(&f.key).filter(|v| !is_empty(v)) {
            None if required => errors.push(err(&name, "is required")),
            None => {}
            Some(v) => match check_value(f, v, &name, errors) {
                Some(m) => errors.push(err(&name, &m)),
                None => {
                    out.insert(f.key.clone(), v.clone());
                }
            },
        }
    }
    out
}

fn err(field: &str, message: &str) -> FieldError {
    FieldError { field: field.into(), message: message.into() }
}

/// Checks one present value; returns the problem, if any. Object lists report their sub-fields
/// into `errors` directly.
fn check_value(f: &Field, v: &Value, name: &str, errors: &mut Vec<FieldError>) -> Option<String> {
    use FieldType::*;
    match f.ty {
        String | Text | Secret => check_string(f, v),
        Url => check_string(f, v).or_else(|| check_url(f, v.as_str().unwrap_or_default())),
        Number | Integer => check_number(f, v),
        Boolean => (!v.is_boolean()).then(|| "must be true or false".into()),
        Select => match v.as_str() {
            Some(s) if f.options.iter().any(|o| o.value == s) => None,
            _ => Some(format!("must be one of {}", option_list(f))),
        },
        MultiSelect => match v.as_array() {
            Some(items) if items.iter().all(|i| i.as_str().is_some_and(|s| f.options.iter().any(|o| o.value == s))) => {
                check_len(f, items.len())
            }
            _ => Some(format!("must be a list of {}", option_list(f))),
        },
        KeyValue => match v.as_object() {
            Some(o) if o.values().all(Value::is_string) => None,
            _ => Some("must be an object of text values".into()),
        },
        StringList => match v.as_array() {
            Some(items) if items.iter().all(Value::is_string) => check_len(f, items.len()),
            _ => Some("must be a list of text values".into()),
        },
        ObjectList => match v.as_array() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    match item.as_object() {
                        Some(o) => {
                            let prefix = format!("{name}[{i}].");
                            for key in o.keys().filter(|k| !f.fields.iter().any(|s| &s.key == *k)) {
                                errors.push(err(&format!("{prefix}{key}"), "is not a field of this list"));
                            }
                            validate_object(&f.fields, o, &prefix, errors);
                        }
                        None => errors.push(err(&format!("{name}[{i}]"), "must be an object")),
                    }
                }
                check_len(f, items.len())
            }
            None => Some("must be a list of objects".into()),
        },
        Object => (!v.is_object()).then(|| "must be an object".into()),
        Mapping | Any => None,
    }
}

fn option_list(f: &Field) -> String {
    f.options.iter().map(|o| format!("'{}'", o.value)).collect::<Vec<_>>().join(", ")
}

fn check_len(f: &Field, n: usize) -> Option<String> {
    if let Some(min) = f.min_length.filter(|m| n < *m) {
        return Some(format!("must have at least {min} items"));
    }
    f.max_length.filter(|m| n > *m).map(|max| format!("must have at most {max} items"))
}

fn check_string(f: &Field, v: &Value) -> Option<String> {
    let Some(s) = v.as_str() else { return Some("must be text".into()) };
    let n = s.chars().count();
    if let Some(min) = f.min_length.filter(|m| n < *m) {
        return Some(format!("must be at least {min} characters long"));
    }
    if let Some(max) = f.max_length.filter(|m| n > *m) {
        return Some(format!("must be at most {max} characters long"));
    }
    if let Some(p) = &f.pattern {
        match regex_lite::Regex::new(&format!("^(?:{p})$")) {
            Ok(re) if re.is_match(s) => {}
            Ok(_) => return Some(format!("must match the pattern {p}")),
            Err(_) => return Some("has an invalid pattern in the manifest".into()),
        }
    }
    None
}

fn check_number(f: &Field, v: &Value) -> Option<String> {
    let Some(n) = v.as_f64() else { return Some("must be a number".into()) };
    if f.ty == FieldType::Integer && !(v.is_i64() || v.is_u64()) {
        return Some("must be a whole number".into());
    }
    if let Some(min) = f.min.filter(|m| n < *m) {
        return Some(format!("must be at least {min}"));
    }
    f.max.filter(|m| n > *m).map(|max| format!("must be at most {max}"))
}

/// A light URL check that needs no URL crate in the browser: scheme, `://`, a host, no spaces.
fn check_url(f: &Field, s: &str) -> Option<String> {
    let schemes: Vec<&str> =
        if f.schemes.is_empty() { vec!["https", "http"] } else { f.schemes.iter().map(String::as_str).collect() };
    let Some((scheme, rest)) = s.split_once("://") else {
        return Some("must be a URL such as https://example.com/path".into());
    };
    if !schemes.contains(&scheme.to_ascii_lowercase().as_str()) {
        return Some(format!("must start with {}", schemes.iter().map(|s| format!("{s}://")).collect::<Vec<_>>().join(" or ")));
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = host.rsplit('@').next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') || s.chars().any(char::is_whitespace) {
        return Some("must be a URL with a host and no spaces".into());
    }
    None
}

#[cfg(test)]
mod tests;
