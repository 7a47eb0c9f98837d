//! The subscriptions domain: named cursors over a topic. A subscription
//! with a target advances by hand-offs (its events become jobs, written in
//! the same transaction as the new position, or runs started under keys
//! derived from it); a pulled one by fetches and commits of per-key claims
//! (`keel_core::subscription`).

use async_trait::async_trait;
use keel_core::subscription::{Start, SubscriptionSpec};
use keel_core::{Error, ErrorCode, Event, Namespace, Timestamp, TopicName};

use crate::OwnedJob;

/// A subscription as stored, with where it stands.
#[derive(Clone, Debug, PartialEq)]
pub struct Subscription {
    pub namespace: Namespace,
    pub name: String,
    /// Made at creation, never reused: keys derived from it (run
    /// idempotency keys) cannot collide with a deleted namesake's.
    pub id: String,
    pub spec: SubscriptionSpec,
    pub paused: bool,
    /// The last seq handed off (target) or committed (pulled): every event
    /// at or below it is done with.
    pub position: u64,
    /// The topic's head (0 when the topic does not exist yet).
    pub head_seq: u64,
    /// Events handed off or committed.
    pub delivered: u64,
    /// Events passed over because retention removed them first.
    pub skipped: u64,
    pub created_at: Timestamp,
}

impl Subscription {
    /// Events published and not yet done with.
    pub fn lag(&self) -> u64 {
        self.head_seq.saturating_sub(self.position)
    }
}

/// What a fetch hands a consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    pub events: Vec<Event>,
    /// What commits them; `None` when there are none.
    pub cursor: Option<String>,
}

/// 404 for a subscription.
pub fn subscription_not_found(name: &str) -> Error {
    Error::new(
        ErrorCode::NotFound,
        format!("subscription {name:?} not found"),
    )
}

/// 409 `has_target`: fetch or commit on a subscription with a target.
pub fn has_target(name: &str) -> Error {
    Error::new(
        ErrorCode::HasTarget,
        format!(
            "subscription {name:?} delivers to its target; only subscriptions without one are fetched from"
        ),
    )
}

/// 409 `cursor_stale`.
pub fn cursor_stale() -> Error {
    Error::new(
        ErrorCode::CursorStale,
        "the cursor's events were released (the consumer timed out) and handed out again",
    )
}

/// 409 `conflict`: a put that would move a subscription to another topic.
pub fn topic_changed(name: &str, topic: &TopicName) -> Error {
    Error::new(
        ErrorCode::Conflict,
        format!(
            "subscription {name:?} is on topic {:?}; its topic cannot change (delete it and create it again)",
            topic.as_str()
        ),
    )
}

#[async_trait]
pub trait SubscriptionStore: Send + Sync {
    /// Creates a subscription at `start`, or updates an existing one's
    /// filter, target and timeout (its position stays; 409 `conflict` when
    /// the topic differs). True when new.
    async fn subscription_put(
        &self,
        namespace: &Namespace,
        name: &str,
        spec: &SubscriptionSpec,
        start: Start,
        now: Timestamp,
    ) -> Result<(Subscription, bool), Error>;

    async fn subscription_get(
        &self,
        namespace: &Namespace,
        name: &str,
    ) -> Result<Subscription, Error>;

    /// Subscriptions by namespace and name: of one namespace (or, `None`,
    /// of all), optionally of one topic.
    async fn subscriptions_list(
        &self,
        namespace: Option<&Namespace>,
        topic: Option<&TopicName>,
    ) -> Result<Vec<Subscription>, Error>;

    /// Removes a subscription and its claims (404 when absent).
    async fn subscription_delete(&self, namespace: &Namespace, name: &str) -> Result<(), Error>;

    async fn subscription_pause(
        &self,
        namespace: &Namespace,
        name: &str,
        paused: bool,
    ) -> Result<Subscription, Error>;

    /// Moves the position (replay or skip ahead) and drops every claim.
    async fn subscription_seek(
        &self,
        namespace: &Namespace,
        name: &str,
        start: Start,
    ) -> Result<Subscription, Error>;

    /// Moves a target subscription's position from `from` to `to`, counting
    /// `delivered` events and `skipped` ones, and creates `jobs`, all in one
    /// transaction; false (and nothing written) when the position is no
    /// longer `from` (another node handed off, or a seek moved it).
    #[allow(
        clippy::too_many_arguments,
        reason = "one atomic write: the compare, the move and its jobs"
    )]
    async fn subscription_handoff(
        &self,
        namespace: &Namespace,
        name: &str,
        from: u64,
        to: u64,
        delivered: u64,
        skipped: u64,
        jobs: Vec<OwnedJob>,
        now: Timestamp,
    ) -> Result<bool, Error>;

    /// Claims up to `max` matching events for `consumer` (see
    /// `keel_core::subscription`); claims past their deadline are released
    /// first. 409 `has_target` for a subscription with a target.
    async fn subscription_fetch(
        &self,
        namespace: &Namespace,
        name: &str,
        consumer: &str,
        max: u32,
        now: Timestamp,
    ) -> Result<Fetched, Error>;

    /// Commits the events of `cursor`; how many this call committed (0 when
    /// they were already). 409 `cursor_stale` when they were released and
    /// handed to another consumer meanwhile. Committing twice is harmless.
    async fn subscription_commit(
        &self,
        namespace: &Namespace,
        name: &str,
        consumer: &str,
        cursor: &str,
        now: Timestamp,
    ) -> Result<u64, Error>;
}
