//! The dashboard at scale: the first paint of every page with 1,000,000
//! jobs and 100,000 runs in the embedded store, measured in headless
//! Chromium (its `first-contentful-paint`, from the navigation's start:
//! the server's answer included). Ignored in the suite — filling the store
//! takes a minute or two of a release build — and run by
//! `scripts/ui-first-paint`, which writes the table for
//! `docs/benchmarks.md`. `KEEL_UI_JOBS` and `KEEL_UI_RUNS` change the sizes.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed check")]

mod common;

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use common::Server;
use common::browser::Browser;
use serde_json::{Value, json};

/// The bound every page's first paint must stay under.
const BUDGET_MS: f64 = 500.0;
/// Calls in flight while filling the store.
const IN_FLIGHT: usize = 8;

fn size(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `calls` calls of `call`, `IN_FLIGHT` at a time.
async fn fan_out<F, Fut>(calls: usize, call: F)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let call = Arc::new(call);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..IN_FLIGHT {
        let (call, next) = (call.clone(), next.clone());
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= calls {
                    return;
                }
                call(i).await;
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done.unwrap();
    }
}

async fn post(http: &reqwest::Client, url: String, body: Value) -> Value {
    let res = http.post(&url).json(&body).send().await.unwrap();
    let status = res.status();
    let body: Value = res.json().await.unwrap_or_default();
    assert!(status.is_success(), "{url}: {status} {body}");
    body
}

#[tokio::test]
#[ignore = "a long scenario: scripts/ui-first-paint runs it in a release build"]
async fn every_page_paints_within_500_ms_with_a_million_jobs_and_100k_runs() {
    let (jobs, runs) = (
        size("KEEL_UI_JOBS", 1_000_000),
        size("KEEL_UI_RUNS", 100_000),
    );
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir, &[]).await;
    let v1 = format!("{}/v1/namespaces/default", s.url);
    let http = reqwest::Client::new();
    let started = std::time::Instant::now();

    // Runs: each starts a job on `steps`; a tenth are completed (their
    // runs succeed), a hundredth failed for good (their runs fail).
    let definition = json!({"name": "checkout", "steps": {
        "reserve": {"task": {"queue": "steps"}, "retry": {"max_attempts": 1}},
        "charge": {"needs": ["reserve"], "task": {"queue": "charges"}},
    }});
    let res = http
        .put(format!("{v1}/workflows/checkout"))
        .json(&definition)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    let (h, v) = (http.clone(), v1.clone());
    fan_out(runs, move |i| {
        let (h, v) = (h.clone(), v.clone());
        async move {
            post(
                &h,
                format!("{v}/workflows/checkout/runs"),
                json!({"input": {"order": i}}),
            )
            .await;
        }
    })
    .await;
    // Plain jobs on four queues, a thousand a call, with a payload field
    // and a tag to search by.
    let plain = jobs.saturating_sub(runs);
    let batches = plain.div_ceil(1000);
    let (h, v) = (http.clone(), v1.clone());
    fan_out(batches, move |b| {
        let (h, v) = (h.clone(), v.clone());
        async move {
            let queue = ["emails", "billing", "imports", "reports"][b % 4];
            let n = 1000.min(plain - b * 1000);
            let batch: Vec<Value> = (0..n)
                .map(|k| {
                    let i = b * 1000 + k;
                    json!({"payload": {"customer": i % 5000, "n": i},
                           "tags": {"tenant": format!("t{}", i % 10)}, "max_attempts": 1})
                })
                .collect();
            post(
                &h,
                format!("{v}/queues/{queue}/jobs"),
                json!({"jobs": batch}),
            )
            .await;
        }
    })
    .await;
    // Work some of it: complete steps (their runs go on), fail some jobs
    // for good (dead, and failed runs).
    for (queue, verb, calls) in [
        ("steps", "complete", runs / 10 / 1000),
        ("steps", "fail", 1),
        ("billing", "fail", 1),
    ] {
        for _ in 0..calls.max(1) {
            let leased = post(
                &http,
                format!("{v1}/queues/{queue}/lease"),
                json!({"worker_id": "seed", "max_jobs": 1000, "wait_ms": 0}),
            )
            .await;
            let items: Vec<Value> = leased["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| match verb {
                    "complete" => {
                        json!({"id": j["id"], "lease_token": j["lease_token"], "result": {}})
                    }
                    _ => json!({"id": j["id"], "lease_token": j["lease_token"], "error": "seeded"}),
                })
                .collect();
            let acked = post(&http, format!("{v1}/acks"), json!({ verb: items })).await;
            assert!(
                acked[verb]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|a| a["status"] == 200),
                "{acked}"
            );
        }
    }
    let seeded = started.elapsed();

    // One of each page, by what it shows.
    let page = post(
        &http,
        format!("{v1}/queues/billing/lease"),
        json!({"worker_id": "seed", "max_jobs": 1, "wait_ms": 0}),
    )
    .await;
    let job = page["jobs"][0]["id"].as_str().unwrap().to_owned();
    // A failed run: the engine fails runs as their jobs die, after the ack.
    let mut run = None;
    for _ in 0..500 {
        let failed: Value = http
            .get(format!("{v1}/runs?status=failed&limit=1"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        run = failed["runs"][0]["id"].as_str().map(str::to_owned);
        if run.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let run = run.expect("a run failed");
    let pages = [
        ("overview", "/ui?ns=default".to_owned()),
        ("jobs, newest", "/ui/jobs?ns=default".to_owned()),
        (
            "jobs of a queue and state",
            "/ui/jobs?ns=default&queue=billing&state=dead".to_owned(),
        ),
        (
            "jobs by tag",
            "/ui/jobs?ns=default&tag=tenant%3At3".to_owned(),
        ),
        (
            "jobs by payload field (bounded scan)",
            "/ui/jobs?ns=default&queue=emails&q=payload.customer+%3D+42".to_owned(),
        ),
        ("a job", format!("/ui/jobs/{job}?ns=default")),
        (
            "bulk redrive, counted",
            "/ui/jobs/bulk?ns=default&action=redrive&queue=billing&state=dead".to_owned(),
        ),
        ("workflows", "/ui/workflows?ns=default".to_owned()),
        ("a workflow", "/ui/workflows/checkout?ns=default".to_owned()),
        ("runs, newest", "/ui/runs?ns=default".to_owned()),
        (
            "runs that failed",
            "/ui/runs?ns=default&status=failed".to_owned(),
        ),
        ("a run", format!("/ui/runs/{run}?ns=default")),
        ("schedules", "/ui/schedules?ns=default".to_owned()),
        ("endpoints", "/ui/endpoints?ns=default".to_owned()),
        ("audit log", "/ui/audit?ns=default".to_owned()),
    ];
    let browser = Browser::start().await;
    let mut table = format!(
        "First paint of each dashboard page, headless Chromium, embedded store with {jobs} jobs \
         and {runs} runs (filled in {:.0} s); each page loaded three times, the slowest shown.\n\n\
         | Page | First paint (ms) |\n|---|---:|\n",
        seeded.as_secs_f64()
    );
    let mut slow = Vec::new();
    for (name, path) in &pages {
        let mut worst = 0f64;
        for _ in 0..3 {
            browser.goto(&format!("{}{path}", s.url)).await;
            let paint = first_paint(&browser).await;
            worst = worst.max(paint);
        }
        writeln!(table, "| {name} | {worst:.0} |").unwrap();
        if worst > BUDGET_MS {
            slow.push(format!("{name}: {worst:.0} ms"));
        }
    }
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    browser.close().await;
    println!("{table}");
    let out =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/ui-first-paint.md");
    std::fs::write(&out, &table).unwrap();
    assert!(slow.is_empty(), "over {BUDGET_MS} ms: {slow:?}\n{table}");
}

/// The page's first contentful paint, in ms from the navigation's start.
async fn first_paint(browser: &Browser) -> f64 {
    for _ in 0..100 {
        let paint = browser
            .eval(
                "const p = performance.getEntriesByName('first-contentful-paint')[0];\
                 return p ? p.startTime : null;",
            )
            .await;
        if let Some(ms) = paint.as_f64() {
            return ms;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the page never painted");
}
