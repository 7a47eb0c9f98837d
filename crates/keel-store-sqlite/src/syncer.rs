//! The syncer: makes commits durable, then answers their callers.
//!
//! SQLite runs with `synchronous=NORMAL`: a commit writes its WAL frames but
//! does not fsync them, and checkpoints still sync properly. After each commit
//! the writer hands the batch's answers here and starts the next batch at
//! once. This thread `fdatasync`s the WAL file (Linux syncs the whole file,
//! whichever descriptor asks) and only then answers. One sync covers every
//! commit written before it started, so while one sync runs the next batches
//! pile up behind it: group commit without the writer ever waiting on the
//! disk.
//!
//! The rule that keeps the guarantee: an answer is released only by a sync
//! that started after its commit's frames were written. A sync error aborts
//! the process, so nothing is acknowledged after one.
//!
//! Commits are numbered by the writer; the syncer publishes the highest one
//! known durable ([`Syncer::durable`]), so that the writer can tell what it
//! may show before its own commit (a lease, `lease.rs`).

use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Instant;

/// An answer waiting for its commit to be durable; called with the batch's
/// fault instead when its transaction failed.
pub(crate) type Pending = Box<dyn FnOnce(Option<&keel_core::Error>) + Send>;

/// A committed transaction's answers, whether it wrote anything, and the
/// number of the last commit before or at it.
struct Batch {
    answers: Vec<Pending>,
    wrote: bool,
    commit: u64,
}

pub(crate) struct Syncer {
    batches: mpsc::Sender<Batch>,
    /// Batches submitted and not yet answered.
    in_flight: Arc<AtomicUsize>,
    /// The highest commit number known durable.
    durable: Arc<AtomicU64>,
    thread: JoinHandle<()>,
}

impl Syncer {
    /// `done` is called after every sync, to wake the writer.
    pub(crate) fn start(wal: File, done: impl Fn() + Send + 'static) -> std::io::Result<Self> {
        let (batches, queue) = mpsc::channel();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let durable = Arc::new(AtomicU64::new(0));
        let (counter, synced) = (in_flight.clone(), durable.clone());
        let thread = std::thread::Builder::new()
            .name("keel-sqlite-sync".into())
            .spawn(move || run(&wal, &queue, &counter, &synced, &done))?;
        Ok(Syncer {
            batches,
            in_flight,
            durable,
            thread,
        })
    }

    /// Answers `answers` once everything committed so far (up to commit
    /// number `commit`) is on disk. A transaction that `wrote` nothing needs
    /// no sync of its own: the batches before it are synced first, in order.
    pub(crate) fn submit(&self, answers: Vec<Pending>, wrote: bool, commit: u64) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let batch = Batch {
            answers,
            wrote,
            commit,
        };
        if let Err(mpsc::SendError(batch)) = self.batches.send(batch) {
            // The thread only stops after a failed sync, which aborted.
            drop(batch);
        }
    }

    /// The highest commit number whose frames are known synced.
    pub(crate) fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// Whether submitted answers still wait for their sync.
    pub(crate) fn is_syncing(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    /// Syncs and answers what is queued, then stops.
    pub(crate) fn finish(self) {
        drop(self.batches);
        let _ = self.thread.join();
    }
}

fn run(
    wal: &File,
    queue: &mpsc::Receiver<Batch>,
    in_flight: &AtomicUsize,
    durable: &AtomicU64,
    done: &dyn Fn(),
) {
    while let Ok(first) = queue.recv() {
        let mut batches = vec![first];
        batches.extend(queue.try_iter());
        let count = batches.len();
        // Batches ahead of the first that wrote are covered by syncs already
        // done: they leave now, not after the next sync.
        let first_write = batches.iter().position(|b| b.wrote);
        let unsynced = batches.split_off(first_write.unwrap_or(count));
        for answer in batches.into_iter().flat_map(|b| b.answers) {
            answer(None);
        }
        if let Some(last) = unsynced.last().map(|b| b.commit) {
            let started = Instant::now();
            if let Err(e) = wal.sync_data() {
                tracing::error!(error = %e, "fsync of the WAL failed; stopping so that nothing unsynced is acknowledged");
                std::process::abort();
            }
            durable.fetch_max(last, Ordering::AcqRel);
            metrics::histogram!("keel_store_fsync_seconds").record(started.elapsed().as_secs_f64());
            let answers: Vec<Pending> = unsynced.into_iter().flat_map(|b| b.answers).collect();
            metrics::histogram!("keel_store_fsync_batch_size").record(answers.len() as f64);
            for answer in answers {
                answer(None);
            }
        }
        in_flight.fetch_sub(count, Ordering::AcqRel);
        done();
    }
}
