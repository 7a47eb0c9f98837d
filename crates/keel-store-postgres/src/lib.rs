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

mod audit;
mod bound;
mod connections;
mod endpoints;
mod handlers;
mod jobs;
mod keys;
mod maintenance;
mod monitors;
mod namespaces;
mod notifications;
mod notify;
mod owner;
mod projects;
mod publisher;
mod queues;
mod runs;
mod schedules;
mod schema;
mod slos;
mod sources;
mod subscriptions;
#[cfg(feature = "testing")]
pub mod testing;
mod tokens;
mod topics;
mod workflows;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod};
use keel_core::workflow::RunId;
use keel_core::{
    Error, ErrorCode, JobId, JobIdGenerator, Limits, Namespace, QueuePolicy, QueueRef, Timestamp,
};
use keel_store::{MAINTENANCE_MAX_SLEEP_MS, ReadySignal, Store};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use crate::bound::NamespaceCount;

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
    /// Namespaces' own `max_jobs` quotas as last read (`namespaces.rs`).
    job_quotas: Mutex<std::collections::HashMap<Namespace, (Option<u64>, std::time::Instant)>>,
    policies: Mutex<std::collections::HashMap<QueueRef, (QueuePolicy, std::time::Instant)>>,
    publishers: publisher::Publishers,
}

fn db(e: tokio_postgres::Error) -> Error {
    if e.code() == Some(&SqlState::DISK_FULL) {
        return Error::new(
            ErrorCode::StorageFull,
            "the database is out of disk; nothing was written",
        );
    }
    if unreachable(&e) {
        return unavailable(format!("the database is unreachable: {e}"));
    }
    // The server's message says what went wrong ("db error" alone does not);
    // its detail, which can quote row values, is left out.
    match e.as_db_error() {
        Some(d) => Error::internal(format!("database: {} ({})", d.message(), d.code().code())),
        None => Error::internal(format!("database: {e}")),
    }
}

/// A connection that broke or could not be made, or a server that is
/// shutting down or starting (SQLSTATE classes 08 and 57P): the database
/// is away, not the request wrong.
fn unreachable(e: &tokio_postgres::Error) -> bool {
    e.is_closed()
        || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
        || e.code().is_some_and(|c| {
            let code = c.code();
            code.starts_with("08") || code.starts_with("57P")
        })
}

/// 503 `storage_unavailable`, to be tried again in a second.
fn unavailable(message: String) -> Error {
    let mut e = Error::new(
        ErrorCode::StorageUnavailable,
        format!("{message}; try again (a write in flight may or may not have landed)"),
    );
    e.retry_after_ms = Some(1000);
    e
}

/// How long a request waits for a free pooled connection, a new connection
/// may take to open, and a pooled one to answer its check
/// ([`check_if_idle`]). Past any of them the answer is 503
/// `storage_unavailable`: a node cut off from its database, or whose
/// database stopped answering, refuses within seconds instead of holding
/// every request until the database is back (the `pg-partition` chaos
/// scenario).
const POOL_WAIT: Duration = Duration::from_secs(5);
const CONNECT: Duration = Duration::from_secs(3);
const CHECK: Duration = Duration::from_secs(2);
/// A checkout as a whole (it may check several pooled connections that no
/// longer answer, then open one).
const CHECKOUT: Duration = Duration::from_secs(5);

/// A pooled connection last handed out this recently is used unchecked:
/// checking every checkout cost 12 % of `enqueue_single` and 5 % of
/// `process` on PostgreSQL (three runs each, binaries alternating).
const CHECK_AFTER_IDLE: Duration = Duration::from_millis(100);

/// Before a pooled connection idle for [`CHECK_AFTER_IDLE`] is used: an
/// empty query, answered within [`CHECK`], or the connection is dropped.
/// Only a request that takes a connection within that time of the database
/// going silent can hang, until TCP gives up on the connection
/// ([`DEAD_PEER`]) or the database answers again.
async fn check_if_idle(
    client: &mut deadpool_postgres::ClientWrapper,
    metrics: &deadpool_postgres::Metrics,
) -> Result<(), HookError> {
    if metrics.last_used() < CHECK_AFTER_IDLE {
        return Ok(());
    }
    match tokio::time::timeout(CHECK, client.simple_query("")).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(HookError::Backend(e)),
        Err(_) => Err(HookError::Message("no answer to the check".into())),
    }
}

/// A pooled connection, checked, within [`CHECKOUT`]; 503 otherwise.
pub(crate) async fn checkout(pool: &Pool) -> Result<deadpool_postgres::Client, Error> {
    match tokio::time::timeout(CHECKOUT, pool.get()).await {
        Ok(got) => got.map_err(pool_error),
        Err(_) => Err(unavailable(format!(
            "no database connection answered within {CHECKOUT:?}"
        ))),
    }
}

/// After this long without an acknowledgement of what it sent, or idle,
/// the kernel declares a connection's peer gone: a partition that drops
/// packets ends the connections it caught instead of hanging them.
const DEAD_PEER: Duration = Duration::from_secs(10);

/// TCP keepalives and a user timeout on every connection, unless the URL
/// sets its own.
fn notice_dead_peers(config: &mut tokio_postgres::Config) {
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(DEAD_PEER);
    }
    if config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
        config.keepalives_idle(DEAD_PEER);
    }
}

fn pool_error(e: deadpool_postgres::PoolError) -> Error {
    unavailable(format!("no database connection: {e}"))
}

fn uuid(id: JobId) -> Uuid {
    Uuid::from_bytes(*id.as_bytes())
}

fn job_id(id: Uuid) -> JobId {
    JobId::from_bytes(*id.as_bytes())
}

/// Who to wake once a transaction that created jobs commits.
#[derive(Default)]
pub(crate) struct Woken {
    /// Queues that gained ready jobs, with how many.
    ready: BTreeMap<QueueRef, usize>,
    due: Option<Timestamp>,
}

impl PostgresStore {
    /// Connects, migrates (under an advisory lock, so that nodes starting
    /// together do not race) and starts the notifier and listener.
    pub async fn open(url: &str, limits: &Limits) -> Result<Self, Error> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| Error::invalid(format!("bad database URL: {e}")))?;
        notice_dead_peers(&mut config);
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(16)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT))
            .recycle_timeout(Some(CHECK))
            .pre_recycle(Hook::async_fn(|client, metrics| {
                Box::pin(check_if_idle(client, metrics))
            }))
            .build()
            .map_err(|e| Error::internal(format!("database pool: {e}")))?;
        let mut client = checkout(&pool).await?;
        schema::ensure_schema(&client).await?;
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
            job_quotas: Mutex::default(),
            policies: Mutex::default(),
            publishers: publisher::Publishers::default(),
        })
    }

    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Client, Error> {
        checkout(&self.pool).await
    }

    pub(crate) fn next_id(&self, now: Timestamp) -> JobId {
        self.ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .next(now)
    }

    pub(crate) fn wake(&self, woken: Woken, now: Timestamp) {
        for (queue, jobs) in &woken.ready {
            self.ready(queue, *jobs);
        }
        self.deadline(woken.due, now);
    }

    /// Tells maintenance here of a deadline, and the leader wherever it runs
    /// if the deadline is nearer than the leader's next pass: a lease that
    /// expires in 30 s needs no NOTIFY.
    pub(crate) fn deadline(&self, at: Option<Timestamp>, now: Timestamp) {
        if let Some(at) = at {
            self.signal.deadline(at);
            if at.millis_since(now) < MAINTENANCE_MAX_SLEEP_MS {
                self.notifier.deadline(at);
            }
        }
    }

    /// Wakes the readers waiting for `run` to finish, here at once and on
    /// every other node through NOTIFY.
    pub(crate) fn appended(&self, namespace: &Namespace, topic: &keel_core::TopicName) {
        self.signal.appended(namespace, topic);
        self.notifier.appended(namespace.clone(), topic.clone());
    }

    /// Wakes the schedule timer here, and on the leader wherever it runs if
    /// the schedule falls due before the leader would look anyway.
    pub(crate) fn schedule_due(&self, at: Timestamp, now: Timestamp) {
        self.signal.schedule_due(at);
        if at.millis_since(now) < MAINTENANCE_MAX_SLEEP_MS {
            self.notifier.schedule_due(at);
        }
    }

    pub(crate) fn run_finished(&self, run: RunId) {
        self.signal.run_finished(run);
        self.notifier.run_finished(run);
    }

    /// Wakes leasers for `jobs` new ready jobs, here at once and on every
    /// other node through NOTIFY.
    pub(crate) fn ready(&self, queue: &QueueRef, jobs: usize) {
        self.signal.notify(queue, jobs);
        self.notifier.notify(queue.clone(), jobs);
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn ready_signal(&self) -> ReadySignal {
        self.signal.clone()
    }

    async fn close(&self) {
        self.publishers.stop();
        self.notifier.stop();
        self.leader.lock().await.take();
        self.pool.close();
    }
}
