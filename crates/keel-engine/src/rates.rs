//! Recent per-queue activity, as this node saw it: events counted in
//! one-second buckets over the last minute (the rates of
//! `GET .../queues/{queue}`), and per minute over the last hour with the
//! waits of the jobs leased (the dashboard's charts).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use keel_core::slo::Histogram;
use keel_core::{QueueRef, Timestamp};
use serde::Serialize;

const WINDOW_S: usize = 60;
/// Minutes of the hour kept.
pub const HOUR_MINUTES: usize = 60;

#[derive(Clone, Copy, Debug)]
pub(crate) enum Event {
    Enqueued = 0,
    Completed = 1,
    Failed = 2,
    Leased = 3,
}

/// What happened to a queue's jobs in one minute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Minute {
    pub enqueued: u64,
    pub completed: u64,
    /// Failed attempts, retried or dead.
    pub failed: u64,
    pub leased: u64,
}

#[derive(Default)]
struct Window {
    /// Per bucket: the second it counts, and the counters.
    buckets: Vec<(i64, [u64; 4])>,
    /// Per bucket: the minute it counts, its counters, and its waits.
    minutes: Vec<(i64, [u64; 4], Histogram)>,
}

impl Window {
    fn count(&mut self, event: Event, n: u64, now: Timestamp) {
        if self.buckets.is_empty() {
            self.buckets = vec![(i64::MIN, [0; 4]); WINDOW_S];
            self.minutes = vec![(i64::MIN, [0; 4], Histogram::default()); HOUR_MINUTES];
        }
        let second = now.as_millis().div_euclid(1000);
        let slot = &mut self.buckets[second.rem_euclid(WINDOW_S as i64) as usize];
        if slot.0 != second {
            *slot = (second, [0; 4]);
        }
        slot.1[event as usize] += n;
        self.minute(now).1[event as usize] += n;
    }

    fn minute(&mut self, now: Timestamp) -> &mut (i64, [u64; 4], Histogram) {
        let minute = now.as_millis().div_euclid(60_000);
        let slot = &mut self.minutes[minute.rem_euclid(HOUR_MINUTES as i64) as usize];
        if slot.0 != minute {
            *slot = (minute, [0; 4], Histogram::default());
        }
        slot
    }
}

/// A queue's last hour: a [`Minute`] each, oldest first (the current one
/// last), and the waits of every job leased in it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Hour {
    pub minutes: Vec<Minute>,
    pub waits: Histogram,
}

#[derive(Default)]
pub(crate) struct Rates(Mutex<HashMap<QueueRef, Window>>);

/// Events per second, averaged over the last minute.
/// How many of an owner's new jobs go to each queue: taken before the write
/// that consumes the jobs, counted once it succeeded.
#[derive(Debug, Default)]
pub(crate) struct OwnedCounts(Vec<(QueueRef, u64)>);

impl OwnedCounts {
    pub(crate) fn of(jobs: &[keel_store::OwnedJob]) -> Self {
        let mut counts: Vec<(QueueRef, u64)> = Vec::new();
        for job in jobs {
            match counts.iter_mut().find(|(q, _)| *q == job.queue) {
                Some((_, n)) => *n += 1,
                None => counts.push((job.queue.clone(), 1)),
            }
        }
        OwnedCounts(counts)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct RecentRates {
    pub enqueued_per_s: f64,
    pub completed_per_s: f64,
    pub failed_per_s: f64,
}

impl Rates {
    /// Jobs enqueued on `queue`, by whichever path made them (an enqueue,
    /// or an owner's write: a run's steps, a subscription's deliveries, a
    /// schedule's fires): the metric and this node's rates, counted once.
    pub(crate) fn enqueued(&self, queue: &QueueRef, n: u64, now: Timestamp) {
        crate::metrics::job_enqueued(queue, n);
        self.record(queue, Event::Enqueued, n, now);
    }

    /// [`Rates::enqueued`] for the jobs an owner's write created.
    pub(crate) fn owned_enqueued(&self, counts: &OwnedCounts, now: Timestamp) {
        for (queue, n) in &counts.0 {
            self.enqueued(queue, *n, now);
        }
    }

    pub(crate) fn record(&self, queue: &QueueRef, event: Event, n: u64, now: Timestamp) {
        if n == 0 {
            return;
        }
        self.with(queue, |w| w.count(event, n, now));
    }

    /// Jobs leased after waiting `waits` (ms) since they became ready.
    pub(crate) fn leased(
        &self,
        queue: &QueueRef,
        waits: impl ExactSizeIterator<Item = u64>,
        now: Timestamp,
    ) {
        self.with(queue, |w| {
            w.count(Event::Leased, waits.len() as u64, now);
            let histogram = &mut w.minute(now).2;
            for wait in waits {
                histogram.record(wait);
            }
        });
    }

    fn with(&self, queue: &QueueRef, f: impl FnOnce(&mut Window)) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let window = match map.get_mut(queue) {
            Some(w) => w,
            None => map.entry(queue.clone()).or_default(),
        };
        f(window);
    }

    /// The last hour of `queue`, minute by minute.
    pub(crate) fn hour(&self, queue: &QueueRef, now: Timestamp) -> Hour {
        let current = now.as_millis().div_euclid(60_000);
        let mut hour = Hour {
            minutes: vec![Minute::default(); HOUR_MINUTES],
            waits: Histogram::default(),
        };
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(window) = map.get(queue) else {
            return hour;
        };
        for (minute, counts, waits) in &window.minutes {
            let ago = current.saturating_sub(*minute);
            if (0..HOUR_MINUTES as i64).contains(&ago) {
                hour.minutes[HOUR_MINUTES - 1 - ago as usize] = Minute {
                    enqueued: counts[0],
                    completed: counts[1],
                    failed: counts[2],
                    leased: counts[3],
                };
                hour.waits.add(waits);
            }
        }
        hour
    }

    pub(crate) fn recent(&self, queue: &QueueRef, now: Timestamp) -> RecentRates {
        let second = now.as_millis().div_euclid(1000);
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(window) = map.get(queue) else {
            return RecentRates::default();
        };
        let mut sums = [0u64; 4];
        for (at, counts) in &window.buckets {
            if *at > second - WINDOW_S as i64 {
                for (sum, c) in sums.iter_mut().zip(counts) {
                    *sum += c;
                }
            }
        }
        let per_s = |n: u64| n as f64 / WINDOW_S as f64;
        RecentRates {
            enqueued_per_s: per_s(sums[0]),
            completed_per_s: per_s(sums[1]),
            failed_per_s: per_s(sums[2]),
        }
    }
}

#[cfg(test)]
mod tests {
    use keel_core::{Namespace, QueueName};

    use super::*;

    #[test]
    fn counts_the_last_minute_only() {
        let q = QueueRef {
            namespace: Namespace::new("n").unwrap(),
            queue: QueueName::new("q").unwrap(),
        };
        let rates = Rates::default();
        let t0 = Timestamp::from_millis(1_000_000);
        rates.record(&q, Event::Enqueued, 120, t0);
        rates.record(&q, Event::Completed, 60, t0.plus_ms(30_000));
        let now = rates.recent(&q, t0.plus_ms(30_000));
        assert_eq!((now.enqueued_per_s, now.completed_per_s), (2.0, 1.0));
        let later = rates.recent(&q, t0.plus_ms(61_000));
        assert_eq!((later.enqueued_per_s, later.completed_per_s), (0.0, 1.0));
        let unused = Rates::default();
        unused.record(&q, Event::Failed, 1, t0);
        assert_eq!(
            unused.recent(&q, t0).failed_per_s,
            1.0 / 60.0,
            "empty buckets do not overflow"
        );
    }

    #[test]
    fn the_hour_keeps_each_minute_and_the_waits_of_its_leases() {
        let q = QueueRef {
            namespace: Namespace::new("n").unwrap(),
            queue: QueueName::new("q").unwrap(),
        };
        let rates = Rates::default();
        let t0 = Timestamp::from_millis(60_000 * 1_000);
        rates.record(&q, Event::Enqueued, 3, t0);
        rates.leased(&q, [5u64, 40].into_iter(), t0.plus_ms(1_000));
        rates.record(&q, Event::Completed, 2, t0.plus_ms(60_000));
        rates.record(&q, Event::Failed, 1, t0.plus_ms(59 * 60_000));
        let hour = rates.hour(&q, t0.plus_ms(59 * 60_000));
        assert_eq!(hour.minutes.len(), HOUR_MINUTES);
        let first = Minute {
            enqueued: 3,
            leased: 2,
            ..Minute::default()
        };
        assert_eq!(hour.minutes[0], first, "the oldest minute first");
        assert_eq!(hour.minutes[1].completed, 2);
        assert_eq!(hour.minutes[59].failed, 1, "the current minute last");
        assert_eq!(hour.waits.0.iter().sum::<u64>(), 2);
        // An hour on, the first minute has left the window.
        let later = rates.hour(&q, t0.plus_ms(60 * 60_000));
        assert_eq!(later.minutes[58].failed, 1);
        assert_eq!(later.waits.0.iter().sum::<u64>(), 0);
        assert_eq!(later.minutes.iter().map(|m| m.completed).sum::<u64>(), 2);
    }
}
