//! The engine: what every request handler and service shares.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use keel_core::{Clock, Limits, Timestamp};
use keel_store::Store;
use tokio::sync::Notify;

use crate::Shutdown;
use crate::rates::Rates;

pub struct Engine {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub limits: Limits,
    pub shutdown: Shutdown,
    pub(crate) rates: Rates,
    pub(crate) timer: Timer,
}

impl Engine {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        limits: Limits,
        shutdown: Shutdown,
    ) -> Arc<Self> {
        Arc::new(Engine {
            store,
            clock,
            limits,
            shutdown,
            rates: Rates::default(),
            timer: Timer::default(),
        })
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }
}

/// When the maintenance service next wakes. Requests that create an earlier
/// deadline (a delayed job, a lease, a retry) pull the wake-up forward, so the
/// service sleeps until exactly the next due time instead of polling.
#[derive(Debug)]
pub(crate) struct Timer {
    next_wake_ms: AtomicI64,
    notify: Notify,
}

impl Default for Timer {
    fn default() -> Self {
        Timer {
            next_wake_ms: AtomicI64::new(i64::MAX),
            notify: Notify::new(),
        }
    }
}

impl Timer {
    /// Makes sure the service wakes by `at`.
    pub fn wake_by(&self, at: Timestamp) {
        let previous = self
            .next_wake_ms
            .fetch_min(at.as_millis(), Ordering::AcqRel);
        if at.as_millis() < previous {
            self.notify.notify_one();
        }
    }

    pub fn set_next(&self, at: Timestamp) {
        self.next_wake_ms.store(at.as_millis(), Ordering::Release);
    }

    pub async fn woken(&self) {
        self.notify.notified().await;
    }
}
