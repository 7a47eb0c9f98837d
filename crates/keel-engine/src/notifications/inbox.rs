//! The in-app inbox: messages written once per delivery (the store keys
//! them by delivery, so a delivery's job run twice writes one), read in
//! pages newest first, marked seen, read or archived, and followed by a
//! stream that resumes after the last seq it saw. A message written on this
//! node wakes that recipient's streams at once (a watch per recipient, so a
//! message wakes its own streams and no others); on a shared database one
//! written on another node is found by the stream's next look
//! (`STREAM_POLL`).

use std::sync::{Arc, PoisonError, Weak};
use std::time::Duration;

use keel_core::notification::{DeliveryAttempt, Dispatch};
use keel_core::{Error, Namespace};
use keel_store::{InboxMark, InboxMessage, InboxPage, NewInboxMessage};
use serde_json::json;
use tokio::sync::Notify;

use super::{MAX_PAGE, NotificationService};

/// How often a stream looks for messages written on other nodes.
const STREAM_POLL: Duration = Duration::from_secs(1);

/// A page of an inbox and its unread count.
pub struct InboxPageAnswer {
    pub messages: Vec<InboxMessage>,
    pub unread: u64,
}

impl NotificationService {
    pub async fn inbox(
        &self,
        namespace: &Namespace,
        recipient: &str,
        page: InboxPage,
        limit: u32,
    ) -> Result<InboxPageAnswer, Error> {
        keel_core::notification::check_recipient_id(recipient)?;
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(Error::invalid(format!(
                "limit must be between 1 and {MAX_PAGE}"
            )));
        }
        let (messages, unread) = self
            .store
            .inbox_list(namespace, recipient, page, limit)
            .await?;
        Ok(InboxPageAnswer { messages, unread })
    }

    /// Marks messages (all when `seqs` is none); how many changed.
    pub async fn inbox_mark(
        &self,
        namespace: &Namespace,
        recipient: &str,
        mark: InboxMark,
        seqs: Option<Vec<u64>>,
    ) -> Result<u64, Error> {
        keel_core::notification::check_recipient_id(recipient)?;
        if seqs
            .as_ref()
            .is_some_and(|s| s.is_empty() || s.len() > MAX_PAGE as usize)
        {
            return Err(Error::invalid(format!(
                "ids must hold 1 to {MAX_PAGE} message ids"
            )));
        }
        self.store
            .inbox_mark(namespace, recipient, mark, seqs, self.clock.now())
            .await
    }

    /// What wakes a stream of `recipient`'s inbox: notified when a message
    /// is written for it on this node. Held as long as the stream is.
    pub fn inbox_watch(&self, namespace: &Namespace, recipient: &str) -> Arc<Notify> {
        let mut watches = self
            .inbox_watches
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let key = (namespace.clone(), recipient.to_owned());
        if let Some(watch) = watches.get(&key).and_then(Weak::upgrade) {
            return watch;
        }
        if watches.len() >= 1024 && watches.len().is_power_of_two() {
            watches.retain(|_, w| w.strong_count() > 0);
        }
        let watch = Arc::new(Notify::new());
        watches.insert(key, Arc::downgrade(&watch));
        watch
    }

    /// How long a stream may wait without looking at the store: forever
    /// when every write is this node's.
    pub fn inbox_poll(&self) -> Option<Duration> {
        (!self.sole_writer).then_some(STREAM_POLL)
    }

    /// Writes a delivery's in-app message (once) and marks it sent.
    pub(crate) async fn inbox_put(
        &self,
        namespace: &Namespace,
        message: NewInboxMessage,
        attempt: DeliveryAttempt,
    ) -> Result<u64, Error> {
        let recipient = message.recipient.clone();
        let seq = self
            .store
            .inbox_put(namespace, message, attempt, self.clock.now())
            .await?;
        let key = (namespace.clone(), recipient);
        let watch = self
            .inbox_watches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .and_then(Weak::upgrade);
        if let Some(watch) = watch {
            watch.notify_waiters();
        }
        Ok(seq)
    }
}

/// What an in-app message shows: the template's `in_app` part, else the
/// subject and text.
pub(crate) fn in_app_content(dispatch: &Dispatch) -> serde_json::Value {
    let content = &dispatch.content;
    match &content.in_app {
        Some(in_app) => json!({"title": in_app.title, "body": in_app.body, "url": in_app.url}),
        None => json!({
            "title": content.subject.clone().unwrap_or_default(),
            "body": content.text.clone().unwrap_or_default(),
            "url": null,
        }),
    }
}
