//! The SLOs domain: each objective a queue's or a topic's policy carries,
//! measured (docs/api.md). Objectives are set in the policy
//! (`{"slo":{"wait_p99_ms":50,"success_ratio":0.9995}}`).

use std::collections::BTreeMap;

use keel_core::slo::{Kind, Objective, Severity};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `GET /v1/namespaces/{ns}/slos`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SlosAnswer {
    /// Queues, then topics, by name, then objective (`wait_p99_ms` before
    /// `success_ratio`).
    pub slos: Vec<SloAnswer>,
}

/// One objective of one queue or topic, as measured now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SloAnswer {
    pub kind: Kind,
    /// The queue's or topic's name.
    pub name: String,
    pub objective: Objective,
    /// The objective: milliseconds for `wait_p99_ms`, a ratio for
    /// `success_ratio`.
    pub target: f64,
    /// The measure over the last hour: the p99 wait (ms, interpolated in
    /// its histogram bucket) or the success ratio; null without events.
    pub value: Option<f64>,
    /// Good and all events over the budget's period (30 days): leases (or
    /// deliveries) within the wait; or jobs that ended succeeded of all
    /// that ended (events handed off of all hand-offs tried).
    pub good: u64,
    pub total: u64,
    /// Share of the period's error budget left: 1 untouched, below 0
    /// overspent.
    pub budget_remaining: f64,
    /// How many times faster than the objective allows the budget is
    /// spent, over each window: `5m`, `30m`, `1h`, `6h`, `3d`, `30d`.
    pub burn_rates: BTreeMap<String, f64>,
    /// The three multiwindow alerts and whether each fires.
    pub alerts: Vec<SloAlert>,
}

/// A multiwindow burn-rate alert: it fires while the burn rate over both
/// windows is above the factor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SloAlert {
    pub severity: Severity,
    pub long_window: String,
    pub short_window: String,
    pub factor: f64,
    pub firing: bool,
}
