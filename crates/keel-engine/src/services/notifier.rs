//! Sends notifications' deliveries. Each channel's deliveries are jobs on
//! its queue (`keel.notify.{channel}`), whose policy carries the channel's
//! rate and Slack's pacing; one task per such queue leases them like any
//! worker, sends each on its channel, records the attempt on the delivery,
//! and acks. What "never twice" means per channel is decided here
//! (docs/design.md, "Notifications: never twice"): an in-app message is
//! written once per delivery by the store; a webhook carries the
//! delivery's id as `webhook-id`; Slack and e-mail are marked `sending`
//! durably before the call, so an attempt that finds its delivery
//! `sending` knows an earlier one was cut and records `unknown` instead of
//! sending again (unless the e-mail channel says `retry_unknown`). A
//! delivery that fails for good falls back to the next channel of its
//! `fallback` in the same write, and the failover is published on the
//! namespace's `keel.alerts`. A channel failing again and again opens its
//! breaker for a while: its deliveries go straight to their fallback.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use keel_core::notification::{
    ChannelKind, ChannelSpec, DeliveryAttempt, DeliveryStatus, Dispatch, queue_channel,
};
use keel_core::{
    ChannelName, Error, ErrorCode, JobId, Namespace, NewEvent, QueuePolicy, QueueRef, Retry,
    TopicName,
};
use keel_store::{Ack, AckOutcome, DeliveryMove, LeasedJob, NewDelivery, NewInboxMessage};
use serde_json::json;
use tokio::sync::Notify;

use super::queue_worker::{self, QueueWorker};
use crate::jobs::JobService;
use crate::notifications::email::{self, Mailer};
use crate::notifications::{
    NotificationService, Unsubscribe, delivery_job, in_app_content, unreachable, webhook,
};
use crate::notifications::{Sent, slack};
use crate::queues::QueueService;
use crate::slos::ALERTS_TOPIC;
use crate::{Shutdown, metrics};

/// Failures in a row that open a channel's breaker, and for how long.
const BREAKER_AFTER: u32 = 5;
const BREAKER_OPEN: Duration = Duration::from_secs(30);

impl QueueWorker for Notifier {
    const WORKER_ID: &'static str = "keel-notify";
    /// Deliveries of one channel in flight on this node.
    const IN_FLIGHT: usize = 32;
    const LEASE_BATCH: u32 = 64;

    type Done = Ack;

    fn picks(&self, queue: &QueueRef, _policy: &QueuePolicy) -> bool {
        queue_channel(&queue.queue).is_some()
    }

    fn woken(&self) -> &Notify {
        &self.notifications.channels_woken
    }

    fn jobs(&self) -> &Arc<JobService> {
        &self.jobs
    }

    fn queues(&self) -> &Arc<QueueService> {
        &self.queues
    }

    async fn finish(&self, namespace: &Namespace, acks: Vec<Ack>) {
        super::queue_worker::ack_all(&self.jobs, namespace, acks).await;
    }

    async fn handle(&self, namespace: &Namespace, job: LeasedJob) -> Ack {
        self.deliver(namespace, job).await
    }
}

/// What the notifier works through.
#[derive(Clone)]
pub struct Notifier {
    notifications: Arc<NotificationService>,
    jobs: Arc<JobService>,
    queues: Arc<QueueService>,
    shared: Arc<Shared>,
}

/// What every channel's task shares on this node.
struct Shared {
    client: reqwest::Client,
    mailer: Mailer,
    breakers: Mutex<HashMap<(Namespace, ChannelName), Breaker>>,
}

/// A channel's failures in a row, and since when its breaker is open.
#[derive(Default)]
struct Breaker {
    failures: u32,
    open_since: Option<Instant>,
}

impl Notifier {
    pub fn new(
        notifications: Arc<NotificationService>,
        jobs: Arc<JobService>,
        queues: Arc<QueueService>,
    ) -> Self {
        let client = notifications.guard.client(false);
        Notifier {
            notifications,
            jobs,
            queues,
            shared: Arc::new(Shared {
                client,
                mailer: Mailer::default(),
                breakers: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub async fn run(self, shutdown: Shutdown) {
        queue_worker::run(self, shutdown).await;
    }

    /// Sends one delivery; how to ack its job.
    async fn deliver(&self, namespace: &Namespace, job: LeasedJob) -> Ack {
        let token = job.lease_token;
        let outcome = match self.attempt(namespace, &job).await {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::warn!(%namespace, delivery = %job.id, error = %e, "a delivery's attempt failed");
                AckOutcome::Fail {
                    message: e.message,
                    retry: Retry {
                        retry: true,
                        retry_after_ms: None,
                    },
                }
            }
        };
        Ack { token, outcome }
    }

    async fn attempt(&self, namespace: &Namespace, job: &LeasedJob) -> Result<AckOutcome, Error> {
        let service = &self.notifications;
        let now = service.clock.now();
        let mut dispatch: Dispatch = serde_json::from_str(job.payload.get())
            .map_err(|e| Error::internal(format!("a delivery's job does not read: {e}")))?;
        if dispatch.digest.is_some() {
            dispatch.content = service.digest_content(namespace, &dispatch).await?;
        }
        let spec = match service.channel_spec(namespace, &dispatch.channel).await {
            Ok(spec) => spec,
            Err(e) if e.code == ErrorCode::NotFound => {
                let said = Sent::Failed(format!("channel {} was deleted", dispatch.channel), 0);
                return self.failed(namespace, job, &dispatch, said).await;
            }
            Err(e) => return Err(e),
        };
        if !dispatch.fallback.is_empty() && self.breaker_open(namespace, &dispatch.channel) {
            let said = Sent::Failed(
                "the channel's breaker is open: it failed too often".into(),
                0,
            );
            return self.failed(namespace, job, &dispatch, said).await;
        }
        let sent = match spec.kind() {
            ChannelKind::InApp => {
                let content = in_app_content(&dispatch);
                let attempt = attempt_of(&Sent::Ok("written to the inbox".into(), 0), now);
                let message = NewInboxMessage {
                    recipient: dispatch.to.recipient.clone(),
                    delivery: job.id,
                    notification: dispatch.notification,
                    category: dispatch.category.clone(),
                    content,
                };
                service.inbox_put(namespace, message, attempt).await?;
                metrics::notification_attempt(namespace, dispatch.channel.as_str(), "sent");
                return Ok(complete());
            }
            ChannelKind::Webhook => {
                // An attempt whose ack was lost after the endpoint's answer
                // was recorded: nothing to send again.
                let recorded = service.store.delivery_get(namespace, &job.id).await?;
                if recorded.is_some_and(|d| d.status.is_final()) {
                    return Ok(complete());
                }
                webhook::post(
                    &self.shared.client,
                    service,
                    namespace,
                    (job.id, &dispatch),
                    &spec,
                )
                .await?
            }
            ChannelKind::Slack | ChannelKind::Email => {
                let before = self
                    .move_to(
                        namespace,
                        job.id,
                        &[DeliveryStatus::Queued],
                        DeliveryStatus::Sending,
                        None,
                    )
                    .await?;
                let retry_unknown = spec.email.as_ref().is_some_and(|e| e.retry_unknown);
                match before {
                    DeliveryStatus::Queued => {}
                    DeliveryStatus::Sending if retry_unknown => {}
                    DeliveryStatus::Sending => {
                        let said = Sent::Unknown(
                            "an earlier attempt was cut before the provider answered".into(),
                            0,
                        );
                        self.move_to(
                            namespace,
                            job.id,
                            &[DeliveryStatus::Sending],
                            DeliveryStatus::Unknown,
                            Some(attempt_of(&said, now)),
                        )
                        .await?;
                        return Ok(complete());
                    }
                    _ => return Ok(complete()),
                }
                match (&spec.slack, &spec.email) {
                    (Some(channel), _) => {
                        slack::post(&self.shared.client, channel, &dispatch).await
                    }
                    (_, Some(channel)) => {
                        let unsubscribe = unsubscribe_of(service, namespace, &dispatch).await?;
                        self.shared
                            .mailer
                            .send(
                                service.guard,
                                channel,
                                (job.id, &dispatch),
                                unsubscribe,
                                now,
                            )
                            .await
                    }
                    _ => Sent::Failed("the channel has no address".into(), 0),
                }
            }
        };
        self.settle(namespace, job, &dispatch, &spec, sent).await
    }

    /// Records what an attempt came to and decides the job's ack.
    async fn settle(
        &self,
        namespace: &Namespace,
        job: &LeasedJob,
        dispatch: &Dispatch,
        spec: &ChannelSpec,
        sent: Sent,
    ) -> Result<AckOutcome, Error> {
        let now = self.notifications.clock.now();
        let live = [DeliveryStatus::Queued, DeliveryStatus::Sending];
        self.breaker_record(namespace, &dispatch.channel, matches!(sent, Sent::Ok(..)));
        metrics::notification_attempt(namespace, dispatch.channel.as_str(), outcome_of(&sent));
        let retry_unknown = spec.email.as_ref().is_some_and(|e| e.retry_unknown);
        match &sent {
            Sent::Ok(..) => {
                self.move_to(
                    namespace,
                    job.id,
                    &live,
                    DeliveryStatus::Sent,
                    Some(attempt_of(&sent, now)),
                )
                .await?;
                Ok(complete())
            }
            Sent::Unknown(..) if !retry_unknown => {
                self.move_to(
                    namespace,
                    job.id,
                    &live,
                    DeliveryStatus::Unknown,
                    Some(attempt_of(&sent, now)),
                )
                .await?;
                Ok(complete())
            }
            Sent::Retry(said, _, _) | Sent::Unknown(said, _) if job.attempt < job.max_attempts => {
                let retry_after_ms = match &sent {
                    Sent::Retry(_, _, after) => *after,
                    _ => None,
                };
                self.move_to(
                    namespace,
                    job.id,
                    &live,
                    DeliveryStatus::Queued,
                    Some(attempt_of(&sent, now)),
                )
                .await?;
                Ok(AckOutcome::Fail {
                    message: said.clone(),
                    retry: Retry {
                        retry: true,
                        retry_after_ms,
                    },
                })
            }
            _ => self.failed(namespace, job, dispatch, sent).await,
        }
    }

    /// A delivery failed for good: it is marked failed, and its next
    /// fallback channel (if any) gets a delivery in the same write; the
    /// failover is published on `keel.alerts`.
    async fn failed(
        &self,
        namespace: &Namespace,
        job: &LeasedJob,
        dispatch: &Dispatch,
        sent: Sent,
    ) -> Result<AckOutcome, Error> {
        let service = &self.notifications;
        let now = service.clock.now();
        let reason = match &sent {
            Sent::Ok(s, _) | Sent::Retry(s, _, _) | Sent::Failed(s, _) | Sent::Unknown(s, _) => {
                s.clone()
            }
        };
        let mut then = None;
        let mut remaining = dispatch.fallback.clone();
        while then.is_none() && !remaining.is_empty() {
            let next = remaining.remove(0);
            let Ok(next_spec) = service.channel_spec(namespace, &next).await else {
                continue;
            };
            if unreachable(&next_spec, &dispatch.to).is_some() {
                continue;
            }
            let id = service.delivery_id(now);
            // A digest falls back with what it collected, rendered.
            let next_dispatch = Dispatch {
                channel: next.clone(),
                fallback: remaining.clone(),
                digest: None,
                ..dispatch.clone()
            };
            then = Some(NewDelivery {
                id,
                channel: next.to_string(),
                status: DeliveryStatus::Queued,
                fallback_of: Some(job.id),
                job: Some(delivery_job(
                    namespace,
                    &next_spec,
                    id,
                    &next_dispatch,
                    now,
                )?),
            });
        }
        let next = then.as_ref().map(|d| d.channel.clone());
        let before = service
            .store
            .delivery_move(
                namespace,
                DeliveryMove {
                    id: job.id,
                    from: vec![DeliveryStatus::Queued, DeliveryStatus::Sending],
                    to: DeliveryStatus::Failed,
                    attempt: Some(attempt_of(&sent, now)),
                    then,
                },
                now,
            )
            .await?;
        if let Some(next) = next
            && !before.is_final()
        {
            service.channels_woken.notify_waiters();
            self.alert(namespace, job.id, dispatch, &next, &reason)
                .await;
        }
        Ok(AckOutcome::Fail {
            message: reason,
            retry: Retry {
                retry: false,
                retry_after_ms: None,
            },
        })
    }

    async fn alert(
        &self,
        namespace: &Namespace,
        delivery: JobId,
        dispatch: &Dispatch,
        to: &str,
        reason: &str,
    ) {
        let topics = &self.notifications.topics;
        let now = self.notifications.clock.now();
        let Ok(topic) = TopicName::new(ALERTS_TOPIC) else {
            return;
        };
        let event = NewEvent {
            id: format!("failover/{delivery}"),
            generated_id: false,
            kind: "keel.notification.failover".to_owned(),
            source: "keel".to_owned(),
            key: Some(dispatch.channel.to_string()),
            time: now,
            data: json!({
                "notification": dispatch.notification,
                "delivery": delivery,
                "from": dispatch.channel,
                "to": to,
                "reason": reason,
            })
            .to_string(),
            headers: Default::default(),
        };
        let published = match topics.ensure(namespace, &topic).await {
            Ok(()) => topics
                .publish(namespace, &topic, vec![event])
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = published {
            tracing::warn!(%namespace, %delivery, error = %e, "a failover's keel.alerts event was refused");
        }
    }

    async fn move_to(
        &self,
        namespace: &Namespace,
        id: JobId,
        from: &[DeliveryStatus],
        to: DeliveryStatus,
        attempt: Option<DeliveryAttempt>,
    ) -> Result<DeliveryStatus, Error> {
        let change = DeliveryMove {
            id,
            from: from.to_vec(),
            to,
            attempt,
            then: None,
        };
        let now = self.notifications.clock.now();
        self.notifications
            .store
            .delivery_move(namespace, change, now)
            .await
    }

    fn breaker_open(&self, namespace: &Namespace, channel: &ChannelName) -> bool {
        let breakers = self
            .shared
            .breakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        breakers
            .get(&(namespace.clone(), channel.clone()))
            .and_then(|b| b.open_since)
            .is_some_and(|since| since.elapsed() < BREAKER_OPEN)
    }

    fn breaker_record(&self, namespace: &Namespace, channel: &ChannelName, ok: bool) {
        let mut breakers = self
            .shared
            .breakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let breaker = breakers
            .entry((namespace.clone(), channel.clone()))
            .or_default();
        if ok {
            *breaker = Breaker::default();
            return;
        }
        breaker.failures += 1;
        if breaker.failures >= BREAKER_AFTER
            && breaker
                .open_since
                .is_none_or(|since| since.elapsed() >= BREAKER_OPEN)
        {
            breaker.open_since = Some(Instant::now());
        }
    }
}

/// An e-mail's one-click unsubscribe link: for a non-critical category to
/// a saved recipient, when the server knows its public address.
async fn unsubscribe_of(
    service: &NotificationService,
    namespace: &Namespace,
    dispatch: &Dispatch,
) -> Result<Option<email::Unsubscribe>, Error> {
    let (Some(category), false) = (&dispatch.category, dispatch.critical) else {
        return Ok(None);
    };
    if dispatch.to.recipient.starts_with("inline:") {
        return Ok(None);
    }
    let what = Unsubscribe {
        namespace: namespace.to_string(),
        recipient: dispatch.to.recipient.clone(),
        category: category.clone(),
        channel: dispatch.channel.to_string(),
    };
    Ok(service
        .unsubscribe_link(&what)
        .await?
        .map(|url| email::Unsubscribe { url }))
}

fn complete() -> AckOutcome {
    AckOutcome::Complete { result: None }
}

fn outcome_of(sent: &Sent) -> &'static str {
    match sent {
        Sent::Ok(..) => "sent",
        Sent::Retry(..) => "retry",
        Sent::Failed(..) => "failed",
        Sent::Unknown(..) => "unknown",
    }
}

fn attempt_of(sent: &Sent, at: keel_core::Timestamp) -> DeliveryAttempt {
    let (Sent::Ok(answer, latency_ms)
    | Sent::Retry(answer, latency_ms, _)
    | Sent::Failed(answer, latency_ms)
    | Sent::Unknown(answer, latency_ms)) = sent;
    DeliveryAttempt {
        at,
        outcome: outcome_of(sent).to_owned(),
        answer: Some(answer.clone()),
        latency_ms: *latency_ms,
    }
}
