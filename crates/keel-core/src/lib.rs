//! The pure domain of Keel: ids, names, time, limits, errors, retry backoff,
//! the job state machine, events, the workflow scheduler, monitors and incidents.
//!
//! Architecture invariant: this crate does no IO and never reads the clock
//! (except [`clock::SystemClock`], the one sanctioned place). Every function that
//! depends on time takes `now`; every random choice (jitter) is passed in. That
//! keeps each state transition a deterministic function that tests can drive.

pub mod auth;
pub mod backoff;
pub mod clock;
pub mod connection;
pub mod endpoint;
pub mod error;
pub mod event;
pub mod flow;
pub mod gate;
pub mod handler;
pub mod id;
pub mod job;
pub mod limits;
pub mod monitor;
pub mod name;
pub mod notification;
pub mod openapi;
pub mod policy;
pub mod project;
pub mod quota;
pub mod schedule;
pub mod slo;
pub mod source;
pub mod subscription;
pub mod time;
pub mod trace;
pub mod workflow;

pub use backoff::Backoff;
pub use clock::{Clock, SystemClock};
pub use error::{Error, ErrorCode};
pub use event::{Event, NewEvent, TopicPolicy};
pub use id::{IncidentId, JobId, JobIdGenerator, LeaseToken, NotificationId};
pub use job::{AttemptError, Job, JobLifecycle, JobState, NewJob, Retry, Transition};
pub use limits::Limits;
pub use name::{
    ChannelName, ConnectionName, EndpointName, HandlerName, IntegrationName, MonitorName,
    Namespace, ProjectName, QueueName, QueueRef, ScheduleName, SourceName, SubscriptionName,
    TemplateName, TopicName, WorkflowName,
};
pub use policy::QueuePolicy;
pub use time::Timestamp;
pub use trace::TraceParent;
