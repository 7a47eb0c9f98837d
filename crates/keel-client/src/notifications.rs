//! Notifications: the settings (channels, whose secrets go in and never
//! come back; templates, recipients and preferences), sending with an
//! `Idempotency-Key`, reading a notification's deliveries, and the in-app
//! inbox.

use keel_api::notifications::{
    ChannelAnswer, ChannelList, ChannelRequest, InboxAnswer, InboxMarkAnswer, InboxMarkRequest,
    NotificationAnswer, NotificationList, NotificationsPage, NotifyAnswer, NotifyRequest,
    PreferencesBody, RecipientAnswer, RecipientList, RecipientRequest, TemplateAnswer,
    TemplateList, TemplateRequest,
};

use crate::ClientError;
use crate::client::{Client, seg};

impl Client {
    pub(crate) fn setting_url(&self, namespace: &str, kind: &str, name: &str) -> String {
        self.url(&format!(
            "/namespaces/{}/{kind}/{}",
            seg(namespace),
            seg(name)
        ))
    }

    /// A `DELETE` answered 204.
    pub(crate) async fn delete(&self, url: String) -> Result<(), ClientError> {
        let resp = self.authorized(self.http.delete(url)).send().await?;
        if resp.status().is_success() {
            return Ok(());
        }
        Err(Client::error_of(resp).await)
    }

    /// Creates or replaces a channel; the answer hides its secrets.
    pub async fn put_channel(
        &self,
        namespace: &str,
        name: &str,
        channel: &ChannelRequest,
    ) -> Result<ChannelAnswer, ClientError> {
        let url = self.setting_url(namespace, "channels", name);
        self.send(self.http.put(url).json(channel)).await
    }

    pub async fn get_channel(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<ChannelAnswer, ClientError> {
        self.send(self.http.get(self.setting_url(namespace, "channels", name)))
            .await
    }

    /// The first page of a namespace's channels, by name.
    pub async fn list_channels(&self, namespace: &str) -> Result<ChannelList, ClientError> {
        let url = self.url(&format!("/namespaces/{}/channels", seg(namespace)));
        self.send(self.http.get(url)).await
    }

    pub async fn delete_channel(&self, namespace: &str, name: &str) -> Result<(), ClientError> {
        self.delete(self.setting_url(namespace, "channels", name))
            .await
    }

    /// Creates or replaces a template; one that does not parse is refused
    /// with the part and line.
    pub async fn put_template(
        &self,
        namespace: &str,
        name: &str,
        template: &TemplateRequest,
    ) -> Result<TemplateAnswer, ClientError> {
        let url = self.setting_url(namespace, "templates", name);
        self.send(self.http.put(url).json(template)).await
    }

    pub async fn get_template(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<TemplateAnswer, ClientError> {
        self.send(
            self.http
                .get(self.setting_url(namespace, "templates", name)),
        )
        .await
    }

    pub async fn list_templates(&self, namespace: &str) -> Result<TemplateList, ClientError> {
        let url = self.url(&format!("/namespaces/{}/templates", seg(namespace)));
        self.send(self.http.get(url)).await
    }

    pub async fn delete_template(&self, namespace: &str, name: &str) -> Result<(), ClientError> {
        self.delete(self.setting_url(namespace, "templates", name))
            .await
    }

    pub async fn put_recipient(
        &self,
        namespace: &str,
        id: &str,
        recipient: &RecipientRequest,
    ) -> Result<RecipientAnswer, ClientError> {
        let url = self.setting_url(namespace, "recipients", id);
        self.send(self.http.put(url).json(recipient)).await
    }

    pub async fn get_recipient(
        &self,
        namespace: &str,
        id: &str,
    ) -> Result<RecipientAnswer, ClientError> {
        self.send(self.http.get(self.setting_url(namespace, "recipients", id)))
            .await
    }

    pub async fn list_recipients(&self, namespace: &str) -> Result<RecipientList, ClientError> {
        let url = self.url(&format!("/namespaces/{}/recipients", seg(namespace)));
        self.send(self.http.get(url)).await
    }

    /// Deletes a recipient and its preferences.
    pub async fn delete_recipient(&self, namespace: &str, id: &str) -> Result<(), ClientError> {
        self.delete(self.setting_url(namespace, "recipients", id))
            .await
    }

    fn preferences_url(&self, namespace: &str, recipient: Option<&str>) -> String {
        match recipient {
            Some(id) => format!(
                "{}/preferences",
                self.setting_url(namespace, "recipients", id)
            ),
            None => self.url(&format!("/namespaces/{}/preferences", seg(namespace))),
        }
    }

    /// Sets the namespace's default preferences (`recipient` none) or one
    /// recipient's own.
    pub async fn put_preferences(
        &self,
        namespace: &str,
        recipient: Option<&str>,
        preferences: &PreferencesBody,
    ) -> Result<PreferencesBody, ClientError> {
        let url = self.preferences_url(namespace, recipient);
        self.send(self.http.put(url).json(preferences)).await
    }

    pub async fn get_preferences(
        &self,
        namespace: &str,
        recipient: Option<&str>,
    ) -> Result<PreferencesBody, ClientError> {
        self.send(self.http.get(self.preferences_url(namespace, recipient)))
            .await
    }
}

impl Client {
    /// Sends a notification; `idempotency_key` answers the same
    /// notification to a retried request for 24 hours.
    pub async fn notify(
        &self,
        namespace: &str,
        notification: &NotifyRequest,
        idempotency_key: Option<&str>,
    ) -> Result<NotifyAnswer, ClientError> {
        let url = self.url(&format!("/namespaces/{}/notifications", seg(namespace)));
        let mut request = self.http.post(url).json(notification);
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        self.send(request).await
    }

    /// A notification with its deliveries and every attempt.
    pub async fn get_notification(
        &self,
        namespace: &str,
        id: &str,
    ) -> Result<NotificationAnswer, ClientError> {
        let url = self.url(&format!(
            "/namespaces/{}/notifications/{}",
            seg(namespace),
            seg(id)
        ));
        self.send(self.http.get(url)).await
    }

    /// Notifications newest first, filtered as `page` says.
    pub async fn list_notifications(
        &self,
        namespace: &str,
        page: &NotificationsPage,
    ) -> Result<NotificationList, ClientError> {
        let url = self.url(&format!("/namespaces/{}/notifications", seg(namespace)));
        self.send(self.http.get(url).query(page)).await
    }

    /// A page of a recipient's in-app inbox, newest first (`after`: the
    /// previous page's `next_cursor`).
    pub async fn inbox(
        &self,
        namespace: &str,
        recipient: &str,
        after: Option<u64>,
    ) -> Result<InboxAnswer, ClientError> {
        let url = self.url(&format!(
            "/namespaces/{}/inbox/{}",
            seg(namespace),
            seg(recipient)
        ));
        let query: Vec<(&str, String)> = after
            .map(|a| ("after", a.to_string()))
            .into_iter()
            .collect();
        self.send(self.http.get(url).query(&query)).await
    }

    /// Marks messages of an inbox (`mark`: `read`, `seen` or `archive`).
    pub async fn inbox_mark(
        &self,
        namespace: &str,
        recipient: &str,
        mark: &str,
        which: &InboxMarkRequest,
    ) -> Result<InboxMarkAnswer, ClientError> {
        let url = self.url(&format!(
            "/namespaces/{}/inbox/{}/{}",
            seg(namespace),
            seg(recipient),
            seg(mark)
        ));
        self.send(self.http.post(url).json(which)).await
    }
}
