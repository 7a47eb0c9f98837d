//! Moves WAL frames into the database file, off the writer's path.
//!
//! SQLite's automatic checkpoint runs inside a commit on the writing
//! connection: every 1000 WAL pages, one commit also copies the WAL into the
//! database and fsyncs it, and every request waiting on that commit waits for
//! the copy. Here the writer has `wal_autocheckpoint=0` and this thread runs
//! `PRAGMA wal_checkpoint(PASSIVE)` on a connection of its own. A passive
//! checkpoint never blocks the writer or the readers. With
//! `synchronous=NORMAL` it syncs the WAL before copying and the database
//! after, so no acknowledged change depends on it.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;

/// How often the WAL is checkpointed when it has grown.
const EVERY: Duration = Duration::from_millis(500);

pub(crate) struct Checkpointer {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl Checkpointer {
    pub(crate) fn start(conn: Connection) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("keel-sqlite-ckpt".into())
            .spawn(move || run(&conn, &stopped))?;
        Ok(Checkpointer { stop, thread })
    }

    pub(crate) fn finish(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

fn run(conn: &Connection, stopped: &mpsc::Receiver<()>) {
    loop {
        match stopped.recv_timeout(EVERY) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        let started = Instant::now();
        // (busy, frames in the WAL, frames checkpointed)
        let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        });
        match result {
            Ok((_, _, copied)) if copied > 0 => {
                metrics::histogram!("keel_store_checkpoint_seconds")
                    .record(started.elapsed().as_secs_f64());
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; retrying"),
        }
    }
}
