//! Monitors: a monitor's spec and its checks, the hidden schedule that
//! fires its probes, what a probe found, and `fold`, the one rule that
//! turns a result into the monitor's counters and says when an incident
//! opens or resolves (`confirm_after` failures in a row, `recover_after`
//! successes), with `tls_warning` beside it. What a monitor probes and how
//! an answer is judged is `monitor/probe.rs`; a certificate's expiry,
//! `monitor/cert.rs`; incidents and escalation policies,
//! `monitor/incident.rs`; maintenance windows and status pages,
//! `monitor/settings.rs`.

pub mod cert;
mod incident;
mod probe;
mod settings;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::schedule::{ScheduleSpec, ScheduleTarget};
use crate::{Error, QueueName, Timestamp};

pub use incident::*;
pub use probe::*;
pub use settings::*;

/// The shortest and longest probe interval.
pub const MIN_INTERVAL_MS: u64 = 5_000;
pub const MAX_INTERVAL_MS: u64 = 24 * 3_600_000;
/// The interval when none is given.
pub const DEFAULT_INTERVAL_MS: u64 = 60_000;
/// A probe's timeout when none is given, and the longest.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
pub const MAX_TIMEOUT_MS: u64 = 60_000;
/// The most of a ping's body kept, and of an error's text.
pub const MAX_PING_BODY: usize = 10 * 1024;
pub const MAX_ERROR: usize = 1024;
/// The most of an HTTP answer's body read to check it.
pub const MAX_PROBE_BODY: usize = 256 * 1024;
/// The queue a namespace's probes and escalation steps wait on.
pub const MONITOR_QUEUE: &str = "keel.monitor";
/// The hidden schedule that fires a monitor's probes.
pub const SCHEDULE_PREFIX: &str = "keel.monitor.";
/// The days before a certificate's expiry at which a warning fires, once each.
pub const TLS_THRESHOLDS: [i64; 4] = [30, 14, 7, 1];
const MAX_LABELS: usize = 32;
const MAX_HEADERS: usize = 32;
const MAX_CONFIRM: u32 = 100;

/// `PUT /v1/namespaces/{ns}/monitors/{name}`: exactly one of `http`, `tcp`
/// and `heartbeat`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MonitorSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpProbe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpProbe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<Heartbeat>,
    /// How often an HTTP or TCP probe runs: 5 s to 24 h.
    #[serde(default = "default_interval")]
    pub interval_ms: u64,
    /// Failures in a row before an incident opens.
    #[serde(default = "two")]
    pub confirm_after: u32,
    /// Successes in a row that resolve it.
    #[serde(default = "two")]
    pub recover_after: u32,
    /// A monitor whose open incident mutes this one's pages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub depends_on: Option<crate::MonitorName>,
    /// The escalation policy its incidents page through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub paused: bool,
}

fn default_interval() -> u64 {
    DEFAULT_INTERVAL_MS
}

fn two() -> u32 {
    2
}

impl MonitorSpec {
    /// Every reason the spec cannot run.
    pub fn check(&self) -> Result<(), Error> {
        let kinds = [
            self.http.is_some(),
            self.tcp.is_some(),
            self.heartbeat.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            return Err(Error::invalid(
                "a monitor has exactly one of http, tcp or heartbeat",
            ));
        }
        if !(MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&self.interval_ms) {
            return Err(Error::invalid(format!(
                "interval_ms must be {MIN_INTERVAL_MS} to {MAX_INTERVAL_MS}"
            )));
        }
        for (name, n) in [
            ("confirm_after", self.confirm_after),
            ("recover_after", self.recover_after),
        ] {
            if !(1..=MAX_CONFIRM).contains(&n) {
                return Err(Error::invalid(format!("{name} must be 1 to {MAX_CONFIRM}")));
            }
        }
        if self.labels.len() > MAX_LABELS
            || self
                .labels
                .iter()
                .any(|(k, v)| k.is_empty() || k.len() > 64 || v.len() > 256)
        {
            return Err(Error::invalid(format!(
                "labels: at most {MAX_LABELS}, keys 1 to 64 bytes, values up to 256"
            )));
        }
        if let Some(policy) = &self.escalation {
            check_policy_name(policy)?;
        }
        if let Some(http) = &self.http {
            http.check()?;
        }
        if let Some(tcp) = &self.tcp {
            if tcp.host.is_empty() || tcp.host.len() > 253 || tcp.port == 0 {
                return Err(Error::invalid("tcp: give a host and a port above 0"));
            }
            check_timeout(tcp.timeout_ms, self.interval_ms)?;
        }
        if let Some(heartbeat) = &self.heartbeat {
            heartbeat.schedule_spec(self)?.check()?;
        }
        Ok(())
    }

    /// The hidden schedule that fires this monitor's probes (or, for
    /// heartbeats, the checks that a ping came): interval slots offset per
    /// monitor (`offset`, drawn from its name) so that monitors of one
    /// interval spread over it, with catch-up limited to the last slot.
    pub fn schedule_spec(&self, offset: u64) -> Result<ScheduleSpec, Error> {
        let job = |payload: Value, delay_ms: u64, lease_ms: u64| ScheduleTarget::Job {
            queue: monitor_queue(),
            job: serde_json::json!({
                "payload": payload,
                "delay_ms": delay_ms,
                "max_attempts": 1,
                "lease_ms": lease_ms,
            }),
        };
        if let Some(heartbeat) = &self.heartbeat {
            let mut spec = heartbeat.schedule_spec(self)?;
            spec.target = job(
                serde_json::json!({"kind": "check"}),
                heartbeat.grace_ms,
                10_000,
            );
            return Ok(spec);
        }
        let timeout = self
            .http
            .as_ref()
            .map(|h| h.timeout_ms)
            .or(self.tcp.as_ref().map(|t| t.timeout_ms))
            .unwrap_or(DEFAULT_TIMEOUT_MS);
        Ok(ScheduleSpec {
            cron: None,
            every_ms: Some(self.interval_ms),
            timezone: "UTC".into(),
            jitter_ms: 0,
            start_at: Some(Timestamp::from_millis(
                i64::try_from(offset % self.interval_ms).unwrap_or(0),
            )),
            end_at: None,
            overlap: crate::schedule::Overlap::Skip,
            catchup_window_ms: self.interval_ms,
            paused: self.paused,
            target: job(serde_json::json!({"kind": "probe"}), 0, timeout + 5_000),
        })
    }

    pub fn kind(&self) -> &'static str {
        match (&self.http, &self.tcp) {
            (Some(_), _) => "http",
            (_, Some(_)) => "tcp",
            _ => "heartbeat",
        }
    }
}

pub fn check_policy_name(name: &str) -> Result<(), Error> {
    crate::ChannelName::new(name).map(|_| ()).map_err(|_| {
        Error::invalid(format!(
            "escalation policy name {name:?} is not a valid name"
        ))
    })
}

#[allow(
    clippy::expect_used,
    reason = "a constant name; `names_are_valid` checks it"
)]
pub fn monitor_queue() -> QueueName {
    QueueName::new(MONITOR_QUEUE).expect("valid name")
}

/// A monitor's hidden schedule's name.
pub fn schedule_name(monitor: &str) -> String {
    format!("{SCHEDULE_PREFIX}{monitor}")
}

/// Where a monitor's slots fall within its interval: the same on every
/// node, different from monitor to monitor (FNV-1a of the names).
pub fn offset(namespace: &str, monitor: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in namespace.bytes().chain([0]).chain(monitor.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A job on a namespace's `keel.monitor` queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MonitorJob {
    /// Probe the monitor its schedule is (tagged `keel.schedule`).
    Probe,
    /// See whether a heartbeat monitor was pinged since its last check.
    Check,
    /// Page step `step` (counted from 0 across repeats) of an incident.
    Escalate {
        incident: crate::IncidentId,
        step: u32,
    },
    /// Tell everyone paged for an incident that it resolved.
    Resolved { incident: crate::IncidentId },
    /// Warn that a monitor's certificate expires in `days_left` days.
    TlsExpiry { monitor: String, days_left: i64 },
}

/// What a result came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResultKind {
    Probe,
    /// A heartbeat's ping (`/start` is a ping that neither passes nor fails).
    Ping,
    /// A heartbeat's check that found no ping.
    Check,
}

/// What one probe, ping or check found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProbeResult {
    pub kind: ResultKind,
    /// `None` for a `/start` ping: recorded, not judged.
    pub ok: Option<bool>,
    pub at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_days_left: Option<i64>,
    /// A ping's body (up to 10 kB) or exit status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// Where a monitor stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// No result yet.
    #[default]
    Pending,
    Up,
    /// Failing, not yet `confirm_after` times.
    Failing,
    /// Confirmed down: its incident is open.
    Down,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Up => "up",
            Status::Failing => "failing",
            Status::Down => "down",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Status::Pending, Status::Up, Status::Failing, Status::Down]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// A monitor's counters, moved by each result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MonitorState {
    pub status: Status,
    /// Failures in a row.
    pub failures: u32,
    /// Successes in a row.
    pub successes: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_result_at: Option<Timestamp>,
    /// A heartbeat's last ping that passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ping_at: Option<Timestamp>,
    /// A heartbeat's last check: the next one looks for a ping after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check_at: Option<Timestamp>,
    /// The smallest certificate-expiry threshold (days) warned of for the
    /// certificate served now; a renewed certificate clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_warned: Option<i64>,
}

/// What a result does to the monitor's incident.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    None,
    Open,
    Resolve,
}

/// Folds a result into the counters: the state after it, and whether an
/// incident opens (the `confirm_after`th failure in a row) or resolves (the
/// `recover_after`th success in a row while down).
pub fn fold(
    state: MonitorState,
    result: &ProbeResult,
    spec: &MonitorSpec,
) -> (MonitorState, Change) {
    let mut next = state;
    next.last_result_at = Some(result.at);
    if result.kind == ResultKind::Check {
        next.last_check_at = Some(result.at);
    }
    let Some(ok) = result.ok else {
        return (next, Change::None);
    };
    if ok {
        next.failures = 0;
        next.successes = next.successes.saturating_add(1);
        if result.kind == ResultKind::Ping {
            next.last_ping_at = Some(result.at);
        }
        match state.status {
            Status::Down if next.successes >= spec.recover_after => {
                next.status = Status::Up;
                (next, Change::Resolve)
            }
            Status::Down => (next, Change::None),
            _ => {
                next.status = Status::Up;
                (next, Change::None)
            }
        }
    } else {
        next.successes = 0;
        next.failures = next.failures.saturating_add(1);
        match state.status {
            Status::Down => (next, Change::None),
            _ if next.failures >= spec.confirm_after => {
                next.status = Status::Down;
                (next, Change::Open)
            }
            _ => {
                next.status = Status::Failing;
                (next, Change::None)
            }
        }
    }
}

/// The certificate-expiry threshold a result crosses for the first time
/// (once each, across restarts: the state keeps the last one warned of),
/// moving the state; `None` when there is nothing new to warn of.
pub fn tls_warning(
    state: &mut MonitorState,
    result: &ProbeResult,
    spec: &MonitorSpec,
) -> Option<i64> {
    let warn = spec.http.as_ref()?.tls_expiry_days?;
    let days = result.tls_days_left?;
    // A certificate with more days left than the last warning is a new one.
    if state.tls_warned.is_some_and(|w| days > w) {
        state.tls_warned = None;
    }
    let crossed = *tls_thresholds(warn, days).last()?;
    if state.tls_warned.is_some_and(|w| w <= crossed) {
        return None;
    }
    state.tls_warned = Some(crossed);
    Some(crossed)
}

/// The thresholds a certificate `days_left` from expiry has crossed, for a
/// monitor that warns `warn_days` ahead: the largest first.
pub fn tls_thresholds(warn_days: u32, days_left: i64) -> Vec<i64> {
    let warn = i64::from(warn_days);
    let mut crossed: Vec<i64> = TLS_THRESHOLDS
        .into_iter()
        .filter(|t| *t < warn)
        .chain([warn])
        .filter(|t| days_left <= *t)
        .collect();
    crossed.sort_unstable_by(|a, b| b.cmp(a));
    crossed.dedup();
    crossed
}

/// Truncates `text` to at most `max` bytes on a character boundary.
pub fn clip(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}
