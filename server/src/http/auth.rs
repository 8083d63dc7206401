//! Who is calling, and may they? One extractor, `Auth<MinRole>`, used by every `/api` handler:
//! a bearer token or a session cookie, CSRF protection for cookie requests that change state,
//! and the role check. A handler cannot forget any of it.

use super::problem::ApiError;
use super::AppState;
use crate::store::Actor;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, Method};
use model::Role;
use std::marker::PhantomData;
use tower_sessions::Session;

pub const SESSION_USER_KEY: &str = "user_id";

/// Marker types naming the least role a route needs.
pub trait MinRole: Send + Sync + 'static {
    const ROLE: Role;
}
pub struct Viewer;
pub struct Editor;
pub struct Admin;
pub struct Owner;
impl MinRole for Viewer {
    const ROLE: Role = Role::Viewer;
}
impl MinRole for Editor {
    const ROLE: Role = Role::Editor;
}
impl MinRole for Admin {
    const ROLE: Role = Role::Admin;
}
impl MinRole for Owner {
    const ROLE: Role = Role::Owner;
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub actor: Actor,
    pub role: Role,
    /// Set when the caller is a signed-in user.
    pub user_id: Option<String>,
    pub email: Option<String>,
}

/// The caller, checked to hold at least role `R`.
pub struct Auth<R: MinRole>(pub Principal, PhantomData<R>);

impl<R: MinRole> std::ops::Deref for Auth<R> {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.0
    }
}

impl<S, R> FromRequestParts<S> for Auth<R>
where
    S: Send + Sync,
    AppState: FromRef<S>,
    R: MinRole,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let state = AppState::from_ref(state);
        let principal = authenticate(parts, &state).await?.ok_or(ApiError::Unauthorized)?;
        if principal.role < R::ROLE {
            return Err(ApiError::Forbidden(format!(
                "this needs the {} role or higher; you are {}",
                R::ROLE,
                principal.role
            )));
        }
        Ok(Auth(principal, PhantomData))
    }
}

/// The caller, if any: a bearer token first, else the session cookie (with the CSRF check).
pub async fn authenticate(parts: &Parts, state: &AppState) -> Result<Option<Principal>, ApiError> {
    if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
        let value = value.to_str().unwrap_or("");
        let Some(secret) = value.strip_prefix("Bearer ").map(str::trim) else {
            return Err(ApiError::Unauthorized);
        };
        let token = state.store.token_by_secret(secret).await?.ok_or(ApiError::Unauthorized)?;
        return Ok(Some(Principal {
            actor: Actor::Token { id: token.id, name: token.name },
            role: token.role,
            user_id: None,
            email: None,
        }));
    }
    let Some(user) = session_user(parts, state).await? else {
        return Ok(None);
    };
    if !is_safe(&parts.method) {
        check_same_origin(parts)?;
    }
    Ok(Some(Principal {
        actor: Actor::User { id: user.id.clone(), email: user.email.clone() },
        role: user.role,
        user_id: Some(user.id),
        email: Some(user.email),
    }))
}

/// The signed-in user of this request's session, if it still exists.
pub async fn session_user(parts: &Parts, state: &AppState) -> Result<Option<crate::store::UserRow>, ApiError> {
    let Some(session) = parts.extensions.get::<Session>() else {
        return Ok(None);
    };
    let id: Option<String> = session.get(SESSION_USER_KEY).await.map_err(|e| ApiError::Internal(e.into()))?;
    match id {
        Some(id) => Ok(state.store.user_by_id(&id).await?),
        None => Ok(None),
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// CSRF protection for cookie-authenticated requests: browsers say where a request comes from in
/// `Sec-Fetch-Site` (or at least `Origin`); refuse anything that is not this site. Requests with
/// neither header do not come from a browser page, so they cannot be forged by one.
pub fn check_same_origin(parts: &Parts) -> Result<(), ApiError> {
    if let Some(site) = parts.headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return match site {
            "same-origin" | "none" => Ok(()),
            _ => Err(ApiError::CrossOrigin),
        };
    }
    if let Some(origin) = parts.headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = parts.headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
        let origin_host = origin.split_once("://").map(|(_, rest)| rest).unwrap_or("");
        if origin == "null" || origin_host != host {
            return Err(ApiError::CrossOrigin);
        }
    }
    Ok(())
}
