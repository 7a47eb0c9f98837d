#!/usr/bin/env python3
"""Everything the provisioning workflow needs around Keel, in one command.

examples/workflows/provision-account.yaml calls out to three queues and one
HTTP service. This program stands in for all of them, with nothing but the
standard library:

- a worker on each queue: `tenants` (create and delete a tenant), `email`
  (the welcome e-mail) and `refunds`;
- a billing service at http://127.0.0.1:8099/charge that answers 200
  {"id": "ch_1", "status": "paid"}, or 402 {"status": "declined"} when the
  tenant's org starts with "declined": the charge step fails, and the run
  compensates (the tenant is deleted again).

Run with:  python3 examples/provision/stand_in.py [SERVER]   (default $KEEL_SERVER, else http://127.0.0.1:5335)
Options:   --namespace NS   --billing-port PORT (0: any free port)
It prints one line once everything listens, then what each worker does.
Stop with Ctrl-C or SIGTERM.
"""

import argparse
import http.server
import itertools
import json
import os
import signal
import sys
import threading
import urllib.error
import urllib.request


def call(base, path, body):
    """POSTs JSON and returns (status, answer)."""
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=70) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def tenants(payload):
    """create_tenant gets {"org"}; delete_tenant (a compensation) gets {"id"}."""
    if "org" in payload:
        return {"id": f"tenant-{payload['org']}"}
    return {"deleted": payload.get("id")}


def email(payload):
    return {"sent_to": payload.get("to")}


def refunds(payload):
    return {"refunded": payload.get("charge")}


HANDLERS = {"tenants": tenants, "email": email, "refunds": refunds}


def work(server, namespace, queue, stopping):
    """Leases from `queue` until told to stop; each job runs its handler."""
    ns = f"/v1/namespaces/{namespace}"
    handler = HANDLERS[queue]
    while not stopping.is_set():
        status, answer = call(
            server,
            f"{ns}/queues/{queue}/lease",
            {"worker_id": f"stand-in-{os.getpid()}", "max_jobs": 10, "wait_ms": 2000},
        )
        if status != 200:
            print(f"{queue}: lease failed: {status} {answer}", file=sys.stderr, flush=True)
            stopping.wait(1)
            continue
        for job in answer["jobs"]:
            result = handler(job["payload"])
            status, answer = call(
                server,
                f"{ns}/jobs/{job['id']}/complete",
                {"lease_token": job["lease_token"], "result": result},
            )
            print(f"{queue}: {job['payload']} -> {result} ({status})", flush=True)


class Billing(http.server.BaseHTTPRequestHandler):
    charges = itertools.count(1)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        tenant = str(body.get("tenant", ""))
        status = "declined" if tenant.startswith("tenant-declined") else "paid"
        answer = json.dumps({"id": f"ch_{next(self.charges)}", "status": status}).encode()
        # A declined charge is a failure the step does not retry (a 4xx).
        self.send_response(402 if status == "declined" else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
        print(f"billing: charged {tenant}: {status}", flush=True)

    def log_message(self, *_args):
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "server", nargs="?", default=os.environ.get("KEEL_SERVER", "http://127.0.0.1:5335")
    )
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--billing-port", type=int, default=8099)
    args = parser.parse_args()

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())

    billing_server = http.server.ThreadingHTTPServer(("127.0.0.1", args.billing_port), Billing)
    threading.Thread(target=billing_server.serve_forever, daemon=True).start()
    workers = [
        threading.Thread(target=work, args=(args.server, args.namespace, q, stopping), daemon=True)
        for q in HANDLERS
    ]
    for worker in workers:
        worker.start()
    port = billing_server.server_address[1]
    print(
        f"stand-ins ready: billing at http://127.0.0.1:{port}/charge; "
        f"workers on {', '.join(HANDLERS)}",
        flush=True,
    )
    stopping.wait()
    billing_server.shutdown()
    for worker in workers:
        worker.join(timeout=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
