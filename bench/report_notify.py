"""The notifications section of docs/benchmarks.md (issue 35), from the JSON
lines of one `SUITE=notify bench/compare.sh` run. Imported by report.py; only
the standard library; every number comes from the input file."""

from reportkit import cpu_line, fmt, load, targets_table


def phase(systems, label, key):
    s = systems.get(label)
    return s["phases"].get(key) if s and not s["error"] else None


def section(w, path):
    meta, _versions, systems, order = load(path)
    w("## Notifications (issue 35)")
    w("")
    w(f"From one `SUITE=notify bench/compare.sh` run on {meta.get('date', '?')} ({meta.get('machine', '?')}). "
      "`keel-bench` posts notifications with 64 requests in flight; each is answered only once the "
      "notification, its delivery, its dedup key and its delivery's job are durable (one write). "
      "*Delivered* is timed from the first request to the last delivery settled. E-mails go to an SMTP "
      "sink in the benchmark's process (plain SMTP on loopback, every message taken); Slack to an HTTP "
      "stand-in on loopback; the streams phase holds 10,000 Server-Sent Events streams open on a server "
      "of its own, one recipient each, then sends 200 notifications one every 20 ms and times each "
      "from its request to its event on the recipient's stream.")
    w("")
    w("Novu has no package on the registries this machine reaches (it ships as container images and "
      "needs MongoDB and Redis beside it), so it is not measured here; its published self-hosting "
      "requirements are the comparison: MongoDB, two Redis deployments and S3 next to its API, worker "
      "and WebSocket services, where Keel is this one process (or its nodes on PostgreSQL).")
    w("")
    w("| system | phase | measured | what it is |")
    w("|---|---|---|---|")
    for label in order:
        name = systems[label]["name"]
        if systems[label]["error"]:
            w(f"| {label} | – | failed | {systems[label]['error']} |")
            continue
        row = phase(systems, label, "notify_accept")
        if row:
            w(f"| {name} | notify_accept | {fmt(row['accepted_per_s'])}/s accepted, p50 {row['p50_ms']} ms, "
              f"p99 {row['p99_ms']} ms; {fmt(row['delivered_per_s'])}/s delivered | "
              f"{fmt(row['n'])} in-app notifications, 64 requests in flight |")
            if "paced_p99_ms" in row:
                w(f"| {name} | notify_accept (steady) | p50 {row['paced_p50_ms']} ms, p99 {row['paced_p99_ms']} ms | "
                  f"{fmt(row['paced_rate'])} notifications a second for 3 s, each on its own request |")
        row = phase(systems, label, "notify_email")
        if row:
            w(f"| {name} | notify_email | {fmt(row['emails_per_s'])} e-mails/s | {fmt(row['n'])} e-mails into the sink |")
        row = phase(systems, label, "notify_slack")
        if row:
            w(f"| {name} | notify_slack | one channel {row['one_channel_secs']:.1f} s; 60 channels "
              f"{row['many_channels_secs']:.1f} s | 60 messages to one Slack channel, then one to each of 60 |")
        row = phase(systems, label, "notify_streams")
        if row:
            w(f"| {name} | notify_streams | {fmt(row['streams'])} streams, {row['rss_mb']:.0f} MB resident "
              f"({row['rss_mb_before']:.0f} MB before); send → event p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms | "
              f"{fmt(row['sends'])} notifications to open streams |")
    w("")
    keel = "keel-notify"
    accept = phase(systems, keel, "notify_accept") or {}
    email = phase(systems, keel, "notify_email") or {}
    slack = phase(systems, keel, "notify_slack") or {}
    streams = phase(systems, keel, "notify_streams") or {}
    rows = [
        ("accepted notifications ≥ 2,000/s durable", fmt(accept.get("accepted_per_s")),
         (accept.get("accepted_per_s") or 0) >= 2000),
        ("accepting p99 ≤ 25 ms at 2,000/s", f"{accept.get('paced_p99_ms', '–')} ms",
         accept.get("paced_p99_ms") is not None and accept["paced_p99_ms"] <= 25),
        ("e-mails into a local sink ≥ 300/s", fmt(email.get("emails_per_s")),
         (email.get("emails_per_s") or 0) >= 300),
        ("60 messages to one Slack channel take ≥ 59 s", f"{slack.get('one_channel_secs', float('nan')):.1f} s",
         (slack.get("one_channel_secs") or 0) >= 59),
        ("60 messages to 60 Slack channels ≤ 2 s", f"{slack.get('many_channels_secs', float('nan')):.1f} s",
         slack.get("many_channels_secs") is not None and slack["many_channels_secs"] <= 2),
        ("10,000 inbox streams under 300 MB resident", f"{streams.get('rss_mb', float('nan')):.0f} MB",
         streams.get("streams", 0) >= 10000 and (streams.get("rss_mb") or 1e9) < 300),
        ("send → stream p99 ≤ 100 ms", f"{streams.get('p99_ms', '–')} ms",
         streams.get("p99_ms") is not None and streams["p99_ms"] <= 100),
    ]
    targets_table(w, rows)
    for key in ("notify_accept", "notify_email"):
        row = phase(systems, keel, key)
        if row and "server_cpu_s" in row:
            w(f"- **{key}**: {cpu_line(row)}.")
    w("")
