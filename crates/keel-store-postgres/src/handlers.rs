//! Handlers and per-entity state on PostgreSQL. Writes to an object lock
//! its `keel_objects` row (size and version counter) for the transaction;
//! a handler's commit acks its job (`ack_in`), writes the state and
//! creates the effects' jobs in one transaction.

use std::collections::BTreeMap;

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use keel_core::handler::state::{StateEntry, StateOp, StateQuery};
use keel_core::handler::{HandlerKind, HandlerVersion, NewVersion, ObjectRef};
use keel_core::{Error, HandlerName, Namespace, Timestamp};
use keel_store::{
    Ack, AckOutcome, Acked, HandlerCommit, HandlerStore, HandlerSummary, handler_not_found,
    plan_writes,
};
use serde_json::value::RawValue;
use tokio_postgres::Row;

use crate::jobs::AckWake;
use crate::jobs::rows::{corrupt, from_json};
use crate::owner::OwnedRows;
use crate::{PostgresStore, Woken, db};

macro_rules! query {
    ($name:literal) => {
        include_str!(concat!("../queries/handlers/", $name, ".sql"))
    };
}

fn version_from_row(r: &Row) -> Result<HandlerVersion, Error> {
    Ok(HandlerVersion {
        namespace: Namespace::new(r.get(0)).map_err(|e| corrupt(e.message))?,
        name: HandlerName::new(r.get(1)).map_err(|e| corrupt(e.message))?,
        version: r.get::<_, i32>(2) as u32,
        kind: HandlerKind::parse(r.get(3))?,
        hash: r.get(4),
        source: r.get(5),
        artifact: r.get(6),
        settings: from_json(r.get(7))?,
        created_at: Timestamp::from_millis(r.get(8)),
    })
}

fn entry_from_row(r: &Row) -> Result<StateEntry, Error> {
    Ok(StateEntry {
        key: r.get(0),
        value: RawValue::from_string(r.get(1)).map_err(|e| corrupt(e.to_string()))?,
        version: r.get::<_, i64>(2) as u64,
    })
}

async fn entries(
    client: &impl GenericClient,
    ns: &str,
    object: &ObjectRef,
    keys: &[String],
) -> Result<Vec<StateEntry>, Error> {
    client
        .query(
            query!("state_get"),
            &[&ns, &object.kind, &object.key, &keys],
        )
        .await
        .map_err(db)?
        .iter()
        .map(entry_from_row)
        .collect()
}

/// Locks the object, decides the batch and writes it: each key's version.
async fn write_state(
    tx: &impl GenericClient,
    ns: &str,
    object: &ObjectRef,
    ops: &[StateOp],
    now: Timestamp,
) -> Result<Vec<u64>, Error> {
    tx.execute(query!("object_lock"), &[&ns, &object.kind, &object.key])
        .await
        .map_err(db)?;
    let row = tx
        .query_one(query!("object_row_lock"), &[&ns, &object.kind, &object.key])
        .await
        .map_err(db)?;
    let (bytes, seq) = (row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64);
    let keys: Vec<String> = ops.iter().map(|o| o.key.clone()).collect();
    let current: BTreeMap<String, StateEntry> = entries(tx, ns, object, &keys)
        .await?
        .into_iter()
        .map(|e| (e.key.clone(), e))
        .collect();
    let (held, versions) = plan_writes(object, bytes, &current, ops, seq + 1)?;
    let at = now.as_millis();
    for (op, version) in ops.iter().zip(&versions) {
        match &op.value {
            Some(v) => {
                tx.execute(
                    query!("state_put"),
                    &[
                        &ns,
                        &object.kind,
                        &object.key,
                        &op.key,
                        &v.get(),
                        &(*version as i64),
                        &at,
                    ],
                )
                .await
            }
            None => {
                tx.execute(
                    query!("state_delete"),
                    &[&ns, &object.kind, &object.key, &op.key],
                )
                .await
            }
        }
        .map_err(db)?;
    }
    let seq = (seq + ops.len() as u64) as i64;
    tx.execute(
        query!("object_set"),
        &[&ns, &object.kind, &object.key, &(held as i64), &seq],
    )
    .await
    .map_err(db)?;
    Ok(versions)
}

#[async_trait]
impl HandlerStore for PostgresStore {
    async fn handler_put(
        &self,
        namespace: &Namespace,
        name: &HandlerName,
        new: NewVersion,
        now: Timestamp,
    ) -> Result<(HandlerVersion, bool), Error> {
        let (ns, n, at) = (namespace.as_str(), name.as_str(), now.as_millis());
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        tx.execute(query!("handler_lock"), &[&ns, &n, &at])
            .await
            .map_err(db)?;
        tx.query_one(query!("handler_row_lock"), &[&ns, &n])
            .await
            .map_err(db)?;
        let current = tx
            .query_opt(query!("version_get"), &[&ns, &n, &None::<i32>])
            .await
            .map_err(db)?;
        if let Some(row) = current {
            let current = version_from_row(&row)?;
            if current.hash == new.hash {
                return Ok((current, false));
            }
        }
        let version: i32 = tx
            .query_one(query!("version_next"), &[&ns, &n])
            .await
            .map_err(db)?
            .get(0);
        let settings =
            serde_json::to_string(&new.settings).map_err(|e| Error::internal(e.to_string()))?;
        tx.execute(
            query!("version_insert"),
            &[
                &ns,
                &n,
                &version,
                &new.kind.as_str(),
                &new.hash,
                &new.source,
                &new.artifact,
                &settings,
                &at,
            ],
        )
        .await
        .map_err(db)?;
        tx.execute(query!("handler_set_version"), &[&ns, &n, &version, &at])
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok((new.stored(namespace, name, version as u32, now), true))
    }

    async fn handler_get(
        &self,
        namespace: &Namespace,
        name: &HandlerName,
        version: Option<u32>,
    ) -> Result<HandlerVersion, Error> {
        let version = version.map(|v| v as i32);
        self.client()
            .await?
            .query_opt(
                query!("version_get"),
                &[&namespace.as_str(), &name.as_str(), &version],
            )
            .await
            .map_err(db)?
            .map_or_else(|| Err(handler_not_found(name)), |r| version_from_row(&r))
    }

    async fn handlers_list(&self, namespace: &Namespace) -> Result<Vec<HandlerSummary>, Error> {
        self.client()
            .await?
            .query(query!("handlers_list"), &[&namespace.as_str()])
            .await
            .map_err(db)?
            .iter()
            .map(|r| {
                Ok(HandlerSummary {
                    name: HandlerName::new(r.get(0)).map_err(|e| corrupt(e.message))?,
                    version: r.get::<_, i32>(1) as u32,
                    kind: HandlerKind::parse(r.get(2))?,
                    hash: r.get(3),
                    created_at: Timestamp::from_millis(r.get(4)),
                    updated_at: Timestamp::from_millis(r.get(5)),
                })
            })
            .collect()
    }

    async fn handler_delete(&self, namespace: &Namespace, name: &HandlerName) -> Result<(), Error> {
        let gone: i64 = self
            .client()
            .await?
            .query_one(
                query!("handler_delete"),
                &[&namespace.as_str(), &name.as_str()],
            )
            .await
            .map_err(db)?
            .get(0);
        if gone == 0 {
            return Err(handler_not_found(name));
        }
        Ok(())
    }

    async fn handler_secrets_put(
        &self,
        namespace: &Namespace,
        name: &HandlerName,
        secrets: &BTreeMap<String, String>,
        now: Timestamp,
    ) -> Result<(), Error> {
        let text = serde_json::to_string(secrets).map_err(|e| Error::internal(e.to_string()))?;
        let set = self
            .client()
            .await?
            .execute(
                query!("secrets_put"),
                &[&namespace.as_str(), &name.as_str(), &text, &now.as_millis()],
            )
            .await
            .map_err(db)?;
        if set == 0 {
            return Err(handler_not_found(name));
        }
        Ok(())
    }

    async fn handler_secrets(
        &self,
        namespace: &Namespace,
        name: &HandlerName,
    ) -> Result<BTreeMap<String, String>, Error> {
        let row = self
            .client()
            .await?
            .query_opt(
                query!("secrets_get"),
                &[&namespace.as_str(), &name.as_str()],
            )
            .await
            .map_err(db)?
            .ok_or_else(|| handler_not_found(name))?;
        from_json(row.get(0))
    }

    async fn state_get(
        &self,
        namespace: &Namespace,
        object: &ObjectRef,
        keys: &[String],
    ) -> Result<Vec<StateEntry>, Error> {
        entries(&self.client().await?, namespace.as_str(), object, keys).await
    }

    async fn state_list(
        &self,
        namespace: &Namespace,
        object: &ObjectRef,
        query: &StateQuery,
    ) -> Result<Vec<StateEntry>, Error> {
        let (from, end) = query.bounds();
        let (from, inclusive) = from.unwrap_or(("", true));
        let rows = self
            .client()
            .await?
            .query(
                query!("state_list"),
                &[
                    &namespace.as_str(),
                    &object.kind,
                    &object.key,
                    &from,
                    &inclusive,
                    &end,
                    &i64::from(query.limit),
                ],
            )
            .await
            .map_err(db)?;
        let entries = rows
            .iter()
            .map(entry_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(entries
            .into_iter()
            .filter(|e| query.contains(&e.key))
            .collect())
    }

    async fn state_write(
        &self,
        namespace: &Namespace,
        object: &ObjectRef,
        ops: Vec<StateOp>,
        now: Timestamp,
    ) -> Result<Vec<u64>, Error> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let versions = write_state(&tx, namespace.as_str(), object, &ops, now).await?;
        tx.commit().await.map_err(db)?;
        Ok(versions)
    }

    async fn handler_commits(
        &self,
        namespace: &Namespace,
        commits: Vec<HandlerCommit>,
        now: Timestamp,
    ) -> Result<Vec<Result<Acked, Error>>, Error> {
        let mut client = self.client().await?;
        let mut tx = client.transaction().await.map_err(db)?;
        let mut answers = Vec::with_capacity(commits.len());
        let mut wakes = Vec::new();
        for c in commits {
            // A savepoint each: a refused attempt leaves the others.
            let attempt = tx.savepoint("attempt").await.map_err(db)?;
            match self.commit_in(&attempt, namespace, c, now).await {
                Ok((acked, wake, woken)) => {
                    attempt.commit().await.map_err(db)?;
                    wakes.push((acked.clone(), wake, woken));
                    answers.push(Ok(acked));
                }
                Err(e) => {
                    attempt.rollback().await.map_err(db)?;
                    answers.push(Err(e));
                }
            }
        }
        tx.commit().await.map_err(db)?;
        for (acked, wake, woken) in wakes {
            self.after_ack(namespace, &[Ok(acked)], wake, now).await?;
            self.wake(woken, now);
        }
        Ok(answers)
    }
}

impl PostgresStore {
    /// One attempt's commit inside `tx`: the ack (refused for a stale
    /// lease), the state writes, the effects' jobs.
    async fn commit_in(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        namespace: &Namespace,
        c: HandlerCommit,
        now: Timestamp,
    ) -> Result<(Acked, AckWake, Woken), Error> {
        let ack = Ack {
            token: c.token,
            outcome: AckOutcome::Complete { result: c.result },
        };
        let (mut out, wake) = self.ack_in(tx, namespace, vec![ack], now).await?;
        let acked = out
            .pop()
            .unwrap_or_else(|| Err(Error::internal("an ack answered nothing")))?;
        if let Some(object) = c.object.as_ref().filter(|_| !c.writes.is_empty()) {
            write_state(tx, namespace.as_str(), object, &c.writes, now).await?;
        }
        let woken = self
            .insert_owned(tx, OwnedRows::new(&c.effects, now)?, now)
            .await?;
        Ok((acked, wake, woken))
    }
}
