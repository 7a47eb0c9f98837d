//! Accepting a notification: the request is resolved against the stored
//! settings (channels, the recipient, the template, preferences), rendered
//! once, and handed to the store as one write: the notification, a delivery
//! per channel, its dedup keys and the jobs of the deliveries that go
//! (docs/design.md, "Notifications: never twice"). A render error is a 400
//! now, never a failed delivery later.

use std::sync::PoisonError;

use keel_core::notification::{
    Address, ChannelKind, ChannelSpec, DELIVERY_ATTEMPTS, DeliveryStatus, DigestPlan, Dispatch,
    IDEMPOTENCY_WINDOW_MS, NotifyRequest, Preferences, RecipientSpec, SLACK_TARGET_TAG, To,
    allowed, channel_queue, delivery_lease_ms,
};
use keel_core::{
    ChannelName, Error, ErrorCode, JobId, Namespace, NewJob, NotificationId, Timestamp,
};
use keel_store::{Accepted, Hold, JobOwner, NewDelivery, NewNotification, OwnedJob, RequestKey};
use serde_json::{Value, json};

use super::NotificationService;

/// The longest `Idempotency-Key`.
const MAX_REQUEST_KEY: usize = 255;

impl NotificationService {
    /// Accepts a notification (`POST .../notifications`); `request_key` is
    /// its `Idempotency-Key`, if any.
    pub async fn send(
        &self,
        namespace: &Namespace,
        request: &NotifyRequest,
        request_key: Option<&str>,
    ) -> Result<Accepted, Error> {
        request.check()?;
        if request_key.is_some_and(|k| k.is_empty() || k.len() > MAX_REQUEST_KEY) {
            return Err(Error::invalid(format!(
                "Idempotency-Key must be 1 to {MAX_REQUEST_KEY} bytes"
            )));
        }
        let now = self.clock.now();
        let mut channels = Vec::new();
        for name in request.channels() {
            channels.push((name.clone(), self.channel_spec(namespace, &name).await?));
        }
        let saved = match &request.to {
            To::Id(id) => Some(self.recipient_get(namespace, id).await?.spec),
            To::Inline(_) => None,
        };
        let to = Address::of(&request.to, saved.as_ref());
        let id = self
            .ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .next_notification(now);
        let data = request.data.clone().unwrap_or_else(|| json!({}));
        let context = json!({
            "data": data,
            "recipient": recipient_context(&to, saved.as_ref()),
            "notification": {"id": id, "category": request.category},
        });
        let content = match (&request.template, request.inline()) {
            (_, Some(inline)) => inline,
            (Some(name), None) => {
                // A digest's template sees itself as the digest's one item.
                let mut first = context.clone();
                if let Some(digest) = &request.digest {
                    first["digest"] = digest_context(&digest.key, &[(id, &data, None)]);
                }
                self.template_get(namespace, name)
                    .await?
                    .spec
                    .render(&first)?
            }
            (None, None) => return Err(Error::invalid("give a template, or subject and text")),
        };
        let plan = request.digest.as_ref().map(|d| DigestPlan {
            key: d.key.clone(),
            template: request.template.clone(),
            context: context.clone(),
        });
        let defaults = self.preferences_get(namespace, None).await?;
        let own = match &request.to {
            To::Id(rid) => self.preferences_get(namespace, Some(rid)).await?,
            To::Inline(_) => Preferences::default(),
        };
        let mut run_at = request.send_at.map_or(now, |at| at.max(now));
        if let Some(digest) = &request.digest {
            // The first of a digest goes when its window ends.
            run_at = run_at.plus_ms(digest.window_ms);
        }
        let mut deliveries = Vec::with_capacity(channels.len());
        for (name, spec) in &channels {
            let delivery = self.delivery_id(now);
            let status = if !allowed(
                &defaults,
                &own,
                request.category.as_deref(),
                name.as_str(),
                request.critical,
            ) {
                DeliveryStatus::SuppressedPreference
            } else if unreachable(spec, &to).is_some() {
                DeliveryStatus::Failed
            } else {
                DeliveryStatus::Queued
            };
            let job = (status == DeliveryStatus::Queued)
                .then(|| {
                    let dispatch = Dispatch {
                        notification: id,
                        channel: name.clone(),
                        to: to.clone(),
                        category: request.category.clone(),
                        critical: request.critical,
                        content: content.clone(),
                        data: data.clone(),
                        fallback: spec.fallback.clone(),
                        digest: plan.clone(),
                    };
                    delivery_job(namespace, spec, delivery, &dispatch, run_at)
                })
                .transpose()?;
            deliveries.push(NewDelivery {
                id: delivery,
                channel: name.to_string(),
                status,
                fallback_of: None,
                job,
            });
        }
        let body = json!({
            "template": request.template,
            "to": request.to,
            "data": data,
            "critical": request.critical,
            "dedup_key": request.dedup_key,
            "send_at": request.send_at,
            "digest": request.digest,
            "content": content,
        });
        let request_key = request_key
            .map(|key| {
                Ok::<_, Error>(RequestKey {
                    key: key.to_owned(),
                    digest: digest(request)?,
                    expires_at: now.plus_ms(IDEMPOTENCY_WINDOW_MS),
                })
            })
            .transpose()?;
        let accepted = self
            .store
            .notification_accept(
                NewNotification {
                    namespace: namespace.clone(),
                    id,
                    recipient: to.recipient.clone(),
                    category: request.category.clone(),
                    body,
                    request: request_key,
                    hold: hold(request, now, &defaults),
                    deliveries,
                },
                now,
            )
            .await?;
        self.channels_woken.notify_waiters();
        Ok(accepted)
    }

    pub(crate) fn delivery_id(&self, now: Timestamp) -> JobId {
        self.ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .next(now)
    }

    /// A channel's whole spec, secrets included (for sending only).
    pub(crate) async fn channel_spec(
        &self,
        namespace: &Namespace,
        name: &ChannelName,
    ) -> Result<ChannelSpec, Error> {
        self.get::<ChannelSpec>(namespace, keel_store::Setting::Channel, name.as_str())
            .await
            .map(|named| named.spec)
    }
}

/// The job of a delivery, owned by its notification: its id is the
/// delivery's; a Slack one is tagged with the Slack target it is paced by.
pub(crate) fn delivery_job(
    namespace: &Namespace,
    spec: &ChannelSpec,
    delivery: JobId,
    dispatch: &Dispatch,
    run_at: Timestamp,
) -> Result<OwnedJob, Error> {
    let payload = serde_json::value::to_raw_value(dispatch)
        .map_err(|e| Error::internal(format!("a delivery does not encode: {e}")))?;
    let mut job = NewJob::new(payload, run_at);
    job.max_attempts = DELIVERY_ATTEMPTS;
    job.lease_ms = delivery_lease_ms(spec.kind());
    if let Some(slack) = &spec.slack {
        let target = slack
            .channel
            .clone()
            .or_else(|| dispatch.to.slack_user.clone())
            .unwrap_or_else(|| "webhook".to_owned());
        job.tags.insert(SLACK_TARGET_TAG.to_owned(), target);
    }
    Ok(OwnedJob {
        queue: channel_queue(namespace, &dispatch.channel)?,
        id: delivery,
        job,
        owner: Some(JobOwner::Notification {
            notification: dispatch.notification,
        }),
    })
}

/// Why a channel cannot reach an address, if it cannot.
pub(crate) fn unreachable(spec: &ChannelSpec, to: &Address) -> Option<&'static str> {
    match spec.kind() {
        ChannelKind::Email if to.email.is_none() => Some("the recipient has no e-mail address"),
        ChannelKind::Slack
            if spec.slack.as_ref().is_some_and(|s| {
                s.webhook_url.is_none() && s.channel.is_none() && to.slack_user.is_none()
            }) =>
        {
            Some("the recipient has no slack_user and the channel names no Slack channel")
        }
        _ => None,
    }
}

/// The key the request's deliveries take: its digest's (for the digest's
/// window) or its dedup key (for the namespace's window).
fn hold(request: &NotifyRequest, now: Timestamp, defaults: &Preferences) -> Option<Hold> {
    match (&request.digest, &request.dedup_key) {
        (Some(digest), _) => Some(Hold {
            key: format!("digest:{}", digest.key),
            expires_at: now.plus_ms(digest.window_ms),
            held: DeliveryStatus::Digested,
        }),
        (None, Some(key)) => Some(Hold {
            key: key.clone(),
            expires_at: now.plus_ms(defaults.dedup_window_ms()),
            held: DeliveryStatus::SuppressedDuplicate,
        }),
        (None, None) => None,
    }
}

/// What a digest's template sees as `digest`: its key, how many it holds
/// and each one's id, data and (once accepted) content.
pub(crate) fn digest_context(
    key: &str,
    items: &[(NotificationId, &Value, Option<&Value>)],
) -> Value {
    json!({
        "key": key,
        "count": items.len(),
        "items": items.iter().map(|(id, data, content)| json!({
            "id": id, "data": data, "content": content,
        })).collect::<Vec<_>>(),
    })
}

/// What templates see as `recipient`.
fn recipient_context(to: &Address, saved: Option<&RecipientSpec>) -> Value {
    json!({
        "id": to.recipient,
        "email": to.email,
        "slack_user": to.slack_user,
        "locale": saved.and_then(|s| s.locale.clone()),
        "timezone": saved.and_then(|s| s.timezone.clone()),
        "data": saved.and_then(|s| s.data.clone()).unwrap_or_else(|| json!({})),
    })
}

/// A request's fingerprint for its `Idempotency-Key`: SHA-256 of its
/// canonical JSON.
fn digest(request: &NotifyRequest) -> Result<String, Error> {
    let bytes = serde_json::to_vec(request).map_err(|e| {
        Error::new(
            ErrorCode::Internal,
            format!("a request does not encode: {e}"),
        )
    })?;
    let hash = ring::digest::digest(&ring::digest::SHA256, &bytes);
    Ok(hash.as_ref().iter().map(|b| format!("{b:02x}")).collect())
}

/// The id an accepted request is answered with.
pub fn answered_id(accepted: &Accepted) -> NotificationId {
    match accepted {
        Accepted::New(n) | Accepted::Replayed(n) => n.id,
        Accepted::Duplicate { first, .. } => *first,
    }
}
