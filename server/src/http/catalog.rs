//! The integration catalog: a branded list to choose from, each manifest whole, and the logos.

use super::auth::{Auth, Viewer};
use super::problem::{ApiError, ApiQuery, ApiResult};
use super::AppState;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use model::integration::{CatalogItem, Manifest};
use model::ListOut;
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_catalog)).routes(routes!(get_integration)).routes(routes!(logo))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CatalogParams {
    /// Text to find in the name, slug or description.
    pub q: Option<String>,
    /// A category, e.g. `Analytics`.
    pub category: Option<String>,
}

/// Every integration, sorted by name; search by text and category.
#[utoipa::path(get, path = "/api/catalog", tag = "catalog", params(CatalogParams),
    responses((status = 200, body = ListOut<CatalogItem>), (status = 401, body = model::Problem)))]
async fn list_catalog(_auth: Auth<Viewer>, State(state): State<AppState>, ApiQuery(q): ApiQuery<CatalogParams>) -> Json<ListOut<CatalogItem>> {
    let items = state.integrations.catalog.items(q.q.as_deref(), q.category.as_deref());
    Json(ListOut { items, next: None })
}

/// One integration's whole manifest: branding, capabilities, settings schema, actions.
#[utoipa::path(get, path = "/api/catalog/{slug}", tag = "catalog", params(("slug" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = model::Problem)))]
async fn get_integration(_auth: Auth<Viewer>, State(state): State<AppState>, Path(slug): Path<String>) -> ApiResult<Json<Manifest>> {
    let l = state.integrations.catalog.get(&slug).ok_or(ApiError::NotFound("integration"))?;
    Ok(Json(l.manifest.clone()))
}

/// The integration's logo (SVG). Public: the catalog's images load without credentials.
#[utoipa::path(get, path = "/api/catalog/{slug}/logo.svg", tag = "catalog", params(("slug" = String, Path)),
    responses((status = 200, content_type = "image/svg+xml", body = String), (status = 404, body = model::Problem)))]
async fn logo(State(state): State<AppState>, Path(slug): Path<String>) -> ApiResult<impl IntoResponse> {
    let l = state.integrations.catalog.get(&slug).ok_or(ApiError::NotFound("integration"))?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
            (header::CONTENT_SECURITY_POLICY, "default-src 'none'; style-src 'unsafe-inline'"),
        ],
        l.logo.clone(),
    ))
}
