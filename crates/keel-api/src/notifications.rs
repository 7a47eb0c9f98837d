//! The notifications domain: channels (their secrets go in, never out),
//! templates, recipients and preferences; notifications sent and their
//! deliveries; the in-app inbox (docs/api.md, "Notifications").

use keel_core::Timestamp;
use keel_core::notification::{
    ChannelSpec, DeliveryAttempt, DeliveryStatus, RecipientSpec, TemplateSpec,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// `PUT .../channels/{name}` takes `keel_core::notification::ChannelSpec`:
/// one of `{"email":{…}}`, `{"slack":{…}}`, `{"webhook":{"endpoint"}}`,
/// `{"in_app":{}}`, with `fallback` and `rate_limit`.
pub use keel_core::notification::ChannelSpec as ChannelRequest;
/// `POST .../notifications`.
pub use keel_core::notification::NotifyRequest;
/// `PUT .../preferences` and `PUT .../recipients/{id}/preferences`, and
/// what their `GET` answers.
pub use keel_core::notification::Preferences as PreferencesBody;
/// `PUT .../recipients/{id}`.
pub use keel_core::notification::RecipientSpec as RecipientRequest;
/// `PUT .../templates/{name}`.
pub use keel_core::notification::TemplateSpec as TemplateRequest;

/// A channel as the API shows it: the spec with its secrets hidden.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChannelAnswer {
    pub name: String,
    /// `email`, `slack`, `webhook` or `in_app`.
    pub kind: String,
    #[serde(flatten)]
    pub spec: ChannelSpec,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChannelList {
    pub channels: Vec<ChannelAnswer>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TemplateAnswer {
    pub name: String,
    #[serde(flatten)]
    pub spec: TemplateSpec,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TemplateList {
    pub templates: Vec<TemplateAnswer>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RecipientAnswer {
    pub id: String,
    #[serde(flatten)]
    pub spec: RecipientSpec,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RecipientList {
    pub recipients: Vec<RecipientAnswer>,
}

/// A page of settings by name: `after` the last name of the previous page.
#[derive(Clone, Debug, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SettingsPage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// 1 to 500 (100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// One delivery in the answer to `POST .../notifications`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeliveryBrief {
    pub channel: String,
    pub status: DeliveryStatus,
    /// The delivery's id (none for a duplicate answered with the first's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// For `suppressed_duplicate`: the notification that went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<String>,
}

/// What `POST .../notifications` answers: 201 for a new notification, 200
/// for a replayed `Idempotency-Key` or a notification whose every delivery
/// was a duplicate (then `id` is the first notification's).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NotifyAnswer {
    pub id: String,
    pub deliveries: Vec<DeliveryBrief>,
}

/// A delivery: a notification on one channel, with every attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeliveryAnswer {
    pub id: String,
    pub channel: String,
    pub status: DeliveryStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<String>,
    /// The delivery this one fell back from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_of: Option<String>,
    pub attempts: Vec<DeliveryAttempt>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A notification as sent: what was asked and rendered, and its deliveries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NotificationAnswer {
    pub id: String,
    pub recipient: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// The template, recipient, data and options asked for, and the
    /// content as rendered.
    #[schema(value_type = Object)]
    pub request: serde_json::Value,
    pub deliveries: Vec<DeliveryAnswer>,
    pub created_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NotificationList {
    pub notifications: Vec<NotificationAnswer>,
    /// `after` for the next page, when there may be one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `GET .../notifications`: newest first.
#[derive(Clone, Debug, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct NotificationsPage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    /// Those with a delivery in this status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<DeliveryStatus>,
    /// Those with a delivery on this channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The previous page's `next_cursor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// 1 to 500 (100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// An in-app message; `id` is its place in the recipient's inbox (and the
/// stream's event id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InboxMessageAnswer {
    pub id: u64,
    pub notification: String,
    pub delivery: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    pub title: String,
    pub body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived_at: Option<Timestamp>,
}

/// A page of an inbox, newest first, archived messages left out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InboxAnswer {
    pub messages: Vec<InboxMessageAnswer>,
    pub unread: u64,
    /// `after` for the next (older) page, when there may be one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `GET .../inbox/{recipient}`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct InboxPageParams {
    /// The previous page's `next_cursor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    /// 1 to 500 (50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `POST .../inbox/{recipient}/read|seen|archive`: some messages by id, or all.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InboxMarkRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<u64>>,
    #[serde(default)]
    pub all: bool,
}

/// What a one-click unsubscribe turned off.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Unsubscribed {
    pub recipient: String,
    pub category: String,
    pub channel: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InboxMarkAnswer {
    /// Messages that did not have the mark and have it now.
    pub changed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_read_back_what_they_show() {
        let spec: ChannelSpec =
            serde_json::from_value(serde_json::json!({"in_app": {}, "fallback": ["b"]})).unwrap();
        let answer = ChannelAnswer {
            name: "a".into(),
            kind: "in_app".into(),
            spec,
            created_at: Timestamp::from_millis(1),
            updated_at: Timestamp::from_millis(2),
        };
        let text = serde_json::to_string(&answer).unwrap();
        assert!(text.contains(r#""in_app":{}"#), "{text}");
        assert_eq!(
            serde_json::from_str::<ChannelAnswer>(&text).unwrap(),
            answer
        );
        let prefs = PreferencesBody::default();
        assert_eq!(serde_json::to_string(&prefs).unwrap(), "{}");
    }
}
