//! Alerts to the operator (a webhook or Slack incoming-webhook URL from the configuration) when
//! a destination is paused by the circuit breaker, misconfigured, or dead-lettering; at most one
//! per destination and kind every ten minutes.

use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const QUIET: Duration = Duration::from_secs(600);

#[derive(Clone, Default)]
pub struct Alerts {
    url: Option<String>,
    client: reqwest::Client,
    last: Arc<Mutex<HashMap<(String, String), Instant>>>,
}

impl Alerts {
    pub fn new(url: Option<String>) -> Alerts {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default();
        Alerts { url, client, last: Arc::default() }
    }

    /// Sends the alert in the background (Slack shows `text`; webhooks get the other fields too).
    pub fn notify(&self, destination: &str, kind: &str, reason: &str) {
        let Some(url) = self.url.clone() else { return };
        {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            let key = (destination.to_string(), kind.to_string());
            if last.get(&key).is_some_and(|t| t.elapsed() < QUIET) {
                return;
            }
            last.insert(key, Instant::now());
        }
        let what = match kind {
            "paused" => "was paused after failing again and again",
            "misconfigured" => "is misconfigured",
            _ => "is sending events to the dead-letter queue",
        };
        let body = json!({
            "text": format!("Switchyard: destination '{destination}' {what}: {reason}"),
            "destination": destination,
            "kind": kind,
            "reason": reason,
        });
        let client = self.client.clone();
        tokio::spawn(async move {
            if let Err(e) = client.post(&url).json(&body).send().await.and_then(|r| r.error_for_status()) {
                tracing::warn!(error = %e, "cannot send an alert");
            }
        });
    }
}
