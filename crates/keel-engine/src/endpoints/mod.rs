//! Endpoints: configuring them, their secrets, health and attempts log, and
//! what happens when one fails for good. Deliveries are jobs: an endpoint's
//! own queue (`keel.push.<name>`) holds the messages pushed to it, and a push
//! queue is any queue whose policy names an endpoint; the pusher service
//! (`services/pusher.rs`) leases from both and POSTs (`send.rs`). So retries,
//! backoff, dead letters, per-key order, leases that expire after a crash
//! and the bound on deliveries in flight across nodes all come from the job
//! core.

pub mod send;

use std::sync::Arc;

use keel_core::endpoint::{EndpointSpec, endpoint_queue, whsec_encode, whsec_key};
use keel_core::limits::MAX_LEASE_MS;
use keel_core::policy::MAX_ATTEMPTS_LIMIT;
use keel_core::{
    Clock, EndpointName, Error, JobState, Namespace, NewEvent, QueuePolicy, QueueRef, Timestamp,
    TopicName,
};
use keel_store::{
    Attempt, AttemptQuery, Endpoint, EndpointStore, JobFilter, NewAttempt, RedriveSelection,
    SecretChoice,
};
use tokio::sync::Notify;

use crate::jobs::JobService;
use crate::outbound::Guard;
use crate::queues::QueueService;
use crate::topics::TopicService;

/// The topic of each namespace on which Keel reports endpoints it disabled.
pub const EVENTS_TOPIC: &str = "keel.endpoints";
/// How long a lease on a delivery outlives the endpoint's timeout.
const LEASE_GRACE_MS: u64 = 5_000;
/// Dead jobs looked at per page when recovering.
const RECOVER_PAGE: u32 = 500;

/// An endpoint with what its queue holds, for `GET`.
#[derive(Clone, Debug)]
pub struct Status {
    pub endpoint: Endpoint,
    /// Deliveries leased now, on every node.
    pub in_flight: u64,
    /// Deliveries waiting (ready or scheduled for a retry).
    pub backlog: u64,
    pub dead: u64,
}

pub struct EndpointService {
    store: Arc<dyn EndpointStore>,
    /// The endpoint's own queue and the push queues naming it.
    queues: Arc<QueueService>,
    /// Deliveries are jobs: `recover` redrives them.
    jobs: Arc<JobService>,
    clock: Arc<dyn Clock>,
    pub(crate) guard: Guard,
    /// Where disabled endpoints are reported.
    topics: Arc<TopicService>,
    /// Wakes the pusher when endpoints or push queues changed here.
    pub(crate) changed: Notify,
}

impl EndpointService {
    pub(crate) fn new(
        store: Arc<dyn EndpointStore>,
        (queues, jobs, topics): (Arc<QueueService>, Arc<JobService>, Arc<TopicService>),
        clock: Arc<dyn Clock>,
        guard: Guard,
    ) -> Self {
        EndpointService {
            store,
            queues,
            jobs,
            clock,
            guard,
            topics,
            changed: Notify::new(),
        }
    }

    /// Creates or changes an endpoint; the secret it signs with when it was
    /// made or set by this call (the only time it is shown), else `None`.
    pub async fn put(
        &self,
        namespace: &Namespace,
        name: &EndpointName,
        spec: &EndpointSpec,
        secret: Option<String>,
    ) -> Result<(Endpoint, bool, Option<String>), Error> {
        spec.check(name)?;
        let url = reqwest::Url::parse(&spec.url)
            .map_err(|e| Error::invalid(format!("url {:?}: {e}", spec.url)))?;
        self.guard.check_url(&url).map_err(Error::invalid)?;
        let choice = match secret {
            Some(s) if whsec_key(&s).is_none() => {
                return Err(Error::invalid(
                    "secret is whsec_ followed by the base64 of 1 to 64 bytes",
                ));
            }
            Some(s) => SecretChoice::Set(s),
            None => SecretChoice::KeepOr(new_secret()?),
        };
        let queue = endpoint_queue(namespace, name)?;
        self.queues
            .set_own_policy(&queue, delivery_policy(spec))
            .await?;
        let (endpoint, created) = self
            .store
            .endpoint_put(namespace, name, spec, choice.clone(), self.clock.now())
            .await?;
        let shown = match choice {
            SecretChoice::Set(s) => Some(s),
            SecretChoice::KeepOr(_) if created => Some(endpoint.secrets.current.clone()),
            SecretChoice::KeepOr(_) => None,
        };
        self.changed.notify_waiters();
        Ok((endpoint, created, shown))
    }

    /// A new current secret; the old one signs too for a day.
    pub async fn rotate(
        &self,
        namespace: &Namespace,
        name: &EndpointName,
    ) -> Result<Endpoint, Error> {
        let endpoint = self
            .store
            .endpoint_rotate(namespace, name, new_secret()?, self.clock.now())
            .await?;
        self.changed.notify_waiters();
        Ok(endpoint)
    }

    pub async fn delete(&self, namespace: &Namespace, name: &EndpointName) -> Result<(), Error> {
        self.store.endpoint_delete(namespace, name).await?;
        self.changed.notify_waiters();
        Ok(())
    }

    /// Enables a disabled endpoint: its waiting deliveries go out again.
    pub async fn enable(
        &self,
        namespace: &Namespace,
        name: &EndpointName,
    ) -> Result<Status, Error> {
        self.store
            .endpoint_disable(namespace, name, None, self.clock.now())
            .await?;
        self.changed.notify_waiters();
        self.status(namespace, name).await
    }

    /// Disables an endpoint for `reason`; the node whose call disabled it
    /// publishes `keel.endpoint.disabled` on the namespace's
    /// [`EVENTS_TOPIC`], so a subscription can alert someone. (Two writes:
    /// a crash between them, or a spent publish quota, leaves the endpoint
    /// disabled and unreported.) Disabling pauses the endpoint's queue in
    /// the same write (the store's), so nothing is sent until `enable`.
    pub async fn disable(&self, endpoint: &Endpoint, reason: String) -> Result<(), Error> {
        let now = self.clock.now();
        let (namespace, name) = (&endpoint.namespace, &endpoint.name);
        // The topic first: whoever sees the endpoint disabled can wait on it.
        let topic = TopicName::new(EVENTS_TOPIC)?;
        self.topics.ensure(namespace, &topic).await?;
        if !self
            .store
            .endpoint_disable(namespace, name, Some(reason.clone()), now)
            .await?
        {
            return Ok(());
        }
        tracing::warn!(%namespace, endpoint = %name, reason, "endpoint disabled");
        self.changed.notify_waiters();
        let data = serde_json::json!({
            "endpoint": name,
            "url": endpoint.spec.url,
            "reason": reason,
            "failing_since": endpoint.health.failing_since,
            "failure_streak": endpoint.health.failure_streak,
            "last_success_at": endpoint.health.last_success_at,
        });
        let event = NewEvent {
            id: format!("disabled/{name}/{}", now.as_millis()),
            generated_id: false,
            kind: "keel.endpoint.disabled".to_owned(),
            source: "keel".to_owned(),
            key: Some(name.to_string()),
            time: now,
            data: data.to_string(),
            headers: Default::default(),
        };
        // Published like any event, under the namespace's quotas: a spent
        // publish rate leaves the endpoint disabled and this report unsent.
        if let Err(e) = self.topics.publish(namespace, &topic, vec![event]).await {
            tracing::warn!(%namespace, endpoint = %name, error = %e, "endpoint disabled; its keel.endpoint.disabled event was refused");
        }
        Ok(())
    }

    pub async fn get(&self, namespace: &Namespace, name: &EndpointName) -> Result<Endpoint, Error> {
        self.store.endpoint_get(namespace, name).await
    }

    pub async fn status(
        &self,
        namespace: &Namespace,
        name: &EndpointName,
    ) -> Result<Status, Error> {
        let endpoint = self.store.endpoint_get(namespace, name).await?;
        let stats = self
            .queues
            .status(&endpoint_queue(namespace, name)?)
            .await?
            .stats;
        let count = |s: JobState| stats.counts.get(&s).copied().unwrap_or(0);
        Ok(Status {
            endpoint,
            in_flight: count(JobState::Leased),
            backlog: count(JobState::Ready) + count(JobState::Scheduled),
            dead: count(JobState::Dead),
        })
    }

    pub async fn list(&self, namespace: &Namespace) -> Result<Vec<Endpoint>, Error> {
        self.store.endpoints_list(Some(namespace)).await
    }

    /// Every namespace's endpoints (the pusher's scan).
    pub(crate) async fn list_all(&self) -> Result<Vec<Endpoint>, Error> {
        self.store.endpoints_list(None).await
    }

    /// Writes attempts to the log; the endpoints they touched, as they are
    /// after it.
    pub(crate) async fn record(&self, attempts: Vec<NewAttempt>) -> Result<Vec<Endpoint>, Error> {
        self.store.attempts_record(attempts).await
    }

    pub async fn attempts(
        &self,
        namespace: &Namespace,
        name: &EndpointName,
        query: &AttemptQuery,
    ) -> Result<Vec<Attempt>, Error> {
        self.store.endpoint_get(namespace, name).await?;
        self.store.attempts_list(namespace, name, query).await
    }

    /// Sends again every delivery to the endpoint that died at or after
    /// `since`: from its own queue and from the push queues that name it.
    /// How many went back.
    pub async fn recover(
        &self,
        namespace: &Namespace,
        name: &EndpointName,
        since: Timestamp,
    ) -> Result<u64, Error> {
        self.store.endpoint_get(namespace, name).await?;
        let mut queues = vec![endpoint_queue(namespace, name)?];
        for (queue, policy) in self.queues.policies().await? {
            if &queue.namespace == namespace && policy.push.is_some_and(|p| &p.endpoint == name) {
                queues.push(queue);
            }
        }
        let mut recovered = 0;
        for queue in queues {
            recovered += self.recover_queue(&queue, since).await?;
        }
        Ok(recovered)
    }

    async fn recover_queue(&self, queue: &QueueRef, since: Timestamp) -> Result<u64, Error> {
        let mut recovered = 0;
        let mut cursor = None;
        loop {
            let filter = JobFilter {
                queue: Some(queue.queue.clone()),
                state: Some(JobState::Dead),
                tag: None,
                limit: RECOVER_PAGE,
                cursor,
            };
            let page = self.jobs.list(&queue.namespace, &filter).await?;
            let ids: Vec<_> = page
                .jobs
                .iter()
                .filter(|j| j.updated_at >= since)
                .map(|j| j.id)
                .collect();
            if !ids.is_empty() {
                let ids = RedriveSelection::Ids(ids);
                recovered += self.jobs.redrive(queue, ids, None).await?.len() as u64;
            }
            cursor = page.next_cursor;
            if cursor.is_none() {
                return Ok(recovered);
            }
        }
    }

    /// Tells the pusher that a queue's policy changed here (it may push now).
    pub fn queue_policy_changed(&self) {
        self.changed.notify_waiters();
    }
}

/// The policy of an endpoint's own queue: the endpoint's schedule decides
/// when attempts stop (so the job core's bound is the highest), a lease
/// outlives the call, and the bound on deliveries in flight holds across
/// nodes.
fn delivery_policy(spec: &EndpointSpec) -> QueuePolicy {
    QueuePolicy {
        max_attempts: Some(MAX_ATTEMPTS_LIMIT),
        lease_ms: Some((spec.timeout_ms() + LEASE_GRACE_MS).min(MAX_LEASE_MS)),
        max_concurrency: Some(spec.max_in_flight()),
        ..QueuePolicy::default()
    }
}

/// 32 random bytes as a Standard Webhooks secret.
fn new_secret() -> Result<String, Error> {
    use ring::rand::SecureRandom as _;
    let mut key = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| Error::internal("no randomness for a secret"))?;
    Ok(whsec_encode(&key))
}
