#!/usr/bin/env python3
"""A Keel worker in Python with nothing but the standard library.

It long-polls a queue for jobs, "handles" each one, and completes it (or fails
it for good when the payload says {"fail": true}). The protocol needs no SDK:
lease, then complete or fail with the lease token.

Run with:  python3 examples/python/worker.py http://127.0.0.1:5335 emails
Options:   --namespace NS   --max-jobs N (stop after N jobs; for tests)
Token:     KEEL_TOKEN=keel_... (a worker token; the server requires one unless
           it runs with --auth off or is `keel dev`)
Stop with Ctrl-C or SIGTERM: the job in hand is finished first.
It prints a line per job, and when the server cannot be reached (it
restarts, or is not up yet) it tries again with backoff (0.5 s doubling to
10 s): a job whose ack did not arrive goes back to its queue when its lease
expires, and is handled again.

Traces: a job enqueued inside a trace is leased with its W3C `traceparent`.
With OpenTelemetry installed (pip install opentelemetry-sdk
opentelemetry-exporter-otlp-proto-http) and OTEL_EXPORTER_OTLP_ENDPOINT set,
each job is handled in a span that continues that trace, exported over OTLP;
without them the worker runs as before.
"""

import argparse
import contextlib
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request

# Backoff while the server cannot be reached.
FIRST_RETRY_S = 0.5
LAST_RETRY_S = 10.0


def call(base, path, body):
    """POSTs JSON and returns (status, answer); status None when the server
    could not be reached (answer: why)."""
    headers = {"Content-Type": "application/json"}
    token = os.environ.get("KEEL_TOKEN")
    if token:
        headers["Authorization"] = "Bearer " + token
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode(),
        headers=headers,
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=70) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        try:
            return error.code, json.load(error)
        except ValueError:
            return error.code, {"error": {"code": "unavailable", "message": str(error)}}
    except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
        return None, str(getattr(error, "reason", error))


def tracing():
    """A function giving the span a job is handled in: a child of the job's
    trace when OpenTelemetry is installed and configured, else no span."""
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError:
        return lambda job: contextlib.nullcontext(), lambda: None
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return lambda job: contextlib.nullcontext(), lambda: None
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    tracer = provider.get_tracer("keel-python-worker")
    propagator = TraceContextTextMapPropagator()

    def span(job):
        carrier = {"traceparent": job["traceparent"]} if "traceparent" in job else {}
        return tracer.start_as_current_span(
            "process " + job["queue"],
            context=propagator.extract(carrier),
            kind=trace.SpanKind.CONSUMER,
            attributes={"messaging.message.id": job["id"]},
        )

    return span, provider.shutdown


def handle(job):
    """The work itself: return a result, or raise to fail the attempt."""
    payload = job["payload"]
    if isinstance(payload, dict) and payload.get("fail"):
        raise ValueError("the payload asked to fail")
    return {"handled_by": "python", "attempt": job["attempt"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("server")
    parser.add_argument("queue")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--max-jobs", type=int, default=None)
    args = parser.parse_args()

    stopping = False

    def stop(_signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    span, flush = tracing()
    ns = f"/v1/namespaces/{args.namespace}"
    handled = 0
    retry_in = FIRST_RETRY_S
    print(f"python worker on {args.server}, queue {args.queue}", flush=True)
    while not stopping and (args.max_jobs is None or handled < args.max_jobs):
        status, answer = call(
            args.server,
            f"{ns}/queues/{args.queue}/lease",
            {"worker_id": f"python-{os.getpid()}", "max_jobs": 10, "wait_ms": 5000},
        )
        if status is None or status >= 500:
            print(f"server unreachable ({answer}); trying again in {retry_in:g} s", file=sys.stderr, flush=True)
            time.sleep(retry_in)
            retry_in = min(retry_in * 2, LAST_RETRY_S)
            continue
        if status != 200:
            print(f"lease refused: {status} {answer}", file=sys.stderr)
            return 1
        retry_in = FIRST_RETRY_S
        for job in answer["jobs"]:
            try:
                with span(job):
                    result = handle(job)
                outcome = "completed"
                status, answer = call(
                    args.server,
                    f"{ns}/jobs/{job['id']}/complete",
                    {"lease_token": job["lease_token"], "result": result},
                )
            except Exception as error:  # the handler's failure, reported to Keel
                outcome = f"failed: {error}"
                status, answer = call(
                    args.server,
                    f"{ns}/jobs/{job['id']}/fail",
                    {"lease_token": job["lease_token"], "error": str(error), "retry": False},
                )
            if status == 200:
                print(f"job {job['id']} (attempt {job['attempt']}) {outcome}", flush=True)
                handled += 1
            elif status == 409:
                print(f"lease lost for {job['id']}; another worker has it", file=sys.stderr, flush=True)
            elif status is None or status >= 500:
                print(f"ack of {job['id']} did not arrive ({answer}); it goes back to its queue when its lease expires", file=sys.stderr, flush=True)
            else:
                print(f"ack refused: {status} {answer}", file=sys.stderr)
                return 1
    flush()
    print(f"python worker stopped after {handled} jobs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
