//! Topics: their policies, and the one publish every producer goes through
//! (the API, CloudEvents, webhook sources, schedules, SLO alerts, endpoint
//! reports), which takes the namespace's rate and byte quotas and counts
//! the metric; and reads that wait for the next append instead of polling.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use keel_core::quota::RateKind;
use keel_core::slo::Subject;
use keel_core::{
    Clock, Error, ErrorCode, Event, JobIdGenerator, Limits, Namespace, NewEvent, TopicName,
    TopicPolicy,
};
use keel_store::{EventQuery, Published, ReadySignal, Topic, TopicStore};

use crate::namespaces::NamespaceService;
use crate::slos::SloService;
use crate::{Shutdown, metrics};

pub struct TopicService {
    store: Arc<dyn TopicStore>,
    signal: ReadySignal,
    clock: Arc<dyn Clock>,
    limits: Limits,
    shutdown: Shutdown,
    namespaces: Arc<NamespaceService>,
    slos: Arc<SloService>,
    /// Not `Sync` by itself: it carries a counter for ids made in one ms.
    ids: Mutex<JobIdGenerator>,
}

impl TopicService {
    pub(crate) fn new(
        store: Arc<dyn TopicStore>,
        signal: ReadySignal,
        clock: Arc<dyn Clock>,
        limits: Limits,
        shutdown: Shutdown,
        namespaces: Arc<NamespaceService>,
        slos: Arc<SloService>,
    ) -> Self {
        TopicService {
            store,
            signal,
            clock,
            limits,
            shutdown,
            namespaces,
            slos,
            ids: Mutex::default(),
        }
    }

    /// Creates or changes a topic; true when it was created.
    pub async fn put(
        &self,
        namespace: &Namespace,
        topic: &TopicName,
        policy: &TopicPolicy,
    ) -> Result<(Topic, bool), Error> {
        policy.check(self.limits.max_payload_bytes as u64)?;
        let answer = self
            .store
            .topic_put(namespace, topic, policy, self.clock.now())
            .await?;
        self.slos
            .policy_set(Subject::topic(namespace, topic), policy.slo);
        Ok(answer)
    }

    /// Creates `topic` with the default policy unless it exists.
    pub(crate) async fn ensure(
        &self,
        namespace: &Namespace,
        topic: &TopicName,
    ) -> Result<(), Error> {
        match self.store.topic_get(namespace, topic).await {
            Ok(_) => Ok(()),
            Err(e) if e.code == ErrorCode::NotFound => self
                .store
                .topic_put(namespace, topic, &TopicPolicy::default(), self.clock.now())
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        }
    }

    pub async fn get(&self, namespace: &Namespace, topic: &TopicName) -> Result<Topic, Error> {
        self.store.topic_get(namespace, topic).await
    }

    pub async fn list(&self, namespace: &Namespace) -> Result<Vec<Topic>, Error> {
        self.store.topics_list(namespace).await
    }

    /// Deletes a topic and its events.
    pub async fn delete(&self, namespace: &Namespace, topic: &TopicName) -> Result<(), Error> {
        self.store.topic_delete(namespace, topic).await
    }

    /// An id for an event published without one.
    pub fn new_id(&self) -> String {
        let ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
        ids.next_event(self.clock.now())
    }

    /// Appends `events` to `topic`, all or none, once admitted: at most a
    /// batch, within the namespace's publish rate (429 `rate_limited`) and
    /// `max_bytes` (429 `quota_exceeded`). Answers once durable.
    pub async fn publish(
        &self,
        namespace: &Namespace,
        topic: &TopicName,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Published>, Error> {
        if events.is_empty() {
            return Err(Error::invalid("events must hold at least one event"));
        }
        if events.len() > self.limits.max_batch {
            return Err(Error::new(
                ErrorCode::BatchTooLarge,
                format!(
                    "a batch holds at most {} events; this one has {}",
                    self.limits.max_batch,
                    events.len()
                ),
            ));
        }
        self.namespaces
            .take(namespace, RateKind::Publish, events.len() as u64)
            .await?;
        let bytes = events.iter().map(|e| e.data.len() as u64).sum();
        self.namespaces.take_bytes(namespace, bytes).await?;
        let published = self
            .store
            .events_publish(namespace, topic, events, self.clock.now())
            .await?;
        let stored = published.iter().filter(|p| !p.duplicate).count() as u64;
        if stored > 0 {
            metrics::events_published(namespace, topic, stored);
        }
        Ok(published)
    }

    /// Events after `query.after`; with `wait`, waits up to that long for
    /// the first one when there is none yet (woken by the append itself,
    /// from whichever node).
    pub async fn read(
        &self,
        namespace: &Namespace,
        topic: &TopicName,
        query: &EventQuery,
        wait: Duration,
    ) -> Result<Vec<Event>, Error> {
        let deadline = tokio::time::Instant::now() + wait;
        let listener = self.signal.topic_listener(namespace, topic);
        loop {
            // Enabled before the read: an append between the two still wakes it.
            let appended = listener.notified();
            tokio::pin!(appended);
            appended.as_mut().enable();
            let events = self.store.events_read(namespace, topic, query).await?;
            if !events.is_empty() || wait.is_zero() || self.shutdown.is_fired() {
                return Ok(events);
            }
            let _parked = metrics::event_waiter();
            tokio::select! {
                () = appended => {}
                () = self.shutdown.clone().wait() => {}
                () = tokio::time::sleep_until(deadline) => return Ok(events),
            }
        }
    }

    /// Events after `query.after`, at once.
    pub async fn events(
        &self,
        namespace: &Namespace,
        topic: &TopicName,
        query: &EventQuery,
    ) -> Result<Vec<Event>, Error> {
        self.store.events_read(namespace, topic, query).await
    }

    pub async fn event(
        &self,
        namespace: &Namespace,
        topic: &TopicName,
        id: &str,
    ) -> Result<Event, Error> {
        self.store.event_get(namespace, topic, id).await
    }
}
