//! Notifications: the settings that say how a message reaches someone —
//! channels (e-mail, Slack, a signed webhook endpoint, the in-app inbox),
//! templates, recipients and preferences — each checked by the core
//! (`keel_core::notification`) before it is stored; a channel's secrets are
//! stored and never answered again. Accepting a notification is
//! `accept.rs`; sending its deliveries, the notifier service's
//! (`services/notifier.rs`) through `email.rs`, `slack.rs` and `webhook.rs`;
//! the in-app inbox is `inbox.rs`; one-click unsubscribe links,
//! `unsubscribe.rs`; digests, `digest.rs`.

mod accept;
mod digest;
pub(crate) mod email;
mod inbox;
mod settings;
pub(crate) mod slack;
mod unsubscribe;
pub(crate) mod webhook;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use keel_core::notification::{
    ChannelSpec, Preferences, RecipientSpec, TemplateSpec, channel_policy, channel_queue,
    check_recipient_id,
};
use keel_core::notification::{DeliveryAttempt, DeliveryStatus};
use keel_core::{
    ChannelName, Clock, Error, JobId, JobIdGenerator, Namespace, TemplateName, Timestamp,
};
use keel_store::{
    DeliveryMove, Notification, NotificationQuery, NotificationStore, Setting, StoredSetting,
    notification_not_found, setting_not_found,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

pub use accept::answered_id;
pub(crate) use accept::{delivery_job, unreachable};
pub use inbox::InboxPageAnswer;
pub(crate) use inbox::in_app_content;
pub use unsubscribe::Unsubscribe;

use crate::endpoints::EndpointService;
use crate::outbound::Guard;
use crate::queues::QueueService;
use crate::topics::TopicService;

/// Most settings of a kind in one page.
pub const MAX_PAGE: u32 = 500;

/// What one attempt at a delivery came to, with what the provider said and
/// how long it took (ms).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Sent {
    Ok(String, u64),
    /// Certainly not delivered; try again (after the provider's wait, ms).
    Retry(String, u64, Option<u64>),
    /// Certainly not delivered, and never will be.
    Failed(String, u64),
    /// May have been delivered.
    Unknown(String, u64),
}

/// A setting as answered: its body typed, secrets hidden for a channel.
#[derive(Clone, Debug, PartialEq)]
pub struct Named<T> {
    pub name: String,
    pub spec: T,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

pub struct NotificationService {
    pub(crate) store: Arc<dyn NotificationStore>,
    pub(crate) clock: Arc<dyn Clock>,
    /// A channel's queue takes its policy (rates, attempts) from the channel.
    queues: Arc<QueueService>,
    /// Where failovers are reported (`keel.alerts`).
    pub(crate) topics: Arc<TopicService>,
    /// A webhook channel sends as its endpoint.
    pub(crate) endpoints: Arc<EndpointService>,
    pub(crate) guard: Guard,
    ids: Mutex<JobIdGenerator>,
    /// Wakes the notifier when channels change here.
    pub(crate) channels_woken: Notify,
    /// This node's inbox streams, by recipient: woken when a message is
    /// written here.
    inbox_watches: Mutex<HashMap<(Namespace, String), Weak<Notify>>>,
    /// Whether every write is this node's (embedded): then a stream needs
    /// no look for messages written elsewhere.
    sole_writer: bool,
    /// Where unsubscribe links point (`--public-url`).
    public_url: Option<String>,
    /// The key unsubscribe links are signed with, once read.
    unsubscribe_key: OnceLock<ring::hmac::Key>,
    /// This node's copies of settings (`settings.rs`).
    copies: settings::Copies,
}

/// What the notification service is built from.
pub(crate) struct NotificationDeps {
    pub(crate) store: Arc<dyn NotificationStore>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) queues: Arc<QueueService>,
    pub(crate) topics: Arc<TopicService>,
    pub(crate) endpoints: Arc<EndpointService>,
    pub(crate) guard: Guard,
    pub(crate) sole_writer: bool,
    pub(crate) public_url: Option<String>,
}

impl NotificationService {
    pub(crate) fn new(deps: NotificationDeps) -> Self {
        NotificationService {
            store: deps.store,
            clock: deps.clock,
            queues: deps.queues,
            topics: deps.topics,
            endpoints: deps.endpoints,
            guard: deps.guard,
            ids: Mutex::new(JobIdGenerator::default()),
            channels_woken: Notify::new(),
            inbox_watches: Mutex::new(HashMap::new()),
            sole_writer: deps.sole_writer,
            public_url: deps.public_url,
            unsubscribe_key: OnceLock::new(),
            copies: settings::Copies::default(),
        }
    }

    /// A delivery's job ended without the notifier's ack (cancelled, or
    /// its lease expired on its last attempt): a delivery still queued
    /// failed; one caught `sending` may have gone (`unknown`).
    pub(crate) fn job_ended_unsent(self: &Arc<Self>, namespace: &Namespace, delivery: JobId) {
        let (this, namespace) = (self.clone(), namespace.clone());
        tokio::spawn(async move {
            let now = this.clock.now();
            let settle = |from, to, said: &str| DeliveryMove {
                id: delivery,
                from: vec![from],
                to,
                attempt: Some(DeliveryAttempt {
                    at: now,
                    outcome: to.as_str().to_owned(),
                    answer: Some(said.to_owned()),
                    latency_ms: 0,
                }),
                then: None,
            };
            let moves = [
                settle(
                    DeliveryStatus::Queued,
                    DeliveryStatus::Failed,
                    "its job ended unsent (cancelled, or no attempt finished)",
                ),
                settle(
                    DeliveryStatus::Sending,
                    DeliveryStatus::Unknown,
                    "its job ended while it was being sent",
                ),
            ];
            for change in moves {
                if let Err(e) = this.store.delivery_move(&namespace, change, now).await {
                    tracing::warn!(%namespace, %delivery, error = %e, "cannot settle a delivery whose job ended");
                }
            }
        });
    }

    pub async fn get_notification(
        &self,
        namespace: &Namespace,
        id: &keel_core::NotificationId,
    ) -> Result<Notification, Error> {
        self.store
            .notification_get(namespace, id)
            .await?
            .ok_or_else(|| notification_not_found(id))
    }

    pub async fn list_notifications(
        &self,
        namespace: &Namespace,
        query: &NotificationQuery,
    ) -> Result<Vec<Notification>, Error> {
        if !(1..=MAX_PAGE).contains(&query.limit) {
            return Err(Error::invalid(format!(
                "limit must be between 1 and {MAX_PAGE}"
            )));
        }
        self.store.notifications_list(namespace, query).await
    }

    pub(crate) async fn put<T: Serialize>(
        &self,
        namespace: &Namespace,
        kind: Setting,
        name: &str,
        spec: &T,
    ) -> Result<(StoredSetting, bool), Error> {
        let body = serde_json::to_value(spec).map_err(|e| Error::internal(e.to_string()))?;
        let put = self
            .store
            .setting_put(namespace, kind, name, &body, self.clock.now())
            .await;
        self.forget(namespace, &[kind], name);
        put
    }

    pub(crate) async fn get<T: DeserializeOwned>(
        &self,
        namespace: &Namespace,
        kind: Setting,
        name: &str,
    ) -> Result<Named<T>, Error> {
        let stored = self
            .setting(namespace, kind, name)
            .await?
            .ok_or_else(|| setting_not_found(kind, name))?;
        typed(stored)
    }

    pub(crate) async fn list<T: DeserializeOwned>(
        &self,
        namespace: &Namespace,
        kind: Setting,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Named<T>>, Error> {
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(Error::invalid(format!(
                "limit must be between 1 and {MAX_PAGE}"
            )));
        }
        self.store
            .settings_list(namespace, kind, after, limit)
            .await?
            .into_iter()
            .map(typed)
            .collect()
    }

    pub(crate) async fn delete(
        &self,
        namespace: &Namespace,
        kinds: &[Setting],
        name: &str,
    ) -> Result<(), Error> {
        let deleted = self.store.setting_delete(namespace, kinds, name).await;
        self.forget(namespace, kinds, name);
        if deleted? {
            Ok(())
        } else {
            Err(setting_not_found(kinds[0], name))
        }
    }

    /// Creates or replaces a channel; true when new. The answer hides its secrets.
    pub async fn channel_put(
        &self,
        namespace: &Namespace,
        name: &ChannelName,
        spec: &ChannelSpec,
    ) -> Result<(Named<ChannelSpec>, bool), Error> {
        spec.check(name)?;
        if let Some(webhook) = &spec.webhook {
            self.endpoints.get(namespace, &webhook.endpoint).await?;
        }
        self.queues
            .set_own_policy(&channel_queue(namespace, name)?, channel_policy(spec))
            .await?;
        let (stored, created) = self
            .put(namespace, Setting::Channel, name.as_str(), spec)
            .await?;
        self.channels_woken.notify_waiters();
        Ok((redacted(typed(stored)?), created))
    }

    /// A channel with its secrets hidden.
    pub async fn channel_get(
        &self,
        namespace: &Namespace,
        name: &ChannelName,
    ) -> Result<Named<ChannelSpec>, Error> {
        Ok(redacted(
            self.get(namespace, Setting::Channel, name.as_str()).await?,
        ))
    }

    pub async fn channels_list(
        &self,
        namespace: &Namespace,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Named<ChannelSpec>>, Error> {
        Ok(self
            .list(namespace, Setting::Channel, after, limit)
            .await?
            .into_iter()
            .map(redacted)
            .collect())
    }

    pub async fn channel_delete(
        &self,
        namespace: &Namespace,
        name: &ChannelName,
    ) -> Result<(), Error> {
        self.delete(namespace, &[Setting::Channel], name.as_str())
            .await?;
        self.channels_woken.notify_waiters();
        Ok(())
    }

    /// Creates or replaces a template, refused (with the part and line)
    /// when any part does not parse; true when new.
    pub async fn template_put(
        &self,
        namespace: &Namespace,
        name: &TemplateName,
        spec: &TemplateSpec,
    ) -> Result<(Named<TemplateSpec>, bool), Error> {
        spec.check()?;
        let (stored, created) = self
            .put(namespace, Setting::Template, name.as_str(), spec)
            .await?;
        Ok((typed(stored)?, created))
    }

    pub async fn template_get(
        &self,
        namespace: &Namespace,
        name: &TemplateName,
    ) -> Result<Named<TemplateSpec>, Error> {
        self.get(namespace, Setting::Template, name.as_str()).await
    }

    pub async fn templates_list(
        &self,
        namespace: &Namespace,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Named<TemplateSpec>>, Error> {
        self.list(namespace, Setting::Template, after, limit).await
    }

    pub async fn template_delete(
        &self,
        namespace: &Namespace,
        name: &TemplateName,
    ) -> Result<(), Error> {
        self.delete(namespace, &[Setting::Template], name.as_str())
            .await
    }

    /// Creates or replaces a recipient; true when new.
    pub async fn recipient_put(
        &self,
        namespace: &Namespace,
        id: &str,
        spec: &RecipientSpec,
    ) -> Result<(Named<RecipientSpec>, bool), Error> {
        check_recipient_id(id)?;
        spec.check()?;
        let (stored, created) = self.put(namespace, Setting::Recipient, id, spec).await?;
        Ok((typed(stored)?, created))
    }

    pub async fn recipient_get(
        &self,
        namespace: &Namespace,
        id: &str,
    ) -> Result<Named<RecipientSpec>, Error> {
        self.get(namespace, Setting::Recipient, id).await
    }

    pub async fn recipients_list(
        &self,
        namespace: &Namespace,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Named<RecipientSpec>>, Error> {
        self.list(namespace, Setting::Recipient, after, limit).await
    }

    /// Deletes a recipient and its preferences together.
    pub async fn recipient_delete(&self, namespace: &Namespace, id: &str) -> Result<(), Error> {
        self.delete(namespace, &[Setting::Recipient, Setting::Preferences], id)
            .await
    }

    /// Sets the namespace's default preferences (`recipient` none) or one
    /// recipient's, which must exist.
    pub async fn preferences_put(
        &self,
        namespace: &Namespace,
        recipient: Option<&str>,
        preferences: &Preferences,
    ) -> Result<Preferences, Error> {
        preferences.check()?;
        if recipient.is_some() && preferences.dedup_window_ms.is_some() {
            return Err(Error::invalid(
                "dedup_window_ms is the namespace's: PUT .../preferences",
            ));
        }
        if let Some(id) = recipient {
            self.recipient_get(namespace, id).await?;
        }
        let (stored, _) = self
            .put(
                namespace,
                Setting::Preferences,
                recipient.unwrap_or(""),
                preferences,
            )
            .await?;
        Ok(typed::<Preferences>(stored)?.spec)
    }

    /// The namespace's defaults or one recipient's own (empty when never set).
    pub async fn preferences_get(
        &self,
        namespace: &Namespace,
        recipient: Option<&str>,
    ) -> Result<Preferences, Error> {
        if let Some(id) = recipient {
            self.recipient_get(namespace, id).await?;
        }
        match self
            .setting(namespace, Setting::Preferences, recipient.unwrap_or(""))
            .await?
        {
            Some(stored) => Ok(typed::<Preferences>(stored)?.spec),
            None => Ok(Preferences::default()),
        }
    }
}

fn typed<T: DeserializeOwned>(stored: StoredSetting) -> Result<Named<T>, Error> {
    Ok(Named {
        spec: serde_json::from_value(stored.body).map_err(|e| {
            Error::internal(format!("a stored notification setting does not read: {e}"))
        })?,
        name: stored.name,
        created_at: stored.created_at,
        updated_at: stored.updated_at,
    })
}

fn redacted(mut channel: Named<ChannelSpec>) -> Named<ChannelSpec> {
    channel.spec = channel.spec.redacted();
    channel
}
