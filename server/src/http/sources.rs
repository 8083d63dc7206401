//! Sources: create, read, rename, delete; write keys; the events and rejections they received;
//! the live feed; SDK snippets.

use super::auth::{Auth, Editor, Viewer};
use super::problem::{ApiError, ApiJson, ApiQuery, ApiResult};
use super::{AppState, ListParams};
use crate::store::events::{EventOut, RejectionOut};
use crate::store::{SourceFields, SourceRow, SourceType};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use futures_util::stream::{Stream, StreamExt};
use model::{FieldError, ListOut};
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_sources, create_source))
        .routes(routes!(get_source, update_source, delete_source))
        .routes(routes!(create_write_key))
        .routes(routes!(revoke_write_key))
        .routes(routes!(list_events))
        .routes(routes!(list_rejections))
        .routes(routes!(live))
        .routes(routes!(snippets))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceIn {
    pub name: String,
    /// `web`, `server` (default) or `mobile`.
    #[serde(rename = "type", default)]
    pub kind: Option<SourceType>,
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    pub rate_limit: Option<i64>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourcePatch {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<SourceType>,
    pub allowed_origins: Option<Vec<String>>,
    /// Events per second; `0` removes the limit.
    pub rate_limit: Option<i64>,
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteKeyIn {
    /// Rotate: the source's other keys keep working this many seconds, then stop. Absent: they
    /// keep working until revoked.
    pub overlap_seconds: Option<i64>,
}

fn check(f: &SourceFields) -> ApiResult<()> {
    let mut errors = Vec::new();
    if let Err(m) = model::workspace::check_name(&f.name) {
        errors.push(FieldError { field: "name".into(), message: m });
    }
    for (i, o) in f.allowed_origins.iter().enumerate() {
        if let Err(m) = model::workspace::check_origin(o) {
            errors.push(FieldError { field: format!("allowed_origins[{i}]"), message: m });
        }
    }
    if f.rate_limit.is_some_and(|r| r < 1) {
        errors.push(FieldError { field: "rate_limit".into(), message: "must be at least 1 event per second".into() });
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(errors))
    }
}

async fn found(state: &AppState, id: &str) -> ApiResult<SourceRow> {
    state.store.source(id).await?.ok_or(ApiError::NotFound("source"))
}

/// Sources, newest first.
#[utoipa::path(get, path = "/api/sources", tag = "sources", params(ListParams),
    responses((status = 200, body = ListOut<SourceRow>), (status = 401, body = model::Problem)))]
async fn list_sources(_auth: Auth<Viewer>, State(state): State<AppState>, ApiQuery(q): ApiQuery<ListParams>) -> ApiResult<Json<ListOut<SourceRow>>> {
    let (items, next) = state.store.sources_page(q.limit()?, q.before.as_deref()).await?;
    Ok(Json(ListOut { items, next }))
}

/// Creates a source with a new write key.
#[utoipa::path(post, path = "/api/sources", tag = "sources", request_body = SourceIn,
    responses((status = 201, body = SourceRow), (status = 409, body = model::Problem), (status = 422, body = model::Problem)))]
async fn create_source(auth: Auth<Editor>, State(state): State<AppState>, ApiJson(body): ApiJson<SourceIn>) -> ApiResult<(StatusCode, Json<SourceRow>)> {
    let fields = SourceFields {
        name: body.name.trim().to_string(),
        kind: body.kind.unwrap_or(SourceType::Server),
        allowed_origins: body.allowed_origins,
        rate_limit: body.rate_limit,
    };
    check(&fields)?;
    let row = state.store.create_source(&auth.actor, &fields).await?;
    Ok((StatusCode::CREATED, Json(row)))
}

/// One source with its live write keys.
#[utoipa::path(get, path = "/api/sources/{id}", tag = "sources", params(("id" = String, Path)),
    responses((status = 200, body = SourceRow), (status = 404, body = model::Problem)))]
async fn get_source(_auth: Auth<Viewer>, State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<SourceRow>> {
    Ok(Json(found(&state, &id).await?))
}

/// Renames a source or changes its type, allowed origins or rate limit.
#[utoipa::path(patch, path = "/api/sources/{id}", tag = "sources", params(("id" = String, Path)), request_body = SourcePatch,
    responses((status = 200, body = SourceRow), (status = 404, body = model::Problem), (status = 409, body = model::Problem)))]
async fn update_source(auth: Auth<Editor>, State(state): State<AppState>, Path(id): Path<String>, ApiJson(body): ApiJson<SourcePatch>) -> ApiResult<Json<SourceRow>> {
    let old = found(&state, &id).await?;
    let fields = SourceFields {
        name: body.name.map(|n| n.trim().to_string()).unwrap_or(old.name),
        kind: body.kind.unwrap_or(old.kind),
        allowed_origins: body.allowed_origins.unwrap_or(old.allowed_origins),
        rate_limit: match body.rate_limit {
            Some(0) => None,
            Some(n) => Some(n),
            None => old.rate_limit,
        },
    };
    check(&fields)?;
    let row = state.store.update_source(&auth.actor, &id, &fields).await?;
    state.ingest.keys.clear();
    Ok(Json(row))
}

/// Deletes a source; its write keys stop working at once.
#[utoipa::path(delete, path = "/api/sources/{id}", tag = "sources", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = model::Problem)))]
async fn delete_source(auth: Auth<Editor>, State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    state.store.delete_source(&auth.actor, &id).await?;
    state.ingest.keys.clear();
    Ok(StatusCode::NO_CONTENT)
}

/// Adds a write key; with `overlap_seconds`, rotates (the other keys expire after the overlap).
#[utoipa::path(post, path = "/api/sources/{id}/write-keys", tag = "sources", params(("id" = String, Path)), request_body = WriteKeyIn,
    responses((status = 201, body = SourceRow), (status = 404, body = model::Problem)))]
async fn create_write_key(auth: Auth<Editor>, State(state): State<AppState>, Path(id): Path<String>, raw: axum::body::Bytes) -> ApiResult<(StatusCode, Json<SourceRow>)> {
    // The body is optional: none means a plain extra key.
    let body: WriteKeyIn = if raw.iter().all(u8::is_ascii_whitespace) {
        WriteKeyIn::default()
    } else {
        serde_json::from_slice(&raw).map_err(|e| ApiError::BadRequest(format!("the body is not valid: {e}")))?
    };
    if body.overlap_seconds.is_some_and(|s| s < 0) {
        return Err(ApiError::field("overlap_seconds", "must be 0 or more"));
    }
    let row = state.store.add_write_key(&auth.actor, &id, body.overlap_seconds.map(|s| s * 1000)).await?;
    state.ingest.keys.clear();
    Ok((StatusCode::CREATED, Json(row)))
}

/// Revokes a write key at once.
#[utoipa::path(delete, path = "/api/sources/{id}/write-keys/{key_id}", tag = "sources", params(("id" = String, Path), ("key_id" = String, Path)),
    responses((status = 204), (status = 404, body = model::Problem)))]
async fn revoke_write_key(auth: Auth<Editor>, State(state): State<AppState>, Path((id, key_id)): Path<(String, String)>) -> ApiResult<StatusCode> {
    state.store.revoke_write_key(&auth.actor, &id, &key_id).await?;
    state.ingest.keys.clear();
    Ok(StatusCode::NO_CONTENT)
}

/// Events the source sent, newest first, as stored (payload with enrichment).
#[utoipa::path(get, path = "/api/sources/{id}/events", tag = "sources", params(("id" = String, Path), ListParams),
    responses((status = 200, body = ListOut<EventOut>), (status = 404, body = model::Problem)))]
async fn list_events(_auth: Auth<Viewer>, State(state): State<AppState>, Path(id): Path<String>, ApiQuery(q): ApiQuery<ListParams>) -> ApiResult<Json<ListOut<EventOut>>> {
    found(&state, &id).await?;
    let (items, next) = state.store.events_page(&id, q.limit()?, q.before.as_deref()).await?;
    Ok(Json(ListOut { items, next }))
}

/// Messages the source sent that were refused, with the reason, newest first.
#[utoipa::path(get, path = "/api/sources/{id}/rejections", tag = "sources", params(("id" = String, Path), ListParams),
    responses((status = 200, body = ListOut<RejectionOut>), (status = 404, body = model::Problem)))]
async fn list_rejections(_auth: Auth<Viewer>, State(state): State<AppState>, Path(id): Path<String>, ApiQuery(q): ApiQuery<ListParams>) -> ApiResult<Json<ListOut<RejectionOut>>> {
    found(&state, &id).await?;
    let (items, next) = state.store.rejections_page(&id, q.limit()?, q.before.as_deref()).await?;
    Ok(Json(ListOut { items, next }))
}

/// Accepted and rejected messages as they arrive (Server-Sent Events: `accepted` / `rejected`).
#[utoipa::path(get, path = "/api/sources/{id}/live", tag = "sources", params(("id" = String, Path)),
    responses((status = 200, content_type = "text/event-stream", body = String), (status = 404, body = model::Problem)))]
async fn live(_auth: Auth<Viewer>, State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    found(&state, &id).await?;
    let (rx, watching) = state.ingest.live.subscribe(&id);
    let mut shutdown = state.shutdown.clone();
    let stopped = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    let stream = tokio_stream::wrappers::BroadcastStream::new(rx)
        .filter_map(move |msg| {
            // The stream keeps its watch (and other nodes' relaying) while it is open.
            let _ = &watching;
            let id = id.clone();
            async move {
                match msg {
                    Ok(m) if m.source_id == id => {
                        Some(Ok(Event::default().event(m.status).data(serde_json::to_string(&*m).unwrap_or_default())))
                    }
                    Ok(_) => None,
                    Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => {
                        Some(Ok(Event::default().event("lagged").data(format!("{{\"missed\":{n}}}"))))
                    }
                }
            }
        })
        .take_until(Box::pin(stopped));
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SnippetsOut {
    /// Which snippets fit the source type first.
    pub recommended: Vec<String>,
    pub analytics_js: String,
    pub analytics_node: String,
    pub rudder_python: String,
    pub rudder_js: String,
}

/// Copy-paste SDK snippets with this server's URL and the source's write key filled in.
#[utoipa::path(get, path = "/api/sources/{id}/snippets", tag = "sources", params(("id" = String, Path)),
    responses((status = 200, body = SnippetsOut), (status = 404, body = model::Problem)))]
async fn snippets(_auth: Auth<Viewer>, State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult<Json<SnippetsOut>> {
    let source = found(&state, &id).await?;
    let base = match &state.config.public_url {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => format!("http://{}", headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1:3000")),
    };
    let key = source.write_key.unwrap_or_else(|| "WRITE_KEY".into());
    Ok(Json(crate::snippets::render(&base, &key, source.kind)))
}
