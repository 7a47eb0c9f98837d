//! The engine: the services that decide Keel's side effects, with no HTTP in
//! them. Every caller (the HTTP API, the dashboard, the background services)
//! goes through [`Engine`]'s accessors to one service per domain, so an
//! enqueue takes the same quotas and an ack counts the same metrics and
//! tells the same owner whether it came from a worker, the step runner or a
//! lease expiry. Each service holds its own domain's store trait and the
//! services it calls; none holds the engine.
//!
//! - [`jobs::JobService`] (`jobs()`): admission (batch bounds, quotas,
//!   policy), every change to jobs, with metrics, rates and owner hooks
//!   (`owners.rs`), and reads.
//! - [`queues::QueueService`] (`queues()`): counts and rates, policy, pause;
//!   what follows a policy change.
//! - [`topics::TopicService`] (`topics()`): topics, and the one publish every
//!   producer takes (quotas, metric), reads that wait for the next append.
//! - [`subscriptions::SubscriptionService`]: subscriptions, pulled fetches
//!   and commits, and hand-offs to targets.
//! - [`sources::SourceService`]: webhooks verified and published as events.
//! - [`notifications::NotificationService`]: notification channels (their
//!   secrets never answered), templates, recipients and preferences.
//! - [`endpoints::EndpointService`]: endpoints Keel pushes to, their
//!   secrets, health and attempts log (the pushing is `services/pusher.rs`).
//! - [`schedules::ScheduleService`]: schedules and the firing of their slots
//!   (the timer is `services/timer.rs`).
//! - [`workflows::Driver`] (`workflows()`): definitions, and carrying out
//!   what the workflow scheduler decides; [`runs::RunService`] (`runs()`):
//!   runs as read, the long-poll and what holds their steps.
//! - [`imports::ImportService`]: records of a CSV or NDJSON stream into a
//!   queue's jobs or a topic's events, deduplicated by a key column.
//! - [`namespaces::NamespaceService`]: namespaces' quotas set and read with
//!   their usage, and the rate and byte quotas taken before an enqueue or a
//!   publish.
//! - [`slos::SloService`]: objectives measured (per-minute counts every node
//!   adds to the store), their statuses, and the alerts that start or stop
//!   firing.
//! - [`tokens::TokenService`]: API tokens issued, checked on every request
//!   (cached for at most 500 ms), listed and revoked; [`audit::AuditService`]:
//!   the audit log.
//! - [`services`]: the background services (maintenance, retention, the step
//!   runner, the run sweep, the hand-off of events, the pusher, the timer,
//!   the SLO pass), each built from the parts it uses, then `run(shutdown)`.
//! - [`metrics`]: the Prometheus recorder and every `keel_` metric.
//!
//! Architecture invariant: no axum, no routes, no SQL here; state is read and
//! written through the store traits only.

pub mod audit;
pub mod connections;
pub mod endpoints;
mod engine;
pub mod handlers;
pub mod imports;
pub mod jobs;
mod manual_clock;
pub mod metrics;
pub mod monitors;
pub mod namespaces;
pub mod notifications;
pub mod outbound;
mod owners;
pub mod projects;
pub mod queues;
mod rates;
pub mod runs;
pub mod schedules;
pub mod services;
mod shutdown;
pub mod slos;
pub mod sources;
pub mod subscriptions;
pub mod tokens;
pub mod topics;
pub mod workflows;

pub use engine::{
    DEFAULT_ATTEMPT_RETENTION_MS, DEFAULT_AUDIT_RETENTION_MS, DEFAULT_RUN_RETENTION_MS,
    DEFAULT_SLO_PASS_MS, Engine, EngineConfig,
};
pub use manual_clock::ManualClock;
pub use rates::{HOUR_MINUTES, Hour, Minute, RecentRates};
pub use shutdown::{Shutdown, ShutdownTrigger};
