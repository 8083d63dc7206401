//! Turning mapping JSON into an expression tree, checking every path, template and condition once.

use super::eval::Condition;
use super::MappingError;
use serde_json::{Map, Value};
use serde_json_path::JsonPath;

#[derive(Debug, Clone)]
pub enum Mapping {
    Literal(Value),
    Path(Box<JsonPath>, bool),
    Template(super::eval::Template),
    If { when: Option<Condition>, exists: Option<Box<Mapping>>, then: Box<Mapping>, otherwise: Option<Box<Mapping>> },
    Case { value: Box<Mapping>, cases: Vec<(String, Mapping)>, default: Option<Box<Mapping>> },
    Coalesce(Vec<Mapping>),
    Merge(Vec<Mapping>),
    Cast(Box<Mapping>, Cast),
    Map { over: Box<Mapping>, each: Box<Mapping> },
    Hash(Box<Mapping>, Normalize),
    Date(Box<Mapping>, DateFormat),
    Object(Vec<(String, Mapping)>),
    Array(Vec<Mapping>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cast {
    String,
    Number,
    Integer,
    Boolean,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Normalize {
    Email,
    Phone,
    TrimLower,
    None,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DateFormat {
    Unix,
    UnixMs,
    Rfc3339,
    Custom(String),
}

fn fail(at: &str, message: impl Into<String>) -> MappingError {
    MappingError { at: at.to_string(), message: message.into() }
}

/// Compiles mapping JSON.
pub fn compile(v: &Value) -> Result<Mapping, MappingError> {
    compile_at(v, "")
}

fn compile_at(v: &Value, at: &str) -> Result<Mapping, MappingError> {
    match v {
        Value::String(s) if s.contains("{{") || s.contains("{%") => template(s, at),
        Value::Array(items) => {
            items.iter().enumerate().map(|(i, item)| compile_at(item, &format!("{at}[{i}]"))).collect::<Result<_, _>>().map(Mapping::Array)
        }
        Value::Object(o) => match o.iter().next() {
            Some((k, arg)) if k.starts_with('@') => {
                if o.len() != 1 {
                    return Err(fail(at, format!("a directive object holds only {k}")));
                }
                directive(k, arg, &format!("{at}{}{k}", if at.is_empty() { "" } else { "." }))
            }
            _ => o
                .iter()
                .map(|(k, v)| Ok((k.clone(), compile_at(v, &join(at, k))?)))
                .collect::<Result<_, _>>()
                .map(Mapping::Object),
        },
        other => Ok(Mapping::Literal(other.clone())),
    }
}

fn join(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_string()
    } else {
        format!("{at}.{key}")
    }
}

fn template(s: &str, at: &str) -> Result<Mapping, MappingError> {
    let t = super::eval::Template::compile(s).map_err(|e| fail(at, format!("template: {}", e.detail().unwrap_or("syntax error"))))?;
    Ok(Mapping::Template(t))
}

fn args<'a>(arg: &'a Value, at: &str, allowed: &[&str]) -> Result<&'a Map<String, Value>, MappingError> {
    let o = arg.as_object().ok_or_else(|| fail(at, "takes an object"))?;
    if let Some(k) = o.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(fail(at, format!("unknown key '{k}' (takes {})", allowed.join(", "))));
    }
    Ok(o)
}

fn need<'a>(o: &'a Map<String, Value>, key: &str, at: &str) -> Result<&'a Value, MappingError> {
    o.get(key).ok_or_else(|| fail(at, format!("needs '{key}'")))
}

fn sub(o: &Map<String, Value>, key: &str, at: &str) -> Result<Box<Mapping>, MappingError> {
    Ok(Box::new(compile_at(need(o, key, at)?, &join(at, key))?))
}

fn word<'a>(o: &'a Map<String, Value>, key: &str, at: &str) -> Result<&'a str, MappingError> {
    need(o, key, at)?.as_str().ok_or_else(|| fail(&join(at, key), "must be text"))
}

fn directive(k: &str, arg: &Value, at: &str) -> Result<Mapping, MappingError> {
    Ok(match k {
        "@literal" => Mapping::Literal(arg.clone()),
        "@path" => {
            let p = arg.as_str().ok_or_else(|| fail(at, "takes a JSONPath such as $.properties.price"))?;
            let path = JsonPath::parse(p).map_err(|e| fail(at, format!("'{p}' is not a valid JSONPath: {e}")))?;
            let singular = is_singular(p);
            Mapping::Path(Box::new(path), singular)
        }
        "@template" => {
            let s = arg.as_str().ok_or_else(|| fail(at, "takes a template string"))?;
            template(s, at)?
        }
        "@if" => {
            let o = args(arg, at, &["when", "exists", "then", "else"])?;
            let when = match o.get("when") {
                Some(w) => Some(Condition::compile(w.as_str().ok_or_else(|| fail(at, "'when' must be a condition"))?).map_err(|m| fail(&join(at, "when"), m))?),
                None => None,
            };
            let exists = o.get("exists").map(|e| compile_at(e, &join(at, "exists")).map(Box::new)).transpose()?;
            if when.is_some() == exists.is_some() {
                return Err(fail(at, "needs exactly one of 'when' and 'exists'"));
            }
            let otherwise = o.get("else").map(|e| compile_at(e, &join(at, "else")).map(Box::new)).transpose()?;
            Mapping::If { when, exists, then: sub(o, "then", at)?, otherwise }
        }
        "@case" => {
            let o = args(arg, at, &["value", "cases", "default"])?;
            let cases = need(o, "cases", at)?.as_object().ok_or_else(|| fail(at, "'cases' must be an object"))?;
            let cases = cases
                .iter()
                .map(|(k, v)| Ok((k.clone(), compile_at(v, &format!("{at}.cases.{k}"))?)))
                .collect::<Result<_, MappingError>>()?;
            let default = o.get("default").map(|d| compile_at(d, &join(at, "default")).map(Box::new)).transpose()?;
            Mapping::Case { value: sub(o, "value", at)?, cases, default }
        }
        "@coalesce" => {
            let items = arg.as_array().ok_or_else(|| fail(at, "takes a list"))?;
            Mapping::Coalesce(items.iter().enumerate().map(|(i, v)| compile_at(v, &format!("{at}[{i}]"))).collect::<Result<_, _>>()?)
        }
        "@merge" => {
            let items = arg.as_array().ok_or_else(|| fail(at, "takes a list of objects"))?;
            Mapping::Merge(items.iter().enumerate().map(|(i, v)| compile_at(v, &format!("{at}[{i}]"))).collect::<Result<_, _>>()?)
        }
        "@cast" => {
            let o = args(arg, at, &["value", "to"])?;
            let to = match word(o, "to", at)? {
                "string" => Cast::String,
                "number" => Cast::Number,
                "integer" => Cast::Integer,
                "boolean" => Cast::Boolean,
                other => return Err(fail(&join(at, "to"), format!("'{other}' is not string, number, integer or boolean"))),
            };
            Mapping::Cast(sub(o, "value", at)?, to)
        }
        "@map" => {
            let o = args(arg, at, &["over", "each"])?;
            Mapping::Map { over: sub(o, "over", at)?, each: sub(o, "each", at)? }
        }
        "@hash" => {
            let o = args(arg, at, &["value", "normalize"])?;
            let n = match o.get("normalize").map(|n| n.as_str().unwrap_or("?")).unwrap_or("none") {
                "email" => Normalize::Email,
                "phone" => Normalize::Phone,
                "trim_lower" => Normalize::TrimLower,
                "none" => Normalize::None,
                other => return Err(fail(&join(at, "normalize"), format!("'{other}' is not email, phone, trim_lower or none"))),
            };
            Mapping::Hash(sub(o, "value", at)?, n)
        }
        "@date" => {
            let o = args(arg, at, &["value", "format"])?;
            let f = match word(o, "format", at)? {
                "unix" => DateFormat::Unix,
                "unix_ms" => DateFormat::UnixMs,
                "rfc3339" => DateFormat::Rfc3339,
                custom => {
                    time::format_description::parse_borrowed::<2>(custom)
                        .map_err(|e| fail(&join(at, "format"), format!("'{custom}' is not a date format: {e}")))?;
                    DateFormat::Custom(custom.to_string())
                }
            };
            Mapping::Date(sub(o, "value", at)?, f)
        }
        other => return Err(fail(at, format!("unknown directive {other}"))),
    })
}

/// A path made only of names and indexes (`$.a.b[0]['c']`) selects at most one value.
fn is_singular(p: &str) -> bool {
    !(p.contains('*') || p.contains("..") || p.contains('?') || p.contains(':') || p.contains(','))
}
