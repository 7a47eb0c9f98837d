/*
 * Keel's JavaScript engine: QuickJS compiled to WebAssembly, run by Keel's
 * sandbox like any handler module (docs/design.md, "Handlers").
 *
 * It speaks the handler ABI (crates/keel-sandbox/src/abi.rs): it exports
 * `keel_alloc` and `keel_handle`, and reaches the host only through the
 * `keel` module's `call` and `take`. Two more exports serve JavaScript:
 * `keel_js_compile` turns a module's source into QuickJS bytecode at
 * upload, and `keel_js_load` evaluates that bytecode before `keel_handle`
 * calls its default export with the job and the `ctx` object the prelude
 * below builds over `call`. `keel_js_init` starts QuickJS ahead of time,
 * so that Keel can snapshot the started engine's memory; `Math.random` is
 * then seeded per invocation from the host, not from the snapshot.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "quickjs.h"

__attribute__((import_module("keel"), import_name("call")))
int32_t keel_call(int32_t op, const char *request, int32_t len);
__attribute__((import_module("keel"), import_name("take")))
void keel_take(char *into);

static JSRuntime *rt;
static JSContext *ctx;
static JSValue handler = JS_UNDEFINED;

static int64_t packed(const char *ptr, size_t len) {
    return ((int64_t)(uintptr_t)ptr << 32) | (int64_t)(uint32_t)len;
}

/* Room for `size` bytes and a NUL after them: QuickJS parses only
 * NUL-terminated text, and the host writes exactly `size`. */
__attribute__((export_name("keel_alloc")))
void *keel_alloc(int32_t size) {
    size_t n = size > 0 ? (size_t)size : 0;
    char *p = malloc(n + 1);
    if (p) p[n] = 0;
    return p;
}

/* An answer built here: `tag` then `len` bytes, owned by the caller now. */
static int64_t answer(char tag, const char *bytes, size_t len) {
    char *out = malloc(len + 1);
    if (!out) return 0;
    out[0] = tag;
    memcpy(out + 1, bytes, len);
    return packed(out, len + 1);
}

static int64_t error_text(const char *message) { return answer('E', message, strlen(message)); }

/* The pending exception as text: its message and, for errors, the stack. */
static int64_t exception(void) {
    JSValue e = JS_GetException(ctx);
    JSValue stack = JS_UNDEFINED;
    if (JS_IsError(ctx, e)) stack = JS_GetPropertyStr(ctx, e, "stack");
    size_t len = 0, stack_len = 0;
    const char *text = JS_ToCStringLen(ctx, &len, e);
    const char *trace = JS_IsString(stack) ? JS_ToCStringLen(ctx, &stack_len, stack) : NULL;
    int64_t out;
    if (!text) {
        out = error_text("an exception that is not printable");
    } else if (trace && stack_len > 0) {
        char *both = malloc(len + stack_len + 2);
        if (!both) return error_text("out of memory");
        memcpy(both, text, len);
        both[len] = '\n';
        memcpy(both + len + 1, trace, stack_len);
        out = answer('E', both, len + stack_len + 1);
        free(both);
    } else {
        out = answer('E', text, len);
    }
    if (text) JS_FreeCString(ctx, text);
    if (trace) JS_FreeCString(ctx, trace);
    JS_FreeValue(ctx, stack);
    JS_FreeValue(ctx, e);
    return out;
}

/* `__keel_call(op, json)`: one host call, its JSON answer as a string. */
static JSValue js_call(JSContext *c, JSValueConst this_val, int argc, JSValueConst *argv) {
    int32_t op;
    size_t len;
    if (argc < 2 || JS_ToInt32(c, &op, argv[0])) return JS_ThrowTypeError(c, "bad host call");
    const char *request = JS_ToCStringLen(c, &len, argv[1]);
    if (!request) return JS_EXCEPTION;
    int32_t n = keel_call(op, request, (int32_t)len);
    JS_FreeCString(c, request);
    if (n < 0) return JS_ThrowInternalError(c, "host call refused");
    char *buf = malloc((size_t)n + 1);
    if (!buf) return JS_ThrowOutOfMemory(c);
    keel_take(buf);
    JSValue s = JS_NewStringLen(c, buf, (size_t)n);
    free(buf);
    return s;
}

static const char PRELUDE[] =
    "(() => {\n"
    "const call = globalThis.__keel_call; delete globalThis.__keel_call;\n"
    "const ask = (op, req) => { const r = JSON.parse(call(op, JSON.stringify(req)));\n"
    "  if (r.error !== undefined) throw new Error(r.error); return r.ok; };\n"
    "let seed = 0;\n"
    "Math.random = () => {\n"
    "  if (seed === 0) seed = (parseInt(ask(11, { bytes: 4 }), 16) >>> 0) || 1;\n"
    "  seed = (seed + 0x6D2B79F5) >>> 0; let t = seed;\n"
    "  t = Math.imul(t ^ (t >>> 15), t | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61);\n"
    "  return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };\n"
    "const show = v => typeof v === 'string' ? v : (v instanceof Error ? String(v) : JSON.stringify(v));\n"
    "const log = (...args) => { ask(1, { line: args.map(show).join(' ') }); };\n"
    "class Headers { constructor(h) { this.h = {}; for (const [k, v] of Object.entries(h || {})) this.h[k.toLowerCase()] = v; }\n"
    "  get(k) { const v = this.h[String(k).toLowerCase()]; return v === undefined ? null : v; }\n"
    "  has(k) { return String(k).toLowerCase() in this.h; } entries() { return Object.entries(this.h)[Symbol.iterator](); } }\n"
    "class Response { constructor(r) { this.status = r.status; this.ok = r.status >= 200 && r.status < 300;\n"
    "  this.headers = new Headers(r.headers); this.body = r.body; }\n"
    "  async text() { return this.body; } async json() { return JSON.parse(this.body); } }\n"
    "const headers = h => h instanceof Headers ? h.h : (h || {});\n"
    "const state = Object.freeze({\n"
    "  get: async key => ask(2, { key }),\n"
    "  getMany: async keys => ask(3, { keys }),\n"
    "  put: async (key, value) => { ask(4, { key, value }); },\n"
    "  delete: async key => { ask(5, { key }); },\n"
    "  list: async (opts) => ask(6, opts || {}),\n"
    "});\n"
    "globalThis.console = Object.freeze({ log, info: log, warn: log, error: log, debug: log });\n"
    "globalThis.__keel_ctx = Object.freeze({ state, log,\n"
    "  fetch: async (url, init) => { init = init || {}; return new Response(ask(7, { url: String(url),\n"
    "    method: init.method || 'GET', headers: headers(init.headers),\n"
    "    body: init.body === undefined || init.body === null ? null : String(init.body),\n"
    "    connection: init.connection === undefined || init.connection === null ? null : String(init.connection) })); },\n"
    "  publish: async (topic, event) => ask(8, { topic, event }),\n"
    "  enqueue: async (queue, job) => ask(9, { queue, job }),\n"
    "});\n"
    "})();\n";

/* The runtime and context, made once per instance. */
static int start(void) {
    if (ctx) return 0;
    rt = JS_NewRuntime();
    if (!rt) return -1;
    JS_SetMaxStackSize(rt, 512 * 1024);
    ctx = JS_NewContext(rt);
    if (!ctx) return -1;
    JSValue global = JS_GetGlobalObject(ctx);
    JS_SetPropertyStr(ctx, global, "__keel_call", JS_NewCFunction(ctx, js_call, "__keel_call", 2));
    JS_FreeValue(ctx, global);
    JSValue r = JS_Eval(ctx, PRELUDE, sizeof(PRELUDE) - 1, "<keel>", JS_EVAL_TYPE_GLOBAL);
    if (JS_IsException(r)) return -1;
    JS_FreeValue(ctx, r);
    return 0;
}

/* Starts the runtime and context, for a snapshot of this instance's
 * memory that every invocation then starts from (sandbox.rs). */
__attribute__((export_name("keel_js_init")))
int32_t keel_js_init(void) { return start(); }

/* Runs queued promise jobs until `p` settles or nothing is left to run. */
static JSPromiseStateEnum settle(JSValue p) {
    JSContext *c;
    for (;;) {
        JSPromiseStateEnum s = JS_PromiseState(ctx, p);
        if (s != JS_PROMISE_PENDING) return s;
        if (JS_ExecutePendingJob(rt, &c) <= 0) return JS_PromiseState(ctx, p);
    }
}

/* A settled promise's value or a plain value, or the exception of a
 * rejected one (then 1). */
static int await_value(JSValue v, JSValue *out) {
    if (!JS_IsPromise(v)) {
        *out = v;
        return 0;
    }
    JSPromiseStateEnum s = settle(v);
    if (s == JS_PROMISE_PENDING) {
        JS_FreeValue(ctx, v);
        JS_ThrowInternalError(ctx, "the handler's promise never settled (awaited something no host call answers)");
        return 1;
    }
    JSValue result = JS_PromiseResult(ctx, v);
    JS_FreeValue(ctx, v);
    if (s == JS_PROMISE_REJECTED) {
        JS_Throw(ctx, result);
        return 1;
    }
    *out = result;
    return 0;
}

/* Source to bytecode: 'B' and the bytecode, or 'E' and the error. A module
 * that imports anything is refused here: handlers have no module loader. */
__attribute__((export_name("keel_js_compile")))
int64_t keel_js_compile(char *source, int32_t len) {
    if (start()) return error_text("the JavaScript engine did not start");
    JSValue m = JS_Eval(ctx, source, (size_t)len, "handler.js", JS_EVAL_TYPE_MODULE | JS_EVAL_FLAG_COMPILE_ONLY);
    if (JS_IsException(m)) return exception();
    if (JS_ResolveModule(ctx, m) < 0) {
        JS_FreeValue(ctx, m);
        return exception();
    }
    size_t size = 0;
    uint8_t *code = JS_WriteObject(ctx, &size, m, JS_WRITE_OBJ_BYTECODE);
    JS_FreeValue(ctx, m);
    if (!code) return exception();
    int64_t out = answer('B', (const char *)code, size);
    js_free(ctx, code);
    return out;
}

/* Evaluates a module's bytecode and keeps its default export for
 * `keel_handle`: 0, or the error as `keel_js_compile` answers it. */
__attribute__((export_name("keel_js_load")))
int64_t keel_js_load(const uint8_t *code, int32_t len) {
    if (start()) return error_text("the JavaScript engine did not start");
    JSValue m = JS_ReadObject(ctx, code, (size_t)len, JS_READ_OBJ_BYTECODE);
    if (JS_IsException(m)) return exception();
    if (JS_VALUE_GET_TAG(m) != JS_TAG_MODULE) {
        JS_FreeValue(ctx, m);
        return error_text("not a module's bytecode");
    }
    JSModuleDef *def = JS_VALUE_GET_PTR(m);
    if (JS_ResolveModule(ctx, m) < 0) {
        JS_FreeValue(ctx, m);
        return exception();
    }
    JSValue done;
    if (await_value(JS_EvalFunction(ctx, m), &done)) return exception();
    JS_FreeValue(ctx, done);
    JSValue ns = JS_GetModuleNamespace(ctx, def);
    if (JS_IsException(ns)) return exception();
    handler = JS_GetPropertyStr(ctx, ns, "default");
    JS_FreeValue(ctx, ns);
    if (!JS_IsFunction(ctx, handler)) return error_text("the module has no default export that is a function");
    return 0;
}

/* The job's JSON in, 'R' and the result's JSON out (or 'E' and the error). */
__attribute__((export_name("keel_handle")))
int64_t keel_handle(char *input, int32_t len) {
    if (!JS_IsFunction(ctx, handler)) return error_text("no handler loaded");
    JSValue job = JS_ParseJSON(ctx, input, (size_t)len, "<job>");
    if (JS_IsException(job)) return exception();
    JSValue global = JS_GetGlobalObject(ctx);
    JSValue kctx = JS_GetPropertyStr(ctx, global, "__keel_ctx");
    JS_FreeValue(ctx, global);
    JSValue args[2] = {job, kctx};
    JSValue r = JS_Call(ctx, handler, JS_UNDEFINED, 2, args);
    JS_FreeValue(ctx, job);
    JS_FreeValue(ctx, kctx);
    if (JS_IsException(r)) return exception();
    JSValue value;
    if (await_value(r, &value)) return exception();
    if (JS_IsUndefined(value)) return answer('R', "null", 4);
    JSValue text = JS_JSONStringify(ctx, value, JS_UNDEFINED, JS_UNDEFINED);
    JS_FreeValue(ctx, value);
    if (JS_IsException(text)) return exception();
    size_t n = 0;
    const char *s = JS_ToCStringLen(ctx, &n, text);
    int64_t out = s ? answer('R', s, n) : error_text("the result is not JSON");
    if (s) JS_FreeCString(ctx, s);
    JS_FreeValue(ctx, text);
    return out;
}
