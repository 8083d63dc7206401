//! The audit log, for owners and admins.

use super::auth::{Admin, Auth};
use super::problem::{ApiQuery, ApiResult};
use super::{AppState, ListParams};
use crate::store::AuditEntry;
use axum::extract::State;
use axum::Json;
use model::ListOut;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_audit))
}

/// Audit entries, newest first.
#[utoipa::path(get, path = "/api/audit", tag = "audit", params(ListParams), responses((status = 200, body = ListOut<AuditEntry>)))]
async fn list_audit(_auth: Auth<Admin>, State(state): State<AppState>, ApiQuery(q): ApiQuery<ListParams>) -> ApiResult<Json<ListOut<AuditEntry>>> {
    let (items, next) = state.store.audit_page(q.limit()?, q.before.as_deref()).await?;
    Ok(Json(ListOut { items, next }))
}
