"""What report.py and report_events.py share: reading one run's JSON lines and
formatting its numbers."""

import json


def phase_key(phase):
    """'enqueue_bulk(async batch)' -> 'enqueue_bulk'; Temporal's and Restate's names too."""
    return phase.split("(")[0].strip()


def rows(path):
    """Every measured row, in the file's order, with its full phase name."""
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                row = json.loads(line)
                if "label" in row:
                    yield row


def load(path):
    meta, versions, systems, order = {}, {}, {}, []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            row = json.loads(line)
            if "machine" in row:
                meta = row
                continue
            if "suite" in row:
                continue
            if "versions" in row:
                versions = row["versions"]
                continue
            label = row["label"]
            if label not in systems:
                systems[label] = {"name": row.get("system", label), "phases": {}, "runs": {}, "error": None}
                order.append(label)
            if "error" in row:
                systems[label]["error"] = row["error"]
                continue
            systems[label]["name"] = row.get("system", label)
            key = phase_key(row["phase"])
            if key == "send+run":  # Restate: enqueue and process overlap
                systems[label]["phases"]["enqueue_single"] = {"jobs_per_s": row["sends_per_s"], "n": row["n"], "note": "overlapped"}
                systems[label]["phases"]["process"] = {"jobs_per_s": row["completed_per_s"], "n": row["n"], "note": "overlapped"}
            else:
                systems[label]["phases"][key] = row
                systems[label]["runs"].setdefault(key, []).append(row)
    return meta, versions, systems, order


def fmt(n):
    return f"{n:,.0f}" if isinstance(n, (int, float)) else "–"


def ratio(a, b):
    if not a or not b:
        return "–"
    return f"{a / b:.1f}x"


def cpu_line(row):
    """'server 1.4 core-s (0.8 of a core), client 0.6 core-s' for a phase row."""
    wall = row["secs"]
    return (f"server {row['server_cpu_s']} core-s ({row['server_cpu_s'] / wall:.2f} of a core), "
            f"client {row['client_cpu_s']} core-s ({row['client_cpu_s'] / wall:.2f} of a core), over {wall:.2f} s")


def targets_table(w, rows):
    """A '### Targets' table from (target, measured, met) rows."""
    w("### Targets")
    w("")
    w("| target | measured | met |")
    w("|---|---|---|")
    for target, measured, met in rows:
        w(f"| {target} | {measured} | {'yes' if met else '**no**'} |")
    w("")
