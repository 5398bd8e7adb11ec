"""End to end, as an integration-test author in another language uses Keyway (issue 6, "Shows it works").

`keyway serve` runs as a subprocess in loopback mode with the simulated clock, its upstream pointing at
the project's test webhook receiver (Tests/peers/webhook_receiver.py, a child process) that verifies every
delivery with the `standardwebhooks` package and parses it with the `cloudevents` SDK, both independent of Keyway. The test
provisions keys, taps, revokes, drives the clock and IQs, and asserts on the control API's answers and on
the webhooks its access core receives.

Site ids come from Fixtures/sites/coworking.yaml: main-entrance is reached by iq-lobby; storage-basement
(40, 30, -4) is out of every IQ's reach; office-101 is a lock u-ada's key does not open (the phone
refuses it: protocol v2).
"""
import base64
import os
import re
import secrets
import subprocess
import threading
import time
import uuid
from datetime import datetime

import pytest
import requests

from conftest import CLOCK_START, KEYWAY, SITE, free_port, require_serve
from webhook_receiver import WebhookReceiver

WAIT_S = 20.0  # upper bound on real time for a webhook to arrive; normally milliseconds


@pytest.fixture
def receiver():
    r = WebhookReceiver()
    yield r
    r.stop()


def assert_delivery_contract(receiver):
    """Every delivery verifies and parses; duplicates (at-least-once) repeat the same id with the same bytes;
    per source, sequence numbers arrive strictly increasing."""
    deliveries = receiver.deliveries
    assert deliveries, "no webhook arrived"
    bad = [d for d in deliveries if not (d["verified"] and d["parsed"])]
    assert not bad, f"deliveries that failed verification or parsing: {bad}"
    first_body = {}
    last_seq = {}
    for d in deliveries:
        assert d["webhook_id"] == d["id"], f"webhook-id {d['webhook_id']} is not the CloudEvents id {d['id']}"
        if d["id"] in first_body:
            assert first_body[d["id"]] == d["body_sha256"], f"redelivery of {d['id']} with different bytes"
            continue
        first_body[d["id"]] = d["body_sha256"]
        src = d["source"]
        assert isinstance(d["sequence"], int) and d["sequence"] >= 1, d
        assert d["sequence"] > last_seq.get(src, 0), \
            f"{src}: sequence {d['sequence']} arrived after {last_seq.get(src)} (out of order or reused)"
        last_seq[src] = d["sequence"]
    return deliveries


def tap(srv, **body):
    return srv.ok("POST", "/v1/taps", body, status=200)


def advance(srv, seconds):
    return srv.ok("POST", "/v1/clock/advance", {"seconds": seconds})


def lock(srv, lock_id):
    return srv.ok("GET", f"/v1/locks/{lock_id}")


def assert_event_id(value):
    assert isinstance(value, str), value
    uuid.UUID(value)  # raises on anything but a UUID


# --- the main story -------------------------------------------------------------------------------


def test_provision_tap_revoke_and_receive_signed_webhooks(start_keyway, receiver):
    srv = start_keyway(upstream=receiver.url, upstream_secret=receiver.secret, deliver_held=True)

    key = srv.ok("POST", "/v1/keys", {"user": "u-ada", "locks": ["main-entrance"]}, status=201)
    assert re.fullmatch(r"[0-9a-f]{32}", key["key_id"]), key
    assert key["holder"] == "built_in" and key["locks"] == ["main-entrance"] and key["user"] == "u-ada"
    cose = base64.b64decode(key["credential"], validate=True)
    assert cose[:1] == b"\xd2", "credential is not a tagged COSE_Sign1 (CBOR tag 18)"

    before = lock(srv, "main-entrance")
    assert before["state"] == "locked", before
    open_s = before["open_time_s"]
    assert 1 <= open_s <= 7, before  # the fixture's main entrance; the timing below relies on it

    # Granted: unlocked for the open time, reader green.
    granted = tap(srv, lock="main-entrance", user="u-ada")
    assert granted["result"] == "granted" and granted["reason"] is None, granted
    assert granted["open_ms"] == open_s * 1000, granted
    assert granted["key_id"] == key["key_id"] and granted["method"] == "mobile", granted
    assert granted.get("phone_verified_result") is True, granted
    assert_event_id(granted["event_id"])
    during = lock(srv, "main-entrance")
    assert during["state"] == "unlocked", during
    assert during["feedback"]["led"] == "green", during

    # Still open just before the open time ends; relocked by itself after 8 s.
    if open_s > 1:
        advance(srv, open_s - 1)
        assert lock(srv, "main-entrance")["state"] == "unlocked"
        advance(srv, 8 - (open_s - 1))
    else:
        advance(srv, 8)
    assert lock(srv, "main-entrance")["state"] == "locked"

    # A lock the key is not for: the built-in phone (tap protocol v2, conformant) checks the lock is
    # in its credential's aud before it reveals anything, so the lock decides and records nothing.
    wrong = tap(srv, lock="office-101", user="u-ada")
    assert wrong["result"] == "phone_refused" and wrong["reason"] == "lock_not_in_credential", wrong
    assert wrong["event_id"] is None, wrong
    assert lock(srv, "office-101")["state"] == "locked"

    # Revoke; the IQs carry the new revocation list to the lock at their next sync.
    revoked = srv.ok("DELETE", f"/v1/keys/{key['key_id']}")
    assert revoked["key_id"] == key["key_id"] and revoked["revoked"] is True, revoked
    version = revoked["revocation_list_version"]
    assert version >= 1
    listed = srv.ok("GET", "/v1/keys?user=u-ada")
    assert [k["id"] for k in listed] == [key["key_id"]] and listed[0]["revoked"] is True, listed
    advance(srv, 61)  # sync_interval_s is 60 in the fixture
    synced = lock(srv, "main-entrance")
    assert synced["revocation_list_version"] >= version, synced
    denied = tap(srv, lock="main-entrance", user="u-ada")
    assert denied["result"] == "denied" and denied["reason"] == "revoked", denied
    assert_event_id(denied["event_id"])

    # The access core got every decision, signed, as CloudEvents.
    ids = [granted["event_id"], denied["event_id"]]
    assert receiver.wait_for_ids(ids), f"webhooks missing after {WAIT_S}s: {set(ids) - set(receiver.by_id())}"
    assert_delivery_contract(receiver)
    got = receiver.by_id()
    g, d = (got[i] for i in ids)
    assert g["type"] == "com.keyway.access.granted" and g["source"] == "/sites/sf-mission/locks/main-entrance", g
    assert g["data"]["user"] == "u-ada" and g["data"]["result"] == "granted" and g["data"]["method"] == "mobile", g
    assert g["data"]["key_id"] == key["key_id"], g
    assert not [e for e in got.values() if e["source"] == "/sites/sf-mission/locks/office-101"
                and e["type"].startswith("com.keyway.access.")], "the refused lock recorded no tap"
    assert d["type"] == "com.keyway.access.denied" and d["data"]["reason"] == "revoked", d
    assert g["data"]["sequence"] < d["data"]["sequence"], (g, d)
    assert g["content_type"].startswith("application/cloudevents+json") or g["content_type"].startswith("application/json"), g

    # The lock's relock was reported too, after the grant.
    assert _wait_for(lambda: any(
        x["type"] == "com.keyway.lock.locked" and x["source"] == g["source"] and x["sequence"] > g["sequence"]
        for x in receiver.by_id().values())), "no com.keyway.lock.locked event after the grant"

    # The journal and the delivery status agree with what arrived.
    events = srv.ok("GET", "/v1/events?limit=10000")
    journal_ids = {e["id"] for e in events}
    assert set(ids) <= journal_ids
    deliveries = srv.ok("GET", "/v1/deliveries")
    assert len(deliveries) == 1 and deliveries[0]["delivered"] >= 3, deliveries
    assert receiver.secret not in str(deliveries), "the webhook secret leaked into /v1/deliveries"


def _wait_for(predicate, timeout=WAIT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_event_of_a_lock_out_of_reach_arrives_only_once_an_iq_collects_it(start_keyway, receiver):
    srv = start_keyway(upstream=receiver.url, upstream_secret=receiver.secret)  # no --deliver-held

    basement = lock(srv, "storage-basement")
    assert basement["in_iq_reach"] is False and basement["iq_reach"] == [], basement
    srv.ok("POST", "/v1/keys", {"user": "u-ken", "locks": ["storage-basement", "main-entrance"]}, status=201)

    held = tap(srv, lock="storage-basement", user="u-ken")
    assert held["result"] == "granted", held  # works offline on the keys it can verify
    reached = tap(srv, lock="main-entrance", user="u-ken")
    assert reached["result"] == "granted", reached
    advance(srv, 61)  # one IQ sync round

    assert receiver.wait_for_ids([reached["event_id"]]), "the event of a lock in IQ reach was not delivered"
    time.sleep(0.5)  # delivery runs on real time: give a wrongly delivered held event the chance to show
    assert held["event_id"] not in receiver.by_id(), "an event still in an unreachable lock's trail was delivered"
    stages = {e["id"]: e["stage"] for e in srv.ok("GET", "/v1/events?limit=10000")}
    assert stages.get(held["event_id"]) == "held", stages.get(held["event_id"])
    assert lock(srv, "storage-basement")["trail"]["count"] >= 1

    # Bring an IQ down to the basement: it reaches the lock and collects its trail at the next sync.
    moved = srv.ok("POST", "/v1/iqs/iq-lounge/position", {"x": 38, "y": 27, "z": -1.5})
    assert "storage-basement" in moved["locks_in_reach"], moved
    assert "iq-lounge" in lock(srv, "storage-basement")["iq_reach"]
    advance(srv, 61)

    assert receiver.wait_for_ids([held["event_id"]]), "the held event was not delivered after an IQ collected it"
    assert_delivery_contract(receiver)
    ev = receiver.by_id()[held["event_id"]]
    assert ev["source"] == "/sites/sf-mission/locks/storage-basement" and ev["type"] == "com.keyway.access.granted", ev
    assert ev["data"]["user"] == "u-ken", ev
    assert _wait_for(lambda: {e["id"]: e["stage"] for e in srv.ok("GET", "/v1/events?limit=10000")}
                     .get(held["event_id"]) == "delivered")


def test_tags_and_pins(keyway):
    keyway.ok("POST", "/v1/reset")
    t = tap(keyway, lock="main-entrance", tag="04:A2:3B:1C:5D:80")  # u-ada's fob; members open the main entrance
    assert t["result"] == "granted" and t["method"] == "tag" and t.get("user") == "u-ada", t
    p = tap(keyway, lock="main-entrance", pin="4821")  # u-ada's PIN; the main entrance has a keypad
    assert p["result"] == "granted" and p["method"] == "pin", p
    w = tap(keyway, lock="main-entrance", pin="0000")
    assert w["result"] == "denied" and w["reason"] == "wrong_pin" and w["open_ms"] == 0, w
    u = tap(keyway, lock="main-entrance", tag="DE:AD:BE:EF")
    assert u["result"] == "denied" and u["reason"] == "unknown_tag", u
    r = keyway.post("/v1/taps", json={"lock": "office-101", "pin": "4821"})  # no keypad
    assert r.status_code == 422 and r.json()["error"]["code"] == "no_keypad", r.text


def test_events_stream_sends_each_event_live(keyway):
    keyway.ok("POST", "/v1/reset")
    keyway.ok("POST", "/v1/keys", {"user": "u-grace", "locks": ["office-101"]}, status=201)
    lines = []
    opened = threading.Event()

    def read():
        with requests.get(keyway.url("/v1/events/stream"), stream=True, timeout=(3, WAIT_S)) as r:
            lines.append(("status", r.status_code, r.headers.get("content-type")))
            opened.set()
            try:
                for line in r.iter_lines(decode_unicode=True):
                    lines.append(line)
                    if line.startswith("data:") and '"com.keyway.access.granted"' in line:
                        return
            except requests.RequestException as e:
                lines.append(("error", str(e)))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert opened.wait(WAIT_S), "the stream did not open"
    t = tap(keyway, lock="office-101", user="u-grace")
    reader.join(WAIT_S)
    assert not reader.is_alive(), f"no access.granted message on the stream; got {lines}"
    status = lines[0]
    assert status[1] == 200 and status[2].startswith("text/event-stream"), status
    data = [l for l in lines[1:] if isinstance(l, str) and l.startswith("data:")]
    assert any(t["event_id"] in l for l in data), f"event {t['event_id']} not on the stream: {data}"
    assert any(isinstance(l, str) and l == "event: com.keyway.access.granted" for l in lines), lines


def test_reset_returns_to_the_initial_state(keyway):
    keyway.ok("POST", "/v1/reset")
    keyway.ok("POST", "/v1/keys", {"user": "u-ada", "locks": ["main-entrance"]}, status=201)
    tap(keyway, lock="main-entrance", user="u-ada")
    advance(keyway, 3600)
    keyway.ok("POST", "/v1/iqs/iq-lobby/online", {"online": False})
    reset = keyway.ok("POST", "/v1/reset")
    assert reset["reset"] is True and isinstance(reset["events_after"], int), reset
    assert keyway.ok("GET", "/v1/keys") == []
    assert keyway.ok("GET", "/v1/events") == []
    assert lock(keyway, "main-entrance")["state"] == "locked"
    assert all(q["online"] for q in keyway.ok("GET", "/v1/iqs"))
    now = datetime.fromisoformat(keyway.ok("GET", "/v1/clock")["now"].replace("Z", "+00:00"))
    assert now == datetime.fromisoformat(CLOCK_START.replace("Z", "+00:00")), now
    r = keyway.post("/v1/taps", json={"lock": "main-entrance", "user": "u-ada"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "no_key", r.text


# --- bad requests ---------------------------------------------------------------------------------


def assert_error(r, status, code=None, field=None):
    assert r.status_code == status, f"expected {status}, got {r.status_code} {r.text}"
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]) <= {"code", "message", "field"}, body
    assert body["error"]["message"], body
    if code:
        assert body["error"]["code"] == code, body
    if field:
        assert body["error"].get("field") == field, body
    return body["error"]


def test_bad_requests_get_a_4xx_naming_the_field(keyway):
    keyway.ok("POST", "/v1/reset")
    e = assert_error(keyway.post("/v1/taps", json={"lock": "main-entrance", "user": "u-ada", "colour": "red"}),
                     400, "invalid_field", "colour")
    assert "unknown field" in e["message"]
    assert_error(keyway.get("/v1/locks/no-such-lock"), 404, "not_found")
    assert_error(keyway.post("/v1/taps", json={"lock": "no-such-lock", "user": "u-ada"}), 404, "not_found")
    assert_error(keyway.post("/v1/locks/no-such-lock/open", json={}), 404, "not_found")
    assert_error(keyway.delete("/v1/keys/00000000000000000000000000000000"), 404, "not_found")
    assert_error(keyway.post("/v1/taps", data=b"lock=main-entrance&user=u-ada",
                             headers={"content-type": "application/x-www-form-urlencoded"}), 415, "unsupported_media_type",
                 "Content-Type")  # a form is not JSON (test_api_guard.py)
    assert_error(keyway.post("/v1/taps", data=b'{"lock": "main-entrance",', headers={"content-type": "application/json"}),
                 400, "invalid_json")
    assert_error(keyway.post("/v1/taps", data=b'["main-entrance"]', headers={"content-type": "application/json"}),
                 400, "invalid_json")
    assert_error(keyway.post("/v1/keys", json={}), 400, "invalid_field", "user")
    assert_error(keyway.post("/v1/keys", json={"user": "u-ada", "locks": ["front-porch"]}), 400, "invalid_field", "locks")
    assert_error(keyway.post("/v1/keys", json={"user": "u-ada", "locks": ["main-entrance"], "group": "members"}),
                 400, "invalid_field")
    assert_error(keyway.post("/v1/keys", json={"user": "u-ada", "locks": ["main-entrance"],
                                               "not_before": "2026-11-23T10:00:00Z", "not_after": "2026-11-23T09:00:00Z"}),
                 400, "invalid_field", "not_after")
    assert_error(keyway.post("/v1/keys", json={"user": "u-ada", "locks": ["main-entrance"], "not_before": "tomorrow"}),
                 400, "invalid_field", "not_before")
    assert_error(keyway.post("/v1/taps", json={"lock": "main-entrance", "user": "u-ada", "tag": "04:A2:3B:1C"}),
                 400, "invalid_field")
    assert_error(keyway.post("/v1/taps", json={"lock": "main-entrance", "user": "u-ada", "action": "fly"}),
                 400, "invalid_field", "action")
    assert_error(keyway.post("/v1/clock/advance", json={"seconds": "8"}), 400, "invalid_field", "seconds")
    assert_error(keyway.post("/v1/clock/advance", json={"seconds": -1}), 400, "invalid_field", "seconds")
    assert_error(keyway.post("/v1/iqs/iq-lobby/online", json={"online": 1}), 400, "invalid_field", "online")
    assert_error(keyway.get("/v1/events?limit=0"), 400, "invalid_field", "limit")
    assert_error(keyway.get("/v1/events?type=access.exploded"), 400, "invalid_field", "type")
    assert_error(keyway.post("/v1/reset", data=b"x" * (65 * 1024), headers={"content-type": "application/json"}),
                 413, "body_too_large")
    assert_error(keyway.get("/v1/no-such-route"), 404, "not_found")
    # Nothing above changed anything.
    assert keyway.ok("GET", "/v1/keys") == []
    assert lock(keyway, "main-entrance")["state"] == "locked"


def test_real_clock_refuses_time_travel(start_keyway):
    srv = start_keyway(clock="real")
    assert srv.ok("GET", "/v1/clock")["mode"] == "real"
    assert_error(srv.post("/v1/clock/advance", json={"seconds": 8}), 409, "real_clock")


# --- off loopback -------------------------------------------------------------------------------


def test_off_loopback_every_request_needs_the_bearer_token(start_keyway):
    token = secrets.token_urlsafe(24)
    srv = start_keyway(listen_host="0.0.0.0", api_token=token)  # reached through 127.0.0.1
    base = srv.base
    for method, path in [("GET", "/v1/health"), ("GET", "/openapi.yaml"), ("GET", "/v1/locks"), ("POST", "/v1/reset")]:
        assert_error(requests.request(method, base + path, timeout=10), 401, "unauthorized")
        assert_error(requests.request(method, base + path, headers={"Authorization": "Bearer wrong"}, timeout=10),
                     401, "unauthorized")
        assert_error(requests.request(method, base + path, headers={"Authorization": f"Bearer {token}x"}, timeout=10),
                     401, "unauthorized")
        assert_error(requests.request(method, base + path, headers={"Authorization": token}, timeout=10),
                     401, "unauthorized")
        r = requests.request(method, base + path, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert r.status_code == 200, (method, path, r.status_code, r.text)
    # A refused request changes nothing.
    r = requests.post(base + "/v1/keys", json={"user": "u-ada", "locks": ["main-entrance"]}, timeout=10)
    assert_error(r, 401, "unauthorized")
    assert srv.ok("GET", "/v1/keys") == []
    assert token not in srv.output(), "the API token appears in serve's output"


def test_off_loopback_without_a_token_refuses_to_start(tmp_path):
    require_serve()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "KEYWAY_API_TOKEN"}
    r = subprocess.run([str(KEYWAY), "serve", "--site", str(SITE), "--data", str(tmp_path / "d"),
                        "--listen", f"0.0.0.0:{port}", "--clock", "simulated"],
                       capture_output=True, text=True, timeout=30, env=env, stdin=subprocess.DEVNULL)
    assert r.returncode != 0, r.stdout
    assert "api-token" in (r.stderr + r.stdout), r.stderr
