//! Wake-ups, so that nothing polls.
//!
//! - A backend fires [`ReadySignal::notify`] whenever jobs become leasable in
//!   a queue (enqueue, promotion, expiry, retry, redrive, resume), saying how
//!   many. Leasers wait on [`ReadySignal::listener`]; as many wake as there
//!   are jobs, and a leaser whose batch came back full wakes the next.
//! - A backend fires [`ReadySignal::deadline`] whenever it creates a deadline:
//!   a job's `run_at` or a lease's expiry. The maintenance service sleeps until
//!   its next wake-up and is woken early by an earlier deadline. A shared
//!   backend carries deadlines to the other nodes too, so the maintenance
//!   leader hears of them whichever node set them.
//! - A backend fires [`ReadySignal::schedule_due`] whenever a schedule write
//!   sets a due time; the timer sleeps until its next one and is woken early
//!   by an earlier one, from whichever node (as with deadlines).
//! - A backend records [`ReadySignal::rate_limited`] when a lease leaves
//!   ready jobs behind for the queue's rate limit: a leaser that found
//!   nothing sleeps until then, as no new job will wake it.
//! - A backend fires [`ReadySignal::run_finished`] once a run's write to a
//!   final status is durable. Readers waiting for that run (and only them)
//!   wake; a shared backend carries it to the other nodes, so a reader on one
//!   node hears a run finish on another.
//! - A backend fires [`ReadySignal::appended`] once events are durable in a
//!   topic. Everyone waiting on the topic (tails, fetches, deliveries) wakes;
//!   a shared backend carries it to the other nodes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use keel_core::workflow::RunId;
use keel_core::{Namespace, QueueRef, Timestamp, TopicName};
use tokio::sync::{Notify, watch};

/// A topic in its namespace.
type TopicKey = (Namespace, TopicName);

#[derive(Clone, Debug, Default)]
pub struct ReadySignal {
    queues: Arc<Mutex<HashMap<QueueRef, Arc<Notify>>>>,
    maintenance: Arc<TimerWake>,
    schedules: Arc<TimerWake>,
    /// Readers waiting for a run to finish, by run: an entry lives only
    /// while someone waits (see [`RunWatch`]).
    runs: Arc<Mutex<HashMap<RunId, watch::Sender<()>>>>,
    topics: Arc<Mutex<HashMap<TopicKey, Arc<Notify>>>>,
    /// Woken by an append to any topic: what deliveries wait on.
    any_topic: Arc<Notify>,
    /// When a rate-limited queue next lets a job be leased, as its last
    /// lease call found it (see [`ReadySignal::rate_limited`]).
    rated: Arc<Mutex<HashMap<QueueRef, Timestamp>>>,
}

/// A reader's wait for one run to finish. Create it, then read the run, then
/// await [`RunWatch::finished`]: a finish between the read and the wait still
/// wakes it. Dropping the last watch of a run forgets the run.
#[derive(Debug)]
pub struct RunWatch {
    runs: Arc<Mutex<HashMap<RunId, watch::Sender<()>>>>,
    run: RunId,
    finished: watch::Receiver<()>,
}

impl RunWatch {
    /// Resolves when the run's finish is signalled after this watch was made
    /// (or after the last time this resolved).
    pub async fn finished(&mut self) {
        // The sender lives in the map as long as this watch does.
        let _ = self.finished.changed().await;
    }
}

impl Drop for RunWatch {
    fn drop(&mut self) {
        let mut runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        // This watch's receiver is the last one: no one else waits for the run.
        if runs
            .get(&self.run)
            .is_some_and(|sender| sender.receiver_count() <= 1)
        {
            runs.remove(&self.run);
        }
    }
}

/// When a timer (maintenance, schedules) next wakes (ms since the epoch),
/// and how to wake it early.
#[derive(Debug)]
struct TimerWake {
    next_ms: AtomicI64,
    notify: Notify,
}

impl Default for TimerWake {
    fn default() -> Self {
        TimerWake {
            next_ms: AtomicI64::new(i64::MAX),
            notify: Notify::new(),
        }
    }
}

impl TimerWake {
    fn earlier(&self, at: Timestamp) {
        if at.as_millis() < self.next_ms.fetch_min(at.as_millis(), Ordering::AcqRel) {
            self.notify.notify_one();
        }
    }

    fn plan(&self, at: Timestamp) {
        self.next_ms.store(at.as_millis(), Ordering::Release);
    }
}

/// The most leasers one notification wakes. A leaser that comes back with a
/// full batch wakes one more, so a larger batch still reaches every leaser.
pub const MAX_WOKEN: usize = 64;

impl ReadySignal {
    /// `jobs` became leasable in `queue`: wakes that many of the leasers
    /// waiting on it (at most [`MAX_WOKEN`]), not all of them, so one job does
    /// not send every parked leaser to the store. When none waits, the next
    /// leaser to wait finds the wake-up at once. Costs a map look-up when no
    /// leaser ever waited on the queue.
    pub fn notify(&self, queue: &QueueRef, jobs: usize) {
        let queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(notify) = queues.get(queue) {
            // `notify_one` keeps at most one permit, so extra calls wake no one.
            for _ in 0..jobs.clamp(1, MAX_WOKEN) {
                notify.notify_one();
            }
        }
    }

    /// A lease of `queue` left ready jobs behind for its rate limit; the
    /// next may be leased at `at`. Leasers that found nothing look here to
    /// know when to try again (no job becoming ready will wake them).
    pub fn rate_limited(&self, queue: &QueueRef, at: Timestamp) {
        let mut rated = self.rated.lock().unwrap_or_else(PoisonError::into_inner);
        rated.insert(queue.clone(), at);
    }

    /// When `queue`'s rate limit next lets a job through, if a lease found
    /// it limited (the time may be past: then it no longer holds).
    pub fn rate_next(&self, queue: &QueueRef) -> Option<Timestamp> {
        let rated = self.rated.lock().unwrap_or_else(PoisonError::into_inner);
        rated.get(queue).copied()
    }

    /// A deadline exists at `at`: wakes maintenance if it sleeps past it.
    pub fn deadline(&self, at: Timestamp) {
        self.maintenance.earlier(at);
    }

    /// Maintenance plans to wake at `at` (earlier deadlines still wake it).
    pub fn set_next_maintenance(&self, at: Timestamp) {
        self.maintenance.plan(at);
    }

    /// Resolves when a deadline earlier than the planned wake-up appears.
    pub async fn maintenance_woken(&self) {
        self.maintenance.notify.notified().await;
    }

    /// A schedule falls due at `at`: wakes the timer if it sleeps past it.
    pub fn schedule_due(&self, at: Timestamp) {
        self.schedules.earlier(at);
    }

    /// The schedule timer plans to wake at `at`.
    pub fn set_next_schedule(&self, at: Timestamp) {
        self.schedules.plan(at);
    }

    /// Resolves when a schedule falls due before the planned wake-up.
    pub async fn schedule_woken(&self) {
        self.schedules.notify.notified().await;
    }

    /// Starts waiting for `run` to finish.
    pub fn watch_run(&self, run: RunId) -> RunWatch {
        let mut runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        let finished = runs
            .entry(run)
            .or_insert_with(|| watch::channel(()).0)
            .subscribe();
        RunWatch {
            runs: self.runs.clone(),
            run,
            finished,
        }
    }

    /// `run` reached a final status (durably): wakes every watch of it, and
    /// costs a map look-up when no one watches.
    pub fn run_finished(&self, run: RunId) {
        let runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = runs.get(&run) {
            // Marks every watch's receiver changed, waiting or not yet.
            sender.send_replace(());
        }
    }

    /// Events became durable in `topic`: wakes everyone waiting on it.
    pub fn appended(&self, namespace: &Namespace, topic: &TopicName) {
        let topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(notify) = topics.get(&(namespace.clone(), topic.clone())) {
            notify.notify_waiters();
        }
        self.any_topic.notify_waiters();
    }

    /// The [`Notify`] an append to any topic wakes (arm it before reading).
    pub fn any_topic_listener(&self) -> Arc<Notify> {
        self.any_topic.clone()
    }

    /// The [`Notify`] to wait on for new events in `topic`. Create the
    /// `notified()` future and `enable()` it before reading, so that no
    /// append is missed.
    pub fn topic_listener(&self, namespace: &Namespace, topic: &TopicName) -> Arc<Notify> {
        let mut topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        topics
            .entry((namespace.clone(), topic.clone()))
            .or_default()
            .clone()
    }

    /// The [`Notify`] to wait on for `queue`. Create the `notified()` future and
    /// `enable()` it before looking for jobs, so that no wake-up is missed.
    pub fn listener(&self, queue: &QueueRef) -> Arc<Notify> {
        let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        queues.entry(queue.clone()).or_default().clone()
    }
}
