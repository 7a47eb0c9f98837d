//! Prometheus metrics, all prefixed `keel_`. Counters are recorded where the
//! outcome is known; queue depth gauges are read from the store at scrape time.

use std::sync::OnceLock;

use keel_core::QueueRef;
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::queues::QueueService;
use crate::subscriptions::SubscriptionService;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
];
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// How often histogram samples are folded into their buckets.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Installs the process-wide recorder once; later calls reuse it.
///
/// The recorder keeps every histogram sample until an upkeep folds it into
/// the buckets, and only a scrape would run one: a server nobody scraped
/// grew by every request's samples (about 80 bytes a job, found by the
/// chaos soak). A thread of its own runs the upkeep.
fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_batch_size".into()), BATCH_BUCKETS)
                })
                .map(|b| b.build_recorder());
            match recorder {
                Ok(recorder) => {
                    let handle = recorder.handle();
                    metrics::set_global_recorder(recorder).ok()?;
                    let upkeep = handle.clone();
                    let started = std::thread::Builder::new()
                        .name("keel-metrics".into())
                        .spawn(move || {
                            loop {
                                std::thread::sleep(UPKEEP_EVERY);
                                upkeep.run_upkeep();
                            }
                        });
                    if let Err(e) = started {
                        tracing::warn!(error = %e, "cannot start the metrics upkeep; histograms grow until scraped");
                    }
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics disabled");
                    None
                }
            }
        })
        .as_ref()
}

/// Makes sure the recorder exists before the first event is counted.
pub fn init() {
    handle();
}

fn labels(queue: &QueueRef) -> [(&'static str, String); 2] {
    [
        ("namespace", queue.namespace.to_string()),
        ("queue", queue.queue.to_string()),
    ]
}

pub fn job_enqueued(queue: &QueueRef, n: u64) {
    counter!("keel_jobs_enqueued_total", &labels(queue)).increment(n);
}

pub fn job_leased(queue: &QueueRef, n: u64) {
    counter!("keel_jobs_leased_total", &labels(queue)).increment(n);
}

pub fn job_completed(queue: &QueueRef, n: u64) {
    counter!("keel_jobs_completed_total", &labels(queue)).increment(n);
}

pub fn job_failed(queue: &QueueRef, n: u64) {
    counter!("keel_jobs_failed_total", &labels(queue)).increment(n);
}

pub fn job_dead(queue: &QueueRef, n: u64) {
    counter!("keel_jobs_dead_total", &labels(queue)).increment(n);
}

pub fn run_started(namespace: &keel_core::Namespace, workflow: &str) {
    counter!(
        "keel_workflow_runs_started_total",
        "namespace" => namespace.to_string(),
        "workflow" => workflow.to_owned()
    )
    .increment(1);
}

pub fn run_finished(namespace: &keel_core::Namespace, status: keel_core::workflow::RunStatus) {
    counter!(
        "keel_workflow_runs_finished_total",
        "namespace" => namespace.to_string(),
        "status" => status.as_str()
    )
    .increment(1);
}

/// A call parked waiting, counted in a gauge while it waits: lease calls per
/// queue (`keel_lease_waiters`), run reads waiting for a finish
/// (`keel_run_waiters`). Tests wait on these, not on sleeps, to know a call is
/// parked.
pub struct Parked(metrics::Gauge);

impl Drop for Parked {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

pub fn events_published(namespace: &keel_core::Namespace, topic: &keel_core::TopicName, n: u64) {
    counter!(
        "keel_events_published_total",
        &[
            ("namespace", namespace.to_string()),
            ("topic", topic.to_string())
        ]
    )
    .increment(n);
}

/// A schedule's slots fired, each `late_ms` after its due time.
pub fn schedule_fired(namespace: &keel_core::Namespace, late_ms: &[u64]) {
    if late_ms.is_empty() {
        return;
    }
    counter!(
        "keel_schedule_fires_total",
        &[("namespace", namespace.to_string())]
    )
    .increment(late_ms.len() as u64);
    let histogram = histogram!("keel_schedule_fire_lateness_seconds");
    for &ms in late_ms {
        histogram.record(ms as f64 / 1000.0);
    }
}

/// A webhook a source received, by outcome: `accepted`, `duplicate`,
/// `rejected` (signature or timestamp), `invalid`, `challenge`.
pub fn webhook_received(namespace: &keel_core::Namespace, source: &str, outcome: &'static str) {
    counter!(
        "keel_webhooks_received_total",
        &[
            ("namespace", namespace.to_string()),
            ("source", source.to_owned()),
            ("outcome", outcome.to_owned())
        ]
    )
    .increment(1);
}

/// One attempt at a notification's delivery, by outcome (`sent`, `retry`,
/// `failed`, `unknown`).
pub fn notification_attempt(namespace: &keel_core::Namespace, channel: &str, outcome: &str) {
    counter!(
        "keel_notification_attempts_total",
        &[
            ("namespace", namespace.to_string()),
            ("channel", channel.to_owned()),
            ("outcome", outcome.to_owned())
        ]
    )
    .increment(1);
}

/// One probe of a monitor, by outcome (`up`, `down`).
pub fn monitor_probe(namespace: &keel_core::Namespace, up: bool) {
    let outcome = if up { "up" } else { "down" };
    counter!(
        "keel_monitor_probes_total",
        &[
            ("namespace", namespace.to_string()),
            ("outcome", outcome.to_owned())
        ]
    )
    .increment(1);
}

/// One handler invocation: counted by outcome (`ok`, `error`, or the
/// limit that stopped it), with its guest CPU time; `peak` is the
/// handler's memory high-water mark on this node when it rose.
pub fn handler_invoked(
    namespace: &keel_core::Namespace,
    handler: &keel_core::HandlerName,
    invocation: &keel_sandbox::Invocation,
    peak: Option<usize>,
) {
    let outcome = match &invocation.outcome {
        Ok(_) => "ok",
        Err(keel_sandbox::Failure::Limit(limit, _)) => limit.as_str(),
        Err(_) => "error",
    };
    let labels = [
        ("namespace", namespace.to_string()),
        ("handler", handler.to_string()),
    ];
    counter!(
        "keel_handler_invocations_total",
        &[
            ("namespace", namespace.to_string()),
            ("handler", handler.to_string()),
            ("outcome", outcome.to_owned())
        ]
    )
    .increment(1);
    counter!("keel_handler_cpu_microseconds_total", &labels)
        .increment(invocation.cpu.as_micros() as u64);
    if let Some(peak) = peak {
        gauge!("keel_handler_memory_bytes_max", &labels).set(peak as f64);
    }
}

/// An incident's change, by kind (`opened`, `paged`, `acknowledged`, `resolved`).
pub fn incident(namespace: &keel_core::Namespace, kind: &str) {
    counter!(
        "keel_incidents_total",
        &[
            ("namespace", namespace.to_string()),
            ("kind", kind.to_owned())
        ]
    )
    .increment(1);
}

/// One push to an endpoint, by outcome (`succeeded`, `failed`).
pub fn endpoint_attempt(
    namespace: &keel_core::Namespace,
    endpoint: &keel_core::EndpointName,
    succeeded: bool,
) {
    let outcome = if succeeded { "succeeded" } else { "failed" };
    counter!(
        "keel_endpoint_attempts_total",
        &[
            ("namespace", namespace.to_string()),
            ("endpoint", endpoint.to_string()),
            ("outcome", outcome.to_owned())
        ]
    )
    .increment(1);
}

pub fn lease_waiter(queue: &QueueRef) -> Parked {
    let gauge = gauge!("keel_lease_waiters", &labels(queue));
    gauge.increment(1.0);
    Parked(gauge)
}

/// Events a subscription handed off or had committed, and how long after
/// their publish each was handed to its target or consumer.
pub fn events_delivered(
    namespace: &keel_core::Namespace,
    subscription: &str,
    n: u64,
    ages: impl Iterator<Item = f64>,
) {
    let labels = [
        ("namespace", namespace.to_string()),
        ("subscription", subscription.to_owned()),
    ];
    counter!("keel_events_delivered_total", &labels).increment(n);
    let histogram = histogram!("keel_event_delivery_seconds", &labels);
    for age in ages {
        histogram.record(age);
    }
}

pub fn event_waiter() -> Parked {
    let gauge = gauge!("keel_event_waiters");
    gauge.increment(1.0);
    Parked(gauge)
}

pub fn run_waiter() -> Parked {
    let gauge = gauge!("keel_run_waiters");
    gauge.increment(1.0);
    Parked(gauge)
}

/// Time from when each job became leasable to its lease; the labels are
/// resolved once per lease batch, not once per job.
pub fn job_waits(queue: &QueueRef, seconds: impl Iterator<Item = f64>) {
    let histogram = histogram!("keel_job_wait_seconds", &labels(queue));
    for s in seconds {
        histogram.record(s);
    }
}

/// The Prometheus text exposition, with queue depths and subscription lags
/// fresh from the store.
pub(crate) async fn render(queues: &QueueService, subscriptions: &SubscriptionService) -> String {
    if let Ok(depths) = queues.depths().await {
        for d in depths {
            gauge!(
                "keel_queue_jobs",
                "namespace" => d.queue.namespace.to_string(),
                "queue" => d.queue.queue.to_string(),
                "state" => d.state.as_str()
            )
            .set(d.count as f64);
        }
    }
    if let Ok(subscriptions) = subscriptions.list(None, None).await {
        for s in subscriptions {
            gauge!(
                "keel_subscription_lag_events",
                "namespace" => s.namespace.to_string(),
                "subscription" => s.name.clone()
            )
            .set(s.lag() as f64);
        }
    }
    handle().map(PrometheusHandle::render).unwrap_or_default()
}

/// An SLO pass that ran to its end (a node whose passes stop counting has
/// stale objectives and publishes no alerts).
pub fn slo_pass() {
    counter!("keel_slo_passes_total").increment(1);
}

/// An objective's burn rates over each window, the budget left and whether
/// each alert fires, as the last SLO pass measured them.
pub fn slo_status(subject: &keel_core::slo::Subject, status: &keel_core::slo::Status) {
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut labels = vec![
            ("namespace", subject.namespace.to_string()),
            (subject.kind.as_str(), subject.name.clone()),
            ("objective", status.objective.as_str().to_owned()),
        ];
        labels.extend(extra.iter().map(|&(k, v)| (k, v.to_owned())));
        labels
    };
    for (window, rate) in keel_core::slo::WINDOWS.iter().zip(status.burn_rates) {
        gauge!("keel_slo_burn_rate", &with(&[("window", window.name)])).set(rate);
    }
    gauge!("keel_slo_error_budget_remaining_ratio", &with(&[])).set(status.budget_remaining);
    for (alert, firing) in keel_core::slo::ALERTS.iter().zip(status.firing) {
        let labels = with(&[
            ("severity", alert.severity.as_str()),
            ("window", alert.long_window().name),
        ]);
        gauge!("keel_slo_alert_firing", &labels).set(if firing { 1.0 } else { 0.0 });
    }
}
