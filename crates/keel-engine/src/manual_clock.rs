//! A clock the engine's tests move by hand, injected where a service reads
//! the time, so a test of a time-bound behaviour waits for nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use keel_core::{Clock, Timestamp};

pub(crate) struct ManualClock(AtomicI64);

impl ManualClock {
    pub(crate) fn at(t: Timestamp) -> Arc<Self> {
        Arc::new(ManualClock(AtomicI64::new(t.as_millis())))
    }

    pub(crate) fn set(&self, t: Timestamp) {
        self.0.store(t.as_millis(), Ordering::SeqCst);
    }

    pub(crate) fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.0.load(Ordering::SeqCst))
    }
}
