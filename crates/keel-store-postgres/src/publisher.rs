//! Group commit for publishes. A topic's publishes take its row lock to
//! their commit (seqs must become visible in order), so on one topic they
//! go one transaction at a time; done one request each, a topic managed a
//! commit's worth of events per round trip (127 events/s with 50 publishers,
//! measured). Each node therefore runs one task per topic that takes every
//! publish waiting for it and writes them in one transaction: each request
//! stays atomic and deduplicated on its own (a bad event refuses its own
//! request only), and all of them pay for one lock, one round of statements
//! and one commit.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use deadpool_postgres::Pool;
use keel_core::{Error, Namespace, NewEvent, Timestamp, TopicName, TopicPolicy};
use keel_store::Published;
use tokio::sync::{mpsc, oneshot};

use crate::db;
use crate::topics::{NewColumns, create};

/// Most events one transaction takes.
const MAX_GROUP_EVENTS: usize = 5000;

type Answer = Result<Vec<Published>, Error>;

struct Request {
    events: Vec<NewEvent>,
    now: Timestamp,
    reply: oneshot::Sender<Answer>,
}

type TopicKey = (Namespace, TopicName);

#[derive(Default)]
pub(crate) struct Publishers {
    topics: Mutex<HashMap<TopicKey, mpsc::UnboundedSender<Request>>>,
}

impl Publishers {
    pub(crate) async fn publish(
        &self,
        pool: &Pool,
        namespace: &Namespace,
        topic: &TopicName,
        events: Vec<NewEvent>,
        now: Timestamp,
    ) -> Answer {
        let (reply, answer) = oneshot::channel();
        let request = Request { events, now, reply };
        let sent = {
            let mut topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
            let key = (namespace.clone(), topic.clone());
            let sender = topics.entry(key.clone()).or_insert_with(|| {
                let (sender, requests) = mpsc::unbounded_channel();
                tokio::spawn(run(pool.clone(), key, requests));
                sender
            });
            sender.send(request)
        };
        if sent.is_err() {
            return Err(Error::internal("the topic's publisher stopped"));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(Error::internal("the topic's publisher stopped")))
    }

    /// Ends every topic's task once what it holds is answered.
    pub(crate) fn stop(&self) {
        self.topics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

async fn run(
    pool: Pool,
    (namespace, topic): TopicKey,
    mut requests: mpsc::UnboundedReceiver<Request>,
) {
    while let Some(first) = requests.recv().await {
        let mut events = first.events.len();
        let mut group = vec![first];
        while events < MAX_GROUP_EVENTS {
            match requests.try_recv() {
                Ok(more) => {
                    events += more.events.len();
                    group.push(more);
                }
                Err(_) => break,
            }
        }
        let (inputs, replies): (Vec<_>, Vec<_>) = group
            .into_iter()
            .map(|r| ((r.events, r.now), r.reply))
            .unzip();
        match write(&pool, &namespace, &topic, inputs).await {
            Ok(answers) => {
                for (reply, answer) in replies.into_iter().zip(answers) {
                    let _ = reply.send(answer);
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// One transaction for a group of requests: each answered on its own.
async fn write(
    pool: &Pool,
    namespace: &Namespace,
    topic: &TopicName,
    requests: Vec<(Vec<NewEvent>, Timestamp)>,
) -> Result<Vec<Answer>, Error> {
    let now = requests
        .iter()
        .map(|(_, now)| *now)
        .max()
        .unwrap_or(Timestamp::from_millis(0));
    let mut client = crate::checkout(pool).await?;
    let tx = client.transaction().await.map_err(db)?;
    create(&tx, namespace, topic, &TopicPolicy::default(), now).await?;
    let row = tx
        .query_one(
            include_str!("../queries/topics/topic_lock.sql"),
            &[&namespace.as_str(), &topic.as_str()],
        )
        .await
        .map_err(db)?;
    let policy = TopicPolicy {
        retention_ms: row.get::<_, i64>(0) as u64,
        dedup_window_ms: row.get::<_, i64>(1) as u64,
        max_event_bytes: row.get::<_, i64>(2) as u64,
        ..TopicPolicy::default()
    };
    let mut head: i64 = row.get(3);
    let checked: Vec<Result<Vec<NewEvent>, Error>> = requests
        .into_iter()
        .map(|(events, _)| {
            events
                .iter()
                .try_for_each(|e| e.check(&policy))
                .map(|()| events)
        })
        .collect();
    let ids: Vec<&str> = checked
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .flatten()
        .filter(|e| !e.generated_id)
        .map(|e| e.id.as_str())
        .collect();
    let since = now
        .as_millis()
        .saturating_sub(policy.dedup_window_ms as i64);
    let mut seen: HashMap<String, i64> = tx
        .query(
            include_str!("../queries/topics/earlier_ids.sql"),
            &[&namespace.as_str(), &topic.as_str(), &ids, &since],
        )
        .await
        .map_err(db)?
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
        .collect();
    let mut new = NewColumns::default();
    let mut answers = Vec::with_capacity(checked.len());
    for request in checked {
        let Ok(events) = request else {
            answers.push(request.map(|_| Vec::new()));
            continue;
        };
        let mut published = Vec::with_capacity(events.len());
        for event in events {
            if let Some(&seq) = seen.get(&event.id) {
                published.push(Published {
                    id: event.id,
                    seq: seq as u64,
                    duplicate: true,
                });
                continue;
            }
            head += 1;
            if !event.generated_id {
                seen.insert(event.id.clone(), head);
            }
            published.push(Published {
                id: event.id.clone(),
                seq: head as u64,
                duplicate: false,
            });
            new.push(head, event)?;
        }
        answers.push(Ok(published));
    }
    if !new.seq.is_empty() {
        tx.execute(
            include_str!("../queries/topics/insert_events.sql"),
            &[
                &namespace.as_str(),
                &topic.as_str(),
                &new.seq,
                &new.id,
                &new.kind,
                &new.source,
                &new.key,
                &new.time,
                &new.data,
                &new.headers,
                &now.as_millis(),
            ],
        )
        .await
        .map_err(db)?;
        tx.execute(
            include_str!("../queries/topics/topic_advance.sql"),
            &[
                &namespace.as_str(),
                &topic.as_str(),
                &head,
                &(new.seq.len() as i64),
            ],
        )
        .await
        .map_err(db)?;
    }
    tx.commit().await.map_err(db)?;
    Ok(answers)
}
