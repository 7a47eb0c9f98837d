//! Endpoints on PostgreSQL: one row each (spec, secrets and health as JSON
//! text) and an attempts table. A put is one upsert; rotating, disabling
//! and recording attempts lock the endpoint's row, change it in Rust (the
//! rules are `keel_core`'s) and write it back in the same transaction, so
//! two nodes recording at once both count.

use std::collections::BTreeMap;

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use keel_core::endpoint::{EndpointSpec, Health, Secrets, endpoint_queue};
use keel_core::{EndpointName, Error, Namespace, Timestamp};
use keel_store::{
    Attempt, AttemptQuery, Endpoint, EndpointStore, NewAttempt, SecretChoice, endpoint_not_found,
};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::{PostgresStore, db, job_id, uuid};

fn json<T: serde::Serialize>(value: &T) -> Result<String, Error> {
    keel_store::codec::encode("endpoint", value)
}

/// The endpoint's row, locked until the transaction ends.
async fn locked(
    tx: &impl GenericClient,
    namespace: &Namespace,
    name: &EndpointName,
) -> Result<Option<Endpoint>, Error> {
    tx.query_opt(
        include_str!("../queries/endpoints/endpoint_lock.sql"),
        &[&namespace.as_str(), &name.as_str()],
    )
    .await
    .map_err(db)?
    .as_ref()
    .map(endpoint_from_row)
    .transpose()
}

async fn write_back(tx: &impl GenericClient, e: &Endpoint) -> Result<(), Error> {
    tx.execute(
        include_str!("../queries/endpoints/endpoint_set.sql"),
        &[
            &e.namespace.as_str(),
            &e.name.as_str(),
            &json(&e.secrets)?,
            &json(&e.health)?,
            &e.updated_at.as_millis(),
        ],
    )
    .await
    .map_err(db)?;
    Ok(())
}

#[async_trait]
impl EndpointStore for PostgresStore {
    async fn endpoint_put(
        &self,
        namespace: &Namespace,
        name: &EndpointName,
        spec: &EndpointSpec,
        secret: SecretChoice,
        now: Timestamp,
    ) -> Result<(Endpoint, bool), Error> {
        let (secret, set) = match secret {
            SecretChoice::KeepOr(s) => (s, false),
            SecretChoice::Set(s) => (s, true),
        };
        let row = self
            .client()
            .await?
            .query_one(
                include_str!("../queries/endpoints/endpoint_put.sql"),
                &[
                    &namespace.as_str(),
                    &name.as_str(),
                    &json(spec)?,
                    &json(&Secrets::new(secret))?,
                    &json(&Health::default())?,
                    &now.as_millis(),
                    &set,
                ],
            )
            .await
            .map_err(db)?;
        Ok((endpoint_from_row(&row)?, row.get(7)))
    }

    async fn endpoint_get(
        &self,
        namespace: &Namespace,
        name: &EndpointName,
    ) -> Result<Endpoint, Error> {
        let row = self
            .client()
            .await?
            .query_opt(
                include_str!("../queries/endpoints/endpoint_get.sql"),
                &[&namespace.as_str(), &name.as_str()],
            )
            .await
            .map_err(db)?;
        row.as_ref()
            .map(endpoint_from_row)
            .unwrap_or_else(|| Err(endpoint_not_found(name.as_str())))
    }

    async fn endpoints_list(&self, namespace: Option<&Namespace>) -> Result<Vec<Endpoint>, Error> {
        self.client()
            .await?
            .query(
                include_str!("../queries/endpoints/endpoints_list.sql"),
                &[&namespace.map(Namespace::as_str)],
            )
            .await
            .map_err(db)?
            .iter()
            .map(endpoint_from_row)
            .collect()
    }

    async fn endpoint_delete(
        &self,
        namespace: &Namespace,
        name: &EndpointName,
    ) -> Result<(), Error> {
        let row = self
            .client()
            .await?
            .query_one(
                include_str!("../queries/endpoints/endpoint_delete.sql"),
                &[&namespace.as_str(), &name.as_str()],
            )
            .await
            .map_err(db)?;
        if row.get::<_, i64>(0) == 0 {
            return Err(endpoint_not_found(name.as_str()));
        }
        Ok(())
    }

    async fn endpoint_rotate(
        &self,
        namespace: &Namespace,
        name: &EndpointName,
        next: String,
        now: Timestamp,
    ) -> Result<Endpoint, Error> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let mut endpoint = locked(&tx, namespace, name)
            .await?
            .ok_or_else(|| endpoint_not_found(name.as_str()))?;
        endpoint.secrets = endpoint.secrets.rotated(next, now);
        endpoint.updated_at = now;
        write_back(&tx, &endpoint).await?;
        tx.commit().await.map_err(db)?;
        Ok(endpoint)
    }

    async fn endpoint_disable(
        &self,
        namespace: &Namespace,
        name: &EndpointName,
        reason: Option<String>,
        now: Timestamp,
    ) -> Result<bool, Error> {
        let queue = endpoint_queue(namespace, name)?;
        let disabled = reason.is_some();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let mut endpoint = locked(&tx, namespace, name)
            .await?
            .ok_or_else(|| endpoint_not_found(name.as_str()))?;
        if !endpoint.health.set_disabled(reason, now) {
            return Ok(false);
        }
        write_back(&tx, &endpoint).await?;
        // Its queue is paused with it, in the same transaction: no node
        // leases a delivery for a disabled endpoint.
        tx.execute(
            include_str!("../queries/queues/set_paused.sql"),
            &[
                &queue.namespace.as_str(),
                &queue.queue.as_str(),
                &disabled,
                &now.as_millis(),
            ],
        )
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        if !disabled {
            self.ready(&queue, keel_store::MAX_WOKEN);
        }
        Ok(true)
    }

    async fn attempts_record(&self, attempts: Vec<NewAttempt>) -> Result<Vec<Endpoint>, Error> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        // Locked in key order, so two nodes recording never deadlock.
        let mut touched: BTreeMap<(Namespace, EndpointName), Option<Endpoint>> = attempts
            .iter()
            .map(|a| ((a.namespace.clone(), a.endpoint.clone()), None))
            .collect();
        for ((namespace, name), slot) in touched.iter_mut() {
            *slot = locked(&tx, namespace, name).await?;
        }
        let mut columns = Columns::default();
        for a in &attempts {
            let key = (a.namespace.clone(), a.endpoint.clone());
            let Some(Some(endpoint)) = touched.get_mut(&key) else {
                continue;
            };
            endpoint.health.record(a.succeeded, a.at);
            columns.push(a);
        }
        tx.execute(
            include_str!("../queries/endpoints/attempts_insert.sql"),
            &[
                &columns.namespace,
                &columns.endpoint,
                &columns.message_id,
                &columns.job_id,
                &columns.at,
                &columns.succeeded,
                &columns.http_status,
                &columns.latency_ms,
                &columns.response_excerpt,
                &columns.error,
            ],
        )
        .await
        .map_err(db)?;
        let endpoints: Vec<Endpoint> = touched.into_values().flatten().collect();
        for endpoint in &endpoints {
            write_back(&tx, endpoint).await?;
        }
        tx.commit().await.map_err(db)?;
        Ok(endpoints)
    }

    async fn attempts_list(
        &self,
        namespace: &Namespace,
        name: &EndpointName,
        query: &AttemptQuery,
    ) -> Result<Vec<Attempt>, Error> {
        self.client()
            .await?
            .query(
                include_str!("../queries/endpoints/attempts_list.sql"),
                &[
                    &namespace.as_str(),
                    &name.as_str(),
                    &query.before,
                    &query.succeeded,
                    &i64::from(query.limit),
                ],
            )
            .await
            .map_err(db)?
            .iter()
            .map(attempt_from_row)
            .collect()
    }

    async fn attempts_prune(&self, before: Timestamp, limit: u32) -> Result<u64, Error> {
        self.client()
            .await?
            .execute(
                include_str!("../queries/endpoints/attempts_prune.sql"),
                &[&before.as_millis(), &i64::from(limit)],
            )
            .await
            .map_err(db)
    }
}

/// Attempts as one array per column, for one `unnest` insert.
#[derive(Default)]
struct Columns {
    namespace: Vec<String>,
    endpoint: Vec<String>,
    message_id: Vec<String>,
    job_id: Vec<Uuid>,
    at: Vec<i64>,
    succeeded: Vec<bool>,
    http_status: Vec<Option<i32>>,
    latency_ms: Vec<i64>,
    response_excerpt: Vec<Option<String>>,
    error: Vec<Option<String>>,
}

impl Columns {
    fn push(&mut self, a: &NewAttempt) {
        self.namespace.push(a.namespace.as_str().to_owned());
        self.endpoint.push(a.endpoint.as_str().to_owned());
        self.message_id.push(a.message_id.clone());
        self.job_id.push(uuid(a.job_id));
        self.at.push(a.at.as_millis());
        self.succeeded.push(a.succeeded);
        self.http_status.push(a.http_status.map(i32::from));
        self.latency_ms
            .push(i64::try_from(a.latency_ms).unwrap_or(i64::MAX));
        self.response_excerpt.push(a.response_excerpt.clone());
        self.error.push(a.error.clone());
    }
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> Error {
    Error::internal(format!("corrupt endpoint {what}: {e}"))
}

fn endpoint_from_row(r: &Row) -> Result<Endpoint, Error> {
    Ok(Endpoint {
        namespace: Namespace::new(r.get(0)).map_err(|e| corrupt("namespace", e.message))?,
        name: EndpointName::new(r.get(1)).map_err(|e| corrupt("name", e.message))?,
        spec: serde_json::from_str(r.get(2)).map_err(|e| corrupt("spec", e))?,
        secrets: serde_json::from_str(r.get(3)).map_err(|e| corrupt("secrets", e))?,
        health: serde_json::from_str(r.get(4)).map_err(|e| corrupt("health", e))?,
        created_at: Timestamp::from_millis(r.get(5)),
        updated_at: Timestamp::from_millis(r.get(6)),
    })
}

fn attempt_from_row(r: &Row) -> Result<Attempt, Error> {
    Ok(Attempt {
        id: r.get(0),
        attempt: NewAttempt {
            namespace: Namespace::new(r.get(1)).map_err(|e| corrupt("namespace", e.message))?,
            endpoint: EndpointName::new(r.get(2)).map_err(|e| corrupt("name", e.message))?,
            message_id: r.get(3),
            job_id: job_id(r.get(4)),
            at: Timestamp::from_millis(r.get(5)),
            succeeded: r.get(6),
            http_status: r
                .get::<_, Option<i32>>(7)
                .and_then(|s| u16::try_from(s).ok()),
            latency_ms: u64::try_from(r.get::<_, i64>(8)).unwrap_or(0),
            response_excerpt: r.get(9),
            error: r.get(10),
        },
    })
}
