//! Namespaces: their quotas, set by an admin and read with their usage, and
//! the rate and byte quotas taken from before an enqueue or a publish is
//! admitted. A
//! node trusts its copy of a namespace's quotas for a second, so the common
//! case (no rate or byte quota) costs a map lookup, not a store read.
//!
//! Stored bytes are no counter every write would update (on PostgreSQL, a
//! row every node's every enqueue would queue on): the store measures them
//! (a scan of the namespace) at most every [`BYTES_MEASURE_MS`], and the
//! node adds the payloads and event data it admits in between (results and
//! what the engine writes itself, such as a workflow's jobs, count from the
//! next measure). One node holds the quota exactly; several may pass it by
//! what the others admitted since their measure.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use keel_core::quota::{Quotas, RateKind, exceeded};
use keel_core::{Clock, Error, Namespace, Timestamp};
use keel_store::{NamespaceQuotas, NamespaceStore, Usage};

/// How long a node trusts its copy of a namespace's quotas.
const CACHE_MS: i64 = 1000;
/// Past this many namespaces the caches start over (a bound on memory).
const CACHE_MAX: usize = 10_000;
/// How long a node trusts its measure of a namespace's stored bytes.
pub const BYTES_MEASURE_MS: i64 = 5000;

/// A namespace's stored bytes: the store's measure, plus what this node
/// admitted since.
#[derive(Clone, Copy, Debug)]
struct Bytes {
    held: u64,
    measured_at: Timestamp,
}

pub struct NamespaceService {
    store: Arc<dyn NamespaceStore>,
    clock: Arc<dyn Clock>,
    cache: Mutex<HashMap<Namespace, (Quotas, Timestamp)>>,
    /// One lock per namespace, so that one measure runs at a time and the
    /// admissions behind it wait for it rather than measure again.
    bytes: Mutex<HashMap<Namespace, Arc<tokio::sync::Mutex<Option<Bytes>>>>>,
}

impl NamespaceService {
    pub(crate) fn new(store: Arc<dyn NamespaceStore>, clock: Arc<dyn Clock>) -> Self {
        NamespaceService {
            store,
            clock,
            cache: Mutex::new(HashMap::new()),
            bytes: Mutex::new(HashMap::new()),
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
        self.bytes_lock().remove(namespace);
        Ok(stored)
    }

    /// A namespace's quotas (none set: all absent) and what it holds.
    pub async fn get(&self, namespace: &Namespace) -> Result<(Quotas, Usage), Error> {
        let quotas = self.stored(namespace).await?;
        Ok((quotas, self.store.namespace_usage(namespace).await?))
    }

    /// Every namespace with quotas set, each with what it holds.
    pub async fn list(&self) -> Result<Vec<(NamespaceQuotas, Usage)>, Error> {
        let mut all = Vec::new();
        for stored in self.store.namespaces_list().await? {
            let usage = self.store.namespace_usage(&stored.namespace).await?;
            all.push((stored, usage));
        }
        Ok(all)
    }

    async fn stored(&self, namespace: &Namespace) -> Result<Quotas, Error> {
        Ok(self
            .store
            .namespace_get(namespace)
            .await?
            .map(|q| q.quotas)
            .unwrap_or_default())
    }

    /// A namespace's quotas, from this node's copy when it is fresh.
    async fn quotas(&self, namespace: &Namespace) -> Result<Quotas, Error> {
        let now = self.clock.now();
        let cached = self
            .cache()
            .get(namespace)
            .filter(|(_, at)| now.as_millis() - at.as_millis() < CACHE_MS)
            .map(|(q, _)| *q);
        if let Some(quotas) = cached {
            return Ok(quotas);
        }
        let quotas = self.stored(namespace).await?;
        let mut cache = self.cache();
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(namespace.clone(), (quotas, now));
        Ok(quotas)
    }

    /// Admits `n` enqueues or publishes in `namespace`: 429 `rate_limited`
    /// (with a retry time) when its rate quota is spent.
    pub async fn take(&self, namespace: &Namespace, kind: RateKind, n: u64) -> Result<(), Error> {
        match kind.limit(&self.quotas(namespace).await?) {
            Some(per_second) => {
                self.store
                    .namespace_rate_take(namespace, kind, per_second, n, self.clock.now())
                    .await
            }
            None => Ok(()),
        }
    }

    /// Admits `n` more stored bytes (new payloads or event data) in
    /// `namespace`: 429 `quota_exceeded` naming `max_bytes` when they would
    /// take it past its quota; nothing is counted then.
    pub async fn take_bytes(&self, namespace: &Namespace, n: u64) -> Result<(), Error> {
        let Some(max) = self.quotas(namespace).await?.max_bytes else {
            return Ok(());
        };
        let lock = {
            let mut locks = self.bytes_lock();
            if locks.len() >= CACHE_MAX {
                locks.clear();
            }
            locks.entry(namespace.clone()).or_default().clone()
        };
        let mut bytes = lock.lock().await;
        let now = self.clock.now();
        let held = match *bytes {
            Some(b) if now.as_millis() - b.measured_at.as_millis() < BYTES_MEASURE_MS => b.held,
            _ => {
                let held = self.store.namespace_usage(namespace).await?.bytes;
                *bytes = Some(Bytes {
                    held,
                    measured_at: now,
                });
                held
            }
        };
        let would_hold = held.saturating_add(n);
        if would_hold > max {
            return Err(exceeded(namespace.as_str(), "max_bytes", max, would_hold));
        }
        if let Some(b) = bytes.as_mut() {
            b.held = would_hold;
        }
        Ok(())
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<Namespace, (Quotas, Timestamp)>> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn bytes_lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<Namespace, Arc<tokio::sync::Mutex<Option<Bytes>>>>> {
        self.bytes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test: a panic is a failed check")]

    use keel_core::job::JobRequest;
    use keel_core::{ErrorCode, Limits, QueueName, QueuePolicy, QueueRef};
    use keel_store::Store;
    use keel_store_sqlite::SqliteStore;

    use super::*;
    use crate::manual_clock::ManualClock;

    /// Stores one job whose payload is `n` bytes.
    async fn store_bytes(store: &dyn Store, n: usize, now: Timestamp) {
        let payload = format!("\"{}\"", "x".repeat(n - 2));
        let request: JobRequest =
            serde_json::from_str(&format!("{{\"payload\":{payload}}}")).unwrap();
        let job = request
            .validate(&QueuePolicy::default(), &Limits::default(), now)
            .unwrap();
        let queue = QueueRef {
            namespace: Namespace::new("acme").unwrap(),
            queue: QueueName::new("q").unwrap(),
        };
        store.jobs_enqueue(&queue, vec![job], now).await.unwrap();
    }

    #[tokio::test]
    async fn one_node_holds_max_bytes_exactly_and_sees_the_others_after_a_measure() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(dir.path(), &Limits::default()).unwrap());
        let clock = ManualClock::at(Timestamp::from_millis(1_800_000_000_000));
        let (a, b) = (
            NamespaceService::new(store.clone(), clock.clone()),
            NamespaceService::new(store.clone(), clock.clone()),
        );
        let acme = Namespace::new("acme").unwrap();
        let quotas = Quotas {
            max_bytes: Some(100),
            ..Quotas::default()
        };
        a.put(&acme, &quotas).await.unwrap();

        a.take_bytes(&acme, 60).await.unwrap();
        store_bytes(&*store, 60, clock.now()).await;
        // The other node measures the store: 60 held, room for 40.
        b.take_bytes(&acme, 30).await.unwrap();
        store_bytes(&*store, 30, clock.now()).await;
        let err = b.take_bytes(&acme, 11).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::QuotaExceeded);
        assert!(err.message.contains("max_bytes"), "{}", err.message);
        // This node does not know of the other's 30 until it measures again.
        a.take_bytes(&acme, 30).await.unwrap();
        store_bytes(&*store, 30, clock.now()).await;
        clock.advance(BYTES_MEASURE_MS);
        let err = a.take_bytes(&acme, 1).await.unwrap_err();
        assert!(err.message.contains("would hold 121"), "{}", err.message);
        // Without the quota nothing is measured or refused.
        a.put(&acme, &Quotas::default()).await.unwrap();
        clock.advance(CACHE_MS);
        a.take_bytes(&acme, 1_000_000).await.unwrap();
    }
}
