//! The runs domain: a run with its steps, pages of runs, and what a cancel
//! may ask for (docs/api.md). Signals, cancel and retry answer with the run.

use std::collections::BTreeMap;

use keel_core::Timestamp;
use keel_core::workflow::{RunId, RunStatus, StepStatus};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// A run as `GET .../runs/{id}` and every run-changing call answer it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Run {
    pub id: RunId,
    pub workflow: String,
    pub version: u32,
    pub status: RunStatus,
    /// True while the run undoes its completed steps.
    pub compensating: bool,
    pub input: Value,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// The run that started this one as a child step.
    pub parent: Option<RunId>,
    pub steps: BTreeMap<String, Step>,
    /// Only in the answer to a start: true when an idempotency key matched an
    /// earlier run, whose id this is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deduplicated: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Step {
    pub state: StepStatus,
    pub attempts: u32,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    /// A fan-out step's items, in input order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<Item>,
    /// In `GET .../runs/{id}`, for a step whose task job is scheduled or
    /// ready: every gate that holds the job (as `GET .../jobs/{id}` says).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Vec<keel_core::gate::Gate>>,
}

/// One item of a fan-out step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Item {
    pub state: StepStatus,
    pub attempts: u32,
    pub output: Option<Value>,
    pub error: Option<String>,
}

/// `GET .../runs`: newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunPage {
    pub runs: Vec<Run>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// The optional body of `POST .../runs/{id}/cancel`.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    /// Undo the completed steps (their compensations) before ending.
    #[serde(default)]
    pub compensate: bool,
}
