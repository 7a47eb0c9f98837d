//! The notifications domain: channels (their secrets go in, never out),
//! templates, recipients and preferences (docs/api.md, "Notifications").

use keel_core::Timestamp;
use keel_core::notification::{ChannelSpec, RecipientSpec, TemplateSpec};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// `PUT .../channels/{name}` takes `keel_core::notification::ChannelSpec`:
/// one of `{"email":{…}}`, `{"slack":{…}}`, `{"webhook":{"endpoint"}}`,
/// `{"in_app":{}}`, with `fallback` and `rate_limit`.
pub use keel_core::notification::ChannelSpec as ChannelRequest;
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
