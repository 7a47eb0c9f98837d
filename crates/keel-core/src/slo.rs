//! Service level objectives: what a queue's or a topic's policy may
//! promise, and the arithmetic of error budgets and burn rates behind the
//! SRE workbook's multiwindow, multi-burn-rate alerts.
//!
//! Two objectives, each a ratio of good events to all events:
//!
//! - `wait_p99_ms`: 99 % of jobs are leased within this many milliseconds of
//!   becoming ready; for a topic, 99 % of events reach each subscription
//!   (handed to its target, or fetched by a consumer) within this long of
//!   their publish. Each lease or delivery is an event; it is good when its
//!   wait is at most the threshold, so the error budget is 1 %.
//! - `success_ratio`: this fraction of the jobs that end, end succeeded.
//!   Each job that succeeds or dies (attempts spent) is an event; a retried
//!   attempt is not, and neither is a cancel. For a topic: this fraction of
//!   the events handed to subscription targets are handed off at the first
//!   try (each event of a hand-off that fails counts, each time it fails).
//!   The budget is `1 - ratio`.
//!
//! The engine counts events per minute ([`Tally`]), the stores add the
//! minutes of every node together, and [`evaluate`] turns the sums over the
//! [`WINDOWS`] into burn rates (how many times faster than the objective
//! allows the budget is being spent) and the [`ALERTS`] that fire. The
//! budget is that of [`PERIOD_MINUTES`] (30 days), the period the workbook's
//! factors assume: a 14.4x burn over an hour spends 2 % of it.

use serde::{Deserialize, Serialize};

use crate::{Error, Namespace, QueueRef, Timestamp, TopicName};

/// A queue's or a topic's objectives; either may be absent, not both.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    /// 99 % of jobs wait at most this long (ms) between ready and leased;
    /// of a topic's events, between their publish and each delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 3_600_000)]
    pub wait_p99_ms: Option<u64>,
    /// This fraction of ended jobs succeed; of a topic's hand-offs to
    /// subscription targets (strictly between 0 and 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(exclusive_minimum = 0, exclusive_maximum = 1)]
    pub success_ratio: Option<f64>,
}

/// Longest wait objective: an hour.
pub const MAX_WAIT_MS: u64 = 3_600_000;

impl Slo {
    pub fn check(&self) -> Result<(), Error> {
        if self.wait_p99_ms.is_none() && self.success_ratio.is_none() {
            return Err(Error::invalid(
                "slo needs wait_p99_ms or success_ratio (or both)",
            ));
        }
        if let Some(ms) = self.wait_p99_ms
            && !(1..=MAX_WAIT_MS).contains(&ms)
        {
            return Err(Error::invalid(format!(
                "slo.wait_p99_ms must be between 1 and {MAX_WAIT_MS}"
            )));
        }
        if let Some(r) = self.success_ratio
            && !(r > 0.0 && r < 1.0)
        {
            return Err(Error::invalid(
                "slo.success_ratio must be between 0 and 1, both excluded",
            ));
        }
        Ok(())
    }

    /// The objectives set, each with its target.
    pub fn objectives(&self) -> impl Iterator<Item = (Objective, f64)> {
        let wait = self.wait_p99_ms.map(|ms| (Objective::WaitP99Ms, ms as f64));
        let success = self.success_ratio.map(|r| (Objective::SuccessRatio, r));
        wait.into_iter().chain(success)
    }
}

/// What carries objectives.
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
pub enum Kind {
    Queue,
    Topic,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Queue => "queue",
            Kind::Topic => "topic",
        }
    }
}

/// A queue or a topic of a namespace, as objectives are counted by.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subject {
    pub namespace: Namespace,
    pub kind: Kind,
    pub name: String,
}

impl Subject {
    pub fn queue(queue: &QueueRef) -> Subject {
        Subject {
            namespace: queue.namespace.clone(),
            kind: Kind::Queue,
            name: queue.queue.to_string(),
        }
    }

    pub fn topic(namespace: &Namespace, topic: &TopicName) -> Subject {
        Subject {
            namespace: namespace.clone(),
            kind: Kind::Topic,
            name: topic.to_string(),
        }
    }
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} {}", self.namespace, self.kind.as_str(), self.name)
    }
}

/// Which of a [`Slo`]'s objectives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    WaitP99Ms,
    SuccessRatio,
}

impl Objective {
    pub fn as_str(self) -> &'static str {
        match self {
            Objective::WaitP99Ms => "wait_p99_ms",
            Objective::SuccessRatio => "success_ratio",
        }
    }

    /// The share of events allowed to be bad.
    pub fn budget(self, target: f64) -> f64 {
        match self {
            Objective::WaitP99Ms => 0.01,
            Objective::SuccessRatio => 1.0 - target,
        }
    }

    /// Good and all events of this objective in `counts`.
    fn events(self, counts: &Counts) -> (u64, u64) {
        match self {
            Objective::WaitP99Ms => (counts.waits - counts.slow.min(counts.waits), counts.waits),
            Objective::SuccessRatio => (counts.succeeded, counts.succeeded + counts.failed),
        }
    }
}

/// Events of one subject over some minutes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Jobs leased; events delivered to a subscription.
    pub waits: u64,
    /// Of those, later than the wait objective in force when counted.
    pub slow: u64,
    /// Jobs that ended succeeded; events handed off.
    pub succeeded: u64,
    /// Jobs that ended dead; events of hand-offs that failed.
    pub failed: u64,
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        self.waits += other.waits;
        self.slow += other.slow;
        self.succeeded += other.succeeded;
        self.failed += other.failed;
    }
}

/// Upper bounds (ms) of the wait histogram's buckets; one more bucket holds
/// the longer waits.
pub const WAIT_BOUNDS_MS: [u64; 16] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 30_000, 60_000, 300_000,
];
pub const BUCKETS: usize = WAIT_BOUNDS_MS.len() + 1;

/// Waits counted by bucket: enough to tell a p99 within its bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Histogram(pub [u64; BUCKETS]);

impl Default for Histogram {
    fn default() -> Self {
        Histogram([0; BUCKETS])
    }
}

impl Histogram {
    pub fn record(&mut self, wait_ms: u64) {
        let bucket = WAIT_BOUNDS_MS.partition_point(|&bound| bound < wait_ms);
        self.0[bucket] += 1;
    }

    pub fn add(&mut self, other: &Histogram) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }

    /// The `q` quantile in ms, interpolated linearly inside its bucket (as
    /// Prometheus's `histogram_quantile`); waits past the last bound read as
    /// that bound. `None` with no waits.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total: u64 = self.0.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = q * total as f64;
        let mut below = 0u64;
        for (i, &n) in self.0.iter().enumerate() {
            if n > 0 && (below + n) as f64 >= rank {
                let Some(&upper) = WAIT_BOUNDS_MS.get(i) else {
                    return Some(WAIT_BOUNDS_MS[BUCKETS - 2] as f64);
                };
                let lower = if i == 0 { 0 } else { WAIT_BOUNDS_MS[i - 1] };
                let within = ((rank - below as f64) / n as f64).clamp(0.0, 1.0);
                return Some(lower as f64 + within * (upper - lower) as f64);
            }
            below += n;
        }
        Some(WAIT_BOUNDS_MS[BUCKETS - 2] as f64)
    }
}

/// What one node counted for one subject in one minute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub counts: Counts,
    pub waits: Histogram,
}

impl Tally {
    /// A lease or a delivery after `wait_ms`, against the wait objective
    /// (if any).
    pub fn waited(&mut self, wait_ms: u64, objective_ms: Option<u64>) {
        self.counts.waits += 1;
        if objective_ms.is_some_and(|ms| wait_ms > ms) {
            self.counts.slow += 1;
        }
        self.waits.record(wait_ms);
    }

    pub fn add(&mut self, other: &Tally) {
        self.counts.add(&other.counts);
        self.waits.add(&other.waits);
    }
}

/// The minute a time falls in (minutes since the epoch).
pub fn minute(at: Timestamp) -> i64 {
    at.as_millis().div_euclid(60_000)
}

/// A window the burn rate is measured over, with its name on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub name: &'static str,
    pub minutes: i64,
}

/// The windows the alerts need, shortest first, then the budget's period.
pub const WINDOWS: [Window; 6] = [
    Window {
        name: "5m",
        minutes: 5,
    },
    Window {
        name: "30m",
        minutes: 30,
    },
    Window {
        name: "1h",
        minutes: 60,
    },
    Window {
        name: "6h",
        minutes: 360,
    },
    Window {
        name: "3d",
        minutes: 4_320,
    },
    Window {
        name: "30d",
        minutes: PERIOD_MINUTES,
    },
];

/// The error budget's period: 30 days.
pub const PERIOD_MINUTES: i64 = 30 * 24 * 60;
/// Where the last hour, the window of an objective's `value`, is in
/// [`WINDOWS`].
pub const HOUR: usize = 2;
/// Where the budget's period is in [`WINDOWS`].
pub const PERIOD: usize = WINDOWS.len() - 1;

/// The first minute of each of [`WINDOWS`] that ends with `now`'s minute.
pub fn window_starts(now: Timestamp) -> [i64; WINDOWS.len()] {
    let current = minute(now);
    WINDOWS.map(|w| current - w.minutes + 1)
}

/// A multiwindow alert: it fires while the burn rate over both windows is
/// above the factor (the long window says the budget is really going, the
/// short one that it still is).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Alert {
    pub severity: Severity,
    /// The long window, an index into [`WINDOWS`].
    pub long: usize,
    /// The short window, an index into [`WINDOWS`].
    pub short: usize,
    pub factor: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Someone should look now.
    Page,
    /// Someone should look today.
    Ticket,
}

impl Alert {
    pub fn long_window(&self) -> Window {
        WINDOWS[self.long]
    }

    pub fn short_window(&self) -> Window {
        WINDOWS[self.short]
    }
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Page => "page",
            Severity::Ticket => "ticket",
        }
    }
}

/// The SRE workbook's three alerts for a 30-day budget.
pub const ALERTS: [Alert; 3] = [
    Alert {
        severity: Severity::Page,
        long: HOUR,
        short: 0,
        factor: 14.4,
    },
    Alert {
        severity: Severity::Page,
        long: 3,
        short: 1,
        factor: 6.0,
    },
    Alert {
        severity: Severity::Ticket,
        long: 4,
        short: 3,
        factor: 1.0,
    },
];

/// One objective as measured now.
#[derive(Clone, Debug, PartialEq)]
pub struct Status {
    pub objective: Objective,
    pub target: f64,
    /// The objective's measure over the last hour: the p99 wait (ms) or the
    /// success ratio; `None` without events.
    pub value: Option<f64>,
    /// Good and all events over the period.
    pub good: u64,
    pub total: u64,
    /// Share of the period's budget left (1: untouched; below 0: overspent).
    pub budget_remaining: f64,
    /// The burn rate over each of [`WINDOWS`], in their order.
    pub burn_rates: [f64; WINDOWS.len()],
    /// Whether each of [`ALERTS`] fires, in their order.
    pub firing: [bool; ALERTS.len()],
}

/// Measures `objective` from the sums over each of [`WINDOWS`] and the last
/// hour's wait histogram.
pub fn evaluate(
    objective: Objective,
    target: f64,
    sums: &[Counts; WINDOWS.len()],
    last_hour: &Histogram,
) -> Status {
    let budget = objective.budget(target);
    let burn_rates = sums.map(|counts| {
        let (good, total) = objective.events(&counts);
        if total == 0 {
            0.0
        } else {
            (total - good) as f64 / total as f64 / budget
        }
    });
    let firing = ALERTS.map(|a| burn_rates[a.long] > a.factor && burn_rates[a.short] > a.factor);
    let (good, total) = objective.events(&sums[PERIOD]);
    let value = match objective {
        Objective::WaitP99Ms => last_hour.quantile(0.99),
        Objective::SuccessRatio => {
            let (good, total) = objective.events(&sums[HOUR]);
            (total > 0).then(|| good as f64 / total as f64)
        }
    };
    Status {
        objective,
        target,
        value,
        good,
        total,
        budget_remaining: 1.0 - burn_rates[PERIOD],
        burn_rates,
        firing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slo(wait: Option<u64>, ratio: Option<f64>) -> Slo {
        Slo {
            wait_p99_ms: wait,
            success_ratio: ratio,
        }
    }

    #[test]
    fn objectives_are_checked() {
        assert!(slo(Some(50), Some(0.9995)).check().is_ok());
        assert!(slo(None, None).check().is_err());
        assert!(slo(Some(0), None).check().is_err());
        assert!(slo(Some(MAX_WAIT_MS + 1), None).check().is_err());
        for bad in [0.0, 1.0, -0.5, 1.5, f64::NAN] {
            assert!(slo(None, Some(bad)).check().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_wait_lands_in_the_bucket_of_its_upper_bound() {
        let mut h = Histogram::default();
        for ms in [0, 1, 2, 3, 300_000, 300_001] {
            h.record(ms);
        }
        assert_eq!(&h.0[..3], &[2, 1, 1]);
        assert_eq!(h.0[BUCKETS - 2], 1);
        assert_eq!(h.0[BUCKETS - 1], 1);
    }

    #[test]
    fn the_quantile_interpolates_inside_its_bucket() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.99), None);
        // 98 fast waits, 2 between 50 and 100 ms: the p99 is half-way there.
        for _ in 0..98 {
            h.record(1);
        }
        h.record(70);
        h.record(80);
        assert_eq!(h.quantile(0.99), Some(75.0));
        let mut slow = Histogram::default();
        slow.record(1_000_000);
        assert_eq!(slow.quantile(0.99), Some(300_000.0));
    }

    fn counts(waits: u64, slow: u64, succeeded: u64, failed: u64) -> Counts {
        Counts {
            waits,
            slow,
            succeeded,
            failed,
        }
    }

    #[test]
    fn burn_rates_are_bad_shares_over_the_budget() {
        // 0.1 % of jobs dead against a 99.9 % objective: burning at 1x.
        let sums = [counts(0, 0, 999, 1); WINDOWS.len()];
        let status = evaluate(Objective::SuccessRatio, 0.999, &sums, &Histogram::default());
        for rate in status.burn_rates {
            assert!((rate - 1.0).abs() < 1e-9, "{rate}");
        }
        assert!(status.budget_remaining.abs() < 1e-9);
        assert_eq!(status.value, Some(0.999));
        assert_eq!((status.good, status.total), (999, 1000));
        assert_eq!(status.firing, [false; 3]);
    }

    #[test]
    fn an_alert_fires_only_when_both_of_its_windows_burn() {
        // 20 % slow over the last 5 minutes and the hour: 20x a 1 % budget.
        let mut sums = [counts(1000, 200, 0, 0); WINDOWS.len()];
        // The 6 hours and beyond are mostly fast: 3x, under the second
        // page's 6, over the ticket's 1.
        for s in &mut sums[3..] {
            *s = counts(100_000, 3_000, 0, 0);
        }
        let status = evaluate(Objective::WaitP99Ms, 50.0, &sums, &Histogram::default());
        assert_eq!(status.firing, [true, false, true]);
        // The last 5 minutes recovered: the page stops though the hour burns.
        sums[0] = counts(100, 0, 0, 0);
        let status = evaluate(Objective::WaitP99Ms, 50.0, &sums, &Histogram::default());
        assert_eq!(status.firing, [false, false, true]);
    }

    #[test]
    fn no_events_burn_nothing() {
        let status = evaluate(
            Objective::SuccessRatio,
            0.99,
            &[Counts::default(); WINDOWS.len()],
            &Histogram::default(),
        );
        assert_eq!(status.burn_rates, [0.0; WINDOWS.len()]);
        assert_eq!(status.budget_remaining, 1.0);
        assert_eq!(status.value, None);
    }

    #[test]
    fn windows_end_with_the_current_minute() {
        let now = Timestamp::from_millis(10 * 60_000 + 30_000);
        let starts = window_starts(now);
        assert_eq!(starts[0], 6);
        assert_eq!(minute(now), 10);
    }
}
