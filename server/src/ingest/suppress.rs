//! Suppressed users (privacy): their events are acknowledged and dropped. The list is kept in
//! memory, reloaded when this node changes it and at least every few seconds.

use crate::store::Store;
use std::collections::HashSet;
use std::sync::RwLock;
use std::time::{Duration, Instant};

pub struct Suppressions {
    ttl: Duration,
    inner: RwLock<State>,
}

struct State {
    users: HashSet<String>,
    anonymous: HashSet<String>,
    loaded: Option<Instant>,
}

impl Suppressions {
    pub fn new(ttl: Duration) -> Self {
        Suppressions { ttl, inner: RwLock::new(State { users: HashSet::new(), anonymous: HashSet::new(), loaded: None }) }
    }

    /// Forget the list: the next message reloads it.
    pub fn invalidate(&self) {
        self.inner.write().unwrap_or_else(|p| p.into_inner()).loaded = None;
    }

    async fn refresh(&self, store: &Store) {
        let stale = self.inner.read().unwrap_or_else(|p| p.into_inner()).loaded.is_none_or(|t| t.elapsed() > self.ttl);
        if !stale {
            return;
        }
        match store.suppressions().await {
            Ok(list) => {
                let mut s = self.inner.write().unwrap_or_else(|p| p.into_inner());
                s.users = list.iter().filter_map(|x| x.user_id.clone()).collect();
                s.anonymous = list.iter().filter_map(|x| x.anonymous_id.clone()).collect();
                s.loaded = Some(Instant::now());
            }
            Err(e) => tracing::warn!(error = %e, "cannot load suppressions; keeping the last list"),
        }
    }

    /// Refreshes if stale; `None` when nobody is suppressed (the usual case, and cheap), else a
    /// test for a (userId, anonymousId) pair.
    pub async fn matcher(&self, store: &Store) -> Option<impl Fn(Option<&str>, Option<&str>) -> bool + '_> {
        self.refresh(store).await;
        let s = self.inner.read().unwrap_or_else(|p| p.into_inner());
        if s.users.is_empty() && s.anonymous.is_empty() {
            return None;
        }
        drop(s);
        Some(move |u: Option<&str>, a: Option<&str>| {
            let s = self.inner.read().unwrap_or_else(|p| p.into_inner());
            u.is_some_and(|u| s.users.contains(u)) || a.is_some_and(|a| s.anonymous.contains(a))
        })
    }
}
