//! Flow control through the real binary: a queue's `rate_limit` spaces its
//! leases whoever asks (a parked long-poll wakes at the next slot, not at
//! its timeout), a held job says so in "why waiting", and a bad limit is
//! refused; enqueues of a debounce key collapse into one job that runs
//! once its window closes, with the last payload.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed check")]

mod common;

use std::time::{Duration, Instant};

use common::{Server, assert_error};
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
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(server.enqueue("paced", json!({"payload": i})).await);
    }
    // Two workers parked in long-polls of 10 s: each job comes at its slot.
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..2 {
        let url = server.v1(&format!("{path}/lease"));
        workers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut times = Vec::new();
            while times.len() < 3 {
                let answer: serde_json::Value = http
                    .post(&url)
                    .json(&json!({"max_jobs": 10, "wait_ms": 10_000}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let n = answer["jobs"].as_array().unwrap().len();
                times.extend(std::iter::repeat_n(Instant::now(), n));
            }
            times
        }));
    }
    let mut times = Vec::new();
    for w in workers {
        times.extend(w.await.unwrap());
    }
    times.sort();
    // Six jobs at 5 per second: the first at once, the sixth a second later
    // (never sooner), and long before a long-poll's 10 s ran out.
    let last = times.last().unwrap().duration_since(started);
    assert!(last >= Duration::from_millis(950), "six leases in {last:?}");
    assert!(
        last < Duration::from_secs(3),
        "parked leasers woke late: {last:?}"
    );
    for pair in times.windows(2) {
        let gap = pair[1].duration_since(pair[0]);
        assert!(
            gap >= Duration::from_millis(150),
            "two leases {gap:?} apart"
        );
    }
    // A job still waiting says it is the rate limit, and when.
    let job = server.job(ids.last().unwrap()).await;
    let gates: Vec<&str> = job["waiting"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["gate"].as_str().unwrap())
        .collect();
    assert!(gates.contains(&"rate_limit"), "{job}");
    let (ok, out, _) = server.cli(&["jobs", "get", ids.last().unwrap()]).await;
    assert!(ok && out.contains("rate limit: 5 per period"), "{out}");

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
    let (_, second) = server.post(jobs, debounced(2)).await;
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
