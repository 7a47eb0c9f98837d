//! Flow control through the real binary: a queue's `rate_limit` spaces its
//! leases whoever asks (a parked long-poll wakes at the next slot, not at
//! its timeout), a held job says so in "why waiting", and a bad limit is
//! refused; a keyed queue bounds each tenant's leased jobs, says so in "why
//! waiting", and wakes a parked worker when a tenant's job ends; enqueues of
//! a debounce key collapse into one job that runs once its window closes,
//! with the last payload; a `key_rate_limit` spaces each tenant's leases and
//! a job held by it, or waiting its turn in the fair share, says so.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed check")]

mod common;

use std::time::{Duration, Instant};

use common::{Server, assert_error, lease_at};
use keel_core::Timestamp;
use serde_json::json;

#[tokio::test]
async fn a_rate_limit_spaces_leases_and_wakes_parked_workers_at_each_slot() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    let path = "/namespaces/default/queues/paced";
    let (status, body) = server
        .call(
            "PUT",
            path,
            Some(json!({"rate_limit": {"limit": 5, "period_ms": 1000, "burst": 1}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for i in 0..12 {
        server.enqueue("paced", json!({"payload": i})).await;
    }
    // Two workers parked in long-polls of 10 s: each job comes at its slot.
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..2 {
        let url = server.v1(&format!("{path}/lease"));
        workers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut leases = Vec::new();
            while leases.len() < 3 {
                for job in lease_at(&http, &url, 10, 10_000).await {
                    // When the server leased it: its lease runs out a
                    // lease time later (the same for every job here).
                    let expires: Timestamp =
                        serde_json::from_value(job["lease_expires_at"].clone()).unwrap();
                    leases.push((Instant::now(), expires));
                }
            }
            leases
        }));
    }
    let mut leases = Vec::new();
    for w in workers {
        leases.extend(w.await.unwrap());
    }
    leases.sort();
    // Six jobs at 5 per second: the first at once, the sixth a second later
    // (never sooner), and long before a long-poll's 10 s ran out.
    let last = leases.last().unwrap().0.duration_since(started);
    assert!(last >= Duration::from_millis(950), "six leases in {last:?}");
    assert!(
        last < Duration::from_secs(3),
        "parked leasers woke late: {last:?}"
    );
    // Spaced by the server's clock, 200 ms apart (the answers' arrival
    // times carry the machine's scheduling noise on top).
    let mut at: Vec<Timestamp> = leases.iter().map(|(_, expires)| *expires).collect();
    at.sort();
    for pair in at.windows(2) {
        let gap = pair[1].millis_since(pair[0]);
        assert!(gap >= 195, "two leases {gap} ms apart");
    }
    // A job still waiting says it is the rate limit, and when: on a queue
    // whose next slot is a minute away, so that a slow CLI start on a busy
    // machine still finds it waiting.
    let slow = "/namespaces/default/queues/slow";
    let (status, _) = server
        .call(
            "PUT",
            &format!("/v1{slow}"),
            Some(json!({"rate_limit": {"limit": 1, "period_ms": 60000}})),
        )
        .await;
    assert_eq!(status, 200);
    let ids = [
        server.enqueue("slow", json!({"payload": 1})).await,
        server.enqueue("slow", json!({"payload": 2})).await,
    ];
    assert_eq!(
        server
            .lease("slow", json!({"max_jobs": 2, "wait_ms": 0}))
            .await
            .len(),
        1
    );
    let job = server.job(ids.last().unwrap()).await;
    let gates: Vec<&str> = job["waiting"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["gate"].as_str().unwrap())
        .collect();
    assert!(gates.contains(&"rate_limit"), "{job}");
    let (ok, out, _) = server.cli(&["jobs", "get", ids.last().unwrap()]).await;
    assert!(ok && out.contains("rate limit: 1 per period"), "{out}");

    assert_error(
        &server
            .call(
                "PUT",
                path,
                Some(json!({"rate_limit": {"limit": 0, "period_ms": 1000}})),
            )
            .await,
        400,
        "invalid_request",
    );
    assert_error(
        &server
            .call(
                "PUT",
                path,
                Some(json!({"rate_limit": {"limit": 5, "per": 1000}})),
            )
            .await,
        400,
        "invalid_request",
    );
}

#[tokio::test]
async fn debounced_enqueues_collapse_into_one_job_run_after_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    let jobs = "/namespaces/default/queues/digest/jobs";
    let debounced =
        |n: u32| json!({"payload": {"n": n}, "debounce": {"key": "user-7", "window_ms": 600}});
    let started = Instant::now();
    let (status, first) = server.post(jobs, debounced(1)).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(
        (first["state"].as_str(), first["debounced"].as_bool()),
        (Some("scheduled"), Some(false))
    );
    let (status, second) = server.post(jobs, debounced(2)).await;
    assert_eq!(status, 200, "folded into the first job: {second}");
    assert_eq!(second["id"], first["id"]);
    assert_eq!(second["debounced"], true);
    let (ok, out, err) = server
        .cli(&[
            "enqueue",
            "digest",
            r#"{"n":3}"#,
            "--debounce-key",
            "user-7",
            "--debounce-window-ms",
            "600",
        ])
        .await;
    assert!(ok, "{err}");
    assert!(
        out.contains(first["id"].as_str().unwrap()) && out.contains("debounced"),
        "{out}"
    );

    // One job, leased once the window closes, with the last payload.
    let leased = server
        .lease("digest", json!({"max_jobs": 10, "wait_ms": 10_000}))
        .await;
    let waited = started.elapsed();
    assert_eq!(leased.len(), 1, "{leased:?}");
    assert_eq!(leased[0]["id"], first["id"]);
    assert_eq!(leased[0]["payload"], json!({"n": 3}));
    assert!(
        waited >= Duration::from_millis(550),
        "leased after {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "leased after {waited:?}");

    // The key's job has started: the next enqueue opens a new window.
    let (_, next) = server.post(jobs, debounced(4)).await;
    assert_eq!(next["debounced"], false);
    assert_ne!(next["id"], first["id"]);

    for (body, needle) in [
        (
            json!({"payload": 1, "debounce": {"key": "k", "window_ms": 0}}),
            "window_ms",
        ),
        (json!({"payload": 1, "debounce": {"key": "k"}}), "window_ms"),
        (
            json!({"payload": 1, "idempotency_key": "i", "debounce": {"key": "k", "window_ms": 5}}),
            "not both",
        ),
    ] {
        let answer = server.post(jobs, body).await;
        assert_error(&answer, 400, "invalid_request");
        assert!(answer.1.to_string().contains(needle), "{}", answer.1);
    }
    let answer = server
        .call(
            "PUT",
            "/namespaces/default/schedules/nightly",
            Some(json!({"every_ms": 60_000, "target": {"queue": "digest",
                "job": {"payload": 1, "debounce": {"key": "k", "window_ms": 5}}}})),
        )
        .await;
    assert_error(&answer, 400, "invalid_request");
}

#[tokio::test]
async fn a_keyed_queue_bounds_each_tenant_and_wakes_a_worker_when_one_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    let path = "/namespaces/default/queues/tenants";
    let policy = json!({"key": "tag:tenant", "max_key_concurrency": 1,
                        "fairness": {"weights": {"acme": 2}}});
    let (status, body) = server.call("PUT", path, Some(policy.clone())).await;
    assert_eq!(status, 200, "{body}");
    let (_, queue) = server.get(path).await;
    assert_eq!(queue["policy"]["key"], "tag:tenant", "{queue}");
    assert_eq!(queue["policy"]["fairness"]["weights"]["acme"], 2, "{queue}");

    let tagged = |tenant: &str| json!({"payload": tenant, "tags": {"tenant": tenant}});
    let acme: Vec<String> = [
        server.enqueue("tenants", tagged("acme")).await,
        server.enqueue("tenants", tagged("acme")).await,
    ]
    .into();
    server.enqueue("tenants", tagged("beta")).await;
    let first = server.lease("tenants", json!({"max_jobs": 10})).await;
    let mut tenants: Vec<&str> = first
        .iter()
        .map(|j| j["payload"].as_str().unwrap())
        .collect();
    tenants.sort_unstable();
    assert_eq!(tenants, ["acme", "beta"], "one per tenant");

    let job = server.job(&acme[1]).await;
    let gate = job["waiting"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["gate"] == "key_concurrency")
        .cloned()
        .unwrap_or_else(|| panic!("{job}"));
    assert_eq!(
        gate,
        json!({"gate": "key_concurrency", "key": "acme", "used": 1, "limit": 1})
    );
    let (ok, out, _) = server.cli(&["jobs", "get", &acme[1]]).await;
    assert!(ok && out.contains("key acme: 1/1 leased"), "{out}");

    // A worker parked on the queue gets acme's next job as soon as the
    // first one completes, not at its long-poll's end.
    let url = server.v1(&format!("{path}/lease"));
    let parked = tokio::spawn(async move {
        let started = Instant::now();
        let jobs = lease_at(&reqwest::Client::new(), &url, 10, 10_000).await;
        (jobs, started.elapsed())
    });
    server.wait_for_gauge("keel_lease_waiters", 1.0).await;
    let done = first.iter().find(|j| j["payload"] == "acme").unwrap();
    let (status, body) = server
        .post(
            &format!(
                "/namespaces/default/jobs/{}/complete",
                done["id"].as_str().unwrap()
            ),
            json!({"lease_token": done["lease_token"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (jobs, waited) = parked.await.unwrap();
    assert_eq!(jobs[0]["id"].as_str(), Some(acme[1].as_str()), "{jobs:?}");
    assert!(waited < Duration::from_secs(5), "woke after {waited:?}");

    for (bad, needle) in [
        (json!({"max_key_concurrency": 2}), "needs a key"),
        (json!({"key": "tenant"}), "tag:NAME"),
        (
            json!({"key": "tag:tenant", "fairness": {"weights": {"a": 0}}}),
            "weights",
        ),
        (json!({"key": "tag:tenant", "key_rate": 5}), "key_rate"),
    ] {
        let answer = server.call("PUT", path, Some(bad)).await;
        assert_error(&answer, 400, "invalid_request");
        assert!(answer.1.to_string().contains(needle), "{}", answer.1);
    }
}

#[tokio::test]
async fn a_key_rate_limit_spaces_each_tenant_and_a_waiting_job_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    // Two queues alike but for their key rate: 5 per second for the
    // slots' timing, 1 a minute for the gates a waiting job reports (read
    // long before its slot, however slow the machine).
    let started = Instant::now();
    let mut acme = Vec::new();
    for (queue, limit, period_ms) in [("metered", 5, 1000), ("gated", 1, 60_000)] {
        let path = format!("/namespaces/default/queues/{queue}");
        let rate = json!({"limit": limit, "period_ms": period_ms, "burst": 1});
        let policy = json!({"key": "tag:tenant", "fairness": {}, "key_rate_limit": rate});
        let (status, body) = server.call("PUT", &path, Some(policy)).await;
        assert_eq!(status, 200, "{body}");
        let tagged = |tenant: &str| json!({"payload": tenant, "tags": {"tenant": tenant}});
        let mut ids = Vec::new();
        for _ in 0..4 {
            ids.push(server.enqueue(queue, tagged("acme")).await);
        }
        server.enqueue(queue, tagged("beta")).await;
        let first = server.lease(queue, json!({"max_jobs": 10})).await;
        let mut tenants: Vec<&str> = first
            .iter()
            .map(|j| j["payload"].as_str().unwrap())
            .collect();
        tenants.sort_unstable();
        assert_eq!(tenants, ["acme", "beta"], "one slot per tenant at once");
        acme.push(ids);
    }

    let gated = &acme[1];
    let job = server.job(&gated[2]).await;
    let gates = job["waiting"].as_array().unwrap();
    let rate = gates
        .iter()
        .find(|g| g["gate"] == "key_rate_limit")
        .unwrap_or_else(|| panic!("{job}"));
    assert_eq!((&rate["key"], &rate["limit"]), (&json!("acme"), &json!(1)));
    assert!(rate["eligible_at"].is_string(), "{rate}");
    let fair = gates
        .iter()
        .find(|g| g["gate"] == "fairness")
        .unwrap_or_else(|| panic!("{job}"));
    assert_eq!(
        fair,
        &json!({"gate": "fairness", "key": "acme", "position": 2})
    );
    let (ok, out, _) = server.cli(&["jobs", "get", &gated[2]]).await;
    assert!(
        ok && out.contains("rate limit of key acme: 1 per period"),
        "{out}"
    );

    // A parked worker gets acme's other three at its slots, 200 ms apart
    // by the server's clock (each lease runs out a lease time after it was
    // granted), not at its long-poll's end.
    let mut times = Vec::new();
    let mut granted: Vec<Timestamp> = Vec::new();
    while times.len() < 3 {
        let jobs = server
            .lease("metered", json!({"max_jobs": 10, "wait_ms": 10_000}))
            .await;
        times.extend(std::iter::repeat_n(started.elapsed(), jobs.len()));
        for job in jobs {
            granted.push(serde_json::from_value(job["lease_expires_at"].clone()).unwrap());
        }
    }
    assert!(
        times[2] >= Duration::from_millis(550),
        "three more slots in {times:?}"
    );
    assert!(times[2] < Duration::from_secs(4), "woke late: {times:?}");
    for pair in granted.windows(2) {
        let gap = pair[1].millis_since(pair[0]);
        assert!(gap >= 195, "two slots {gap} ms apart: {granted:?}");
    }

    for (bad, needle) in [
        (
            json!({"key_rate_limit": {"limit": 5, "period_ms": 1000}}),
            "needs a key",
        ),
        (
            json!({"key": "tag:tenant", "key_rate_limit": {"limit": 0, "period_ms": 1000}}),
            "key_rate_limit.limit",
        ),
    ] {
        let path = "/namespaces/default/queues/metered";
        let answer = server.call("PUT", path, Some(bad)).await;
        assert_error(&answer, 400, "invalid_request");
        assert!(answer.1.to_string().contains(needle), "{}", answer.1);
    }
}
