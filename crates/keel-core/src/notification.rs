//! Notifications: messages to people over e-mail, Slack, signed webhooks and
//! an in-app inbox, never sent twice. This module holds what is pure: a
//! channel's spec with its checks and the view of it that hides secrets, the
//! recipient and the preferences that decide whether a channel may carry a
//! category, and the states of a delivery. Templates are `template.rs`;
//! storing and sending are the store's and the engine's.

mod send;
mod template;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use send::{
    Address, DELIVERY_ATTEMPTS, DeliveryAttempt, DigestPlan, DigestSpec, Dispatch,
    IDEMPOTENCY_WINDOW_MS, MAX_CHANNELS, MAX_DIGEST_WINDOW_MS, NotifyRequest, PROVIDER_TIMEOUT_MS,
    SLACK_TARGET_TAG, To, channel_policy, channel_queue, delivery_lease_ms, queue_channel,
};
pub use template::{InAppTemplate, Rendered, TemplateSpec};

use crate::{EndpointName, Error};

/// The longest a notification's dedup key is kept by default: a week.
pub const DEFAULT_DEDUP_WINDOW_MS: u64 = 7 * 24 * 3_600_000;
/// The longest a namespace may keep them: 90 days.
pub const MAX_DEDUP_WINDOW_MS: u64 = 90 * 24 * 3_600_000;
const MAX_URL: usize = 2048;
const MAX_FALLBACK: usize = 8;
const MAX_ADDRESS: usize = 320;
const MAX_KEY: usize = 256;
/// The longest recipient id.
const MAX_RECIPIENT_ID: usize = 256;

/// A recipient's id: what the caller's own system calls the person.
pub fn check_recipient_id(id: &str) -> Result<(), Error> {
    if id.is_empty() || id.len() > MAX_RECIPIENT_ID || id.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "a recipient id is 1 to {MAX_RECIPIENT_ID} bytes with no control characters"
        )));
    }
    Ok(())
}

/// How an e-mail channel speaks TLS to its server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpTls {
    /// `smtps://`: TLS from the first byte (port 465 by default).
    Implicit,
    /// `smtp://`: STARTTLS, refused when the server does not offer it
    /// (port 587 by default).
    Required,
    /// `smtp://…?tls=opportunistic`: STARTTLS when offered.
    Opportunistic,
    /// `smtp://…?tls=none`: plain text, for a local relay or a test sink.
    None,
}

/// An SMTP server's address, read from a channel's `smtp_url`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpServer {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub user: Option<String>,
    pub password: Option<String>,
}

impl SmtpServer {
    /// `smtp://user:pass@host:587`, `smtps://host:465`, with `?tls=` for
    /// `opportunistic` or `none` on `smtp://`.
    pub fn parse(text: &str) -> Result<SmtpServer, Error> {
        let bad = |why: &str| Error::invalid(format!("email.smtp_url {why}"));
        if text.len() > MAX_URL {
            return Err(bad(&format!("is over {MAX_URL} bytes")));
        }
        let url = url::Url::parse(text).map_err(|e| bad(&format!("does not parse: {e}")))?;
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("has no host"))?
            .to_owned();
        let tls_param = url
            .query_pairs()
            .find(|(k, _)| k == "tls")
            .map(|(_, v)| v.into_owned());
        if url.query_pairs().any(|(k, _)| k != "tls") {
            return Err(bad("takes no query parameter but tls"));
        }
        let (tls, default_port) = match (url.scheme(), tls_param.as_deref()) {
            ("smtps", None) => (SmtpTls::Implicit, 465),
            ("smtp", None | Some("required")) => (SmtpTls::Required, 587),
            ("smtp", Some("opportunistic")) => (SmtpTls::Opportunistic, 587),
            ("smtp", Some("none")) => (SmtpTls::None, 25),
            ("smtp" | "smtps", Some(other)) => {
                return Err(bad(&format!(
                    "has tls={other:?}: smtp:// takes required, opportunistic or none"
                )));
            }
            (scheme, _) => return Err(bad(&format!("has scheme {scheme:?}, not smtp or smtps"))),
        };
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| bad("has a user or password that is not UTF-8"))
        };
        let user = match url.username() {
            "" => None,
            u => Some(decode(u)?),
        };
        let password = url.password().map(decode).transpose()?;
        Ok(SmtpServer {
            host,
            port: url.port().unwrap_or(default_port),
            tls,
            user,
            password,
        })
    }
}

/// A server's public address (`--public-url`): an http(s) base without a
/// query, answered without its trailing slash.
pub fn check_public_url(text: &str) -> Result<String, Error> {
    let ok = url::Url::parse(text)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.query().is_none());
    if !ok {
        return Err(Error::invalid(format!(
            "{text:?} is not an http(s) address without a query, as https://keel.example.com"
        )));
    }
    Ok(text.trim_end_matches('/').to_owned())
}

/// `"Name <a@b.example>"` or `"a@b.example"`: checked as one address.
pub fn check_mailbox(field: &str, text: &str) -> Result<(), Error> {
    let address = match (text.find('<'), text.strip_suffix('>')) {
        (Some(open), Some(rest)) => &rest[open + 1..],
        (None, None) => text,
        _ => return Err(Error::invalid(format!("{field} has an unclosed <"))),
    };
    let valid = text.len() <= MAX_ADDRESS
        && !text.chars().any(char::is_control)
        && address.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.is_empty()
                && !address.contains(char::is_whitespace)
                && !domain.contains('@')
        });
    if valid {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{field} must be an e-mail address, as \"a@b.example\" or \"Name <a@b.example>\""
        )))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailChannel {
    /// `smtp://user:pass@host:587` (STARTTLS) or `smtps://user:pass@host:465`.
    pub smtp_url: String,
    pub from: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// Send again a message whose hand-off was cut before the server's
    /// answer (it may then arrive twice). By default such a delivery is
    /// recorded `unknown` and left.
    #[serde(default)]
    pub retry_unknown: bool,
}

/// Slack, by an incoming webhook's URL or by a bot token and a channel
/// (`chat.postMessage`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SlackChannel {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The Web API's base for a bot token: `https://slack.com/api` when
    /// absent (a proxy's, or a stand-in's in tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookChannel {
    /// One of the namespace's endpoints: deliveries are signed and retried
    /// as its messages are.
    #[schema(value_type = String)]
    pub endpoint: EndpointName,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InAppChannel {}

/// At most this many messages a second leave through a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelRate {
    pub per_second: u32,
}

/// A channel as configured (`PUT .../channels/{name}`): exactly one of
/// `email`, `slack`, `webhook` and `in_app`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailChannel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<SlackChannel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookChannel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_app: Option<InAppChannel>,
    /// Channels tried in order when this one fails.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<String>)]
    pub fallback: Vec<crate::ChannelName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<ChannelRate>,
}

/// What a channel carries messages over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    Email,
    Slack,
    Webhook,
    InApp,
}

const HIDDEN: &str = "(hidden)";

impl ChannelKind {
    /// As the API names it (the serde form).
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Email => "email",
            ChannelKind::Slack => "slack",
            ChannelKind::Webhook => "webhook",
            ChannelKind::InApp => "in_app",
        }
    }
}

impl ChannelSpec {
    pub fn kind(&self) -> ChannelKind {
        match (&self.email, &self.slack, &self.webhook) {
            (Some(_), _, _) => ChannelKind::Email,
            (_, Some(_), _) => ChannelKind::Slack,
            (_, _, Some(_)) => ChannelKind::Webhook,
            _ => ChannelKind::InApp,
        }
    }

    pub fn check(&self, name: &crate::ChannelName) -> Result<(), Error> {
        let kinds = [
            self.email.is_some(),
            self.slack.is_some(),
            self.webhook.is_some(),
            self.in_app.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            return Err(Error::invalid(
                "a channel is exactly one of email, slack, webhook and in_app",
            ));
        }
        if let Some(email) = &self.email {
            SmtpServer::parse(&email.smtp_url)?;
            check_mailbox("email.from", &email.from)?;
            if let Some(reply_to) = &email.reply_to {
                check_mailbox("email.reply_to", reply_to)?;
            }
        }
        if let Some(slack) = &self.slack {
            let http = |url: &str| {
                (url.starts_with("https://") || url.starts_with("http://")) && url.len() <= MAX_URL
            };
            if slack.api_url.as_deref().is_some_and(|u| !http(u))
                || slack.api_url.is_some() && slack.bot_token.is_none()
            {
                return Err(Error::invalid(format!(
                    "slack.api_url goes with bot_token, an http(s) url of at most {MAX_URL} bytes"
                )));
            }
            match (&slack.webhook_url, &slack.bot_token, &slack.channel) {
                (Some(url), None, None) => {
                    if !http(url) {
                        return Err(Error::invalid(format!(
                            "slack.webhook_url must be an http(s) url of at most {MAX_URL} bytes"
                        )));
                    }
                }
                (None, Some(token), Some(channel)) => {
                    if token.is_empty() || token.len() > 512 || token.contains(char::is_whitespace)
                    {
                        return Err(Error::invalid("slack.bot_token is not a token"));
                    }
                    if channel.is_empty() || channel.len() > 128 {
                        return Err(Error::invalid("slack.channel must be 1 to 128 characters"));
                    }
                }
                _ => {
                    return Err(Error::invalid(
                        "slack takes either webhook_url, or bot_token and channel",
                    ));
                }
            }
        }
        if self.fallback.len() > MAX_FALLBACK {
            return Err(Error::invalid(format!(
                "fallback names at most {MAX_FALLBACK} channels"
            )));
        }
        if self.fallback.contains(name) {
            return Err(Error::invalid("a channel cannot be its own fallback"));
        }
        if self.rate_limit.is_some_and(|r| r.per_second == 0) {
            return Err(Error::invalid("rate_limit.per_second must be at least 1"));
        }
        Ok(())
    }

    /// The spec as `GET` shows it: the SMTP password, the Slack webhook's
    /// URL and the bot token never leave again.
    #[must_use]
    pub fn redacted(&self) -> ChannelSpec {
        let mut shown = self.clone();
        if let Some(email) = &mut shown.email
            && let Ok(mut url) = url::Url::parse(&email.smtp_url)
            && url.password().is_some()
            && url.set_password(Some(HIDDEN)).is_ok()
        {
            email.smtp_url = url.to_string();
        }
        if let Some(slack) = &mut shown.slack {
            if let Some(hook) = &mut slack.webhook_url {
                let origin = url::Url::parse(hook)
                    .map(|u| u.origin().ascii_serialization())
                    .unwrap_or_default();
                *hook = format!("{origin}/{HIDDEN}");
            }
            if let Some(token) = &mut slack.bot_token {
                *token = HIDDEN.to_owned();
            }
        }
        shown
    }
}

/// Someone notifications go to (`PUT .../recipients/{id}`), or given inline.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecipientSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// A Slack member id (`U…`), mentioned or messaged by a bot channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack_user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Anything templates may use as `recipient.data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
}

impl RecipientSpec {
    pub fn check(&self) -> Result<(), Error> {
        if let Some(email) = &self.email {
            check_mailbox("email", email)?;
        }
        if self
            .slack_user
            .as_ref()
            .is_some_and(|u| u.is_empty() || u.len() > 64)
        {
            return Err(Error::invalid("slack_user must be 1 to 64 characters"));
        }
        if self
            .locale
            .as_ref()
            .is_some_and(|l| l.is_empty() || l.len() > 35)
        {
            return Err(Error::invalid(
                "locale must be a language tag, as \"en-GB\"",
            ));
        }
        if let Some(zone) = &self.timezone
            && zone.parse::<chrono_tz::Tz>().is_err()
        {
            return Err(Error::invalid(format!(
                "timezone {zone:?} is not an IANA time zone"
            )));
        }
        if self.data.as_ref().is_some_and(|d| !d.is_object()) {
            return Err(Error::invalid("data must be an object"));
        }
        Ok(())
    }
}

/// Which channels may carry what (`PUT .../preferences` for a namespace's
/// defaults, `PUT .../recipients/{id}/preferences` for one recipient's).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Preferences {
    /// A channel's name → whether it may carry anything.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub channels: BTreeMap<String, bool>,
    /// A category → a channel's name → whether it may carry that category.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub categories: BTreeMap<String, BTreeMap<String, bool>>,
    /// The namespace's only: how long a dedup key holds (a week when
    /// absent, 90 days at most).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_window_ms: Option<u64>,
}

impl Preferences {
    pub fn check(&self) -> Result<(), Error> {
        if self
            .dedup_window_ms
            .is_some_and(|w| !(1000..=MAX_DEDUP_WINDOW_MS).contains(&w))
        {
            return Err(Error::invalid(format!(
                "dedup_window_ms must be from 1000 to {MAX_DEDUP_WINDOW_MS} (90 days)"
            )));
        }
        let entries =
            self.channels.len() + self.categories.values().map(BTreeMap::len).sum::<usize>();
        if entries > 1000 {
            return Err(Error::invalid("preferences hold at most 1000 entries"));
        }
        let long = |k: &String| k.is_empty() || k.len() > MAX_KEY;
        if self.channels.keys().any(long)
            || self.categories.keys().any(long)
            || self.categories.values().flat_map(BTreeMap::keys).any(long)
        {
            return Err(Error::invalid(format!(
                "preference keys must be 1 to {MAX_KEY} bytes"
            )));
        }
        Ok(())
    }

    /// How long a dedup key holds in a namespace with these defaults.
    pub fn dedup_window_ms(&self) -> u64 {
        self.dedup_window_ms.unwrap_or(DEFAULT_DEDUP_WINDOW_MS)
    }

    fn says(&self, category: Option<&str>, channel: &str) -> Option<bool> {
        category
            .and_then(|c| self.categories.get(c))
            .and_then(|by_channel| by_channel.get(channel))
            .or_else(|| self.channels.get(channel))
            .copied()
    }
}

/// Whether `channel` may carry a notification of `category`: the
/// recipient's own word wins over the namespace's, a category's over a
/// channel's, and anything not said is allowed. A critical notification
/// goes whatever anyone said.
pub fn allowed(
    namespace: &Preferences,
    recipient: &Preferences,
    category: Option<&str>,
    channel: &str,
    critical: bool,
) -> bool {
    critical
        || recipient
            .says(category, channel)
            .or_else(|| namespace.says(category, channel))
            .unwrap_or(true)
}

/// Where one delivery (a notification on one channel) stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Queued,
    Sending,
    Sent,
    Failed,
    /// The hand-off was cut before the provider answered (SMTP after the
    /// final `.`): it may or may not have arrived.
    Unknown,
    /// An earlier notification had the same dedup key on this channel.
    SuppressedDuplicate,
    /// The recipient's or the namespace's preferences turned it off.
    SuppressedPreference,
    /// Folded into a digest, which is delivered instead.
    Digested,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Queued => "queued",
            DeliveryStatus::Sending => "sending",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Unknown => "unknown",
            DeliveryStatus::SuppressedDuplicate => "suppressed_duplicate",
            DeliveryStatus::SuppressedPreference => "suppressed_preference",
            DeliveryStatus::Digested => "digested",
        }
    }

    /// Every status, for parsing.
    pub const ALL: [DeliveryStatus; 8] = [
        DeliveryStatus::Queued,
        DeliveryStatus::Sending,
        DeliveryStatus::Sent,
        DeliveryStatus::Failed,
        DeliveryStatus::Unknown,
        DeliveryStatus::SuppressedDuplicate,
        DeliveryStatus::SuppressedPreference,
        DeliveryStatus::Digested,
    ];

    pub fn parse(text: &str) -> Option<DeliveryStatus> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// No attempt will change it again.
    pub fn is_final(self) -> bool {
        !matches!(self, DeliveryStatus::Queued | DeliveryStatus::Sending)
    }
}

#[cfg(test)]
mod tests;
