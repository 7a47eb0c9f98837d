//! Namespace quotas: set by an admin, read with their usage, and the rate
//! quotas taken from before an enqueue or a publish is admitted. A node
//! trusts its copy of a namespace's quotas for a second, so the common
//! case (no rate quota) costs a map lookup, not a store read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use keel_core::quota::{Quotas, RateKind};
use keel_core::{Clock, Error, Namespace, Timestamp};
use keel_store::{NamespaceQuotas, Store, Usage};

/// How long a node trusts its copy of a namespace's quotas.
const CACHE_MS: i64 = 1000;
/// Past this many namespaces the cache starts over (a bound on memory).
const CACHE_MAX: usize = 10_000;

pub struct QuotaService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    cache: Mutex<HashMap<Namespace, (Quotas, Timestamp)>>,
}

impl QuotaService {
    pub(crate) fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        QuotaService {
            store,
            clock,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub async fn put(
        &self,
        namespace: &Namespace,
        quotas: &Quotas,
    ) -> Result<NamespaceQuotas, Error> {
        quotas.validate()?;
        let stored = self
            .store
            .namespace_put(namespace, quotas, self.clock.now())
            .await?;
        self.cache().remove(namespace);
        Ok(stored)
    }

    /// A namespace's quotas (none set: all absent) and what it holds.
    pub async fn get(&self, namespace: &Namespace) -> Result<(Quotas, Usage), Error> {
        let quotas = self.stored(namespace).await?;
        Ok((quotas, self.store.namespace_usage(namespace).await?))
    }

    async fn stored(&self, namespace: &Namespace) -> Result<Quotas, Error> {
        Ok(self
            .store
            .namespace_get(namespace)
            .await?
            .map(|q| q.quotas)
            .unwrap_or_default())
    }

    /// Admits `n` enqueues or publishes in `namespace`: 429 `rate_limited`
    /// (with a retry time) when its rate quota is spent.
    pub async fn take(&self, namespace: &Namespace, kind: RateKind, n: u64) -> Result<(), Error> {
        let now = self.clock.now();
        let cached = self
            .cache()
            .get(namespace)
            .filter(|(_, at)| now.as_millis() - at.as_millis() < CACHE_MS)
            .map(|(q, _)| kind.limit(q));
        let limit = match cached {
            Some(limit) => limit,
            None => {
                let quotas = self.stored(namespace).await?;
                let limit = kind.limit(&quotas);
                let mut cache = self.cache();
                if cache.len() >= CACHE_MAX {
                    cache.clear();
                }
                cache.insert(namespace.clone(), (quotas, now));
                limit
            }
        };
        match limit {
            Some(per_second) => {
                self.store
                    .namespace_rate_take(namespace, kind, per_second, n, now)
                    .await
            }
            None => Ok(()),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<Namespace, (Quotas, Timestamp)>> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
