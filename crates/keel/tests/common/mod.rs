//! Starts the real `keel` binary on an ephemeral port and talks to it over
//! HTTP. Each server gets its own data directory.

#![allow(
    dead_code,
    clippy::expect_used,
    reason = "test helpers: each test binary uses some of them, and a panic is a failed check"
)]

pub(crate) mod browser;
pub(crate) mod oauth;
pub(crate) mod receiver;
pub(crate) mod smtp;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A server's log lines, as [`Server::start_logged`] collects them.
#[derive(Clone, Default)]
pub(crate) struct Logs(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl Logs {
    pub(crate) fn lines(&self) -> Vec<String> {
        self.0.lock().expect("logs").clone()
    }

    /// Waits until a line contains `text` (log lines trail the answers).
    pub(crate) async fn wait_for(&self, text: &str) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while !self.lines().iter().any(|l| l.contains(text)) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no log line with {text:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}

/// `keel token create --role admin --name root` straight on a store
/// (`--data-dir DIR` or `--database-url URL`): the token it prints.
pub(crate) async fn bootstrap_token(store: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["token", "create", "--role", "admin", "--name", "root"])
        .args(store)
        .output()
        .await
        .expect("the keel binary runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    assert!(token.starts_with("keel_"), "{token}");
    token
}

/// One lease call on `url` (a queue's `.../lease`) that may park up to
/// `wait_ms`: the jobs handed out. Takes no `Server`, so that tasks spawned
/// to wait in a long-poll can own what they need.
pub(crate) async fn lease_at(
    http: &reqwest::Client,
    url: &str,
    max_jobs: u32,
    wait_ms: u64,
) -> Vec<Value> {
    let answer: Value = http
        .post(url)
        .json(&serde_json::json!({"max_jobs": max_jobs, "wait_ms": wait_ms}))
        .send()
        .await
        .expect("the server answers")
        .json()
        .await
        .expect("a JSON answer");
    answer["jobs"].as_array().expect("a list of jobs").clone()
}

/// `127.0.0.1:PORT` of a port free now: for a server restarted on the same
/// address, which its clients must find again.
pub(crate) fn free_address() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    format!("127.0.0.1:{port}")
}

pub(crate) struct Server {
    child: Child,
    pub url: String,
    /// The embedded store's directory; empty for a PostgreSQL node.
    pub data_dir: PathBuf,
    http: reqwest::Client,
}

impl Server {
    /// A server on a fresh data directory that lives as long as `dir`.
    pub(crate) async fn start(dir: &tempfile::TempDir, extra: &[&str]) -> Server {
        Server::start_in(dir.path(), extra).await
    }

    pub(crate) async fn start_in(data_dir: &Path, extra: &[&str]) -> Server {
        let mut args = vec!["--data-dir", data_dir.to_str().expect("a UTF-8 path")];
        args.extend(extra);
        let mut server = Server::start_with(&args).await;
        server.data_dir = data_dir.to_owned();
        server
    }

    /// A server with these arguments after `server --listen 127.0.0.1:0`
    /// (unless they set `--listen`; and `--auth off` unless they set
    /// `--auth`).
    pub(crate) async fn start_with(args: &[&str]) -> Server {
        Server::spawn(args, None, &[]).await
    }

    /// A server on a fresh data directory with these arguments and
    /// environment variables (the `OTEL_*` an exporter reads, the
    /// `SSL_CERT_FILE` a TLS client trusts).
    pub(crate) async fn start_with_env(
        dir: &tempfile::TempDir,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        let mut args = vec!["--data-dir", dir.path().to_str().expect("a UTF-8 path")];
        args.extend(extra);
        Server::spawn(&args, None, env).await
    }

    /// A server on a fresh data directory that logs everything down to
    /// `debug` into the returned [`Logs`], for tests of what reaches a log.
    pub(crate) async fn start_logged(dir: &tempfile::TempDir, extra: &[&str]) -> (Server, Logs) {
        let logs = Logs::default();
        let mut args = vec!["--data-dir", dir.path().to_str().expect("a UTF-8 path")];
        args.extend(extra);
        let server = Server::spawn(&args, Some(logs.clone()), &[]).await;
        (server, logs)
    }

    /// A server that requires tokens (`--auth on`) on a fresh data
    /// directory, and the admin token made on that directory before it
    /// started (`keel token create`, as an operator bootstraps one).
    pub(crate) async fn start_secured(dir: &tempfile::TempDir, extra: &[&str]) -> (Server, String) {
        let data = dir.path().to_str().expect("a UTF-8 path");
        let admin = bootstrap_token(&["--data-dir", data]).await;
        let mut args = vec!["--auth", "on"];
        args.extend(extra);
        (Server::start(dir, &args).await, admin)
    }

    /// Creates a token through the API as `admin`: the whole answer
    /// (`token` is the secret).
    pub(crate) async fn mint(&self, admin: &str, body: Value) -> Value {
        let (status, answer) = self
            .call_as(Some(admin), "POST", "/v1/tokens", Some(body))
            .await;
        assert_eq!(status, 201, "{answer}");
        answer
    }

    /// Tokens are off unless the test asks for `--auth on`: the auth tests
    /// check them; the others test everything else.
    async fn spawn(args: &[&str], logs: Option<Logs>, env: &[(&str, &str)]) -> Server {
        keel_client::install_tls_provider();
        let auth: &[&str] = if args.contains(&"--auth") {
            &[]
        } else {
            &["--auth", "off"]
        };
        let listen: &[&str] = if args.contains(&"--listen") {
            &[]
        } else {
            &["--listen", "127.0.0.1:0"]
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_keel"))
            .arg("server")
            .args(listen)
            .args(auth)
            .args(args)
            .env("RUST_LOG", if logs.is_some() { "debug" } else { "warn" })
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(if logs.is_some() {
                Stdio::piped()
            } else {
                Stdio::inherit()
            })
            .kill_on_drop(true)
            .spawn()
            .expect("the keel binary starts");
        if let (Some(logs), Some(stderr)) = (logs, child.stderr.take()) {
            let mut lines = BufReader::new(stderr).lines();
            tokio::spawn(async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    logs.0.lock().expect("logs").push(line);
                }
            });
        }
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let line = lines
            .next_line()
            .await
            .expect("stdout readable")
            .expect("keel announces its address");
        let url = line
            .strip_prefix("keel listening on ")
            .expect("the announce line")
            .to_owned();
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Server {
            child,
            url,
            data_dir: PathBuf::new(),
            http: reqwest::Client::new(),
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id().expect("the server runs")
    }

    /// SIGKILL: no drain, no flush, nothing but what is already on disk.
    pub(crate) async fn kill9(&mut self) {
        self.child.start_kill().expect("kill -9");
        self.child.wait().await.expect("the server exits");
    }

    /// SIGTERM, then waits for the exit status.
    pub(crate) async fn terminate(&mut self) -> std::process::ExitStatus {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        self.child.wait().await.expect("the server exits")
    }

    /// Waits until the gauge `name` (summed over its label sets) reaches
    /// `min`: how a test knows a call is parked before it acts, instead of
    /// sleeping and hoping.
    pub(crate) async fn wait_for_gauge(&self, name: &str, min: f64) {
        self.wait_for_gauge_where(name, "", min).await;
    }

    /// [`Server::wait_for_gauge`] over the label sets that contain `labels`
    /// (`queue="idle"`): the server's own services park leasers too.
    pub(crate) async fn wait_for_gauge_where(&self, name: &str, labels: &str, min: f64) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let value = self.metric(name, labels).await;
            if value >= min {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} stayed at {value}, below {min}"
            );
            // Paced, so that the scrapes do not starve the server being watched.
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// The metric `name` summed over its label sets that contain `labels`,
    /// as `/metrics` shows it now.
    pub(crate) async fn metric(&self, name: &str, labels: &str) -> f64 {
        let text = reqwest::get(format!("{}/metrics", self.url))
            .await
            .expect("metrics answer")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .filter(|l| l.contains(labels))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Runs the `keel` CLI against this server: success, stdout, stderr.
    pub(crate) async fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(args)
            .args(["--server", &self.url])
            .output()
            .await
            .expect("the keel binary runs");
        (
            out.status.success(),
            String::from_utf8(out.stdout).expect("utf-8 output"),
            String::from_utf8(out.stderr).expect("utf-8 output"),
        )
    }

    pub(crate) fn v1(&self, path: &str) -> String {
        format!("{}/v1{path}", self.url)
    }

    /// Sends `body` (JSON or raw text) and returns the status and the JSON answer.
    pub(crate) async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_as(None, method, path, body).await
    }

    /// [`Server::call`] with `Authorization: Bearer token` when given.
    pub(crate) async fn call_as(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = if path.starts_with('/')
            && !path.starts_with("/v1")
            && !path.starts_with("/healthz")
            && !path.starts_with("/readyz")
            && !path.starts_with("/metrics")
            && !path.starts_with("/openapi.json")
        {
            self.v1(path)
        } else {
            format!("{}{path}", self.url)
        };
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
        let mut req = self.http.request(method, url);
        if let Some(body) = body {
            req = req.json(&body);
        }
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.expect("the server answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("a body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub(crate) async fn raw(&self, method: &str, path: &str, body: Vec<u8>) -> (u16, Value) {
        self.send(method, path, &[("content-type", "application/json")], body)
            .await
    }

    /// Sends `body` as it is, with `headers`.
    pub(crate) async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
        let mut req = self.http.request(method, self.v1(path)).body(body);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let resp = req.send().await.expect("the server answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("a body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// [`Server::send`] with `Authorization: Bearer token`.
    pub(crate) async fn send_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (u16, Value) {
        let bearer = format!("Bearer {token}");
        let mut all = vec![
            ("authorization", bearer.as_str()),
            ("content-type", "application/json"),
        ];
        all.extend_from_slice(headers);
        self.send(method, path, &all, body).await
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(body)).await
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None).await
    }

    /// Enqueues one job and returns its id.
    pub(crate) async fn enqueue(&self, queue: &str, job: Value) -> String {
        let (status, body) = self
            .post(&format!("/namespaces/default/queues/{queue}/jobs"), job)
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().expect("an id").to_owned()
    }

    pub(crate) async fn lease(&self, queue: &str, body: Value) -> Vec<Value> {
        let (status, answer) = self
            .post(&format!("/namespaces/default/queues/{queue}/lease"), body)
            .await;
        assert_eq!(status, 200, "{answer}");
        answer["jobs"].as_array().expect("jobs").clone()
    }

    /// Every job id of `queue`, newest first, following the cursor to the end.
    pub(crate) async fn list_all(&self, queue: &str) -> Vec<String> {
        let mut ids = Vec::new();
        let mut cursor = String::new();
        loop {
            let (status, page) = self
                .get(&format!(
                    "/namespaces/default/jobs?queue={queue}&limit=1000{cursor}"
                ))
                .await;
            assert_eq!(status, 200, "{page}");
            ids.extend(
                page["jobs"]
                    .as_array()
                    .expect("jobs")
                    .iter()
                    .map(|j| j["id"].as_str().expect("an id").to_owned()),
            );
            match page["next_cursor"].as_str() {
                Some(c) => cursor = format!("&cursor={c}"),
                None => return ids,
            }
        }
    }

    pub(crate) async fn job(&self, id: &str) -> Value {
        let (status, job) = self.get(&format!("/namespaces/default/jobs/{id}")).await;
        assert_eq!(status, 200, "{job}");
        job
    }
}

/// Asserts an error answer: the status and the `error.code`, with a message.
pub(crate) fn assert_error(answer: &(u16, Value), status: u16, code: &str) {
    assert_eq!(answer.0, status, "{}", answer.1);
    assert_eq!(answer.1["error"]["code"], code, "{}", answer.1);
    assert!(
        answer.1["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{}",
        answer.1
    );
}

/// Polls `check` until it holds; for states no signal reports to a test
/// (an ack that follows an answer), bounded so a bug fails instead of hangs.
pub(crate) async fn eventually<F, Fut>(what: &str, mut check: F) -> Value
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<Value>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
