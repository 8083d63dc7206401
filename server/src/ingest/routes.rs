//! The `/v1` routes: one handler for the six call types (long and analytics.js's short names)
//! and one for batches.

use super::body::{decode, parse, read, BodyError, Parsed};
use super::cors;
use super::enrich::{enrich, is_timestamp};
use super::live::LiveMessage;
use super::shallow::{Check, Shallow};
use super::writer::{Outcome, WriteError};
use crate::http::AppState;
use crate::store::events::{NewEvent, NewRejection};
use crate::store::now_ms;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use model::event::{validate, EventType};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, LazyLock};
use std::time::Instant;

/// Bodies are read in the handlers (`body::read`), which answer one over the limit in the
/// Tracking API's shape.
///
/// The event routes label their answers for CORS themselves (a middleware costs every event a
/// boxed future and a service clone); the others go through `cors::layer`.
pub fn router() -> Router<AppState> {
    let rare = Router::new()
        .route("/v1/m", post(telemetry))
        .route("/v1/projects/{key}/settings", get(segment_settings))
        .route("/sourceConfig", get(rudder_config))
        .route("/sourceConfig/", get(rudder_config))
        .layer(middleware::from_fn(cors::layer));
    let batch = || post(batch).options(cors::preflight);
    Router::new()
        .route("/v1/batch", batch())
        .route("/v1/import", batch())
        .route("/v1/b", batch())
        .route("/beacon/v1/batch", batch())
        .route("/v1/{kind}", post(single).options(cors::preflight))
        .merge(rare)
}

/// On a node started with `--mode worker`: every Tracking API route answers 503 (SDKs keep the
/// events and retry) saying where events go.
pub fn worker_router() -> Router<AppState> {
    async fn refuse() -> Response {
        let mut res = fail(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_an_ingest_node",
            "this node only delivers (--mode worker): send events to a node started with --mode ingest or all",
        );
        res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        res
    }
    let any = axum::routing::any(refuse);
    Router::new()
        .route("/v1/{*rest}", any.clone())
        .route("/sourceConfig", any.clone())
        .route("/sourceConfig/", any.clone())
        .route("/beacon/v1/batch", any)
        .layer(middleware::from_fn(cors::layer))
}

/// The Tracking API's error shape.
fn fail(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (status, Json(json!({"success": false, "code": code, "message": message.into()}))).into_response()
}

/// analytics.js reports its own health to `/v1/m`; accepted and dropped.
async fn telemetry() -> StatusCode {
    StatusCode::OK
}

/// Where browsers reach this server: `public_url`, else the request's Host.
fn public_base(state: &AppState, headers: &HeaderMap) -> (String, String) {
    let base = match &state.config.public_url {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => format!("http://{}", headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1:3000")),
    };
    let (scheme, host) = base.split_once("://").unwrap_or(("http", base.as_str()));
    (scheme.to_string(), host.to_string())
}

/// analytics.js (Segment's browser SDK) loads this from its `cdnURL` before sending anything:
/// it points the SDK's `Segment.io` destination at this server and turns off its telemetry.
async fn segment_settings(State(state): State<AppState>, Path(key): Path<String>, headers: HeaderMap) -> Response {
    match state.ingest.keys.owner(&state.store, &key).await {
        Ok(Some(_)) => {}
        Ok(None) => return fail(StatusCode::NOT_FOUND, "invalid_write_key", "unknown or revoked write key"),
        Err(_) => return fail(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "retry later"),
    }
    let (protocol, host) = public_base(&state, &headers);
    Json(json!({
        "integrations": {"Segment.io": {"apiKey": key, "apiHost": format!("{host}/v1"), "protocol": protocol}},
        "metrics": {"sampleRate": 0},
    }))
    .into_response()
}

/// The RudderStack browser SDK loads its source configuration from `configUrl` + `/sourceConfig/`
/// (write key as Basic auth and in the query) before sending events to the data plane URL.
async fn rudder_config(State(state): State<AppState>, Query(query): Query<HashMap<String, String>>, headers: HeaderMap) -> Response {
    let Some(key) = write_key(&headers, None, &query) else {
        return fail(StatusCode::UNAUTHORIZED, "missing_write_key", "send the write key as the Basic auth user name or ?writeKey=");
    };
    let owner = match state.ingest.keys.owner(&state.store, &key).await {
        Ok(Some(o)) => o,
        Ok(None) => return fail(StatusCode::UNAUTHORIZED, "invalid_write_key", "unknown or revoked write key"),
        Err(_) => return fail(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "retry later"),
    };
    Json(json!({
        "isHosted": false,
        "source": {
            "id": owner.source_id,
            "name": owner.name,
            "writeKey": key,
            "enabled": true,
            "workspaceId": "switchyard",
            "config": {},
            "destinations": []
        }
    }))
    .into_response()
}

/// A tracking request, taken apart without copying its headers.
struct Call {
    addr: SocketAddr,
    headers: HeaderMap,
    uri: axum::http::Uri,
    body: Body,
}

impl Call {
    fn new(addr: SocketAddr, req: Request) -> Call {
        let (parts, body) = req.into_parts();
        Call { addr, headers: parts.headers, uri: parts.uri, body }
    }
}

async fn single(State(state): State<AppState>, ConnectInfo(addr): ConnectInfo<SocketAddr>, Path(kind): Path<String>, req: Request) -> Response {
    let origin = req.headers().get(header::ORIGIN).cloned();
    let Some(ty) = EventType::from_route(&kind) else {
        let res = fail(StatusCode::NOT_FOUND, "not_found", format!("no route /v1/{kind}; use identify, track, page, screen, group, alias or batch"));
        return cors::label(origin, res);
    };
    cors::label(origin, handle(&state, Call::new(addr, req), Some(ty)).await)
}

async fn batch(State(state): State<AppState>, ConnectInfo(addr): ConnectInfo<SocketAddr>, req: Request) -> Response {
    let origin = req.headers().get(header::ORIGIN).cloned();
    cors::label(origin, handle(&state, Call::new(addr, req), None).await)
}

/// `?writeKey=` of a request's query, if any.
fn query_key(uri: &axum::http::Uri) -> HashMap<String, String> {
    if uri.query().is_none() {
        return HashMap::new();
    }
    Query::<HashMap<String, String>>::try_from_uri(uri).map(|q| q.0).unwrap_or_default()
}

/// The write key: Basic auth user name, else `writeKey` in the body, else `?writeKey=`.
fn write_key(headers: &HeaderMap, body: Option<&str>, query: &HashMap<String, String>) -> Option<String> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic ")))
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .map(|user_pass| user_pass.split(':').next().unwrap_or("").to_string())
        .filter(|k| !k.is_empty());
    basic
        .or_else(|| body.filter(|k| !k.is_empty()).map(str::to_string))
        .or_else(|| query.get("writeKey").filter(|k| !k.is_empty()).cloned())
}

/// The client's address: the connection's, or `X-Forwarded-For`'s when the connection comes
/// from a configured trusted proxy.
fn client_ip(addr: SocketAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    let peer = addr.ip();
    if !trusted.contains(&peer) {
        return peer;
    }
    headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|list| {
            list.rsplit(',')
                .filter_map(|s| s.trim().parse::<IpAddr>().ok())
                .find(|ip| !trusted.contains(ip))
        })
        .unwrap_or(peer)
}

/// The messages of a request, each with its type (or why it has none).
fn messages<'a>(parsed: Parsed<'a>, route: Option<EventType>, max_batch: usize) -> Result<Vec<(Item<'a>, Option<EventType>)>, Response> {
    let Parsed { fields: mut body, batch } = parsed;
    if let Some(ty) = route {
        return Ok(vec![(Ok(body), Some(ty))]);
    }
    let items = batch.or_else(|| body.take_raw("batch").and_then(|raw| serde_json::from_str::<Vec<&'a RawValue>>(raw.get()).ok()));
    let Some(items) = items else {
        return Err(fail(StatusCode::BAD_REQUEST, "invalid_body", "a batch needs a `batch` array of messages"));
    };
    if items.len() > max_batch {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            "batch_too_large",
            format!("the batch has {} messages; the limit is {max_batch} messages per batch", items.len()),
        ));
    }
    // Batch-level context, integrations and sentAt apply to every message that does not set its
    // own (server SDKs send sentAt once per batch; it drives the clock-skew correction).
    let objects: Vec<(&str, &RawValue)> =
        ["context", "integrations"].into_iter().filter_map(|k| body.raw(k).filter(|r| r.get().starts_with('{')).map(|r| (k, r))).collect();
    let sent_at = body.sent("sentAt").filter(|r| r.get().starts_with('"'));
    Ok(items
        .into_iter()
        .map(|raw| {
            let item = if raw.get().starts_with('{') {
                Shallow::parse(raw.get().as_bytes()).map_err(|e| {
                    let sent = Shallow::parse_checking(raw.get().as_bytes(), Check::None).map_or_else(|_| Value::String(raw.get().to_string()), Shallow::into_value_unchecked);
                    (format!("the message is not valid JSON: {e}"), sent)
                })
            } else {
                Err(("each message must be a JSON object".to_string(), serde_json::from_str(raw.get()).unwrap_or(Value::Null)))
            };
            let item = item.map(|mut m| {
                for (k, r) in &objects {
                    m.default_raw(k, r);
                }
                if let Some(s) = sent_at {
                    m.default_raw("sentAt", s);
                }
                m
            });
            let ty = item.as_ref().ok().and_then(|m| m.str_field("type")).and_then(|t| EventType::parse(&t));
            (item, ty)
        })
        .collect())
}

/// A message of a request, or why it is not an object (with what was sent).
type Item<'a> = Result<Shallow<'a>, (String, Value)>;

/// A message refused by validation or by the database: for the answer, the metrics and the feed.
struct Refusal {
    index: usize,
    message_id: Option<String>,
    kind: Option<String>,
    reason: String,
    /// The error code of a single call refused for this.
    code: &'static str,
    /// The message, when someone watches the live feed.
    payload: Option<Arc<Value>>,
}

/// PostgreSQL cannot store NUL in text: a rejected message's id and type are kept without it (the
/// payload is JSON, which escapes it).
fn storable(text: &Option<String>) -> Option<String> {
    text.as_ref().map(|t| t.replace('\0', "\u{fffd}"))
}

async fn handle(state: &AppState, call: Call, route: Option<EventType>) -> Response {
    let started = Instant::now();
    let ingest = &state.ingest;
    let bytes = match read(call.body, &ingest.limits).await.and_then(|raw| decode(&call.headers, raw, &ingest.limits)) {
        Ok(bytes) => bytes,
        Err(BodyError(code, message)) => return fail(StatusCode::BAD_REQUEST, code, message),
    };
    let body = match parse(&bytes, route.is_none()) {
        Ok(body) => body,
        Err(BodyError(code, message)) => return fail(StatusCode::BAD_REQUEST, code, message),
    };
    let body_size = bytes.len();
    let Some(key) = write_key(&call.headers, body.fields.str_field("writeKey").as_deref(), &query_key(&call.uri)) else {
        return fail(StatusCode::UNAUTHORIZED, "missing_write_key", "send the write key as the Basic auth user name or as `writeKey` in the body");
    };
    let owner = match ingest.keys.owner(&state.store, &key).await {
        Ok(Some(o)) => o,
        Ok(None) => return fail(StatusCode::UNAUTHORIZED, "invalid_write_key", "unknown or revoked write key"),
        Err(e) => {
            tracing::error!(error = %e, "write key lookup failed");
            return fail(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the event store is unavailable; retry later");
        }
    };
    if let Some(origin) = call.headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        if !owner.allowed_origins.is_empty() && !owner.allowed_origins.iter().any(|o| o == origin) {
            return fail(StatusCode::FORBIDDEN, "origin_not_allowed", format!("this source does not accept events from {origin}"));
        }
    }
    let items = match messages(body, route, ingest.limits.max_batch_messages) {
        Ok(items) => items,
        Err(res) => return res,
    };
    if let Err(wait) = ingest.check_rate(&owner.source_id, owner.rate_limit, items.len()) {
        let mut res = fail(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "this source sends faster than its rate limit");
        res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait));
        return res;
    }
    let received_at = now_ms();
    let ip = client_ip(call.addr, &call.headers, &ingest.trusted_proxies);
    let live = ingest.live.wanted(&owner.source_id);
    let single_size = route.is_some().then_some(body_size);
    let mut events = Vec::new();
    // Per event: its index in the request, its type, and the message for the live feed.
    let mut accepted = Vec::new();
    let mut rejections = Vec::new();
    let mut refused = Vec::new();
    for (index, (item, ty)) in items.into_iter().enumerate() {
        match accept(item, ty, ingest.limits.max_message_bytes, single_size, received_at, ip) {
            Ok((event_kind, msg)) => {
                let payload = msg.to_json();
                let watched = live.then(|| Arc::new(serde_json::from_str(&payload).unwrap_or(Value::Null)));
                events.push(NewEvent {
                    source_id: owner.source_id.clone(),
                    message_id: msg.id_text("messageId").unwrap_or_default(),
                    kind: event_kind.as_str(),
                    user_id: msg.id_text("userId"),
                    anonymous_id: msg.id_text("anonymousId"),
                    received_at,
                    payload,
                });
                accepted.push((index, event_kind, watched));
            }
            Err((reason, item)) => {
                let message_id = item.get("messageId").and_then(Value::as_str).map(str::to_string);
                let kind = route.map(|t| t.as_str().to_string()).or_else(|| item.get("type").and_then(Value::as_str).map(str::to_string));
                let code = if reason.contains("limit of") { "message_too_large" } else { "invalid_message" };
                let (stored_id, stored_kind) = (storable(&message_id), storable(&kind));
                rejections.push(NewRejection { source_id: owner.source_id.clone(), message_id: stored_id, kind: stored_kind, reason: reason.clone(), received_at, payload: item.to_string() });
                refused.push(Refusal { index, message_id, kind, reason, code, payload: live.then(|| Arc::new(item)) });
            }
        }
    }
    // Suppressed users' events are acknowledged and dropped.
    if let Some(is_suppressed) = ingest.suppressions.matcher(&state.store).await {
        let suppressed: Vec<bool> = events.iter().map(|e| is_suppressed(e.user_id.as_deref(), e.anonymous_id.as_deref())).collect();
        let mut keep = suppressed.iter().map(|s| !s);
        events.retain(|_| keep.next().unwrap_or(true));
        let mut keep = suppressed.iter().map(|s| !s);
        accepted.retain(|_| keep.next().unwrap_or(true));
        metrics::counter!("ingest_suppressed_total", "source" => owner.source_id.clone()).increment(suppressed.iter().filter(|s| **s).count() as u64);
    }
    let outcomes = match ingest.writer.write(events, rejections).await {
        Ok(o) => o,
        Err(WriteError::Busy) => {
            let mut res = fail(StatusCode::SERVICE_UNAVAILABLE, "overloaded", "too many events are waiting to be stored; retry shortly");
            res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return res;
        }
        Err(WriteError::Failed(e)) => {
            tracing::error!(error = %e, "storing events failed");
            let mut res = fail(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the event store is unavailable; retry later");
            res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            return res;
        }
    };
    // What the log now holds goes to the metrics and the live feed.
    let publish = |status: &'static str, message_id: Option<String>, kind: Option<String>, reason: Option<String>, payload: Arc<Value>| {
        ingest.live.publish(LiveMessage { source_id: owner.source_id.clone(), status, message_id, kind, reason, received_at, payload });
    };
    for (outcome, (index, kind, payload)) in outcomes.into_iter().zip(accepted) {
        match outcome {
            Outcome::Stored | Outcome::Duplicate => {
                owner.accepted(kind).increment(1);
                if let Some(p) = payload {
                    let message_id = p.get("messageId").and_then(Value::as_str).map(str::to_string);
                    publish("accepted", message_id, Some(kind.as_str().into()), None, p);
                }
            }
            Outcome::Refused(r) => {
                refused.push(Refusal { index, message_id: r.message_id, kind: r.kind, reason: r.reason, code: "refused_by_database", payload });
            }
        }
    }
    refused.sort_by_key(|r| r.index);
    for r in &mut refused {
        let kind = r.kind.clone().unwrap_or_else(|| "unknown".into());
        metrics::counter!("ingest_rejected_total", "source" => owner.source_id.clone(), "type" => kind).increment(1);
        if let Some(p) = r.payload.take() {
            publish("rejected", r.message_id.clone(), r.kind.clone(), Some(r.reason.clone()), p);
        }
    }
    static ACK_SECONDS: LazyLock<metrics::Histogram> = LazyLock::new(|| metrics::histogram!("ingest_ack_seconds"));
    ACK_SECONDS.record(started.elapsed().as_secs_f64());
    if let (Some(_), Some(r)) = (route, refused.first()) {
        return fail(StatusCode::BAD_REQUEST, r.code, r.reason.clone());
    }
    if refused.is_empty() {
        return ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], r#"{"success":true}"#).into_response();
    }
    let rejected: Vec<Value> = refused.iter().map(|r| json!({"index": r.index, "messageId": r.message_id, "reason": r.reason})).collect();
    Json(json!({"success": true, "rejected": rejected})).into_response()
}

/// Validates and enriches one message, or says why it is refused (with the message as sent).
fn accept<'a>(item: Item<'a>, ty: Option<EventType>, max_bytes: usize, known_size: Option<usize>, received_at: i64, ip: IpAddr) -> Result<(EventType, Shallow<'a>), (String, Value)> {
    let mut msg = item?;
    // A single call's message is the body; a batch's are measured one by one.
    let size = known_size.unwrap_or_else(|| msg.size());
    if size > max_bytes {
        let summary = json!({"messageId": msg.value("messageId"), "type": msg.value("type"), "bytes": size, "truncated": true});
        return Err((format!("the message is {size} bytes, over the limit of {max_bytes} bytes per message"), summary));
    }
    let Some(ty) = ty else {
        let reason = match msg.text_of("type").filter(|t| t != "null") {
            None => "type is required in a batch".to_string(),
            Some(t) => format!("type {t} is not one of identify, track, page, screen, group, alias"),
        };
        return Err((reason, msg.into_value()));
    };
    if let Err(reason) = validate(&msg, ty, is_timestamp) {
        return Err((reason, msg.into_value()));
    }
    enrich(&mut msg, ty.as_str(), received_at, Some(ip));
    Ok((ty, msg))
}
