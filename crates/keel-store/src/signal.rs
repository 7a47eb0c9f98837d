//! Wake-ups, so that nothing polls.
//!
//! - A backend fires [`ReadySignal::notify`] whenever jobs become leasable in
//!   a queue (enqueue, promotion, expiry, retry, redrive, resume). Leasers wait
//!   on [`ReadySignal::listener`].
//! - A backend fires [`ReadySignal::deadline`] whenever it creates a deadline:
//!   a job's `run_at` or a lease's expiry. The maintenance service sleeps until
//!   its next wake-up and is woken early by an earlier deadline. A shared
//!   backend carries deadlines to the other nodes too, so the maintenance
//!   leader hears of them whichever node set them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use keel_core::{QueueRef, Timestamp};
use tokio::sync::Notify;

#[derive(Clone, Debug, Default)]
pub struct ReadySignal {
    queues: Arc<Mutex<HashMap<QueueRef, Arc<Notify>>>>,
    maintenance: Arc<MaintenanceWake>,
}

/// When maintenance next wakes (ms since the epoch), and how to wake it early.
#[derive(Debug)]
struct MaintenanceWake {
    next_ms: AtomicI64,
    notify: Notify,
}

impl Default for MaintenanceWake {
    fn default() -> Self {
        MaintenanceWake {
            next_ms: AtomicI64::new(i64::MAX),
            notify: Notify::new(),
        }
    }
}

impl ReadySignal {
    /// Wakes every leaser waiting on `queue`; costs a map look-up when none waits.
    pub fn notify(&self, queue: &QueueRef) {
        let queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(notify) = queues.get(queue) {
            notify.notify_waiters();
        }
    }

    /// A deadline exists at `at`: wakes maintenance if it sleeps past it.
    pub fn deadline(&self, at: Timestamp) {
        let wake = &self.maintenance;
        if at.as_millis() < wake.next_ms.fetch_min(at.as_millis(), Ordering::AcqRel) {
            wake.notify.notify_one();
        }
    }

    /// Maintenance plans to wake at `at` (earlier deadlines still wake it).
    pub fn set_next_maintenance(&self, at: Timestamp) {
        self.maintenance
            .next_ms
            .store(at.as_millis(), Ordering::Release);
    }

    /// Resolves when a deadline earlier than the planned wake-up appears.
    pub async fn maintenance_woken(&self) {
        self.maintenance.notify.notified().await;
    }

    /// The [`Notify`] to wait on for `queue`. Create the `notified()` future and
    /// `enable()` it before looking for jobs, so that no wake-up is missed.
    pub fn listener(&self, queue: &QueueRef) -> Arc<Notify> {
        let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        queues.entry(queue.clone()).or_default().clone()
    }
}
