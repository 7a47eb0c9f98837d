//! `wait_for` on events. A waiting step records the head seq of its topic
//! when it started (read before the decision, so nothing published after it
//! began is missed); the driver keeps, by topic, the runs that wait and how
//! far their events were looked at. On every append (any node, through the
//! store's signal) the deliveries service asks [`Driver::deliver_events`]
//! to read each such topic past the lowest of those seqs and to hand the
//! events to the runs, whose scheduler takes the first match. The registry
//! lives in memory: a run is noted whenever the driver stores or reads its
//! journal, and the run sweep (every run at start, every minute on the
//! maintenance leader) notes every waiting run again after a restart or on
//! another node.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use keel_core::subscription::event_context;
use keel_core::workflow::definition::Action;
use keel_core::workflow::{Definition, RunId, StepStatus};
use keel_core::{Error, ErrorCode, Namespace, TopicName};
use keel_store::{EventQuery, StoredRun};
use serde_json::Value;
use tokio::sync::Notify;

use super::{Driver, Hint, Op};

/// Most events one look at a topic reads.
const BATCH: u32 = 500;

type TopicKey = (Namespace, String);

#[derive(Default)]
pub(crate) struct EventWaits {
    /// By topic: each waiting run and the seq its events were read up to.
    topics: Mutex<HashMap<TopicKey, HashMap<RunId, u64>>>,
    /// Woken when a run starts waiting: events may already be there.
    pub(crate) noted: Notify,
}

impl EventWaits {
    /// Notes which topics `run` waits on now (and forgets the others).
    pub(crate) fn note(&self, run: &StoredRun, def: &Definition) {
        // Most workflows never wait for events: no lock on their hot path.
        if def.event_topics().is_empty() {
            return;
        }
        let mut waiting: BTreeMap<&str, u64> = BTreeMap::new();
        if !run.state.status.is_final() {
            for (name, step) in &def.steps {
                if let Action::WaitFor {
                    event: Some(wait), ..
                } = &step.action
                    && let Some(rec) = run.state.steps.get(name)
                    && rec.state == StepStatus::Waiting
                    && let Some(after) = rec.event_after
                {
                    let low = waiting.entry(wait.topic.as_str()).or_insert(after);
                    *low = (*low).min(after);
                }
            }
        }
        let mut topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        let mut added = false;
        for ((namespace, topic), runs) in topics.iter_mut() {
            if namespace == &run.namespace && !waiting.contains_key(topic.as_str()) {
                runs.remove(&run.id);
            }
        }
        for (topic, after) in waiting {
            let runs = topics
                .entry((run.namespace.clone(), topic.to_owned()))
                .or_default();
            if let std::collections::hash_map::Entry::Vacant(entry) = runs.entry(run.id) {
                entry.insert(after);
                added = true;
            }
        }
        topics.retain(|_, runs| !runs.is_empty());
        drop(topics);
        if added {
            self.noted.notify_waiters();
        }
    }

    fn snapshot(&self) -> Vec<(TopicKey, HashMap<RunId, u64>)> {
        let topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        topics.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    fn read_up_to(&self, key: &TopicKey, run: RunId, seq: u64) {
        let mut topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(after) = topics.get_mut(key).and_then(|runs| runs.get_mut(&run)) {
            *after = (*after).max(seq);
        }
    }
}

impl Driver {
    /// The head seq of every topic `def` waits on events of (0 for a topic
    /// not there yet).
    pub(crate) async fn event_heads(
        &self,
        namespace: &Namespace,
        def: &Definition,
    ) -> Result<BTreeMap<String, u64>, Error> {
        let mut heads = BTreeMap::new();
        for topic in def.event_topics() {
            let Ok(name) = TopicName::new(topic) else {
                continue;
            };
            let head = match self.topics.get(namespace, &name).await {
                Ok(t) => t.head_seq,
                Err(e) if e.code == ErrorCode::NotFound => 0,
                Err(e) => return Err(e),
            };
            heads.insert(topic.to_owned(), head);
        }
        Ok(heads)
    }

    /// Hands new events to the runs waiting on their topics; true when any
    /// were read (there may be more).
    pub async fn deliver_events(self: &Arc<Self>) -> bool {
        let mut busy = false;
        for ((namespace, topic), runs) in self.waits.snapshot() {
            let Ok(name) = TopicName::new(&topic) else {
                continue;
            };
            let Some(low) = runs.values().min().copied() else {
                continue;
            };
            let query = EventQuery {
                after: low,
                key: None,
                kind: None,
                limit: BATCH,
            };
            let events = match self.topics.events(&namespace, &name, &query).await {
                Ok(events) => events,
                Err(e) if e.code == ErrorCode::NotFound => continue,
                Err(e) => {
                    tracing::warn!(%namespace, topic, error = %e, "cannot read events for waiting runs");
                    continue;
                }
            };
            let Some(last) = events.last().map(|e| e.seq) else {
                continue;
            };
            busy = true;
            let key = (namespace.clone(), topic.clone());
            for (run, after) in runs {
                let fresh: Vec<(u64, Value)> = events
                    .iter()
                    .filter(|e| e.seq > after)
                    .map(|e| (e.seq, event_context(e)["event"].clone()))
                    .collect();
                if fresh.is_empty() {
                    continue;
                }
                let op = Op::Events(topic.clone(), fresh);
                match self.advance(&namespace, run, Hint::Nothing, op).await {
                    Ok(_) => self.waits.read_up_to(&key, run, last),
                    Err(e) => {
                        tracing::warn!(%namespace, %run, error = %e, "cannot hand events to a run");
                    }
                }
            }
        }
        busy
    }
}
