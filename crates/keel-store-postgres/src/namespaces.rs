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
        let text = serde_json::to_string(quotas).map_err(|e| Error::internal(e.to_string()))?;
        self.client()
            .await?
            .execute(
                "INSERT INTO keel_namespaces (namespace, quotas, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (namespace) DO UPDATE SET quotas = $2, updated_at = $3",
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
            .query(
                "SELECT namespace, quotas, updated_at FROM keel_namespaces ORDER BY namespace",
                &[],
            )
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
                "SELECT (SELECT count(*) FROM keel_jobs WHERE namespace = $1 AND finished_at IS NULL), \
                        (SELECT count(*) FROM keel_schedules WHERE namespace = $1), \
                        (SELECT count(*) FROM keel_subscriptions WHERE namespace = $1), \
                        (SELECT coalesce(sum(octet_length(payload) \
                                    + coalesce(octet_length(result), 0)), 0) \
                         FROM keel_jobs WHERE namespace = $1) \
                      + (SELECT coalesce(sum(octet_length(data)), 0) \
                         FROM keel_events WHERE namespace = $1)",
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
        let column = match kind {
            RateKind::Enqueue => "enqueue_tat",
            RateKind::Publish => "publish_tat",
        };
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let Some(row) = tx
            .query_opt(
                &format!("SELECT {column} FROM keel_namespaces WHERE namespace = $1 FOR UPDATE"),
                &[&namespace.as_str()],
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
            &format!("UPDATE keel_namespaces SET {column} = $2 WHERE namespace = $1"),
            &[&namespace.as_str(), &tat],
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

/// 429 `quota_exceeded` when making one more of what `table` holds would
/// pass the namespace's quota `name` (read by `quota`). Locks the
/// namespace's row until the transaction ends, so concurrent makes on any
/// node count one after the other.
pub(crate) async fn room_for_one(
    tx: &impl GenericClient,
    namespace: &Namespace,
    name: &str,
    table: &str,
    quota: fn(&Quotas) -> Option<u32>,
) -> Result<(), Error> {
    let Some(limit) = quotas_row(tx, namespace, true)
        .await?
        .and_then(|q| quota(&q.quotas))
    else {
        return Ok(());
    };
    let held: i64 = tx
        .query_one(
            &format!("SELECT count(*) FROM {table} WHERE namespace = $1"),
            &[&namespace.as_str()],
        )
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
    let lock = if lock { " FOR UPDATE" } else { "" };
    client
        .query_opt(
            &format!(
                "SELECT namespace, quotas, updated_at FROM keel_namespaces WHERE namespace = $1{lock}"
            ),
            &[&namespace.as_str()],
        )
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
        quotas: serde_json::from_str(quotas).map_err(|e| corrupt("quotas", e.to_string()))?,
        updated_at: Timestamp::from_millis(r.get(2)),
    })
}
