//! The PostgreSQL store: many stateless Keel nodes on one database.
//!
//! Every operation is one transaction with `synchronous_commit` as the server
//! has it (on by default), so a 2xx means committed. What must hold across
//! nodes is enforced by the database, not by in-process maps:
//! - leases are taken with `FOR UPDATE SKIP LOCKED`;
//! - per-key order is the `NOT EXISTS` of an older unfinished job of the key,
//!   plus a unique index on leased jobs per key;
//! - idempotency keys are a primary key claimed with `ON CONFLICT`.
//!
//! Transitions of one job (ack, heartbeat, cancel, expiry, redrive) lock its
//! row and let `keel_core` decide, as the embedded store does.
//!
//! Wake-ups cross nodes through `LISTEN/NOTIFY`, sent by one notifier task
//! after commits, never inside an enqueue transaction ([`notify`]).

mod notify;
mod runs;
mod schema;
#[doc(hidden)]
pub mod testing;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use keel_core::workflow::{RunId, RunState};
use keel_core::{
    AttemptError, Backoff, Error, ErrorCode, Job, JobId, JobIdGenerator, JobLifecycle, JobState,
    LeaseToken, Limits, Namespace, NewJob, QueueName, QueuePolicy, QueueRef, Timestamp, Transition,
};
use keel_store::{
    Ack, AckOutcome, Acked, Depth, Enqueued, IDEMPOTENCY_WINDOW_MS, JobFilter, JobPage,
    LeaseRequest, LeasedJob, MAINTENANCE_MAX_SLEEP_MS, MaintenanceReport, NewRun, QueueStats,
    ReadySignal, RedriveSelection, RunFilter, RunJob, RunPage, Store, StoredRun, WorkflowVersion,
};
use serde_json::value::RawValue;
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

/// How long a namespace's count of unfinished jobs is trusted.
const COUNT_REFRESH: std::time::Duration = std::time::Duration::from_secs(1);
/// How long a queue policy read from the database is trusted; a change made
/// on another node takes effect within this.
const POLICY_REFRESH: std::time::Duration = std::time::Duration::from_secs(1);

/// How many jobs one maintenance pass moves at most; the next pass follows.
const MAX_MAINTENANCE_MOVES: i64 = 10_000;
const PRUNE_CHUNK: i64 = 10_000;

pub struct PostgresStore {
    pool: Pool,
    config: tokio_postgres::Config,
    /// The connection that asks for, and once won holds, the maintenance
    /// leader lock; and whether it holds it.
    leader: tokio::sync::Mutex<Option<(tokio_postgres::Client, bool)>>,
    ids: Mutex<JobIdGenerator>,
    max_namespace_jobs: u64,
    signal: ReadySignal,
    notifier: notify::Notifier,
    namespace_counts: Arc<Mutex<std::collections::HashMap<Namespace, NamespaceCount>>>,
    policies: Mutex<std::collections::HashMap<QueueRef, (QueuePolicy, std::time::Instant)>>,
}

fn db(e: tokio_postgres::Error) -> Error {
    if e.code() == Some(&SqlState::DISK_FULL) {
        return Error::new(
            ErrorCode::StorageFull,
            "the database is out of disk; nothing was written",
        );
    }
    // The server's message says what went wrong ("db error" alone does not);
    // its detail, which can quote row values, is left out.
    match e.as_db_error() {
        Some(d) => Error::internal(format!("database: {} ({})", d.message(), d.code().code())),
        None => Error::internal(format!("database: {e}")),
    }
}

fn pool_error(e: deadpool_postgres::PoolError) -> Error {
    Error::new(
        ErrorCode::ShuttingDown,
        format!("no database connection: {e}"),
    )
}

fn uuid(id: JobId) -> Uuid {
    Uuid::from_bytes(*id.as_bytes())
}

fn job_id(id: Uuid) -> JobId {
    JobId::from_bytes(*id.as_bytes())
}

fn raw(text: String) -> Box<RawValue> {
    RawValue::from_string(text).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

fn tags_json(tags: &BTreeMap<String, String>) -> Option<String> {
    (!tags.is_empty()).then(|| serde_json::to_string(tags).unwrap_or_default())
}

fn tags_from(text: Option<String>) -> BTreeMap<String, String> {
    text.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

fn state_of(text: &str) -> JobState {
    JobState::parse(text).unwrap_or(JobState::Dead)
}

/// A job row locked for a transition.
/// A namespace's unfinished jobs, as last counted.
struct NamespaceCount {
    count: u64,
    at: std::time::Instant,
    /// A recount is on its way.
    refreshing: bool,
}

impl NamespaceCount {
    fn new(count: u64) -> Self {
        NamespaceCount {
            count,
            at: std::time::Instant::now(),
            refreshing: false,
        }
    }
}

async fn count_unfinished(
    client: &impl GenericClient,
    namespace: &Namespace,
) -> Result<u64, Error> {
    Ok(client
        .query_one(
            "SELECT count(*) FROM keel_jobs WHERE namespace = $1 AND finished_at IS NULL",
            &[&namespace.as_str()],
        )
        .await
        .map_err(db)?
        .get::<_, i64>(0) as u64)
}

/// Who to wake once a transaction that created jobs commits.
#[derive(Default)]
struct Woken {
    /// Queues that gained ready jobs, with how many.
    ready: BTreeMap<QueueRef, usize>,
    due: Option<Timestamp>,
}

/// New jobs as the columns of one insert.
#[derive(Default)]
struct NewRows<'a> {
    id: Vec<Uuid>,
    namespace: Vec<&'a str>,
    queue: Vec<&'a str>,
    state: Vec<&'static str>,
    payload: Vec<&'a str>,
    priority: Vec<i16>,
    max_attempts: Vec<i32>,
    run_at: Vec<i64>,
    lease_ms: Vec<i64>,
    backoff: Vec<String>,
    idempotency_key: Vec<Option<&'a str>>,
    ordering_key: Vec<Option<&'a str>>,
    tags: Vec<Option<String>>,
}

impl<'a> NewRows<'a> {
    /// Adds a job; returns the state it starts in.
    fn push(
        &mut self,
        queue: &'a QueueRef,
        id: JobId,
        job: &'a NewJob,
        now: Timestamp,
    ) -> JobState {
        let state = JobLifecycle::new(job, now).state;
        self.id.push(uuid(id));
        self.namespace.push(queue.namespace.as_str());
        self.queue.push(queue.queue.as_str());
        self.state.push(state.as_str());
        self.payload.push(job.payload.get());
        self.priority.push(job.priority);
        self.max_attempts.push(job.max_attempts as i32);
        self.run_at.push(job.run_at.as_millis());
        self.lease_ms.push(job.lease_ms as i64);
        self.backoff
            .push(serde_json::to_string(&job.backoff).unwrap_or_default());
        self.idempotency_key.push(job.idempotency_key.as_deref());
        self.ordering_key.push(job.ordering_key.as_deref());
        self.tags.push(tags_json(&job.tags));
        state
    }

    /// The parameters $1–$14 of insert_jobs.sql (and of the statements that
    /// embed it), with `now` as $13.
    fn params<'b>(&'b self, now: &'b i64) -> Vec<&'b (dyn ToSql + Sync)> {
        vec![
            &self.id,
            &self.namespace,
            &self.queue,
            &self.state,
            &self.payload,
            &self.priority,
            &self.max_attempts,
            &self.run_at,
            &self.lease_ms,
            &self.backoff,
            &self.idempotency_key,
            &self.ordering_key,
            now,
            &self.tags,
        ]
    }
}

/// The rows of the jobs a journal write starts, what to signal once they
/// commit, and how many new jobs each namespace gets.
struct RunRows<'a> {
    rows: NewRows<'a>,
    woken: Woken,
    fresh: Vec<(&'a Namespace, u64)>,
}

impl<'a> RunRows<'a> {
    fn new(jobs: &'a [RunJob], now: Timestamp) -> Self {
        let mut woken = Woken::default();
        let mut rows = NewRows::default();
        let mut fresh: Vec<(&Namespace, u64)> = Vec::new();
        for RunJob { queue, id, job } in jobs {
            match rows.push(queue, *id, job, now) {
                JobState::Ready => *woken.ready.entry(queue.clone()).or_default() += 1,
                _ => {
                    let due = woken.due.map_or(job.run_at, |d| d.min(job.run_at));
                    woken.due = Some(due);
                }
            }
            match fresh.iter_mut().find(|(ns, _)| *ns == &queue.namespace) {
                Some((_, n)) => *n += 1,
                None => fresh.push((&queue.namespace, 1)),
            }
        }
        RunRows { rows, woken, fresh }
    }
}

struct Locked {
    life: JobLifecycle,
    lease_ms: u64,
    backoff: Backoff,
    queue: String,
    /// The run whose step this job is: the run hears when the job ends.
    run: Option<RunId>,
}

impl Locked {
    /// From the columns `state, attempt, max_attempts, run_at, lease_seq,
    /// lease_expires_at, lease_ms, backoff, queue, run`, starting at `first`.
    fn from_row(row: &tokio_postgres::Row, first: usize) -> Self {
        let at = |i: usize| first + i;
        Locked {
            life: JobLifecycle {
                state: state_of(row.get(at(0))),
                attempt: row.get::<_, i32>(at(1)) as u32,
                max_attempts: row.get::<_, i32>(at(2)) as u32,
                run_at: Timestamp::from_millis(row.get(at(3))),
                lease_seq: row.get::<_, i64>(at(4)) as u64,
                lease_expires_at: row.get::<_, Option<i64>>(at(5)).map(Timestamp::from_millis),
            },
            lease_ms: row.get::<_, i64>(at(6)) as u64,
            backoff: serde_json::from_str(row.get(at(7))).unwrap_or_default(),
            queue: row.get(at(8)),
            run: row
                .get::<_, Option<&str>>(at(9))
                .and_then(|r| r.parse().ok()),
        }
    }
}

impl PostgresStore {
    /// Connects, migrates (under an advisory lock, so that nodes starting
    /// together do not race) and starts the notifier and listener.
    pub async fn open(url: &str, limits: &Limits) -> Result<Self, Error> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| Error::invalid(format!("bad database URL: {e}")))?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(16)
            .build()
            .map_err(|e| Error::internal(format!("database pool: {e}")))?;
        let mut client = pool.get().await.map_err(pool_error)?;
        schema::migrate(&mut client).await.map_err(db)?;
        let schema: String = client
            .query_one("SELECT current_schema()", &[])
            .await
            .map_err(db)?
            .get(0);
        drop(client);
        let signal = ReadySignal::default();
        let config_for_leader = config.clone();
        let notifier = notify::Notifier::start(
            pool.clone(),
            config,
            format!("keel_ready.{schema}"),
            signal.clone(),
        );
        Ok(PostgresStore {
            pool,
            config: config_for_leader,
            leader: tokio::sync::Mutex::new(None),
            ids: Mutex::new(JobIdGenerator::default()),
            max_namespace_jobs: limits.max_namespace_jobs,
            signal,
            notifier,
            namespace_counts: Arc::default(),
            policies: Mutex::default(),
        })
    }

    /// Whether a namespace may be close enough to its bound to need an exact
    /// count inside the enqueue transaction. Counting on every enqueue would
    /// cost as much as the queue is deep, so the count is trusted while far
    /// from the bound (under half of it) and refreshed in the background at
    /// most once a second, off the enqueue's path; only a namespace never
    /// counted yet is counted inline.
    async fn near_namespace_bound(
        &self,
        tx: &impl GenericClient,
        namespace: &Namespace,
        adding: u64,
    ) -> Result<bool, Error> {
        let known = self
            .namespace_counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(namespace)
            .map(|c| (c.count, c.at.elapsed() >= COUNT_REFRESH && !c.refreshing));
        let count = match known {
            Some((count, stale)) => {
                if stale {
                    self.refresh_count(namespace);
                }
                count
            }
            None => {
                let count = count_unfinished(tx, namespace).await?;
                self.namespace_counts
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(namespace.clone(), NamespaceCount::new(count));
                count
            }
        };
        Ok(count + adding > self.max_namespace_jobs / 2)
    }

    /// Recounts a namespace's unfinished jobs on a connection of its own.
    fn refresh_count(&self, namespace: &Namespace) {
        let counts = self.namespace_counts.clone();
        if let Some(c) = counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(namespace)
        {
            c.refreshing = true;
        }
        let (pool, namespace) = (self.pool.clone(), namespace.clone());
        tokio::spawn(async move {
            let counted = match pool.get().await {
                Ok(client) => count_unfinished(&client, &namespace).await.ok(),
                Err(_) => None,
            };
            let mut counts = counts.lock().unwrap_or_else(PoisonError::into_inner);
            match counted {
                Some(count) => {
                    counts.insert(namespace, NamespaceCount::new(count));
                }
                // Counted again at the next enqueue after a second.
                None => {
                    if let Some(c) = counts.get_mut(&namespace) {
                        c.refreshing = false;
                    }
                }
            }
        });
    }

    /// A queue's policy, cached for a second: enqueues read it on every call.
    async fn cached_policy(&self, queue: &QueueRef) -> Option<QueuePolicy> {
        let policies = self.policies.lock().unwrap_or_else(PoisonError::into_inner);
        policies
            .get(queue)
            .filter(|(_, at)| at.elapsed() < POLICY_REFRESH)
            .map(|(p, _)| p.clone())
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, Error> {
        self.pool.get().await.map_err(pool_error)
    }

    fn next_id(&self, now: Timestamp) -> JobId {
        self.ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .next(now)
    }

    /// Writes new jobs in one statement (the callers have settled their
    /// idempotency keys). A single job takes a statement of its own, which
    /// PostgreSQL plans and runs faster than an `unnest` of one.
    async fn insert_jobs(
        tx: &impl GenericClient,
        jobs: &NewRows<'_>,
        now: Timestamp,
    ) -> Result<(), Error> {
        if jobs.id.is_empty() {
            return Ok(());
        }
        let now = now.as_millis();
        if jobs.id.len() == 1 {
            let insert = tx
                .prepare_cached(include_str!("../queries/insert_job.sql"))
                .await
                .map_err(db)?;
            let params: [&(dyn ToSql + Sync); 14] = [
                &jobs.id[0],
                &jobs.namespace[0],
                &jobs.queue[0],
                &jobs.state[0],
                &jobs.payload[0],
                &jobs.priority[0],
                &jobs.max_attempts[0],
                &jobs.run_at[0],
                &now,
                &jobs.lease_ms[0],
                &jobs.backoff[0],
                &jobs.idempotency_key[0],
                &jobs.ordering_key[0],
                &jobs.tags[0],
            ];
            tx.execute(&insert, &params).await.map_err(db)?;
            return Ok(());
        }
        let insert = tx
            .prepare_cached(include_str!("../queries/insert_jobs.sql"))
            .await
            .map_err(db)?;
        tx.execute(&insert, &jobs.params(&now)).await.map_err(db)?;
        Ok(())
    }

    /// Refuses (the caller's transaction then rolls back) when `fresh` new
    /// jobs took `namespace` over its bound.
    async fn check_bound(
        &self,
        tx: &impl GenericClient,
        namespace: &Namespace,
        fresh: u64,
    ) -> Result<(), Error> {
        if fresh == 0 || !self.near_namespace_bound(tx, namespace, fresh).await? {
            return Ok(());
        }
        let row = tx
            .query_one(
                "SELECT count(*) FROM keel_jobs WHERE namespace = $1 AND finished_at IS NULL",
                &[&namespace.as_str()],
            )
            .await
            .map_err(db)?;
        let unfinished = row.get::<_, i64>(0) as u64;
        if unfinished > self.max_namespace_jobs {
            return Err(Error::new(
                ErrorCode::NamespaceFull,
                format!(
                    "namespace {namespace} would hold {unfinished} unfinished jobs; the limit is {}",
                    self.max_namespace_jobs
                ),
            ));
        }
        Ok(())
    }

    /// Creates the jobs of a run's journal write inside its transaction;
    /// returns what to signal once it commits.
    async fn insert_run_jobs(
        &self,
        tx: &impl GenericClient,
        jobs: RunRows<'_>,
        now: Timestamp,
    ) -> Result<Woken, Error> {
        let RunRows { rows, woken, fresh } = jobs;
        Self::insert_jobs(tx, &rows, now).await?;
        for (namespace, n) in fresh {
            self.check_bound(tx, namespace, n).await?;
        }
        Ok(woken)
    }

    /// Whether a namespace that `jobs` go to is near its bound (by the
    /// estimate), where only a transaction can count exactly and roll back.
    async fn near_a_bound(
        &self,
        client: &impl GenericClient,
        jobs: &RunRows<'_>,
    ) -> Result<bool, Error> {
        for (namespace, n) in &jobs.fresh {
            if self.near_namespace_bound(client, namespace, *n).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// A new run without an idempotency key and the jobs of its first steps
    /// in one statement, unless a namespace is near its bound (`false`: take
    /// the transaction).
    async fn run_create_in_one(
        &self,
        client: &impl GenericClient,
        namespace: &Namespace,
        run: &NewRun,
        jobs: &RunRows<'_>,
        now: Timestamp,
    ) -> Result<bool, Error> {
        if run.idempotency_key.is_some() || self.near_a_bound(client, jobs).await? {
            return Ok(false);
        }
        let stmt = client
            .prepare_cached(include_str!("../queries/run_insert_with_jobs.sql"))
            .await
            .map_err(db)?;
        let (now_ms, id, ns, version, status, state) = (
            now.as_millis(),
            uuid(run.id),
            namespace.as_str(),
            run.version as i32,
            run.state.status.as_str(),
            runs::state_json(&run.state),
        );
        let mut params = jobs.rows.params(&now_ms);
        params.extend([
            &id as &(dyn ToSql + Sync),
            &ns,
            &run.workflow,
            &version,
            &status,
            &run.input,
            &state,
        ]);
        client.query_one(&stmt, &params).await.map_err(db)?;
        Ok(true)
    }

    /// A run's journal and the jobs it starts in one statement, when no
    /// namespace they go to is near its bound (near it, only a transaction
    /// can count exactly and still roll back). `None`: take the transaction.
    async fn run_update_in_one(
        &self,
        client: &impl GenericClient,
        (namespace, id, rev): (&Namespace, RunId, u64),
        state: &RunState,
        jobs: &RunRows<'_>,
        now: Timestamp,
    ) -> Result<Option<u64>, Error> {
        if self.near_a_bound(client, jobs).await? {
            return Ok(None);
        }
        let stmt = client
            .prepare_cached(include_str!("../queries/run_update_with_jobs.sql"))
            .await
            .map_err(db)?;
        let (status, state, now_ms, run, ns, rev_at) = (
            state.status.as_str(),
            runs::state_json(state),
            now.as_millis(),
            uuid(id),
            namespace.as_str(),
            rev as i64,
        );
        let mut params = jobs.rows.params(&now_ms);
        params.extend([&status as &(dyn ToSql + Sync), &state, &run, &ns, &rev_at]);
        match client.query_opt(&stmt, &params).await.map_err(db)? {
            Some(row) => Ok(Some(row.get::<_, i64>(0) as u64)),
            None => Err(runs::cas_refused(client, namespace, id, rev).await),
        }
    }

    fn wake(&self, woken: Woken, now: Timestamp) {
        for (queue, jobs) in &woken.ready {
            self.ready(queue, *jobs);
        }
        self.deadline(woken.due, now);
    }

    /// Tells maintenance here of a deadline, and the leader wherever it runs
    /// if the deadline is nearer than the leader's next pass: a lease that
    /// expires in 30 s needs no NOTIFY.
    fn deadline(&self, at: Option<Timestamp>, now: Timestamp) {
        if let Some(at) = at {
            self.signal.deadline(at);
            if at.millis_since(now) < MAINTENANCE_MAX_SLEEP_MS {
                self.notifier.deadline(at);
            }
        }
    }

    /// Wakes leasers for `jobs` new ready jobs, here at once and on every
    /// other node through NOTIFY.
    fn ready(&self, queue: &QueueRef, jobs: usize) {
        self.signal.notify(queue, jobs);
        self.notifier.notify(queue.clone(), jobs);
    }

    async fn lock_job(
        tx: &impl GenericClient,
        namespace: &Namespace,
        id: JobId,
    ) -> Result<Option<Locked>, Error> {
        let stmt = tx
            .prepare_cached(include_str!("../queries/job_for_update.sql"))
            .await
            .map_err(db)?;
        let Some(row) = tx
            .query_opt(&stmt, &[&uuid(id), &namespace.as_str()])
            .await
            .map_err(db)?
        else {
            return Ok(None);
        };
        Ok(Some(Locked::from_row(&row, 0)))
    }

    async fn write_life(
        tx: &impl GenericClient,
        id: JobId,
        life: &JobLifecycle,
        now: Timestamp,
        result: Option<&str>,
    ) -> Result<(), Error> {
        let stmt = tx
            .prepare_cached(include_str!("../queries/apply_transition.sql"))
            .await
            .map_err(db)?;
        let finished_at = life.state.is_final().then_some(now.as_millis());
        let params: [&(dyn ToSql + Sync); 9] = [
            &uuid(id),
            &life.state.as_str(),
            &(life.attempt as i32),
            &life.run_at.as_millis(),
            &(life.lease_seq as i64),
            &life.lease_expires_at.map(Timestamp::as_millis),
            &now.as_millis(),
            &finished_at,
            &result,
        ];
        tx.execute(&stmt, &params).await.map_err(db)?;
        Ok(())
    }

    async fn record_error(
        tx: &impl GenericClient,
        id: JobId,
        attempt: u32,
        message: &str,
        now: Timestamp,
    ) -> Result<(), Error> {
        let stmt = tx
            .prepare_cached(include_str!("../queries/insert_error.sql"))
            .await
            .map_err(db)?;
        tx.execute(
            &stmt,
            &[&uuid(id), &(attempt as i32), &message, &now.as_millis()],
        )
        .await
        .map_err(db)?;
        Ok(())
    }

    /// Why an action on a job that is not (or no longer) in the expected state
    /// fails: a missing row is `job_not_found`.
    fn missing(id: JobId) -> Error {
        Error::job_not_found(id)
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn jobs_enqueue(
        &self,
        queue: &QueueRef,
        jobs: Vec<NewJob>,
        now: Timestamp,
    ) -> Result<Vec<Enqueued>, Error> {
        let namespace = queue.namespace.as_str();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let claim = tx
            .prepare_cached(include_str!("../queries/claim_idempotency_key.sql"))
            .await
            .map_err(db)?;
        let mut out: Vec<Enqueued> = Vec::with_capacity(jobs.len());
        let mut rows = NewRows::default();
        let mut first_due: Option<Timestamp> = None;
        for job in &jobs {
            let id = self.next_id(now);
            if let Some(key) = &job.idempotency_key {
                let expires = now.plus_ms(IDEMPOTENCY_WINDOW_MS).as_millis();
                let claimed = tx
                    .query_opt(
                        &claim,
                        &[&namespace, key, &uuid(id), &expires, &now.as_millis()],
                    )
                    .await
                    .map_err(db)?;
                if claimed.is_none() {
                    // An unexpired claim exists (perhaps from this very batch).
                    let row = tx
                        .query_one(
                            "SELECT i.job_id, j.state FROM keel_idempotency i LEFT JOIN keel_jobs j ON j.id = i.job_id \
                             WHERE i.namespace = $1 AND i.key = $2",
                            &[&namespace, key],
                        )
                        .await
                        .map_err(db)?;
                    let earlier: Uuid = row.get(0);
                    let state: Option<String> = row.get(1);
                    let state = match state {
                        Some(s) => state_of(&s),
                        None => out
                            .iter()
                            .find(|e| uuid(e.id) == earlier)
                            .map_or(JobState::Ready, |e| e.state),
                    };
                    out.push(Enqueued {
                        id: job_id(earlier),
                        state,
                        deduplicated: true,
                    });
                    continue;
                }
            }
            let state = rows.push(queue, id, job, now);
            if state == JobState::Scheduled {
                first_due =
                    Some(first_due.map_or(job.run_at, |due: Timestamp| due.min(job.run_at)));
            }
            out.push(Enqueued {
                id,
                state,
                deduplicated: false,
            });
        }
        Self::insert_jobs(&tx, &rows, now).await?;
        self.check_bound(&tx, &queue.namespace, rows.id.len() as u64)
            .await?;
        tx.commit().await.map_err(db)?;
        self.deadline(first_due, now);
        let ready = out
            .iter()
            .filter(|e| e.state == JobState::Ready && !e.deduplicated)
            .count();
        if ready > 0 {
            self.ready(queue, ready);
        }
        Ok(out)
    }

    async fn jobs_lease(
        &self,
        req: &LeaseRequest,
        now: Timestamp,
    ) -> Result<Vec<LeasedJob>, Error> {
        let (namespace, queue) = (req.queue.namespace.as_str(), req.queue.queue.as_str());
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let settings = tx
            .query_opt(
                "SELECT paused, policy::text FROM keel_queues WHERE namespace = $1 AND queue = $2",
                &[&namespace, &queue],
            )
            .await
            .map_err(db)?;
        let mut room = i64::from(req.max_jobs);
        if let Some(row) = settings {
            if row.get::<_, bool>(0) {
                return Ok(Vec::new());
            }
            let policy: QueuePolicy = serde_json::from_str(row.get(1)).unwrap_or_default();
            if let Some(max) = policy.max_concurrency {
                // Serialize leasers of this queue so that the bound holds across nodes.
                tx.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                    &[&format!("{namespace}/{queue}")],
                )
                .await
                .map_err(db)?;
                let leased: i64 = tx
                    .query_one("SELECT count(*) FROM keel_jobs WHERE namespace = $1 AND queue = $2 AND state = 'leased'", &[&namespace, &queue])
                    .await
                    .map_err(db)?
                    .get(0);
                room = room.min(i64::from(max) - leased).max(0);
            }
        }
        if room == 0 {
            return Ok(Vec::new());
        }
        let stmt = tx
            .prepare_cached(include_str!("../queries/lease.sql"))
            .await
            .map_err(db)?;
        let lease_ms = req.lease_ms.map(|ms| ms as i64);
        let rows = tx
            .query(
                &stmt,
                &[
                    &namespace,
                    &queue,
                    &room,
                    &now.as_millis(),
                    &lease_ms,
                    &req.worker_id,
                ],
            )
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        self.deadline(
            rows.iter()
                .map(|row| Timestamp::from_millis(row.get(5)))
                .min(),
            now,
        );
        let mut leased: Vec<(i64, LeasedJob)> = rows
            .into_iter()
            .map(|row| {
                let id = job_id(row.get(0));
                (
                    row.get::<_, i64>(11),
                    LeasedJob {
                        id,
                        queue: queue.to_owned(),
                        payload: raw(row.get(1)),
                        attempt: row.get::<_, i32>(2) as u32,
                        max_attempts: row.get::<_, i32>(3) as u32,
                        lease_token: LeaseToken {
                            job: id,
                            lease_seq: row.get::<_, i64>(4) as u64,
                        },
                        lease_expires_at: Timestamp::from_millis(row.get(5)),
                        priority: row.get(6),
                        tags: tags_from(row.get(7)),
                        ordering_key: row.get(8),
                        created_at: Timestamp::from_millis(row.get(9)),
                        run_at: Timestamp::from_millis(row.get(10)),
                    },
                )
            })
            .collect();
        leased.sort_by(|(a_seq, a), (b_seq, b)| {
            b.priority
                .cmp(&a.priority)
                .then(a.run_at.cmp(&b.run_at))
                .then(a_seq.cmp(b_seq))
        });
        Ok(leased.into_iter().map(|(_, job)| job).collect())
    }

    async fn jobs_ack(
        &self,
        namespace: &Namespace,
        acks: Vec<Ack>,
        now: Timestamp,
    ) -> Result<Vec<Result<Acked, Error>>, Error> {
        if acks.is_empty() {
            return Ok(Vec::new());
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        // Three statements for the whole batch: lock, decide in keel-core, write.
        let ids: Vec<Uuid> = acks.iter().map(|a| uuid(a.token.job)).collect();
        let lock = tx
            .prepare_cached(include_str!("../queries/lock_jobs.sql"))
            .await
            .map_err(db)?;
        let mut jobs: std::collections::HashMap<JobId, Locked> = tx
            .query(&lock, &[&ids])
            .await
            .map_err(db)?
            .into_iter()
            .filter(|row| row.get::<_, &str>(11) == namespace.as_str())
            .map(|row| (job_id(row.get(0)), Locked::from_row(&row, 1)))
            .collect();
        let mut out = Vec::with_capacity(acks.len());
        let mut results: std::collections::HashMap<JobId, String> =
            std::collections::HashMap::new();
        let mut changed: Vec<JobId> = Vec::new();
        let mut errors: (Vec<Uuid>, Vec<i32>, Vec<String>, Vec<i64>) = Default::default();
        let mut woken: Vec<QueueName> = Vec::new();
        for ack in acks {
            let id = ack.token.job;
            let Some(locked) = jobs.get_mut(&id) else {
                out.push(Err(Self::missing(id)));
                continue;
            };
            let queue = QueueName::new(&locked.queue)?;
            let run = locked.run;
            let lease_seq = ack.token.lease_seq;
            let acked = match ack.outcome {
                AckOutcome::Complete { result } => locked.life.complete(lease_seq, now).map(|()| {
                    if let Some(result) = result {
                        results.insert(id, result.get().to_owned());
                    }
                    Acked {
                        id,
                        queue,
                        state: JobState::Succeeded,
                        run_at: None,
                        run,
                        attempt: locked.life.attempt,
                    }
                }),
                AckOutcome::Fail { message, retry } => locked
                    .life
                    .fail(lease_seq, now, retry, &locked.backoff, fastrand::f64())
                    .map(|transition| {
                        errors.0.push(uuid(id));
                        errors.1.push(locked.life.attempt as i32);
                        errors.2.push(message);
                        errors.3.push(now.as_millis());
                        if transition == Transition::Ready {
                            woken.push(queue.clone());
                        }
                        let run_at = (transition != Transition::Dead).then_some(locked.life.run_at);
                        Acked {
                            id,
                            queue,
                            state: locked.life.state,
                            run_at,
                            run,
                            attempt: locked.life.attempt,
                        }
                    }),
            };
            if acked.is_ok() && !changed.contains(&id) {
                changed.push(id);
            }
            out.push(acked);
        }
        if !changed.is_empty() {
            let mut cols: (
                Vec<Uuid>,
                Vec<&str>,
                Vec<i32>,
                Vec<i64>,
                Vec<i64>,
                Vec<Option<i64>>,
                Vec<Option<i64>>,
                Vec<Option<String>>,
            ) = Default::default();
            for id in &changed {
                let life = &jobs[id].life;
                cols.0.push(uuid(*id));
                cols.1.push(life.state.as_str());
                cols.2.push(life.attempt as i32);
                cols.3.push(life.run_at.as_millis());
                cols.4.push(life.lease_seq as i64);
                cols.5.push(life.lease_expires_at.map(Timestamp::as_millis));
                cols.6
                    .push(life.state.is_final().then_some(now.as_millis()));
                cols.7.push(results.remove(id));
            }
            let apply = tx
                .prepare_cached(include_str!("../queries/apply_transitions.sql"))
                .await
                .map_err(db)?;
            let now_ms = now.as_millis();
            let params: [&(dyn ToSql + Sync); 9] = [
                &cols.0, &cols.1, &cols.2, &cols.3, &cols.4, &cols.5, &cols.6, &cols.7, &now_ms,
            ];
            tx.execute(&apply, &params).await.map_err(db)?;
        }
        if !errors.0.is_empty() {
            let insert = tx
                .prepare_cached(include_str!("../queries/insert_errors.sql"))
                .await
                .map_err(db)?;
            tx.execute(&insert, &[&errors.0, &errors.1, &errors.2, &errors.3])
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        let retries = out
            .iter()
            .flatten()
            .filter(|a| a.state == JobState::Scheduled);
        self.deadline(retries.filter_map(|a| a.run_at).min(), now);
        let mut ready: BTreeMap<QueueName, usize> = BTreeMap::new();
        for queue in woken {
            *ready.entry(queue).or_default() += 1;
        }
        for (queue, jobs) in ready {
            let queue = QueueRef {
                namespace: namespace.clone(),
                queue,
            };
            self.ready(&queue, jobs);
        }
        Ok(out)
    }

    async fn job_heartbeat(
        &self,
        namespace: &Namespace,
        token: LeaseToken,
        lease_ms: Option<u64>,
        now: Timestamp,
    ) -> Result<Timestamp, Error> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let Some(mut locked) = Self::lock_job(&tx, namespace, token.job).await? else {
            return Err(Self::missing(token.job));
        };
        let until =
            locked
                .life
                .heartbeat(token.lease_seq, now, lease_ms.unwrap_or(locked.lease_ms))?;
        Self::write_life(&tx, token.job, &locked.life, now, None).await?;
        tx.commit().await.map_err(db)?;
        self.deadline(Some(until), now);
        Ok(until)
    }

    async fn job_cancel(
        &self,
        namespace: &Namespace,
        id: JobId,
        now: Timestamp,
    ) -> Result<Acked, Error> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let Some(mut locked) = Self::lock_job(&tx, namespace, id).await? else {
            return Err(Self::missing(id));
        };
        locked.life.cancel()?;
        Self::write_life(&tx, id, &locked.life, now, None).await?;
        tx.commit().await.map_err(db)?;
        Ok(Acked {
            id,
            queue: QueueName::new(&locked.queue)?,
            state: JobState::Cancelled,
            run_at: None,
            run: locked.run,
            attempt: locked.life.attempt,
        })
    }

    async fn job_get(&self, namespace: &Namespace, id: JobId) -> Result<Job, Error> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT {} FROM keel_jobs WHERE id = $1 AND namespace = $2",
            include_str!("../queries/job_columns.sql").trim()
        );
        let stmt = client.prepare_cached(&sql).await.map_err(db)?;
        let row = client
            .query_opt(&stmt, &[&uuid(id), &namespace.as_str()])
            .await
            .map_err(db)?;
        let Some(row) = row else {
            return Err(Error::job_not_found(id));
        };
        let (_, mut job) = job_from_row(&row);
        attach_errors(&client, &mut job).await?;
        Ok(job)
    }

    async fn jobs_list(&self, namespace: &Namespace, filter: &JobFilter) -> Result<JobPage, Error> {
        let client = self.client().await?;
        let mut sql = format!(
            "SELECT {} FROM keel_jobs WHERE namespace = $1",
            include_str!("../queries/job_columns.sql").trim()
        );
        let mut args: Vec<Box<dyn ToSql + Sync + Send>> = vec![Box::new(namespace.to_string())];
        if let Some(queue) = &filter.queue {
            args.push(Box::new(queue.to_string()));
            sql.push_str(&format!(" AND queue = ${}", args.len()));
        }
        if let Some(state) = filter.state {
            // A literal so that `state = 'dead'` can use its partial index.
            sql.push_str(&format!(" AND state = '{}'", state.as_str()));
        }
        if let Some((key, value)) = &filter.tag {
            let mut tag = serde_json::Map::new();
            tag.insert(key.clone(), serde_json::Value::String(value.clone()));
            args.push(Box::new(serde_json::Value::Object(tag).to_string()));
            sql.push_str(&format!(" AND tags @> ${}::text::jsonb", args.len()));
        }
        if let Some(cursor) = &filter.cursor {
            let before: i64 = cursor
                .parse()
                .map_err(|_| Error::invalid("cursor is not one this server gave out"))?;
            args.push(Box::new(before));
            sql.push_str(&format!(" AND seq < ${}", args.len()));
        }
        args.push(Box::new(i64::from(filter.limit) + 1));
        sql.push_str(&format!(" ORDER BY seq DESC LIMIT ${}", args.len()));
        let params: Vec<&(dyn ToSql + Sync)> = args
            .iter()
            .map(|a| a.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let rows = client.query(&sql, &params).await.map_err(db)?;
        let mut jobs: Vec<(i64, Job)> = rows.iter().map(job_from_row).collect();
        let more = jobs.len() > filter.limit as usize;
        jobs.truncate(filter.limit as usize);
        let next_cursor = more
            .then(|| jobs.last().map(|(seq, _)| seq.to_string()))
            .flatten();
        let mut page = Vec::with_capacity(jobs.len());
        for (_, mut job) in jobs {
            attach_errors(&client, &mut job).await?;
            page.push(job);
        }
        Ok(JobPage {
            jobs: page,
            next_cursor,
        })
    }

    async fn jobs_redrive(
        &self,
        queue: &QueueRef,
        selection: RedriveSelection,
        payload: Option<Box<RawValue>>,
        now: Timestamp,
    ) -> Result<Vec<JobId>, Error> {
        let (namespace, queue_name) = (queue.namespace.as_str(), queue.queue.as_str());
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let candidates: Vec<JobId> = match selection {
            RedriveSelection::Ids(ids) => ids,
            RedriveSelection::All => tx
                .query(
                    "SELECT id FROM keel_jobs WHERE namespace = $1 AND state = 'dead' AND queue = $2 ORDER BY seq",
                    &[&namespace, &queue_name],
                )
                .await
                .map_err(db)?
                .into_iter()
                .map(|row| job_id(row.get(0)))
                .collect(),
        };
        let mut moved = Vec::new();
        for id in candidates {
            let Some(mut locked) = Self::lock_job(&tx, &queue.namespace, id).await? else {
                continue;
            };
            if locked.queue != queue_name || locked.life.redrive(now).is_err() {
                continue;
            }
            Self::write_life(&tx, id, &locked.life, now, None).await?;
            if let Some(payload) = &payload {
                tx.execute(
                    "UPDATE keel_jobs SET payload = $2 WHERE id = $1",
                    &[&uuid(id), &payload.get()],
                )
                .await
                .map_err(db)?;
            }
            moved.push(id);
        }
        tx.commit().await.map_err(db)?;
        if !moved.is_empty() {
            self.ready(queue, moved.len());
        }
        Ok(moved)
    }

    async fn queue_policy(&self, queue: &QueueRef) -> Result<QueuePolicy, Error> {
        if let Some(policy) = self.cached_policy(queue).await {
            return Ok(policy);
        }
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT policy::text FROM keel_queues WHERE namespace = $1 AND queue = $2",
                &[&queue.namespace.as_str(), &queue.queue.as_str()],
            )
            .await
            .map_err(db)?;
        let policy: QueuePolicy = row
            .and_then(|r| serde_json::from_str(r.get(0)).ok())
            .unwrap_or_default();
        self.policies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(queue.clone(), (policy.clone(), std::time::Instant::now()));
        Ok(policy)
    }

    async fn queue_policy_set(
        &self,
        queue: &QueueRef,
        policy: QueuePolicy,
        now: Timestamp,
    ) -> Result<(), Error> {
        let client = self.client().await?;
        let json = serde_json::to_string(&policy).unwrap_or_default();
        let stmt = client
            .prepare_cached(include_str!("../queries/set_policy.sql"))
            .await
            .map_err(db)?;
        client
            .execute(
                &stmt,
                &[
                    &queue.namespace.as_str(),
                    &queue.queue.as_str(),
                    &json,
                    &now.as_millis(),
                ],
            )
            .await
            .map_err(db)?;
        self.policies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(queue);
        Ok(())
    }

    async fn queue_pause(
        &self,
        queue: &QueueRef,
        paused: bool,
        now: Timestamp,
    ) -> Result<(), Error> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(include_str!("../queries/set_paused.sql"))
            .await
            .map_err(db)?;
        client
            .execute(
                &stmt,
                &[
                    &queue.namespace.as_str(),
                    &queue.queue.as_str(),
                    &paused,
                    &now.as_millis(),
                ],
            )
            .await
            .map_err(db)?;
        if !paused {
            // As many as may wait: the count is not known here.
            self.ready(queue, keel_store::MAX_WOKEN);
        }
        Ok(())
    }

    async fn queue_stats(&self, queue: &QueueRef) -> Result<QueueStats, Error> {
        let client = self.client().await?;
        let (namespace, name) = (queue.namespace.as_str(), queue.queue.as_str());
        let stmt = client
            .prepare_cached(include_str!("../queries/queue_stats.sql"))
            .await
            .map_err(db)?;
        let mut counts: BTreeMap<JobState, u64> =
            JobState::ALL.into_iter().map(|s| (s, 0)).collect();
        for row in client
            .query(&stmt, &[&namespace, &name])
            .await
            .map_err(db)?
        {
            counts.insert(state_of(row.get(0)), row.get::<_, i64>(1) as u64);
        }
        let oldest: Option<i64> = client
            .query_one("SELECT min(run_at) FROM keel_jobs WHERE namespace = $1 AND queue = $2 AND state = 'ready'", &[&namespace, &name])
            .await
            .map_err(db)?
            .get(0);
        let settings = client
            .query_opt(
                "SELECT paused, policy::text FROM keel_queues WHERE namespace = $1 AND queue = $2",
                &[&namespace, &name],
            )
            .await
            .map_err(db)?;
        let (paused, policy) = settings.map_or((false, QueuePolicy::default()), |row| {
            (
                row.get(0),
                serde_json::from_str(row.get(1)).unwrap_or_default(),
            )
        });
        Ok(QueueStats {
            counts,
            oldest_ready_at: oldest.map(Timestamp::from_millis),
            paused,
            policy,
        })
    }

    async fn queue_depths(&self) -> Result<Vec<Depth>, Error> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(include_str!("../queries/depths.sql"))
            .await
            .map_err(db)?;
        let rows = client.query(&stmt, &[]).await.map_err(db)?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                Some(Depth {
                    queue: QueueRef {
                        namespace: Namespace::new(row.get(0)).ok()?,
                        queue: QueueName::new(row.get(1)).ok()?,
                    },
                    state: JobState::parse(row.get(2))?,
                    count: row.get::<_, i64>(3) as u64,
                })
            })
            .collect())
    }

    /// The leader holds a session advisory lock on a connection of its own.
    /// When the node dies, its connection and the lock go with it, and the
    /// next node to ask becomes the leader. Asking costs a query; leading
    /// costs none.
    async fn maintenance_leader(&self) -> Result<bool, Error> {
        let mut leader = self.leader.lock().await;
        if leader.as_ref().is_none_or(|(client, _)| client.is_closed()) {
            let (client, connection) = self.config.connect(NoTls).await.map_err(db)?;
            tokio::spawn(connection);
            *leader = Some((client, false));
        }
        let Some((client, holds)) = leader.as_mut() else {
            return Ok(false);
        };
        if !*holds {
            // One query per call while another node leads; none once leading.
            *holds = client
                .query_one("SELECT pg_try_advisory_lock(hashtextextended('keel_maintenance.' || current_schema(), 0))", &[])
                .await
                .map_err(db)?
                .get(0);
        }
        Ok(*holds)
    }

    async fn maintenance_run(&self, now: Timestamp) -> Result<MaintenanceReport, Error> {
        let mut report = MaintenanceReport::default();
        let mut client = self.client().await?;
        // The idle case costs one query: nothing is due, say when something will be.
        let next: Option<i64> = client
            .query_one(include_str!("../queries/next_due.sql"), &[])
            .await
            .map_err(db)?
            .get(0);
        if next.is_none_or(|due| due > now.as_millis()) {
            report.next_due = next.map(Timestamp::from_millis);
            return Ok(report);
        }
        let tx = client.transaction().await.map_err(db)?;
        let promote = tx
            .prepare_cached(include_str!("../queries/promote_due.sql"))
            .await
            .map_err(db)?;
        let mut woken: Vec<QueueRef> = Vec::new();
        let promoted = tx
            .query(&promote, &[&now.as_millis(), &MAX_MAINTENANCE_MOVES])
            .await
            .map_err(db)?;
        report.promoted = promoted.len() as u64;
        for row in &promoted {
            if let (Ok(namespace), Ok(queue)) =
                (Namespace::new(row.get(0)), QueueName::new(row.get(1)))
            {
                woken.push(QueueRef { namespace, queue });
            }
        }
        let expired_stmt = tx
            .prepare_cached(include_str!("../queries/expired_leases.sql"))
            .await
            .map_err(db)?;
        let expired = tx
            .query(&expired_stmt, &[&now.as_millis(), &MAX_MAINTENANCE_MOVES])
            .await
            .map_err(db)?;
        for row in &expired {
            let id = job_id(row.get(0));
            let namespace = Namespace::new(row.get(1))?;
            let Some(mut locked) = Self::lock_job(&tx, &namespace, id).await? else {
                continue;
            };
            let Some(transition) = locked.life.expire(now) else {
                continue;
            };
            Self::write_life(&tx, id, &locked.life, now, None).await?;
            Self::record_error(&tx, id, locked.life.attempt, "lease expired", now).await?;
            let queue = QueueRef {
                namespace,
                queue: QueueName::new(&locked.queue)?,
            };
            match transition {
                Transition::Dead => {
                    if locked.run.is_some() {
                        let acked = Acked {
                            id,
                            queue: queue.queue.clone(),
                            state: locked.life.state,
                            run_at: None,
                            run: locked.run,
                            attempt: locked.life.attempt,
                        };
                        report.dead_steps.push((queue.namespace.clone(), acked));
                    }
                    report.expired_to_dead.push(queue);
                }
                Transition::Ready | Transition::Scheduled => {
                    woken.push(queue.clone());
                    report.expired_to_ready.push(queue);
                }
            }
        }
        let next: Option<i64> = tx
            .query_one(include_str!("../queries/next_due.sql"), &[])
            .await
            .map_err(db)?
            .get(0);
        tx.commit().await.map_err(db)?;
        let full = promoted.len() as i64 == MAX_MAINTENANCE_MOVES
            || expired.len() as i64 == MAX_MAINTENANCE_MOVES;
        report.next_due = if full {
            Some(now)
        } else {
            next.map(Timestamp::from_millis)
        };
        let mut ready: BTreeMap<QueueRef, usize> = BTreeMap::new();
        for queue in woken {
            *ready.entry(queue).or_default() += 1;
        }
        for (queue, jobs) in &ready {
            self.ready(queue, *jobs);
        }
        Ok(report)
    }

    async fn jobs_prune(&self, now: Timestamp) -> Result<u64, Error> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(include_str!("../queries/prune.sql"))
            .await
            .map_err(db)?;
        let defaults = QueuePolicy::default();
        let mut pruned = 0;
        loop {
            let row = client
                .query_one(
                    &stmt,
                    &[
                        &now.as_millis(),
                        &(defaults.retention_ms() as i64),
                        &(defaults.dead_retention_ms() as i64),
                        &PRUNE_CHUNK,
                    ],
                )
                .await
                .map_err(db)?;
            let n = row.get::<_, i64>(0);
            pruned += n as u64;
            if n < PRUNE_CHUNK {
                break;
            }
        }
        client
            .execute(
                "DELETE FROM keel_idempotency WHERE expires_at <= $1",
                &[&now.as_millis()],
            )
            .await
            .map_err(db)?;
        Ok(pruned)
    }

    async fn workflow_put(
        &self,
        namespace: &Namespace,
        name: &str,
        definition: &str,
        now: Timestamp,
    ) -> Result<(u32, bool), Error> {
        let mut client = self.client().await?;
        runs::workflow_put(&mut client, namespace, name, definition, now).await
    }

    async fn workflow_get(
        &self,
        namespace: &Namespace,
        name: &str,
        version: Option<u32>,
    ) -> Result<WorkflowVersion, Error> {
        let client = self.client().await?;
        let mut versions = runs::workflow_versions(&client, namespace, name, version).await?;
        versions.pop().ok_or_else(|| Error::internal("no version"))
    }

    async fn workflow_versions(
        &self,
        namespace: &Namespace,
        name: &str,
    ) -> Result<Vec<WorkflowVersion>, Error> {
        let client = self.client().await?;
        runs::workflow_versions(&client, namespace, name, None).await
    }

    async fn run_create(
        &self,
        namespace: &Namespace,
        run: NewRun,
        jobs: Vec<RunJob>,
        now: Timestamp,
    ) -> Result<(StoredRun, bool), Error> {
        let mut client = self.client().await?;
        let rows = RunRows::new(&jobs, now);
        if self
            .run_create_in_one(&client, namespace, &run, &rows, now)
            .await?
        {
            self.wake(rows.woken, now);
            return Ok((run.stored(namespace, now), false));
        }
        let tx = client.transaction().await.map_err(db)?;
        let (run, found) = runs::run_create(&tx, namespace, run, now).await?;
        let woken = if found {
            Woken::default()
        } else {
            self.insert_run_jobs(&tx, rows, now).await?
        };
        tx.commit().await.map_err(db)?;
        self.wake(woken, now);
        Ok((run, found))
    }

    async fn run_get(&self, namespace: &Namespace, id: RunId) -> Result<StoredRun, Error> {
        let client = self.client().await?;
        runs::run_get(&client, namespace, id).await
    }

    async fn run_update(
        &self,
        namespace: &Namespace,
        id: RunId,
        rev: u64,
        state: &RunState,
        jobs: Vec<RunJob>,
        now: Timestamp,
    ) -> Result<u64, Error> {
        let mut client = self.client().await?;
        if jobs.is_empty() {
            return runs::run_update(&client, namespace, id, rev, state, now).await;
        }
        let rows = RunRows::new(&jobs, now);
        let run = (namespace, id, rev);
        if let Some(rev) = self
            .run_update_in_one(&client, run, state, &rows, now)
            .await?
        {
            self.wake(rows.woken, now);
            return Ok(rev);
        }
        let tx = client.transaction().await.map_err(db)?;
        let rev = runs::run_update(&tx, namespace, id, rev, state, now).await?;
        let woken = self.insert_run_jobs(&tx, rows, now).await?;
        tx.commit().await.map_err(db)?;
        self.wake(woken, now);
        Ok(rev)
    }

    async fn runs_list(&self, namespace: &Namespace, filter: &RunFilter) -> Result<RunPage, Error> {
        let client = self.client().await?;
        runs::runs_list(&client, namespace, filter).await
    }

    async fn runs_prune(&self, finished_before: Timestamp, limit: u32) -> Result<u64, Error> {
        let client = self.client().await?;
        runs::runs_prune(&client, finished_before, limit).await
    }

    async fn runs_active(&self, cursor: Option<String>, limit: u32) -> Result<RunPage, Error> {
        let client = self.client().await?;
        runs::runs_active(&client, cursor, limit).await
    }

    fn ready_signal(&self) -> ReadySignal {
        self.signal.clone()
    }

    async fn close(&self) {
        self.notifier.stop();
        self.leader.lock().await.take();
        self.pool.close();
    }
}

fn job_from_row(row: &tokio_postgres::Row) -> (i64, Job) {
    (
        row.get(0),
        Job {
            id: job_id(row.get(1)),
            queue: row.get(2),
            state: state_of(row.get(3)),
            payload: raw(row.get(4)),
            priority: row.get(5),
            attempt: row.get::<_, i32>(6) as u32,
            max_attempts: row.get::<_, i32>(7) as u32,
            run_at: Timestamp::from_millis(row.get(8)),
            created_at: Timestamp::from_millis(row.get(9)),
            updated_at: Timestamp::from_millis(row.get(10)),
            lease_expires_at: row.get::<_, Option<i64>>(11).map(Timestamp::from_millis),
            lease_ms: row.get::<_, i64>(12) as u64,
            backoff: serde_json::from_str(row.get(13)).unwrap_or_default(),
            idempotency_key: row.get(14),
            ordering_key: row.get(15),
            tags: tags_from(row.get(16)),
            result: row.get::<_, Option<String>>(17).map(raw),
            errors: Vec::new(),
        },
    )
}

async fn attach_errors(client: &impl GenericClient, job: &mut Job) -> Result<(), Error> {
    let stmt = client
        .prepare_cached(include_str!("../queries/job_errors.sql"))
        .await
        .map_err(db)?;
    job.errors = client
        .query(&stmt, &[&uuid(job.id)])
        .await
        .map_err(db)?
        .into_iter()
        .map(|row| AttemptError {
            attempt: row.get::<_, i32>(0) as u32,
            message: row.get(1),
            at: Timestamp::from_millis(row.get(2)),
        })
        .collect();
    Ok(())
}
