//! The README's workflow walk-through, as a newcomer runs it: a server, the
//! one-command stand-ins for the workers and the billing service
//! (`examples/provision/stand_in.py`), and the CLI. `--wait --timeout` says
//! what a run waits on: a queue no worker serves, then the signal to send.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed check")]

mod common;

use std::process::Stdio;

use common::Server;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Reads the stand-ins' output until a line starts with `prefix`.
async fn line_starting(lines: &mut Lines<BufReader<ChildStdout>>, prefix: &str) -> String {
    loop {
        let line = lines
            .next_line()
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("the stand-ins exited before printing {prefix:?}"));
        if line.starts_with(prefix) {
            return line;
        }
    }
}

fn stand_ins(server: &Server) -> Child {
    tokio::process::Command::new("python3")
        .arg(root().join("examples/provision/stand_in.py"))
        .args([&server.url, "--billing-port", "0"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn the_provisioning_example_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &["--allow-private-http"]).await;
    let definition = root().join("examples/workflows/provision-account.yaml");
    let (ok, _, err) = server
        .cli(&["workflow", "apply", definition.to_str().unwrap()])
        .await;
    assert!(ok, "{err}");

    // No worker yet: the wait gives up and names the queue nobody serves.
    let input =
        json!({"org_id": "early", "billing_url": "http://127.0.0.1:1/charge", "email": "e@early"});
    let (ok, _, err) = server
        .cli(&[
            "workflow",
            "run",
            "provision-account",
            "--input",
            &input.to_string(),
            "--wait",
            "--timeout",
            "1",
        ])
        .await;
    assert!(!ok);
    assert!(
        err.contains(r#"create_tenant: a job on queue "tenants" that no worker has leased"#),
        "{err}"
    );

    let mut stand_ins = stand_ins(&server);
    let mut lines = BufReader::new(stand_ins.stdout.take().unwrap()).lines();
    let ready = line_starting(&mut lines, "stand-ins ready: billing at ").await;
    let billing_url = ready
        .strip_prefix("stand-ins ready: billing at ")
        .and_then(|rest| rest.split(';').next())
        .unwrap()
        .to_owned();

    let input = json!({"org_id": "acme", "billing_url": billing_url, "email": "a@acme"});
    let wait = tokio::spawn({
        let args: Vec<String> = [
            "workflow",
            "run",
            "provision-account",
            "--input",
            &input.to_string(),
            "--wait",
            "--timeout",
            "3",
            "--server",
            &server.url,
        ]
        .map(str::to_owned)
        .to_vec();
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_keel"))
                .args(args)
                .output()
                .await
                .unwrap()
        }
    });
    // The welcome e-mail is the last step before the run waits for its signal.
    line_starting(&mut lines, "email: ").await;
    let waited = wait.await.unwrap();
    let err = String::from_utf8(waited.stderr).unwrap();
    assert!(
        !waited.status.success(),
        "the run waits for a signal: {err}"
    );
    assert!(
        err.contains(r#"wait_activation: signal "activated"; send it with"#),
        "{err}"
    );
    assert!(err.contains("keel run signal "), "the CLI sends it: {err}");
    let id = err
        .lines()
        .find(|l| l.contains("is still running"))
        .and_then(|l| l.split("run ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_owned();

    // The command the wait suggested, as the README has it.
    let (ok, out, err) = server
        .cli(&[
            "run",
            "signal",
            &id,
            "activated",
            "--data",
            r#"{"by":"ops"}"#,
        ])
        .await;
    assert!(ok && out.contains("signal activated sent"), "{out}{err}");
    let (status, run) = server
        .get(&format!("/namespaces/default/runs/{id}?wait_ms=10000"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["steps"]["create_tenant"]["output"]["id"], "tenant-acme");
    assert_eq!(run["steps"]["charge"]["output"]["status"], "paid");
    assert_eq!(run["steps"]["welcome"]["output"]["sent_to"], "a@acme");

    let (ok, out, err) = server
        .cli(&[
            "run",
            "list",
            "--workflow",
            "provision-account",
            "--status",
            "succeeded",
        ])
        .await;
    assert!(ok, "{err}");
    let listed: Vec<&str> = out.lines().collect();
    assert_eq!(listed.len(), 1, "{out}");
    assert!(
        listed[0].starts_with(&id) && listed[0].contains("succeeded"),
        "{out}"
    );
    let (ok, out, _) = server.cli(&["run", "list", "--json"]).await;
    assert!(ok);
    let page: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        page["runs"].as_array().unwrap().len(),
        2,
        "both runs: {out}"
    );

    // The README's compensation path: an org starting with `declined` is
    // charged a 402, the charge step fails, and the tenant is deleted again.
    let input = json!({"org_id": "declined-co", "billing_url": billing_url, "email": "d@declined"});
    let (status, started) = server
        .post(
            "/namespaces/default/workflows/provision-account/runs",
            json!({"input": input}),
        )
        .await;
    assert_eq!(status, 201, "{started}");
    let (_, run) = server
        .get(&format!(
            "/namespaces/default/runs/{}?wait_ms=20000",
            started["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(run["status"], "compensated", "{run:#}");
    assert!(
        run["steps"]["charge"]["error"]
            .as_str()
            .unwrap()
            .contains("402"),
        "{run:#}"
    );
    assert_eq!(
        run["steps"]["delete_tenant"]["state"], "succeeded",
        "{run:#}"
    );
    line_starting(&mut lines, "tenants: {'id': 'tenant-declined-co'}").await;

    // `keel run get` shows compensations only when they ran, and a run that
    // ended by compensating as `compensated` (not still "compensating").
    let (ok, out, err) = server.cli(&["run", "get", &id]).await;
    assert!(ok, "{err}");
    assert!(
        !out.contains("compensations:") && !out.contains("refund"),
        "{out}"
    );
    let declined = started["id"].as_str().unwrap();
    let (ok, out, err) = server.cli(&["run", "get", declined]).await;
    assert!(ok, "{err}");
    assert!(
        out.lines().next().unwrap().ends_with("compensated"),
        "{out}"
    );
    assert!(
        out.contains("compensations:") && out.contains("✓ delete_tenant"),
        "{out}"
    );
    assert!(!out.contains("refund"), "refund never ran:\n{out}");
}
