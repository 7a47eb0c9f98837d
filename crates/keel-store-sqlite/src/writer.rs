//! The writer thread: the one place that changes the database.
//!
//! Every write is a closure over the [`Writer`] ([`write`]), sent on a bounded
//! channel. The writer takes every write waiting (up to
//! [`MAX_COMMANDS_PER_COMMIT`]), applies them in one transaction, commits once
//! (one fsync: group commit) and only then answers each caller. A caller
//! therefore never hears "done" before its change, and every change before
//! it, is on disk. The writes themselves live with their domain (`jobs.rs`,
//! `queues.rs`, `maintenance.rs`, `owner.rs`, `workflows.rs`, `runs.rs`), as
//! `impl Writer` blocks.
//!
//! Faults: if a statement or the commit fails, the transaction is rolled back,
//! the hot index is rebuilt from disk and every write of the batch gets the
//! error (507 when the disk is full). An IO error (fsync included) aborts the
//! process: after one, SQLite cannot promise what is on disk, and Keel never
//! acknowledges what it cannot promise.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use keel_core::{
    Error, ErrorCode, JobId, JobIdGenerator, JobState, Namespace, QueuePolicy, QueueRef,
};
use keel_store::ReadySignal;
use rusqlite::{Connection, ErrorCode as SqliteCode, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use crate::checkpointer::{self, WalRestart};
use crate::fence::LeaseNumbers;
use crate::hot::{Hot, LiveJob};
use crate::rows::{corrupt, job_state};
use crate::syncer::{Pending, Syncer};
use crate::unsynced::{Readiness, Unsynced};

/// How many writes share one transaction at most.
const MAX_COMMANDS_PER_COMMIT: usize = 1024;

pub(crate) type Reply<T> = oneshot::Sender<Result<T, Error>>;

/// Policies readable without a round trip to the writer.
pub(crate) type SharedPolicies = Arc<RwLock<HashMap<QueueRef, QueuePolicy>>>;

/// A write's outcome: a storage fault (outer) or the answer for the caller.
pub(crate) type Applied<T> = rusqlite::Result<Result<T, Error>>;

/// A write, given the writer and whether the batch already failed (then it
/// only answers), returns its answer slot and any fault.
type Write = Box<dyn FnOnce(&mut Writer, bool) -> (Pending, Option<rusqlite::Error>) + Send>;

/// The span of the caller a write answers: under the `otel` feature, the
/// batch's span links to the requests in it. Other builds carry nothing, so
/// the writer's hot path is what it was without traces.
#[cfg(feature = "otel")]
type Caller = tracing::Span;
#[cfg(not(feature = "otel"))]
pub(crate) struct Caller;

/// The current span, when commit spans are exported (a cached flag's check
/// otherwise).
#[cfg(feature = "otel")]
fn caller() -> Caller {
    if tracing::enabled!(tracing::Level::DEBUG) {
        tracing::Span::current()
    } else {
        tracing::Span::none()
    }
}

#[cfg(not(feature = "otel"))]
fn caller() -> Caller {
    Caller
}

pub(crate) enum Command {
    Write(Write, Caller),
    /// A read of the writer's in-memory state (the hot index). It is
    /// answered from the state the open transaction leaves: after its
    /// commit, with its sync; after a rollback, from the state reloaded.
    /// So it never shows what may not survive, and a write that failed
    /// beside it (a full disk) does not fail it.
    Read(Read),
    /// Commit what is open, answer, and stop.
    Shutdown(Reply<()>),
    /// From the syncer: a sync finished; commit what gathered meanwhile.
    SyncDone,
}

/// A write for the writer thread, run inside the open transaction so that it
/// is group-committed and fsynced with the others.
pub(crate) fn write<T: Send + 'static>(
    reply: Reply<T>,
    op: impl FnOnce(&mut Writer) -> Applied<T> + Send + 'static,
) -> Command {
    let write: Write = Box::new(move |writer, skip| {
        if skip {
            finish(reply, Ok(Err(Error::internal("transaction failed"))))
        } else {
            finish(reply, op(writer))
        }
    });
    Command::Write(write, caller())
}

/// A write whose answer shows only jobs whose being leasable is as
/// durable as `Readiness` says, and leaves as soon as that is durable:
/// before its own commit. Only a lease is such a write: losing it in a crash
/// or a rollback hands its jobs out again, under a fencing number the lost
/// lease's token can never match (fence.rs). Every other write answers with
/// its commit's sync.
pub(crate) fn write_releasing<T: Send + 'static>(
    reply: Reply<T>,
    op: impl FnOnce(&mut Writer) -> Applied<(T, Readiness)> + Send + 'static,
) -> Command {
    let write: Write = Box::new(move |writer, skip| {
        if skip {
            return finish(reply, Ok(Err(Error::internal("transaction failed"))));
        }
        match op(writer) {
            Ok(Ok((value, Readiness::Durable))) => {
                let _ = reply.send(Ok(value));
                (Box::new(|_| {}), None)
            }
            Ok(Ok((value, Readiness::Committed))) => {
                // A batch that wrote nothing: the syncer answers it right
                // after the sync of every batch submitted before it.
                let answer = pending(reply, Ok(value));
                writer.syncer.submit(vec![answer], false, writer.commits);
                (Box::new(|_| {}), None)
            }
            Ok(Ok((value, Readiness::Open))) => finish(reply, Ok(Ok(value))),
            Ok(Err(e)) => finish(reply, Ok(Err(e))),
            Err(fault) => finish(reply, Err(fault)),
        }
    });
    Command::Write(write, caller())
}

pub(crate) type Read = Box<dyn FnOnce(&Writer) -> Pending + Send>;

/// A read of the writer's state, answered with the transaction it joins.
pub(crate) fn read<T: Send + 'static>(
    reply: Reply<T>,
    op: impl FnOnce(&Writer) -> T + Send + 'static,
) -> Command {
    Command::Read(Box::new(move |writer| {
        let value = op(writer);
        Box::new(move |_| {
            let _ = reply.send(Ok(value));
        })
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
    /// Reads, run once the transaction is committed or rolled back.
    reads: Vec<Read>,
    started: Instant,
    /// SQLite's count of changed rows at `BEGIN`: unchanged means nothing to sync.
    changes_at_begin: u64,
    /// The first storage fault; the rest of the transaction is refused.
    fault: Option<rusqlite::Error>,
    /// The batch as a trace span (exported under the binary's `otel`
    /// feature; disabled, it costs a check of a cached flag).
    span: tracing::Span,
}

impl OpenTx {
    fn begin(conn: &Connection) -> Self {
        OpenTx {
            span: tracing::debug_span!(
                "store.commit",
                db.system.name = "sqlite",
                commands = tracing::field::Empty,
                otel.status_code = tracing::field::Empty,
            ),
            answers: Vec::new(),
            reads: Vec::new(),
            started: Instant::now(),
            changes_at_begin: conn.total_changes(),
            fault: conn.execute_batch("BEGIN IMMEDIATE").err(),
        }
    }
}

pub(crate) struct Writer {
    pub(crate) conn: Connection,
    pub(crate) hot: Hot,
    pub(crate) ids: JobIdGenerator,
    pub(crate) max_namespace_jobs: u64,
    /// Namespaces' own `max_jobs` quotas, in place of `max_namespace_jobs`.
    pub(crate) job_quotas: HashMap<Namespace, u64>,
    pub(crate) signal: ReadySignal,
    pub(crate) policies: SharedPolicies,
    /// The fencing numbers of this run's leases (fence.rs).
    pub(crate) lease_numbers: LeaseNumbers,
    /// Transactions committed by this run; the syncer tells which are durable.
    commits: u64,
    syncer: Syncer,
    wal_restart: WalRestart,
}

impl Writer {
    pub(crate) fn open(
        conn: Connection,
        syncer: Syncer,
        lease_numbers: LeaseNumbers,
        max_namespace_jobs: u64,
        signal: ReadySignal,
        policies: SharedPolicies,
        wal_restart: WalRestart,
    ) -> rusqlite::Result<Self> {
        let mut writer = Writer {
            conn,
            hot: Hot::default(),
            ids: JobIdGenerator::default(),
            max_namespace_jobs,
            job_quotas: HashMap::new(),
            signal,
            policies,
            lease_numbers,
            commits: 0,
            syncer,
            wal_restart,
        };
        writer.rebuild()?;
        writer.hot.unsynced = Unsynced::opened(writer.hot.max_seq());
        writer.job_quotas = crate::namespaces::job_quotas(&writer.conn)?;
        Ok(writer)
    }

    /// Applies commands until a shutdown, then lets the syncer answer what it holds.
    pub(crate) fn run(self, rx: mpsc::Receiver<Command>) {
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
                shutdown |= matches!(cmd, Command::Shutdown(_));
                if let Command::Read(read) = cmd {
                    open.get_or_insert_with(|| OpenTx::begin(&self.conn))
                        .reads
                        .push(read);
                } else if !matches!(cmd, Command::SyncDone) {
                    let tx = open.get_or_insert_with(|| OpenTx::begin(&self.conn));
                    #[cfg(feature = "otel")]
                    if let Command::Write(_, caller) = &cmd {
                        tx.span.follows_from(caller);
                    }
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
                if self.wal_restart.is_due() {
                    checkpointer::restart(&self.conn, &self.wal_restart);
                }
            }
        }
        if let Some(tx) = open.take() {
            self.commit(tx);
        }
        self.syncer
    }

    /// Commits an open transaction and hands its answers to the syncer, or
    /// rolls it back and answers every command in it with the fault.
    fn commit(&mut self, mut tx: OpenTx) {
        let reads = std::mem::take(&mut tx.reads);
        let fault = tx.fault.or_else(|| self.conn.execute_batch("COMMIT").err());
        tx.span.record("commands", tx.answers.len());
        if fault.is_some() {
            tx.span.record("otel.status_code", "error");
        }
        match fault {
            None => {
                metrics::histogram!("keel_store_commit_seconds")
                    .record(tx.started.elapsed().as_secs_f64());
                metrics::histogram!("keel_store_commit_batch_size").record(tx.answers.len() as f64);
                // Wake leasers before answering, so that a caller who hears
                // "done" can count on the wake-up having happened. A woken
                // leaser's answer waits at least for this commit's sync.
                self.commits += 1;
                self.hot.unsynced.committed(self.commits);
                self.hot.unsynced.synced(self.syncer.durable());
                for (queue, jobs) in self.hot.take_woken() {
                    self.signal.notify(&self.hot.queues[queue].queue, jobs);
                }
                if let Some(due) = self.hot.next_due() {
                    self.signal.deadline(due);
                }
                let wrote = self.conn.total_changes() != tx.changes_at_begin;
                let mut answers = tx.answers;
                answers.extend(reads.into_iter().map(|read| read(self)));
                self.syncer.submit(answers, wrote, self.commits);
            }
            Some(fault) => {
                let error = self.recover(&fault);
                for answer in tx.answers {
                    answer(Some(&error));
                }
                // From the state reloaded, once what is syncing is durable.
                if !reads.is_empty() {
                    let answers = reads.into_iter().map(|read| read(self)).collect();
                    self.syncer.submit(answers, false, self.commits);
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
        match cmd {
            Command::Write(write, _) => write(self, skip),
            Command::Read(read) => (read(self), None),
            Command::Shutdown(reply) => finish(reply, Ok(Ok(()))),
            Command::SyncDone => (Box::new(|_| {}), None),
        }
    }

    /// The highest commit number known durable.
    pub(crate) fn durable_commit(&self) -> u64 {
        self.syncer.durable()
    }

    /// The state of a job that may be finished (only on disk) or unknown.
    pub(crate) fn state_on_disk(
        &self,
        namespace: &Namespace,
        id: JobId,
    ) -> rusqlite::Result<Option<JobState>> {
        let state: Option<String> = self
            .conn
            .prepare_cached("SELECT state FROM jobs WHERE id = ?1 AND namespace = ?2")?
            .query_row(params![id.as_bytes(), namespace.as_str()], |r| r.get(0))
            .optional()?;
        state.map(|s| job_state(&s)).transpose()
    }

    /// The hot job `id` if it is in `namespace`.
    pub(crate) fn live(&self, namespace: &Namespace, id: JobId) -> Option<&LiveJob> {
        self.hot
            .jobs
            .get(&id)
            .map(|job| &**job)
            .filter(|job| &self.hot.queues[job.queue_idx()].queue.namespace == namespace)
    }

    /// Why an action on a job that is not hot fails: it finished, or it never was.
    pub(crate) fn why_not_live(
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

    /// Refuses `adding` jobs that would take `namespace` over its bound.
    pub(crate) fn room(&self, namespace: &Namespace, adding: u64) -> Result<(), Error> {
        let would_hold = self.hot.unfinished(namespace) + adding;
        match self.job_quotas.get(namespace) {
            Some(&quota) if would_hold > quota => Err(keel_core::quota::exceeded(
                namespace.as_str(),
                "max_jobs",
                quota,
                would_hold,
            )),
            Some(_) => Ok(()),
            None if would_hold > self.max_namespace_jobs => Err(Error::namespace_full(
                namespace,
                would_hold,
                self.max_namespace_jobs,
            )),
            None => Ok(()),
        }
    }
}

/// A stored queue's name; one that does not parse (only a hand-edited
/// database has one) is a corrupt row, and the store refuses to open rather
/// than lose its jobs from the index.
pub(crate) fn queue_ref(namespace: &str, queue: &str) -> rusqlite::Result<QueueRef> {
    Ok(QueueRef {
        namespace: Namespace::new(namespace).map_err(|e| corrupt(e.message))?,
        queue: keel_core::QueueName::new(queue).map_err(|e| corrupt(e.message))?,
    })
}

/// A fault for "the hot index and the table disagree": a bug. The batch is
/// rolled back and the index rebuilt from disk, which is the truth.
pub(crate) fn index_out_of_step() -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_INTERNAL),
        Some("the hot index is out of step with the jobs table".into()),
    )
}
