//! Sign in, sign out, who am I, and the one-time setup of the first owner.

use super::auth::{authenticate, check_same_origin, Auth, Viewer, SESSION_USER_KEY};
use super::problem::{ApiError, ApiJson, ApiResult};
use super::AppState;
use crate::password;
use axum::extract::{ConnectInfo, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Json;
use model::{MeOut, Role};
use serde::Deserialize;
use std::net::SocketAddr;
use tower_sessions::Session;
use utoipa_axum::{router::OpenApiRouter, routes};

#[derive(Deserialize, utoipa::ToSchema)]
pub struct LoginIn {
    pub email: String,
    pub password: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct SetupIn {
    /// The token from the setup link printed at first start.
    pub token: String,
    pub email: String,
    pub password: String,
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(setup))
}

async fn start_session(session: &Session, user_id: &str) -> ApiResult<()> {
    // A new id on sign-in: a session id planted before sign-in is worthless after it.
    session.cycle_id().await.map_err(|e| ApiError::Internal(e.into()))?;
    session.insert(SESSION_USER_KEY, user_id).await.map_err(|e| ApiError::Internal(e.into()))?;
    Ok(())
}

/// Sign in with email and password; sets the session cookie.
#[utoipa::path(post, path = "/api/auth/login", tag = "account", request_body = LoginIn,
    responses((status = 200, body = MeOut), (status = 401, body = model::Problem), (status = 429, body = model::Problem)))]
async fn login(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    session: Session,
    parts: Parts,
    ApiJson(body): ApiJson<LoginIn>,
) -> ApiResult<Json<MeOut>> {
    check_same_origin(&parts)?;
    let email = body.email.trim().to_lowercase();
    let account_key = format!("account:{email}");
    let keys = [format!("ip:{}", addr.ip()), account_key.clone()];
    state.login_limiter.check(&keys).map_err(|retry_after| ApiError::TooManyRequests { retry_after })?;
    let user = state.store.user_by_email(&email).await?;
    let ok = password::verify(body.password, user.as_ref().map(|u| u.password_hash.clone())).await;
    let Some(user) = user.filter(|_| ok) else {
        state.login_limiter.fail(&keys);
        tracing::info!(%email, ip = %addr.ip(), "failed sign-in");
        return Err(ApiError::BadCredentials);
    };
    state.login_limiter.succeed(&account_key);
    start_session(&session, &user.id).await?;
    Ok(Json(MeOut { id: user.id, email: user.email, role: user.role }))
}

/// Sign out: ends the session.
#[utoipa::path(post, path = "/api/auth/logout", tag = "account", responses((status = 204)))]
async fn logout(State(state): State<AppState>, session: Session, parts: Parts) -> ApiResult<StatusCode> {
    if authenticate(&parts, &state).await?.is_some() {
        session.flush().await.map_err(|e| ApiError::Internal(e.into()))?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The signed-in user, or the token's role.
#[utoipa::path(get, path = "/api/me", tag = "account", responses((status = 200, body = MeOut), (status = 401, body = model::Problem)))]
async fn me(auth: Auth<Viewer>) -> Json<MeOut> {
    Json(MeOut {
        id: auth.user_id.clone().unwrap_or_else(|| match &auth.actor {
            crate::store::Actor::Token { id, .. } => id.clone(),
            _ => String::new(),
        }),
        email: auth.email.clone().unwrap_or_else(|| auth.actor.label()),
        role: auth.role,
    })
}

/// Creates the first owner with the one-time token printed at first start, and signs them in.
#[utoipa::path(post, path = "/api/setup", tag = "account", request_body = SetupIn,
    responses((status = 201, body = MeOut), (status = 403, body = model::Problem), (status = 422, body = model::Problem)))]
async fn setup(
    State(state): State<AppState>,
    session: Session,
    parts: Parts,
    ApiJson(body): ApiJson<SetupIn>,
) -> ApiResult<(StatusCode, Json<MeOut>)> {
    check_same_origin(&parts)?;
    if !state.setup.matches(&body.token) {
        return Err(ApiError::Forbidden("this setup link is not valid (it works once, until the first owner exists)".into()));
    }
    let mut errors = Vec::new();
    let email = model::account::parse_email(&body.email)
        .map_err(|m| errors.push(model::FieldError { field: "email".into(), message: m }))
        .ok();
    if let Err(m) = model::account::check_password(&body.password) {
        errors.push(model::FieldError { field: "password".into(), message: m });
    }
    let Some(email) = email.filter(|_| errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let hash = password::hash(body.password).await?;
    let Some(user) = state.store.create_first_owner(&email, &hash).await? else {
        state.setup.clear();
        return Err(ApiError::Forbidden("an owner already exists; sign in instead".into()));
    };
    state.setup.clear();
    start_session(&session, &user.id).await?;
    Ok((StatusCode::CREATED, Json(MeOut { id: user.id, email: user.email, role: Role::Owner })))
}
