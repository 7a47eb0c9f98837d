//! The notifications domain. Its settings: channels, templates, recipients
//! and preferences (`keel_core::notification`), and the monitors' escalation
//! policies, maintenance windows and status pages, each a JSON document of its
//! kind under a name, checked by the core before it is stored and stored
//! whole (a channel's secrets too: the sender needs them, so they cannot be
//! hashed; the API never shows them again). Its traffic: notifications
//! accepted with their deliveries, dedup keys and jobs in one write;
//! deliveries moved from state to state by compare-and-set; the in-app
//! inbox, keyed by a per-recipient sequence.

use async_trait::async_trait;
use keel_core::notification::{DeliveryAttempt, DeliveryStatus};
use keel_core::{Error, ErrorCode, JobId, Namespace, NotificationId, Timestamp};
use serde_json::Value;

use crate::OwnedJob;

/// What a setting is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Setting {
    Channel,
    Template,
    Recipient,
    /// A recipient's preferences under its id; the namespace's defaults
    /// under the empty name.
    Preferences,
    /// A key Keel signs with (unsubscribe links), in Keel's own namespace.
    Key,
    /// Monitors' settings: how incidents page, when they do not, and
    /// what a public status page shows.
    EscalationPolicy,
    Maintenance,
    StatusPage,
}

impl Setting {
    pub fn as_str(self) -> &'static str {
        match self {
            Setting::Channel => "channel",
            Setting::Template => "template",
            Setting::Recipient => "recipient",
            Setting::Preferences => "preferences",
            Setting::Key => "key",
            Setting::EscalationPolicy => "escalation_policy",
            Setting::Maintenance => "maintenance",
            Setting::StatusPage => "status_page",
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

/// An `Idempotency-Key` and a digest of the request it came with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestKey {
    pub key: String,
    pub digest: String,
    /// Until when the key answers with its notification.
    pub expires_at: Timestamp,
}

/// A delivery to write: `Queued` ones carry their job (whose id is the
/// delivery's), others are written as they are.
#[derive(Clone, Debug)]
pub struct NewDelivery {
    pub id: JobId,
    pub channel: String,
    pub status: DeliveryStatus,
    /// The delivery this one falls back from.
    pub fallback_of: Option<JobId>,
    pub job: Option<OwnedJob>,
}

/// A notification to accept.
#[derive(Clone, Debug)]
pub struct NewNotification {
    pub namespace: Namespace,
    pub id: NotificationId,
    /// The recipient's id, or `inline:` and its address.
    pub recipient: String,
    pub category: Option<String>,
    /// What was asked and rendered, as `GET` shows it.
    pub body: Value,
    pub request: Option<RequestKey>,
    /// The key each queued delivery takes (per channel and recipient), or
    /// finds held.
    pub hold: Option<Hold>,
    pub deliveries: Vec<NewDelivery>,
}

/// A key a delivery holds until it expires: a dedup key, or a digest's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    pub key: String,
    pub expires_at: Timestamp,
    /// What a delivery that finds the key held becomes, pointing at the
    /// holder: `SuppressedDuplicate`, or `Digested` (folded into the
    /// holder's digest, which is sent when its window ends).
    pub held: DeliveryStatus,
}

/// A delivery as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    pub id: JobId,
    pub notification: NotificationId,
    pub channel: String,
    pub recipient: String,
    pub status: DeliveryStatus,
    /// For `suppressed_duplicate`: the notification that went; for
    /// `digested`, the one whose digest carries it.
    pub duplicate_of: Option<NotificationId>,
    pub fallback_of: Option<JobId>,
    pub attempts: Vec<DeliveryAttempt>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A notification as stored, with its deliveries in the order made.
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    pub id: NotificationId,
    pub recipient: String,
    pub category: Option<String>,
    pub body: Value,
    pub created_at: Timestamp,
    pub deliveries: Vec<Delivery>,
}

/// What accepting came to.
#[derive(Clone, Debug, PartialEq)]
pub enum Accepted {
    /// Written now (some deliveries may be duplicates of earlier ones).
    New(Notification),
    /// Every delivery was a duplicate: nothing was written; the answer is
    /// the notification that went, with these deliveries' statuses.
    Duplicate {
        first: NotificationId,
        channels: Vec<String>,
    },
    /// The `Idempotency-Key` was used before, with the same request.
    Replayed(Notification),
}

/// A page of notifications, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotificationQuery {
    pub recipient: Option<String>,
    /// Only those with a delivery in this status.
    pub status: Option<DeliveryStatus>,
    /// Only those with a delivery on this channel.
    pub channel: Option<String>,
    /// Older than this one (the previous page's last).
    pub before: Option<NotificationId>,
    pub limit: u32,
}

/// A delivery's move from one state to another, compare-and-set.
#[derive(Clone, Debug)]
pub struct DeliveryMove {
    pub id: JobId,
    /// It moves only from one of these.
    pub from: Vec<DeliveryStatus>,
    pub to: DeliveryStatus,
    pub attempt: Option<DeliveryAttempt>,
    /// A delivery to start in the same write (a fallback).
    pub then: Option<NewDelivery>,
}

/// An in-app message to write for a delivery.
#[derive(Clone, Debug, PartialEq)]
pub struct NewInboxMessage {
    pub recipient: String,
    pub delivery: JobId,
    pub notification: NotificationId,
    pub category: Option<String>,
    /// `title`, `body`, `url`.
    pub content: Value,
}

/// An in-app message as stored: `seq` is its id in the recipient's inbox.
#[derive(Clone, Debug, PartialEq)]
pub struct InboxMessage {
    pub seq: u64,
    pub delivery: JobId,
    pub notification: NotificationId,
    pub category: Option<String>,
    pub content: Value,
    pub created_at: Timestamp,
    pub seen_at: Option<Timestamp>,
    pub read_at: Option<Timestamp>,
    pub archived_at: Option<Timestamp>,
}

/// Which messages of an inbox to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InboxPage {
    /// Newest first, older than `before` (all when none), archived left out.
    Before(Option<u64>),
    /// Oldest first, newer than this seq, archived included (a stream).
    After(u64),
}

/// What a mark sets on messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InboxMark {
    Seen,
    Read,
    Archived,
}

/// 404 for a notification.
pub fn notification_not_found(id: &NotificationId) -> Error {
    Error::new(ErrorCode::NotFound, format!("notification {id} not found"))
}

/// 404 for a delivery.
pub fn delivery_not_found(id: &JobId) -> Error {
    Error::new(ErrorCode::NotFound, format!("delivery {id} not found"))
}

/// 422 for an `Idempotency-Key` used with another request.
pub fn request_key_reused(key: &str) -> Error {
    Error::new(
        ErrorCode::IdempotencyKeyReused,
        format!("Idempotency-Key {key:?} was used with another request in the last 24 hours"),
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

    /// Accepts a notification in one write: an unexpired request key
    /// answers its notification (`Replayed`, or 422 when the digest
    /// differs); each `Queued` delivery whose (channel, recipient, dedup
    /// key) is held unexpired becomes `suppressed_duplicate` of the holder,
    /// the others take the key; then the notification, its deliveries and
    /// the jobs of those still queued are written.
    async fn notification_accept(
        &self,
        notification: NewNotification,
        now: Timestamp,
    ) -> Result<Accepted, Error>;

    async fn notification_get(
        &self,
        namespace: &Namespace,
        id: &NotificationId,
    ) -> Result<Option<Notification>, Error>;

    /// The notifications folded into `holder`'s digest on `channel`
    /// (their delivery `digested` pointing at it), oldest first, at most
    /// `limit`.
    async fn notifications_digested(
        &self,
        namespace: &Namespace,
        holder: &NotificationId,
        channel: &str,
        limit: u32,
    ) -> Result<Vec<Notification>, Error>;

    async fn notifications_list(
        &self,
        namespace: &Namespace,
        query: &NotificationQuery,
    ) -> Result<Vec<Notification>, Error>;

    async fn delivery_get(
        &self,
        namespace: &Namespace,
        id: &JobId,
    ) -> Result<Option<Delivery>, Error>;

    /// Moves a delivery if its status is one of `from`, appending the
    /// attempt and writing `then` with its job in the same write. Answers
    /// the status it had (it moved when that is one of `from`); 404 when
    /// there is no such delivery.
    async fn delivery_move(
        &self,
        namespace: &Namespace,
        change: DeliveryMove,
        now: Timestamp,
    ) -> Result<DeliveryStatus, Error>;

    /// Writes an in-app message once per delivery and marks the delivery
    /// sent with `attempt`, in one write; a second call for the same
    /// delivery writes nothing. Answers the message's seq.
    async fn inbox_put(
        &self,
        namespace: &Namespace,
        message: NewInboxMessage,
        attempt: DeliveryAttempt,
        now: Timestamp,
    ) -> Result<u64, Error>;

    /// A page of a recipient's inbox and how many of its messages are
    /// unread (archived ones left out).
    async fn inbox_list(
        &self,
        namespace: &Namespace,
        recipient: &str,
        page: InboxPage,
        limit: u32,
    ) -> Result<(Vec<InboxMessage>, u64), Error>;

    /// Sets `mark` on the messages `seqs` (every message when none) that do
    /// not have it yet; how many changed.
    async fn inbox_mark(
        &self,
        namespace: &Namespace,
        recipient: &str,
        mark: InboxMark,
        seqs: Option<Vec<u64>>,
        now: Timestamp,
    ) -> Result<u64, Error>;

    /// Forgets dedup and request keys expired before `now`, and up to
    /// `limit` notifications (with their deliveries) made before `before`;
    /// how many notifications went.
    async fn notifications_prune(
        &self,
        now: Timestamp,
        before: Timestamp,
        limit: u32,
    ) -> Result<u64, Error>;
}
