//! The hot index's flow keys. For a queue with a `key`, it keeps each key's
//! leasable jobs, leased count and rate-limit state, and the keys that can
//! give a job now in order of their virtual time in the fair share
//! (`keel_core::flow::fair`), so a lease picks keys without walking any
//! key's backlog: a million jobs of one tenant cost another tenant's job
//! nothing. Keys held by their `key_rate_limit` wait apart, by the time of
//! their next slot.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use keel_core::flow::Rate;
use keel_core::flow::fair::{Fairness, Lane, share};
use keel_core::{JobId, Timestamp};

use crate::hot::ReadyKey;

#[derive(Debug)]
pub(crate) struct FlowIndex {
    keys: HashMap<Arc<str>, KeyFlow>,
    /// Keys with a leasable job, room under `max_key_concurrency` and a
    /// slot under `key_rate`, by virtual time.
    open: BTreeSet<(i64, Arc<str>)>,
    /// Keys with a leasable job and room, waiting for their rate's next
    /// slot, by its time.
    throttled: BTreeSet<(Timestamp, Arc<str>)>,
    /// Keys with nothing left but a rate state still in the future, by the
    /// end of it (µs): forgotten once it has passed.
    resting: BTreeSet<(i64, Arc<str>)>,
    /// The start of the last job handed out, in virtual time.
    clock: i64,
    /// The time of the last pick, in µs.
    now_us: i64,
    max_key_concurrency: Option<u32>,
    key_rate: Option<Rate>,
    /// Set when the index was rebuilt at open: what each key leased just
    /// before the restart is not on disk, so the first pick assumes every
    /// key spent its whole burst then (`Rate::spent`) and keeps that as
    /// `rate_floor_us`, where keys first seen afterwards start too.
    rates_forgotten: bool,
    rate_floor_us: i64,
}

#[derive(Debug, Default)]
struct KeyFlow {
    ready: BTreeSet<ReadyKey>,
    leased: u32,
    vtime: i64,
    /// The key's GCRA state (µs).
    rate_tat_us: i64,
    /// When the key's rate gives its next slot, while it gives none.
    slot_at: Option<Timestamp>,
}

impl KeyFlow {
    fn room(&self, max: Option<u32>) -> u32 {
        max.map_or(u32::MAX, |max| max.saturating_sub(self.leased))
    }
}

impl FlowIndex {
    pub(crate) fn new(max_key_concurrency: Option<u32>, key_rate: Option<Rate>) -> Self {
        FlowIndex {
            keys: HashMap::new(),
            open: BTreeSet::new(),
            throttled: BTreeSet::new(),
            resting: BTreeSet::new(),
            clock: 0,
            now_us: 0,
            max_key_concurrency,
            key_rate,
            rates_forgotten: false,
            rate_floor_us: 0,
        }
    }

    /// See `rates_forgotten`: called once the index is rebuilt at open.
    pub(crate) fn forget_rates(&mut self) {
        self.rates_forgotten = true;
    }

    /// The key's state, made for a key not known yet: its rate starts at
    /// the floor (the epoch, unless a restart was recent).
    fn key_entry(&mut self, key: &Arc<str>) -> &mut KeyFlow {
        let (floor, now_us, rate) = (self.rate_floor_us, self.now_us, self.key_rate);
        self.keys.entry(key.clone()).or_insert_with(|| KeyFlow {
            rate_tat_us: floor,
            slot_at: rate.filter(|_| floor > now_us).and_then(|r| {
                r.allowed(floor, Timestamp::from_millis(now_us / 1000), 1)
                    .next_at
            }),
            ..KeyFlow::default()
        })
    }

    pub(crate) fn ready_in(&mut self, key: &Arc<str>, job: ReadyKey) {
        self.key_entry(key).ready.insert(job);
        self.refresh(key);
    }

    pub(crate) fn ready_out(&mut self, key: &Arc<str>, job: &ReadyKey) {
        if let Some(flow) = self.keys.get_mut(key) {
            flow.ready.remove(job);
        }
        self.refresh(key);
    }

    pub(crate) fn leased_in(&mut self, key: &Arc<str>) {
        self.key_entry(key).leased += 1;
        self.refresh(key);
    }

    /// A lease of the key ended; true when that made room for a job of the
    /// key that was waiting at its bound (a parked leaser may take it now).
    pub(crate) fn leased_out(&mut self, key: &Arc<str>) -> bool {
        let max = self.max_key_concurrency;
        let Some(flow) = self.keys.get_mut(key) else {
            return false;
        };
        let was_full = flow.room(max) == 0;
        flow.leased = flow.leased.saturating_sub(1);
        let woke = was_full && !flow.ready.is_empty();
        self.refresh(key);
        woke
    }

    /// Jobs of `key` leased now.
    pub(crate) fn leased(&self, key: &str) -> u32 {
        self.keys.get(key).map_or(0, |flow| flow.leased)
    }

    /// The key's rate-limit state (µs; 0 for a key never rate-limited).
    pub(crate) fn rate_tat_us(&self, key: &str) -> i64 {
        self.keys.get(key).map_or(0, |flow| flow.rate_tat_us)
    }

    /// The job's place among its key's leasable jobs (1: next).
    pub(crate) fn position(&self, key: &str, job: &ReadyKey) -> u64 {
        self.keys
            .get(key)
            .map_or(1, |flow| flow.ready.range(..job).count() as u64 + 1)
    }

    /// The earliest next slot of a key held by its rate: when a parked
    /// leaser should look again.
    pub(crate) fn next_slot(&self) -> Option<Timestamp> {
        self.throttled.first().map(|(at, _)| *at)
    }

    /// Keeps `open` and `throttled` true to the key's state, and forgets a
    /// key with nothing left once its rate state has passed. A forgotten
    /// key restarts at the clock: at most one turn early when its virtual
    /// time was ahead, the price of not keeping every key ever seen.
    fn refresh(&mut self, key: &Arc<str>) {
        let Some(flow) = self.keys.get(key) else {
            return;
        };
        let open = (flow.vtime, key.clone());
        let throttled = flow.slot_at.map(|at| (at, key.clone()));
        let leasable = !flow.ready.is_empty() && flow.room(self.max_key_concurrency) > 0;
        match (leasable, throttled) {
            (true, None) => {
                self.open.insert(open);
            }
            (true, Some(throttled)) => {
                self.open.remove(&open);
                self.throttled.insert(throttled);
            }
            (false, throttled) => {
                self.open.remove(&open);
                if let Some(throttled) = throttled {
                    self.throttled.remove(&throttled);
                }
                if flow.ready.is_empty() && flow.leased == 0 {
                    if flow.rate_tat_us <= self.now_us {
                        self.keys.remove(key);
                    } else {
                        self.resting.insert((flow.rate_tat_us, key.clone()));
                    }
                }
            }
        }
    }

    /// Reopens the keys whose next slot has come, and forgets resting keys
    /// whose rate state has passed.
    fn advance(&mut self, now: Timestamp) {
        self.now_us = self.now_us.max(now.as_millis() * 1000);
        while let Some((at, key)) = self.throttled.first().cloned()
            && at <= now
        {
            self.throttled.remove(&(at, key.clone()));
            if let Some(flow) = self.keys.get_mut(&key) {
                flow.slot_at = None;
            }
            self.refresh(&key);
        }
        while let Some((tat, key)) = self.resting.first().cloned()
            && tat <= self.now_us
        {
            self.resting.remove(&(tat, key.clone()));
            self.refresh(&key);
        }
    }

    /// Up to `n` jobs in weighted fair share between the open keys, each
    /// key's in its own lease order. The keys' virtual times and rate
    /// states move on here; the caller leases the jobs, which takes them
    /// out of the index.
    pub(crate) fn pick(
        &mut self,
        n: u32,
        fairness: Option<&Fairness>,
        now: Timestamp,
    ) -> Vec<JobId> {
        self.advance(now);
        let (max, rate) = (self.max_key_concurrency, self.key_rate);
        if std::mem::take(&mut self.rates_forgotten)
            && let Some(rate) = rate
        {
            self.rate_floor_us = rate.spent(now);
            let keys: Vec<Arc<str>> = self.keys.keys().cloned().collect();
            for key in keys {
                if let Some(flow) = self.keys.get_mut(&key) {
                    flow.rate_tat_us = flow.rate_tat_us.max(self.rate_floor_us);
                    flow.slot_at = rate.allowed(flow.rate_tat_us, now, 1).next_at;
                }
                self.refresh(&key);
            }
        }
        // Only the first `n` open keys can give one of `n` jobs.
        let keys: Vec<Arc<str>> = self
            .open
            .iter()
            .take(n as usize)
            .map(|(_, key)| key.clone())
            .collect();
        let mut lanes: Vec<Lane> = keys
            .iter()
            .map(|key| {
                let flow = &self.keys[key];
                let slots = rate.map_or(u32::MAX, |r| r.allowed(flow.rate_tat_us, now, n).granted);
                Lane {
                    vtime: flow.vtime,
                    weight: fairness.map_or(1, |f| f.weight(key)),
                    available: flow.room(max).min(flow.ready.len() as u32).min(slots),
                }
            })
            .collect();
        let taken = share(&mut lanes, &mut self.clock, n);
        let mut picked = Vec::new();
        for ((key, lane), t) in keys.iter().zip(&lanes).zip(taken) {
            if t == 0 {
                continue;
            }
            let Some(flow) = self.keys.get_mut(key) else {
                continue;
            };
            self.open.remove(&(flow.vtime, key.clone()));
            flow.vtime = lane.vtime;
            if let Some(rate) = rate {
                flow.rate_tat_us = rate.after(flow.rate_tat_us, now, t);
                flow.slot_at = rate.allowed(flow.rate_tat_us, now, 1).next_at;
            }
            picked.extend(flow.ready.iter().take(t as usize).map(|&(.., id)| id));
            self.refresh(key);
        }
        picked
    }
}

#[cfg(test)]
mod tests {
    use std::cmp::Reverse;

    use super::*;

    const T0: Timestamp = Timestamp::from_millis(1_000_000);

    fn job(seq: u8) -> ReadyKey {
        (Reverse(0), T0, i64::from(seq), JobId::from_bytes([seq; 16]))
    }

    /// Leases and finishes every job the index picks, as the writer does.
    fn lease_and_finish(index: &mut FlowIndex, jobs: &[(Arc<str>, ReadyKey)], now: Timestamp) {
        let picked = index.pick(u32::MAX, None, now);
        for (key, ready) in jobs.iter().filter(|(_, r)| picked.contains(&r.3)) {
            index.ready_out(key, ready);
            index.leased_in(key);
            index.leased_out(key);
        }
    }

    #[test]
    fn keys_with_nothing_left_are_forgotten() {
        // One job per key, as a queue keyed by unique ordering keys gets:
        // an index that kept every key served would grow without end.
        let mut index = FlowIndex::new(None, None);
        let jobs: Vec<(Arc<str>, ReadyKey)> = (0..100)
            .map(|k| (Arc::from(format!("k{k}")), job(k)))
            .collect();
        for (key, ready) in &jobs {
            index.ready_in(key, *ready);
        }
        lease_and_finish(&mut index, &jobs, T0);
        assert!(index.keys.is_empty(), "{} keys kept", index.keys.len());
        assert!(index.open.is_empty());
    }

    #[test]
    fn a_rate_limited_key_rests_until_its_rate_has_passed() {
        let rate = Rate {
            limit: 1,
            period_ms: 1000,
            burst: None,
        };
        let mut index = FlowIndex::new(None, Some(rate));
        let key: Arc<str> = Arc::from("acme");
        let jobs = [(key.clone(), job(1)), (key.clone(), job(2))];
        for (key, ready) in &jobs {
            index.ready_in(key, *ready);
        }
        lease_and_finish(&mut index, &jobs, T0);
        assert_eq!(
            index.next_slot(),
            Some(T0.plus_ms(1000)),
            "held by its rate"
        );
        lease_and_finish(&mut index, &jobs, T0.plus_ms(999));
        assert_eq!(index.keys[&key].ready.len(), 1, "no slot before its time");
        lease_and_finish(&mut index, &jobs, T0.plus_ms(1000));
        // Nothing left, but forgetting it now would give it a fresh burst.
        assert!(index.keys.contains_key(&key));
        assert_eq!(index.next_slot(), None);
        index.advance(T0.plus_ms(2000));
        assert!(index.keys.is_empty());
    }
}
