"""The monitors section of docs/benchmarks.md (issue 36), from the JSON lines
of one `SUITE=monitors bench/compare.sh` run. Imported by report.py; only the
standard library; every number comes from the input file."""

from reportkit import cpu_line, fmt, load, targets_table


def phase(systems, label, key):
    s = systems.get(label)
    return s["phases"].get(key) if s and not s["error"] else None


def section(w, path):
    meta, _versions, systems, order = load(path)
    w("## Monitors (issue 36)")
    w("")
    w(f"From one `SUITE=monitors bench/compare.sh` run on {meta.get('date', '?')} ({meta.get('machine', '?')}). "
      "`keel-bench` makes 10,000 HTTP monitors probing every 30 s a target in its own process on "
      "loopback, waits one interval, then for 60 s notes when each probe reaches the target: *late* is "
      "that time after the probe's slot (each monitor's slots are offset within the interval by its "
      "name). Then it loads the dashboard's monitors page (its first 1,000 rows) and a status page of "
      "100 monitors 20 times each, and pings 1,000 heartbeat monitors from 64 clients, each ping "
      "answered once it is durable.")
    w("")
    w("Gatus has no package on the registries this machine reaches (it ships as a Go binary and a "
      "container image). Uptime Kuma does: npm has `uptime-kuma` 2.0.0-dev.0, a development pre-release; "
      "it is not measured here yet (it has no REST API: 10,000 monitors would be made over its Socket.IO "
      "protocol, and its SQLite driver builds natively), so its published figures are the comparison: "
      "users report UI actions taking 45 s at 700 monitors (uptime-kuma#7079), and it runs as one "
      "instance only (#18, #3164). Gatus "
      "keeps results in memory or one database and alerts from every replica (gatus#421).")
    w("")
    w("| system | phase | measured | what it is |")
    w("|---|---|---|---|")
    for label in order:
        name = systems[label]["name"]
        if systems[label]["error"]:
            w(f"| {label} | – | failed | {systems[label]['error']} |")
            continue
        row = phase(systems, label, "monitor_probes")
        if row:
            twice = row.get("slots_probed_twice", "–")
            w(f"| {name} | monitor_probes | {fmt(row['probes'])} probes of {fmt(row['probes_expected'])} due "
              f"({twice} slots probed twice), "
              f"{fmt(row['probes_per_s'])}/s; late p50 {row['start_late_p50_ms']} ms, p99 {row['start_late_p99_ms']} ms, "
              f"max {row['start_late_max_ms']} ms; {row['cpu_percent_of_one_core']} % of a core; "
              f"{row['rss_mb']:.0f} MB resident | {fmt(row['monitors'])} HTTP monitors every "
              f"{row['interval_ms'] // 1000} s (made at {fmt(row['created_per_s'])}/s) |")
        row = phase(systems, label, "monitor_pages")
        if row:
            m, s = row["monitors_page_1000_rows"], row["status_page_100_monitors"]
            w(f"| {name} | monitor_pages | monitors page p50 {m['p50_ms']} ms (max {m['max_ms']} ms); "
              f"status page first {s['first_ms']} ms, p50 {s['p50_ms']} ms | with the 10,000 monitors |")
        row = phase(systems, label, "heartbeats")
        if row:
            w(f"| {name} | heartbeats | {fmt(row['pings_per_s'])} pings/s, p50 {row['p50_ms']} ms, "
              f"p99 {row['p99_ms']} ms | {fmt(row['pings'])} pings over {fmt(row['monitors'])} monitors, "
              "64 clients, each durable before its 200 |")
    w("")
    keel = "keel-monitors"
    probes = phase(systems, keel, "monitor_probes") or {}
    pages = phase(systems, keel, "monitor_pages") or {}
    beats = phase(systems, keel, "heartbeats") or {}
    monitors_page = (pages.get("monitors_page_1000_rows") or {}).get("max_ms")
    status_page = (pages.get("status_page_100_monitors") or {}).get("first_ms")
    rows = [
        ("each probe slot once", f"{probes.get('slots_probed_twice', '–')} slots probed twice",
         probes.get("slots_probed_twice") == 0),
        ("10,000 monitors at 30 s: probe start p99 ≤ 1 s late", f"{probes.get('start_late_p99_ms', '–')} ms",
         probes.get("start_late_p99_ms") is not None and probes["start_late_p99_ms"] <= 1000),
        ("heartbeats ≥ 5,000 pings/s durable", fmt(beats.get("pings_per_s")),
         (beats.get("pings_per_s") or 0) >= 5000),
        ("monitors page under 1 s at 10,000 monitors", f"{monitors_page} ms",
         monitors_page is not None and monitors_page < 1000),
        ("status page under 1 s at 10,000 monitors", f"{status_page} ms",
         status_page is not None and status_page < 1000),
    ]
    targets_table(w, rows)
    for key in ("monitor_probes", "heartbeats"):
        row = phase(systems, keel, key)
        if row and "server_cpu_s" in row:
            w(f"- **{key}**: {cpu_line(row)}.")
    w("")
