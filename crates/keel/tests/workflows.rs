//! Workflows end to end: the real binary, a Rust worker on real sockets, a real
//! HTTP service for `http` steps, and kill -9 in the middle of runs.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed check")]

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Query;
use axum::http::StatusCode;
use axum::routing::post;
use common::{Server, assert_error};
use keel_client::{Client, JobFailure, LeasedJob, Worker, WorkerOptions};
use serde_json::{Value, json};
use tokio::sync::Notify;

/// The README's example, run as it is.
const PROVISION: &str = include_str!("../../../examples/workflows/provision-account.yaml");

/// Side effects done by the test's workers: (run, step) → times, and a
/// signal for each one.
#[derive(Clone, Default)]
struct Effects(
    Arc<Mutex<HashMap<(String, String), usize>>>,
    Arc<tokio::sync::watch::Sender<usize>>,
);

impl Effects {
    fn record(&self, job: &LeasedJob) {
        let run = job.tags.get("keel.run").cloned().unwrap_or_default();
        let step = job.tags.get("keel.step").cloned().unwrap_or_default();
        *self.0.lock().unwrap().entry((run, step)).or_default() += 1;
        self.1.send_modify(|n| *n += 1);
    }

    /// Waits until the workers have done `n` side effects in all.
    async fn reach(&self, n: usize) {
        let mut done = self.1.subscribe();
        tokio::time::timeout(Duration::from_secs(30), done.wait_for(|d| *d >= n))
            .await
            .unwrap_or_else(|_| panic!("the workers did not reach {n} side effects"))
            .unwrap();
    }

    fn count(&self, run: &str, step: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .get(&(run.to_owned(), step.to_owned()))
            .copied()
            .unwrap_or(0)
    }
}

/// Workers on `queues` that record each job and answer `{"id": ...}`; they
/// stop when `stop` is notified.
fn workers(
    server: &Server,
    queues: &[&str],
    effects: &Effects,
    stop: &Arc<Notify>,
) -> Vec<tokio::task::JoinHandle<()>> {
    queues
        .iter()
        .map(|queue| {
            let client = Client::new(&server.url).unwrap();
            let mut options = WorkerOptions::new("default", queue);
            options.wait_ms = 1000;
            options.lease_ms = 2000;
            let effects = effects.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let handler = move |job: LeasedJob| {
                    let effects = effects.clone();
                    async move {
                        effects.record(&job);
                        let key = job.payload["org"]
                            .as_str()
                            .or(job.payload["order"].as_str());
                        Ok::<_, JobFailure>(json!({"id": format!("id-{}", key.unwrap_or("x"))}))
                    }
                };
                Worker::new(client, options)
                    .run(handler, async move { stop.notified().await })
                    .await;
            })
        })
        .collect()
}

/// A billing service: `?mode=decline` answers 402, otherwise "paid".
async fn billing() -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let app = axum::Router::new().route(
        "/charge",
        post(
            move |Query(q): Query<HashMap<String, String>>, body: axum::Json<Value>| {
                let counted = counted.clone();
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    if q.get("mode").map(String::as_str) == Some("decline") {
                        return (
                            StatusCode::PAYMENT_REQUIRED,
                            axum::Json(json!({"error": "declined"})),
                        );
                    }
                    let tenant = body["tenant"].as_str().unwrap_or_default().to_owned();
                    (
                        StatusCode::OK,
                        axum::Json(json!({"status": "paid", "id": format!("ch-{tenant}")})),
                    )
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/charge", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, calls)
}

async fn put_yaml(server: &Server, name: &str, yaml: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .put(server.v1(&format!("/namespaces/default/workflows/{name}")))
        .header("content-type", "application/yaml")
        .body(yaml.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn start(server: &Server, name: &str, input: Value) -> String {
    let (status, run) = server
        .post(
            &format!("/namespaces/default/workflows/{name}/runs"),
            json!({"input": input}),
        )
        .await;
    assert_eq!(status, 201, "{run}");
    run["id"].as_str().unwrap().to_owned()
}

/// Waits (server-side) for a run to end.
async fn finished(server: &Server, id: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..10 {
        let (status, run) = server
            .get(&format!("/namespaces/default/runs/{id}?wait_ms=3000"))
            .await;
        assert_eq!(status, 200, "{run}");
        if run["status"] != "running" {
            return run;
        }
        last = run;
    }
    panic!("run {id} did not finish: {last:#}");
}

/// Polls until a step reaches a state (no event tells a client this).
async fn step_reaches(server: &Server, id: &str, step: &str, state: &str) -> Value {
    for _ in 0..500 {
        let (_, run) = server.get(&format!("/namespaces/default/runs/{id}")).await;
        if run["steps"][step]["state"] == state {
            return run;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("step {step} of run {id} never reached {state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn provisioning_waits_for_its_signal_and_compensates_a_declined_charge() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &["--allow-private-http"]).await;
    let (billing_url, billing_calls) = billing().await;
    let (status, put) = put_yaml(&server, "provision-account", PROVISION).await;
    assert_eq!(
        (status, &put),
        (201, &json!({"name": "provision-account", "version": 1}))
    );

    let effects = Effects::default();
    let stop = Arc::new(Notify::new());
    let handles = workers(&server, &["tenants", "email", "refunds"], &effects, &stop);

    // The paid path: every step once, then the run waits for its signal.
    let paid = start(
        &server,
        "provision-account",
        json!({"org_id": "acme", "billing_url": billing_url, "email": "a@acme"}),
    )
    .await;
    let waiting = step_reaches(&server, &paid, "wait_activation", "waiting").await;
    assert_eq!(waiting["status"], "running");
    assert_eq!(
        waiting["steps"]["charge"]["output"],
        json!({"status": "paid", "id": "ch-id-acme"})
    );
    let (status, _) = server
        .post(
            &format!("/namespaces/default/runs/{paid}/signals/activated"),
            json!({"by": "ops"}),
        )
        .await;
    assert_eq!(status, 200);
    let run = finished(&server, &paid).await;
    assert_eq!(run["status"], "succeeded", "{run:#}");
    assert_eq!(
        run["steps"]["wait_activation"]["output"],
        json!({"by": "ops"})
    );
    assert_eq!(run["steps"]["delete_tenant"]["state"], "pending");
    for step in ["create_tenant", "welcome"] {
        assert_eq!(effects.count(&paid, step), 1, "{step}");
    }
    assert_eq!(billing_calls.load(Ordering::SeqCst), 1);

    // The declined path: charge fails (a 402 is not retried), the tenant is deleted.
    let declined = start(
        &server,
        "provision-account",
        json!({"org_id": "bust", "billing_url": format!("{billing_url}?mode=decline"), "email": "b@bust"}),
    )
    .await;
    let run = finished(&server, &declined).await;
    assert_eq!(run["status"], "compensated", "{run:#}");
    assert!(
        run["error"]
            .as_str()
            .unwrap()
            .contains("step charge failed"),
        "{run}"
    );
    assert!(
        run["steps"]["charge"]["error"]
            .as_str()
            .unwrap()
            .contains("402")
    );
    assert_eq!(run["steps"]["delete_tenant"]["state"], "succeeded");
    assert_eq!(
        run["steps"]["refund"]["state"], "pending",
        "charge never completed"
    );
    assert_eq!(effects.count(&declined, "delete_tenant"), 1);
    assert_eq!(effects.count(&declined, "welcome"), 0);

    // Cancelled with compensation while it waits: its completed steps are
    // undone, newest first, each once, and the run ends cancelled.
    let regret = start(
        &server,
        "provision-account",
        json!({"org_id": "oops", "billing_url": billing_url, "email": "c@oops"}),
    )
    .await;
    step_reaches(&server, &regret, "wait_activation", "waiting").await;
    let cancel = format!("/namespaces/default/runs/{regret}/cancel");
    assert_error(
        &server.post(&cancel, json!({"compensate": "yes"})).await,
        400,
        "invalid_request",
    );
    let (status, answered) = server.post(&cancel, json!({"compensate": true})).await;
    assert_eq!(status, 200, "{answered}");
    assert_eq!(answered["compensating"], true, "{answered:#}");
    let run = finished(&server, &regret).await;
    assert_eq!(run["status"], "cancelled", "{run:#}");
    assert_eq!(run["steps"]["wait_activation"]["state"], "cancelled");
    for step in ["refund", "delete_tenant"] {
        assert_eq!(run["steps"][step]["state"], "succeeded", "{run:#}");
        assert_eq!(effects.count(&regret, step), 1, "{step}");
    }
    assert!(
        run["steps"]["refund"]["finished_at"].as_str()
            <= run["steps"]["delete_tenant"]["started_at"].as_str(),
        "refund (charge completed last) before delete_tenant: {run:#}"
    );

    // A finished run takes no more signals; unknown runs are 404.
    let late = server
        .post(
            &format!("/namespaces/default/runs/{paid}/signals/activated"),
            json!(null),
        )
        .await;
    assert_error(&late, 409, "invalid_state");
    let unknown = server.get("/namespaces/default/runs/not-a-run").await;
    assert_error(&unknown, 404, "not_found");

    // The task jobs carry their run and step.
    let (_, jobs) = server
        .get(&format!("/namespaces/default/jobs?tag=keel.run:{paid}"))
        .await;
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 2);
    stop.notify_waiters();
    for h in handles {
        h.await.unwrap();
    }
}

const ORDER: &str = r#"
name: order
steps:
  reserve: { task: { queue: stock, input: { order: "${{ input.order }}" } } }
  cool_off: { needs: [reserve], sleep: { duration_ms: 300 } }
  charge: { needs: [cool_off], task: { queue: pay, input: { order: "${{ input.order }}", item: "${{ steps.reserve.output.id }}" } } }
  ship: { needs: [charge], task: { queue: ship, input: { order: "${{ input.order }}" } } }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_mid_run_finishes_every_run_with_each_step_done_once() {
    const RUNS: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir, &[]).await;
    assert_eq!(put_yaml(&server, "order", ORDER).await.0, 201);
    let mut ids = Vec::new();
    for n in 0..RUNS {
        ids.push(start(&server, "order", json!({"order": format!("o{n}")})).await);
    }
    // Reserve everything, let the worker drain (its acks are answered), then
    // kill the server while runs advance and their timers are pending.
    let effects = Effects::default();
    let stop = Arc::new(Notify::new());
    let stock = workers(&server, &["stock"], &effects, &stop);
    effects.reach(RUNS).await;
    stop.notify_waiters();
    for h in stock {
        h.await.unwrap();
    }
    server.kill9().await;

    let server = Server::start_in(dir.path(), &[]).await;
    let stop = Arc::new(Notify::new());
    let handles = workers(&server, &["stock", "pay", "ship"], &effects, &stop);
    for id in &ids {
        let run = finished(&server, id).await;
        assert_eq!(run["status"], "succeeded", "{run:#}");
        assert_eq!(
            run["steps"]["charge"]["output"]["id"],
            json!(format!("id-{}", run["input"]["order"].as_str().unwrap()))
        );
    }
    for id in &ids {
        for step in ["reserve", "charge", "ship"] {
            assert_eq!(effects.count(id, step), 1, "run {id} step {step}");
        }
    }
    stop.notify_waiters();
    for h in handles {
        h.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_are_validated_versioned_and_runs_stay_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    let bad = "name: other\nsteps:\n  a: { needs: [ghost], task: { queue: q } }\n  b: { task: { queue: q }, colour: red }\n";
    let (status, body) = put_yaml(&server, "w", bad).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "invalid_definition");
    let paths: Vec<&str> = body["error"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    for path in ["steps.a.needs[0]", "steps.b.colour", "name"] {
        assert!(paths.contains(&path), "{path} missing from {paths:?}");
    }

    let v1 = "name: w\nsteps:\n  a: { wait_for: { signal: go } }\n";
    assert_eq!(
        put_yaml(&server, "w", v1).await,
        (201, json!({"name": "w", "version": 1}))
    );
    // The same content as JSON is the same version.
    let (status, same) = server
        .call(
            "PUT",
            "/namespaces/default/workflows/w",
            Some(json!({"steps": {"a": {"wait_for": {"signal": "go"}}}, "name": "w"})),
        )
        .await;
    assert_eq!((status, same["version"].clone()), (200, json!(1)));
    let pinned = start(&server, "w", json!({})).await;
    let v2 = "name: w\nsteps:\n  a: { task: { queue: q } }\n";
    assert_eq!(
        put_yaml(&server, "w", v2).await,
        (201, json!({"name": "w", "version": 2}))
    );
    let (_, versions) = server.get("/namespaces/default/workflows/w/versions").await;
    assert_eq!(versions["versions"].as_array().unwrap().len(), 2);
    let (_, got) = server
        .get("/namespaces/default/workflows/w?version=1")
        .await;
    assert_eq!(
        got["definition"]["steps"]["a"],
        json!({"wait_for": {"signal": "go"}})
    );

    // The run started on v1 still waits for its signal, as v1 says.
    let (status, _) = server
        .post(
            &format!("/namespaces/default/runs/{pinned}/signals/go"),
            json!(7),
        )
        .await;
    assert_eq!(status, 200);
    let run = finished(&server, &pinned).await;
    assert_eq!(
        (run["version"].clone(), run["output"].clone()),
        (json!(1), json!({"a": 7}))
    );

    // Idempotent starts, listing and the reserved namespace.
    let body = json!({"input": {}, "idempotency_key": "once"});
    let (first, a) = server
        .post("/namespaces/default/workflows/w/runs", body.clone())
        .await;
    let (again, b) = server
        .post("/namespaces/default/workflows/w/runs", body)
        .await;
    assert_eq!((first, again), (201, 200));
    assert_eq!(
        (a["id"].clone(), b["deduplicated"].clone()),
        (b["id"].clone(), json!(true))
    );
    let (_, listed) = server
        .get("/namespaces/default/runs?workflow=w&status=succeeded")
        .await;
    assert_eq!(listed["runs"].as_array().unwrap().len(), 1);
    assert_error(
        &server.get("/namespaces/_keel/jobs").await,
        400,
        "invalid_name",
    );
    assert_error(
        &server.get("/namespaces/default/workflows/nope").await,
        404,
        "not_found",
    );
    let cancelled = server
        .post(
            &format!(
                "/namespaces/default/runs/{}/cancel",
                a["id"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    assert_eq!(cancelled.1["status"], "cancelled");
}

const FAN_OUT: &str = r#"
name: notify-all
steps:
  each:
    for_each:
      items: "${{ input.users }}"
      max_parallel: 2
      step: { task: { queue: mail, input: { order: "${{ item }}" } } }
  child:
    needs: [each]
    workflow: { name: order-lite, input: { order: "n-${{ steps.each.output | length }}" } }
"#;

const ORDER_LITE: &str = r#"
name: order-lite
steps:
  reserve: { task: { queue: stock, input: { order: "${{ input.order }}" } } }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_collects_outputs_in_order_and_child_runs_report_back() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    assert_eq!(put_yaml(&server, "notify-all", FAN_OUT).await.0, 201);
    assert_eq!(put_yaml(&server, "order-lite", ORDER_LITE).await.0, 201);
    let effects = Effects::default();
    let stop = Arc::new(Notify::new());
    let handles = workers(&server, &["mail", "stock"], &effects, &stop);
    let id = start(
        &server,
        "notify-all",
        json!({"users": ["a", "b", "c", "d", "e"]}),
    )
    .await;
    let run = finished(&server, &id).await;
    assert_eq!(run["status"], "succeeded", "{run:#}");
    let ids: Vec<Value> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|u| json!({"id": format!("id-{u}")}))
        .collect();
    assert_eq!(run["steps"]["each"]["output"], json!(ids));
    assert_eq!(
        run["steps"]["child"]["output"],
        json!({"reserve": {"id": "id-n-5"}})
    );
    assert_eq!(effects.count(&id, "each"), 5);
    stop.notify_waiters();
    for h in handles {
        h.await.unwrap();
    }
}

const FORK: &str = r#"
name: fork
steps:
  a: { task: { queue: work, input: {} }, compensate: undo }
  b: { needs: [a], task: { queue: work, input: {} } }
  c: { needs: [a], task: { queue: work, input: {} } }
  undo: { task: { queue: work, input: {} }, compensation: true }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_namespace_refuses_a_start_and_fails_the_steps_it_cannot_hold() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &["--max-namespace-jobs", "2"]).await;
    assert_eq!(put_yaml(&server, "fork", FORK).await.0, 201);
    // One job parked where no worker looks: room for one more.
    let parked = server
        .post(
            "/namespaces/default/queues/parked/jobs",
            json!({"payload": {}}),
        )
        .await;
    assert_eq!(parked.0, 201, "{}", parked.1);
    let id = start(&server, "fork", json!({})).await;
    // The namespace is full now: a second run has no room for its first
    // step, so it is refused whole and nothing of it is stored.
    let refused = server
        .post(
            "/namespaces/default/workflows/fork/runs",
            json!({"input": {}}),
        )
        .await;
    assert_error(&refused, 429, "namespace_full");
    let (_, listed) = server.get("/namespaces/default/runs?workflow=fork").await;
    assert_eq!(listed["runs"].as_array().unwrap().len(), 1, "{listed}");

    // Once `a` is done, `b` and `c` need two places and there is one: both
    // fail with the store's reason, and `a` is undone (its compensation fits).
    let effects = Effects::default();
    let stop = Arc::new(Notify::new());
    let handles = workers(&server, &["work"], &effects, &stop);
    let run = finished(&server, &id).await;
    assert_eq!(run["status"], "compensated", "{run:#}");
    for step in ["b", "c"] {
        assert_eq!(run["steps"][step]["state"], "failed", "{run:#}");
        let error = run["steps"][step]["error"].as_str().unwrap_or_default();
        assert!(error.contains("unfinished jobs"), "{run:#}");
    }
    assert_eq!(run["steps"]["undo"]["state"], "succeeded", "{run:#}");
    assert_eq!(
        (effects.count(&id, "a"), effects.count(&id, "undo")),
        (1, 1)
    );
    stop.notify_waiters();
    for handle in handles {
        handle.await.unwrap();
    }
}

const ABANDONED: &str = r#"
name: abandoned
steps:
  only: { task: { queue: lost, input: {} }, timeout_ms: 1000, retry: { max_attempts: 1 } }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_whose_worker_vanishes_on_its_last_attempt_fails_when_its_lease_expires() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    assert_eq!(put_yaml(&server, "abandoned", ABANDONED).await.0, 201);
    let id = start(&server, "abandoned", json!({})).await;
    // A worker takes the job and is never heard from again.
    let (status, leased) = server
        .post(
            "/namespaces/default/queues/lost/lease",
            json!({"max_jobs": 1, "wait_ms": 1000}),
        )
        .await;
    assert_eq!(status, 200, "{leased}");
    assert_eq!(leased["jobs"].as_array().map(Vec::len), Some(1), "{leased}");
    let leased_at = std::time::Instant::now();
    // The run hears of it when the lease expires (1 s), not at the next
    // sweep of running runs (a minute away).
    let run = finished(&server, &id).await;
    assert!(leased_at.elapsed() < Duration::from_secs(20));
    assert_eq!(run["status"], "failed", "{run:#}");
    let error = run["steps"]["only"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("lease expired"), "{run:#}");
}

const PARENT_HOLD: &str = r#"
name: parent-hold
steps:
  book: { task: { queue: mail, input: { order: "p" } }, compensate: unbook }
  child: { needs: [book], workflow: { name: child-hold, input: { order: "c" } } }
  unbook: { task: { queue: mail, input: { order: "undo-p" } }, compensation: true }
"#;

const CHILD_HOLD: &str = r#"
name: child-hold
steps:
  reserve: { task: { queue: stock, input: { order: "${{ input.order }}" } }, compensate: release }
  hold: { needs: [reserve], wait_for: { signal: never, timeout_ms: 600000 } }
  release: { task: { queue: stock, input: { order: "undo-${{ input.order }}" } }, compensation: true }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_cancelled_with_compensation_compensates_its_running_child() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    assert_eq!(put_yaml(&server, "parent-hold", PARENT_HOLD).await.0, 201);
    assert_eq!(put_yaml(&server, "child-hold", CHILD_HOLD).await.0, 201);
    let effects = Effects::default();
    let stop = Arc::new(Notify::new());
    let handles = workers(&server, &["mail", "stock"], &effects, &stop);
    let parent = start(&server, "parent-hold", json!({})).await;
    step_reaches(&server, &parent, "child", "running").await;
    let child = loop {
        let (_, page) = server
            .get("/namespaces/default/runs?workflow=child-hold")
            .await;
        if let Some(id) = page["runs"][0]["id"].as_str() {
            break id.to_owned();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    step_reaches(&server, &child, "hold", "waiting").await;

    let (status, cancelled) = server
        .post(
            &format!("/namespaces/default/runs/{parent}/cancel"),
            json!({"compensate": true}),
        )
        .await;
    assert_eq!(status, 200, "{cancelled}");
    let parent_run = finished(&server, &parent).await;
    let child_run = finished(&server, &child).await;
    assert_eq!(parent_run["status"], "cancelled", "{parent_run:#}");
    assert_eq!(child_run["status"], "cancelled", "{child_run:#}");
    assert_eq!(child_run["steps"]["release"]["state"], "succeeded");
    assert_eq!(
        (
            effects.count(&parent, "unbook"),
            effects.count(&child, "release")
        ),
        (1, 1),
        "each run undid its own completed step, once"
    );
    stop.notify_waiters();
    for h in handles {
        h.await.unwrap();
    }
}
