//! The engine: the domain services, built once at start, each from its own
//! store trait and the services it calls. Callers reach a domain through its
//! accessor (`engine.jobs()`, `engine.topics()`, …) and nothing else: the
//! store itself is not handed out, so a side effect (a quota, a metric, a
//! hook) has one home that every caller passes through.

use std::sync::Arc;

use keel_core::{Clock, Limits, Namespace, QueueName, QueueRef, Timestamp};
use keel_store::Store;

use crate::Shutdown;
use crate::audit::AuditService;
use crate::connections::{ConnectionDeps, ConnectionService, Keyring};
use crate::endpoints::EndpointService;
use crate::handlers::{HandlerDeps, HandlerService};
use crate::imports::ImportService;
use crate::jobs::{JobDeps, JobService};
use crate::monitors::{MonitorDeps, MonitorService};
use crate::namespaces::NamespaceService;
use crate::notifications::{NotificationDeps, NotificationService};
use crate::outbound::Guard;
use crate::owners::Owners;
use crate::projects::{Kinds, ProjectService};
use crate::queues::QueueService;
use crate::rates::Rates;
use crate::runs::RunService;
use crate::schedules::{ScheduleDeps, ScheduleService};
use crate::slos::SloService;
use crate::sources::SourceService;
use crate::subscriptions::{SubscriptionDeps, SubscriptionService};
use crate::tokens::TokenService;
use crate::topics::TopicService;
use crate::workflows::{Driver, DriverDeps};

pub struct Engine {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    limits: Limits,
    shutdown: Shutdown,
    config: EngineConfig,
    jobs: Arc<JobService>,
    queues: Arc<QueueService>,
    topics: Arc<TopicService>,
    subscriptions: Arc<SubscriptionService>,
    sources: SourceService,
    notifications: Arc<NotificationService>,
    monitors: Arc<MonitorService>,
    handlers: Arc<HandlerService>,
    connections: Arc<ConnectionService>,
    imports: ImportService,
    projects: ProjectService,
    endpoints: Arc<EndpointService>,
    schedules: Arc<ScheduleService>,
    workflows: Arc<Driver>,
    runs: Arc<RunService>,
    tokens: TokenService,
    audit: AuditService,
    namespaces: Arc<NamespaceService>,
    slos: Arc<SloService>,
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
    /// Where people and mail clients reach this server
    /// (`https://keel.example.com`): e-mails' unsubscribe links point there;
    /// none without it.
    pub public_url: Option<String>,
    /// The operator's ceilings on handlers' limits, and the invocations a
    /// node runs at once.
    pub handler_caps: keel_core::handler::Caps,
    /// The keys connections' secrets are sealed with; without them,
    /// integrations and connections are refused.
    pub keyring: Option<Arc<Keyring>>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            allow_private_http: false,
            run_retention_ms: DEFAULT_RUN_RETENTION_MS,
            attempt_retention_ms: DEFAULT_ATTEMPT_RETENTION_MS,
            audit_retention_ms: DEFAULT_AUDIT_RETENTION_MS,
            slo_pass_ms: DEFAULT_SLO_PASS_MS,
            public_url: None,
            handler_caps: keel_core::handler::Caps::default(),
            keyring: None,
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
        let signal = store.ready_signal();
        let rates = Arc::new(Rates::default());
        let slos = Arc::new(SloService::new(store.clone()));
        let namespaces = Arc::new(NamespaceService::new(store.clone(), clock.clone()));
        let topics = Arc::new(TopicService::new(
            store.clone(),
            signal.clone(),
            clock.clone(),
            limits.clone(),
            shutdown.clone(),
            namespaces.clone(),
            slos.clone(),
        ));
        let queues = Arc::new(QueueService::new(
            store.clone(),
            clock.clone(),
            rates.clone(),
            slos.clone(),
        ));
        let owners = Arc::new(Owners::default());
        let jobs = Arc::new(JobService::new(JobDeps {
            store: store.clone(),
            maintenance: store.clone(),
            signal: signal.clone(),
            clock: clock.clone(),
            limits: limits.clone(),
            shutdown: shutdown.clone(),
            owners: owners.clone(),
            queues: queues.clone(),
            namespaces: namespaces.clone(),
            slos: slos.clone(),
            rates,
        }));
        let guard = Guard {
            allow_private: config.allow_private_http,
        };
        let connections = Arc::new(ConnectionService::new(ConnectionDeps {
            store: store.clone(),
            keyring: config.keyring.clone(),
            clock: clock.clone(),
            guard,
            jobs: jobs.clone(),
            queues: queues.clone(),
            topics: topics.clone(),
            public_url: config.public_url.clone(),
        }));
        let workflows = Driver::new(DriverDeps {
            runs: store.clone(),
            definitions: store.clone(),
            sole_writer: store.sole_writer(),
            clock: clock.clone(),
            jobs: jobs.clone(),
            topics: topics.clone(),
            allow_private_http: config.allow_private_http,
            connections: connections.clone(),
        });
        owners.bind_workflows(workflows.clone());
        let endpoints = Arc::new(EndpointService::new(
            store.clone(),
            (queues.clone(), jobs.clone(), topics.clone()),
            clock.clone(),
            guard,
        ));
        queues.bind_endpoints(&endpoints);
        let subscriptions = Arc::new(SubscriptionService::new(SubscriptionDeps {
            store: store.clone(),
            signal: signal.clone(),
            clock: clock.clone(),
            limits: limits.clone(),
            shutdown: shutdown.clone(),
            workflows: workflows.clone(),
            jobs: jobs.clone(),
            queues: queues.clone(),
            topics: topics.clone(),
            endpoints: endpoints.clone(),
            slos: slos.clone(),
        }));
        let sources = SourceService::new(store.clone(), clock.clone(), topics.clone());
        let notifications = Arc::new(NotificationService::new(NotificationDeps {
            store: store.clone(),
            clock: clock.clone(),
            queues: queues.clone(),
            topics: topics.clone(),
            endpoints: endpoints.clone(),
            guard,
            sole_writer: store.sole_writer(),
            public_url: config.public_url.clone(),
        }));
        owners.bind_notifications(notifications.clone());
        let runs = Arc::new(RunService::new(
            store.clone(),
            signal,
            shutdown.clone(),
            jobs.clone(),
        ));
        let schedules = Arc::new(ScheduleService::new(ScheduleDeps {
            store: store.clone(),
            clock: clock.clone(),
            limits: limits.clone(),
            jobs: jobs.clone(),
            queues: queues.clone(),
            topics: topics.clone(),
            workflows: workflows.clone(),
            runs: runs.clone(),
        }));
        let monitors = Arc::new(MonitorService::new(MonitorDeps {
            store: store.clone(),
            clock: clock.clone(),
            schedules: schedules.clone(),
            queues: queues.clone(),
            notifications: notifications.clone(),
            guard,
        }));
        let handlers = Arc::new(HandlerService::new(HandlerDeps {
            store: store.clone(),
            clock: clock.clone(),
            guard,
            caps: config.handler_caps,
            jobs: jobs.clone(),
            topics: topics.clone(),
            queues: queues.clone(),
            connections: connections.clone(),
        }));
        queues.bind_handlers(&handlers);
        let imports =
            ImportService::new(jobs.clone(), topics.clone(), clock.clone(), limits.clone());
        let projects = ProjectService::new(
            store.clone(),
            Kinds {
                endpoints: endpoints.clone(),
                notifications: notifications.clone(),
                monitors: monitors.clone(),
                handlers: handlers.clone(),
                topics: topics.clone(),
                queues: queues.clone(),
                workflows: workflows.clone(),
                subscriptions: subscriptions.clone(),
                schedules: schedules.clone(),
            },
            clock.clone(),
            store.sole_writer(),
        );
        let tokens = TokenService::new(store.clone(), clock.clone());
        let audit = AuditService::new(store.clone());
        Arc::new(Engine {
            store,
            clock,
            limits,
            shutdown,
            config,
            jobs,
            queues,
            topics,
            subscriptions,
            sources,
            notifications,
            monitors,
            handlers,
            connections,
            imports,
            projects,
            endpoints,
            schedules,
            workflows,
            runs,
            tokens,
            audit,
            namespaces,
            slos,
        })
    }

    /// Jobs: enqueue (with its admission), lease, acks, reads.
    pub fn jobs(&self) -> &Arc<JobService> {
        &self.jobs
    }

    /// Queues: counts and rates, policy, pause and resume.
    pub fn queues(&self) -> &Arc<QueueService> {
        &self.queues
    }

    /// Topics: their policies, and the one publish every producer uses.
    pub fn topics(&self) -> &Arc<TopicService> {
        &self.topics
    }

    pub fn subscriptions(&self) -> &Arc<SubscriptionService> {
        &self.subscriptions
    }

    /// Webhook sources and their ingestion.
    pub fn sources(&self) -> &SourceService {
        &self.sources
    }

    /// Notifications: their settings, accepting them, the inbox.
    pub fn notifications(&self) -> &Arc<NotificationService> {
        &self.notifications
    }

    /// Monitors, their results, incidents and how they page.
    pub fn monitors(&self) -> &Arc<MonitorService> {
        &self.monitors
    }

    /// Handlers: their versions, test calls, objects' state.
    pub fn handlers(&self) -> &Arc<HandlerService> {
        &self.handlers
    }

    /// OAuth2 integrations and connections, and calls made as them.
    pub fn connections(&self) -> &Arc<ConnectionService> {
        &self.connections
    }

    /// Bulk import of records into a queue or a topic.
    pub fn imports(&self) -> &ImportService {
        &self.imports
    }

    /// Projects: plans, applies and their versions.
    pub fn projects(&self) -> &ProjectService {
        &self.projects
    }

    pub fn endpoints(&self) -> &Arc<EndpointService> {
        &self.endpoints
    }

    pub fn schedules(&self) -> &Arc<ScheduleService> {
        &self.schedules
    }

    /// Workflow definitions, and the driver that advances their runs.
    pub fn workflows(&self) -> &Arc<Driver> {
        &self.workflows
    }

    /// Runs as read: one, waiting for it to end, or a page of them.
    pub fn runs(&self) -> &Arc<RunService> {
        &self.runs
    }

    pub fn tokens(&self) -> &TokenService {
        &self.tokens
    }

    pub fn audit(&self) -> &AuditService {
        &self.audit
    }

    /// Namespaces, their quotas and what they hold.
    pub fn namespaces(&self) -> &Arc<NamespaceService> {
        &self.namespaces
    }

    pub fn slos(&self) -> &Arc<SloService> {
        &self.slos
    }

    /// The limits every input is checked against.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Whether the store answers (`/readyz`).
    pub async fn probe(&self) -> Result<(), keel_core::Error> {
        let probe = QueueRef {
            namespace: Namespace::new("keel")?,
            queue: QueueName::new("readyz")?,
        };
        self.store.queue_stats(&probe).await.map(|_| ())
    }

    /// The Prometheus text of every `keel_` metric, with the gauges read
    /// from the store now.
    pub async fn metrics(&self) -> String {
        crate::metrics::render(&self.queues, &self.subscriptions).await
    }

    /// Finishes what the store is committing and closes it (after the
    /// services are joined).
    pub async fn close(&self) {
        self.store.close().await;
    }

    /// What the background services are built from.
    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub(crate) fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The clock jumped (a [`crate::ManualClock`] moved on): the services
    /// that sleep until a time (maintenance's deadlines, the schedule
    /// timer) look again now.
    pub fn time_moved(&self) {
        let signal = self.store.ready_signal();
        signal.deadline(Timestamp::from_millis(0));
        signal.schedule_due(Timestamp::from_millis(0));
    }
}
