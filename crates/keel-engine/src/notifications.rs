//! Notifications: the settings that say how a message reaches someone —
//! channels (e-mail, Slack, a signed webhook endpoint, the in-app inbox),
//! templates, recipients and preferences — each checked by the core
//! (`keel_core::notification`) before it is stored. A channel's secrets are
//! stored and never answered again.

use std::sync::Arc;

use keel_core::notification::{ChannelSpec, Preferences, RecipientSpec, TemplateSpec};
use keel_core::{ChannelName, Clock, Error, Namespace, TemplateName, Timestamp};
use keel_store::{NotificationStore, Setting, StoredSetting, setting_not_found};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Most settings of a kind in one page.
pub const MAX_PAGE: u32 = 500;
/// The longest recipient id.
const MAX_RECIPIENT_ID: usize = 256;

/// A setting as answered: its body typed, secrets hidden for a channel.
#[derive(Clone, Debug, PartialEq)]
pub struct Named<T> {
    pub name: String,
    pub spec: T,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

pub struct NotificationService {
    store: Arc<dyn NotificationStore>,
    clock: Arc<dyn Clock>,
}

/// A recipient's id: what the caller's own system calls the person.
pub fn check_recipient_id(id: &str) -> Result<(), Error> {
    if id.is_empty() || id.len() > MAX_RECIPIENT_ID || id.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "a recipient id is 1 to {MAX_RECIPIENT_ID} bytes with no control characters"
        )));
    }
    Ok(())
}

impl NotificationService {
    pub(crate) fn new(store: Arc<dyn NotificationStore>, clock: Arc<dyn Clock>) -> Self {
        NotificationService { store, clock }
    }

    async fn put<T: Serialize>(
        &self,
        namespace: &Namespace,
        kind: Setting,
        name: &str,
        spec: &T,
    ) -> Result<(StoredSetting, bool), Error> {
        let body = serde_json::to_value(spec).map_err(|e| Error::internal(e.to_string()))?;
        self.store
            .setting_put(namespace, kind, name, &body, self.clock.now())
            .await
    }

    async fn get<T: DeserializeOwned>(
        &self,
        namespace: &Namespace,
        kind: Setting,
        name: &str,
    ) -> Result<Named<T>, Error> {
        let stored = self
            .store
            .setting_get(namespace, kind, name)
            .await?
            .ok_or_else(|| setting_not_found(kind, name))?;
        typed(stored)
    }

    async fn list<T: DeserializeOwned>(
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

    async fn delete(
        &self,
        namespace: &Namespace,
        kinds: &[Setting],
        name: &str,
    ) -> Result<(), Error> {
        if self.store.setting_delete(namespace, kinds, name).await? {
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
        let (stored, created) = self
            .put(namespace, Setting::Channel, name.as_str(), spec)
            .await?;
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
            .await
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
            .store
            .setting_get(namespace, Setting::Preferences, recipient.unwrap_or(""))
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
