//! Leasing: a lease call that long-polls the queue's ready signal (armed
//! before each attempt, wake-ups passed on), hands out only leases that
//! have time left, and notes which queues workers ask this node for (why a
//! job waits, `waiting`).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use keel_core::gate::{self, Gate};
use keel_core::{Error, ErrorCode, Job, JobState, Namespace, QueueName, QueueRef, Timestamp};
use keel_store::{LeaseRequest, LeasedJob, ReadySignal};

use super::JobService;

/// Lease calls of one queue on this node: in progress, and when the last ended.
pub(super) struct LeaseCalls {
    open: u32,
    last: std::time::Instant,
}

/// A lease call in progress; it ends when dropped, however it ends (a
/// client that goes away drops its call mid-wait).
struct OpenCall<'a> {
    calls: &'a Mutex<HashMap<QueueRef, LeaseCalls>>,
    queue: &'a QueueRef,
}

impl<'a> OpenCall<'a> {
    fn new(calls: &'a Mutex<HashMap<QueueRef, LeaseCalls>>, queue: &'a QueueRef) -> Self {
        let mut map = calls.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = map.entry(queue.clone()).or_insert_with(|| LeaseCalls {
            open: 0,
            last: std::time::Instant::now(),
        });
        entry.open += 1;
        OpenCall { calls, queue }
    }
}

impl Drop for OpenCall<'_> {
    fn drop(&mut self) {
        let mut map = self.calls.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = map.get_mut(self.queue) {
            entry.open = entry.open.saturating_sub(1);
            entry.last = std::time::Instant::now();
        }
    }
}

impl JobService {
    /// Leases at once, or waits up to `wait` for the queue's ready signal
    /// (an empty answer when nothing came, or the server is shutting down).
    /// The listener is armed before each attempt, so an enqueue that lands
    /// between the attempt and the wait still wakes it.
    ///
    /// A ready signal wakes one waiting leaser per new job, not all of them,
    /// so each leaser passes the wake-up on when it cannot take it all: a full
    /// batch may have left jobs behind, and a call dropped after its wake-up
    /// (its client went away) must not swallow it.
    ///
    /// A worker is never handed a job whose lease has run out: a lease that
    /// the store took long to grant counts from when the answer leaves (see
    /// [`JobService::hand_out`]).
    pub async fn lease(&self, req: &LeaseRequest, wait: Duration) -> Result<Vec<LeasedJob>, Error> {
        let _open = OpenCall::new(&self.lease_calls, &req.queue);
        self.lease_waiting(req, wait).await
    }

    /// Why a scheduled or ready job is not running: every gate that holds
    /// it (`keel_core::gate`). A worker counts as present when it asked
    /// this node for the queue's jobs in the last minute.
    pub async fn waiting(&self, namespace: &Namespace, job: &Job) -> Result<Vec<Gate>, Error> {
        if !matches!(job.state, JobState::Scheduled | JobState::Ready) {
            return Ok(Vec::new());
        }
        let facts = match self.store.job_waiting(namespace, job.id).await {
            Ok(facts) => facts,
            // It finished meanwhile: nothing holds it.
            Err(e) if e.code == ErrorCode::JobNotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let queue = QueueRef {
            namespace: namespace.clone(),
            queue: QueueName::new(&job.queue)?,
        };
        let since = {
            let calls = self
                .lease_calls
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            // A call parked in its long-poll is a worker asking right now.
            calls.get(&queue).map(|c| match c.open {
                0 => c.last.elapsed().as_millis() as u64,
                _ => 0,
            })
        };
        Ok(gate::gates(&facts, since, self.clock.now()))
    }

    async fn lease_waiting(
        &self,
        req: &LeaseRequest,
        wait: Duration,
    ) -> Result<Vec<LeasedJob>, Error> {
        let deadline = tokio::time::Instant::now() + wait;
        let signal = &self.signal;
        let listener = signal.listener(&req.queue);
        let mut owed = PassOn {
            signal,
            queue: &req.queue,
            armed: false,
        };
        loop {
            let woken = listener.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let now = self.clock.now();
            let jobs = self.store.jobs_lease(req, now).await?;
            let jobs = self
                .hand_out(&req.queue.namespace, req.lease_ms, now, jobs)
                .await;
            owed.armed = false;
            if !jobs.is_empty() {
                if jobs.len() == req.max_jobs as usize {
                    signal.notify(&req.queue, 1);
                }
                crate::metrics::job_leased(&req.queue, jobs.len() as u64);
                let waits = jobs
                    .iter()
                    .map(|job| now.millis_since(job.run_at) as f64 / 1000.0);
                crate::metrics::job_waits(&req.queue, waits);
                self.slos.queue_leased(
                    &req.queue,
                    now,
                    jobs.iter().map(|job| now.millis_since(job.run_at)),
                );
                self.rates.leased(
                    &req.queue,
                    jobs.iter().map(|job| now.millis_since(job.run_at)),
                    now,
                );
                return Ok(jobs);
            }
            if self.shutdown.is_fired() {
                return Ok(jobs);
            }
            let _parked = crate::metrics::lease_waiter(&req.queue);
            // Ready jobs held back by the queue's rate limit: no enqueue
            // will wake us for them, their slot will.
            let slot = signal
                .rate_next(&req.queue)
                .filter(|at| *at > now)
                .map(|at| {
                    tokio::time::Instant::now() + Duration::from_millis(at.millis_since(now))
                });
            tokio::select! {
                () = &mut woken => owed.armed = true,
                () = sleep_until_some(slot), if slot.is_some_and(|s| s < deadline) => {}
                () = tokio::time::sleep_until(deadline) => return Ok(jobs),
                () = self.shutdown.clone().wait() => return Ok(jobs),
            }
        }
    }
}

impl JobService {
    /// Leases granted at `granted`, as they may leave now. One with less than
    /// half its time left (the store was slow: a busy database, a long lock
    /// wait) is extended to a full lease from now, by a heartbeat; one that
    /// already ran out is not handed out at all: its token is refused, and
    /// maintenance returns the job to its queue (an attempt, as when a worker
    /// dies). So a worker never receives a lease that is lost before it starts.
    async fn hand_out(
        &self,
        namespace: &Namespace,
        lease_ms: Option<u64>,
        granted: Timestamp,
        jobs: Vec<LeasedJob>,
    ) -> Vec<LeasedJob> {
        let now = self.clock.now();
        let mut out = Vec::with_capacity(jobs.len());
        for mut job in jobs {
            let full = job.lease_expires_at.millis_since(granted);
            if job.lease_expires_at.millis_since(now) * 2 >= full {
                out.push(job);
                continue;
            }
            match self
                .store
                .job_heartbeat(namespace, job.lease_token, lease_ms, now)
                .await
            {
                Ok(until) => {
                    job.lease_expires_at = until;
                    out.push(job);
                }
                Err(e) => tracing::warn!(
                    job = %job.id,
                    error = %e,
                    "a lease ran out before its answer left; the job goes back to its queue"
                ),
            }
        }
        out
    }
}

/// A wake-up this leaser took and has not yet acted on: passed to the next
/// leaser if the call is dropped (or fails) before its lease attempt ends.
struct PassOn<'a> {
    signal: &'a ReadySignal,
    queue: &'a QueueRef,
    armed: bool,
}

impl Drop for PassOn<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.signal.notify(self.queue, 1);
        }
    }
}

/// Sleeps until `at` (forever when `None`; guard the branch instead).
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests: a panic is a failed check")]

    use std::sync::atomic::{AtomicI64, Ordering};

    use std::sync::Arc;

    use keel_core::{Backoff, Clock, Limits, NewJob};
    use keel_store::Store;
    use keel_store_sqlite::SqliteStore;
    use serde_json::value::RawValue;

    use super::*;
    use crate::ShutdownTrigger;

    /// A clock that moves `step` ms each time it is read: a store call
    /// between two reads takes that long.
    struct Slow {
        now: AtomicI64,
        step: i64,
    }

    impl Clock for Slow {
        fn now(&self) -> Timestamp {
            Timestamp::from_millis(self.now.fetch_add(self.step, Ordering::SeqCst))
        }
    }

    /// Leases one job of a 1 s lease while the clock moves `step` ms per
    /// read; what the worker is handed.
    async fn lease_with_a_store_taking(step: i64) -> (Vec<LeasedJob>, Timestamp) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(dir.path(), &Limits::default()).unwrap());
        let queue = QueueRef {
            namespace: Namespace::new("default").unwrap(),
            queue: QueueName::new("slow").unwrap(),
        };
        let t0 = Timestamp::from_millis(1_800_000_000_000);
        let job = NewJob {
            payload: RawValue::from_string("1".to_owned()).unwrap(),
            priority: 0,
            run_at: t0,
            max_attempts: 3,
            backoff: Backoff::default(),
            lease_ms: 1_000,
            idempotency_key: None,
            ordering_key: None,
            tags: Default::default(),
            debounce_key: None,
            traceparent: None,
        };
        store.jobs_enqueue(&queue, vec![job], t0).await.unwrap();
        let clock = Arc::new(Slow {
            now: AtomicI64::new(t0.as_millis()),
            step,
        });
        let (_trigger, shutdown) = ShutdownTrigger::new();
        let engine = crate::Engine::new(
            store.clone(),
            clock,
            Limits::default(),
            shutdown,
            crate::EngineConfig::default(),
        );
        let req = LeaseRequest {
            queue,
            worker_id: "w".into(),
            max_jobs: 1,
            lease_ms: None,
        };
        let leased = engine.jobs().lease(&req, Duration::ZERO).await.unwrap();
        store.close().await;
        (leased, t0)
    }

    #[tokio::test]
    async fn a_quick_lease_leaves_as_granted() {
        let (leased, t0) = lease_with_a_store_taking(10).await;
        assert_eq!(leased[0].lease_expires_at, t0.plus_ms(1_000));
    }

    #[tokio::test]
    async fn a_slow_lease_counts_from_when_the_answer_leaves() {
        // Granted at t0 until t0+1000; the answer is ready at t0+600.
        let (leased, t0) = lease_with_a_store_taking(600).await;
        assert_eq!(leased.len(), 1);
        assert_eq!(leased[0].lease_expires_at, t0.plus_ms(600 + 1_000));
    }

    #[tokio::test]
    async fn a_lease_that_ran_out_before_the_answer_is_not_handed_out() {
        let (leased, _) = lease_with_a_store_taking(1_500).await;
        assert!(leased.is_empty(), "{leased:?}");
    }
}
