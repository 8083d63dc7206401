//! Trying a destination: test its connection, or send it a test event through the real mapping
//! and transport (test credentials when set).

use super::auth::{Auth, Editor};
use super::problem::{ApiError, ApiResult};
use super::AppState;
use crate::integrations::{destination, handlers, sample};
use crate::store;
use crate::transport::Attempt;
use axum::extract::{Path, State};
use axum::Json;
use model::mapping::{effective_settings, Built, Prepared};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(test_connection)).routes(routes!(test_delivery))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ConnectionOut {
    pub ok: bool,
    pub message: String,
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestIn {
    /// The event to send (Segment spec); a sample event when absent.
    #[schema(value_type = Object)]
    pub event: Option<Value>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TestOut {
    #[schema(value_type = Object)]
    pub event: Value,
    /// Set when the destination's filters or the event's `integrations` object keep the event out.
    pub filtered: Option<String>,
    pub results: Vec<TestResult>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TestResult {
    pub action: String,
    /// The mapped request or broker message, secrets masked.
    #[schema(value_type = Object)]
    pub request: Option<Value>,
    pub attempt: Option<Attempt>,
    /// Why the event could not be mapped.
    pub rejected: Option<String>,
}

async fn settings_of(state: &AppState, id: &str) -> ApiResult<(store::DestinationRow, std::sync::Arc<crate::integrations::Loaded>, Map<String, Value>)> {
    let mut conn = state.store.pool().acquire().await.map_err(anyhow::Error::from)?;
    let row = store::destination(&mut conn, id).await?.ok_or(ApiError::NotFound("destination"))?;
    let loaded = state.integrations.catalog.get(&row.integration).cloned().ok_or(ApiError::NotFound("integration"))?;
    let full = destination::full_settings(&state.integrations.cipher, &row)?;
    Ok((row, loaded, full))
}

/// Checks that the destination can be reached with its settings (test credentials when set).
#[utoipa::path(post, path = "/api/destinations/{id}/test-connection", tag = "destinations", params(("id" = String, Path)),
    responses((status = 200, body = ConnectionOut), (status = 404, body = model::Problem)))]
async fn test_connection(_auth: Auth<Editor>, State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<ConnectionOut>> {
    let (_row, loaded, full) = settings_of(&state, &id).await?;
    let m = &loaded.manifest;
    let settings = effective_settings(&full, true);
    let result = state.integrations.transports.get(&m.capabilities.transport).test_connection(m, &settings).await;
    Ok(Json(match result {
        Ok(message) => ConnectionOut { ok: true, message },
        Err(message) => ConnectionOut { ok: false, message },
    }))
}

/// Sends a sample (or the given) event through the destination's mapping and transport, and
/// returns each mapped request with its response. Test deliveries are not counted in production figures.
#[utoipa::path(post, path = "/api/destinations/{id}/test", tag = "destinations", params(("id" = String, Path)), request_body = TestIn,
    responses((status = 200, body = TestOut), (status = 404, body = model::Problem), (status = 422, body = model::Problem)))]
async fn test_delivery(_auth: Auth<Editor>, State(state): State<AppState>, Path(id): Path<String>, raw: axum::body::Bytes) -> ApiResult<Json<TestOut>> {
    let body: TestIn = if raw.iter().all(u8::is_ascii_whitespace) {
        TestIn::default()
    } else {
        serde_json::from_slice(&raw).map_err(|e| ApiError::BadRequest(format!("the body is not valid: {e}")))?
    };
    let (row, loaded, full) = settings_of(&state, &id).await?;
    let m = &loaded.manifest;
    let event = match body.event {
        Some(Value::Object(o)) => Value::Object(o),
        Some(_) => return Err(ApiError::field("event", "must be an object")),
        None => sample::event(m),
    };
    if let Some(reason) = crate::integrations::route::filtered(&loaded, &row.name, &row.filters, &event) {
        return Ok(Json(TestOut { event, filtered: Some(reason), results: Vec::new() }));
    }
    let prepared = Prepared::new(m, &row.actions).map_err(|e| ApiError::field(&e.at, e.message))?;
    let settings = effective_settings(&full, true);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let built = handlers::for_handler(m.handler.as_deref()).map(&prepared, &settings, &[&event], now);
    let secrets = sample::secret_values(&state.integrations.cipher.open(&row.secrets)?, &full);
    let transport = state.integrations.transports.get(&m.capabilities.transport);
    let mut results = Vec::new();
    for b in built {
        match b {
            Built::Request { action, request, .. } => {
                let mut attempt = transport.send(&settings, &request).await;
                attempt.mask(&secrets);
                results.push(TestResult { action, request: Some(sample::redact(&request, &secrets)), attempt: Some(attempt), rejected: None });
            }
            Built::Rejected { action, reason, .. } => results.push(TestResult { action, request: None, attempt: None, rejected: Some(reason) }),
        }
    }
    Ok(Json(TestOut { event, filtered: None, results }))
}
