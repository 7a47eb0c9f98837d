//! Wake-ups for long-polling leasers. A backend fires [`ReadySignal::notify`]
//! whenever jobs become leasable in a queue (enqueue, promotion, expiry, retry,
//! redrive, resume); leasers wait on [`ReadySignal::listener`] instead of polling.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use keel_core::QueueRef;
use tokio::sync::Notify;

#[derive(Clone, Debug, Default)]
pub struct ReadySignal {
    queues: Arc<Mutex<HashMap<QueueRef, Arc<Notify>>>>,
}

impl ReadySignal {
    /// Wakes every leaser waiting on `queue`; costs a map look-up when none waits.
    pub fn notify(&self, queue: &QueueRef) {
        let queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(notify) = queues.get(queue) {
            notify.notify_waiters();
        }
    }

    /// The [`Notify`] to wait on for `queue`. Create the `notified()` future and
    /// `enable()` it before looking for jobs, so that no wake-up is missed.
    pub fn listener(&self, queue: &QueueRef) -> Arc<Notify> {
        let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        queues.entry(queue.clone()).or_default().clone()
    }
}
