//! The monitors domain: monitors with their counters (`keel_core::monitor`),
//! their results and hourly uptime, and incidents. A result, the monitor's
//! counters, the hour's uptime and the incident it opens or resolves (with
//! the jobs that page) are one write, so whatever the nodes do a monitor has
//! at most one open incident; an incident moves by compare-and-set under its
//! row, so a page decided after an acknowledgement never goes. Escalation
//! policies, maintenance windows and status pages are named documents in
//! the notification settings (`Setting`).

use async_trait::async_trait;
use keel_core::monitor::{
    Change, Incident, IncidentMove, IncidentStatus, MonitorSpec, MonitorState, NewIncident,
    ProbeResult,
};
use keel_core::{Error, ErrorCode, IncidentId, Namespace, Timestamp};

use crate::OwnedJob;

/// A monitor as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Monitor {
    pub name: String,
    pub spec: MonitorSpec,
    /// A heartbeat's ping token (every monitor has one; only heartbeats use it).
    pub token: String,
    pub state: MonitorState,
    /// Its open incident, if any.
    pub incident: Option<IncidentId>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A result to fold into a monitor, with what its fold may start: the
/// incident it opens and the jobs that page it, or the jobs that follow a
/// resolution. The store writes only what the fold calls for.
#[derive(Clone, Debug)]
pub struct NewResult {
    pub namespace: Namespace,
    pub monitor: String,
    pub result: ProbeResult,
    pub open: NewIncident,
    pub on_open: Vec<OwnedJob>,
    /// Written when the result resolves `resolving` (the incident the
    /// writer read as the monitor's open one, whom these jobs name).
    pub on_resolve: Vec<OwnedJob>,
    pub resolving: Option<IncidentId>,
    /// Written when the result crosses a certificate-expiry threshold for
    /// the first time (`keel_core::monitor::tls_warning`).
    pub on_tls: Vec<OwnedJob>,
}

/// What recording a result came to.
#[derive(Clone, Debug, PartialEq)]
pub struct Recorded {
    pub monitor: Monitor,
    pub change: Change,
    /// The incident opened or resolved.
    pub incident: Option<Incident>,
}

/// A result as stored: `seq` orders a monitor's results.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredResult {
    pub seq: u64,
    pub result: ProbeResult,
}

/// An hour's probes that passed and failed while down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UptimeHour {
    pub hour: Timestamp,
    pub up: u64,
    pub down: u64,
}

/// Which incident a move is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IncidentRef {
    Id(IncidentId),
    /// The unresolved one under a dedup key.
    Key(String),
}

/// What a move came to: the incident after it, and whether it applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Moved {
    pub incident: Incident,
    pub applied: bool,
}

/// A page of incidents, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IncidentQuery {
    pub status: Option<IncidentStatus>,
    pub monitor: Option<String>,
    /// Older than this one (the previous page's last).
    pub before: Option<IncidentId>,
    pub limit: u32,
}

pub fn monitor_not_found(name: &str) -> Error {
    Error::new(ErrorCode::NotFound, format!("monitor {name:?} not found"))
}

pub fn incident_not_found(incident: &IncidentRef) -> Error {
    let what = match incident {
        IncidentRef::Id(id) => format!("incident {id} not found"),
        IncidentRef::Key(key) => format!("no unresolved incident with dedup_key {key:?}"),
    };
    Error::new(ErrorCode::NotFound, what)
}

/// The start of the hour `t` is in.
pub fn hour_of(t: Timestamp) -> Timestamp {
    Timestamp::from_millis(t.as_millis().div_euclid(3_600_000) * 3_600_000)
}

#[async_trait]
pub trait MonitorStore: Send + Sync {
    /// Creates a monitor (with `token`) or replaces its spec, keeping its
    /// counters and token. True when new.
    async fn monitor_put(
        &self,
        namespace: &Namespace,
        name: &str,
        spec: &MonitorSpec,
        token: &str,
        now: Timestamp,
    ) -> Result<(Monitor, bool), Error>;

    async fn monitor_get(
        &self,
        namespace: &Namespace,
        name: &str,
    ) -> Result<Option<Monitor>, Error>;

    /// A namespace's monitors by name, after `after`, at most `limit`.
    async fn monitors_list(
        &self,
        namespace: &Namespace,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Monitor>, Error>;

    /// Deletes a monitor with its results and uptime, resolving its open
    /// incident; false when there was none.
    async fn monitor_delete(
        &self,
        namespace: &Namespace,
        name: &str,
        now: Timestamp,
    ) -> Result<bool, Error>;

    /// The monitor a ping token is for.
    async fn monitor_by_token(&self, token: &str) -> Result<Option<(Namespace, String)>, Error>;

    /// Folds a result into its monitor in one write (see the module); 404
    /// when the monitor is gone.
    async fn monitor_record(&self, result: NewResult, now: Timestamp) -> Result<Recorded, Error>;

    /// A monitor's results after `after` oldest first, or without it the
    /// last `limit`, oldest first.
    async fn monitor_results(
        &self,
        namespace: &Namespace,
        name: &str,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<StoredResult>, Error>;

    /// A monitor's hourly uptime from `since` on, oldest first.
    async fn monitor_uptime(
        &self,
        namespace: &Namespace,
        name: &str,
        since: Timestamp,
    ) -> Result<Vec<UptimeHour>, Error>;

    /// Opens an incident, or when one is unresolved under its dedup key
    /// adds `triggered` to that one's timeline. True when opened (and
    /// `jobs` written with it).
    async fn incident_open(
        &self,
        namespace: &Namespace,
        incident: NewIncident,
        jobs: Vec<OwnedJob>,
        now: Timestamp,
    ) -> Result<(Incident, bool), Error>;

    /// Moves an incident if the move applies to it as stored, writing
    /// `jobs` with it (the next step, a resolution's notices); 404 when
    /// there is no such incident.
    async fn incident_move(
        &self,
        namespace: &Namespace,
        incident: &IncidentRef,
        change: IncidentMove,
        jobs: Vec<OwnedJob>,
        now: Timestamp,
    ) -> Result<Moved, Error>;

    async fn incident_get(
        &self,
        namespace: &Namespace,
        id: &IncidentId,
    ) -> Result<Option<Incident>, Error>;

    /// The unresolved incident under a dedup key.
    async fn incident_by_key(
        &self,
        namespace: &Namespace,
        dedup_key: &str,
    ) -> Result<Option<Incident>, Error>;

    async fn incidents_list(
        &self,
        namespace: &Namespace,
        query: &IncidentQuery,
    ) -> Result<Vec<Incident>, Error>;

    /// Deletes results recorded before `results_before` and hours before
    /// `hours_before`, at most `limit` rows; how many went.
    async fn monitors_prune(
        &self,
        results_before: Timestamp,
        hours_before: Timestamp,
        limit: u32,
    ) -> Result<u64, Error>;
}

/// What the write of a result does to the incident under the monitor's key.
#[derive(Clone, Debug, PartialEq)]
pub enum IncidentWrite {
    None,
    Insert(Incident),
    Update(Incident),
}

/// A result folded into a monitor as stored, decided the same on every
/// backend: the counters after it, what it adds to its hour, the incident
/// to write and whether the result's jobs go with it.
#[derive(Clone, Debug)]
pub struct Folded {
    pub state: MonitorState,
    pub change: Change,
    pub up: u64,
    pub down: u64,
    pub incident: IncidentWrite,
    /// The monitor's open incident after the write.
    pub open: Option<IncidentId>,
    /// The jobs the write starts: `on_open` (an incident opened),
    /// `on_resolve` (the incident the jobs name resolved), `on_tls`.
    pub jobs: Vec<OwnedJob>,
}

/// Folds `new` into `monitor`, given the unresolved incident under the
/// monitor's key as stored; the jobs the write starts are taken from `new`.
pub fn fold_result(
    monitor: &Monitor,
    unresolved: Option<Incident>,
    new: &mut NewResult,
    now: Timestamp,
) -> Folded {
    let (mut state, change) = keel_core::monitor::fold(monitor.state, &new.result, &monitor.spec);
    let mut jobs = Vec::new();
    if keel_core::monitor::tls_warning(&mut state, &new.result, &monitor.spec).is_some() {
        jobs.append(&mut new.on_tls);
    }
    let judged = u64::from(new.result.ok.is_some());
    let (up, down) = if state.status == keel_core::monitor::Status::Down {
        (0, judged)
    } else {
        (judged, 0)
    };
    let mut folded = Folded {
        state,
        change,
        up,
        down,
        incident: IncidentWrite::None,
        open: monitor.incident,
        jobs,
    };
    match (change, unresolved) {
        (Change::Open, Some(mut incident)) => {
            let mut again = keel_core::monitor::TimelineEntry::new(now, "triggered");
            again.text = Some(new.open.summary.clone());
            incident.timeline.push(again);
            incident.updated_at = now;
            folded.open = Some(incident.id);
            folded.incident = IncidentWrite::Update(incident);
        }
        (Change::Open, None) => {
            let incident = new.open.clone().open(now);
            folded.open = Some(incident.id);
            folded.incident = IncidentWrite::Insert(incident);
            folded.jobs.append(&mut new.on_open);
        }
        (Change::Resolve, Some(mut incident)) => {
            IncidentMove::Resolve {
                by: "recovery".into(),
            }
            .apply(&mut incident, now);
            folded.open = None;
            if new.resolving == Some(incident.id) {
                folded.jobs.append(&mut new.on_resolve);
            }
            folded.incident = IncidentWrite::Update(incident);
        }
        (Change::Resolve, None) => folded.open = None,
        (Change::None, _) => {}
    }
    folded
}
