//! The writer thread: the one place that changes the database.
//!
//! Requests arrive as [`Command`]s on a bounded channel. The writer takes every
//! command waiting (up to [`MAX_COMMANDS_PER_COMMIT`]), applies them in one
//! transaction, commits once (one fsync: group commit) and only then answers
//! each caller. A caller therefore never hears "done" before its change, and
//! every change before it, is on disk.
//!
//! Faults: if a statement or the commit fails, the transaction is rolled back,
//! the hot index is rebuilt from disk and every command of the batch gets the
//! error (507 when the disk is full). An IO error (fsync included) aborts the
//! process: after one, SQLite cannot promise what is on disk, and Keel never
//! acknowledges what it cannot promise.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Instant;

use keel_core::workflow::RunId;
use keel_core::{
    Backoff, Error, ErrorCode, JobId, JobIdGenerator, JobLifecycle, JobState, LeaseToken,
    Namespace, NewJob, QueuePolicy, QueueRef, Timestamp, Transition,
};
use keel_store::{
    Ack, AckOutcome, Acked, Depth, Enqueued, IDEMPOTENCY_WINDOW_MS, LeaseRequest, LeasedJob,
    MaintenanceReport, QueueStats, RUN_TAG, ReadySignal, RedriveSelection, RunJob,
};
use rusqlite::{Connection, ErrorCode as SqliteCode, OptionalExtension, params};
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};

use crate::hot::{Hot, LiveJob, QueueIdx};
use crate::rows::{blob_id, raw_json, tags_from_sql, tags_to_sql};
use crate::syncer::{Pending, Syncer};

/// How many commands share one transaction at most.
const MAX_COMMANDS_PER_COMMIT: usize = 1024;
/// How many jobs one maintenance pass moves at most, so that other writes wait
/// no longer than one such batch; the next pass follows at once.
const MAX_MAINTENANCE_MOVES: usize = 10_000;
/// Finished jobs deleted per queue and per pass.
const PRUNE_CHUNK: i64 = 10_000;

pub type Reply<T> = oneshot::Sender<Result<T, Error>>;

/// Policies readable without a round trip to the writer.
pub type SharedPolicies = Arc<RwLock<HashMap<QueueRef, QueuePolicy>>>;

pub enum Command {
    Enqueue {
        queue: QueueRef,
        jobs: Vec<NewJob>,
        now: Timestamp,
        reply: Reply<Vec<Enqueued>>,
    },
    Lease {
        req: LeaseRequest,
        now: Timestamp,
        reply: Reply<Vec<LeasedJob>>,
    },
    Ack {
        namespace: Namespace,
        acks: Vec<Ack>,
        now: Timestamp,
        reply: Reply<Vec<Result<Acked, Error>>>,
    },
    Heartbeat {
        namespace: Namespace,
        token: LeaseToken,
        lease_ms: Option<u64>,
        now: Timestamp,
        reply: Reply<Timestamp>,
    },
    Cancel {
        namespace: Namespace,
        id: JobId,
        now: Timestamp,
        reply: Reply<Acked>,
    },
    Redrive {
        queue: QueueRef,
        selection: RedriveSelection,
        payload: Option<Box<RawValue>>,
        now: Timestamp,
        reply: Reply<Vec<JobId>>,
    },
    PolicySet {
        queue: QueueRef,
        policy: QueuePolicy,
        now: Timestamp,
        reply: Reply<()>,
    },
    Pause {
        queue: QueueRef,
        paused: bool,
        now: Timestamp,
        reply: Reply<()>,
    },
    Stats {
        queue: QueueRef,
        reply: Reply<QueueStats>,
    },
    Depths {
        reply: Reply<Vec<Depth>>,
    },
    Maintenance {
        now: Timestamp,
        reply: Reply<MaintenanceReport>,
    },
    Prune {
        now: Timestamp,
        reply: Reply<u64>,
    },
    Shutdown {
        reply: Reply<()>,
    },
    /// From the syncer: a sync finished; commit what gathered meanwhile.
    SyncDone,
    /// A write outside the job index (workflows, runs); see [`exec`].
    Exec(ExecWrite),
    /// A run's journal write with the jobs it starts; see [`run_write`].
    RunWrite(RunWrite),
}

/// A write for [`Command::Exec`]: given the connection and whether the batch
/// already failed (then it only answers), it returns its answer slot and any fault.
pub type ExecWrite =
    Box<dyn FnOnce(&Connection, bool) -> (Pending, Option<rusqlite::Error>) + Send>;

/// A write of another module, run inside the open transaction so that it is
/// group-committed and fsynced like the job writes.
pub fn exec<T: Send + 'static>(
    reply: Reply<T>,
    write: impl FnOnce(&Connection) -> Applied<T> + Send + 'static,
) -> Command {
    Command::Exec(Box::new(move |conn, skip| {
        if skip {
            finish(reply, Ok(Err(Error::internal("transaction failed"))))
        } else {
            finish(reply, write(conn))
        }
    }))
}

/// A write for [`Command::RunWrite`], like [`ExecWrite`] but with the writer
/// itself, so that it can create jobs.
pub type RunWrite = Box<dyn FnOnce(&mut Writer, bool) -> (Pending, Option<rusqlite::Error>) + Send>;

/// A run's journal write and the jobs it starts, in one transaction: `write`
/// answers its value and whether the jobs are to be created (not when the
/// write was refused, or found an earlier run under the same key).
pub fn run_write<T: Send + 'static>(
    reply: Reply<T>,
    jobs: Vec<RunJob>,
    now: Timestamp,
    write: impl FnOnce(&Connection) -> Applied<(T, bool)> + Send + 'static,
) -> Command {
    Command::RunWrite(Box::new(move |writer, skip| {
        if skip {
            finish(reply, Ok(Err(Error::internal("transaction failed"))))
        } else {
            finish(reply, writer.write_run(jobs, now, write))
        }
    }))
}

fn finish<T: Send + 'static>(
    reply: Reply<T>,
    applied: Applied<T>,
) -> (Pending, Option<rusqlite::Error>) {
    match applied {
        Ok(result) => (pending(reply, result), None),
        Err(fault) => (
            pending(reply, Err(Error::internal("transaction failed"))),
            Some(fault),
        ),
    }
}

fn pending<T: Send + 'static>(reply: Reply<T>, result: Result<T, Error>) -> Pending {
    Box::new(move |fault| {
        let _ = reply.send(match fault {
            None => result,
            Some(e) => Err(e.clone()),
        });
    })
}

/// A transaction being filled; its answers wait for its commit.
struct OpenTx {
    answers: Vec<Pending>,
    started: Instant,
    /// SQLite's count of changed rows at `BEGIN`: unchanged means nothing to sync.
    changes_at_begin: u64,
    /// The first storage fault; the rest of the transaction is refused.
    fault: Option<rusqlite::Error>,
}

impl OpenTx {
    fn begin(conn: &Connection) -> Self {
        OpenTx {
            answers: Vec::new(),
            started: Instant::now(),
            changes_at_begin: conn.total_changes(),
            fault: conn.execute_batch("BEGIN IMMEDIATE").err(),
        }
    }
}

/// A command's outcome: a storage fault (outer) or the answer for the caller.
pub type Applied<T> = rusqlite::Result<Result<T, Error>>;

pub struct Writer {
    conn: Connection,
    hot: Hot,
    ids: JobIdGenerator,
    max_namespace_jobs: u64,
    signal: ReadySignal,
    policies: SharedPolicies,
    syncer: Syncer,
}

impl Writer {
    pub fn open(
        conn: Connection,
        syncer: Syncer,
        max_namespace_jobs: u64,
        signal: ReadySignal,
        policies: SharedPolicies,
    ) -> rusqlite::Result<Self> {
        let mut writer = Writer {
            conn,
            hot: Hot::default(),
            ids: JobIdGenerator::default(),
            max_namespace_jobs,
            signal,
            policies,
            syncer,
        };
        writer.rebuild()?;
        Ok(writer)
    }

    /// Applies commands until a shutdown, then lets the syncer answer what it holds.
    pub fn run(self, rx: mpsc::Receiver<Command>) {
        let syncer = self.apply_until_shutdown(rx);
        syncer.finish();
    }

    /// The loop of the writer. Commands are applied into an open transaction,
    /// which is committed when the syncer is idle (or the transaction is full,
    /// failed, or a shutdown came). While a sync is in flight, committing would
    /// gain nothing: no answer can leave before the next sync starts. So the
    /// transaction stays open and gathers what arrives, and the syncer's
    /// `SyncDone` wakes the writer to commit it. Under load that is one commit
    /// and one fsync per sync interval. When idle, the first command commits at
    /// once.
    fn apply_until_shutdown(mut self, mut rx: mpsc::Receiver<Command>) -> Syncer {
        let mut open: Option<OpenTx> = None;
        let mut shutdown = false;
        while !shutdown {
            let Some(first) = rx.blocking_recv() else {
                break;
            };
            let mut next = Some(first);
            let mut taken = 0;
            while let Some(cmd) = next.take() {
                taken += 1;
                shutdown |= matches!(cmd, Command::Shutdown { .. });
                if !matches!(cmd, Command::SyncDone) {
                    let tx = open.get_or_insert_with(|| OpenTx::begin(&self.conn));
                    if tx.fault.is_some() {
                        tx.answers.push(self.refuse(cmd));
                    } else {
                        let (answer, fault) = self.apply(cmd);
                        tx.answers.push(answer);
                        tx.fault = fault;
                    }
                }
                if taken < MAX_COMMANDS_PER_COMMIT {
                    next = rx.try_recv().ok();
                }
            }
            let must_commit = open.as_ref().is_some_and(|tx| {
                shutdown
                    || tx.fault.is_some()
                    || tx.answers.len() >= MAX_COMMANDS_PER_COMMIT
                    || !self.syncer.is_syncing()
            });
            if must_commit && let Some(tx) = open.take() {
                self.commit(tx);
            }
        }
        if let Some(tx) = open.take() {
            self.commit(tx);
        }
        self.syncer
    }

    /// Commits an open transaction and hands its answers to the syncer, or
    /// rolls it back and answers every command in it with the fault.
    fn commit(&mut self, tx: OpenTx) {
        let fault = tx.fault.or_else(|| self.conn.execute_batch("COMMIT").err());
        match fault {
            None => {
                metrics::histogram!("keel_store_commit_seconds")
                    .record(tx.started.elapsed().as_secs_f64());
                metrics::histogram!("keel_store_commit_batch_size").record(tx.answers.len() as f64);
                // Wake leasers before answering, so that a caller who hears
                // "done" can count on the wake-up having happened. A woken
                // leaser's own answer waits for a later sync, which covers
                // this commit too.
                for (queue, jobs) in self.hot.take_woken() {
                    self.signal.notify(&self.hot.queues[queue].queue, jobs);
                }
                if let Some(due) = self.hot.next_due() {
                    self.signal.deadline(due);
                }
                let wrote = self.conn.total_changes() != tx.changes_at_begin;
                self.syncer.submit(tx.answers, wrote);
            }
            Some(fault) => {
                let error = self.recover(&fault);
                for answer in tx.answers {
                    answer(Some(&error));
                }
            }
        }
    }

    /// After a failed transaction: roll back and reload the hot index from disk,
    /// or stop the process when the disk itself can no longer be trusted.
    fn recover(&mut self, fault: &rusqlite::Error) -> Error {
        let _ = self.conn.execute_batch("ROLLBACK");
        let code = fault.sqlite_error_code();
        if code == Some(SqliteCode::SystemIoFailure) {
            tracing::error!(%fault, "storage IO failure; stopping so that nothing unsynced is acknowledged");
            std::process::abort();
        }
        if let Err(e) = self.rebuild() {
            tracing::error!(%e, "cannot reload state after a failed transaction; stopping");
            std::process::abort();
        }
        if code == Some(SqliteCode::DiskFull) {
            Error::new(
                ErrorCode::StorageFull,
                "the disk is full; nothing was written",
            )
        } else {
            tracing::error!(%fault, "transaction failed and was rolled back");
            Error::internal(format!("storage error: {fault}"))
        }
    }

    fn refuse(&mut self, cmd: Command) -> Pending {
        let (answer, _) = self.dispatch(cmd, true);
        answer
    }

    fn apply(&mut self, cmd: Command) -> (Pending, Option<rusqlite::Error>) {
        self.dispatch(cmd, false)
    }

    /// Runs `cmd` (or, with `skip`, only prepares its answer slot for a batch
    /// that already failed).
    fn dispatch(&mut self, cmd: Command, skip: bool) -> (Pending, Option<rusqlite::Error>) {
        macro_rules! run {
            ($reply:expr, $body:expr) => {
                if skip {
                    finish($reply, Ok(Err(Error::internal("transaction failed"))))
                } else {
                    finish($reply, $body)
                }
            };
        }
        match cmd {
            Command::Enqueue {
                queue,
                jobs,
                now,
                reply,
            } => run!(reply, self.enqueue(&queue, jobs, now)),
            Command::Lease { req, now, reply } => run!(reply, self.lease(&req, now)),
            Command::Ack {
                namespace,
                acks,
                now,
                reply,
            } => run!(reply, self.ack(&namespace, acks, now)),
            Command::Heartbeat {
                namespace,
                token,
                lease_ms,
                now,
                reply,
            } => {
                run!(reply, self.heartbeat(&namespace, token, lease_ms, now))
            }
            Command::Cancel {
                namespace,
                id,
                now,
                reply,
            } => run!(reply, self.cancel(&namespace, id, now)),
            Command::Redrive {
                queue,
                selection,
                payload,
                now,
                reply,
            } => {
                run!(reply, self.redrive(&queue, selection, payload, now))
            }
            Command::PolicySet {
                queue,
                policy,
                now,
                reply,
            } => run!(reply, self.policy_set(&queue, policy, now)),
            Command::Pause {
                queue,
                paused,
                now,
                reply,
            } => run!(reply, self.pause(&queue, paused, now)),
            Command::Stats { queue, reply } => run!(reply, Ok(Ok(self.stats(&queue)))),
            Command::Depths { reply } => run!(reply, Ok(Ok(self.depths()))),
            Command::Maintenance { now, reply } => run!(reply, self.maintenance(now)),
            Command::Prune { now, reply } => run!(reply, self.prune(now)),
            Command::Shutdown { reply } => run!(reply, Ok(Ok(()))),
            Command::SyncDone => (Box::new(|_| {}), None),
            Command::Exec(write) => write(&self.conn, skip),
            Command::RunWrite(write) => write(self, skip),
        }
    }

    /// Loads the hot index from disk: every unfinished job, every queue's policy
    /// and the counts of finished jobs.
    fn rebuild(&mut self) -> rusqlite::Result<()> {
        let mut hot = Hot::default();
        let mut policies = HashMap::new();
        let mut stmt = self
            .conn
            .prepare("SELECT namespace, queue, policy, paused FROM queues")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let Some(queue) = queue_ref(&row.get::<_, String>(0)?, &row.get::<_, String>(1)?)
            else {
                continue;
            };
            let policy: QueuePolicy =
                serde_json::from_str(&row.get::<_, String>(2)?).unwrap_or_default();
            let idx = hot.queue_entry(&queue);
            hot.queues[idx].policy = policy.clone();
            hot.queues[idx].paused = row.get(3)?;
            policies.insert(queue, policy);
        }
        drop(rows);
        drop(stmt);

        let mut stmt = self.conn.prepare(
            "SELECT namespace, queue, state, count(*) FROM jobs \
             WHERE finished_at IS NOT NULL GROUP BY namespace, queue, state",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let Some((queue, state)) = queue_and_state(row, 0)? else {
                continue;
            };
            let idx = hot.queue_entry(&queue);
            hot.count_finished(idx, state, row.get(3)?);
        }
        drop(rows);
        drop(stmt);

        let mut stmt = self.conn.prepare(
            "SELECT seq, id, namespace, queue, state, priority, attempt, max_attempts, run_at, \
             lease_seq, lease_expires_at, lease_ms, backoff, ordering_key, tags \
             FROM jobs WHERE finished_at IS NULL ORDER BY seq",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let Some((queue, state)) = queue_and_state(row, 2)? else {
                continue;
            };
            let queue = hot.queue_entry(&queue);
            let job = LiveJob {
                seq: row.get(0)?,
                queue,
                life: JobLifecycle {
                    state,
                    attempt: row.get(6)?,
                    max_attempts: row.get(7)?,
                    run_at: Timestamp::from_millis(row.get(8)?),
                    lease_seq: row.get::<_, i64>(9)? as u64,
                    lease_expires_at: row.get::<_, Option<i64>>(10)?.map(Timestamp::from_millis),
                },
                priority: row.get(5)?,
                lease_ms: row.get::<_, i64>(11)? as u32,
                backoff: hot.intern_backoff(
                    serde_json::from_str(&row.get::<_, String>(12)?).unwrap_or_default(),
                ),
                ordering_key: row.get::<_, Option<String>>(13)?.map(Arc::from),
                run: run_of(&tags_from_sql(row.get(14)?)),
            };
            hot.insert(blob_id(&row.get::<_, Vec<u8>>(1)?), job);
        }
        drop(rows);
        drop(stmt);
        hot.take_woken();
        self.hot = hot;
        *self
            .policies
            .write()
            .unwrap_or_else(PoisonError::into_inner) = policies;
        Ok(())
    }

    /// The state of a job that may be finished (only on disk) or unknown.
    fn state_on_disk(
        &self,
        namespace: &Namespace,
        id: JobId,
    ) -> rusqlite::Result<Option<JobState>> {
        let state: Option<String> = self
            .conn
            .prepare_cached("SELECT state FROM jobs WHERE id = ?1 AND namespace = ?2")?
            .query_row(params![id.as_bytes(), namespace.as_str()], |r| r.get(0))
            .optional()?;
        Ok(state.and_then(|s| JobState::parse(&s)))
    }

    /// The hot job `id` if it is in `namespace`.
    fn live(&self, namespace: &Namespace, id: JobId) -> Option<&LiveJob> {
        self.hot
            .jobs
            .get(&id)
            .filter(|job| &self.hot.queues[job.queue].queue.namespace == namespace)
    }

    /// Why an action on a job that is not hot fails: it finished, or it never was.
    fn why_not_live(
        &self,
        namespace: &Namespace,
        id: JobId,
        finished: fn() -> Error,
    ) -> rusqlite::Result<Error> {
        Ok(match self.state_on_disk(namespace, id)? {
            Some(_) => finished(),
            None => Error::job_not_found(id),
        })
    }

    fn enqueue(
        &mut self,
        queue: &QueueRef,
        jobs: Vec<NewJob>,
        now: Timestamp,
    ) -> Applied<Vec<Enqueued>> {
        /// What an idempotency key says about one job of the batch.
        enum Plan {
            New,
            /// Same key as an earlier job of this batch (its index).
            SameAs(usize),
            /// Same key as a job enqueued before, within the window.
            Earlier(Enqueued),
        }
        let namespace = &queue.namespace;
        // Resolve keys first: duplicates take no room and write nothing.
        let mut plans = Vec::with_capacity(jobs.len());
        let mut first_of_key: HashMap<&str, usize> = HashMap::new();
        for (i, job) in jobs.iter().enumerate() {
            let Some(key) = job.idempotency_key.as_deref() else {
                plans.push(Plan::New);
                continue;
            };
            if let Some(&first) = first_of_key.get(key) {
                plans.push(Plan::SameAs(first));
                continue;
            }
            first_of_key.insert(key, i);
            plans.push(match self.idempotent_match(namespace, key, now)? {
                Some(earlier) => Plan::Earlier(earlier),
                None => Plan::New,
            });
        }
        let new_jobs = plans.iter().filter(|p| matches!(p, Plan::New)).count() as u64;
        if let Err(e) = self.room(namespace, new_jobs) {
            return Ok(Err(e));
        }

        let queue_idx = self.hot.queue_entry(queue);
        let mut out: Vec<Enqueued> = Vec::with_capacity(jobs.len());
        for (job, plan) in jobs.into_iter().zip(plans) {
            match plan {
                Plan::SameAs(first) => {
                    let first = out[first].clone();
                    out.push(Enqueued {
                        deduplicated: true,
                        ..first
                    });
                    continue;
                }
                Plan::Earlier(earlier) => {
                    out.push(earlier);
                    continue;
                }
                Plan::New => {}
            }
            let id = self.ids.next(now);
            let enqueued = self.insert_job(queue, queue_idx, id, job, now)?;
            out.push(enqueued);
        }
        Ok(Ok(out))
    }

    /// Refuses `adding` jobs that would take `namespace` over its bound.
    fn room(&self, namespace: &Namespace, adding: u64) -> Result<(), Error> {
        let unfinished = self.hot.unfinished(namespace);
        if unfinished + adding > self.max_namespace_jobs {
            return Err(Error::new(
                ErrorCode::NamespaceFull,
                format!(
                    "namespace {namespace} holds {unfinished} unfinished jobs; the limit is {}",
                    self.max_namespace_jobs
                ),
            ));
        }
        Ok(())
    }

    /// Writes one new job and puts it in the hot index.
    fn insert_job(
        &mut self,
        queue: &QueueRef,
        queue_idx: QueueIdx,
        id: JobId,
        job: NewJob,
        now: Timestamp,
    ) -> rusqlite::Result<Enqueued> {
        let namespace = &queue.namespace;
        let life = JobLifecycle::new(&job, now);
        let run = run_of(&job.tags);
        self.conn
            .prepare_cached(
                "INSERT INTO jobs (id, namespace, queue, state, payload, priority, attempt, \
                 max_attempts, run_at, created_at, updated_at, lease_seq, lease_ms, backoff, \
                 idempotency_key, ordering_key, tags) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?8, ?9, ?9, 0, ?10, ?11, ?12, ?13, ?14)",
            )?
            .execute(params![
                id.as_bytes(),
                namespace.as_str(),
                queue.queue.as_str(),
                life.state.as_str(),
                job.payload.get(),
                job.priority,
                job.max_attempts,
                job.run_at.as_millis(),
                now.as_millis(),
                job.lease_ms as i64,
                backoff_json(&job.backoff),
                job.idempotency_key,
                job.ordering_key,
                tags_to_sql(&job.tags),
            ])?;
        let seq = self.conn.last_insert_rowid();
        let enqueued = Enqueued {
            id,
            state: life.state,
            deduplicated: false,
        };
        if let Some(key) = &job.idempotency_key {
            self.conn
                .prepare_cached(
                    "INSERT OR REPLACE INTO idempotency_keys (namespace, key, job_id, expires_at) \
                     VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![
                    namespace.as_str(),
                    key,
                    id.as_bytes(),
                    now.plus_ms(IDEMPOTENCY_WINDOW_MS).as_millis()
                ])?;
        }
        let backoff = self.hot.intern_backoff(job.backoff);
        self.hot.insert(
            id,
            LiveJob {
                seq,
                queue: queue_idx,
                life,
                priority: job.priority,
                lease_ms: job.lease_ms as u32,
                backoff,
                ordering_key: job.ordering_key.map(Arc::from),
                run,
            },
        );
        Ok(enqueued)
    }

    /// See [`run_write`]. Refusals come before anything is written: a write
    /// cannot be taken back without failing the whole group commit.
    fn write_run<T>(
        &mut self,
        jobs: Vec<RunJob>,
        now: Timestamp,
        write: impl FnOnce(&Connection) -> Applied<(T, bool)>,
    ) -> Applied<T> {
        let mut adding: HashMap<&Namespace, u64> = HashMap::new();
        for job in &jobs {
            *adding.entry(&job.queue.namespace).or_default() += 1;
        }
        for (namespace, n) in adding {
            if let Err(e) = self.room(namespace, n) {
                return Ok(Err(e));
            }
        }
        let (value, start) = match write(&self.conn)? {
            Ok(written) => written,
            Err(e) => return Ok(Err(e)),
        };
        if start {
            for RunJob { queue, id, job } in jobs {
                let queue_idx = self.hot.queue_entry(&queue);
                self.insert_job(&queue, queue_idx, id, job, now)?;
            }
        }
        Ok(Ok(value))
    }

    /// The job an unexpired idempotency key points to, if that job still exists.
    fn idempotent_match(
        &self,
        namespace: &Namespace,
        key: &str,
        now: Timestamp,
    ) -> rusqlite::Result<Option<Enqueued>> {
        let known: Option<(Vec<u8>, i64)> = self
            .conn
            .prepare_cached(
                "SELECT job_id, expires_at FROM idempotency_keys WHERE namespace = ?1 AND key = ?2",
            )?
            .query_row(params![namespace.as_str(), key], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        let Some((id, expires_at)) = known else {
            return Ok(None);
        };
        if expires_at <= now.as_millis() {
            return Ok(None);
        }
        let id = blob_id(&id);
        let state = match self.live(namespace, id) {
            Some(job) => Some(job.life.state),
            None => self.state_on_disk(namespace, id)?,
        };
        Ok(state.map(|state| Enqueued {
            id,
            state,
            deduplicated: true,
        }))
    }

    fn lease(&mut self, req: &LeaseRequest, now: Timestamp) -> Applied<Vec<LeasedJob>> {
        let Some(queue_idx) = self.hot.queue_idx(&req.queue) else {
            return Ok(Ok(Vec::new()));
        };
        let queue = &self.hot.queues[queue_idx];
        if queue.paused {
            return Ok(Ok(Vec::new()));
        }
        let mut room = req.max_jobs as u64;
        if let Some(max) = queue.policy.max_concurrency {
            room = room.min(u64::from(max).saturating_sub(queue.count(JobState::Leased)));
        }
        let mut leased = Vec::new();
        for _ in 0..room {
            let Some(&(_, _, _, id)) = self.hot.queues[queue_idx].ready.first() else {
                break;
            };
            let granted = self.hot.update(id, |job| {
                let lease_ms = req.lease_ms.unwrap_or(u64::from(job.lease_ms));
                let run_at = job.life.run_at;
                job.life.lease(now, lease_ms).map(|grant| {
                    (
                        grant,
                        job.seq,
                        job.life.attempt,
                        job.life.max_attempts,
                        job.priority,
                        run_at,
                        job.ordering_key.clone(),
                    )
                })
            });
            let Some(Ok((grant, seq, attempt, max_attempts, priority, run_at, ordering_key))) =
                granted
            else {
                return Err(index_out_of_step());
            };
            let (payload, tags, created_at): (String, Option<String>, i64) = self
                .conn
                .prepare_cached(
                    "UPDATE jobs SET state = 'leased', attempt = ?1, lease_seq = ?2, lease_expires_at = ?3, \
                     worker_id = ?4, updated_at = ?5 WHERE seq = ?6 RETURNING payload, tags, created_at",
                )?
                .query_row(
                    params![attempt, grant.lease_seq as i64, grant.expires_at.as_millis(), req.worker_id, now.as_millis(), seq],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )?;
            leased.push(LeasedJob {
                id,
                queue: req.queue.queue.to_string(),
                payload: raw_json(payload),
                attempt,
                max_attempts,
                lease_token: LeaseToken {
                    job: id,
                    lease_seq: grant.lease_seq,
                },
                lease_expires_at: grant.expires_at,
                priority,
                tags: tags_from_sql(tags),
                ordering_key: ordering_key.map(|k| k.to_string()),
                created_at: Timestamp::from_millis(created_at),
                run_at,
            });
        }
        Ok(Ok(leased))
    }

    fn ack(
        &mut self,
        namespace: &Namespace,
        acks: Vec<Ack>,
        now: Timestamp,
    ) -> Applied<Vec<Result<Acked, Error>>> {
        let mut out = Vec::with_capacity(acks.len());
        for ack in acks {
            out.push(self.ack_one(namespace, ack, now)?);
        }
        Ok(Ok(out))
    }

    fn ack_one(&mut self, namespace: &Namespace, ack: Ack, now: Timestamp) -> Applied<Acked> {
        let id = ack.token.job;
        let Some(job) = self.live(namespace, id) else {
            return Ok(Err(self.why_not_live(namespace, id, Error::lease_lost)?));
        };
        let queue = self.hot.queues[job.queue].queue.queue.clone();
        let run = job.run.as_deref().copied();
        let life_attempt = job.life.attempt;
        let lease_seq = ack.token.lease_seq;
        match ack.outcome {
            AckOutcome::Complete { result } => {
                let done = self.hot.update(id, |job| {
                    job.life.complete(lease_seq, now).map(|()| job.seq)
                });
                let seq = match done {
                    Some(Ok(seq)) => seq,
                    Some(Err(e)) => return Ok(Err(e)),
                    None => return Ok(Err(Error::lease_lost())),
                };
                self.conn
                    .prepare_cached(
                        "UPDATE jobs SET state = 'succeeded', result = ?1, updated_at = ?2, finished_at = ?2, \
                         lease_expires_at = NULL WHERE seq = ?3",
                    )?
                    .execute(params![result.as_ref().map(|r| r.get()), now.as_millis(), seq])?;
                Ok(Ok(Acked {
                    id,
                    queue,
                    state: JobState::Succeeded,
                    run_at: None,
                    run,
                    attempt: life_attempt,
                }))
            }
            AckOutcome::Fail { message, retry } => {
                let unit = fastrand::f64();
                let backoff = self
                    .hot
                    .jobs
                    .get(&id)
                    .map(|job| self.hot.backoff(job.backoff))
                    .unwrap_or_default();
                let failed = self.hot.update(id, |job| {
                    job.life
                        .fail(lease_seq, now, retry, &backoff, unit)
                        .map(|t| (t, job.seq, job.life.clone()))
                });
                let (transition, seq, life) = match failed {
                    Some(Ok(done)) => done,
                    Some(Err(e)) => return Ok(Err(e)),
                    None => return Ok(Err(Error::lease_lost())),
                };
                self.record_failure(seq, &life, &message, now)?;
                let run_at = (transition != Transition::Dead).then_some(life.run_at);
                Ok(Ok(Acked {
                    id,
                    queue,
                    state: life.state,
                    run_at,
                    run,
                    attempt: life.attempt,
                }))
            }
        }
    }

    /// Persists a failed attempt: the job's new state and the error in its history.
    fn record_failure(
        &mut self,
        seq: i64,
        life: &JobLifecycle,
        message: &str,
        now: Timestamp,
    ) -> rusqlite::Result<()> {
        let finished_at = life.state.is_final().then_some(now.as_millis());
        self.conn
            .prepare_cached(
                "UPDATE jobs SET state = ?1, run_at = ?2, updated_at = ?3, finished_at = ?4, \
                 lease_expires_at = NULL WHERE seq = ?5",
            )?
            .execute(params![
                life.state.as_str(),
                life.run_at.as_millis(),
                now.as_millis(),
                finished_at,
                seq
            ])?;
        self.conn
            .prepare_cached(
                "INSERT INTO job_errors (job_seq, attempt, message, at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![seq, life.attempt, message, now.as_millis()])?;
        Ok(())
    }

    fn heartbeat(
        &mut self,
        namespace: &Namespace,
        token: LeaseToken,
        lease_ms: Option<u64>,
        now: Timestamp,
    ) -> Applied<Timestamp> {
        let id = token.job;
        if self.live(namespace, id).is_none() {
            return Ok(Err(self.why_not_live(namespace, id, Error::lease_lost)?));
        }
        let extended = self.hot.update(id, |job| {
            let lease_ms = lease_ms.unwrap_or(u64::from(job.lease_ms));
            job.life
                .heartbeat(token.lease_seq, now, lease_ms)
                .map(|until| (until, job.seq))
        });
        let (until, seq) = match extended {
            Some(Ok(done)) => done,
            Some(Err(e)) => return Ok(Err(e)),
            None => return Ok(Err(Error::lease_lost())),
        };
        self.conn
            .prepare_cached(
                "UPDATE jobs SET lease_expires_at = ?1, updated_at = ?2 WHERE seq = ?3",
            )?
            .execute(params![until.as_millis(), now.as_millis(), seq])?;
        Ok(Ok(until))
    }

    fn cancel(&mut self, namespace: &Namespace, id: JobId, now: Timestamp) -> Applied<Acked> {
        let Some(job) = self.live(namespace, id) else {
            let finished = || Error::new(ErrorCode::InvalidState, "cannot cancel a finished job");
            return Ok(Err(self.why_not_live(namespace, id, finished)?));
        };
        let queue = self.hot.queues[job.queue].queue.queue.clone();
        let (run, attempt) = (job.run.as_deref().copied(), job.life.attempt);
        let cancelled = self
            .hot
            .update(id, |job| job.life.cancel().map(|()| job.seq));
        let seq = match cancelled {
            Some(Ok(seq)) => seq,
            Some(Err(e)) => return Ok(Err(e)),
            None => return Ok(Err(Error::job_not_found(id))),
        };
        self.conn
            .prepare_cached(
                "UPDATE jobs SET state = 'cancelled', updated_at = ?1, finished_at = ?1, \
                 lease_expires_at = NULL WHERE seq = ?2",
            )?
            .execute(params![now.as_millis(), seq])?;
        Ok(Ok(Acked {
            id,
            queue,
            state: JobState::Cancelled,
            run_at: None,
            run,
            attempt,
        }))
    }

    fn redrive(
        &mut self,
        queue: &QueueRef,
        selection: RedriveSelection,
        payload: Option<Box<RawValue>>,
        now: Timestamp,
    ) -> Applied<Vec<JobId>> {
        const COLUMNS: &str =
            "seq, id, priority, max_attempts, lease_seq, lease_ms, backoff, ordering_key";
        type DeadRow = (i64, Vec<u8>, i16, u32, i64, i64, String, Option<String>);
        let read = |r: &rusqlite::Row<'_>| -> rusqlite::Result<DeadRow> {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            ))
        };
        let mut dead: Vec<DeadRow> = Vec::new();
        match selection {
            RedriveSelection::Ids(ids) => {
                let mut stmt = self.conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM jobs WHERE id = ?1 AND namespace = ?2 AND queue = ?3 AND state = 'dead'"
                ))?;
                for id in ids {
                    let params = params![
                        id.as_bytes(),
                        queue.namespace.as_str(),
                        queue.queue.as_str()
                    ];
                    dead.extend(stmt.query_row(params, read).optional()?);
                }
            }
            RedriveSelection::All => {
                let mut stmt = self.conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM jobs WHERE namespace = ?1 AND state = 'dead' AND queue = ?2 ORDER BY seq"
                ))?;
                let rows = stmt.query_map(
                    params![queue.namespace.as_str(), queue.queue.as_str()],
                    read,
                )?;
                for row in rows {
                    dead.push(row?);
                }
            }
        }
        let queue_idx = self.hot.queue_entry(queue);
        let mut moved = Vec::with_capacity(dead.len());
        for (seq, id, priority, max_attempts, lease_seq, lease_ms, backoff, ordering_key) in dead {
            let id = blob_id(&id);
            let mut life = JobLifecycle {
                state: JobState::Dead,
                attempt: 0,
                max_attempts,
                run_at: now,
                lease_seq: lease_seq as u64,
                lease_expires_at: None,
            };
            if life.redrive(now).is_err() {
                continue;
            }
            self.conn
                .prepare_cached(
                    "UPDATE jobs SET state = 'ready', attempt = 0, run_at = ?1, updated_at = ?1, \
                     finished_at = NULL, payload = coalesce(?2, payload) WHERE seq = ?3",
                )?
                .execute(params![
                    now.as_millis(),
                    payload.as_ref().map(|p| p.get()),
                    seq
                ])?;
            self.hot.count_finished(queue_idx, JobState::Dead, -1);
            let backoff = self
                .hot
                .intern_backoff(serde_json::from_str(&backoff).unwrap_or_default());
            self.hot.insert(
                id,
                LiveJob {
                    seq,
                    queue: queue_idx,
                    life,
                    priority,
                    lease_ms: lease_ms as u32,
                    backoff,
                    ordering_key: ordering_key.map(Arc::from),
                    // A redriven job is on its own: its step already failed.
                    run: None,
                },
            );
            moved.push(id);
        }
        Ok(Ok(moved))
    }

    fn policy_set(&mut self, queue: &QueueRef, policy: QueuePolicy, now: Timestamp) -> Applied<()> {
        let json = serde_json::to_string(&policy).unwrap_or_default();
        self.conn
            .prepare_cached(
                "INSERT INTO queues (namespace, queue, policy, paused, updated_at) VALUES (?1, ?2, ?3, 0, ?4) \
                 ON CONFLICT (namespace, queue) DO UPDATE SET policy = excluded.policy, updated_at = excluded.updated_at",
            )?
            .execute(params![queue.namespace.as_str(), queue.queue.as_str(), json, now.as_millis()])?;
        let idx = self.hot.queue_entry(queue);
        self.hot.queues[idx].policy = policy.clone();
        self.policies
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(queue.clone(), policy);
        Ok(Ok(()))
    }

    fn pause(&mut self, queue: &QueueRef, paused: bool, now: Timestamp) -> Applied<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO queues (namespace, queue, policy, paused, updated_at) VALUES (?1, ?2, '{}', ?3, ?4) \
                 ON CONFLICT (namespace, queue) DO UPDATE SET paused = excluded.paused, updated_at = excluded.updated_at",
            )?
            .execute(params![queue.namespace.as_str(), queue.queue.as_str(), paused, now.as_millis()])?;
        let idx = self.hot.queue_entry(queue);
        self.hot.set_paused(idx, paused);
        Ok(Ok(()))
    }

    fn stats(&self, queue: &QueueRef) -> QueueStats {
        let Some(idx) = self.hot.queue_idx(queue) else {
            return QueueStats::default();
        };
        let q = &self.hot.queues[idx];
        QueueStats {
            counts: JobState::ALL
                .into_iter()
                .map(|s| (s, q.count(s)))
                .collect::<BTreeMap<_, _>>(),
            oldest_ready_at: q.ready.iter().map(|&(_, run_at, _, _)| run_at).min(),
            paused: q.paused,
            policy: q.policy.clone(),
        }
    }

    fn depths(&self) -> Vec<Depth> {
        let unfinished = [JobState::Scheduled, JobState::Ready, JobState::Leased];
        self.hot
            .queues
            .iter()
            .flat_map(|q| {
                unfinished.into_iter().map(|state| Depth {
                    queue: q.queue.clone(),
                    state,
                    count: q.count(state),
                })
            })
            .collect()
    }

    fn maintenance(&mut self, now: Timestamp) -> Applied<MaintenanceReport> {
        let mut report = MaintenanceReport::default();
        let mut moves = 0;
        while let Some(&(run_at, seq, id)) = self.hot.scheduled.first() {
            if run_at > now || moves == MAX_MAINTENANCE_MOVES {
                break;
            }
            self.hot.update(id, |job| job.life.promote(now));
            self.conn
                .prepare_cached("UPDATE jobs SET state = 'ready', updated_at = ?1 WHERE seq = ?2")?
                .execute(params![now.as_millis(), seq])?;
            report.promoted += 1;
            moves += 1;
        }
        while let Some(&(expires_at, id)) = self.hot.leases.first() {
            if expires_at > now || moves == MAX_MAINTENANCE_MOVES {
                break;
            }
            let expired = self.hot.update(id, |job| {
                job.life
                    .expire(now)
                    .map(|t| (t, job.seq, job.queue, job.life.clone(), job.run.clone()))
            });
            let Some(Some((transition, seq, queue, life, run))) = expired else {
                return Err(index_out_of_step());
            };
            self.record_failure(seq, &life, "lease expired", now)?;
            let queue = self.hot.queues[queue].queue.clone();
            match transition {
                Transition::Dead => {
                    if let Some(run) = run.as_deref().copied() {
                        let acked = Acked {
                            id,
                            queue: queue.queue.clone(),
                            state: life.state,
                            run_at: None,
                            run: Some(run),
                            attempt: life.attempt,
                        };
                        report.dead_steps.push((queue.namespace.clone(), acked));
                    }
                    report.expired_to_dead.push(queue);
                }
                Transition::Ready | Transition::Scheduled => report.expired_to_ready.push(queue),
            }
            moves += 1;
        }
        report.next_due = if moves == MAX_MAINTENANCE_MOVES {
            Some(now)
        } else {
            self.hot.next_due()
        };
        Ok(Ok(report))
    }

    fn prune(&mut self, now: Timestamp) -> Applied<u64> {
        let mut pruned = 0;
        for idx in 0..self.hot.queues.len() {
            let q = &self.hot.queues[idx];
            let (namespace, queue) = (q.queue.namespace.clone(), q.queue.queue.clone());
            let rounds = [
                ("'succeeded', 'cancelled'", q.policy.retention_ms()),
                ("'dead'", q.policy.dead_retention_ms()),
            ];
            for (states, retention_ms) in rounds {
                let cutoff = now.as_millis().saturating_sub(retention_ms as i64);
                let gone: Vec<(i64, String)> = self
                    .conn
                    .prepare_cached(&format!(
                        "DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs WHERE namespace = ?1 AND queue = ?2 \
                         AND finished_at <= ?3 AND state IN ({states}) LIMIT ?4) RETURNING seq, state"
                    ))?
                    .query_map(params![namespace.as_str(), queue.as_str(), cutoff, PRUNE_CHUNK], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })?
                    .collect::<rusqlite::Result<_>>()?;
                for (seq, state) in &gone {
                    self.conn
                        .prepare_cached("DELETE FROM job_errors WHERE job_seq = ?1")?
                        .execute([seq])?;
                    if let Some(state) = JobState::parse(state) {
                        self.hot.count_finished(idx, state, -1);
                    }
                }
                pruned += gone.len() as u64;
            }
        }
        self.conn
            .prepare_cached("DELETE FROM idempotency_keys WHERE expires_at <= ?1")?
            .execute([now.as_millis()])?;
        Ok(Ok(pruned))
    }
}

/// Reads `namespace, queue, state` from three columns starting at `first`.
/// A row that does not parse (only a hand-edited database has one) is skipped
/// with a warning rather than stopping the server from starting.
fn queue_and_state(
    row: &rusqlite::Row<'_>,
    first: usize,
) -> rusqlite::Result<Option<(QueueRef, JobState)>> {
    let (namespace, queue, state): (String, String, String) =
        (row.get(first)?, row.get(first + 1)?, row.get(first + 2)?);
    let parsed = queue_ref(&namespace, &queue).zip(JobState::parse(&state));
    if parsed.is_none() {
        tracing::warn!(%namespace, %queue, %state, "skipping a job row that does not parse");
    }
    Ok(parsed)
}

fn queue_ref(namespace: &str, queue: &str) -> Option<QueueRef> {
    Some(QueueRef {
        namespace: Namespace::new(namespace).ok()?,
        queue: keel_core::QueueName::new(queue).ok()?,
    })
}

/// A fault for "the hot index and the table disagree": a bug. The batch is
/// rolled back and the index rebuilt from disk, which is the truth.
fn index_out_of_step() -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_INTERNAL),
        Some("the hot index is out of step with the jobs table".into()),
    )
}

fn backoff_json(backoff: &Backoff) -> String {
    serde_json::to_string(backoff).unwrap_or_default()
}

/// The run a job's `keel.run` tag names, if any.
fn run_of(tags: &BTreeMap<String, String>) -> Option<Box<RunId>> {
    tags.get(RUN_TAG)
        .and_then(|run| run.parse().ok())
        .map(Box::new)
}
