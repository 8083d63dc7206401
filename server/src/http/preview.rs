//! The mapping preview: what an integration's actions make of an event with given settings and
//! mapping overrides, without sending anything. The admin app calls it as the user types (the
//! mapping engine stays on the server; see the README).

use super::auth::{Auth, Editor};
use super::problem::{ApiError, ApiJson, ApiResult};
use super::AppState;
use crate::integrations::{handlers, sample};
use axum::extract::{Path, State};
use axum::Json;
use model::integration::Request;
use model::mapping::{Built, Prepared};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(preview))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewIn {
    #[serde(default)]
    #[schema(value_type = Object)]
    pub settings: Map<String, Value>,
    /// `{action: {enabled, mapping}}` overrides.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub actions: Map<String, Value>,
    /// The event to map; a sample event when absent.
    #[schema(value_type = Object)]
    pub event: Option<Value>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PreviewOut {
    #[schema(value_type = Object)]
    pub event: Value,
    pub results: Vec<PreviewResult>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PreviewResult {
    pub action: String,
    #[schema(value_type = Object)]
    pub request: Option<Request>,
    pub rejected: Option<String>,
}

/// Maps an event through an integration's actions (nothing is sent). A broken mapping is a 422
/// naming where it is broken.
#[utoipa::path(post, path = "/api/catalog/{slug}/preview", tag = "catalog", params(("slug" = String, Path)), request_body = PreviewIn,
    responses((status = 200, body = PreviewOut), (status = 404, body = model::Problem), (status = 422, body = model::Problem)))]
async fn preview(_auth: Auth<Editor>, State(state): State<AppState>, Path(slug): Path<String>, ApiJson(body): ApiJson<PreviewIn>) -> ApiResult<Json<PreviewOut>> {
    let loaded = state.integrations.catalog.get(&slug).ok_or(ApiError::NotFound("integration"))?;
    let m = &loaded.manifest;
    let event = body.event.unwrap_or_else(|| sample::event(m));
    let prepared = Prepared::new(m, &body.actions).map_err(|e| ApiError::field(&e.at, e.message))?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let built = handlers::for_handler(m.handler.as_deref()).map(&prepared, &body.settings, &[&event], now);
    let results = built
        .into_iter()
        .map(|b| match b {
            Built::Request { action, request, .. } => PreviewResult { action, request: Some(request), rejected: None },
            Built::Rejected { action, reason, .. } => PreviewResult { action, request: None, rejected: Some(reason) },
        })
        .collect();
    Ok(Json(PreviewOut { event, results }))
}
