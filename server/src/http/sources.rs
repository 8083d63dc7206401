//! Sources (the list; creating and editing arrive with the tracking API).

use super::auth::{Auth, Viewer};
use super::problem::{ApiQuery, ApiResult};
use super::{AppState, ListParams};
use crate::store::SourceRow;
use axum::extract::State;
use axum::Json;
use model::ListOut;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_sources))
}

/// Sources, newest first.
#[utoipa::path(get, path = "/api/sources", tag = "sources", params(ListParams),
    responses((status = 200, body = ListOut<SourceRow>), (status = 401, body = model::Problem)))]
async fn list_sources(_auth: Auth<Viewer>, State(state): State<AppState>, ApiQuery(q): ApiQuery<ListParams>) -> ApiResult<Json<ListOut<SourceRow>>> {
    let (items, next) = state.store.sources_page(q.limit()?, q.before.as_deref()).await?;
    Ok(Json(ListOut { items, next }))
}
