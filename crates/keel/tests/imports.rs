//! Bulk import against the real server, through the real `keel import`: a
//! CSV file mapped by a template into jobs, deduplicated by its key column,
//! its bad records rejected with their lines; the same file again stores
//! nothing; an import killed half-way resumes from its checkpoint and
//! stores each record once; NDJSON into a topic's events; and the
//! streaming endpoint's errors.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed check")]

mod common;

use common::{Server, eventually};
use serde_json::{Value, json};

const TEMPLATE: &str = r#"{"email":"{{email}}","age":"{{age:number}}","note":"{{note}}"}"#;

async fn import(server: &Server, args: &[&str]) -> Value {
    let mut all = vec!["import"];
    all.extend_from_slice(args);
    all.push("--json");
    let (ok, out, err) = server.cli(&all).await;
    assert!(ok, "keel import failed: {err}");
    serde_json::from_str(&out).unwrap()
}

#[tokio::test]
async fn a_csv_file_becomes_jobs_once_with_bad_records_rejected_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    let file = dir.path().join("signups.csv");
    std::fs::write(
        &file,
        "id,email,age,note\n\
         1,ann@example.com,42,hello\n\
         2,bob@example.com,,\"two\nlines, and a \"\"quote\"\"\"\n\
         3,cy@example.com,old,x\n\
         ,nokey@example.com,1,x\n\
         4,dee@example.com,7\n\
         1,ann-again@example.com,43,same key\n\
         5,eve@example.com,30,\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let summary = import(
        &server,
        &["signups", path, "--key", "id", "--template", TEMPLATE],
    )
    .await;
    assert_eq!(summary["records"], 7, "{summary}");
    assert_eq!(summary["accepted"], 3, "{summary}");
    assert_eq!(summary["duplicates"], 1, "the second id 1: {summary}");
    assert_eq!(summary["rejected"], 3, "{summary}");
    let rejects: Vec<(u64, String)> = summary["rejects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().unwrap(),
                r["error"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // Line 3 holds a field across two lines: the records after it count them.
    assert_eq!(rejects[0].0, 5, "{rejects:?}");
    assert!(rejects[0].1.contains("field age") && rejects[0].1.contains("not a number"));
    assert_eq!(rejects[1].0, 6);
    assert!(rejects[1].1.contains("no key"), "{rejects:?}");
    assert_eq!(rejects[2].0, 7);
    assert!(
        rejects[2].1.contains("3 fields; the header has 4"),
        "{rejects:?}"
    );
    assert!(!dir.path().join("signups.csv.keel-import").exists());

    let (status, page) = server
        .get("/namespaces/default/jobs?queue=signups&limit=10")
        .await;
    assert_eq!(status, 200);
    let mut payloads: Vec<Value> = page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["payload"].clone())
        .collect();
    payloads.sort_by_key(|p| p["email"].as_str().unwrap().to_owned());
    assert_eq!(
        payloads,
        vec![
            json!({"email":"ann@example.com","age":42,"note":"hello"}),
            json!({"email":"bob@example.com","age":null,"note":"two\nlines, and a \"quote\""}),
            json!({"email":"eve@example.com","age":30,"note":""}),
        ]
    );

    // The same file again: every keyed record is a duplicate.
    let again = import(
        &server,
        &["signups", path, "--key", "id", "--template", TEMPLATE],
    )
    .await;
    assert_eq!(again["accepted"], 0, "{again}");
    assert_eq!(again["duplicates"], 4, "{again}");
    assert_eq!(again["rejected"], 3, "{again}");
}

#[tokio::test]
async fn an_import_killed_half_way_resumes_and_stores_each_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    // Slow the import down (the server waits out the quota) so that it
    // can be killed between its segments.
    let (status, body) = server
        .call(
            "PUT",
            "/namespaces/default",
            Some(json!({"max_enqueue_per_second": 2000})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    const N: usize = 6000;
    let file = dir.path().join("orders.ndjson");
    let lines: String = (0..N)
        .map(|i| {
            format!(
                "{}\n",
                json!({"order": format!("o-{i}"), "total": i, "pad": "x".repeat(150)})
            )
        })
        .collect();
    std::fs::write(&file, lines).unwrap();
    let path = file.to_str().unwrap();
    let checkpoint = dir.path().join("orders.ndjson.keel-import");
    let args = [
        "import",
        "orders",
        path,
        "--key",
        "order",
        "--segment-bytes",
        "65536",
        "--json",
    ];
    let mut first = tokio::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .args(["--server", &server.url])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let saved = eventually("the import checkpoints a segment", || async {
        let text = std::fs::read(&checkpoint).ok()?;
        serde_json::from_slice::<Value>(&text).ok()
    })
    .await;
    first.kill().await.unwrap();
    let done_before = saved["totals"]["records"].as_u64().unwrap();
    assert!(done_before > 0 && (done_before as usize) < N, "{saved}");

    let (ok, out, err) = server.cli(&args).await;
    assert!(ok, "{err}");
    assert!(err.contains("resuming"), "{err}");
    let summary: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        summary["records"], N as u64,
        "the totals carry on: {summary}"
    );
    assert_eq!(summary["rejected"], 0);
    assert_eq!(
        summary["accepted"].as_u64().unwrap() + summary["duplicates"].as_u64().unwrap(),
        N as u64
    );
    let (status, stats) = server.get("/namespaces/default/queues/orders").await;
    assert_eq!(status, 200);
    assert_eq!(
        stats["counts"]["ready"], N as u64,
        "each record once: {stats}"
    );
    assert!(!checkpoint.exists());
}

#[tokio::test]
async fn ndjson_becomes_events_keyed_by_a_field() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    let file = dir.path().join("users.jsonl");
    std::fs::write(
        &file,
        "{\"user\":\"u1\",\"plan\":\"pro\"}\n\n{\"user\":\"u2\",\"plan\":\"free\"}\nnot json\n{\"user\":\"u1\",\"plan\":\"again\"}\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let args = [
        "users",
        path,
        "--topic",
        "--key",
        "user",
        "--type",
        "user.imported",
        "--template",
        r#"{"id":"{{user}}","plan":"{{plan}}","label":"{{user}} on {{plan}}"}"#,
    ];
    let summary = import(&server, &args).await;
    assert_eq!(
        (
            summary["accepted"].clone(),
            summary["duplicates"].clone(),
            summary["rejected"].clone()
        ),
        (json!(2), json!(1), json!(1)),
        "{summary}"
    );
    assert_eq!(
        summary["rejects"][0]["line"], 4,
        "blank lines count: {summary}"
    );
    let (status, page) = server
        .get("/namespaces/default/topics/users/events?limit=10")
        .await;
    assert_eq!(status, 200, "{page}");
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{page}");
    assert_eq!(events[0]["id"], "u1");
    assert_eq!(events[0]["type"], "user.imported");
    assert_eq!(
        events[0]["data"],
        json!({"id":"u1","plan":"pro","label":"u1 on pro"})
    );
    let again = import(&server, &args).await;
    assert_eq!(again["duplicates"], 3, "{again}");
}

#[tokio::test]
async fn the_endpoint_refuses_what_it_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    let post = |query: &'static str, content_type: &'static str, body: &'static str| {
        let url = server.v1(&format!("/namespaces/default/queues/q/imports{query}"));
        async move {
            let resp = reqwest::Client::new()
                .post(url)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        }
    };
    let answer = post("?key=nope", "text/csv", "id,email\n1,a\n").await;
    common::assert_error(&answer, 400, "invalid_request");
    assert!(
        answer.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no column \"nope\"")
    );
    let answer = post("", "application/json", "{}").await;
    common::assert_error(&answer, 400, "invalid_request");
    let answer = post("?template=%7Bnope", "text/csv", "id\n1\n").await;
    common::assert_error(&answer, 400, "invalid_request");
    // A body with no records (a header alone, or JSON sent as CSV).
    let answer = post("", "text/csv", "[]").await;
    common::assert_error(&answer, 400, "invalid_request");
    assert!(
        answer.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no records")
    );
    let answer = post("?format=csv", "text/plain", "a,b\n1,2\n3,4\n").await;
    assert_eq!(answer.0, 200, "{answer:?}");
    assert_eq!(answer.1["accepted"], 2);
    assert_eq!(answer.1["last_line"], 3);
}

/// Regression: a server restarted on its data forgot its rate quotas' state
/// and counted their burst as spent anew at every refused batch, so a
/// resumed import behind a quota never went on; and a quota smaller than
/// a batch of 1,000 refused every batch for good.
#[tokio::test]
async fn an_import_resumes_after_the_server_was_killed() {
    let dir = tempfile::tempdir().unwrap();
    let listen = common::free_address();
    let mut server = Server::start(&dir, &["--listen", &listen]).await;
    let (status, body) = server
        .call(
            "PUT",
            "/namespaces/default",
            Some(json!({"max_enqueue_per_second": 600})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    const N: usize = 2400;
    let file = dir.path().join("orders.ndjson");
    let lines: String = (0..N)
        .map(|i| {
            format!(
                "{}\n",
                json!({"order": format!("o-{i}"), "pad": "x".repeat(150)})
            )
        })
        .collect();
    std::fs::write(&file, lines).unwrap();
    let path = file.to_str().unwrap();
    let checkpoint = dir.path().join("orders.ndjson.keel-import");
    let args = [
        "import",
        "orders",
        path,
        "--key",
        "order",
        "--segment-bytes",
        "131072",
        "--json",
    ];
    let first = tokio::process::Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(args)
        .args(["--server", &server.url])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    eventually("the import checkpoints a segment", || async {
        let text = std::fs::read(&checkpoint).ok()?;
        serde_json::from_slice::<Value>(&text).ok()
    })
    .await;
    server.kill9().await;
    let out = first.wait_with_output().await.unwrap();
    assert!(!out.status.success(), "the import fails with its server");

    let server = Server::start(&dir, &["--listen", &listen]).await;
    let (ok, out, err) =
        tokio::time::timeout(std::time::Duration::from_secs(60), server.cli(&args))
            .await
            .expect("the resumed import ends");
    assert!(ok, "{err}");
    let summary: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(summary["records"], N as u64, "{summary}");
    let (_, stats) = server.get("/namespaces/default/queues/orders").await;
    assert_eq!(
        stats["counts"]["ready"], N as u64,
        "each record once: {stats}"
    );
}
