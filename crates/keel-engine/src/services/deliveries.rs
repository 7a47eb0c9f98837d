//! Hands events to subscription targets, and to workflow steps waiting for
//! them (`wait_for` event): one pass over every active subscription with a
//! target and every topic runs wait on, again while there is work, then
//! asleep until a publish (on any node), a change to a subscription here or
//! a run that starts waiting. Every node
//! runs it; hand-offs are compare-and-set, so two nodes never hand the same
//! events off twice. A failing hand-off (a workflow not defined yet, a full
//! namespace) stays where it is and is tried again after a pause: nothing is
//! skipped.

use std::sync::Arc;
use std::time::Duration;

use keel_store::ReadySignal;

use crate::Shutdown;
use crate::subscriptions::{HANDOFF_BATCH, SubscriptionService};
use crate::workflows::Driver;

/// How long a subscription whose hand-off failed waits before the next try.
const RETRY_AFTER: Duration = Duration::from_secs(1);

pub struct Deliveries {
    subscriptions: Arc<SubscriptionService>,
    workflows: Arc<Driver>,
    signal: ReadySignal,
}

impl Deliveries {
    pub fn new(
        subscriptions: Arc<SubscriptionService>,
        workflows: Arc<Driver>,
        signal: ReadySignal,
    ) -> Self {
        Deliveries {
            subscriptions,
            workflows,
            signal,
        }
    }

    pub async fn run(self, shutdown: Shutdown) {
        let appended = self.signal.any_topic_listener();
        loop {
            let published = appended.notified();
            let changed = self.subscriptions.changed.notified();
            let waiting = self.workflows.waits.noted.notified();
            tokio::pin!(published, changed, waiting);
            published.as_mut().enable();
            changed.as_mut().enable();
            waiting.as_mut().enable();
            let (busy, failed) = self.pass().await;
            let busy = self.workflows.deliver_events().await || busy;
            if shutdown.is_fired() {
                return;
            }
            if busy {
                continue;
            }
            let retry = async {
                if failed {
                    tokio::time::sleep(RETRY_AFTER).await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                () = published => {}
                () = changed => {}
                () = waiting => {}
                () = retry => {}
                () = shutdown.clone().wait() => return,
            }
        }
    }

    /// One hand-off per active target subscription: whether any took a full
    /// batch (more may be waiting: pass again at once; anything published
    /// during the pass wakes the next one anyway), and whether any failed.
    async fn pass(&self) -> (bool, bool) {
        let subscriptions = match self.subscriptions.list(None, None).await {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list subscriptions");
                return (false, true);
            }
        };
        let (mut busy, mut failed) = (false, false);
        for sub in subscriptions
            .iter()
            .filter(|s| s.spec.target.is_some() && !s.paused)
        {
            match self.subscriptions.deliver(sub).await {
                Ok(moved) => busy |= moved >= u64::from(HANDOFF_BATCH),
                Err(e) => {
                    failed = true;
                    tracing::warn!(
                        namespace = %sub.namespace,
                        subscription = %sub.name,
                        error = %e,
                        "hand-off failed; it is tried again"
                    );
                }
            }
        }
        (busy, failed)
    }
}
