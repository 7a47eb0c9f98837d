//! The engine: what every request handler and service shares, and the
//! services built once at start.

use std::sync::Arc;

use keel_core::{Clock, Limits, Timestamp};
use keel_store::Store;

use crate::Shutdown;
use crate::endpoints::EndpointService;
use crate::events::EventService;
use crate::jobs::JobService;
use crate::owners::Owners;
use crate::quotas::QuotaService;
use crate::schedules::{ScheduleIds, Schedules};
use crate::slos::SloService;
use crate::sources::SourceService;
use crate::subscriptions::SubscriptionService;
use crate::tokens::TokenService;
use crate::workflows::Driver;

pub struct Engine {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub limits: Limits,
    pub shutdown: Shutdown,
    pub jobs: JobService,
    pub events: EventService,
    pub subscriptions: SubscriptionService,
    pub sources: SourceService,
    pub endpoints: EndpointService,
    pub tokens: TokenService,
    pub quotas: QuotaService,
    pub slos: Arc<SloService>,
    pub workflows: Arc<Driver>,
    pub(crate) schedule_ids: ScheduleIds,
    pub run_retention_ms: u64,
    pub attempt_retention_ms: u64,
    pub audit_retention_ms: u64,
    pub slo_pass_ms: u64,
}

/// How the engine treats the outside world, and how long it keeps history.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Let `http` steps and endpoints call loopback, private and link-local
    /// addresses.
    pub allow_private_http: bool,
    /// How long a finished run stays readable before retention deletes it.
    pub run_retention_ms: u64,
    /// How long endpoints' delivery attempts are kept in their log.
    pub attempt_retention_ms: u64,
    /// How long audit entries are kept.
    pub audit_retention_ms: u64,
    /// How often each node adds its SLO counts to the store and measures
    /// the objectives (the leader then publishes alerts).
    pub slo_pass_ms: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            allow_private_http: false,
            run_retention_ms: DEFAULT_RUN_RETENTION_MS,
            attempt_retention_ms: DEFAULT_ATTEMPT_RETENTION_MS,
            audit_retention_ms: DEFAULT_AUDIT_RETENTION_MS,
            slo_pass_ms: DEFAULT_SLO_PASS_MS,
        }
    }
}

/// Finished runs are kept a week by default: long enough to look into a
/// failure after a weekend.
pub const DEFAULT_RUN_RETENTION_MS: u64 = 7 * 24 * 3_600_000;
/// Delivery attempts are kept a week by default, like runs.
pub const DEFAULT_ATTEMPT_RETENTION_MS: u64 = 7 * 24 * 3_600_000;
/// SLO counts reach the store every 10 s by default: an alert needs five
/// minutes of burning to fire, so this delays it by little.
pub const DEFAULT_SLO_PASS_MS: u64 = 10_000;
/// Audit entries are kept a year by default: what a yearly review asks for.
pub const DEFAULT_AUDIT_RETENTION_MS: u64 = 365 * 24 * 3_600_000;

impl Engine {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        limits: Limits,
        shutdown: Shutdown,
        config: EngineConfig,
    ) -> Arc<Self> {
        let workflows = Driver::new(store.clone(), clock.clone(), config.allow_private_http);
        let owners = Owners::new(workflows.clone());
        let slos = Arc::new(SloService::default());
        let jobs = JobService::new(
            store.clone(),
            clock.clone(),
            shutdown.clone(),
            owners,
            slos.clone(),
        );
        let events = EventService::new(store.clone(), clock.clone(), shutdown.clone());
        let subscriptions = SubscriptionService::new(
            store.clone(),
            clock.clone(),
            limits.clone(),
            shutdown.clone(),
            workflows.clone(),
            slos.clone(),
        );
        let sources = SourceService::new(store.clone(), clock.clone());
        let guard = crate::outbound::Guard {
            allow_private: config.allow_private_http,
        };
        let endpoints = EndpointService::new(store.clone(), clock.clone(), guard);
        let tokens = TokenService::new(store.clone(), clock.clone());
        let quotas = QuotaService::new(store.clone(), clock.clone());
        Arc::new(Engine {
            store,
            clock,
            limits,
            shutdown,
            jobs,
            events,
            subscriptions,
            sources,
            endpoints,
            tokens,
            quotas,
            slos,
            workflows,
            schedule_ids: ScheduleIds::default(),
            run_retention_ms: config.run_retention_ms,
            attempt_retention_ms: config.attempt_retention_ms,
            audit_retention_ms: config.audit_retention_ms,
            slo_pass_ms: config.slo_pass_ms,
        })
    }

    /// Schedules: put, pause, trigger, backfill, and the timer's passes.
    pub fn schedules(&self) -> Schedules<'_> {
        Schedules { engine: self }
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }
}
