//! The sandbox: one wasmtime engine per node, the modules it compiled, and
//! invocations, each in a fresh store and instance from the pooling
//! allocator (copy-on-write memory: an instance costs microseconds).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use wasmtime::{
    Config, Engine, ExternType, InstanceAllocationStrategy, InstancePre, Linker, Module,
    PoolingAllocationConfig, ResourceLimiter, Store, UpdateDeadline, ValType,
};

use crate::abi::{self, MODULE};
use crate::guest::{self, Guest};
use crate::{Caps, HandlerLimits, Host, Limit};

/// How often the epoch advances: the CPU limit is checked this often, so a
/// runaway guest stops within its limit and one tick.
const TICK: Duration = Duration::from_millis(2);
/// Bytes of an instance's memory its slot keeps mapped when it ends, the
/// rest given back to the kernel. Where Linux's `PAGEMAP_SCAN` finds the
/// pages the instance wrote, those (up to this) are copied back from the
/// image instead of dropped, so the next instance does not fault them in
/// again: a fault on a copy-on-write page costs a TLB flush on every core
/// the process runs on, and dominated a JavaScript handler's cost (a cold
/// call 138 µs → 37 µs). Without the scan the first bytes are copied back
/// whether written or not, so only 1 MiB is kept.
const KEEP_RESIDENT_SCANNED: usize = 8 << 20;
const KEEP_RESIDENT: usize = 1 << 20;
/// The same for an instance's function table (lazily filled: the entries a
/// call used are written); QuickJS's holds a few thousand.
const TABLE_KEEP_RESIDENT: usize = 64 << 10;
/// A module's bytes, at most.
pub const MAX_MODULE_BYTES: usize = 16 << 20;
/// A guest's answer, at most.
const MAX_ANSWER_BYTES: usize = 16 << 20;

/// Why an upload was refused: a message that names what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Why an invocation did not return a result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The handler threw or answered an error: its message.
    Thrown(String),
    /// A limit stopped it.
    Limit(Limit, String),
    /// It trapped (unreachable, out-of-bounds access, stack exhausted) or
    /// broke the ABI.
    Trap(String),
}

impl Failure {
    pub fn message(&self) -> &str {
        match self {
            Failure::Thrown(m) | Failure::Limit(_, m) | Failure::Trap(m) => m,
        }
    }
}

/// What one invocation did.
#[derive(Debug)]
pub struct Invocation {
    pub outcome: Result<Box<RawValue>, Failure>,
    pub logs: Vec<String>,
    /// Log lines past the bound, dropped.
    pub logs_dropped: u32,
    /// Guest CPU time (host calls not counted).
    pub cpu: Duration,
    pub wall: Duration,
    /// Linear memory's high-water mark.
    pub memory_bytes: usize,
}

/// A handler ready to run: its module linked, and for JavaScript the
/// bytecode the engine module loads first.
#[derive(Clone)]
pub struct Prepared {
    pre: InstancePre<Guest>,
    bytecode: Option<Arc<[u8]>>,
}

#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    caps: Caps,
    /// Customers' modules: the `keel` imports only.
    linker: Linker<Guest>,
    /// The JavaScript engine's: `keel` and the libc shim.
    js_linker: Linker<Guest>,
    js: tokio::sync::OnceCell<InstancePre<Guest>>,
    /// Compiled modules by their bytes' SHA-256 (one engine, one config).
    modules: Mutex<HashMap<Vec<u8>, Module>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Sandbox {
    pub fn new(caps: Caps) -> Result<Sandbox, Refused> {
        let fail =
            |e: wasmtime::Error| Refused(format!("the WebAssembly engine did not start: {e}"));
        let mut pool = PoolingAllocationConfig::default();
        pool.total_core_instances(caps.instances)
            .total_memories(caps.instances)
            .total_tables(caps.instances)
            .total_stacks(caps.instances)
            .max_memories_per_module(1)
            .max_tables_per_module(1)
            .max_memory_size((caps.memory_mb as usize) << 20)
            .pagemap_scan(wasmtime::Enabled::Auto)
            .table_keep_resident(TABLE_KEEP_RESIDENT)
            .linear_memory_keep_resident(if PoolingAllocationConfig::is_pagemap_scan_available() {
                KEEP_RESIDENT_SCANNED
            } else {
                KEEP_RESIDENT
            });
        let mut config = Config::new();
        config
            .epoch_interruption(true)
            .max_wasm_stack(1 << 20)
            .async_stack_size(2 << 20)
            .memory_init_cow(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(fail)?;
        let mut linker = Linker::new(&engine);
        guest::link_keel(&mut linker).map_err(fail)?;
        let mut js_linker = linker.clone();
        guest::link_engine_libc(&mut js_linker).map_err(fail)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (ticking, done) = (engine.clone(), stop.clone());
        std::thread::Builder::new()
            .name("keel-sandbox-epoch".into())
            .spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    ticking.increment_epoch();
                }
            })
            .map_err(|e| Refused(format!("the epoch thread did not start: {e}")))?;
        Ok(Sandbox {
            inner: Arc::new(Inner {
                engine,
                caps,
                linker,
                js_linker,
                js: tokio::sync::OnceCell::new(),
                modules: Mutex::default(),
                stop,
            }),
        })
    }

    pub fn caps(&self) -> &Caps {
        &self.inner.caps
    }

    /// Compiles (or finds compiled) a customer's module and checks it
    /// against the ABI. CPU-heavy on a first sight: call it off the
    /// executor's threads.
    pub fn prepare_wasm(&self, bytes: &[u8]) -> Result<Prepared, Refused> {
        if bytes.len() > MAX_MODULE_BYTES {
            return Err(Refused(format!(
                "the module is {} bytes; at most {MAX_MODULE_BYTES}",
                bytes.len()
            )));
        }
        let module = self.compile(bytes)?;
        check_abi(&module, &self.inner.caps)?;
        let pre = self
            .inner
            .linker
            .instantiate_pre(&module)
            .map_err(|e| Refused(format!("the module does not link: {e}")))?;
        Ok(Prepared {
            pre,
            bytecode: None,
        })
    }

    /// A JavaScript handler from its bytecode (`compile_js`'s output).
    pub async fn prepare_js(&self, bytecode: &[u8]) -> Result<Prepared, Refused> {
        Ok(Prepared {
            pre: self.js_engine().await?,
            bytecode: Some(bytecode.into()),
        })
    }

    /// The JavaScript engine, compiled on first use and started once: its
    /// module rewritten to start from the memory of a started engine
    /// (`snapshot.rs`). About two seconds of compiling, on blocking threads.
    async fn js_engine(&self) -> Result<InstancePre<Guest>, Refused> {
        self.inner
            .js
            .get_or_try_init(|| async {
                let engine = self.compile_off(crate::js::ENGINE.to_vec()).await?;
                let image = self
                    .started_memory(&engine)
                    .await
                    .map_err(|e| Refused(format!("the JavaScript engine did not start: {e}")))?;
                let started =
                    crate::snapshot::with_memory(crate::js::ENGINE, &image).map_err(Refused)?;
                self.compile_off(started).await
            })
            .await
            .cloned()
    }

    /// Compiles the engine's `bytes` on a blocking thread and links them.
    async fn compile_off(&self, bytes: Vec<u8>) -> Result<InstancePre<Guest>, Refused> {
        let this = self.clone();
        let module = tokio::task::spawn_blocking(move || this.compile(&bytes))
            .await
            .map_err(|e| Refused(format!("the compile task failed: {e}")))??;
        self.inner
            .js_linker
            .instantiate_pre(&module)
            .map_err(|e| Refused(format!("the JavaScript engine does not link: {e}")))
    }

    /// The memory of an engine instance once `keel_js_init` has run.
    async fn started_memory(&self, engine: &InstancePre<Guest>) -> wasmtime::Result<Vec<u8>> {
        let mut store = Store::new(
            &self.inner.engine,
            Guest::new(Box::new(NoHost), HandlerLimits::default()),
        );
        store.set_epoch_deadline(u64::MAX / 2);
        let instance = engine.instantiate_async(&mut store).await?;
        instance
            .get_typed_func::<(), ()>(&mut store, "_initialize")?
            .call_async(&mut store, ())
            .await?;
        let started = instance
            .get_typed_func::<(), i32>(&mut store, "keel_js_init")?
            .call_async(&mut store, ())
            .await?;
        wasmtime::ensure!(started == 0, "keel_js_init answered {started}");
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| wasmtime::format_err!("the engine exports no memory"))?;
        Ok(memory.data(&store).to_vec())
    }

    /// Compiles and starts the JavaScript engine now, so the first handler
    /// does not wait.
    pub async fn warm_js(&self) -> Result<(), Refused> {
        self.js_engine().await.map(|_| ())
    }

    fn compile(&self, bytes: &[u8]) -> Result<Module, Refused> {
        let hash = ring::digest::digest(&ring::digest::SHA256, bytes)
            .as_ref()
            .to_vec();
        let cached = |m: &Mutex<HashMap<Vec<u8>, Module>>| {
            m.lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&hash)
                .cloned()
        };
        if let Some(module) = cached(&self.inner.modules) {
            return Ok(module);
        }
        let module = Module::from_binary(&self.inner.engine, bytes).map_err(|e| {
            Refused(format!(
                "not a valid WebAssembly module: {}",
                e.root_cause()
            ))
        })?;
        self.inner
            .modules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(hash, module.clone());
        Ok(module)
    }

    /// Runs a handler once on `input` (the job's JSON) within `limits`.
    pub async fn invoke(
        &self,
        handler: &Prepared,
        input: &[u8],
        limits: HandlerLimits,
        host: Box<dyn Host>,
    ) -> Invocation {
        let started = Instant::now();
        let mut store = Store::new(&self.inner.engine, Guest::new(host, limits));
        store.limiter(|g| g as &mut dyn ResourceLimiter);
        store.set_epoch_deadline(1);
        let cpu_limit = Duration::from_millis(limits.cpu_ms);
        store.epoch_deadline_callback(move |mut cx| {
            let guest = cx.data_mut();
            if guest.cpu_used() >= cpu_limit {
                guest.stopped_by = Some(Limit::Cpu);
                return Ok(UpdateDeadline::Interrupt);
            }
            // Yield to the executor every tick, the meter paused meanwhile:
            // other tasks run, and a wall-time limit can end the call.
            let meter = guest.cpu.clone();
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(async move {
                    lock(&meter).pause();
                    tokio::task::yield_now().await;
                    lock(&meter).resume();
                }),
            ))
        });
        let wall = Duration::from_millis(limits.wall_ms);
        let ran = tokio::time::timeout(wall, run(&mut store, handler, input)).await;
        let outcome = match ran {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(message))) => Err(Failure::Thrown(message)),
            Ok(Err(trap)) => Err(Failure::Trap(describe(&trap))),
            Err(_) => {
                store.data_mut().stopped_by = Some(Limit::Wall);
                Err(Failure::Trap(String::new()))
            }
        };
        let guest = store.into_data();
        // A limit reached fails the attempt, even when the guest caught the
        // error it saw and went on.
        let outcome = match (outcome, guest.stopped_by) {
            (_, Some(limit)) => Err(Failure::Limit(limit, limit_message(limit, &limits))),
            (outcome, None) => outcome,
        };
        Invocation {
            outcome,
            cpu: guest.cpu_used(),
            wall: started.elapsed(),
            memory_bytes: guest.memory_peak,
            logs: guest.logs,
            logs_dropped: guest.logs_dropped,
        }
    }

    /// Compiles a JavaScript module to QuickJS bytecode inside the engine
    /// module (a syntax error is refused with its line), with no host.
    pub async fn compile_js(&self, source: &str) -> Result<Vec<u8>, Refused> {
        let pre = self.js_engine().await?;
        let limits = HandlerLimits {
            cpu_ms: 2_000,
            wall_ms: 10_000,
            ..HandlerLimits::default()
        };
        let mut store = Store::new(&self.inner.engine, Guest::new(Box::new(NoHost), limits));
        store.limiter(|g| g as &mut dyn ResourceLimiter);
        store.set_epoch_deadline(limits.cpu_ms / TICK.as_millis() as u64 + 1);
        store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Interrupt));
        let compiled = async {
            let instance = pre.instantiate_async(&mut store).await?;
            let mut guest = Instance::new(&mut store, instance, false).await?;
            let answer = guest
                .call(&mut store, "keel_js_compile", source.as_bytes())
                .await?;
            Ok::<_, wasmtime::Error>(answer)
        };
        match compiled.await {
            Ok((abi::BYTECODE, code)) => Ok(code),
            Ok((abi::ERROR, message)) => {
                Err(Refused(String::from_utf8_lossy(&message).into_owned()))
            }
            Ok(_) => Err(Refused("the JavaScript engine answered nothing".into())),
            Err(e) => Err(Refused(format!(
                "the JavaScript did not compile: {}",
                describe(&e)
            ))),
        }
    }
}

fn lock(meter: &Mutex<guest::CpuMeter>) -> std::sync::MutexGuard<'_, guest::CpuMeter> {
    meter.lock().unwrap_or_else(|p| p.into_inner())
}

fn limit_message(limit: Limit, limits: &HandlerLimits) -> String {
    match limit {
        Limit::Cpu => format!(
            "the handler used more than {} ms of CPU (limits.cpu_ms)",
            limits.cpu_ms
        ),
        Limit::Wall => format!(
            "the handler ran longer than {} ms (limits.wall_ms)",
            limits.wall_ms
        ),
        Limit::Memory => format!(
            "the handler needed more than {} MB of memory (limits.memory_mb)",
            limits.memory_mb
        ),
        Limit::HttpCalls => format!(
            "the handler made more than {} outbound calls (limits.http_calls)",
            limits.http_calls
        ),
        Limit::ResponseBytes => format!(
            "the handler read more than {} bytes of responses (limits.response_bytes)",
            limits.response_bytes
        ),
    }
}

/// A trap as a person reads it: wasmtime's trap code when there is one.
fn describe(e: &wasmtime::Error) -> String {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::StackOverflow) => "the handler exhausted its call stack".into(),
        Some(trap) => format!("the handler trapped: {trap}"),
        None => e.root_cause().to_string(),
    }
}

/// An instance and the exports the ABI gives it.
struct Instance {
    instance: wasmtime::Instance,
    memory: wasmtime::Memory,
    alloc: wasmtime::TypedFunc<i32, i32>,
}

impl Instance {
    /// `initialize`: call the reactor's `_initialize` (not for the
    /// started JavaScript engine, whose memory already ran it).
    async fn new(
        store: &mut Store<Guest>,
        instance: wasmtime::Instance,
        initialize: bool,
    ) -> wasmtime::Result<Self> {
        if let Ok(init) = instance.get_typed_func::<(), ()>(&mut *store, "_initialize")
            && initialize
        {
            init.call_async(&mut *store, ()).await?;
        }
        let memory = instance
            .get_memory(&mut *store, "memory")
            .ok_or_else(|| wasmtime::format_err!("the module exports no memory"))?;
        let alloc = instance.get_typed_func::<i32, i32>(&mut *store, "keel_alloc")?;
        Ok(Instance {
            instance,
            memory,
            alloc,
        })
    }

    /// Writes `input` into the guest and calls `export(ptr, len)`; its
    /// tagged answer.
    async fn call(
        &mut self,
        store: &mut Store<Guest>,
        export: &str,
        input: &[u8],
    ) -> wasmtime::Result<(u8, Vec<u8>)> {
        let f = self
            .instance
            .get_typed_func::<(i32, i32), i64>(&mut *store, export)?;
        let len = i32::try_from(input.len())?;
        let ptr = self.alloc.call_async(&mut *store, len).await?;
        self.memory.write(&mut *store, ptr as u32 as usize, input)?;
        let packed = f.call_async(&mut *store, (ptr, len)).await?;
        if packed == 0 {
            return Ok((0, Vec::new()));
        }
        let (at, n) = abi::unpack(packed);
        if n == 0 || n > MAX_ANSWER_BYTES {
            wasmtime::bail!("the handler's answer has {n} bytes");
        }
        let mut answer = vec![0; n];
        self.memory.read(&*store, at, &mut answer)?;
        let tag = answer.remove(0);
        Ok((tag, answer))
    }
}

/// Instantiates, loads JavaScript's bytecode when there is some, and calls
/// `keel_handle`: the result, the handler's error, or a trap.
async fn run(
    store: &mut Store<Guest>,
    handler: &Prepared,
    input: &[u8],
) -> wasmtime::Result<Result<Box<RawValue>, String>> {
    lock(&store.data().cpu).resume();
    let instance = handler.pre.instantiate_async(&mut *store).await?;
    let mut guest = Instance::new(store, instance, handler.bytecode.is_none()).await?;
    if let Some(code) = &handler.bytecode {
        let (tag, message) = guest.call(store, "keel_js_load", code).await?;
        if tag == abi::ERROR {
            return Ok(Err(String::from_utf8_lossy(&message).into_owned()));
        }
    }
    let (tag, answer) = guest.call(store, "keel_handle", input).await?;
    lock(&store.data().cpu).pause();
    Ok(match tag {
        abi::RESULT => match serde_json::from_slice::<Box<RawValue>>(&answer) {
            Ok(value) => Ok(value),
            Err(e) => Err(format!("the handler's result is not JSON: {e}")),
        },
        abi::ERROR => Err(String::from_utf8_lossy(&answer).into_owned()),
        _ => wasmtime::bail!("the handler's answer has no tag the ABI knows"),
    })
}

/// What a module may import and must export, checked once at upload.
fn check_abi(module: &Module, caps: &Caps) -> Result<(), Refused> {
    use ValType::{I32, I64};
    let func = |params: &[ValType], results: &[ValType], ty: &ExternType| match ty {
        ExternType::Func(f) => {
            f.params()
                .map(|p| p.to_string())
                .eq(params.iter().map(|p| p.to_string()))
                && f.results()
                    .map(|r| r.to_string())
                    .eq(results.iter().map(|r| r.to_string()))
        }
        _ => false,
    };
    for import in module.imports() {
        let ty = import.ty();
        let allowed = import.module() == MODULE
            && match import.name() {
                "call" => func(&[I32, I32, I32], &[I32], &ty),
                "take" => func(&[I32], &[], &ty),
                _ => false,
            };
        if !allowed {
            return Err(Refused(format!(
                "the module imports {}.{}: handlers may import only keel.call and keel.take \
                 (no filesystem, sockets or environment)",
                import.module(),
                import.name()
            )));
        }
    }
    let export = |name: &str| module.exports().find(|e| e.name() == name).map(|e| e.ty());
    match export("memory") {
        Some(ExternType::Memory(m)) => {
            let bytes = m.minimum().saturating_mul(m.page_size());
            if bytes > (u64::from(caps.memory_mb) << 20) {
                return Err(Refused(format!(
                    "the module's memory starts at {bytes} bytes, above this server's cap of {} MB",
                    caps.memory_mb
                )));
            }
        }
        _ => {
            return Err(Refused(
                "the module exports no memory named \"memory\"".into(),
            ));
        }
    }
    for (name, params, results) in [
        ("keel_alloc", &[I32][..], &[I32][..]),
        ("keel_handle", &[I32, I32][..], &[I64][..]),
    ] {
        if !export(name).is_some_and(|ty| func(params, results, &ty)) {
            return Err(Refused(format!(
                "the module does not export {name} with the ABI's signature"
            )));
        }
    }
    Ok(())
}

/// The host of a compile: no calls.
struct NoHost;

#[async_trait::async_trait]
impl Host for NoHost {
    async fn call(&mut self, _op: abi::Op, _request: &[u8]) -> Result<serde_json::Value, String> {
        Err("no host calls while compiling".into())
    }

    fn now_ms(&self) -> i64 {
        0
    }
}
