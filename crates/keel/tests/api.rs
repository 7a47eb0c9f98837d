//! The job-core HTTP contract (docs/api.md), endpoint by endpoint, against the
//! real binary over a real socket.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed check")]

mod common;

use std::time::{Duration, Instant};

use common::{Server, assert_error};
use serde_json::{Value, json};

async fn server() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (Server::start(&dir, &[]).await, dir)
}

#[tokio::test]
async fn enqueue_single_and_batch_then_get() {
    let (s, _dir) = server().await;
    let (status, one) = s
        .post(
            "/namespaces/default/queues/emails/jobs",
            json!({"payload": {"to": "a@example.com"}, "priority": 5, "tags": {"tenant": "acme"},
                   "ordering_key": "acct-1", "max_attempts": 3, "lease_ms": 5000,
                   "backoff": {"base_ms": 10, "max_ms": 100, "factor": 3, "jitter": false}}),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(one["state"], "ready");
    assert_eq!(one["deduplicated"], false);
    let id = one["id"].as_str().unwrap();

    let job = s.job(id).await;
    for (field, expected) in [
        ("id", json!(id)),
        ("queue", json!("emails")),
        ("state", json!("ready")),
        ("payload", json!({"to": "a@example.com"})),
        ("priority", json!(5)),
        ("attempt", json!(0)),
        ("max_attempts", json!(3)),
        ("result", Value::Null),
        ("errors", json!([])),
        ("tags", json!({"tenant": "acme"})),
        ("ordering_key", json!("acct-1")),
    ] {
        assert_eq!(job[field], expected, "{field}");
    }
    for time in ["run_at", "created_at", "updated_at"] {
        let text = job[time].as_str().unwrap();
        assert!(
            text.ends_with('Z') && text.contains('T'),
            "{time} is RFC 3339 UTC: {text}"
        );
    }

    let (status, batch) = s
        .post(
            "/namespaces/default/queues/emails/jobs",
            json!({"jobs": [{"payload": 1}, {"payload": 2, "delay_ms": 60000}, {"payload": 3, "run_at": "2999-01-01T00:00:00Z"}]}),
        )
        .await;
    assert_eq!(status, 201);
    let states: Vec<&str> = batch["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["ready", "scheduled", "scheduled"]);
    let third = s.job(batch["jobs"][2]["id"].as_str().unwrap()).await;
    assert_eq!(third["run_at"], "2999-01-01T00:00:00.000Z");
}

#[tokio::test]
async fn list_filters_and_pages_newest_first() {
    let (s, _dir) = server().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let tags = json!({"parity": if i % 2 == 0 { "even" } else { "odd" }});
        ids.push(s.enqueue("a", json!({"payload": i, "tags": tags})).await);
    }
    s.enqueue("b", json!({"payload": "other queue"})).await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/namespaces/default/jobs?queue=a&limit=2&cursor={c}"),
            None => "/namespaces/default/jobs?queue=a&limit=2".to_owned(),
        };
        let (status, page) = s.get(&path).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(
            page["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids);
    let (_, odd) = s.get("/namespaces/default/jobs?tag=parity:odd").await;
    assert_eq!(odd["jobs"].as_array().unwrap().len(), 2);
    let (_, ready) = s
        .get("/namespaces/default/jobs?state=ready&limit=100")
        .await;
    assert_eq!(ready["jobs"].as_array().unwrap().len(), 6);
    assert_eq!(ready["next_cursor"], Value::Null);
}

#[tokio::test]
async fn lease_complete_fail_and_heartbeat_are_fenced() {
    let (s, _dir) = server().await;
    let id = s.enqueue("work", json!({"payload": {"n": 1}, "max_attempts": 2, "backoff": {"base_ms": 60000, "jitter": false}})).await;
    let jobs = s
        .lease(
            "work",
            json!({"worker_id": "w1", "max_jobs": 10, "lease_ms": 5000}),
        )
        .await;
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0];
    assert_eq!(job["id"], id.as_str());
    assert_eq!(job["payload"], json!({"n": 1}));
    assert_eq!(job["attempt"], 1);
    let token = job["lease_token"].as_str().unwrap().to_owned();
    assert!(job["lease_expires_at"].as_str().is_some());

    let (status, beat) = s
        .post(
            &format!("/namespaces/default/jobs/{id}/heartbeat"),
            json!({"lease_token": token, "lease_ms": 20000}),
        )
        .await;
    assert_eq!(status, 200, "{beat}");
    assert!(beat["lease_expires_at"].as_str().is_some());

    let (status, failed) = s
        .post(
            &format!("/namespaces/default/jobs/{id}/fail"),
            json!({"lease_token": token, "error": "smtp down"}),
        )
        .await;
    assert_eq!(status, 200, "{failed}");
    assert_eq!(failed["state"], "scheduled");
    let job = s.job(&id).await;
    assert_eq!(job["errors"][0]["message"], "smtp down");
    assert_eq!(job["errors"][0]["attempt"], 1);

    // The token of the failed attempt is stale for everything.
    for action in ["complete", "fail", "heartbeat"] {
        let answer = s
            .post(
                &format!("/namespaces/default/jobs/{id}/{action}"),
                json!({"lease_token": token}),
            )
            .await;
        assert_error(&answer, 409, "lease_lost");
    }

    let id = s.enqueue("work2", json!({"payload": 2})).await;
    let token = s.lease("work2", json!({})).await[0]["lease_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, done) = s
        .post(
            &format!("/namespaces/default/jobs/{id}/complete"),
            json!({"lease_token": token, "result": {"ok": true}}),
        )
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["state"], "succeeded");
    assert_eq!(s.job(&id).await["result"], json!({"ok": true}));
    assert_error(
        &s.post(
            &format!("/namespaces/default/jobs/{id}/complete"),
            json!({"lease_token": token}),
        )
        .await,
        409,
        "lease_lost",
    );

    let id = s.enqueue("work3", json!({"payload": 3})).await;
    let token = s.lease("work3", json!({})).await[0]["lease_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, dead) = s
        .post(
            &format!("/namespaces/default/jobs/{id}/fail"),
            json!({"lease_token": token, "error": "bad input", "retry": false}),
        )
        .await;
    assert_eq!(dead["state"], "dead");
}

#[tokio::test]
async fn long_poll_wakes_on_enqueue() {
    let (s, _dir) = server().await;
    let started = Instant::now();
    let waiting = {
        let url = s.v1("/namespaces/default/queues/wake/lease");
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .json(&json!({"wait_ms": 30000}))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    };
    // The poll is parked before the enqueue: it must be woken, not find the job.
    s.wait_for_gauge("keel_lease_waiters", 1.0).await;
    s.enqueue("wake", json!({"payload": "hi"})).await;
    let answer = waiting.await.unwrap();
    assert_eq!(answer["jobs"][0]["payload"], "hi");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "woken by the enqueue, not the 30 s timeout"
    );

    let started = Instant::now();
    assert!(s.lease("wake", json!({"wait_ms": 300})).await.is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "an empty poll waits its wait_ms"
    );
}

#[tokio::test]
async fn expired_leases_and_due_jobs_come_back() {
    let (s, _dir) = server().await;
    let id = s.enqueue("expiry", json!({"payload": 1})).await;
    let first = s.lease("expiry", json!({"lease_ms": 200})).await;
    let token = first[0]["lease_token"].as_str().unwrap().to_owned();
    let again = s.lease("expiry", json!({"wait_ms": 20000})).await;
    assert_eq!(again[0]["id"], id.as_str());
    assert_eq!(again[0]["attempt"], 2);
    assert_eq!(s.job(&id).await["errors"][0]["message"], "lease expired");
    assert_error(
        &s.post(
            &format!("/namespaces/default/jobs/{id}/complete"),
            json!({"lease_token": token}),
        )
        .await,
        409,
        "lease_lost",
    );

    let id = s
        .enqueue("delayed", json!({"payload": 2, "delay_ms": 300}))
        .await;
    assert!(
        s.lease("delayed", json!({})).await.is_empty(),
        "not before its time"
    );
    let due = s.lease("delayed", json!({"wait_ms": 20000})).await;
    assert_eq!(due[0]["id"], id.as_str());
}

#[tokio::test]
async fn priority_then_fifo_and_ordering_keys() {
    let (s, _dir) = server().await;
    let low = s
        .enqueue("p", json!({"payload": "low", "priority": -1}))
        .await;
    let first = s.enqueue("p", json!({"payload": "first"})).await;
    let high = s
        .enqueue("p", json!({"payload": "high", "priority": 100}))
        .await;
    let second = s.enqueue("p", json!({"payload": "second"})).await;
    let order: Vec<String> = s
        .lease("p", json!({"max_jobs": 10}))
        .await
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(order, [high, first, second, low]);

    let a1 = s
        .enqueue("k", json!({"payload": "a1", "ordering_key": "a"}))
        .await;
    let a2 = s
        .enqueue("k", json!({"payload": "a2", "ordering_key": "a"}))
        .await;
    let leased = s.lease("k", json!({"max_jobs": 10})).await;
    assert_eq!(leased.len(), 1, "one job per key at a time");
    assert_eq!(leased[0]["id"], a1.as_str());
    let token = leased[0]["lease_token"].as_str().unwrap();
    s.post(
        &format!("/namespaces/default/jobs/{a1}/complete"),
        json!({"lease_token": token}),
    )
    .await;
    assert_eq!(
        s.lease("k", json!({"max_jobs": 10})).await[0]["id"],
        a2.as_str()
    );
}

#[tokio::test]
async fn idempotency_keys_return_the_first_job() {
    let (s, _dir) = server().await;
    let job = json!({"payload": {"order": 42}, "idempotency_key": "order-42"});
    let (status, first) = s
        .post("/namespaces/default/queues/q/jobs", job.clone())
        .await;
    assert_eq!(status, 201, "a new job: {first}");
    let (status, second) = s.post("/namespaces/default/queues/q/jobs", job).await;
    assert_eq!(status, 200, "the first job's answer: {second}");
    assert_eq!(second["id"], first["id"]);
    assert_eq!(second["deduplicated"], true);
}

#[tokio::test]
async fn cancel_and_redrive() {
    let (s, _dir) = server().await;
    let id = s.enqueue("c", json!({"payload": 1})).await;
    let (status, cancelled) = s
        .post(&format!("/namespaces/default/jobs/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(cancelled["state"], "cancelled");
    assert_error(
        &s.post(&format!("/namespaces/default/jobs/{id}/cancel"), json!({}))
            .await,
        409,
        "invalid_state",
    );

    let mut dead = Vec::new();
    for i in 0..3 {
        let id = s
            .enqueue("r", json!({"payload": i, "max_attempts": 1}))
            .await;
        let token = s.lease("r", json!({})).await[0]["lease_token"]
            .as_str()
            .unwrap()
            .to_owned();
        s.post(
            &format!("/namespaces/default/jobs/{id}/fail"),
            json!({"lease_token": token, "error": "x"}),
        )
        .await;
        assert_eq!(s.job(&id).await["state"], "dead");
        dead.push(id);
    }
    let (status, one) = s
        .post(
            "/namespaces/default/queues/r/redrive",
            json!({"ids": [dead[0]], "payload": {"fixed": true}}),
        )
        .await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["redriven"], 1);
    let job = s.job(&dead[0]).await;
    assert_eq!(
        (job["state"].as_str(), job["attempt"].as_u64()),
        (Some("ready"), Some(0))
    );
    assert_eq!(job["payload"], json!({"fixed": true}));
    let (_, all) = s
        .post("/namespaces/default/queues/r/redrive", json!({"all": true}))
        .await;
    assert_eq!(all["redriven"], 2);
    assert_error(
        &s.post("/namespaces/default/queues/r/redrive", json!({}))
            .await,
        400,
        "invalid_request",
    );
}

#[tokio::test]
async fn batch_acks_answer_per_item() {
    let (s, _dir) = server().await;
    for i in 0..3 {
        s.enqueue("acks", json!({"payload": i})).await;
    }
    let jobs = s.lease("acks", json!({"max_jobs": 3})).await;
    let item = |j: &Value| json!({"id": j["id"], "lease_token": j["lease_token"]});
    let (status, answer) = s
        .post(
            "/namespaces/default/acks",
            json!({
                "complete": [item(&jobs[0]), {"id": jobs[1]["id"], "lease_token": "nonsense"}],
                "fail": [{"id": jobs[2]["id"], "lease_token": jobs[2]["lease_token"], "error": "x", "retry": true, "retry_after_ms": 0},
                         item(&jobs[0])]
            }),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["complete"][0]["status"], 200);
    assert_eq!(answer["complete"][0]["state"], "succeeded");
    assert_eq!(answer["complete"][1]["status"], 400);
    assert_eq!(answer["complete"][1]["error"]["code"], "invalid_request");
    assert_eq!(
        answer["fail"][0]["state"], "ready",
        "a zero retry delay is ready at once"
    );
    assert_eq!(answer["fail"][1]["status"], 409);
    assert_eq!(answer["fail"][1]["error"]["code"], "lease_lost");
}

#[tokio::test]
async fn queue_stats_policy_pause_and_resume() {
    let (s, _dir) = server().await;
    let (status, policy) = s
        .call(
            "PUT",
            "/namespaces/default/queues/pq",
            Some(json!({"max_attempts": 7, "lease_ms": 1000, "max_concurrency": 1})),
        )
        .await;
    assert_eq!(status, 200, "{policy}");
    let id = s.enqueue("pq", json!({"payload": 1})).await;
    assert_eq!(
        s.job(&id).await["max_attempts"],
        7,
        "the queue policy is the job's default"
    );
    s.enqueue("pq", json!({"payload": 2})).await;
    assert_eq!(
        s.lease("pq", json!({"max_jobs": 10})).await.len(),
        1,
        "max_concurrency bounds leases"
    );

    let (status, stats) = s.get("/namespaces/default/queues/pq").await;
    assert_eq!(status, 200);
    assert_eq!(stats["counts"]["ready"], 1);
    assert_eq!(stats["counts"]["leased"], 1);
    assert_eq!(stats["counts"]["dead"], 0);
    assert!(stats["oldest_ready_age_ms"].is_u64());
    assert!(stats["rates"]["enqueued_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(stats["policy"]["max_attempts"], 7);

    let (status, _) = s
        .post("/namespaces/default/queues/z/pause", json!({}))
        .await;
    assert_eq!(status, 200);
    s.enqueue("z", json!({"payload": 1})).await;
    assert!(
        s.lease("z", json!({})).await.is_empty(),
        "a paused queue leases nothing"
    );
    assert_eq!(
        s.get("/namespaces/default/queues/z").await.1["paused"],
        true
    );
    s.post("/namespaces/default/queues/z/resume", json!({}))
        .await;
    assert_eq!(s.lease("z", json!({})).await.len(), 1);

    assert_error(
        &s.call(
            "PUT",
            "/namespaces/default/queues/pq",
            Some(json!({"max_attempts": 0})),
        )
        .await,
        400,
        "invalid_request",
    );
    assert_error(
        &s.call(
            "PUT",
            "/namespaces/default/queues/pq",
            Some(json!({"bogus": 1})),
        )
        .await,
        400,
        "invalid_request",
    );
}

#[tokio::test]
async fn every_bad_input_has_a_coded_error() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        &dir,
        &[
            "--max-payload-bytes",
            "1000",
            "--max-body-bytes",
            "100000",
            "--max-namespace-jobs",
            "3",
            "--max-wait-ms",
            "1000",
        ],
    )
    .await;
    let jobs = "/namespaces/default/queues/q/jobs";
    let cases: Vec<((u16, Value), u16, &str)> = vec![
        (
            s.raw("POST", jobs, b"{\"payload\":".to_vec()).await,
            400,
            "invalid_json",
        ),
        (
            s.raw("POST", jobs, b"not json".to_vec()).await,
            400,
            "invalid_json",
        ),
        (
            s.post(jobs, json!({"priority": 1})).await,
            400,
            "invalid_request",
        ),
        (
            s.post(jobs, json!({"payload": 1, "surprise": true})).await,
            400,
            "invalid_request",
        ),
        (
            s.post(
                "/namespaces/default/queues/q/lease",
                json!({"wait_ms": 1001}),
            )
            .await,
            400,
            "invalid_request",
        ),
        // serde reads a struct from an array of its fields; the API takes
        // objects only, as its OpenAPI document says (found by schemathesis).
        (
            s.post(jobs, json!([{"a": 1}, 5])).await,
            400,
            "invalid_request",
        ),
        (
            s.post(jobs, json!({"jobs": [[{"a": 1}, 5]]})).await,
            400,
            "invalid_request",
        ),
        (
            s.post(
                "/namespaces/default/topics/t/events",
                json!({"events": [[null, null]]}),
            )
            .await,
            400,
            "invalid_request",
        ),
        (
            s.post(jobs, json!({"jobs": [{"payload": 1}], "x": 1}))
                .await,
            400,
            "invalid_request",
        ),
        (
            s.post(
                "/namespaces/default/topics/t/events",
                json!({"events": [{"data": 1}], "": null}),
            )
            .await,
            400,
            "invalid_request",
        ),
        (
            s.raw("POST", "/namespaces/default/queues/q/lease", b"\r".to_vec())
                .await,
            400,
            "invalid_json",
        ),
        (
            s.call("PUT", "/namespaces/default/queues/q", Some(json!([3])))
                .await,
            400,
            "invalid_request",
        ),
        (
            s.post(jobs, json!({"payload": 1, "priority": 101})).await,
            400,
            "invalid_request",
        ),
        (
            s.post(jobs, json!({"payload": 1, "priority": -101})).await,
            400,
            "invalid_request",
        ),
        (
            s.post(jobs, json!({"payload": 1, "run_at": "tomorrow"}))
                .await,
            400,
            "invalid_request",
        ),
        (
            s.post(jobs, json!({"payload": 1, "delay_ms": -5})).await,
            400,
            "invalid_request",
        ),
        (
            s.post(jobs, json!({"jobs": []})).await,
            400,
            "invalid_request",
        ),
        (
            s.post(jobs, json!({"jobs": vec![json!({"payload": 1}); 1001]}))
                .await,
            400,
            "batch_too_large",
        ),
        (
            s.post(jobs, json!({"payload": "x".repeat(2000)})).await,
            413,
            "payload_too_large",
        ),
        (
            s.raw(
                "POST",
                jobs,
                format!("{{\"payload\":\"{}\"}}", "x".repeat(200_000)).into_bytes(),
            )
            .await,
            413,
            "payload_too_large",
        ),
        (
            s.post(
                "/namespaces/default/queues/bad name/jobs",
                json!({"payload": 1}),
            )
            .await,
            400,
            "invalid_name",
        ),
        (
            s.post("/namespaces/default/queues/q/lease", json!({"max_jobs": 0}))
                .await,
            400,
            "invalid_request",
        ),
        (
            s.post(
                "/namespaces/default/queues/q/lease",
                json!({"max_jobs": 1001}),
            )
            .await,
            400,
            "invalid_request",
        ),
        (
            s.post(
                "/namespaces/default/queues/q/lease",
                json!({"wait_ms": 60001}),
            )
            .await,
            400,
            "invalid_request",
        ),
        (
            s.post("/namespaces/default/queues/q/lease", json!({"lease_ms": 1}))
                .await,
            400,
            "invalid_request",
        ),
        (
            s.get("/namespaces/default/jobs/0190b6a0-0000-7000-8000-000000000000")
                .await,
            404,
            "job_not_found",
        ),
        (
            s.get("/namespaces/default/jobs/not-an-id").await,
            404,
            "job_not_found",
        ),
        (
            s.post(
                "/namespaces/default/jobs/0190b6a0-0000-7000-8000-000000000000/complete",
                json!({"lease_token": "0190b6a0-0000-7000-8000-000000000000.1"}),
            )
            .await,
            404,
            "job_not_found",
        ),
        (
            s.get("/namespaces/default/jobs?state=happy").await,
            400,
            "invalid_request",
        ),
        (
            s.get("/namespaces/default/jobs?limit=0").await,
            400,
            "invalid_request",
        ),
        (
            s.get("/namespaces/default/jobs?cursor=zzz").await,
            400,
            "invalid_request",
        ),
        (
            s.get("/namespaces/default/jobs?tag=novalue").await,
            400,
            "invalid_request",
        ),
        (s.get("/v2/nothing").await, 404, "not_found"),
        (
            s.call("DELETE", "/namespaces/default/queues/q/jobs", None)
                .await,
            405,
            "method_not_allowed",
        ),
    ];
    for (i, (answer, status, code)) in cases.iter().enumerate() {
        assert_eq!(answer.0, *status, "case {i}: {}", answer.1);
        assert_eq!(answer.1["error"]["code"], *code, "case {i}: {}", answer.1);
    }

    for i in 0..3 {
        s.enqueue("full", json!({"payload": i})).await;
    }
    assert_error(
        &s.post(
            "/namespaces/default/queues/full/jobs",
            json!({"payload": 4}),
        )
        .await,
        429,
        "namespace_full",
    );
    let (status, _) = s
        .post("/namespaces/other/queues/full/jobs", json!({"payload": 5}))
        .await;
    assert_eq!(status, 201, "the bound is per namespace");
}

#[tokio::test]
async fn no_input_produces_a_server_error() {
    let (s, _dir) = server().await;
    let id = s.enqueue("fuzz", json!({"payload": 1})).await;
    let paths = [
        "/namespaces/default/queues/fuzz/jobs".to_owned(),
        "/namespaces/default/queues/fuzz/lease".to_owned(),
        "/namespaces/default/queues/fuzz/redrive".to_owned(),
        "/namespaces/default/acks".to_owned(),
        format!("/namespaces/default/jobs/{id}/complete"),
        format!("/namespaces/default/jobs/{id}/fail"),
        format!("/namespaces/default/jobs/{id}/heartbeat"),
        format!("/namespaces/default/jobs/{id}/cancel"),
    ];
    let mut bodies: Vec<Vec<u8>> = [
        "",
        "null",
        "[]",
        "{}",
        "\"x\"",
        "1e999",
        "{\"payload\":1e999}",
        "{\"jobs\":null}",
        "{\"jobs\":[null]}",
        "{\"lease_token\":null}",
        "{\"lease_token\":\"..\"}",
        "{\"complete\":[1,2]}",
        "{\"fail\":[{\"id\":5}]}",
        "{\"ids\":[1]}",
        "{\"max_jobs\":-1}",
        "{\"wait_ms\":1e10}",
        "\u{0}\u{1}",
    ]
    .iter()
    .map(|b| b.as_bytes().to_vec())
    .collect();
    bodies.push(format!("{}1{}", "[".repeat(5000), "]".repeat(5000)).into_bytes());
    let mut rng = fastrand_like(7);
    for _ in 0..20 {
        bodies.push((0..rng() % 64).map(|_| (rng() % 256) as u8).collect());
    }
    for path in &paths {
        for body in &bodies {
            let (status, answer) = s.raw("POST", path, body.clone()).await;
            assert!(
                status < 500,
                "{path} with {:?}: {status} {answer}",
                String::from_utf8_lossy(body)
            );
            if status >= 400 {
                assert!(answer["error"]["code"].is_string(), "{path}: {answer}");
            }
        }
    }
}

/// A tiny deterministic generator, enough for junk bodies.
fn fastrand_like(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let (s, _dir) = server().await;
    assert_eq!(s.get("/healthz").await.0, 200);
    assert_eq!(s.get("/readyz").await.0, 200);
    let id = s.enqueue("m", json!({"payload": 1})).await;
    let token = s.lease("m", json!({})).await[0]["lease_token"]
        .as_str()
        .unwrap()
        .to_owned();
    s.post(
        &format!("/namespaces/default/jobs/{id}/complete"),
        json!({"lease_token": token}),
    )
    .await;
    let text = reqwest::get(format!("{}/metrics", s.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "keel_jobs_enqueued_total{namespace=\"default\",queue=\"m\"} 1",
        "keel_jobs_leased_total{namespace=\"default\",queue=\"m\"} 1",
        "keel_jobs_completed_total{namespace=\"default\",queue=\"m\"} 1",
        "keel_queue_jobs{namespace=\"default\",queue=\"m\",state=\"ready\"} 0",
        "keel_job_wait_seconds_bucket",
        "keel_store_commit_seconds_bucket",
        "keel_store_commit_batch_size_bucket",
    ] {
        assert!(text.contains(needle), "missing {needle} in:\n{text}");
    }
}

#[tokio::test]
async fn sigterm_drains_and_exits_zero() {
    let (mut s, _dir) = server().await;
    let waiting = {
        let url = s.v1("/namespaces/default/queues/drain/lease");
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .json(&json!({"wait_ms": 60000}))
                .send()
                .await
        })
    };
    s.wait_for_gauge("keel_lease_waiters", 1.0).await;
    let started = Instant::now();
    let status = s.terminate().await;
    assert!(status.success(), "{status:?}");
    let answer = waiting
        .await
        .unwrap()
        .expect("the parked long-poll is answered, not cut off");
    assert_eq!(answer.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "a parked long-poll does not hold up the drain"
    );
}

/// Regression: a payload that is valid JSON but has no f64 form (`1e999`) was
/// accepted, then crashed the lease handler while converting it to a `Value`.
#[tokio::test]
async fn payloads_pass_through_verbatim() {
    let (s, _dir) = server().await;
    let (status, _) = s
        .raw(
            "POST",
            "/namespaces/default/queues/raw/jobs",
            br#"{"payload":{"big":1e999,"exact":0.1000000000000000055511151231257827}}"#.to_vec(),
        )
        .await;
    assert_eq!(status, 201);
    let body = reqwest::Client::new()
        .post(s.v1("/namespaces/default/queues/raw/lease"))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        body.contains(r#""payload":{"big":1e999,"exact":0.1000000000000000055511151231257827}"#),
        "{body}"
    );
}

/// Regression: after a 413 for an oversized body the server closed the
/// connection without saying so; a keep-alive client reused it and its next
/// request failed with "incomplete message".
#[tokio::test]
async fn a_refused_oversized_body_does_not_break_the_next_request() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir, &["--max-body-bytes", "10000"]).await;
    let http = reqwest::Client::new();
    let url = s.v1("/namespaces/default/queues/big/jobs");
    let oversized = format!("{{\"payload\":\"{}\"}}", "x".repeat(200_000));
    for _ in 0..20 {
        let refused = http
            .post(&url)
            .body(oversized.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 413);
        assert_eq!(refused.headers()["connection"], "close");
        let next = http
            .post(&url)
            .json(&json!({"payload": 1}))
            .send()
            .await
            .expect("the next request on the same client");
        assert_eq!(next.status(), 201);
    }
}

/// A field of the wrong JSON type is named in JSON's words, not Rust's
/// (regression: "expected i64").
#[tokio::test]
async fn a_wrong_type_is_named_in_jsons_words() {
    let (server, _dir) = server().await;
    let answer = server
        .post(
            "/namespaces/default/queues/q/jobs",
            json!({"payload": 1, "priority": "high"}),
        )
        .await;
    assert_error(&answer, 400, "invalid_request");
    let message = answer.1["error"]["message"].as_str().unwrap();
    assert!(message.contains("expected a whole number"), "{message}");
    assert!(
        !message.contains("i64") && !message.contains("i16"),
        "{message}"
    );
}
