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

mod keyed;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Parser};
use keel_client::{Client, JobSpec, LeasedJob, Run, Worker, WorkerOptions};
use keel_core::{
    Backoff, Clock, LeaseToken, Limits, Namespace, NewJob, QueueName, QueueRef, SystemClock,
};
use keel_store::{Ack, AckOutcome, LeaseRequest, Store};
use keel_store_sqlite::SqliteStore;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{Notify, mpsc};

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
    /// in_process, memory, idle; and, only when named (it is long),
    /// keyed_backlog.
    #[arg(long, value_delimiter = ',', default_value = "all")]
    phases: Vec<String>,
    /// Ready jobs of each keyed_backlog variant (none, 10 and 10,000 keys).
    #[arg(long, default_value_t = 100_000)]
    keyed_n: usize,
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
        }
    }

    fn workflow_handlers(&self) -> Handlers {
        Handlers {
            conc: self.conc,
            prefetch: self.wf_prefetch,
        }
    }
}

/// How each node's worker is sized: handlers, and jobs leased ahead of them.
#[derive(Clone, Copy)]
struct Handlers {
    conc: usize,
    prefetch: usize,
}

fn emit(phase: &str, fields: Value) {
    let system = SYSTEM.get().map_or("keel", String::as_str);
    let mut line = json!({ "system": system, "phase": phase });
    if let (Some(line), Some(fields)) = (line.as_object_mut(), fields.as_object()) {
        line.extend(fields.clone());
    }
    println!("{line}");
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
        .map(|s| Client::new(&s.url))
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
        let clients = [Client::new(&fresh.url)?];
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

/// A schema of its own on the benchmark's PostgreSQL, dropped at the end.
struct BenchSchema {
    base: String,
    name: String,
}

impl BenchSchema {
    async fn create(base: &str) -> anyhow::Result<Self> {
        let name = format!("keel_bench_{}", std::process::id());
        let (client, connection) = tokio_postgres::connect(base, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"
            ))
            .await?;
        Ok(BenchSchema {
            base: base.to_owned(),
            name,
        })
    }

    fn url(&self) -> String {
        let separator = if self.base.contains('?') { '&' } else { '?' };
        format!(
            "{}{separator}options=-c%20search_path%3D{}",
            self.base, self.name
        )
    }

    async fn drop(self) -> anyhow::Result<()> {
        let (client, connection) =
            tokio_postgres::connect(&self.base, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name))
            .await?;
        Ok(())
    }
}

/// A `keel server` child process on a temporary data directory.
struct BenchServer {
    child: tokio::process::Child,
    pid: u32,
    url: String,
    _dir: tempfile::TempDir,
}

impl BenchServer {
    /// A server on a fresh temporary directory, or on `database_url`.
    async fn start(keel: &Path, database_url: Option<String>) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("keel-bench-").tempdir()?;
        let store_args: Vec<std::ffi::OsString> = match database_url {
            Some(url) => vec!["--database-url".into(), url.into()],
            None => vec!["--data-dir".into(), dir.path().into()],
        };
        let mut child = tokio::process::Command::new(keel)
            .args(["server", "--listen", "127.0.0.1:0"])
            .args(store_args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting keel server")?;
        let pid = child.id().context("the server has a pid")?;
        let stdout = child.stdout.take().context("stdout is piped")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = lines
            .next_line()
            .await?
            .context("the server exited before listening")?;
        let url = line
            .strip_prefix("keel listening on ")
            .context("unexpected first line")?
            .to_owned();
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(BenchServer {
            child,
            pid,
            url,
            _dir: dir,
        })
    }

    fn proc_file(&self, name: &str) -> anyhow::Result<String> {
        Ok(std::fs::read_to_string(
            Path::new("/proc").join(self.pid.to_string()).join(name),
        )?)
    }

    fn rss_mb(&self) -> anyhow::Result<f64> {
        let status = self.proc_file("status")?;
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("VmRSS in /proc/PID/status")?;
        Ok((kb / 1024.0 * 10.0).round() / 10.0)
    }

    fn cpu_seconds(&self) -> anyhow::Result<f64> {
        cpu_seconds(&self.pid.to_string())
    }

    async fn stop(mut self) -> anyhow::Result<()> {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()?;
        if !status.success() {
            bail!("cannot signal the server");
        }
        let exit = self.child.wait().await?;
        if !exit.success() {
            bail!("the server exited with {exit}");
        }
        Ok(())
    }
}

/// User plus system CPU time of a process (`self` or a pid), from Linux's
/// clock ticks of 10 ms.
fn cpu_seconds(pid: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("/proc/PID/stat")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    Ok((ticks(11) + ticks(12)) / 100.0)
}

/// CPU seconds the server, this benchmark process and the whole machine (the
/// database and anything else included) spent during a phase.
struct CpuMeter {
    server: f64,
    client: f64,
    machine: f64,
}

fn servers_cpu(servers: &[BenchServer]) -> anyhow::Result<f64> {
    servers.iter().map(BenchServer::cpu_seconds).sum()
}

/// Busy CPU seconds of the whole machine since boot: every CPU's time in
/// `/proc/stat` but idle and iowait (guest time is already inside user).
fn machine_cpu_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .context("/proc/stat")?
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|f| f.parse().ok())
        .collect();
    let idle = ticks.get(3).copied().unwrap_or(0.0) + ticks.get(4).copied().unwrap_or(0.0);
    Ok((ticks.iter().sum::<f64>() - idle) / 100.0)
}

impl CpuMeter {
    fn start(servers: &[BenchServer]) -> anyhow::Result<Self> {
        Ok(CpuMeter {
            server: servers_cpu(servers)?,
            client: cpu_seconds("self")?,
            machine: machine_cpu_seconds()?,
        })
    }

    /// `{"server_cpu_s","client_cpu_s","machine_cpu_s"}` since `start`, all
    /// nodes together.
    fn report(&self, servers: &[BenchServer]) -> anyhow::Result<Value> {
        let round = |s: f64| (s * 100.0).round() / 100.0;
        Ok(json!({
            "server_cpu_s": round(servers_cpu(servers)? - self.server),
            "client_cpu_s": round(cpu_seconds("self")? - self.client),
            "machine_cpu_s": round(machine_cpu_seconds()? - self.machine),
        }))
    }
}

fn with(mut fields: Value, more: Value) -> Value {
    if let (Some(fields), Some(more)) = (fields.as_object_mut(), more.as_object()) {
        fields.extend(more.clone());
    }
    fields
}

async fn enqueue_single(
    clients: &[Client],
    queue: &str,
    n: usize,
    conc: usize,
) -> anyhow::Result<Duration> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut producers = tokio::task::JoinSet::new();
    for p in 0..conc.min(n) {
        let (client, next, queue) = (
            clients[p % clients.len()].clone(),
            next.clone(),
            queue.to_owned(),
        );
        producers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, keel_client::ClientError>(());
                }
                client
                    .enqueue(NS, &queue, &JobSpec::new(json!({ "i": i })))
                    .await?;
            }
        });
    }
    while let Some(done) = producers.join_next().await {
        done??;
    }
    Ok(started.elapsed())
}

async fn enqueue_bulk(
    clients: &[Client],
    queue: &str,
    n: usize,
    batch: usize,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    for (k, from) in (0..n).step_by(batch.max(1)).enumerate() {
        let jobs: Vec<JobSpec> = (from..(from + batch).min(n))
            .map(|i| JobSpec::new(json!({ "i": i })))
            .collect();
        clients[k % clients.len()]
            .enqueue_many(NS, queue, &jobs)
            .await?;
    }
    Ok(started.elapsed())
}

/// A worker whose no-op handler counts its starts and, for jobs carrying a
/// `t0`, records start minus `t0` in ms.
struct CountingWorker {
    reached: Arc<Notify>,
    latencies: Arc<Mutex<Vec<f64>>>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl CountingWorker {
    /// One worker per client (node), all counting into one total.
    fn start(
        clients: &[Client],
        queue: &str,
        handlers: Handlers,
        target: usize,
        origin: Instant,
    ) -> Self {
        let hits = Arc::new(AtomicUsize::new(0));
        let reached = Arc::new(Notify::new());
        let latencies = Arc::new(Mutex::new(Vec::with_capacity(target)));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let tasks = clients
            .iter()
            .map(|client| {
                let (h, r, l) = (hits.clone(), reached.clone(), latencies.clone());
                let handler = move |job: LeasedJob| {
                    if let Some(t0) = job.payload["t0"].as_f64() {
                        let ms = origin.elapsed().as_secs_f64() * 1000.0 - t0;
                        l.lock().unwrap_or_else(PoisonError::into_inner).push(ms);
                    }
                    if h.fetch_add(1, Ordering::SeqCst) + 1 == target {
                        r.notify_one();
                    }
                    async { Ok(Value::Null) }
                };
                let mut options = WorkerOptions::new(NS, queue);
                options.concurrency = handlers.conc;
                options.prefetch = handlers.prefetch;
                let room = (handlers.conc + handlers.prefetch) as u32;
                options.max_batch = room.min(Limits::default().max_lease_jobs);
                options.wait_ms = 1000;
                let worker = Worker::new(client.clone(), options);
                let mut stopped = stopped.clone();
                tokio::spawn(async move {
                    let shutdown = async move {
                        let _ = stopped.wait_for(|stop| *stop).await;
                    };
                    worker.run(handler, shutdown).await;
                })
            })
            .collect();
        CountingWorker {
            reached,
            latencies,
            stop,
            tasks,
        }
    }

    async fn wait(&self) -> anyhow::Result<()> {
        tokio::time::timeout(PHASE_TIMEOUT, self.reached.notified())
            .await
            .context("the worker did not drain in time")
    }

    async fn shut_down(self) -> anyhow::Result<Vec<f64>> {
        let _ = self.stop.send(true);
        for task in self.tasks {
            task.await?;
        }
        Ok(std::mem::take(
            &mut *self
                .latencies
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        ))
    }
}

/// Drains `n` jobs; returns the time and the CPU spent until the last one
/// started (not counting the worker's shutdown).
async fn drain(
    servers: &[BenchServer],
    clients: &[Client],
    queue: &str,
    n: usize,
    handlers: Handlers,
    origin: Instant,
) -> anyhow::Result<(Duration, Value)> {
    let cpu = CpuMeter::start(servers)?;
    let started = Instant::now();
    let worker = CountingWorker::start(clients, queue, handlers, n, origin);
    worker.wait().await?;
    let elapsed = started.elapsed();
    let cpu = cpu.report(servers)?;
    worker.shut_down().await?;
    Ok((elapsed, cpu))
}

/// Open-loop: enqueues are fired on schedule whether or not earlier ones have
/// returned, so a slow server shows up as latency, not as a slower producer.
/// Enqueue requests in flight at most in a paced phase.
const MAX_PACED_IN_FLIGHT: usize = 512;

async fn latency(
    clients: &[Client],
    phase: &str,
    rate: u64,
    secs: u64,
    handlers: Handlers,
    origin: Instant,
) -> anyhow::Result<Value> {
    let total = (rate * secs) as usize;
    let queue = format!("bench-{phase}");
    let worker = CountingWorker::start(clients, &queue, handlers, total, origin);
    let started = tokio::time::Instant::now();
    let mut producers = tokio::task::JoinSet::new();
    // Requests in flight are bounded (an overloaded server must not make the
    // client run out of sockets); a job's time counts from when it was due,
    // so waiting for a slot shows in its latency.
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_PACED_IN_FLIGHT));
    for i in 0..total {
        let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
        if due > tokio::time::Instant::now() + Duration::from_millis(1) {
            tokio::time::sleep_until(due).await;
        }
        let t0 = due
            .into_std()
            .saturating_duration_since(origin)
            .as_secs_f64()
            * 1000.0;
        let slot = in_flight.clone().acquire_owned().await?;
        let (client, queue) = (clients[i % clients.len()].clone(), queue.clone());
        producers.spawn(async move {
            let sent = client
                .enqueue(NS, &queue, &JobSpec::new(json!({ "t0": t0 })))
                .await;
            drop(slot);
            sent
        });
        while producers.try_join_next().is_some() {}
    }
    while let Some(done) = producers.join_next().await {
        done??;
    }
    worker.wait().await?;
    let mut lats = worker.shut_down().await?;
    lats.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        let i = ((p / 100.0) * lats.len() as f64) as usize;
        (lats
            .get(i.min(lats.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
            * 100.0)
            .round()
            / 100.0
    };
    Ok(json!({
        "rate": rate, "secs": secs, "n": lats.len(),
        "p50_ms": pct(50.0), "p90_ms": pct(90.0), "p99_ms": pct(99.0), "max_ms": pct(100.0),
    }))
}

/// Runs of a 3-step workflow whose steps are task jobs for no-op workers:
/// started `conc` at a time (or paced at `rate` per second), timed (and the
/// servers' CPU counted) until no run is running. Each run's start→finish
/// time comes from the server's own `created_at` and `updated_at`.
async fn workflow_runs(
    servers: &[BenchServer],
    clients: &[Client],
    name: &str,
    n: usize,
    handlers: Handlers,
    rate: Option<u64>,
) -> anyhow::Result<Value> {
    let conc = handlers.conc;
    let steps = ["a", "b", "c"];
    let mut yaml = format!("name: {name}\nsteps:\n");
    for (i, step) in steps.iter().enumerate() {
        let needs = if i == 0 {
            String::new()
        } else {
            format!("needs: [{}], ", steps[i - 1])
        };
        yaml.push_str(&format!(
            "  {step}: {{ {needs}task: {{ queue: {name}, input: {{ step: {i} }} }} }}\n"
        ));
    }
    clients[0].put_workflow(NS, name, &yaml, true).await?;
    let cpu = CpuMeter::start(servers)?;
    let worker = CountingWorker::start(clients, name, handlers, n * steps.len(), Instant::now());
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut producers = tokio::task::JoinSet::new();
    match rate {
        None => {
            for p in 0..conc.min(n) {
                let (client, next, name) = (
                    clients[p % clients.len()].clone(),
                    next.clone(),
                    name.to_owned(),
                );
                producers.spawn(async move {
                    while next.fetch_add(1, Ordering::Relaxed) < n {
                        client.start_run(NS, &name, &json!({}), None).await?;
                    }
                    Ok::<_, keel_client::ClientError>(())
                });
            }
        }
        Some(rate) => {
            let paced = tokio::time::Instant::now();
            for i in 0..n {
                let due = paced + Duration::from_secs_f64(i as f64 / rate as f64);
                tokio::time::sleep_until(due).await;
                let (client, name) = (clients[i % clients.len()].clone(), name.to_owned());
                producers.spawn(async move {
                    client
                        .start_run(NS, &name, &json!({}), None)
                        .await
                        .map(|_| ())
                });
                while producers.try_join_next().is_some() {}
            }
        }
    }
    while let Some(done) = producers.join_next().await {
        done??;
    }
    worker.wait().await?;
    tokio::time::timeout(PHASE_TIMEOUT, none_running(&clients[0], name))
        .await
        .context("runs did not finish in time")??;
    let elapsed = started.elapsed();
    let cpu = cpu.report(servers)?;
    let runs = all_succeeded(&clients[0], name, n).await?;
    worker.shut_down().await?;
    let mut lats: Vec<f64> = runs
        .iter()
        .map(|run| run.updated_at.millis_since(run.created_at) as f64)
        .collect();
    lats.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        lats.get(((p / 100.0) * lats.len() as f64) as usize)
            .or(lats.last())
            .copied()
    };
    let report = json!({
        "runs": n, "steps_per_run": steps.len(), "rate": rate,
        "handlers": handlers.conc, "prefetch": handlers.prefetch,
        "runs_per_s": per_s(n, elapsed), "secs": elapsed.as_secs_f64(),
        "p50_ms": pct(50.0), "p99_ms": pct(99.0), "max_ms": pct(100.0),
    });
    Ok(if rate.is_none() {
        with(report, cpu)
    } else {
        report
    })
}

/// Waits until no run of `workflow` is running (a cheap question, asked often).
async fn none_running(client: &Client, workflow: &str) -> anyhow::Result<()> {
    loop {
        let running = client
            .list_runs(NS, Some(workflow), Some("running"), 1, None)
            .await?;
        if running.runs.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The `n` succeeded runs of `workflow`, once none is running.
async fn all_succeeded(client: &Client, workflow: &str, n: usize) -> anyhow::Result<Vec<Run>> {
    let mut runs = Vec::with_capacity(n);
    let mut cursor: Option<String> = None;
    loop {
        let page = client
            .list_runs(
                NS,
                Some(workflow),
                Some("succeeded"),
                1000,
                cursor.as_deref(),
            )
            .await?;
        runs.extend(page.runs);
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    anyhow::ensure!(
        runs.len() == n,
        "{} of {n} runs of {workflow} succeeded",
        runs.len()
    );
    Ok(runs)
}

/// The same bulk enqueue and drain straight on the store: what HTTP costs.
async fn in_process(n: usize, conc: usize, batch: usize) -> anyhow::Result<(Duration, Duration)> {
    let dir = tempfile::Builder::new()
        .prefix("keel-bench-inproc-")
        .tempdir()?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path(), &Limits::default())?);
    let clock = SystemClock;
    let queue = QueueRef {
        namespace: Namespace::new(NS)?,
        queue: QueueName::new("inproc")?,
    };
    let started = Instant::now();
    for from in (0..n).step_by(batch.max(1)) {
        let now = clock.now();
        let jobs = (from..(from + batch).min(n))
            .map(|i| {
                Ok(NewJob {
                    payload: serde_json::value::RawValue::from_string(format!("{{\"i\":{i}}}"))?,
                    priority: 0,
                    run_at: now,
                    max_attempts: 20,
                    backoff: Backoff::default(),
                    lease_ms: 30_000,
                    idempotency_key: None,
                    ordering_key: None,
                    tags: Default::default(),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        store.jobs_enqueue(&queue, jobs, now).await?;
    }
    let enqueue = started.elapsed();

    // One leaser and one acker, as the SDK's worker runs.
    let started = Instant::now();
    let (acks, mut ack_queue) = mpsc::unbounded_channel::<Vec<LeaseToken>>();
    let acker = {
        let (store, ns) = (store.clone(), queue.namespace.clone());
        tokio::spawn(async move {
            while let Some(mut tokens) = ack_queue.recv().await {
                while let Ok(more) = ack_queue.try_recv() {
                    tokens.extend(more);
                }
                let acks = tokens.into_iter().map(|token| Ack {
                    token,
                    outcome: AckOutcome::Complete { result: None },
                });
                store
                    .jobs_ack(&ns, acks.collect(), SystemClock.now())
                    .await?;
            }
            Ok::<_, keel_core::Error>(())
        })
    };
    let req = LeaseRequest {
        queue,
        worker_id: "bench".into(),
        max_jobs: conc as u32,
        lease_ms: None,
    };
    let mut leased = 0;
    while leased < n {
        let jobs = store.jobs_lease(&req, clock.now()).await?;
        if jobs.is_empty() {
            bail!("the in-process queue ran dry after {leased} of {n} jobs");
        }
        leased += jobs.len();
        let _ = acks.send(jobs.into_iter().map(|j| j.lease_token).collect());
    }
    drop(acks);
    acker.await??;
    let drain = started.elapsed();
    store.close().await;
    Ok((enqueue, drain))
}
