//! What a monitor probes: an HTTP call and what its answer must be (and how
//! an answer is judged), a TCP connect, or heartbeats and the schedule of
//! their checks.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    DEFAULT_TIMEOUT_MS, MAX_HEADERS, MAX_INTERVAL_MS, MAX_TIMEOUT_MS, MIN_INTERVAL_MS, MonitorSpec,
    monitor_queue,
};
use crate::Error;
use crate::schedule::{Cadence, ScheduleSpec, ScheduleTarget};

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

impl Heartbeat {
    pub(super) fn schedule_spec(&self, monitor: &MonitorSpec) -> Result<ScheduleSpec, Error> {
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
    pub(super) fn check(&self) -> Result<(), Error> {
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

pub(super) fn check_timeout(timeout_ms: u64, max: u64) -> Result<(), Error> {
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
