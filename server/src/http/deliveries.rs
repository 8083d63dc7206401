//! What happened to a destination's events: deliveries by state, the attempt log, dead letters
//! (list, replay, discard) and manual pause and resume.

use super::auth::{Auth, Editor, Viewer};
use super::problem::{ApiError, ApiQuery, ApiResult};
use super::AppState;
use crate::deliver::queue::{self, AttemptOut, DeliveryOut, ReplayRecord};
use crate::store;
use axum::extract::{Path, State};
use axum::Json;
use model::ListOut;
use serde::{Deserialize, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_deliveries))
        .routes(routes!(list_attempts))
        .routes(routes!(dead_letter, discard_dead_letter))
        .routes(routes!(replay_dead_letter))
        .routes(routes!(list_replays))
        .routes(routes!(pause))
        .routes(routes!(resume))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryParams {
    /// pending, in_flight, succeeded, retrying, dead, filtered, rejected, discarded
    pub state: Option<String>,
    /// Only this event's attempts.
    pub message_id: Option<String>,
    /// 1–1000, default 100.
    pub limit: Option<i64>,
}

impl DeliveryParams {
    fn limit(&self) -> ApiResult<i64> {
        match self.limit {
            None => Ok(100),
            Some(n) if (1..=1000).contains(&n) => Ok(n),
            Some(n) => Err(ApiError::field("limit", format!("must be between 1 and 1000, got {n}"))),
        }
    }
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdsIn {
    /// Delivery ids; absent: all dead letters of the destination (that `filter` lets through).
    pub ids: Option<Vec<String>>,
    /// Replay only: which dead letters when no ids are given.
    pub filter: Option<queue::DeadFilter>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ReplayOut {
    pub replay_id: String,
    pub count: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CountOut {
    pub count: u64,
}

async fn exists(state: &AppState, id: &str) -> ApiResult<store::DestinationRow> {
    let mut conn = state.store.pool().acquire().await.map_err(anyhow::Error::from)?;
    store::destination(&mut conn, id).await?.ok_or(ApiError::NotFound("destination"))
}

fn ids_of(raw: &axum::body::Bytes) -> ApiResult<IdsIn> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(IdsIn::default());
    }
    serde_json::from_slice(raw).map_err(|e| ApiError::BadRequest(format!("the body is not valid: {e}")))
}

/// The destination's deliveries, newest first (one per event), with state and reason.
#[utoipa::path(get, path = "/api/destinations/{id}/deliveries", tag = "delivery", params(("id" = String, Path), DeliveryParams),
    responses((status = 200, body = ListOut<DeliveryOut>), (status = 404, body = model::Problem)))]
async fn list_deliveries(_auth: Auth<Viewer>, State(state): State<AppState>, Path(id): Path<String>, ApiQuery(q): ApiQuery<DeliveryParams>) -> ApiResult<Json<ListOut<DeliveryOut>>> {
    exists(&state, &id).await?;
    let items = queue::deliveries(&state.store, &id, q.state.as_deref(), q.limit()?).await?;
    Ok(Json(ListOut { items, next: None }))
}

/// Every attempt (request with secrets redacted, response, latency), newest first; `message_id` for one event.
#[utoipa::path(get, path = "/api/destinations/{id}/attempts", tag = "delivery", params(("id" = String, Path), DeliveryParams),
    responses((status = 200, body = ListOut<AttemptOut>), (status = 404, body = model::Problem)))]
async fn list_attempts(_auth: Auth<Viewer>, State(state): State<AppState>, Path(id): Path<String>, ApiQuery(q): ApiQuery<DeliveryParams>) -> ApiResult<Json<ListOut<AttemptOut>>> {
    exists(&state, &id).await?;
    let items = queue::attempts(&state.store, &id, q.message_id.as_deref(), q.limit()?).await?;
    Ok(Json(ListOut { items, next: None }))
}

/// Dead letters: deliveries given up on, with the reason.
#[utoipa::path(get, path = "/api/destinations/{id}/dead-letter", tag = "delivery", params(("id" = String, Path), DeliveryParams),
    responses((status = 200, body = ListOut<DeliveryOut>), (status = 404, body = model::Problem)))]
async fn dead_letter(_auth: Auth<Viewer>, State(state): State<AppState>, Path(id): Path<String>, ApiQuery(q): ApiQuery<DeliveryParams>) -> ApiResult<Json<ListOut<DeliveryOut>>> {
    exists(&state, &id).await?;
    let items = queue::deliveries(&state.store, &id, Some("dead"), q.limit()?).await?;
    Ok(Json(ListOut { items, next: None }))
}

/// Sends dead letters again (the given ids, or all that the filter lets through); the replay is
/// recorded (who, when, how many, which).
#[utoipa::path(post, path = "/api/destinations/{id}/dead-letter/replay", tag = "delivery", params(("id" = String, Path)), request_body = IdsIn,
    responses((status = 200, body = ReplayOut), (status = 404, body = model::Problem)))]
async fn replay_dead_letter(auth: Auth<Editor>, State(state): State<AppState>, Path(id): Path<String>, raw: axum::body::Bytes) -> ApiResult<Json<ReplayOut>> {
    exists(&state, &id).await?;
    let body = ids_of(&raw)?;
    let filter = body.filter.unwrap_or_default();
    let recorded = serde_json::json!({"ids": body.ids, "filter": filter}).to_string();
    let (replay_id, count) = queue::replay(&state.store, &id, body.ids.as_deref(), &filter, &auth.actor.label(), &recorded).await?;
    Ok(Json(ReplayOut { replay_id, count }))
}

/// The destination's replays, newest first: who, when, which, how many, and how they ended so far.
#[utoipa::path(get, path = "/api/destinations/{id}/replays", tag = "delivery", params(("id" = String, Path), DeliveryParams),
    responses((status = 200, body = ListOut<ReplayRecord>), (status = 404, body = model::Problem)))]
async fn list_replays(_auth: Auth<Viewer>, State(state): State<AppState>, Path(id): Path<String>, ApiQuery(q): ApiQuery<DeliveryParams>) -> ApiResult<Json<ListOut<ReplayRecord>>> {
    exists(&state, &id).await?;
    let items = queue::replays(&state.store, &id, q.limit()?).await?;
    Ok(Json(ListOut { items, next: None }))
}

/// Discards dead letters (the given ids, or all).
#[utoipa::path(delete, path = "/api/destinations/{id}/dead-letter", tag = "delivery", params(("id" = String, Path)), request_body = IdsIn,
    responses((status = 200, body = CountOut), (status = 404, body = model::Problem)))]
async fn discard_dead_letter(_auth: Auth<Editor>, State(state): State<AppState>, Path(id): Path<String>, raw: axum::body::Bytes) -> ApiResult<Json<CountOut>> {
    exists(&state, &id).await?;
    let body = ids_of(&raw)?;
    let count = queue::discard(&state.store, &id, body.ids.as_deref()).await?;
    Ok(Json(CountOut { count }))
}

/// Pauses delivery to the destination (events keep being queued).
#[utoipa::path(post, path = "/api/destinations/{id}/pause", tag = "delivery", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = model::Problem)))]
async fn pause(_auth: Auth<Editor>, State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<axum::http::StatusCode> {
    exists(&state, &id).await?;
    queue::pause_destination(&state.store, &id, Some(i64::MAX)).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// Resumes delivery at once (also closes the circuit breaker).
#[utoipa::path(post, path = "/api/destinations/{id}/resume", tag = "delivery", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = model::Problem)))]
async fn resume(_auth: Auth<Editor>, State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<axum::http::StatusCode> {
    exists(&state, &id).await?;
    queue::pause_destination(&state.store, &id, None).await?;
    queue::note_result(&state.store, &id, true).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}
