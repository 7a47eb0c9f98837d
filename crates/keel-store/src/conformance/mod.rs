//! The conformance suite: what every [`Store`] must do, checked the same way on
//! every backend, one module per domain. A backend runs it from a test target
//! with `harness = false` whose `main` calls [`run`] with an opener that makes
//! a fresh, empty store (and can reopen it on the same data, which checks that
//! nothing lives only in memory). Each case is named once, in its module's
//! `cases!` list, and becomes one test of the run (filters work as usual).
//!
//! Time is passed explicitly: the suite moves a fake `now`, never sleeps.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test suite: a panic is a failed check"
)]

mod audit;
mod connections;
mod debounce;
mod endpoints;
mod flow;
mod handlers;
mod jobs;
mod keys;
mod maintenance;
mod monitors;
mod namespaces;
mod notifications;
mod owner;
mod projects;
mod queues;
mod runs;
mod schedules;
mod sequences;
mod slos;
mod sources;
mod subscriptions;
mod tenancy;
mod tokens;
mod topics;
mod trace;
mod waiting;
mod workflows;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use keel_core::workflow::{RunId, RunState, RunStatus, StepRecord};
use keel_core::{
    Backoff, ErrorCode, JobId, JobState, LeaseToken, Limits, Namespace, NewJob, QueueName,
    QueuePolicy, QueueRef, Retry, Timestamp,
};
use serde_json::value::RawValue;

use crate::{
    Ack, AckOutcome, IDEMPOTENCY_WINDOW_MS, JobFilter, JobOwner, LeaseRequest, LeasedJob, NewRun,
    OwnedJob, Published, RedriveSelection, RunFilter, Store,
};

type Reopen = Box<dyn Fn() -> Pin<Box<dyn Future<Output = Arc<dyn Store>> + Send>> + Send + Sync>;

/// A store under test: `reopen` closes nothing itself; call [`Store::close`] on
/// the old handle first, as a restarted process would have.
pub struct Harness {
    pub store: Arc<dyn Store>,
    pub reopen: Reopen,
    /// Keeps temporary directories or schemas alive for the test's duration.
    pub guard: Box<dyn std::any::Any + Send + Sync>,
    /// Makes the store's storage full (`true`: no room for more than a few
    /// pages beyond what it holds) or gives it room again (`false`), where the
    /// backend can do that in a test; `None` skips the storage-full cases.
    pub fill_storage: Option<FillStorage>,
}

/// See [`Harness::fill_storage`].
pub type FillStorage = Box<dyn Fn(bool) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Makes a fresh store for one case.
pub type Opener = Arc<dyn Fn(Limits) -> Pin<Box<dyn Future<Output = Harness>>> + Send + Sync>;

/// One case of the suite: its name and its body.
struct Case {
    name: &'static str,
    body: fn(Harness) -> Pin<Box<dyn Future<Output = ()>>>,
}

/// Lists a domain module's cases, each named once: `cases![a, b, c];` makes
/// the module's `CASES`.
macro_rules! cases {
    ($($case:ident),* $(,)?) => {
        pub(super) const CASES: &[super::Case] = &[
            $(super::Case { name: stringify!($case), body: |h| Box::pin($case(h)) }),*
        ];
    };
}
use cases;

/// Runs the whole suite, one test per case, with the usual test-runner
/// arguments (filters, `--list`, `--test-threads`), and exits with its verdict.
pub fn run<F, Fut>(open: F) -> !
where
    F: Fn(Limits) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Harness> + 'static,
{
    let open: Opener = Arc::new(move |limits| Box::pin(open(limits)));
    let domains = [
        ("jobs", jobs::CASES),
        ("keys", keys::CASES),
        ("debounce", debounce::CASES),
        ("flow", flow::CASES),
        ("queues", queues::CASES),
        ("maintenance", maintenance::CASES),
        ("owner", owner::CASES),
        ("workflows", workflows::CASES),
        ("runs", runs::CASES),
        ("topics", topics::CASES),
        ("subscriptions", subscriptions::CASES),
        ("sources", sources::CASES),
        ("schedules", schedules::CASES),
        ("endpoints", endpoints::CASES),
        ("waiting", waiting::CASES),
        ("tenancy", tenancy::CASES),
        ("tokens", tokens::CASES),
        ("audit", audit::CASES),
        ("namespaces", namespaces::CASES),
        ("notifications", notifications::CASES),
        ("monitors", monitors::CASES),
        ("handlers", handlers::CASES),
        ("projects", projects::CASES),
        ("connections", connections::CASES),
        ("slos", slos::CASES),
        ("trace", trace::CASES),
    ];
    let mut trials = Vec::new();
    for (domain, cases) in domains {
        for case in cases {
            let open = open.clone();
            let body = case.body;
            trials.push(libtest_mimic::Trial::test(
                format!("{domain}::{}", case.name),
                move || {
                    block_on(async move { body(open(limits()).await).await });
                    Ok(())
                },
            ));
        }
    }
    let open_for_sequences = open.clone();
    trials.push(libtest_mimic::Trial::test(
        "jobs::random_operation_sequences_lose_nothing",
        move || {
            sequences::random_operation_sequences_lose_nothing(|| open_for_sequences(limits()));
            Ok(())
        },
    ));
    libtest_mimic::run(&libtest_mimic::Arguments::from_args(), trials).exit()
}

/// Each case runs on a runtime of its own, as `#[tokio::test]` would.
fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// The limits every suite store is opened with: a small namespace bound.
pub fn limits() -> Limits {
    Limits {
        max_namespace_jobs: 20,
        ..Limits::default()
    }
}

pub const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);

fn at(ms: u64) -> Timestamp {
    T0.plus_ms(ms)
}

fn queue(name: &str) -> QueueRef {
    QueueRef {
        namespace: Namespace::new("default").unwrap(),
        queue: QueueName::new(name).unwrap(),
    }
}

fn ns() -> Namespace {
    Namespace::new("default").unwrap()
}

fn raw(json: &str) -> Box<RawValue> {
    RawValue::from_string(json.to_owned()).unwrap()
}

/// A ready job with `payload`, due at `T0`.
fn job(payload: &str) -> NewJob {
    NewJob {
        payload: raw(payload),
        priority: 0,
        run_at: T0,
        max_attempts: 3,
        backoff: Backoff {
            base_ms: 1000,
            max_ms: 60_000,
            factor: 2.0,
            jitter: false,
        },
        lease_ms: 30_000,
        idempotency_key: None,
        ordering_key: None,
        tags: Default::default(),
        debounce_key: None,
        traceparent: None,
    }
}

async fn enqueue(store: &dyn Store, q: &QueueRef, jobs: Vec<NewJob>) -> Vec<JobId> {
    store
        .jobs_enqueue(q, jobs, T0)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect()
}

async fn lease(store: &dyn Store, q: &QueueRef, max_jobs: u32, now: Timestamp) -> Vec<LeasedJob> {
    let req = LeaseRequest {
        queue: q.clone(),
        worker_id: "w1".into(),
        max_jobs,
        lease_ms: None,
    };
    store.jobs_lease(&req, now).await.unwrap()
}

fn payloads(jobs: &[LeasedJob]) -> Vec<&str> {
    jobs.iter().map(|j| j.payload.get()).collect()
}

async fn ack(
    store: &dyn Store,
    token: LeaseToken,
    outcome: AckOutcome,
    now: Timestamp,
) -> Result<JobState, ErrorCode> {
    let mut results = store
        .jobs_ack(&ns(), vec![Ack { token, outcome }], now)
        .await
        .unwrap();
    results.pop().unwrap().map(|a| a.state).map_err(|e| e.code)
}

fn complete() -> AckOutcome {
    AckOutcome::Complete {
        result: Some(raw(r#"{"ok":true}"#)),
    }
}

fn fail(retry: bool) -> AckOutcome {
    AckOutcome::Fail {
        message: "boom".into(),
        retry: Retry {
            retry,
            retry_after_ms: None,
        },
    }
}

/// Whether a notification was already delivered (polls the future once).
async fn futures_ready<F: Future>(fut: Pin<&mut F>) -> bool {
    let mut fut = fut;
    std::future::poll_fn(|cx| std::task::Poll::Ready(fut.as_mut().poll(cx).is_ready())).await
}

/// Asserts the notification has not fired yet and hands the future back.
async fn assert_pending<F: Future>(mut fut: Pin<&mut F>) -> Pin<&mut F> {
    let ready =
        std::future::poll_fn(|cx| std::task::Poll::Ready(fut.as_mut().poll(cx).is_ready())).await;
    assert!(!ready, "woken too early");
    fut
}

/// A step's job of run `run`, under a chosen id, owned by the run's step `a`.
fn owned_job(q: &QueueRef, id: u8, run: RunId) -> OwnedJob {
    let mut job = job(&format!("{id}"));
    job.tags.insert("keel.run".to_owned(), run.to_string());
    OwnedJob {
        queue: q.clone(),
        id: JobId::from_bytes([id; 16]),
        job,
        owner: Some(step_of(run)),
    }
}

/// The owner of [`owned_job`]'s jobs.
fn step_of(run: RunId) -> JobOwner {
    JobOwner::Run {
        run,
        step: "a".to_owned(),
        item: None,
    }
}
