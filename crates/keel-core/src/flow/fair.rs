//! Weighted fair share between a queue's flow keys: start-time fair queueing
//! over virtual time. Each key has a virtual time, how much of the queue it
//! has had (a job costs `COST / weight`); the queue has a clock, the start
//! of the last job it handed out. The next job comes from the key that
//! would start earliest, `max(its time, the clock)`: a key that was idle
//! starts at the clock, so it is served within a round of the keys that
//! wait, and gets no credit for the time it was idle; a key with nothing to
//! give is passed over, so its share goes to the others (work-conserving).
//! However a tenant spreads its backlog over keys, each key is one lane: a
//! lone job's key waits at most one job of each other key ahead of it.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use serde::{Deserialize, Serialize};

use crate::Error;

/// The largest weight a key may have.
pub const MAX_WEIGHT: u32 = 1000;

/// The virtual time one job of a key of weight 1 takes.
pub const COST: i64 = 1_000_000;

/// `{"weights":{"acme":3},"default_weight":1}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Fairness {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub weights: BTreeMap<String, u32>,
    #[serde(default = "one")]
    pub default_weight: u32,
}

fn one() -> u32 {
    1
}

impl Fairness {
    pub fn check(&self) -> Result<(), Error> {
        let bad = |w: &u32| !(1..=MAX_WEIGHT).contains(w);
        if bad(&self.default_weight) || self.weights.values().any(bad) {
            return Err(Error::invalid(format!(
                "fairness weights must be between 1 and {MAX_WEIGHT}"
            )));
        }
        Ok(())
    }

    pub fn weight(&self, key: &str) -> u32 {
        self.weights
            .get(key)
            .copied()
            .unwrap_or(self.default_weight)
    }
}

/// One key's part in a lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lane {
    /// The key's virtual time (0 for a key never served).
    pub vtime: i64,
    pub weight: u32,
    /// Jobs the key can give now (ready, within its own limits).
    pub available: u32,
}

/// Shares `n` jobs between `lanes` (given in order of virtual time; ties
/// go to the earlier lane) and returns how many each gives, in lane order.
/// Moves each lane's virtual time and the queue's `clock` on.
pub fn share(lanes: &mut [Lane], clock: &mut i64, n: u32) -> Vec<u32> {
    let mut taken = vec![0u32; lanes.len()];
    let mut next: BinaryHeap<Reverse<(i64, usize)>> = lanes
        .iter()
        .enumerate()
        .filter(|(_, lane)| lane.available > 0)
        .map(|(i, lane)| Reverse((lane.vtime.max(*clock), i)))
        .collect();
    for _ in 0..n {
        let Some(Reverse((start, i))) = next.pop() else {
            break;
        };
        let lane = &mut lanes[i];
        *clock = (*clock).max(start);
        lane.vtime = start + COST / i64::from(lane.weight.clamp(1, MAX_WEIGHT));
        lane.available -= 1;
        taken[i] += 1;
        if lane.available > 0 {
            next.push(Reverse((lane.vtime, i)));
        }
    }
    taken
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn lanes(spec: &[(i64, u32, u32)]) -> Vec<Lane> {
        spec.iter()
            .map(|&(vtime, weight, available)| Lane {
                vtime,
                weight,
                available,
            })
            .collect()
    }

    #[test]
    fn a_newcomer_goes_next_however_long_the_backlog_before_it() {
        // A has been served 1,000 times; B arrives with one job.
        let mut clock = 999 * COST;
        let mut l = lanes(&[(1000 * COST, 1, 1_000_000), (0, 1, 1)]);
        let taken = share(&mut l, &mut clock, 1);
        assert_eq!(taken, [0, 1]);
        // And gets no credit for having been idle: one job, then turns.
        let mut l = lanes(&[(1000 * COST, 1, 1_000_000), (0, 1, 10)]);
        let mut clock = 999 * COST;
        assert_eq!(share(&mut l, &mut clock, 4), [2, 2]);
    }

    #[test]
    fn weights_share_in_proportion() {
        let mut clock = 0;
        let mut l = lanes(&[(0, 3, 1000), (0, 1, 1000)]);
        assert_eq!(share(&mut l, &mut clock, 400), [300, 100]);
    }

    proptest! {
        /// Work-conserving: as many jobs as asked for, or every job there is.
        #[test]
        fn conserves_work(
            spec in proptest::collection::vec((0i64..5 * COST, 1u32..10, 0u32..20), 0..12),
            n in 0u32..100,
        ) {
            let mut l = lanes(&spec);
            let mut clock = 0;
            let taken = share(&mut l, &mut clock, n);
            let available: u32 = spec.iter().map(|s| s.2).sum();
            prop_assert_eq!(taken.iter().sum::<u32>(), n.min(available));
            for (t, s) in taken.iter().zip(&spec) {
                prop_assert!(*t <= s.2);
            }
        }

        /// No key starves: every key at or behind the clock gives a job
        /// within one pick per key, whatever the others have waiting.
        #[test]
        fn no_key_starves(
            spec in proptest::collection::vec((0i64..COST, 1u32..MAX_WEIGHT, 1u32..1_000_000), 1..50),
        ) {
            let mut l = lanes(&spec);
            let mut clock = COST;
            let taken = share(&mut l, &mut clock, spec.len() as u32);
            prop_assert!(taken.iter().all(|&t| t == 1), "{:?}", taken);
        }

        /// Weights hold within the bound of fair queueing: for keys that
        /// always have work, served/weight differs by at most one job of each.
        #[test]
        fn weights_hold_within_a_job(
            weights in proptest::collection::vec(1u32..20, 2..8),
            rounds in proptest::collection::vec(1u32..50, 1..20),
        ) {
            let mut l: Vec<Lane> = weights
                .iter()
                .map(|&weight| Lane { vtime: 0, weight, available: u32::MAX })
                .collect();
            let mut clock = 0;
            let mut served = vec![0u64; l.len()];
            for n in rounds {
                for (s, t) in served.iter_mut().zip(share(&mut l, &mut clock, n)) {
                    *s += u64::from(t);
                }
                // Lanes stay in order of virtual time between calls.
                let mut order: Vec<usize> = (0..l.len()).collect();
                order.sort_by_key(|&i| l[i].vtime);
                l = order.iter().map(|&i| l[i]).collect();
                served = order.iter().map(|&i| served[i]).collect();
            }
            for i in 0..l.len() {
                for j in 0..l.len() {
                    let (wi, wj) = (f64::from(l[i].weight), f64::from(l[j].weight));
                    let gap = served[i] as f64 / wi - served[j] as f64 / wj;
                    prop_assert!(gap <= 1.0 / wi + 1.0 / wj + 1e-9, "{gap} {:?} {:?}", served, l);
                }
            }
        }
    }
}
