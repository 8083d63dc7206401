//! What a worker needs to map a destination's events, computed once per configuration: the
//! settings with secrets opened, the compiled actions, and the secret values to mask in logs.
//! A destination's entry is rebuilt when its stored configuration changes.

use super::schedule::PolicyPatch;
use crate::integrations::{destination, sample, Integrations, Loaded};
use crate::store::DestinationRow;
use model::mapping::{effective_settings, Prepared};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub struct Ready {
    pub settings: Map<String, Value>,
    /// The compiled actions, or why the overrides do not compile.
    pub prepared: Result<Prepared, String>,
    pub secrets: Vec<String>,
    /// How long a partial batch may wait for more events (ms).
    pub batch_wait_ms: i64,
    /// The destination's `delivery` options, parsed once per configuration.
    pub patch: PolicyPatch,
}

impl Ready {
    /// Events per request (1 when the destination does not batch).
    pub fn batch_size(&self) -> usize {
        self.prepared.as_ref().map_or(1, |p| p.batch_size)
    }
}

#[derive(Default)]
pub struct Cache(Mutex<HashMap<String, (String, Arc<Ready>)>>);

impl Cache {
    pub fn get(&self, integrations: &Integrations, row: &DestinationRow, loaded: &Loaded) -> anyhow::Result<Arc<Ready>> {
        // Sealed secrets carry a fresh nonce on every save, so any saved change shows in the stamp.
        let stamp = serde_json::to_string(&(&row.integration, &row.settings, &row.secrets, &row.actions, &row.delivery))?;
        if let Some((s, r)) = self.0.lock().unwrap_or_else(|e| e.into_inner()).get(&row.id) {
            if *s == stamp {
                return Ok(r.clone());
            }
        }
        let patch = serde_json::from_value::<PolicyPatch>(row.delivery.clone()).unwrap_or_default();
        let m = &loaded.manifest;
        let full = destination::full_settings(&integrations.cipher, row)?;
        let secrets = sample::secret_values(&integrations.cipher.open(&row.secrets)?, &full);
        let ready = Arc::new(Ready {
            settings: effective_settings(&full, false),
            prepared: Prepared::new(m, &row.actions).map(|p| p.with_batch_size(m, patch.batch_size)).map_err(|e| format!("misconfigured: {e}")),
            batch_wait_ms: patch.batch_wait_ms.or(m.capabilities.batching.as_ref().map(|b| b.max_wait_ms)).unwrap_or(0) as i64,
            secrets,
            patch,
        });
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(row.id.clone(), (stamp, ready.clone()));
        Ok(ready)
    }
}
