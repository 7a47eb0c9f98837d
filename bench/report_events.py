"""The events section of docs/benchmarks.md (issue 13), from the JSON lines
of one `SUITE=events bench/compare.sh` run. Imported by report.py; only the
standard library; every number comes from the input file."""

from reportkit import cpu_line, fmt, load, ratio, targets_table

DURABILITY = {
    "keel-events": "fdatasync of the WAL before every answer",
    "keel-pg-events": "PostgreSQL, synchronous_commit=on: a 2xx means committed",
    "nats-always": "JetStream file store, `sync_interval: always`: fsync before every PubAck",
    "nats-default": "JetStream file store, default `sync_interval` (2 min): PubAck after the write to the OS",
    "redis-streams": "AOF with `appendfsync always`: fsync before the reply",
    "rabbit-streams": "publisher confirm once the stream's log has the message; streams do not fsync each "
                      "write and rely on replication (one node here)",
}
# Peers whose acknowledgement waits for fsync: the bar for publish_single.
SYNCING = {"nats-always", "redis-streams"}
VERSIONS = {
    "keel-events": ["keel"], "keel-pg-events": ["keel", "postgresql"],
    "nats-always": ["nats-server-pypi"], "nats-default": ["nats-server-pypi"],
    "redis-streams": ["redis"], "rabbit-streams": ["rabbitmq", "amqplib"],
}
THROUGHPUT = ["publish_single", "publish_batch", "drain_pulled", "keyed_target"]


def phase(systems, label, key):
    s = systems.get(label)
    return s["phases"].get(key) if s and not s["error"] else None


def per_s(systems, label, key):
    row = phase(systems, label, key)
    return row.get("events_per_s") if row else None


def best(systems, labels, key):
    """The label among `labels` with the most events/s in phase `key`."""
    measured = [l for l in labels if per_s(systems, l, key)]
    return max(measured, key=lambda l: per_s(systems, l, key), default=None)


def section(w, path):
    meta, versions, systems, order = load(path)
    keel = "keel-events"
    peers = [l for l in order if not l.startswith("keel")]
    w("## Events (issue 13)")
    w("")
    w(f"From one `SUITE=events bench/compare.sh` run on {meta.get('date', '?')} ({meta.get('machine', '?')}), "
      "every system one after another on this machine. Keel runs `keel-bench` (Rust SDK over HTTP); peers run "
      "`bench/peers/events/phases.mjs` through a driver each, with their own Node.js clients. Phases: "
      "publish one event per request with 50 in flight; publish in batches of 1,000 (four batches in flight, "
      "keyed over 1,000 keys); drain a pulled subscription from its start (Keel: one consumer fetching up to "
      "1,000 and committing each batch while it fetches the next; peers: one consumer, acking as it receives); drain the keyed events through 50 "
      "handlers, checking per-key order (Keel: a queue-target subscription, so every event becomes a job with "
      "retries and a dead letter; peers: a consumer with 50 unacked); publish→handler latency at 1,000 "
      "events/s; 10 million events an hour (2,778/s) through the keyed path, with the CPU it took.")
    w("")
    w("| system | version | what an acknowledged publish survives |")
    w("|---|---|---|")
    for label in order:
        vs = ", ".join(f"{k} {versions.get(k, '?')}" for k in VERSIONS.get(label, []))
        w(f"| {systems[label]['name']} | {vs} | {DURABILITY.get(label, '?')} |")
    w("")
    w("### Throughput (events/s, higher is better)")
    w("")
    w("| system | " + " | ".join(THROUGHPUT) + " | order violations (keyed) |")
    w("|---|" + "---:|" * (len(THROUGHPUT) + 1))
    for label in order:
        s = systems[label]
        if s["error"]:
            w(f"| {s['name']} | {s['error']} |" + " |" * len(THROUGHPUT))
            continue
        cells = []
        for key in THROUGHPUT:
            row = s["phases"].get(key)
            cell = fmt(row["events_per_s"]) if row else "–"
            if row and row.get("n") != 50000:
                cell += f" (n={row['n']:,})"
            cells.append(cell)
        keyed = s["phases"].get("keyed_target", {})
        w(f"| {s['name']} | " + " | ".join(cells) + f" | {keyed.get('order_violations', '–')} |")
    w("")
    w("Keel's ratio to each peer (Keel ÷ peer, same phase, same run):")
    w("")
    w("| peer | " + " | ".join(THROUGHPUT) + " |")
    w("|---|" + "---:|" * len(THROUGHPUT))
    for label in peers:
        if not systems[label]["error"]:
            w(f"| {systems[label]['name']} | "
              + " | ".join(ratio(per_s(systems, keel, k), per_s(systems, label, k)) for k in THROUGHPUT) + " |")
    w("")
    w("### Latency and cost (ms, lower is better)")
    w("")
    w("Open loop, keyed over 1,000 keys: latency is handler start minus the publish's due time (Keel) or the "
      "time just before the publish call (peers). CPU is what the server processes used over the phase, in "
      "cores (core-seconds ÷ seconds).")
    w("")
    w("| system | phase | events/s | p50 | p90 | p99 | max | server CPU (cores) | order violations |")
    w("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for label in order:
        for key in ("event_latency", "events_10m_per_hour"):
            row = phase(systems, label, key)
            if row:
                cpu = f"{row['server_cpu_s'] / row['secs']:.2f}" if "server_cpu_s" in row else "–"
                w(f"| {systems[label]['name']} | {key} ({row['secs']} s) | {row['rate']:,} | {row['p50_ms']} | "
                  f"{row['p90_ms']} | {row['p99_ms']} | {row['max_ms']} | {cpu} | {row.get('order_violations', '–')} |")
    w("")
    targets(w, systems, peers)
    limits(w, systems)


def versus(systems, peer, key, factor, target):
    """A target row: Keel's events/s in phase `key` against `peer`'s, met at `factor` times."""
    ours, theirs = per_s(systems, "keel-events", key), per_s(systems, peer, key)
    measured = f"{fmt(ours)} vs {systems[peer]['name']} {fmt(theirs)}: {ratio(ours, theirs)}"
    return (target, measured, ours and ours >= factor * theirs)


def targets(w, systems, peers):
    keel = "keel-events"
    rows = []
    bar = best(systems, [p for p in peers if p in SYNCING], "publish_single")
    if bar:
        rows.append(versus(systems, bar, "publish_single", 1.5,
                           "publish one by one ≥ 1.5x the best peer that syncs before acknowledging"))
    batch = per_s(systems, keel, "publish_batch")
    rows.append(("batched publish ≥ 300,000 events/s", fmt(batch), batch and batch >= 300000))
    nats = best(systems, ["nats-always", "nats-default"], "drain_pulled")
    if nats:
        rows.append(versus(systems, nats, "drain_pulled", 2, "pulled drain ≥ 2x NATS (any durability)"))
    lat = phase(systems, keel, "event_latency")
    if lat:
        rows.append((f"publish→handler p99 ≤ 5 ms at {lat['rate']:,}/s", f"{lat['p99_ms']} ms", lat["p99_ms"] <= 5))
    hour = phase(systems, keel, "events_10m_per_hour")
    if hour:
        cores = hour["server_cpu_s"] / hour["secs"]
        rows.append(("10 M/h under a quarter of one core", f"{cores:.2f} of a core (server, over {hour['secs']} s)",
                     cores < 0.25))
    targets_table(w, rows)


def limits(w, systems):
    """Which resource bounds each of Keel's event phases, from this run's CPU figures."""
    rows = [(key, phase(systems, "keel-events", key)) for key in THROUGHPUT + ["events_10m_per_hour"]]
    rows = [(key, row) for key, row in rows if row and "server_cpu_s" in row]
    if not rows:
        return
    w("### What limits Keel here")
    w("")
    for key, row in rows:
        n = row.get("n") or row["rate"] * row["secs"]
        per_event = (row["server_cpu_s"] + row["client_cpu_s"]) / n * 1e6
        w(f"- **{key}**: {cpu_line(row)}; {per_event:.0f} µs of CPU per event between server and benchmark client.")
    w("")
    w("Where the server and the client together keep both cores busy, the phase is CPU-bound on this shared "
      "box; where they do not, it waits on the fsync before each answer and on the round trips between them. "
      "How each number was moved: [performance.md](performance.md).")
    w("")
