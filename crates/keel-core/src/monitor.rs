//! Monitors: what a monitor probes (an HTTP call, a TCP connect, or
//! heartbeats it waits for) and its checks; what a probe found and how it
//! is judged against the expectations; and `fold`, the one rule that turns
//! a result into the monitor's counters and says when an incident opens or
//! resolves (`confirm_after` failures in a row, `recover_after` successes).
//! Incidents and escalation policies are `monitor/incident.rs`; maintenance
//! windows and status pages, `monitor/settings.rs`.

pub mod cert;
mod incident;
mod settings;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::schedule::{Cadence, ScheduleSpec, ScheduleTarget};
use crate::{Error, QueueName, Timestamp};

pub use incident::*;
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

fn default_timeout() -> u64 {
    DEFAULT_TIMEOUT_MS
}

fn yes() -> bool {
    true
}

/// An HTTP call and what its answer must be.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpProbe {
    pub url: String,
    #[serde(default = "get")]
    pub method: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    #[serde(default = "yes")]
    pub follow_redirects: bool,
    #[serde(default)]
    pub expect: Expect,
    /// Warn this many days before the certificate expires (and at 30, 14,
    /// 7 and 1 days below it), once per threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_expiry_days: Option<u32>,
}

fn get() -> String {
    "GET".into()
}

/// What an HTTP answer must be to count as up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Codes or ranges: `"200"`, `"200-299"`.
    #[serde(default = "success_range")]
    pub status: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<JsonExpect>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_latency_ms: Option<u64>,
}

impl Default for Expect {
    fn default() -> Self {
        Expect {
            status: success_range(),
            body_contains: None,
            json: None,
            max_latency_ms: None,
        }
    }
}

fn success_range() -> Vec<String> {
    vec!["200-299".into()]
}

/// A value the answer's JSON must hold at a path (`$.status`, `$.items[0].ok`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonExpect {
    pub path: String,
    #[schema(value_type = Object)]
    pub equals: Value,
}

/// A TCP connect.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TcpProbe {
    pub host: String,
    pub port: u16,
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
}

/// Pings expected every `period_ms`, or at each slot of a cron, each within
/// `grace_ms`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default)]
    pub grace_ms: u64,
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

impl Heartbeat {
    fn schedule_spec(&self, monitor: &MonitorSpec) -> Result<ScheduleSpec, Error> {
        if self.grace_ms > MAX_INTERVAL_MS {
            return Err(Error::invalid(format!(
                "heartbeat.grace_ms must be at most {MAX_INTERVAL_MS}"
            )));
        }
        let spec = ScheduleSpec {
            cron: self.cron.clone(),
            every_ms: self.period_ms,
            timezone: self.timezone.clone().unwrap_or_else(|| "UTC".into()),
            jitter_ms: 0,
            start_at: None,
            end_at: None,
            overlap: crate::schedule::Overlap::Allow,
            catchup_window_ms: MAX_INTERVAL_MS,
            paused: monitor.paused,
            target: ScheduleTarget::Job {
                queue: monitor_queue(),
                job: serde_json::json!({"payload": {}}),
            },
        };
        if let Some(period) = self.period_ms
            && !(MIN_INTERVAL_MS..=MAX_INTERVAL_MS * 31).contains(&period)
        {
            return Err(Error::invalid(format!(
                "heartbeat.period_ms must be {MIN_INTERVAL_MS} to {}",
                MAX_INTERVAL_MS * 31
            )));
        }
        Cadence::new(&spec).map_err(|e| Error::invalid(format!("heartbeat: {}", e.message)))?;
        Ok(spec)
    }
}

impl HttpProbe {
    fn check(&self) -> Result<(), Error> {
        let url = url_parts(&self.url)
            .ok_or_else(|| Error::invalid("http.url must be an http or https url"))?;
        if url.is_empty() {
            return Err(Error::invalid("http.url must name a host"));
        }
        const METHODS: [&str; 6] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];
        if !METHODS.contains(&self.method.as_str()) {
            return Err(Error::invalid(format!(
                "http.method must be one of {}",
                METHODS.join(", ")
            )));
        }
        if self.headers.len() > MAX_HEADERS {
            return Err(Error::invalid(format!(
                "http.headers: at most {MAX_HEADERS}"
            )));
        }
        if self.body.as_ref().is_some_and(|b| b.len() > 64 * 1024) {
            return Err(Error::invalid("http.body: at most 64 KiB"));
        }
        check_timeout(self.timeout_ms, MAX_TIMEOUT_MS)?;
        if self.expect.status.is_empty() {
            return Err(Error::invalid(
                "expect.status: give at least one code or range",
            ));
        }
        for range in &self.expect.status {
            status_range(range).ok_or_else(|| {
                Error::invalid(format!(
                    "expect.status: {range:?} is not a code or a range like \"200-299\""
                ))
            })?;
        }
        if let Some(json) = &self.expect.json {
            json_pointer(&json.path).ok_or_else(|| {
                Error::invalid(format!(
                    "expect.json.path {:?} is not a path like \"$.status\" or \"$.items[0].ok\"",
                    json.path
                ))
            })?;
        }
        if self.tls_expiry_days.is_some_and(|d| d == 0 || d > 365) {
            return Err(Error::invalid("tls_expiry_days must be 1 to 365"));
        }
        Ok(())
    }

    /// Whether an answer meets the expectations; the reason when it does not.
    pub fn judge(&self, status: u16, body: &[u8], latency_ms: u64) -> Result<(), String> {
        let expect = &self.expect;
        let status_ok = expect
            .status
            .iter()
            .filter_map(|r| status_range(r))
            .any(|(lo, hi)| (lo..=hi).contains(&status));
        if !status_ok {
            return Err(format!(
                "status {status}, expected {}",
                expect.status.join(", ")
            ));
        }
        if let Some(needle) = &expect.body_contains
            && !String::from_utf8_lossy(body).contains(needle.as_str())
        {
            return Err(format!("the body does not contain {needle:?}"));
        }
        if let Some(json) = &expect.json {
            let pointer = json_pointer(&json.path).unwrap_or_default();
            let found = serde_json::from_slice::<Value>(body)
                .map_err(|e| format!("the body is not JSON: {e}"))?;
            match found.pointer(&pointer) {
                Some(v) if *v == json.equals => {}
                Some(v) => return Err(format!("{} is {v}, expected {}", json.path, json.equals)),
                None => return Err(format!("{} is not in the body", json.path)),
            }
        }
        if let Some(max) = expect.max_latency_ms
            && latency_ms > max
        {
            return Err(format!("took {latency_ms} ms, more than {max} ms"));
        }
        Ok(())
    }
}

fn check_timeout(timeout_ms: u64, max: u64) -> Result<(), Error> {
    if timeout_ms == 0 || timeout_ms > max.min(MAX_TIMEOUT_MS) {
        return Err(Error::invalid(format!(
            "timeout_ms must be 1 to {}",
            max.min(MAX_TIMEOUT_MS)
        )));
    }
    Ok(())
}

/// The host part of an http(s) url, if it is one.
fn url_parts(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    Some(rest.split(['/', '?', '#']).next().unwrap_or(""))
}

/// `"200"` or `"200-299"` as an inclusive range.
fn status_range(text: &str) -> Option<(u16, u16)> {
    let (lo, hi) = match text.split_once('-') {
        Some((lo, hi)) => (lo.trim().parse().ok()?, hi.trim().parse().ok()?),
        None => {
            let code = text.trim().parse().ok()?;
            (code, code)
        }
    };
    ((100..=599).contains(&lo) && (lo..=599).contains(&hi)).then_some((lo, hi))
}

/// `$.a.b[0]` as the JSON pointer `/a/b/0`.
pub fn json_pointer(path: &str) -> Option<String> {
    let mut rest = path.strip_prefix('$')?;
    let mut pointer = String::new();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            let key = &after[..end];
            if key.is_empty() {
                return None;
            }
            pointer.push('/');
            pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let (index, tail) = after.split_once(']')?;
            index.parse::<usize>().ok()?;
            pointer.push('/');
            pointer.push_str(index);
            rest = tail;
        } else {
            return None;
        }
    }
    Some(pointer)
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
