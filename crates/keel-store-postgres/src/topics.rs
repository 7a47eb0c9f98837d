//! Topics and events on PostgreSQL.
//!
//! A sequence would not do for `seq`: PostgreSQL hands sequence values out
//! at insert, not at commit, so seq 41 could become visible after 42 and a
//! reader that moved past 42 would miss it. Instead a publisher locks its
//! topic's row, takes the next seqs from `head_seq`, and holds the lock until
//! it commits: publishers of one topic commit in seq order, and a reader that
//! sees seq N sees every event below it. Publishers of different topics do
//! not wait for each other. The lock makes one topic's publishes one at a
//! time, so each node gathers the publishes that arrive meanwhile into one
//! transaction ([`crate::publisher`]).

use std::collections::BTreeMap;

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use keel_core::{Error, Event, Namespace, NewEvent, Timestamp, TopicName, TopicPolicy};
use keel_store::{EventQuery, Published, Topic, TopicStore, event_not_found, topic_not_found};
use tokio_postgres::Row;

use crate::{PostgresStore, db};

#[async_trait]
impl TopicStore for PostgresStore {
    async fn topic_put(
        &self,
        namespace: &Namespace,
        topic: &TopicName,
        policy: &TopicPolicy,
        now: Timestamp,
    ) -> Result<(Topic, bool), Error> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let created = create(&tx, namespace, topic, policy, now).await?;
        if !created {
            tx.execute(
                include_str!("../queries/topics/topic_set_policy.sql"),
                &[
                    &namespace.as_str(),
                    &topic.as_str(),
                    &(policy.retention_ms as i64),
                    &(policy.dedup_window_ms as i64),
                    &(policy.max_event_bytes as i64),
                    &slo_text(policy)?,
                ],
            )
            .await
            .map_err(db)?;
        }
        let stored = get(&tx, namespace, topic).await?;
        tx.commit().await.map_err(db)?;
        Ok((stored, created))
    }

    async fn topic_get(&self, namespace: &Namespace, topic: &TopicName) -> Result<Topic, Error> {
        get(&self.client().await?, namespace, topic).await
    }

    async fn topics_list(&self, namespace: &Namespace) -> Result<Vec<Topic>, Error> {
        let client = self.client().await?;
        client
            .query(
                include_str!("../queries/topics/topics_list.sql"),
                &[&namespace.as_str()],
            )
            .await
            .map_err(db)?
            .iter()
            .map(topic_from_row)
            .collect()
    }

    async fn topic_delete(&self, namespace: &Namespace, topic: &TopicName) -> Result<(), Error> {
        let client = self.client().await?;
        let gone: i64 = client
            .query_one(
                include_str!("../queries/topics/topic_delete.sql"),
                &[&namespace.as_str(), &topic.as_str()],
            )
            .await
            .map_err(db)?
            .get(0);
        if gone == 0 {
            return Err(topic_not_found(topic));
        }
        Ok(())
    }

    #[tracing::instrument(level = "debug", name = "store.commit", skip_all, fields(db.system.name = "postgresql", op = "events_publish"))]
    async fn events_publish(
        &self,
        namespace: &Namespace,
        topic: &TopicName,
        events: Vec<NewEvent>,
        now: Timestamp,
    ) -> Result<Vec<Published>, Error> {
        let answers = self
            .publishers
            .publish(&self.pool, namespace, topic, events, now)
            .await?;
        if answers.iter().any(|p| !p.duplicate) {
            self.appended(namespace, topic);
        }
        Ok(answers)
    }

    async fn events_read(
        &self,
        namespace: &Namespace,
        topic: &TopicName,
        query: &EventQuery,
    ) -> Result<Vec<Event>, Error> {
        let client = self.client().await?;
        get(&client, namespace, topic).await?;
        client
            .query(
                include_str!("../queries/topics/events_read.sql"),
                &[
                    &namespace.as_str(),
                    &topic.as_str(),
                    &(query.after as i64),
                    &query.key,
                    &query.kind,
                    &i64::from(query.limit),
                ],
            )
            .await
            .map_err(db)?
            .iter()
            .map(event_from_row)
            .collect()
    }

    async fn event_get(
        &self,
        namespace: &Namespace,
        topic: &TopicName,
        id: &str,
    ) -> Result<Event, Error> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                include_str!("../queries/topics/event_by_id.sql"),
                &[&namespace.as_str(), &topic.as_str(), &id],
            )
            .await
            .map_err(db)?;
        row.as_ref()
            .map(event_from_row)
            .unwrap_or_else(|| Err(event_not_found(topic, id)))
    }

    async fn events_prune(&self, now: Timestamp, limit: u32) -> Result<u64, Error> {
        let client = self.client().await?;
        let removed: i64 = client
            .query_one(
                include_str!("../queries/topics/events_prune.sql"),
                &[&now.as_millis(), &i64::from(limit)],
            )
            .await
            .map_err(db)?
            .get(0);
        Ok(removed as u64)
    }
}

/// Creates the topic unless it exists; true when it was made.
pub(crate) async fn create(
    client: &impl GenericClient,
    namespace: &Namespace,
    topic: &TopicName,
    policy: &TopicPolicy,
    now: Timestamp,
) -> Result<bool, Error> {
    let made = client
        .execute(
            include_str!("../queries/topics/topic_create.sql"),
            &[
                &namespace.as_str(),
                &topic.as_str(),
                &(policy.retention_ms as i64),
                &(policy.dedup_window_ms as i64),
                &(policy.max_event_bytes as i64),
                &now.as_millis(),
                &slo_text(policy)?,
            ],
        )
        .await
        .map_err(db)?;
    Ok(made == 1)
}

async fn get(
    client: &impl GenericClient,
    namespace: &Namespace,
    topic: &TopicName,
) -> Result<Topic, Error> {
    let row = client
        .query_opt(
            include_str!("../queries/topics/topic_get.sql"),
            &[&namespace.as_str(), &topic.as_str()],
        )
        .await
        .map_err(db)?;
    row.as_ref()
        .map(topic_from_row)
        .unwrap_or_else(|| Err(topic_not_found(topic)))
}

/// A topic's objectives as stored: JSON text, or NULL.
fn slo_text(policy: &TopicPolicy) -> Result<Option<String>, Error> {
    policy
        .slo
        .map(|slo| keel_store::codec::encode("topic objectives", &slo))
        .transpose()
}

fn topic_from_row(r: &Row) -> Result<Topic, Error> {
    let name: &str = r.get(0);
    let slo = r
        .get::<_, Option<&str>>(7)
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| Error::internal(format!("a stored topic's slo: {e}")))?;
    Ok(Topic {
        name: TopicName::new(name)
            .map_err(|e| Error::internal(format!("corrupt topic name: {}", e.message)))?,
        policy: TopicPolicy {
            retention_ms: r.get::<_, i64>(1) as u64,
            dedup_window_ms: r.get::<_, i64>(2) as u64,
            max_event_bytes: r.get::<_, i64>(3) as u64,
            slo,
        },
        head_seq: r.get::<_, i64>(4) as u64,
        events: r.get::<_, i64>(5) as u64,
        created_at: Timestamp::from_millis(r.get(6)),
    })
}

pub(crate) fn event_from_row(r: &Row) -> Result<Event, Error> {
    let headers: Option<&str> = r.get(7);
    let headers: BTreeMap<String, String> = match headers {
        Some(text) => serde_json::from_str(text)
            .map_err(|e| Error::internal(format!("corrupt event headers {text:?}: {e}")))?,
        None => BTreeMap::new(),
    };
    Ok(Event {
        seq: r.get::<_, i64>(0) as u64,
        event: NewEvent {
            id: r.get(1),
            generated_id: false,
            kind: r.get(2),
            source: r.get(3),
            key: r.get(4),
            time: Timestamp::from_millis(r.get(5)),
            data: r.get(6),
            headers,
        },
        published_at: Timestamp::from_millis(r.get(8)),
    })
}

/// A batch of new events as the columns `insert_events.sql` unnests.
#[derive(Default)]
pub(crate) struct NewColumns {
    pub(crate) seq: Vec<i64>,
    pub(crate) id: Vec<String>,
    pub(crate) kind: Vec<String>,
    pub(crate) source: Vec<String>,
    pub(crate) key: Vec<Option<String>>,
    pub(crate) time: Vec<i64>,
    pub(crate) data: Vec<String>,
    pub(crate) headers: Vec<Option<String>>,
}

impl NewColumns {
    pub(crate) fn push(&mut self, seq: i64, event: NewEvent) -> Result<(), Error> {
        self.seq.push(seq);
        self.id.push(event.id);
        self.kind.push(event.kind);
        self.source.push(event.source);
        self.key.push(event.key);
        self.time.push(event.time.as_millis());
        self.data.push(event.data);
        let headers = (!event.headers.is_empty())
            .then(|| keel_store::codec::encode("event headers", &event.headers))
            .transpose()?;
        self.headers.push(headers);
        Ok(())
    }
}
