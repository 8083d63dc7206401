//! Privacy requests: delete what is stored about a user, optionally suppress them.

use super::auth::{Admin, Auth};
use super::problem::{ApiError, ApiJson, ApiResult};
use super::AppState;
use crate::store::privacy::{DeletionOut, SuppressionOut};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use model::ListOut;
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(delete_user_data)).routes(routes!(list_suppressions)).routes(routes!(delete_suppression))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeletionIn {
    #[serde(rename = "userId")]
    pub user_id: Option<String>,
    #[serde(rename = "anonymousId")]
    pub anonymous_id: Option<String>,
    /// Also drop this user's future events at ingest.
    #[serde(default)]
    pub suppress: bool,
}

/// Deletes every stored event and rejected message of a user (by userId and/or anonymousId).
#[utoipa::path(post, path = "/api/privacy/deletions", tag = "privacy", request_body = DeletionIn,
    responses((status = 200, body = DeletionOut), (status = 422, body = model::Problem)))]
async fn delete_user_data(auth: Auth<Admin>, State(state): State<AppState>, ApiJson(body): ApiJson<DeletionIn>) -> ApiResult<Json<DeletionOut>> {
    let user = body.user_id.filter(|s| !s.is_empty());
    let anon = body.anonymous_id.filter(|s| !s.is_empty());
    if user.is_none() && anon.is_none() {
        return Err(ApiError::field("userId", "give userId, anonymousId or both"));
    }
    let out = state.store.delete_user_data(&auth.actor, user.as_deref(), anon.as_deref(), body.suppress).await?;
    state.ingest.suppressions.invalidate();
    Ok(Json(out))
}

/// Users whose events are dropped at ingest.
#[utoipa::path(get, path = "/api/privacy/suppressions", tag = "privacy", responses((status = 200, body = ListOut<SuppressionOut>)))]
async fn list_suppressions(_auth: Auth<Admin>, State(state): State<AppState>) -> ApiResult<Json<ListOut<SuppressionOut>>> {
    Ok(Json(ListOut { items: state.store.suppressions().await?, next: None }))
}

/// Lifts a suppression: the user's events are accepted again.
#[utoipa::path(delete, path = "/api/privacy/suppressions/{id}", tag = "privacy", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = model::Problem)))]
async fn delete_suppression(auth: Auth<Admin>, State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    state.store.delete_suppression(&auth.actor, &id).await?;
    state.ingest.suppressions.invalidate();
    Ok(StatusCode::NO_CONTENT)
}
