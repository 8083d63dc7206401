//! API tokens, managed by owners and admins. A token never holds more than its maker's role.

use super::auth::{Admin, Auth};
use super::problem::{ApiError, ApiJson, ApiQuery, ApiResult};
use super::{AppState, ListParams};
use crate::store::TokenRow;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use model::{ListOut, Role};
use serde::{Deserialize, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenIn {
    pub name: String,
    pub role: Role,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenCreatedOut {
    #[serde(flatten)]
    pub token: TokenRow,
    /// The token itself: shown this once.
    pub secret: String,
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_tokens, create_token)).routes(routes!(revoke_token))
}

/// API tokens, newest first (secrets are never shown again).
#[utoipa::path(get, path = "/api/tokens", tag = "tokens", params(ListParams), responses((status = 200, body = ListOut<TokenRow>)))]
async fn list_tokens(_auth: Auth<Admin>, State(state): State<AppState>, ApiQuery(q): ApiQuery<ListParams>) -> ApiResult<Json<ListOut<TokenRow>>> {
    let (items, next) = state.store.tokens_page(q.limit()?, q.before.as_deref()).await?;
    Ok(Json(ListOut { items, next }))
}

/// Creates a token; the answer holds its secret, once.
#[utoipa::path(post, path = "/api/tokens", tag = "tokens", request_body = TokenIn,
    responses((status = 201, body = TokenCreatedOut), (status = 403, body = model::Problem), (status = 422, body = model::Problem)))]
async fn create_token(auth: Auth<Admin>, State(state): State<AppState>, ApiJson(body): ApiJson<TokenIn>) -> ApiResult<(StatusCode, Json<TokenCreatedOut>)> {
    let name = body.name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(ApiError::field("name", "must be 1 to 100 characters"));
    }
    if body.role > auth.role {
        return Err(ApiError::Forbidden(format!("a token cannot have more than your own role ({})", auth.role)));
    }
    let new = state.store.create_token(&auth.actor, name, body.role).await?;
    Ok((StatusCode::CREATED, Json(TokenCreatedOut { token: new.row, secret: new.secret })))
}

/// Revokes a token: it stops working at once.
#[utoipa::path(delete, path = "/api/tokens/{id}", tag = "tokens", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = model::Problem)))]
async fn revoke_token(auth: Auth<Admin>, State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    state.store.revoke_token(&auth.actor, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
