//! Notifications on SQLite: settings one row each, the body as JSON; the
//! traffic (notifications, deliveries, the inbox) is `traffic.rs`.

mod traffic;

use async_trait::async_trait;
use keel_core::notification::{DeliveryAttempt, DeliveryStatus};
use keel_core::{Error, JobId, Namespace, NotificationId, Timestamp};
use keel_store::{
    Accepted, Delivery, DeliveryMove, InboxMark, InboxMessage, InboxPage, NewInboxMessage,
    NewNotification, Notification, NotificationQuery, NotificationStore, Setting, StoredSetting,
};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};
use serde_json::Value;

use crate::SqliteStore;
use crate::rows::{from_json, to_json};
use crate::writer::Writer;

const COLUMNS: &str = "name, body, created_at, updated_at";

#[async_trait]
impl NotificationStore for SqliteStore {
    async fn setting_put(
        &self,
        namespace: &Namespace,
        kind: Setting,
        name: &str,
        body: &Value,
        now: Timestamp,
    ) -> Result<(StoredSetting, bool), Error> {
        let (namespace, name, body) = (namespace.clone(), name.to_owned(), body.clone());
        self.write(move |w: &mut Writer| {
            let conn = &w.conn;
            let text = to_json("notification setting", &body)?;
            let created =
                conn.prepare_cached(
                    "INSERT INTO notification_settings \
                     (namespace, kind, name, body, created_at, updated_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5) ON CONFLICT DO NOTHING",
                )?
                .execute(params![
                    namespace.as_str(),
                    kind.as_str(),
                    name,
                    text,
                    now.as_millis()
                ])? == 1;
            if !created {
                conn.prepare_cached(
                    "UPDATE notification_settings SET body = ?4, updated_at = ?5 \
                     WHERE namespace = ?1 AND kind = ?2 AND name = ?3 AND body <> ?4",
                )?
                .execute(params![
                    namespace.as_str(),
                    kind.as_str(),
                    name,
                    text,
                    now.as_millis()
                ])?;
            }
            let stored = setting_row(conn, &namespace, kind, &name)?;
            Ok(stored
                .map(|s| (s, created))
                .ok_or_else(|| keel_store::setting_not_found(kind, &name)))
        })
        .await
    }

    async fn setting_get(
        &self,
        namespace: &Namespace,
        kind: Setting,
        name: &str,
    ) -> Result<Option<StoredSetting>, Error> {
        let (namespace, name) = (namespace.clone(), name.to_owned());
        self.read(move |conn| Ok(Ok(setting_row(conn, &namespace, kind, &name)?)))
            .await
    }

    async fn settings_list(
        &self,
        namespace: &Namespace,
        kind: Setting,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StoredSetting>, Error> {
        let (namespace, after) = (namespace.clone(), after.map(str::to_owned));
        self.read(move |conn| {
            let settings = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM notification_settings \
                     WHERE namespace = ?1 AND kind = ?2 AND (?3 IS NULL OR name > ?3) \
                     ORDER BY name LIMIT ?4"
                ))?
                .query_map(
                    params![namespace.as_str(), kind.as_str(), after, limit],
                    setting_from_row,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Ok(settings))
        })
        .await
    }

    async fn setting_delete(
        &self,
        namespace: &Namespace,
        kinds: &[Setting],
        name: &str,
    ) -> Result<bool, Error> {
        let (namespace, name) = (namespace.clone(), name.to_owned());
        let kinds: Vec<&'static str> = kinds.iter().map(|k| k.as_str()).collect();
        self.write(move |w: &mut Writer| {
            let slots = vec!["?"; kinds.len()].join(", ");
            let mut values = vec![
                SqlValue::from(namespace.as_str().to_owned()),
                SqlValue::from(name),
            ];
            values.extend(kinds.iter().map(|k| SqlValue::from((*k).to_owned())));
            let gone = w
                .conn
                .prepare_cached(&format!(
                    "DELETE FROM notification_settings \
                     WHERE namespace = ? AND name = ? AND kind IN ({slots})"
                ))?
                .execute(params_from_iter(values))?;
            Ok(Ok(gone > 0))
        })
        .await
    }

    async fn notification_accept(
        &self,
        notification: NewNotification,
        now: Timestamp,
    ) -> Result<Accepted, Error> {
        self.write(move |w: &mut Writer| traffic::accept(w, notification, now))
            .await
    }

    async fn notification_get(
        &self,
        namespace: &Namespace,
        id: &NotificationId,
    ) -> Result<Option<Notification>, Error> {
        let (namespace, id) = (namespace.clone(), *id);
        self.read(move |conn| Ok(Ok(traffic::notification(conn, &namespace, &id)?)))
            .await
    }

    async fn notifications_digested(
        &self,
        namespace: &Namespace,
        holder: &NotificationId,
        channel: &str,
        limit: u32,
    ) -> Result<Vec<Notification>, Error> {
        let (namespace, holder, channel) = (namespace.clone(), *holder, channel.to_owned());
        self.read(move |conn| {
            Ok(Ok(traffic::digested(
                conn, &namespace, &holder, &channel, limit,
            )?))
        })
        .await
    }

    async fn notifications_list(
        &self,
        namespace: &Namespace,
        query: &NotificationQuery,
    ) -> Result<Vec<Notification>, Error> {
        let (namespace, query) = (namespace.clone(), query.clone());
        self.read(move |conn| Ok(Ok(traffic::list(conn, &namespace, &query)?)))
            .await
    }

    async fn delivery_get(
        &self,
        namespace: &Namespace,
        id: &JobId,
    ) -> Result<Option<Delivery>, Error> {
        let (namespace, id) = (namespace.clone(), *id);
        self.read(move |conn| Ok(Ok(traffic::delivery(conn, &namespace, &id)?)))
            .await
    }

    async fn delivery_move(
        &self,
        namespace: &Namespace,
        change: DeliveryMove,
        now: Timestamp,
    ) -> Result<DeliveryStatus, Error> {
        let namespace = namespace.clone();
        self.write(move |w: &mut Writer| traffic::move_delivery(w, &namespace, change, now))
            .await
    }

    async fn inbox_put(
        &self,
        namespace: &Namespace,
        message: NewInboxMessage,
        attempt: DeliveryAttempt,
        now: Timestamp,
    ) -> Result<u64, Error> {
        let namespace = namespace.clone();
        self.write(move |w: &mut Writer| traffic::inbox_put(w, &namespace, message, attempt, now))
            .await
    }

    async fn inbox_list(
        &self,
        namespace: &Namespace,
        recipient: &str,
        page: InboxPage,
        limit: u32,
    ) -> Result<(Vec<InboxMessage>, u64), Error> {
        let (namespace, recipient) = (namespace.clone(), recipient.to_owned());
        self.read(move |conn| {
            Ok(Ok(traffic::inbox_list(
                conn, &namespace, &recipient, page, limit,
            )?))
        })
        .await
    }

    async fn inbox_mark(
        &self,
        namespace: &Namespace,
        recipient: &str,
        mark: InboxMark,
        seqs: Option<Vec<u64>>,
        now: Timestamp,
    ) -> Result<u64, Error> {
        let (namespace, recipient) = (namespace.clone(), recipient.to_owned());
        self.write(move |w: &mut Writer| {
            Ok(Ok(traffic::inbox_mark(
                &w.conn, &namespace, &recipient, mark, seqs, now,
            )?))
        })
        .await
    }

    async fn notifications_prune(
        &self,
        now: Timestamp,
        before: Timestamp,
        limit: u32,
    ) -> Result<u64, Error> {
        self.write(move |w: &mut Writer| Ok(Ok(traffic::prune(&w.conn, now, before, limit)?)))
            .await
    }
}

fn setting_row(
    conn: &Connection,
    namespace: &Namespace,
    kind: Setting,
    name: &str,
) -> rusqlite::Result<Option<StoredSetting>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM notification_settings \
         WHERE namespace = ?1 AND kind = ?2 AND name = ?3"
    ))?
    .query_row(
        params![namespace.as_str(), kind.as_str(), name],
        setting_from_row,
    )
    .optional()
}

fn setting_from_row(r: &Row<'_>) -> rusqlite::Result<StoredSetting> {
    Ok(StoredSetting {
        name: r.get(0)?,
        body: from_json(&r.get::<_, String>(1)?)?,
        created_at: Timestamp::from_millis(r.get(2)?),
        updated_at: Timestamp::from_millis(r.get(3)?),
    })
}
