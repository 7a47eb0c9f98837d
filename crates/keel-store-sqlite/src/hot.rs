//! The hot index: the scheduling facts of every unfinished job, in memory.
//!
//! SQLite holds the truth; this index answers "what can be leased next", "what
//! is due" and "which lease ran out" without touching disk. It is rebuilt from
//! the `jobs` table at open (and after a failed transaction), and changed only by
//! the writer thread, next to the SQL that makes the same change durable.
//!
//! Every change to a job goes through [`Hot::update`]: `unindex` takes the job
//! out of every structure its old state put it in, the transition runs, `index`
//! puts it back by its new state. One pair of functions keeps all structures in
//! step.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use keel_core::gate::WaitFacts;
use keel_core::{
    Backoff, Error, JobId, JobLifecycle, JobState, Namespace, QueuePolicy, QueueRef, Timestamp,
};
use keel_store::JobOwner;

use crate::flow::FlowIndex;
use crate::unsynced::{Readiness, Unsynced};

pub(crate) type QueueIdx = usize;

/// What the index keeps of an unfinished job: 80 bytes, boxed (a million
/// queued jobs take this index's memory, docs/performance.md).
#[derive(Clone, Debug)]
pub(crate) struct LiveJob {
    pub seq: i64,
    pub life: JobLifecycle,
    /// Its [`QueueIdx`]; 32 bits, so that the job fits 80 bytes.
    pub queue: u32,
    /// At most 24 h, so 32 bits hold it.
    pub lease_ms: u32,
    /// Index into [`Hot::backoff`]: jobs share a handful of policies, and a
    /// million queued jobs should not carry a million copies.
    pub backoff: u32,
    pub priority: i16,
    /// Boxed: most jobs have none of them.
    pub keys: Option<Box<JobKeys>>,
}

/// What only some jobs carry.
#[derive(Clone, Debug, Default)]
pub(crate) struct JobKeys {
    pub ordering_key: Option<Arc<str>>,
    /// Its flow key under its queue's `key`, set at enqueue and again when
    /// the `key` setting changes (none: `""`).
    pub flow_key: Option<Arc<str>>,
    /// What the job works for (a run's step, ...): its owner hears when the
    /// job ends.
    pub owner: Option<JobOwner>,
}

impl JobKeys {
    /// `None` when the job carries none of them.
    pub(crate) fn boxed(
        ordering_key: Option<Arc<str>>,
        flow_key: Option<Arc<str>>,
        owner: Option<JobOwner>,
    ) -> Option<Box<JobKeys>> {
        (ordering_key.is_some() || flow_key.is_some() || owner.is_some()).then(|| {
            Box::new(JobKeys {
                ordering_key,
                flow_key,
                owner,
            })
        })
    }
}

impl LiveJob {
    pub(crate) fn queue_idx(&self) -> QueueIdx {
        self.queue as QueueIdx
    }

    pub(crate) fn ordering_key(&self) -> Option<&Arc<str>> {
        self.keys.as_ref().and_then(|k| k.ordering_key.as_ref())
    }

    pub(crate) fn flow_key(&self) -> Option<&Arc<str>> {
        self.keys.as_ref().and_then(|k| k.flow_key.as_ref())
    }

    pub(crate) fn owner(&self) -> Option<&JobOwner> {
        self.keys.as_ref().and_then(|k| k.owner.as_ref())
    }

    pub(crate) fn set_flow_key(&mut self, flow_key: Option<Arc<str>>) {
        let keys = self.keys.take().map(|k| *k).unwrap_or_default();
        self.keys = JobKeys::boxed(keys.ordering_key, flow_key, keys.owner);
    }
}

/// Lease order: highest priority, then oldest `run_at`, then enqueue order.
pub(crate) type ReadyKey = (Reverse<i16>, Timestamp, i64, JobId);

fn ready_key(id: JobId, job: &LiveJob) -> ReadyKey {
    (Reverse(job.priority), job.life.run_at, job.seq, id)
}

fn flow_key(job: &LiveJob) -> Arc<str> {
    job.flow_key().cloned().unwrap_or_else(|| Arc::from(""))
}

#[derive(Debug)]
pub(crate) struct QueueHot {
    pub queue: QueueRef,
    pub policy: QueuePolicy,
    pub paused: bool,
    /// Jobs that can be leased now (ready, and first of their ordering key).
    pub ready: BTreeSet<ReadyKey>,
    /// Jobs per state, finished states included.
    pub counts: [u64; 6],
    /// The rate limit's theoretical arrival time, in µs. In memory only:
    /// `None` after a restart until the first lease, which then assumes the
    /// whole burst was spent just before it (`Rate::spent`), so a restart
    /// never lets more through than the limit.
    pub rate_tat_us: Option<i64>,
    /// Unfinished jobs per ordering key: the one that holds the key (only it
    /// runs) and the others in enqueue order.
    ordering: HashMap<Arc<str>, KeyGroup>,
    /// The ready and leased jobs per flow key, when the policy has a `key`.
    pub flow: Option<FlowIndex>,
}

/// An ordering key's unfinished jobs. The holder keeps the key until it
/// finishes; then the oldest waiting job takes it. A job redriven while the
/// key is held waits, though it is older: one job of a key at a time.
#[derive(Debug)]
struct KeyGroup {
    holder: JobId,
    waiting: BTreeSet<(i64, JobId)>,
}

impl QueueHot {
    pub(crate) fn count(&self, state: JobState) -> u64 {
        self.counts[state as usize]
    }
}

#[derive(Debug, Default)]
pub(crate) struct Hot {
    /// Boxed: a table of a million entries sits half empty after it grows,
    /// and a bucket is then a pointer rather than a whole job (1M queued
    /// jobs: 433 → see docs/performance.md).
    pub jobs: HashMap<JobId, Box<LiveJob>>,
    backoffs: Vec<Backoff>,
    backoff_ids: HashMap<(u64, u64, u64, bool), u32>,
    pub queues: Vec<QueueHot>,
    queue_ids: HashMap<QueueRef, QueueIdx>,
    pub scheduled: BTreeSet<(Timestamp, i64, JobId)>,
    pub leases: BTreeSet<(Timestamp, JobId)>,
    unfinished: HashMap<Namespace, u64>,
    /// Queues that gained leasable jobs since the last [`Hot::take_woken`],
    /// with how many.
    woken: HashMap<QueueIdx, usize>,
    /// What made jobs leasable in commits not known durable yet: a lease
    /// of one waits for that commit's sync (`write_releasing` in writer.rs).
    pub unsynced: Unsynced,
}

impl Hot {
    pub(crate) fn queue_idx(&self, queue: &QueueRef) -> Option<QueueIdx> {
        self.queue_ids.get(queue).copied()
    }

    /// What could hold an unfinished job back (`keel_core::gate`); 404 for
    /// a job not indexed (finished, or unknown) or of another namespace.
    pub(crate) fn wait_facts(&self, namespace: &Namespace, id: JobId) -> Result<WaitFacts, Error> {
        let job = self.jobs.get(&id).ok_or_else(|| Error::job_not_found(id))?;
        let queue = &self.queues[job.queue_idx()];
        if &queue.queue.namespace != namespace {
            return Err(Error::job_not_found(id));
        }
        let key_holder = job
            .ordering_key()
            .and_then(|key| queue.ordering.get(key))
            .map(|group| group.holder)
            .filter(|holder| *holder != id);
        let key = job.flow_key().map(|k| &**k).unwrap_or_default();
        Ok(WaitFacts {
            state: job.life.state,
            run_at: job.life.run_at,
            paused: queue.paused,
            leased: queue.count(JobState::Leased),
            max_concurrency: queue.policy.max_concurrency,
            rate_limit: queue.policy.rate_limit,
            rate_tat_us: queue.rate_tat_us.unwrap_or_default(),
            ordering_key: job.ordering_key().map(|k| k.to_string()),
            key_holder,
            flow_key: queue.flow.as_ref().map(|_| key.to_owned()),
            key_leased: queue
                .flow
                .as_ref()
                .map_or(0, |flow| u64::from(flow.leased(key))),
            max_key_concurrency: queue.policy.max_key_concurrency,
            key_rate_limit: queue.policy.key_rate_limit,
            key_rate_tat_us: queue.flow.as_ref().map_or(0, |flow| flow.rate_tat_us(key)),
            fair_position: queue
                .flow
                .as_ref()
                .filter(|_| queue.policy.fairness.is_some() && job.life.state == JobState::Ready)
                .map(|flow| flow.position(key, &ready_key(id, job))),
        })
    }

    /// The queue's index entry, created with the default policy on first use.
    pub(crate) fn queue_entry(&mut self, queue: &QueueRef) -> QueueIdx {
        if let Some(idx) = self.queue_ids.get(queue) {
            return *idx;
        }
        let idx = self.queues.len();
        self.queues.push(QueueHot {
            queue: queue.clone(),
            policy: QueuePolicy::default(),
            paused: false,
            ready: BTreeSet::new(),
            counts: [0; 6],
            rate_tat_us: Some(0),
            ordering: HashMap::new(),
            flow: None,
        });
        self.queue_ids.insert(queue.clone(), idx);
        idx
    }

    /// The shared index of a backoff policy, added on first use.
    pub(crate) fn intern_backoff(&mut self, backoff: Backoff) -> u32 {
        let key = (
            backoff.base_ms,
            backoff.max_ms,
            backoff.factor.to_bits(),
            backoff.jitter,
        );
        if let Some(id) = self.backoff_ids.get(&key) {
            return *id;
        }
        let id = self.backoffs.len() as u32;
        self.backoffs.push(backoff);
        self.backoff_ids.insert(key, id);
        id
    }

    pub(crate) fn backoff(&self, id: u32) -> Backoff {
        self.backoffs.get(id as usize).copied().unwrap_or_default()
    }

    pub(crate) fn unfinished(&self, namespace: &Namespace) -> u64 {
        self.unfinished.get(namespace).copied().unwrap_or(0)
    }

    /// Adds an unfinished job (enqueued, redriven, or loaded at open).
    pub(crate) fn insert(&mut self, id: JobId, job: LiveJob) {
        let namespace = &self.queues[job.queue_idx()].queue.namespace;
        *self.unfinished.entry(namespace.clone()).or_default() += 1;
        let queue = job.queue_idx();
        let key = job.ordering_key().cloned();
        let seq = job.seq;
        self.unsynced.inserted(id, seq);
        self.jobs.insert(id, Box::new(job));
        match key {
            None => self.index(id),
            Some(key) => {
                let leased = self.jobs.get(&id).map(|j| j.life.state) == Some(JobState::Leased);
                let holder = self.queues[queue].ordering.get(&key).map(|g| g.holder);
                match holder {
                    None => {
                        let group = KeyGroup {
                            holder: id,
                            waiting: BTreeSet::new(),
                        };
                        self.queues[queue].ordering.insert(key, group);
                        self.index(id);
                    }
                    // Loading at open, in enqueue order: a leased job holds
                    // its key even if an older (redriven) job waits.
                    Some(holder) if leased => {
                        let held = self.jobs.get(&holder).map(|j| j.seq);
                        self.unindex(holder);
                        if let (Some(group), Some(held)) =
                            (self.queues[queue].ordering.get_mut(&key), held)
                        {
                            group.holder = id;
                            group.waiting.insert((held, holder));
                        }
                        self.index(holder);
                        self.index(id);
                    }
                    Some(_) => {
                        if let Some(group) = self.queues[queue].ordering.get_mut(&key) {
                            group.waiting.insert((seq, id));
                        }
                        self.index(id);
                    }
                }
            }
        }
    }

    /// Runs a transition on a job, keeping every structure in step. `None` when
    /// the job is not in the index (finished or unknown).
    pub(crate) fn update<R>(
        &mut self,
        id: JobId,
        transition: impl FnOnce(&mut LiveJob) -> R,
    ) -> Option<R> {
        if !self.jobs.contains_key(&id) {
            return None;
        }
        self.unindex(id);
        let result = self.jobs.get_mut(&id).map(|job| transition(job));
        self.index(id);
        result
    }

    fn unindex(&mut self, id: JobId) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        let queue = &mut self.queues[job.queue_idx()];
        queue.counts[job.life.state as usize] -= 1;
        match job.life.state {
            JobState::Scheduled => {
                self.scheduled.remove(&(job.life.run_at, job.seq, id));
            }
            JobState::Ready => {
                let ready = ready_key(id, job);
                if queue.ready.remove(&ready)
                    && let Some(flow) = &mut queue.flow
                {
                    flow.ready_out(&flow_key(job), &ready);
                }
            }
            JobState::Leased => {
                if let Some(expires_at) = job.life.lease_expires_at {
                    self.leases.remove(&(expires_at, id));
                }
                if let Some(flow) = &mut queue.flow
                    && flow.leased_out(&flow_key(job))
                {
                    *self.woken.entry(job.queue_idx()).or_default() += 1;
                }
                // A lease ending under a full concurrency bound makes room:
                // a parked leaser may take the next ready job now.
                let was_full = queue.policy.max_concurrency.is_some_and(|max| {
                    queue.counts[JobState::Leased as usize] + 1 == u64::from(max)
                });
                if was_full && !queue.ready.is_empty() {
                    *self.woken.entry(job.queue_idx()).or_default() += 1;
                }
            }
            JobState::Succeeded | JobState::Dead | JobState::Cancelled => {}
        }
    }

    fn index(&mut self, id: JobId) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        let queue_idx = job.queue_idx();
        let queue = &mut self.queues[queue_idx];
        queue.counts[job.life.state as usize] += 1;
        match job.life.state {
            JobState::Scheduled => {
                self.scheduled.insert((job.life.run_at, job.seq, id));
            }
            JobState::Ready => {
                let first_of_key = job
                    .ordering_key()
                    .is_none_or(|key| queue.ordering.get(key).map(|g| g.holder) == Some(id));
                if first_of_key {
                    self.unsynced.changed(id, job.seq);
                    let ready = ready_key(id, job);
                    queue.ready.insert(ready);
                    if let Some(flow) = &mut queue.flow {
                        flow.ready_in(&flow_key(job), ready);
                    }
                    *self.woken.entry(queue_idx).or_default() += 1;
                }
            }
            JobState::Leased => {
                if let Some(expires_at) = job.life.lease_expires_at {
                    self.leases.insert((expires_at, id));
                }
                if let Some(flow) = &mut queue.flow {
                    flow.leased_in(&flow_key(job));
                }
            }
            JobState::Succeeded | JobState::Dead | JobState::Cancelled => self.forget(id),
        }
    }

    /// A job reached a final state: it leaves the index, and the next job of its
    /// ordering key (if any) may become leasable.
    fn forget(&mut self, id: JobId) {
        let Some(job) = self.jobs.remove(&id) else {
            return;
        };
        let queue = &mut self.queues[job.queue_idx()];
        if let Some(n) = self.unfinished.get_mut(&queue.queue.namespace) {
            *n -= 1;
        }
        let Some(key) = job.ordering_key().cloned() else {
            return;
        };
        let Some(group) = queue.ordering.get_mut(&key) else {
            return;
        };
        if group.holder != id {
            group.waiting.remove(&(job.seq, id));
            return;
        }
        match group.waiting.pop_first() {
            None => {
                queue.ordering.remove(&key);
            }
            Some((_, next)) => {
                // The oldest waiting job takes the key: if it is ready, it
                // becomes leasable now.
                group.holder = next;
                self.unindex(next);
                self.index(next);
            }
        }
    }

    /// Counts a finished job that only exists on disk (at open) or leaves disk (prune).
    pub(crate) fn count_finished(&mut self, queue: QueueIdx, state: JobState, delta: i64) {
        let count = &mut self.queues[queue].counts[state as usize];
        *count = count.saturating_add_signed(delta);
    }

    /// Sets a queue's policy; a change of its flow key or key bound indexes
    /// its jobs by key afresh (from the keys `Writer::rekey` gave them).
    pub(crate) fn set_policy(&mut self, idx: QueueIdx, policy: QueuePolicy) {
        let queue = &mut self.queues[idx];
        let keyed = |p: &QueuePolicy| (p.key.clone(), p.max_key_concurrency, p.key_rate_limit);
        let rekey =
            keyed(&queue.policy) != keyed(&policy) || queue.flow.is_none() && policy.key.is_some();
        queue.policy = policy;
        if !rekey {
            return;
        }
        let Some(_) = &queue.policy.key else {
            queue.flow = None;
            return;
        };
        let mut flow = FlowIndex::new(
            queue.policy.max_key_concurrency,
            queue.policy.key_rate_limit,
        );
        for &ready in &queue.ready {
            if let Some(job) = self.jobs.get(&ready.3) {
                flow.ready_in(&flow_key(job), ready);
            }
        }
        for job in self.jobs.values() {
            if job.queue_idx() == idx && job.life.state == JobState::Leased {
                flow.leased_in(&flow_key(job));
            }
        }
        self.queues[idx].flow = Some(flow);
        let ready = self.queues[idx].ready.len();
        if ready > 0 {
            self.woken.insert(idx, ready);
        }
    }

    /// Pauses or resumes leasing; resuming wakes leasers if jobs wait.
    pub(crate) fn set_paused(&mut self, queue: QueueIdx, paused: bool) {
        self.queues[queue].paused = paused;
        let ready = self.queues[queue].ready.len();
        if !paused && ready > 0 {
            self.woken.insert(queue, ready);
        }
    }

    /// The earliest future `run_at` or lease expiry.
    pub(crate) fn next_due(&self) -> Option<Timestamp> {
        let scheduled = self.scheduled.first().map(|&(t, _, _)| t);
        let lease = self.leases.first().map(|&(t, _)| t);
        scheduled.into_iter().chain(lease).min()
    }

    /// Whether what made `id` leasable is durable, committed or only open.
    pub(crate) fn readiness(&self, id: &JobId) -> Readiness {
        self.jobs
            .get(id)
            .map_or(Readiness::Open, |job| self.unsynced.readiness(id, job.seq))
    }

    /// A job changed in the open transaction in a way its lease shows.
    pub(crate) fn changed(&mut self, id: JobId) {
        if let Some(job) = self.jobs.get(&id) {
            self.unsynced.changed(id, job.seq);
        }
    }

    /// The highest `seq` of the jobs indexed.
    pub(crate) fn max_seq(&self) -> i64 {
        self.jobs.values().map(|job| job.seq).max().unwrap_or(0)
    }

    pub(crate) fn take_woken(&mut self) -> Vec<(QueueIdx, usize)> {
        self.woken.drain().collect()
    }
}

#[cfg(test)]
mod tests {
    /// A million queued jobs hold a million of these (and a table of
    /// pointers to them): a field added here costs that much memory.
    #[test]
    fn a_live_job_fits_80_bytes() {
        assert!(std::mem::size_of::<super::LiveJob>() <= 80);
    }
}
