#!/usr/bin/env bash
# The dashboard's first paint at scale (issue 17): every page, in headless
# Chromium, with 1,000,000 jobs and 100,000 runs in the embedded store
# (crates/keel/tests/ui_scale.rs), from a release build. Writes
# docs/benchmarks-ui.md and regenerates docs/benchmarks.md with it. About ten
# minutes: a release build of the tests, then a minute or two to fill the
# store. KEEL_UI_JOBS and KEEL_UI_RUNS change the sizes.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
if ! command -v chromedriver >/dev/null || ! command -v chromium >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
fi
cargo nextest run --release -p keel --test ui_scale --run-ignored only --no-capture
cp target/ui-first-paint.md docs/benchmarks-ui.md
python3 bench/report.py docs/benchmarks.jsonl docs/benchmarks-events.jsonl \
    docs/benchmarks-hooks.jsonl docs/benchmarks-flow.jsonl docs/benchmarks-ui.md >docs/benchmarks.md
echo "wrote docs/benchmarks-ui.md and docs/benchmarks.md" >&2
