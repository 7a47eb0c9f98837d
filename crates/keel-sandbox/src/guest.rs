//! One invocation's side of the store: the host it calls, what it has used
//! (CPU, memory, calls) and logged, and the imports that reach them.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::{Caller, Extern, Linker, ResourceLimiter};

use crate::abi::{MODULE, Op};
use crate::{HandlerLimits, Host, Limit};

/// Log lines one invocation keeps, and their bytes.
const LOG_LINES: usize = 100;
const LOG_BYTES: usize = 16 << 10;
const LOG_LINE_BYTES: usize = 1 << 10;
/// A host call's request, at most.
const REQUEST_BYTES: usize = 8 << 20;

/// Guest CPU time: the sum of the spans the guest ran, each from a resume
/// to the next pause (a host call, a yield to the executor, the end).
#[derive(Debug, Default)]
pub(crate) struct CpuMeter {
    used: Duration,
    since: Option<Instant>,
}

impl CpuMeter {
    pub(crate) fn resume(&mut self) {
        self.since.get_or_insert_with(Instant::now);
    }

    pub(crate) fn pause(&mut self) {
        if let Some(since) = self.since.take() {
            self.used += since.elapsed();
        }
    }

    pub(crate) fn used(&self) -> Duration {
        self.used + self.since.map_or(Duration::ZERO, |s| s.elapsed())
    }
}

pub(crate) struct Guest {
    pub(crate) host: Box<dyn Host>,
    pub(crate) limits: HandlerLimits,
    pub(crate) cpu: Arc<Mutex<CpuMeter>>,
    /// The limit that stopped the guest, when one did.
    pub(crate) stopped_by: Option<Limit>,
    pub(crate) memory_peak: usize,
    pub(crate) logs: Vec<String>,
    log_bytes: usize,
    pub(crate) logs_dropped: u32,
    http_calls: u32,
    /// Bytes of response bodies the guest has been given.
    response_bytes: u64,
    /// The answer `take` copies out next.
    answer: Vec<u8>,
}

impl Guest {
    pub(crate) fn new(host: Box<dyn Host>, limits: HandlerLimits) -> Guest {
        Guest {
            host,
            limits,
            cpu: Arc::default(),
            stopped_by: None,
            memory_peak: 0,
            logs: Vec::new(),
            log_bytes: 0,
            logs_dropped: 0,
            http_calls: 0,
            response_bytes: 0,
            answer: Vec::new(),
        }
    }

    fn cpu(&self) -> std::sync::MutexGuard<'_, CpuMeter> {
        self.cpu.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn cpu_used(&self) -> Duration {
        self.cpu().used()
    }

    fn log(&mut self, request: &[u8]) {
        #[derive(serde::Deserialize)]
        struct Line {
            line: String,
        }
        let Ok(Line { mut line }) = serde_json::from_slice(request) else {
            return;
        };
        if self.logs.len() >= LOG_LINES || self.log_bytes >= LOG_BYTES {
            self.logs_dropped += 1;
            return;
        }
        if line.len() > LOG_LINE_BYTES {
            let mut end = LOG_LINE_BYTES;
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            line.truncate(end);
            line.push('…');
        }
        self.log_bytes += line.len();
        self.logs.push(line);
    }

    /// A fetch's answer, counted against `limits.response_bytes`: past it,
    /// the guest is stopped (like the call limit, a guest that catches the
    /// error still fails). A host reads at most one byte past what is left
    /// and answers that, so the count passes the limit.
    fn count_response(
        &mut self,
        answered: Result<serde_json::Value, String>,
    ) -> Result<serde_json::Value, String> {
        let answer = answered?;
        let body = answer.get("body").and_then(serde_json::Value::as_str);
        self.response_bytes += body.map_or(0, str::len) as u64;
        if self.response_bytes > self.limits.response_bytes {
            self.stopped_by = Some(Limit::ResponseBytes);
            return Err(format!(
                "the responses read passed {} bytes (limits.response_bytes)",
                self.limits.response_bytes
            ));
        }
        Ok(answer)
    }

    /// One host call, answered as `{"ok"}` or `{"error"}`.
    async fn answer(&mut self, op: Option<Op>, request: &[u8]) -> serde_json::Value {
        let answered = match op {
            None => Err("unknown host call".to_owned()),
            Some(Op::Log) => {
                self.log(request);
                Ok(serde_json::Value::Null)
            }
            Some(Op::Fetch) if self.http_calls >= self.limits.http_calls => {
                self.stopped_by = Some(Limit::HttpCalls);
                Err(format!(
                    "outbound call limit reached ({} calls, limits.http_calls)",
                    self.limits.http_calls
                ))
            }
            Some(Op::Fetch) => {
                self.http_calls += 1;
                let answered = self.host.call(Op::Fetch, request).await;
                self.count_response(answered)
            }
            Some(op) => self.host.call(op, request).await,
        };
        match answered {
            Ok(v) => serde_json::json!({ "ok": v }),
            Err(e) => serde_json::json!({ "error": e }),
        }
    }
}

impl ResourceLimiter for Guest {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > (self.limits.memory_mb as usize) << 20 {
            self.stopped_by = Some(Limit::Memory);
            return Ok(false);
        }
        self.memory_peak = self.memory_peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

fn memory(caller: &mut Caller<'_, Guest>) -> wasmtime::Result<wasmtime::Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Ok(m),
        _ => Err(wasmtime::format_err!("the module exports no memory")),
    }
}

/// The `keel` module's two functions, which every handler may import.
pub(crate) fn link_keel(linker: &mut Linker<Guest>) -> wasmtime::Result<()> {
    linker.func_wrap_async(
        MODULE,
        "call",
        |mut caller: Caller<'_, Guest>, (op, ptr, len): (i32, i32, i32)| {
            Box::new(async move {
                caller.data().cpu().pause();
                let (ptr, len) = (ptr as u32 as usize, len as u32 as usize);
                if len > REQUEST_BYTES {
                    return Err(wasmtime::format_err!("a host call's request over 8 MiB"));
                }
                let mem = memory(&mut caller)?;
                let mut request = vec![0; len];
                mem.read(&caller, ptr, &mut request)?;
                let guest = caller.data_mut();
                let answer = guest.answer(Op::from_code(op), &request).await;
                guest.answer = serde_json::to_vec(&answer)?;
                let n = guest.answer.len() as i32;
                guest.cpu().resume();
                Ok(n)
            })
        },
    )?;
    linker.func_wrap(
        MODULE,
        "take",
        |mut caller: Caller<'_, Guest>, ptr: i32| -> wasmtime::Result<()> {
            let mem = memory(&mut caller)?;
            let answer = std::mem::take(&mut caller.data_mut().answer);
            mem.write(&mut caller, ptr as u32 as usize, &answer)?;
            Ok(())
        },
    )?;
    Ok(())
}

/// WASI's `EBADF`.
const BAD_FD: i32 = 8;

/// The five WASI functions QuickJS's libc calls, for the JavaScript engine
/// only (never a customer's module): the clock is the host's, output is
/// dropped, files do not exist.
pub(crate) fn link_engine_libc(linker: &mut Linker<Guest>) -> wasmtime::Result<()> {
    const WASI: &str = "wasi_snapshot_preview1";
    linker.func_wrap(
        WASI,
        "clock_time_get",
        |mut caller: Caller<'_, Guest>,
         _id: i32,
         _precision: i64,
         out: i32|
         -> wasmtime::Result<i32> {
            let nanos = (caller.data().host.now_ms().max(0) as u64).saturating_mul(1_000_000);
            let mem = memory(&mut caller)?;
            mem.write(&mut caller, out as u32 as usize, &nanos.to_le_bytes())?;
            Ok(0)
        },
    )?;
    linker.func_wrap(
        WASI,
        "fd_write",
        |mut caller: Caller<'_, Guest>,
         _fd: i32,
         iovs: i32,
         count: i32,
         written: i32|
         -> wasmtime::Result<i32> {
            let mem = memory(&mut caller)?;
            let mut total = 0u32;
            for i in 0..count.max(0) as usize {
                let mut iov = [0u8; 8];
                mem.read(&caller, iovs as u32 as usize + i * 8, &mut iov)?;
                total = total.wrapping_add(u32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]));
            }
            mem.write(&mut caller, written as u32 as usize, &total.to_le_bytes())?;
            Ok(0)
        },
    )?;
    linker.func_wrap(WASI, "fd_close", |_fd: i32| BAD_FD)?;
    linker.func_wrap(WASI, "fd_fdstat_get", |_fd: i32, _out: i32| BAD_FD)?;
    linker.func_wrap(
        WASI,
        "fd_seek",
        |_fd: i32, _offset: i64, _whence: i32, _out: i32| BAD_FD,
    )?;
    Ok(())
}
