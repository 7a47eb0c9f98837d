//! Schedules: configuring them, and firing their slots. The planner in
//! `keel_core::schedule` decides what each due slot does; this module
//! creates what a fire creates and writes the schedule under the revision it
//! read, so a slot fires once whatever crashes, restarts or second nodes
//! come between:
//!
//! - a job target's job is created in the schedule's own write;
//! - an event target's event carries the slot's id, and a run target's run
//!   the slot's idempotency key, both created just before the write: a
//!   write that does not happen (a crash, a lost compare) leaves the slot
//!   due, and its second fire finds the same event or run.
//!
//! The timer that calls [`Schedules::pass`] is `services/timer.rs`.

use std::sync::{Arc, Mutex, PoisonError};

use keel_core::schedule::{self, Cadence, LEDGER_KEEP, Outcome, Plan, ScheduleSpec, ScheduleState};
use keel_core::{Clock, Error, ErrorCode, JobId, JobIdGenerator, Limits, Namespace, Timestamp};
use keel_store::{LedgerEntry, Schedule, ScheduleStore, ScheduleWrite};

use crate::jobs::JobService;
use crate::queues::QueueService;
use crate::rates::OwnedCounts;
use crate::runs::RunService;
use crate::topics::TopicService;
use crate::workflows::Driver;

mod targets;

use targets::Policies;

/// How often a schedule with slots waiting behind an unfinished fire looks
/// whether that fire has ended.
pub const BUFFER_RECHECK_MS: u64 = 1000;
/// Schedules one timer pass reads and writes at once.
pub const PASS_BATCH: u32 = 500;
/// Tries of a trigger, backfill or put against concurrent fires.
const TRIES: usize = 5;

/// Ids for the jobs fires create.
#[derive(Default)]
struct ScheduleIds(Mutex<JobIdGenerator>);

impl ScheduleIds {
    fn next(&self, now: Timestamp) -> JobId {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .next(now)
    }
}

/// What the schedule service is built from.
pub(crate) struct ScheduleDeps {
    pub store: Arc<dyn ScheduleStore>,
    pub clock: Arc<dyn Clock>,
    pub limits: Limits,
    pub jobs: Arc<JobService>,
    pub queues: Arc<QueueService>,
    pub topics: Arc<TopicService>,
    pub workflows: Arc<Driver>,
    pub runs: Arc<RunService>,
}

pub struct ScheduleService {
    store: Arc<dyn ScheduleStore>,
    clock: Arc<dyn Clock>,
    limits: Limits,
    jobs: Arc<JobService>,
    queues: Arc<QueueService>,
    topics: Arc<TopicService>,
    workflows: Arc<Driver>,
    runs: Arc<RunService>,
    ids: ScheduleIds,
}

/// A put's answer: the schedule and whether it was new.
pub struct Put {
    pub schedule: Schedule,
    pub created: bool,
}

impl ScheduleService {
    pub(crate) fn new(deps: ScheduleDeps) -> Self {
        ScheduleService {
            store: deps.store,
            clock: deps.clock,
            limits: deps.limits,
            jobs: deps.jobs,
            queues: deps.queues,
            topics: deps.topics,
            workflows: deps.workflows,
            runs: deps.runs,
            ids: ScheduleIds::default(),
        }
    }

    pub async fn get(&self, namespace: &Namespace, name: &str) -> Result<Schedule, Error> {
        self.store.schedule_get(namespace, name).await
    }

    /// A namespace's schedules, by name.
    pub async fn list(&self, namespace: &Namespace) -> Result<Vec<Schedule>, Error> {
        self.store.schedules_list(namespace).await
    }

    /// Removes a schedule and its ledger.
    pub async fn delete(&self, namespace: &Namespace, name: &str) -> Result<(), Error> {
        self.store.schedule_delete(namespace, name).await
    }

    /// A schedule's newest `limit` ledger rows, newest first.
    pub async fn ledger(
        &self,
        namespace: &Namespace,
        name: &str,
        limit: u32,
    ) -> Result<Vec<LedgerEntry>, Error> {
        self.store.schedule_ledger(namespace, name, limit).await
    }

    /// The earliest due time of any schedule (the timer sleeps until it).
    pub(crate) async fn next_due(&self) -> Result<Option<Timestamp>, Error> {
        self.store.schedules_next_due().await
    }
    /// Creates or updates a schedule. Identical content changes nothing; a
    /// change of its timing plans the next slot from now, one that keeps the
    /// timing keeps the planned slot.
    pub async fn put(
        &self,
        namespace: &Namespace,
        name: &str,
        spec: ScheduleSpec,
    ) -> Result<Put, Error> {
        let cadence = spec.check()?;
        self.target_exists(namespace, &spec).await?;
        for _ in 0..TRIES {
            let now = self.clock.now();
            let existing = match self.store.schedule_get(namespace, name).await {
                Ok(s) => Some(s),
                Err(e) if e.code == ErrorCode::NotFound => None,
                Err(e) => return Err(e),
            };
            let (rev, state) = match &existing {
                Some(old) if old.spec == spec => {
                    return Ok(Put {
                        schedule: old.clone(),
                        created: false,
                    });
                }
                Some(old) if same_timing(&old.spec, &spec) => (old.rev, old.state.clone()),
                Some(old) => {
                    let mut state = old.state.clone();
                    state.next = cadence.next_after(now);
                    (old.rev, state)
                }
                None => (0, ScheduleState::start(&cadence, now)),
            };
            let due_at = state.due_at(name, &spec, now.plus_ms(BUFFER_RECHECK_MS));
            let write = ScheduleWrite {
                namespace: namespace.clone(),
                name: name.to_owned(),
                rev,
                spec: spec.clone(),
                state,
                due_at,
                ledger: Vec::new(),
                jobs: Vec::new(),
            };
            match self.write_one(write, now).await {
                Ok(schedule) => {
                    return Ok(Put {
                        schedule,
                        created: rev == 0,
                    });
                }
                Err(e) if e.code == ErrorCode::Conflict => continue,
                Err(e) => return Err(e),
            }
        }
        Err(busy(name))
    }

    /// Pauses (slots pass as `paused` in the ledger) or resumes.
    pub async fn pause(
        &self,
        namespace: &Namespace,
        name: &str,
        paused: bool,
    ) -> Result<Schedule, Error> {
        for _ in 0..TRIES {
            let mut schedule = self.store.schedule_get(namespace, name).await?;
            if schedule.spec.paused == paused {
                return Ok(schedule);
            }
            schedule.spec.paused = paused;
            let spec = schedule.spec.clone();
            match self.put(namespace, name, spec).await {
                Ok(put) => return Ok(put.schedule),
                Err(e) if e.code == ErrorCode::Conflict => continue,
                Err(e) => return Err(e),
            }
        }
        Err(busy(name))
    }

    /// Fires now, outside the cron (whatever the overlap policy and pause:
    /// someone asked for it). The ledger row's nominal time is now.
    pub async fn trigger(&self, namespace: &Namespace, name: &str) -> Result<LedgerEntry, Error> {
        let nominal = self.clock.now();
        for _ in 0..TRIES {
            let schedule = self.store.schedule_get(namespace, name).await?;
            let mut state = schedule.state.clone();
            state.fired += 1;
            let plan = Plan {
                fire: vec![nominal],
                decided: vec![schedule::Decided {
                    nominal,
                    outcome: Outcome::Fired,
                }],
                cancel_previous: false,
            };
            let now = self.clock.now();
            let write = self
                .effects(&schedule, state, plan, now, &mut Policies::default())
                .await?;
            let entry = write.ledger.last().cloned();
            match self.write_one(write, now).await {
                Ok(_) => {
                    return entry.ok_or_else(|| Error::internal("a trigger wrote no ledger row"));
                }
                Err(e) if e.code == ErrorCode::Conflict => continue,
                Err(e) => return Err(e),
            }
        }
        Err(busy(name))
    }

    /// Fires every slot of `from..=to` (in the past) under the overlap
    /// policy, oldest first; a slot the ledger shows fired is not fired again.
    pub async fn backfill(
        &self,
        namespace: &Namespace,
        name: &str,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<LedgerEntry>, Error> {
        if to < from {
            return Err(Error::invalid("backfill: `to` is before `from`"));
        }
        if to > self.clock.now() {
            return Err(Error::invalid(
                "backfill: `to` is in the future; slots to come fire on their own",
            ));
        }
        for _ in 0..TRIES {
            let schedule = self.store.schedule_get(namespace, name).await?;
            let cadence = schedule.spec.check()?;
            let fired: Vec<Timestamp> = self
                .store
                .schedule_ledger(namespace, name, LEDGER_KEEP as u32)
                .await?
                .into_iter()
                .filter(|e| e.outcome == Outcome::Fired)
                .map(|e| e.nominal_time)
                .collect();
            let slots: Vec<Timestamp> = schedule::slots_between(&cadence, from, to)?
                .into_iter()
                .filter(|s| !fired.contains(s))
                .collect();
            let mut state = schedule.state.clone();
            let busy_now = self.busy(namespace, &schedule.spec, &state).await?;
            let plan = schedule::plan_backfill(&schedule.spec, &mut state, &slots, busy_now);
            let now = self.clock.now();
            let write = self
                .effects(&schedule, state, plan, now, &mut Policies::default())
                .await?;
            let entries = write.ledger.clone();
            match self.write_one(write, now).await {
                Ok(_) => return Ok(entries),
                Err(e) if e.code == ErrorCode::Conflict => continue,
                Err(e) => return Err(e),
            }
        }
        Err(busy(name))
    }

    /// Fires what is due by `now` in up to [`PASS_BATCH`] schedules; true
    /// when the batch was full (more may be due).
    pub async fn pass(&self, now: Timestamp) -> Result<bool, Error> {
        let due = self.store.schedules_due(now, PASS_BATCH).await?;
        let full = due.len() == PASS_BATCH as usize;
        let mut writes = Vec::with_capacity(due.len());
        let mut policies = Policies::default();
        for schedule in &due {
            match self.decide(schedule, now, &mut policies).await {
                Ok(write) => writes.push(write),
                Err(e) => {
                    tracing::warn!(namespace = %schedule.namespace, schedule = %schedule.name, error = %e, "cannot fire a schedule; it tries again in a second");
                    let mut write = self.bare(schedule, schedule.state.clone());
                    write.due_at = Some(now.plus_ms(BUFFER_RECHECK_MS));
                    writes.push(write);
                }
            }
        }
        let fires: Vec<(Namespace, Vec<u64>)> = writes
            .iter()
            .map(|w| (w.namespace.clone(), fire_lateness(w, now)))
            .collect();
        let fallbacks: Vec<ScheduleWrite> = writes.iter().map(missed_instead).collect();
        let counts: Vec<OwnedCounts> = writes.iter().map(|w| OwnedCounts::of(&w.jobs)).collect();
        let answers = self.store.schedules_write(writes, now).await?;
        let mut refused = Vec::new();
        let written = answers.iter().zip(fires).zip(fallbacks).zip(&counts);
        for (((answer, (namespace, late)), fallback), counts) in written {
            match answer {
                Ok(_) => {
                    crate::metrics::schedule_fired(&namespace, &late);
                    self.jobs.owned_enqueued(counts);
                }
                // Another writer moved it (a put, a trigger): it is read
                // again at the next pass.
                Err(e) if e.code == ErrorCode::Conflict => {}
                Err(e) => {
                    tracing::warn!(%namespace, schedule = %fallback.name, error = %e, "the store refused a schedule's jobs; its slots are recorded as missed");
                    refused.push(fallback);
                }
            }
        }
        if !refused.is_empty() {
            // Moving on without the jobs, so a refusal that lasts (a full
            // namespace) neither spins the timer nor passes unseen.
            self.store.schedules_write(refused, now).await?;
        }
        Ok(full)
    }

    /// The write that fires one due schedule's slots.
    async fn decide(
        &self,
        schedule: &Schedule,
        now: Timestamp,
        policies: &mut Policies,
    ) -> Result<ScheduleWrite, Error> {
        let cadence = Cadence::new(&schedule.spec)?;
        let mut state = schedule.state.clone();
        let busy_now = self
            .busy(&schedule.namespace, &schedule.spec, &state)
            .await?;
        let plan = schedule::plan(
            &schedule.name,
            &schedule.spec,
            &cadence,
            &mut state,
            busy_now,
            now,
        );
        self.effects(schedule, state, plan, now, policies).await
    }

    /// Carries out a plan: cancels the previous fire when it says so,
    /// creates each fire's target, and writes every slot to the ledger.
    async fn effects(
        &self,
        schedule: &Schedule,
        mut state: ScheduleState,
        plan: Plan,
        now: Timestamp,
        policies: &mut Policies,
    ) -> Result<ScheduleWrite, Error> {
        if plan.cancel_previous {
            self.cancel_last(&schedule.namespace, state.last.as_ref())
                .await;
        }
        let mut ledger = Vec::with_capacity(plan.decided.len());
        let mut jobs = Vec::new();
        for decided in plan.decided {
            let mut entry = LedgerEntry {
                nominal_time: decided.nominal,
                fired_at: None,
                outcome: decided.outcome,
                target_id: None,
                seq: 0,
            };
            if decided.outcome == Outcome::Fired {
                match self
                    .create(schedule, decided.nominal, now, &mut jobs, policies)
                    .await
                {
                    Ok(target) => {
                        entry.fired_at = Some(now);
                        entry.target_id = Some(target.id().to_owned());
                        state.last = Some(target);
                    }
                    Err(e) => {
                        // The slot is not lost silently: the ledger says
                        // missed and the log says why.
                        tracing::warn!(namespace = %schedule.namespace, schedule = %schedule.name, nominal = %decided.nominal, error = %e, "a schedule's fire could not create its target");
                        entry.outcome = Outcome::Missed;
                        state.fired = state.fired.saturating_sub(1);
                        state.missed += 1;
                    }
                }
            }
            state.ledger_seq += 1;
            entry.seq = state.ledger_seq;
            ledger.push(entry);
        }
        // Rows older than the kept ones would be trimmed in the same write.
        let keep = ledger.len().saturating_sub(LEDGER_KEEP as usize);
        ledger.drain(..keep);
        let mut write = self.bare(schedule, state);
        write.due_at = write.state.due_at(
            &schedule.name,
            &schedule.spec,
            now.plus_ms(BUFFER_RECHECK_MS),
        );
        write.ledger = ledger;
        write.jobs = jobs;
        Ok(write)
    }

    fn bare(&self, schedule: &Schedule, state: ScheduleState) -> ScheduleWrite {
        ScheduleWrite {
            namespace: schedule.namespace.clone(),
            name: schedule.name.clone(),
            rev: schedule.rev,
            spec: schedule.spec.clone(),
            due_at: state.due_at(&schedule.name, &schedule.spec, self.clock.now()),
            state,
            ledger: Vec::new(),
            jobs: Vec::new(),
        }
    }

    async fn write_one(&self, write: ScheduleWrite, now: Timestamp) -> Result<Schedule, Error> {
        let namespace = write.namespace.clone();
        let late = fire_lateness(&write, now);
        let counts = OwnedCounts::of(&write.jobs);
        let answer = self
            .store
            .schedules_write(vec![write], now)
            .await?
            .pop()
            .unwrap_or_else(|| {
                Err(Error::internal(
                    "a schedule write came back without an answer",
                ))
            })?;
        crate::metrics::schedule_fired(&namespace, &late);
        self.jobs.owned_enqueued(&counts);
        Ok(answer)
    }
}

/// How late each fire of a write is (ms), from its slot's due time.
fn fire_lateness(write: &ScheduleWrite, now: Timestamp) -> Vec<u64> {
    write
        .ledger
        .iter()
        .filter(|e| e.outcome == Outcome::Fired)
        .map(|e| {
            let due = e.nominal_time.plus_ms(schedule::jitter(
                &write.name,
                e.nominal_time,
                write.spec.jitter_ms,
            ));
            now.millis_since(due)
        })
        .collect()
}

/// `write` without its jobs: what it fired recorded as missed instead.
fn missed_instead(write: &ScheduleWrite) -> ScheduleWrite {
    let mut fallback = ScheduleWrite {
        namespace: write.namespace.clone(),
        name: write.name.clone(),
        rev: write.rev,
        spec: write.spec.clone(),
        state: write.state.clone(),
        due_at: write.due_at,
        ledger: write.ledger.clone(),
        jobs: Vec::new(),
    };
    if write.jobs.is_empty() {
        return fallback;
    }
    for entry in &mut fallback.ledger {
        if entry.outcome == Outcome::Fired && entry.target_id.is_some() {
            entry.outcome = Outcome::Missed;
            entry.fired_at = None;
            entry.target_id = None;
            fallback.state.fired = fallback.state.fired.saturating_sub(1);
            fallback.state.missed += 1;
        }
    }
    fallback.state.last = None;
    fallback
}

/// Whether two specs have the same slots (so the planned one stands).
fn same_timing(a: &ScheduleSpec, b: &ScheduleSpec) -> bool {
    (&a.cron, a.every_ms, &a.timezone, a.start_at, a.end_at)
        == (&b.cron, b.every_ms, &b.timezone, b.start_at, b.end_at)
}

fn busy(name: &str) -> Error {
    Error::new(
        ErrorCode::Conflict,
        format!("schedule {name:?} kept changing; try again"),
    )
}
