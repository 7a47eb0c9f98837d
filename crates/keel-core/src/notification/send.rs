//! Sending: what a notification request may ask (`POST .../notifications`),
//! who it goes to, what each delivery's job carries to the sender, and one
//! attempt's record. The decisions that need stored settings (templates,
//! preferences, dedup) are the engine's and the store's; what is checked
//! here needs nothing but the request.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ChannelKind, ChannelSpec, MAX_KEY, RecipientSpec, Rendered};
use crate::flow::{FlowKey, Rate};
use crate::{
    ChannelName, Error, Namespace, NotificationId, QueueName, QueuePolicy, QueueRef, TemplateName,
    Timestamp,
};

/// Channels one notification may go out on.
pub const MAX_CHANNELS: usize = 8;
/// How long an `Idempotency-Key` answers with the notification it made.
pub const IDEMPOTENCY_WINDOW_MS: u64 = 24 * 3_600_000;
const MAX_INLINE: usize = 64 * 1024;
const QUEUE_PREFIX: &str = "keel.notify.";
/// The tag a Slack delivery's job carries: the Slack channel or member it
/// goes to, which Slack paces one message a second.
pub const SLACK_TARGET_TAG: &str = "keel.slack";
/// Attempts a delivery gets before it fails (and falls back).
pub const DELIVERY_ATTEMPTS: u32 = 6;
/// The longest a provider's call may take (SMTP's whole exchange, Slack's
/// and a webhook's answer): a delivery's lease outlives it.
pub const PROVIDER_TIMEOUT_MS: u64 = 15_000;

/// How long a sender holds a delivery of a channel of `kind`: past its
/// provider's timeout, and no longer, so that a delivery held by a node
/// that died goes again soon.
pub fn delivery_lease_ms(kind: ChannelKind) -> u64 {
    match kind {
        ChannelKind::InApp => 5_000,
        ChannelKind::Webhook | ChannelKind::Slack | ChannelKind::Email => {
            PROVIDER_TIMEOUT_MS + 5_000
        }
    }
}

/// The queue a channel's deliveries wait on: `keel.notify.{channel}`.
pub fn channel_queue(namespace: &Namespace, channel: &ChannelName) -> Result<QueueRef, Error> {
    let queue = QueueName::new(&format!("{QUEUE_PREFIX}{channel}")).map_err(|_| {
        Error::invalid(format!(
            "channel name {channel:?} is too long: at most {} characters",
            128 - QUEUE_PREFIX.len()
        ))
    })?;
    Ok(QueueRef {
        namespace: namespace.clone(),
        queue,
    })
}

/// The channel whose deliveries wait on `queue`, if it is one.
pub fn queue_channel(queue: &QueueName) -> Option<ChannelName> {
    ChannelName::new(queue.as_str().strip_prefix(QUEUE_PREFIX)?).ok()
}

/// A channel queue's policy: the channel's `rate_limit` over the whole
/// queue, and for Slack one message a second per Slack channel (a key's
/// rate, the key being the target the job is tagged with).
pub fn channel_policy(spec: &ChannelSpec) -> QueuePolicy {
    let per_second = |n: u32| Rate {
        limit: n,
        period_ms: 1000,
        burst: None,
    };
    let slack = spec.kind() == ChannelKind::Slack;
    QueuePolicy {
        max_attempts: Some(DELIVERY_ATTEMPTS),
        lease_ms: Some(delivery_lease_ms(spec.kind())),
        rate_limit: spec.rate_limit.map(|r| per_second(r.per_second)),
        key: slack.then(|| FlowKey::Tag(SLACK_TARGET_TAG.to_owned())),
        key_rate_limit: slack.then(|| per_second(1)),
        ..QueuePolicy::default()
    }
}

/// Whom a notification goes to: a recipient's id, or the addresses inline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum To {
    Id(String),
    Inline(RecipientSpec),
}

/// `POST /v1/namespaces/{ns}/notifications`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyRequest {
    /// A saved template's name; or give `subject` and `text` (and `html`)
    /// as they are to be sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub template: Option<TemplateName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<String>)]
    pub channels: Vec<ChannelName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub channel: Option<ChannelName>,
    pub to: To,
    /// What templates see as `data`: an object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Goes whatever the preferences say.
    #[serde(default)]
    pub critical: bool,
    /// At most one delivery per channel, recipient and key within the
    /// namespace's dedup window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_key: Option<String>,
    /// Not before this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_at: Option<Timestamp>,
    /// Collects notifications with this key and recipient, per channel,
    /// into one message sent when the window the first opened ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<DigestSpec>,
}

/// `"digest":{"key","window_ms"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DigestSpec {
    pub key: String,
    /// 1 s to a day.
    pub window_ms: u64,
}

/// The longest a digest collects.
pub const MAX_DIGEST_WINDOW_MS: u64 = 24 * 3_600_000;

/// What the sender of a digest needs to render it with everything it
/// collected: the template (none: the parts as sent) and what templates
/// saw when the first notification was accepted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DigestPlan {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateName>,
    pub context: Value,
}

impl NotifyRequest {
    /// What can be checked without the stored settings.
    pub fn check(&self) -> Result<(), Error> {
        let inline = self.subject.is_some() || self.text.is_some() || self.html.is_some();
        match (&self.template, inline) {
            (Some(_), true) => {
                return Err(Error::invalid(
                    "give a template or subject and text, not both",
                ));
            }
            (None, false) => return Err(Error::invalid("give a template, or subject and text")),
            (None, true) if self.subject.is_none() || self.text.is_none() => {
                return Err(Error::invalid(
                    "a notification without a template needs subject and text",
                ));
            }
            _ => {}
        }
        let inline_bytes = [&self.subject, &self.text, &self.html]
            .iter()
            .filter_map(|p| p.as_ref().map(String::len))
            .sum::<usize>();
        if inline_bytes > MAX_INLINE {
            return Err(Error::invalid(format!(
                "subject, text and html hold at most {MAX_INLINE} bytes together"
            )));
        }
        let channels = self.channels();
        if channels.is_empty() || channels.len() > MAX_CHANNELS {
            return Err(Error::invalid(format!(
                "give channel, or channels: 1 to {MAX_CHANNELS} of them"
            )));
        }
        if !self.channels.is_empty() && self.channel.is_some() {
            return Err(Error::invalid("give channel or channels, not both"));
        }
        if (1..channels.len()).any(|i| channels[..i].contains(&channels[i])) {
            return Err(Error::invalid("channels must not repeat"));
        }
        match &self.to {
            To::Id(id) => super::check_recipient_id(id)?,
            // `{}` is the channel's own target (a Slack webhook's channel,
            // a webhook endpoint); a channel that needs an address the
            // recipient lacks fails that delivery as unreachable.
            To::Inline(spec) => spec.check()?,
        }
        if self.data.as_ref().is_some_and(|d| !d.is_object()) {
            return Err(Error::invalid("data must be an object"));
        }
        if let Some(digest) = &self.digest {
            if digest.key.is_empty() || digest.key.len() > MAX_KEY {
                return Err(Error::invalid(format!(
                    "digest.key must be 1 to {MAX_KEY} bytes"
                )));
            }
            if !(1000..=MAX_DIGEST_WINDOW_MS).contains(&digest.window_ms) {
                return Err(Error::invalid(format!(
                    "digest.window_ms must be from 1000 to {MAX_DIGEST_WINDOW_MS} (a day)"
                )));
            }
            if self.dedup_key.is_some() {
                return Err(Error::invalid(
                    "a digested notification takes no dedup_key (the digest's key holds it)",
                ));
            }
        }
        for (field, value) in [("category", &self.category), ("dedup_key", &self.dedup_key)] {
            if value
                .as_ref()
                .is_some_and(|v| v.is_empty() || v.len() > MAX_KEY)
            {
                return Err(Error::invalid(format!(
                    "{field} must be 1 to {MAX_KEY} bytes"
                )));
            }
        }
        Ok(())
    }

    /// The channels asked for, in order.
    pub fn channels(&self) -> Vec<ChannelName> {
        match &self.channel {
            Some(one) => vec![one.clone()],
            None => self.channels.clone(),
        }
    }

    /// The content given inline, sent as it is (no template syntax).
    pub fn inline(&self) -> Option<Rendered> {
        self.template.is_none().then(|| Rendered {
            subject: self.subject.clone(),
            text: self.text.clone(),
            html: self.html.clone(),
            slack_blocks: None,
            in_app: None,
        })
    }
}

/// Where a delivery goes, as the sender needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    /// The recipient's id, or `inline:` and its first address.
    pub recipient: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack_user: Option<String>,
}

impl Address {
    /// A saved recipient's, or an inline one's (named by its address, so
    /// that its dedup keys hold across requests).
    pub fn of(to: &To, saved: Option<&RecipientSpec>) -> Address {
        match (to, saved) {
            (To::Id(id), Some(spec)) => Address {
                recipient: id.clone(),
                email: spec.email.clone(),
                slack_user: spec.slack_user.clone(),
            },
            (To::Id(id), None) => Address {
                recipient: id.clone(),
                ..Address::default()
            },
            (To::Inline(spec), _) => Address {
                recipient: format!(
                    "inline:{}",
                    spec.email
                        .as_deref()
                        .or(spec.slack_user.as_deref())
                        .unwrap_or("")
                ),
                email: spec.email.clone(),
                slack_user: spec.slack_user.clone(),
            },
        }
    }
}

/// What a delivery's job carries: everything the sender needs, fixed when
/// the notification was accepted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dispatch {
    pub notification: NotificationId,
    pub channel: ChannelName,
    pub to: Address,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default)]
    pub critical: bool,
    pub content: Rendered,
    /// The data the notification was sent with (a webhook carries it).
    #[serde(default)]
    pub data: Value,
    /// The channels still to fall back to, in order, if this one fails.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallback: Vec<ChannelName>,
    /// A digest's first notification: rendered again, when sent, with
    /// everything the digest collected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<DigestPlan>,
}

/// One attempt at a delivery, as recorded with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeliveryAttempt {
    pub at: Timestamp,
    /// `sent`, `failed`, `retry` (failed, to be tried again) or `unknown`.
    pub outcome: String,
    /// What the provider answered (a status and the first bytes), or the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    pub latency_ms: u64,
}
