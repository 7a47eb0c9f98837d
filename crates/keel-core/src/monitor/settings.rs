//! The monitors' settings beside monitors and policies: maintenance
//! windows (a time range or a cron with a duration, and the monitors, by
//! name or by labels, it covers: while one is active its monitors are
//! probed and their incidents open, but nobody is paged) and status pages
//! (which monitors a public page shows).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::schedule::{Cadence, ScheduleSpec, ScheduleTarget};
use crate::{Error, Timestamp};

/// The longest window a cron opens.
pub const MAX_WINDOW_MS: u64 = 7 * 24 * 3_600_000;

/// `PUT …/maintenance/{name}`: `start` and `end`, or `cron` and `duration_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Monitors it covers by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub monitors: Vec<String>,
    /// Monitors it covers by labels (every one given must match); with
    /// neither `monitors` nor `labels` it covers every monitor.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl MaintenanceSpec {
    pub fn check(&self) -> Result<(), Error> {
        match (self.start, self.end, &self.cron, self.duration_ms) {
            (Some(start), Some(end), None, None) if start < end => Ok(()),
            (None, None, Some(_), Some(d)) if (1..=MAX_WINDOW_MS).contains(&d) => {
                self.cadence().map(|_| ())
            }
            (None, None, Some(_), _) => Err(Error::invalid(format!(
                "duration_ms must be 1 to {MAX_WINDOW_MS} with a cron"
            ))),
            _ => Err(Error::invalid(
                "give start and end (start before end), or cron and duration_ms",
            )),
        }
    }

    fn cadence(&self) -> Result<Cadence, Error> {
        Cadence::new(&ScheduleSpec {
            cron: self.cron.clone(),
            every_ms: None,
            timezone: self.timezone.clone().unwrap_or_else(|| "UTC".into()),
            jitter_ms: 0,
            start_at: None,
            end_at: None,
            overlap: crate::schedule::Overlap::Allow,
            catchup_window_ms: 0,
            paused: false,
            target: ScheduleTarget::Job {
                queue: super::monitor_queue(),
                job: serde_json::json!({}),
            },
        })
    }

    /// Whether the window is open at `now`.
    pub fn active(&self, now: Timestamp) -> bool {
        if let (Some(start), Some(end)) = (self.start, self.end) {
            return start <= now && now < end;
        }
        let (Ok(cadence), Some(duration)) = (self.cadence(), self.duration_ms) else {
            return false;
        };
        // A slot in (now - duration, now] opened a window still open.
        let since = Timestamp::from_millis(now.as_millis() - duration as i64);
        cadence.next_after(since).is_some_and(|slot| slot <= now)
    }

    /// Whether it covers the monitor `name` with `labels`.
    pub fn covers(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        if self.monitors.is_empty() && self.labels.is_empty() {
            return true;
        }
        self.monitors.iter().any(|m| m == name)
            || (!self.labels.is_empty()
                && self.labels.iter().all(|(k, v)| labels.get(k) == Some(v)))
    }
}

/// `PUT …/status-pages/{slug}`: a public page at `/status/{slug}` showing
/// these monitors (a slug is unique across namespaces).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusPageSpec {
    pub title: String,
    pub monitors: Vec<String>,
    /// Served at `/status/{slug}`; `false` keeps it as a draft, not served.
    #[serde(default = "yes")]
    pub public: bool,
}

fn yes() -> bool {
    true
}

/// The most monitors one status page shows.
pub const MAX_PAGE_MONITORS: usize = 100;

impl StatusPageSpec {
    pub fn check(&self) -> Result<(), Error> {
        if self.title.trim().is_empty() || self.title.len() > 200 {
            return Err(Error::invalid("title: 1 to 200 bytes"));
        }
        if self.monitors.is_empty() || self.monitors.len() > MAX_PAGE_MONITORS {
            return Err(Error::invalid(format!(
                "monitors: 1 to {MAX_PAGE_MONITORS}"
            )));
        }
        for name in &self.monitors {
            crate::MonitorName::new(name)?;
        }
        Ok(())
    }
}
