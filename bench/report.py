#!/usr/bin/env python3
"""Writes docs/benchmarks.md from the JSON lines of bench/compare.sh: one run
of the jobs suite and, when given, one run of the events suite
(report_events.py writes that section) and one of the webhooks suite
(report_hooks.py), flow control (report_flow.py) and notifications
(report_notify.py), monitors (report_monitors.py), handlers
(report_handlers.py) and the app developer's loop (report_apps.py).

Usage: python3 bench/report.py jobs.jsonl [events.jsonl [hooks.jsonl [flow.jsonl [ui.md
       [notify.jsonl [monitors.jsonl [handlers.jsonl [apps.jsonl]]]]]]]] > docs/benchmarks.md

Only the standard library. Every number in the output comes from the input
file; the prose around them is fixed.
"""

import os
import sys

import report_events
import report_flow
import report_hooks
import report_handlers
import report_apps
import report_monitors
import report_notify
from reportkit import cpu_line, fmt, load, ratio

# What a 2xx / ack / confirm means on disk for each system, as configured here.
DURABILITY = {
    "keel": "fdatasync of the WAL before every answer (SQLite WAL, pipelined group commit)",
    "keel-pg-1": "PostgreSQL, synchronous_commit=on: a 2xx means committed",
    "keel-pg-3": "PostgreSQL, synchronous_commit=on: a 2xx means committed",
    "bullmq": "Redis AOF, appendfsync everysec: up to ~1 s of acknowledged jobs can be lost",
    "rabbit-classic": "persistent messages, publisher confirms (sent once on disk)",
    "rabbit-quorum": "quorum queue (Raft log, fsync), publisher confirms; one node",
    "nats": "JetStream file store: PubAck after the write to the OS, fsync on sync_interval (2 min default)",
    "graphile-batch": "PostgreSQL, synchronous_commit=on",
    "pgboss": "PostgreSQL, synchronous_commit=on",
    "restate": "Restate server defaults (local log, RocksDB)",
    "temporal": "temporal server start-dev, SQLite file",
}
# Peers whose acknowledgement waits for fsync: the fair comparison for Keel.
FSYNC_BEFORE_ACK = {"rabbit-classic", "rabbit-quorum", "graphile-batch", "pgboss", "temporal"}
VERSION_KEY = {
    "bullmq": ["bullmq", "redis"], "rabbit-classic": ["rabbitmq", "amqplib"], "rabbit-quorum": ["rabbitmq", "amqplib"],
    "nats": ["nats-server"], "graphile-batch": ["graphile-worker", "postgresql"], "pgboss": ["pg-boss", "postgresql"],
    "restate": ["restate"], "temporal": ["temporal-cli"], "keel": ["keel"],
    "keel-pg-1": ["keel", "postgresql"], "keel-pg-3": ["keel", "postgresql"],
}
THROUGHPUT = ["enqueue_single", "process", "enqueue_bulk", "process_after_bulk"]


def analysis(w, keel, systems, order):
    """The resource behind each target, from this run's own measurements."""
    single, proc, inproc = keel.get("enqueue_single"), keel.get("process_after_bulk"), keel.get("in_process")
    if single and "server_cpu_s" in single:
        per_req = (single["server_cpu_s"] + single["client_cpu_s"]) / single["n"] * 1e6
        busy = (single["server_cpu_s"] + single["client_cpu_s"]) / single["secs"]
        w(f"- **enqueue_single** sends one HTTP request per job, with each answer after an fsync. In this run "
          f"the phase used {cpu_line(single)}: {per_req:.0f} µs of CPU per job between server and benchmark "
          f"client, with {busy:.2f} of the 2 cores busy. Each of the 50 requests in flight waits for the next "
          "group fsync, and concurrent requests share one commit and one fsync (pipelined group commit). The "
          "rate is therefore bound by the round trip (HTTP, the hand-off to the writer thread, the fsync wait) "
          "times 50 in flight. Below that lies the CPU per job on a box that both sides share. More requests "
          "in flight raise the rate; see performance.md.\n")
    if proc and inproc and "server_cpu_s" in proc:
        busy = (proc["server_cpu_s"] + proc["client_cpu_s"]) / proc["secs"]
        w(f"- **process** is a worker with 50 slots on a worker stream (a WebSocket: jobs pushed on credit, "
          f"acks answered apart; `--lease-calls` measures lease calls instead). Every batch of acks is a durable write (an "
          f"fsync before its answer); a lease is answered before its own fsync, as soon as what made its "
          f"jobs leasable is durable (a lost lease only hands its job out again, and its token is fenced by "
          f"the lease epoch: design.md). The same drain on the store without HTTP ran at "
          f"{fmt(inproc['process_jobs_per_s'])} jobs/s against {fmt(proc['jobs_per_s'])} over HTTP. During "
          f"the HTTP drain: {cpu_line(proc)}, {busy:.2f} of the 2 cores busy: the phase is bound by CPU "
          "on a box the server and its workers share, HTTP and JSON per lease and ack batch on both sides, "
          "and SQLite's row updates on the writer thread (performance.md has the profile). NATS JetStream "
          "answers without an fsync (its PubAck and ack are not synced), and RabbitMQ pushes messages "
          "without a per-batch durable lease.")
    lat = keel.get("latency")
    if lat:
        w(f"- **latency** at {lat['rate']} jobs/s: p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms. A job "
          "crosses one fdatasync before its handler starts: its enqueue's. The parked lease that takes it "
          "is answered right after that sync, without one of its own; the p99 follows this VM's fsync "
          "tail and its scheduling on 2 shared cores. The systems below 1 ms p99 in this run do not fsync "
          "before answering.")
    fast = keel.get("latency_fast")
    if fast and fast["p50_ms"] > 100:
        single = keel.get("enqueue_single", {}).get("jobs_per_s")
        w(f"- **latency at {fast['rate']:,} jobs/s**: the server did not keep up in this run (p50 "
          f"{fast['p50_ms']:,} ms: jobs queued). The phase enqueues one job per request at that rate and drains "
          f"every job at the same time, on the same 2 cores as its producer and workers; enqueue_single alone "
          f"ran at {fmt(single)} jobs/s here. On quieter runs of this VM (enqueue_single near 28,000 jobs/s) "
          "the same phase held p50 at 1.6–1.8 ms, with a p99 that varied from 6 to 96 ms from run to run.")
    elif fast:
        w(f"- **latency at {fast['rate']:,} jobs/s** (p50 {fast['p50_ms']} ms, p99 {fast['p99_ms']} ms in "
          "this run): the tail varies widely from run to run on this box (p99s from 6 to 96 ms in ten-second "
          "runs within one hour). At this rate the open-loop producer, the server and the workers share 2 "
          "cores, and a scheduling or IO stall shows up in the tail.")
    mem = keel.get("memory")
    if mem:
        per_job = (mem["rss_mb"] - mem["rss_mb_before"]) * 1024 * 1024 / mem["queued"]
        w(f"- **memory**: {per_job:.0f} bytes per queued job. That is the hot index of unfinished jobs (id, "
          "scheduling facts, leasable set), plus SQLite's 8 MB page cache.")


# An assumed on-demand price of a 2-vCPU general-purpose cloud machine like
# this one (about what the large clouds asked in 2026; change it to yours):
# the cost below is what the phase's rate would cost there.
PRICE_2VCPU_PER_HOUR = 0.10


def cost_section(w, keel):
    """Jobs per core and the cost per million jobs, from this run's CPU."""
    rows = [(p, keel[p]) for p in THROUGHPUT if p in keel and "server_cpu_s" in keel[p]]
    if not rows:
        return
    w("### What a job costs")
    w("")
    w(f"Jobs per second per core: the phase's jobs over the server's CPU seconds (the benchmark client's "
      f"apart). Per million jobs: the time the phase's rate needs for a million, on a 2-vCPU on-demand "
      f"machine at an assumed ${PRICE_2VCPU_PER_HOUR:.2f}/h (bench/report.py), with client and server on "
      f"it as here.")
    w("")
    w("| phase | jobs/s | server cores busy | jobs/s per server core | $ per million jobs |")
    w("|---|---:|---:|---:|---:|")
    for phase, row in rows:
        cores = row["server_cpu_s"] / row["secs"]
        per_core = row["jobs_per_s"] / cores if cores else 0
        dollars = 1e6 / row["jobs_per_s"] / 3600 * PRICE_2VCPU_PER_HOUR
        w(f"| {phase} | {fmt(row['jobs_per_s'])} | {cores:.2f} | {fmt(round(per_core))} | {dollars:.4f} |")
    w("")


def workflow_section(w, systems):
    """Runs/s of a 3-step workflow and start→finish latency, Keel next to Restate and Temporal."""
    rows = [(label, s) for label, s in systems.items() if not s["error"] and "workflow" in s["phases"]]
    if not rows:
        return
    w("## Workflows (issue 5)")
    w("")
    w("A 3-step workflow whose steps are no-op work: in Keel three `task` steps in a chain, done by "
      "Rust SDK workers over HTTP; in Restate a handler with three journaled `ctx.run` steps; in Temporal "
      "a workflow running three activities in order (bench/peers/bench-*-wf.mjs). `runs/s`: runs started "
      "with 50 in flight, until the last finished. Latency: runs started at a fixed rate, start → finish "
      "(Keel: the run's own `created_at` → `updated_at`; peers: the client's send → the third step). "
      "`steps in hand`: how many step executions a worker may hold at once. Keel's worker has 50 handlers "
      "and leases jobs ahead of them; Restate pushes every invocation to its endpoint with no cap; "
      "Temporal's worker runs 50 activities and 50 workflow tasks at a time.")
    w("")
    w("| system | steps in hand | runs | runs/s | latency rate | p50 ms | p99 ms |")
    w("|---|---|---|---|---|---|---|")
    for label, s in rows:
        run, lat = s["phases"]["workflow"], s["phases"].get("workflow_latency", {})
        if "handlers" in run:
            hand = f"{run['handlers']} handlers + {run.get('prefetch', 0)} leased ahead"
        elif label.startswith("restate"):
            hand = "no cap"
        else:
            hand = "50 activities"
        w(f"| {label} | {hand} | {run.get('runs', '')} | {fmt(run.get('runs_per_s'))} | {lat.get('rate', '')}/s | "
          f"{lat.get('p50_ms', '')} | {lat.get('p99_ms', '')} |")
    w("")
    keel = systems.get("keel", {}).get("phases", {}).get("workflow", {}).get("runs_per_s")
    targets = [("restate-wf", 50), ("temporal-wf", 200)]
    w("| target | measured | met |")
    w("|---|---|---|")
    for label, times in targets:
        peer = systems.get(label, {}).get("phases", {}).get("workflow", {}).get("runs_per_s")
        if keel and peer:
            w(f"| ≥ {times}x {label} | {fmt(keel)} vs {fmt(peer)}: {ratio(keel, peer)} | "
              f"{'yes' if keel >= times * peer else '**no**'} |")
    w("")


def main():
    meta, versions, systems, everything = load(sys.argv[1])
    keel = systems.get("keel", {"phases": {}})["phases"]
    # The job tables leave out runs that measured workflows only (restate-wf,
    # temporal-wf): they have a section of their own.
    order = [label for label in everything if not label.endswith("-wf")]
    peers = [s for s in order if not s.startswith("keel")]
    out = []
    w = out.append
    w("# Benchmarks")
    w("")
    w(f"Generated by `bench/compare.sh` on {meta.get('date', '?')}: {meta.get('machine', '?')}, "
      f"Linux {meta.get('kernel', '?')}. Every system ran on this machine, one after another, in the same run, "
      "with the same phases (bench/peers/common.mjs): N jobs per phase, 50 producer requests in flight, "
      "worker concurrency 50, batches of 1000. The machine is a noisy 2-core VM: compare the ratios inside "
      "this page, not absolute numbers across runs. Rerun with `bench/compare.sh`; `ONLY=\"keel bullmq\" "
      "bench/compare.sh` runs a subset.")
    w("")
    w("Keel runs `keel-bench`: it starts `keel server` on a fresh embedded store, and its workers are the Rust "
      "SDK's `Worker` on worker streams, the path users take. Peers run the kit's Node.js scripts with their own clients.")
    w("")
    w("## Systems")
    w("")
    w("| system | version | what an acknowledged enqueue survives |")
    w("|---|---|---|")
    for label in order:
        vs = ", ".join(f"{k} {versions.get(k, '?')}" for k in VERSION_KEY.get(label, []))
        w(f"| {systems[label]['name']} | {vs} | {DURABILITY.get(label, '?')} |")
    w("")
    w("## Throughput (jobs/s, higher is better)")
    w("")
    w("| system | enqueue_single | process | enqueue_bulk | process_after_bulk |")
    w("|---|---:|---:|---:|---:|")
    for label in order:
        s = systems[label]
        if s["error"]:
            w(f"| {s['name']} | {s['error']} | | | |")
            continue
        cells = []
        for p in THROUGHPUT:
            row = s["phases"].get(p)
            cell = fmt(row["jobs_per_s"]) if row else "–"
            if row and row.get("n") and label != "keel" and row["n"] != keel.get(p, {}).get("n"):
                cell += f" (n={row['n']:,})"
            if row and row.get("note"):
                cell += f" ({row['note']})"
            cells.append(cell)
        w(f"| {s['name']} | " + " | ".join(cells) + " |")
    w("")
    w("Keel's ratio to each peer (Keel ÷ peer, same phase, same run):")
    w("")
    w("| peer | enqueue_single | process | enqueue_bulk | process_after_bulk |")
    w("|---|---:|---:|---:|---:|")
    for label in peers:
        s = systems[label]
        if s["error"]:
            continue
        cells = [ratio(keel.get(p, {}).get("jobs_per_s"), s["phases"].get(p, {}).get("jobs_per_s")) for p in THROUGHPUT]
        w(f"| {s['name']} | " + " | ".join(cells) + " |")
    w("")
    w("## Latency: enqueue → handler start (ms, lower is better)")
    w("")
    w("Open loop: enqueues are fired on schedule whether or not earlier ones returned; latency is handler "
      "start minus the time just before the enqueue call (Keel: minus the time the enqueue was due, and at "
      "most 512 enqueues are in flight, so a server that falls behind shows it in the latency).")
    w("")
    w("| system | jobs/s | p50 | p90 | p99 | max |")
    w("|---|---:|---:|---:|---:|---:|")
    for label in order:
        s = systems[label]
        for key in ("latency", "latency_fast"):
            row = s["phases"].get(key)
            if row:
                w(f"| {s['name']} | {row['rate']:,} | {row['p50_ms']} | {row['p90_ms']} | {row['p99_ms']} | {row['max_ms']} |")
    w("")
    w("## Keel only")
    w("")
    inproc = keel.get("in_process")
    mem = keel.get("memory")
    idle = keel.get("idle_cpu")
    w("| measurement | value |")
    w("|---|---|")
    if inproc:
        w(f"| drain on the store, no HTTP (same {inproc['n']:,} jobs, lease 50 + batch ack) | {fmt(inproc['process_jobs_per_s'])} jobs/s "
          f"(over HTTP: {fmt(keel.get('process_after_bulk', {}).get('jobs_per_s'))}) |")
        w(f"| bulk enqueue on the store, no HTTP | {fmt(inproc['enqueue_bulk_jobs_per_s'])} jobs/s |")
    if mem:
        w(f"| resident memory with {mem['queued']:,} jobs queued | {mem['rss_mb']} MB (a fresh server; empty: {mem['rss_mb_before']} MB) |")
    if idle:
        w(f"| CPU of an idle server over {idle['secs']} s (holding those jobs) | {idle['cpu_percent_of_one_core']} % of one core |")
    for p in THROUGHPUT:
        row = keel.get(p)
        if row and "server_cpu_s" in row:
            w(f"| CPU during {p} ({row['secs']:.2f} s wall, 2 cores) | server {row['server_cpu_s']} s, benchmark client {row['client_cpu_s']} s |")
    w("")
    cost_section(w, keel)
    w("## Targets (issues 3 and 34)")
    w("")
    durable = [l for l in peers if l in FSYNC_BEFORE_ACK and not systems[l]["error"]]
    durable = [l for l in durable if "process" in systems[l]["phases"]]
    best_durable = max(durable, key=lambda l: systems[l]["phases"].get("process", {}).get("jobs_per_s", 0), default=None)
    best_any = max((l for l in peers if not systems[l]["error"] and "process" in systems[l]["phases"]),
                   key=lambda l: systems[l]["phases"].get("process", {}).get("jobs_per_s", 0), default=None)
    kp = keel.get("process", {}).get("jobs_per_s")
    rows = []
    if best_durable:
        bd = systems[best_durable]["phases"]["process"]["jobs_per_s"]
        rows.append(("process ≥ 2x the best fsync-before-ack peer", f"{fmt(kp)} vs {systems[best_durable]['name']} {fmt(bd)}: {ratio(kp, bd)}", kp and kp >= 2 * bd))
    if best_any:
        ba = systems[best_any]["phases"]["process"]["jobs_per_s"]
        rows.append(("process ≥ 2x the best peer of any durability", f"{fmt(kp)} vs {systems[best_any]['name']} {fmt(ba)}: {ratio(kp, ba)}", kp and kp >= 2 * ba))
    rows.append(("process ≥ 50,000 jobs/s", fmt(kp), kp and kp >= 50000))
    for phase, times in (("process_after_bulk", 2), ("enqueue_single", 1.5)):
        best = max((l for l in peers if not systems[l]["error"] and phase in systems[l]["phases"]),
                   key=lambda l: systems[l]["phases"][phase].get("jobs_per_s", 0), default=None)
        mine = keel.get(phase, {}).get("jobs_per_s")
        if best and mine:
            theirs = systems[best]["phases"][phase]["jobs_per_s"]
            rows.append((f"{phase} ≥ {times:g}x the best peer", f"{fmt(mine)} vs {systems[best]['name']} {fmt(theirs)}: {ratio(mine, theirs)}", mine >= times * theirs))
    for key, limit in (("latency", 2.0), ("latency_fast", 10.0)):
        row = keel.get(key)
        if row:
            rows.append((f"p99 ≤ {limit:g} ms at {row['rate']:,} jobs/s", f"{row['p99_ms']} ms", row["p99_ms"] <= limit))
    if mem:
        rows.append((f"{mem['queued']:,} queued jobs in < 300 MB", f"{mem['rss_mb']} MB", mem["rss_mb"] < 300))
    if idle:
        rows.append(("idle server < 1 % of a core", f"{idle['cpu_percent_of_one_core']} %", idle["cpu_percent_of_one_core"] < 1))
    w("| target | measured | met |")
    w("|---|---|---|")
    for target, measured, met in rows:
        w(f"| {target} | {measured} | {'yes' if met else '**no**'} |")
    w("")
    pg1, pg3 = systems.get("keel-pg-1"), systems.get("keel-pg-3")
    if pg1 and not pg1["error"]:
        w("## Keel on PostgreSQL (issue 4)")
        w("")
        w("The same phases against the machine's PostgreSQL, with one node and with three `keel server` "
          "processes sharing the database (producers and workers spread over the nodes, one worker per node "
          "with 50 handlers and 500 jobs leased ahead of them, as graphile-worker's local queue of 500). The database, the nodes and the benchmark all share the same 2 cores.")
        w("")
        rows = []
        graphile = systems.get("graphile-batch", {}).get("phases", {}).get("process", {}).get("jobs_per_s")
        p1 = pg1["phases"].get("process", {}).get("jobs_per_s")
        if graphile:
            rows.append(("process ≥ 2x graphile-worker (batched)", f"{fmt(p1)} vs {fmt(graphile)}: {ratio(p1, graphile)}", p1 and p1 >= 2 * graphile))
        lat = pg1["phases"].get("latency")
        if lat:
            rows.append((f"p99 ≤ 10 ms at {lat['rate']} jobs/s (1 node)", f"{lat['p99_ms']} ms", lat["p99_ms"] <= 10))
        if pg3 and not pg3["error"]:
            p3 = pg3["phases"].get("process", {}).get("jobs_per_s")
            rows.append(("3 nodes ≥ 1.8x one node (process)", f"{fmt(p3)} vs {fmt(p1)}: {ratio(p3, p1)}", p3 and p1 and p3 >= 1.8 * p1))
        w("| target | measured | met |")
        w("|---|---|---|")
        for target, measured, met in rows:
            w(f"| {target} | {measured} | {'yes' if met else '**no**'} |")
        w("")
        proc = pg1["phases"].get("process_after_bulk")
        if proc and "machine_cpu_s" in proc:
            wall = proc["secs"]
            rest = proc["machine_cpu_s"] - proc["server_cpu_s"] - proc["client_cpu_s"]
            busy = proc["machine_cpu_s"] / wall
            w(f"Where it saturates: during process_after_bulk on one node, {cpu_line(proc)}; the machine as a "
              f"whole was busy {proc['machine_cpu_s']} core-s ({busy:.2f} of its 2 cores). What is neither Keel "
              f"nor the benchmark, PostgreSQL above all, took {rest:.2f} core-s ({rest / wall:.2f} of a core, "
              f"{rest / proc['n'] * 1e6:.0f} µs per job).")
            if busy >= 1.8:
                w("The machine is saturated with one node, and by the database more than by Keel: three nodes "
                  "on this one box add processes but no cores, so they cannot go faster here.")
            else:
                w("The machine is not saturated, so the rest is waiting: each lease and each ack batch is a "
                  "transaction whose commit waits for a WAL flush. Three nodes on this one box share the same "
                  "database and the same 2 cores; they add concurrency, not capacity.")
            proc3 = pg3["phases"].get("process_after_bulk") if pg3 and not pg3["error"] else None
            if proc3 and "machine_cpu_s" in proc3:
                busy3 = proc3["machine_cpu_s"] / proc3["secs"]
                rest3 = proc3["machine_cpu_s"] - proc3["server_cpu_s"] - proc3["client_cpu_s"]
                w(f"With three nodes the same phase ran at {fmt(proc3['jobs_per_s'])} jobs/s with the machine "
                  f"busy {busy3:.2f} of its 2 cores, {rest3 / proc3['secs']:.2f} of a core outside Keel and the "
                  f"benchmark: {'this is where it saturates' if busy3 >= 1.8 else 'still short of saturation'}.")
            w("Scaling out needs nodes on other machines than the database, which this workplace does not have.")
            w("")
        if lat:
            w("A job crosses two synchronous commits before its handler starts (the enqueue, then the lease). "
              "Measured apart from this run on the same machine (2026-11-22, AMD EPYC VM): `pgbench -n -c 1 -R 500 "
              "-T 8 --latency-limit=10` on a one-row insert averaged 0.32 ms with none of 3,988 commits over 10 ms. "
              "Before 195168d this phase gave p99 10.2 ms after the bulk phases (6 ms on a fresh schema): each ack "
              "locked its jobs through a generic plan that read the namespace's whole index once the table had "
              "outgrown its statistics (performance.md). On the earlier Intel VM the commit tail itself was the "
              "limit: 0.44 % of one-row commits took over 10 ms.")
            w("")
    workflow_section(w, systems)
    w("## What limits Keel here")
    w("")
    analysis(w, keel, systems, order)
    w("")
    w("How each number was moved, with the commands that measured it: [performance.md](performance.md).")
    w("")
    events = sys.argv[2] if len(sys.argv) > 2 and os.path.exists(sys.argv[2]) else None
    if events:
        report_events.section(w, events)
    hooks = sys.argv[3] if len(sys.argv) > 3 and os.path.exists(sys.argv[3]) else None
    if hooks:
        report_hooks.section(w, hooks)
    flow = sys.argv[4] if len(sys.argv) > 4 and os.path.exists(sys.argv[4]) else None
    if flow:
        report_flow.section(w, flow)
    ui = sys.argv[5] if len(sys.argv) > 5 and os.path.exists(sys.argv[5]) else None
    if ui:
        w("## Dashboard first paint (issue 17)")
        w("")
        w("Measured by `bench/ui-first-paint.sh` (crates/keel/tests/ui_scale.rs), apart from the runs above. "
          "The budget is 500 ms a page.")
        w("")
        with open(ui) as f:
            w(f.read().rstrip())
        w("")
    notify = sys.argv[6] if len(sys.argv) > 6 and os.path.exists(sys.argv[6]) else None
    if notify:
        report_notify.section(w, notify)
    monitors = sys.argv[7] if len(sys.argv) > 7 and os.path.exists(sys.argv[7]) else None
    if monitors:
        report_monitors.section(w, monitors)
    handlers = sys.argv[8] if len(sys.argv) > 8 and os.path.exists(sys.argv[8]) else None
    if handlers:
        report_handlers.section(w, handlers)
    apps = sys.argv[9] if len(sys.argv) > 9 and os.path.exists(sys.argv[9]) else None
    if apps:
        report_apps.section(w, apps)
    w("## Raw results")
    for path in [sys.argv[1]] + [p for p in (events, hooks, flow, notify, monitors, handlers, apps) if p]:
        w("")
        w(f"`{os.path.basename(path)}`:")
        w("")
        w("```")
        with open(path) as f:
            w(f.read().rstrip())
        w("```")
    print("\n".join(out))


if __name__ == "__main__":
    main()
