//! The engine: the services that decide Keel's side effects, with no HTTP in
//! them. Every caller (the HTTP API, the background services) goes through
//! [`Engine`]'s services, so an ack counts the same metrics and tells the same
//! owner whether it came from a worker, the step runner or a lease expiry.
//!
//! - [`jobs::JobService`]: every change to jobs, with metrics, rates and owner
//!   hooks (`owners.rs`).
//! - [`events::EventService`]: publishing and reading events, with metrics.
//! - [`subscriptions::SubscriptionService`]: subscriptions, pulled fetches
//!   and commits, and hand-offs to targets.
//! - [`sources::SourceService`]: webhooks verified and published as events.
//! - [`endpoints::EndpointService`]: endpoints Keel pushes to, their
//!   secrets, health and attempts log (the pushing is `services/pusher.rs`).
//! - [`schedules::Schedules`]: schedules and the firing of their slots (the
//!   timer is `services/timer.rs`).
//! - [`quotas::QuotaService`]: namespace quotas set and read with their
//!   usage, and rate quotas taken before an enqueue or a publish.
//! - [`slos::SloService`]: queues' objectives measured (per-minute counts
//!   every node adds to the store), their statuses, and the alerts that
//!   start or stop firing.
//! - [`tokens::TokenService`]: API tokens issued, checked on every request
//!   (cached for at most 500 ms), listed and revoked.
//! - [`workflows::Driver`]: carries out what the workflow scheduler decides.
//! - [`services`]: the background services (maintenance, retention, the step
//!   runner, the run sweep, the hand-off of events, the pusher), each `new(engine)` then `run(shutdown)`.
//! - [`metrics`]: the Prometheus recorder and every `keel_` metric.
//!
//! Architecture invariant: no axum, no routes, no SQL here; state is read and
//! written through `dyn Store` only.

pub mod endpoints;
mod engine;
pub mod events;
pub mod jobs;
#[cfg(test)]
mod manual_clock;
pub mod metrics;
pub mod outbound;
mod owners;
pub mod quotas;
mod rates;
pub mod schedules;
pub mod services;
mod shutdown;
pub mod slos;
pub mod sources;
pub mod subscriptions;
pub mod tokens;
pub mod workflows;

pub use engine::{
    DEFAULT_ATTEMPT_RETENTION_MS, DEFAULT_AUDIT_RETENTION_MS, DEFAULT_RUN_RETENTION_MS,
    DEFAULT_SLO_PASS_MS, Engine, EngineConfig,
};
pub use rates::{HOUR_MINUTES, Hour, Minute, RecentRates};
pub use shutdown::{Shutdown, ShutdownTrigger};
