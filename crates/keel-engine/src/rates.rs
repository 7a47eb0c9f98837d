//! Recent per-queue rates for `GET .../queues/{queue}`: events counted in
//! one-second buckets over the last minute.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use keel_core::{QueueRef, Timestamp};
use serde::Serialize;

const WINDOW_S: usize = 60;

#[derive(Clone, Copy, Debug)]
pub(crate) enum Event {
    Enqueued = 0,
    Completed = 1,
    Failed = 2,
}

#[derive(Default)]
struct Window {
    /// Per bucket: the second it counts, and the three counters.
    buckets: Vec<(i64, [u64; 3])>,
}

#[derive(Default)]
pub(crate) struct Rates(Mutex<HashMap<QueueRef, Window>>);

/// Events per second, averaged over the last minute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct RecentRates {
    pub enqueued_per_s: f64,
    pub completed_per_s: f64,
    pub failed_per_s: f64,
}

impl Rates {
    pub(crate) fn record(&self, queue: &QueueRef, event: Event, n: u64, now: Timestamp) {
        if n == 0 {
            return;
        }
        let second = now.as_millis().div_euclid(1000);
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let window = match map.get_mut(queue) {
            Some(w) => w,
            None => map.entry(queue.clone()).or_default(),
        };
        if window.buckets.is_empty() {
            window.buckets = vec![(i64::MIN, [0; 3]); WINDOW_S];
        }
        let slot = &mut window.buckets[second.rem_euclid(WINDOW_S as i64) as usize];
        if slot.0 != second {
            *slot = (second, [0; 3]);
        }
        slot.1[event as usize] += n;
    }

    pub(crate) fn recent(&self, queue: &QueueRef, now: Timestamp) -> RecentRates {
        let second = now.as_millis().div_euclid(1000);
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(window) = map.get(queue) else {
            return RecentRates::default();
        };
        let mut sums = [0u64; 3];
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
}
