//! Runs handlers for queues whose policy names one (the handler runner),
//! and carries out their attempts' effects (the effects worker), both on
//! the shared queue-worker loop. A handler's job ends with a commit (the
//! completion, its state writes and its effects' job; a flush's commits
//! share one transaction) or the ack of its failure.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use keel_core::{HandlerName, Namespace, QueuePolicy, QueueRef, Retry};
use keel_store::{Ack, AckOutcome, LeasedJob};
use tokio::sync::Notify;

use super::queue_worker::{self, QueueWorker, ack_all};
use crate::Shutdown;
use crate::handlers::effects::{self, EFFECTS_QUEUE};
use crate::handlers::{Finished, HandlerService};
use crate::jobs::JobService;
use crate::queues::QueueService;

/// Works the queues whose policy names a handler.
#[derive(Clone)]
pub struct HandlerRunner {
    handlers: Arc<HandlerService>,
    /// Each picked queue's handler, as its policy said at the last look.
    named: Arc<Mutex<HashMap<QueueRef, HandlerName>>>,
}

impl HandlerRunner {
    pub fn new(handlers: Arc<HandlerService>) -> Self {
        HandlerRunner {
            handlers,
            named: Arc::default(),
        }
    }

    pub async fn run(self, shutdown: Shutdown) {
        queue_worker::run(self, shutdown).await;
    }
}

impl QueueWorker for HandlerRunner {
    const WORKER_ID: &'static str = "keel-handler";
    /// Jobs of one queue in flight on this node (the sandbox's slots bound
    /// all of them together).
    const IN_FLIGHT: usize = 64;
    const LEASE_BATCH: u32 = 64;
    type Done = Finished;

    fn picks(&self, queue: &QueueRef, policy: &QueuePolicy) -> bool {
        let mut named = self.named.lock().unwrap_or_else(|p| p.into_inner());
        match &policy.handler {
            Some(name) => {
                named.insert(queue.clone(), name.clone());
                true
            }
            None => {
                named.remove(queue);
                false
            }
        }
    }

    fn woken(&self) -> &Notify {
        &self.handlers.queues().policy_changed
    }

    fn jobs(&self) -> &Arc<JobService> {
        self.handlers.jobs()
    }

    fn queues(&self) -> &Arc<QueueService> {
        self.handlers.queues()
    }

    async fn handle(&self, namespace: &Namespace, job: LeasedJob) -> Finished {
        let name = keel_core::QueueName::new(&job.queue)
            .ok()
            .and_then(|queue| {
                let queue = QueueRef {
                    namespace: namespace.clone(),
                    queue,
                };
                let named = self.named.lock().unwrap_or_else(|p| p.into_inner());
                named.get(&queue).cloned()
            });
        match name {
            Some(name) => self.handlers.run_job(namespace, &name, job).await,
            None => Finished::Ack(Ack {
                token: job.lease_token,
                outcome: AckOutcome::Fail {
                    message: format!("queue {} no longer names a handler", job.queue),
                    retry: Retry {
                        retry: true,
                        retry_after_ms: None,
                    },
                },
            }),
        }
    }

    /// A flush's failures in one ack call, its commits in one store call
    /// (one transaction: on PostgreSQL, one WAL flush for them all).
    async fn finish(&self, namespace: &Namespace, done: Vec<Finished>) {
        let (mut acks, mut commits) = (Vec::new(), Vec::new());
        for end in done {
            match end {
                Finished::Ack(ack) => acks.push(ack),
                Finished::Commit(commit) => commits.push(*commit),
            }
        }
        let failed = async {
            if !acks.is_empty() {
                ack_all(self.handlers.jobs(), namespace, acks).await;
            }
        };
        let committed = async {
            if !commits.is_empty() {
                self.handlers.commit_all(namespace, commits).await;
            }
        };
        tokio::join!(failed, committed);
    }
}

/// Publishes and enqueues what handlers' attempts committed.
#[derive(Clone)]
pub struct EffectsWorker {
    handlers: Arc<HandlerService>,
}

impl EffectsWorker {
    pub fn new(handlers: Arc<HandlerService>) -> Self {
        EffectsWorker { handlers }
    }

    pub async fn run(self, shutdown: Shutdown) {
        queue_worker::run(self, shutdown).await;
    }
}

impl QueueWorker for EffectsWorker {
    const WORKER_ID: &'static str = "keel-handler-effects";
    const IN_FLIGHT: usize = 64;
    const LEASE_BATCH: u32 = 64;
    type Done = Ack;

    fn picks(&self, queue: &QueueRef, _policy: &QueuePolicy) -> bool {
        queue.queue.as_str() == EFFECTS_QUEUE
    }

    fn woken(&self) -> &Notify {
        &self.handlers.queues().policy_changed
    }

    fn jobs(&self) -> &Arc<JobService> {
        self.handlers.jobs()
    }

    fn queues(&self) -> &Arc<QueueService> {
        self.handlers.queues()
    }

    async fn handle(&self, namespace: &Namespace, job: LeasedJob) -> Ack {
        let handlers = &self.handlers;
        let now = handlers.now();
        let carried = effects::carry_out(
            handlers.jobs(),
            handlers.topics(),
            namespace,
            &job.payload,
            now,
        )
        .await;
        let outcome = match carried {
            Ok(()) => AckOutcome::Complete { result: None },
            Err(e) => AckOutcome::Fail {
                message: e.message,
                retry: Retry {
                    retry: true,
                    retry_after_ms: None,
                },
            },
        };
        Ack {
            token: job.lease_token,
            outcome,
        }
    }

    async fn finish(&self, namespace: &Namespace, acks: Vec<Ack>) {
        ack_all(self.handlers.jobs(), namespace, acks).await;
    }
}
