#!/usr/bin/env python3
"""A real local webhook receiver for Keyway's Events tests — an independent peer.

Every request is verified with the `standardwebhooks` package (the reference Standard Webhooks
implementation) and parsed with the `cloudevents` SDK; what arrived is appended to a JSON-lines file,
one object per request, so the test can assert on order, ids, signatures and duplicates.

Fault injection:
  --fail-first N        answer the first N requests with --fail-status (default 500)
  --reject-user U       answer 400 (with a JSON body) for events whose data.user is U
  --format kisi         Kisi-shaped bodies (`keyway serve --upstream-format kisi`, docs/KISI.md): verified
                        by their X-Signature (hex HMAC-SHA256 of the body under --secret's UTF-8 bytes),
                        parsed as one Kisi event; `id` is its uuid, `data` the whole event
  --retry-after S       add Retry-After: S to the --fail-first answers

Start-up: binds --host/--port (0 = any free port), then writes the port number to --port-file (atomically)
so the test knows it is listening. Stops on SIGTERM/SIGINT.

It is the project's one test webhook receiver: the Swift suites start it as a child process
(Tests/EventsTests/TestSupport.swift), and pytest peers do the same through `WebhookReceiver` below.
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cloudevents.core.bindings.http import HTTPMessage, from_http_event
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

MAX_BODY = 1 << 20


class _Skip(Exception):
    """Not a CloudEvent by design (--format kisi)."""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--out", required=True, help="JSON-lines file of received requests")
    ap.add_argument("--secret", required=True, help="whsec_<base64> or a raw secret (see --raw-secret)")
    ap.add_argument("--raw-secret", action="store_true", help="the secret's UTF-8 bytes are the HMAC key")
    ap.add_argument("--fail-first", type=int, default=0)
    ap.add_argument("--fail-status", type=int, default=500)
    ap.add_argument("--retry-after", type=int, default=None)
    ap.add_argument("--reject-user", action="append", default=[])
    ap.add_argument("--format", choices=["cloudevents", "kisi"], default="cloudevents")
    args = ap.parse_args()

    webhook = Webhook(args.secret.encode() if args.raw_secret else args.secret)
    lock = threading.Lock()
    state = {"n": 0}
    out = open(args.out, "a", buffering=1, encoding="utf-8")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):  # keep test output quiet
            pass

        def do_POST(self):
            length = int(self.headers.get("content-length") or 0)
            if length < 0 or length > MAX_BODY:
                self._answer(413, {"error": "body too large"})
                return
            body = self.rfile.read(length)
            if len(body) < length:
                # The sender went away mid-body (a kill -9 under test): no server would act on half a
                # request, so it is not a delivery and is not recorded.
                self.close_connection = True
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            rec = {
                "path": self.path,
                "webhook_id": headers.get("webhook-id"),
                "webhook_timestamp": headers.get("webhook-timestamp"),
                "content_type": headers.get("content-type"),
                "body_sha256": hashlib.sha256(body).hexdigest(),
            }
            if args.format == "kisi":
                expected = hmac.new(args.secret.encode(), body, hashlib.sha256).hexdigest()
                rec["verified"] = hmac.compare_digest(expected, headers.get("x-signature", ""))
                try:
                    data = json.loads(body)
                    rec.update(parsed=isinstance(data, dict) and "uuid" in data, id=data.get("uuid"), type=data.get("type"),
                               user=data.get("actor_id"), data=data)
                except Exception as e:
                    rec.update(parsed=False, parse_error=f"{type(e).__name__}: {e}")
                    data = {}
            else:
                try:
                    webhook.verify(body, headers)
                    rec["verified"] = True
                except WebhookVerificationError as e:
                    rec["verified"] = False
                    rec["verify_error"] = str(e)
            try:
                if args.format == "kisi":
                    raise _Skip()
                ev = from_http_event(HTTPMessage(headers=headers, body=body))
                data = ev.get_data() or {}
                rec.update(parsed=True, id=ev.get_id(), source=ev.get_source(), type=ev.get_type(),
                           time=ev.get_time().isoformat() if ev.get_time() else None,
                           specversion=ev.get_specversion(), sequence=data.get("sequence"), user=data.get("user"),
                           data=data)
            except _Skip:
                pass
            except Exception as e:  # any parse failure is a finding, recorded for the test
                rec.update(parsed=False, parse_error=f"{type(e).__name__}: {e}")
                data = {}

            with lock:
                state["n"] += 1
                n = state["n"]
                rec["n"] = n
                extra = {}
                if not rec["verified"]:
                    status, reply = 401, {"error": "signature verification failed"}
                elif not rec["parsed"]:
                    status, reply = 422, {"error": "not a CloudEvent" if args.format == "cloudevents" else "not a Kisi event"}
                elif n <= args.fail_first:
                    status, reply = args.fail_status, {"error": "injected failure", "n": n}
                    if args.retry_after is not None:
                        extra["Retry-After"] = str(args.retry_after)
                elif data.get("user") in args.reject_user:
                    status, reply = 400, {"error": f"user {data.get('user')} is not allowed here"}
                else:
                    status, reply = 204, None
                rec["status"] = status
                out.write(json.dumps(rec, sort_keys=True) + "\n")
            self._answer(status, reply, extra)

        def _answer(self, status, reply, extra=None):
            payload = b"" if reply is None else json.dumps(reply).encode()
            self.send_response(status)
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            if payload:
                self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            if payload:
                self.wfile.write(payload)

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(tmp, args.port_file)

    def stop(*_):
        threading.Thread(target=server.shutdown, daemon=True).start()

    # A parent's threads may have blocked these (Foundation's Process passes its signal mask on); a
    # receiver that ignores SIGTERM would hang the test that stops it.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever(poll_interval=0.05)
    out.close()
    return 0


class WebhookReceiver:
    """This receiver as a child process, for pytest peers. `url` and `secret` go to Keyway's upstream
    options; `deliveries` is every request so far, in arrival order, read back from the JSON-lines file."""

    def __init__(self, secret=None, fail_first=0, fail_status=500, retry_after=None, reject_users=(), workdir=None,
                 format="cloudevents"):
        self.secret = secret or "whsec_" + base64.b64encode(os.urandom(32)).decode()
        self._own_dir = workdir is None
        self.dir = str(workdir) if workdir is not None else tempfile.mkdtemp(prefix="keyway-receiver-")
        port_file = os.path.join(self.dir, "receiver.port")
        self.out = os.path.join(self.dir, "received.jsonl")
        args = [sys.executable, os.path.abspath(__file__), "--port", "0", "--port-file", port_file, "--out", self.out,
                "--secret", self.secret, "--fail-first", str(fail_first), "--fail-status", str(fail_status)]
        if retry_after is not None:
            args += ["--retry-after", str(retry_after)]
        if format != "cloudevents":
            args += ["--format", format]
        for user in reject_users:
            args += ["--reject-user", user]
        self.proc = subprocess.Popen(args)
        deadline = time.monotonic() + 15
        while not os.path.exists(port_file):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("webhook_receiver.py did not start")
            time.sleep(0.01)
        with open(port_file, encoding="utf-8") as f:
            self.port = int(f.read())

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/keyway/events"

    @property
    def deliveries(self):
        try:
            with open(self.out, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.split("\n")[:-1] if line.strip()]  # only complete lines

    def by_id(self):
        return {d["id"]: d for d in self.deliveries if d.get("parsed")}

    def wait_for_ids(self, ids, timeout=20.0):
        """True once every id in `ids` has been received (the timeout only bounds a failure)."""
        want = set(ids)
        deadline = time.monotonic() + timeout
        while not want <= {d.get("id") for d in self.deliveries}:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
