//! Monitors: each owns a hidden schedule (`keel.monitor.{name}`) whose
//! slots are probe jobs on the namespace's `keel.monitor` queue, so a probe
//! slot runs once across nodes and survives restarts like any schedule's.
//! The prober (`services/prober.rs`) runs them (`probe.rs`) and records
//! each result here: one store write folds it into the monitor's counters
//! and opens or resolves its incident with the jobs that page it.
//! Incidents, their escalation and the PagerDuty-shaped events are
//! `incidents.rs`; heartbeats' pings, `ping.rs`; status pages, `status.rs`.

mod incidents;
mod ping;
pub(crate) mod probe;
mod status;

use std::sync::{Arc, Mutex, PoisonError};

use keel_core::monitor::{
    EscalationPolicy, MaintenanceSpec, MonitorJob, MonitorSpec, NewIncident, ProbeResult,
    ResultKind, Severity, check_policy_name, monitor_key, monitor_queue, offset, schedule_name,
};
use keel_core::{
    Backoff, Clock, Error, ErrorCode, JobIdGenerator, MonitorName, Namespace, NewJob, QueuePolicy,
    QueueRef, Timestamp,
};
use keel_store::{
    Monitor, MonitorStore, NewResult, OwnedJob, Recorded, Setting, StoredResult, UptimeHour,
    monitor_not_found,
};
use serde_json::json;
use tokio::sync::Notify;

pub use incidents::IncidentAction;
pub use ping::Ping;
pub use status::{Component, DAYS, PublicIncident, StatusView};

use crate::metrics;
use crate::notifications::{Named, NotificationService};
use crate::outbound::Guard;
use crate::queues::QueueService;
use crate::schedules::ScheduleService;

/// Most monitors in one page.
pub const MAX_PAGE: u32 = 1000;
/// How long results are kept, and hourly uptime.
pub const RESULT_RETENTION_MS: u64 = 30 * 24 * 3_600_000;
pub const UPTIME_RETENTION_MS: u64 = 366 * 24 * 3_600_000;
/// Attempts an escalation step's job gets (a page that cannot be accepted
/// is tried again; its dedup key keeps it to one).
const STEP_ATTEMPTS: u32 = 20;
const STEP_LEASE_MS: u64 = 30_000;
const DAY_MS: u64 = 24 * 3_600_000;

pub struct MonitorService {
    pub(crate) store: Arc<dyn MonitorStore>,
    pub(crate) clock: Arc<dyn Clock>,
    schedules: Arc<ScheduleService>,
    queues: Arc<QueueService>,
    pub(crate) notifications: Arc<NotificationService>,
    pub(crate) guard: Guard,
    ids: Mutex<JobIdGenerator>,
    /// Wakes the prober when a namespace gets its first monitor here.
    pub(crate) queues_woken: Notify,
    /// This node's status pages, as recently shown.
    views: status::Views,
}

/// A monitor's uptime: the share of judged results that came outside
/// confirmed incidents over a day, a week and 30 days (`None` without any).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Uptime {
    pub day: Option<f64>,
    pub week: Option<f64>,
    pub month: Option<f64>,
}

/// The share of `hours` that was up, if anything was judged.
pub fn uptime_of<'a>(hours: impl IntoIterator<Item = &'a UptimeHour>) -> Option<f64> {
    let (up, down) = hours
        .into_iter()
        .fold((0u64, 0u64), |(u, d), h| (u + h.up, d + h.down));
    (up + down > 0).then(|| up as f64 / (up + down) as f64)
}

pub(crate) struct MonitorDeps {
    pub(crate) store: Arc<dyn MonitorStore>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) schedules: Arc<ScheduleService>,
    pub(crate) queues: Arc<QueueService>,
    pub(crate) notifications: Arc<NotificationService>,
    pub(crate) guard: Guard,
}

impl MonitorService {
    pub(crate) fn new(deps: MonitorDeps) -> Self {
        MonitorService {
            store: deps.store,
            clock: deps.clock,
            schedules: deps.schedules,
            queues: deps.queues,
            notifications: deps.notifications,
            guard: deps.guard,
            ids: Mutex::new(JobIdGenerator::default()),
            queues_woken: Notify::new(),
            views: status::Views::default(),
        }
    }

    /// Creates or replaces a monitor and its hidden schedule; true when new.
    pub async fn put(
        &self,
        namespace: &Namespace,
        name: &str,
        spec: MonitorSpec,
    ) -> Result<(Monitor, bool), Error> {
        MonitorName::new(name)?;
        spec.check()?;
        if spec.depends_on.as_ref().is_some_and(|d| d.as_str() == name) {
            return Err(Error::invalid("a monitor cannot depend on itself"));
        }
        let schedule = spec.schedule_spec(offset(namespace.as_str(), name))?;
        self.ensure_queue(namespace).await?;
        let token = ping::new_token()?;
        let now = self.clock.now();
        let (monitor, created) = self
            .store
            .monitor_put(namespace, name, &spec, &token, now)
            .await?;
        // After the monitor: a slot that fires finds it. A put that fails
        // here leaves the monitor without probes until it is put again.
        self.schedules
            .put(namespace, &schedule_name(name), schedule)
            .await?;
        Ok((monitor, created))
    }

    /// A monitor with its uptime.
    pub async fn get(&self, namespace: &Namespace, name: &str) -> Result<(Monitor, Uptime), Error> {
        let monitor = self.stored(namespace, name).await?;
        let uptime = self.uptime(namespace, name).await?;
        Ok((monitor, uptime))
    }

    pub(crate) async fn stored(&self, namespace: &Namespace, name: &str) -> Result<Monitor, Error> {
        self.store
            .monitor_get(namespace, name)
            .await?
            .ok_or_else(|| monitor_not_found(name))
    }

    /// A page of monitors by name, without their uptime (`get` has it).
    pub async fn list(
        &self,
        namespace: &Namespace,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Monitor>, Error> {
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(Error::invalid(format!("limit must be 1 to {MAX_PAGE}")));
        }
        self.store.monitors_list(namespace, after, limit).await
    }

    pub async fn delete(&self, namespace: &Namespace, name: &str) -> Result<(), Error> {
        match self.schedules.delete(namespace, &schedule_name(name)).await {
            Ok(()) => {}
            Err(e) if e.code == ErrorCode::NotFound => {}
            Err(e) => return Err(e),
        }
        if self
            .store
            .monitor_delete(namespace, name, self.clock.now())
            .await?
        {
            Ok(())
        } else {
            Err(monitor_not_found(name))
        }
    }

    pub async fn results(
        &self,
        namespace: &Namespace,
        name: &str,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<StoredResult>, Error> {
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(Error::invalid(format!("limit must be 1 to {MAX_PAGE}")));
        }
        self.stored(namespace, name).await?;
        self.store
            .monitor_results(namespace, name, after, limit)
            .await
    }

    /// The last `days` of hourly uptime.
    pub async fn hours(
        &self,
        namespace: &Namespace,
        name: &str,
        days: u64,
    ) -> Result<Vec<UptimeHour>, Error> {
        let since = Timestamp::from_millis(self.clock.now().as_millis() - (days * DAY_MS) as i64);
        self.store
            .monitor_uptime(namespace, name, keel_store::hour_of(since))
            .await
    }

    pub async fn uptime(&self, namespace: &Namespace, name: &str) -> Result<Uptime, Error> {
        let hours = self.hours(namespace, name, 30).await?;
        let now = self.clock.now().as_millis();
        let within = |days: u64| {
            let since = now - (days * DAY_MS) as i64;
            uptime_of(
                hours
                    .iter()
                    .filter(move |h| h.hour.as_millis() >= since - 3_599_999),
            )
        };
        Ok(Uptime {
            day: within(1),
            week: within(7),
            month: within(30),
        })
    }

    /// The namespace's `keel.monitor` queue, with a policy so the prober
    /// finds it; its jobs set their own attempts and leases.
    async fn ensure_queue(&self, namespace: &Namespace) -> Result<(), Error> {
        let queue = QueueRef {
            namespace: namespace.clone(),
            queue: monitor_queue(),
        };
        let policy = QueuePolicy {
            max_attempts: Some(STEP_ATTEMPTS),
            ..QueuePolicy::default()
        };
        if self.queues.policy(&queue).await? != policy {
            self.queues.set_policy(&queue, policy).await?;
            self.queues_woken.notify_waiters();
        }
        Ok(())
    }

    /// Records a result for `monitor`: its counters, its hour, and the
    /// incident it opens (with its first page) or resolves (with the
    /// notices to whoever was paged), in one write.
    pub(crate) async fn record(
        &self,
        namespace: &Namespace,
        monitor: &Monitor,
        result: ProbeResult,
    ) -> Result<Recorded, Error> {
        let now = self.clock.now();
        let spec = &monitor.spec;
        let policy = match &spec.escalation {
            Some(name) => self.policy(namespace, name).await.ok().map(|p| p.spec),
            None => None,
        };
        let id = self.next_incident(now);
        let mut on_open = Vec::new();
        let mut on_resolve = Vec::new();
        if policy.is_some() {
            on_open.push(self.job(
                namespace,
                &MonitorJob::Escalate {
                    incident: id,
                    step: 0,
                },
                now,
            )?);
        }
        let mut on_tls = Vec::new();
        if let Some(days_left) = result.tls_days_left
            && spec
                .http
                .as_ref()
                .is_some_and(|h| h.tls_expiry_days.is_some())
        {
            let warn = MonitorJob::TlsExpiry {
                monitor: monitor.name.clone(),
                days_left,
            };
            on_tls.push(self.job(namespace, &warn, now)?);
        }
        let resolving = monitor.incident;
        if let Some(incident) = resolving
            && policy.as_ref().is_some_and(|p| p.resolve_notify)
        {
            on_resolve.push(self.job(namespace, &MonitorJob::Resolved { incident }, now)?);
        }
        let summary = match &result.error {
            Some(error) => format!("{} is down: {error}", monitor.name),
            None => format!("{} is down", monitor.name),
        };
        let source = spec
            .http
            .as_ref()
            .map(|h| h.url.clone())
            .or(spec.tcp.as_ref().map(|t| format!("{}:{}", t.host, t.port)));
        let ok = result.ok;
        let kind = result.kind;
        let recorded = self
            .store
            .monitor_record(
                NewResult {
                    namespace: namespace.clone(),
                    monitor: monitor.name.clone(),
                    open: NewIncident {
                        id,
                        dedup_key: monitor_key(&monitor.name),
                        monitor: Some(monitor.name.clone()),
                        summary: keel_core::monitor::clip(summary, keel_core::monitor::MAX_SUMMARY),
                        severity: Severity::Critical,
                        source,
                        details: Some(json!({"result": &result})),
                        escalation: spec.escalation.clone(),
                    },
                    result,
                    on_open,
                    on_resolve,
                    resolving,
                    on_tls,
                },
                now,
            )
            .await?;
        if ok.is_some() && kind != ResultKind::Ping {
            metrics::monitor_probe(namespace, ok == Some(true));
        }
        match (recorded.change, &recorded.incident) {
            (keel_core::monitor::Change::Open, Some(_)) => metrics::incident(namespace, "opened"),
            (keel_core::monitor::Change::Resolve, Some(_)) => {
                metrics::incident(namespace, "resolved");
            }
            _ => {}
        }
        Ok(recorded)
    }

    /// A job on the namespace's `keel.monitor` queue: an escalation step or
    /// a resolution's notices, run at once.
    pub(crate) fn job(
        &self,
        namespace: &Namespace,
        job: &MonitorJob,
        run_at: Timestamp,
    ) -> Result<OwnedJob, Error> {
        let payload = serde_json::to_string(job).map_err(|e| Error::internal(e.to_string()))?;
        let payload = serde_json::value::RawValue::from_string(payload)
            .map_err(|e| Error::internal(e.to_string()))?;
        let key = match job {
            MonitorJob::Escalate { incident, step } => format!("keel.incident/{incident}/{step}"),
            MonitorJob::Resolved { incident } => format!("keel.incident/{incident}/resolved"),
            _ => String::new(),
        };
        let now = self.clock.now();
        Ok(OwnedJob {
            queue: QueueRef {
                namespace: namespace.clone(),
                queue: monitor_queue(),
            },
            id: self
                .ids
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .next(now),
            job: NewJob {
                payload,
                priority: 0,
                run_at,
                max_attempts: STEP_ATTEMPTS,
                backoff: Backoff::default(),
                lease_ms: STEP_LEASE_MS,
                idempotency_key: (!key.is_empty()).then_some(key),
                ordering_key: None,
                tags: Default::default(),
                debounce_key: None,
                traceparent: None,
            },
            owner: None,
        })
    }

    pub(crate) fn next_incident(&self, now: Timestamp) -> keel_core::IncidentId {
        self.ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .next_incident(now)
    }

    /// Creates or replaces an escalation policy; true when new.
    pub async fn policy_put(
        &self,
        namespace: &Namespace,
        name: &str,
        spec: &EscalationPolicy,
    ) -> Result<(Named<EscalationPolicy>, bool), Error> {
        check_policy_name(name)?;
        spec.check()?;
        for page in spec.steps.iter().flat_map(|s| &s.notify) {
            // A page on a channel that does not exist would never go.
            self.notifications
                .channel_get(namespace, &page.channel)
                .await
                .map_err(|e| match e.code {
                    ErrorCode::NotFound => Error::invalid(format!(
                        "channel {:?} does not exist",
                        page.channel.as_str()
                    )),
                    _ => e,
                })?;
        }
        self.ensure_queue(namespace).await?;
        let (stored, created) = self
            .notifications
            .put(namespace, Setting::EscalationPolicy, name, spec)
            .await?;
        Ok((self.policy(namespace, &stored.name).await?, created))
    }

    pub async fn policy(
        &self,
        namespace: &Namespace,
        name: &str,
    ) -> Result<Named<EscalationPolicy>, Error> {
        self.notifications
            .get(namespace, Setting::EscalationPolicy, name)
            .await
    }

    pub async fn policies(
        &self,
        namespace: &Namespace,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Named<EscalationPolicy>>, Error> {
        self.notifications
            .list(namespace, Setting::EscalationPolicy, after, limit)
            .await
    }

    pub async fn policy_delete(&self, namespace: &Namespace, name: &str) -> Result<(), Error> {
        self.notifications
            .delete(namespace, &[Setting::EscalationPolicy], name)
            .await
    }

    pub async fn maintenance_put(
        &self,
        namespace: &Namespace,
        name: &str,
        spec: &MaintenanceSpec,
    ) -> Result<(Named<MaintenanceSpec>, bool), Error> {
        check_policy_name(name).map_err(|_| {
            Error::invalid(format!("maintenance name {name:?} is not a valid name"))
        })?;
        spec.check()?;
        let (stored, created) = self
            .notifications
            .put(namespace, Setting::Maintenance, name, spec)
            .await?;
        Ok((self.maintenance(namespace, &stored.name).await?, created))
    }

    pub async fn maintenance(
        &self,
        namespace: &Namespace,
        name: &str,
    ) -> Result<Named<MaintenanceSpec>, Error> {
        self.notifications
            .get(namespace, Setting::Maintenance, name)
            .await
    }

    pub async fn maintenances(
        &self,
        namespace: &Namespace,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Named<MaintenanceSpec>>, Error> {
        self.notifications
            .list(namespace, Setting::Maintenance, after, limit)
            .await
    }

    pub async fn maintenance_delete(&self, namespace: &Namespace, name: &str) -> Result<(), Error> {
        self.notifications
            .delete(namespace, &[Setting::Maintenance], name)
            .await
    }
}
