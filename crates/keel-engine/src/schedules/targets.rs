//! What a fire creates, and what it looks at first: the job, event or run
//! of a slot (a job joins the schedule's write; an event or a run carries
//! the slot's key), whether the last fire is unfinished, `cancel_other`,
//! and the queue policies a pass reads once.

use std::collections::HashMap;

use keel_core::job::JobRequest;
use keel_core::schedule::{
    FireTarget, Overlap, ScheduleSpec, ScheduleState, ScheduleTarget, slot_key,
};
use keel_core::{Error, ErrorCode, Namespace, NewEvent, QueuePolicy, QueueRef, Timestamp};
use keel_store::{JobOwner, OwnedJob, Schedule};
use serde_json::Value;

use super::ScheduleService;
use crate::queues::QueueService;

/// Queue policies read once per timer pass (or trigger, or backfill), not
/// once per fire.
#[derive(Default)]
pub(super) struct Policies(HashMap<QueueRef, QueuePolicy>);

impl Policies {
    pub(super) async fn get(
        &mut self,
        queues: &QueueService,
        queue: &QueueRef,
    ) -> Result<QueuePolicy, Error> {
        if let Some(policy) = self.0.get(queue) {
            return Ok(policy.clone());
        }
        let policy = queues.policy(queue).await?;
        self.0.insert(queue.clone(), policy.clone());
        Ok(policy)
    }
}

impl ScheduleService {
    /// Creates one fire's target: a job (added to `jobs`, written with the
    /// schedule), an event or a run (created now, under the slot's key).
    pub(super) async fn create(
        &self,
        schedule: &Schedule,
        nominal: Timestamp,
        now: Timestamp,
        jobs: &mut Vec<OwnedJob>,
        policies: &mut Policies,
    ) -> Result<FireTarget, Error> {
        let ns = &schedule.namespace;
        let rendered = schedule.spec.render(&schedule.name, nominal, now)?;
        match &schedule.spec.target {
            ScheduleTarget::Job { queue, .. } => {
                let queue = QueueRef {
                    namespace: ns.clone(),
                    queue: queue.clone(),
                };
                let mut request: JobRequest = serde_json::from_value(rendered)
                    .map_err(|e| Error::invalid(format!("target.job: {e}")))?;
                let tags = request.tags.get_or_insert_default();
                tags.insert("keel.schedule".into(), schedule.name.clone());
                tags.insert("keel.nominal_time".into(), nominal.to_rfc3339());
                let policy = policies.get(&self.queues, &queue).await?;
                let job = request.validate(&policy, &self.limits, now)?;
                let id = self.ids.next(now);
                jobs.push(OwnedJob {
                    queue,
                    id,
                    job,
                    owner: Some(JobOwner::Schedule {
                        schedule: schedule.name.clone(),
                        nominal,
                    }),
                });
                Ok(FireTarget::Job(id.to_string()))
            }
            ScheduleTarget::Event { topic, .. } => {
                let field = |name: &str| {
                    rendered
                        .get(name)
                        .and_then(|v| v.as_str())
                        .map(str::to_owned)
                };
                let headers = match rendered.get("headers") {
                    Some(h) => serde_json::from_value(h.clone())
                        .map_err(|e| Error::invalid(format!("target.event.headers: {e}")))?,
                    None => Default::default(),
                };
                let event = NewEvent {
                    id: slot_key(&schedule.name, nominal),
                    generated_id: false,
                    kind: field("type").unwrap_or_default(),
                    source: field("source")
                        .unwrap_or_else(|| format!("keel/schedules/{}", schedule.name)),
                    key: field("key"),
                    time: nominal,
                    data: rendered
                        .get("data")
                        .map_or_else(|| "null".into(), Value::to_string),
                    headers,
                };
                let published = self.topics.publish(ns, topic, vec![event]).await?;
                let id = published
                    .first()
                    .map(|p| p.id.clone())
                    .unwrap_or_else(|| slot_key(&schedule.name, nominal));
                Ok(FireTarget::Event(id))
            }
            ScheduleTarget::Run { workflow, .. } => {
                let (run, _) = self
                    .workflows
                    .start(
                        ns,
                        workflow.as_str(),
                        None,
                        rendered,
                        Some(slot_key(&schedule.name, nominal)),
                        None,
                    )
                    .await?;
                Ok(FireTarget::Run(run.id.to_string()))
            }
        }
    }

    /// Whether the last fire's job or run is unfinished (never for events,
    /// nor under `allow`, where it does not matter).
    pub(super) async fn busy(
        &self,
        namespace: &Namespace,
        spec: &ScheduleSpec,
        state: &ScheduleState,
    ) -> Result<bool, Error> {
        if spec.overlap == Overlap::Allow {
            return Ok(false);
        }
        match &state.last {
            Some(FireTarget::Job(id)) => {
                let Ok(id) = id.parse() else { return Ok(false) };
                match self.jobs.get(namespace, id).await {
                    Ok(job) => Ok(!job.state.is_final()),
                    Err(e) if e.code == ErrorCode::JobNotFound => Ok(false),
                    Err(e) => Err(e),
                }
            }
            Some(FireTarget::Run(id)) => {
                let Ok(id) = id.parse() else { return Ok(false) };
                match self.runs.get(namespace, id).await {
                    Ok(run) => Ok(!run.state.status.is_final()),
                    Err(e) if e.code == ErrorCode::NotFound => Ok(false),
                    Err(e) => Err(e),
                }
            }
            Some(FireTarget::Event(_)) | None => Ok(false),
        }
    }

    /// `cancel_other`: the previous fire's job or run is cancelled (without
    /// compensation); one that ended meanwhile is left as it is.
    pub(super) async fn cancel_last(&self, namespace: &Namespace, last: Option<&FireTarget>) {
        let cancelled = match last {
            Some(FireTarget::Job(id)) => match id.parse() {
                Ok(id) => self.jobs.cancel(namespace, id).await.map(|_| ()),
                Err(_) => Ok(()),
            },
            Some(FireTarget::Run(id)) => match id.parse() {
                Ok(id) => self
                    .workflows
                    .advance(
                        namespace,
                        id,
                        crate::workflows::Hint::Nothing,
                        crate::workflows::Op::Cancel {
                            compensate: false,
                            by: Some("its schedule (overlap: cancel_previous)".to_owned()),
                        },
                    )
                    .await
                    .map(|_| ()),
                Err(_) => Ok(()),
            },
            Some(FireTarget::Event(_)) | None => Ok(()),
        };
        if let Err(e) = cancelled
            && e.code != ErrorCode::Conflict
        {
            tracing::info!(error = %e, "cancel_other: the previous fire was not cancelled");
        }
    }

    /// A run target's workflow must exist when the schedule is put (a queue
    /// or a topic is created by its first job or event).
    pub(super) async fn target_exists(
        &self,
        namespace: &Namespace,
        spec: &ScheduleSpec,
    ) -> Result<(), Error> {
        if let ScheduleTarget::Run { workflow, .. } = &spec.target {
            self.workflows
                .stored(namespace, workflow.as_str(), None)
                .await?;
        }
        Ok(())
    }
}
