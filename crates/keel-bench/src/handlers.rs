//! The handler phases (issue 37). In this process, the sandbox alone: a
//! trivial WebAssembly handler and a trivial JavaScript one called one
//! after another on one task (each call a fresh instance), and how far
//! past its CPU limit a runaway loop runs. Through the server: a
//! JavaScript handler that reads and writes one state key per job (jobs
//! spread over 1,000 objects), one that writes ten keys, jobs of one
//! object (run one at a time), state reads over the API, and 10 million
//! events an hour through a subscription into a handler.

use std::time::{Duration, Instant};

use anyhow::Context;
use keel_client::{Client, HandlerRequest, JobSpec, ObjectRef};
use keel_core::JobState;
use keel_sandbox::{Caps, HandlerLimits, Host, Op, Sandbox};
use serde_json::{Value, json};

use crate::server::{BenchServer, CpuMeter};
use crate::{BenchArgs, NS, emit, per_s, percentile, with};

/// Objects the jobs of the spread phases go to.
const OBJECTS: usize = 1000;

/// The handler phases `args` names, in order.
pub(crate) async fn phases(
    args: &BenchArgs,
    servers: &[BenchServer],
    client: &Client,
) -> anyhow::Result<()> {
    let named = |phase: &str| args.phases.iter().any(|p| p == phase);
    if named("handler_sandbox") {
        emit(
            "handler_sandbox(wasm, instantiate + call)",
            sandbox_wasm(20_000).await?,
        );
        emit(
            "handler_sandbox(js, cold: instantiate + load + call)",
            sandbox_js(2_000).await?,
        );
        emit("handler_sandbox(runaway loop, cpu_ms 50)", runaway().await?);
    }
    // State reads first: "one at a time" is a read's own latency on a
    // server with nothing else to do (measured after the job phases, its
    // p99 was 2.4 ms, against 0.3 ms alone).
    if named("state_get") {
        emit(
            "state_get(API, one at a time)",
            state_get(client, 5_000, 1).await?,
        );
        emit(
            "state_get(API, 64 at once)",
            state_get(client, 20_000, 64).await?,
        );
    }
    let n = args.n;
    if named("handler_jobs") {
        let report = jobs(servers, client, "bench-h1", ONE_KEY, n, OBJECTS).await?;
        emit(
            "handler_jobs(js, 1 state read + 1 write, 1,000 objects)",
            report,
        );
    }
    if named("handler_writes10") {
        let report = jobs(servers, client, "bench-h10", TEN_KEYS, n, OBJECTS).await?;
        emit("handler_writes10(js, 10 state writes a job)", report);
    }
    if named("handler_one_object") {
        let report = jobs(servers, client, "bench-h1obj", ONE_KEY, n / 10, 1).await?;
        emit("handler_one_object(js, one object: one at a time)", report);
    }
    if named("handler_10m_per_hour") {
        let report = paced(servers, client, 2778, args.hour_secs).await?;
        emit(
            "handler_10m_per_hour(events -> subscription -> js, 1 key)",
            report,
        );
    }
    Ok(())
}

const ONE_KEY: &str = r#"
export default async function (job, ctx) {
    const n = ((await ctx.state.get("count")) ?? 0) + 1;
    await ctx.state.put("count", n);
    return n;
}"#;

const TEN_KEYS: &str = r#"
export default async function (job, ctx) {
    for (let i = 0; i < 10; i++) await ctx.state.put("k" + i, { i, at: job.id });
    return 10;
}"#;

/// A host that answers nothing but the clock.
struct NoHost;

#[async_trait::async_trait]
impl Host for NoHost {
    async fn call(&mut self, _op: Op, _request: &[u8]) -> Result<Value, String> {
        Ok(Value::Null)
    }

    fn now_ms(&self) -> i64 {
        0
    }
}

fn sandbox() -> anyhow::Result<Sandbox> {
    Sandbox::new(Caps::default()).map_err(|e| anyhow::anyhow!(e.0))
}

/// Calls `handler` `n` times in a row: p50 and p99 in µs, calls a second
/// on this one task (one core).
async fn sequential(
    sandbox: &Sandbox,
    handler: &keel_sandbox::Prepared,
    n: usize,
) -> anyhow::Result<Value> {
    let input = br#"{"id":"j","payload":{"n":1},"attempt":1,"object":null}"#;
    for _ in 0..n / 10 {
        let warm = sandbox
            .invoke(handler, input, HandlerLimits::default(), Box::new(NoHost))
            .await;
        warm.outcome
            .map_err(|e| anyhow::anyhow!(e.message().to_owned()))?;
    }
    let mut micros = Vec::with_capacity(n);
    let started = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        let done = sandbox
            .invoke(handler, input, HandlerLimits::default(), Box::new(NoHost))
            .await;
        micros.push(t.elapsed().as_secs_f64() * 1e6);
        done.outcome
            .map_err(|e| anyhow::anyhow!(e.message().to_owned()))?;
    }
    let elapsed = started.elapsed();
    micros.sort_by(f64::total_cmp);
    Ok(json!({
        "n": n,
        "p50_us": percentile(&micros, 50.0),
        "p99_us": percentile(&micros, 99.0),
        "calls_per_s_one_core": per_s(n, elapsed),
    }))
}

async fn sandbox_wasm(n: usize) -> anyhow::Result<Value> {
    let wasm = wat::parse_str(
        r#"(module
            (memory (export "memory") 1)
            (global $heap (mut i32) (i32.const 1024))
            (func (export "keel_alloc") (param $n i32) (result i32)
                (local $at i32)
                (local.set $at (global.get $heap))
                (global.set $heap (i32.add (global.get $heap) (local.get $n)))
                (local.get $at))
            (data (i32.const 16) "R{\"ok\":true}")
            (func (export "keel_handle") (param i32 i32) (result i64)
                (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 12))))"#,
    )?;
    let sandbox = sandbox()?;
    let handler = sandbox
        .prepare_wasm(&wasm)
        .map_err(|e| anyhow::anyhow!(e.0))?;
    sequential(&sandbox, &handler, n).await
}

async fn sandbox_js(n: usize) -> anyhow::Result<Value> {
    let sandbox = sandbox()?;
    let started = Instant::now();
    sandbox.warm_js().await.map_err(|e| anyhow::anyhow!(e.0))?;
    let engine_compile_ms = started.elapsed().as_millis() as u64;
    let code = sandbox
        .compile_js("export default (job) => job.payload.n + 1;")
        .await
        .map_err(|e| anyhow::anyhow!(e.0))?;
    let handler = sandbox
        .prepare_js(&code)
        .await
        .map_err(|e| anyhow::anyhow!(e.0))?;
    let report = sequential(&sandbox, &handler, n).await?;
    Ok(with(
        report,
        json!({ "engine_compile_ms": engine_compile_ms }),
    ))
}

/// A `for (;;)` with `cpu_ms` 50, ten times: how long it ran past 50 ms.
async fn runaway() -> anyhow::Result<Value> {
    let sandbox = sandbox()?;
    let code = sandbox
        .compile_js("export default () => { for (;;) {} };")
        .await
        .map_err(|e| anyhow::anyhow!(e.0))?;
    let handler = sandbox
        .prepare_js(&code)
        .await
        .map_err(|e| anyhow::anyhow!(e.0))?;
    let limits = HandlerLimits {
        cpu_ms: 50,
        ..HandlerLimits::default()
    };
    let mut cpu = Vec::new();
    for _ in 0..10 {
        let done = sandbox
            .invoke(&handler, b"{}", limits, Box::new(NoHost))
            .await;
        anyhow::ensure!(done.outcome.is_err(), "a runaway loop returned");
        cpu.push(done.cpu.as_secs_f64() * 1000.0);
    }
    cpu.sort_by(f64::total_cmp);
    Ok(json!({
        "limit_ms": 50,
        "stopped_after_ms_p50": percentile(&cpu, 50.0),
        "stopped_after_ms_max": percentile(&cpu, 100.0),
    }))
}

async fn put_handler(client: &Client, name: &str, js: &str) -> anyhow::Result<()> {
    let request: HandlerRequest = serde_json::from_value(json!({ "js": js }))?;
    client.put_handler(NS, name, &request).await?;
    Ok(())
}

/// `n` jobs over `objects` objects on a queue run by `js`: enqueued in
/// batches of 1,000 first, then drained by the handler runner.
async fn jobs(
    servers: &[BenchServer],
    client: &Client,
    queue: &str,
    js: &str,
    n: usize,
    objects: usize,
) -> anyhow::Result<Value> {
    put_handler(client, queue, js).await?;
    let policy: keel_core::QueuePolicy = serde_json::from_value(json!({ "handler": queue }))?;
    client.put_queue_policy(NS, queue, &policy).await?;
    client.set_paused(NS, queue, true).await?;
    for from in (0..n).step_by(1000) {
        let batch: Vec<JobSpec> = (from..(from + 1000).min(n))
            .map(|i| JobSpec {
                object: Some(ObjectRef {
                    kind: "bench".into(),
                    key: format!("o{}", i % objects),
                }),
                ..JobSpec::new(json!({ "i": i }))
            })
            .collect();
        client.enqueue_many(NS, queue, &batch).await?;
    }
    let cpu = CpuMeter::start(servers)?;
    let started = Instant::now();
    client.set_paused(NS, queue, false).await?;
    loop {
        let stats = client.queue_stats(NS, queue).await?;
        let done = stats.count(JobState::Succeeded) + stats.count(JobState::Dead);
        if done >= n as u64 {
            anyhow::ensure!(stats.count(JobState::Dead) == 0, "handler jobs died");
            break;
        }
        anyhow::ensure!(
            started.elapsed() < crate::PHASE_TIMEOUT,
            "{queue}: {done} of {n} done"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    let fields = json!({ "n": n, "objects": objects, "jobs_per_s": per_s(n, elapsed), "secs": elapsed.as_secs_f64() });
    Ok(with(fields, cpu.report(servers)?))
}

/// `n` reads of existing keys, `at_once` at a time: p50 and p99 in ms
/// (one at a time: a read's own latency; 64: the rate a loaded server
/// keeps).
async fn state_get(client: &Client, n: usize, at_once: usize) -> anyhow::Result<Value> {
    let object = ObjectRef {
        kind: "bench-read".into(),
        key: "o".into(),
    };
    for k in 0..100 {
        client
            .put_state(
                NS,
                &object,
                &format!("k{k}"),
                json!({ "k": k, "pad": "x".repeat(200) }),
                None,
            )
            .await?;
    }
    let latencies = std::sync::Arc::new(std::sync::Mutex::new(Vec::with_capacity(n)));
    let (object, seen) = (std::sync::Arc::new(object), latencies.clone());
    let elapsed = crate::one_by_one(
        std::slice::from_ref(client),
        n,
        at_once,
        move |client, i| {
            let (object, seen) = (object.clone(), seen.clone());
            async move {
                let t = Instant::now();
                client
                    .get_state(NS, &object, &format!("k{}", i % 100))
                    .await?;
                seen.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(t.elapsed().as_secs_f64() * 1000.0);
                Ok(())
            }
        },
    )
    .await?;
    let mut ms = std::mem::take(
        &mut *latencies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    ms.sort_by(f64::total_cmp);
    Ok(json!({
        "n": n,
        "reads_per_s": per_s(n, elapsed),
        "p50_ms": percentile(&ms, 50.0),
        "p99_ms": percentile(&ms, 99.0),
    }))
}

/// `rate` events a second for `secs` seconds, each a job of a handler that
/// reads and writes one key of the event's object (1,000 keys): the rate
/// reached, how far behind the handler was at the end, the server's CPU.
async fn paced(
    servers: &[BenchServer],
    client: &Client,
    rate: usize,
    secs: u64,
) -> anyhow::Result<Value> {
    put_handler(client, "bench-paced", ONE_KEY).await?;
    let subscription: keel_client::SubscriptionRequest = serde_json::from_value(json!({
        "topic": "bench-paced", "start": "latest",
        "target": {"handler": "bench-paced", "object": "customer"},
    }))?;
    client
        .put_subscription(NS, "bench-paced", &subscription)
        .await?;
    let queue = "keel.handler.bench-paced";
    let cpu = CpuMeter::start(servers)?;
    let started = Instant::now();
    let tick = Duration::from_millis(100);
    let per_tick = rate / 10;
    let mut sent = 0usize;
    let mut next = tokio::time::Instant::now();
    while started.elapsed() < Duration::from_secs(secs) {
        let events = (0..per_tick)
            .map(|i| {
                serde_json::from_value(json!({
                    "key": format!("c{}", (sent + i) % OBJECTS), "data": {"i": sent + i},
                }))
            })
            .collect::<Result<Vec<_>, _>>()?;
        client.publish_batch(NS, "bench-paced", events).await?;
        sent += per_tick;
        next += tick;
        tokio::time::sleep_until(next).await;
    }
    let published_secs = started.elapsed().as_secs_f64();
    let stats = client
        .queue_stats(NS, queue)
        .await
        .context("the handler's queue")?;
    let behind = stats.count(JobState::Ready) + stats.count(JobState::Leased);
    let done = stats.count(JobState::Succeeded);
    Ok(with(
        json!({
            "events": sent,
            "events_per_s": (sent as f64 / published_secs).round(),
            "handled_per_s": (done as f64 / published_secs).round(),
            "behind_at_end": behind,
            "secs": published_secs,
        }),
        cpu.report(servers)?,
    ))
}
