#!/usr/bin/env python3
"""Configures Keel to keep the helpdesk and the chat tool in sync:

    python3 setup.py --keel http://127.0.0.1:5335 --config sync.json

For each app: a topic of its changes, a source that verifies the app's
signed webhooks onto it (the app's webhook id becomes the event id, so a
resend is a duplicate; the record id is the key), an endpoint for the app's
/webhooks (ordered: one change per record at a time, in order), and a
subscription pushing the other app's changes to it, with the field names
mapped by a template. Idempotent: run it again after changing sync.json.
Standard library only.
"""

import argparse
import json
import urllib.request

# Each app's field names for the same two facts.
FIELDS = {"helpdesk": ["subject", "status"], "chat": ["title", "state"]}
RETRY_SCHEDULE_MS = [0, 250, 500, 1000, 2000, 4000, 8000, 15000, 30000, 60000, 300000, 3600000]


def put(keel, path, body):
    request = urllib.request.Request(
        f"{keel}/v1/namespaces/default/{path}", data=json.dumps(body).encode(),
        headers={"content-type": "application/json"}, method="PUT")
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


def mapping(source, target):
    """The payload template: the change as `target` names its fields."""
    fields = {t: f"${{{{ event.data.fields.{s} }}}}" for s, t in zip(FIELDS[source], FIELDS[target])}
    return {"id": "${{ event.data.id }}", "fields": fields,
            "updated_at": "${{ event.data.updated_at }}", "origin": "${{ event.data.origin }}"}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--keel", default="http://127.0.0.1:5335")
    parser.add_argument("--config", required=True)
    args = parser.parse_args()
    with open(args.config) as f:
        conf = json.load(f)
    for app, other in [("helpdesk", "chat"), ("chat", "helpdesk")]:
        put(args.keel, f"topics/{app}-changes", {})
        put(args.keel, f"sources/{app}", {
            "topic": f"{app}-changes", "key": "request.body.id",
            "verify": {"scheme": "standard_webhooks", "secret": conf[app]["out_secret"]}})
        put(args.keel, f"endpoints/{app}-app", {
            "url": f"http://127.0.0.1:{conf[app]['port']}/webhooks", "secret": conf[app]["in_secret"],
            "ordered": True, "retry_schedule_ms": RETRY_SCHEDULE_MS})
    for app, other in [("helpdesk", "chat"), ("chat", "helpdesk")]:
        put(args.keel, f"subscriptions/{app}-to-{other}", {
            "topic": f"{app}-changes",
            "target": {"endpoint": f"{other}-app", "payload": mapping(app, other)}})
    print("keel is keeping helpdesk and chat in sync")


if __name__ == "__main__":
    main()
