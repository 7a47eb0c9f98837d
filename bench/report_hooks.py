"""The webhooks section of docs/benchmarks.md (issue 14), from the JSON lines
of one `SUITE=hooks bench/compare.sh` run. Imported by report.py; only the
standard library; every number comes from the input file."""

from reportkit import cpu_line, fmt, load, targets_table

PHASES = [
    ("push", "deliveries_per_s", "subscription → endpoint, every answer 200"),
    ("push_failing", "deliveries_per_s", "the same, one answer in ten a 500 (retried)"),
    ("push_queue", "jobs_per_s", "push queue: jobs POSTed, the answer completing each"),
    ("ingest", "webhooks_per_s", "signed Standard Webhooks through a source, 64 in flight"),
]


def rate(systems, label, key, field):
    s = systems.get(label)
    row = s["phases"].get(key) if s and not s["error"] else None
    return row, (row or {}).get(field)


def section(w, path):
    meta, versions, systems, order = load(path)
    w("## Webhooks (issue 14)")
    w("")
    w(f"From one `SUITE=hooks bench/compare.sh` run on {meta.get('date', '?')} ({meta.get('machine', '?')}). "
      "`keel-bench` runs an HTTP receiver in its own process on loopback (axum) and a Keel server beside it, "
      "which pushes with 128 deliveries in flight. Push phases are timed from the first publish or enqueue to "
      "the last message the receiver got, so they include the hand-off of events into deliveries; every "
      "delivery is a durable job whose ack (and attempt log entry) is written before the next attempt could "
      "repeat it. Ingestion is answered only once the event is durable.")
    w("")
    w("No peer runs here: Svix, Hookdeck and Convoy ship as hosted services or as server images that are not "
      "on the package registries this machine can reach, so there is nothing to measure in the same run.")
    w("")
    w("| system | phase | per second | n | server CPU | what it is |")
    w("|---|---|---|---|---|---|")
    for label in order:
        for key, field, what in PHASES:
            row, value = rate(systems, label, key, field)
            if row:
                cpu = f"{row['server_cpu_s'] / row['secs']:.2f} of a core" if "server_cpu_s" in row else "–"
                w(f"| {systems[label]['name']} | {key} | {fmt(value)} | {fmt(row['n'])} | {cpu} | {what} |")
        if systems[label]["error"]:
            w(f"| {label} | – | failed | | | {systems[label]['error']} |")
    w("")
    keel = "keel-hooks"
    rows = []
    for key, field, target in [("push", "deliveries_per_s", "push delivery ≥ 10,000 deliveries/s to a local receiver"),
                               ("ingest", "webhooks_per_s", "ingestion ≥ 10,000 verified webhooks/s")]:
        _, value = rate(systems, keel, key, field)
        rows.append((target, fmt(value), value and value >= 10000))
    targets_table(w, rows)
    for key, field, _ in PHASES:
        row, _ = rate(systems, keel, key, field)
        if row and "server_cpu_s" in row:
            w(f"- **{key}**: {cpu_line(row)}.")
    w("")
