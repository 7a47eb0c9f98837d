//! The journal of one run: its status and, for every step, what happened. This
//! is what the store keeps (as JSON) and what the scheduler reads and writes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{JobId, Timestamp};

/// Runs share the job id scheme: UUIDv7, time-ordered.
pub use crate::id::RunId;

#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    Compensated,
    Cancelled,
}

impl RunStatus {
    pub const ALL: [RunStatus; 5] = [
        RunStatus::Running,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Compensated,
        RunStatus::Cancelled,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Compensated => "compensated",
            RunStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub const fn is_final(self) -> bool {
        !matches!(self, RunStatus::Running)
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    Running,
    Waiting,
    Succeeded,
    Failed,
    Skipped,
    Cancelled,
}

impl StepStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Running => "running",
            StepStatus::Waiting => "waiting",
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
            StepStatus::Cancelled => "cancelled",
        }
    }

    pub const fn is_final(self) -> bool {
        matches!(
            self,
            StepStatus::Succeeded
                | StepStatus::Failed
                | StepStatus::Skipped
                | StepStatus::Cancelled
        )
    }

    pub const fn is_active(self) -> bool {
        matches!(self, StepStatus::Running | StepStatus::Waiting)
    }
}

impl std::fmt::Display for StepStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a running step (or fan-out item) waits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Handle {
    /// A job: a task on the run's namespace, or (`system`) an HTTP call on
    /// Keel's own queue.
    Job { id: JobId, system: bool },
    /// A child run in the same namespace.
    Run { id: RunId },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub state: StepStatus,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<Handle>,
    /// The job or child run of its latest attempt, kept once it ends when
    /// an attempt failed (the dashboard shows them); `None` otherwise, so
    /// that the journal of a run that went well stays as small.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<Handle>,
    /// When a sleep ends, a wait or a step times out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake_at: Option<Timestamp>,
    /// A fan-out's items, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<ItemRecord>,
    /// A `wait_for` event: only events after this seq of its topic count
    /// (the topic's head when the step started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_after: Option<u64>,
}

impl StepRecord {
    pub fn pending() -> Self {
        StepRecord {
            state: StepStatus::Pending,
            attempts: 0,
            output: None,
            error: None,
            started_at: None,
            finished_at: None,
            handle: None,
            last: None,
            wake_at: None,
            items: Vec::new(),
            event_after: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ItemRecord {
    pub value: Value,
    pub state: StepStatus,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<Handle>,
}

/// The step of a parent run that a child run reports to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentRef {
    pub run: RunId,
    pub step: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<usize>,
}

/// Everything a run knows beyond its immutable input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    pub status: RunStatus,
    /// Bumped by every retry of the run, so its new work gets new keys.
    pub generation: u32,
    pub steps: BTreeMap<String, StepRecord>,
    /// Signals received, by name; a `wait_for` that starts later still sees them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub signals: BTreeMap<String, Value>,
    /// Main steps in the order they succeeded: compensations run in reverse.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub completed: Vec<String>,
    /// Set once a step failed: the run is undoing its completed steps.
    #[serde(default)]
    pub compensating: bool,
    /// Compensation steps still to run, next first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compensations: Vec<String>,
    /// Set by a cancel that compensates: once its compensations are done the
    /// run ends `cancelled`, not `compensated`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancelling: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the whole run times out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Timestamp>,
    /// The wake-up already asked for, so it is not asked for twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentRef>,
    /// The trace the run was started in: its steps' jobs carry it, so their
    /// workers' spans are children of that trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<crate::TraceParent>,
}
