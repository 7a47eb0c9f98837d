//! Incidents and how they page: an incident is opened by a monitor (keyed
//! `monitor/{name}`), by Keel's own alerts, or by anyone with the PagerDuty
//! Events v2 shape (keyed by its `dedup_key`); at most one is open per key.
//! An escalation policy's steps page in turn until someone acknowledges;
//! `next_page` decides, from the incident as stored, whether a step still
//! pages, so a step decided after an acknowledgement never goes.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{ChannelName, Error, IncidentId, Timestamp};

/// The most steps a policy has, and the most pages a step sends.
pub const MAX_STEPS: usize = 10;
pub const MAX_PAGES: usize = 20;
/// The most times a policy repeats after its last step.
pub const MAX_REPEAT: u32 = 10;
/// The shortest wait between steps, and the longest.
pub const MIN_WAIT_MS: u64 = 1_000;
pub const MAX_WAIT_MS: u64 = 24 * 3_600_000;
/// The longest dedup key, summary and note.
pub const MAX_DEDUP_KEY: usize = 255;
pub const MAX_SUMMARY: usize = 1024;
pub const MAX_NOTE: usize = 4096;
/// The most of an event's `details`, as JSON.
pub const MAX_DETAILS: usize = 16 * 1024;

/// An incident's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    Open,
    Acknowledged,
    Resolved,
}

impl IncidentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Open => "open",
            IncidentStatus::Acknowledged => "acknowledged",
            IncidentStatus::Resolved => "resolved",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            IncidentStatus::Open,
            IncidentStatus::Acknowledged,
            IncidentStatus::Resolved,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// How bad it is (PagerDuty's four).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = IncidentSeverity)]
pub enum Severity {
    #[default]
    Critical,
    Error,
    Warning,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// What an event asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Trigger,
    Acknowledge,
    Resolve,
}

/// `POST /v1/namespaces/{ns}/incidents/events`: PagerDuty Events v2's
/// shape, so an integration that speaks it can point at Keel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IncidentEvent {
    pub dedup_key: String,
    pub action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<Value>,
    /// The escalation policy a triggered incident pages through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation: Option<String>,
}

impl IncidentEvent {
    pub fn check(&self) -> Result<(), Error> {
        check_dedup_key(&self.dedup_key)?;
        if self.dedup_key.starts_with("monitor/") {
            return Err(Error::invalid(
                "dedup_key: keys starting with \"monitor/\" are monitors' own",
            ));
        }
        if self.action == Action::Trigger && self.summary.as_ref().is_none_or(String::is_empty) {
            return Err(Error::invalid("a trigger needs a summary"));
        }
        if self.summary.as_ref().is_some_and(|s| s.len() > MAX_SUMMARY)
            || self.source.as_ref().is_some_and(|s| s.len() > MAX_SUMMARY)
        {
            return Err(Error::invalid(format!(
                "summary and source: at most {MAX_SUMMARY} bytes"
            )));
        }
        if self
            .details
            .as_ref()
            .is_some_and(|d| d.to_string().len() > MAX_DETAILS)
        {
            return Err(Error::invalid(format!(
                "details: at most {MAX_DETAILS} bytes of JSON"
            )));
        }
        if let Some(policy) = &self.escalation {
            super::check_policy_name(policy)?;
        }
        Ok(())
    }
}

pub fn check_dedup_key(key: &str) -> Result<(), Error> {
    if key.is_empty() || key.len() > MAX_DEDUP_KEY || key.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "dedup_key must be 1 to {MAX_DEDUP_KEY} bytes without control characters"
        )));
    }
    Ok(())
}

/// The dedup key of a monitor's incidents.
pub fn monitor_key(monitor: &str) -> String {
    format!("monitor/{monitor}")
}

/// Someone (or something) to page: a channel, and a recipient's id (none:
/// the channel's own target, a Slack channel or a webhook).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PageTarget {
    #[schema(value_type = String)]
    pub channel: ChannelName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// One step of a policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EscalationStep {
    pub notify: Vec<PageTarget>,
    /// How long nobody acknowledging takes it to the next step.
    pub wait_ms: u64,
}

/// `PUT …/escalation-policies/{name}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EscalationPolicy {
    pub steps: Vec<EscalationStep>,
    /// Times the steps run again after the last one's wait.
    #[serde(default)]
    pub repeat: u32,
    /// Tell everyone paged when the incident resolves.
    #[serde(default = "yes")]
    pub resolve_notify: bool,
}

fn yes() -> bool {
    true
}

impl EscalationPolicy {
    pub fn check(&self) -> Result<(), Error> {
        if self.steps.is_empty() || self.steps.len() > MAX_STEPS {
            return Err(Error::invalid(format!("steps: 1 to {MAX_STEPS}")));
        }
        for (i, step) in self.steps.iter().enumerate() {
            if step.notify.is_empty() || step.notify.len() > MAX_PAGES {
                return Err(Error::invalid(format!(
                    "steps[{i}].notify: 1 to {MAX_PAGES} targets"
                )));
            }
            if !(MIN_WAIT_MS..=MAX_WAIT_MS).contains(&step.wait_ms) {
                return Err(Error::invalid(format!(
                    "steps[{i}].wait_ms must be {MIN_WAIT_MS} to {MAX_WAIT_MS}"
                )));
            }
            for (j, page) in step.notify.iter().enumerate() {
                if let Some(to) = &page.to {
                    crate::notification::check_recipient_id(to).map_err(|e| {
                        Error::invalid(format!("steps[{i}].notify[{j}].to: {}", e.message))
                    })?;
                }
            }
        }
        if self.repeat > MAX_REPEAT {
            return Err(Error::invalid(format!(
                "repeat must be at most {MAX_REPEAT}"
            )));
        }
        Ok(())
    }

    /// Steps in all, repeats counted.
    pub fn total_steps(&self) -> u32 {
        (self.steps.len() as u32).saturating_mul(self.repeat + 1)
    }

    /// Step `k` (counted across repeats).
    pub fn step(&self, k: u32) -> Option<&EscalationStep> {
        if k >= self.total_steps() {
            return None;
        }
        self.steps.get(k as usize % self.steps.len())
    }
}

/// What happened to an incident, in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TimelineEntry {
    pub at: Timestamp,
    /// `opened`, `triggered` (again, while open), `paged`, `muted`,
    /// `acknowledged`, `resolved`, `note`, `escalation_ended`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// For `paged`: the step, and whom on which channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pages: Vec<PageTarget>,
}

impl TimelineEntry {
    pub fn new(at: Timestamp, kind: &str) -> Self {
        TimelineEntry {
            at,
            kind: kind.to_owned(),
            by: None,
            text: None,
            step: None,
            pages: Vec::new(),
        }
    }
}

/// An incident as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Incident {
    #[schema(value_type = String)]
    pub id: IncidentId,
    pub dedup_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<String>,
    pub status: IncidentStatus,
    pub summary: String,
    pub severity: Severity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation: Option<String>,
    /// Steps paged so far (the next step to page is this one).
    pub step: u32,
    /// Everyone paged, once each.
    pub paged: Vec<PageTarget>,
    pub opened_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<Timestamp>,
    pub updated_at: Timestamp,
    pub timeline: Vec<TimelineEntry>,
}

/// What an incident's move asks of the stored row (compare-and-set).
#[derive(Clone, Debug, PartialEq)]
pub enum IncidentMove {
    /// Acknowledged by someone: stops the escalation.
    Acknowledge {
        by: String,
    },
    /// Resolved by someone (or by recovery).
    Resolve {
        by: String,
    },
    Note {
        by: String,
        text: String,
    },
    /// Step `step` pages `pages`: only while open and at that step.
    Page {
        step: u32,
        pages: Vec<PageTarget>,
    },
    /// Step `step` does not page (a maintenance window, a dependency down,
    /// the policy gone): only while open and at that step.
    Mute {
        step: u32,
        reason: String,
    },
}

impl IncidentMove {
    /// Whether the move applies to `incident` as stored; `false` leaves it
    /// as it is (an acknowledgement came first, a step already paged).
    pub fn applies(&self, incident: &Incident) -> bool {
        let status = incident.status;
        match self {
            IncidentMove::Acknowledge { .. } => status == IncidentStatus::Open,
            IncidentMove::Resolve { .. } => status != IncidentStatus::Resolved,
            IncidentMove::Note { .. } => true,
            IncidentMove::Page { step, .. } | IncidentMove::Mute { step, .. } => {
                status == IncidentStatus::Open && incident.step == *step
            }
        }
    }

    /// The incident after the move (which `applies`).
    pub fn apply(&self, incident: &mut Incident, now: Timestamp) {
        incident.updated_at = now;
        let mut entry = TimelineEntry::new(now, "");
        match self {
            IncidentMove::Acknowledge { by } => {
                incident.status = IncidentStatus::Acknowledged;
                incident.acknowledged_at = Some(now);
                incident.acknowledged_by = Some(by.clone());
                entry.kind = "acknowledged".into();
                entry.by = Some(by.clone());
            }
            IncidentMove::Resolve { by } => {
                incident.status = IncidentStatus::Resolved;
                incident.resolved_at = Some(now);
                entry.kind = "resolved".into();
                entry.by = Some(by.clone());
            }
            IncidentMove::Note { by, text } => {
                entry.kind = "note".into();
                entry.by = Some(by.clone());
                entry.text = Some(text.clone());
            }
            IncidentMove::Page { step, pages } => {
                incident.step = step + 1;
                for page in pages {
                    if !incident.paged.contains(page) {
                        incident.paged.push(page.clone());
                    }
                }
                entry.kind = "paged".into();
                entry.step = Some(*step);
                entry.pages = pages.clone();
            }
            IncidentMove::Mute { step, reason } => {
                incident.step = step + 1;
                entry.kind = "muted".into();
                entry.step = Some(*step);
                entry.text = Some(reason.clone());
            }
        }
        incident.timeline.push(entry);
    }
}

/// A new incident to open.
#[derive(Clone, Debug, PartialEq)]
pub struct NewIncident {
    pub id: IncidentId,
    pub dedup_key: String,
    pub monitor: Option<String>,
    pub summary: String,
    pub severity: Severity,
    pub source: Option<String>,
    pub details: Option<Value>,
    pub escalation: Option<String>,
}

impl NewIncident {
    pub fn open(self, now: Timestamp) -> Incident {
        let mut opened = TimelineEntry::new(now, "opened");
        opened.text = Some(self.summary.clone());
        Incident {
            id: self.id,
            dedup_key: self.dedup_key,
            monitor: self.monitor,
            status: IncidentStatus::Open,
            summary: self.summary,
            severity: self.severity,
            source: self.source,
            details: self.details,
            escalation: self.escalation,
            step: 0,
            paged: Vec::new(),
            opened_at: now,
            acknowledged_at: None,
            acknowledged_by: None,
            resolved_at: None,
            updated_at: now,
            timeline: vec![opened],
        }
    }
}
