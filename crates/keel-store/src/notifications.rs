//! The notifications domain's settings: channels, templates, recipients and
//! preferences (`keel_core::notification`). Each is a JSON document of its
//! kind under a name, checked by the core before it is stored and stored
//! whole (a channel's secrets too: the sender needs them, so they cannot be
//! hashed; the API never shows them again).

use async_trait::async_trait;
use keel_core::{Error, ErrorCode, Namespace, Timestamp};
use serde_json::Value;

/// What a setting is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Setting {
    Channel,
    Template,
    Recipient,
    /// A recipient's preferences under its id; the namespace's defaults
    /// under the empty name.
    Preferences,
}

impl Setting {
    pub fn as_str(self) -> &'static str {
        match self {
            Setting::Channel => "channel",
            Setting::Template => "template",
            Setting::Recipient => "recipient",
            Setting::Preferences => "preferences",
        }
    }
}

/// A setting as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredSetting {
    pub name: String,
    pub body: Value,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// 404 for a setting.
pub fn setting_not_found(kind: Setting, name: &str) -> Error {
    Error::new(
        ErrorCode::NotFound,
        format!("{} {name:?} not found", kind.as_str()),
    )
}

#[async_trait]
pub trait NotificationStore: Send + Sync {
    /// Creates a setting or replaces its body (`updated_at` moves only when
    /// the body changed). True when new.
    async fn setting_put(
        &self,
        namespace: &Namespace,
        kind: Setting,
        name: &str,
        body: &Value,
        now: Timestamp,
    ) -> Result<(StoredSetting, bool), Error>;

    async fn setting_get(
        &self,
        namespace: &Namespace,
        kind: Setting,
        name: &str,
    ) -> Result<Option<StoredSetting>, Error>;

    /// A namespace's settings of a kind by name, after `after`, at most `limit`.
    async fn settings_list(
        &self,
        namespace: &Namespace,
        kind: Setting,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StoredSetting>, Error>;

    /// Deletes `name` of every kind in `kinds` at once (a recipient with its
    /// preferences); false when none was there.
    async fn setting_delete(
        &self,
        namespace: &Namespace,
        kinds: &[Setting],
        name: &str,
    ) -> Result<bool, Error>;
}
