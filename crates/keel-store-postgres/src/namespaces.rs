//! Namespace quotas on PostgreSQL: one row per namespace with quotas, which
//! also holds its rate quotas' states. A make that a size quota bounds
//! (a schedule, a subscription) locks the row, so two nodes cannot both take
//! the last place; a rate is taken under the same lock. Each node trusts its
//! copy of a namespace's `max_jobs` for a second (the job bound is already
//! counted that way: `bound.rs`).

use std::time::{Duration, Instant};

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use keel_core::quota::{Quotas, RateKind, exceeded, take};
use keel_core::{Error, Namespace, Timestamp};
use keel_store::{NamespaceQuotas, NamespaceStore, Usage};
use tokio_postgres::Row;

use crate::{PostgresStore, db};

/// How long a node trusts its copy of a namespace's `max_jobs`.
const QUOTA_REFRESH: Duration = Duration::from_secs(1);

#[async_trait]
impl NamespaceStore for PostgresStore {
    async fn namespace_put(
        &self,
        namespace: &Namespace,
        quotas: &Quotas,
        now: Timestamp,
    ) -> Result<NamespaceQuotas, Error> {
        let text = keel_store::codec::encode("namespace quotas", quotas)?;
        self.client()
            .await?
            .execute(
                include_str!("../queries/namespaces/put.sql"),
                &[&namespace.as_str(), &text, &now.as_millis()],
            )
            .await
            .map_err(db)?;
        self.forget_job_quota(namespace);
        Ok(NamespaceQuotas {
            namespace: namespace.clone(),
            quotas: *quotas,
            updated_at: now,
        })
    }

    async fn namespace_get(&self, namespace: &Namespace) -> Result<Option<NamespaceQuotas>, Error> {
        let client = self.client().await?;
        quotas_row(&client, namespace, false).await
    }

    async fn namespaces_list(&self) -> Result<Vec<NamespaceQuotas>, Error> {
        self.client()
            .await?
            .query(include_str!("../queries/namespaces/list.sql"), &[])
            .await
            .map_err(db)?
            .iter()
            .map(quotas_from_row)
            .collect()
    }

    async fn namespace_usage(&self, namespace: &Namespace) -> Result<Usage, Error> {
        let row = self
            .client()
            .await?
            .query_one(
                include_str!("../queries/namespaces/usage.sql"),
                &[&namespace.as_str()],
            )
            .await
            .map_err(db)?;
        let n = |i: usize| row.get::<_, i64>(i) as u64;
        Ok(Usage {
            jobs: n(0),
            schedules: n(1),
            subscriptions: n(2),
            bytes: n(3),
        })
    }

    async fn namespace_rate_take(
        &self,
        namespace: &Namespace,
        kind: RateKind,
        per_second: u32,
        n: u64,
        now: Timestamp,
    ) -> Result<(), Error> {
        let which = match kind {
            RateKind::Enqueue => "enqueue",
            RateKind::Publish => "publish",
        };
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let Some(row) = tx
            .query_opt(
                include_str!("../queries/namespaces/rate_lock.sql"),
                &[&namespace.as_str(), &which],
            )
            .await
            .map_err(db)?
        else {
            // The quota was removed meanwhile: nothing to take from.
            return Ok(());
        };
        // Stored, so never unknown: NULL is a rate not used yet (a whole burst).
        let stored: Option<i64> = row.get(0);
        let tat = stored.unwrap_or(now.as_millis() * 1000);
        let tat = take(namespace.as_str(), kind, per_second, Some(tat), n, now)?;
        tx.execute(
            include_str!("../queries/namespaces/rate_set.sql"),
            &[&namespace.as_str(), &tat, &which],
        )
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }
}

impl PostgresStore {
    /// The namespace's own `max_jobs` quota, if it has one (a copy at most
    /// a second old).
    pub(crate) async fn job_quota(
        &self,
        client: &impl GenericClient,
        namespace: &Namespace,
    ) -> Result<Option<u64>, Error> {
        let cached = self
            .job_quotas
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(namespace)
            .filter(|(_, at)| at.elapsed() < QUOTA_REFRESH)
            .map(|(quota, _)| *quota);
        if let Some(quota) = cached {
            return Ok(quota);
        }
        let quota = quotas_row(client, namespace, false)
            .await?
            .and_then(|q| q.quotas.max_jobs);
        self.job_quotas
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(namespace.clone(), (quota, Instant::now()));
        Ok(quota)
    }

    fn forget_job_quota(&self, namespace: &Namespace) {
        self.job_quotas
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(namespace);
    }
}

/// 429 `quota_exceeded` when making one more of what `count` (a query of
/// the domain's, by namespace) counts would pass the namespace's quota
/// `name` (read by `quota`). Locks the
/// namespace's row until the transaction ends, so concurrent makes on any
/// node count one after the other.
pub(crate) async fn room_for_one(
    tx: &impl GenericClient,
    namespace: &Namespace,
    name: &str,
    count: &str,
    quota: fn(&Quotas) -> Option<u32>,
) -> Result<(), Error> {
    let Some(limit) = quotas_row(tx, namespace, true)
        .await?
        .and_then(|q| quota(&q.quotas))
    else {
        return Ok(());
    };
    let held: i64 = tx
        .query_one(count, &[&namespace.as_str()])
        .await
        .map_err(db)?
        .get(0);
    let would_hold = held as u64 + 1;
    if would_hold > u64::from(limit) {
        return Err(exceeded(
            namespace.as_str(),
            name,
            u64::from(limit),
            would_hold,
        ));
    }
    Ok(())
}

async fn quotas_row(
    client: &impl GenericClient,
    namespace: &Namespace,
    lock: bool,
) -> Result<Option<NamespaceQuotas>, Error> {
    let query = if lock {
        include_str!("../queries/namespaces/get_locked.sql")
    } else {
        include_str!("../queries/namespaces/get.sql")
    };
    client
        .query_opt(query, &[&namespace.as_str()])
        .await
        .map_err(db)?
        .as_ref()
        .map(quotas_from_row)
        .transpose()
}

fn quotas_from_row(r: &Row) -> Result<NamespaceQuotas, Error> {
    let corrupt = |what: &str, e: String| Error::internal(format!("corrupt namespace {what}: {e}"));
    let namespace: &str = r.get(0);
    let quotas: &str = r.get(1);
    Ok(NamespaceQuotas {
        namespace: Namespace::new(namespace).map_err(|e| corrupt("name", e.message))?,
        quotas: keel_store::codec::decode("namespace quotas", quotas)?,
        updated_at: Timestamp::from_millis(r.get(2)),
    })
}
