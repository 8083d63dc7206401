//! Users, managed by owners and admins. Only an owner may make or unmake an owner; the last owner
//! cannot be demoted or removed.

use super::auth::{Admin, Auth};
use super::problem::{ApiError, ApiJson, ApiQuery, ApiResult};
use super::{ListParams, AppState};
use crate::password;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use model::{FieldError, ListOut, Role, UserOut};
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserIn {
    pub email: String,
    pub password: String,
    pub role: Role,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    pub role: Option<Role>,
    pub password: Option<String>,
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_users, create_user)).routes(routes!(update_user, delete_user))
}

fn owner_only(auth: &Auth<Admin>, role: Role) -> ApiResult<()> {
    if role == Role::Owner && auth.role < Role::Owner {
        return Err(ApiError::Forbidden("only an owner can make or change an owner".into()));
    }
    Ok(())
}

/// Users, newest first.
#[utoipa::path(get, path = "/api/users", tag = "users", params(ListParams),
    responses((status = 200, body = ListOut<UserOut>), (status = 401, body = model::Problem), (status = 403, body = model::Problem)))]
async fn list_users(_auth: Auth<Admin>, State(state): State<AppState>, ApiQuery(q): ApiQuery<ListParams>) -> ApiResult<Json<ListOut<UserOut>>> {
    let (rows, next) = state.store.users_page(q.limit()?, q.before.as_deref()).await?;
    Ok(Json(ListOut { items: rows.iter().map(|u| u.out()).collect(), next }))
}

/// Adds a user who can sign in with this email and password.
#[utoipa::path(post, path = "/api/users", tag = "users", request_body = UserIn,
    responses((status = 201, body = UserOut), (status = 409, body = model::Problem), (status = 422, body = model::Problem)))]
async fn create_user(auth: Auth<Admin>, State(state): State<AppState>, ApiJson(body): ApiJson<UserIn>) -> ApiResult<(StatusCode, Json<UserOut>)> {
    owner_only(&auth, body.role)?;
    let mut errors = Vec::new();
    let email = model::account::parse_email(&body.email)
        .map_err(|m| errors.push(FieldError { field: "email".into(), message: m }))
        .ok();
    if let Err(m) = model::account::check_password(&body.password) {
        errors.push(FieldError { field: "password".into(), message: m });
    }
    let Some(email) = email.filter(|_| errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let hash = password::hash(body.password).await?;
    let user = state.store.create_user(&auth.actor, &email, &hash, body.role).await?;
    Ok((StatusCode::CREATED, Json(user.out())))
}

/// Changes a user's role or password.
#[utoipa::path(patch, path = "/api/users/{id}", tag = "users", request_body = UserPatch, params(("id" = String, Path)),
    responses((status = 200, body = UserOut), (status = 404, body = model::Problem), (status = 409, body = model::Problem)))]
async fn update_user(
    auth: Auth<Admin>,
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UserPatch>,
) -> ApiResult<Json<UserOut>> {
    let user = state.store.user_by_id(&id).await?.ok_or(ApiError::NotFound("user"))?;
    if let Some(role) = body.role {
        owner_only(&auth, role)?;
        owner_only(&auth, user.role)?;
        if !state.store.set_user_role(&auth.actor, &id, role).await? {
            return Err(ApiError::Conflict("the last owner cannot be demoted; make someone else owner first".into()));
        }
    }
    if let Some(pw) = body.password {
        model::account::check_password(&pw).map_err(|m| ApiError::field("password", m))?;
        let hash = password::hash(pw).await?;
        state.store.set_user_password(&auth.actor, &id, &hash).await?;
    }
    let user = state.store.user_by_id(&id).await?.ok_or(ApiError::NotFound("user"))?;
    Ok(Json(user.out()))
}

/// Removes a user; their sessions stop working at once.
#[utoipa::path(delete, path = "/api/users/{id}", tag = "users", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = model::Problem), (status = 409, body = model::Problem)))]
async fn delete_user(auth: Auth<Admin>, State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let user = state.store.user_by_id(&id).await?.ok_or(ApiError::NotFound("user"))?;
    owner_only(&auth, user.role)?;
    if !state.store.delete_user(&auth.actor, &id).await? {
        return Err(ApiError::Conflict("the last owner cannot be removed".into()));
    }
    Ok(StatusCode::NO_CONTENT)
}
