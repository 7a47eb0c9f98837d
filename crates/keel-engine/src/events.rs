//! Publishing and reading events: the one path every publish takes (the
//! API, and tomorrow schedules and webhook sources), with its metrics, and
//! reads that wait for the next append instead of polling.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use keel_core::{Clock, Error, Event, JobIdGenerator, Namespace, NewEvent, TopicName};
use keel_store::{EventQuery, Published, Store};

use crate::{Shutdown, metrics};

pub struct EventService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    shutdown: Shutdown,
    /// Not `Sync` by itself: it carries a counter for ids made in one ms.
    ids: Mutex<JobIdGenerator>,
}

impl EventService {
    pub(crate) fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, shutdown: Shutdown) -> Self {
        EventService {
            store,
            clock,
            shutdown,
            ids: Mutex::default(),
        }
    }

    /// An id for an event published without one.
    pub fn new_id(&self) -> String {
        let ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
        ids.next_event(self.clock.now())
    }

    /// Appends `events` to `topic`, all or none; answers once durable.
    pub async fn publish(
        &self,
        namespace: &Namespace,
        topic: &TopicName,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Published>, Error> {
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
        let listener = self.store.ready_signal().topic_listener(namespace, topic);
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
}
