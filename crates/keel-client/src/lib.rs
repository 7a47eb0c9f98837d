//! The Rust client and worker SDK for Keel's HTTP API.
//!
//! [`Client`] enqueues and inspects jobs, publishes and reads events,
//! consumes subscriptions, configures webhook sources, endpoints and
//! notification settings; [`Worker`] runs an async handler per job with
//! bounded concurrency, taking jobs from a worker stream (or by long-polling
//! lease calls), with automatic heartbeats, batched acknowledgements and a
//! graceful drain.
//!
//! The SDK speaks only the public HTTP contract: it shares with the server
//! the contract's types (`keel-api`) and nothing else, so what it does, any
//! HTTP client can do.

mod client;
mod connections;
mod endpoints;
mod events;
mod handlers;
mod imports;
mod jobs;
mod monitors;
mod notifications;
mod projects;
mod schedules;
mod slos;
mod sources;
mod stream;
mod tokens;
mod trace;
mod worker;

pub use client::{Client, ClientError, Job, JobPage, LeasedJob, ListQuery, install_tls_provider};
pub use events::{Event, NewEvent};
pub use imports::ImportInto;
pub use jobs::JobSpec;
pub use keel_api::connections::{
    ConnectAnswer, ConnectRequest, ConnectionAnswer, ConnectionList, IntegrationAnswer,
    IntegrationList, IntegrationRequest, KeysRotated, ProxyAnswer, ProxyRequest,
};
pub use keel_api::endpoints::{
    AttemptAnswer, AttemptList, EndpointAnswer, EndpointList, EndpointRequest, RecoverAnswer,
    RotatedAnswer,
};
pub use keel_api::handlers::{
    HandlerAnswer, HandlerList, HandlerRequest, InvokeAnswer, StateAnswer, StatePage,
};
pub use keel_api::imports::{ImportAnswer, ImportQuery, ImportRejection};
pub use keel_api::jobs::{AckAnswer, AckItem, AcksAnswer, Enqueued};
pub use keel_api::monitors::{
    IncidentEventAnswer, IncidentEventRequest, IncidentList, MaintenanceAnswer, MonitorAnswer,
    MonitorList, MonitorRequest, PolicyAnswer, ResultAnswer, ResultList, StatusPageAnswer,
    StatusPageRequest,
};
pub use keel_api::notifications::{
    ChannelAnswer, ChannelList, ChannelRequest, DeliveryAnswer, DeliveryBrief, InboxAnswer,
    InboxMarkAnswer, InboxMarkRequest, InboxMessageAnswer, NotificationAnswer, NotificationList,
    NotificationsPage, NotifyAnswer, NotifyRequest, PreferencesBody, RecipientAnswer,
    RecipientList, RecipientRequest, TemplateAnswer, TemplateList, TemplateRequest,
};
pub use keel_api::projects::{ProjectList, VersionAnswer, VersionList, VersionSummary};
pub use keel_api::queues::{QueueAnswer, QueueRates};
pub use keel_api::runs::{Item, Run, RunPage, Step};
pub use keel_api::schedules::{
    BackfillAnswer, FireTime, ScheduleAnswer, ScheduleList, ScheduleRequest, SlotAnswer,
};
pub use keel_api::slos::{SloAlert, SloAnswer, SlosAnswer};
pub use keel_api::sources::{SourceAnswer, SourceList, SourceRequest};
pub use keel_api::subscriptions::Named as StartNamed;
pub use keel_api::subscriptions::{
    StartAt, SubscriptionAnswer, SubscriptionList, SubscriptionRequest, SubscriptionStatus,
};
pub use keel_api::tokens::{TokenAnswer, TokenCreated, TokenList, TokenRequest};
pub use keel_api::topics::{PublishedAnswer, TopicAnswer, TopicList, TopicRequest};
pub use keel_api::workflows::{
    DefinitionAnswer, DefinitionSaved, VersionEntry, WorkflowEntry, WorkflowList,
};
pub use keel_core::auth::Role;
pub use keel_core::handler::{HandlerLimits, ObjectRef};
pub use keel_core::job::Debounce;
pub use keel_core::notification::{DeliveryStatus, To};
/// The types the answers are made of.
pub use keel_core::workflow::{RunId, RunStatus, StepStatus};
pub use keel_core::{JobId, JobState, Timestamp, TraceParent};
pub use stream::{JobStream, StreamJobs};
pub use worker::{JobFailure, Worker, WorkerOptions};
