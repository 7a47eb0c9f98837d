//! `keel-bench`: the peer kit's phases (bench/peers) against a Keel server it
//! starts itself, printed as the same JSON lines, so that Keel and its peers
//! can be compared from one run. Workers use the Rust SDK over HTTP, the path
//! users take. Keel-only phases add what the kit cannot measure for peers:
//! latency at 10,000 jobs/s, resident memory with a million queued jobs and
//! the CPU of an idle server holding them (both on a fresh server), and the
//! same drain without HTTP.
//!
//! Phases, as in the kit (bench/peers/common.mjs):
//! - `enqueue_single`: one job per request, `conc` in flight;
//! - `process`: a worker with `conc` no-op handlers drains the queue; timed
//!   from its start until the last handler starts;
//! - `enqueue_bulk`, `process_after_bulk`: the same with batches of `batch`;
//! - `latency`: open-loop paced enqueues; handler start minus the time just
//!   before the enqueue call.

mod events;
mod flow;
mod handlers;
mod hooks;
mod import;
mod jobs;
mod keyed;
mod monitors;
mod notify;
mod project;
mod schedules;
mod server;
mod workflows;

use crate::jobs::{drain, enqueue_bulk, enqueue_single, in_process, latency};
use crate::server::{BenchSchema, BenchServer, CpuMeter};
use crate::workflows::workflow_runs;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::{Args, Parser};
use keel_client::Client;
use serde_json::{Value, json};

/// The same allocator as the server, so that the in-process phase measures
/// what the server would do.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "keel-bench",
    about = "Measure a Keel server it starts itself; prints JSON lines (see bench/)"
)]
struct Cli {
    #[command(flatten)]
    args: BenchArgs,
}

#[allow(
    clippy::print_stderr,
    reason = "the binary reports a fatal error to its user"
)]
fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// How the measured system is named in the output, e.g. `keel(postgres,3 nodes)`.
static SYSTEM: std::sync::OnceLock<String> = std::sync::OnceLock::new();
const NS: &str = "default";
/// The longest any phase may take before the run is declared stuck.
const PHASE_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Args)]
struct BenchArgs {
    /// The `keel` binary to measure (default: the one beside this program,
    /// as `cargo build --release -p keel -p keel-bench` leaves it).
    #[arg(long)]
    keel: Option<PathBuf>,
    /// Jobs per throughput phase.
    #[arg(long, default_value_t = 50_000)]
    n: usize,
    /// Jobs for the one-at-a-time enqueue phase (default: n).
    #[arg(long)]
    n_single: Option<usize>,
    /// Producer requests in flight, and worker concurrency.
    #[arg(long, default_value_t = 50)]
    conc: usize,
    /// Jobs a worker leases ahead of its free handlers (`WorkerOptions::prefetch`).
    #[arg(long, default_value_t = 0)]
    prefetch: usize,
    /// Workers take jobs from lease calls (`POST .../lease`, as any HTTP
    /// client can) instead of the worker stream the Rust SDK uses.
    #[arg(long)]
    lease_calls: bool,
    /// Jobs per bulk enqueue.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Jobs per second of the latency phase.
    #[arg(long, default_value_t = 500)]
    rate: u64,
    /// Seconds of each latency phase.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Jobs per second of the fast latency phase.
    #[arg(long, default_value_t = 10_000)]
    fast_rate: u64,
    /// Jobs queued for the memory phase.
    #[arg(long, default_value_t = 1_000_000)]
    queued: usize,
    /// Seconds the idle server is watched.
    #[arg(long, default_value_t = 30)]
    idle_secs: u64,
    /// Runs of the 3-step workflow phase.
    #[arg(long, default_value_t = 20_000)]
    wf_n: usize,
    /// Jobs the workflow phases' workers lease ahead of their handlers. Peers
    /// do not cap this: Restate pushes every invocation to its endpoint at
    /// once, and Temporal's worker polls ahead of its slots.
    #[arg(long, default_value_t = 500)]
    wf_prefetch: usize,
    /// Runs per second of the workflow latency phase.
    #[arg(long, default_value_t = 100)]
    wf_rate: u64,
    /// Measure on PostgreSQL (a fresh schema in this database, dropped after)
    /// instead of the embedded store.
    #[arg(long)]
    database_url: Option<String>,
    /// Keel nodes to start on the database; producers and workers spread over them.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Phases to run: any of enqueue_single, process, enqueue_bulk,
    /// process_after_bulk, latency, latency_fast, workflow, workflow_latency,
    /// publish_single, publish_batch, drain_pulled, keyed_target,
    /// event_latency, push, push_failing, push_queue, ingest, in_process,
    /// memory, idle; and, only when named (they
    /// are long, or measure flow control), keyed_backlog,
    /// events_10m_per_hour, schedules, rate_limit, process_limited,
    /// starvation, the notification phases notify_accept, notify_email,
    /// notify_slack and notify_streams, and the monitor phases
    /// monitor_probes, monitor_pages (after monitor_probes) and heartbeats,
    /// and the handler phases handler_sandbox, handler_jobs,
    /// handler_writes10, handler_one_object, state_get and
    /// handler_10m_per_hour.
    #[arg(long, value_delimiter = ',', default_value = "all")]
    phases: Vec<String>,
    /// Events per event phase (default: n).
    #[arg(long)]
    events_n: Option<usize>,
    /// Events per second of the event latency phase.
    #[arg(long, default_value_t = 1000)]
    events_rate: u64,
    /// Messages per webhook phase (default: n).
    #[arg(long)]
    hooks_n: Option<usize>,
    /// Seconds of the 10-million-an-hour phase.
    #[arg(long, default_value_t = 300)]
    hour_secs: u64,
    /// Ready jobs of each keyed_backlog variant (none, 10 and 10,000 keys).
    #[arg(long, default_value_t = 100_000)]
    keyed_n: usize,
    /// Schedules of the `schedules` phase, each firing once a minute.
    #[arg(long, default_value_t = 100_000)]
    schedules_n: usize,
    /// Seconds the `rate_limit` phase measures.
    #[arg(long, default_value_t = 10)]
    rate_secs: u64,
    /// Seconds the `schedules` phase measures (whole minutes are best).
    #[arg(long, default_value_t = 180)]
    schedules_secs: u64,
    /// Notifications per notification phase (default: n).
    #[arg(long)]
    notify_n: Option<usize>,
    /// Inbox streams the `notify_streams` phase holds open.
    #[arg(long, default_value_t = 10_000)]
    inbox_streams: usize,
    /// HTTP monitors of `monitor_probes` (every 30 s), and seconds measured.
    #[arg(long, default_value_t = 10_000)]
    monitors_n: usize,
    #[arg(long, default_value_t = 60)]
    monitor_secs: u64,
    /// Records of the `import` phase (a CSV file of about 200-byte rows).
    #[arg(long, default_value_t = 4_000_000)]
    import_n: usize,
}

impl BenchArgs {
    /// The server binary to start: `--keel`, or `keel` beside this program.
    fn keel_binary(&self) -> anyhow::Result<PathBuf> {
        let keel = match &self.keel {
            Some(path) => path.clone(),
            None => std::env::current_exe()?.with_file_name("keel"),
        };
        if !keel.is_file() {
            bail!(
                "no keel binary at {}: build it with `cargo build --release -p keel`, or name it with --keel",
                keel.display()
            );
        }
        Ok(keel)
    }
    fn wants(&self, phase: &str) -> bool {
        self.phases.iter().any(|p| p == "all" || p == phase)
    }

    fn handlers(&self) -> Handlers {
        Handlers {
            conc: self.conc,
            prefetch: self.prefetch,
            stream: !self.lease_calls,
        }
    }

    fn workflow_handlers(&self) -> Handlers {
        Handlers {
            conc: self.conc,
            prefetch: self.wf_prefetch,
            stream: !self.lease_calls,
        }
    }
}

/// How each node's worker is sized: handlers, and jobs leased ahead of them.
#[derive(Clone, Copy)]
pub(crate) struct Handlers {
    conc: usize,
    prefetch: usize,
    /// Jobs come on worker streams, not lease calls.
    stream: bool,
}

fn emit(phase: &str, fields: Value) {
    let system = SYSTEM.get().map_or("keel", String::as_str);
    let mut line = json!({ "system": system, "phase": phase });
    if let (Some(line), Some(fields)) = (line.as_object_mut(), fields.as_object()) {
        line.extend(fields.clone());
    }
    println!("{line}");
}

/// The `p`th percentile of sorted latencies, in ms to two decimals (NaN
/// when there are none).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((p / 100.0) * sorted.len() as f64) as usize;
    let value = sorted
        .get(i.min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or(f64::NAN);
    (value * 100.0).round() / 100.0
}

/// Calls `call(client, i)` for every `i` below `n`, `conc` calls in flight,
/// spread over the clients: the shape of every one-per-request phase.
async fn one_by_one<F, Fut>(
    clients: &[Client],
    n: usize,
    conc: usize,
    call: F,
) -> anyhow::Result<Duration>
where
    F: Fn(Client, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), keel_client::ClientError>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut producers = tokio::task::JoinSet::new();
    for p in 0..conc.min(n) {
        let (client, next, call) = (
            clients[p % clients.len()].clone(),
            next.clone(),
            call.clone(),
        );
        producers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, keel_client::ClientError>(());
                }
                call(client.clone(), i).await?;
            }
        });
    }
    while let Some(done) = producers.join_next().await {
        done??;
    }
    Ok(started.elapsed())
}

fn per_s(n: usize, elapsed: Duration) -> u64 {
    (n as f64 / elapsed.as_secs_f64()).round() as u64
}

async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let keel = args.keel_binary()?;
    let prefetch = match args.prefetch {
        0 => String::new(),
        n => format!(",prefetch={n}"),
    };
    let (system, schema) = match &args.database_url {
        None => (format!("keel(sqlite,fsync before ack{prefetch})"), None),
        Some(url) => {
            let nodes = if args.nodes == 1 {
                "1 node".to_owned()
            } else {
                format!("{} nodes", args.nodes)
            };
            (
                format!("keel(postgres,{nodes}{prefetch})"),
                Some(BenchSchema::create(url).await?),
            )
        }
    };
    let _ = SYSTEM.set(system);
    let mut servers = Vec::new();
    for _ in 0..args.nodes.max(1) {
        servers.push(BenchServer::start(&keel, schema.as_ref().map(BenchSchema::url)).await?);
    }
    let clients = servers
        .iter()
        .map(BenchServer::client)
        .collect::<Result<Vec<_>, _>>()?;
    let result = measure(&args, &servers, &clients).await;
    for server in servers {
        server.stop().await?;
    }
    if let Some(schema) = schema {
        schema.drop().await?;
    }
    result
}

async fn measure(
    args: &BenchArgs,
    servers: &[BenchServer],
    clients: &[Client],
) -> anyhow::Result<()> {
    let embedded = args.database_url.is_none();
    let origin = Instant::now();
    let n_single = args.n_single.unwrap_or(args.n);

    if args.wants("enqueue_single") {
        let cpu = CpuMeter::start(servers)?;
        let elapsed = enqueue_single(clients, "bench-single", n_single, args.conc).await?;
        let fields = json!({ "n": n_single, "jobs_per_s": per_s(n_single, elapsed), "secs": elapsed.as_secs_f64() });
        emit("enqueue_single", with(fields, cpu.report(servers)?));
    }
    if args.wants("process") {
        let (elapsed, cpu) = drain(
            servers,
            clients,
            "bench-single",
            n_single,
            args.handlers(),
            origin,
        )
        .await?;
        let fields = json!({ "n": n_single, "jobs_per_s": per_s(n_single, elapsed), "secs": elapsed.as_secs_f64() });
        emit("process", with(fields, cpu));
    }
    if args.wants("enqueue_bulk") {
        let cpu = CpuMeter::start(servers)?;
        let elapsed = enqueue_bulk(clients, "bench-bulk", args.n, args.batch).await?;
        let fields = json!({ "n": args.n, "batch": args.batch, "jobs_per_s": per_s(args.n, elapsed), "secs": elapsed.as_secs_f64() });
        emit("enqueue_bulk", with(fields, cpu.report(servers)?));
    }
    if args.wants("process_after_bulk") {
        let (elapsed, cpu) = drain(
            servers,
            clients,
            "bench-bulk",
            args.n,
            args.handlers(),
            origin,
        )
        .await?;
        let fields = json!({ "n": args.n, "jobs_per_s": per_s(args.n, elapsed), "secs": elapsed.as_secs_f64() });
        emit("process_after_bulk", with(fields, cpu));
    }
    for (phase, rate) in [("latency", args.rate), ("latency_fast", args.fast_rate)] {
        if args.wants(phase) {
            let report = latency(clients, phase, rate, args.secs, args.handlers(), origin).await?;
            emit(phase, report);
        }
    }
    if args.wants("workflow") {
        let report = workflow_runs(
            servers,
            clients,
            "bench-wf",
            args.wf_n,
            args.workflow_handlers(),
            None,
        )
        .await?;
        emit("workflow(3 task steps)", report);
    }
    if args.wants("workflow_latency") {
        let n = (args.wf_rate * args.secs) as usize;
        let report = workflow_runs(
            servers,
            clients,
            "bench-wf-lat",
            n,
            args.workflow_handlers(),
            Some(args.wf_rate),
        )
        .await?;
        emit("workflow_latency(start->finish)", report);
    }
    let events_n = args.events_n.unwrap_or(args.n);
    if args.wants("publish_single") {
        let cpu = CpuMeter::start(servers)?;
        let elapsed = events::publish_single(clients, "bench-events", events_n, args.conc).await?;
        let fields = json!({ "n": events_n, "conc": args.conc, "events_per_s": per_s(events_n, elapsed), "secs": elapsed.as_secs_f64() });
        emit("publish_single", with(fields, cpu.report(servers)?));
    }
    if args.wants("drain_pulled") {
        let (elapsed, cpu) =
            events::drain_pulled(servers, &clients[0], "bench-events", events_n).await?;
        let fields = json!({ "n": events_n, "events_per_s": per_s(events_n, elapsed), "secs": elapsed.as_secs_f64() });
        emit("drain_pulled", with(fields, cpu));
    }
    if args.wants("publish_batch") {
        let cpu = CpuMeter::start(servers)?;
        let elapsed =
            events::publish_batches(clients, "bench-keyed", events_n, args.batch, 1000).await?;
        let fields = json!({ "n": events_n, "batch": args.batch, "events_per_s": per_s(events_n, elapsed), "secs": elapsed.as_secs_f64() });
        emit("publish_batch", with(fields, cpu.report(servers)?));
    }
    if args.wants("keyed_target") {
        let report =
            events::keyed_target(servers, clients, "bench-keyed", events_n, args.handlers())
                .await?;
        emit("keyed_target(1000 keys)", report);
    }
    if args.wants("event_latency") {
        let report = events::paced(
            servers,
            clients,
            "bench-event-latency",
            args.events_rate,
            args.secs,
            args.handlers(),
        )
        .await?;
        emit("event_latency(publish->handler)", report);
    }
    let hooks_n = args.hooks_n.unwrap_or(args.n);
    for (phase, fail_every) in [("push", 0), ("push_failing", 10)] {
        if args.wants(phase) {
            let report = hooks::push(servers, &clients[0], hooks_n, fail_every).await?;
            let name = if fail_every == 0 {
                "push(deliveries to a local receiver)"
            } else {
                "push_failing(1 answer in 10 a 500)"
            };
            emit(name, report);
        }
    }
    if args.wants("push_queue") {
        let report = hooks::push_queue(servers, &clients[0], hooks_n, args.batch).await?;
        emit("push_queue", report);
    }
    if args.wants("ingest") {
        let report = hooks::ingest(servers, &clients[0], &servers[0].url, hooks_n).await?;
        emit("ingest(signed webhooks)", report);
    }
    notify::phases(args, servers, &clients[0]).await?;
    monitors::phases(args, servers, &clients[0]).await?;
    handlers::phases(args, servers, &clients[0]).await?;
    if args.wants("import") {
        let keel = args.keel_binary()?;
        let report = import::import(&keel, servers, &clients[0], args.import_n).await?;
        emit("import(CSV, keel import, keyed)", report);
    }
    if args.wants("project") {
        let report = project::project(&args.keel_binary()?, &servers[0], 500).await?;
        emit("project(500 resources: keel plan, apply, plan)", report);
    }
    if args.phases.iter().any(|p| p == "events_10m_per_hour") {
        let report = events::paced(
            servers,
            clients,
            "bench-10m-hour",
            2778,
            args.hour_secs,
            args.handlers(),
        )
        .await?;
        emit("events_10m_per_hour", report);
    }
    if args.phases.iter().any(|p| p == "process_limited") {
        let report = flow::process_limited(
            servers,
            clients,
            args.n,
            args.batch,
            args.handlers(),
            origin,
        )
        .await?;
        emit("process_limited(limits set, never reached)", report);
    }
    if args.phases.iter().any(|p| p == "rate_limit") {
        let report = flow::rate_limit(clients, args.rate_secs, args.batch).await?;
        emit("rate_limit(1000/s accuracy)", report);
    }
    if args.phases.iter().any(|p| p == "starvation") {
        for (fair, spread) in [(false, false), (true, false), (true, true)] {
            let report = flow::starvation(clients, args.batch, fair, spread).await?;
            emit("starvation", report);
        }
    }
    if args.phases.iter().any(|p| p == "schedules") {
        let report = schedules::schedules(
            servers,
            &clients[0],
            args.schedules_n,
            args.schedules_secs,
            args.conc,
        )
        .await?;
        emit("schedules(each fires once a minute)", report);
    }
    if args.phases.iter().any(|p| p == "keyed_backlog") {
        for keys in [0, 10, 10_000] {
            let report =
                keyed::keyed_backlog(clients, args.keyed_n, keys, args.batch, args.conc).await?;
            emit("keyed_backlog", report);
        }
    }
    if embedded && args.wants("in_process") {
        let (enqueue, drain) = in_process(args.n, args.conc, args.batch).await?;
        emit(
            "in_process(no http)",
            json!({
                "n": args.n, "enqueue_bulk_jobs_per_s": per_s(args.n, enqueue), "process_jobs_per_s": per_s(args.n, drain),
            }),
        );
    }
    if embedded && (args.wants("memory") || args.wants("idle")) {
        // A server of their own: what earlier phases left in the first
        // server's allocator would count as memory otherwise.
        let fresh = BenchServer::start(&args.keel_binary()?, None).await?;
        let clients = [fresh.client()?];
        if args.wants("memory") {
            let before = fresh.rss_mb()?;
            let elapsed = enqueue_bulk(&clients, "bench-memory", args.queued, args.batch).await?;
            emit(
                "memory",
                json!({
                    "queued": args.queued, "rss_mb_before": before, "rss_mb": fresh.rss_mb()?,
                    "enqueue_bulk_jobs_per_s": per_s(args.queued, elapsed),
                }),
            );
        }
        if args.wants("idle") {
            let before = fresh.cpu_seconds()?;
            let started = Instant::now();
            tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
            let used = fresh.cpu_seconds()? - before;
            emit(
                "idle_cpu",
                json!({
                    "secs": args.idle_secs,
                    "cpu_percent_of_one_core": (used / started.elapsed().as_secs_f64() * 1000.0).round() / 10.0,
                    "rss_mb": fresh.rss_mb()?,
                }),
            );
        }
        fresh.stop().await?;
    }
    Ok(())
}

fn with(mut fields: Value, more: Value) -> Value {
    if let (Some(fields), Some(more)) = (fields.as_object_mut(), more.as_object()) {
        fields.extend(more.clone());
    }
    fields
}
