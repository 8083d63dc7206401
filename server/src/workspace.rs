//! Workspace as code: apply a TOML file of sources and destinations (matched by name, idempotent),
//! and export the current ones in the same form. Secrets given as `{ env = "VAR" }` are read at
//! apply time and exported back as references, never as values.

use crate::integrations::destination::{self, Input};
use crate::integrations::Integrations;
use crate::store::{self, Actor, DestinationWrite, SourceFields, SourceType, Store};
use model::workspace::{check_name, env_reference, env_value, DestinationSpec, SourceSpec, WorkspaceFile};
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::path::Path;

/// A problem with the file itself (exit status 2).
#[derive(Debug, thiserror::Error)]
#[error("workspace file {file}: {problem}")]
pub struct WorkspaceError {
    pub file: String,
    pub problem: String,
}

/// The file is well-formed but does not fit the database (exit status 2).
#[derive(Debug, thiserror::Error)]
#[error("workspace: {0}")]
pub struct InvalidWorkspace(pub String);

#[derive(Debug, Default, PartialEq)]
pub struct ApplyReport {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub unchanged: usize,
}

impl std::fmt::Display for ApplyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} created, {} updated, {} unchanged", self.created.len(), self.updated.len(), self.unchanged)?;
        for c in &self.created {
            write!(f, "\n  created {c}")?;
        }
        for u in &self.updated {
            write!(f, "\n  updated {u}")?;
        }
        Ok(())
    }
}

/// Reads and checks a file: TOML shape, unknown keys, names, duplicates, source references,
/// environment variables. Nothing is written.
pub fn parse(path: &Path) -> Result<(WorkspaceFile, Vec<Map<String, Value>>), WorkspaceError> {
    let file = path.display().to_string();
    let fail = |problem: String| WorkspaceError { file: file.clone(), problem };
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
    parse_text(&text).map_err(fail)
}

/// Parses workspace TOML; returns the file and, per destination, the settings with environment
/// references resolved.
pub fn parse_text(text: &str) -> Result<(WorkspaceFile, Vec<Map<String, Value>>), String> {
    let ws: WorkspaceFile = toml::from_str(text).map_err(|e| e.to_string().trim().to_string())?;
    let mut names = HashSet::new();
    for (i, s) in ws.sources.iter().enumerate() {
        check_name(&s.name).map_err(|m| format!("sources[{i}].name '{}': {m}", s.name))?;
        if !names.insert(s.name.clone()) {
            return Err(format!("sources[{i}].name: '{}' appears twice", s.name));
        }
        if !model::workspace::SOURCE_TYPES.contains(&s.kind.as_str()) {
            return Err(format!("sources[{i}].type: '{}' is not one of web, server, mobile", s.kind));
        }
        for o in &s.allowed_origins {
            model::workspace::check_origin(o).map_err(|m| format!("sources[{i}].allowed_origins: {m}"))?;
        }
        if s.rate_limit.is_some_and(|r| r < 1) {
            return Err(format!("sources[{i}].rate_limit: must be at least 1 event per second"));
        }
        if let Some(k) = &s.write_key {
            if k.len() < 8 || k.len() > 200 || k.chars().any(|c| c.is_whitespace() || c == ':') {
                return Err(format!("sources[{i}].write_key: must be 8 to 200 characters without spaces or ':'"));
            }
        }
    }
    let mut dnames = HashSet::new();
    let mut resolved = Vec::new();
    for (i, d) in ws.destinations.iter().enumerate() {
        check_name(&d.name).map_err(|m| format!("destinations[{i}].name '{}': {m}", d.name))?;
        if !dnames.insert(d.name.clone()) {
            return Err(format!("destinations[{i}].name: '{}' appears twice", d.name));
        }
        check_name(&d.integration).map_err(|m| format!("destinations[{i}].integration '{}': {m}", d.integration))?;
        let mut settings = Map::new();
        for (key, value) in &d.settings {
            let value = match env_reference(value) {
                Some(var) => Value::String(std::env::var(var).map_err(|_| {
                    format!("destinations[{i}].settings.{key}: environment variable {var} is not set")
                })?),
                None => value.clone(),
            };
            settings.insert(key.clone(), value);
        }
        resolved.push(settings);
    }
    Ok((ws, resolved))
}

/// Applies a parsed file in one transaction.
pub async fn apply(
    store: &Store,
    actor: &Actor,
    ws: &WorkspaceFile,
    resolved: &[Map<String, Value>],
    integrations: &Integrations,
) -> anyhow::Result<ApplyReport> {
    let mut report = ApplyReport::default();
    let mut tx = store.begin().await?;
    for s in &ws.sources {
        apply_source(&mut tx, actor, s, &mut report).await?;
    }
    for (d, settings) in ws.destinations.iter().zip(resolved) {
        let mut source_ids = Vec::new();
        for name in &d.sources {
            let src = store::source_by_name(&mut tx, name)
                .await?
                .ok_or_else(|| InvalidWorkspace(format!("destination '{}' names source '{name}', which does not exist", d.name)))?;
            source_ids.push(src.id);
        }
        source_ids.sort();
        source_ids.dedup();
        let existing = store::destination_by_name(&mut tx, &d.name).await?;
        let input = Input {
            integration: d.integration.clone(),
            enabled: d.enabled,
            settings: settings.clone(),
            settings_env: env_refs(d),
            actions: d.actions.clone(),
            filters: Value::Object(d.filters.clone()),
            source_ids,
        };
        let write = destination::check(&integrations.catalog, &integrations.cipher, input, existing.as_ref()).map_err(|errors| {
            let list: Vec<String> = errors.iter().map(|e| format!("{} {}", e.field, e.message)).collect();
            InvalidWorkspace(format!("destination '{}': {}; nothing was applied", d.name, list.join("; ")))
        })?;
        let private = destination::private_urls(integrations, &write).await;
        if !private.is_empty() {
            let list: Vec<String> = private.iter().map(|e| format!("{} {}", e.field, e.message)).collect();
            return Err(InvalidWorkspace(format!("destination '{}': {}; nothing was applied", d.name, list.join("; "))).into());
        }
        let delivery = Value::Object(d.delivery.clone());
        let patch: crate::deliver::schedule::PolicyPatch = serde_json::from_value(delivery.clone())
            .map_err(|e| InvalidWorkspace(format!("destination '{}': delivery: {e}; nothing was applied", d.name)))?;
        let batching = integrations.catalog.get(&write.integration).and_then(|l| l.manifest.capabilities.batching.clone());
        patch.check(batching.as_ref()).map_err(|m| InvalidWorkspace(format!("destination '{}': delivery: {m}; nothing was applied", d.name)))?;
        let delivery_changed = existing.as_ref().is_some_and(|e| e.delivery != delivery && !(d.delivery.is_empty() && e.delivery.as_object().is_some_and(Map::is_empty)));
        apply_destination(&mut tx, actor, d, &write, existing, integrations, &mut report).await?;
        if delivery_changed || !d.delivery.is_empty() {
            sqlx::query("UPDATE destinations SET delivery = $1 WHERE name = $2").bind(delivery.to_string()).bind(&d.name).execute(&mut *tx).await?;
            if delivery_changed && !report.updated.iter().any(|u| u == &format!("destination {}", d.name)) {
                report.updated.push(format!("destination {}", d.name));
                report.unchanged = report.unchanged.saturating_sub(1);
            }
        }
    }
    tx.commit().await?;
    Ok(report)
}

fn env_refs(d: &DestinationSpec) -> Map<String, Value> {
    d.settings
        .iter()
        .filter_map(|(k, v)| env_reference(v).map(|var| (k.clone(), Value::String(var.into()))))
        .collect()
}

pub fn source_fields(s: &SourceSpec) -> SourceFields {
    SourceFields {
        name: s.name.clone(),
        kind: match s.kind.as_str() {
            "web" => SourceType::Web,
            "mobile" => SourceType::Mobile,
            _ => SourceType::Server,
        },
        allowed_origins: s.allowed_origins.clone(),
        rate_limit: s.rate_limit,
    }
}

async fn apply_source(conn: &mut sqlx::AnyConnection, actor: &Actor, s: &SourceSpec, report: &mut ApplyReport) -> anyhow::Result<()> {
    let fields = source_fields(s);
    match store::source_by_name(conn, &s.name).await? {
        None => {
            store::create_source(conn, actor, &fields, s.write_key.as_deref()).await?;
            report.created.push(format!("source {}", s.name));
        }
        Some(existing) => {
            let mut changed = false;
            if existing.kind != fields.kind || existing.allowed_origins != fields.allowed_origins || existing.rate_limit != fields.rate_limit {
                store::update_source(conn, actor, &existing.id, &fields).await?;
                changed = true;
            }
            if let Some(key) = &s.write_key {
                if existing.write_key.as_deref() != Some(key.as_str()) {
                    store::replace_write_key(conn, actor, &existing, key).await?;
                    changed = true;
                }
            }
            if changed {
                report.updated.push(format!("source {}", s.name));
            } else {
                report.unchanged += 1;
            }
        }
    }
    Ok(())
}

async fn apply_destination(
    conn: &mut sqlx::AnyConnection,
    actor: &Actor,
    d: &DestinationSpec,
    write: &DestinationWrite,
    existing: Option<store::DestinationRow>,
    integrations: &Integrations,
    report: &mut ApplyReport,
) -> anyhow::Result<()> {
    match existing {
        None => {
            store::create_destination(conn, actor, &d.name, write).await?;
            report.created.push(format!("destination {}", d.name));
        }
        Some(existing) => {
            let mut current_ids = Vec::new();
            for name in &existing.sources {
                if let Some(src) = store::source_by_name(conn, name).await? {
                    current_ids.push(src.id);
                }
            }
            current_ids.sort();
            let same = existing.integration == write.integration
                && existing.enabled == write.enabled
                && existing.settings == write.settings
                && existing.settings_env == write.settings_env
                && existing.actions == write.actions
                && existing.filters == write.filters
                && integrations.cipher.open(&existing.secrets)? == integrations.cipher.open(&write.secrets)?
                && current_ids == write.source_ids;
            if same {
                report.unchanged += 1;
            } else {
                store::update_destination(conn, actor, &existing.id, &d.name, write).await?;
                report.updated.push(format!("destination {}", d.name));
            }
        }
    }
    Ok(())
}

/// The current sources and destinations as a workspace file.
pub async fn export(store: &Store, integrations: &Integrations) -> anyhow::Result<WorkspaceFile> {
    let mut conn = store.pool().acquire().await?;
    let sources = store::all_sources(&mut conn)
        .await?
        .into_iter()
        .map(|s| SourceSpec {
            name: s.name,
            kind: s.kind.as_str().into(),
            write_key: s.write_key,
            allowed_origins: s.allowed_origins,
            rate_limit: s.rate_limit,
        })
        .collect();
    let destinations = store::all_destinations(&mut conn)
        .await?
        .into_iter()
        .map(|d| {
            // Passwords inside URL settings are masked; applying the file back keeps them.
            let mut settings = match integrations.catalog.get(&d.integration) {
                Some(l) => crate::integrations::settings::mask(l, &d.settings),
                None => d.settings,
            };
            for (key, var) in &d.settings_env {
                if let Some(var) = var.as_str() {
                    settings.insert(key.clone(), env_value(var));
                }
            }
            // Secret values live only in `secrets` (sealed) and are never exported; a file applied
            // without them keeps the stored ones.
            let filters = d.filters.as_object().cloned().unwrap_or_default();
            let delivery = d.delivery.as_object().cloned().unwrap_or_default();
            DestinationSpec { name: d.name, integration: d.integration, sources: d.sources, enabled: d.enabled, settings, actions: d.actions, filters, delivery }
        })
        .collect();
    Ok(WorkspaceFile { sources, destinations })
}

pub fn to_toml(ws: &WorkspaceFile) -> anyhow::Result<String> {
    Ok(toml::to_string_pretty(ws)?)
}

#[cfg(test)]
mod tests {
    use super::parse_text;

    #[test]
    fn unknown_keys_are_named() {
        let err = parse_text("[[sources]]\nname = \"web\"\ncolour = \"red\"\n").unwrap_err();
        assert!(err.contains("colour"), "{err}");
        let err = parse_text("[[destinations]]\nname = \"d\"\nintegration = \"webhook\"\nsetings = {}\n").unwrap_err();
        assert!(err.contains("setings"), "{err}");
    }

    #[test]
    fn missing_environment_variables_are_named() {
        let err = parse_text(
            "[[destinations]]\nname = \"d\"\nintegration = \"webhook\"\n[destinations.settings]\ntoken = { env = \"SWITCHYARD_TEST_SURELY_UNSET\" }\n",
        )
        .unwrap_err();
        assert!(err.contains("SWITCHYARD_TEST_SURELY_UNSET") && err.contains("settings.token"), "{err}");
    }

    #[test]
    fn duplicate_names_are_refused() {
        let err = parse_text("[[sources]]\nname = \"web\"\n[[sources]]\nname = \"web\"\n").unwrap_err();
        assert!(err.contains("twice"), "{err}");
    }
}
