//! A clock moved by hand, injected where a service reads the time: the
//! engine's tests use it so that a time-bound behaviour waits for nothing,
//! and `keel test` runs a project's tests on it (with
//! [`crate::Engine::time_moved`] waking what waits on the time).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use keel_core::{Clock, Timestamp};

pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn at(t: Timestamp) -> Arc<Self> {
        Arc::new(ManualClock(AtomicI64::new(t.as_millis())))
    }

    pub fn set(&self, t: Timestamp) {
        self.0.store(t.as_millis(), Ordering::SeqCst);
    }

    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.0.load(Ordering::SeqCst))
    }
}
