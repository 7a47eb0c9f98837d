//! Each kind a project holds, read, put and deleted through the service
//! that owns it, so an apply passes the same checks, derived resources and
//! hooks as a `PUT` (a push queue's endpoint, a monitor's hidden schedule,
//! a subscription's start). What is read is the compared form of
//! `keel_core::project`, so a definition and the server's copy diff alike.

use std::collections::BTreeMap;
use std::sync::Arc;

use keel_core::handler::{HandlerKind, HandlerVersion};
use keel_core::project::{HandlerCode, HandlerSpec, Kind, Resource, ResourceId, start_at};
use keel_core::{
    EndpointName, Error, ErrorCode, HandlerName, QueueName, QueuePolicy, QueueRef, TemplateName,
    TopicName,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::endpoints::EndpointService;
use crate::handlers::{Code, HandlerService, Upload};
use crate::monitors::MonitorService;
use crate::notifications::NotificationService;
use crate::queues::QueueService;
use crate::schedules::ScheduleService;
use crate::subscriptions::SubscriptionService;
use crate::topics::TopicService;
use crate::workflows::Driver;

/// The services a project's resources belong to.
pub(crate) struct Kinds {
    pub(crate) endpoints: Arc<EndpointService>,
    pub(crate) notifications: Arc<NotificationService>,
    pub(crate) monitors: Arc<MonitorService>,
    pub(crate) handlers: Arc<HandlerService>,
    pub(crate) topics: Arc<TopicService>,
    pub(crate) queues: Arc<QueueService>,
    pub(crate) workflows: Arc<Driver>,
    pub(crate) subscriptions: Arc<SubscriptionService>,
    pub(crate) schedules: Arc<ScheduleService>,
}

/// Queue policies as stored, read once for a whole plan: a queue exists
/// for a project when it has a stored policy.
pub(crate) type Policies = BTreeMap<QueueRef, QueuePolicy>;

impl Kinds {
    pub(crate) async fn policies(&self) -> Result<Policies, Error> {
        Ok(self.queues.policies().await?.into_iter().collect())
    }

    /// What the server holds for `id` now, in the compared form; `None`
    /// when there is no such resource.
    pub(crate) async fn current(
        &self,
        id: &ResourceId,
        policies: &Policies,
    ) -> Result<Option<Value>, Error> {
        let (ns, name) = (&id.namespace, id.name.as_str());
        let found = match id.kind {
            Kind::Endpoint => self
                .endpoints
                .get(ns, &EndpointName::new(name)?)
                .await
                .and_then(|e| to_value(&e.spec)),
            Kind::Template => self
                .notifications
                .template_get(ns, &TemplateName::new(name)?)
                .await
                .and_then(|t| to_value(&t.spec)),
            Kind::EscalationPolicy => self
                .monitors
                .policy(ns, name)
                .await
                .and_then(|p| to_value(&p.spec)),
            Kind::Handler => self
                .handlers
                .get(ns, &HandlerName::new(name)?, None)
                .await
                .and_then(|v| to_value(&handler_spec(v))),
            Kind::Topic => self
                .topics
                .get(ns, &TopicName::new(name)?)
                .await
                .and_then(|t| to_value(&t.policy)),
            Kind::Queue => {
                let queue = queue_ref(id)?;
                return policies.get(&queue).map(to_value).transpose();
            }
            Kind::Workflow => self.workflows.stored(ns, name, None).await.and_then(|w| {
                serde_json::from_str(&w.definition)
                    .map_err(|e| Error::internal(format!("stored workflow {name}: {e}")))
            }),
            Kind::Subscription => self
                .subscriptions
                .get(ns, name)
                .await
                .and_then(|s| to_value(&s.spec)),
            Kind::Schedule => self
                .schedules
                .get(ns, name)
                .await
                .and_then(|s| to_value(&s.spec)),
            Kind::Monitor => self
                .monitors
                .stored(ns, name)
                .await
                .and_then(|m| to_value(&m.spec)),
        };
        match found {
            Ok(value) => Ok(Some(value)),
            Err(e) if e.code == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Makes the resource what its canonical definition says.
    pub(crate) async fn put(&self, resource: &Resource) -> Result<(), Error> {
        let (ns, name, spec) = (&resource.namespace, resource.name.as_str(), &resource.spec);
        match resource.kind {
            Kind::Endpoint => {
                self.endpoints
                    .put(ns, &EndpointName::new(name)?, &parse(spec)?, None)
                    .await?;
            }
            Kind::Template => {
                self.notifications
                    .template_put(ns, &TemplateName::new(name)?, &parse(spec)?)
                    .await?;
            }
            Kind::EscalationPolicy => {
                self.monitors.policy_put(ns, name, &parse(spec)?).await?;
            }
            Kind::Handler => {
                let spec: HandlerSpec = parse(spec)?;
                let code = match spec.code()? {
                    HandlerCode::Js(source) => Code::Js(source),
                    HandlerCode::Wasm(module) => Code::Wasm(module),
                };
                let upload = Upload {
                    code,
                    settings: spec.settings(),
                };
                self.handlers
                    .put(ns, &HandlerName::new(name)?, upload)
                    .await?;
            }
            Kind::Topic => {
                self.topics
                    .put(ns, &TopicName::new(name)?, &parse(spec)?)
                    .await?;
            }
            Kind::Queue => {
                self.queues
                    .set_policy(&queue_ref(&resource.id())?, parse(spec)?)
                    .await?;
            }
            Kind::Workflow => {
                self.workflows
                    .put_definition(ns, name, &keel_core::workflow::definition::canonical(spec))
                    .await?;
            }
            Kind::Subscription => {
                let start = start_at(spec.get("start"))?;
                let compared = Kind::Subscription.compared(spec);
                self.subscriptions
                    .put(ns, name, &parse(&compared)?, start)
                    .await?;
            }
            Kind::Schedule => {
                self.schedules.put(ns, name, parse(spec)?).await?;
            }
            Kind::Monitor => {
                self.monitors.put(ns, name, parse(spec)?).await?;
            }
        }
        Ok(())
    }

    /// Removes the resource (a queue: its policy goes back to the
    /// defaults; its jobs stay). One already gone is no error.
    pub(crate) async fn delete(&self, id: &ResourceId) -> Result<(), Error> {
        let (ns, name) = (&id.namespace, id.name.as_str());
        let done = match id.kind {
            Kind::Endpoint => self.endpoints.delete(ns, &EndpointName::new(name)?).await,
            Kind::Template => {
                self.notifications
                    .template_delete(ns, &TemplateName::new(name)?)
                    .await
            }
            Kind::EscalationPolicy => self.monitors.policy_delete(ns, name).await,
            Kind::Handler => self.handlers.delete(ns, &HandlerName::new(name)?).await,
            Kind::Topic => self.topics.delete(ns, &TopicName::new(name)?).await,
            Kind::Queue => {
                self.queues
                    .set_policy(&queue_ref(id)?, QueuePolicy::default())
                    .await
            }
            Kind::Workflow => Ok(()),
            Kind::Subscription => self.subscriptions.delete(ns, name).await,
            Kind::Schedule => self.schedules.delete(ns, name).await,
            Kind::Monitor => self.monitors.delete(ns, name).await,
        };
        match done {
            Err(e) if e.code == ErrorCode::NotFound => Ok(()),
            other => other,
        }
    }
}

/// A stored version as a project defines it: the JavaScript source, or
/// the module in base64.
fn handler_spec(version: HandlerVersion) -> HandlerSpec {
    use base64::Engine as _;
    let (js, wasm) = match version.kind {
        HandlerKind::Js => (version.source, None),
        HandlerKind::Wasm => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(&version.artifact)),
        ),
    };
    HandlerSpec {
        js,
        wasm,
        limits: version.settings.limits,
        allow_http: version.settings.allow_http,
        shared: version.settings.shared,
    }
}

fn queue_ref(id: &ResourceId) -> Result<QueueRef, Error> {
    Ok(QueueRef {
        namespace: id.namespace.clone(),
        queue: QueueName::new(&id.name)?,
    })
}

fn to_value<T: serde::Serialize>(spec: &T) -> Result<Value, Error> {
    serde_json::to_value(spec).map_err(|e| Error::internal(e.to_string()))
}

fn parse<T: DeserializeOwned>(spec: &Value) -> Result<T, Error> {
    T::deserialize(spec).map_err(|e| Error::invalid(e.to_string()))
}
