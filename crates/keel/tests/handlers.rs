//! Handlers against the real server: JavaScript and WebAssembly uploaded,
//! checked and versioned; a queue whose policy names a handler, its jobs
//! run by Keel with their object's state committed with the completion (and
//! nothing from a failed attempt); effects published and enqueued once;
//! outbound calls only to allowed origins, with secrets filled in host-side;
//! limits that stop a runaway handler while the server stays healthy; and
//! objects' state from outside with versions, batches and bounds.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed check")]

mod common;

use base64::Engine as _;
use common::receiver::{Receiver, reply};
use common::{Server, assert_error, eventually};
use serde_json::{Value, json};

const NS: &str = "/namespaces/default";

async fn put_handler(server: &Server, name: &str, body: Value) -> (u16, Value) {
    server
        .call("PUT", &format!("{NS}/handlers/{name}"), Some(body))
        .await
}

async fn handler_queue(server: &Server, queue: &str, handler: &str) {
    let (status, body) = server
        .call(
            "PUT",
            &format!("{NS}/queues/{queue}"),
            Some(json!({"handler": handler, "backoff": {"base_ms": 10, "max_ms": 10, "factor": 1.0, "jitter": false}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

async fn finished(server: &Server, id: &str) -> Value {
    eventually(&format!("job {id} finishes"), || async {
        let job = server.job(id).await;
        matches!(job["state"].as_str(), Some("succeeded" | "dead")).then_some(job)
    })
    .await
}

const COUNTER: &str = r#"
export default async function (job, ctx) {
    const seen = (await ctx.state.get("seen")) ?? 0;
    await ctx.state.put("seen", seen + 1);
    await ctx.state.put("last", job.payload);
    await ctx.publish("counted", { data: { object: job.object.key, seen: seen + 1 } });
    if (job.payload.follow) await ctx.enqueue("followups", { payload: { after: job.id } });
    ctx.log("counted", job.object.key, seen + 1);
    return { seen: seen + 1 };
}
"#;

#[tokio::test]
async fn a_queue_runs_its_handler_with_state_committed_with_each_job() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    let (status, v1) = put_handler(&server, "counter", json!({"js": COUNTER})).await;
    assert_eq!(status, 201, "{v1}");
    assert_eq!(
        (v1["version"].as_u64(), v1["kind"].as_str()),
        (Some(1), Some("js"))
    );
    handler_queue(&server, "counted", "counter").await;
    let mut ids = Vec::new();
    for (key, follow) in [("c1", false), ("c1", false), ("c2", false), ("c1", true)] {
        ids.push(
            server
                .enqueue(
                    "counted",
                    json!({"payload": {"n": ids.len(), "follow": follow}, "object": {"type": "customer", "key": key}}),
                )
                .await,
        );
    }
    let mut results = Vec::new();
    for id in &ids {
        let job = finished(&server, id).await;
        assert_eq!(job["state"], "succeeded", "{job}");
        results.push(job["result"]["seen"].as_u64().unwrap());
    }
    // One at a time per object, in order: c1 counts 1, 2, 3; c2 counts 1.
    assert_eq!(results, [1, 2, 1, 3]);
    let (status, seen) = server
        .get(&format!("{NS}/objects/customer/c1/state/seen"))
        .await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["value"], 3);
    let (_, last) = server
        .get(&format!("{NS}/objects/customer/c1/state/last"))
        .await;
    assert_eq!(last["value"]["follow"], true);
    // The effects: four events on the topic, one follow-up job, each once.
    let events = eventually("the events are published", || async {
        let (status, page) = server
            .get(&format!("{NS}/topics/counted/events?limit=10"))
            .await;
        (status == 200 && page["events"].as_array().map_or(0, Vec::len) == 4).then_some(page)
    })
    .await;
    // In commit order per object (objects' effects share their key).
    let seen = |object: &str| -> Vec<u64> {
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["data"]["object"] == object)
            .map(|e| e["data"]["seen"].as_u64().unwrap())
            .collect()
    };
    assert_eq!((seen("c1"), seen("c2")), (vec![1, 2, 3], vec![1]));
    let follow = eventually("the follow-up job is enqueued", || async {
        let jobs = server
            .lease("followups", json!({"max_jobs": 10, "wait_ms": 0}))
            .await;
        (!jobs.is_empty()).then(|| json!(jobs))
    })
    .await;
    assert_eq!(follow.as_array().unwrap().len(), 1);
    assert_eq!(follow[0]["payload"]["after"], ids[3].as_str());
}

#[tokio::test]
async fn a_failed_attempt_leaves_no_state_and_no_effects() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    let flaky = r#"
        export default async function (job, ctx) {
            await ctx.state.put("writes", ((await ctx.state.get("writes")) ?? 0) + 1);
            await ctx.publish("flaky", { data: { attempt: job.attempt } });
            if (job.attempt < 3) throw new Error("not yet: attempt " + job.attempt);
            return "done";
        }"#;
    let (status, body) = put_handler(&server, "flaky", json!({"js": flaky})).await;
    assert_eq!(status, 201, "{body}");
    handler_queue(&server, "flaky", "flaky").await;
    let id = server
        .enqueue(
            "flaky",
            json!({"payload": {}, "object": {"type": "t", "key": "k"}}),
        )
        .await;
    let job = finished(&server, &id).await;
    assert_eq!(
        (job["state"].as_str(), job["attempt"].as_u64()),
        (Some("succeeded"), Some(3)),
        "{job}"
    );
    let errors: Vec<&str> = job["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(
        errors[0].starts_with("Error: not yet: attempt 1"),
        "{errors:?}"
    );
    let (_, writes) = server.get(&format!("{NS}/objects/t/k/state/writes")).await;
    assert_eq!(writes["value"], 1, "only the attempt that succeeded wrote");
    let events = eventually("the one event is published", || async {
        let (_, page) = server.get(&format!("{NS}/topics/flaky/events")).await;
        (page["events"].as_array().map_or(0, Vec::len) == 1).then_some(page)
    })
    .await;
    assert_eq!(events["events"][0]["data"]["attempt"], 3);
}

#[tokio::test]
async fn uploads_are_checked_named_and_versioned() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    let syntax = put_handler(
        &server,
        "h",
        json!({"js": "export default function (job) {\n  return job.;\n}"}),
    )
    .await;
    assert_error(&syntax, 400, "invalid_definition");
    assert!(
        syntax.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("handler.js:2"),
        "{}",
        syntax.1
    );
    let import = put_handler(
        &server,
        "h",
        json!({"js": "import fs from 'fs';\nexport default () => fs;"}),
    )
    .await;
    assert_error(&import, 400, "invalid_definition");
    let wasi = wat::parse_str(
        r#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
                   (memory (export "memory") 1)
                   (func (export "keel_alloc") (param i32) (result i32) (i32.const 0))
                   (func (export "keel_handle") (param i32 i32) (result i64) (i64.const 0)))"#,
    )
    .unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&wasi);
    let refused = put_handler(&server, "w", json!({"wasm_base64": b64})).await;
    assert_error(&refused, 400, "invalid_definition");
    assert!(
        refused.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("wasi_snapshot_preview1.fd_write")
    );
    let over = put_handler(
        &server,
        "h",
        json!({"js": COUNTER, "limits": {"memory_mb": 100000}}),
    )
    .await;
    assert_error(&over, 400, "invalid_request");
    let both = put_handler(&server, "h", json!({"js": COUNTER, "wasm_base64": "AA=="})).await;
    assert_error(&both, 400, "invalid_request");
    let origin = put_handler(
        &server,
        "h",
        json!({"js": COUNTER, "allow_http": ["https://x.example/path"]}),
    )
    .await;
    assert_error(&origin, 400, "invalid_request");

    let (status, v1) = put_handler(&server, "h", json!({"js": COUNTER})).await;
    assert_eq!((status, v1["version"].as_u64()), (201, Some(1)));
    let (status, same) = put_handler(&server, "h", json!({"js": COUNTER})).await;
    assert_eq!((status, same["version"].as_u64()), (200, Some(1)));
    let (status, v2) = put_handler(
        &server,
        "h",
        json!({"js": COUNTER, "limits": {"cpu_ms": 20}}),
    )
    .await;
    assert_eq!(
        (
            status,
            v2["version"].as_u64(),
            v2["limits"]["cpu_ms"].as_u64()
        ),
        (201, Some(2), Some(20))
    );
    let (_, old) = server.get(&format!("{NS}/handlers/h?version=1")).await;
    assert_eq!(
        (old["version"].as_u64(), old["limits"]["cpu_ms"].as_u64()),
        (Some(1), Some(50))
    );
    assert_eq!(old["js"].as_str(), Some(COUNTER));
    let (_, list) = server.get(&format!("{NS}/handlers")).await;
    assert_eq!(list["handlers"][0]["version"], 2);
    let unknown = server
        .call(
            "PUT",
            &format!("{NS}/queues/q"),
            Some(json!({"handler": "nosuch"})),
        )
        .await;
    assert_error(&unknown, 404, "not_found");
    let (status, _) = server
        .call("DELETE", &format!("{NS}/handlers/h"), None)
        .await;
    assert_eq!(status, 204);
    assert_error(
        &server.get(&format!("{NS}/handlers/h")).await,
        404,
        "not_found",
    );
}

#[tokio::test]
async fn runaway_handlers_stop_at_their_limits_and_the_server_stays_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    let spin = "export default function () { for (;;) {} }";
    put_handler(
        &server,
        "spin",
        json!({"js": spin, "limits": {"cpu_ms": 100}}),
    )
    .await;
    let (status, answer) = server
        .post(
            &format!("{NS}/handlers/spin/invoke"),
            json!({"payload": {}}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["error"]["limit"], "cpu_ms", "{answer}");
    assert!(answer["cpu_ms"].as_f64().unwrap() >= 100.0);
    let hog = "export default function () { const a = []; for (;;) a.push('x'.repeat(65536) + a.length); }";
    put_handler(
        &server,
        "hog",
        json!({"js": hog, "limits": {"memory_mb": 16, "cpu_ms": 5000}}),
    )
    .await;
    let (_, answer) = server
        .post(&format!("{NS}/handlers/hog/invoke"), json!({"payload": {}}))
        .await;
    assert_eq!(answer["error"]["limit"], "memory_mb", "{answer}");
    // A job on a runaway handler fails with the limit named, and dies.
    handler_queue(&server, "spinning", "spin").await;
    let id = server
        .enqueue("spinning", json!({"payload": {}, "max_attempts": 1}))
        .await;
    let job = finished(&server, &id).await;
    assert_eq!(job["state"], "dead");
    assert!(
        job["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("limits.cpu_ms"),
        "{job}"
    );
    let (status, _) = server.get("/healthz").await;
    assert_eq!(status, 200);
    // The test call answers the logs and the result of a good one.
    let hello = r#"export default async (job, ctx) => { console.log("hi", job.payload.name); return "hello " + job.payload.name; }"#;
    put_handler(&server, "hello", json!({"js": hello})).await;
    let (_, answer) = server
        .post(
            &format!("{NS}/handlers/hello/invoke"),
            json!({"payload": {"name": "ada"}}),
        )
        .await;
    assert_eq!(
        (answer["result"].as_str(), answer["logs"][0].as_str()),
        (Some("hello ada"), Some("hi ada")),
        "{answer}"
    );
}

#[tokio::test]
async fn outbound_calls_reach_only_allowed_origins_with_secrets_filled_in() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &["--allow-private-http"]).await;
    let mut receiver = Receiver::start().await;
    receiver.then([reply(200)]);
    let base = receiver.url.trim_end_matches('/').to_owned();
    let origin = base.split('/').take(3).collect::<Vec<_>>().join("/");
    let code = format!(
        r#"export default async function (job, ctx) {{
            const r = await ctx.fetch("{base}", {{ method: "POST", headers: {{ authorization: "Bearer {{{{secrets.TOKEN}}}}" }}, body: "ping" }});
            let refused = null;
            try {{ await ctx.fetch("http://127.0.0.2:9/"); }} catch (e) {{ refused = String(e); }}
            return {{ status: r.status, refused }};
        }}"#
    );
    let (status, body) = put_handler(
        &server,
        "caller",
        json!({"js": code, "allow_http": [origin]}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = server
        .call(
            "PUT",
            &format!("{NS}/handlers/caller/secrets"),
            Some(json!({"secrets": {"TOKEN": "s3cr3t"}})),
        )
        .await;
    assert_eq!(status, 204);
    let (_, answer) = server
        .post(
            &format!("{NS}/handlers/caller/invoke"),
            json!({"payload": {}}),
        )
        .await;
    assert_eq!(answer["result"]["status"], 200, "{answer}");
    assert!(
        answer["result"]["refused"]
            .as_str()
            .unwrap()
            .contains("not in the handler's allow_http"),
        "{answer}"
    );
    let got = receiver.next().await;
    assert_eq!(got.headers["authorization"], "Bearer s3cr3t");
    assert_eq!(got.body, b"ping");
    let (_, shown) = server.get(&format!("{NS}/handlers/caller")).await;
    assert!(!shown.to_string().contains("s3cr3t"));
}

#[tokio::test]
async fn object_state_has_versions_batches_and_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    let key = |k: &str| format!("{NS}/objects/cart/u1/state/{k}");
    assert_error(&server.get(&key("items")).await, 404, "not_found");
    let (status, put) = server
        .call("PUT", &key("items"), Some(json!({"value": [1, 2]})))
        .await;
    assert_eq!(status, 200, "{put}");
    let v1 = put["version"].as_u64().unwrap();
    let (_, got) = server.get(&key("items")).await;
    assert_eq!(
        (got["value"].clone(), got["version"].as_u64()),
        (json!([1, 2]), Some(v1))
    );
    // If-Match: a stale version is 412, the current one goes through.
    let url = server.v1(&key("items"));
    let client = reqwest::Client::new();
    let stale = client
        .put(&url)
        .header("if-match", (v1 + 7).to_string())
        .json(&json!({"value": [3]}))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 412);
    let fresh = client
        .put(&url)
        .header("if-match", format!("\"{v1}\""))
        .json(&json!({"value": [3]}))
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), 200);
    // A batch is all or none.
    let batch = format!("{NS}/objects/cart/u1/state:batch");
    let refused = server
        .post(&batch, json!({"ops": [{"key": "a", "value": 1}, {"key": "items", "value": [], "if_version": v1}]}))
        .await;
    assert_error(&refused, 412, "version_mismatch");
    assert_error(&server.get(&key("a")).await, 404, "not_found");
    let (status, done) = server
        .post(
            &batch,
            json!({"ops": [{"key": "a", "value": 1}, {"key": "b", "value": 2}, {"key": "items"}]}),
        )
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["versions"][2], 0);
    let (_, page) = server
        .get(&format!("{NS}/objects/cart/u1/state?limit=1"))
        .await;
    assert_eq!(
        (
            page["entries"][0]["key"].as_str(),
            page["next_cursor"].as_str()
        ),
        (Some("a"), Some("a"))
    );
    let (_, next) = server
        .get(&format!("{NS}/objects/cart/u1/state?limit=1&cursor=a"))
        .await;
    assert_eq!(next["entries"][0]["key"], "b");
    // Bounds: a value over 256 KiB is 413.
    let big = "x".repeat(300 << 10);
    let too_big = server
        .call("PUT", &key("big"), Some(json!({"value": big})))
        .await;
    assert_error(&too_big, 413, "payload_too_large");
    let (status, _) = server.call("DELETE", &key("a"), None).await;
    assert_eq!(status, 204);
    assert_error(
        &server.call("DELETE", &key("a"), None).await,
        404,
        "not_found",
    );
}

#[tokio::test]
async fn subscriptions_and_workflow_steps_run_handlers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]).await;
    let tally = r#"
        export default async function (job, ctx) {
            const n = ((await ctx.state.get("orders")) ?? 0) + 1;
            await ctx.state.put("orders", n);
            return n;
        }"#;
    put_handler(&server, "tally", json!({"js": tally})).await;
    let missing = server
        .call(
            "PUT",
            &format!("{NS}/subscriptions/nosuch"),
            Some(json!({"topic": "orders", "target": {"handler": "nosuch"}})),
        )
        .await;
    assert_error(&missing, 404, "not_found");
    let (status, body) = server
        .call(
            "PUT",
            &format!("{NS}/subscriptions/tally-orders"),
            Some(json!({"topic": "orders", "start": "earliest", "target": {"handler": "tally", "object": "customer"}})),
        )
        .await;
    assert!(status == 200 || status == 201, "{body}");
    for key in ["c1", "c1", "c2"] {
        let (status, body) = server
            .post(
                &format!("{NS}/topics/orders/events"),
                json!({"key": key, "data": {"total": 1}}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let c1 = eventually("c1's orders are counted", || async {
        let (status, got) = server
            .get(&format!("{NS}/objects/customer/c1/state/orders"))
            .await;
        (status == 200 && got["value"] == 2).then_some(got)
    })
    .await;
    assert_eq!(c1["value"], 2);
    let (_, c2) = server
        .get(&format!("{NS}/objects/customer/c2/state/orders"))
        .await;
    assert_eq!(c2["value"], 1);

    let double = r#"export default async (job) => ({ doubled: job.payload.n * 2 });"#;
    put_handler(&server, "double", json!({"js": double})).await;
    let definition = json!({
        "name": "math",
        "steps": {
            "twice": {"handler": {"name": "double", "input": {"n": "${{ input.n }}"}}},
            "again": {"needs": ["twice"], "handler": {"name": "double", "input": {"n": "${{ steps.twice.output.doubled }}"}}}
        }
    });
    let (status, body) = server
        .call("PUT", &format!("{NS}/workflows/math"), Some(definition))
        .await;
    assert!(status == 200 || status == 201, "{body}");
    let (status, run) = server
        .post(
            &format!("{NS}/workflows/math/runs"),
            json!({"input": {"n": 5}}),
        )
        .await;
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_str().unwrap().to_owned();
    let done = eventually("the run ends", || async {
        let (_, run) = server.get(&format!("{NS}/runs/{id}?wait_ms=3000")).await;
        (run["status"] != "running").then_some(run)
    })
    .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["steps"]["again"]["output"]["doubled"], 20, "{done}");
}

/// Kills the server three times while a handler folds 60 ordered jobs of
/// one object into its state; after each restart the state must be the
/// fold of the jobs that completed, each once and in order, never a
/// partial attempt's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_state_is_the_fold_of_the_completed_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir, &[]).await;
    let fold = r#"
        export default async function (job, ctx) {
            const seen = (await ctx.state.get("seen")) ?? [];
            seen.push(job.payload.n);
            await ctx.state.put("seen", seen);
            await ctx.state.put("count", seen.length);
            return seen.length;
        }"#;
    put_handler(&server, "fold", json!({"js": fold})).await;
    handler_queue(&server, "folded", "fold").await;
    const JOBS: u64 = 60;
    for n in 0..JOBS {
        server
            .enqueue(
                "folded",
                json!({"payload": {"n": n}, "lease_ms": 1000, "object": {"type": "ledger", "key": "l1"}}),
            )
            .await;
    }
    let mut last = 0;
    for _ in 0..3 {
        let progressed = eventually("the handler makes progress", || async {
            let seen = folded(&server).await;
            (seen.len() as u64 >= (last + 5).min(JOBS)).then(|| json!(seen.len()))
        })
        .await;
        server.kill9().await;
        server = Server::start_in(dir.path(), &[]).await;
        let seen = folded(&server).await;
        assert_eq!(
            seen,
            (0..seen.len() as u64).collect::<Vec<_>>(),
            "a fold of whole jobs, in order"
        );
        assert!(
            seen.len() as u64 >= progressed.as_u64().unwrap(),
            "committed state survives"
        );
        last = seen.len() as u64;
    }
    let all = eventually("every job is folded", || async {
        let seen = folded(&server).await;
        (seen.len() as u64 == JOBS).then(|| json!(seen))
    })
    .await;
    assert_eq!(all, json!((0..JOBS).collect::<Vec<_>>()));
    let (_, count) = server
        .get(&format!("{NS}/objects/ledger/l1/state/count"))
        .await;
    assert_eq!(count["value"], JOBS);
}

/// The ledger's `seen` list (empty before the first commit).
async fn folded(server: &Server) -> Vec<u64> {
    let (status, got) = server
        .get(&format!("{NS}/objects/ledger/l1/state/seen"))
        .await;
    if status == 404 {
        return Vec::new();
    }
    got["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}
