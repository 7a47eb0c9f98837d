//! The workflow driver: it carries out what `keel_core`'s scheduler decides.
//!
//! Every step's work rides on the job core. A `task` is a job on the user's
//! queue, tagged with its run and step; an `http` call and every timer (sleep,
//! wait timeout, run deadline) is a job on Keel's own queue
//! ([`SYSTEM_NAMESPACE`]/[`SYSTEM_QUEUE`]), run by the step runner service.
//!
//! Advancing a run is: take the journal, look at the work in flight, let the
//! scheduler decide, and write the journal back with a compare-and-set on its
//! revision, together with the jobs of the steps it starts: one transaction,
//! so a step's job exists exactly when the journal that started it does, and
//! losing the race (another node advanced it) leaves nothing behind but a
//! second try. Starting a run is one write too: the run with its first jobs.
//! Timers and child runs are made outside that write, under keys derived from
//! the run, so making them again finds the first.
//!
//! A run is advanced when its jobs are acked (the ack says how the job ended,
//! so the job is not read back), when a timer job fires, when a signal,
//! cancel or retry arrives, and by the sweep that resumes runs after a
//! restart. On a store with no other writer (embedded) the journal this node
//! last wrote is kept in memory, so advancing reads nothing.

mod cache;
mod definitions;
mod events;
pub mod http;
mod jobs;
mod start;

pub use self::jobs::{
    ITEM_TAG, RUN_TAG, STEP_TAG, SYSTEM_NAMESPACE, SYSTEM_QUEUE, SystemJob, job_outcome,
    system_queue,
};

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use keel_core::workflow::{
    Command, Definition, Handle, Machine, Outcome, ParentRef, RunId, RunMeta, RunState, Work,
};
use keel_core::{
    Backoff, Clock, Error, ErrorCode, JobId, JobIdGenerator, JobState, Namespace, Timestamp,
};
use keel_store::{AckOutcome, Acked, OwnedJob, RunStore, StoredRun, WorkflowStore};
use serde_json::Value;

use self::cache::Journals;
use self::events::EventWaits;
use self::http::HttpCaller;
use self::jobs::{SYSTEM_LEASE_MS, TIMER_ATTEMPTS, system_job};
use crate::jobs::JobService;
use crate::rates::OwnedCounts;
use crate::topics::TopicService;

/// Tries to write a journal that others keep changing, before giving up.
const MAX_CONFLICTS: usize = 50;
/// Runs are advanced one at a time per shard on this node.
const LOCK_SHARDS: usize = 1024;

/// What finished, so that only that piece of work is looked at.
#[derive(Clone, Debug, PartialEq)]
pub enum Hint {
    /// Look at all work in flight (after a restart).
    All,
    /// A job ended, and this is how: no need to read it back.
    Job(JobId, Outcome),
    Run(RunId),
    /// Only time moved, or a request arrived.
    Nothing,
}

impl Hint {
    fn covers(&self, handle: Handle) -> bool {
        match (self, handle) {
            (Hint::All, _) => true,
            (Hint::Job(a, _), Handle::Job { id, .. }) => *a == id,
            (Hint::Run(a), Handle::Run { id }) => *a == id,
            _ => false,
        }
    }
}

/// A request to change a run, applied before it advances.
#[derive(Clone, Debug)]
pub enum Op {
    Advance,
    Signal(String, Value),
    /// Events of a topic, by seq, as expressions see them: the steps
    /// waiting for one that matches take it.
    Events(String, Vec<(u64, Value)>),
    /// Cancel the run; `compensate` undoes its completed steps first; `by`
    /// says who asked (the run's error says it).
    Cancel {
        compensate: bool,
        by: Option<String>,
    },
    Retry,
}

/// What the driver is built from: the stores of workflows and runs, and
/// the services of the jobs its steps ride on and the topics they wait on.
pub(crate) struct DriverDeps {
    pub runs: Arc<dyn RunStore>,
    pub definitions: Arc<dyn WorkflowStore>,
    pub sole_writer: bool,
    pub clock: Arc<dyn Clock>,
    pub jobs: Arc<JobService>,
    pub topics: Arc<TopicService>,
    pub allow_private_http: bool,
    pub connections: Arc<crate::connections::ConnectionService>,
}

pub struct Driver {
    runs: Arc<dyn RunStore>,
    definitions_store: Arc<dyn WorkflowStore>,
    /// The store has no other writer: what this node wrote is what is stored.
    sole_writer: bool,
    clock: Arc<dyn Clock>,
    /// Steps' jobs: enqueued (timers), read, cancelled, counted.
    jobs: Arc<JobService>,
    /// Topics runs wait on events of.
    topics: Arc<TopicService>,
    ids: Mutex<JobIdGenerator>,
    definitions: Mutex<HashMap<(Namespace, String, u32), Arc<Definition>>>,
    /// Latest version of each workflow, kept only on a sole-writer store.
    latest: Mutex<HashMap<(Namespace, String), u32>>,
    /// The last journal stored for each running run, when the store has no
    /// other writer: advancing a run then reads nothing.
    journals: Mutex<Journals>,
    locks: Vec<tokio::sync::Mutex<()>>,
    pub http: HttpCaller,
    /// Runs waiting for events, by topic (`events.rs`).
    pub(crate) waits: EventWaits,
}

impl Driver {
    pub(crate) fn new(deps: DriverDeps) -> Arc<Self> {
        Arc::new(Driver {
            runs: deps.runs,
            definitions_store: deps.definitions,
            sole_writer: deps.sole_writer,
            clock: deps.clock,
            jobs: deps.jobs,
            topics: deps.topics,
            ids: Mutex::new(JobIdGenerator::default()),
            definitions: Mutex::new(HashMap::new()),
            latest: Mutex::new(HashMap::new()),
            journals: Mutex::new(Journals::default()),
            locks: (0..LOCK_SHARDS)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            http: HttpCaller::new(
                crate::outbound::Guard {
                    allow_private: deps.allow_private_http,
                },
                Some(deps.connections),
            ),
            waits: EventWaits::default(),
        })
    }

    /// A step's job ended (acked, cancelled, or its lease expired on the
    /// last attempt): advance its run, in the background.
    pub fn step_job_ended(
        self: &Arc<Self>,
        namespace: &Namespace,
        run: RunId,
        acked: &Acked,
        ack: Option<&AckOutcome>,
    ) {
        let hint = Hint::Job(acked.id, job_outcome(acked, ack));
        self.spawn_advance(namespace.clone(), run, hint, Op::Advance);
    }

    /// Advances in the background, logging a failure (the sweep retries later).
    pub fn spawn_advance(self: &Arc<Self>, namespace: Namespace, run: RunId, hint: Hint, op: Op) {
        let driver = self.clone();
        tokio::spawn(async move { driver.advance_logged(&namespace, run, hint, op).await });
    }

    pub async fn advance_logged(
        self: &Arc<Self>,
        namespace: &Namespace,
        run: RunId,
        hint: Hint,
        op: Op,
    ) {
        if let Err(e) = self.advance(namespace, run, hint, op).await {
            tracing::warn!(%namespace, %run, error = %e, "cannot advance run");
        }
    }

    fn lock(&self, run: RunId) -> &tokio::sync::Mutex<()> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        run.hash(&mut h);
        &self.locks[(h.finish() as usize) % LOCK_SHARDS]
    }

    /// Applies `op`, moves the run as far as it goes, and stores the journal
    /// together with the jobs of the steps it starts.
    pub async fn advance(
        self: &Arc<Self>,
        namespace: &Namespace,
        id: RunId,
        hint: Hint,
        op: Op,
    ) -> Result<Arc<StoredRun>, Error> {
        let _guard = self.lock(id).lock().await;
        // Why the store refused, for good (a full namespace), the jobs of
        // each round of starts: the steps of those rounds fail with it.
        let mut refused: Vec<String> = Vec::new();
        let mut use_copy = true;
        for _ in 0..MAX_CONFLICTS {
            let (run, from_copy) = match self.recall(id).filter(|_| use_copy) {
                Some(run) => (run, true),
                None => (Arc::new(self.runs.run_get(namespace, id).await?), false),
            };
            if run.state.status.is_final() && matches!(op, Op::Advance) {
                return Ok(run);
            }
            let (_, def) = self
                .definition(namespace, &run.workflow, Some(run.version))
                .await?;
            let input: Value = serde_json::from_str(&run.input).unwrap_or(Value::Null);
            let meta = RunMeta {
                id,
                workflow: &run.workflow,
                version: run.version,
                input: &input,
            };
            let mut state = run.state.clone();
            if hint == Hint::All {
                // The wake-up asked for before a crash may never have been made.
                state.wake_at = None;
            }
            let heads = self.event_heads(namespace, &def).await?;
            let mut machine = Machine::new(&def, meta, state).with_event_heads(heads);
            let now = self.clock.now();
            match &op {
                Op::Advance => {}
                Op::Signal(name, payload) => machine.signal(name, payload.clone())?,
                Op::Events(topic, events) => {
                    for (seq, event) in events {
                        machine.event(topic, *seq, event, now);
                    }
                }
                Op::Cancel { compensate, by } => machine.cancel(now, *compensate, by.as_deref())?,
                Op::Retry => machine.retry(now)?,
            }
            for (step, item, handle) in machine.open_work() {
                if !hint.covers(handle) {
                    continue;
                }
                let outcome = match &hint {
                    Hint::Job(_, outcome) => Some(outcome.clone()),
                    _ => self.observe(namespace, handle).await?,
                };
                if let Some(outcome) = outcome {
                    machine.observe(&step, item, outcome, now);
                }
            }
            let decided = self
                .decide(namespace, id, &mut machine, now, &refused, !from_copy)
                .await?;
            let Some((jobs, later)) = decided else {
                // Work outside the journal is only made from a journal just read.
                use_copy = false;
                continue;
            };
            let state = machine.into_state();
            if state == run.state && jobs.is_empty() {
                // Nothing to store, but a sweep may have re-asked for a
                // wake-up that a crash lost.
                self.carry_out(namespace, id, &state, later).await;
                self.waits.note(&run, &def);
                return Ok(run);
            }
            let counts = OwnedCounts::of(&jobs);
            match self
                .runs
                .run_update(namespace, id, run.rev, &state, jobs, now)
                .await
            {
                Ok(rev) => {
                    self.jobs.owned_enqueued(&counts);
                    let run = Arc::new(StoredRun {
                        id,
                        namespace: run.namespace.clone(),
                        workflow: run.workflow.clone(),
                        version: run.version,
                        input: run.input.clone(),
                        state,
                        created_at: run.created_at,
                        updated_at: now,
                        rev,
                    });
                    self.remember(&run);
                    self.waits.note(&run, &def);
                    self.carry_out(namespace, id, &run.state, later).await;
                    return Ok(run);
                }
                Err(e) if e.code == ErrorCode::Conflict => {
                    self.forget(id);
                    use_copy = false;
                }
                Err(e) if !counts.is_empty() && !transient(&e) => refused.push(e.message),
                Err(e) => {
                    self.forget(id);
                    return Err(e);
                }
            }
        }
        Err(Error::new(
            ErrorCode::Conflict,
            format!("run {id} kept changing; try again"),
        ))
    }

    /// Carries out what the scheduler decides until it waits: each job it
    /// starts gets its id here and is returned, to be stored with the
    /// journal; a child run is created at once, unless `outside` forbids
    /// work outside the journal (then `None`). The jobs of round `i` of
    /// starts (a round follows steps that could not start) fail with
    /// `refused[i]` when there is one. Returns the jobs and the commands for
    /// after the journal is stored.
    async fn decide(
        self: &Arc<Self>,
        namespace: &Namespace,
        run: RunId,
        machine: &mut Machine<'_>,
        now: Timestamp,
        refused: &[String],
        outside: bool,
    ) -> Result<Option<(Vec<OwnedJob>, Vec<Command>)>, Error> {
        let mut jobs = Vec::new();
        let mut later = Vec::new();
        let mut commands = machine.advance(now);
        let mut round = 0;
        while !commands.is_empty() {
            let refused = refused.get(round);
            round += 1;
            let mut failed = false;
            for command in commands {
                let Command::Start {
                    step,
                    item,
                    key,
                    work,
                } = command
                else {
                    later.push(command);
                    continue;
                };
                let started = match (*work, refused) {
                    (Work::Child { .. }, _) if !outside => return Ok(None),
                    (
                        Work::Child {
                            workflow,
                            version,
                            input,
                        },
                        _,
                    ) => {
                        let parent = ParentRef {
                            run,
                            step: step.clone(),
                            item,
                        };
                        let lineage = (parent, machine.state().traceparent.clone());
                        self.create_child(namespace, &workflow, version, input, key, lineage)
                            .await
                            .map(|child| {
                                self.spawn_advance(
                                    namespace.clone(),
                                    child.id,
                                    Hint::Nothing,
                                    Op::Advance,
                                );
                                Handle::Run { id: child.id }
                            })
                    }
                    (_, Some(why)) => Err(Error::invalid(why)),
                    (work, None) => {
                        self.step_job(namespace, run, &step, item, work, now)
                            .map(|mut job| {
                                // The step's worker continues the run's trace.
                                job.job.traceparent = machine.state().traceparent.clone();
                                let handle = Handle::Job {
                                    id: job.id,
                                    system: job.queue.namespace.as_str() == SYSTEM_NAMESPACE,
                                };
                                jobs.push(job);
                                handle
                            })
                    }
                };
                match started {
                    Ok(handle) => machine.started(&step, item, handle),
                    Err(e) if transient(&e) => return Err(e),
                    Err(e) => {
                        machine.start_failed(&step, item, e.message, now);
                        failed = true;
                    }
                }
            }
            commands = if failed {
                machine.advance(now)
            } else {
                Vec::new()
            };
        }
        Ok(Some((jobs, later)))
    }

    /// What became of a piece of work, if it ended or progressed.
    async fn observe(
        &self,
        namespace: &Namespace,
        handle: Handle,
    ) -> Result<Option<Outcome>, Error> {
        match handle {
            Handle::Job { id, system } => {
                let ns = if system {
                    system_queue().namespace
                } else {
                    namespace.clone()
                };
                let job = match self.jobs.get(&ns, id).await {
                    Ok(job) => job,
                    Err(e) if e.code == ErrorCode::JobNotFound => {
                        return Ok(Some(Outcome::Done {
                            attempts: 0,
                            result: Err(format!("the step's job {id} no longer exists")),
                        }));
                    }
                    Err(e) => return Err(e),
                };
                let attempts = job.attempt;
                Ok(Some(match job.state {
                    JobState::Succeeded => Outcome::Done {
                        attempts,
                        result: Ok(job
                            .result
                            .and_then(|r| serde_json::from_str(r.get()).ok())
                            .unwrap_or(Value::Null)),
                    },
                    JobState::Dead => Outcome::Done {
                        attempts,
                        result: Err(job
                            .errors
                            .last()
                            .map_or_else(|| "the job died".to_owned(), |e| e.message.clone())),
                    },
                    JobState::Cancelled => Outcome::Done {
                        attempts,
                        result: Err("the step's job was cancelled".to_owned()),
                    },
                    _ => Outcome::Progress { attempts },
                }))
            }
            Handle::Run { id } => {
                let child = match self.runs.run_get(namespace, id).await {
                    Ok(child) => child,
                    Err(e) if e.code == ErrorCode::NotFound => {
                        return Ok(Some(Outcome::Done {
                            attempts: 0,
                            result: Err(format!("child run {id} no longer exists")),
                        }));
                    }
                    Err(e) => return Err(e),
                };
                let state = &child.state;
                if !state.status.is_final() {
                    return Ok(None);
                }
                Ok(Some(Outcome::Done {
                    attempts: 0,
                    result: match state.status {
                        keel_core::workflow::RunStatus::Succeeded => {
                            Ok(state.output.clone().unwrap_or(Value::Null))
                        }
                        status => Err(format!(
                            "child run {id} {}: {}",
                            status.as_str(),
                            state.error.clone().unwrap_or_default()
                        )),
                    },
                }))
            }
        }
    }

    /// Commands that follow a stored decision: cancellations, wake-ups, and
    /// news for a parent run.
    async fn carry_out(
        self: &Arc<Self>,
        namespace: &Namespace,
        id: RunId,
        state: &RunState,
        commands: Vec<Command>,
    ) {
        for command in commands {
            match command {
                Command::Cancel(Handle::Job { id: job, system }) => {
                    let ns = if system {
                        system_queue().namespace
                    } else {
                        namespace.clone()
                    };
                    // Already finished is fine: the step no longer waits for it.
                    let _ = self.jobs.cancel_for_owner(&ns, job).await;
                }
                Command::Cancel(Handle::Run { id: child }) => {
                    // A child of a run cancelled with compensation compensates too.
                    let op = Op::Cancel {
                        compensate: state.cancelling,
                        by: Some(format!("its parent run {id}")),
                    };
                    self.spawn_advance(namespace.clone(), child, Hint::Nothing, op);
                }
                Command::WakeAt(at) => {
                    let job = SystemJob::Wake {
                        namespace: namespace.to_string(),
                        run: id,
                        at,
                    };
                    let key = format!("wake/{namespace}/{id}/{}", at.as_millis());
                    let backoff = Backoff {
                        base_ms: 1000,
                        max_ms: 60_000,
                        factor: 2.0,
                        jitter: true,
                    };
                    let job = system_job(
                        &job,
                        Some(key),
                        at,
                        TIMER_ATTEMPTS,
                        backoff,
                        SYSTEM_LEASE_MS,
                        id,
                    );
                    let queue = system_queue();
                    let set = match job {
                        Ok(job) => self.jobs.enqueue_new(&queue, vec![job]).await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = set {
                        tracing::warn!(run = %id, error = %e, "cannot set the run's timer; the sweep will");
                    }
                }
                Command::Finished => {
                    crate::metrics::run_finished(namespace, state.status);
                    if let Some(parent) = &state.parent {
                        self.spawn_advance(
                            namespace.clone(),
                            parent.run,
                            Hint::Run(id),
                            Op::Advance,
                        );
                    }
                }
                Command::Start { .. } => {}
            }
        }
    }
}

/// Errors worth trying again later rather than failing the step for.
fn transient(e: &Error) -> bool {
    matches!(
        e.code,
        ErrorCode::Internal
            | ErrorCode::StorageFull
            | ErrorCode::ShuttingDown
            | ErrorCode::StorageUnavailable
            | ErrorCode::Overloaded
            | ErrorCode::Conflict
    )
}
