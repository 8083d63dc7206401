//! Write keys → sources, cached for a moment so a flood of events does not mean a flood of
//! lookups. Changes made on this node clear the cache at once; other nodes see them within the TTL.

use crate::store::{KeyOwner, Store};
use model::event::EventType;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Owner {
    pub source_id: String,
    pub name: String,
    pub allowed_origins: Vec<String>,
    pub rate_limit: Option<i64>,
    /// `ingest_accepted_total` for this source, one counter per type (`EventType::ALL`'s order),
    /// registered once rather than looked up by label on every event.
    accepted: [metrics::Counter; 6],
}

impl Owner {
    pub fn accepted(&self, ty: EventType) -> &metrics::Counter {
        let i = EventType::ALL.iter().position(|t| *t == ty).unwrap_or(0);
        &self.accepted[i]
    }
}

pub struct KeyCache {
    ttl: Duration,
    map: Mutex<HashMap<String, (Option<Arc<Owner>>, Instant)>>,
}

impl KeyCache {
    pub fn new(ttl: Duration) -> Self {
        KeyCache { ttl, map: Mutex::new(HashMap::new()) }
    }

    pub fn clear(&self) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    pub async fn owner(&self, store: &Store, key: &str) -> crate::store::Result<Option<Arc<Owner>>> {
        if let Some((owner, at)) = self.map.lock().unwrap_or_else(|p| p.into_inner()).get(key) {
            if at.elapsed() < self.ttl {
                return Ok(owner.clone());
            }
        }
        let owner = store.write_key_owner(key).await?.map(|KeyOwner { source_id, name, allowed_origins, rate_limit }| {
            let accepted = EventType::ALL.map(|t| metrics::counter!("ingest_accepted_total", "source" => source_id.clone(), "type" => t.as_str()));
            Arc::new(Owner { source_id, name, allowed_origins, rate_limit, accepted })
        });
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 10_000 {
            map.clear();
        }
        map.insert(key.to_string(), (owner.clone(), Instant::now()));
        Ok(owner)
    }
}
