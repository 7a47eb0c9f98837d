//! The monitors domain: monitors and their results, maintenance windows,
//! incidents with their timelines and the PagerDuty-shaped events that open
//! them, and escalation policies (docs/api.md, "Monitors and incidents").

use keel_core::Timestamp;
use keel_core::monitor::{
    EscalationPolicy, Incident, MaintenanceSpec, MonitorSpec, MonitorState, ProbeResult,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// `POST …/incidents/events`.
pub use keel_core::monitor::IncidentEvent as IncidentEventRequest;
/// `PUT …/monitors/{name}`.
pub use keel_core::monitor::MonitorSpec as MonitorRequest;

/// The share of judged results that came outside confirmed incidents
/// (`null`: nothing judged in the window).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UptimeAnswer {
    #[serde(rename = "24h")]
    pub day: Option<f64>,
    #[serde(rename = "7d")]
    pub week: Option<f64>,
    #[serde(rename = "30d")]
    pub month: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MonitorAnswer {
    pub name: String,
    /// `http`, `tcp` or `heartbeat`.
    pub kind: String,
    #[serde(flatten)]
    pub spec: MonitorSpec,
    pub state: MonitorState,
    /// Its open incident.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
    /// A heartbeat's ping path: `/v1/ping/{token}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping_url: Option<String>,
    /// Only on `GET` of one monitor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime: Option<UptimeAnswer>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MonitorList {
    pub monitors: Vec<MonitorAnswer>,
}

/// `GET …/monitors/{name}/results`: after `after` oldest first, or the
/// last `limit` (100) without it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ResultsPage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    /// 1 to 1000 (100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ResultAnswer {
    pub seq: u64,
    #[serde(flatten)]
    pub result: ProbeResult,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ResultList {
    pub results: Vec<ResultAnswer>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MaintenanceAnswer {
    pub name: String,
    #[serde(flatten)]
    pub spec: MaintenanceSpec,
    /// Open now.
    pub active: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MaintenanceList {
    pub maintenance: Vec<MaintenanceAnswer>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PolicyAnswer {
    pub name: String,
    #[serde(flatten)]
    pub spec: EscalationPolicy,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PolicyList {
    pub policies: Vec<PolicyAnswer>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct IncidentList {
    pub incidents: Vec<Incident>,
}

/// `GET …/incidents`: newest first, `before` the last id of the previous page.
#[derive(Clone, Debug, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct IncidentsPage {
    /// `open`, `acknowledged` or `resolved`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// 1 to 500 (100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `POST …/incidents/{id}/note`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteRequest {
    pub text: String,
}

/// The answer to an event, as PagerDuty's Events API gives it, with the
/// incident it came to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct IncidentEventAnswer {
    /// `success`.
    pub status: String,
    pub message: String,
    pub dedup_key: String,
    pub incident: Incident,
}

/// `PUT …/status-pages/{slug}` takes `keel_core::monitor::StatusPageSpec`.
pub use keel_core::monitor::StatusPageSpec as StatusPageRequest;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StatusPageAnswer {
    pub slug: String,
    #[serde(flatten)]
    pub spec: keel_core::monitor::StatusPageSpec,
    /// Where it is served: `/status/{slug}` (and `.json`, and badges at
    /// `/status/{slug}/badge/{monitor}.svg`).
    pub url: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StatusPageList {
    pub status_pages: Vec<StatusPageAnswer>,
}
