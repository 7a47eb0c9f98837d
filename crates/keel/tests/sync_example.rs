//! The bidirectional sync of `examples/sync`, driven end to end: two Python
//! apps (a helpdesk and a chat tool, standard library only) kept in sync
//! through Keel alone — their signed webhooks come in through sources, land
//! on topics, and subscriptions push them to the other app's endpoint with
//! the field names mapped. Edits on both sides converge, concurrent edits
//! resolve to the same winner on both sides, a change made while one app is
//! down arrives after it returns, nothing is applied twice and nothing is
//! echoed back.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a panic is a failed check"
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::Server;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/sync")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts one app and waits for its "listening" line.
async fn start_app(name: &str, config: &Path) -> Child {
    let mut child = Command::new("python3")
        .arg(example_dir().join("app.py"))
        .args([name, "--config", config.to_str().unwrap()])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs the example");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines
        .next_line()
        .await
        .unwrap()
        .expect("the app announces itself");
    assert!(line.contains("listening"), "{line}");
    child
}

struct Apps {
    http: reqwest::Client,
    helpdesk: String,
    chat: String,
}

impl Apps {
    async fn edit(&self, app: &str, id: &str, fields: Value) {
        let answer = self
            .http
            .put(format!("{app}/records/{id}"))
            .json(&fields)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
    }

    async fn get(&self, app: &str, path: &str) -> Option<Value> {
        let answer = self.http.get(format!("{app}{path}")).send().await.ok()?;
        (answer.status() == 200).then_some(answer.json().await.ok()?)
    }

    /// Both apps hold `id` with these fields (each in its own names).
    async fn converged(&self, id: &str, subject: &str, status: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let path = format!("/records/{id}");
            let (h, c) = (
                self.get(&self.helpdesk, &path).await,
                self.get(&self.chat, &path).await,
            );
            let same = h
                .as_ref()
                .is_some_and(|h| h["fields"] == json!({"subject": subject, "status": status}))
                && c.as_ref()
                    .is_some_and(|c| c["fields"] == json!({"title": subject, "state": status}));
            if same {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{id} never converged: {h:?} / {c:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn two_apps_stay_in_sync_through_keel() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &["--allow-private-http"]).await;
    let ports = [free_port(), free_port()];
    let mut conf = serde_json::Map::new();
    for (app, port) in ["helpdesk", "chat"].into_iter().zip(ports) {
        conf.insert(
            app.to_owned(),
            json!({
                "port": port,
                "data": dir.path().join(format!("{app}-data")),
                "hook": server.v1(&format!("/hooks/default/{app}")),
                "out_secret": format!("whsec_{}", base64_of(&format!("{app} signs its webhooks"))),
                "in_secret": format!("whsec_{}", base64_of(&format!("keel signs for {app}"))),
            }),
        );
    }
    let config = dir.path().join("sync.json");
    std::fs::write(&config, Value::Object(conf).to_string()).unwrap();
    let _helpdesk = start_app("helpdesk", &config).await;
    let mut chat = start_app("chat", &config).await;
    let setup = Command::new("python3")
        .arg(example_dir().join("setup.py"))
        .args(["--keel", &server.url, "--config", config.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert!(
        setup.status.success(),
        "{}",
        String::from_utf8_lossy(&setup.stderr)
    );
    let apps = Apps {
        http: reqwest::Client::new(),
        helpdesk: format!("http://127.0.0.1:{}", ports[0]),
        chat: format!("http://127.0.0.1:{}", ports[1]),
    };

    // Each side's edits reach the other.
    apps.edit(
        &apps.helpdesk,
        "t1",
        json!({"subject": "Printer", "status": "open"}),
    )
    .await;
    apps.converged("t1", "Printer", "open").await;
    apps.edit(
        &apps.chat,
        "t1",
        json!({"title": "Printer on fire", "state": "open"}),
    )
    .await;
    apps.converged("t1", "Printer on fire", "open").await;

    // Concurrent edits: both sides end with the same winner.
    tokio::join!(
        apps.edit(
            &apps.helpdesk,
            "t2",
            json!({"subject": "Login", "status": "open"})
        ),
        apps.edit(
            &apps.chat,
            "t2",
            json!({"title": "Login broken", "state": "urgent"})
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let h = apps.get(&apps.helpdesk, "/records/t2").await.unwrap();
        let c = apps.get(&apps.chat, "/records/t2").await.unwrap();
        if (h["updated_at"].clone(), h["origin"].clone())
            == (c["updated_at"].clone(), c["origin"].clone())
        {
            let winner = if h["origin"] == "helpdesk" {
                ("Login", "open")
            } else {
                ("Login broken", "urgent")
            };
            apps.converged("t2", winner.0, winner.1).await;
            break;
        }
        assert!(Instant::now() < deadline, "t2 never converged: {h} / {c}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The chat tool is down for a while: its deliveries fail, are retried,
    // and arrive after it returns.
    chat.start_kill().unwrap();
    chat.wait().await.unwrap();
    for i in 3..6 {
        apps.edit(
            &apps.helpdesk,
            &format!("t{i}"),
            json!({"subject": format!("S{i}"), "status": "new"}),
        )
        .await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, log) = server
            .get("/namespaces/default/endpoints/chat-app/attempts?status=failed")
            .await;
        if log["attempts"].as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no failed delivery while chat was down"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _chat = start_app("chat", &config).await;
    for i in 3..6 {
        apps.converged(&format!("t{i}"), &format!("S{i}"), "new")
            .await;
    }

    // Nothing applied twice, nothing echoed: each app sent exactly its own edits.
    let helpdesk = apps.get(&apps.helpdesk, "/stats").await.unwrap();
    let chat = apps.get(&apps.chat, "/stats").await.unwrap();
    assert_eq!(
        helpdesk["sent"], 5,
        "helpdesk edits: t1, t2, t3, t4, t5: {helpdesk}"
    );
    assert_eq!(chat["sent"], 2, "chat edits: t1, t2: {chat}");
    for stats in [&helpdesk, &chat] {
        let applied: Vec<&Value> = stats["applied"].as_array().unwrap().iter().collect();
        let unique: std::collections::HashSet<String> =
            applied.iter().map(|v| v.to_string()).collect();
        assert_eq!(
            unique.len(),
            applied.len(),
            "a change applied twice: {stats}"
        );
    }
}

fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text.as_bytes())
}
