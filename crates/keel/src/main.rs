//! `keel`: the server, a dev server, and admin commands over HTTP.
//!
//! This file only assembles: it parses the command line, opens the store,
//! builds the engine and hands it to `keel_server::run`.

mod admin;
mod connections;
mod endpoints;
mod events;
mod handlers;
mod imports;
mod jobs;
mod monitors;
mod project;
mod schedules;
mod sources;
mod telemetry;
mod tokens;
mod workflows;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use keel_core::{Limits, SystemClock};
use keel_engine::connections::Keyring;
use keel_engine::{
    DEFAULT_ATTEMPT_RETENTION_MS, DEFAULT_AUDIT_RETENTION_MS, DEFAULT_RUN_RETENTION_MS,
    DEFAULT_SLO_PASS_MS, Engine, EngineConfig, ShutdownTrigger,
};
use keel_server::ClientLimits;
use keel_server::api::AuthConfig;
use keel_store_sqlite::SqliteStore;

/// A server allocates and frees many small, short-lived buffers on several
/// threads (requests, journals, SQLite rows); glibc's allocator spent a
/// tenth of the server's CPU on it (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "keel",
    version,
    about = "Durable jobs, events and workflows in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a Keel server on the embedded store.
    Server(ServerArgs),
    /// Run a server for local development, with its data in ./.keel-dev.
    Dev(DevArgs),
    /// Enqueue one job.
    Enqueue(jobs::EnqueueArgs),
    /// Inspect jobs.
    Jobs(jobs::JobsArgs),
    /// Inspect queues.
    Queues(admin::QueuesArgs),
    /// Each objective of a namespace's queues and topics, measured.
    Slos(admin::SlosArgs),
    /// Validate, apply and run workflow definitions.
    Workflow(workflows::WorkflowArgs),
    /// Inspect workflow runs.
    Run(workflows::RunArgs),
    /// List, inspect and configure topics.
    Topic(events::TopicArgs),
    /// Publish one event to a topic.
    Publish(events::PublishArgs),
    /// Follow a topic's events as they are published.
    Tail(events::TailArgs),
    /// Configure and inspect subscriptions.
    Subscription(events::SubscriptionArgs),
    /// Configure and inspect webhook sources.
    Source(sources::SourceArgs),
    /// Configure OAuth2 integrations (an app's client at a provider).
    Integration(connections::IntegrationArgs),
    /// Connect end users through an integration; read their connections;
    /// make calls as one.
    Connection(connections::ConnectionArgs),
    /// Rotate the keys that seal connections' secrets.
    Keys(connections::KeysArgs),
    /// Configure endpoints Keel pushes to; read their attempts.
    Endpoint(endpoints::EndpointArgs),
    /// Handlers Keel runs itself (JavaScript or WebAssembly).
    Handler(handlers::HandlerArgs),
    /// An object's state (what handlers keep).
    State(handlers::StateArgs),
    /// Apply monitoring settings from a file; read monitors and their results.
    Monitor(monitors::MonitorArgs),
    /// List, acknowledge, resolve and trigger incidents.
    Incident(monitors::IncidentArgs),
    /// Import a CSV or NDJSON file into a queue's jobs or a topic's events
    /// (deduplicated by a key column, resumable, with a progress bar).
    Import(imports::ImportArgs),
    /// Check a project directory offline: schemas, references, cron previews.
    Validate(project::DirArgs),
    /// Find what is legal but probably wrong in a project directory.
    Lint(project::DirArgs),
    /// Run a project's tests, each on a Keel of its own with a fake clock.
    Test(project::TestArgs),
    /// Show what applying the project would change (exit 0: nothing, 2: changes).
    Plan(project::PlanArgs),
    /// Apply a saved plan, or the project once its plan is confirmed.
    Apply(project::ApplyArgs),
    /// A project's versions: list, show, roll back.
    Versions(project::VersionsArgs),
    /// Configure schedules; read their next slots and ledger; fire by hand.
    Schedule(schedules::ScheduleArgs),
    /// Create, list and revoke API tokens (`create` also straight on a
    /// store, to make the first admin token).
    Token(tokens::TokenArgs),
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("store").required(true).args(["data_dir", "database_url"])))]
struct ServerArgs {
    /// Address to listen on; loopback unless you mean otherwise.
    #[arg(long, env = "KEEL_LISTEN", default_value = "127.0.0.1:5335")]
    listen: SocketAddr,
    /// Directory of the embedded store.
    #[arg(long, env = "KEEL_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// PostgreSQL instead of the embedded store: postgres://user@host:port/db
    /// (many Keel nodes may share one database).
    #[arg(long, env = "KEEL_DATABASE_URL")]
    database_url: Option<String>,
    /// Let workflow `http` steps and endpoints call loopback, private and
    /// link-local addresses (refused by default: server-side request
    /// forgery; cloud metadata addresses stay refused).
    #[arg(long, env = "KEEL_ALLOW_PRIVATE_HTTP")]
    allow_private_http: bool,
    /// The keys that seal OAuth2 connections' secrets at rest, made when
    /// missing (default: keys.json in --data-dir; with --database-url,
    /// give every node the same file).
    #[arg(long, env = "KEEL_KEYS_FILE")]
    keys_file: Option<PathBuf>,
    /// Where people and mail clients reach this server
    /// (https://keel.example.com): e-mails carry one-click unsubscribe
    /// links there (RFC 8058); without it they carry none.
    #[arg(long, env = "KEEL_PUBLIC_URL")]
    public_url: Option<String>,
    /// How long a finished workflow run stays readable, in ms (default: 7 days).
    #[arg(long, env = "KEEL_RUN_RETENTION_MS", default_value_t = DEFAULT_RUN_RETENTION_MS)]
    run_retention_ms: u64,
    /// How long endpoints' delivery attempts stay in their log, in ms
    /// (default: 7 days).
    #[arg(long, env = "KEEL_ATTEMPT_RETENTION_MS", default_value_t = DEFAULT_ATTEMPT_RETENTION_MS)]
    attempt_retention_ms: u64,
    /// How long audit entries are kept, in ms (default: 365 days).
    #[arg(long, env = "KEEL_AUDIT_RETENTION_MS", default_value_t = DEFAULT_AUDIT_RETENTION_MS)]
    audit_retention_ms: u64,
    /// How often each node adds its SLO counts to the store and measures
    /// the queues' objectives, in ms (default: 10 s; at least 100).
    #[arg(long, env = "KEEL_SLO_PASS_MS", default_value_t = DEFAULT_SLO_PASS_MS,
          value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    slo_pass_ms: u64,
    /// The most guest CPU time a handler may ask for per invocation, in ms.
    #[arg(long, env = "KEEL_HANDLER_MAX_CPU_MS", default_value_t = 5_000)]
    handler_max_cpu_ms: u64,
    /// The most linear memory a handler may ask for, in MB.
    #[arg(long, env = "KEEL_HANDLER_MAX_MEMORY_MB", default_value_t = 256)]
    handler_max_memory_mb: u32,
    /// Handler invocations this node runs at once.
    #[arg(long, env = "KEEL_HANDLER_INSTANCES", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    handler_instances: u32,
    /// Serve HTTPS (HTTP/2 and HTTP/1.1) with this PEM certificate chain,
    /// leaf first; needs --tls-key.
    #[arg(long, env = "KEEL_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "KEEL_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// `on`: every route but the health probes and the webhook ingress
    /// needs a token (create the first with `keel token create --role admin
    /// --name root --data-dir DIR`). `off`: anyone who can reach the
    /// server can do anything.
    #[arg(long, env = "KEEL_AUTH", default_value = "on", value_parser = ["on", "off"])]
    auth: String,
    /// Serve /metrics without a token.
    #[arg(long, env = "KEEL_METRICS_PUBLIC")]
    metrics_public: bool,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    clients: ClientArgs,
}

#[derive(Args)]
struct DevArgs {
    #[arg(long, env = "KEEL_LISTEN", default_value = "127.0.0.1:5335")]
    listen: SocketAddr,
    #[arg(long, env = "KEEL_DATA_DIR", default_value = ".keel-dev")]
    data_dir: PathBuf,
}

#[derive(Args)]
struct LimitArgs {
    /// Largest job payload or result, in bytes.
    #[arg(long, env = "KEEL_MAX_PAYLOAD_BYTES", default_value_t = Limits::default().max_payload_bytes)]
    max_payload_bytes: usize,
    /// Largest request body, in bytes.
    #[arg(long, env = "KEEL_MAX_BODY_BYTES", default_value_t = Limits::default().max_body_bytes)]
    max_body_bytes: usize,
    /// Most unfinished jobs one namespace may hold.
    #[arg(long, env = "KEEL_MAX_NAMESPACE_JOBS", default_value_t = Limits::default().max_namespace_jobs)]
    max_namespace_jobs: u64,
    /// Longest a long-poll may ask to wait (lease, fetch, events, a run's
    /// end), in ms: below a proxy's idle timeout.
    #[arg(long, env = "KEEL_MAX_WAIT_MS", default_value_t = Limits::default().max_wait_ms)]
    max_wait_ms: u64,
}

/// What clients may hold of the server (`keel_server::ClientLimits`).
#[derive(Args)]
struct ClientArgs {
    /// Most connections open at once; past it a new one is answered 429
    /// `overloaded`. Keep it under the open-file limit (`ulimit -n`).
    #[arg(long, env = "KEEL_MAX_CONNECTIONS", default_value_t = ClientLimits::default().max_connections)]
    max_connections: usize,
    /// How long a request head may take to arrive, in ms, and how long a
    /// kept-alive connection may sit idle: a slow client is closed.
    #[arg(long, env = "KEEL_HEADER_TIMEOUT_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(100..))]
    header_timeout_ms: u64,
    /// How long a request body may take to arrive, in ms (408 after it).
    #[arg(long, env = "KEEL_BODY_TIMEOUT_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(100..))]
    body_timeout_ms: u64,
    /// Most bytes of request bodies read at once over all connections
    /// (a body reserves its declared length); past it, 429 `overloaded`.
    #[arg(long, env = "KEEL_MAX_BODY_BYTES_IN_FLIGHT", default_value_t = ClientLimits::default().max_body_bytes_in_flight)]
    max_body_bytes_in_flight: usize,
}

impl ClientArgs {
    fn limits(&self) -> ClientLimits {
        ClientLimits {
            max_connections: self.max_connections,
            header_timeout: Duration::from_millis(self.header_timeout_ms),
            body_timeout: Duration::from_millis(self.body_timeout_ms),
            max_body_bytes_in_flight: self.max_body_bytes_in_flight,
        }
    }
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        Limits {
            max_payload_bytes: self.max_payload_bytes,
            max_body_bytes: self.max_body_bytes,
            max_namespace_jobs: self.max_namespace_jobs,
            max_wait_ms: self.max_wait_ms,
            ..Limits::default()
        }
    }
}

#[allow(
    clippy::print_stderr,
    reason = "the binary reports a fatal error to its user"
)]
fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Server(args) => {
                let store = match (args.data_dir, args.database_url) {
                    (_, Some(url)) => StoreChoice::Postgres(url),
                    (Some(dir), None) => StoreChoice::Embedded(dir),
                    (None, None) => anyhow::bail!("give --data-dir or --database-url"),
                };
                let config = EngineConfig {
                    allow_private_http: args.allow_private_http,
                    run_retention_ms: args.run_retention_ms,
                    attempt_retention_ms: args.attempt_retention_ms,
                    audit_retention_ms: args.audit_retention_ms,
                    slo_pass_ms: args.slo_pass_ms,
                    public_url: args
                        .public_url
                        .map(|u| keel_core::notification::check_public_url(&u))
                        .transpose()
                        .map_err(|e| anyhow::anyhow!("--public-url: {}", e.message))?,
                    handler_caps: keel_core::handler::Caps {
                        cpu_ms: args.handler_max_cpu_ms,
                        memory_mb: args.handler_max_memory_mb,
                        instances: args.handler_instances,
                        ..keel_core::handler::Caps::default()
                    },
                    keyring: None,
                };
                let tls = match (&args.tls_cert, &args.tls_key) {
                    (Some(cert), Some(key)) => {
                        Some(keel_server::tls::load(cert, key).context("loading the TLS files")?)
                    }
                    _ => None,
                };
                let listen = Listen {
                    addr: args.listen,
                    tls,
                    auth: AuthConfig {
                        required: args.auth == "on",
                        metrics_public: args.metrics_public,
                    },
                    clients: args.clients.limits(),
                };
                serve(
                    listen,
                    store,
                    args.limits.limits(),
                    config,
                    args.keys_file,
                    false,
                )
                .await
            }
            Command::Dev(args) => {
                let store = StoreChoice::Embedded(args.data_dir);
                // A dev server talks to services on the same machine.
                let config = EngineConfig {
                    allow_private_http: true,
                    ..EngineConfig::default()
                };
                let listen = Listen {
                    addr: args.listen,
                    tls: None,
                    auth: AuthConfig {
                        required: false,
                        metrics_public: true,
                    },
                    clients: ClientLimits::default(),
                };
                serve(listen, store, Limits::default(), config, None, true).await
            }
            Command::Enqueue(args) => jobs::enqueue(args).await,
            Command::Integration(args) => connections::integration(args).await,
            Command::Connection(args) => connections::connection(args).await,
            Command::Keys(args) => connections::keys(args).await,
            Command::Jobs(args) => jobs::jobs(args).await,
            Command::Queues(args) => admin::queues(args).await,
            Command::Workflow(args) => workflows::workflow(args).await,
            Command::Run(args) => workflows::run(args).await,
            Command::Topic(args) => events::topic(args).await,
            Command::Publish(args) => events::publish(args).await,
            Command::Tail(args) => events::tail(args).await,
            Command::Subscription(args) => events::subscription(args).await,
            Command::Source(args) => sources::source(args).await,
            Command::Endpoint(args) => endpoints::endpoint(args).await,
            Command::Handler(args) => handlers::handler(args).await,
            Command::Import(args) => imports::import(args).await,
            Command::State(args) => handlers::state(args).await,
            Command::Monitor(args) => monitors::monitor(args).await,
            Command::Incident(args) => monitors::incident(args).await,
            Command::Schedule(args) => schedules::schedule(args).await,
            Command::Token(args) => tokens::token(args).await,
            Command::Slos(args) => admin::slos(args).await,
            Command::Validate(args) => project::validate(&args).await,
            Command::Lint(args) => project::lint(&args),
            Command::Test(args) => project::test(args).await,
            Command::Plan(args) => project::plan(args).await,
            Command::Apply(args) => project::apply(args).await,
            Command::Versions(args) => project::versions(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if e.is::<project::Exit>() => {
            let code = e.downcast_ref::<project::Exit>().map_or(1, |exit| exit.0);
            std::process::ExitCode::from(code)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Where the server keeps its state.
enum StoreChoice {
    Embedded(PathBuf),
    Postgres(String),
}

impl StoreChoice {
    /// The keys connections' secrets are sealed with: `file`, or the
    /// embedded store's `keys.json`; made when missing. PostgreSQL without
    /// a file holds no connections (every node needs the same keys).
    fn keyring(&self, file: Option<PathBuf>) -> anyhow::Result<Option<Arc<Keyring>>> {
        let path = match (file, self) {
            (Some(path), _) => path,
            (None, StoreChoice::Embedded(dir)) => dir.join("keys.json"),
            (None, StoreChoice::Postgres(_)) => return Ok(None),
        };
        let (keyring, made) = Keyring::open(&path)
            .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message))?;
        if made {
            tracing::info!(path = %path.display(), "made a new keys file for connections' secrets");
        }
        Ok(Some(Arc::new(keyring)))
    }

    async fn open(&self, limits: &Limits) -> anyhow::Result<Arc<dyn keel_store::Store>> {
        Ok(match self {
            StoreChoice::Embedded(dir) => Arc::new(
                SqliteStore::open(dir, limits)
                    .with_context(|| format!("opening the store in {}", dir.display()))?,
            ),
            StoreChoice::Postgres(url) => Arc::new(
                keel_store_postgres::PostgresStore::open(url, limits)
                    .await
                    .context("opening the PostgreSQL store")?,
            ),
        })
    }
}

/// Listens on `addr` with a backlog to match the connections a server
/// holds (the kernel caps it at `net.core.somaxconn`): with the usual 128,
/// a burst of connections overflows the queue and waits out SYN-ACK
/// retransmits, seconds, before it is even accepted.
fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// Where and how the API is served.
struct Listen {
    addr: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    auth: AuthConfig,
    clients: ClientLimits,
}

async fn serve(
    listen: Listen,
    choice: StoreChoice,
    limits: Limits,
    mut config: EngineConfig,
    keys_file: Option<PathBuf>,
    dev: bool,
) -> anyhow::Result<()> {
    let telemetry = tokio::task::spawn_blocking(telemetry::init).await??;
    keel_engine::metrics::init();
    let store = choice.open(&limits).await?;
    config.keyring = choice.keyring(keys_file)?;
    if !listen.auth.required && !dev {
        tracing::warn!("--auth off: anyone who can reach this server can do anything");
    } else if listen.auth.required && store.tokens_list().await?.is_empty() {
        tracing::warn!(
            "no API tokens yet: create the first with `keel token create --role admin --name root` and this server's --data-dir or --database-url"
        );
    }
    let listener = bind(listen.addr).with_context(|| format!("listening on {}", listen.addr))?;
    let addr = listener.local_addr()?;
    let scheme = if listen.tls.is_some() {
        "https"
    } else {
        "http"
    };
    // Tests and scripts read this line to find the port (with --listen ...:0).
    println!("keel listening on {scheme}://{addr}");
    if dev && let StoreChoice::Embedded(data_dir) = &choice {
        println!("  auth:    off (a dev server: anyone who can reach it can do anything)");
        println!("  data:    {}", data_dir.display());
        println!("  health:  http://{addr}/healthz");
        println!("  metrics: http://{addr}/metrics");
        println!("  ui:      http://{addr}/ui");
        println!(
            "  try:     curl -X POST http://{addr}/v1/namespaces/default/queues/demo/jobs -d '{{\"payload\":{{\"hello\":\"world\"}}}}'"
        );
    }
    let (trigger, shutdown) = ShutdownTrigger::new();
    let engine = Engine::new(
        store,
        Arc::new(SystemClock),
        limits,
        shutdown.clone(),
        config,
    );
    tokio::spawn(async move {
        wait_for_stop_signal().await;
        tracing::info!("draining: no new requests; finishing what is in flight");
        trigger.fire();
    });
    keel_server::run(
        engine,
        listener,
        listen.tls,
        listen.auth,
        listen.clients,
        shutdown,
    )
    .await?;
    tokio::task::spawn_blocking(move || telemetry.shutdown()).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for stop signals");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
