"""The schedules and flow control section of docs/benchmarks.md (issue 15),
from the JSON lines of one `SUITE=flow bench/compare.sh` run. Imported by
report.py; only the standard library; every number comes from the input
file."""

from reportkit import fmt, load, targets_table


def phase(systems, label, key):
    s = systems.get(label)
    return s["phases"].get(key) if s and not s["error"] else None


def starvation(systems, label):
    """Every `starvation` row of a system: the phase runs three times."""
    s = systems.get(label)
    return s["runs"].get("starvation", []) if s and not s["error"] else []


def section(w, path):
    meta, versions, systems, order = load(path)
    n = ", ".join(f"{fmt(s['phases']['process_limited']['n'])} on {s['name']}" for s in systems.values()
                  if "process_limited" in s["phases"]) or "–"
    w("## Schedules and flow control (issue 15)")
    w("")
    w(f"From one `SUITE=flow bench/compare.sh` run on {meta.get('date', '?')} ({meta.get('machine', '?')}). "
      "No peer runs here: none of the peers installable on this machine has a durable scheduler with a per-slot "
      "ledger or a cross-node rate limit to run the same phases against (BullMQ's job schedulers and rate "
      "limiter need BullMQ Pro for groups; Temporal schedules need its server, measured in the jobs suite).")
    w("")
    w("| system | phase | result | server CPU |")
    w("|---|---|---|---|")
    for label in order:
        name = systems[label]["name"]
        if systems[label]["error"]:
            w(f"| {label} | – | failed: {systems[label]['error']} | |")
            continue
        row = phase(systems, label, "process_limited")
        if row:
            w(f"| {name} | process, plain queue | {', '.join(fmt(x) for x in row['plain_jobs_per_s'])} jobs/s "
              f"(mean {fmt(row['plain_mean'])}) | {row['plain_server_cpu_s']} core-s |")
            w(f"| {name} | process, limits set | {', '.join(fmt(x) for x in row['limited_jobs_per_s'])} jobs/s "
              f"(mean {fmt(row['limited_mean'])}) | {row['limited_server_cpu_s']} core-s |")
            if "keyed_mean" in row:
                w(f"| {name} | process, keyed by tenant, fair share | "
                  f"{', '.join(fmt(x) for x in row['keyed_jobs_per_s'])} jobs/s (mean {fmt(row['keyed_mean'])}) | "
                  f"{row['keyed_server_cpu_s']} core-s |")
        for row in starvation(systems, label):
            how = "fair share" if row["fair"] else "no fair share (first come, first served)"
            w(f"| {name} | starvation, A's flood on {row['flood_keys']} key(s), {how} | B's job waits p50 "
              f"{fmt(row['wait_p50_ms'])} ms, p99 {fmt(row['wait_p99_ms'])} ms, max {fmt(row['wait_max_ms'])} ms; "
              f"drain {fmt(row['drain_jobs_per_s'])} jobs/s | |")
        row = phase(systems, label, "rate_limit")
        if row:
            w(f"| {name} | rate_limit | {fmt(row['leased_per_s'])} leases/s against {fmt(row['limit_per_s'])}/s "
              f"({row['error_pct']:+.1f} %) over {row['secs']} s | |")
        row = phase(systems, label, "schedules")
        if row:
            w(f"| {name} | schedules | {fmt(row['schedules'])} schedules, each once a minute: {fmt(row['fires'])} of "
              f"{fmt(row['fires_expected'])} slots fired in {row['secs']} s, {row['duplicates']} twice; late p50 "
              f"{row['fire_late_p50_ms']:.0f} ms, p99 {row['fire_late_p99_ms']:.0f} ms, max "
              f"{row['fire_late_max_ms']:.0f} ms (leased p99 {row['leased_late_p99_ms']:.0f} ms) | "
              f"{row['server_cores']:.2f} of a core |")
    w("")
    w(f"`process_limited` drains jobs ({n}; tagged with 100 tenants) from a plain queue, from a queue whose "
      "`max_concurrency` and `rate_limit` are set far above what the drain reaches, and from a queue keyed by "
      "the tenant tag with `max_key_concurrency` far above the drain and equal fair share, alternating (plain, "
      "limited, keyed, plain, limited, keyed, each freshly enqueued): what checking them costs. `starvation`: "
      "tenant A enqueues 100,000 jobs (on one key, or spread over 100 keys), 4 workers drain the queue "
      "(100 jobs a lease, acked at once), and tenant B enqueues one job every 100 ms, 20 times; the wait is "
      "from B's enqueue call to its lease. `rate_limit` "
      "leases from a queue limited to 1,000 jobs/s (default burst: 1,000) with 8 leasers that always want 100 more, "
      "counting the leases from the second second on. `schedules` puts the schedules (cron `S * * * * *`, "
      "spread over the minute by their seconds field), waits for the next whole minute and measures; "
      "lateness is each fire's `fired_at` minus its slot, both read from the job's payload.")
    w("")
    rows = []
    for label in order:
        sched = phase(systems, label, "schedules")
        if sched:
            rows.append((f"{systems[label]['name']}: 100,000 schedules, fires p99 ≤ 1 s late",
                         f"{sched['fire_late_p99_ms']:.0f} ms, {sched['duplicates']} twice, "
                         f"{sched['fires']}/{sched['fires_expected']}",
                         sched["fire_late_p99_ms"] <= 1000 and sched["duplicates"] == 0
                         and sched["fires"] == sched["fires_expected"]))
        rate = phase(systems, label, "rate_limit")
        if rate:
            rows.append((f"{systems[label]['name']}: rate limit within 5 % over {rate['secs']} s",
                         f"{rate['error_pct']:+.1f} %", abs(rate["error_pct"]) <= 5))
        limited = phase(systems, label, "process_limited")
        for mode, what in [("limited", "limits"), ("keyed", "key bound and fair share")]:
            if limited and f"{mode}_mean" in limited:
                cost = (1 - limited[f"{mode}_mean"] / limited["plain_mean"]) * 100
                rows.append((f"{systems[label]['name']}: {what} cost ≤ 10 % of `process`",
                             f"{cost:+.1f} % ({fmt(limited[f'{mode}_mean'])} vs {fmt(limited['plain_mean'])} jobs/s)",
                             cost <= 10))
        for row in starvation(systems, label):
            if row["fair"]:
                rows.append((f"{systems[label]['name']}: B's job waits p99 ≤ 1 s behind A's 100,000 "
                             f"({row['flood_keys']} key(s), fair share)",
                             f"{fmt(row['wait_p99_ms'])} ms", row["wait_p99_ms"] <= 1000))
    targets_table(w, rows)
