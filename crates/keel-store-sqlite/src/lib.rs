//! The embedded store: SQLite in WAL mode, the WAL fsynced before any answer, no other
//! process needed.
//!
//! Writes go to one writer thread that group-commits ([`writer`]); the hot
//! index of unfinished jobs lives in memory beside it ([`hot`]). Reads of whole
//! jobs run on a small pool of reader connections, which WAL lets proceed while
//! the writer commits.

mod audit;
mod checkpointer;
mod connections;
mod endpoints;
mod enqueue;
mod fence;
mod flow;
mod handlers;
mod hot;
mod jobs;
mod lease;
mod maintenance;
mod monitors;
mod namespaces;
mod notifications;
mod owner;
mod projects;
mod queues;
mod reload;
mod rows;
mod runs;
mod schedules;
mod schema;
mod slos;
mod sources;
mod subscriptions;
mod syncer;
mod tokens;
mod topics;
mod unsynced;
mod workflows;
mod writer;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use async_trait::async_trait;
use keel_core::{Error, ErrorCode, Limits};
use keel_store::{ReadySignal, Store};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot};

use crate::checkpointer::{Checkpointer, WalRestart};
use crate::syncer::Syncer;
use crate::writer::{Command, Reply, SharedPolicies, Writer};

const DB_FILE: &str = "keel.db";
const READERS: usize = 2;
/// Commands waiting for the writer; past this, a call is refused with 429
/// `overloaded` at once (load shedding). Deep enough for every connection's
/// request at a normal load; shallow enough that an admitted request waits
/// a bounded time (the writer applies tens of thousands a second).
const WRITER_QUEUE: usize = 8 * 1024;

pub struct SqliteStore {
    commands: mpsc::Sender<Command>,
    readers: Arc<Vec<Mutex<Connection>>>,
    next_reader: AtomicUsize,
    policies: SharedPolicies,
    signal: ReadySignal,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    checkpointer: Mutex<Option<Checkpointer>>,
    rate_states: namespaces::RateStates,
    /// The data directory's lock, held until `close`: this process is the
    /// store's only writer, which its in-memory index assumes.
    lock: Mutex<Option<std::fs::File>>,
}

/// How long a connection waits for a lock another one holds.
pub(crate) const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

fn storage_error(e: rusqlite::Error) -> Error {
    Error::internal(format!("storage error: {e}"))
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // NORMAL: commits do not fsync; checkpoints do. Durability comes from the
    // syncer, which fsyncs the WAL before any answer goes out (see syncer.rs).
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    // 8 MB: larger caches made every commit slower (SQLite walks the cache's
    // hash table at commit; 64 MB cost 22 % of drain throughput, measured).
    conn.pragma_update(None, "cache_size", -8 * 1024)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // Checkpoints run on their own thread, never inside a commit, and a WAL
    // started over is cut back to its usual length (checkpointer.rs).
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    conn.pragma_update(
        None,
        "journal_size_limit",
        checkpointer::RESTART_AFTER_BYTES,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(64);
    stable_plans(conn)
}

/// One plan per statement, whatever is bound to it. Without this SQLite
/// re-prepares a cached statement whenever a bound value might change its
/// plan (seen: every workflow lookup and job read was parsed and planned
/// again, 5-10 % of the server's time under load).
/// Locks `dir` for this process (an advisory lock on `dir/keel.lock`, let
/// go when the process ends, kill -9 included): a second process on the same
/// directory would keep an index of its own and hand out the same jobs.
fn lock_dir(dir: &Path) -> Result<std::fs::File, Error> {
    let path = dir.join("keel.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::internal(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::new(
            ErrorCode::Conflict,
            format!(
                "the data directory {} is in use by another keel process (a server?); \
                 stop it, or go through its API",
                dir.display()
            ),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::internal(format!(
            "cannot lock {}: {e}",
            path.display()
        ))),
    }
}

fn stable_plans(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map(drop)
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `dir`, migrates it, and rebuilds
    /// the hot index from what is on disk.
    pub fn open(dir: &Path, limits: &Limits) -> Result<Self, Error> {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::internal(format!("cannot create data dir {}: {e}", dir.display()))
        })?;
        let lock = lock_dir(dir)?;
        let path = dir.join(DB_FILE);
        let mut conn = Connection::open(&path).map_err(storage_error)?;
        configure(&conn).map_err(storage_error)?;
        schema::migrate(&mut conn).map_err(storage_error)?;
        let lease_numbers = fence::LeaseNumbers::begin(&conn).map_err(storage_error)?;
        let checkpoints = Connection::open(&path).map_err(storage_error)?;
        checkpoints
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(storage_error)?;
        checkpoints
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(storage_error)?;
        let wal_restart = WalRestart::default();
        let checkpointer = Checkpointer::start(checkpoints, wal_restart.clone())
            .map_err(|e| Error::internal(format!("cannot start the checkpoint thread: {e}")))?;
        let readers = (0..READERS)
            .map(|_| {
                let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
                let reader = Connection::open_with_flags(&path, flags)?;
                reader.busy_timeout(BUSY_TIMEOUT)?;
                reader.set_prepared_statement_cache_capacity(32);
                stable_plans(&reader)?;
                Ok(Mutex::new(reader))
            })
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(storage_error)?;
        let signal = ReadySignal::default();
        let policies: SharedPolicies = Arc::new(RwLock::new(HashMap::new()));
        let (commands, rx) = mpsc::channel(WRITER_QUEUE);
        // Our own descriptor on the WAL, for fdatasync. Creating it empty is
        // what SQLite would do at the first write.
        let wal_path = dir.join(format!("{DB_FILE}-wal"));
        let wal = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&wal_path)
            .map_err(|e| Error::internal(format!("cannot open {}: {e}", wal_path.display())))?;
        // The new lease epoch, and whatever an earlier run committed without
        // syncing, are durable before anything is handed out (fence.rs).
        wal.sync_data()
            .map_err(|e| Error::internal(format!("cannot sync {}: {e}", wal_path.display())))?;
        let wake_writer = commands.downgrade();
        let syncer = Syncer::start(wal, move || {
            if let Some(writer) = wake_writer.upgrade() {
                // A full queue means the writer is busy and will commit anyway.
                let _ = writer.try_send(Command::SyncDone);
            }
        })
        .map_err(|e| Error::internal(format!("cannot start the sync thread: {e}")))?;
        let writer = Writer::open(
            conn,
            syncer,
            lease_numbers,
            limits.max_namespace_jobs,
            signal.clone(),
            policies.clone(),
            wal_restart,
        )
        .map_err(storage_error)?;
        let handle = std::thread::Builder::new()
            .name("keel-sqlite-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| Error::internal(format!("cannot start the writer thread: {e}")))?;
        Ok(SqliteStore {
            commands,
            readers: Arc::new(readers),
            next_reader: AtomicUsize::new(0),
            policies,
            signal,
            writer: Mutex::new(Some(handle)),
            checkpointer: Mutex::new(Some(checkpointer)),
            rate_states: namespaces::RateStates::default(),
            lock: Mutex::new(Some(lock)),
        })
    }

    /// Sends a command to the writer and waits for its committed answer;
    /// refused at once when the writer's queue is full.
    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, Error> {
        let (reply, answer) = oneshot::channel();
        match self.commands.try_send(make(reply)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => return Err(overloaded()),
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(shutting_down()),
        }
        answer.await.unwrap_or_else(|_| Err(shutting_down()))
    }

    /// Runs `op` on the writer thread inside its open transaction, and waits
    /// for the answer, which leaves only after the commit's fsync.
    async fn write<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut Writer) -> writer::Applied<T> + Send + 'static,
    ) -> Result<T, Error> {
        self.call(|reply| writer::write(reply, op)).await
    }

    /// Reads the writer's in-memory state (the hot index), answered with
    /// the transaction it joins (`writer::Command::Read`).
    async fn read_hot<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Writer) -> T + Send + 'static,
    ) -> Result<T, Error> {
        self.call(|reply| writer::read(reply, op)).await
    }

    /// Caps the database at its current size plus `room` pages (`None`:
    /// no cap), so that a test can run out of disk: SQLite then refuses the
    /// writes that need more pages, as on a full disk.
    #[cfg(feature = "testing")]
    pub async fn limit_pages(&self, room: Option<u32>) -> Result<(), Error> {
        self.write(move |w| {
            let pages: i64 = w.conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            let cap = room.map_or(i64::from(u32::MAX - 1), |room| pages + i64::from(room));
            w.conn.pragma_update(None, "max_page_count", cap)?;
            Ok(Ok(()))
        })
        .await
    }

    /// Runs a read on one of the reader connections, off the async threads.
    async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> rusqlite::Result<Result<T, Error>> + Send + 'static,
    ) -> Result<T, Error> {
        let readers = self.readers.clone();
        let n = self.next_reader.fetch_add(1, Ordering::Relaxed) % readers.len();
        tokio::task::spawn_blocking(move || {
            let conn = readers[n].lock().unwrap_or_else(PoisonError::into_inner);
            query(&conn).map_err(storage_error)?
        })
        .await
        .map_err(|e| Error::internal(format!("reader task failed: {e}")))?
    }
}

fn shutting_down() -> Error {
    Error::new(ErrorCode::ShuttingDown, "the store is closed")
}

fn overloaded() -> Error {
    let mut e = Error::new(
        ErrorCode::Overloaded,
        format!("the store has {WRITER_QUEUE} commands waiting, its most; try again"),
    );
    e.retry_after_ms = Some(1000);
    e
}

#[async_trait]
impl Store for SqliteStore {
    fn sole_writer(&self) -> bool {
        true
    }

    fn ready_signal(&self) -> ReadySignal {
        self.signal.clone()
    }

    async fn close(&self) {
        // Waits for room: a shutdown is never shed.
        let (reply, answer) = oneshot::channel();
        if self.commands.send(Command::Shutdown(reply)).await.is_ok() {
            let _ = answer.await;
        }
        let handle = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let checkpointer = self
            .checkpointer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let lock = self
            .lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(handle) = handle {
                let _ = handle.join();
            }
            if let Some(checkpointer) = checkpointer {
                checkpointer.finish();
            }
            drop(lock);
        })
        .await;
    }
}
