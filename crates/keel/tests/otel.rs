//! OpenTelemetry end to end (`cargo nextest run -p keel --features otel
//! --test otel`): an OTLP/HTTP receiver started here, decoding what it gets
//! with the protocol's own protobuf definitions; the real binary built with
//! `otel` exporting to it; and the Rust SDK's worker in this process,
//! exporting to it too. A job enqueued, a run started and an event published
//! inside a trace reach a worker whose handler span is in that trace, a
//! child of the server span of the request that stored the work; store
//! commits are spans of their own, linked to the requests they committed.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed check")]

mod common;

use std::time::Duration;

use axum::body::Bytes;
use axum::routing::post;
use common::Server;
use keel_client::{Client, JobFailure, JobSpec, Worker, WorkerOptions};
use opentelemetry::trace::{TraceContextExt, TracerProvider};
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use prost::Message;
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

/// A span as the receiver decoded it.
#[derive(Clone, Debug)]
struct Got {
    service: String,
    name: String,
    /// 2 server, 5 consumer (the protocol's `SpanKind`).
    kind: i32,
    trace: String,
    id: String,
    parent: String,
    attributes: Vec<(String, String)>,
    /// The span ids it links to.
    links: Vec<String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An OTLP/HTTP receiver on loopback, on a runtime of its own (an exporter
/// flushing from a test's thread must not wait on that thread).
fn receiver() -> (String, watch::Receiver<Vec<Got>>) {
    let (tx, rx) = watch::channel(Vec::new());
    let (url_tx, url_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let app = axum::Router::new().route(
                "/v1/traces",
                post(move |body: Bytes| {
                    let tx = tx.clone();
                    async move {
                        let request = ExportTraceServiceRequest::decode(body).unwrap();
                        tx.send_modify(|spans| spans.extend(decode(request)));
                        ([("content-type", "application/x-protobuf")], Vec::new())
                    }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            url_tx
                .send(format!("http://{}", listener.local_addr().unwrap()))
                .unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    (url_rx.recv().unwrap(), rx)
}

fn decode(request: ExportTraceServiceRequest) -> Vec<Got> {
    let text = |v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>| {
        use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
        match v.as_ref().and_then(|v| v.value.as_ref()) {
            Some(V::StringValue(s)) => s.clone(),
            Some(V::IntValue(i)) => i.to_string(),
            other => format!("{other:?}"),
        }
    };
    let mut spans = Vec::new();
    for resource in request.resource_spans {
        let service = resource
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|a| a.key == "service.name")
            .map(|a| text(&a.value))
            .unwrap_or_default();
        for scope in resource.scope_spans {
            for span in scope.spans {
                spans.push(Got {
                    service: service.clone(),
                    name: span.name,
                    kind: span.kind,
                    trace: hex(&span.trace_id),
                    id: hex(&span.span_id),
                    parent: hex(&span.parent_span_id),
                    links: span.links.iter().map(|l| hex(&l.span_id)).collect(),
                    attributes: span
                        .attributes
                        .iter()
                        .map(|a| (a.key.clone(), text(&a.value)))
                        .collect(),
                });
            }
        }
    }
    spans
}

/// The first span `pick` accepts, once the receiver has it (at most 20 s).
async fn span(rx: &mut watch::Receiver<Vec<Got>>, pick: impl Fn(&Got) -> bool) -> Got {
    let found = tokio::time::timeout(
        Duration::from_secs(20),
        rx.wait_for(|spans| spans.iter().any(&pick)),
    )
    .await
    .map(|spans| spans.unwrap().iter().find(|s| pick(s)).cloned());
    match found {
        Ok(Some(span)) => span,
        _ => panic!("no such span within 20 s; got {:#?}", *rx.borrow()),
    }
}

/// The worker's own tracer, exporting to the receiver (built off the
/// runtime: the exporter's HTTP client blocks).
async fn worker_tracing(url: String) -> SdkTracerProvider {
    keel_client::install_tls_provider();
    tokio::task::spawn_blocking(move || {
        let exporter = SpanExporter::builder()
            .with_http()
            .with_endpoint(format!("{url}/v1/traces"))
            .build()
            .unwrap();
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(Resource::builder().with_service_name("worker").build())
            .build()
    })
    .await
    .unwrap()
}

/// A server exporting to a fresh receiver, and this test's thread tracing
/// into it too (while `_default` lives).
struct Traced {
    s: Server,
    url: String,
    spans: watch::Receiver<Vec<Got>>,
    provider: SdkTracerProvider,
    _default: tracing::subscriber::DefaultGuard,
}

async fn traced(dir: &tempfile::TempDir) -> Traced {
    let (url, spans) = receiver();
    let s = Server::start_with_env(
        dir,
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &url),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ],
    )
    .await;
    let provider = worker_tracing(url.clone()).await;
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    Traced {
        s,
        url,
        spans,
        provider,
        _default: tracing::subscriber::set_default(subscriber),
    }
}

fn trace_of(span: &tracing::Span) -> String {
    span.context().span().span_context().trace_id().to_string()
}

#[tokio::test]
async fn a_trace_runs_from_the_caller_through_keel_to_the_handler() {
    let dir = tempfile::tempdir().unwrap();
    let Traced {
        s,
        url: _,
        mut spans,
        provider,
        _default,
    } = traced(&dir).await;

    // Setup, outside any trace: a workflow whose step works on `work`, and
    // a subscription that turns `orders` events into jobs on `work`.
    let (status, _) = s
        .call(
            "PUT",
            "/v1/namespaces/default/workflows/ship",
            Some(json!({"name": "ship", "steps": {"pack": {"task": {"queue": "work"}}}})),
        )
        .await;
    assert!(status == 200 || status == 201);
    let (status, _) = s
        .call(
            "PUT",
            "/v1/namespaces/default/subscriptions/orders-work",
            Some(json!({"topic": "orders", "target": {"queue": "work"}})),
        )
        .await;
    assert!(status == 200 || status == 201);

    // Three traces, each started by a caller span around one SDK call.
    let client = Client::new(&s.url).unwrap();
    let enqueue = tracing::info_span!("checkout");
    client
        .enqueue("default", "work", &JobSpec::new(json!({"via": "enqueue"})))
        .instrument(enqueue.clone())
        .await
        .unwrap();
    let start = tracing::info_span!("signup");
    client
        .start_run("default", "ship", &json!({"via": "run"}), None)
        .instrument(start.clone())
        .await
        .unwrap();
    let publish = tracing::info_span!("order placed");
    let event: keel_client::NewEvent =
        serde_json::from_value(json!({"data": {"via": "event"}})).unwrap();
    client
        .publish("default", "orders", &event)
        .instrument(publish.clone())
        .await
        .unwrap();

    // The worker: each handler notes the trace it runs in.
    let (seen_tx, mut seen) = mpsc::unbounded_channel::<String>();
    let handler = move |_job: keel_client::LeasedJob| {
        let seen_tx = seen_tx.clone();
        async move {
            seen_tx.send(trace_of(&tracing::Span::current())).unwrap();
            Ok::<_, JobFailure>(json!({}))
        }
    };
    let mut options = WorkerOptions::new("default", "work");
    options.wait_ms = 100;
    let (stop_tx, stop) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(
        Worker::new(client.clone(), options).run(handler, async move {
            let _ = stop.await;
        }),
    );
    let mut handled = std::collections::BTreeSet::new();
    for _ in 0..3 {
        let trace = tokio::time::timeout(Duration::from_secs(20), seen.recv())
            .await
            .expect("the worker handles the three jobs")
            .unwrap();
        handled.insert(trace);
    }
    let _ = stop_tx.send(());
    worker.await.unwrap();

    // Each handler ran in its caller's trace...
    let callers = [
        (&enqueue, "POST /v1/namespaces/{ns}/queues/{queue}/jobs"),
        (&start, "POST /v1/namespaces/{ns}/workflows/{name}/runs"),
        (&publish, "POST /v1/namespaces/{ns}/topics/{topic}/events"),
    ];
    let traces: std::collections::BTreeSet<String> =
        callers.iter().map(|(caller, _)| trace_of(caller)).collect();
    assert_eq!(handled, traces);

    // ...as a child of the server span of the request that stored its work,
    // itself a child of the caller's span.
    let flushing = provider.clone();
    tokio::task::spawn_blocking(move || flushing.force_flush())
        .await
        .unwrap()
        .unwrap();
    for (caller, route) in callers {
        let trace = trace_of(caller);
        let caller_id = caller.context().span().span_context().span_id().to_string();
        let server = span(&mut spans, |g| g.name == route && g.trace == trace).await;
        assert_eq!(
            (server.service.as_str(), server.kind, server.parent.as_str()),
            ("keel", 2, caller_id.as_str()),
            "{server:#?}"
        );
        assert!(
            server
                .attributes
                .contains(&("http.response.status_code".into(), "201".into())),
            "{server:#?}"
        );
        let handled = span(&mut spans, |g| {
            g.service == "worker" && g.trace == trace && g.kind == 5
        })
        .await;
        assert_eq!(handled.parent, server.id, "{route}: {handled:#?}");
        assert_eq!(handled.name, "process work");
    }

    // Store commit batches are spans too, linked to the requests they
    // committed (one commit serves many requests: links, not parents).
    let enqueued = span(&mut spans, |g| {
        g.name == callers[0].1 && g.trace == trace_of(callers[0].0)
    })
    .await;
    let commit = span(&mut spans, |g| {
        g.name == "store.commit" && g.links.contains(&enqueued.id)
    })
    .await;
    assert!(
        commit
            .attributes
            .contains(&("db.system.name".into(), "sqlite".into())),
        "{commit:#?}"
    );
    tokio::task::spawn_blocking(move || provider.shutdown())
        .await
        .unwrap()
        .unwrap();
}

/// The Python example worker (examples/python/worker.py), run by a Python
/// with OpenTelemetry installed (`KEEL_TEST_OTEL_PYTHON`, which
/// scripts/test sets up), continues the trace a job was enqueued in.
#[tokio::test]
async fn the_python_example_continues_the_trace() {
    let python = std::env::var("KEEL_TEST_OTEL_PYTHON").expect(
        "KEEL_TEST_OTEL_PYTHON: a python with opentelemetry-sdk and \
         opentelemetry-exporter-otlp-proto-http (scripts/test makes one)",
    );
    let dir = tempfile::tempdir().unwrap();
    let Traced {
        s,
        url,
        mut spans,
        provider,
        _default,
    } = traced(&dir).await;
    let caller = tracing::info_span!("invoice");
    Client::new(&s.url)
        .unwrap()
        .enqueue("default", "py", &JobSpec::new(json!({"n": 1})))
        .instrument(caller.clone())
        .await
        .unwrap();

    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/python/worker.py"
    );
    let out = tokio::process::Command::new(python)
        .args([script, &s.url, "py", "--max-jobs", "1"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &url)
        .env("OTEL_SERVICE_NAME", "python-worker")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let trace = trace_of(&caller);
    let server = span(&mut spans, |g| {
        g.service == "keel" && g.trace == trace && g.kind == 2
    })
    .await;
    let handled = span(&mut spans, |g| g.service == "python-worker").await;
    assert_eq!(
        (
            handled.trace.as_str(),
            handled.parent.as_str(),
            handled.kind,
            handled.name.as_str()
        ),
        (trace.as_str(), server.id.as_str(), 5, "process py"),
        "{handled:#?}"
    );
    tokio::task::spawn_blocking(move || provider.shutdown())
        .await
        .unwrap()
        .unwrap();
}
