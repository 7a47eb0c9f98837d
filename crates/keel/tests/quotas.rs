//! Namespace quotas on the real binary: set and read with their usage by
//! the roles that may, sizes refused with 429 `quota_exceeded` naming the
//! quota, rates with 429 `rate_limited` and `Retry-After`, stored bytes,
//! and all held across three PostgreSQL nodes.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed check")]

mod common;

use common::Server;
use keel_store_postgres::testing::TestSchema;
use serde_json::{Value, json};

fn job() -> Value {
    json!({"payload": {"n": 1}})
}

#[tokio::test]
async fn quotas_are_set_by_admins_read_with_usage_and_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let (s, admin) = Server::start_secured(&dir, &[]).await;
    let ops = s
        .mint(
            &admin,
            json!({"name": "ops", "role": "operator", "namespaces": ["acme"]}),
        )
        .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let quotas = json!({"max_jobs": 3, "max_schedules": 1, "max_subscriptions": 1});
    let (status, _) = s
        .call_as(
            Some(&ops),
            "PUT",
            "/v1/namespaces/acme",
            Some(quotas.clone()),
        )
        .await;
    assert_eq!(status, 403, "an operator sets no quotas");
    let (status, set) = s
        .call_as(
            Some(&admin),
            "PUT",
            "/v1/namespaces/acme",
            Some(quotas.clone()),
        )
        .await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(set["quotas"], quotas);
    for (body, words) in [
        (json!({"max_bytes": 0}), "max_bytes"),
        (
            json!({"max_enqueue_per_second": 0}),
            "max_enqueue_per_second",
        ),
        (json!({"max_jobs": 0}), "max_jobs"),
    ] {
        let (status, answer) = s
            .call_as(Some(&admin), "PUT", "/v1/namespaces/acme", Some(body))
            .await;
        assert_eq!(status, 400, "{answer}");
        assert!(
            answer["error"]["message"].as_str().unwrap().contains(words),
            "{answer}"
        );
    }

    let enqueue = |n: usize| {
        let (s, ops) = (&s, ops.clone());
        async move {
            let jobs: Vec<Value> = (0..n).map(|_| job()).collect();
            s.call_as(
                Some(&ops),
                "POST",
                "/v1/namespaces/acme/queues/q/jobs",
                Some(json!({"jobs": jobs})),
            )
            .await
        }
    };
    assert_eq!(enqueue(2).await.0, 201);
    let (status, body) = enqueue(2).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (429, &json!("quota_exceeded"))
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_jobs"),
        "{body}"
    );
    assert_eq!(enqueue(1).await.0, 201);
    let schedule = json!({"every_ms": 60000, "target": {"queue": "r", "job": {"payload": {}}}});
    for (kind, body, quota) in [
        ("schedules", schedule, "max_schedules"),
        (
            "subscriptions",
            json!({"topic": "orders"}),
            "max_subscriptions",
        ),
    ] {
        let put = |name: &str| {
            let path = format!("/v1/namespaces/acme/{kind}/{name}");
            let (s, ops, body) = (&s, ops.clone(), body.clone());
            async move { s.call_as(Some(&ops), "PUT", &path, Some(body)).await }
        };
        assert_eq!(put("a").await.0, 201);
        let (status, answer) = put("b").await;
        assert_eq!(status, 429, "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(quota), "{message}");
    }

    // The namespace's own roles read its quotas and usage; admins list them.
    let (status, got) = s
        .call_as(Some(&ops), "GET", "/v1/namespaces/acme", None)
        .await;
    assert_eq!(status, 200);
    // Three payloads of `{"n":1}`, 7 bytes each.
    assert_eq!(
        got["usage"],
        json!({"jobs": 3, "schedules": 1, "subscriptions": 1, "bytes": 21})
    );
    assert_eq!(got["quotas"], quotas);
    assert_eq!(
        s.call_as(Some(&ops), "GET", "/v1/namespaces", None).await.0,
        403
    );
    let (status, list) = s.call_as(Some(&admin), "GET", "/v1/namespaces", None).await;
    assert_eq!(status, 200);
    assert_eq!(list["namespaces"][0]["namespace"], "acme");
    // A namespace without quotas shows none, and its usage.
    let (_, plain) = s
        .call_as(Some(&admin), "GET", "/v1/namespaces/globex", None)
        .await;
    assert_eq!(plain["quotas"], json!({}));
}

#[tokio::test]
async fn a_spent_rate_answers_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir, &[]).await;
    let (status, _) = s
        .call(
            "PUT",
            "/v1/namespaces/default",
            Some(json!({"max_publish_per_second": 5})),
        )
        .await;
    assert_eq!(status, 200);
    let publish = || {
        reqwest::Client::new()
            .post(s.v1("/namespaces/default/topics/t/events"))
            .json(&json!({"data": {"n": 1}}))
            .send()
    };
    let mut accepted = 0;
    let started = std::time::Instant::now();
    let refused = loop {
        let answer = publish().await.unwrap();
        if answer.status() == 429 {
            break answer;
        }
        assert_eq!(answer.status(), 201);
        accepted += 1;
        // The burst of 5, and what the rate gave back meanwhile (one every
        // 200 ms: a loaded machine's publishes can take that long).
        let refilled = (started.elapsed().as_millis() / 200) as usize;
        assert!(accepted <= 5 + refilled, "more than the burst got through");
    };
    assert!(accepted >= 4, "the burst was {accepted}");
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(retry, 1);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_publish_per_second of 5")
    );
    // Enqueueing has no quota here: not limited.
    for _ in 0..10 {
        let (status, _) = s.post("/namespaces/default/queues/q/jobs", job()).await;
        assert_eq!(status, 201);
    }
}

/// A payload of exactly `n` bytes of JSON text.
fn sized(n: usize) -> Value {
    json!("x".repeat(n - 2))
}

#[tokio::test]
async fn max_bytes_refuses_new_payloads_and_events_past_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir, &[]).await;
    let put = |quotas: Value| {
        let s = &s;
        async move { s.call("PUT", "/v1/namespaces/acme", Some(quotas)).await.0 }
    };
    assert_eq!(put(json!({"max_bytes": 250})).await, 200);
    let jobs = "/v1/namespaces/acme/queues/q/jobs";
    let batch = json!({"jobs": [{"payload": sized(100)}, {"payload": sized(100)}]});
    assert_eq!(s.post(jobs, batch).await.0, 201);
    let (status, refused) = s.post(jobs, json!({"payload": sized(51)})).await;
    assert_eq!(
        (status, &refused["error"]["code"]),
        (429, &json!("quota_exceeded"))
    );
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("max_bytes") && message.contains("251"),
        "{message}"
    );
    // Events count against the same quota.
    let events = "/v1/namespaces/acme/topics/t/events";
    assert_eq!(s.post(events, json!({"data": sized(50)})).await.0, 201);
    let (status, refused) = s.post(events, json!({"data": sized(1 + 2)})).await;
    assert_eq!(status, 429, "{refused}");
    // A result is never refused, and counts.
    let (_, leased) = s
        .post("/v1/namespaces/acme/queues/q/lease", json!({"max_jobs": 1}))
        .await;
    let done = &leased["jobs"][0];
    let (status, _) = s
        .post(
            &format!(
                "/v1/namespaces/acme/jobs/{}/complete",
                done["id"].as_str().unwrap()
            ),
            json!({"lease_token": done["lease_token"], "result": sized(40)}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, got) = s.get("/v1/namespaces/acme").await;
    assert_eq!(got["usage"]["bytes"], 290);
    // Another namespace has no such quota.
    assert_eq!(
        s.post(
            "/v1/namespaces/other/queues/q/jobs",
            json!({"payload": sized(1000)})
        )
        .await
        .0,
        201
    );
    // Raised: room again at once.
    assert_eq!(put(json!({"max_bytes": 400})).await, 200);
    assert_eq!(s.post(jobs, json!({"payload": sized(51)})).await.0, 201);
}

#[tokio::test]
async fn quotas_hold_across_three_nodes() {
    let schema = TestSchema::create("keel_quotas").await.unwrap();
    let url = schema.url();
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Server::start_with(&["--database-url", &url]).await);
    }
    let (status, _) = nodes[0]
        .call(
            "PUT",
            "/v1/namespaces/default",
            Some(json!({"max_enqueue_per_second": 10, "max_subscriptions": 2})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = nodes[0]
        .call("PUT", "/v1/namespaces/big", Some(json!({"max_bytes": 150})))
        .await;
    assert_eq!(status, 200);
    // A node measures what the others stored before its first admission.
    let big = "/v1/namespaces/big/queues/q/jobs";
    assert_eq!(
        nodes[1].post(big, json!({"payload": sized(100)})).await.0,
        201
    );
    let (status, refused) = nodes[2].post(big, json!({"payload": sized(100)})).await;
    assert_eq!(status, 429, "{refused}");
    assert_eq!(
        nodes[2].post(big, json!({"payload": sized(50)})).await.0,
        201
    );
    // Every node at once: the namespace's budget is one, wherever the calls land.
    let started = std::time::Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..30 {
        let url = nodes[i % 3].v1("/namespaces/default/queues/q/jobs");
        calls.spawn(async move {
            reqwest::Client::new()
                .post(url)
                .json(&job())
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        });
    }
    let statuses = calls.join_all().await;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let accepted = statuses.iter().filter(|s| **s == 201).count() as u64;
    assert!(
        statuses.iter().all(|s| [201, 429].contains(s)),
        "{statuses:?}"
    );
    // A second's burst, plus the pace of the time the calls took.
    assert!(accepted >= 10, "{accepted} accepted");
    assert!(
        accepted <= 10 + elapsed_ms / 100 + 1,
        "{accepted} accepted in {elapsed_ms} ms"
    );
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..6 {
        let url = nodes[i % 3].v1(&format!("/namespaces/default/subscriptions/s{i}"));
        calls.spawn(async move {
            reqwest::Client::new()
                .put(url)
                .json(&json!({"topic": "orders"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        });
    }
    let statuses = calls.join_all().await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        4,
        "{statuses:?}"
    );
    drop(nodes);
    drop(schema);
}
