//! Schedules: cron or interval slots in a time zone that enqueue a job,
//! publish an event or start a run. This module is what is pure: the spec and
//! its checks, the slot arithmetic ([`Cadence`], on `croner` and `chrono-tz`),
//! and the planner that decides, for the slots that came due, which fire,
//! which wait behind an unfinished fire and which are skipped or missed. The
//! timer and the writes are the engine's and the stores'.
//!
//! Time zones: a fixed-time slot (seconds, minute and hour each one value)
//! that falls in a spring-forward gap fires once, at the first valid instant
//! after it; one in an autumn repeat fires once, at its first occurrence.
//! Interval schedules (`every_ms`, or a cron with a wildcard or step in its
//! time fields) keep their real interval through both. `croner` decides
//! this; the tests below pin it for three zones.

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{Error, QueueName, Timestamp, TopicName, WorkflowName};

mod plan;

pub use plan::{Decided, Plan, plan, plan_backfill, slots_between};

/// The shortest interval schedule.
pub const MIN_EVERY_MS: u64 = 1000;
/// The longest jitter: an hour.
pub const MAX_JITTER_MS: u64 = 3_600_000;
/// Catch-up window when the spec names none: a minute.
pub const DEFAULT_CATCHUP_WINDOW_MS: u64 = 60_000;
/// The longest catch-up window: a week.
pub const MAX_CATCHUP_WINDOW_MS: u64 = 7 * 24 * 3_600_000;
/// However late a pass runs, a slot this close to its time is on time, not
/// caught up: a leader handing over or a long pause is not downtime.
pub const ON_TIME_MS: u64 = 5_000;
/// The most missed slots one pass fires in catch-up; older ones are missed.
pub const MAX_CATCHUP_FIRES: usize = 100;
/// The most slots `buffer_all` holds behind an unfinished fire.
pub const MAX_BUFFERED: usize = 100;
/// The ledger rows kept per schedule (the newest).
pub const LEDGER_KEEP: u64 = 50;
/// The most slots a pass or a backfill walks; past it, a pass jumps ahead.
pub const MAX_SLOTS_PER_PASS: usize = 10_000;
/// The most slots one backfill fires.
pub const MAX_BACKFILL: usize = 1000;

/// What a slot does when the previous fire's job or run is still unfinished.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// The slot is skipped (`skipped_overlap` in the ledger).
    #[default]
    Skip,
    /// One slot waits and fires when the previous fire ends; more are skipped.
    BufferOne,
    /// Up to [`MAX_BUFFERED`] slots wait, in order.
    BufferAll,
    /// The previous fire's job or run is cancelled and the slot fires.
    CancelOther,
    /// The slot fires regardless.
    Allow,
}

/// What a schedule creates at each slot; templates may use `schedule.name`,
/// `schedule.nominal_time` and `schedule.fired_at`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ScheduleTarget {
    /// `{"queue","job":{…job fields}}`: a job, created in the fire's write.
    Job { queue: QueueName, job: Value },
    /// `{"topic","event":{…}}`: an event whose id names the slot, so a
    /// second publish of the slot is a duplicate.
    Event { topic: TopicName, event: Value },
    /// `{"workflow","input"}`: a run whose idempotency key names the slot.
    Run {
        workflow: WorkflowName,
        #[serde(default)]
        input: Value,
    },
}

/// A schedule as configured (`PUT .../schedules/{name}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_ms: Option<u64>,
    #[serde(default = "utc")]
    pub timezone: String,
    #[serde(default)]
    pub jitter_ms: u64,
    #[serde(default)]
    pub start_at: Option<Timestamp>,
    #[serde(default)]
    pub end_at: Option<Timestamp>,
    #[serde(default)]
    pub overlap: Overlap,
    #[serde(default = "default_catchup")]
    pub catchup_window_ms: u64,
    #[serde(default)]
    pub paused: bool,
    pub target: ScheduleTarget,
}

fn utc() -> String {
    "UTC".into()
}

fn default_catchup() -> u64 {
    DEFAULT_CATCHUP_WINDOW_MS
}

impl ScheduleSpec {
    /// Every reason the spec cannot run; its cadence when it can.
    pub fn check(&self) -> Result<Cadence, Error> {
        let cadence = Cadence::new(self)?;
        if self.jitter_ms > MAX_JITTER_MS {
            return Err(Error::invalid(format!(
                "jitter_ms must be at most {MAX_JITTER_MS}"
            )));
        }
        if self.catchup_window_ms > MAX_CATCHUP_WINDOW_MS {
            return Err(Error::invalid(format!(
                "catchup_window_ms must be at most {MAX_CATCHUP_WINDOW_MS}"
            )));
        }
        if let (Some(start), Some(end)) = (self.start_at, self.end_at)
            && end < start
        {
            return Err(Error::invalid("end_at is before start_at"));
        }
        let template = match &self.target {
            ScheduleTarget::Job { job, .. } => {
                if !job.is_object() {
                    return Err(Error::invalid("target.job must be an object of job fields"));
                }
                if job.get("debounce").is_some() {
                    return Err(Error::invalid(
                        "target.job cannot debounce: each slot fires its own job once",
                    ));
                }
                job
            }
            ScheduleTarget::Event { event, .. } => {
                let Some(fields) = event.as_object() else {
                    return Err(Error::invalid("target.event must be an object"));
                };
                if let Some(field) = fields
                    .keys()
                    .find(|k| !["type", "source", "key", "data", "headers"].contains(&k.as_str()))
                {
                    return Err(Error::invalid(format!(
                        "target.event has an unknown field {field:?} (the id is the slot's)"
                    )));
                }
                event
            }
            ScheduleTarget::Run { input, .. } => input,
        };
        let mut found = Vec::new();
        crate::workflow::expr::expressions_in(template, &mut found)
            .map_err(|e| Error::invalid(format!("target template: {e}")))?;
        for source in found {
            let refs = crate::workflow::expr::check(&source)
                .map_err(|e| Error::invalid(format!("target template {source:?}: {e}")))?;
            if let Some(other) = refs.roots.iter().find(|r| r.as_str() != "schedule") {
                return Err(Error::invalid(format!(
                    "schedule templates may only refer to `schedule`, not `{other}`"
                )));
            }
        }
        Ok(cadence)
    }

    /// The target's job fields, event or input for one fire.
    pub fn render(
        &self,
        name: &str,
        nominal: Timestamp,
        fired_at: Timestamp,
    ) -> Result<Value, Error> {
        let template = match &self.target {
            ScheduleTarget::Job { job, .. } => job,
            ScheduleTarget::Event { event, .. } => event,
            ScheduleTarget::Run { input, .. } => input,
        };
        let context = json!({"schedule": {
            "name": name,
            "nominal_time": nominal.to_rfc3339(),
            "fired_at": fired_at.to_rfc3339(),
        }});
        crate::workflow::expr::render(template, &context)
            .map_err(|e| Error::invalid(format!("target template: {e}")))
    }
}

/// The id of the event a slot publishes, and the idempotency key of the run
/// it starts: the slot's name in the store, so a repeat is a duplicate.
pub fn slot_key(name: &str, nominal: Timestamp) -> String {
    format!("keel.schedule/{name}/{}", nominal.as_millis())
}

/// The slots of a schedule: a compiled cron in its zone, or an interval.
#[derive(Clone, Debug)]
pub struct Cadence {
    kind: Kind,
    zone: Tz,
    start_at: Option<Timestamp>,
    end_at: Option<Timestamp>,
}

#[derive(Clone, Debug)]
enum Kind {
    Cron(Box<Cron>),
    Every(u64),
}

impl Cadence {
    pub fn new(spec: &ScheduleSpec) -> Result<Self, Error> {
        let zone = Tz::from_str(&spec.timezone).map_err(|_| {
            Error::invalid(format!(
                "timezone {:?} is not an IANA time zone name",
                spec.timezone
            ))
        })?;
        let kind = match (&spec.cron, spec.every_ms) {
            (Some(cron), None) => {
                let parsed = CronParser::builder()
                    .seconds(Seconds::Optional)
                    .year(Year::Disallowed)
                    .build()
                    .parse(cron)
                    .map_err(|e| Error::invalid(format!("cron {cron:?}: {e}")))?;
                Kind::Cron(Box::new(parsed))
            }
            (None, Some(every)) if every >= MIN_EVERY_MS => Kind::Every(every),
            (None, Some(_)) => {
                return Err(Error::invalid(format!(
                    "every_ms must be at least {MIN_EVERY_MS}"
                )));
            }
            _ => {
                return Err(Error::invalid(
                    "a schedule has exactly one of cron or every_ms",
                ));
            }
        };
        Ok(Cadence {
            kind,
            zone,
            start_at: spec.start_at,
            end_at: spec.end_at,
        })
    }

    /// The first slot strictly after `after`, within `start_at..=end_at`;
    /// `None` once the schedule has ended (or its cron can never match).
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let after = match self.start_at {
            Some(start) if start.as_millis() > after.as_millis() => {
                Timestamp::from_millis(start.as_millis() - 1)
            }
            _ => after,
        };
        let slot = match &self.kind {
            Kind::Every(every) => {
                let anchor = self.start_at.map_or(0, Timestamp::as_millis);
                let every = i64::try_from(*every).unwrap_or(i64::MAX);
                let k = (after.as_millis() - anchor).div_euclid(every) + 1;
                Timestamp::from_millis(anchor.saturating_add(k.saturating_mul(every)))
            }
            Kind::Cron(cron) => {
                let utc = DateTime::<Utc>::from_timestamp_millis(after.as_millis())?;
                let local = self.zone.from_utc_datetime(&utc.naive_utc());
                let next = cron.find_next_occurrence(&local, false).ok()?;
                Timestamp::from_millis(next.timestamp_millis())
            }
        };
        match self.end_at {
            Some(end) if slot > end => None,
            _ => Some(slot),
        }
    }

    /// `t` written in the schedule's zone, with its offset.
    pub fn local(&self, t: Timestamp) -> String {
        DateTime::<Utc>::from_timestamp_millis(t.as_millis())
            .map(|utc| {
                utc.with_timezone(&self.zone)
                    .format("%Y-%m-%dT%H:%M:%S%:z")
                    .to_string()
            })
            .unwrap_or_default()
    }
}

/// A slot's delay under `jitter_ms`: the same on every node and every pass
/// (a hash of the name and the slot), so a slot has one due time.
pub fn jitter(name: &str, nominal: Timestamp, jitter_ms: u64) -> u64 {
    if jitter_ms == 0 {
        return 0;
    }
    // FNV-1a over the name, then the slot: small, stable, evenly spread.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes().chain(nominal.as_millis().to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h % (jitter_ms + 1)
}

/// What became of a slot, as the ledger says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Fired,
    SkippedOverlap,
    Buffered,
    Missed,
    Paused,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Fired => "fired",
            Outcome::SkippedOverlap => "skipped_overlap",
            Outcome::Buffered => "buffered",
            Outcome::Missed => "missed",
            Outcome::Paused => "paused",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Outcome::Fired,
            Outcome::SkippedOverlap,
            Outcome::Buffered,
            Outcome::Missed,
            Outcome::Paused,
        ]
        .into_iter()
        .find(|o| o.as_str() == text)
    }
}

/// What the last fire created, to tell whether it is still unfinished.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "id")]
pub enum FireTarget {
    Job(String),
    Event(String),
    Run(String),
}

impl FireTarget {
    pub fn id(&self) -> &str {
        match self {
            FireTarget::Job(id) | FireTarget::Event(id) | FireTarget::Run(id) => id,
        }
    }
}

/// A schedule's moving parts, stored with it and written only under the
/// revision it was read at.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleState {
    /// The next slot's nominal time; `None` once the schedule has ended.
    pub next: Option<Timestamp>,
    /// What the last fire created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<FireTarget>,
    /// Slots waiting behind an unfinished fire, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buffered: Vec<Timestamp>,
    #[serde(default)]
    pub fired: u64,
    #[serde(default)]
    pub skipped: u64,
    #[serde(default)]
    pub missed: u64,
    /// Ledger rows written so far: the last one's sequence number.
    #[serde(default)]
    pub ledger_seq: u64,
}

impl ScheduleState {
    /// A new schedule's state: its first slot after `now`.
    pub fn start(cadence: &Cadence, now: Timestamp) -> Self {
        ScheduleState {
            next: cadence.next_after(now),
            ..ScheduleState::default()
        }
    }

    /// When the timer must look at the schedule next: its next slot (with
    /// jitter), or sooner while slots wait behind a fire (`recheck`).
    pub fn due_at(&self, name: &str, spec: &ScheduleSpec, recheck: Timestamp) -> Option<Timestamp> {
        let slot = self
            .next
            .map(|next| next.plus_ms(jitter(name, next, spec.jitter_ms)));
        match (slot, self.buffered.is_empty()) {
            (slot, true) => slot,
            (Some(slot), false) => Some(slot.min(recheck)),
            (None, false) => Some(recheck),
        }
    }
}

#[cfg(test)]
mod tests;
