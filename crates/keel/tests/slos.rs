//! SLOs on the real binary: objectives set in a queue policy (and refused
//! when out of bounds), measured from what workers did, read back from
//! `GET /v1/namespaces/{ns}/slos` and `/metrics`, and alerts published on
//! `keel.alerts`; a topic's objectives measured from its deliveries and
//! failing hand-offs; on two PostgreSQL nodes, the counts of both add up.
//! The burn-rate arithmetic and the alerts' windows are tested with an
//! injected clock in keel-core and keel-engine; here the passes run every
//! 100 ms (`--slo-pass-ms`).

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed check")]

mod common;

use std::time::Duration;

use common::{Server, assert_error};
use keel_store_postgres::testing::TestSchema;
use serde_json::{Value, json};

const POLICY: &str = "/namespaces/default/queues/q";
const ALERTS: &str = "/namespaces/default/topics/keel.alerts";

/// Leases `n` jobs of `q` from `s` and completes or fails each.
async fn work(s: &Server, n: usize, succeed: bool) {
    for _ in 0..n {
        s.enqueue("q", json!({"payload": {}})).await;
    }
    let leased = s
        .lease("q", json!({"max_jobs": n, "wait_ms": 0, "worker_id": "w"}))
        .await;
    assert_eq!(leased.len(), n);
    for job in leased {
        let id = job["id"].as_str().unwrap();
        let (action, body) = if succeed {
            ("complete", json!({"lease_token": job["lease_token"]}))
        } else {
            (
                "fail",
                json!({"lease_token": job["lease_token"], "error": "boom"}),
            )
        };
        let (status, answer) = s
            .post(&format!("/namespaces/default/jobs/{id}/{action}"), body)
            .await;
        assert_eq!(status, 200, "{answer}");
    }
}

/// A float within rounding of `expected` (the budget of 0.99 is 0.01 only
/// up to rounding).
fn close(v: &Value, expected: f64) {
    let got = v.as_f64().unwrap();
    assert!((got - expected).abs() < 1e-6, "{got} is not {expected}");
}

/// The events on `keel.alerts` once there are at least `n` (a long-poll
/// woken by the publish).
async fn alerts(s: &Server, n: usize) -> Vec<Value> {
    let mut events = Vec::new();
    while events.len() < n {
        let url = format!("{ALERTS}/events?after={}&wait_ms=20000", events.len());
        let (status, page) = s.get(&url).await;
        assert_eq!(status, 200, "{page}");
        let page = page["events"].as_array().unwrap().clone();
        assert!(!page.is_empty(), "no alert within 20 s; had {events:#?}");
        events.extend(page.into_iter().map(|e| e["data"].clone()));
    }
    events
}

/// `GET .../slos` until `ready` holds of it (the counts reach the store on
/// each node's next pass), paced; at most 20 s.
async fn slos_until(s: &Server, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, answer) = s.get("/namespaces/default/slos").await;
        assert_eq!(status, 200, "{answer}");
        if ready(&answer) {
            return answer;
        }
        assert!(tokio::time::Instant::now() < deadline, "{answer:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn objectives_are_measured_read_back_and_alert_on_keel_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir, &["--slo-pass-ms", "100"]).await;
    for bad in [
        json!({}),
        json!({"success_ratio": 1.0}),
        json!({"success_ratio": 0}),
        json!({"wait_p99_ms": 0}),
        json!({"wait_p99_ms": 3_600_001}),
        json!({"wait_p99": 5}),
    ] {
        let answer = s
            .call("PUT", &format!("/v1{POLICY}"), Some(json!({"slo": bad})))
            .await;
        assert_error(&answer, 400, "invalid_request");
    }
    let slo = json!({"wait_p99_ms": 60_000, "success_ratio": 0.99});
    let (status, policy) = s
        .call(
            "PUT",
            &format!("/v1{POLICY}"),
            Some(json!({"max_attempts": 1, "slo": slo})),
        )
        .await;
    assert_eq!(status, 200, "{policy}");
    assert_eq!(policy["slo"], slo);
    assert_eq!(s.get(POLICY).await.1["policy"]["slo"], slo);
    // Subscribers make the topic; the alerts land on it.
    assert_eq!(
        s.call("PUT", &format!("/v1{ALERTS}"), Some(json!({})))
            .await
            .0,
        201
    );

    // Half the jobs die: a burn rate of 50 against a 1 % budget, over
    // every window.
    work(&s, 2, true).await;
    work(&s, 2, false).await;
    let fired = alerts(&s, 3).await;
    assert!(
        fired
            .iter()
            .all(|a| a["state"] == "firing" && a["objective"] == "success_ratio"),
        "{fired:#?}"
    );
    let windows: Vec<&str> = fired
        .iter()
        .map(|a| a["long_window"].as_str().unwrap())
        .collect();
    assert_eq!(windows, ["1h", "6h", "3d"]);
    assert_eq!(fired[0]["severity"], "page");
    assert_eq!(
        (&fired[0]["kind"], &fired[0]["name"]),
        (&json!("queue"), &json!("q"))
    );
    // A pass may have counted only some of the outcomes when it fired
    // (2 good and 1 dead burn at 33): above the page's 14.4 either way.
    let burn = fired[0]["burn_rate_short"].as_f64().unwrap();
    assert!((14.4..=50.0 + 1e-6).contains(&burn), "{burn}");

    let answer = slos_until(&s, |a| a["slos"][1]["total"] == 4).await;
    let slos = answer["slos"].as_array().unwrap();
    assert_eq!(slos.len(), 2, "{answer:#}");
    let (wait, success) = (&slos[0], &slos[1]);
    assert_eq!(wait["objective"], "wait_p99_ms");
    assert_eq!(
        (wait["good"].as_u64(), wait["total"].as_u64()),
        (Some(4), Some(4))
    );
    assert_eq!(wait["budget_remaining"], 1.0);
    assert!(wait["value"].as_f64().unwrap() < 60_000.0, "{wait}");
    assert!(
        wait["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["firing"] == false)
    );
    assert_eq!(success["objective"], "success_ratio");
    assert_eq!(success["target"], 0.99);
    assert_eq!(success["value"], 0.5);
    close(&success["burn_rates"]["5m"], 50.0);
    close(&success["burn_rates"]["30d"], 50.0);
    close(&success["budget_remaining"], -49.0);
    let firing: Vec<_> = success["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["long_window"].clone(),
                a["short_window"].clone(),
                a["firing"].clone(),
            )
        })
        .collect();
    assert_eq!(
        firing,
        [
            (json!("1h"), json!("5m"), json!(true)),
            (json!("6h"), json!("30m"), json!(true)),
            (json!("3d"), json!("6h"), json!(true)),
        ]
    );
    s.wait_for_gauge_where("keel_slo_alert_firing", "objective=\"success_ratio\"", 3.0)
        .await;

    let (ok, out, err) = s.cli(&["slos"]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("queue q success_ratio: target 0.99 value 0.5")
            && out.contains("FIRING page 1h/5m, page 6h/30m, ticket 3d/6h"),
        "{out}"
    );

    // Another namespace has none; dropping the objectives drops them.
    assert_eq!(s.get("/namespaces/other/slos").await.1, json!({"slos": []}));
    assert_eq!(
        s.call("PUT", &format!("/v1{POLICY}"), Some(json!({})))
            .await
            .0,
        200
    );
    assert_eq!(
        s.get("/namespaces/default/slos").await.1,
        json!({"slos": []})
    );
    let (ok, out, _) = s.cli(&["slos"]).await;
    assert!(ok && out.starts_with("no objectives in default"), "{out}");
}

#[tokio::test]
async fn on_postgres_every_nodes_counts_add_up() {
    let schema = TestSchema::create("keel_slos").await.unwrap();
    let url = schema.url();
    let a = Server::start_with(&["--database-url", &url, "--slo-pass-ms", "100"]).await;
    let b = Server::start_with(&["--database-url", &url, "--slo-pass-ms", "100"]).await;
    let (status, _) = a
        .call(
            "PUT",
            &format!("/v1{POLICY}"),
            Some(json!({"max_attempts": 1, "slo": {"success_ratio": 0.9}})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = a
        .call("PUT", &format!("/v1{ALERTS}"), Some(json!({})))
        .await;
    assert_eq!(status, 201);
    // The other node has read the objective once it measures it.
    b.wait_for_gauge_where("keel_slo_error_budget_remaining_ratio", "queue=\"q\"", 1.0)
        .await;
    work(&a, 3, true).await;
    work(&b, 1, true).await;
    work(&b, 1, false).await;
    for node in [&a, &b] {
        let answer = slos_until(node, |a| a["slos"][0]["total"] == 5).await;
        let success = &answer["slos"][0];
        assert_eq!(success["good"], 4, "{answer:#}");
        assert_eq!(success["value"], 0.8);
    }
    // 20 % failed against a 10 % budget: a burn rate of 2, under both
    // pages' factors, over the ticket's. One node leads: one event, however
    // many passes both nodes run after it.
    let fired = alerts(&a, 1).await;
    assert_eq!(fired[0]["severity"], "ticket", "{fired:#?}");
    for node in [&a, &b] {
        let passes = node.metric("keel_slo_passes_total", "").await;
        node.wait_for_gauge("keel_slo_passes_total", passes + 2.0)
            .await;
    }
    assert_eq!(alerts(&b, 1).await.len(), 1);
}

#[tokio::test]
async fn a_topics_objectives_count_its_deliveries_and_failed_hand_offs() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir, &["--slo-pass-ms", "100"]).await;
    let topic = "/namespaces/default/topics/orders";
    let answer = s
        .call(
            "PUT",
            &format!("/v1{topic}"),
            Some(json!({"slo": {"success_ratio": 1.5}})),
        )
        .await;
    assert_error(&answer, 400, "invalid_request");
    let slo = json!({"wait_p99_ms": 60_000, "success_ratio": 0.999});
    let (status, put) = s
        .call("PUT", &format!("/v1{topic}"), Some(json!({"slo": slo})))
        .await;
    assert_eq!(status, 201, "{put}");
    assert_eq!(put["slo"], slo);
    assert_eq!(s.get(topic).await.1["slo"], slo);
    let (status, _) = s
        .call("PUT", &format!("/v1{ALERTS}"), Some(json!({})))
        .await;
    assert_eq!(status, 201);
    // A pulled subscription, and one whose workflow is not defined: each
    // hand-off of it fails (and is tried again a second later).
    for (name, spec) in [
        ("pulled", json!({"topic": "orders"})),
        (
            "broken",
            json!({"topic": "orders", "target": {"workflow": "missing"}}),
        ),
    ] {
        let (status, answer) = s
            .call(
                "PUT",
                &format!("/v1/namespaces/default/subscriptions/{name}"),
                Some(spec),
            )
            .await;
        assert!(status == 200 || status == 201, "{answer}");
    }
    let (status, _) = s
        .post(&format!("{topic}/events"), json!({"data": {"n": 1}}))
        .await;
    assert_eq!(status, 201);
    let (status, fetched) = s
        .post(
            "/namespaces/default/subscriptions/pulled/fetch",
            json!({"consumer": "c", "max_events": 10, "wait_ms": 0}),
        )
        .await;
    assert_eq!(status, 200, "{fetched}");
    assert_eq!(fetched["events"].as_array().unwrap().len(), 1);

    let answer = slos_until(&s, |a| {
        a["slos"][0]["total"] == 1 && a["slos"][1]["total"].as_u64() >= Some(1)
    })
    .await;
    let slos = answer["slos"].as_array().unwrap();
    assert_eq!(slos.len(), 2, "{answer:#}");
    assert_eq!(
        (&slos[0]["kind"], &slos[0]["name"]),
        (&json!("topic"), &json!("orders"))
    );
    assert_eq!(slos[0]["objective"], "wait_p99_ms");
    assert_eq!(slos[0]["good"], 1, "the fetch, within the minute");
    assert_eq!(slos[1]["objective"], "success_ratio");
    assert_eq!(slos[1]["good"], 0, "no hand-off succeeded");
    let fired = alerts(&s, 3).await;
    assert!(
        fired.iter().all(|a| a["kind"] == "topic"
            && a["name"] == "orders"
            && a["objective"] == "success_ratio"),
        "{fired:#?}"
    );
}

#[tokio::test]
async fn counts_survive_a_restart_without_waiting_for_a_pass() {
    // Passes an hour apart: only the shutdown's flush and the start's read
    // of the objectives can make these counts.
    let dir = tempfile::tempdir().unwrap();
    let hourly = ["--slo-pass-ms", "3600000"];
    let mut s = Server::start(&dir, &hourly).await;
    let (status, _) = s
        .call(
            "PUT",
            &format!("/v1{POLICY}"),
            Some(json!({"max_attempts": 1, "slo": {"success_ratio": 0.99}})),
        )
        .await;
    assert_eq!(status, 200);
    work(&s, 2, true).await;
    assert!(s.terminate().await.success());
    let mut s = Server::start(&dir, &hourly).await;
    work(&s, 1, false).await;
    assert!(s.terminate().await.success());
    let s = Server::start(&dir, &hourly).await;
    let (status, answer) = s.get("/namespaces/default/slos").await;
    assert_eq!(status, 200);
    let success = &answer["slos"][0];
    assert_eq!(
        (success["good"].as_u64(), success["total"].as_u64()),
        (Some(2), Some(3)),
        "{answer:#}"
    );
}
