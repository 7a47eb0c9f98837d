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
    let (ok, out, err) = server
        .cli(&["workflow", "apply", good.to_str().unwrap()])
        .await;
    assert!(ok && out.contains("w: version 1"), "{out}{err}");
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
