//! Notifications on PostgreSQL: accepting one is one transaction (request
//! key and dedup keys claimed by upserts that wait on a concurrent claim's
//! row lock, then the rows and the jobs); a delivery moves under its row
//! lock; an inbox's seq is taken under the recipient's advisory lock, so
//! seqs commit in order and a stream resuming after one misses none.

use deadpool_postgres::GenericClient;
use keel_core::notification::{DeliveryAttempt, DeliveryStatus};
use keel_core::{Error, JobId, Namespace, NotificationId, Timestamp};
use keel_store::codec::{decode, encode};
use keel_store::{
    Accepted, Delivery, DeliveryMove, InboxMark, InboxMessage, InboxPage, NewDelivery,
    NewInboxMessage, NewNotification, Notification, NotificationQuery, delivery_not_found,
    notification_not_found, request_key_reused,
};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::owner::OwnedRows;
use crate::{PostgresStore, db, job_id, uuid};

fn nid(id: &NotificationId) -> Uuid {
    Uuid::from_bytes(*id.as_bytes())
}

fn notification_id(id: Uuid) -> NotificationId {
    NotificationId::from_bytes(*id.as_bytes())
}

fn status(text: &str) -> Result<DeliveryStatus, Error> {
    DeliveryStatus::parse(text)
        .ok_or_else(|| Error::internal(format!("unknown delivery status {text:?}")))
}

impl PostgresStore {
    pub(super) async fn accept(
        &self,
        n: NewNotification,
        now: Timestamp,
    ) -> Result<Accepted, Error> {
        let ns = n.namespace.as_str();
        let id = nid(&n.id);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        if let Some(request) = &n.request {
            let claimed = tx
                .query_opt(
                    include_str!("../../queries/notifications/request_claim.sql"),
                    &[
                        &ns,
                        &request.key,
                        &request.digest,
                        &id,
                        &request.expires_at.as_millis(),
                        &now.as_millis(),
                    ],
                )
                .await
                .map_err(db)?;
            if claimed.is_none() {
                let held = tx
                    .query_one(
                        include_str!("../../queries/notifications/request_held.sql"),
                        &[&ns, &request.key],
                    )
                    .await
                    .map_err(db)?;
                if held.get::<_, &str>(0) != request.digest {
                    return Err(request_key_reused(&request.key));
                }
                let first = notification_id(held.get(1));
                return notification(&tx, &n.namespace, &first)
                    .await?
                    .map(Accepted::Replayed)
                    .ok_or_else(|| notification_not_found(&first));
            }
        }
        let mut deliveries = n.deliveries;
        let mut duplicates: Vec<(JobId, Uuid)> = Vec::new();
        if let Some(hold) = &n.hold {
            let (key, expires) = (&hold.key, hold.expires_at);
            for d in &mut deliveries {
                if d.status != DeliveryStatus::Queued {
                    continue;
                }
                let taken = tx
                    .query_opt(
                        include_str!("../../queries/notifications/dedup_claim.sql"),
                        &[
                            &ns,
                            &d.channel,
                            &n.recipient,
                            key,
                            &id,
                            &expires.as_millis(),
                            &now.as_millis(),
                        ],
                    )
                    .await
                    .map_err(db)?;
                if taken.is_none() {
                    let holder = tx
                        .query_one(
                            include_str!("../../queries/notifications/dedup_holder.sql"),
                            &[&ns, &d.channel, &n.recipient, key],
                        )
                        .await
                        .map_err(db)?;
                    d.status = hold.held;
                    d.job = None;
                    duplicates.push((d.id, holder.get(0)));
                }
            }
        }
        if !duplicates.is_empty()
            && deliveries
                .iter()
                .all(|d| d.status == DeliveryStatus::SuppressedDuplicate)
        {
            // Nothing to write (a digested delivery is written: its content
            // goes out with the digest); the transaction's claims roll back.
            return Ok(Accepted::Duplicate {
                first: notification_id(duplicates[0].1),
                channels: deliveries.into_iter().map(|d| d.channel).collect(),
            });
        }
        tx.execute(
            include_str!("../../queries/notifications/notification_insert.sql"),
            &[
                &ns,
                &id,
                &n.recipient,
                &n.category,
                &encode("notification", &n.body)?,
                &now.as_millis(),
            ],
        )
        .await
        .map_err(db)?;
        let jobs: Vec<_> = deliveries.iter_mut().filter_map(|d| d.job.take()).collect();
        for d in &deliveries {
            let duplicate_of = duplicates
                .iter()
                .find(|(delivery, _)| *delivery == d.id)
                .map(|(_, first)| *first);
            insert_delivery(&tx, ns, id, &n.recipient, d, duplicate_of, now).await?;
        }
        let woken = self
            .insert_owned(&tx, OwnedRows::new(&jobs, now)?, now)
            .await?;
        let accepted = notification(&tx, &n.namespace, &n.id)
            .await?
            .ok_or_else(|| notification_not_found(&n.id))?;
        tx.commit().await.map_err(db)?;
        self.wake(woken, now);
        Ok(Accepted::New(accepted))
    }

    pub(super) async fn move_delivery(
        &self,
        namespace: &Namespace,
        change: DeliveryMove,
        now: Timestamp,
    ) -> Result<DeliveryStatus, Error> {
        let ns = namespace.as_str();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let current = tx
            .query_opt(
                include_str!("../../queries/notifications/delivery_lock.sql"),
                &[&ns, &uuid(change.id)],
            )
            .await
            .map_err(db)?
            .map(|r| delivery_from_row(&r))
            .transpose()?
            .ok_or_else(|| delivery_not_found(&change.id))?;
        if !change.from.contains(&current.status) {
            return Ok(current.status);
        }
        update_delivery(&tx, ns, &current, change.to, change.attempt, now).await?;
        let mut woken = None;
        if let Some(mut next) = change.then {
            let jobs: Vec<_> = next.job.take().into_iter().collect();
            insert_delivery(
                &tx,
                ns,
                nid(&current.notification),
                &current.recipient,
                &next,
                None,
                now,
            )
            .await?;
            woken = Some(
                self.insert_owned(&tx, OwnedRows::new(&jobs, now)?, now)
                    .await?,
            );
        }
        tx.commit().await.map_err(db)?;
        if let Some(woken) = woken {
            self.wake(woken, now);
        }
        Ok(current.status)
    }

    pub(super) async fn put_inbox(
        &self,
        namespace: &Namespace,
        m: NewInboxMessage,
        attempt: DeliveryAttempt,
        now: Timestamp,
    ) -> Result<u64, Error> {
        let ns = namespace.as_str();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        Self::lock_keys(&tx, &[format!("inbox/{ns}/{}", m.recipient)]).await?;
        let inserted = tx
            .query_opt(
                include_str!("../../queries/notifications/inbox_insert.sql"),
                &[
                    &ns,
                    &m.recipient,
                    &uuid(m.delivery),
                    &nid(&m.notification),
                    &m.category,
                    &encode("inbox message", &m.content)?,
                    &now.as_millis(),
                ],
            )
            .await
            .map_err(db)?;
        let seq: i64 = match inserted {
            Some(row) => row.get(0),
            None => tx
                .query_one(
                    include_str!("../../queries/notifications/inbox_seq.sql"),
                    &[&ns, &uuid(m.delivery)],
                )
                .await
                .map_err(db)?
                .get(0),
        };
        let current = tx
            .query_opt(
                include_str!("../../queries/notifications/delivery_lock.sql"),
                &[&ns, &uuid(m.delivery)],
            )
            .await
            .map_err(db)?
            .map(|r| delivery_from_row(&r))
            .transpose()?;
        if let Some(current) = current
            && !current.status.is_final()
        {
            update_delivery(&tx, ns, &current, DeliveryStatus::Sent, Some(attempt), now).await?;
        }
        tx.commit().await.map_err(db)?;
        Ok(seq as u64)
    }

    pub(super) async fn list_inbox(
        &self,
        namespace: &Namespace,
        recipient: &str,
        page: InboxPage,
        limit: u32,
    ) -> Result<(Vec<InboxMessage>, u64), Error> {
        let ns = namespace.as_str();
        let client = self.client().await?;
        let limit = i64::from(limit);
        let rows = match page {
            InboxPage::Before(before) => {
                let before = before.map(|b| b as i64);
                client
                    .query(
                        include_str!("../../queries/notifications/inbox_before.sql"),
                        &[&ns, &recipient, &before, &limit],
                    )
                    .await
            }
            InboxPage::After(after) => {
                client
                    .query(
                        include_str!("../../queries/notifications/inbox_after.sql"),
                        &[&ns, &recipient, &(after as i64), &limit],
                    )
                    .await
            }
        }
        .map_err(db)?;
        let unread: i64 = client
            .query_one(
                include_str!("../../queries/notifications/inbox_unread.sql"),
                &[&ns, &recipient],
            )
            .await
            .map_err(db)?
            .get(0);
        let messages = rows.iter().map(inbox_from_row).collect::<Result<_, _>>()?;
        Ok((messages, unread as u64))
    }

    pub(super) async fn mark_inbox(
        &self,
        namespace: &Namespace,
        recipient: &str,
        mark: InboxMark,
        seqs: Option<Vec<u64>>,
        now: Timestamp,
    ) -> Result<u64, Error> {
        let mark = match mark {
            InboxMark::Seen => "seen",
            InboxMark::Read => "read",
            InboxMark::Archived => "archived",
        };
        let seqs: Option<Vec<i64>> = seqs.map(|s| s.into_iter().map(|s| s as i64).collect());
        self.client()
            .await?
            .execute(
                include_str!("../../queries/notifications/inbox_mark.sql"),
                &[
                    &namespace.as_str(),
                    &recipient,
                    &mark,
                    &now.as_millis(),
                    &seqs,
                ],
            )
            .await
            .map_err(db)
    }

    pub(super) async fn digested(
        &self,
        namespace: &Namespace,
        holder: &NotificationId,
        channel: &str,
        limit: u32,
    ) -> Result<Vec<Notification>, Error> {
        let client = self.client().await?;
        let rows = client
            .query(
                include_str!("../../queries/notifications/digested.sql"),
                &[
                    &namespace.as_str(),
                    &nid(holder),
                    &channel,
                    &i64::from(limit),
                ],
            )
            .await
            .map_err(db)?;
        let mut found = rows
            .iter()
            .map(notification_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        with_deliveries(&client, namespace, &mut found).await?;
        Ok(found)
    }

    pub(super) async fn list_notifications(
        &self,
        namespace: &Namespace,
        q: &NotificationQuery,
    ) -> Result<Vec<Notification>, Error> {
        let client = self.client().await?;
        let rows = client
            .query(
                include_str!("../../queries/notifications/notifications_list.sql"),
                &[
                    &namespace.as_str(),
                    &q.recipient,
                    &q.before.as_ref().map(nid),
                    &q.status.map(DeliveryStatus::as_str),
                    &q.channel,
                    &i64::from(q.limit),
                ],
            )
            .await
            .map_err(db)?;
        let mut found = rows
            .iter()
            .map(notification_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        with_deliveries(&client, namespace, &mut found).await?;
        Ok(found)
    }
}

async fn insert_delivery(
    tx: &impl GenericClient,
    ns: &str,
    notification: Uuid,
    recipient: &str,
    d: &NewDelivery,
    duplicate_of: Option<Uuid>,
    now: Timestamp,
) -> Result<(), Error> {
    tx.execute(
        include_str!("../../queries/notifications/delivery_insert.sql"),
        &[
            &ns,
            &uuid(d.id),
            &notification,
            &d.channel,
            &recipient,
            &d.status.as_str(),
            &duplicate_of,
            &d.fallback_of.map(uuid),
            &now.as_millis(),
        ],
    )
    .await
    .map_err(db)?;
    Ok(())
}

async fn update_delivery(
    tx: &impl GenericClient,
    ns: &str,
    current: &Delivery,
    to: DeliveryStatus,
    attempt: Option<DeliveryAttempt>,
    now: Timestamp,
) -> Result<(), Error> {
    let mut attempts = current.attempts.clone();
    attempts.extend(attempt);
    tx.execute(
        include_str!("../../queries/notifications/delivery_update.sql"),
        &[
            &ns,
            &uuid(current.id),
            &to.as_str(),
            &encode("delivery attempts", &attempts)?,
            &now.as_millis(),
        ],
    )
    .await
    .map_err(db)?;
    Ok(())
}

pub(super) async fn notification(
    client: &impl GenericClient,
    namespace: &Namespace,
    id: &NotificationId,
) -> Result<Option<Notification>, Error> {
    let Some(row) = client
        .query_opt(
            include_str!("../../queries/notifications/notification_get.sql"),
            &[&namespace.as_str(), &nid(id)],
        )
        .await
        .map_err(db)?
    else {
        return Ok(None);
    };
    let mut found = vec![notification_from_row(&row)?];
    with_deliveries(client, namespace, &mut found).await?;
    Ok(found.pop())
}

async fn with_deliveries(
    client: &impl GenericClient,
    namespace: &Namespace,
    notifications: &mut [Notification],
) -> Result<(), Error> {
    if notifications.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = notifications.iter().map(|n| nid(&n.id)).collect();
    let rows = client
        .query(
            include_str!("../../queries/notifications/deliveries_of.sql"),
            &[&namespace.as_str(), &ids],
        )
        .await
        .map_err(db)?;
    for row in &rows {
        let d = delivery_from_row(row)?;
        if let Some(n) = notifications.iter_mut().find(|n| n.id == d.notification) {
            n.deliveries.push(d);
        }
    }
    Ok(())
}

pub(super) async fn delivery(
    client: &impl GenericClient,
    namespace: &Namespace,
    id: &JobId,
) -> Result<Option<Delivery>, Error> {
    client
        .query_opt(
            include_str!("../../queries/notifications/delivery_get.sql"),
            &[&namespace.as_str(), &uuid(*id)],
        )
        .await
        .map_err(db)?
        .map(|r| delivery_from_row(&r))
        .transpose()
}

fn notification_from_row(r: &Row) -> Result<Notification, Error> {
    Ok(Notification {
        id: notification_id(r.get(0)),
        recipient: r.get(1),
        category: r.get(2),
        body: decode("notification", r.get::<_, &str>(3))?,
        created_at: Timestamp::from_millis(r.get(4)),
        deliveries: Vec::new(),
    })
}

fn delivery_from_row(r: &Row) -> Result<Delivery, Error> {
    Ok(Delivery {
        id: job_id(r.get(0)),
        notification: notification_id(r.get(1)),
        channel: r.get(2),
        recipient: r.get(3),
        status: status(r.get(4))?,
        duplicate_of: r.get::<_, Option<Uuid>>(5).map(notification_id),
        fallback_of: r.get::<_, Option<Uuid>>(6).map(job_id),
        attempts: decode("delivery attempts", r.get::<_, &str>(7))?,
        created_at: Timestamp::from_millis(r.get(8)),
        updated_at: Timestamp::from_millis(r.get(9)),
    })
}

fn inbox_from_row(r: &Row) -> Result<InboxMessage, Error> {
    let at = |i: usize| r.get::<_, Option<i64>>(i).map(Timestamp::from_millis);
    Ok(InboxMessage {
        seq: r.get::<_, i64>(0) as u64,
        delivery: job_id(r.get(1)),
        notification: notification_id(r.get(2)),
        category: r.get(3),
        content: decode("inbox message", r.get::<_, &str>(4))?,
        created_at: Timestamp::from_millis(r.get(5)),
        seen_at: at(6),
        read_at: at(7),
        archived_at: at(8),
    })
}
