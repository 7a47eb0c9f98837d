#!/usr/bin/env bash
# Many parked leasers, few jobs: what one enqueue costs the database when 50
# long-polls wait on its queue. Starts `keel server` on a schema of its own in
# the machine's PostgreSQL, parks 50 lease calls (max_jobs 1, re-polling),
# enqueues 100 single jobs 20 ms apart, and prints the database's committed
# transactions meanwhile (pg_stat_database.xact_commit) and how many jobs were
# leased.
#
#   bench/herd.sh [path/to/keel]     # default: target/release/keel
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
KEEL=${1:-$ROOT/target/release/keel}
DB=postgres://postgres@127.0.0.1:5432/postgres
PORT=5399
schema="keel_herd_$$"
psql -qAt "$DB" -c "CREATE SCHEMA $schema"
"$KEEL" server --listen 127.0.0.1:$PORT --auth off \
    --database-url "$DB?options=-c%20search_path%3D$schema" >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; psql -qAt "$DB" -c "DROP SCHEMA $schema CASCADE" >/dev/null 2>&1' EXIT
for _ in $(seq 1 100); do curl -sf "localhost:$PORT/readyz" >/dev/null && break; sleep 0.1; done
api="localhost:$PORT/v1/namespaces/default/queues/herd"
commits() { psql -qAt "$DB" -c "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"; }
pollers=()
for _ in $(seq 1 50); do
    (for _ in 1 2 3; do
        curl -s -X POST "$api/lease" -H 'content-type: application/json' -d '{"max_jobs":1,"wait_ms":3000}' >/dev/null
    done) &
    pollers+=($!)
done
sleep 0.5
before=$(commits)
for _ in $(seq 1 100); do
    curl -s -X POST "$api/jobs" -H 'content-type: application/json' -d '{"payload":1}' >/dev/null
    sleep 0.02
done
sleep 0.5
after=$(commits)
wait "${pollers[@]}"
leased=$(psql -qAt "$DB" -c "SELECT count(*) FROM $schema.keel_jobs WHERE state <> 'ready'")
echo "{\"transactions\":$((after - before)),\"jobs\":100,\"leased\":$leased}"
