//! `keel test`: each test file under the project's `tests/` runs against a
//! Keel of its own, in this process: the embedded store in a temporary
//! directory, a clock that moves only when a step says so, the background
//! services, and the API on a loopback port. The project is applied to it
//! (the server's own plan and apply), then the steps run in order, each
//! the API call a client would make: enqueue, publish, start a run, signal
//! it, play a worker, move the clock, and `expect`, which checks what the
//! handlers and workflows left (state, events, jobs, runs) until it holds
//! or a few seconds pass.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use keel_core::{Limits, ProjectName, Timestamp};
use keel_engine::{Engine, EngineConfig, ManualClock, ShutdownTrigger};
use keel_server::ClientLimits;
use keel_server::api::AuthConfig;
use keel_store_sqlite::SqliteStore;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::load::{self, Project};

/// Where test files live in a project.
pub(crate) const TESTS: &str = "tests";
/// How long an `expect` waits for what it checks to hold.
const PATIENCE: Duration = Duration::from_secs(10);
/// How long a `work` step waits for a job.
const WORK_WAIT_MS: u64 = 10_000;
/// The fake clock's start unless a test says `at`.
const DEFAULT_START: &str = "2030-01-07T09:00:00Z";

/// One test file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    #[serde(default)]
    description: String,
    /// Where the fake clock starts.
    #[serde(default)]
    at: Option<Timestamp>,
    /// Where the steps act (the project's namespace unless given).
    #[serde(default)]
    namespace: Option<String>,
    steps: Vec<Step>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Step {
    /// `{queue, …}`: the rest is the enqueue's body.
    Enqueue(Map<String, Value>),
    /// `{topic, …}`: the rest is the event.
    Publish(Map<String, Value>),
    /// `{workflow, as, …}`: the rest is the start's body; `as` names the run.
    Start(Map<String, Value>),
    /// `{run, signal, data}`: `run` is a name an earlier `start` gave.
    Signal(Map<String, Value>),
    /// `{queue, payload?, result? | fail?, retry?}`: as a worker, leases the
    /// queue's next job, checks its payload holds `payload`, and completes
    /// it with `result` or fails it with `fail`.
    Work(Map<String, Value>),
    /// Moves the clock: milliseconds, or `"30s"`, `"5m"`, `"2h"`, `"1d"`.
    Advance(Value),
    Expect(Expect),
}

/// What must hold; each value is matched as a subset (an object's other
/// keys are not looked at; lists match item by item, with no more or fewer
/// items).
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    /// `"type/key"` → state key → value.
    #[serde(default)]
    state: BTreeMap<String, BTreeMap<String, Value>>,
    /// A topic → its events, oldest first.
    #[serde(default)]
    events: BTreeMap<String, Vec<Value>>,
    /// A queue → its jobs, oldest first.
    #[serde(default)]
    jobs: BTreeMap<String, Vec<Value>>,
    /// A run (by its `as`) → the run.
    #[serde(default)]
    runs: BTreeMap<String, Value>,
}

/// Runs every test file whose path contains `filter`; false when one failed.
pub(crate) async fn run(
    dir: &Path,
    project: &Project,
    filter: Option<&str>,
) -> anyhow::Result<bool> {
    let files = load::files(&dir.join(TESTS), &["yaml", "yml", "json", "toml"]);
    let files: Vec<_> = files
        .into_iter()
        .filter(|f| filter.is_none_or(|s| f.to_string_lossy().contains(s)))
        .collect();
    if files.is_empty() {
        bail!("no test files under {}/", dir.join(TESTS).display());
    }
    keel_client::install_tls_provider();
    let (mut passed, mut failed) = (0, 0);
    for path in &files {
        let shown = load::relative(dir, path);
        let started = Instant::now();
        let outcome = match load::parse_file(path, &shown) {
            Ok((value, _)) => match serde_json::from_value::<TestFile>(value) {
                Ok(test) => run_one(project, &test).await.map(|()| test.description),
                Err(e) => Err(anyhow!("not a test file: {e}")),
            },
            Err(problem) => Err(anyhow!("{}", problem.message)),
        };
        let secs = started.elapsed().as_secs_f64();
        match outcome {
            Ok(description) => {
                passed += 1;
                println!("PASS {shown} {description} ({secs:.1} s)");
            }
            Err(e) => {
                failed += 1;
                println!("FAIL {shown} ({secs:.1} s)\n  {e:#}");
            }
        }
    }
    println!(
        "{} tests: {passed} passed, {failed} failed",
        passed + failed
    );
    Ok(failed == 0)
}

/// One test on a Keel of its own.
async fn run_one(project: &Project, test: &TestFile) -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let start = match test.at {
        Some(at) => at,
        None => Timestamp::parse_rfc3339(DEFAULT_START).context("the default start time")?,
    };
    let clock = ManualClock::at(start);
    let store: Arc<dyn keel_store::Store> =
        Arc::new(SqliteStore::open(data.path(), &Limits::default())?);
    let (trigger, shutdown) = ShutdownTrigger::new();
    let config = EngineConfig {
        allow_private_http: true,
        ..EngineConfig::default()
    };
    let engine = Engine::new(
        store,
        clock.clone(),
        Limits::default(),
        shutdown.clone(),
        config,
    );
    let name = ProjectName::new(&project.name).map_err(|e| anyhow!(e.message))?;
    let plan = engine
        .projects()
        .plan(&name, super::check::resources(&project.resources))
        .await
        .map_err(|e| anyhow!("the project does not apply: {}", e.message))?;
    engine
        .projects()
        .apply(plan, "keel test".to_owned())
        .await
        .map_err(|e| anyhow!("the project does not apply: {}", e.message))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1", listener.local_addr()?);
    let auth = AuthConfig {
        required: false,
        metrics_public: true,
    };
    let server = tokio::spawn(keel_server::run(
        engine.clone(),
        listener,
        None,
        auth,
        ClientLimits::default(),
        shutdown,
    ));
    let namespace = test
        .namespace
        .clone()
        .unwrap_or_else(|| project.namespace.to_string());
    let mut runner = Runner {
        http: reqwest::Client::new(),
        base: format!("{url}/namespaces/{namespace}"),
        engine: &engine,
        clock: &clock,
        runs: BTreeMap::new(),
    };
    let mut outcome = Ok(());
    for (i, step) in test.steps.iter().enumerate() {
        if let Err(e) = runner.step(step).await {
            outcome = Err(e.context(format!("step {} ({})", i + 1, step.name())));
            break;
        }
    }
    trigger.fire();
    let _ = server.await;
    outcome
}

impl Step {
    fn name(&self) -> &'static str {
        match self {
            Step::Enqueue(_) => "enqueue",
            Step::Publish(_) => "publish",
            Step::Start(_) => "start",
            Step::Signal(_) => "signal",
            Step::Work(_) => "work",
            Step::Advance(_) => "advance",
            Step::Expect(_) => "expect",
        }
    }
}

struct Runner<'a> {
    http: reqwest::Client,
    /// `…/v1/namespaces/{ns}`.
    base: String,
    engine: &'a Engine,
    clock: &'a ManualClock,
    /// Runs by the names their `start` gave.
    runs: BTreeMap<String, String>,
}

impl Runner<'_> {
    async fn step(&mut self, step: &Step) -> anyhow::Result<()> {
        match step {
            Step::Enqueue(body) => {
                let (queue, body) = take(body, "queue")?;
                self.call("POST", &format!("/queues/{queue}/jobs"), Some(body))
                    .await?;
            }
            Step::Publish(body) => {
                let (topic, body) = take(body, "topic")?;
                self.call("POST", &format!("/topics/{topic}/events"), Some(body))
                    .await?;
            }
            Step::Start(body) => {
                let (workflow, mut body) = take(body, "workflow")?;
                let name = body
                    .as_object_mut()
                    .and_then(|o| o.remove("as"))
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_else(|| workflow.clone());
                let run = self
                    .call("POST", &format!("/workflows/{workflow}/runs"), Some(body))
                    .await?;
                let id = run["id"].as_str().context("the run's id")?.to_owned();
                self.runs.insert(name, id);
            }
            Step::Signal(body) => {
                let (run, body) = take(body, "run")?;
                let (signal, body) = take(body.as_object().unwrap_or(&Map::new()), "signal")?;
                let id = self.run_id(&run)?;
                let data = body.get("data").cloned().unwrap_or(Value::Null);
                self.call("POST", &format!("/runs/{id}/signals/{signal}"), Some(data))
                    .await?;
            }
            Step::Work(body) => self.work(body).await?,
            Step::Advance(by) => {
                let ms = duration_ms(by)?;
                self.clock.advance(ms);
                self.engine.time_moved();
            }
            Step::Expect(expect) => self.expect(expect).await?,
        }
        Ok(())
    }

    async fn work(&self, body: &Map<String, Value>) -> anyhow::Result<()> {
        let (queue, body) = take(body, "queue")?;
        let leased = self
            .call(
                "POST",
                &format!("/queues/{queue}/lease"),
                Some(json!({"worker_id": "keel-test", "max_jobs": 1, "wait_ms": WORK_WAIT_MS})),
            )
            .await?;
        let job = leased["jobs"]
            .get(0)
            .with_context(|| format!("no job on queue {queue} within {WORK_WAIT_MS} ms"))?;
        if let Some(want) = body.get("payload") {
            holds(want, &job["payload"]).map_err(|e| anyhow!("the job's payload: {e}"))?;
        }
        let id = job["id"].as_str().context("the job's id")?;
        let token = job["lease_token"].clone();
        match body.get("fail") {
            Some(error) => {
                let retry = body.get("retry").cloned().unwrap_or(Value::Bool(true));
                let error = error
                    .as_str()
                    .map_or_else(|| error.to_string(), str::to_owned);
                self.call(
                    "POST",
                    &format!("/jobs/{id}/fail"),
                    Some(json!({"lease_token": token, "error": error, "retry": retry})),
                )
                .await?;
            }
            None => {
                let result = body.get("result").cloned().unwrap_or(Value::Null);
                self.call(
                    "POST",
                    &format!("/jobs/{id}/complete"),
                    Some(json!({"lease_token": token, "result": result})),
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Checks `expect` until it holds, or fails with the last mismatch.
    async fn expect(&self, expect: &Expect) -> anyhow::Result<()> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let mismatch = match self.mismatch(expect).await {
                Ok(None) => return Ok(()),
                Ok(Some(mismatch)) => mismatch,
                Err(e) => return Err(e),
            };
            if Instant::now() >= deadline {
                bail!("{mismatch} (still, after {} s)", PATIENCE.as_secs());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn mismatch(&self, expect: &Expect) -> anyhow::Result<Option<String>> {
        for (object, keys) in &expect.state {
            for (key, want) in keys {
                let (status, found) = self.get(&format!("/objects/{object}/state/{key}")).await?;
                let found = if status == 404 {
                    Value::Null
                } else {
                    found["value"].clone()
                };
                if let Err(e) = holds(want, &found) {
                    return Ok(Some(format!("state {object} {key}: {e}")));
                }
            }
        }
        for (topic, want) in &expect.events {
            let (_, page) = self
                .get(&format!("/topics/{topic}/events?after=0&limit=1000"))
                .await?;
            if let Err(e) = holds(&Value::Array(want.clone()), &page["events"]) {
                return Ok(Some(format!("events of {topic}: {e}")));
            }
        }
        for (queue, want) in &expect.jobs {
            let (_, page) = self.get(&format!("/jobs?queue={queue}&limit=1000")).await?;
            let mut jobs: Vec<Value> = page["jobs"].as_array().cloned().unwrap_or_default();
            jobs.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
            if let Err(e) = holds(&Value::Array(want.clone()), &Value::Array(jobs)) {
                return Ok(Some(format!("jobs of {queue}: {e}")));
            }
        }
        for (name, want) in &expect.runs {
            let id = self.run_id(name)?;
            let (_, run) = self.get(&format!("/runs/{id}")).await?;
            if let Err(e) = holds(want, &run) {
                return Ok(Some(format!("run {name}: {e}")));
            }
        }
        Ok(None)
    }

    fn run_id(&self, name: &str) -> anyhow::Result<&str> {
        self.runs
            .get(name)
            .map(String::as_str)
            .with_context(|| format!("no run named {name:?} was started"))
    }

    async fn get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let resp = self.http.get(format!("{}{path}", self.base)).send().await?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await.unwrap_or(Value::Null)))
    }

    /// A call that must succeed; its answer.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let resp = request.send().await?;
        let status = resp.status();
        let answer: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{path}: {status}: {answer}");
        }
        Ok(answer)
    }
}

/// `body[key]` as a string, and the rest of the body.
fn take(body: &Map<String, Value>, key: &str) -> anyhow::Result<(String, Value)> {
    let mut rest = body.clone();
    let value = rest
        .remove(key)
        .and_then(|v| v.as_str().map(str::to_owned))
        .with_context(|| format!("`{key}` (a name) is missing"))?;
    Ok((value, Value::Object(rest)))
}

/// Milliseconds, or a number with `ms`, `s`, `m`, `h` or `d`.
fn duration_ms(by: &Value) -> anyhow::Result<i64> {
    if let Some(ms) = by.as_i64() {
        return Ok(ms);
    }
    let text = by
        .as_str()
        .context("a duration: 1500, \"30s\", \"5m\", \"2h\", \"1d\"")?;
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (n, unit) = text.split_at(split);
    let n: i64 = n
        .parse()
        .with_context(|| format!("{text:?} is not a duration"))?;
    let scale = match unit {
        "" | "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => bail!("{text:?}: the unit is one of ms, s, m, h, d"),
    };
    Ok(n * scale)
}

/// Whether `found` holds `want`: an object's keys each hold, a list's items
/// each hold and are as many, anything else is equal.
fn holds(want: &Value, found: &Value) -> Result<(), String> {
    match (want, found) {
        (Value::Object(w), Value::Object(f)) => {
            for (key, value) in w {
                holds(value, f.get(key).unwrap_or(&Value::Null))
                    .map_err(|e| format!("{key}: {e}"))?;
            }
            Ok(())
        }
        (Value::Array(w), Value::Array(f)) => {
            if w.len() != f.len() {
                return Err(format!(
                    "{} items expected, {} found: {found}",
                    w.len(),
                    f.len()
                ));
            }
            for (i, (w, f)) in w.iter().zip(f).enumerate() {
                holds(w, f).map_err(|e| format!("[{i}]: {e}"))?;
            }
            Ok(())
        }
        _ if want == found => Ok(()),
        _ => Err(format!("expected {want}, found {found}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_holds_what_it_has_and_lists_match_item_by_item() {
        let found = json!({"a": 1, "b": {"c": [1, {"d": 2, "e": 3}]}});
        assert!(holds(&json!({"b": {"c": [1, {"d": 2}]}}), &found).is_ok());
        let e = holds(&json!({"b": {"c": [1]}}), &found).unwrap_err();
        assert!(e.starts_with("b: c: 1 items expected, 2 found"), "{e}");
        assert!(holds(&json!({"z": null}), &found).is_ok());
        assert_eq!(duration_ms(&json!("2h")).unwrap(), 7_200_000);
        assert_eq!(duration_ms(&json!(1500)).unwrap(), 1500);
        assert!(duration_ms(&json!("2y")).is_err());
    }
}
