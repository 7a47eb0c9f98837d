//! Moves WAL frames into the database file, off the writer's path, and keeps
//! the WAL short.
//!
//! SQLite's automatic checkpoint runs inside a commit on the writing
//! connection: every 1000 WAL pages, one commit also copies the WAL into the
//! database and fsyncs it, and every request waiting on that commit waits for
//! the copy. Here the writer has `wal_autocheckpoint=0` and this thread runs
//! `PRAGMA wal_checkpoint(PASSIVE)` on a connection of its own. A passive
//! checkpoint never blocks the writer or the readers. With
//! `synchronous=NORMAL` it syncs the WAL before copying and the database
//! after, so no acknowledged change depends on it.
//!
//! Copying is not enough to keep the WAL short. SQLite writes the WAL from its
//! beginning again only when a write begins with every frame already copied,
//! and under continuous writes the writer begins its next transaction right
//! after each commit, before a checkpoint can catch up: the WAL then grows
//! without end (12 GB beside a 208 MB database after 4 minutes of the soak).
//! So once a passive checkpoint leaves a WAL longer than
//! [`RESTART_AFTER_BYTES`], this thread hands the next step to the writer
//! ([`WalRestart`]) and pauses: the writer, between two of its transactions,
//! copies the few frames written since and has its next write start the WAL
//! over ([`restart`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;

/// How often the WAL is checkpointed when it has grown.
const EVERY: Duration = Duration::from_millis(500);

/// How often, once the WAL is a quarter of [`RESTART_AFTER_BYTES`] long. A
/// checkpoint with nothing to copy costs microseconds.
const EVERY_WHILE_LONG: Duration = Duration::from_millis(10);

/// The WAL's length past which it is started over. It is also the length
/// SQLite cuts the file back to once started over (`journal_size_limit`), so
/// the file stays near this size: written over in place, it needs no new
/// blocks, and an `fdatasync` of it no metadata.
pub(crate) const RESTART_AFTER_BYTES: i64 = 64 * 1024 * 1024;

/// How long the writer waits, at most, for readers of the frames a restart
/// would overwrite. Reads are short; a long one makes the restart wait for
/// the next hand-off instead.
const READERS_WAIT: Duration = Duration::from_millis(50);

/// Whether the writer should start the WAL over after its next commit; the
/// checkpoint thread pauses while it is due.
#[derive(Clone, Default)]
pub(crate) struct WalRestart(Arc<AtomicBool>);

impl WalRestart {
    pub(crate) fn is_due(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

pub(crate) struct Checkpointer {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl Checkpointer {
    pub(crate) fn start(conn: Connection, restart: WalRestart) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("keel-sqlite-ckpt".into())
            .spawn(move || run(&conn, &restart, &stopped))?;
        Ok(Checkpointer { stop, thread })
    }

    pub(crate) fn finish(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

fn run(conn: &Connection, restart: &WalRestart, stopped: &mpsc::Receiver<()>) {
    let page_size: i64 = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .unwrap_or(4096);
    let mut pause = EVERY;
    loop {
        match stopped.recv_timeout(pause) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        pause = EVERY;
        if restart.is_due() {
            continue;
        }
        let started = Instant::now();
        match checkpoint(conn, "PASSIVE") {
            Ok((_, frames, copied)) => {
                if copied > 0 {
                    metrics::histogram!("keel_store_checkpoint_seconds")
                        .record(started.elapsed().as_secs_f64());
                }
                let length = frames * page_size;
                if length >= RESTART_AFTER_BYTES {
                    restart.0.store(true, Ordering::Release);
                } else if length >= RESTART_AFTER_BYTES / 4 {
                    // Growing fast: keep up rather than pause.
                    pause = EVERY_WHILE_LONG;
                }
            }
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; retrying"),
        }
    }
}

/// Run by the writer after a commit, with no transaction open, when a
/// restart [is due](WalRestart::is_due): copies what the last passive
/// checkpoint left and has the next write start the WAL over
/// (`wal_checkpoint(RESTART)`). Whatever the outcome, the checkpoint thread
/// then resumes; a restart that readers held off is tried at its next
/// hand-off.
pub(crate) fn restart(conn: &Connection, restart: &WalRestart) {
    let started = Instant::now();
    let restarted = conn.busy_timeout(READERS_WAIT).and_then(|()| {
        let restarted = checkpoint(conn, "RESTART");
        conn.busy_timeout(crate::BUSY_TIMEOUT)?;
        restarted
    });
    restart.0.store(false, Ordering::Release);
    match restarted {
        Ok((0, _, _)) => metrics::histogram!("keel_store_wal_restart_seconds")
            .record(started.elapsed().as_secs_f64()),
        Ok(_) => tracing::debug!("WAL restart held off by a reader; trying again later"),
        Err(e) => tracing::warn!(error = %e, "WAL restart failed; trying again later"),
    }
}

/// `PRAGMA wal_checkpoint(mode)`: whether it was held off (1) or not (0),
/// the frames in the WAL, and the frames copied into the database.
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<(i64, i64, i64)> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })
}
