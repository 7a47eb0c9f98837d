//! Queues: a queue's counts and rates, its policy, pause and resume, and
//! what follows a policy change (the pusher looks again at push queues, the
//! SLO service takes the new objectives), whoever changes it.

use std::sync::{Arc, OnceLock, Weak};

use keel_core::slo::Subject;
use keel_core::{Clock, Error, QueuePolicy, QueueRef};
use keel_store::{Depth, QueueStats, QueueStore};

use crate::endpoints::EndpointService;
use crate::handlers::HandlerService;
use crate::rates::{Hour, Rates, RecentRates};
use crate::slos::SloService;

/// A queue as read: the store's counts and this node's recent rates.
#[derive(Clone, Debug)]
pub struct QueueStatus {
    pub stats: QueueStats,
    pub rates: RecentRates,
}

pub struct QueueService {
    store: Arc<dyn QueueStore>,
    clock: Arc<dyn Clock>,
    rates: Arc<Rates>,
    /// Push queues name endpoints, and endpoints keep their deliveries on
    /// queues: the endpoint service is built after this one and bound once
    /// the engine is assembled (weakly: it holds this service).
    endpoints: OnceLock<Weak<EndpointService>>,
    /// Handler queues name handlers, bound the same way.
    handlers: OnceLock<Weak<HandlerService>>,
    slos: Arc<SloService>,
    /// Fired when a queue's policy is set on this node: the workers that
    /// pick queues by policy look again at once.
    pub(crate) policy_changed: tokio::sync::Notify,
}

impl QueueService {
    pub(crate) fn new(
        store: Arc<dyn QueueStore>,
        clock: Arc<dyn Clock>,
        rates: Arc<Rates>,
        slos: Arc<SloService>,
    ) -> Self {
        QueueService {
            store,
            clock,
            rates,
            endpoints: OnceLock::new(),
            handlers: OnceLock::new(),
            slos,
            policy_changed: tokio::sync::Notify::new(),
        }
    }

    pub(crate) fn bind_handlers(&self, handlers: &Arc<HandlerService>) {
        let _ = self.handlers.set(Arc::downgrade(handlers));
    }

    pub(crate) fn bind_endpoints(&self, endpoints: &Arc<EndpointService>) {
        let _ = self.endpoints.set(Arc::downgrade(endpoints));
    }

    fn endpoints(&self) -> Result<Arc<EndpointService>, Error> {
        self.endpoints
            .get()
            .and_then(Weak::upgrade)
            .ok_or_else(|| Error::internal("the endpoint service is not running"))
    }

    pub async fn status(&self, queue: &QueueRef) -> Result<QueueStatus, Error> {
        Ok(QueueStatus {
            stats: self.store.queue_stats(queue).await?,
            rates: self.rates.recent(queue, self.clock.now()),
        })
    }

    /// A queue's last hour as this node saw it, minute by minute.
    pub fn hour(&self, queue: &QueueRef) -> Hour {
        self.rates.hour(queue, self.clock.now())
    }

    /// Jobs by queue and state, in every namespace.
    pub async fn depths(&self) -> Result<Vec<Depth>, Error> {
        self.store.queue_depths().await
    }

    /// The policy jobs enqueued on `queue` get their defaults from.
    pub async fn policy(&self, queue: &QueueRef) -> Result<QueuePolicy, Error> {
        self.store.queue_policy(queue).await
    }

    /// Every queue with a policy set, in every namespace.
    pub async fn policies(&self) -> Result<Vec<(QueueRef, QueuePolicy)>, Error> {
        self.store.queue_policies().await
    }

    /// Sets a queue's policy; a push queue's endpoint must exist. The
    /// pusher and the SLO service hear of it at once.
    pub async fn set_policy(&self, queue: &QueueRef, policy: QueuePolicy) -> Result<(), Error> {
        policy.validate()?;
        let endpoints = self.endpoints()?;
        if let Some(push) = &policy.push {
            endpoints.get(&queue.namespace, &push.endpoint).await?;
        }
        if let Some(name) = &policy.handler {
            let handlers = self
                .handlers
                .get()
                .and_then(Weak::upgrade)
                .ok_or_else(|| Error::internal("the handler service is not running"))?;
            handlers.get(&queue.namespace, name, None).await?;
        }
        let slo = policy.slo;
        self.store
            .queue_policy_set(queue, policy, self.clock.now())
            .await?;
        endpoints.queue_policy_changed();
        self.policy_changed.notify_waiters();
        self.slos.policy_set(Subject::queue(queue), slo);
        Ok(())
    }

    /// Sets the policy of a queue Keel keeps for itself (an endpoint's
    /// deliveries), with none of a user's queue's checks and hooks.
    pub(crate) async fn set_own_policy(
        &self,
        queue: &QueueRef,
        policy: QueuePolicy,
    ) -> Result<(), Error> {
        self.store
            .queue_policy_set(queue, policy, self.clock.now())
            .await
    }

    /// Pauses (nothing is leased) or resumes a queue.
    pub async fn pause(&self, queue: &QueueRef, paused: bool) -> Result<(), Error> {
        self.store
            .queue_pause(queue, paused, self.clock.now())
            .await
    }
}
