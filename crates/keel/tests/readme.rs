//! The README, run as written: every command of its `sh` blocks, in order, by
//! `bash` in a fresh directory, against a fresh `keel dev` with the
//! stand-ins, each checked against what the README says next to it.
//!
//! [`STEPS`] holds one entry per README command, in the README's order: the
//! command's start, how it runs, and what its output must show. A command
//! added to the README without its entry, or an entry whose command left the
//! README, fails the test, so the two change together.
//!
//! What a newcomer would type is what runs, with three substitutions the
//! test needs to share a machine: each server listens on a free port
//! (`KEEL_LISTEN=127.0.0.1:0`, and `localhost:5335` in a command becomes that
//! port), the CLI and the stand-ins talk to the server started last
//! (`KEEL_SERVER`), and `<id>`, `<lease-token>` and `<run-id>` are what the
//! commands before printed, as a reader would copy them.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed check")]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// How long any one command may take to show what it should.
const PATIENCE: Duration = Duration::from_secs(60);

/// How a README command runs.
#[derive(Clone, Copy)]
enum Mode {
    /// To its end: it must succeed.
    Run,
    /// To its end: it must fail (the README says it does).
    Fails,
    /// A server, in its own shell: it keeps running, and the commands after
    /// it talk to it. `as_typed` is what runs when the README's line cannot
    /// run here as is (it would build a release binary).
    Server { as_typed: Option<&'static str> },
    /// The README's "shell 1" again: the server already running.
    SameServer,
    /// A long-running command in its own shell: ready once its output shows
    /// `ready`; it must then end, succeeding or not as `ends_ok` says, with
    /// `expect` in its output, by the time a step with `joins` has run.
    Background {
        ready: &'static str,
        ends_ok: Option<bool>,
    },
    /// A command that follows until Ctrl-C: stopped once `expect` shows.
    Follow,
    /// Not run here, for the reason given (another test covers it).
    Skip(&'static str),
}

struct Step {
    /// The README command starts with this.
    command: &'static str,
    mode: Mode,
    /// Each must appear in the command's output (stdout and stderr).
    expect: &'static [&'static str],
    /// After this command, wait for every `Background` command that must end.
    joins: bool,
}

const fn run(command: &'static str, expect: &'static [&'static str]) -> Step {
    Step {
        command,
        mode: Mode::Run,
        expect,
        joins: false,
    }
}

const fn with(mode: Mode, command: &'static str, expect: &'static [&'static str]) -> Step {
    Step {
        command,
        mode,
        expect,
        joins: false,
    }
}

const fn joining(command: &'static str, expect: &'static [&'static str]) -> Step {
    Step {
        command,
        mode: Mode::Run,
        expect,
        joins: true,
    }
}

const STEPS: &[Step] = &[
    // The first lines: run Keel, run the tests (this test is part of them).
    with(
        Mode::Server {
            as_typed: Some("keel dev"),
        },
        "cargo run --release -p keel -- dev",
        &["ui:"],
    ),
    with(
        Mode::Skip("the test suite itself, which runs this test"),
        "./scripts/test",
        &[],
    ),
    // Try it.
    with(Mode::SameServer, "cargo run --release -p keel -- dev", &[]),
    run(
        "curl -X POST localhost:5335/v1/namespaces/default/queues/emails/jobs",
        &[r#""state":"ready""#],
    ),
    run(
        "curl -X POST localhost:5335/v1/namespaces/default/queues/emails/lease",
        &[r#""lease_token":"#, "ada@example.com"],
    ),
    run(
        "curl -X POST localhost:5335/v1/namespaces/default/jobs/<id>/complete",
        &[r#""state":"succeeded""#],
    ),
    run("keel enqueue emails", &[" ready"]),
    run(
        "keel jobs list --queue emails --state ready",
        &["<id>", "ready"],
    ),
    run("keel jobs get <id>", &["ready"]),
    run("keel queues stats emails", &["ready      1"]),
    run("keel queues pause emails", &["paused"]),
    run("keel queues resume emails", &["resumed"]),
    run(
        "keel jobs lease emails",
        &["lease token", "ada@example.com"],
    ),
    run("keel jobs fail <lease-token>", &["dead"]),
    run("keel jobs redrive emails", &["1"]),
    run(
        "keel jobs lease emails",
        &["lease token", "ada@example.com"],
    ),
    run("keel jobs complete <lease-token>", &["succeeded"]),
    run(
        "keel enqueue emails '{\"to\":\"bob@example.com\"}'",
        &["scheduled"],
    ),
    run("keel jobs cancel <id>", &["cancelled"]),
    run("keel slos", &[]),
    run("keel publish orders", &["seq 1"]),
    with(
        Mode::Follow,
        "keel tail orders --from earliest",
        &["order.created"],
    ),
    run(
        "keel subscription put examples/cli/billing.yaml",
        &["billing"],
    ),
    run("keel subscription get billing", &["orders"]),
    run("keel source put examples/cli/github.yaml", &["github"]),
    run("keel source list", &["github"]),
    run("keel endpoint put examples/cli/crm.yaml", &["whsec_"]),
    run("keel endpoint list", &["crm"]),
    run("keel endpoint attempts crm --status failed", &["no"]),
    run("keel endpoint recover crm --since", &["sent again"]),
    run(
        "keel schedule put examples/cli/daily-report.yaml",
        &["daily-report"],
    ),
    run("keel schedule get daily-report", &["Europe/London"]),
    run("keel schedule trigger daily-report", &["fired at"]),
    run(
        "keel import signups examples/cli/signups.csv",
        &["3 accepted, 1 duplicate, 1 rejected", "line 5: field age"],
    ),
    // Events.
    run(
        "curl -X POST localhost:5335/v1/namespaces/default/topics/orders/events",
        &[r#""seq":2"#],
    ),
    run(
        "curl 'localhost:5335/v1/namespaces/default/topics/orders/events?after=0'",
        &[r#""seq":1"#, r#""seq":2"#],
    ),
    run(
        "curl 'localhost:5335/v1/namespaces/default/topics/orders/events?after=1&wait_ms=30000'",
        &[r#""seq":2"#],
    ),
    run(
        "curl -X PUT localhost:5335/v1/namespaces/default/subscriptions/billing",
        &[r#""queue":"billing""#],
    ),
    run(
        "curl -X PUT localhost:5335/v1/namespaces/default/sources/github",
        &[r#""scheme":"github""#],
    ),
    run(
        "curl -X PUT localhost:5335/v1/namespaces/default/endpoints/crm",
        &[r#""ordered":true"#],
    ),
    run(
        "curl -X PUT localhost:5335/v1/namespaces/default/subscriptions/to-crm",
        &[r#""endpoint":"crm""#],
    ),
    run(
        "curl -X PUT localhost:5335/v1/namespaces/default/schedules/daily-report",
        &[r#""timezone":"Europe/London""#],
    ),
    run(
        "curl -X PUT localhost:5335/v1/namespaces/default/endpoints/resize-fn",
        &[r#""secret":"whsec_"#],
    ),
    run(
        "curl -X PUT localhost:5335/v1/namespaces/default/queues/resize",
        &[r#""endpoint":"resize-fn""#],
    ),
    // A project.
    run(
        "keel validate -C examples/project",
        &[
            "shop: 7 resources, valid",
            "schedule shop/daily-report: next",
        ],
    ),
    run("keel lint -C examples/project", &["nothing to report"]),
    run(
        "keel test -C examples/project",
        &["PASS tests/loyalty.yaml", "3 tests: 3 passed, 0 failed"],
    ),
    with(
        Mode::Fails,
        "keel plan -C examples/project --out shop.plan.json",
        &["+ create handler shop/loyalty", "7 to create"],
    ),
    run(
        "keel apply shop.plan.json",
        &["Applied version 1 of project shop: 7 changes."],
    ),
    run(
        "keel versions list -C examples/project",
        &["shop v1  applied"],
    ),
    // OAuth2 connections.
    run(
        "keel integration put examples/cli/github-app.yaml",
        &["github-app  github  client Iv1.replace-with-your-client-id  api https://api.github.com"],
    ),
    run(
        "keel connection connect github-app user-42",
        &[
            "https://github.com/login/oauth/authorize?response_type=code",
            "code_challenge_method=S256",
        ],
    ),
    run("keel connection list", &["no connections"]),
    // Workflows, end to end.
    with(Mode::SameServer, "keel dev", &[]),
    with(
        Mode::Background {
            ready: "stand-ins ready",
            ends_ok: None,
        },
        "python3 examples/provision/stand_in.py",
        &[],
    ),
    run(
        "keel workflow validate examples/workflows/provision-account.yaml",
        &["valid"],
    ),
    run(
        "keel workflow apply examples/workflows/provision-account.yaml",
        &["provision-account"],
    ),
    run("keel workflow list", &["provision-account"]),
    with(
        Mode::Background {
            ready: "keel run signal ",
            ends_ok: Some(true),
        },
        "keel workflow run provision-account --wait --timeout 30",
        &["succeeded", "✓ wait_activation"],
    ),
    joining(
        "keel run signal <run-id> activated",
        &["signal activated sent"],
    ),
    run("keel run get <run-id>", &["succeeded", "✓ create_tenant"]),
    run(
        "keel run list --workflow provision-account",
        &["<run-id>", "succeeded"],
    ),
    with(
        Mode::Background {
            ready: "keel run signal ",
            ends_ok: Some(false),
        },
        "keel workflow run provision-account --wait",
        &["ended cancelled"],
    ),
    joining(
        "keel run cancel <run-id> --compensate --wait",
        &["cancelled", "✓ refund", "✓ delete_tenant"],
    ),
    with(
        Mode::Fails,
        "keel workflow run provision-account --wait --timeout 30",
        &["compensated", "402", "✓ delete_tenant"],
    ),
    // Running in production.
    with(
        Mode::Skip("a system path and a fixed port; the flags are the ones below"),
        "keel server --listen 127.0.0.1:5335 --data-dir /var/lib/keel",
        &[],
    ),
    run(
        "export KEEL_TOKEN=$(keel token create --role admin --name root --data-dir ./data)",
        &["expires"],
    ),
    with(
        Mode::Server { as_typed: None },
        "keel server --data-dir ./data &",
        &[],
    ),
    run(
        "keel token create --role worker --name mailer",
        &[
            "keel_",
            "(worker, namespaces acme) created on the server at http://127.0.0.1:",
        ],
    ),
    with(
        Mode::Skip("a database at db.internal: tests/multinode.rs runs nodes on one PostgreSQL"),
        "keel token create --role admin --name root --database-url",
        &[],
    ),
    with(
        Mode::Skip("a database at db.internal: tests/multinode.rs runs nodes on one PostgreSQL"),
        "keel server --listen 127.0.0.1:5335 --database-url",
        &[],
    ),
    with(
        Mode::Skip("a database at db.internal: tests/multinode.rs runs nodes on one PostgreSQL"),
        "keel server --listen 127.0.0.1:5336 --database-url",
        &[],
    ),
    // Traces.
    with(
        Mode::Skip("a release build: the test suite's otel run builds and checks it"),
        "cargo build --release -p keel --features otel",
        &[],
    ),
    with(
        Mode::Skip("a collector: tests/otel.rs runs one"),
        "OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318 keel server",
        &[],
    ),
    // Benchmarks: long scenarios, each its own command, not the suite's.
    with(
        BENCHMARK,
        "cargo build --release -p keel -p keel-bench",
        &[],
    ),
    with(BENCHMARK, "bench/compare.sh", &[]),
    with(BENCHMARK, "SUITE=events bench/compare.sh", &[]),
    with(BENCHMARK, "SUITE=hooks bench/compare.sh", &[]),
    with(BENCHMARK, "SUITE=flow bench/compare.sh", &[]),
    with(BENCHMARK, "bench/ui-first-paint.sh", &[]),
];

const BENCHMARK: Mode = Mode::Skip("a benchmark: minutes long, run on its own");

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The README's `sh` commands, in order: continuation lines joined,
/// comment-only lines left out.
fn readme_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let mut commands = Vec::new();
    let mut in_sh = false;
    let mut pending = String::new();
    for line in readme.lines() {
        if !in_sh {
            in_sh = line == "```sh";
            continue;
        }
        if line == "```" {
            in_sh = false;
            continue;
        }
        let trimmed = line.trim();
        if pending.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                pending.push_str(head);
                pending.push(' ');
            }
            None => {
                pending.push_str(trimmed);
                commands.push(std::mem::take(&mut pending));
            }
        }
    }
    commands
}

/// A process's stdout and stderr as they come, for waiting on a text.
#[derive(Clone)]
struct Output {
    text: Arc<Mutex<String>>,
    grew: watch::Sender<usize>,
}

impl Output {
    fn collect(child: &mut Child) -> Output {
        let output = Output {
            text: Arc::default(),
            grew: watch::channel(0).0,
        };
        output.drain(child.stdout.take().unwrap());
        output.drain(child.stderr.take().unwrap());
        output
    }

    fn drain(&self, from: impl AsyncRead + Unpin + Send + 'static) {
        let output = self.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(from).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut text = output.text.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
                output.grew.send_replace(text.len());
            }
        });
    }

    fn text(&self) -> String {
        self.text.lock().unwrap().clone()
    }

    /// Waits until the output shows `needle`.
    async fn shows(&self, needle: &str, what: &str) {
        let mut grew = self.grew.subscribe();
        let waiting = async {
            while !self.text().contains(needle) {
                grew.changed().await.unwrap();
            }
        };
        if tokio::time::timeout(PATIENCE, waiting).await.is_err() {
            panic!(
                "{what}: never showed {needle:?}; it printed:\n{}",
                self.text()
            );
        }
    }
}

/// A reader's state while following the README: the servers and shells it
/// has open, what it copied from outputs, and what it exported.
struct Reader {
    dir: tempfile::TempDir,
    server: Option<String>,
    env: HashMap<String, String>,
    copied: HashMap<&'static str, String>,
    shells: Vec<Child>,
    to_end: Vec<(String, Child, Output, bool, &'static [&'static str])>,
}

impl Reader {
    fn new() -> Reader {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(root().join("examples"), dir.path().join("examples")).unwrap();
        let bin = Path::new(env!("CARGO_BIN_EXE_keel")).parent().unwrap();
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
        let env = HashMap::from([
            ("PATH".to_owned(), path),
            ("KEEL_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
            ("NO_COLOR".to_owned(), "1".to_owned()),
        ]);
        Reader {
            dir,
            server: None,
            env,
            copied: HashMap::new(),
            shells: Vec::new(),
            to_end: Vec::new(),
        }
    }

    /// The command as this reader types it: the server's port, and what it
    /// copied for each placeholder.
    fn typed(&self, command: &str) -> String {
        let mut typed = command.to_owned();
        if let Some(server) = &self.server {
            typed = typed.replace("localhost:5335", server.trim_start_matches("http://"));
        }
        for placeholder in ["<id>", "<lease-token>", "<run-id>"] {
            if typed.contains(placeholder) {
                let value = self
                    .copied
                    .get(placeholder)
                    .unwrap_or_else(|| panic!("{command}: nothing printed a {placeholder} before"));
                typed = typed.replace(placeholder, value);
            }
        }
        typed
    }

    /// What a reader copies from an output: a job's id, a lease token, a
    /// run's id.
    fn copy_from(&mut self, output: &str) {
        let after = |marker: &str| {
            output.rfind(marker).map(|at| {
                output[at + marker.len()..]
                    .chars()
                    .take_while(|c| !matches!(c, '"' | ' ' | ',' | '\n' | '}'))
                    .collect::<String>()
            })
        };
        let ids = [
            after(r#"{"id":""#),
            output
                .lines()
                .rev()
                .filter_map(|l| l.split_whitespace().next())
                .find(|w| w.len() == 36 && w.matches('-').count() == 4)
                .map(str::to_owned),
        ];
        for (placeholder, value) in [
            ("<lease-token>", after("lease token ")),
            ("<lease-token>", after(r#""lease_token":""#)),
            ("<run-id>", after("keel run signal ")),
            ("<id>", ids.into_iter().flatten().next()),
        ] {
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                self.copied.insert(placeholder, value);
            }
        }
    }

    fn shell(&self, script: &str) -> Child {
        Command::new("bash")
            .args(["-c", script])
            .current_dir(self.dir.path())
            .env_clear()
            .envs(&self.env)
            .envs(self.server.iter().map(|s| ("KEEL_SERVER", s)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    }

    /// Runs `command` to its end; returns whether it succeeded and its
    /// output, and keeps what it exported.
    async fn run_to_end(&mut self, command: &str) -> (bool, String) {
        const ENV: &str = "\n--- environment after the command ---\n";
        let mut child = self.shell(&format!(
            "{command}\nstatus=$?\nprintf '{}'\nenv\nexit $status",
            ENV.replace('\n', "\\n")
        ));
        let output = Output::collect(&mut child);
        let status = tokio::time::timeout(PATIENCE, child.wait())
            .await
            .unwrap_or_else(|_| panic!("{command}: did not end within {PATIENCE:?}"))
            .unwrap();
        // Both pipes close after the process ends; wait for their last bytes.
        output.shows(ENV.trim_start(), command).await;
        let text = output.text();
        let (printed, env) = text.split_once(ENV.trim_start()).unwrap();
        for (name, value) in env.lines().filter_map(|l| l.split_once('=')) {
            if name.starts_with("KEEL_") && name != "KEEL_SERVER" {
                self.env.insert(name.to_owned(), value.to_owned());
            }
        }
        (status.success(), printed.to_owned())
    }

    async fn step(&mut self, readme: &str, step: &Step) {
        let command = self.typed(readme);
        let expect: Vec<String> = step.expect.iter().map(|e| self.typed(e)).collect();
        let check = |output: &str| {
            for needle in &expect {
                assert!(
                    output.contains(needle.as_str()),
                    "{command}\n  should show {needle:?}; it printed:\n{output}"
                );
            }
        };
        match step.mode {
            Mode::Skip(_) => {}
            Mode::SameServer => assert!(self.server.is_some(), "{readme}: no server runs"),
            Mode::Run | Mode::Fails => {
                let (ok, output) = self.run_to_end(&command).await;
                let should = matches!(step.mode, Mode::Run);
                assert_eq!(
                    ok, should,
                    "{command}\n  exit status; it printed:\n{output}"
                );
                check(&output);
                self.copy_from(&output);
            }
            Mode::Server { as_typed } => {
                let line = as_typed.map_or(command.as_str(), |typed| typed);
                let line = line
                    .split(" #")
                    .next()
                    .unwrap()
                    .trim()
                    .trim_end_matches('&');
                let mut child = self.shell(&format!("exec {line}"));
                let output = Output::collect(&mut child);
                output.shows("keel listening on http://", readme).await;
                for needle in &expect {
                    output.shows(needle, readme).await;
                }
                let text = output.text();
                let url = text
                    .lines()
                    .find_map(|l| l.strip_prefix("keel listening on "))
                    .unwrap();
                self.server = Some(url.to_owned());
                self.shells.push(child);
            }
            Mode::Background { ready, ends_ok } => {
                let mut child = self.shell(&command);
                let output = Output::collect(&mut child);
                output.shows(ready, &command).await;
                self.copy_from(&output.text());
                match ends_ok {
                    Some(ok) => self.to_end.push((command, child, output, ok, step.expect)),
                    None => self.shells.push(child),
                }
            }
            Mode::Follow => {
                let mut child = self.shell(&command);
                let output = Output::collect(&mut child);
                for needle in &expect {
                    output.shows(needle, &command).await;
                }
                child.start_kill().unwrap();
            }
        }
        if step.joins {
            for (command, mut child, output, ok, expect) in std::mem::take(&mut self.to_end) {
                let status = tokio::time::timeout(PATIENCE, child.wait())
                    .await
                    .unwrap_or_else(|_| panic!("{command}: did not end"))
                    .unwrap();
                for needle in expect {
                    output.shows(needle, &command).await;
                }
                assert_eq!(
                    status.success(),
                    ok,
                    "{command}\n  exit status; it printed:\n{}",
                    output.text()
                );
            }
        }
    }
}

#[test]
fn every_readme_command_has_a_step() {
    let commands = readme_commands();
    for (i, command) in commands.iter().enumerate() {
        let step = STEPS
            .get(i)
            .unwrap_or_else(|| panic!("README command {i} has no step: {command}"));
        assert!(
            command.starts_with(step.command),
            "README command {i} is\n  {command}\nbut its step expects one starting\n  {}",
            step.command
        );
        if let Mode::Skip(why) = step.mode {
            assert!(!why.is_empty(), "{command}: skipped, saying why");
        }
    }
    assert_eq!(
        commands.len(),
        STEPS.len(),
        "steps left over: their commands left the README"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_readme_command_runs_as_written() {
    let mut reader = Reader::new();
    for (command, step) in readme_commands().iter().zip(STEPS) {
        reader.step(command, step).await;
    }
    assert!(
        reader.to_end.is_empty(),
        "a background command never joined"
    );
}
