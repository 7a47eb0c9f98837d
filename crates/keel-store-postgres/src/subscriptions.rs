//! Subscriptions on PostgreSQL. Every change to one subscription (fetch,
//! commit, seek, hand-off) locks its row first, so they happen one at a
//! time across nodes; the claim logic is `keel_core`'s, as on the embedded
//! store. Hand-offs are also compare-and-set on the position, so a node
//! that read an old position writes nothing.

use std::collections::BTreeMap;

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use keel_core::subscription::{
    Claim, FetchPlan, Filter, Start, SubscriptionSpec, Target, cursor, cursor_last, plan_fetch,
};
use keel_core::{Error, Event, Namespace, Timestamp, TopicName};
use keel_store::{
    Fetched, OwnedJob, Subscription, SubscriptionStore, cursor_stale, has_target,
    subscription_not_found, topic_changed,
};
use tokio_postgres::Row;

use crate::owner::OwnedRows;
use crate::topics::event_from_row;
use crate::{PostgresStore, db};

/// Most events one fetch looks at past the position.
const SCAN: i64 = 2000;

#[async_trait]
impl SubscriptionStore for PostgresStore {
    async fn subscription_put(
        &self,
        namespace: &Namespace,
        name: &str,
        spec: &SubscriptionSpec,
        start: Start,
        now: Timestamp,
    ) -> Result<(Subscription, bool), Error> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let existing = locked(&tx, namespace, name).await?;
        let created = match existing {
            Some(old) if old.spec.topic != spec.topic => {
                return Err(topic_changed(name, &old.spec.topic));
            }
            Some(_) => {
                tx.execute(
                    include_str!("../queries/subscriptions/subscription_update_spec.sql"),
                    &[
                        &namespace.as_str(),
                        &name,
                        &encode(&spec.filter)?,
                        &spec.target.as_ref().map(encode).transpose()?,
                        &(spec.consumer_timeout_ms as i64),
                    ],
                )
                .await
                .map_err(db)?;
                false
            }
            None => {
                crate::namespaces::room_for_one(
                    &tx,
                    namespace,
                    "max_subscriptions",
                    include_str!("../queries/subscriptions/count.sql"),
                    |q| q.max_subscriptions,
                )
                .await?;
                let position = start_position(&tx, namespace, &spec.topic, start).await?;
                let inserted = tx
                    .execute(
                        include_str!("../queries/subscriptions/subscription_insert.sql"),
                        &[
                            &namespace.as_str(),
                            &name,
                            &self.next_id(now).to_string(),
                            &spec.topic.as_str(),
                            &encode(&spec.filter)?,
                            &spec.target.as_ref().map(encode).transpose()?,
                            &(spec.consumer_timeout_ms as i64),
                            &(position as i64),
                            &now.as_millis(),
                        ],
                    )
                    .await;
                inserted.map_err(db)?;
                true
            }
        };
        let stored = get(&tx, namespace, name).await?;
        tx.commit().await.map_err(db)?;
        Ok((stored, created))
    }

    async fn subscription_get(
        &self,
        namespace: &Namespace,
        name: &str,
    ) -> Result<Subscription, Error> {
        get(&self.client().await?, namespace, name).await
    }

    async fn subscriptions_list(
        &self,
        namespace: Option<&Namespace>,
        topic: Option<&TopicName>,
    ) -> Result<Vec<Subscription>, Error> {
        let client = self.client().await?;
        client
            .query(
                include_str!("../queries/subscriptions/subscriptions_list.sql"),
                &[
                    &namespace.map(Namespace::as_str),
                    &topic.map(TopicName::as_str),
                ],
            )
            .await
            .map_err(db)?
            .iter()
            .map(subscription_from_row)
            .collect()
    }

    async fn subscription_delete(&self, namespace: &Namespace, name: &str) -> Result<(), Error> {
        let gone: i64 = self
            .client()
            .await?
            .query_one(
                include_str!("../queries/subscriptions/subscription_delete.sql"),
                &[&namespace.as_str(), &name],
            )
            .await
            .map_err(db)?
            .get(0);
        if gone == 0 {
            return Err(subscription_not_found(name));
        }
        Ok(())
    }

    async fn subscription_pause(
        &self,
        namespace: &Namespace,
        name: &str,
        paused: bool,
    ) -> Result<Subscription, Error> {
        let client = self.client().await?;
        client
            .execute(
                include_str!("../queries/subscriptions/subscription_pause.sql"),
                &[&namespace.as_str(), &name, &paused],
            )
            .await
            .map_err(db)?;
        get(&client, namespace, name).await
    }

    async fn subscription_seek(
        &self,
        namespace: &Namespace,
        name: &str,
        start: Start,
    ) -> Result<Subscription, Error> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let sub = locked(&tx, namespace, name)
            .await?
            .ok_or_else(|| subscription_not_found(name))?;
        let position = start_position(&tx, namespace, &sub.spec.topic, start).await?;
        move_to(&tx, &sub, position, 0, 0).await?;
        tx.execute(
            include_str!("../queries/subscriptions/claims_drop.sql"),
            &[&namespace.as_str(), &name],
        )
        .await
        .map_err(db)?;
        let stored = get(&tx, namespace, name).await?;
        tx.commit().await.map_err(db)?;
        Ok(stored)
    }

    async fn subscription_handoff(
        &self,
        namespace: &Namespace,
        name: &str,
        from: u64,
        to: u64,
        delivered: u64,
        skipped: u64,
        jobs: Vec<OwnedJob>,
        now: Timestamp,
    ) -> Result<bool, Error> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let moved = tx
            .execute(
                include_str!("../queries/subscriptions/subscription_handoff.sql"),
                &[
                    &namespace.as_str(),
                    &name,
                    &(from as i64),
                    &(to as i64),
                    &(delivered as i64),
                    &(skipped as i64),
                ],
            )
            .await
            .map_err(db)?;
        if moved == 0 {
            return Ok(false);
        }
        let woken = self
            .insert_owned(&tx, OwnedRows::new(&jobs, now)?, now)
            .await?;
        tx.commit().await.map_err(db)?;
        self.wake(woken, now);
        Ok(true)
    }

    async fn subscription_fetch(
        &self,
        namespace: &Namespace,
        name: &str,
        consumer: &str,
        max: u32,
        now: Timestamp,
    ) -> Result<Fetched, Error> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let sub = pulled(&tx, namespace, name).await?;
        tx.execute(
            include_str!("../queries/subscriptions/claims_expire.sql"),
            &[&namespace.as_str(), &name, &now.as_millis()],
        )
        .await
        .map_err(db)?;
        let (events, plan) = settle(&tx, &sub, max as usize).await?;
        let taken: Vec<Event> = plan.take.iter().map(|&i| events[i].clone()).collect();
        let token = match taken.last() {
            Some(last) => {
                let token = cursor(fastrand::u64(..), last.seq);
                let seqs: Vec<i64> = taken.iter().map(|e| e.seq as i64).collect();
                let keys: Vec<Option<&str>> =
                    taken.iter().map(|e| e.event.key.as_deref()).collect();
                let deadline = now.plus_ms(sub.spec.consumer_timeout_ms).as_millis();
                tx.execute(
                    include_str!("../queries/subscriptions/claims_insert.sql"),
                    &[
                        &namespace.as_str(),
                        &name,
                        &seqs,
                        &keys,
                        &consumer,
                        &token,
                        &deadline,
                    ],
                )
                .await
                .map_err(db)?;
                Some(token)
            }
            None => None,
        };
        tx.commit().await.map_err(db)?;
        Ok(Fetched {
            events: taken,
            cursor: token,
        })
    }

    async fn subscription_commit(
        &self,
        namespace: &Namespace,
        name: &str,
        consumer: &str,
        cursor: &str,
        _now: Timestamp,
    ) -> Result<u64, Error> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let sub = pulled(&tx, namespace, name).await?;
        let args: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
            [&namespace.as_str(), &name, &cursor, &consumer];
        let committed = tx
            .execute(
                include_str!("../queries/subscriptions/claims_commit.sql"),
                &args,
            )
            .await
            .map_err(db)?;
        if committed == 0 {
            let held: i64 = tx
                .query_one(
                    include_str!("../queries/subscriptions/claims_held.sql"),
                    &args,
                )
                .await
                .map_err(db)?
                .get(0);
            let passed = cursor_last(cursor).is_some_and(|last| last <= sub.position);
            return if held > 0 || passed {
                Ok(0)
            } else {
                Err(cursor_stale())
            };
        }
        move_to(&tx, &sub, sub.position, committed, 0).await?;
        settle(&tx, &sub, 0).await?;
        tx.commit().await.map_err(db)?;
        Ok(committed)
    }
}

fn subscription_from_row(r: &Row) -> Result<Subscription, Error> {
    let corrupt =
        |what: &str, e: String| Error::internal(format!("corrupt subscription {what}: {e}"));
    let namespace: &str = r.get(0);
    let topic: &str = r.get(3);
    let filter: &str = r.get(4);
    let target: Option<&str> = r.get(5);
    Ok(Subscription {
        namespace: Namespace::new(namespace).map_err(|e| corrupt("namespace", e.message))?,
        name: r.get(1),
        id: r.get(2),
        spec: SubscriptionSpec {
            topic: TopicName::new(topic).map_err(|e| corrupt("topic", e.message))?,
            filter: serde_json::from_str::<Filter>(filter)
                .map_err(|e| corrupt("filter", e.to_string()))?,
            target: target
                .map(serde_json::from_str::<Target>)
                .transpose()
                .map_err(|e| corrupt("target", e.to_string()))?,
            consumer_timeout_ms: r.get::<_, i64>(6) as u64,
        },
        paused: r.get(7),
        position: r.get::<_, i64>(8) as u64,
        delivered: r.get::<_, i64>(9) as u64,
        skipped: r.get::<_, i64>(10) as u64,
        created_at: Timestamp::from_millis(r.get(11)),
        head_seq: r.get::<_, i64>(12) as u64,
    })
}

async fn get(
    client: &impl GenericClient,
    namespace: &Namespace,
    name: &str,
) -> Result<Subscription, Error> {
    let row = client
        .query_opt(
            include_str!("../queries/subscriptions/subscription_get.sql"),
            &[&namespace.as_str(), &name],
        )
        .await
        .map_err(db)?;
    row.as_ref()
        .map(subscription_from_row)
        .unwrap_or_else(|| Err(subscription_not_found(name)))
}

/// The subscription, its row locked to the end of the transaction.
async fn locked(
    client: &impl GenericClient,
    namespace: &Namespace,
    name: &str,
) -> Result<Option<Subscription>, Error> {
    let row = client
        .query_opt(
            include_str!("../queries/subscriptions/subscription_lock.sql"),
            &[&namespace.as_str(), &name],
        )
        .await
        .map_err(db)?;
    row.as_ref().map(subscription_from_row).transpose()
}

/// A subscription that consumers pull from, locked: 404 or 409 `has_target` otherwise.
async fn pulled(
    client: &impl GenericClient,
    namespace: &Namespace,
    name: &str,
) -> Result<Subscription, Error> {
    match locked(client, namespace, name).await? {
        None => Err(subscription_not_found(name)),
        Some(sub) if sub.spec.target.is_some() => Err(has_target(name)),
        Some(sub) => Ok(sub),
    }
}

fn encode<T: serde::Serialize>(value: &T) -> Result<String, Error> {
    keel_store::codec::encode("subscription", value)
}

async fn first_seq(
    client: &impl GenericClient,
    query: &str,
    namespace: &Namespace,
    topic: &TopicName,
    bound: i64,
) -> Result<Option<u64>, Error> {
    let seq: Option<i64> = client
        .query_one(query, &[&namespace.as_str(), &topic.as_str(), &bound])
        .await
        .map_err(db)?
        .get(0);
    Ok(seq.map(|s| s as u64))
}

/// The position that makes `start` the next event delivered.
async fn start_position(
    client: &impl GenericClient,
    namespace: &Namespace,
    topic: &TopicName,
    start: Start,
) -> Result<u64, Error> {
    let head: Option<i64> = client
        .query_opt(
            "SELECT head_seq FROM keel_topics WHERE namespace = $1 AND name = $2",
            &[&namespace.as_str(), &topic.as_str()],
        )
        .await
        .map_err(db)?
        .map(|r| r.get(0));
    let first_from = match start.from_time() {
        Some(at) => {
            first_seq(
                client,
                include_str!("../queries/subscriptions/first_from.sql"),
                namespace,
                topic,
                at.as_millis(),
            )
            .await?
        }
        None => None,
    };
    Ok(start.position(head.unwrap_or(0) as u64, first_from))
}

async fn move_to(
    client: &impl GenericClient,
    sub: &Subscription,
    position: u64,
    delivered: u64,
    skipped: u64,
) -> Result<(), Error> {
    client
        .execute(
            include_str!("../queries/subscriptions/subscription_move.sql"),
            &[
                &sub.namespace.as_str(),
                &sub.name,
                &(position as i64),
                &(delivered as i64),
                &(skipped as i64),
            ],
        )
        .await
        .map_err(db)?;
    Ok(())
}

/// Brings a pulled subscription's position up to date (past events
/// retention removed, counted as skipped, and past committed or unwanted
/// ones) and plans a fetch of up to `max` events from there.
async fn settle(
    client: &impl GenericClient,
    sub: &Subscription,
    max: usize,
) -> Result<(Vec<Event>, FetchPlan), Error> {
    let (namespace, name, topic) = (&sub.namespace, sub.name.as_str(), &sub.spec.topic);
    let mut position = sub.position;
    let next = first_seq(
        client,
        include_str!("../queries/subscriptions/first_after.sql"),
        namespace,
        topic,
        position as i64,
    )
    .await?
    .unwrap_or(sub.head_seq + 1);
    let mut skipped = 0;
    if next > position + 1 {
        skipped = next - position - 1;
        position = next - 1;
    }
    let events = client
        .query(
            include_str!("../queries/subscriptions/events_after.sql"),
            &[
                &namespace.as_str(),
                &topic.as_str(),
                &(position as i64),
                &SCAN,
            ],
        )
        .await
        .map_err(db)?
        .iter()
        .map(event_from_row)
        .collect::<Result<Vec<_>, Error>>()?;
    let claims: BTreeMap<u64, Claim> = client
        .query(
            include_str!("../queries/subscriptions/claims_list.sql"),
            &[&namespace.as_str(), &name],
        )
        .await
        .map_err(db)?
        .iter()
        .map(|r| {
            (
                r.get::<_, i64>(0) as u64,
                Claim {
                    key: r.get(1),
                    done: r.get(2),
                },
            )
        })
        .collect();
    let plan = plan_fetch(position, &events, &claims, &sub.spec.filter, max);
    if plan.position != sub.position || skipped > 0 {
        move_to(client, sub, plan.position, 0, skipped).await?;
        client
            .execute(
                include_str!("../queries/subscriptions/claims_passed.sql"),
                &[&namespace.as_str(), &name, &(plan.position as i64)],
            )
            .await
            .map_err(db)?;
    }
    Ok((events, plan))
}
