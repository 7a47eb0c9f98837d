#!/usr/bin/env python3
"""A tiny product with records, its own storage, an HTTP API and signed
outgoing webhooks: run twice (a helpdesk and a chat tool, each with its own
field names) and kept in sync through Keel alone (see README.md here).

    python3 app.py helpdesk --config sync.json
    python3 app.py chat --config sync.json

sync.json names, per app: `port`, `data` (a directory), `hook` (where its
webhooks go: a Keel source's ingress), `out_secret` (signs them) and
`in_secret` (checks what Keel pushes to /webhooks). Standard library only.

API: PUT /records/{id} with the app's fields (a local edit: stored, then
sent as a webhook); GET /records/{id}; GET /stats. POST /webhooks takes
Keel's deliveries: signature checked, each webhook-id applied once, and a
change applied from the other side is never sent back (no echo).

Concurrent edits resolve by last writer wins on (updated_at, origin): both
sides compare the same pair, so they end up equal whatever the order in
which the changes cross.
"""

import argparse
import base64
import hashlib
import hmac
import http.server
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request

TOLERANCE_S = 300


def key_of(secret):
    return base64.b64decode(secret.removeprefix("whsec_"))


def sign(secret, msg_id, ts, body):
    mac = hmac.new(key_of(secret), f"{msg_id}.{ts}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


class Store:
    """Records, seen webhook ids and an outbox, in one JSON file written
    atomically (temp file, fsync, rename) on every change."""

    def __init__(self, directory):
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, "state.json")
        self.lock = threading.Lock()
        self.state = {"records": {}, "seen": [], "applied": [], "outbox": [], "sent": 0}
        if os.path.exists(self.path):
            with open(self.path) as f:
                self.state = json.load(f)

    def save(self):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


class App:
    def __init__(self, name, conf):
        self.name, self.conf = name, conf
        self.store = Store(conf["data"])
        self.wake = threading.Event()

    def edit(self, record_id, fields):
        """A local edit: the whole record goes out, stamped by this app."""
        with self.store.lock:
            record = {"id": record_id, "fields": fields,
                      "updated_at": int(time.time() * 1000), "origin": self.name}
            self.store.state["records"][record_id] = record
            self.store.state["outbox"].append(record)
            self.store.save()
        self.wake.set()
        return record

    def apply(self, msg_id, change):
        """A change from the other side: once per webhook-id, and only when
        it is newer than what is here; never sent on."""
        with self.store.lock:
            state = self.store.state
            if msg_id in state["seen"]:
                return "duplicate"
            state["seen"].append(msg_id)
            local = state["records"].get(change["id"])
            newer = local is None or (change["updated_at"], change["origin"]) > (
                local["updated_at"], local["origin"])
            if newer:
                state["records"][change["id"]] = change
                state["applied"].append(msg_id)
            self.store.save()
            return "applied" if newer else "older"

    def send_outbox(self):
        """Sends the outbox in order, each signed; keeps what failed."""
        while True:
            self.wake.wait(0.5)
            self.wake.clear()
            while True:
                with self.store.lock:
                    if not self.store.state["outbox"]:
                        break
                    record = self.store.state["outbox"][0]
                body = json.dumps({"type": "record.changed", **record}).encode()
                msg_id = f"{self.name}-{record['id']}-{record['updated_at']}"
                ts = str(int(time.time()))
                request = urllib.request.Request(self.conf["hook"], data=body, method="POST", headers={
                    "content-type": "application/json", "webhook-id": msg_id,
                    "webhook-timestamp": ts,
                    "webhook-signature": sign(self.conf["out_secret"], msg_id, ts, body)})
                try:
                    urllib.request.urlopen(request, timeout=10).read()
                except (urllib.error.URLError, OSError) as e:
                    print(f"{self.name}: webhook not sent yet: {e}", file=sys.stderr)
                    break
                with self.store.lock:
                    self.store.state["outbox"].pop(0)
                    self.store.state["sent"] += 1
                    self.store.save()

    def verified(self, headers, body):
        msg_id = headers.get("webhook-id", "")
        ts = headers.get("webhook-timestamp", "0")
        if abs(time.time() - int(ts)) > TOLERANCE_S:
            return None
        expected = sign(self.conf["in_secret"], msg_id, ts, body)
        given = headers.get("webhook-signature", "").split(" ")
        if not any(hmac.compare_digest(expected, g) for g in given):
            return None
        return msg_id


def handler(app):
    class Handler(http.server.BaseHTTPRequestHandler):
        def answer(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def body(self):
            return self.rfile.read(int(self.headers.get("content-length", 0)))

        def do_GET(self):
            if self.path == "/stats":
                s = app.store.state
                return self.answer(200, {"sent": s["sent"], "applied": s["applied"],
                                         "outbox": len(s["outbox"])})
            record = app.store.state["records"].get(self.path.removeprefix("/records/"))
            return self.answer(200, record) if record else self.answer(404, {"error": "no such record"})

        def do_PUT(self):
            if not self.path.startswith("/records/"):
                return self.answer(404, {"error": "no such route"})
            record = app.edit(self.path.removeprefix("/records/"), json.loads(self.body()))
            self.answer(200, record)

        def do_POST(self):
            if self.path != "/webhooks":
                return self.answer(404, {"error": "no such route"})
            body = self.body()
            msg_id = app.verified(self.headers, body)
            if msg_id is None:
                return self.answer(401, {"error": "bad signature"})
            self.answer(200, {"result": app.apply(msg_id, json.loads(body))})

        def log_message(self, *args):
            pass

    return Handler


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("--config", required=True)
    args = parser.parse_args()
    with open(args.config) as f:
        conf = json.load(f)[args.name]
    app = App(args.name, conf)
    threading.Thread(target=app.send_outbox, daemon=True).start()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", conf["port"]), handler(app))
    print(f"{args.name} listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
