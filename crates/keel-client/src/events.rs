//! Topics, events and subscriptions: the client's calls for the event half
//! of the API.

use std::time::Duration;

use keel_api::subscriptions::{
    CommitRequest, Committed, FetchAnswer, FetchRequest, StartAt, SubscriptionAnswer,
    SubscriptionList, SubscriptionRequest,
};
use keel_api::topics::{
    EventAnswer, EventPage, EventRequest, PublishBatch, PublishedAnswer, PublishedBatch,
    TopicAnswer, TopicList, TopicRequest,
};
use serde_json::Value;

use crate::ClientError;
use crate::client::{Client, seg};

/// An event as the client reads it.
pub type Event = EventAnswer<Value>;
/// A new event: only `data` is usual; the server fills in the rest.
pub type NewEvent = EventRequest<Value>;

impl Client {
    fn topic_url(&self, namespace: &str, topic: &str) -> String {
        self.url(&format!(
            "/namespaces/{}/topics/{}",
            seg(namespace),
            seg(topic)
        ))
    }

    fn subscription_url(&self, namespace: &str, name: &str) -> String {
        self.url(&format!(
            "/namespaces/{}/subscriptions/{}",
            seg(namespace),
            seg(name)
        ))
    }

    /// Creates a topic or sets its policy.
    pub async fn put_topic(
        &self,
        namespace: &str,
        topic: &str,
        policy: &TopicRequest,
    ) -> Result<TopicAnswer, ClientError> {
        let url = self.topic_url(namespace, topic);
        self.send(self.http.put(url).json(policy)).await
    }

    pub async fn get_topic(
        &self,
        namespace: &str,
        topic: &str,
    ) -> Result<TopicAnswer, ClientError> {
        self.send(self.http.get(self.topic_url(namespace, topic)))
            .await
    }

    pub async fn list_topics(&self, namespace: &str) -> Result<TopicList, ClientError> {
        let url = self.url(&format!("/namespaces/{}/topics", seg(namespace)));
        self.send(self.http.get(url)).await
    }

    /// Publishes one event; answers once it is durable.
    pub async fn publish(
        &self,
        namespace: &str,
        topic: &str,
        event: &NewEvent,
    ) -> Result<PublishedAnswer, ClientError> {
        let url = format!("{}/events", self.topic_url(namespace, topic));
        self.send(self.http.post(url).json(event)).await
    }

    /// Publishes a batch, all or none.
    pub async fn publish_batch(
        &self,
        namespace: &str,
        topic: &str,
        events: Vec<NewEvent>,
    ) -> Result<PublishedBatch, ClientError> {
        let url = format!("{}/events", self.topic_url(namespace, topic));
        let body = PublishBatch { events };
        self.send(self.http.post(url).json(&body)).await
    }

    /// Events after `after`, optionally of one key; with `wait_ms`, the
    /// server waits that long for the next one when there is none.
    pub async fn read_events(
        &self,
        namespace: &str,
        topic: &str,
        after: u64,
        key: Option<&str>,
        limit: u32,
        wait_ms: Option<u64>,
    ) -> Result<EventPage<Value>, ClientError> {
        let url = format!("{}/events", self.topic_url(namespace, topic));
        let mut params = vec![("after", after.to_string()), ("limit", limit.to_string())];
        if let Some(key) = key {
            params.push(("key", key.to_owned()));
        }
        let mut req = self.http.get(url);
        if let Some(ms) = wait_ms {
            params.push(("wait_ms", ms.to_string()));
            req = req.timeout(Duration::from_millis(ms + 10_000));
        }
        self.send(req.query(&params)).await
    }

    /// Creates or updates a subscription.
    pub async fn put_subscription(
        &self,
        namespace: &str,
        name: &str,
        subscription: &SubscriptionRequest,
    ) -> Result<SubscriptionAnswer, ClientError> {
        let url = self.subscription_url(namespace, name);
        self.send(self.http.put(url).json(subscription)).await
    }

    pub async fn get_subscription(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<SubscriptionAnswer, ClientError> {
        self.send(self.http.get(self.subscription_url(namespace, name)))
            .await
    }

    pub async fn list_subscriptions(
        &self,
        namespace: &str,
        topic: Option<&str>,
    ) -> Result<SubscriptionList, ClientError> {
        let url = self.url(&format!("/namespaces/{}/subscriptions", seg(namespace)));
        let mut req = self.http.get(url);
        if let Some(topic) = topic {
            req = req.query(&[("topic", topic)]);
        }
        self.send(req).await
    }

    /// Pauses (`true`) or resumes a subscription.
    pub async fn pause_subscription(
        &self,
        namespace: &str,
        name: &str,
        paused: bool,
    ) -> Result<SubscriptionAnswer, ClientError> {
        let action = if paused { "pause" } else { "resume" };
        let url = format!("{}/{action}", self.subscription_url(namespace, name));
        self.send(self.http.post(url)).await
    }

    /// Moves a subscription's position (replay, or skip ahead).
    pub async fn seek_subscription(
        &self,
        namespace: &str,
        name: &str,
        to: StartAt,
    ) -> Result<SubscriptionAnswer, ClientError> {
        let url = format!("{}/seek", self.subscription_url(namespace, name));
        self.send(self.http.post(url).json(&to)).await
    }

    /// Claims up to `max_events` for `consumer`, waiting up to `wait_ms`
    /// for some.
    pub async fn fetch(
        &self,
        namespace: &str,
        name: &str,
        consumer: &str,
        max_events: u32,
        wait_ms: u64,
    ) -> Result<FetchAnswer<Value>, ClientError> {
        let url = format!("{}/fetch", self.subscription_url(namespace, name));
        let body = FetchRequest {
            consumer: consumer.to_owned(),
            max_events: Some(max_events),
            wait_ms: Some(wait_ms),
        };
        let req = self
            .http
            .post(url)
            .json(&body)
            .timeout(Duration::from_millis(wait_ms + 10_000));
        self.send(req).await
    }

    pub async fn commit(
        &self,
        namespace: &str,
        name: &str,
        consumer: &str,
        cursor: &str,
    ) -> Result<Committed, ClientError> {
        let url = format!("{}/commit", self.subscription_url(namespace, name));
        let body = CommitRequest {
            consumer: consumer.to_owned(),
            cursor: cursor.to_owned(),
        };
        self.send(self.http.post(url).json(&body)).await
    }
}
