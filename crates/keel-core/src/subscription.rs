//! Subscriptions: named cursors over a topic, with a filter, that either
//! feed a target (a job per event on a queue, or a run per event) or are
//! pulled by consumers. This module holds what is pure: the spec and its
//! checks, the filter, and the plan of a pulled fetch, which both stores
//! carry out the same way.
//!
//! Pulled consumption hands out **per-key claims**: a fetch takes matching
//! events after the subscription's position, skipping any event whose key
//! has an earlier event claimed by someone and not yet committed, so an
//! event of key K is never in flight to two consumers at once and events of
//! one key are handed out in seq order. Events of other keys (and keyless
//! events) flow in parallel. The position moves over the prefix of events
//! that are committed or do not match.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::workflow::expr;
use crate::{Backoff, EndpointName, Error, Event, QueueName, Timestamp, WorkflowName};

/// Most type patterns in one filter.
pub const MAX_TYPES: usize = 32;
/// Shortest and longest consumer timeout, in ms.
pub const MIN_CONSUMER_TIMEOUT_MS: u64 = 1000;
pub const MAX_CONSUMER_TIMEOUT_MS: u64 = 24 * 3_600_000;
pub const DEFAULT_CONSUMER_TIMEOUT_MS: u64 = 30_000;

/// Which events a subscription sees: types (globs with `*`) and a condition
/// in the expression language over `event`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<String>,
    #[serde(default, rename = "if", skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
}

impl Filter {
    pub fn check(&self) -> Result<(), Error> {
        if self.types.len() > MAX_TYPES {
            return Err(Error::invalid(format!(
                "filter.types holds at most {MAX_TYPES} patterns"
            )));
        }
        if self.types.iter().any(|t| t.is_empty() || t.len() > 256) {
            return Err(Error::invalid("filter.types patterns are 1 to 256 bytes"));
        }
        if let Some(condition) = &self.condition {
            let refs = expr::check(condition)
                .map_err(|e| Error::invalid(format!("filter.if does not parse: {e}")))?;
            if let Some(other) = refs.roots.iter().find(|r| r.as_str() != "event") {
                return Err(Error::invalid(format!(
                    "filter.if may only refer to `event`, not `{other}`"
                )));
            }
        }
        Ok(())
    }

    /// Whether `event` passes: its type matches a pattern (any type when
    /// there is none) and the condition is true. A condition that fails to
    /// evaluate (a missing field compared) does not match.
    pub fn matches(&self, event: &Event) -> bool {
        let typed = self.types.is_empty() || self.types.iter().any(|p| glob(p, &event.event.kind));
        typed
            && self.condition.as_ref().is_none_or(|condition| {
                expr::eval_condition(condition, &event_context(event)).unwrap_or(false)
            })
    }
}

/// `*` matches any run of characters, anything else itself.
fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// What expressions over an event see: `event.{id,seq,type,source,key,time,data,headers}`.
pub fn event_context(event: &Event) -> Value {
    let e = &event.event;
    let data: Value = serde_json::from_str(&e.data).unwrap_or(Value::Null);
    json!({"event": {
        "id": e.id,
        "seq": event.seq,
        "type": e.kind,
        "source": e.source,
        "key": e.key,
        "time": e.time,
        "data": data,
        "headers": e.headers,
    }})
}

/// Where a new subscription (or a seek) starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, utoipa::ToSchema)]
pub enum Start {
    /// The oldest kept event.
    Earliest,
    /// After the newest event: only what is published from now on.
    Latest,
    /// This seq is the first delivered.
    Seq(u64),
    /// The first event published at or after this time.
    Time(Timestamp),
}

impl Start {
    /// The publish time from which the first event is looked up, for the
    /// starts that need one (`earliest`: from the beginning of time).
    pub fn from_time(self) -> Option<Timestamp> {
        match self {
            Start::Earliest => Some(Timestamp::from_millis(i64::MIN)),
            Start::Time(at) => Some(at),
            Start::Latest | Start::Seq(_) => None,
        }
    }

    /// The position that makes this start's event the next one delivered,
    /// given the topic's head and (for [`Start::from_time`]) the first kept
    /// event published from then.
    pub fn position(self, head: u64, first_from: Option<u64>) -> u64 {
        match self {
            Start::Latest => head,
            Start::Seq(seq) => seq.saturating_sub(1),
            Start::Earliest | Start::Time(_) => first_from.map_or(head, |s| s.saturating_sub(1)),
        }
    }
}

/// A fetch's cursor: a random token and the last seq it covers.
pub fn cursor(token: u64, last: u64) -> String {
    format!("{token:016x}.{last}")
}

/// The last seq a cursor covers.
pub fn cursor_last(cursor: &str) -> Option<u64> {
    cursor.rsplit_once('.')?.1.parse().ok()
}

/// The job a queue target makes of each event: the fields of an enqueue,
/// with `payload` a template over `event` (default: the whole event). The
/// same shape as a schedule's `job`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
}

/// Where a subscription's events go, when they are not pulled.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Target {
    /// A job per event on `queue`: `{"queue","job":{"payload",…}}`, the
    /// shape of a schedule's job target. (`payload` beside `job` is still
    /// read, and deprecated.)
    Queue {
        queue: QueueName,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        job: Option<JobFields>,
    },
    /// A run of `workflow` per event; `input` is a template over `event`
    /// (default: the whole event).
    Workflow {
        workflow: WorkflowName,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        input: Option<Value>,
    },
    /// A signed POST per event to `endpoint`; `payload` is a template over
    /// `event` (default: the whole event).
    Endpoint {
        endpoint: EndpointName,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        payload: Option<Value>,
    },
    /// A run of `handler` per event, as a job on Keel's queue
    /// `keel.handler.{handler}`; `payload` is a template over `event`
    /// (default: the whole event). With `object` (an object type), each
    /// event's key names the object whose state the handler keeps.
    Handler {
        handler: crate::HandlerName,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        payload: Option<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        object: Option<String>,
    },
}

/// What a target may look like on the wire: a queue target's deprecated
/// `payload` beside `job` is read into `job.payload`.
#[derive(Deserialize)]
#[serde(untagged)]
enum TargetWire {
    Queue {
        queue: QueueName,
        #[serde(default)]
        payload: Option<Value>,
        #[serde(default)]
        job: Option<JobFields>,
    },
    Workflow {
        workflow: WorkflowName,
        #[serde(default)]
        input: Option<Value>,
    },
    Endpoint {
        endpoint: EndpointName,
        #[serde(default)]
        payload: Option<Value>,
    },
    Handler {
        handler: crate::HandlerName,
        #[serde(default)]
        payload: Option<Value>,
        #[serde(default)]
        object: Option<String>,
    },
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match TargetWire::deserialize(deserializer)? {
            TargetWire::Queue {
                queue,
                payload: Some(payload),
                job,
            } => {
                let mut job = job.unwrap_or_default();
                if job.payload.is_some() {
                    return Err(serde::de::Error::custom(
                        "a queue target's payload goes in job.payload (payload beside job is deprecated); give it once",
                    ));
                }
                job.payload = Some(payload);
                Target::Queue {
                    queue,
                    job: Some(job),
                }
            }
            TargetWire::Queue {
                queue,
                payload: None,
                job,
            } => Target::Queue { queue, job },
            TargetWire::Workflow { workflow, input } => Target::Workflow { workflow, input },
            TargetWire::Endpoint { endpoint, payload } => Target::Endpoint { endpoint, payload },
            TargetWire::Handler {
                handler,
                payload,
                object,
            } => Target::Handler {
                handler,
                payload,
                object,
            },
        })
    }
}

impl Target {
    /// The template of what each event becomes (`None`: the whole event).
    fn template(&self) -> Option<&Value> {
        match self {
            Target::Queue { job, .. } => job.as_ref().and_then(|j| j.payload.as_ref()),
            Target::Endpoint { payload, .. } | Target::Handler { payload, .. } => payload.as_ref(),
            Target::Workflow { input, .. } => input.as_ref(),
        }
    }

    pub fn check(&self) -> Result<(), Error> {
        if let Target::Handler {
            object: Some(kind), ..
        } = self
        {
            crate::handler::ObjectRef::new(kind, "k")?;
        }
        let template = self.template();
        let mut found = Vec::new();
        if let Some(template) = template {
            expr::expressions_in(template, &mut found)
                .map_err(|e| Error::invalid(format!("target template: {e}")))?;
        }
        for source in found {
            let refs = expr::check(&source)
                .map_err(|e| Error::invalid(format!("target template {source:?}: {e}")))?;
            if let Some(other) = refs.roots.iter().find(|r| r.as_str() != "event") {
                return Err(Error::invalid(format!(
                    "target templates may only refer to `event`, not `{other}`"
                )));
            }
        }
        Ok(())
    }

    /// The job payload or run input for `event`.
    pub fn render(&self, event: &Event) -> Result<Value, Error> {
        let context = event_context(event);
        match self.template() {
            Some(template) => expr::render(template, &context)
                .map_err(|e| Error::invalid(format!("target template: {e}"))),
            None => Ok(context["event"].clone()),
        }
    }
}

/// A subscription as configured (and as a project file defines one).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionSpec {
    pub topic: crate::TopicName,
    #[serde(default)]
    pub filter: Filter,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    #[serde(default = "default_consumer_timeout")]
    pub consumer_timeout_ms: u64,
}

fn default_consumer_timeout() -> u64 {
    DEFAULT_CONSUMER_TIMEOUT_MS
}

impl SubscriptionSpec {
    pub fn check(&self) -> Result<(), Error> {
        self.filter.check()?;
        if let Some(target) = &self.target {
            target.check()?;
        }
        if !(MIN_CONSUMER_TIMEOUT_MS..=MAX_CONSUMER_TIMEOUT_MS).contains(&self.consumer_timeout_ms)
        {
            return Err(Error::invalid(format!(
                "consumer_timeout_ms must be between {MIN_CONSUMER_TIMEOUT_MS} and {MAX_CONSUMER_TIMEOUT_MS}"
            )));
        }
        Ok(())
    }
}

/// An event handed to a consumer and not yet past its deadline, or committed
/// ahead of the position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub key: Option<String>,
    pub done: bool,
}

/// What a fetch does: hand out these events (indices into the scanned
/// events, in seq order) and move the position here.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FetchPlan {
    pub take: Vec<usize>,
    pub position: u64,
}

/// Plans a fetch of up to `max` events (0 only moves the position) over
/// `events`, the kept events after `position` in seq order, given the live
/// claims by seq.
pub fn plan_fetch(
    position: u64,
    events: &[Event],
    claims: &BTreeMap<u64, Claim>,
    filter: &Filter,
    max: usize,
) -> FetchPlan {
    let mut plan = FetchPlan {
        take: Vec::new(),
        position,
    };
    let mut blocked: BTreeSet<&str> = claims
        .values()
        .filter(|c| !c.done)
        .filter_map(|c| c.key.as_deref())
        .collect();
    let mut clear = true;
    for (i, event) in events.iter().enumerate() {
        let claim = claims.get(&event.seq);
        let settled = claim.is_some_and(|c| c.done) || !filter.matches(event);
        if settled {
            if clear {
                plan.position = event.seq;
            }
            continue;
        }
        clear = false;
        let key = event.event.key.as_deref();
        if claim.is_some() {
            continue;
        }
        if key.is_some_and(|k| blocked.contains(k)) {
            continue;
        }
        if plan.take.len() >= max {
            // Later events of this key must wait for it.
            if let Some(k) = key {
                blocked.insert(k);
            }
            continue;
        }
        plan.take.push(i);
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NewEvent;

    #[test]
    fn a_queue_target_takes_the_schedule_shape_and_still_reads_the_old_one() {
        let new: Target = serde_json::from_value(json!({
            "queue": "billing", "job": {"payload": {"id": "{{ event.id }}"}, "priority": 5}
        }))
        .unwrap();
        let old: Target = serde_json::from_value(json!({
            "queue": "billing", "payload": {"id": "{{ event.id }}"}, "job": {"priority": 5}
        }))
        .unwrap();
        assert_eq!(new, old);
        assert_eq!(
            serde_json::to_value(&old).unwrap(),
            json!({"queue": "billing", "job": {"payload": {"id": "{{ event.id }}"}, "priority": 5}}),
            "written back in the one shape"
        );
        let old_alone: Target =
            serde_json::from_value(json!({"queue": "q", "payload": {"a": 1}})).unwrap();
        assert_eq!(old_alone.template(), Some(&json!({"a": 1})));
        let twice = serde_json::from_value::<Target>(json!({
            "queue": "q", "payload": 1, "job": {"payload": 2}
        }))
        .unwrap_err();
        assert!(twice.to_string().contains("give it once"), "{twice}");
    }

    fn event(seq: u64, kind: &str, key: Option<&str>, data: &str) -> Event {
        Event {
            seq,
            event: NewEvent {
                id: format!("e{seq}"),
                generated_id: false,
                kind: kind.into(),
                source: String::new(),
                key: key.map(str::to_owned),
                time: Timestamp::from_millis(0),
                data: data.into(),
                headers: BTreeMap::new(),
            },
            published_at: Timestamp::from_millis(0),
        }
    }

    #[test]
    fn globs_match_types() {
        assert!(glob("order.*", "order.created"));
        assert!(glob("*", ""));
        assert!(glob("a*c*e", "abcde"));
        assert!(!glob("a*c*e", "abcd"));
        assert!(glob("invoice.paid", "invoice.paid"));
        assert!(!glob("invoice.paid", "invoice.paid2"));
        assert!(!glob("*.paid", "paid"));
    }

    #[test]
    fn filters_match_on_type_and_condition() {
        let filter = Filter {
            types: vec!["order.*".into()],
            condition: Some("event.data.total > 100".into()),
        };
        assert!(filter.check().is_ok());
        assert!(filter.matches(&event(1, "order.created", None, r#"{"total":120}"#)));
        assert!(!filter.matches(&event(2, "order.created", None, r#"{"total":80}"#)));
        assert!(!filter.matches(&event(3, "invoice.created", None, r#"{"total":120}"#)));
        assert!(!filter.matches(&event(4, "order.created", None, "null")));
        let bad = Filter {
            types: vec![],
            condition: Some("input.x".into()),
        };
        assert!(bad.check().is_err());
    }

    #[test]
    fn a_fetch_skips_keys_in_flight_and_moves_over_settled_events() {
        let events = vec![
            event(1, "t", Some("a"), "1"),
            event(2, "t", Some("b"), "2"),
            event(3, "t", Some("a"), "3"),
            event(4, "t", None, "4"),
            event(5, "t", Some("c"), "5"),
        ];
        let mut claims = BTreeMap::new();
        claims.insert(
            1,
            Claim {
                key: Some("a".into()),
                done: false,
            },
        );
        let plan = plan_fetch(0, &events, &claims, &Filter::default(), 10);
        // 1 is in flight, so 3 (same key) waits; 2, 4 and 5 go.
        assert_eq!(plan.take, [1, 3, 4]);
        assert_eq!(plan.position, 0);
        claims.insert(
            1,
            Claim {
                key: Some("a".into()),
                done: true,
            },
        );
        let plan = plan_fetch(0, &events, &claims, &Filter::default(), 10);
        assert_eq!(plan.take, [1, 2, 3, 4]);
        assert_eq!(plan.position, 1, "the committed prefix is passed");
    }

    #[test]
    fn a_full_fetch_holds_back_later_events_of_keys_it_left() {
        let events = vec![
            event(1, "t", Some("a"), "1"),
            event(2, "t", Some("b"), "2"),
            event(3, "t", Some("b"), "3"),
            event(4, "t", Some("a"), "4"),
        ];
        let plan = plan_fetch(0, &events, &BTreeMap::new(), &Filter::default(), 1);
        assert_eq!(plan.take, [0]);
        let skip_types = Filter {
            types: vec!["other".into()],
            condition: None,
        };
        let plan = plan_fetch(0, &events, &BTreeMap::new(), &skip_types, 5);
        assert_eq!((plan.take.len(), plan.position), (0, 4));
    }
}
