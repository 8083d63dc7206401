//! Evaluating mappings and conditions over a context (the event, or `{settings, payload, event}`).

use super::compile::{Cast, DateFormat, Mapping, Normalize};
use base64::Engine as _;
use minijinja::{Environment, UndefinedBehavior};
use serde_json::{Map, Number, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Conditions kept compiled; past this many the cache starts over.
const CACHED_CONDITIONS: usize = 1000;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The one template environment: lenient about missing values, plus `b64` and `sha256` filters.
pub(crate) fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(configured)
}

fn configured() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env.add_filter("b64", |s: String| base64::engine::general_purpose::STANDARD.encode(s));
    env.add_filter("sha256", |s: String| hex(&Sha256::digest(s.as_bytes())));
    env.set_fuel(Some(100_000));
    env
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a mapping is evaluated against: JSON for paths, and the same as a template value.
pub struct Ctx<'a> {
    json: &'a Value,
    jinja: OnceLock<minijinja::Value>,
}

impl<'a> Ctx<'a> {
    pub fn new(json: &'a Value) -> Self {
        Ctx { json, jinja: OnceLock::new() }
    }

    fn jinja(&self) -> &minijinja::Value {
        self.jinja.get_or_init(|| minijinja::Value::from_serialize(self.json))
    }
}

/// A condition in the expression language (MiniJinja expressions), compiled once.
#[derive(Clone)]
pub struct Condition {
    src: Arc<str>,
    compiled: Compiled,
}

#[derive(Clone)]
enum Compiled {
    Constant(bool),
    Expr(Arc<minijinja::Expression<'static, 'static>>),
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Condition({:?})", self.src)
    }
}

impl PartialEq for Condition {
    fn eq(&self, other: &Self) -> bool {
        self.src == other.src
    }
}

impl Condition {
    /// Compiles `src`, or returns the condition compiled earlier from the same source (a bounded
    /// cache: previews compile whatever an editor types).
    pub fn compile(src: &str) -> Result<Condition, String> {
        static DONE: OnceLock<Mutex<HashMap<String, Condition>>> = OnceLock::new();
        let done = DONE.get_or_init(Default::default);
        if let Some(c) = done.lock().unwrap_or_else(|e| e.into_inner()).get(src) {
            return Ok(c.clone());
        }
        let c = Self::compile_new(src)?;
        let mut done = done.lock().unwrap_or_else(|e| e.into_inner());
        if done.len() >= CACHED_CONDITIONS {
            done.clear();
        }
        done.insert(src.to_string(), c.clone());
        Ok(c)
    }

    fn compile_new(src: &str) -> Result<Condition, String> {
        let compiled = match src.trim() {
            "true" => Compiled::Constant(true),
            "false" => Compiled::Constant(false),
            _ => Compiled::Expr(Arc::new(
                env().compile_expression_owned(src.to_string()).map_err(|e| format!("condition '{src}': {}", e.detail().unwrap_or("syntax error")))?,
            )),
        };
        Ok(Condition { src: src.into(), compiled })
    }

    pub fn source(&self) -> &str {
        &self.src
    }

    /// `Some` when the condition is `true` or `false` whatever the context.
    pub fn constant(&self) -> Option<bool> {
        match self.compiled {
            Compiled::Constant(b) => Some(b),
            Compiled::Expr(_) => None,
        }
    }

    /// True when the condition holds; an evaluation error counts as false and is returned.
    pub fn holds(&self, ctx: &Ctx) -> Result<bool, String> {
        match &self.compiled {
            Compiled::Constant(b) => Ok(*b),
            Compiled::Expr(e) => e.eval(ctx.jinja()).map(|v| v.is_true()).map_err(|e| format!("condition '{}': {e}", self.src)),
        }
    }
}

/// A template compiled once; `{{ a.b }}` alone is looked up directly in the JSON when it names a
/// string or an integer (the common case: URLs, methods, IDs), which skips converting the
/// whole context for the template engine.
#[derive(Clone)]
pub struct Template {
    src: Arc<str>,
    path: Option<Vec<String>>,
    /// An environment holding just this template (minijinja keeps owned sources per environment).
    compiled: Arc<Environment<'static>>,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Template({:?})", self.src)
    }
}

/// A name the fast path may look up as a JSON key (not a number, a keyword or an expression).
fn plain_name(k: &str) -> bool {
    k.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !matches!(k, "true" | "false" | "none" | "True" | "False" | "None" | "loop" | "self")
}

impl Template {
    pub fn compile(src: &str) -> Result<Template, minijinja::Error> {
        let mut compiled = configured();
        compiled.add_template_owned("t", src.to_string())?;
        let path = src
            .trim()
            .strip_prefix("{{")
            .and_then(|s| s.strip_suffix("}}"))
            .map(str::trim)
            .filter(|p| p.split('.').all(plain_name))
            .filter(|_| src.trim() == src)
            .map(|p| p.split('.').map(str::to_string).collect());
        Ok(Template { src: src.into(), path, compiled: Arc::new(compiled) })
    }

    pub fn render(&self, ctx: &Ctx) -> Result<String, String> {
        if let Some(path) = &self.path {
            let mut at = Some(ctx.json);
            for k in path {
                at = at.and_then(|v| v.get(k));
            }
            match at {
                None => return Ok(String::new()),
                Some(Value::String(s)) => return Ok(s.clone()),
                Some(Value::Number(n)) if n.is_i64() || n.is_u64() => return Ok(n.to_string()),
                Some(_) => {}
            }
        }
        self.compiled.get_template("t").and_then(|t| t.render(ctx.jinja())).map_err(|e| format!("template '{}': {e}", self.src))
    }
}

impl Mapping {
    /// The value, or `None` when nothing is there (a missing path, an empty coalesce).
    pub fn eval(&self, ctx: &Ctx) -> Result<Option<Value>, String> {
        Ok(match self {
            Mapping::Literal(v) => Some(v.clone()),
            Mapping::Path(p, singular) => {
                let found = p.query(ctx.json).all();
                if *singular {
                    found.first().map(|v| (*v).clone()).filter(|v| !v.is_null())
                } else {
                    Some(Value::Array(found.into_iter().cloned().collect()))
                }
            }
            Mapping::Template(t) => Some(Value::String(t.render(ctx)?)),
            Mapping::If { when, exists, then, otherwise } => {
                let yes = match (when, exists) {
                    (Some(c), _) => c.holds(ctx)?,
                    (None, Some(e)) => e.eval(ctx)?.is_some(),
                    (None, None) => false,
                };
                match (yes, otherwise) {
                    (true, _) => then.eval(ctx)?,
                    (false, Some(o)) => o.eval(ctx)?,
                    (false, None) => None,
                }
            }
            Mapping::Case { value, cases, default } => {
                let key = value.eval(ctx)?.map(|v| text(&v));
                match key.and_then(|k| cases.iter().find(|(c, _)| *c == k)) {
                    Some((_, m)) => m.eval(ctx)?,
                    None => match default {
                        Some(d) => d.eval(ctx)?,
                        None => None,
                    },
                }
            }
            Mapping::Coalesce(items) => {
                for m in items {
                    if let Some(v) = m.eval(ctx)?.filter(|v| !matches!(v, Value::String(s) if s.is_empty())) {
                        return Ok(Some(v));
                    }
                }
                None
            }
            Mapping::Merge(items) => {
                let mut out = Map::new();
                for m in items {
                    match m.eval(ctx)? {
                        Some(Value::Object(o)) => out.extend(o),
                        None | Some(Value::Null) => {}
                        Some(other) => return Err(format!("@merge: {other} is not an object")),
                    }
                }
                Some(Value::Object(out))
            }
            Mapping::Cast(m, to) => match m.eval(ctx)? {
                Some(v) => Some(cast(v, *to)?),
                None => None,
            },
            Mapping::Map { over, each } => match over.eval(ctx)? {
                Some(Value::Array(items)) => {
                    let mut out = Vec::with_capacity(items.len());
                    for item in &items {
                        if let Some(v) = each.eval(&Ctx::new(item))? {
                            out.push(v);
                        }
                    }
                    Some(Value::Array(out))
                }
                Some(_) => return Err("@map: 'over' is not a list".into()),
                None => None,
            },
            Mapping::Hash(m, n) => m.eval(ctx)?.map(|v| Value::String(hash(&text(&v), *n))),
            Mapping::Date(m, f) => match m.eval(ctx)? {
                Some(v) => Some(date(&v, f)?),
                None => None,
            },
            Mapping::Object(members) => {
                let mut out = Map::new();
                for (k, m) in members {
                    if let Some(v) = m.eval(ctx)? {
                        out.insert(k.clone(), v);
                    }
                }
                Some(Value::Object(out))
            }
            Mapping::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for m in items {
                    if let Some(v) = m.eval(ctx)? {
                        out.push(v);
                    }
                }
                Some(Value::Array(out))
            }
        })
    }
}

/// A value as text: strings as they are, everything else as JSON.
pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn cast(v: Value, to: Cast) -> Result<Value, String> {
    let fail = || format!("cannot turn {v} into a {}", format!("{to:?}").to_lowercase());
    Ok(match to {
        Cast::String => Value::String(text(&v)),
        Cast::Number => match &v {
            Value::Number(_) => v,
            Value::String(s) => s.trim().parse::<f64>().ok().and_then(Number::from_f64).map(Value::Number).ok_or_else(fail)?,
            Value::Bool(b) => Value::from(*b as i64),
            _ => return Err(fail()),
        },
        Cast::Integer => match &v {
            Value::Number(n) => Value::from(n.as_i64().or_else(|| n.as_f64().map(|f| f.trunc() as i64)).ok_or_else(fail)?),
            Value::String(s) => Value::from(s.trim().parse::<f64>().map(|f| f.trunc() as i64).map_err(|_| fail())?),
            Value::Bool(b) => Value::from(*b as i64),
            _ => return Err(fail()),
        },
        Cast::Boolean => match &v {
            Value::Bool(_) => v,
            Value::Number(n) => Value::Bool(n.as_f64() != Some(0.0)),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" => Value::Bool(true),
                "false" | "no" | "0" | "" => Value::Bool(false),
                _ => return Err(fail()),
            },
            _ => return Err(fail()),
        },
    })
}

/// SHA-256 of the normalised value; a value that already is a SHA-256 hex digest passes unchanged.
pub(crate) fn hash(s: &str, n: Normalize) -> String {
    let norm = match n {
        Normalize::Email | Normalize::TrimLower => s.trim().to_lowercase(),
        Normalize::Phone => s.chars().filter(char::is_ascii_digit).collect(),
        Normalize::None => s.to_string(),
    };
    if norm.len() == 64 && norm.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()) {
        return norm;
    }
    hex(&Sha256::digest(norm.as_bytes()))
}

fn date(v: &Value, f: &DateFormat) -> Result<Value, String> {
    let t = match v {
        Value::String(s) => OffsetDateTime::parse(s, &Rfc3339).map_err(|_| format!("'{s}' is not an ISO-8601 timestamp"))?,
        Value::Number(n) => {
            let secs = n.as_f64().unwrap_or_default();
            // Numbers above 10^11 are milliseconds.
            let nanos = if secs.abs() > 1e11 { secs * 1e6 } else { secs * 1e9 };
            OffsetDateTime::from_unix_timestamp_nanos(nanos as i128).map_err(|e| e.to_string())?
        }
        other => return Err(format!("{other} is not a timestamp")),
    };
    Ok(match f {
        DateFormat::Unix => Value::from(t.unix_timestamp()),
        DateFormat::UnixMs => Value::from((t.unix_timestamp_nanos() / 1_000_000) as i64),
        DateFormat::Rfc3339 => Value::String(t.format(&Rfc3339).map_err(|e| e.to_string())?),
        DateFormat::Custom(c) => {
            let fd = time::format_description::parse_borrowed::<2>(c).map_err(|e| e.to_string())?;
            Value::String(t.format(&fd).map_err(|e| e.to_string())?)
        }
    })
}
