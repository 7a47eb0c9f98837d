//! The sandbox against real modules: the ABI, the imports refused, every
//! limit, and JavaScript through the QuickJS engine module.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed check")]
use std::collections::BTreeMap;
use std::time::Duration;

use keel_sandbox::{Caps, Failure, HandlerLimits, Host, Limit, Op, Sandbox};
use serde_json::{Value, json};

/// A host that keeps state in a map and records what it was asked.
#[derive(Default)]
struct MapHost {
    state: BTreeMap<String, Value>,
    calls: Vec<(Op, Value)>,
    /// How long each call takes (host time, not the guest's CPU).
    delay: Duration,
}

#[async_trait::async_trait]
impl Host for MapHost {
    async fn call(&mut self, op: Op, request: &[u8]) -> Result<Value, String> {
        let req: Value = serde_json::from_slice(request).map_err(|e| e.to_string())?;
        self.calls.push((op, req.clone()));
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let key = req["key"].as_str().unwrap_or_default().to_owned();
        match op {
            Op::StateGet => Ok(self.state.get(&key).cloned().unwrap_or(Value::Null)),
            Op::StatePut => {
                self.state.insert(key, req["value"].clone());
                Ok(Value::Null)
            }
            Op::Fetch => Ok(
                json!({"status": 200, "headers": {"content-type": "text/plain"}, "body": "pong"}),
            ),
            Op::Clock => Ok(json!(self.now_ms())),
            Op::Random => Ok(json!(format!(
                "{:08x}",
                self.calls.len() * 7919 + self.delay.as_millis() as usize
            ))),
            _ => Err(format!("{op:?} is not served here")),
        }
    }

    fn now_ms(&self) -> i64 {
        1_800_000_000_000
    }
}

fn sandbox() -> Sandbox {
    Sandbox::new(Caps {
        instances: 16,
        ..Caps::default()
    })
    .unwrap()
}

/// A module in the text format with the ABI's exports around `body`, a
/// `keel_handle` that returns what `body` leaves (an i64).
fn module(imports: &str, body: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
            {imports}
            (memory (export "memory") 1)
            (global $heap (mut i32) (i32.const 1024))
            (func $alloc (export "keel_alloc") (param $n i32) (result i32)
                (local $at i32)
                (local.set $at (global.get $heap))
                (global.set $heap (i32.add (global.get $heap) (local.get $n)))
                (local.get $at))
            (data (i32.const 16) "R{{\"echo\":true}}")
            (data (i32.const 64) "Eit broke")
            {body})"#
    ))
    .unwrap()
}

async fn invoke(src: &str, limits: HandlerLimits, host: MapHost) -> keel_sandbox::Invocation {
    let sandbox = sandbox();
    let prepared = sandbox
        .prepare_js(&sandbox.compile_js(src).await.unwrap())
        .await
        .unwrap();
    sandbox
        .invoke(
            &prepared,
            br#"{"id":"j1","payload":{"n":2},"attempt":1}"#,
            limits,
            Box::new(host),
        )
        .await
}

#[tokio::test]
async fn a_module_answers_its_result_through_the_abi() {
    let wasm = module(
        "",
        r#"(func (export "keel_handle") (param i32 i32) (result i64)
            (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 14)))"#,
    );
    let sandbox = sandbox();
    let prepared = sandbox.prepare_wasm(&wasm).unwrap();
    let done = sandbox
        .invoke(
            &prepared,
            b"{}",
            HandlerLimits::default(),
            Box::<MapHost>::default(),
        )
        .await;
    assert_eq!(done.outcome.unwrap().get(), r#"{"echo":true}"#);
}

#[tokio::test]
async fn a_module_error_fails_the_attempt_with_its_message() {
    let wasm = module(
        "",
        r#"(func (export "keel_handle") (param i32 i32) (result i64)
            (i64.or (i64.shl (i64.const 64) (i64.const 32)) (i64.const 9)))"#,
    );
    let sandbox = sandbox();
    let prepared = sandbox.prepare_wasm(&wasm).unwrap();
    let done = sandbox
        .invoke(
            &prepared,
            b"{}",
            HandlerLimits::default(),
            Box::<MapHost>::default(),
        )
        .await;
    assert_eq!(
        done.outcome.unwrap_err(),
        Failure::Thrown("it broke".into())
    );
}

#[tokio::test]
async fn imports_other_than_keel_are_refused_by_name() {
    let wasm = module(
        r#"(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))"#,
        r#"(func (export "keel_handle") (param i32 i32) (result i64) (i64.const 0))"#,
    );
    let refused = sandbox().prepare_wasm(&wasm).err().unwrap();
    assert!(
        refused
            .0
            .contains("imports wasi_snapshot_preview1.fd_write"),
        "{refused}"
    );
    let wrong_type = module(
        r#"(import "keel" "call" (func (param i32) (result i32)))"#,
        r#"(func (export "keel_handle") (param i32 i32) (result i64) (i64.const 0))"#,
    );
    let refused = sandbox().prepare_wasm(&wrong_type).err().unwrap();
    assert!(refused.0.contains("imports keel.call"), "{refused}");
    let no_handle = module("", "");
    let refused = sandbox().prepare_wasm(&no_handle).err().unwrap();
    assert!(refused.0.contains("keel_handle"), "{refused}");
    let refused = sandbox()
        .prepare_wasm(b"\0asm\x01\0\0\0garbage")
        .err()
        .unwrap();
    assert!(
        refused.0.starts_with("not a valid WebAssembly module"),
        "{refused}"
    );
}

#[tokio::test]
async fn a_runaway_loop_stops_at_its_cpu_limit_and_the_next_call_runs() {
    let wasm = module(
        "",
        r#"(func (export "keel_handle") (param i32 i32) (result i64)
            (loop $forever (br $forever)) (i64.const 0))"#,
    );
    let sandbox = sandbox();
    let prepared = sandbox.prepare_wasm(&wasm).unwrap();
    let limits = HandlerLimits {
        cpu_ms: 100,
        ..HandlerLimits::default()
    };
    let done = sandbox
        .invoke(&prepared, b"{}", limits, Box::<MapHost>::default())
        .await;
    match done.outcome {
        Err(Failure::Limit(Limit::Cpu, message)) => {
            assert!(message.contains("limits.cpu_ms"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(done.cpu >= Duration::from_millis(100), "{:?}", done.cpu);
    // Loose: the precise overshoot is measured by the benchmark, not here.
    assert!(done.wall < Duration::from_secs(2), "{:?}", done.wall);
    let echo = module(
        "",
        r#"(func (export "keel_handle") (param i32 i32) (result i64)
            (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 14)))"#,
    );
    let prepared = sandbox.prepare_wasm(&echo).unwrap();
    let again = sandbox
        .invoke(
            &prepared,
            b"{}",
            HandlerLimits::default(),
            Box::<MapHost>::default(),
        )
        .await;
    assert!(again.outcome.is_ok());
}

#[tokio::test]
async fn memory_grow_past_the_limit_fails_cleanly() {
    // Grows by 100 MiB: refused (-1), and the handler says so.
    let wasm = module(
        "",
        r#"(func (export "keel_handle") (param i32 i32) (result i64)
            (if (i32.eq (memory.grow (i32.const 1600)) (i32.const -1))
                (then (return (i64.or (i64.shl (i64.const 64) (i64.const 32)) (i64.const 9)))))
            (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 14)))"#,
    );
    let sandbox = sandbox();
    let prepared = sandbox.prepare_wasm(&wasm).unwrap();
    let done = sandbox
        .invoke(
            &prepared,
            b"{}",
            HandlerLimits::default(),
            Box::<MapHost>::default(),
        )
        .await;
    assert!(
        matches!(done.outcome, Err(Failure::Limit(Limit::Memory, _))),
        "{:?}",
        done.outcome
    );
    let roomy = HandlerLimits {
        memory_mb: 128,
        ..HandlerLimits::default()
    };
    let done = sandbox
        .invoke(&prepared, b"{}", roomy, Box::<MapHost>::default())
        .await;
    assert!(done.outcome.is_ok(), "{:?}", done.outcome);
    assert!(done.memory_bytes > 100 << 20);
}

#[tokio::test]
async fn javascript_runs_with_its_state_and_result() {
    let mut host = MapHost::default();
    host.state.insert("count".into(), json!(40));
    let done = invoke(
        r#"export default async function (job, ctx) {
            const n = (await ctx.state.get("count")) + job.payload.n;
            await ctx.state.put("count", n);
            console.log("counted", n, { attempt: job.attempt });
            const r = await ctx.fetch("https://api.example.com/ping");
            return { n, pong: await r.text(), ok: r.ok, now: Date.now() };
        }"#,
        HandlerLimits::default(),
        host,
    )
    .await;
    let result: Value = serde_json::from_str(done.outcome.unwrap().get()).unwrap();
    assert_eq!(
        result,
        json!({"n": 42, "pong": "pong", "ok": true, "now": 1_800_000_000_000_i64})
    );
    assert_eq!(done.logs, vec![r#"counted 42 {"attempt":1}"#.to_owned()]);
}

#[tokio::test]
async fn a_thrown_error_and_a_refused_host_call_fail_the_attempt() {
    let done = invoke(
        r#"export default async function (job) { throw new Error("no such customer " + job.id); }"#,
        HandlerLimits::default(),
        MapHost::default(),
    )
    .await;
    match done.outcome {
        Err(Failure::Thrown(m)) => assert!(m.starts_with("Error: no such customer j1"), "{m}"),
        other => panic!("{other:?}"),
    }
    let done = invoke(
        r#"export default async function (job, ctx) { await ctx.publish("t", {}); }"#,
        HandlerLimits::default(),
        MapHost::default(),
    )
    .await;
    match done.outcome {
        Err(Failure::Thrown(m)) => assert!(m.contains("Publish is not served here"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn javascript_syntax_errors_and_imports_are_refused_at_compile() {
    let sandbox = sandbox();
    let refused = sandbox
        .compile_js("export default function (job) {\n  return job.;\n}")
        .await
        .unwrap_err();
    assert!(refused.0.contains("SyntaxError"), "{refused}");
    assert!(refused.0.contains("handler.js:2"), "{refused}");
    let refused = sandbox
        .compile_js("import fs from 'fs';\nexport default () => fs;")
        .await
        .unwrap_err();
    assert!(refused.0.contains("fs"), "{refused}");
    let missing = sandbox.compile_js("export const x = 1;").await.unwrap();
    let prepared = sandbox.prepare_js(&missing).await.unwrap();
    let done = sandbox
        .invoke(
            &prepared,
            b"{}",
            HandlerLimits::default(),
            Box::<MapHost>::default(),
        )
        .await;
    assert_eq!(
        done.outcome.unwrap_err(),
        Failure::Thrown("the module has no default export that is a function".into())
    );
}

#[tokio::test]
async fn javascript_loops_and_allocations_stop_at_their_limits() {
    let spin = invoke(
        "export default function () { for (;;) {} }",
        HandlerLimits {
            cpu_ms: 100,
            ..HandlerLimits::default()
        },
        MapHost::default(),
    )
    .await;
    assert!(
        matches!(spin.outcome, Err(Failure::Limit(Limit::Cpu, _))),
        "{:?}",
        spin.outcome
    );
    let hog = invoke(
        "export default function () { const a = []; for (;;) a.push('x'.repeat(1 << 16) + a.length); }",
        HandlerLimits {
            memory_mb: 16,
            cpu_ms: 5_000,
            ..HandlerLimits::default()
        },
        MapHost::default(),
    )
    .await;
    assert!(
        matches!(hog.outcome, Err(Failure::Limit(Limit::Memory, _))),
        "{:?}",
        hog.outcome
    );
    assert!(hog.memory_bytes <= 16 << 20);
}

#[tokio::test]
async fn time_in_host_calls_is_not_guest_cpu() {
    let host = MapHost {
        delay: Duration::from_millis(60),
        ..MapHost::default()
    };
    let done = invoke(
        r#"export default async function (job, ctx) {
            for (let i = 0; i < 3; i++) await ctx.state.get("k");
            return "done";
        }"#,
        HandlerLimits {
            cpu_ms: 50,
            ..HandlerLimits::default()
        },
        host,
    )
    .await;
    assert_eq!(done.outcome.unwrap().get(), r#""done""#);
    assert!(done.wall >= Duration::from_millis(180));
}

#[tokio::test]
async fn math_random_is_seeded_per_invocation_not_by_the_snapshot() {
    let sandbox = sandbox();
    let code = sandbox
        .compile_js("export default () => [Math.random(), Math.random()];")
        .await
        .unwrap();
    let prepared = sandbox.prepare_js(&code).await.unwrap();
    let mut seen = Vec::new();
    for delay in [1, 2] {
        let host = MapHost {
            delay: Duration::from_millis(delay),
            ..MapHost::default()
        };
        let done = sandbox
            .invoke(&prepared, b"{}", HandlerLimits::default(), Box::new(host))
            .await;
        let pair: Vec<f64> = serde_json::from_str(done.outcome.unwrap().get()).unwrap();
        assert!(pair.iter().all(|x| (0.0..1.0).contains(x)) && pair[0] != pair[1]);
        seen.push(pair);
    }
    assert_ne!(
        seen[0], seen[1],
        "each invocation draws its own seed from the host"
    );
}

#[tokio::test]
async fn responses_past_their_limit_stop_the_guest_even_when_it_catches() {
    let done = invoke(
        r#"export default async function (job, ctx) {
            await (await ctx.fetch("https://api.example.com/a")).text();
            try { await ctx.fetch("https://api.example.com/b"); } catch (e) { return "caught " + e; }
            return "both";
        }"#,
        HandlerLimits {
            response_bytes: 6,
            ..HandlerLimits::default()
        },
        MapHost::default(),
    )
    .await;
    match done.outcome {
        Err(Failure::Limit(Limit::ResponseBytes, m)) => {
            assert!(m.contains("limits.response_bytes"), "{m}");
        }
        other => panic!("{other:?}"),
    }
}
