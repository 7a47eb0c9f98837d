//! The clients: producers of keyed jobs, a publisher of keyed events (a
//! subscription turns each into a job on a queue of its own), and workers
//! that lease, fail some first attempts on purpose (so retries are part of
//! every run) and complete. Each records every operation in the history.
//!
//! Clients talk to whichever node answers: a request that cannot connect
//! goes to the next node; one that was sent and got no answer is recorded
//! as `Unknown` and never retried (a retry would blur what the server did).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::history::{History, Kind, Op, Outcome};

pub(crate) const NAMESPACE: &str = "chaos";
pub(crate) const JOBS: &str = "jobs";
pub(crate) const EVENT_JOBS: &str = "from-events";
pub(crate) const TOPIC: &str = "orders";
const KEYS: usize = 8;
/// Writes waiting to be worked off past which producers wait: the load
/// stays one the workers keep up with, so the drain at the end is short.
const MAX_BACKLOG: isize = 5_000;
/// A drain that has not moved for this long is over: what is left is lost
/// or stuck, and the checker says which.
const STALLED: Duration = Duration::from_secs(30);

/// Waits while the queues hold more than `MAX_BACKLOG` writes.
async fn flow_control(history: &History, stop: &AtomicBool) {
    while history.backlog() > MAX_BACKLOG && !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The nodes' base URLs (`http://host:port`), and a cursor over them.
#[derive(Clone)]
pub(crate) struct Nodes {
    urls: Arc<Vec<String>>,
    next: Arc<AtomicUsize>,
}

impl Nodes {
    pub(crate) fn new(urls: Vec<String>) -> Nodes {
        Nodes {
            urls: Arc::new(urls),
            next: Arc::default(),
        }
    }

    fn url(&self, path: &str) -> String {
        let i = self.next.load(Ordering::Relaxed) % self.urls.len();
        format!("{}/v1/namespaces/{NAMESPACE}{path}", self.urls[i])
    }

    /// The node the next request goes to (`http://host:port`).
    pub(crate) fn base(&self) -> String {
        let i = self.next.load(Ordering::Relaxed) % self.urls.len();
        self.urls[i].clone()
    }

    pub(crate) fn skip(&self) {
        self.next.fetch_add(1, Ordering::Relaxed);
    }
}

/// What one request came to.
enum Answer {
    Ok(Value),
    Refused,
    /// Sent, no answer.
    Lost,
}

async fn post(http: &reqwest::Client, nodes: &Nodes, path: &str, body: &Value) -> Answer {
    for _ in 0..3 {
        match http.post(nodes.url(path)).json(body).send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                if !(200..300).contains(&status) {
                    return Answer::Refused;
                }
                return match resp.json::<Value>().await {
                    Ok(v) => Answer::Ok(v),
                    Err(_) => Answer::Lost,
                };
            }
            Err(e) if e.is_connect() => nodes.skip(),
            Err(_) => return Answer::Lost,
        }
    }
    Answer::Refused
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(1))
        .build()
        .unwrap_or_default()
}

/// Creates the queues' policies and the subscription; retried until a
/// node takes them (the cluster may still be starting).
pub(crate) async fn setup(nodes: &Nodes) -> anyhow::Result<()> {
    let http = http();
    let policy = json!({"max_attempts": 20, "backoff": {"base_ms": 50, "max_ms": 500, "factor": 2, "jitter": true}, "lease_ms": 3000});
    for queue in [JOBS, EVENT_JOBS] {
        put(&http, nodes, &format!("/queues/{queue}"), &policy).await?;
    }
    put(
        &http,
        nodes,
        "/subscriptions/to-jobs",
        &json!({"topic": TOPIC, "start": "earliest", "target": {"queue": EVENT_JOBS}}),
    )
    .await
}

async fn put(
    http: &reqwest::Client,
    nodes: &Nodes,
    path: &str,
    body: &Value,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(resp) = http.put(nodes.url(path)).json(body).send().await
            && resp.status().is_success()
        {
            return Ok(());
        }
        nodes.skip();
        anyhow::ensure!(Instant::now() < deadline, "no node took PUT {path}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes keyed jobs, one at a time, until `stop`.
pub(crate) async fn produce(p: usize, nodes: Nodes, history: Arc<History>, stop: Arc<AtomicBool>) {
    let http = http();
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        flow_control(&history, &stop).await;
        let key = format!("p{p}-k{}", n % KEYS);
        let uid = format!("job-{p}-{n}");
        n += 1;
        let body = json!({"payload": {"uid": uid}, "ordering_key": key});
        let (outcome, id) = match post(&http, &nodes, &format!("/queues/{JOBS}/jobs"), &body).await
        {
            Answer::Ok(v) => (Outcome::Acked, v["id"].as_str().map(str::to_owned)),
            Answer::Refused => (Outcome::Failed, None),
            Answer::Lost => (Outcome::Unknown, None),
        };
        if outcome == Outcome::Failed {
            // A refusal or no node up: give the cluster a moment.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        history.record(Op::Write {
            kind: Kind::Job,
            uid,
            key,
            outcome,
            id,
        });
    }
}

/// Publishes keyed events, one at a time, until `stop`.
pub(crate) async fn publish(nodes: Nodes, history: Arc<History>, stop: Arc<AtomicBool>) {
    let http = http();
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        flow_control(&history, &stop).await;
        let key = format!("e-k{}", n % KEYS);
        let uid = format!("event-{n}");
        n += 1;
        let body = json!({"type": "order.created", "key": key, "data": {"uid": uid}});
        let outcome = match post(&http, &nodes, &format!("/topics/{TOPIC}/events"), &body).await {
            Answer::Ok(_) => Outcome::Acked,
            Answer::Refused => Outcome::Failed,
            Answer::Lost => Outcome::Unknown,
        };
        if outcome == Outcome::Failed {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        history.record(Op::Write {
            kind: Kind::Event,
            uid,
            key,
            outcome,
            id: None,
        });
    }
}

/// A job's uid: a produced job's payload holds it, an event's job its data.
pub(crate) fn uid_of(payload: &Value) -> String {
    payload["uid"]
        .as_str()
        .or_else(|| payload["data"]["uid"].as_str())
        .unwrap_or("?")
        .to_owned()
}

/// The first attempt of every seventh uid fails on purpose, so retries are
/// part of every run.
pub(crate) fn fails_on_purpose(uid: &str, attempt: u64) -> bool {
    attempt == 1 && uid.bytes().map(usize::from).sum::<usize>() % 7 == 0
}

/// Leases from `queue` and completes until `stop`; the first attempt of
/// every seventh uid fails on purpose.
pub(crate) async fn work(
    queue: &'static str,
    w: usize,
    nodes: Nodes,
    history: Arc<History>,
    stop: Arc<AtomicBool>,
) {
    let http = http();
    let kind = if queue == JOBS {
        Kind::Job
    } else {
        Kind::Event
    };
    let body = json!({"worker_id": format!("w{w}"), "max_jobs": 10, "wait_ms": 500});
    while !stop.load(Ordering::Relaxed) {
        let jobs = match post(&http, &nodes, &format!("/queues/{queue}/lease"), &body).await {
            Answer::Ok(v) => v["jobs"].as_array().cloned().unwrap_or_default(),
            _ => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let at = Instant::now();
        for job in jobs {
            let uid = uid_of(&job["payload"]);
            let id = job["id"].as_str().unwrap_or_default().to_owned();
            let token = job["lease_token"].as_str().unwrap_or_default().to_owned();
            history.record(Op::Lease {
                kind,
                uid: uid.clone(),
                id: id.clone(),
                at,
            });
            if fails_on_purpose(&uid, job["attempt"].as_u64().unwrap_or(1)) {
                let fail =
                    json!({"lease_token": token, "error": "a first attempt failed on purpose"});
                post(&http, &nodes, &format!("/jobs/{id}/fail"), &fail).await;
                continue;
            }
            let sent = Instant::now();
            let done = json!({"lease_token": token});
            let outcome = match post(&http, &nodes, &format!("/jobs/{id}/complete"), &done).await {
                Answer::Ok(_) => Outcome::Acked,
                Answer::Refused => Outcome::Failed,
                Answer::Lost => Outcome::Unknown,
            };
            history.record(Op::Complete {
                uid,
                token,
                sent,
                outcome,
            });
        }
    }
}

/// The clients of one run: producers, a publisher and workers, stopped
/// together. Producers stop first, workers when the drain is over.
pub(crate) struct Load {
    pub(crate) history: Arc<History>,
    writing: Arc<AtomicBool>,
    working: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub(crate) fn start(nodes: &Nodes, producers: usize, workers: usize) -> Load {
        let history = Arc::new(History::default());
        let writing = Arc::new(AtomicBool::new(false));
        let working = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for p in 0..producers {
            tasks.push(tokio::spawn(produce(
                p,
                nodes.clone(),
                history.clone(),
                writing.clone(),
            )));
        }
        tasks.push(tokio::spawn(publish(
            nodes.clone(),
            history.clone(),
            writing.clone(),
        )));
        for w in 0..workers {
            let queue = if w % 2 == 0 { JOBS } else { EVENT_JOBS };
            let (nodes, history, working) = (nodes.clone(), history.clone(), working.clone());
            // Each queue has workers on lease calls and on worker streams.
            tasks.push(if w % 4 < 2 {
                tokio::spawn(work(queue, w, nodes, history, working))
            } else {
                tokio::spawn(crate::streamed::work_streamed(
                    queue, w, nodes, history, working,
                ))
            });
        }
        Load {
            history,
            writing,
            working,
            tasks,
        }
    }

    /// Stops writing, waits until every acknowledged write is done (or
    /// `patience` runs out), then stops the workers. Meanwhile, a write
    /// handed out and not known done is read back from the server (a
    /// completion whose answer was lost may have landed); at the end, every
    /// write not known done is read back, to tell the stored from the lost.
    pub(crate) async fn drain(self, nodes: &Nodes, patience: Duration) -> Arc<History> {
        self.writing.store(true, Ordering::Relaxed);
        let http = http();
        let deadline = Instant::now() + patience;
        let mut last = usize::MAX;
        let mut progress = Instant::now();
        loop {
            let outstanding = self.history.outstanding();
            if outstanding.len() != last {
                progress = Instant::now();
            }
            // What has not moved for a while will not: lost, or stuck.
            let over = outstanding.is_empty()
                || Instant::now() >= deadline
                || progress.elapsed() >= STALLED;
            // Only when the drain stalls (or is over): what is left then is
            // what a lost answer may have left behind.
            if over || outstanding.len() == last {
                for (uid, ids) in outstanding {
                    if !over && ids.is_empty() {
                        continue;
                    }
                    self.read_back(&http, nodes, &uid, &ids).await;
                }
            }
            if over {
                break;
            }
            last = self.history.outstanding().len();
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        self.working.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
        self.history
    }

    async fn read_back(&self, http: &reqwest::Client, nodes: &Nodes, uid: &str, ids: &[String]) {
        for id in ids {
            let Ok(resp) = http.get(nodes.url(&format!("/jobs/{id}"))).send().await else {
                nodes.skip();
                continue;
            };
            let job: Value = resp.json().await.unwrap_or_default();
            if let Some(state) = job["state"].as_str() {
                self.history.record(Op::ReadBack {
                    uid: uid.to_owned(),
                    state: state.to_owned(),
                });
            }
        }
    }
}
