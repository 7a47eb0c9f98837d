//! Runs as read: one run, waiting (long-poll) for it to end, with what
//! holds each of its running steps' jobs; or a page of them. Changing a run
//! (start, signal, cancel, retry) is the workflow driver's.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use keel_core::gate::Gate;
use keel_core::workflow::{Handle, RunId, RunStatus, StepStatus};
use keel_core::{Error, ErrorCode, JobState, Namespace, Timestamp};
use keel_store::{ReadySignal, RunFilter, RunPage, RunStore, StoredRun};

use crate::jobs::JobService;
use crate::{Shutdown, metrics};

/// A run, with the gates that hold each running step's job that has not
/// started yet (by step).
#[derive(Clone, Debug)]
pub struct RunView {
    pub run: StoredRun,
    pub waiting: BTreeMap<String, Vec<Gate>>,
}

pub struct RunService {
    store: Arc<dyn RunStore>,
    signal: ReadySignal,
    shutdown: Shutdown,
    jobs: Arc<JobService>,
}

impl RunService {
    pub(crate) fn new(
        store: Arc<dyn RunStore>,
        signal: ReadySignal,
        shutdown: Shutdown,
        jobs: Arc<JobService>,
    ) -> Self {
        RunService {
            store,
            signal,
            shutdown,
            jobs,
        }
    }

    pub async fn get(&self, namespace: &Namespace, id: RunId) -> Result<StoredRun, Error> {
        self.store.run_get(namespace, id).await
    }

    /// A run once it ended, or as it stands after `wait` (at once for
    /// zero, or when the server drains), with what its steps wait for.
    pub async fn wait(
        &self,
        namespace: &Namespace,
        id: RunId,
        wait: Duration,
    ) -> Result<RunView, Error> {
        let deadline = tokio::time::Instant::now() + wait;
        // Watched before the read: a finish between the two still wakes it.
        // The store signals this run's finish only, from whichever node
        // wrote it.
        let mut watch = self.signal.watch_run(id);
        loop {
            let run = self.store.run_get(namespace, id).await?;
            if wait.is_zero() || run.state.status.is_final() || self.shutdown.is_fired() {
                return self.view(namespace, run).await;
            }
            let _parked = metrics::run_waiter();
            tokio::select! {
                () = watch.finished() => {}
                () = self.shutdown.clone().wait() => {}
                () = tokio::time::sleep_until(deadline) => {
                    let run = self.store.run_get(namespace, id).await?;
                    return self.view(namespace, run).await;
                }
            }
        }
    }

    /// Newest first, cursor-paged.
    pub async fn list(&self, namespace: &Namespace, filter: &RunFilter) -> Result<RunPage, Error> {
        self.store.runs_list(namespace, filter).await
    }

    /// How many runs of a namespace are running, and how many ended at or
    /// after `ended_since`, by status.
    pub async fn count(
        &self,
        namespace: &Namespace,
        ended_since: Timestamp,
    ) -> Result<Vec<(RunStatus, u64)>, Error> {
        self.store.runs_count(namespace, ended_since).await
    }

    /// `run` with the gates of each running step's task job not yet leased.
    async fn view(&self, namespace: &Namespace, run: StoredRun) -> Result<RunView, Error> {
        let mut waiting = BTreeMap::new();
        for (name, rec) in &run.state.steps {
            let (StepStatus::Running, Some(Handle::Job { id, system: false })) =
                (rec.state, rec.handle)
            else {
                continue;
            };
            let job = match self.jobs.get(namespace, id).await {
                Ok(job) => job,
                Err(e) if e.code == ErrorCode::JobNotFound => continue,
                Err(e) => return Err(e),
            };
            if matches!(job.state, JobState::Scheduled | JobState::Ready) {
                waiting.insert(name.clone(), self.jobs.waiting(namespace, &job).await?);
            }
        }
        Ok(RunView { run, waiting })
    }
}
