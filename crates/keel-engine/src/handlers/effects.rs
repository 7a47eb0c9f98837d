//! An attempt's publishes and enqueues. They are collected during the
//! attempt and committed with its completion as one job on the namespace's
//! `keel.handler-effects` queue (a transactional outbox on Keel's own
//! jobs), which the effects worker then carries out. Each event's id and
//! each job's idempotency key default to the attempt's job id and the
//! effect's place among the attempt's calls (`{job}.{n}`), so an effects
//! job run twice publishes and enqueues nothing twice.

use std::collections::BTreeMap;
use std::sync::Mutex;

use keel_core::job::JobRequest;
use keel_core::{
    Error, JobIdGenerator, Namespace, NewEvent, NewJob, QueueName, QueueRef, Timestamp, TopicName,
    TopicPolicy,
};
use keel_store::OwnedJob;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::jobs::JobService;
use crate::topics::TopicService;

/// The queue, per namespace, that effects' jobs go to.
pub const EFFECTS_QUEUE: &str = "keel.handler-effects";
/// Effects one attempt may leave.
const MAX_EFFECTS: usize = 100;

pub(crate) fn queue(namespace: &Namespace) -> Result<QueueRef, Error> {
    Ok(QueueRef {
        namespace: namespace.clone(),
        queue: QueueName::new(EFFECTS_QUEUE)?,
    })
}

/// An event as a handler publishes it: `data` is its payload; `id`
/// defaults to `{job}.{n}`, `type` to "", `source` to `keel:handler`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandlerEvent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default)]
    pub data: Value,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Publish {
    pub topic: String,
    pub event: HandlerEvent,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Enqueue {
    pub queue: String,
    pub job: Box<RawValue>,
    /// The idempotency key it is enqueued with when it names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// What an attempt asked to publish and enqueue, in order.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Effects {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<Publish>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<Enqueue>,
}

impl Effects {
    fn room(&self) -> Result<(), String> {
        if self.events.len() + self.jobs.len() >= MAX_EFFECTS {
            return Err(format!(
                "an attempt publishes and enqueues at most {MAX_EFFECTS} times"
            ));
        }
        Ok(())
    }

    /// Checked now, so that the handler hears of a bad event at once.
    pub(super) fn publish(&mut self, job: &str, mut publish: Publish) -> Result<Value, String> {
        self.room()?;
        TopicName::new(&publish.topic).map_err(|e| e.message)?;
        let n = self.events.len() + self.jobs.len();
        let id = publish
            .event
            .id
            .get_or_insert_with(|| format!("{job}.{n}"))
            .clone();
        new_event(&publish.event, Timestamp::from_millis(0))?
            .check(&TopicPolicy::default())
            .map_err(|e| e.message)?;
        self.events.push(publish);
        Ok(serde_json::json!({ "id": id }))
    }

    /// Checked now as far as it can be without the queue's policy.
    pub(super) fn enqueue(&mut self, job: &str, mut enqueue: Enqueue) -> Result<Value, String> {
        self.room()?;
        QueueName::new(&enqueue.queue).map_err(|e| e.message)?;
        let request: JobRequest =
            serde_json::from_str(enqueue.job.get()).map_err(|e| format!("not a job: {e}"))?;
        let n = self.events.len() + self.jobs.len();
        if request.idempotency_key.is_none() && request.debounce.is_none() {
            enqueue.key = Some(format!("keel.handler:{job}.{n}"));
        }
        let answer = serde_json::json!({ "idempotency_key": enqueue.key });
        self.jobs.push(enqueue);
        Ok(answer)
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.jobs.is_empty()
    }

    /// The effects' job, to commit with the attempt (none when empty).
    /// Effects of one object's attempts share its ordering key: they are
    /// carried out in the order their attempts committed.
    pub(super) fn into_job(
        self,
        namespace: &Namespace,
        object: Option<&keel_core::handler::ObjectRef>,
        job: &str,
        ids: &Mutex<JobIdGenerator>,
        now: Timestamp,
    ) -> Result<Option<OwnedJob>, Error> {
        if self.is_empty() {
            return Ok(None);
        }
        let payload = serde_json::to_string(&Carried {
            job: job.to_owned(),
            effects: self,
        })
        .map_err(|e| Error::internal(format!("effects: {e}")))?;
        let payload = RawValue::from_string(payload).map_err(|e| Error::internal(e.to_string()))?;
        let id = ids.lock().unwrap_or_else(|p| p.into_inner()).next(now);
        let mut new = NewJob::new(payload, now);
        new.ordering_key = object.map(keel_core::handler::ObjectRef::ordering_key);
        Ok(Some(OwnedJob {
            queue: queue(namespace)?,
            id,
            job: new,
            owner: None,
        }))
    }
}

/// An effects job's payload: the attempt's job id and its effects (not
/// flattened: serde's flatten cannot carry the jobs' raw JSON).
#[derive(Serialize, Deserialize)]
struct Carried {
    job: String,
    effects: Effects,
}

/// The event to publish (its id was given or filled in at the call).
fn new_event(e: &HandlerEvent, now: Timestamp) -> Result<NewEvent, String> {
    Ok(NewEvent {
        id: e.id.clone().unwrap_or_default(),
        generated_id: false,
        kind: e.kind.clone().unwrap_or_default(),
        source: e.source.clone().unwrap_or_else(|| "keel:handler".into()),
        key: e.key.clone(),
        time: now,
        data: serde_json::to_string(&e.data).map_err(|e| e.to_string())?,
        headers: e.headers.clone(),
    })
}

/// Carries out an effects job: each event published and each job enqueued
/// in order, deduplicated by their default ids and keys.
pub(crate) async fn carry_out(
    jobs: &JobService,
    topics: &TopicService,
    namespace: &Namespace,
    payload: &RawValue,
    now: Timestamp,
) -> Result<(), Error> {
    let Carried { effects, .. } = serde_json::from_str(payload.get())
        .map_err(|e| Error::invalid(format!("an effects job's payload: {e}")))?;
    for publish in &effects.events {
        let topic = TopicName::new(&publish.topic)?;
        let event = new_event(&publish.event, now).map_err(Error::invalid)?;
        topics.publish(namespace, &topic, vec![event]).await?;
    }
    for enqueue in effects.jobs {
        let queue = QueueRef {
            namespace: namespace.clone(),
            queue: QueueName::new(&enqueue.queue)?,
        };
        let mut request: JobRequest = serde_json::from_str(enqueue.job.get())
            .map_err(|e| Error::invalid(format!("not a job: {e}")))?;
        if request.idempotency_key.is_none() && request.debounce.is_none() {
            request.idempotency_key = enqueue.key;
        }
        jobs.enqueue(&queue, request).await?;
    }
    Ok(())
}
