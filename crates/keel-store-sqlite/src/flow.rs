//! The hot index's flow keys. For a queue with a `key`, it keeps each key's
//! leasable jobs and leased count, and the keys that can give a job now in
//! order of their virtual time in the fair share (`keel_core::flow::fair`),
//! so a lease picks keys without walking any key's backlog: a million jobs
//! of one tenant cost another tenant's job nothing.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use keel_core::JobId;
use keel_core::flow::fair::{Fairness, Lane, share};

use crate::hot::ReadyKey;

#[derive(Debug)]
pub(crate) struct FlowIndex {
    keys: HashMap<Arc<str>, KeyFlow>,
    /// Keys with a leasable job and room under `max_key_concurrency`, by
    /// virtual time.
    open: BTreeSet<(i64, Arc<str>)>,
    /// The start of the last job handed out, in virtual time.
    clock: i64,
    max_key_concurrency: Option<u32>,
}

#[derive(Debug, Default)]
struct KeyFlow {
    ready: BTreeSet<ReadyKey>,
    leased: u32,
    vtime: i64,
}

impl KeyFlow {
    fn room(&self, max: Option<u32>) -> u32 {
        max.map_or(u32::MAX, |max| max.saturating_sub(self.leased))
    }
}

impl FlowIndex {
    pub(crate) fn new(max_key_concurrency: Option<u32>) -> Self {
        FlowIndex {
            keys: HashMap::new(),
            open: BTreeSet::new(),
            clock: 0,
            max_key_concurrency,
        }
    }

    pub(crate) fn ready_in(&mut self, key: &Arc<str>, job: ReadyKey) {
        self.keys.entry(key.clone()).or_default().ready.insert(job);
        self.refresh(key);
    }

    pub(crate) fn ready_out(&mut self, key: &Arc<str>, job: &ReadyKey) {
        if let Some(flow) = self.keys.get_mut(key) {
            flow.ready.remove(job);
        }
        self.refresh(key);
    }

    pub(crate) fn leased_in(&mut self, key: &Arc<str>) {
        self.keys.entry(key.clone()).or_default().leased += 1;
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

    /// Keeps `open` true to the key's state, and forgets a key with nothing
    /// left that is not ahead of the clock (it would restart at the clock).
    fn refresh(&mut self, key: &Arc<str>) {
        let Some(flow) = self.keys.get(key) else {
            return;
        };
        let entry = (flow.vtime, key.clone());
        if !flow.ready.is_empty() && flow.room(self.max_key_concurrency) > 0 {
            self.open.insert(entry);
            return;
        }
        self.open.remove(&entry);
        if flow.ready.is_empty() && flow.leased == 0 && flow.vtime <= self.clock {
            self.keys.remove(key);
        }
    }

    /// Up to `n` jobs in weighted fair share between the open keys, each
    /// key's in its own lease order. The keys' virtual times move on here;
    /// the caller leases the jobs, which takes them out of the index.
    pub(crate) fn pick(&mut self, n: u32, fairness: Option<&Fairness>) -> Vec<JobId> {
        let max = self.max_key_concurrency;
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
                Lane {
                    vtime: flow.vtime,
                    weight: fairness.map_or(1, |f| f.weight(key)),
                    available: flow.room(max).min(flow.ready.len() as u32),
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
            picked.extend(flow.ready.iter().take(t as usize).map(|&(.., id)| id));
            self.refresh(key);
        }
        picked
    }
}
