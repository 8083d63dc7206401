//! From a manifest, a destination's settings and mapping overrides, and events, to the requests
//! (or broker messages) to send, or the reason an event cannot be sent.

use super::compile::{compile, Mapping};
use super::eval::{text, Condition, Ctx};
use super::MappingError;
use crate::integration::schema::{FieldType, TEST_VALUES};
use crate::integration::{Action, HttpRequest, Manifest, Publish, Request, RequestTemplate};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Why a message cannot be sent (not retried).
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection(pub String);

struct Field {
    key: String,
    ty: FieldType,
    required: bool,
    mapping: Mapping,
}

enum Template {
    Http { method: Mapping, url: Mapping, headers: Mapping, query: Mapping, json: Option<Mapping>, form: Option<Mapping> },
    Publish { target: Mapping, key: Option<Mapping>, payload: Mapping, headers: Mapping },
    Handler,
}

struct PreparedAction {
    key: String,
    subscribe: Condition,
    fields: Vec<Field>,
    template: Template,
}

/// A manifest's actions compiled with a destination's overrides, ready to map many events.
pub struct Prepared {
    actions: Vec<PreparedAction>,
    pub batch_size: usize,
}

/// One request and the indexes of the events in it, or one event's rejection.
#[derive(Debug, Clone, PartialEq)]
pub enum Built {
    Request { action: String, events: Vec<usize>, request: Request },
    Rejected { action: String, event: usize, reason: String },
}

fn at(action: &str, rest: &str) -> impl Fn(MappingError) -> MappingError {
    let prefix = format!("actions.{action}.{rest}");
    move |e| MappingError { at: if e.at.is_empty() { prefix.clone() } else { format!("{prefix}.{}", e.at) }, message: e.message }
}

fn compile_http(t: &RequestTemplate, key: &str) -> Result<Template, MappingError> {
    Ok(Template::Http {
        method: compile(&Value::String(t.method.clone())).map_err(at(key, "request.method"))?,
        url: compile(&Value::String(t.url.clone())).map_err(at(key, "request.url"))?,
        headers: compile(&t.headers).map_err(at(key, "request.headers"))?,
        query: compile(&t.query).map_err(at(key, "request.query"))?,
        json: t.json.as_ref().map(compile).transpose().map_err(at(key, "request.json"))?,
        form: t.form.as_ref().map(compile).transpose().map_err(at(key, "request.form"))?,
    })
}

impl Prepared {
    /// Maps with batches of up to `size` events (a destination's `batch_size`), within the
    /// integration's limit; the request template sees `batched: true` when that is above 1 (and
    /// no `batched` otherwise).
    pub fn with_batch_size(mut self, m: &Manifest, size: Option<u32>) -> Prepared {
        if let (Some(b), Some(size)) = (&m.capabilities.batching, size) {
            self.batch_size = size.clamp(1, b.max_size.max(1)) as usize;
        }
        self
    }

    /// `overrides`: action key → `{"enabled": bool, "mapping": {field: mapping}}`.
    pub fn new(m: &Manifest, overrides: &Map<String, Value>) -> Result<Prepared, MappingError> {
        let mut actions = Vec::new();
        for a in &m.actions {
            let o = overrides.get(&a.key).and_then(Value::as_object);
            let enabled = o.and_then(|o| o.get("enabled")).and_then(Value::as_bool).unwrap_or(a.default);
            if !enabled {
                continue;
            }
            let mapping = o.and_then(|o| o.get("mapping")).and_then(Value::as_object);
            actions.push(prepare_action(a, mapping)?);
        }
        if let Some(o) = overrides.keys().find(|k| !m.actions.iter().any(|a| &a.key == *k)) {
            return Err(MappingError { at: format!("actions.{o}"), message: "is not an action of this integration".into() });
        }
        let batch_size = m.capabilities.batching.as_ref().map_or(1, |b| b.default_size.unwrap_or(b.max_size).max(1) as usize);
        Ok(Prepared { actions, batch_size })
    }

    /// Maps events (each a Segment message) into requests; events of one action are batched up to
    /// `batch_size`. Events no action subscribes to produce nothing.
    pub fn build(&self, settings: &Map<String, Value>, events: &[&Value]) -> Vec<Built> {
        let mut out = Vec::new();
        // Subscriptions see the event and, under `settings`, the destination's settings: made
        // only for a condition that is not a constant (a copy of the event each).
        let with_settings: Vec<std::cell::OnceCell<Value>> = events.iter().map(|_| Default::default()).collect();
        let with_settings = |i: usize| {
            with_settings[i].get_or_init(|| {
                let mut o = events[i].as_object().cloned().unwrap_or_default();
                o.insert("settings".into(), Value::Object(settings.clone()));
                Value::Object(o)
            })
        };
        for a in &self.actions {
            let mut batch: Vec<(usize, Value)> = Vec::new();
            for (i, ev) in events.iter().enumerate() {
                let ctx = Ctx::new(*ev);
                let holds = match a.subscribe.constant() {
                    Some(b) => Ok(b),
                    None => a.subscribe.holds(&Ctx::new(with_settings(i))),
                };
                match holds {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        out.push(Built::Rejected { action: a.key.clone(), event: i, reason: e });
                        continue;
                    }
                }
                match map_fields(&a.fields, &ctx) {
                    Ok(payload) => batch.push((i, payload)),
                    Err(Rejection(reason)) => out.push(Built::Rejected { action: a.key.clone(), event: i, reason }),
                }
            }
            let mut rest = batch.into_iter().peekable();
            while rest.peek().is_some() {
                let (idx, payloads): (Vec<usize>, Vec<Value>) = rest.by_ref().take(self.batch_size).unzip();
                // The template's context, built from owned values (`json!` would copy each one
                // again through serde).
                let evs: Vec<Value> = idx.iter().map(|i| events[*i].clone()).collect();
                let mut ctx = Map::new();
                ctx.insert("settings".into(), Value::Object(settings.clone()));
                ctx.insert("payload".into(), payloads[0].clone());
                ctx.insert("payloads".into(), Value::Array(payloads));
                ctx.insert("event".into(), evs[0].clone());
                ctx.insert("events".into(), Value::Array(evs));
                if self.batch_size > 1 {
                    ctx.insert("batched".into(), Value::Bool(true));
                }
                match render(&a.template, &Ctx::new(&Value::Object(ctx))) {
                    Ok(Some(request)) => out.push(Built::Request { action: a.key.clone(), events: idx, request }),
                    Ok(None) => {}
                    Err(Rejection(reason)) => {
                        out.extend(idx.into_iter().map(|event| Built::Rejected { action: a.key.clone(), event, reason: reason.clone() }))
                    }
                }
            }
        }
        out
    }

    /// The mapped payload of one event for one action (the preview of the mapping editor).
    pub fn payload(&self, action: &str, event: &Value) -> Option<Result<Value, Rejection>> {
        let a = self.actions.iter().find(|a| a.key == action)?;
        Some(map_fields(&a.fields, &Ctx::new(event)))
    }
}

fn prepare_action(a: &Action, mapping: Option<&Map<String, Value>>) -> Result<PreparedAction, MappingError> {
    let subscribe = Condition::compile(&a.subscribe).map_err(|m| MappingError { at: format!("actions.{}.subscribe", a.key), message: m })?;
    let mut fields = Vec::new();
    for f in &a.fields {
        let src = mapping.and_then(|m| m.get(&f.key)).or(f.default.as_ref());
        let mapping = match src {
            Some(v) => compile(v).map_err(at(&a.key, &format!("fields.{}", f.key)))?,
            None => Mapping::Coalesce(vec![]),
        };
        fields.push(Field { key: f.key.clone(), ty: f.ty, required: f.required, mapping });
    }
    if let Some(k) = mapping.and_then(|m| m.keys().find(|k| !a.fields.iter().any(|f| &f.key == *k))) {
        return Err(MappingError { at: format!("actions.{}.mapping.{k}", a.key), message: "is not a field of this action".into() });
    }
    let template = match (&a.request, &a.publish) {
        (Some(r), _) => compile_http(r, &a.key)?,
        (None, Some(p)) => Template::Publish {
            target: compile(&Value::String(p.target.clone())).map_err(at(&a.key, "publish.target"))?,
            key: p.key.as_ref().map(|k| compile(&Value::String(k.clone()))).transpose().map_err(at(&a.key, "publish.key"))?,
            payload: compile(&p.payload).map_err(at(&a.key, "publish.payload"))?,
            headers: compile(&p.headers).map_err(at(&a.key, "publish.headers"))?,
        },
        (None, None) => Template::Handler,
    };
    Ok(PreparedAction { key: a.key.clone(), subscribe, fields, template })
}

fn map_fields(fields: &[Field], ctx: &Ctx) -> Result<Value, Rejection> {
    let mut payload = Map::new();
    for f in fields {
        let v = f.mapping.eval(ctx).map_err(|e| Rejection(format!("field '{}': {e}", f.key)))?;
        match v.filter(|v| !crate::integration::schema::is_empty(v)) {
            None if f.required => return Err(Rejection(format!("required field '{}' has no value", f.key))),
            None => {}
            Some(v) => {
                let ok = match f.ty {
                    FieldType::Number => v.is_number(),
                    FieldType::Integer => v.is_i64() || v.is_u64(),
                    FieldType::Boolean => v.is_boolean(),
                    FieldType::Object | FieldType::KeyValue => v.is_object(),
                    FieldType::StringList | FieldType::ObjectList | FieldType::MultiSelect => v.is_array(),
                    FieldType::String | FieldType::Text | FieldType::Url | FieldType::Select | FieldType::Secret => v.is_string(),
                    FieldType::Mapping | FieldType::Any => true,
                };
                if !ok {
                    return Err(Rejection(format!("field '{}' must be {:?} but is {v}", f.key, f.ty).to_lowercase()));
                }
                payload.insert(f.key.clone(), v);
            }
        }
    }
    Ok(Value::Object(payload))
}

fn eval_text(m: &Mapping, ctx: &Ctx, what: &str) -> Result<String, Rejection> {
    match m.eval(ctx).map_err(|e| Rejection(format!("{what}: {e}")))? {
        Some(v) => Ok(text(&v)),
        None => Err(Rejection(format!("{what} has no value"))),
    }
}

fn eval_strings(m: &Mapping, ctx: &Ctx, what: &str, lower: bool) -> Result<BTreeMap<String, String>, Rejection> {
    let v = m.eval(ctx).map_err(|e| Rejection(format!("{what}: {e}")))?;
    let mut out = BTreeMap::new();
    if let Some(Value::Object(o)) = v {
        for (k, v) in o.into_iter().filter(|(_, v)| !v.is_null()) {
            out.insert(if lower { k.to_ascii_lowercase() } else { k }, text(&v));
        }
    }
    Ok(out)
}

fn render(t: &Template, ctx: &Ctx) -> Result<Option<Request>, Rejection> {
    Ok(Some(match t {
        Template::Http { method, url, headers, query, json, form } => {
            let mut url = eval_text(url, ctx, "url")?;
            let query = eval_strings(query, ctx, "query", false)?;
            if !query.is_empty() {
                let pairs: Vec<String> = query.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect();
                url.push(if url.contains('?') { '&' } else { '?' });
                url.push_str(&pairs.join("&"));
            }
            Request::Http(HttpRequest {
                method: eval_text(method, ctx, "method")?.to_ascii_uppercase(),
                url,
                headers: eval_strings(headers, ctx, "headers", true)?,
                json: match json {
                    Some(j) => Some(j.eval(ctx).map_err(|e| Rejection(format!("body: {e}")))?.unwrap_or(Value::Null)),
                    None => None,
                },
                body: None,
                form: match form {
                    Some(f) => Some(eval_strings(f, ctx, "form", false)?),
                    None => None,
                },
            })
        }
        Template::Publish { target, key, payload, headers } => Request::Publish(Publish {
            target: eval_text(target, ctx, "target")?,
            key: key.as_ref().map(|k| eval_text(k, ctx, "key")).transpose()?,
            payload: payload.eval(ctx).map_err(|e| Rejection(format!("payload: {e}")))?.unwrap_or(Value::Null),
            headers: eval_strings(headers, ctx, "headers", false)?,
        }),
        Template::Handler => return Ok(None),
    }))
}

/// Percent-encodes a query component (RFC 3986 unreserved characters stay).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The settings a send uses: production values, or test values laid over them.
pub fn effective_settings(settings: &Map<String, Value>, test: bool) -> Map<String, Value> {
    let mut s = settings.clone();
    if let Some(Value::Object(t)) = s.remove(TEST_VALUES) {
        if test {
            s.extend(t);
        }
    }
    s
}

/// Builds the test-connection request of an HTTP manifest from its settings.
pub fn test_connection_request(m: &Manifest, settings: &Map<String, Value>) -> Option<Result<Request, String>> {
    let t = m.test_connection.as_ref()?;
    let tpl = match compile_http(t, "test_connection") {
        Ok(t) => t,
        Err(e) => return Some(Err(e.to_string())),
    };
    let ctx_json = json!({"settings": settings});
    Some(render(&tpl, &Ctx::new(&ctx_json)).map(|r| r.expect("http template")).map_err(|Rejection(r)| r))
}

/// Every problem the engine finds in a manifest's conditions, mappings and templates.
pub fn check_manifest(m: &Manifest) -> Vec<String> {
    let mut p = Vec::new();
    if let Err(e) = Prepared::new(&Manifest { actions: m.actions.iter().map(|a| Action { default: true, ..a.clone() }).collect(), ..m.clone() }, &Map::new()) {
        p.push(e.to_string());
    }
    if let Some(t) = &m.test_connection {
        if let Err(e) = compile_http(t, "test_connection") {
            p.push(e.to_string());
        }
    }
    for path in m.capabilities.batching.iter().flat_map(|b| b.partial.iter()).flat_map(|f| f.failed.iter()) {
        if let Err(e) = serde_json_path::JsonPath::parse(path) {
            p.push(format!("capabilities.batching.partial.failed: '{path}' is not a JSON path: {e}"));
        }
    }
    p
}

/// The positions of the events a batch answer names as refused (see `PartialFailures`): every
/// whole number the paths select in the body, once each, in order, those within the batch.
pub fn refused_positions(partial: &crate::integration::PartialFailures, body: &Value, batch: usize) -> Vec<usize> {
    let mut out: Vec<usize> = partial
        .failed
        .iter()
        .filter_map(|p| serde_json_path::JsonPath::parse(p).ok())
        .flat_map(|p| p.query(body).all().into_iter().filter_map(Value::as_u64).collect::<Vec<_>>())
        .filter_map(|n| usize::try_from(n).ok().filter(|n| *n < batch))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}
