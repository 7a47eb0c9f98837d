//! The topics domain: append-only logs of events, their policies, publishing
//! (atomic batches, deduplicated by id within a window), reading history in
//! `seq` order, and retention.

use async_trait::async_trait;
use keel_core::{Error, ErrorCode, Event, Namespace, NewEvent, Timestamp, TopicName, TopicPolicy};

/// A topic as stored: its policy and how far its log reaches.
#[derive(Clone, Debug, PartialEq)]
pub struct Topic {
    pub name: TopicName,
    pub policy: TopicPolicy,
    /// The last seq given out (0 when nothing was ever published).
    pub head_seq: u64,
    /// Events kept now (retention removes the old ones).
    pub events: u64,
    pub created_at: Timestamp,
}

/// The answer for one published event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    pub id: String,
    pub seq: u64,
    /// True when the id was published within the dedup window: `seq` is the
    /// first event's and nothing was stored.
    pub duplicate: bool,
}

/// Which events of a topic to read: those after `after`, in seq order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventQuery {
    pub after: u64,
    pub key: Option<String>,
    pub kind: Option<String>,
    pub limit: u32,
}

/// 404 for a topic.
pub fn topic_not_found(topic: &TopicName) -> Error {
    Error::new(
        ErrorCode::NotFound,
        format!("topic {:?} not found", topic.as_str()),
    )
}

/// 404 for an event.
pub fn event_not_found(topic: &TopicName, id: &str) -> Error {
    Error::new(
        ErrorCode::NotFound,
        format!("event {id:?} not found in topic {:?}", topic.as_str()),
    )
}

#[async_trait]
pub trait TopicStore: Send + Sync {
    /// Creates a topic with `policy`, or sets an existing one's; true when new.
    async fn topic_put(
        &self,
        namespace: &Namespace,
        topic: &TopicName,
        policy: &TopicPolicy,
        now: Timestamp,
    ) -> Result<(Topic, bool), Error>;

    /// One topic (404 when it was never put nor published to).
    async fn topic_get(&self, namespace: &Namespace, topic: &TopicName) -> Result<Topic, Error>;

    /// The namespace's topics, by name.
    async fn topics_list(&self, namespace: &Namespace) -> Result<Vec<Topic>, Error>;

    /// Removes a topic and its events (404 when absent).
    async fn topic_delete(&self, namespace: &Namespace, topic: &TopicName) -> Result<(), Error>;

    /// Appends `events` in order, all or none, creating the topic with the
    /// default policy when absent. Each is checked against the topic's policy
    /// first (one bad event refuses the batch). An id already published within
    /// the dedup window, or earlier in the same batch, is a duplicate: it
    /// answers the first event's seq and stores nothing. Seqs are given in
    /// commit order: once a reader sees seq N, no event below N appears later.
    async fn events_publish(
        &self,
        namespace: &Namespace,
        topic: &TopicName,
        events: Vec<NewEvent>,
        now: Timestamp,
    ) -> Result<Vec<Published>, Error>;

    /// Kept events after `query.after`, in seq order, at most `limit`
    /// (404 when the topic is absent).
    async fn events_read(
        &self,
        namespace: &Namespace,
        topic: &TopicName,
        query: &EventQuery,
    ) -> Result<Vec<Event>, Error>;

    /// One kept event by id (the latest with that id; 404 when absent).
    async fn event_get(
        &self,
        namespace: &Namespace,
        topic: &TopicName,
        id: &str,
    ) -> Result<Event, Error>;

    /// Removes up to `limit` events past their topic's retention; returns how
    /// many went.
    async fn events_prune(&self, now: Timestamp, limit: u32) -> Result<u64, Error>;
}
