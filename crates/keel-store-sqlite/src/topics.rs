//! Topics and events on the embedded store. The writer thread gives seqs
//! out in the order it writes, and readers see only committed transactions,
//! so seq order is commit order: a reader never sees seq N before N - 1.

use std::collections::HashMap;
use std::sync::LazyLock;

use async_trait::async_trait;
use keel_core::{Error, Event, Namespace, NewEvent, Timestamp, TopicName, TopicPolicy};
use keel_store::{EventQuery, Published, Topic, TopicStore, event_not_found, topic_not_found};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::SqliteStore;
use crate::rows::{corrupt, from_json, tags_from_sql, tags_to_sql};
use crate::writer::{Applied, Writer};

#[async_trait]
impl TopicStore for SqliteStore {
    async fn topic_put(
        &self,
        namespace: &Namespace,
        topic: &TopicName,
        policy: &TopicPolicy,
        now: Timestamp,
    ) -> Result<(Topic, bool), Error> {
        let (namespace, topic, policy) = (namespace.clone(), topic.clone(), *policy);
        self.write(move |w: &mut Writer| {
            let created = topic_row(&w.conn, &namespace, &topic)?.is_none();
            if created {
                insert_topic(&w.conn, &namespace, &topic, &policy, now)?;
            } else {
                w.conn
                    .prepare_cached(
                        "UPDATE topics SET retention_ms = ?3, dedup_window_ms = ?4, \
                         max_event_bytes = ?5, slo = ?6 WHERE namespace = ?1 AND name = ?2",
                    )?
                    .execute(params![
                        namespace.as_str(),
                        topic.as_str(),
                        policy.retention_ms as i64,
                        policy.dedup_window_ms as i64,
                        policy.max_event_bytes as i64,
                        slo_text(&policy)?,
                    ])?;
            }
            let stored = topic_row(&w.conn, &namespace, &topic)?;
            Ok(stored
                .map(|t| (t, created))
                .ok_or_else(|| topic_not_found(&topic)))
        })
        .await
    }

    async fn topic_get(&self, namespace: &Namespace, topic: &TopicName) -> Result<Topic, Error> {
        let (namespace, topic) = (namespace.clone(), topic.clone());
        self.read(move |conn| {
            Ok(topic_row(conn, &namespace, &topic)?.ok_or_else(|| topic_not_found(&topic)))
        })
        .await
    }

    async fn topics_list(&self, namespace: &Namespace) -> Result<Vec<Topic>, Error> {
        let namespace = namespace.clone();
        self.read(move |conn| {
            let topics = conn
                .prepare_cached(&format!(
                    "SELECT {TOPIC_COLUMNS} FROM topics WHERE namespace = ?1 ORDER BY name"
                ))?
                .query_map([namespace.as_str()], topic_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Ok(topics))
        })
        .await
    }

    async fn topic_delete(&self, namespace: &Namespace, topic: &TopicName) -> Result<(), Error> {
        let (namespace, topic) = (namespace.clone(), topic.clone());
        self.write(move |w: &mut Writer| {
            let gone = w
                .conn
                .prepare_cached("DELETE FROM topics WHERE namespace = ?1 AND name = ?2")?
                .execute(params![namespace.as_str(), topic.as_str()])?;
            if gone == 0 {
                return Ok(Err(topic_not_found(&topic)));
            }
            w.conn
                .prepare_cached("DELETE FROM events WHERE namespace = ?1 AND topic = ?2")?
                .execute(params![namespace.as_str(), topic.as_str()])?;
            crate::subscriptions::drop_topic_subscriptions(&w.conn, &namespace, &topic)
        })
        .await
    }

    async fn events_publish(
        &self,
        namespace: &Namespace,
        topic: &TopicName,
        events: Vec<NewEvent>,
        now: Timestamp,
    ) -> Result<Vec<Published>, Error> {
        let (ns, t) = (namespace.clone(), topic.clone());
        let answers = self
            .write(move |w: &mut Writer| publish(&w.conn, &ns, &t, events, now))
            .await?;
        if answers.iter().any(|p| !p.duplicate) {
            self.signal.appended(namespace, topic);
        }
        Ok(answers)
    }

    async fn events_read(
        &self,
        namespace: &Namespace,
        topic: &TopicName,
        query: &EventQuery,
    ) -> Result<Vec<Event>, Error> {
        let (namespace, topic, query) = (namespace.clone(), topic.clone(), query.clone());
        self.read(move |conn| {
            if topic_row(conn, &namespace, &topic)?.is_none() {
                return Ok(Err(topic_not_found(&topic)));
            }
            // Fixed statements: `?3 IS NULL OR …` would be planned again at
            // every bind (see `stable_plans`).
            let mut sql = format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE namespace = ?1 AND topic = ?2 AND seq > ?3"
            );
            let mut args: Vec<rusqlite::types::Value> = vec![
                namespace.as_str().to_owned().into(),
                topic.as_str().to_owned().into(),
                (query.after as i64).into(),
                i64::from(query.limit).into(),
            ];
            if let Some(key) = query.key {
                sql.push_str(&format!(" AND key = ?{}", args.len() + 1));
                args.push(key.into());
            }
            if let Some(kind) = query.kind {
                sql.push_str(&format!(" AND type = ?{}", args.len() + 1));
                args.push(kind.into());
            }
            sql.push_str(" ORDER BY seq LIMIT ?4");
            let events = conn
                .prepare_cached(&sql)?
                .query_map(rusqlite::params_from_iter(args), event_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Ok(events))
        })
        .await
    }

    async fn event_get(
        &self,
        namespace: &Namespace,
        topic: &TopicName,
        id: &str,
    ) -> Result<Event, Error> {
        let (namespace, topic, id) = (namespace.clone(), topic.clone(), id.to_owned());
        self.read(move |conn| {
            let found = conn
                .prepare_cached(&format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE namespace = ?1 AND topic = ?2 AND seq = \
                     (SELECT max(seq) FROM events WHERE namespace = ?1 AND topic = ?2 AND id = ?3)"
                ))?
                .query_row(
                    params![namespace.as_str(), topic.as_str(), id],
                    event_from_row,
                )
                .optional()?;
            Ok(found.ok_or_else(|| event_not_found(&topic, &id)))
        })
        .await
    }

    async fn events_prune(&self, now: Timestamp, limit: u32) -> Result<u64, Error> {
        self.write(move |w: &mut Writer| prune(&w.conn, now, limit))
            .await
    }
}

const TOPIC_COLUMNS: &str =
    "name, retention_ms, dedup_window_ms, max_event_bytes, head_seq, events, created_at, slo";

/// A topic's objectives as stored: JSON text, or NULL.
fn slo_text(policy: &TopicPolicy) -> rusqlite::Result<Option<String>> {
    policy
        .slo
        .map(|slo| crate::rows::to_json("topic objectives", &slo))
        .transpose()
}

fn topic_from_row(r: &Row<'_>) -> rusqlite::Result<Topic> {
    let name: String = r.get(0)?;
    let slo: Option<String> = r.get(7)?;
    Ok(Topic {
        name: TopicName::new(&name).map_err(|e| corrupt(format!("topic name: {}", e.message)))?,
        policy: TopicPolicy {
            retention_ms: unsigned(r, 1)?,
            dedup_window_ms: unsigned(r, 2)?,
            max_event_bytes: unsigned(r, 3)?,
            slo: slo.as_deref().map(from_json).transpose()?,
        },
        head_seq: unsigned(r, 4)?,
        events: unsigned(r, 5)?,
        created_at: Timestamp::from_millis(r.get(6)?),
    })
}

pub(crate) fn topic_row(
    conn: &Connection,
    namespace: &Namespace,
    topic: &TopicName,
) -> rusqlite::Result<Option<Topic>> {
    conn.prepare_cached(&format!(
        "SELECT {TOPIC_COLUMNS} FROM topics WHERE namespace = ?1 AND name = ?2"
    ))?
    .query_row(params![namespace.as_str(), topic.as_str()], topic_from_row)
    .optional()
}

fn insert_topic(
    conn: &Connection,
    namespace: &Namespace,
    topic: &TopicName,
    policy: &TopicPolicy,
    now: Timestamp,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO topics (namespace, name, retention_ms, dedup_window_ms, max_event_bytes, \
         head_seq, events, created_at, slo) VALUES (?1, ?2, ?3, ?4, ?5, 0, 0, ?6, ?7)",
    )?
    .execute(params![
        namespace.as_str(),
        topic.as_str(),
        policy.retention_ms as i64,
        policy.dedup_window_ms as i64,
        policy.max_event_bytes as i64,
        now.as_millis(),
        slo_text(policy)?
    ])?;
    Ok(())
}

/// A column stored as an integer that is never negative.
pub(crate) fn unsigned(r: &Row<'_>, i: usize) -> rusqlite::Result<u64> {
    let n: i64 = r.get(i)?;
    u64::try_from(n).map_err(|_| corrupt(format!("a negative count {n}")))
}

pub(crate) const EVENT_COLUMNS: &str =
    "seq, id, type, source, key, time, data, headers, published_at";

pub(crate) fn event_from_row(r: &Row<'_>) -> rusqlite::Result<Event> {
    Ok(Event {
        seq: unsigned(r, 0)?,
        event: NewEvent {
            id: r.get(1)?,
            generated_id: false,
            kind: r.get(2)?,
            source: r.get(3)?,
            key: r.get(4)?,
            time: Timestamp::from_millis(r.get(5)?),
            data: r.get(6)?,
            headers: tags_from_sql(r.get(7)?)?,
        },
        published_at: Timestamp::from_millis(r.get(8)?),
    })
}

/// Checks every event, then appends the new ones: a refused batch writes
/// nothing, as the writer commits whatever a closure wrote.
fn publish(
    conn: &Connection,
    namespace: &Namespace,
    topic: &TopicName,
    events: Vec<NewEvent>,
    now: Timestamp,
) -> Applied<Vec<Published>> {
    let existing = topic_row(conn, namespace, topic)?;
    let policy = existing.as_ref().map(|t| t.policy).unwrap_or_default();
    for event in &events {
        if let Err(e) = event.check(&policy) {
            return Ok(Err(e));
        }
    }
    if existing.is_none() {
        insert_topic(conn, namespace, topic, &policy, now)?;
    }
    let mut head = existing.map_or(0, |t| t.head_seq);
    let since = now
        .as_millis()
        .saturating_sub(policy.dedup_window_ms as i64);
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut answers = Vec::with_capacity(events.len());
    let mut fresh = Vec::with_capacity(events.len());
    // The latest event with the id, through the id index (a plain `ORDER BY
    // seq DESC LIMIT 1` walked the whole topic by its primary key).
    let mut find = conn.prepare_cached(
        "SELECT seq FROM events WHERE namespace = ?1 AND topic = ?2 AND published_at >= ?4 \
         AND seq = (SELECT max(seq) FROM events WHERE namespace = ?1 AND topic = ?2 AND id = ?3)",
    )?;
    for event in events {
        if !event.generated_id {
            let earlier = match seen.get(&event.id) {
                Some(seq) => Some(*seq),
                None => find
                    .query_row(
                        params![namespace.as_str(), topic.as_str(), event.id, since],
                        |r| unsigned(r, 0),
                    )
                    .optional()?,
            };
            if let Some(seq) = earlier {
                answers.push(Published {
                    id: event.id,
                    seq,
                    duplicate: true,
                });
                continue;
            }
            seen.insert(event.id.clone(), head + 1);
        }
        head += 1;
        answers.push(Published {
            id: event.id.clone(),
            seq: head,
            duplicate: false,
        });
        fresh.push((head, event));
    }
    insert_events(conn, namespace, topic, &fresh, now)?;
    let added = fresh.len() as i64;
    conn.prepare_cached(
        "UPDATE topics SET head_seq = ?3, events = events + ?4 WHERE namespace = ?1 AND name = ?2",
    )?
    .execute(params![
        namespace.as_str(),
        topic.as_str(),
        head as i64,
        added
    ])?;
    Ok(Ok(answers))
}

/// Events one INSERT statement appends: fewer statements for a batch, with
/// its parameters (11 a row) far below SQLite's limit.
const ROWS_PER_INSERT: usize = 32;

/// Appends `fresh` (seq, event) rows, `ROWS_PER_INSERT` a statement, the
/// rest one by one.
fn insert_events(
    conn: &Connection,
    namespace: &Namespace,
    topic: &TopicName,
    fresh: &[(u64, NewEvent)],
    now: Timestamp,
) -> rusqlite::Result<()> {
    const COLUMNS: &str = "INSERT INTO events (namespace, topic, seq, id, type, source, key, \
                           time, data, headers, published_at) VALUES ";
    const ROW: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
    static ONE: LazyLock<String> = LazyLock::new(|| format!("{COLUMNS}{ROW}"));
    static MANY: LazyLock<String> =
        LazyLock::new(|| format!("{COLUMNS}{}", [ROW; ROWS_PER_INSERT].join(", ")));
    let (ns, t, at) = (namespace.as_str(), topic.as_str(), now.as_millis());
    let rows = fresh
        .iter()
        .map(|(seq, e)| {
            let headers = tags_to_sql(&e.headers)?;
            Ok((*seq as i64, e, headers, e.time.as_millis()))
        })
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut chunks = rows.chunks_exact(ROWS_PER_INSERT);
    let mut many = conn.prepare_cached(&MANY)?;
    for chunk in chunks.by_ref() {
        let mut values: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(11 * ROWS_PER_INSERT);
        for (seq, e, headers, time) in chunk {
            values.extend([
                &ns as &dyn rusqlite::ToSql,
                &t,
                seq,
                &e.id,
                &e.kind,
                &e.source,
                &e.key,
                time,
                &e.data,
                headers,
                &at,
            ]);
        }
        many.execute(values.as_slice())?;
    }
    let mut one = conn.prepare_cached(&ONE)?;
    for (seq, e, headers, time) in chunks.remainder() {
        one.execute(params![
            ns, t, seq, e.id, e.kind, e.source, e.key, time, e.data, headers, at
        ])?;
    }
    Ok(())
}

/// Removes, topic by topic, the oldest events past retention (publish times
/// grow with seq, so they are a prefix of the log).
fn prune(conn: &Connection, now: Timestamp, limit: u32) -> Applied<u64> {
    let topics: Vec<(String, String, u64)> = conn
        .prepare_cached("SELECT namespace, name, retention_ms FROM topics")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, unsigned(r, 2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut removed = 0u64;
    for (namespace, topic, retention_ms) in topics {
        let left = u64::from(limit).saturating_sub(removed);
        if left == 0 {
            break;
        }
        let cutoff = now.as_millis().saturating_sub(retention_ms as i64);
        let gone = conn
            .prepare_cached(
                // The first `left` events only: the expired ones are a prefix,
                // and a filter on `published_at` alone would walk the whole
                // topic when none has expired.
                "DELETE FROM events WHERE namespace = ?1 AND topic = ?2 AND seq IN \
                 (SELECT seq FROM (SELECT seq, published_at FROM events \
                  WHERE namespace = ?1 AND topic = ?2 ORDER BY seq LIMIT ?4) WHERE published_at < ?3)",
            )?
            .execute(params![namespace, topic, cutoff, left as i64])? as u64;
        if gone > 0 {
            conn.prepare_cached(
                "UPDATE topics SET events = events - ?3 WHERE namespace = ?1 AND name = ?2",
            )?
            .execute(params![namespace, topic, gone as i64])?;
        }
        removed += gone;
    }
    Ok(Ok(removed))
}
