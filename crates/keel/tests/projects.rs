//! Projects against the real server, through the real `keel validate`,
//! `plan`, `apply` and `versions`: golden plans and exit codes (0 no
//! change, 2 changes, 1 error); only what the project created is ever
//! deleted; a plan made before the server changed is refused; an apply that
//! fails half-way is undone; and an apply killed with SIGKILL half-way is
//! whole after the restart.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a panic is a failed check"
)]

mod common;

use std::path::Path;

use common::{Server, assert_error};
use serde_json::{Value, json};

/// `keel ARGS --server URL`: exit code, stdout, stderr.
async fn keel(server: &Server, args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .env("KEEL_SERVER", &server.url)
        .output()
        .await
        .expect("the keel binary runs");
    (
        out.status.code().expect("an exit code"),
        String::from_utf8(out.stdout).expect("utf-8"),
        String::from_utf8(out.stderr).expect("utf-8"),
    )
}

fn write(dir: &Path, file: &str, text: &str) {
    let path = dir.join(file);
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

const SHOP: &str = r#"
topics:
  orders: { retention_ms: 86400000 }
queues:
  billing: { max_attempts: 5, lease_ms: 30000 }
  points: { handler: points }
handlers:
  points: { code: handlers/points.js, limits: { cpu_ms: 20 } }
subscriptions:
  billing:
    topic: orders
    start: earliest
    target: { queue: billing }
"#;

const OPS: &str = r#"
namespace = "ops"

[topics.alerts]
dedup_window_ms = 60000
"#;

const CHARGE: &str = r#"
name: charge
timeout_ms: 60000
steps:
  charge: { task: { queue: billing, input: { order: "${{ input.order }}" } } }
"#;

const POINTS: &str = r#"
export default async function (job, ctx) {
  const points = (await ctx.state.get("points")) ?? 0;
  await ctx.state.put("points", points + job.payload.amount);
  return { points: points + job.payload.amount };
}
"#;

fn project(dir: &Path) {
    write(dir, "keel.toml", "name = \"shop\"\n");
    write(dir, "handlers/points.js", POINTS);
    write(dir, "resources/shop.yaml", SHOP);
    write(dir, "resources/ops.toml", OPS);
    write(dir, "workflows/charge.yaml", CHARGE);
}

/// The plan's JSON against a golden file; `KEEL_BLESS=1` writes it.
fn golden(name: &str, found: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/projects")
        .join(name);
    let found: Value = serde_json::from_str(found).expect("JSON on stdout");
    if std::env::var_os("KEEL_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        let text = serde_json::to_string_pretty(&found).expect("JSON") + "\n";
        std::fs::write(&path, text).expect("write golden");
        return;
    }
    let text = std::fs::read_to_string(&path).expect("the golden file (KEEL_BLESS=1 makes it)");
    let want: Value = serde_json::from_str(&text).expect("golden JSON");
    assert_eq!(found, want, "{name} differs from its golden file");
}

#[tokio::test]
async fn plans_and_applies_pin_their_exit_codes_and_json() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&data, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    project(dir.path());

    let (code, out, err) = keel(&server, &["validate", "-C", d]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("shop: 7 resources, valid"), "{out}");

    let (code, out, err) = keel(&server, &["plan", "-C", d, "--json"]).await;
    assert_eq!(code, 2, "changes: exit 2 ({err})");
    golden("create.json", &out);

    let (code, out, err) = keel(&server, &["apply", "-C", d, "--yes", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let applied: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            &applied["version"],
            &applied["state"],
            &applied["change_count"]
        ),
        (&json!(1), &json!("applied"), &json!(7))
    );
    // The handler runs each job on its queue.
    let (status, _) = server
        .call(
            "POST",
            "/namespaces/default/queues/points/jobs",
            Some(json!({"payload": {"amount": 3}, "object": {"type": "customer", "key": "c1"}})),
        )
        .await;
    assert_eq!(status, 201);
    common::eventually("the handler's state", || async {
        let (status, body) = server
            .get("/namespaces/default/objects/customer/c1/state/points")
            .await;
        (status == 200).then_some(body)
    })
    .await;
    let (status, sub) = server
        .get("/namespaces/default/subscriptions/billing")
        .await;
    assert_eq!(status, 200, "{sub}");
    let (status, _) = server.get("/namespaces/ops/topics/alerts").await;
    assert_eq!(status, 200);

    let (code, out, _) = keel(&server, &["plan", "-C", d]).await;
    assert_eq!(code, 0, "no change: exit 0");
    assert!(out.starts_with("No changes"), "{out}");

    // A change and a removal: the fields that change, then the delete.
    write(
        dir.path(),
        "resources/shop.yaml",
        &SHOP
            .replace("retention_ms: 86400000", "retention_ms: 3600000")
            .replace("max_attempts: 5", "max_attempts: 7"),
    );
    std::fs::remove_file(dir.path().join("resources/ops.toml")).unwrap();
    let (code, out, _) = keel(&server, &["plan", "-C", d, "--json"]).await;
    assert_eq!(code, 2);
    golden("change.json", &out);
    let (code, out, _) = keel(&server, &["plan", "-C", d]).await;
    assert_eq!(code, 2);
    assert!(
        out.contains("~ update topic default/orders: retention_ms")
            && out.contains("- delete topic ops/alerts"),
        "{out}"
    );

    // A definition that breaks its schema: exit 1, its file and line.
    write(
        dir.path(),
        "resources/bad.yaml",
        "queues:\n  x:\n    max_attempt: 3\n",
    );
    let (code, _, err) = keel(&server, &["plan", "-C", d]).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("resources/bad.yaml:2: queue default/x"),
        "{err}"
    );
    assert!(err.contains("max_attempt"), "{err}");
    let (code, _, err) = keel(&server, &["validate", "-C", d]).await;
    assert_eq!(code, 1);
    assert!(err.contains("resources/bad.yaml:2"), "{err}");

    // A handler that does not compile: its line in the JavaScript.
    write(dir.path(), "resources/bad.yaml", "topics: {}\n");
    write(
        dir.path(),
        "handlers/points.js",
        "export default function (job) {\n  return job.\n}\n",
    );
    let (code, _, err) = keel(&server, &["validate", "-C", d]).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("resources/shop.yaml:8: handler default/points"),
        "{err}"
    );
    write(dir.path(), "handlers/points.js", POINTS);

    // A reference to nothing the project defines.
    write(
        dir.path(),
        "resources/bad.yaml",
        "subscriptions:\n  lost:\n    topic: nowhere\n",
    );
    let (code, _, err) = keel(&server, &["validate", "-C", d]).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("resources/bad.yaml:2: subscription default/lost names topic \"nowhere\""),
        "{err}"
    );
}

#[tokio::test]
async fn keel_test_runs_a_projects_tests_and_says_what_failed() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&data, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    project(dir.path());
    write(
        dir.path(),
        "tests/points.yaml",
        r#"
description: points add up per customer
steps:
  - enqueue: { queue: points, payload: { amount: 3 }, object: { type: customer, key: c1 } }
  - enqueue: { queue: points, payload: { amount: 4 }, object: { type: customer, key: c1 } }
  - expect: { state: { customer/c1: { points: 7 } } }
"#,
    );
    write(
        dir.path(),
        "tests/retry.yaml",
        r#"
description: a failed job waits out its backoff on the fake clock
steps:
  - enqueue: { queue: billing, payload: { n: 1 }, backoff: { base_ms: 60000, max_ms: 60000, factor: 1.0, jitter: false } }
  - work: { queue: billing, payload: { n: 1 }, fail: down }
  - advance: 30s
  - expect: { jobs: { billing: [ { state: scheduled, attempt: 1 } ] } }
  - advance: 1m
  - work: { queue: billing, result: { ok: true } }
  - expect: { jobs: { billing: [ { state: succeeded } ] } }
"#,
    );
    let (code, out, err) = keel(&server, &["test", "-C", d]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("2 tests: 2 passed, 0 failed"), "{out}");

    // A wrong expectation fails with what was found, and the exit code says so.
    write(
        dir.path(),
        "tests/points.yaml",
        "steps:\n  - enqueue: { queue: points, payload: { amount: 3 }, object: { type: customer, key: c1 } }\n  - expect: { state: { customer/c1: { points: 4 } } }\n",
    );
    let (code, out, _) = keel(&server, &["test", "-C", d, "points"]).await;
    assert_eq!(code, 1);
    assert!(
        out.contains("FAIL tests/points.yaml")
            && out.contains("step 2 (expect): state customer/c1 points: expected 4, found 3"),
        "{out}"
    );
}

#[tokio::test]
async fn only_what_the_project_created_is_ever_deleted() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&data, &[]).await;
    // Made by hand before the project existed.
    let (status, _) = server
        .call("PUT", "/namespaces/default/topics/manual", Some(json!({})))
        .await;
    assert_eq!(status, 201);
    let (status, _) = server
        .call(
            "PUT",
            "/namespaces/default/topics/untouched",
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 201);

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    write(dir.path(), "keel.toml", "name = \"shop\"\n");
    write(
        dir.path(),
        "resources/t.yaml",
        "topics:\n  manual: { retention_ms: 3600000 }\n  made: {}\n",
    );
    let (code, out, err) = keel(&server, &["apply", "-C", d, "--yes"]).await;
    assert_eq!(code, 0, "{out}{err}");

    // Both dropped: the one it made is deleted, the one it adopted released.
    write(dir.path(), "resources/t.yaml", "topics: {}\n");
    let (code, out, _) = keel(&server, &["plan", "-C", d]).await;
    assert_eq!(code, 2);
    assert!(
        out.contains("- delete topic default/made")
            && out.contains("= release topic default/manual"),
        "{out}"
    );
    let (code, _, err) = keel(&server, &["apply", "-C", d, "--yes"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(server.get("/namespaces/default/topics/made").await.0, 404);
    let (status, manual) = server.get("/namespaces/default/topics/manual").await;
    assert_eq!((status, &manual["retention_ms"]), (200, &json!(3_600_000)));
    assert_eq!(
        server.get("/namespaces/default/topics/untouched").await.0,
        200
    );

    // Another project may not take what this one defines.
    write(dir.path(), "resources/t.yaml", "topics:\n  mine: {}\n");
    let (code, _, err) = keel(&server, &["apply", "-C", d, "--yes"]).await;
    assert_eq!(code, 0, "{err}");
    let other = tempfile::tempdir().unwrap();
    write(other.path(), "keel.toml", "name = \"other\"\n");
    write(other.path(), "resources/t.yaml", "topics:\n  mine: {}\n");
    let (code, _, err) = keel(&server, &["plan", "-C", other.path().to_str().unwrap()]).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("409 conflict") && err.contains("belongs to project shop"),
        "{err}"
    );
}

#[tokio::test]
async fn a_plan_made_before_the_server_changed_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&data, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    project(dir.path());
    let plan_file = dir.path().join("reviewed.json");
    let p = plan_file.to_str().unwrap();
    let (code, _, _) = keel(&server, &["plan", "-C", d, "--out", p]).await;
    assert_eq!(code, 2);
    // Someone changes a topic the plan read.
    let (status, _) = server
        .call("PUT", "/namespaces/default/topics/orders", Some(json!({})))
        .await;
    assert_eq!(status, 201);
    let (code, _, err) = keel(&server, &["apply", p, "-C", d]).await;
    assert_eq!(code, 1);
    assert!(err.contains("version_mismatch"), "{err}");
    assert_eq!(
        server.get("/namespaces/default/queues/billing").await.1["policy"]["max_attempts"],
        Value::Null,
        "nothing of the refused plan was applied"
    );
    // Planned again, the reviewed file applies as it is.
    let (code, _, _) = keel(&server, &["plan", "-C", d, "--out", p]).await;
    assert_eq!(code, 2);
    let (code, out, err) = keel(&server, &["apply", p, "-C", d]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Applied version 1 of project shop"), "{out}");

    // The API's own check: a plan is for the project of its path.
    let (_, plan) = server
        .call(
            "POST",
            "/v1/projects/shop/plans",
            Some(json!({"resources": []})),
        )
        .await;
    let answer = server
        .call(
            "POST",
            "/v1/projects/other/versions",
            Some(json!({"plan": plan})),
        )
        .await;
    assert_error(&answer, 400, "invalid_request");
}

#[tokio::test]
async fn an_apply_that_fails_half_way_is_undone() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&data, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    write(dir.path(), "keel.toml", "name = \"shop\"\n");
    write(
        dir.path(),
        "resources/t.yaml",
        "topics:\n  kept: { retention_ms: 60000 }\n",
    );
    let (code, _, err) = keel(&server, &["apply", "-C", d, "--yes"]).await;
    assert_eq!(code, 0, "{err}");
    // `a` is created and `kept` changed before `z` fails on the server's
    // limit on event size (checked only by the server).
    write(
        dir.path(),
        "resources/t.yaml",
        "topics:\n  a: {}\n  kept: { retention_ms: 120000 }\n  z: { max_event_bytes: 999999999999 }\n",
    );
    let (code, _, err) = keel(&server, &["apply", "-C", d, "--yes"]).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("failed and was undone") && err.contains("topic default/z"),
        "{err}"
    );
    assert_eq!(server.get("/namespaces/default/topics/a").await.0, 404);
    let (_, kept) = server.get("/namespaces/default/topics/kept").await;
    assert_eq!(
        kept["retention_ms"], 60_000,
        "the change to kept was undone"
    );
    let (code, out, _) = keel(&server, &["versions", "list", "-C", d, "--json"]).await;
    assert_eq!(code, 0);
    let list: Value = serde_json::from_str(&out).unwrap();
    let states: Vec<(&Value, &Value)> = list["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (&v["version"], &v["state"]))
        .collect();
    assert_eq!(
        states,
        vec![
            (&json!(2), &json!("failed")),
            (&json!(1), &json!("applied"))
        ]
    );
}

#[tokio::test]
async fn an_apply_killed_half_way_is_whole_after_the_restart() {
    const TOPICS: usize = 400;
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::start(&data, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    write(dir.path(), "keel.toml", "name = \"big\"\n");
    write(dir.path(), "resources/t.yaml", "topics:\n  old: {}\n");
    let (code, _, err) = keel(&server, &["apply", "-C", d, "--yes"]).await;
    assert_eq!(code, 0, "{err}");
    let mut text = String::from("topics:\n");
    for i in 0..TOPICS {
        text.push_str(&format!("  t{i:04}: {{}}\n"));
    }
    write(dir.path(), "resources/t.yaml", &text);
    let (code, _, _) = keel(&server, &["plan", "-C", d]).await;
    assert_eq!(code, 2);

    let url = server.url.clone();
    let dir_arg = d.to_owned();
    let apply = tokio::spawn(async move {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(["apply", "-C", &dir_arg, "--yes"])
            .env("KEEL_SERVER", url)
            .output()
            .await
    });
    // Kill it once some of the new topics exist, and not all.
    let seen = loop {
        let (_, list) = server.get("/namespaces/default/topics").await;
        let n = list["topics"].as_array().map_or(0, Vec::len);
        if n > 2 {
            break n;
        }
        tokio::task::yield_now().await;
    };
    server.kill9().await;
    let _ = apply.await;
    assert!(
        seen < TOPICS,
        "the kill came after the apply ({seen} topics)"
    );

    let server = Server::start(&data, &[]).await;
    let (_, list) = server.get("/namespaces/default/topics").await;
    let names: Vec<&str> = list["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names.len(),
        TOPICS,
        "all of the new version, none of the old"
    );
    assert!(!names.contains(&"old"));
    let (code, out, _) = keel(&server, &["versions", "list", "-C", d]).await;
    assert_eq!(code, 0);
    assert!(
        out.lines().next().unwrap().contains("big v2  applied"),
        "{out}"
    );
    let (code, _, _) = keel(&server, &["plan", "-C", d]).await;
    assert_eq!(code, 0, "nothing left to apply");
}

#[tokio::test]
async fn two_nodes_applying_the_same_plan_make_one_version() {
    let schema = keel_store_postgres::testing::TestSchema::create("keel_projects")
        .await
        .unwrap();
    let a = Server::start_with(&["--database-url", &schema.url()]).await;
    let b = Server::start_with(&["--database-url", &schema.url()]).await;
    let resources = json!({"resources": [
        {"kind": "topic", "namespace": "default", "name": "orders", "spec": {}},
        {"kind": "queue", "namespace": "default", "name": "billing", "spec": {"max_attempts": 3}},
    ]});
    let (status, plan) = a
        .call("POST", "/v1/projects/shop/plans", Some(resources.clone()))
        .await;
    assert_eq!(status, 200, "{plan}");
    let (status, same) = b
        .call("POST", "/v1/projects/shop/plans", Some(resources.clone()))
        .await;
    assert_eq!((status, &same), (200, &plan), "both nodes plan alike");

    let body = json!({"plan": plan});
    let (first, second) = tokio::join!(
        a.call("POST", "/v1/projects/shop/versions", Some(body.clone())),
        b.call("POST", "/v1/projects/shop/versions", Some(body.clone())),
    );
    let mut statuses = [first.0, second.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 412], "{first:?} {second:?}");
    let (_, versions) = b.get("/v1/projects/shop/versions").await;
    assert_eq!(
        versions["versions"].as_array().unwrap().len(),
        1,
        "{versions}"
    );
    let (_, again) = b
        .call("POST", "/v1/projects/shop/plans", Some(resources))
        .await;
    assert_eq!(again["changes"], json!([]), "{again}");
    assert_eq!(again["base_version"], 1);
}

#[tokio::test]
async fn a_rollback_returns_to_a_versions_definitions_as_a_new_version() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&data, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    write(dir.path(), "keel.toml", "name = \"shop\"\n");
    write(
        dir.path(),
        "resources/t.yaml",
        "topics:\n  a: { retention_ms: 3600000 }\n",
    );
    assert_eq!(keel(&server, &["apply", "-C", d, "--yes"]).await.0, 0);
    write(
        dir.path(),
        "resources/t.yaml",
        "topics:\n  a: { retention_ms: 7200000 }\n  b: {}\n",
    );
    assert_eq!(keel(&server, &["apply", "-C", d, "--yes"]).await.0, 0);

    let (code, out, err) = keel(&server, &["versions", "rollback", "1", "-C", d, "--yes"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("~ update topic default/a: retention_ms")
            && out.contains("- delete topic default/b")
            && out.contains("Applied version 3 of project shop"),
        "{out}"
    );
    let (_, a) = server.get("/namespaces/default/topics/a").await;
    assert_eq!(a["retention_ms"], 3_600_000);
    assert_eq!(server.get("/namespaces/default/topics/b").await.0, 404);
    let (code, out, _) = keel(&server, &["versions", "list", "-C", d]).await;
    assert_eq!(code, 0);
    assert!(
        out.lines().next().unwrap().contains("shop v3  applied")
            && out.contains("(rollback to version 1)"),
        "{out}"
    );
    // Without a terminal, a rollback that would change something asks for --yes.
    let (code, _, err) = keel(&server, &["versions", "rollback", "2", "-C", d]).await;
    assert_eq!(code, 1);
    assert!(err.contains("--yes"), "{err}");
}
