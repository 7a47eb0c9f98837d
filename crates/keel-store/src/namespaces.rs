//! The namespaces domain: each namespace's quotas, its usage of them, and
//! the state of its rate quotas. A namespace needs no row to exist; one is
//! written when an admin sets its quotas. The size quotas are enforced by
//! the stores where the thing is made (`jobs_enqueue`, `schedules_write`,
//! `subscription_put`), the rates by [`NamespaceStore::namespace_rate_take`],
//! on every node against the same budget.

use async_trait::async_trait;
use keel_core::quota::{Quotas, RateKind};
use keel_core::{Error, Namespace, Timestamp};

/// A namespace's quotas as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceQuotas {
    pub namespace: Namespace,
    pub quotas: Quotas,
    pub updated_at: Timestamp,
}

/// What a namespace holds, next to its quotas.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Unfinished jobs.
    pub jobs: u64,
    pub schedules: u64,
    pub subscriptions: u64,
    /// Bytes stored: job payloads and results, and event data (their JSON
    /// text). A scan of the namespace's rows, not a counter: read it
    /// seldom (the engine measures at most every few seconds).
    pub bytes: u64,
}

#[async_trait]
pub trait NamespaceStore: Send + Sync {
    /// Sets a namespace's quotas (all of them: an absent one is removed).
    async fn namespace_put(
        &self,
        namespace: &Namespace,
        quotas: &Quotas,
        now: Timestamp,
    ) -> Result<NamespaceQuotas, Error>;

    /// `None` when no quotas were ever set.
    async fn namespace_get(&self, namespace: &Namespace) -> Result<Option<NamespaceQuotas>, Error>;

    /// Every namespace with quotas, by name.
    async fn namespaces_list(&self) -> Result<Vec<NamespaceQuotas>, Error>;

    async fn namespace_usage(&self, namespace: &Namespace) -> Result<Usage, Error>;

    /// Takes `n` from the namespace's rate quota of this kind, whose limit
    /// is `per_second` (`keel_core::quota::take`): 429 `rate_limited` with
    /// a retry time when spent. The state is kept across nodes; after a
    /// restart of the embedded store the burst counts as spent.
    async fn namespace_rate_take(
        &self,
        namespace: &Namespace,
        kind: RateKind,
        per_second: u32,
        n: u64,
        now: Timestamp,
    ) -> Result<(), Error>;
}
