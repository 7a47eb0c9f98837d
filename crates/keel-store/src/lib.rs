//! The store boundary: the only way Keel's state is read or written.
//!
//! One trait per domain ([`JobStore`], [`QueueStore`], [`MaintenanceStore`],
//! [`WorkflowStore`], [`RunStore`], [`TopicStore`], [`SubscriptionStore`],
//! [`SourceStore`], [`EndpointStore`], [`ScheduleStore`], [`TokenStore`], [`AuditStore`], [`NamespaceStore`], [`SloStore`], [`NotificationStore`], [`MonitorStore`], [`HandlerStore`], [`ProjectStore`], [`ConnectionStore`]), each in a module of its own with its
//! argument and answer types; [`Store`] is their sum plus what a backend is as
//! a whole. Operations are noun-first (`jobs_enqueue`, `job_heartbeat`,
//! `queue_stats`, `run_update`) and every backend implements all of them with
//! the same meaning, which the [`conformance`] suite checks, one module per
//! domain. Backends apply the transitions that `keel_core` decides, atomically,
//! and answer only after the change is durable.
//!
//! Architecture invariant: no SQL, file or HTTP type appears here; the engine
//! above talks to a `dyn Store` and cannot tell the backends apart.

mod audit;
pub mod codec;
#[cfg(feature = "conformance")]
pub mod conformance;
mod connections;
mod endpoints;
mod handlers;
mod jobs;
mod maintenance;
mod monitors;
mod namespaces;
mod notifications;
mod owner;
mod projects;
mod queues;
mod runs;
mod schedules;
mod signal;
mod slos;
mod sources;
mod subscriptions;
mod tokens;
mod topics;
mod workflows;

use async_trait::async_trait;

pub use audit::{Actor, AuditEntry, AuditQuery, AuditStore, NewAuditEntry};
pub use connections::{
    ConnectSession, Connection, ConnectionStore, ConnectionWrite, Integration, Reseal, SealedRef,
    connection_not_found, integration_not_found,
};
pub use endpoints::{
    Attempt, AttemptQuery, Endpoint, EndpointStore, NewAttempt, SecretChoice, endpoint_not_found,
};
pub use handlers::{HandlerCommit, HandlerStore, HandlerSummary, handler_not_found, plan_writes};
pub use jobs::{
    Ack, AckOutcome, Acked, Enqueued, IDEMPOTENCY_WINDOW_MS, JobFilter, JobPage, JobStore,
    LeaseRequest, LeasedJob, RedriveSelection,
};
pub use maintenance::{MAINTENANCE_MAX_SLEEP_MS, MaintenanceReport, MaintenanceStore};
pub use monitors::{
    Folded, IncidentQuery, IncidentRef, IncidentWrite, Monitor, MonitorStore, Moved, NewResult,
    Recorded, StoredResult, UptimeHour, fold_result, hour_of, incident_not_found,
    monitor_not_found,
};
pub use namespaces::{NamespaceQuotas, NamespaceStore, Usage};
pub use notifications::{
    Accepted, Delivery, DeliveryMove, Hold, InboxMark, InboxMessage, InboxPage, NewDelivery,
    NewInboxMessage, NewNotification, Notification, NotificationQuery, NotificationStore,
    RequestKey, Setting, StoredSetting, delivery_not_found, notification_not_found,
    request_key_reused, setting_not_found,
};
pub use owner::{JobOwner, OwnedJob};
pub use projects::{
    ProjectStore, ProjectVersion, VersionBody, project_moved, settled_already, version_not_found,
};
pub use queues::{Depth, QueueStats, QueueStore};
pub use runs::{NewRun, RunFilter, RunPage, RunStore, StoredRun, run_not_found};
pub use schedules::{
    LedgerEntry, Schedule, ScheduleStore, ScheduleWrite, schedule_moved, schedule_not_found,
};
pub use signal::{MAX_WOKEN, ReadySignal, RunWatch};
pub use slos::{MinuteTally, Objectives, SloStore};
pub use sources::{Source, SourceStore, source_not_found};
pub use subscriptions::{
    Fetched, Subscription, SubscriptionStore, cursor_stale, has_target, subscription_not_found,
    topic_changed,
};
pub use tokens::{Token, TokenStore, token_not_found};
pub use topics::{EventQuery, Published, Topic, TopicStore, event_not_found, topic_not_found};
pub use workflows::{WorkflowStore, WorkflowVersion, workflow_not_found};

/// Everything Keel asks of a storage backend: every domain's store, and the
/// backend's own lifecycle. Writes return only once durable.
#[async_trait]
pub trait Store:
    JobStore
    + QueueStore
    + MaintenanceStore
    + WorkflowStore
    + RunStore
    + TopicStore
    + SubscriptionStore
    + SourceStore
    + EndpointStore
    + ScheduleStore
    + TokenStore
    + AuditStore
    + NamespaceStore
    + SloStore
    + NotificationStore
    + MonitorStore
    + HandlerStore
    + ProjectStore
    + ConnectionStore
    + 'static
{
    /// True when this process is the only writer of the store (embedded):
    /// what it last wrote is still what is stored, so it may keep a copy.
    fn sole_writer(&self) -> bool {
        false
    }

    /// Fired whenever jobs become leasable in a queue.
    fn ready_signal(&self) -> ReadySignal;

    /// Finishes what is committing and stops; later calls fail.
    async fn close(&self);
}
