//! Notifications on PostgreSQL: settings one row each, the body as JSON
//! text, a put one upsert; the traffic (notifications, deliveries, the
//! inbox) is `traffic.rs`.

mod traffic;

use async_trait::async_trait;
use keel_core::notification::{DeliveryAttempt, DeliveryStatus};
use keel_core::{Error, JobId, Namespace, NotificationId, Timestamp};
use keel_store::{
    Accepted, Delivery, DeliveryMove, InboxMark, InboxMessage, InboxPage, NewInboxMessage,
    NewNotification, Notification, NotificationQuery, NotificationStore, Setting, StoredSetting,
};
use serde_json::Value;
use tokio_postgres::Row;

use crate::{PostgresStore, db};

#[async_trait]
impl NotificationStore for PostgresStore {
    async fn setting_put(
        &self,
        namespace: &Namespace,
        kind: Setting,
        name: &str,
        body: &Value,
        now: Timestamp,
    ) -> Result<(StoredSetting, bool), Error> {
        let text = keel_store::codec::encode("notification setting", body)?;
        let row = self
            .client()
            .await?
            .query_one(
                include_str!("../queries/notifications/setting_put.sql"),
                &[
                    &namespace.as_str(),
                    &kind.as_str(),
                    &name,
                    &text,
                    &now.as_millis(),
                ],
            )
            .await
            .map_err(db)?;
        Ok((setting_from_row(&row)?, row.get(4)))
    }

    async fn setting_get(
        &self,
        namespace: &Namespace,
        kind: Setting,
        name: &str,
    ) -> Result<Option<StoredSetting>, Error> {
        self.client()
            .await?
            .query_opt(
                include_str!("../queries/notifications/setting_get.sql"),
                &[&namespace.as_str(), &kind.as_str(), &name],
            )
            .await
            .map_err(db)?
            .as_ref()
            .map(setting_from_row)
            .transpose()
    }

    async fn settings_list(
        &self,
        namespace: &Namespace,
        kind: Setting,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StoredSetting>, Error> {
        self.client()
            .await?
            .query(
                include_str!("../queries/notifications/settings_list.sql"),
                &[
                    &namespace.as_str(),
                    &kind.as_str(),
                    &after,
                    &i64::from(limit),
                ],
            )
            .await
            .map_err(db)?
            .iter()
            .map(setting_from_row)
            .collect()
    }

    async fn setting_delete(
        &self,
        namespace: &Namespace,
        kinds: &[Setting],
        name: &str,
    ) -> Result<bool, Error> {
        let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
        let gone = self
            .client()
            .await?
            .execute(
                include_str!("../queries/notifications/setting_delete.sql"),
                &[&namespace.as_str(), &kinds, &name],
            )
            .await
            .map_err(db)?;
        Ok(gone > 0)
    }

    async fn notification_accept(
        &self,
        notification: NewNotification,
        now: Timestamp,
    ) -> Result<Accepted, Error> {
        self.accept(notification, now).await
    }

    async fn notification_get(
        &self,
        namespace: &Namespace,
        id: &NotificationId,
    ) -> Result<Option<Notification>, Error> {
        traffic::notification(&self.client().await?, namespace, id).await
    }

    async fn notifications_digested(
        &self,
        namespace: &Namespace,
        holder: &NotificationId,
        channel: &str,
        limit: u32,
    ) -> Result<Vec<Notification>, Error> {
        self.digested(namespace, holder, channel, limit).await
    }

    async fn notifications_list(
        &self,
        namespace: &Namespace,
        query: &NotificationQuery,
    ) -> Result<Vec<Notification>, Error> {
        self.list_notifications(namespace, query).await
    }

    async fn delivery_get(
        &self,
        namespace: &Namespace,
        id: &JobId,
    ) -> Result<Option<Delivery>, Error> {
        traffic::delivery(&self.client().await?, namespace, id).await
    }

    async fn delivery_move(
        &self,
        namespace: &Namespace,
        change: DeliveryMove,
        now: Timestamp,
    ) -> Result<DeliveryStatus, Error> {
        self.move_delivery(namespace, change, now).await
    }

    async fn inbox_put(
        &self,
        namespace: &Namespace,
        message: NewInboxMessage,
        attempt: DeliveryAttempt,
        now: Timestamp,
    ) -> Result<u64, Error> {
        self.put_inbox(namespace, message, attempt, now).await
    }

    async fn inbox_list(
        &self,
        namespace: &Namespace,
        recipient: &str,
        page: InboxPage,
        limit: u32,
    ) -> Result<(Vec<InboxMessage>, u64), Error> {
        self.list_inbox(namespace, recipient, page, limit).await
    }

    async fn inbox_mark(
        &self,
        namespace: &Namespace,
        recipient: &str,
        mark: InboxMark,
        seqs: Option<Vec<u64>>,
        now: Timestamp,
    ) -> Result<u64, Error> {
        self.mark_inbox(namespace, recipient, mark, seqs, now).await
    }

    async fn notifications_prune(
        &self,
        now: Timestamp,
        before: Timestamp,
        limit: u32,
    ) -> Result<u64, Error> {
        self.client()
            .await?
            .execute(
                include_str!("../queries/notifications/prune.sql"),
                &[&now.as_millis(), &before.as_millis(), &i64::from(limit)],
            )
            .await
            .map_err(db)
    }
}

fn setting_from_row(r: &Row) -> Result<StoredSetting, Error> {
    Ok(StoredSetting {
        name: r.get(0),
        body: keel_store::codec::decode("notification setting", r.get::<_, &str>(1))?,
        created_at: Timestamp::from_millis(r.get(2)),
        updated_at: Timestamp::from_millis(r.get(3)),
    })
}
