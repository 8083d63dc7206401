//! A destination's configuration checked against its integration: settings (secrets sealed),
//! action overrides and filters; and the masked form the API returns.

use super::{settings, Catalog};
use crate::secrets::Cipher;
use crate::store::{DestinationRow, DestinationWrite};
use model::integration::filters::Filters;
use model::FieldError;
use serde::Serialize;
use serde_json::{Map, Value};
use std::sync::Arc;

/// What a create or update asks for (secrets in plain text, or masked / left out to keep them).
pub struct Input {
    pub integration: String,
    pub enabled: bool,
    pub settings: Map<String, Value>,
    pub settings_env: Map<String, Value>,
    pub actions: Map<String, Value>,
    pub filters: Value,
    pub source_ids: Vec<String>,
}

fn prefixed(prefix: &str, errors: Vec<FieldError>) -> Vec<FieldError> {
    errors.into_iter().map(|e| FieldError { field: format!("{prefix}.{}", e.field), message: e.message }).collect()
}

/// Checks the input; on success returns what to store. `existing`: the stored destination, whose
/// secrets are kept where the input leaves them out.
pub fn check(catalog: &Catalog, cipher: &Cipher, input: Input, existing: Option<&DestinationRow>) -> Result<DestinationWrite, Vec<FieldError>> {
    let Some(loaded) = catalog.get(&input.integration) else {
        return Err(vec![FieldError { field: "integration".into(), message: format!("'{}' is not in the catalog", input.integration) }]);
    };
    let old = match existing.filter(|e| e.integration == input.integration) {
        Some(e) => Some(full_settings(cipher, e).map_err(|e| vec![FieldError { field: "settings".into(), message: e.to_string() }])?),
        None => None,
    };
    let mut errors = Vec::new();
    let valid = settings::prepare(loaded, &input.settings, old.as_ref()).map_err(|e| errors.extend(prefixed("settings", e))).ok();
    let filters: Option<Filters> = match serde_json::from_value(input.filters.clone()) {
        Ok(f) => Some(f),
        Err(e) => {
            errors.push(FieldError { field: "filters".into(), message: e.to_string() });
            None
        }
    };
    if let Some(f) = &filters {
        for t in f.event_types.iter().filter(|t| !loaded.manifest.capabilities.event_types.contains(t)) {
            errors.push(FieldError { field: "filters.event_types".into(), message: format!("'{t}' is not an event type this integration takes") });
        }
    }
    errors.extend(settings::check_actions(loaded, &input.actions, filters.as_ref().and_then(|f| f.condition.as_deref())));
    match valid {
        Some(valid) if errors.is_empty() => {
            let (plain, secret) = settings::split_secrets(loaded, &valid);
            Ok(DestinationWrite {
                integration: input.integration,
                enabled: input.enabled,
                settings: plain,
                settings_env: input.settings_env,
                source_ids: input.source_ids,
                secrets: cipher.seal(&secret),
                actions: input.actions,
                filters: serde_json::to_value(filters.unwrap_or_default()).unwrap_or_default(),
            })
        }
        _ => Err(errors),
    }
}

/// The stored settings with their secrets opened (for sending, and for keeping on update).
pub fn full_settings(cipher: &Cipher, row: &DestinationRow) -> anyhow::Result<Map<String, Value>> {
    Ok(settings::join_secrets(&row.settings, &cipher.open(&row.secrets)?))
}

/// A destination as the API shows it: secrets masked.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DestinationOut {
    pub id: String,
    pub name: String,
    pub integration: String,
    pub enabled: bool,
    /// Secret values appear as `••••••`; send that back (or leave the key out) to keep them.
    #[schema(value_type = Object)]
    pub settings: Map<String, Value>,
    /// Setting name → environment variable it is read from (workspace files).
    #[schema(value_type = Object)]
    pub settings_env: Map<String, Value>,
    #[schema(value_type = Object)]
    pub actions: Map<String, Value>,
    #[schema(value_type = Object)]
    pub filters: Value,
    /// Source names.
    pub sources: Vec<String>,
    /// `ok` or `misconfigured`.
    pub status: String,
    pub status_reason: Option<String>,
    /// Delivery is paused until this time (ms since the epoch): by a 429/503 or by hand.
    pub paused_until: Option<i64>,
    /// Set while the circuit breaker holds the destination paused (it is probed again at `paused_until`).
    pub circuit_reason: Option<String>,
    /// Retry options.
    #[schema(value_type = Object)]
    pub delivery: Value,
}

pub fn out(catalog: &Catalog, cipher: &Cipher, row: DestinationRow) -> DestinationOut {
    let settings = match catalog.get(&row.integration) {
        Some(l) => {
            let mut s = row.settings.clone();
            // Show which secrets are set without opening them.
            let sealed = cipher.open(&row.secrets).unwrap_or_default();
            s = settings::join_secrets(&s, &sealed);
            settings::mask(l, &s)
        }
        None => row.settings.clone(),
    };
    DestinationOut {
        id: row.id,
        name: row.name,
        integration: row.integration,
        enabled: row.enabled,
        settings,
        settings_env: row.settings_env,
        actions: row.actions,
        filters: row.filters,
        sources: row.sources,
        status: row.status,
        status_reason: row.status_reason,
        paused_until: row.paused_until,
        circuit_reason: row.circuit_reason,
        delivery: row.delivery,
    }
}

/// Why a stored destination cannot work with the current catalog, if it cannot.
pub fn misconfiguration(catalog: &Catalog, cipher: &Cipher, row: &DestinationRow) -> Option<String> {
    if catalog.get(&row.integration).is_none() {
        return Some(format!("integration '{}' is not in the catalog", row.integration));
    }
    let full = match full_settings(cipher, row) {
        Ok(f) => f,
        Err(e) => return Some(e.to_string()),
    };
    let input = Input {
        integration: row.integration.clone(),
        enabled: row.enabled,
        settings: full,
        settings_env: Map::new(),
        actions: row.actions.clone(),
        filters: row.filters.clone(),
        source_ids: Vec::new(),
    };
    match check(catalog, cipher, input, None) {
        Ok(_) => None,
        Err(errors) => Some(errors.iter().map(|e| format!("{} {}", e.field, e.message)).collect::<Vec<_>>().join("; ")),
    }
}

/// Checks every stored destination against the catalog and records its status.
pub async fn check_all(store: &crate::store::Store, catalog: &Arc<Catalog>, cipher: &Cipher, alerts: &crate::deliver::alerts::Alerts) -> anyhow::Result<usize> {
    let mut conn = store.pool().acquire().await?;
    let mut bad = 0;
    for row in crate::store::all_destinations(&mut conn).await? {
        let reason = misconfiguration(catalog, cipher, &row);
        if reason.is_some() {
            bad += 1;
            tracing::warn!(destination = %row.name, reason = reason.as_deref().unwrap_or_default(), "destination misconfigured");
            alerts.notify(&row.name, "misconfigured", reason.as_deref().unwrap_or_default());
        }
        // Credentials refused at send time stay shown until a delivery succeeds or a save.
        let refused = reason.is_none() && row.status_reason.as_deref().is_some_and(credentials_refused);
        if reason != row.status_reason && !refused {
            crate::store::set_destination_status(&mut conn, &row.id, reason.as_deref()).await?;
        }
    }
    Ok(bad)
}

/// HTTP destinations (unless `allow_private_destinations`): the URL settings, and their test
/// values, whose host resolves to a private address; checked on every save (API and workspace).
pub async fn private_urls(integrations: &super::Integrations, write: &DestinationWrite) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if integrations.allow_private {
        return errors;
    }
    let Some(loaded) = integrations.catalog.get(&write.integration) else { return errors };
    if loaded.manifest.capabilities.transport != "http" {
        return errors;
    }
    for f in loaded.manifest.settings.iter().filter(|f| f.ty == model::integration::FieldType::Url) {
        let values = [write.settings.get(&f.key), write.settings.get("test_values").and_then(|t| t.get(&f.key))];
        for (i, v) in values.into_iter().enumerate() {
            if let Some(url) = v.and_then(Value::as_str) {
                if let Some(problem) = crate::transport::private_on_save(url).await {
                    let field = if i == 0 { format!("settings.{}", f.key) } else { format!("settings.test_values.{}", f.key) };
                    errors.push(FieldError { field, message: problem });
                }
            }
        }
    }
    errors
}

/// A status reason recorded at send time because the destination refused its credentials.
pub fn credentials_refused(reason: &str) -> bool {
    reason.starts_with("answered 401") || reason.starts_with("answered 403")
}
