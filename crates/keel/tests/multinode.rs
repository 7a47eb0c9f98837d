//! Several `keel server` processes on one PostgreSQL database, as users scale
//! out. Each test has a schema of its own, dropped at the end
//! (`keel_store_postgres::testing`).

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed check")]

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{Server, lease_at};
use keel_store_postgres::testing::TestSchema;
use serde_json::{Value, json};

/// A schema for one test, and its nodes.
struct Database {
    schema: TestSchema,
}

impl Database {
    async fn new() -> Self {
        Database {
            schema: TestSchema::create("keel_nodes").await.unwrap(),
        }
    }

    async fn node(&self) -> Server {
        Server::start_with(&["--database-url", &self.schema.url()]).await
    }
}

async fn is_leader(node: &Server) -> bool {
    let text = reqwest::get(format!("{}/metrics", node.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .any(|l| l.starts_with("keel_maintenance_leader") && l.ends_with(" 1"))
}

/// The index of the one node that leads maintenance, once one does.
async fn leader(nodes: &[&Server]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut leaders = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            if is_leader(node).await {
                leaders.push(i);
            }
        }
        assert!(leaders.len() <= 1, "two leaders at once: {leaders:?}");
        if let [one] = leaders[..] {
            return one;
        }
        assert!(Instant::now() < deadline, "no leader within 10 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_move_between_nodes_and_wake_them() {
    let db = Database::new().await;
    let (a, b, c) = (db.node().await, db.node().await, db.node().await);
    let batch: Vec<Value> = (0..30).map(|i| json!({"payload": i})).collect();
    let (status, _) = a
        .post(
            "/namespaces/default/queues/shared/jobs",
            json!({"jobs": batch}),
        )
        .await;
    assert_eq!(status, 201);
    let leased = b
        .lease("shared", json!({"max_jobs": 30, "lease_ms": 60000}))
        .await;
    assert_eq!(leased.len(), 30, "jobs enqueued on A are leased from B");
    let complete: Vec<Value> = leased
        .iter()
        .map(|j| json!({"id": j["id"], "lease_token": j["lease_token"]}))
        .collect();
    let (status, acked) = c
        .post("/namespaces/default/acks", json!({"complete": complete}))
        .await;
    assert_eq!(status, 200);
    assert!(
        acked["complete"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["status"] == 200),
        "and completed on C"
    );
    assert_eq!(
        a.get("/namespaces/default/queues/shared").await.1["counts"]["succeeded"],
        30
    );

    // A long-poll parked on B is woken by an enqueue on A (LISTEN/NOTIFY).
    let waiting = {
        let url = b.v1("/namespaces/default/queues/wake/lease");
        tokio::spawn(async move {
            let started = Instant::now();
            let answer: Value = reqwest::Client::new()
                .post(url)
                .json(&json!({"wait_ms": 30000}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (answer, started.elapsed())
        })
    };
    b.wait_for_gauge("keel_lease_waiters", 1.0).await;
    a.enqueue("wake", json!({"payload": "from A"})).await;
    let (answer, waited) = waiting.await.unwrap();
    assert_eq!(answer["jobs"][0]["payload"], "from A");
    assert!(
        waited < Duration::from_secs(20),
        "woken by the other node, not the timeout: {waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_node_loses_nothing_and_nothing_completes_twice() {
    let db = Database::new().await;
    let (a, mut b, c) = (db.node().await, db.node().await, db.node().await);
    let batch: Vec<Value> = (0..20).map(|i| json!({"payload": i})).collect();
    a.post(
        "/namespaces/default/queues/crash/jobs",
        json!({"jobs": batch}),
    )
    .await;
    let held = b
        .lease("crash", json!({"max_jobs": 10, "lease_ms": 1500}))
        .await;
    assert_eq!(held.len(), 10);
    b.kill9().await;

    // The other nodes get everything: the 10 free jobs at once, the 10 held by
    // the dead node after their lease runs out (and a leader reclaims them).
    let mut seen: HashSet<(String, u64)> = HashSet::new();
    let mut done = 0;
    while done < 20 {
        let jobs = c
            .lease(
                "crash",
                json!({"max_jobs": 20, "wait_ms": 20000, "lease_ms": 60000}),
            )
            .await;
        assert!(
            !jobs.is_empty(),
            "the dead node's jobs came back before the long-poll timed out"
        );
        for job in &jobs {
            assert!(seen.insert((
                job["id"].as_str().unwrap().to_owned(),
                job["attempt"].as_u64().unwrap()
            )));
            let (status, _) = a
                .post(
                    &format!(
                        "/namespaces/default/jobs/{}/complete",
                        job["id"].as_str().unwrap()
                    ),
                    json!({"lease_token": job["lease_token"]}),
                )
                .await;
            assert_eq!(status, 200);
            done += 1;
        }
    }
    let stats = c.get("/namespaces/default/queues/crash").await.1;
    assert_eq!(stats["counts"]["succeeded"], 20);
    let stale = &held[0];
    let answer = a
        .post(
            &format!(
                "/namespaces/default/jobs/{}/complete",
                stale["id"].as_str().unwrap()
            ),
            json!({"lease_token": stale["lease_token"]}),
        )
        .await;
    assert_eq!(
        answer.0, 409,
        "the dead node's lease cannot complete the job again: {}",
        answer.1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn maintenance_moves_to_another_node_when_the_leader_dies() {
    let db = Database::new().await;
    let mut nodes = vec![db.node().await, db.node().await, db.node().await];
    let first = leader(&nodes.iter().collect::<Vec<_>>()).await;
    let mut dead = nodes.remove(first);
    dead.kill9().await;
    let killed = Instant::now();
    let survivors: Vec<&Server> = nodes.iter().collect();
    let next = leader(&survivors).await;
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "a new leader within 5 s, took {:?}",
        killed.elapsed()
    );

    // The new leader promotes due jobs: a delayed job enqueued now is leasable.
    let other = survivors[1 - next];
    other
        .enqueue("later", json!({"payload": 1, "delay_ms": 200}))
        .await;
    let started = Instant::now();
    let jobs = other.lease("later", json!({"wait_ms": 20000})).await;
    assert_eq!(jobs.len(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "promoted in {:?}",
        started.elapsed()
    );
}

/// A delayed job enqueued through a node that does not lead maintenance is
/// promoted on time: the deadline travels to the leader over NOTIFY, instead of
/// waiting for the leader's idle wake-up (2 s). Three rounds, so that a lucky
/// idle wake-up cannot pass for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deadlines_set_on_any_node_reach_the_leader() {
    let db = Database::new().await;
    let nodes = [db.node().await, db.node().await, db.node().await];
    let lead = leader(&nodes.iter().collect::<Vec<_>>()).await;
    let follower = &nodes[(lead + 1) % 3];
    for round in 0..3 {
        follower
            .enqueue("delayed", json!({"payload": round, "delay_ms": 300}))
            .await;
        let enqueued = Instant::now();
        let jobs = follower.lease("delayed", json!({"wait_ms": 10000})).await;
        assert_eq!(jobs.len(), 1);
        let waited = enqueued.elapsed();
        assert!(
            waited < Duration::from_millis(1200),
            "round {round}: promoted after {waited:?}"
        );
        let token = &jobs[0]["lease_token"];
        let id = jobs[0]["id"].as_str().unwrap();
        follower
            .post(
                &format!("/namespaces/default/jobs/{id}/complete"),
                json!({"lease_token": token}),
            )
            .await;
    }
}

/// A workflow on PostgreSQL: started through one node, its steps done by a
/// worker on another, its signal sent through the third, its timer fired by
/// whichever node leases it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_workflow_run_crosses_nodes() {
    let db = Database::new().await;
    let (a, b, c) = (db.node().await, db.node().await, db.node().await);
    let yaml = "name: w\nsteps:\n  first: { task: { queue: q, input: { n: 1 } } }\n  nap: { needs: [first], sleep: { duration_ms: 200 } }\n  wait: { needs: [nap], wait_for: { signal: go } }\n  last: { needs: [wait], task: { queue: q, input: { n: \"${{ steps.wait.output }}\" } } }\n";
    let put = reqwest::Client::new()
        .put(a.v1("/namespaces/default/workflows/w"))
        .header("content-type", "application/yaml")
        .body(yaml)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status().as_u16(), 201);
    let (status, run) = a
        .post("/namespaces/default/workflows/w/runs", json!({"input": {}}))
        .await;
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_str().unwrap().to_owned();

    let first = b
        .lease(
            "q",
            json!({"worker_id": "w", "max_jobs": 1, "wait_ms": 5000}),
        )
        .await;
    assert_eq!(first[0]["tags"]["keel.step"], "first");
    let token = first[0]["lease_token"].as_str().unwrap();
    let path = format!(
        "/namespaces/default/jobs/{}/complete",
        first[0]["id"].as_str().unwrap()
    );
    assert_eq!(
        b.post(&path, json!({"lease_token": token, "result": 1}))
            .await
            .0,
        200
    );
    // A signal sent before the run waits for it is kept until it does.
    let (status, _) = c
        .post(
            &format!("/namespaces/default/runs/{id}/signals/go"),
            json!(41),
        )
        .await;
    assert_eq!(status, 200);
    let last = a
        .lease(
            "q",
            json!({"worker_id": "w", "max_jobs": 1, "wait_ms": 5000}),
        )
        .await;
    assert_eq!(last[0]["payload"], json!({"n": 41}));

    // A reader parked on B hears the run finish on A (the finish crosses
    // nodes by NOTIFY), long before its wait runs out.
    let reader = {
        let url = b.v1(&format!("/namespaces/default/runs/{id}?wait_ms=30000"));
        tokio::spawn(async move {
            let started = Instant::now();
            let run: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
            (run, started.elapsed())
        })
    };
    b.wait_for_gauge("keel_run_waiters", 1.0).await;
    let token = last[0]["lease_token"].as_str().unwrap();
    let path = format!(
        "/namespaces/default/jobs/{}/complete",
        last[0]["id"].as_str().unwrap()
    );
    assert_eq!(a.post(&path, json!({"lease_token": token})).await.0, 200);
    let (run, waited) = reader.await.unwrap();
    assert_eq!(run["status"], "succeeded", "{run:#}");
    assert!(
        waited < Duration::from_secs(20),
        "woken by the finish on another node, not the timeout: {waited:?}"
    );
}

/// PostgreSQL hands out sequence values before commit, so a naive log would
/// let a reader pass seq 42 before 41 commits and never see 41. Publishers on
/// three nodes race on one topic while a follower on each node reads on from
/// the last seq it saw: every follower must see every seq, once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_publishers_on_three_nodes_never_hide_a_seq() {
    const PER_PUBLISHER: usize = 40;
    const PUBLISHERS_PER_NODE: usize = 3;
    let db = Database::new().await;
    let nodes = [db.node().await, db.node().await, db.node().await];
    let total = (PER_PUBLISHER * PUBLISHERS_PER_NODE * nodes.len()) as u64;
    let events = "/namespaces/default/topics/race/events";
    let (status, _) = nodes[0]
        .call("PUT", "/namespaces/default/topics/race", Some(json!({})))
        .await;
    assert_eq!(status, 201);
    let mut followers = tokio::task::JoinSet::new();
    for node in &nodes {
        let base = node.v1(events);
        followers.spawn(async move {
            let http = reqwest::Client::new();
            let mut seen: Vec<u64> = Vec::new();
            while (seen.len() as u64) < total {
                let after = seen.last().copied().unwrap_or(0);
                let page: Value = http
                    .get(format!("{base}?after={after}&limit=1000&wait_ms=5000"))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let list = page["events"].as_array().unwrap();
                seen.extend(list.iter().map(|e| e["seq"].as_u64().unwrap()));
            }
            seen
        });
    }
    let mut publishers = tokio::task::JoinSet::new();
    for node in &nodes {
        for p in 0..PUBLISHERS_PER_NODE {
            let url = node.v1(events);
            publishers.spawn(async move {
                let http = reqwest::Client::new();
                for i in 0..PER_PUBLISHER {
                    let answer = http
                        .post(&url)
                        .json(&json!({"data": [p, i]}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(answer.status(), 201);
                }
            });
        }
    }
    while let Some(done) = publishers.join_next().await {
        done.unwrap();
    }
    let every: Vec<u64> = (1..=total).collect();
    let finished = tokio::time::timeout(Duration::from_secs(60), async {
        let mut all = Vec::new();
        while let Some(seen) = followers.join_next().await {
            all.push(seen.unwrap());
        }
        all
    })
    .await
    .expect("the followers saw every event");
    for seen in finished {
        assert_eq!(seen, every, "a follower missed or reordered a seq");
    }
}

/// Three nodes push one endpoint's messages; one is killed mid-delivery.
/// Every message arrives, the endpoint's `max_in_flight` holds over all the
/// nodes together (the receiver never has more requests in hand at once),
/// and only deliveries in flight at the kill repeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_push_an_endpoint_and_survive_a_kill() {
    use common::receiver::{Receiver, reply};
    let db = Database::new().await;
    let url = db.schema.url();
    let args = ["--database-url", url.as_str(), "--allow-private-http"];
    let (mut a, b, c) = (
        Server::start_with(&args).await,
        Server::start_with(&args).await,
        Server::start_with(&args).await,
    );
    let mut rx = Receiver::start().await;
    rx.then((0..300).map(|_| {
        let mut r = reply(200);
        r.delay = Duration::from_millis(20);
        r
    }));
    let spec = json!({"url": rx.url, "timeout_ms": 1000, "max_in_flight": 4});
    let (status, body) = b
        .call("PUT", "/namespaces/default/endpoints/crm", Some(spec))
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = b
        .call(
            "PUT",
            "/namespaces/default/subscriptions/to-crm",
            Some(json!({"topic": "t", "target": {"endpoint": "crm"}})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let events: Vec<Value> = (0..120).map(|i| json!({"data": i})).collect();
    let (status, body) = c
        .post(
            "/namespaces/default/topics/t/events",
            json!({"events": events}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let wanted: HashSet<String> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    let mut got = rx.ids(15).await;
    a.kill9().await;
    let repeats = rx.until_all(&wanted, &mut got).await;
    assert!(repeats <= 4, "only deliveries in flight repeat: {repeats}");
    let most = rx.most_in_hand();
    assert!(
        most <= 4,
        "max_in_flight held over the nodes: {most} at once"
    );
    assert!(most >= 2, "deliveries did go in parallel: {most}");
}

/// A schedule put through a node that does not lead fires on time from the
/// leader (its due time travels by NOTIFY); the leader is killed with -9
/// mid-way, another takes over, and every slot from the first to the last
/// fired exactly once across the three nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_fire_each_schedule_slot_exactly_once_across_a_kill() {
    let db = Database::new().await;
    let mut nodes = vec![db.node().await, db.node().await, db.node().await];
    let first = leader(&nodes.iter().collect::<Vec<_>>()).await;
    let mut dead = nodes.remove(first);
    let (put, worker) = (&nodes[0], &nodes[1]);
    let (status, body) = put
        .call(
            "PUT",
            "/namespaces/default/schedules/tick",
            Some(
                json!({"every_ms": 1000, "overlap": "allow", "target": {"queue": "ticks",
                "job": {"payload": {"nominal": "${{ schedule.nominal_time }}"}}}}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let nominal = |job: &Value| {
        keel_core::Timestamp::parse_rfc3339(job["payload"]["nominal"].as_str().unwrap())
            .unwrap()
            .as_millis()
    };
    let mut seen = 0;
    while seen < 3 {
        for job in worker
            .lease("ticks", json!({"max_jobs": 10, "wait_ms": 5000}))
            .await
        {
            let created = keel_core::Timestamp::parse_rfc3339(job["created_at"].as_str().unwrap())
                .unwrap()
                .as_millis();
            let late = created - nominal(&job);
            assert!((0..1000).contains(&late), "fired {late} ms after its slot");
            seen += 1;
        }
    }
    dead.kill9().await;
    leader(&nodes.iter().collect::<Vec<_>>()).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen < 10 {
        assert!(
            Instant::now() < deadline,
            "slots stopped after the kill: {seen}"
        );
        seen += worker
            .lease("ticks", json!({"max_jobs": 10, "wait_ms": 5000}))
            .await
            .len();
    }
    let mut slots = Vec::new();
    for id in worker.list_all("ticks").await {
        slots.push(nominal(&worker.job(&id).await));
    }
    slots.sort_unstable();
    let distinct: HashSet<i64> = slots.iter().copied().collect();
    assert_eq!(distinct.len(), slots.len(), "a slot fired twice: {slots:?}");
    let span = (slots.last().unwrap() - slots[0]) / 1000 + 1;
    assert_eq!(slots.len() as i64, span, "a slot was lost: {slots:?}");
}

/// A queue's `rate_limit` holds across nodes: three nodes, a worker parked
/// on each, 10 jobs a second between them all (per node it would be 30).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rate_limit_holds_across_three_nodes() {
    paced_across_three_nodes(
        json!({"rate_limit": {"limit": 10, "period_ms": 1000, "burst": 1}}),
        json!({}),
    )
    .await;
}

/// A key's `key_rate_limit` holds across nodes the same way: every job is
/// one tenant's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_rate_limit_holds_across_three_nodes() {
    paced_across_three_nodes(
        json!({"key": "tag:tenant",
               "key_rate_limit": {"limit": 10, "period_ms": 1000, "burst": 1}}),
        json!({"tenant": "acme"}),
    )
    .await;
}

/// 60 jobs with `tags` on a queue with `policy` (10 a second), leased by a
/// worker parked on each of three nodes for 2.5 s.
async fn paced_across_three_nodes(policy: Value, tags: Value) {
    let db = Database::new().await;
    let nodes = [db.node().await, db.node().await, db.node().await];
    let (status, body) = nodes[0]
        .call("PUT", "/namespaces/default/queues/paced", Some(policy))
        .await;
    assert_eq!(status, 200, "{body}");
    for i in 0..60 {
        nodes[i % 3]
            .enqueue("paced", json!({"payload": i, "tags": tags}))
            .await;
    }
    let started = Instant::now();
    let window = Duration::from_millis(2500);
    let mut workers = Vec::new();
    for node in &nodes {
        let url = node.v1("/namespaces/default/queues/paced/lease");
        workers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut got = 0;
            while started.elapsed() < window {
                let jobs = lease_at(&http, &url, 10, 500).await;
                if started.elapsed() < window {
                    got += jobs.len();
                }
            }
            got
        }));
    }
    let mut total = 0;
    for w in workers {
        total += w.await.unwrap();
    }
    // 2.5 s at 10 a second, plus the first at once: 26 at most; a limit
    // kept per node would let three times that through.
    assert!(total <= 26, "{total} leased in 2.5 s across three nodes");
    assert!(
        total >= 18,
        "only {total} leased: the limit starved the workers"
    );
}

/// A queue's `max_key_concurrency` and `max_concurrency` hold across nodes:
/// six workers on three nodes lease three tenants' jobs. The checker counts a job as held from the
/// lease's answer until just before its complete is sent, inside the
/// server's own lease, so a count over the bound is a real violation.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_bound_holds_across_three_nodes() {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    let db = Database::new().await;
    let nodes = [db.node().await, db.node().await, db.node().await];
    let (status, body) = nodes[0]
        .call(
            "PUT",
            "/namespaces/default/queues/tenants",
            Some(json!({"key": "tag:tenant", "max_key_concurrency": 2, "max_concurrency": 4})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let tenants = ["acme", "beta", "gamma"];
    for i in 0..60 {
        let tenant = tenants[i % 3];
        let job = json!({"payload": tenant, "tags": {"tenant": tenant}});
        nodes[i % 3].enqueue("tenants", job).await;
    }
    // Per tenant, and over all under "": held now, and the most held at once.
    let held: Arc<Mutex<HashMap<String, (usize, usize)>>> = Arc::default();
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for node in nodes.iter().chain(nodes.iter()) {
        let (lease, base) = (
            node.v1("/namespaces/default/queues/tenants/lease"),
            node.v1(""),
        );
        let (held, done) = (held.clone(), done.clone());
        workers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            while done.load(std::sync::atomic::Ordering::SeqCst) < 60 {
                let jobs = lease_at(&http, &lease, 5, 200).await;
                for job in &jobs {
                    let mut held = held.lock().unwrap();
                    for key in [job["payload"].as_str().unwrap(), ""] {
                        let entry = held.entry(key.to_owned()).or_default();
                        entry.0 += 1;
                        entry.1 = entry.1.max(entry.0);
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                for job in &jobs {
                    {
                        let mut counts = held.lock().unwrap();
                        for key in [job["payload"].as_str().unwrap(), ""] {
                            counts.entry(key.to_owned()).or_default().0 -= 1;
                        }
                    }
                    let status = http
                        .post(format!(
                            "{base}/namespaces/default/jobs/{}/complete",
                            job["id"].as_str().unwrap()
                        ))
                        .json(&json!({"lease_token": job["lease_token"]}))
                        .send()
                        .await
                        .unwrap()
                        .status();
                    assert_eq!(status, 200);
                    done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
        }));
    }
    for w in workers {
        tokio::time::timeout(Duration::from_secs(60), w)
            .await
            .unwrap()
            .unwrap();
    }
    let held = held.lock().unwrap();
    for tenant in tenants {
        let most = held[tenant].1;
        assert!(most <= 2, "{tenant} had {most} jobs leased at once");
    }
    assert!(
        tenants.iter().any(|tenant| held[*tenant].1 == 2),
        "the key bound was never reached: {held:?}"
    );
    let most = held[""].1;
    assert!(most <= 4, "{most} jobs leased at once over the queue");
    assert_eq!(most, 4, "the queue bound was never reached: {held:?}");
}

/// `n` POSTs of `body` at once, alternating between the nodes' URLs, each
/// with `headers`; their statuses and answers.
async fn at_once(
    urls: &[String],
    body: &Value,
    headers: &[(&str, &str)],
    n: usize,
) -> Vec<(u16, Value)> {
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..n {
        let mut request = reqwest::Client::new()
            .post(format!(
                "{}/v1/namespaces/default/notifications",
                urls[i % urls.len()]
            ))
            .json(body);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        calls.spawn(async move {
            let response = request.send().await.unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        });
    }
    calls.join_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_accepting_one_dedup_key_or_request_key_at_once_write_one_notification() {
    let db = Database::new().await;
    let (a, b) = (db.node().await, db.node().await);
    for (path, body) in [
        ("/namespaces/default/channels/inbox", json!({"in_app": {}})),
        ("/namespaces/default/recipients/u1", json!({})),
    ] {
        let (status, answer) = a.call("PUT", path, Some(body)).await;
        assert!(status == 200 || status == 201, "{answer}");
    }
    let urls = [a.url.clone(), b.url.clone()];
    for (body, headers) in [
        (
            json!({"subject": "once", "text": "", "channel": "inbox", "to": "u1", "dedup_key": "k"}),
            vec![],
        ),
        (
            json!({"subject": "keyed", "text": "", "channel": "inbox", "to": "u1"}),
            vec![("idempotency-key", "r1")],
        ),
    ] {
        let answers = at_once(&urls, &body, &headers, 20).await;
        let created = answers.iter().filter(|(status, _)| *status == 201).count();
        assert_eq!(created, 1, "one notification: {answers:?}");
        let ids: HashSet<&str> = answers
            .iter()
            .map(|(_, a)| a["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids.len(), 1, "every answer names it: {answers:?}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, inbox) = b.get("/namespaces/default/inbox/u1").await;
        let shown = inbox["messages"].as_array().unwrap().len();
        assert!(shown <= 2, "{inbox}");
        if shown == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "both messages within 30 s: {inbox}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A monitor on three nodes: each probe slot runs once (one result per
/// 5-second slot, whichever node leases it), one incident opens, and each
/// escalation step pages once (one e-mail, one Slack message).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_probe_each_slot_once_and_page_once() {
    use common::receiver::{Receiver, reply};
    use common::smtp::SmtpSink;

    let db = Database::new().await;
    let url = db.schema.url();
    let args = ["--database-url", url.as_str(), "--allow-private-http"];
    let nodes = [
        Server::start_with(&args).await,
        Server::start_with(&args).await,
        Server::start_with(&args).await,
    ];
    let dir = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start(dir.path(), true).await;
    let mut slack = Receiver::start().await;
    let target = Receiver::start().await;
    target.then((0..1000).map(|_| reply(503)));
    let ns = "/namespaces/default";
    let smtp = format!("smtp://127.0.0.1:{}?tls=none", sink.port);
    for (path, body) in [
        (
            "channels/mail",
            json!({"email": {"smtp_url": smtp, "from": "keel@example.com"}}),
        ),
        ("recipients/bob", json!({"email": "bob@example.com"})),
        ("channels/ops", json!({"slack": {"webhook_url": slack.url}})),
        (
            "escalation-policies/oncall",
            json!({"steps": [{"notify": [{"channel": "mail", "to": "bob"}], "wait_ms": 1000},
                             {"notify": [{"channel": "ops"}], "wait_ms": 1000}]}),
        ),
        (
            "monitors/api",
            json!({"http": {"url": target.url}, "interval_ms": 5000, "escalation": "oncall"}),
        ),
    ] {
        let (status, answer) = nodes[0]
            .call("PUT", &format!("{ns}/{path}"), Some(body))
            .await;
        assert!(status == 201 || status == 200, "{path}: {answer}");
    }
    let page = slack.next().await;
    assert!(
        page.json()["text"]
            .as_str()
            .unwrap()
            .contains("api is down")
    );
    // Two more slots after the last page: any second page would have gone.
    let seen = probe_results(&nodes[1]).await.len();
    let deadline = Instant::now() + Duration::from_secs(30);
    while probe_results(&nodes[2]).await.len() < seen + 2 {
        assert!(Instant::now() < deadline, "probes stopped");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let all = probe_results(&nodes[0]).await;
    let at: Vec<i64> = all
        .iter()
        .map(|r| {
            keel_core::Timestamp::parse_rfc3339(r["at"].as_str().unwrap())
                .unwrap()
                .as_millis()
        })
        .collect();
    for pair in at.windows(2) {
        assert!(pair[1] - pair[0] >= 4000, "a slot probed twice: {at:?}");
    }
    let (_, open) = nodes[1].get(&format!("{ns}/incidents")).await;
    assert_eq!(open["incidents"].as_array().unwrap().len(), 1, "{open}");
    assert_eq!(sink.count(), 1, "step 1 e-mailed once");
    assert!(
        tokio::time::timeout(Duration::from_millis(500), slack.next())
            .await
            .is_err(),
        "step 2 posted once"
    );
}

async fn probe_results(node: &Server) -> Vec<Value> {
    let (_, answer) = node
        .get("/namespaces/default/monitors/api/results?limit=1000")
        .await;
    answer["results"].as_array().unwrap().clone()
}

/// Two nodes run one handler queue on PostgreSQL: 200 jobs over 10
/// objects, each adding one to its object's count. Per-object order and
/// the commit's transaction keep every count exact: no update lost or
/// counted twice across nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_run_a_handler_with_exact_state() {
    let db = Database::new().await;
    let (a, b) = (db.node().await, db.node().await);
    let count = r#"export default async (job, ctx) => {
        const n = ((await ctx.state.get("n")) ?? 0) + 1;
        await ctx.state.put("n", n);
        return n;
    };"#;
    let (status, body) = a
        .call(
            "PUT",
            "/namespaces/default/handlers/count",
            Some(json!({"js": count})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = a
        .call(
            "PUT",
            "/namespaces/default/queues/counted",
            Some(json!({"handler": "count"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for i in 0..200 {
        let node = if i % 2 == 0 { &a } else { &b };
        node.enqueue(
            "counted",
            json!({"payload": {}, "object": {"type": "o", "key": format!("k{}", i % 10)}}),
        )
        .await;
    }
    common::eventually("every job is counted", || async {
        let (_, q) = a.get("/namespaces/default/queues/counted").await;
        (q["counts"]["succeeded"] == 200).then_some(q)
    })
    .await;
    for k in 0..10 {
        let (_, n) = b
            .get(&format!("/namespaces/default/objects/o/k{k}/state/n"))
            .await;
        assert_eq!(n["value"], 20, "object k{k}: {n}");
    }
}
