//! Projects: a directory of definitions that `keel plan` compares with the
//! server and `keel apply` makes true as one. This module is the part both
//! sides share and that needs no IO: the kinds a project may hold, in the
//! order they are applied; each kind's schema (the same body its `PUT`
//! takes) and the canonical form two definitions are compared in; and the
//! diff (`plan.rs`), which fields changed and what to create, change or
//! delete.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::monitor::EscalationPolicy;
use crate::monitor::MonitorSpec;
use crate::notification::TemplateSpec;
use crate::schedule::ScheduleSpec;
use crate::subscription::SubscriptionSpec;
use crate::workflow::Definition;
use crate::{
    EndpointName, Error, ErrorCode, MonitorName, Namespace, QueueName, QueuePolicy, ScheduleName,
    SubscriptionName, TemplateName, TopicName, TopicPolicy, WorkflowName,
};

mod plan;

pub use plan::{Action, Change, Plan, VersionState, diff};

/// Most resources one project may hold.
pub const MAX_RESOURCES: usize = 5_000;

/// What a project may define. The order is the order of an apply: what
/// others name comes first (a subscription's topic, a queue's push endpoint,
/// a monitor's escalation policy); deletes go in the reverse order.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Endpoint,
    Template,
    EscalationPolicy,
    Handler,
    Topic,
    Queue,
    Workflow,
    Subscription,
    Schedule,
    Monitor,
}

impl Kind {
    pub const ALL: [Kind; 10] = [
        Kind::Endpoint,
        Kind::Template,
        Kind::EscalationPolicy,
        Kind::Handler,
        Kind::Topic,
        Kind::Queue,
        Kind::Workflow,
        Kind::Subscription,
        Kind::Schedule,
        Kind::Monitor,
    ];

    /// The key a definition file lists this kind's resources under.
    pub const fn section(self) -> &'static str {
        match self {
            Kind::Endpoint => "endpoints",
            Kind::Template => "templates",
            Kind::EscalationPolicy => "escalation_policies",
            Kind::Handler => "handlers",
            Kind::Topic => "topics",
            Kind::Queue => "queues",
            Kind::Workflow => "workflows",
            Kind::Subscription => "subscriptions",
            Kind::Schedule => "schedules",
            Kind::Monitor => "monitors",
        }
    }

    pub fn from_section(section: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.section() == section)
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Endpoint => "endpoint",
            Kind::Template => "template",
            Kind::EscalationPolicy => "escalation_policy",
            Kind::Handler => "handler",
            Kind::Topic => "topic",
            Kind::Queue => "queue",
            Kind::Workflow => "workflow",
            Kind::Subscription => "subscription",
            Kind::Schedule => "schedule",
            Kind::Monitor => "monitor",
        }
    }

    /// Whether Keel can remove one. A workflow cannot (runs name its
    /// versions): one dropped from its project stays and is released.
    pub const fn deletable(self) -> bool {
        !matches!(self, Kind::Workflow)
    }

    /// Checks a definition against the kind's schema and rules, and answers
    /// its canonical form: every default filled in, keys in order, so that
    /// the same definition is the same value whichever file format it came
    /// in. Checks that need the server (a name that must exist there, an
    /// operator's limits) are the server's.
    pub fn canonical(self, name: &str, spec: &Value) -> Result<Value, Error> {
        match self {
            Kind::Endpoint => {
                let name = EndpointName::new(name)?;
                let spec: crate::endpoint::EndpointSpec = parse(self, spec)?;
                spec.check(&name)?;
                shown(&spec)
            }
            Kind::Template => {
                TemplateName::new(name)?;
                let spec: TemplateSpec = parse(self, spec)?;
                spec.check()?;
                shown(&spec)
            }
            Kind::EscalationPolicy => {
                crate::monitor::check_policy_name(name)?;
                let spec: EscalationPolicy = parse(self, spec)?;
                spec.check()?;
                shown(&spec)
            }
            Kind::Handler => {
                crate::HandlerName::new(name)?;
                let spec: HandlerSpec = parse(self, spec)?;
                spec.code()?;
                shown(&spec)
            }
            Kind::Topic => {
                TopicName::new(name)?;
                shown(&parse::<TopicPolicy>(self, spec)?)
            }
            Kind::Queue => {
                QueueName::new(name)?;
                let policy: QueuePolicy = parse(self, spec)?;
                policy.validate()?;
                shown(&policy)
            }
            Kind::Workflow => {
                WorkflowName::new(name)?;
                workflow(name, spec)
            }
            Kind::Subscription => {
                SubscriptionName::new(name)?;
                let mut spec = spec.clone();
                let start = spec.as_object_mut().and_then(|o| o.remove("start"));
                start_at(start.as_ref())?;
                let parsed: SubscriptionSpec = parse(self, &spec)?;
                parsed.check()?;
                let mut value = shown(&parsed)?;
                if let (Some(start), Some(object)) = (start, value.as_object_mut()) {
                    object.insert("start".into(), start);
                }
                Ok(value)
            }
            Kind::Schedule => {
                ScheduleName::new(name)?;
                let spec: ScheduleSpec = parse(self, spec)?;
                spec.check()?;
                shown(&spec)
            }
            Kind::Monitor => {
                MonitorName::new(name)?;
                let spec: MonitorSpec = parse(self, spec)?;
                spec.check()?;
                shown(&spec)
            }
        }
    }

    /// The fields compared with what the server holds: everything but
    /// what only a create reads (a subscription's `start`).
    pub fn compared(self, canonical: &Value) -> Value {
        let mut value = canonical.clone();
        if self == Kind::Subscription
            && let Some(object) = value.as_object_mut()
        {
            object.remove("start");
        }
        value
    }
}

/// A handler as a project defines one: its code (JavaScript source, or a
/// WebAssembly module in base64; a project file names a file with `code`,
/// which `keel` reads into one of these) and the settings of
/// `PUT …/handlers/{name}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandlerSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub js: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wasm: Option<String>,
    #[serde(default)]
    pub limits: crate::handler::HandlerLimits,
    #[serde(default)]
    pub allow_http: Vec<String>,
    #[serde(default)]
    pub shared: bool,
}

/// A handler's code, decoded.
pub enum HandlerCode {
    Js(String),
    Wasm(Vec<u8>),
}

impl HandlerSpec {
    pub fn code(&self) -> Result<HandlerCode, Error> {
        use base64::Engine as _;
        match (&self.js, &self.wasm) {
            (Some(js), None) => Ok(HandlerCode::Js(js.clone())),
            (None, Some(wasm)) => base64::engine::general_purpose::STANDARD
                .decode(wasm)
                .map(HandlerCode::Wasm)
                .map_err(|e| Error::invalid(format!("handler: wasm is not base64: {e}"))),
            _ => Err(Error::invalid(
                "handler: exactly one of js (the source) and wasm (a module in base64)",
            )),
        }
    }

    pub fn settings(&self) -> crate::handler::HandlerSettings {
        crate::handler::HandlerSettings {
            limits: self.limits,
            allow_http: self.allow_http.clone(),
            shared: self.shared,
        }
    }
}

/// Where a subscription a project creates starts: `"latest"` (the default)
/// or `"earliest"`.
pub fn start_at(start: Option<&Value>) -> Result<crate::subscription::Start, Error> {
    match start.map(|s| s.as_str()) {
        None | Some(Some("latest")) => Ok(crate::subscription::Start::Latest),
        Some(Some("earliest")) => Ok(crate::subscription::Start::Earliest),
        Some(_) => Err(Error::invalid(
            "start must be \"earliest\" or \"latest\" (only read when the subscription is created)",
        )),
    }
}

fn parse<T: serde::de::DeserializeOwned>(kind: Kind, spec: &Value) -> Result<T, Error> {
    T::deserialize(spec).map_err(|e| Error::invalid(format!("{}: {e}", kind.as_str())))
}

fn shown<T: Serialize>(spec: &T) -> Result<Value, Error> {
    serde_json::to_value(spec).map_err(|e| Error::internal(e.to_string()))
}

fn workflow(name: &str, spec: &Value) -> Result<Value, Error> {
    let mut value = spec.clone();
    let Some(object) = value.as_object_mut() else {
        return Err(Error::invalid("workflow: a definition is an object"));
    };
    match object.get("name").map(Value::as_str) {
        None => {
            object.insert("name".into(), Value::String(name.to_owned()));
        }
        Some(Some(found)) if found == name => {}
        Some(_) => {
            return Err(Error::invalid(format!(
                "workflow: its name field must be {name:?}, the name it is listed under"
            )));
        }
    }
    if let Err(problems) = Definition::from_value(&value) {
        let listed: Vec<String> = problems
            .iter()
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect();
        return Err(Error::new(
            ErrorCode::InvalidDefinition,
            format!("workflow {name}: {}", listed.join("; ")),
        ));
    }
    Ok(sorted(value))
}

/// The same value with every object's keys in order (`serde_json`'s map
/// keeps them sorted already; this makes it so for a value built by hand).
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, sorted(v)))
                .collect::<Map<String, Value>>(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// One definition: a kind, where and what.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resource {
    pub kind: Kind,
    #[schema(value_type = String)]
    pub namespace: Namespace,
    pub name: String,
    /// The body the kind's `PUT` takes (a workflow's: its definition).
    pub spec: Value,
}

impl Resource {
    pub fn id(&self) -> ResourceId {
        ResourceId {
            kind: self.kind,
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }
}

/// Which resource: a kind, a namespace, a name. Ordered the way an apply
/// goes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ResourceId {
    pub kind: Kind,
    pub namespace: Namespace,
    pub name: String,
}

impl std::fmt::Display for ResourceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind.as_str(), self.namespace, self.name)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_definition_with_its_defaults_written_out_is_the_same_definition() {
        let short = Kind::Topic.canonical("t", &json!({})).unwrap();
        let long = Kind::Topic
            .canonical("t", &json!({"retention_ms": 604_800_000u64}))
            .unwrap();
        assert_eq!(short, long);
        assert!(
            Kind::Topic
                .canonical("t", &json!({"retention": 1}))
                .is_err()
        );
    }

    #[test]
    fn a_workflow_takes_its_name_from_where_it_is_listed() {
        let steps = json!({"steps": {"a": {"sleep": {"duration_ms": 10}}}});
        let value = Kind::Workflow.canonical("flow", &steps).unwrap();
        assert_eq!(value["name"], "flow");
        let other = json!({"name": "other", "steps": {"a": {"sleep": {"duration_ms": 10}}}});
        assert!(Kind::Workflow.canonical("flow", &other).is_err());
    }
}
