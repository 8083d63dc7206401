//! Destinations: create with settings checked against the integration's schema, update, enable
//! and disable at runtime, delete; reveal and rotate generated secrets (admins, audited).

use super::auth::{Admin, Auth, Editor, Viewer};
use super::problem::{ApiError, ApiJson, ApiResult};
use super::AppState;
use crate::integrations::destination::{self, DestinationOut, Input};
use crate::integrations::settings;
use crate::store::{self, DestinationRow};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use model::{FieldError, ListOut};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::AnyConnection;
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_destinations, create_destination))
        .routes(routes!(get_destination, update_destination, delete_destination))
        .routes(routes!(reveal_secret))
        .routes(routes!(rotate_secret))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DestinationIn {
    pub name: String,
    /// The catalog slug, e.g. `webhook`.
    pub integration: String,
    /// Off by default: turn it on once a test delivery looks right.
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub settings: Map<String, Value>,
    /// `{action: {"enabled": bool, "mapping": {field: mapping}}}`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub actions: Map<String, Value>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub filters: Option<Value>,
    /// Source ids or names.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Retry options: `schedule` (seconds after each failure), `then_every`, `max_age_secs`,
    /// `max_attempts`, `retry_after_cap_secs`.
    #[schema(value_type = Object)]
    pub delivery: Option<Value>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DestinationPatch {
    pub name: Option<String>,
    pub enabled: Option<bool>,
    /// The whole settings object; secrets sent back masked (or left out) keep their value.
    #[schema(value_type = Object)]
    pub settings: Option<Map<String, Value>>,
    #[schema(value_type = Object)]
    pub actions: Option<Map<String, Value>>,
    #[schema(value_type = Object)]
    pub filters: Option<Value>,
    pub sources: Option<Vec<String>>,
    #[schema(value_type = Object)]
    pub delivery: Option<Value>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SecretOut {
    pub key: String,
    pub value: String,
}

async fn resolve_sources(conn: &mut AnyConnection, refs: &[String]) -> ApiResult<Vec<String>> {
    let mut ids = Vec::new();
    for (i, r) in refs.iter().enumerate() {
        let found = match store::source_by_id(conn, r).await? {
            Some(s) => Some(s),
            None => store::source_by_name(conn, r).await?,
        };
        let s = found.ok_or_else(|| ApiError::field(&format!("sources[{i}]"), format!("no source '{r}'")))?;
        ids.push(s.id);
    }
    ids.sort();
    ids.dedup();
    Ok(ids)
}

fn out(state: &AppState, row: DestinationRow) -> DestinationOut {
    destination::out(&state.integrations.catalog, &state.integrations.cipher, row)
}

async fn found(conn: &mut AnyConnection, id: &str) -> ApiResult<DestinationRow> {
    store::destination(conn, id).await?.ok_or(ApiError::NotFound("destination"))
}

/// HTTP destinations: URL settings whose host resolves to a private address are refused on save.
async fn check_private(state: &AppState, write: &store::DestinationWrite) -> ApiResult<()> {
    let errors = crate::integrations::destination::private_urls(&state.integrations, write).await;
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// Checks and stores a destination's retry options.
async fn set_delivery(conn: &mut AnyConnection, state: &AppState, integration: &str, id: &str, delivery: Option<Value>) -> ApiResult<()> {
    let Some(v) = delivery else { return Ok(()) };
    let patch: crate::deliver::schedule::PolicyPatch = serde_json::from_value(v.clone()).map_err(|e| ApiError::field("delivery", e.to_string()))?;
    let batching = state.integrations.catalog.get(integration).and_then(|l| l.manifest.capabilities.batching.clone());
    patch.check(batching.as_ref()).map_err(|m| ApiError::field("delivery", m))?;
    sqlx::query("UPDATE destinations SET delivery = $1 WHERE id = $2")
        .bind(serde_json::to_string(&v).unwrap_or_default())
        .bind(id)
        .execute(&mut *conn)
        .await
        .map_err(anyhow::Error::from)?;
    Ok(())
}

fn check_name(name: &str) -> ApiResult<()> {
    model::workspace::check_name(name).map_err(|m| ApiError::field("name", m))
}

/// Destinations, sorted by name.
#[utoipa::path(get, path = "/api/destinations", tag = "destinations",
    responses((status = 200, body = ListOut<DestinationOut>), (status = 401, body = model::Problem)))]
async fn list_destinations(_auth: Auth<Viewer>, State(state): State<AppState>) -> ApiResult<Json<ListOut<DestinationOut>>> {
    let mut conn = state.store.pool().acquire().await.map_err(anyhow::Error::from)?;
    let rows = store::all_destinations(&mut conn).await?;
    Ok(Json(ListOut { items: rows.into_iter().map(|r| out(&state, r)).collect(), next: None }))
}

/// Creates a destination; its settings are checked against the integration's schema (422 with
/// an error per field).
#[utoipa::path(post, path = "/api/destinations", tag = "destinations", request_body = DestinationIn,
    responses((status = 201, body = DestinationOut), (status = 409, body = model::Problem), (status = 422, body = model::Problem)))]
async fn create_destination(auth: Auth<Editor>, State(state): State<AppState>, ApiJson(body): ApiJson<DestinationIn>) -> ApiResult<(StatusCode, Json<DestinationOut>)> {
    let name = body.name.trim().to_string();
    check_name(&name)?;
    let mut tx = state.store.begin().await?;
    let input = Input {
        integration: body.integration,
        enabled: body.enabled,
        settings: body.settings,
        settings_env: Map::new(),
        actions: body.actions,
        filters: body.filters.unwrap_or_else(|| Value::Object(Map::new())),
        source_ids: resolve_sources(&mut tx, &body.sources).await?,
    };
    let write = destination::check(&state.integrations.catalog, &state.integrations.cipher, input, None).map_err(ApiError::Validation)?;
    check_private(&state, &write).await?;
    let id = store::create_destination(&mut tx, &auth.actor, &name, &write).await?;
    set_delivery(&mut tx, &state, &write.integration, &id, body.delivery).await?;
    let row = found(&mut tx, &id).await?;
    tx.commit().await.map_err(anyhow::Error::from)?;
    Ok((StatusCode::CREATED, Json(out(&state, row))))
}

/// One destination, secrets masked.
#[utoipa::path(get, path = "/api/destinations/{id}", tag = "destinations", params(("id" = String, Path)),
    responses((status = 200, body = DestinationOut), (status = 404, body = model::Problem)))]
async fn get_destination(_auth: Auth<Viewer>, State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<DestinationOut>> {
    let mut conn = state.store.pool().acquire().await.map_err(anyhow::Error::from)?;
    Ok(Json(out(&state, found(&mut conn, &id).await?)))
}

/// Renames, enables or disables (at once, no restart), or changes settings, actions, filters or sources.
#[utoipa::path(patch, path = "/api/destinations/{id}", tag = "destinations", params(("id" = String, Path)), request_body = DestinationPatch,
    responses((status = 200, body = DestinationOut), (status = 404, body = model::Problem), (status = 422, body = model::Problem)))]
async fn update_destination(auth: Auth<Editor>, State(state): State<AppState>, Path(id): Path<String>, ApiJson(body): ApiJson<DestinationPatch>) -> ApiResult<Json<DestinationOut>> {
    let mut tx = state.store.begin().await?;
    let old = found(&mut tx, &id).await?;
    let name = body.name.map(|n| n.trim().to_string()).unwrap_or_else(|| old.name.clone());
    check_name(&name)?;
    let source_ids = match &body.sources {
        Some(s) => resolve_sources(&mut tx, s).await?,
        None => resolve_sources(&mut tx, &old.sources).await?,
    };
    let input = Input {
        integration: old.integration.clone(),
        enabled: body.enabled.unwrap_or(old.enabled),
        // Settings left out keep their values (secrets included).
        settings: body.settings.unwrap_or_else(|| old.settings.clone()),
        settings_env: old.settings_env.clone(),
        actions: body.actions.unwrap_or_else(|| old.actions.clone()),
        filters: body.filters.unwrap_or_else(|| old.filters.clone()),
        source_ids,
    };
    let write = destination::check(&state.integrations.catalog, &state.integrations.cipher, input, Some(&old)).map_err(ApiError::Validation)?;
    check_private(&state, &write).await?;
    if name != old.name {
        sqlx::query("UPDATE destinations SET name = $1 WHERE id = $2")
            .bind(&name)
            .bind(&id)
            .execute(&mut *tx)
            .await
            .map_err(|e| store::map_unique(e, "destination name", &name))?;
    }
    store::update_destination(&mut tx, &auth.actor, &id, &name, &write).await?;
    set_delivery(&mut tx, &state, &write.integration, &id, body.delivery).await?;
    let row = found(&mut tx, &id).await?;
    tx.commit().await.map_err(anyhow::Error::from)?;
    Ok(Json(out(&state, row)))
}

/// Deletes a destination.
#[utoipa::path(delete, path = "/api/destinations/{id}", tag = "destinations", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = model::Problem)))]
async fn delete_destination(auth: Auth<Editor>, State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let mut tx = state.store.begin().await?;
    if !store::delete_destination(&mut tx, &auth.actor, &id).await? {
        return Err(ApiError::NotFound("destination"));
    }
    tx.commit().await.map_err(anyhow::Error::from)?;
    Ok(StatusCode::NO_CONTENT)
}

fn secret_field<'a>(state: &'a AppState, row: &DestinationRow, key: &str) -> ApiResult<&'a model::integration::Field> {
    let loaded = state.integrations.catalog.get(&row.integration).ok_or(ApiError::NotFound("integration"))?;
    loaded
        .manifest
        .settings
        .iter()
        .find(|f| f.key == key && f.ty == model::integration::FieldType::Secret)
        .ok_or(ApiError::NotFound("secret setting"))
}

/// Shows a secret setting's value (admins; written to the audit log).
#[utoipa::path(post, path = "/api/destinations/{id}/secrets/{key}/reveal", tag = "destinations", params(("id" = String, Path), ("key" = String, Path)),
    responses((status = 200, body = SecretOut), (status = 403, body = model::Problem), (status = 404, body = model::Problem)))]
async fn reveal_secret(auth: Auth<Admin>, State(state): State<AppState>, Path((id, key)): Path<(String, String)>) -> ApiResult<Json<SecretOut>> {
    let mut tx = state.store.begin().await?;
    let row = found(&mut tx, &id).await?;
    secret_field(&state, &row, &key)?;
    let secrets = state.integrations.cipher.open(&row.secrets)?;
    let value = secrets.get(&key).and_then(Value::as_str).ok_or(ApiError::NotFound("secret value"))?.to_string();
    store::record_secret_access(&mut tx, &auth.actor, &id, "destination.secret.reveal", &key).await?;
    tx.commit().await.map_err(anyhow::Error::from)?;
    Ok(Json(SecretOut { key, value }))
}

/// Replaces a generated secret (such as the webhook signing secret) with a new one and returns it.
#[utoipa::path(post, path = "/api/destinations/{id}/secrets/{key}/rotate", tag = "destinations", params(("id" = String, Path), ("key" = String, Path)),
    responses((status = 200, body = SecretOut), (status = 403, body = model::Problem), (status = 404, body = model::Problem)))]
async fn rotate_secret(auth: Auth<Admin>, State(state): State<AppState>, Path((id, key)): Path<(String, String)>) -> ApiResult<Json<SecretOut>> {
    let mut tx = state.store.begin().await?;
    let row = found(&mut tx, &id).await?;
    let field = secret_field(&state, &row, &key)?;
    let prefix = field.generate.clone().ok_or_else(|| {
        ApiError::Validation(vec![FieldError { field: key.clone(), message: "is not a generated secret; set a new value instead".into() }])
    })?;
    let value = settings::generate(&prefix);
    let mut secrets = state.integrations.cipher.open(&row.secrets)?;
    secrets.insert(key.clone(), Value::String(value.clone()));
    sqlx::query("UPDATE destinations SET secrets = $1 WHERE id = $2")
        .bind(state.integrations.cipher.seal(&secrets))
        .bind(&id)
        .execute(&mut *tx)
        .await
        .map_err(anyhow::Error::from)?;
    store::record_secret_access(&mut tx, &auth.actor, &id, "destination.secret.rotate", &key).await?;
    tx.commit().await.map_err(anyhow::Error::from)?;
    Ok(Json(SecretOut { key, value }))
}
