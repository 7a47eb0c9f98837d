//! The admin commands, run as a user would: the real binary against a real server.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed check")]

mod common;

use common::Server;
use serde_json::Value;

#[tokio::test]
async fn enqueue_inspect_and_list_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;

    let (ok, out, err) = server
        .cli(&[
            "enqueue",
            "emails",
            r#"{"to":"ada@example.com"}"#,
            "--priority",
            "5",
            "--tag",
            "tenant=acme",
            "--json",
        ])
        .await;
    assert!(ok, "{err}");
    let enqueued: Value = serde_json::from_str(&out).unwrap();
    let id = enqueued["id"].as_str().unwrap();
    assert_eq!(enqueued["state"], "ready");

    let (ok, out, _) = server
        .cli(&["enqueue", "emails", r#"{"n":2}"#, "--delay-ms", "60000"])
        .await;
    assert!(ok);
    assert!(
        out.trim_end().ends_with("scheduled"),
        "human output names the state: {out}"
    );

    let (ok, out, _) = server.cli(&["jobs", "get", id]).await;
    assert!(ok);
    for needle in [
        id,
        "state:        ready",
        "priority:     5",
        "tags:         tenant=acme",
        r#"payload:      {"to":"ada@example.com"}"#,
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
    let (ok, out, _) = server.cli(&["jobs", "get", id, "--json"]).await;
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["payload"]["to"],
        "ada@example.com"
    );

    let (ok, out, _) = server
        .cli(&["jobs", "list", "--queue", "emails", "--state", "ready"])
        .await;
    assert!(ok);
    assert_eq!(out.lines().count(), 2, "a header and one ready job:\n{out}");
    assert!(out.lines().nth(1).unwrap().starts_with(id));
    // A tag filter takes the form the tag was set in, and the API's
    // (regression: each command refused the other's form).
    for tag in ["tenant=acme", "tenant:acme"] {
        let (ok, out, err) = server.cli(&["jobs", "list", "--tag", tag]).await;
        assert!(ok, "{tag}: {err}");
        assert!(out.lines().any(|l| l.starts_with(id)), "{tag}:\n{out}");
    }
    let (ok, _, err) = server.cli(&["jobs", "list", "--tag", "tenant"]).await;
    assert!(!ok && err.contains("key:value (or key=value)"), "{err}");

    let (ok, out, _) = server.cli(&["queues", "stats", "emails"]).await;
    assert!(ok);
    assert!(
        out.contains("ready      1") && out.contains("scheduled  1"),
        "{out}"
    );
    let (ok, out, _) = server.cli(&["queues", "stats", "emails", "--json"]).await;
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["counts"]["scheduled"],
        1
    );
}

#[tokio::test]
async fn errors_are_reported_with_their_code_and_a_failing_exit() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    let (ok, _, err) = server
        .cli(&["jobs", "get", "0190b6a0-0000-7000-8000-000000000000"])
        .await;
    assert!(!ok);
    assert!(err.contains("404 job_not_found"), "{err}");
    let (ok, _, err) = server.cli(&["enqueue", "q", "{not json"]).await;
    assert!(!ok);
    assert!(err.contains("not JSON"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflows_validate_apply_run_and_show_their_dag() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "name: w\nsteps:\n  a: { needs: [b], task: { queue: q } }\n  b: { needs: [a], sleep: { duration_ms: 1 } }\n  c: { needs: [a], sleep: {} }\n").unwrap();
    let (ok, _, err) = server
        .cli(&["workflow", "validate", bad.to_str().unwrap()])
        .await;
    assert!(!ok);
    assert!(
        err.contains("steps.c.sleep: give exactly one of duration_ms or until"),
        "{err}"
    );
    assert!(!err.contains("unknown step"), "{err}");
    assert!(err.contains("cycle"), "{err}");

    let good = dir.path().join("w.yaml");
    std::fs::write(&good, "name: w\nsteps:\n  a: { sleep: { duration_ms: 1 } }\n  b: { needs: [a], sleep: { duration_ms: 1 } }\n").unwrap();
    let (ok, out, _) = server
        .cli(&["workflow", "validate", good.to_str().unwrap()])
        .await;
    assert!(ok && out.contains("valid (2 steps)"), "{out}");
    let (ok, out, _) = server.cli(&["workflow", "list"]).await;
    assert!(ok && out.contains("no workflows in default"), "{out}");
    let (ok, out, err) = server
        .cli(&["workflow", "apply", good.to_str().unwrap()])
        .await;
    assert!(ok && out.contains("w: version 1"), "{out}{err}");
    let (ok, out, err) = server.cli(&["workflow", "list"]).await;
    assert!(ok && out.starts_with("w  v1  "), "{out}{err}");
    let (ok, out, err) = server.cli(&["workflow", "run", "w", "--wait"]).await;
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("succeeded") && out.contains("✓ b") && out.contains("← a"),
        "{out}"
    );
    let id = out.split_whitespace().nth(1).unwrap().to_owned();
    let (ok, out, _) = server.cli(&["run", "get", &id, "--json"]).await;
    assert!(ok);
    let run: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(run["steps"]["b"]["state"], "succeeded");
}

#[tokio::test]
async fn topics_publish_tail_and_subscriptions_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    let (ok, out, err) = server
        .cli(&["topic", "put", "orders", "--retention-ms", "3600000"])
        .await;
    assert!(ok, "{err}");
    assert!(out.contains("orders  head 0"), "{out}");
    let (ok, out, err) = server
        .cli(&[
            "publish",
            "orders",
            r#"{"total":120}"#,
            "--key",
            "c1",
            "--type",
            "order.created",
            "--id",
            "o1",
        ])
        .await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "o1 seq 1");
    let (_, out, _) = server.cli(&["publish", "orders", "2", "--id", "o1"]).await;
    assert!(out.contains("duplicate"), "{out}");

    // `tail` follows: it prints what is there, then what is published next.
    let mut tail = tokio::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .args([
            "tail",
            "orders",
            "--from",
            "earliest",
            "--json",
            "--server",
            &server.url,
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(tail.stdout.take().unwrap()));
    let first: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(
        (first["seq"].as_u64(), first["key"].as_str()),
        (Some(1), Some("c1"))
    );
    server.cli(&["publish", "orders", r#""next""#]).await;
    let next: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(
        (next["seq"].as_u64(), next["data"].as_str()),
        (Some(2), Some("next"))
    );
    tail.kill().await.unwrap();

    let file = dir.path().join("billing.yaml");
    std::fs::write(
        &file,
        "name: billing\ntopic: orders\nstart: earliest\nfilter: { if: 'event.data.total > 100' }\n",
    )
    .unwrap();
    let (ok, out, err) = server
        .cli(&["subscription", "put", file.to_str().unwrap()])
        .await;
    assert!(ok, "{err}");
    assert!(out.starts_with("billing  topic orders"), "{out}");
    let (ok, out, _) = server
        .cli(&["subscription", "get", "billing", "--json"])
        .await;
    assert!(ok);
    let got: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(got[0]["lag"], 2);
    let (ok, out, _) = server
        .cli(&["subscription", "seek", "billing", "latest", "--json"])
        .await;
    assert!(ok);
    let moved: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(moved[0]["position"], 2);
    let (ok, out, _) = server.cli(&["subscription", "pause", "billing"]).await;
    assert!(ok && out.contains("Paused"), "{out}");
    let (ok, out, _) = server
        .cli(&["subscription", "list", "--topic", "orders"])
        .await;
    assert!(ok && out.contains("billing"), "{out}");
    let (ok, _, err) = server.cli(&["topic", "get", "nope"]).await;
    assert!(!ok && err.contains("not_found"), "{err}");
}

/// Every file the README's CLI block names is shipped, and the server takes
/// it as it is (regression: the README named files no one had).
#[tokio::test]
async fn the_readmes_example_files_are_accepted_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/cli");
    let readme = include_str!("../../../README.md");
    for (kind, file, name) in [
        ("subscription", "billing.yaml", "billing"),
        ("source", "github.yaml", "github"),
        ("endpoint", "crm.yaml", "crm"),
        ("schedule", "daily-report.yaml", "daily-report"),
    ] {
        let command = format!("keel {kind} put examples/cli/{file}");
        assert!(readme.contains(&command), "the README runs `{command}`");
        let path = examples.join(file);
        let (ok, _, err) = server.cli(&[kind, "put", path.to_str().unwrap()]).await;
        assert!(ok, "{file}: {err}");
        let (ok, out, err) = server.cli(&[kind, "get", name]).await;
        assert!(ok && out.contains(name), "{kind} get {name}: {out} {err}");
    }
}

/// The README's push queue example, in its order: the endpoint, then the
/// queue that names it (regression: the README set the queue alone, and it
/// answered 404 for the endpoint).
#[tokio::test]
async fn the_readmes_push_queue_example_runs_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    let readme = include_str!("../../../README.md");
    let endpoint = readme
        .find("endpoints/resize-fn")
        .expect("the README creates the endpoint");
    let queue = readme
        .find("queues/resize \\")
        .expect("the README sets the push queue");
    assert!(endpoint < queue, "the endpoint comes first");
    let (status, body) = server
        .call(
            "PUT",
            "/v1/namespaces/default/endpoints/resize-fn",
            Some(serde_json::json!({"url": "https://resize.example.com/run", "timeout_ms": 30000})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = server
        .call(
            "PUT",
            "/v1/namespaces/default/queues/resize",
            Some(serde_json::json!({"push": {"endpoint": "resize-fn", "concurrency": 16}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// An operator's day by hand: pause and resume a queue, lease, fail and
/// complete jobs with their lease tokens, redrive the dead, cancel a job.
#[tokio::test]
async fn an_operators_day_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    let (ok, out, err) = server.cli(&["queues", "pause", "ops"]).await;
    assert!(ok && out.contains("queue default/ops paused"), "{out}{err}");
    let enqueue = |payload: &'static str| {
        let server = &server;
        async move {
            let (ok, out, err) = server.cli(&["enqueue", "ops", payload]).await;
            assert!(ok, "{err}");
            out.split_whitespace().next().unwrap().to_owned()
        }
    };
    let first = enqueue(r#"{"n":1}"#).await;
    let (ok, out, _) = server.cli(&["jobs", "lease", "ops"]).await;
    assert!(ok && out.contains("no job ready on ops"), "paused: {out}");
    let (ok, out, err) = server.cli(&["queues", "resume", "ops", "--json"]).await;
    assert!(ok, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["paused"],
        false
    );

    // Lease it, fail it for good, redrive it, lease it again and complete it.
    let token = |out: &str| {
        out.split("lease token ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap()
            .to_owned()
    };
    let (ok, out, err) = server.cli(&["jobs", "lease", "ops", "--max", "1"]).await;
    assert!(ok && out.starts_with(&first), "{out}{err}");
    let (ok, out, err) = server
        .cli(&[
            "jobs",
            "fail",
            &token(&out),
            "--error",
            "by hand",
            "--no-retry",
        ])
        .await;
    assert!(ok && out.contains("dead"), "{out}{err}");
    let (ok, out, err) = server.cli(&["jobs", "redrive", "ops"]).await;
    assert!(ok && out.contains("redriven: 1"), "{out}{err}");
    let (ok, leased, _) = server.cli(&["jobs", "lease", "ops"]).await;
    assert!(ok && leased.starts_with(&first), "{leased}");
    let (ok, out, err) = server
        .cli(&[
            "jobs",
            "complete",
            &token(&leased),
            "--result",
            r#"{"ok":true}"#,
        ])
        .await;
    assert!(ok && out.contains("succeeded"), "{out}{err}");
    // The same token again: refused with the server's code, and a failing exit.
    let (ok, _, err) = server.cli(&["jobs", "complete", &token(&leased)]).await;
    assert!(!ok && err.contains("lease_lost"), "{err}");
    let job = server.job(&first).await;
    assert_eq!(job["result"], serde_json::json!({"ok": true}));

    let second = enqueue(r#"{"n":2}"#).await;
    let (ok, out, err) = server.cli(&["jobs", "cancel", &second]).await;
    assert!(ok && out.contains("cancelled"), "{out}{err}");
}
