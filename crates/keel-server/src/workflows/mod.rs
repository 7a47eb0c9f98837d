//! The workflow driver: it carries out what `keel_core`'s scheduler decides.
//!
//! Every step's work rides on the job core. A `task` is a job on the user's
//! queue, tagged with its run and step; an `http` call and every timer (sleep,
//! wait timeout, run deadline) is a job on Keel's own queue
//! ([`SYSTEM_NAMESPACE`]/[`SYSTEM_QUEUE`]), run by the step runner service.
//! Work is created under keys derived from the run, so creating it again after
//! a crash, or from a second node, finds the first one.
//!
//! Advancing a run is: read the journal, look at the work in flight, let the
//! scheduler decide, create the work it asks for, and write the journal back
//! with a compare-and-set on its revision. Losing the race (another node
//! advanced it) means reading it again. A run is advanced when its work
//! finishes (acks of its jobs), when a timer job fires, when a signal, cancel
//! or retry arrives, and by the sweep that resumes runs after a restart.

pub mod http;

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

use keel_core::workflow::scheduler::new_run;
use keel_core::workflow::{
    Command, Definition, Handle, HttpRequest, Machine, Outcome, ParentRef, RunId, RunMeta,
    RunState, Work,
};
use keel_core::{
    Backoff, Clock, Error, ErrorCode, JobId, JobIdGenerator, JobState, Namespace, NewJob,
    QueueName, QueueRef, Timestamp,
};
use keel_store::{NewRun, RUN_TAG, STEP_TAG, Store, StoredRun};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::watch;

use self::http::HttpCaller;

/// Keel's own namespace: HTTP calls and timers of workflow runs. Reserved: the
/// API refuses it.
pub const SYSTEM_NAMESPACE: &str = "_keel";
pub const SYSTEM_QUEUE: &str = "workflow";

/// Attempts for a timer job: it only fails when its run cannot be advanced.
const TIMER_ATTEMPTS: u32 = 100;
/// Lease of a timer job, and the margin of an HTTP call's lease over the
/// call's own timeout: a node that dies holding one delays it by this much.
const SYSTEM_LEASE_MS: u64 = 5_000;
/// A task step's lease when the step gives no `timeout_ms`.
const DEFAULT_TASK_LEASE_MS: u64 = 30_000;
/// Tries to write a journal that others keep changing, before giving up.
const MAX_CONFLICTS: usize = 50;
/// Runs are advanced one at a time per shard on this node.
const LOCK_SHARDS: usize = 64;
/// Definitions kept parsed; they never change, so the cache is only bounded.
const CACHED_DEFINITIONS: usize = 1024;

pub fn system_queue() -> QueueRef {
    QueueRef {
        namespace: Namespace::new(SYSTEM_NAMESPACE).expect("valid name"),
        queue: QueueName::new(SYSTEM_QUEUE).expect("valid name"),
    }
}

/// A job on Keel's own queue.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SystemJob {
    Http {
        namespace: String,
        run: RunId,
        request: HttpRequest,
    },
    Wake {
        namespace: String,
        run: RunId,
        at: Timestamp,
    },
}

/// What finished, so that only that piece of work is looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hint {
    /// Look at all work in flight (after a restart).
    All,
    Job(JobId),
    Run(RunId),
    /// Only time moved, or a request arrived.
    Nothing,
}

impl Hint {
    fn covers(self, handle: Handle) -> bool {
        match (self, handle) {
            (Hint::All, _) => true,
            (Hint::Job(a), Handle::Job { id, .. }) => a == id,
            (Hint::Run(a), Handle::Run { id }) => a == id,
            _ => false,
        }
    }
}

/// A request to change a run, applied before it advances.
#[derive(Clone, Debug)]
pub enum Op {
    Advance,
    Signal(String, Value),
    Cancel,
    Retry,
}

pub struct Driver {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    ids: Mutex<JobIdGenerator>,
    definitions: Mutex<HashMap<(Namespace, String, u32), Arc<Definition>>>,
    locks: Vec<tokio::sync::Mutex<()>>,
    /// Bumped whenever a run of this node ends, for waiting readers.
    finished: watch::Sender<u64>,
    pub http: HttpCaller,
}

impl Driver {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        allow_private_http: bool,
    ) -> Arc<Self> {
        Arc::new(Driver {
            store,
            clock,
            ids: Mutex::new(JobIdGenerator::default()),
            definitions: Mutex::new(HashMap::new()),
            locks: (0..LOCK_SHARDS)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            finished: watch::channel(0).0,
            http: HttpCaller::new(allow_private_http),
        })
    }

    /// Fires when any run this node advances reaches a final status.
    pub fn finished(&self) -> watch::Receiver<u64> {
        self.finished.subscribe()
    }

    /// A version of a workflow, parsed (latest when `version` is `None`).
    pub async fn definition(
        &self,
        namespace: &Namespace,
        name: &str,
        version: Option<u32>,
    ) -> Result<(u32, Arc<Definition>), Error> {
        if let Some(v) = version
            && let Some(def) = self.cached(namespace, name, v)
        {
            return Ok((v, def));
        }
        let stored = self.store.workflow_get(namespace, name, version).await?;
        if let Some(def) = self.cached(namespace, name, stored.version) {
            return Ok((stored.version, def));
        }
        let value: Value = serde_json::from_str(&stored.definition)
            .map_err(|e| Error::internal(format!("stored definition is not JSON: {e}")))?;
        let def = Arc::new(Definition::from_value(&value).map_err(|problems| {
            Error::internal(format!(
                "stored definition of {name:?} v{} no longer validates: {}",
                stored.version,
                problems
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_default()
            ))
        })?);
        let mut cache = self
            .definitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CACHED_DEFINITIONS {
            cache.clear();
        }
        cache.insert(
            (namespace.clone(), name.to_owned(), stored.version),
            def.clone(),
        );
        Ok((stored.version, def))
    }

    fn cached(&self, namespace: &Namespace, name: &str, version: u32) -> Option<Arc<Definition>> {
        self.definitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(namespace.clone(), name.to_owned(), version))
            .cloned()
    }

    fn next_id(&self, now: Timestamp) -> RunId {
        self.ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .next(now)
    }

    /// Starts a run of the latest version (or `version`); with an idempotency
    /// key seen before, returns that run and `true`.
    pub async fn start(
        self: &Arc<Self>,
        namespace: &Namespace,
        workflow: &str,
        version: Option<u32>,
        input: Value,
        idempotency_key: Option<String>,
    ) -> Result<(StoredRun, bool), Error> {
        let (run, deduplicated) = self
            .create(namespace, workflow, version, input, idempotency_key, None)
            .await?;
        if deduplicated {
            return Ok((run, true));
        }
        crate::metrics::run_started(namespace, workflow);
        let run = self
            .advance(namespace, run.id, Hint::Nothing, Op::Advance)
            .await?;
        Ok((run, false))
    }

    async fn create(
        &self,
        namespace: &Namespace,
        workflow: &str,
        version: Option<u32>,
        input: Value,
        idempotency_key: Option<String>,
        parent: Option<ParentRef>,
    ) -> Result<(StoredRun, bool), Error> {
        let (version, def) = self.definition(namespace, workflow, version).await?;
        let now = self.clock.now();
        let run = NewRun {
            id: self.next_id(now),
            workflow: workflow.to_owned(),
            version,
            input: input.to_string(),
            state: new_run(&def, now, parent),
            idempotency_key,
        };
        self.store.run_create(namespace, run, now).await
    }

    /// A job of a run finished (acked, cancelled): advance its run, in the background.
    pub fn job_finished(self: &Arc<Self>, namespace: Namespace, job: JobId) {
        let driver = self.clone();
        tokio::spawn(async move {
            let found = driver.store.job_get(&namespace, job).await;
            let run = found
                .ok()
                .and_then(|j| j.tags.get(RUN_TAG).and_then(|r| r.parse::<RunId>().ok()));
            if let Some(run) = run {
                driver
                    .advance_logged(&namespace, run, Hint::Job(job), Op::Advance)
                    .await;
            }
        });
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

    /// Applies `op`, moves the run as far as it goes, and stores the journal.
    pub async fn advance(
        self: &Arc<Self>,
        namespace: &Namespace,
        id: RunId,
        hint: Hint,
        op: Op,
    ) -> Result<StoredRun, Error> {
        let _guard = self.lock(id).lock().await;
        for _ in 0..MAX_CONFLICTS {
            let run = self.store.run_get(namespace, id).await?;
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
            let mut machine = Machine::new(&def, meta, state);
            let now = self.clock.now();
            match &op {
                Op::Advance => {}
                Op::Signal(name, payload) => machine.signal(name, payload.clone())?,
                Op::Cancel => machine.cancel(now)?,
                Op::Retry => machine.retry(now)?,
            }
            for (step, item, handle) in machine.open_work() {
                if hint.covers(handle)
                    && let Some(outcome) = self.observe(namespace, handle).await?
                {
                    machine.observe(&step, item, outcome, now);
                }
            }
            let mut later = Vec::new();
            let mut commands = machine.advance(now);
            while !commands.is_empty() {
                let mut refused = false;
                for command in commands {
                    match command {
                        Command::Start {
                            step,
                            item,
                            key,
                            work,
                        } => match self
                            .start_work(namespace, id, &step, item, &key, *work, now)
                            .await
                        {
                            Ok(handle) => machine.started(&step, item, handle),
                            Err(e) if transient(&e) => return Err(e),
                            Err(e) => {
                                machine.start_failed(&step, item, e.message, now);
                                refused = true;
                            }
                        },
                        other => later.push(other),
                    }
                }
                commands = if refused {
                    machine.advance(now)
                } else {
                    Vec::new()
                };
            }
            let state = machine.into_state();
            if state == run.state {
                // Nothing to store, but a sweep may have re-asked for a
                // wake-up that a crash lost.
                self.carry_out(namespace, id, &state, later, now).await;
                return Ok(run);
            }
            match self
                .store
                .run_update(namespace, id, run.rev, &state, now)
                .await
            {
                Ok(rev) => {
                    self.carry_out(namespace, id, &state, later, now).await;
                    return Ok(StoredRun {
                        state,
                        rev,
                        updated_at: now,
                        ..run
                    });
                }
                Err(e) if e.code == ErrorCode::Conflict => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::new(
            ErrorCode::Conflict,
            format!("run {id} kept changing; try again"),
        ))
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
                let job = match self.store.job_get(&ns, id).await {
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
                let child = match self.store.run_get(namespace, id).await {
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

    /// Creates a step's work under its key; a second call finds the first's.
    #[allow(clippy::too_many_arguments)]
    async fn start_work(
        self: &Arc<Self>,
        namespace: &Namespace,
        run: RunId,
        step: &str,
        item: Option<usize>,
        key: &str,
        work: Work,
        now: Timestamp,
    ) -> Result<Handle, Error> {
        match work {
            Work::Task {
                queue,
                payload,
                priority,
                max_attempts,
                backoff,
                lease_ms,
            } => {
                let mut tags = BTreeMap::from([
                    (RUN_TAG.to_owned(), run.to_string()),
                    (STEP_TAG.to_owned(), step.to_owned()),
                ]);
                if let Some(i) = item {
                    tags.insert("keel.item".to_owned(), i.to_string());
                }
                let job = NewJob {
                    payload: raw(&payload)?,
                    priority,
                    run_at: now,
                    max_attempts,
                    backoff,
                    lease_ms: lease_ms.unwrap_or(DEFAULT_TASK_LEASE_MS).clamp(
                        keel_core::limits::MIN_LEASE_MS,
                        keel_core::limits::MAX_LEASE_MS,
                    ),
                    idempotency_key: Some(key.to_owned()),
                    ordering_key: None,
                    tags,
                };
                let queue = QueueRef {
                    namespace: namespace.clone(),
                    queue,
                };
                let id = self.enqueue(&queue, job, now).await?;
                Ok(Handle::Job { id, system: false })
            }
            Work::Http {
                request,
                max_attempts,
                backoff,
            } => {
                let lease_ms =
                    request.timeout_ms.unwrap_or(http::DEFAULT_TIMEOUT_MS) + SYSTEM_LEASE_MS;
                let job = SystemJob::Http {
                    namespace: namespace.to_string(),
                    run,
                    request,
                };
                let id = self
                    .enqueue_system(
                        &job,
                        &format!("{namespace}/{key}"),
                        now,
                        max_attempts,
                        backoff,
                        lease_ms,
                        run,
                    )
                    .await?;
                Ok(Handle::Job { id, system: true })
            }
            Work::Child {
                workflow,
                version,
                input,
            } => {
                let parent = ParentRef {
                    run,
                    step: step.to_owned(),
                    item,
                };
                let (child, _) = self
                    .create(
                        namespace,
                        &workflow,
                        version,
                        input,
                        Some(key.to_owned()),
                        Some(parent),
                    )
                    .await?;
                self.spawn_advance(namespace.clone(), child.id, Hint::Nothing, Op::Advance);
                Ok(Handle::Run { id: child.id })
            }
        }
    }

    async fn enqueue(&self, queue: &QueueRef, job: NewJob, now: Timestamp) -> Result<JobId, Error> {
        let mut done = self.store.jobs_enqueue(queue, vec![job], now).await?;
        let enqueued = done
            .pop()
            .ok_or_else(|| Error::internal("no answer for the enqueue"))?;
        if !enqueued.deduplicated {
            crate::metrics::job_enqueued(queue, 1);
        }
        Ok(enqueued.id)
    }

    #[allow(clippy::too_many_arguments)]
    async fn enqueue_system(
        &self,
        job: &SystemJob,
        key: &str,
        run_at: Timestamp,
        max_attempts: u32,
        backoff: Backoff,
        lease_ms: u64,
        run: RunId,
    ) -> Result<JobId, Error> {
        let payload = serde_json::to_value(job).map_err(|e| Error::internal(e.to_string()))?;
        let new = NewJob {
            payload: raw(&payload)?,
            priority: 0,
            run_at,
            max_attempts,
            backoff,
            lease_ms: lease_ms.min(keel_core::limits::MAX_LEASE_MS),
            idempotency_key: Some(key.to_owned()),
            ordering_key: None,
            tags: BTreeMap::from([(RUN_TAG.to_owned(), run.to_string())]),
        };
        self.enqueue(&system_queue(), new, self.clock.now()).await
    }

    /// Commands that follow a stored decision: cancellations, wake-ups, and
    /// news for a parent run.
    async fn carry_out(
        self: &Arc<Self>,
        namespace: &Namespace,
        id: RunId,
        state: &RunState,
        commands: Vec<Command>,
        now: Timestamp,
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
                    let _ = self.store.job_cancel(&ns, job, now).await;
                }
                Command::Cancel(Handle::Run { id: child }) => {
                    self.spawn_advance(namespace.clone(), child, Hint::Nothing, Op::Cancel);
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
                    if let Err(e) = self
                        .enqueue_system(
                            &job,
                            &key,
                            at,
                            TIMER_ATTEMPTS,
                            backoff,
                            SYSTEM_LEASE_MS,
                            id,
                        )
                        .await
                    {
                        tracing::warn!(run = %id, error = %e, "cannot set the run's timer; the sweep will");
                    }
                }
                Command::Finished => {
                    crate::metrics::run_finished(namespace, state.status);
                    self.finished.send_modify(|n| *n += 1);
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

fn raw(value: &Value) -> Result<Box<RawValue>, Error> {
    RawValue::from_string(value.to_string()).map_err(|e| Error::internal(e.to_string()))
}

/// Errors worth trying again later rather than failing the step for.
fn transient(e: &Error) -> bool {
    matches!(
        e.code,
        ErrorCode::Internal
            | ErrorCode::StorageFull
            | ErrorCode::ShuttingDown
            | ErrorCode::Conflict
    )
}
