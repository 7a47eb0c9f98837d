//! Subscriptions on the embedded store. Every change runs on the writer
//! thread, which orders them: a fetch, a commit and a hand-off of one
//! subscription never interleave. The claim logic is `keel_core`'s.

use std::collections::BTreeMap;

use async_trait::async_trait;
use keel_core::subscription::{
    Claim, FetchPlan, Filter, Start, SubscriptionSpec, Target, cursor_last, plan_fetch,
};
use keel_core::{Error, Event, Namespace, Timestamp, TopicName};
use keel_store::{
    Fetched, OwnedJob, Subscription, SubscriptionStore, cursor_stale, has_target,
    subscription_not_found, topic_changed,
};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::SqliteStore;
use crate::rows::{corrupt, from_json};
use crate::topics::{EVENT_COLUMNS, event_from_row, topic_row, unsigned};
use crate::writer::{Applied, Writer};

/// Most events one fetch looks at past the position.
const SCAN: u32 = 2000;

#[async_trait]
impl SubscriptionStore for SqliteStore {
    async fn subscription_put(
        &self,
        namespace: &Namespace,
        name: &str,
        spec: &SubscriptionSpec,
        start: Start,
        now: Timestamp,
    ) -> Result<(Subscription, bool), Error> {
        let (namespace, name, spec) = (namespace.clone(), name.to_owned(), spec.clone());
        self.write(move |w: &mut Writer| {
            let conn = &w.conn;
            let existing = subscription_row(conn, &namespace, &name)?;
            let created = match existing {
                Some(old) if old.spec.topic != spec.topic => {
                    return Ok(Err(topic_changed(&name, &old.spec.topic)));
                }
                Some(_) => {
                    conn.prepare_cached(
                        "UPDATE subscriptions SET filter = ?3, target = ?4, consumer_timeout_ms = ?5 \
                         WHERE namespace = ?1 AND name = ?2",
                    )?
                    .execute(params![
                        namespace.as_str(),
                        name,
                        encode(&spec.filter)?,
                        spec.target.as_ref().map(encode).transpose()?,
                        spec.consumer_timeout_ms as i64
                    ])?;
                    false
                }
                None => {
                    let room = crate::namespaces::room_for_one(
                        conn,
                        &namespace,
                        "max_subscriptions",
                        "subscriptions",
                        |q| q.max_subscriptions,
                    )?;
                    if let Err(e) = room {
                        return Ok(Err(e));
                    }
                    let position = start_position(conn, &namespace, &spec.topic, start)?;
                    conn.prepare_cached(
                        "INSERT INTO subscriptions (namespace, name, id, topic, filter, target, \
                         consumer_timeout_ms, paused, position, delivered, skipped, created_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, ?8, 0, 0, ?9)",
                    )?
                    .execute(params![
                        namespace.as_str(),
                        name,
                        w.ids.next(now).to_string(),
                        spec.topic.as_str(),
                        encode(&spec.filter)?,
                        spec.target.as_ref().map(encode).transpose()?,
                        spec.consumer_timeout_ms as i64,
                        position as i64,
                        now.as_millis()
                    ])?;
                    true
                }
            };
            let stored = subscription_row(conn, &namespace, &name)?;
            Ok(stored
                .map(|s| (s, created))
                .ok_or_else(|| subscription_not_found(&name)))
        })
        .await
    }

    async fn subscription_get(
        &self,
        namespace: &Namespace,
        name: &str,
    ) -> Result<Subscription, Error> {
        let (namespace, name) = (namespace.clone(), name.to_owned());
        self.read(move |conn| {
            Ok(subscription_row(conn, &namespace, &name)?
                .ok_or_else(|| subscription_not_found(&name)))
        })
        .await
    }

    async fn subscriptions_list(
        &self,
        namespace: Option<&Namespace>,
        topic: Option<&TopicName>,
    ) -> Result<Vec<Subscription>, Error> {
        let (namespace, topic) = (namespace.cloned(), topic.cloned());
        self.read(move |conn| {
            let all = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM subscriptions s ORDER BY s.namespace, s.name"
                ))?
                .query_map([], subscription_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Ok(all
                .into_iter()
                .filter(|s| namespace.as_ref().is_none_or(|ns| &s.namespace == ns))
                .filter(|s| topic.as_ref().is_none_or(|t| &s.spec.topic == t))
                .collect()))
        })
        .await
    }

    async fn subscription_delete(&self, namespace: &Namespace, name: &str) -> Result<(), Error> {
        let (namespace, name) = (namespace.clone(), name.to_owned());
        self.write(move |w: &mut Writer| {
            let gone = w
                .conn
                .prepare_cached("DELETE FROM subscriptions WHERE namespace = ?1 AND name = ?2")?
                .execute(params![namespace.as_str(), name])?;
            if gone == 0 {
                return Ok(Err(subscription_not_found(&name)));
            }
            drop_claims(&w.conn, &namespace, &name)?;
            Ok(Ok(()))
        })
        .await
    }

    async fn subscription_pause(
        &self,
        namespace: &Namespace,
        name: &str,
        paused: bool,
    ) -> Result<Subscription, Error> {
        let (namespace, name) = (namespace.clone(), name.to_owned());
        self.write(move |w: &mut Writer| {
            w.conn
                .prepare_cached(
                    "UPDATE subscriptions SET paused = ?3 WHERE namespace = ?1 AND name = ?2",
                )?
                .execute(params![namespace.as_str(), name, paused])?;
            Ok(subscription_row(&w.conn, &namespace, &name)?
                .ok_or_else(|| subscription_not_found(&name)))
        })
        .await
    }

    async fn subscription_seek(
        &self,
        namespace: &Namespace,
        name: &str,
        start: Start,
    ) -> Result<Subscription, Error> {
        let (namespace, name) = (namespace.clone(), name.to_owned());
        self.write(move |w: &mut Writer| {
            let conn = &w.conn;
            let Some(sub) = subscription_row(conn, &namespace, &name)? else {
                return Ok(Err(subscription_not_found(&name)));
            };
            let position = start_position(conn, &namespace, &sub.spec.topic, start)?;
            set_position(conn, &namespace, &name, position, 0, 0)?;
            drop_claims(conn, &namespace, &name)?;
            Ok(subscription_row(conn, &namespace, &name)?
                .ok_or_else(|| subscription_not_found(&name)))
        })
        .await
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
        let (namespace, name) = (namespace.clone(), name.to_owned());
        self.write(move |w: &mut Writer| {
            w.write_owned(jobs, now, |conn| {
                let moved = conn
                    .prepare_cached(
                        "UPDATE subscriptions SET position = ?4, delivered = delivered + ?5, \
                         skipped = skipped + ?6 WHERE namespace = ?1 AND name = ?2 AND position = ?3",
                    )?
                    .execute(params![
                        namespace.as_str(),
                        name,
                        from as i64,
                        to as i64,
                        delivered as i64,
                        skipped as i64
                    ])?;
                Ok(Ok((moved == 1, moved == 1)))
            })
        })
        .await
    }

    async fn subscription_fetch(
        &self,
        namespace: &Namespace,
        name: &str,
        consumer: &str,
        max: u32,
        now: Timestamp,
    ) -> Result<Fetched, Error> {
        let (namespace, name, consumer) = (namespace.clone(), name.to_owned(), consumer.to_owned());
        self.write(move |w: &mut Writer| {
            let conn = &w.conn;
            let sub = match pulled(conn, &namespace, &name)? {
                Ok(sub) => sub,
                Err(e) => return Ok(Err(e)),
            };
            conn.prepare_cached(
                "DELETE FROM claims WHERE namespace = ?1 AND subscription = ?2 AND done = 0 \
                 AND deadline <= ?3",
            )?
            .execute(params![namespace.as_str(), name, now.as_millis()])?;
            let (events, plan) = settle(conn, &sub, max as usize)?;
            let mut taken = Vec::with_capacity(plan.take.len());
            let mut cursor = None;
            if let Some(last) = plan.take.last().map(|&i| events[i].seq) {
                let token = keel_core::subscription::cursor(fastrand::u64(..), last);
                let deadline = now.plus_ms(sub.spec.consumer_timeout_ms).as_millis();
                let mut insert = conn.prepare_cached(
                    "INSERT INTO claims (namespace, subscription, seq, key, consumer, cursor, deadline, done) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0)",
                )?;
                for &i in &plan.take {
                    let event = &events[i];
                    insert.execute(params![
                        namespace.as_str(),
                        name,
                        event.seq as i64,
                        event.event.key,
                        consumer,
                        token,
                        deadline
                    ])?;
                    taken.push(event.clone());
                }
                cursor = Some(token);
            }
            Ok(Ok(Fetched {
                events: taken,
                cursor,
            }))
        })
        .await
    }

    async fn subscription_commit(
        &self,
        namespace: &Namespace,
        name: &str,
        consumer: &str,
        cursor: &str,
        _now: Timestamp,
    ) -> Result<u64, Error> {
        let (namespace, name, consumer, cursor) = (
            namespace.clone(),
            name.to_owned(),
            consumer.to_owned(),
            cursor.to_owned(),
        );
        self.write(move |w: &mut Writer| {
            let conn = &w.conn;
            let sub = match pulled(conn, &namespace, &name)? {
                Ok(sub) => sub,
                Err(e) => return Ok(Err(e)),
            };
            let committed = conn
                .prepare_cached(
                    "UPDATE claims SET done = 1 WHERE namespace = ?1 AND subscription = ?2 \
                     AND cursor = ?3 AND consumer = ?4 AND done = 0",
                )?
                .execute(params![namespace.as_str(), name, cursor, consumer])?;
            if committed == 0 {
                let held: i64 = conn
                    .prepare_cached(
                        "SELECT count(*) FROM claims WHERE namespace = ?1 AND subscription = ?2 \
                         AND cursor = ?3 AND consumer = ?4",
                    )?
                    .query_row(params![namespace.as_str(), name, cursor, consumer], |r| {
                        r.get(0)
                    })?;
                let passed = cursor_last(&cursor).is_some_and(|last| last <= sub.position);
                return Ok(if held > 0 || passed {
                    Ok(0)
                } else {
                    Err(cursor_stale())
                });
            }
            conn.prepare_cached(
                "UPDATE subscriptions SET delivered = delivered + ?3 WHERE namespace = ?1 AND name = ?2",
            )?
            .execute(params![namespace.as_str(), name, committed as i64])?;
            settle(conn, &sub, 0)?;
            Ok(Ok(committed as u64))
        })
        .await
    }
}

const COLUMNS: &str = "s.namespace, s.name, s.id, s.topic, s.filter, s.target, \
     s.consumer_timeout_ms, s.paused, s.position, s.delivered, s.skipped, s.created_at, \
     coalesce((SELECT t.head_seq FROM topics t WHERE t.namespace = s.namespace AND t.name = s.topic), 0)";

fn subscription_from_row(r: &Row<'_>) -> rusqlite::Result<Subscription> {
    let namespace: String = r.get(0)?;
    let topic: String = r.get(3)?;
    let filter: String = r.get(4)?;
    let target: Option<String> = r.get(5)?;
    Ok(Subscription {
        namespace: Namespace::new(&namespace).map_err(|e| corrupt(e.message))?,
        name: r.get(1)?,
        id: r.get(2)?,
        spec: SubscriptionSpec {
            topic: TopicName::new(&topic).map_err(|e| corrupt(e.message))?,
            filter: from_json::<Filter>(&filter)?,
            target: target.map(|t| from_json::<Target>(&t)).transpose()?,
            consumer_timeout_ms: unsigned(r, 6)?,
        },
        paused: r.get(7)?,
        position: unsigned(r, 8)?,
        delivered: unsigned(r, 9)?,
        skipped: unsigned(r, 10)?,
        created_at: Timestamp::from_millis(r.get(11)?),
        head_seq: unsigned(r, 12)?,
    })
}

fn subscription_row(
    conn: &Connection,
    namespace: &Namespace,
    name: &str,
) -> rusqlite::Result<Option<Subscription>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM subscriptions s WHERE s.namespace = ?1 AND s.name = ?2"
    ))?
    .query_row(params![namespace.as_str(), name], subscription_from_row)
    .optional()
}

/// A subscription that consumers pull from: 404 or 409 `has_target` otherwise.
fn pulled(
    conn: &Connection,
    namespace: &Namespace,
    name: &str,
) -> rusqlite::Result<Result<Subscription, Error>> {
    Ok(match subscription_row(conn, namespace, name)? {
        None => Err(subscription_not_found(name)),
        Some(sub) if sub.spec.target.is_some() => Err(has_target(name)),
        Some(sub) => Ok(sub),
    })
}

fn encode<T: serde::Serialize>(value: &T) -> rusqlite::Result<String> {
    crate::rows::to_json("subscription", value)
}

/// The position that makes `start` the next event delivered.
fn start_position(
    conn: &Connection,
    namespace: &Namespace,
    topic: &TopicName,
    start: Start,
) -> rusqlite::Result<u64> {
    let head = topic_row(conn, namespace, topic)?.map_or(0, |t| t.head_seq);
    let first_from = match start.from_time() {
        Some(at) => conn
            .prepare_cached(
                "SELECT min(seq) FROM events WHERE namespace = ?1 AND topic = ?2 AND published_at >= ?3",
            )?
            .query_row(params![namespace.as_str(), topic.as_str(), at.as_millis()], |r| {
                r.get::<_, Option<i64>>(0)
            })?
            .map(|s| s as u64),
        None => None,
    };
    Ok(start.position(head, first_from))
}

fn set_position(
    conn: &Connection,
    namespace: &Namespace,
    name: &str,
    position: u64,
    delivered: u64,
    skipped: u64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE subscriptions SET position = ?3, delivered = delivered + ?4, skipped = skipped + ?5 \
         WHERE namespace = ?1 AND name = ?2",
    )?
    .execute(params![
        namespace.as_str(),
        name,
        position as i64,
        delivered as i64,
        skipped as i64
    ])?;
    Ok(())
}

fn drop_claims(conn: &Connection, namespace: &Namespace, name: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM claims WHERE namespace = ?1 AND subscription = ?2")?
        .execute(params![namespace.as_str(), name])?;
    Ok(())
}

/// Brings a pulled subscription's position up to date (past events
/// retention removed, counted as skipped, and past committed or unwanted
/// ones) and plans a fetch of up to `max` events from there.
fn settle(
    conn: &Connection,
    sub: &Subscription,
    max: usize,
) -> rusqlite::Result<(Vec<Event>, FetchPlan)> {
    let (namespace, name, topic) = (&sub.namespace, &sub.name, &sub.spec.topic);
    let mut position = sub.position;
    let first_kept: Option<i64> = conn
        .prepare_cached(
            "SELECT min(seq) FROM events WHERE namespace = ?1 AND topic = ?2 AND seq > ?3",
        )?
        .query_row(
            params![namespace.as_str(), topic.as_str(), position as i64],
            |r| r.get(0),
        )?;
    let next = first_kept.map_or(sub.head_seq + 1, |s| s as u64);
    let mut skipped = 0;
    if next > position + 1 {
        skipped = next - position - 1;
        position = next - 1;
    }
    let events = conn
        .prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE namespace = ?1 AND topic = ?2 AND seq > ?3 \
             ORDER BY seq LIMIT ?4"
        ))?
        .query_map(
            params![namespace.as_str(), topic.as_str(), position as i64, SCAN],
            event_from_row,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let claims: BTreeMap<u64, Claim> = conn
        .prepare_cached(
            "SELECT seq, key, done FROM claims WHERE namespace = ?1 AND subscription = ?2",
        )?
        .query_map(params![namespace.as_str(), name], |r| {
            Ok((
                unsigned(r, 0)?,
                Claim {
                    key: r.get(1)?,
                    done: r.get(2)?,
                },
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let plan = plan_fetch(position, &events, &claims, &sub.spec.filter, max);
    if plan.position != sub.position || skipped > 0 {
        set_position(conn, namespace, name, plan.position, 0, skipped)?;
        conn.prepare_cached(
            "DELETE FROM claims WHERE namespace = ?1 AND subscription = ?2 AND seq <= ?3",
        )?
        .execute(params![namespace.as_str(), name, plan.position as i64])?;
    }
    Ok((events, plan))
}

/// Removes a deleted topic's subscriptions and their claims.
pub(crate) fn drop_topic_subscriptions(
    conn: &Connection,
    namespace: &Namespace,
    topic: &TopicName,
) -> Applied<()> {
    conn.prepare_cached(
        "DELETE FROM claims WHERE namespace = ?1 AND subscription IN \
         (SELECT name FROM subscriptions WHERE namespace = ?1 AND topic = ?2)",
    )?
    .execute(params![namespace.as_str(), topic.as_str()])?;
    conn.prepare_cached("DELETE FROM subscriptions WHERE namespace = ?1 AND topic = ?2")?
        .execute(params![namespace.as_str(), topic.as_str()])?;
    Ok(Ok(()))
}
