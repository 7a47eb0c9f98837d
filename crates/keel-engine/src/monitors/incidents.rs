//! Incidents: read, acknowledged, resolved, noted, and triggered by events
//! of PagerDuty's shape; and how they page. An escalation step is a job
//! keyed (incident, step) on the namespace's `keel.monitor` queue. When it
//! runs, one compare-and-set moves the incident from "step k, open" to
//! "paged step k" and writes the next step's job (due after `wait_ms`) in
//! the same write; only then are the pages accepted, each with the dedup
//! key (incident, step, target), so a step retried after a crash pages
//! nobody twice. An acknowledgement is a compare-and-set on the same row:
//! a step that finds the incident acknowledged pages nobody.

use keel_core::monitor::{
    Action, Incident, IncidentEvent, IncidentMove, IncidentStatus, MonitorJob, NewIncident,
    PageTarget, Severity,
};
use keel_core::notification::{NotifyRequest, RecipientSpec, To};
use keel_core::{Error, ErrorCode, IncidentId, Namespace};
use keel_store::{IncidentQuery, IncidentRef, Moved, incident_not_found};

use super::MonitorService;
use crate::metrics;

/// The policy that pages incidents that name none (events, SLO alerts).
const DEFAULT_POLICY: &str = "default";
/// Most incidents in one page.
const MAX_INCIDENTS: u32 = 500;
/// Most entries an incident's timeline holds before notes are refused.
const MAX_TIMELINE: usize = 1000;

/// What someone does to an incident (`POST …/incidents/{id}/{action}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IncidentAction {
    Acknowledge,
    Resolve,
    Note(String),
}

impl MonitorService {
    pub async fn incident(
        &self,
        namespace: &Namespace,
        id: &IncidentId,
    ) -> Result<Incident, Error> {
        self.store
            .incident_get(namespace, id)
            .await?
            .ok_or_else(|| incident_not_found(&IncidentRef::Id(*id)))
    }

    pub async fn incidents(
        &self,
        namespace: &Namespace,
        query: &IncidentQuery,
    ) -> Result<Vec<Incident>, Error> {
        if !(1..=MAX_INCIDENTS).contains(&query.limit) {
            return Err(Error::invalid(format!(
                "limit must be 1 to {MAX_INCIDENTS}"
            )));
        }
        self.store.incidents_list(namespace, query).await
    }

    /// Acknowledges, resolves or notes an incident as `by`; an
    /// acknowledgement of one no longer open, or a resolution of a resolved
    /// one, is a 409.
    pub async fn act(
        &self,
        namespace: &Namespace,
        id: &IncidentId,
        action: IncidentAction,
        by: &str,
    ) -> Result<Incident, Error> {
        let by = by.to_owned();
        let change = match action {
            IncidentAction::Acknowledge => IncidentMove::Acknowledge { by },
            IncidentAction::Resolve => IncidentMove::Resolve { by },
            IncidentAction::Note(text) => {
                if text.is_empty() || text.len() > keel_core::monitor::MAX_NOTE {
                    return Err(Error::invalid(format!(
                        "a note is 1 to {} bytes",
                        keel_core::monitor::MAX_NOTE
                    )));
                }
                IncidentMove::Note { by, text }
            }
        };
        let current = self.incident(namespace, id).await?;
        if matches!(change, IncidentMove::Note { .. }) && current.timeline.len() >= MAX_TIMELINE {
            return Err(Error::new(
                ErrorCode::Conflict,
                format!("the incident's timeline holds {MAX_TIMELINE} entries; no more notes"),
            ));
        }
        let resolves = matches!(change, IncidentMove::Resolve { .. });
        let acks = matches!(change, IncidentMove::Acknowledge { .. });
        let jobs = if resolves {
            self.resolution_notices(namespace, &current).await?
        } else {
            Vec::new()
        };
        let now = self.clock.now();
        let Moved { incident, applied } = self
            .store
            .incident_move(namespace, &IncidentRef::Id(*id), change, jobs, now)
            .await?;
        if !applied {
            return Err(Error::new(
                ErrorCode::Conflict,
                format!("incident {} is {}", incident.id, incident.status.as_str()),
            ));
        }
        if resolves {
            metrics::incident(namespace, "resolved");
        } else if acks {
            metrics::incident(namespace, "acknowledged");
        }
        Ok(incident)
    }

    /// An event of PagerDuty Events v2's shape: a trigger opens an incident
    /// under its dedup key (or joins the unresolved one); acknowledge and
    /// resolve move the unresolved one. Answers the incident and whether
    /// the event changed anything.
    pub async fn event(
        &self,
        namespace: &Namespace,
        event: IncidentEvent,
        by: &str,
    ) -> Result<(Incident, bool), Error> {
        event.check()?;
        let which = IncidentRef::Key(event.dedup_key.clone());
        match event.action {
            Action::Trigger => {
                let now = self.clock.now();
                let id = self.next_incident(now);
                let escalation = match event.escalation {
                    Some(name) => {
                        self.policy(namespace, &name).await?;
                        Some(name)
                    }
                    // Without one, the namespace's `default` policy pages, if any.
                    None => match self.policy(namespace, DEFAULT_POLICY).await {
                        Ok(_) => Some(DEFAULT_POLICY.to_owned()),
                        Err(e) if e.code == ErrorCode::NotFound => None,
                        Err(e) => return Err(e),
                    },
                };
                let mut jobs = Vec::new();
                if escalation.is_some() {
                    let first = MonitorJob::Escalate {
                        incident: id,
                        step: 0,
                    };
                    jobs.push(self.job(namespace, &first, now)?);
                }
                let new = NewIncident {
                    id,
                    dedup_key: event.dedup_key,
                    monitor: None,
                    summary: event.summary.unwrap_or_default(),
                    severity: event.severity.unwrap_or(Severity::Critical),
                    source: event.source,
                    details: event.details,
                    escalation,
                };
                let (incident, opened) =
                    self.store.incident_open(namespace, new, jobs, now).await?;
                if opened {
                    metrics::incident(namespace, "opened");
                }
                Ok((incident, opened))
            }
            Action::Acknowledge | Action::Resolve => {
                let action = if event.action == Action::Resolve {
                    IncidentAction::Resolve
                } else {
                    IncidentAction::Acknowledge
                };
                let incident = self
                    .store
                    .incident_by_key(namespace, &event.dedup_key)
                    .await?
                    .ok_or_else(|| incident_not_found(&which))?;
                match self.act(namespace, &incident.id, action, by).await {
                    Ok(incident) => Ok((incident, true)),
                    Err(e) if e.code == ErrorCode::Conflict => Ok((incident, false)),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// The job that tells everyone paged for `incident` that it resolved,
    /// when its policy says so.
    async fn resolution_notices(
        &self,
        namespace: &Namespace,
        incident: &Incident,
    ) -> Result<Vec<keel_store::OwnedJob>, Error> {
        let Some(name) = &incident.escalation else {
            return Ok(Vec::new());
        };
        let notify = match self.policy(namespace, name).await {
            Ok(policy) => policy.spec.resolve_notify,
            Err(e) if e.code == ErrorCode::NotFound => false,
            Err(e) => return Err(e),
        };
        let job = MonitorJob::Resolved {
            incident: incident.id,
        };
        Ok(if notify && !incident.paged.is_empty() {
            vec![self.job(namespace, &job, self.clock.now())?]
        } else {
            Vec::new()
        })
    }

    /// Runs escalation step `step` of `id` (a `keel.monitor` job).
    pub(crate) async fn escalate(
        &self,
        namespace: &Namespace,
        id: IncidentId,
        step: u32,
    ) -> Result<(), Error> {
        let Some(incident) = self.store.incident_get(namespace, &id).await? else {
            return Ok(());
        };
        if incident.status != IncidentStatus::Open {
            return Ok(());
        }
        let policy = match &incident.escalation {
            Some(name) => match self.policy(namespace, name).await {
                Ok(policy) => Some(policy.spec),
                Err(e) if e.code == ErrorCode::NotFound => None,
                Err(e) => return Err(e),
            },
            None => None,
        };
        let Some(this) = policy.as_ref().and_then(|p| p.step(step)).cloned() else {
            if incident.step == step {
                let reason = "the escalation policy is gone, or has no such step".to_owned();
                self.mute(namespace, id, step, reason).await?;
            }
            return Ok(());
        };
        if incident.step == step + 1 {
            // This step was decided and its job ran again (its ack lost, or
            // the node died before the pages were accepted): accept them
            // again; their dedup keys keep each to one.
            return self.page(namespace, &incident, step, &this.notify).await;
        }
        if incident.step != step {
            return Ok(());
        }
        if let Some(reason) = self.muted(namespace, &incident).await? {
            return self.mute(namespace, id, step, reason).await;
        }
        let now = self.clock.now();
        let next = match policy.as_ref().and_then(|p| p.step(step + 1)) {
            Some(_) => vec![self.job(
                namespace,
                &MonitorJob::Escalate {
                    incident: id,
                    step: step + 1,
                },
                now.plus_ms(this.wait_ms),
            )?],
            None => Vec::new(),
        };
        let change = IncidentMove::Page {
            step,
            pages: this.notify.clone(),
        };
        let moved = self
            .store
            .incident_move(namespace, &IncidentRef::Id(id), change, next, now)
            .await?;
        if !moved.applied {
            // Acknowledged or resolved in between, or another node's run of
            // this job paged: nothing more here.
            return Ok(());
        }
        metrics::incident(namespace, "paged");
        self.page(namespace, &moved.incident, step, &this.notify)
            .await
    }

    async fn mute(
        &self,
        namespace: &Namespace,
        id: IncidentId,
        step: u32,
        reason: String,
    ) -> Result<(), Error> {
        let change = IncidentMove::Mute { step, reason };
        self.store
            .incident_move(
                namespace,
                &IncidentRef::Id(id),
                change,
                Vec::new(),
                self.clock.now(),
            )
            .await
            .map(|_| ())
    }

    /// Why a monitor's incident pages nobody now: a maintenance window
    /// covers the monitor, or the monitor it depends on is down.
    async fn muted(
        &self,
        namespace: &Namespace,
        incident: &Incident,
    ) -> Result<Option<String>, Error> {
        let Some(name) = &incident.monitor else {
            return Ok(None);
        };
        let Some(monitor) = self.store.monitor_get(namespace, name).await? else {
            return Ok(None);
        };
        let now = self.clock.now();
        let mut after: Option<String> = None;
        loop {
            let page = self.maintenances(namespace, after.as_deref(), 500).await?;
            for window in &page {
                if window.spec.active(now) && window.spec.covers(name, &monitor.spec.labels) {
                    return Ok(Some(format!("maintenance window {:?}", window.name)));
                }
            }
            match page.last() {
                Some(last) if page.len() == 500 => after = Some(last.name.clone()),
                _ => break,
            }
        }
        if let Some(parent) = &monitor.spec.depends_on
            && let Some(parent) = self.store.monitor_get(namespace, parent.as_str()).await?
            && parent.incident.is_some()
        {
            return Ok(Some(format!(
                "monitor {:?} it depends on is down",
                parent.name
            )));
        }
        Ok(None)
    }

    /// Accepts step `step`'s pages, each once (its dedup key).
    async fn page(
        &self,
        namespace: &Namespace,
        incident: &Incident,
        step: u32,
        targets: &[PageTarget],
    ) -> Result<(), Error> {
        let subject = format!("[{}] {}", incident.severity.as_str(), incident.summary);
        let text = format!(
            "{}\nIncident {} opened at {}.\n{}\nAcknowledge it to stop the escalation: POST /v1/namespaces/{}/incidents/{}/acknowledge",
            incident.summary,
            incident.id,
            incident.opened_at.to_rfc3339(),
            incident
                .source
                .as_ref()
                .map(|s| format!("Source: {s}\n"))
                .unwrap_or_default(),
            namespace,
            incident.id
        );
        let key = format!("keel.incident/{}/{step}", incident.id);
        self.send_all(namespace, targets, &subject, &text, &key)
            .await
    }

    /// Tells everyone paged for `id` that it resolved (a `keel.monitor` job).
    pub(crate) async fn notify_resolved(
        &self,
        namespace: &Namespace,
        id: IncidentId,
    ) -> Result<(), Error> {
        let Some(incident) = self.store.incident_get(namespace, &id).await? else {
            return Ok(());
        };
        let subject = format!("[resolved] {}", incident.summary);
        let text = format!(
            "Resolved: {}\nIncident {} resolved at {}.",
            incident.summary,
            incident.id,
            incident
                .resolved_at
                .unwrap_or(incident.updated_at)
                .to_rfc3339()
        );
        let key = format!("keel.incident/{}/resolved", incident.id);
        self.send_all(namespace, &incident.paged, &subject, &text, &key)
            .await
    }

    /// Warns the first step of a monitor's policy that its certificate
    /// expires in `days_left` days (a `keel.monitor` job, written once per
    /// threshold with the result that crossed it).
    pub(crate) async fn warn_tls(
        &self,
        namespace: &Namespace,
        monitor: &str,
        days_left: i64,
        job: keel_core::JobId,
    ) -> Result<(), Error> {
        let Some(monitor) = self.store.monitor_get(namespace, monitor).await? else {
            return Ok(());
        };
        let policy = match &monitor.spec.escalation {
            Some(name) => match self.policy(namespace, name).await {
                Ok(policy) => policy.spec,
                Err(e) if e.code == ErrorCode::NotFound => return Ok(()),
                Err(e) => return Err(e),
            },
            None => return Ok(()),
        };
        let Some(first) = policy.step(0) else {
            return Ok(());
        };
        let url = monitor
            .spec
            .http
            .as_ref()
            .map(|h| h.url.as_str())
            .unwrap_or_default();
        let subject = format!(
            "[warning] {}: its TLS certificate expires in {days_left} days",
            monitor.name
        );
        let text = format!("{subject}\nThe certificate {url} serves expires in {days_left} days.");
        let key = format!("keel.tls/{}/{job}", monitor.name);
        self.send_all(namespace, &first.notify, &subject, &text, &key)
            .await
    }

    async fn send_all(
        &self,
        namespace: &Namespace,
        targets: &[PageTarget],
        subject: &str,
        text: &str,
        key: &str,
    ) -> Result<(), Error> {
        let mut retry = None;
        for target in targets {
            let to = match &target.to {
                Some(id) => To::Id(id.clone()),
                None => To::Inline(RecipientSpec::default()),
            };
            let request = NotifyRequest {
                template: None,
                subject: Some(subject.to_owned()),
                text: Some(text.to_owned()),
                html: None,
                channels: Vec::new(),
                channel: Some(target.channel.clone()),
                to,
                data: None,
                category: Some("incident".to_owned()),
                critical: true,
                dedup_key: Some(format!(
                    "{key}/{}/{}",
                    target.channel,
                    target.to.as_deref().unwrap_or("")
                )),
                send_at: None,
                digest: None,
            };
            match self.notifications.send(namespace, &request, None).await {
                Ok(_) => {}
                // A channel or recipient that is gone, or a page the
                // channel cannot carry: no retry makes it go.
                Err(e) if e.code.http_status() < 500 && e.code != ErrorCode::QuotaExceeded => {
                    tracing::warn!(%namespace, channel = %target.channel, error = %e, "a page cannot be sent");
                }
                Err(e) => retry = Some(e),
            }
        }
        retry.map_or(Ok(()), Err)
    }
}
