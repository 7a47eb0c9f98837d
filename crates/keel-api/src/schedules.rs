//! The schedules domain: configuring a schedule, and what it shows of its
//! slots (the next ones, and the ledger of the last ones) (docs/api.md).

use keel_core::Timestamp;
use keel_core::schedule::{Outcome, ScheduleSpec};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `PUT .../schedules/{name}` takes `keel_core::schedule::ScheduleSpec`:
/// `{"cron"|"every_ms","timezone","jitter_ms","start_at","end_at",
/// "overlap","catchup_window_ms","paused","target"}`.
pub use keel_core::schedule::ScheduleSpec as ScheduleRequest;

/// A slot to come, in UTC and in the schedule's zone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FireTime {
    pub utc: Timestamp,
    pub local: String,
}

/// One slot of the ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SlotAnswer {
    pub nominal_time: Timestamp,
    pub fired_at: Option<Timestamp>,
    pub outcome: Outcome,
    /// The job id, event id or run id the fire created.
    pub target_id: Option<String>,
}

/// A schedule as the API shows it: its spec, then what it did and will do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScheduleAnswer {
    pub name: String,
    #[serde(flatten)]
    pub spec: ScheduleSpec,
    /// The next five slots (none once `end_at` has passed).
    pub next_fire_times: Vec<FireTime>,
    /// The ledger, newest first (only `GET` of one schedule fills it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent: Vec<SlotAnswer>,
    /// Slots fired, skipped for overlap and missed, since it was created.
    pub fired: u64,
    pub skipped: u64,
    pub missed: u64,
    /// Slots waiting behind an unfinished fire.
    pub buffered: usize,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScheduleList {
    pub schedules: Vec<ScheduleAnswer>,
}

/// `POST .../schedules/{name}/backfill`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackfillRequest {
    pub from: Timestamp,
    pub to: Timestamp,
}

/// The slots a backfill decided, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BackfillAnswer {
    pub slots: Vec<SlotAnswer>,
}
