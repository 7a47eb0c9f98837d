"""The app developer's loop section of docs/benchmarks.md (issue 38), from the
JSON lines of one `SUITE=apps bench/compare.sh` run. Imported by report.py;
only the standard library; every number comes from the input file."""

from reportkit import fmt, load, phase_key, rows


def section(w, path):
    meta, _versions, _systems, _order = load(path)
    w("## The app developer's loop (issue 38)")
    w("")
    w(f"From one `SUITE=apps bench/compare.sh` run on {meta.get('date', '?')} ({meta.get('machine', '?')}). "
      "`import` writes a CSV file of about 200-byte records (`id,email,name,city,amount,note`), then times "
      "`keel import QUEUE FILE --key id` (the real binary, as a user runs it) from start to exit: the file "
      "goes in 8 MiB segments, two in flight, each record a job with the idempotency key "
      "`keel.import/QUEUE/ID`, every one checked to be in the queue afterwards. *Peak memory* is `VmHWM` "
      "(the server's over its whole life, the importer's read while it runs).")
    w("")
    w("| system | records | file | records/s | took | server CPU | importer CPU | server peak | importer peak |")
    w("|---|---|---|---|---|---|---|---|---|")
    for row in rows(path):
        name = row.get("system", row["label"])
        if "error" in row:
            w(f"| {row['label']} | failed: {row['error']} | | | | | | | |")
            continue
        if phase_key(row.get("phase", "")) != "import":
            continue
        w(f"| {name} | {fmt(row['n'])} | {fmt(row['file_mb'])} MB | {fmt(row['records_per_s'])} | "
          f"{row['secs']:.1f} s | {row['server_cpu_s']} s | {row['importer_cpu_s']} s | "
          f"{fmt(row['server_peak_mb'])} MB | {fmt(row['importer_peak_mb'])} MB |")
    w("")
    w("`project` writes a project of 500 resources (125 each of topics, queues, subscriptions from each "
      "topic to its queue, and schedules) and times the `keel` binary on it, process start included: the "
      "first `keel plan --out` (500 creates), `keel apply` of that plan, `keel plan` again (no change), and "
      "`keel plan` after a tenth of the topics changed. The issue's target: a plan of 500 resources within 2 s.")
    w("")
    w("| system | resources | first plan | apply | plan, no change | plan, a tenth changed |")
    w("|---|---|---|---|---|---|")
    for row in rows(path):
        if "error" in row or phase_key(row.get("phase", "")) != "project":
            continue
        name = row.get("system", row["label"])
        w(f"| {name} | {row['n']} | {fmt(row['plan_create_ms'])} ms | {fmt(row['apply_ms'])} ms | "
          f"{fmt(row['plan_unchanged_ms'])} ms | {fmt(row['plan_tenth_changed_ms'])} ms |")
    w("")
