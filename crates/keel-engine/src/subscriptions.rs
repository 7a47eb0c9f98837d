//! Subscriptions: configuring them, pulled fetches that wait for the next
//! publish, commits, and the hand-off of events to targets, which the
//! deliveries service drives (`services/deliveries.rs`).
//!
//! A hand-off reads the events after the subscription's position and writes
//! the new position in one transaction with what the events became: jobs
//! (owned by the subscription, so a crash either wrote both or neither), or
//! runs, started first under idempotency keys derived from the
//! subscription's id and each event's seq, so that a hand-off repeated after
//! a crash finds the runs it started. Either way each event reaches its
//! target once.

use std::sync::Arc;
use std::time::Duration;

use keel_core::endpoint::endpoint_queue;
use keel_core::job::JobRequest;
use keel_core::subscription::{JobFields, Start, SubscriptionSpec, Target};
use keel_core::{Clock, Error, Event, JobIdGenerator, Limits, Namespace, QueueRef, Timestamp};
use keel_store::{Fetched, JobOwner, OwnedJob, ReadySignal, Subscription, SubscriptionStore};
use serde_json::value::to_raw_value;
use tokio::sync::Notify;

use crate::endpoints::EndpointService;
use crate::jobs::JobService;
use crate::queues::QueueService;
use crate::rates::OwnedCounts;
use crate::slos::SloService;
use crate::topics::TopicService;
use crate::workflows::Driver;
use crate::{Shutdown, metrics};

/// Most events one hand-off takes.
pub(crate) const HANDOFF_BATCH: u32 = 500;

/// What the subscription service is built from.
pub(crate) struct SubscriptionDeps {
    pub store: Arc<dyn SubscriptionStore>,
    pub signal: ReadySignal,
    pub clock: Arc<dyn Clock>,
    pub limits: Limits,
    pub shutdown: Shutdown,
    pub workflows: Arc<Driver>,
    pub jobs: Arc<JobService>,
    pub queues: Arc<QueueService>,
    pub topics: Arc<TopicService>,
    pub endpoints: Arc<EndpointService>,
    pub slos: Arc<SloService>,
}

pub struct SubscriptionService {
    store: Arc<dyn SubscriptionStore>,
    signal: ReadySignal,
    clock: Arc<dyn Clock>,
    limits: Limits,
    shutdown: Shutdown,
    workflows: Arc<Driver>,
    jobs: Arc<JobService>,
    queues: Arc<QueueService>,
    topics: Arc<TopicService>,
    endpoints: Arc<EndpointService>,
    slos: Arc<SloService>,
    ids: std::sync::Mutex<JobIdGenerator>,
    /// Wakes the deliveries service when a subscription changed here.
    pub(crate) changed: Notify,
}

impl SubscriptionService {
    pub(crate) fn new(deps: SubscriptionDeps) -> Self {
        SubscriptionService {
            store: deps.store,
            signal: deps.signal,
            clock: deps.clock,
            limits: deps.limits,
            shutdown: deps.shutdown,
            workflows: deps.workflows,
            jobs: deps.jobs,
            queues: deps.queues,
            topics: deps.topics,
            endpoints: deps.endpoints,
            slos: deps.slos,
            ids: std::sync::Mutex::default(),
            changed: Notify::new(),
        }
    }

    pub async fn get(&self, namespace: &Namespace, name: &str) -> Result<Subscription, Error> {
        self.store.subscription_get(namespace, name).await
    }

    /// A namespace's subscriptions (or every namespace's), of one topic or all.
    pub async fn list(
        &self,
        namespace: Option<&Namespace>,
        topic: Option<&keel_core::TopicName>,
    ) -> Result<Vec<Subscription>, Error> {
        self.store.subscriptions_list(namespace, topic).await
    }

    pub async fn delete(&self, namespace: &Namespace, name: &str) -> Result<(), Error> {
        self.store.subscription_delete(namespace, name).await?;
        self.changed.notify_waiters();
        Ok(())
    }

    /// Creates or updates a subscription; a queue target's job fields are
    /// checked here, as an enqueue would check them.
    pub async fn put(
        &self,
        namespace: &Namespace,
        name: &str,
        spec: &SubscriptionSpec,
        start: Start,
    ) -> Result<(Subscription, bool), Error> {
        spec.check()?;
        if let Some(Target::Queue { queue, job, .. }) = &spec.target {
            let queue = QueueRef {
                namespace: namespace.clone(),
                queue: queue.clone(),
            };
            let policy = self.queues.policy(&queue).await?;
            job_request(job.as_ref(), serde_json::Value::Null, None)?
                .validate(&policy, &self.limits, self.clock.now())
                .map_err(|e| Error::new(e.code, format!("target.job: {}", e.message)))?;
        }
        if let Some(Target::Endpoint { endpoint, .. }) = &spec.target {
            self.endpoints.get(namespace, endpoint).await?;
        }
        if let Some(Target::Handler { handler, .. }) = &spec.target {
            // Its own queue has the handler's policy since its upload.
            let queue = handler_queue(namespace, handler)?;
            if self.queues.policy(&queue).await?.handler.as_ref() != Some(handler) {
                return Err(Error::new(
                    keel_core::ErrorCode::NotFound,
                    format!("handler {handler} not found"),
                ));
            }
        }
        let answer = self
            .store
            .subscription_put(namespace, name, spec, start, self.clock.now())
            .await?;
        self.changed.notify_waiters();
        Ok(answer)
    }

    pub async fn pause(
        &self,
        namespace: &Namespace,
        name: &str,
        paused: bool,
    ) -> Result<Subscription, Error> {
        let sub = self
            .store
            .subscription_pause(namespace, name, paused)
            .await?;
        self.changed.notify_waiters();
        Ok(sub)
    }

    pub async fn seek(
        &self,
        namespace: &Namespace,
        name: &str,
        start: Start,
    ) -> Result<Subscription, Error> {
        let sub = self.store.subscription_seek(namespace, name, start).await?;
        self.changed.notify_waiters();
        Ok(sub)
    }

    /// Claims up to `max` events for `consumer`; with `wait`, waits up to
    /// that long for some when there are none (woken by a publish to the
    /// topic, from whichever node).
    pub async fn fetch(
        &self,
        namespace: &Namespace,
        name: &str,
        consumer: &str,
        max: u32,
        wait: Duration,
    ) -> Result<Fetched, Error> {
        let deadline = tokio::time::Instant::now() + wait;
        let sub = self.store.subscription_get(namespace, name).await?;
        let listener = self.signal.topic_listener(namespace, &sub.spec.topic);
        loop {
            let appended = listener.notified();
            tokio::pin!(appended);
            appended.as_mut().enable();
            let now = self.clock.now();
            let fetched = self
                .store
                .subscription_fetch(namespace, name, consumer, max, now)
                .await?;
            if !fetched.events.is_empty() {
                let ages = fetched.events.iter().map(|e| age(e, now));
                metrics::events_delivered(namespace, name, 0, ages);
                let ages_ms = fetched
                    .events
                    .iter()
                    .map(|e| now.millis_since(e.published_at));
                self.slos
                    .topic_delivered(namespace, &sub.spec.topic, now, ages_ms, 0);
                return Ok(fetched);
            }
            if wait.is_zero() || self.shutdown.is_fired() {
                return Ok(fetched);
            }
            let _parked = metrics::event_waiter();
            tokio::select! {
                () = appended => {}
                () = self.shutdown.clone().wait() => {}
                () = tokio::time::sleep_until(deadline) => return Ok(fetched),
            }
        }
    }

    pub async fn commit(
        &self,
        namespace: &Namespace,
        name: &str,
        consumer: &str,
        cursor: &str,
    ) -> Result<(), Error> {
        let committed = self
            .store
            .subscription_commit(namespace, name, consumer, cursor, self.clock.now())
            .await?;
        metrics::events_delivered(namespace, name, committed, std::iter::empty());
        Ok(())
    }

    /// Hands the next events of `sub` to its target; the number handed off
    /// (0: nothing new, or another node got there first).
    pub(crate) async fn deliver(&self, sub: &Subscription) -> Result<u64, Error> {
        let Some(target) = &sub.spec.target else {
            return Ok(0);
        };
        let query = keel_store::EventQuery {
            after: sub.position,
            key: None,
            kind: None,
            limit: HANDOFF_BATCH,
        };
        let events = match self
            .topics
            .events(&sub.namespace, &sub.spec.topic, &query)
            .await
        {
            Ok(events) => events,
            // The topic is not there yet: nothing to hand off.
            Err(e) if e.code == keel_core::ErrorCode::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let next = events.first().map_or(sub.head_seq + 1, |e| e.seq);
        let skipped = next.saturating_sub(sub.position + 1);
        let to = events.last().map_or(sub.position + skipped, |e| e.seq);
        if to == sub.position {
            return Ok(0);
        }
        let now = self.clock.now();
        let wanted: Vec<&Event> = events
            .iter()
            .filter(|e| sub.spec.filter.matches(e))
            .collect();
        let moved = match self.hand_off(sub, target, &wanted, to, skipped, now).await {
            Ok(moved) => moved,
            Err(e) => {
                let n = wanted.len() as u64;
                self.slos
                    .topic_failed(&sub.namespace, &sub.spec.topic, now, n);
                return Err(e);
            }
        };
        if !moved {
            return Ok(0);
        }
        let delivered = wanted.len() as u64;
        let ages = wanted.iter().map(|e| age(e, now));
        metrics::events_delivered(&sub.namespace, &sub.name, delivered, ages);
        let ages_ms = wanted.iter().map(|e| now.millis_since(e.published_at));
        self.slos
            .topic_delivered(&sub.namespace, &sub.spec.topic, now, ages_ms, delivered);
        Ok(to - sub.position)
    }

    /// Writes what `wanted` becomes on `target` with the subscription's new
    /// position `to`, in one transaction; false when another node moved
    /// the position first.
    async fn hand_off(
        &self,
        sub: &Subscription,
        target: &Target,
        wanted: &[&Event],
        to: u64,
        skipped: u64,
        now: Timestamp,
    ) -> Result<bool, Error> {
        let jobs = match target {
            Target::Queue { queue, job, .. } => {
                let queue = QueueRef {
                    namespace: sub.namespace.clone(),
                    queue: queue.clone(),
                };
                self.owned_jobs(sub, target, &queue, job.as_ref(), true, wanted, now)
                    .await?
            }
            Target::Endpoint { endpoint, .. } => {
                let spec = self.endpoints.get(&sub.namespace, endpoint).await?.spec;
                let queue = endpoint_queue(&sub.namespace, endpoint)?;
                let first = spec.retry_schedule().first().copied().filter(|&ms| ms > 0);
                let fields = JobFields {
                    delay_ms: first,
                    ..JobFields::default()
                };
                self.owned_jobs(
                    sub,
                    target,
                    &queue,
                    Some(&fields),
                    spec.ordered,
                    wanted,
                    now,
                )
                .await?
            }
            Target::Handler { handler, .. } => {
                let queue = handler_queue(&sub.namespace, handler)?;
                self.owned_jobs(sub, target, &queue, None, true, wanted, now)
                    .await?
            }
            Target::Workflow { workflow, .. } => {
                for event in wanted {
                    let input = target.render(event)?;
                    let key = format!("keel.sub/{}/{}", sub.id, event.seq);
                    self.workflows
                        .start(
                            &sub.namespace,
                            workflow.as_str(),
                            None,
                            input,
                            Some(key),
                            event.event.traceparent(),
                        )
                        .await?;
                }
                Vec::new()
            }
        };
        let counts = OwnedCounts::of(&jobs);
        let moved = self
            .store
            .subscription_handoff(
                &sub.namespace,
                &sub.name,
                sub.position,
                to,
                wanted.len() as u64,
                skipped,
                jobs,
                now,
            )
            .await?;
        if moved {
            self.jobs.owned_enqueued(&counts);
        }
        Ok(moved)
    }

    /// A job per event on `queue`, owned by the subscription; `ordered`
    /// gives each the event's key as its ordering key.
    #[allow(
        clippy::too_many_arguments,
        reason = "what a hand-off already holds, passed as it is"
    )]
    async fn owned_jobs(
        &self,
        sub: &Subscription,
        target: &Target,
        queue: &QueueRef,
        fields: Option<&JobFields>,
        ordered: bool,
        events: &[&Event],
        now: Timestamp,
    ) -> Result<Vec<OwnedJob>, Error> {
        let policy = self.queues.policy(queue).await?;
        let mut jobs = Vec::with_capacity(events.len());
        for event in events {
            let payload = target.render(event)?;
            let mut request = job_request(fields, payload, Some((sub, event)))?;
            if !ordered {
                request.ordering_key = None;
            }
            if let (
                Target::Handler {
                    object: Some(kind), ..
                },
                Some(key),
            ) = (target, &event.event.key)
            {
                request.ordering_key = None;
                request.object = Some(keel_core::handler::ObjectRef::new(kind, key)?);
            }
            let job = request.validate(&policy, &self.limits, now).map_err(|e| {
                Error::new(e.code, format!("event seq {}: {}", event.seq, e.message))
            })?;
            let id = {
                let ids = self
                    .ids
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                ids.next(now)
            };
            jobs.push(OwnedJob {
                queue: queue.clone(),
                id,
                job,
                owner: Some(JobOwner::Subscription {
                    subscription: sub.name.clone(),
                    seq: event.seq,
                }),
            });
        }
        Ok(jobs)
    }
}

/// The queue a handler target's deliveries go to: `keel.handler.{name}`.
pub fn handler_queue(
    namespace: &Namespace,
    handler: &keel_core::HandlerName,
) -> Result<QueueRef, Error> {
    Ok(QueueRef {
        namespace: namespace.clone(),
        queue: keel_core::QueueName::new(&format!("keel.handler.{handler}"))?,
    })
}

/// Seconds from an event's publish to `now`.
fn age(event: &Event, now: Timestamp) -> f64 {
    now.millis_since(event.published_at) as f64 / 1000.0
}

/// A queue target's job for one event (`delivery`: the subscription and
/// the event, whose key orders the job and whose ids tag it).
fn job_request(
    fields: Option<&JobFields>,
    payload: serde_json::Value,
    delivery: Option<(&Subscription, &Event)>,
) -> Result<JobRequest, Error> {
    let fields = fields.cloned().unwrap_or_default();
    let mut tags = fields.tags.unwrap_or_default();
    let (mut ordering_key, mut traceparent) = (None, None);
    if let Some((sub, event)) = delivery {
        tags.insert("keel.topic".into(), sub.spec.topic.to_string());
        tags.insert("keel.subscription".into(), sub.name.clone());
        tags.insert("keel.event".into(), event.event.id.clone());
        ordering_key = event.event.key.clone();
        traceparent = event.event.traceparent();
    }
    Ok(JobRequest {
        payload: to_raw_value(&payload)
            .map_err(|e| Error::invalid(format!("target payload: {e}")))?,
        priority: fields.priority,
        run_at: None,
        delay_ms: fields.delay_ms,
        max_attempts: fields.max_attempts,
        backoff: fields.backoff,
        lease_ms: fields.lease_ms,
        idempotency_key: None,
        ordering_key,
        tags: Some(tags),
        debounce: None,
        traceparent,
        object: None,
    })
}
