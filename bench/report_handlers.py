"""The handlers section of docs/benchmarks.md (issue 37), from the JSON lines
of one `SUITE=handlers bench/compare.sh` run. Imported by report.py; only the
standard library; every number comes from the input file."""

from reportkit import fmt, load, rows


def cpu(row):
    if "server_cpu_s" in row and row.get("n"):
        return f"; the server's CPU {row['server_cpu_s'] * 1000 / row['n']:.2f} ms a job"
    if "server_cpu_s" in row and row.get("secs"):
        return f"; the server used {row['server_cpu_s'] / row['secs'] * 100:.0f} % of a core"
    return ""


def section(w, path):
    meta, _versions, _systems, _order = load(path)
    w("## Handlers (issue 37)")
    w("")
    w(f"From one `SUITE=handlers bench/compare.sh` run on {meta.get('date', '?')} ({meta.get('machine', '?')}). "
      "*Sandbox* phases call `keel-sandbox` in the benchmark's process, one call after another on one "
      "task, each call a fresh instance (so *calls/s* is per core); the other phases go through the "
      "server: jobs enqueued first (queue paused), then drained by the handler runner, each job's state "
      "committed with its completion.")
    w("")
    w("| system | phase | measured |")
    w("|---|---|---|")
    for row in rows(path):
        name, key = row.get("system", row["label"]), row.get("phase", "")
        if "error" in row:
            w(f"| {row['label']} | – | failed: {row['error']} |")
        elif "p50_us" in row:
            extra = f", the engine compiled and started in {row['engine_compile_ms']} ms" if "engine_compile_ms" in row else ""
            w(f"| {name} | {key} | p50 {row['p50_us']} µs, p99 {row['p99_us']} µs, "
              f"{fmt(row['calls_per_s_one_core'])} calls/s on one core{extra} |")
        elif "stopped_after_ms_p50" in row:
            w(f"| {name} | {key} | stopped after {row['stopped_after_ms_p50']} ms (p50), "
              f"{row['stopped_after_ms_max']} ms at most |")
        elif "reads_per_s" in row:
            w(f"| {name} | {key} | {fmt(row['reads_per_s'])} reads/s, p50 {row['p50_ms']} ms, "
              f"p99 {row['p99_ms']} ms |")
        elif "events_per_s" in row:
            w(f"| {name} | {key} | {fmt(row['events'])} events at {fmt(row['events_per_s'])}/s, "
              f"handled {fmt(row['handled_per_s'])}/s, {fmt(row['behind_at_end'])} behind at the end{cpu(row)} |")
        elif "jobs_per_s" in row:
            objects = f" over {fmt(row['objects'])} objects" if "objects" in row else ""
            w(f"| {name} | {key} | {fmt(row['jobs_per_s'])} jobs/s ({fmt(row['n'])} jobs{objects}){cpu(row)} |")
    w("")
    w("Published figures of the platforms that run user code per request, for scale (not measured "
      "here): Fastly's Lucet instantiates a WebAssembly module in under 50 µs, against about 5 ms for "
      "V8 (fastly.com/blog/lucet-performance-and-lifecycle, 2019); Cloudflare Workers warm a V8 "
      "isolate in under 5 ms (blog.cloudflare.com/eliminating-cold-starts-with-cloudflare-workers, "
      "2020). Neither keeps durable state that commits with the invocation; the Lambda-style path in "
      "Keel, a job pushed to an HTTP function (`push_queue`), is in the same table.")
    w("")
