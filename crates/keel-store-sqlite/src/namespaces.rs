//! Namespace quotas on SQLite: one row per namespace with quotas. The
//! writer keeps each namespace's `max_jobs` in memory for the enqueue's
//! bound (it is the only writer, so its copy is the stored one); the rate
//! quotas' states live in this process (after a restart a namespace's
//! burst counts as spent).

use std::collections::HashMap;

use async_trait::async_trait;
use keel_core::quota::{Quotas, RateKind, exceeded, take};
use keel_core::{Error, Namespace, Timestamp};
use keel_store::{NamespaceQuotas, NamespaceStore, Usage};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::SqliteStore;
use crate::rows::{corrupt, from_json};
use crate::writer::Writer;

/// The rate quotas' states: each namespace's theoretical arrival time, in µs.
pub(crate) type RateStates = std::sync::Mutex<HashMap<(Namespace, RateKind), i64>>;

#[async_trait]
impl NamespaceStore for SqliteStore {
    async fn namespace_put(
        &self,
        namespace: &Namespace,
        quotas: &Quotas,
        now: Timestamp,
    ) -> Result<NamespaceQuotas, Error> {
        let (namespace, quotas) = (namespace.clone(), *quotas);
        // Set in this process: the rates start with a whole burst (after a
        // restart they are unknown, and the burst counts as spent).
        {
            let mut states = self
                .rate_states
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for kind in [RateKind::Enqueue, RateKind::Publish] {
                states.insert((namespace.clone(), kind), now.as_millis() * 1000);
            }
        }
        self.write(move |w: &mut Writer| {
            let text = crate::rows::to_json("namespace quotas", &quotas)?;
            w.conn
                .prepare_cached(
                    "INSERT INTO namespaces (namespace, quotas, updated_at) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (namespace) DO UPDATE SET quotas = ?2, updated_at = ?3",
                )?
                .execute(params![namespace.as_str(), text, now.as_millis()])?;
            match quotas.max_jobs {
                Some(max) => w.job_quotas.insert(namespace.clone(), max),
                None => w.job_quotas.remove(&namespace),
            };
            Ok(Ok(NamespaceQuotas {
                namespace,
                quotas,
                updated_at: now,
            }))
        })
        .await
    }

    async fn namespace_get(&self, namespace: &Namespace) -> Result<Option<NamespaceQuotas>, Error> {
        let namespace = namespace.clone();
        self.read(move |conn| Ok(Ok(quotas_row(conn, &namespace)?)))
            .await
    }

    async fn namespaces_list(&self) -> Result<Vec<NamespaceQuotas>, Error> {
        self.read(move |conn| {
            let rows = conn
                .prepare_cached(
                    "SELECT namespace, quotas, updated_at FROM namespaces ORDER BY namespace",
                )?
                .query_map([], quotas_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Ok(rows))
        })
        .await
    }

    async fn namespace_usage(&self, namespace: &Namespace) -> Result<Usage, Error> {
        // The bytes are a scan: on a reader, not the writer.
        let bytes = {
            let namespace = namespace.clone();
            self.read(move |conn| {
                conn.prepare_cached(
                    "SELECT (SELECT coalesce(sum(octet_length(payload) \
                                + coalesce(octet_length(result), 0)), 0) \
                             FROM jobs WHERE namespace = ?1) \
                          + (SELECT coalesce(sum(octet_length(data)), 0) \
                             FROM events WHERE namespace = ?1)",
                )?
                .query_row([namespace.as_str()], |r| r.get::<_, i64>(0))
                .map(|n| Ok(n as u64))
            })
            .await?
        };
        let namespace = namespace.clone();
        // The writer's in-memory count of unfinished jobs: no scan.
        self.write(move |w: &mut Writer| {
            let count = |table: &str| -> rusqlite::Result<u64> {
                w.conn
                    .prepare_cached(&format!(
                        "SELECT count(*) FROM {table} WHERE namespace = ?1"
                    ))?
                    .query_row([namespace.as_str()], |r| r.get::<_, i64>(0))
                    .map(|n| n as u64)
            };
            Ok(Ok(Usage {
                jobs: w.hot.unfinished(&namespace),
                schedules: count("schedules")?,
                subscriptions: count("subscriptions")?,
                bytes,
            }))
        })
        .await
    }

    async fn namespace_rate_take(
        &self,
        namespace: &Namespace,
        kind: RateKind,
        per_second: u32,
        n: u64,
        now: Timestamp,
    ) -> Result<(), Error> {
        let mut states = self
            .rate_states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (namespace.clone(), kind);
        // Unknown after a restart: the burst counts as spent from the first
        // sight on, kept even when this take is refused, or every retry
        // would assume it spent anew and never get through.
        let known = *states
            .entry(key.clone())
            .or_insert_with(|| keel_core::quota::burst_spent(per_second, now));
        let tat = take(namespace.as_str(), kind, per_second, Some(known), n, now)?;
        states.insert(key, tat);
        Ok(())
    }
}

/// Every namespace's `max_jobs` quota, for the writer's bound.
pub(crate) fn job_quotas(conn: &Connection) -> rusqlite::Result<HashMap<Namespace, u64>> {
    let rows = conn
        .prepare("SELECT namespace, quotas, updated_at FROM namespaces")?
        .query_map([], quotas_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows
        .into_iter()
        .filter_map(|q| Some((q.namespace, q.quotas.max_jobs?)))
        .collect())
}

/// 429 `quota_exceeded` when making one more of what `table` holds would
/// pass the namespace's quota `name` (read by `quota`).
pub(crate) fn room_for_one(
    conn: &Connection,
    namespace: &Namespace,
    name: &str,
    table: &str,
    quota: fn(&Quotas) -> Option<u32>,
) -> rusqlite::Result<Result<(), Error>> {
    let Some(limit) = quotas_row(conn, namespace)?.and_then(|q| quota(&q.quotas)) else {
        return Ok(Ok(()));
    };
    let held: i64 = conn
        .prepare_cached(&format!(
            "SELECT count(*) FROM {table} WHERE namespace = ?1"
        ))?
        .query_row([namespace.as_str()], |r| r.get(0))?;
    let would_hold = held as u64 + 1;
    Ok(if would_hold > u64::from(limit) {
        Err(exceeded(
            namespace.as_str(),
            name,
            u64::from(limit),
            would_hold,
        ))
    } else {
        Ok(())
    })
}

fn quotas_row(
    conn: &Connection,
    namespace: &Namespace,
) -> rusqlite::Result<Option<NamespaceQuotas>> {
    conn.prepare_cached(
        "SELECT namespace, quotas, updated_at FROM namespaces WHERE namespace = ?1",
    )?
    .query_row([namespace.as_str()], quotas_from_row)
    .optional()
}

fn quotas_from_row(r: &Row<'_>) -> rusqlite::Result<NamespaceQuotas> {
    let namespace: String = r.get(0)?;
    Ok(NamespaceQuotas {
        namespace: Namespace::new(&namespace).map_err(|e| corrupt(e.message))?,
        quotas: from_json(&r.get::<_, String>(1)?)?,
        updated_at: Timestamp::from_millis(r.get(2)?),
    })
}
