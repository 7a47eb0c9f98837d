//! Notifications on SQLite: accepting one (request key, dedup keys,
//! deliveries and their jobs in one writer command), moving a delivery by
//! compare-and-set, and the in-app inbox. Reads inside a writer command see
//! everything committed or written before it, so the checks and the write
//! that depends on them cannot be interleaved.

use keel_core::notification::{DeliveryAttempt, DeliveryStatus};
use keel_core::{JobId, Namespace, NotificationId, Timestamp};
use keel_store::{
    Accepted, Delivery, DeliveryMove, Hold, InboxMark, InboxMessage, InboxPage, NewDelivery,
    NewInboxMessage, NewNotification, Notification, NotificationQuery, delivery_not_found,
    request_key_reused,
};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};

use crate::rows::{blob_id, corrupt, from_json, id_bytes, to_json};
use crate::writer::{Applied, Writer};

const DELIVERY_COLUMNS: &str = "id, notification, channel, recipient, status, duplicate_of, \
     fallback_of, attempts, created_at, updated_at";
const INBOX_COLUMNS: &str = "seq, delivery, notification, category, content, created_at, \
     seen_at, read_at, archived_at";

fn notification_id(bytes: &[u8]) -> rusqlite::Result<NotificationId> {
    id_bytes(bytes).map(NotificationId::from_bytes)
}

fn status(text: &str) -> rusqlite::Result<DeliveryStatus> {
    DeliveryStatus::parse(text).ok_or_else(|| corrupt(format!("unknown delivery status {text:?}")))
}

pub(crate) fn accept(w: &mut Writer, n: NewNotification, now: Timestamp) -> Applied<Accepted> {
    let ns = n.namespace.as_str();
    if let Some(request) = &n.request {
        let held: Option<(String, Vec<u8>)> = w
            .conn
            .prepare_cached(
                "SELECT digest, notification FROM notification_requests \
                 WHERE namespace = ?1 AND key = ?2 AND expires_at > ?3",
            )?
            .query_row(params![ns, request.key, now.as_millis()], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        if let Some((digest, first)) = held {
            if digest != request.digest {
                return Ok(Err(request_key_reused(&request.key)));
            }
            let first = notification_id(&first)?;
            return Ok(notification(&w.conn, &n.namespace, &first)?
                .map(Accepted::Replayed)
                .ok_or_else(|| keel_store::notification_not_found(&first)));
        }
    }
    let mut deliveries = n.deliveries;
    let mut duplicates = Vec::new();
    if let Some(hold) = &n.hold {
        let key = &hold.key;
        for d in &mut deliveries {
            if d.status != DeliveryStatus::Queued {
                continue;
            }
            let held: Option<Vec<u8>> = w
                .conn
                .prepare_cached(
                    "SELECT notification FROM notification_dedup WHERE namespace = ?1 \
                     AND channel = ?2 AND recipient = ?3 AND key = ?4 AND expires_at > ?5",
                )?
                .query_row(
                    params![ns, d.channel, n.recipient, key, now.as_millis()],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(first) = held {
                d.status = hold.held;
                d.job = None;
                duplicates.push((d.id, notification_id(&first)?));
            }
        }
    }
    let queued = deliveries
        .iter()
        .filter(|d| d.status != DeliveryStatus::SuppressedDuplicate)
        .count();
    // Every delivery a duplicate: nothing to write (a digested one is
    // written: its content goes out with the digest).
    if queued == 0 && !duplicates.is_empty() {
        return Ok(Ok(Accepted::Duplicate {
            first: duplicates[0].1,
            channels: deliveries.into_iter().map(|d| d.channel).collect(),
        }));
    }
    let jobs = deliveries.iter_mut().filter_map(|d| d.job.take()).collect();
    let (namespace, id) = (n.namespace.clone(), n.id);
    let written = w.write_owned(jobs, now, |conn| {
        let body = to_json("notification", &n.body)?;
        conn.prepare_cached(
            "INSERT INTO notifications (namespace, id, recipient, category, body, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            ns,
            &n.id.as_bytes()[..],
            n.recipient,
            n.category,
            body,
            now.as_millis()
        ])?;
        for d in &deliveries {
            let duplicate_of = duplicates
                .iter()
                .find(|(id, _)| *id == d.id)
                .map(|(_, first)| first.as_bytes().to_vec());
            insert_delivery(conn, ns, &n.id, &n.recipient, d, duplicate_of, now)?;
            if let (
                Some(Hold {
                    key,
                    expires_at: expires,
                    ..
                }),
                DeliveryStatus::Queued,
            ) = (&n.hold, d.status)
            {
                conn.prepare_cached(
                    "INSERT OR REPLACE INTO notification_dedup \
                     (namespace, channel, recipient, key, notification, expires_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    ns,
                    d.channel,
                    n.recipient,
                    key,
                    &n.id.as_bytes()[..],
                    expires.as_millis()
                ])?;
            }
        }
        if let Some(request) = &n.request {
            conn.prepare_cached(
                "INSERT OR REPLACE INTO notification_requests \
                 (namespace, key, digest, notification, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                ns,
                request.key,
                request.digest,
                &n.id.as_bytes()[..],
                request.expires_at.as_millis()
            ])?;
        }
        Ok(Ok(((), true)))
    })?;
    if let Err(e) = written {
        return Ok(Err(e));
    }
    Ok(notification(&w.conn, &namespace, &id)?
        .map(Accepted::New)
        .ok_or_else(|| keel_store::notification_not_found(&id)))
}

fn insert_delivery(
    conn: &Connection,
    ns: &str,
    notification: &NotificationId,
    recipient: &str,
    d: &NewDelivery,
    duplicate_of: Option<Vec<u8>>,
    now: Timestamp,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO notification_deliveries (namespace, id, notification, channel, recipient, \
         status, duplicate_of, fallback_of, attempts, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, '[]', ?9, ?9)",
    )?
    .execute(params![
        ns,
        &d.id.as_bytes()[..],
        &notification.as_bytes()[..],
        d.channel,
        recipient,
        d.status.as_str(),
        duplicate_of,
        d.fallback_of.map(|f| f.as_bytes().to_vec()),
        now.as_millis()
    ])?;
    Ok(())
}

pub(crate) fn notification(
    conn: &Connection,
    namespace: &Namespace,
    id: &NotificationId,
) -> rusqlite::Result<Option<Notification>> {
    let Some(mut found) = conn
        .prepare_cached(
            "SELECT id, recipient, category, body, created_at FROM notifications \
             WHERE namespace = ?1 AND id = ?2",
        )?
        .query_row(
            params![namespace.as_str(), &id.as_bytes()[..]],
            notification_from_row,
        )
        .optional()?
    else {
        return Ok(None);
    };
    found.deliveries = deliveries_of(conn, namespace, id)?;
    Ok(Some(found))
}

fn notification_from_row(r: &Row<'_>) -> rusqlite::Result<Notification> {
    Ok(Notification {
        id: notification_id(&r.get::<_, Vec<u8>>(0)?)?,
        recipient: r.get(1)?,
        category: r.get(2)?,
        body: from_json(&r.get::<_, String>(3)?)?,
        created_at: Timestamp::from_millis(r.get(4)?),
        deliveries: Vec::new(),
    })
}

fn deliveries_of(
    conn: &Connection,
    namespace: &Namespace,
    id: &NotificationId,
) -> rusqlite::Result<Vec<Delivery>> {
    conn.prepare_cached(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM notification_deliveries INDEXED BY notification_deliveries_of \
         WHERE namespace = ?1 AND notification = ?2 ORDER BY id"
    ))?
    .query_map(
        params![namespace.as_str(), &id.as_bytes()[..]],
        delivery_from_row,
    )?
    .collect()
}

fn delivery_from_row(r: &Row<'_>) -> rusqlite::Result<Delivery> {
    let optional_id = |i: usize| -> rusqlite::Result<Option<Vec<u8>>> { r.get(i) };
    Ok(Delivery {
        id: blob_id(&r.get::<_, Vec<u8>>(0)?)?,
        notification: notification_id(&r.get::<_, Vec<u8>>(1)?)?,
        channel: r.get(2)?,
        recipient: r.get(3)?,
        status: status(&r.get::<_, String>(4)?)?,
        duplicate_of: optional_id(5)?.map(|b| notification_id(&b)).transpose()?,
        fallback_of: optional_id(6)?.map(|b| blob_id(&b)).transpose()?,
        attempts: from_json(&r.get::<_, String>(7)?)?,
        created_at: Timestamp::from_millis(r.get(8)?),
        updated_at: Timestamp::from_millis(r.get(9)?),
    })
}

pub(crate) fn delivery(
    conn: &Connection,
    namespace: &Namespace,
    id: &JobId,
) -> rusqlite::Result<Option<Delivery>> {
    conn.prepare_cached(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM notification_deliveries WHERE namespace = ?1 AND id = ?2"
    ))?
    .query_row(
        params![namespace.as_str(), &id.as_bytes()[..]],
        delivery_from_row,
    )
    .optional()
}

pub(crate) fn digested(
    conn: &Connection,
    namespace: &Namespace,
    holder: &NotificationId,
    channel: &str,
    limit: u32,
) -> rusqlite::Result<Vec<Notification>> {
    let mut found = conn
        .prepare_cached(
            "SELECT n.id, n.recipient, n.category, n.body, n.created_at FROM notifications n \
             JOIN notification_deliveries d ON d.namespace = n.namespace AND d.notification = n.id \
             WHERE d.namespace = ?1 AND d.duplicate_of = ?2 AND d.channel = ?3 \
             AND d.status = 'digested' ORDER BY n.id LIMIT ?4",
        )?
        .query_map(
            params![namespace.as_str(), &holder.as_bytes()[..], channel, limit],
            notification_from_row,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for n in &mut found {
        n.deliveries = deliveries_of(conn, namespace, &n.id)?;
    }
    Ok(found)
}

pub(crate) fn list(
    conn: &Connection,
    namespace: &Namespace,
    q: &NotificationQuery,
) -> rusqlite::Result<Vec<Notification>> {
    let ns = SqlValue::from(namespace.as_str().to_owned());
    // By a delivery's status, the page is read from the deliveries' index
    // by status (the few queued or failed out of many), newest first; by
    // recipient or channel alone, from the notifications down.
    let (mut sql, mut values) = match q.status {
        Some(status) => (
            String::from(
                "SELECT n.id, n.recipient, n.category, n.body, n.created_at \
                 FROM notification_deliveries d INDEXED BY notification_deliveries_by_status \
                 JOIN notifications n ON n.namespace = d.namespace AND n.id = d.notification \
                 WHERE d.namespace = ? AND d.status = ?",
            ),
            vec![ns, SqlValue::from(status.as_str().to_owned())],
        ),
        None => (
            String::from(
                "SELECT n.id, n.recipient, n.category, n.body, n.created_at FROM notifications n \
                 WHERE n.namespace = ?",
            ),
            vec![ns],
        ),
    };
    if let Some(recipient) = &q.recipient {
        sql.push_str(" AND n.recipient = ?");
        values.push(SqlValue::from(recipient.clone()));
    }
    if let Some(before) = &q.before {
        sql.push_str(" AND n.id < ?");
        values.push(SqlValue::from(before.as_bytes().to_vec()));
    }
    if let Some(channel) = &q.channel {
        match q.status {
            Some(_) => sql.push_str(" AND d.channel = ?"),
            None => sql.push_str(
                " AND EXISTS (SELECT 1 FROM notification_deliveries c \
                 WHERE c.namespace = n.namespace AND c.notification = n.id AND c.channel = ?)",
            ),
        }
        values.push(SqlValue::from(channel.clone()));
    }
    if q.status.is_some() {
        sql.push_str(" GROUP BY n.id");
    }
    sql.push_str(" ORDER BY n.id DESC LIMIT ?");
    values.push(SqlValue::from(i64::from(q.limit)));
    let mut found = conn
        .prepare(&sql)?
        .query_map(params_from_iter(values), notification_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for n in &mut found {
        n.deliveries = deliveries_of(conn, namespace, &n.id)?;
    }
    Ok(found)
}

pub(crate) fn move_delivery(
    w: &mut Writer,
    namespace: &Namespace,
    change: DeliveryMove,
    now: Timestamp,
) -> Applied<DeliveryStatus> {
    let Some(current) = delivery(&w.conn, namespace, &change.id)? else {
        return Ok(Err(delivery_not_found(&change.id)));
    };
    if !change.from.contains(&current.status) {
        return Ok(Ok(current.status));
    }
    let mut then = change.then;
    let jobs = then
        .as_mut()
        .and_then(|d| d.job.take())
        .into_iter()
        .collect();
    let ns = namespace.as_str();
    w.write_owned(jobs, now, |conn| {
        update_delivery(conn, ns, &current, change.to, change.attempt, now)?;
        if let Some(next) = &then {
            insert_delivery(
                conn,
                ns,
                &current.notification,
                &current.recipient,
                next,
                None,
                now,
            )?;
        }
        Ok(Ok((current.status, true)))
    })
}

fn update_delivery(
    conn: &Connection,
    ns: &str,
    current: &Delivery,
    to: DeliveryStatus,
    attempt: Option<DeliveryAttempt>,
    now: Timestamp,
) -> rusqlite::Result<()> {
    let mut attempts = current.attempts.clone();
    attempts.extend(attempt);
    conn.prepare_cached(
        "UPDATE notification_deliveries SET status = ?3, attempts = ?4, updated_at = ?5 \
         WHERE namespace = ?1 AND id = ?2",
    )?
    .execute(params![
        ns,
        &current.id.as_bytes()[..],
        to.as_str(),
        to_json("delivery attempts", &attempts)?,
        now.as_millis()
    ])?;
    Ok(())
}

pub(crate) fn inbox_put(
    w: &mut Writer,
    namespace: &Namespace,
    m: NewInboxMessage,
    attempt: DeliveryAttempt,
    now: Timestamp,
) -> Applied<u64> {
    let conn = &w.conn;
    let ns = namespace.as_str();
    let held: Option<i64> = conn
        .prepare_cached("SELECT seq FROM inbox WHERE namespace = ?1 AND delivery = ?2")?
        .query_row(params![ns, &m.delivery.as_bytes()[..]], |r| r.get(0))
        .optional()?;
    if let Some(seq) = held {
        return Ok(Ok(seq as u64));
    }
    let seq: i64 = conn
        .prepare_cached(
            "SELECT seq FROM inbox WHERE namespace = ?1 AND recipient = ?2 ORDER BY seq DESC LIMIT 1",
        )?
        .query_row(params![ns, m.recipient], |r| r.get::<_, i64>(0))
        .optional()?
        .map_or(1, |last| last + 1);
    conn.prepare_cached(
        "INSERT INTO inbox (namespace, recipient, seq, delivery, notification, category, \
         content, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        ns,
        m.recipient,
        seq,
        &m.delivery.as_bytes()[..],
        &m.notification.as_bytes()[..],
        m.category,
        to_json("inbox message", &m.content)?,
        now.as_millis()
    ])?;
    if let Some(current) = delivery(conn, namespace, &m.delivery)?
        && !current.status.is_final()
    {
        update_delivery(conn, ns, &current, DeliveryStatus::Sent, Some(attempt), now)?;
    }
    Ok(Ok(seq as u64))
}

pub(crate) fn inbox_list(
    conn: &Connection,
    namespace: &Namespace,
    recipient: &str,
    page: InboxPage,
    limit: u32,
) -> rusqlite::Result<(Vec<InboxMessage>, u64)> {
    let ns = namespace.as_str();
    let messages = match page {
        InboxPage::Before(before) => conn
            .prepare_cached(&format!(
                "SELECT {INBOX_COLUMNS} FROM inbox WHERE namespace = ?1 AND recipient = ?2 \
                 AND archived_at IS NULL AND (?3 IS NULL OR seq < ?3) ORDER BY seq DESC LIMIT ?4"
            ))?
            .query_map(
                params![ns, recipient, before.map(|b| b as i64), limit],
                inbox_from_row,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?,
        InboxPage::After(after) => conn
            .prepare_cached(&format!(
                "SELECT {INBOX_COLUMNS} FROM inbox WHERE namespace = ?1 AND recipient = ?2 \
                 AND seq > ?3 ORDER BY seq LIMIT ?4"
            ))?
            .query_map(params![ns, recipient, after as i64, limit], inbox_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?,
    };
    let unread: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM inbox WHERE namespace = ?1 AND recipient = ?2 \
             AND read_at IS NULL AND archived_at IS NULL",
        )?
        .query_row(params![ns, recipient], |r| r.get(0))?;
    Ok((messages, unread as u64))
}

fn inbox_from_row(r: &Row<'_>) -> rusqlite::Result<InboxMessage> {
    let at = |i: usize| -> rusqlite::Result<Option<Timestamp>> {
        Ok(r.get::<_, Option<i64>>(i)?.map(Timestamp::from_millis))
    };
    Ok(InboxMessage {
        seq: r.get::<_, i64>(0)? as u64,
        delivery: blob_id(&r.get::<_, Vec<u8>>(1)?)?,
        notification: notification_id(&r.get::<_, Vec<u8>>(2)?)?,
        category: r.get(3)?,
        content: from_json(&r.get::<_, String>(4)?)?,
        created_at: Timestamp::from_millis(r.get(5)?),
        seen_at: at(6)?,
        read_at: at(7)?,
        archived_at: at(8)?,
    })
}

pub(crate) fn inbox_mark(
    conn: &Connection,
    namespace: &Namespace,
    recipient: &str,
    mark: InboxMark,
    seqs: Option<Vec<u64>>,
    now: Timestamp,
) -> rusqlite::Result<u64> {
    let column = match mark {
        InboxMark::Seen => "seen_at",
        InboxMark::Read => "read_at",
        InboxMark::Archived => "archived_at",
    };
    let mut sql = format!(
        "UPDATE inbox SET {column} = ? WHERE namespace = ? AND recipient = ? AND {column} IS NULL"
    );
    let mut values = vec![
        SqlValue::from(now.as_millis()),
        SqlValue::from(namespace.as_str().to_owned()),
        SqlValue::from(recipient.to_owned()),
    ];
    if let Some(seqs) = seqs {
        sql.push_str(&format!(
            " AND seq IN ({})",
            vec!["?"; seqs.len()].join(", ")
        ));
        values.extend(seqs.into_iter().map(|s| SqlValue::from(s as i64)));
    }
    Ok(conn.execute(&sql, params_from_iter(values))? as u64)
}

pub(crate) fn prune(
    conn: &Connection,
    now: Timestamp,
    before: Timestamp,
    limit: u32,
) -> rusqlite::Result<u64> {
    for table in ["notification_dedup", "notification_requests"] {
        conn.prepare_cached(&format!("DELETE FROM {table} WHERE expires_at <= ?1"))?
            .execute(params![now.as_millis()])?;
    }
    let old: Vec<(String, Vec<u8>)> = conn
        .prepare_cached(
            "SELECT namespace, id FROM notifications WHERE created_at < ?1 \
             ORDER BY created_at LIMIT ?2",
        )?
        .query_map(params![before.as_millis(), limit], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    for (ns, id) in &old {
        conn.prepare_cached(
            "DELETE FROM notification_deliveries WHERE namespace = ?1 AND notification = ?2",
        )?
        .execute(params![ns, id])?;
        conn.prepare_cached("DELETE FROM notifications WHERE namespace = ?1 AND id = ?2")?
            .execute(params![ns, id])?;
    }
    Ok(old.len() as u64)
}
