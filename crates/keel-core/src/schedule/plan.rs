//! The schedule planner: for the slots that came due, which fire, which wait
//! behind an unfinished fire, which are skipped, missed or paused (the
//! overlap policy and the catch-up window), and the slots of a backfill.

use super::{
    Cadence, MAX_BACKFILL, MAX_BUFFERED, MAX_CATCHUP_FIRES, MAX_SLOTS_PER_PASS, ON_TIME_MS,
    Outcome, Overlap, ScheduleSpec, ScheduleState, jitter,
};
use crate::{Error, Timestamp};

/// One slot's decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decided {
    pub nominal: Timestamp,
    pub outcome: Outcome,
}

/// What a pass does: the slots to fire (in order), every slot's outcome,
/// and whether the previous fire is to be cancelled first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub fire: Vec<Timestamp>,
    pub decided: Vec<Decided>,
    pub cancel_previous: bool,
}

/// Decides the slots that came due by `now`: first a buffered slot whose
/// wait is over, then every slot from `state.next` on. `busy`: the last
/// fire's job or run is unfinished. Updates `state` (next slot, buffer,
/// counters); the caller writes it with the plan's effects.
pub fn plan(
    name: &str,
    spec: &ScheduleSpec,
    cadence: &Cadence,
    state: &mut ScheduleState,
    busy: bool,
    now: Timestamp,
) -> Plan {
    let mut deciding = Deciding::new(spec.overlap, busy, &mut state.buffered);
    deciding.release();
    let mut walked = 0;
    let mut caught_up = 0;
    while let Some(slot) = state.next {
        if slot.plus_ms(jitter(name, slot, spec.jitter_ms)) > now {
            break;
        }
        walked += 1;
        if walked > MAX_SLOTS_PER_PASS {
            // Long downtime under a fast cadence: what lies before the
            // catch-up window is missed without walking it slot by slot.
            let from = Timestamp::from_millis(now.as_millis() - window(spec) as i64);
            state.next = cadence.next_after(from.max(slot));
            state.missed += 1;
            walked = 0;
            continue;
        }
        let late = now.millis_since(slot);
        let outcome = if spec.paused {
            Outcome::Paused
        } else if late > window(spec) || (late > ON_TIME_MS && caught_up >= MAX_CATCHUP_FIRES) {
            Outcome::Missed
        } else {
            if late > ON_TIME_MS {
                caught_up += 1;
            }
            deciding.slot(slot)
        };
        if matches!(outcome, Outcome::Paused | Outcome::Missed) {
            deciding.plan.decided.push(Decided {
                nominal: slot,
                outcome,
            });
        }
        state.next = cadence.next_after(slot);
    }
    let plan = deciding.finish();
    count(state, &plan);
    plan
}

/// Decides the slots of a backfill (oldest first) under the overlap policy.
pub fn plan_backfill(
    spec: &ScheduleSpec,
    state: &mut ScheduleState,
    slots: &[Timestamp],
    busy: bool,
) -> Plan {
    let mut deciding = Deciding::new(spec.overlap, busy, &mut state.buffered);
    for &slot in slots {
        deciding.slot(slot);
    }
    let plan = deciding.finish();
    count(state, &plan);
    plan
}

/// The slots of `from..=to`, oldest first, at most [`MAX_BACKFILL`].
pub fn slots_between(
    cadence: &Cadence,
    from: Timestamp,
    to: Timestamp,
) -> Result<Vec<Timestamp>, Error> {
    let mut slots = Vec::new();
    let mut cursor = cadence.next_after(Timestamp::from_millis(from.as_millis() - 1));
    while let Some(slot) = cursor.filter(|s| *s <= to) {
        if slots.len() == MAX_BACKFILL {
            return Err(Error::invalid(format!(
                "the range holds more than {MAX_BACKFILL} slots; backfill it in parts"
            )));
        }
        slots.push(slot);
        cursor = cadence.next_after(slot);
    }
    Ok(slots)
}

fn window(spec: &ScheduleSpec) -> u64 {
    spec.catchup_window_ms.max(ON_TIME_MS)
}

fn count(state: &mut ScheduleState, plan: &Plan) {
    for d in &plan.decided {
        match d.outcome {
            Outcome::Fired => state.fired += 1,
            Outcome::SkippedOverlap => state.skipped += 1,
            Outcome::Missed => state.missed += 1,
            Outcome::Buffered | Outcome::Paused => {}
        }
    }
}

/// The overlap policy applied slot by slot.
struct Deciding<'a> {
    overlap: Overlap,
    /// Whether the last fire (before this pass, or in it) is unfinished.
    busy: bool,
    buffered: &'a mut Vec<Timestamp>,
    plan: Plan,
}

impl<'a> Deciding<'a> {
    fn new(overlap: Overlap, busy: bool, buffered: &'a mut Vec<Timestamp>) -> Self {
        Deciding {
            overlap,
            busy,
            buffered,
            plan: Plan::default(),
        }
    }

    /// The previous fire has ended: the oldest buffered slot fires.
    fn release(&mut self) {
        if !self.busy && !self.buffered.is_empty() {
            let slot = self.buffered.remove(0);
            self.fire(slot);
        }
    }

    fn slot(&mut self, slot: Timestamp) -> Outcome {
        let outcome = if !self.busy || self.overlap == Overlap::Allow {
            Outcome::Fired
        } else {
            match self.overlap {
                Overlap::Skip | Overlap::Allow => Outcome::SkippedOverlap,
                Overlap::BufferOne if self.buffered.is_empty() => Outcome::Buffered,
                Overlap::BufferAll if self.buffered.len() < MAX_BUFFERED => Outcome::Buffered,
                Overlap::BufferOne | Overlap::BufferAll => Outcome::SkippedOverlap,
                Overlap::CancelOther => {
                    // A fire of this same pass gives way; one from before is
                    // cancelled once this pass is written.
                    match self.plan.fire.pop() {
                        Some(earlier) => {
                            if let Some(d) =
                                self.plan.decided.iter_mut().find(|d| d.nominal == earlier)
                            {
                                d.outcome = Outcome::SkippedOverlap;
                            }
                        }
                        None => self.plan.cancel_previous = true,
                    }
                    Outcome::Fired
                }
            }
        };
        match outcome {
            Outcome::Fired => self.fire(slot),
            Outcome::Buffered => {
                self.buffered.push(slot);
                self.plan.decided.push(Decided {
                    nominal: slot,
                    outcome,
                });
            }
            _ => self.plan.decided.push(Decided {
                nominal: slot,
                outcome,
            }),
        }
        outcome
    }

    fn fire(&mut self, slot: Timestamp) {
        self.busy = true;
        self.plan.fire.push(slot);
        self.plan.decided.push(Decided {
            nominal: slot,
            outcome: Outcome::Fired,
        });
    }

    fn finish(self) -> Plan {
        self.plan
    }
}
