"""A phone in another process taps a running `keyway serve --phone-socket DIR` (issue 15 item 2).

The phone (Tests/peers/socket_phone.py) is written from docs/PROTOCOL.md alone with `cryptography` and
`cbor2`. It makes its own key pair; the control API certifies it (`POST /v1/keys` with
`holder_public_key`) and tells it the site's issuer key (`GET /v1/site`). The lock's decisions are
checked in the journal (`GET /v1/events`). Site ids are those of Fixtures/sites/coworking.yaml.
"""
import base64
import datetime
import json
import os
import pathlib
import socket
import struct
import subprocess
import sys
import tempfile
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import socket_phone as sp


def unix(ts: str) -> int:
    return int(datetime.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp())


@pytest.fixture
def served(start_keyway):
    # A short directory: a Unix socket path holds at most 107 bytes.
    d = pathlib.Path(tempfile.mkdtemp(prefix="kw-ps-"))
    srv = start_keyway(extra=["--phone-socket", str(d), "--max-phone-connections", "8"])
    yield srv, d
    for p in d.iterdir():
        p.unlink()
    d.rmdir()


def phone_for(srv, user, locks, **key_fields):
    """A phone with its own key pair, holding a credential the API issued for that key."""
    holder = ec.generate_private_key(ec.SECP256R1())
    pem = holder.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    key = srv.ok("POST", "/v1/keys", {"user": user, "locks": locks, "holder_public_key": pem, **key_fields}, status=201)
    assert key["holder"] == "external", key
    site = srv.ok("GET", "/v1/site")
    issuer = serialization.load_pem_public_key(site["issuer_public_key"].encode())
    return sp.SocketPhone(base64.b64decode(key["credential"]), holder, site["id"], issuer), key


def clock_now(srv) -> int:
    return unix(srv.ok("GET", "/v1/health")["time"])


def test_serve_binds_one_socket_per_lock(served):
    srv, d = served
    locks = [lock["id"] for lock in srv.ok("GET", "/v1/locks")]
    assert sorted(p.name for p in d.iterdir()) == sorted(locks)
    assert all(p.is_socket() for p in d.iterdir())
    assert f"{d}/<lock id>" in srv.stdout_path.read_text()


def test_a_full_tap_is_granted_and_journaled(served):
    srv, d = served
    phone, key = phone_for(srv, "u-ada", ["main-entrance"])
    outcome = phone.tap(str(d / "main-entrance"), now=clock_now(srv))
    assert outcome.granted and outcome.reason is None, outcome
    lock = srv.ok("GET", "/v1/locks/main-entrance")
    assert outcome.lock_id == "main-entrance" and outcome.mtu == 517, outcome
    assert outcome.open_ms == lock["open_time_s"] * 1000, (outcome, lock)
    events = srv.ok("GET", "/v1/events?lock=main-entrance&type=access.granted")
    assert len(events) == 1, events
    data = events[0]["data"]
    assert data["user"] == "u-ada" and data["key_id"] == key["key_id"] and data["method"] == "mobile", events[0]
    assert srv.ok("GET", "/v1/locks/main-entrance")["state"] == "unlocked"


def test_a_fast_repeat_tap_after_the_full_one_and_its_fallback(served):
    srv, d = served
    phone, key = phone_for(srv, "u-ada", ["main-entrance"])
    lock = str(d / "main-entrance")
    first = phone.tap(lock, now=clock_now(srv))
    assert first.granted and first.mode == "full" and first.fast_fallback == "no_fast_key", first
    assert "main-entrance" in phone.fast_keys
    srv.ok("POST", "/v1/clock/advance", {"seconds": 10})
    second = phone.tap(lock, now=clock_now(srv))
    assert second.granted and second.mode == "fast" and second.lock_time is None, second
    assert phone.fast_keys["main-entrance"].counter == 1
    events = srv.ok("GET", "/v1/events?lock=main-entrance&type=access.granted")
    assert [(e["data"]["user"], e["data"]["key_id"]) for e in events] == [("u-ada", key["key_id"])] * 2, events

    # A reset builds fresh locks, which hold no FAST keys: the lock answers 0x86, the phone drops its
    # key and taps in full on the same connection (still granted: the credential is genuine), then FAST again.
    srv.ok("POST", "/v1/reset")
    third = phone.tap(lock, now=clock_now(srv))
    assert third.granted and third.mode == "full" and third.fast_fallback == "fast_key_unknown", third
    assert phone.fast_keys["main-entrance"].counter == 0, "a new key from the new full exchange"
    fourth = phone.tap(lock, now=clock_now(srv) + 1)
    assert fourth.granted and fourth.mode == "fast", fourth
    assert len(srv.ok("GET", "/v1/events?lock=main-entrance&type=access.granted")) == 2   # since the reset


def test_the_phone_as_a_separate_program(served, tmp_path):
    """socket_phone.py's command line: one JSON line, exit 0 when granted."""
    srv, d = served
    holder = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "phone.key.pem").write_bytes(holder.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    pem = holder.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    key = srv.ok("POST", "/v1/keys", {"user": "u-linus", "locks": ["room-dolores"], "holder_public_key": pem}, status=201)
    site = srv.ok("GET", "/v1/site")
    (tmp_path / "issuer.pub.pem").write_text(site["issuer_public_key"])
    run = subprocess.run([sys.executable, str(pathlib.Path(sp.__file__)), str(d / "room-dolores"),
                          "--credential-b64", key["credential"], "--holder-key", str(tmp_path / "phone.key.pem"),
                          "--site", site["id"], "--issuer-key", str(tmp_path / "issuer.pub.pem"), "--now", str(clock_now(srv))],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    answer = json.loads(run.stdout)
    assert answer["result"] == "granted" and answer["lock_id"] == "room-dolores" and answer["mode"] == "full", answer
    assert [e["data"]["user"] for e in srv.ok("GET", "/v1/events?lock=room-dolores&type=access.granted")] == ["u-linus"]


def test_a_denial_comes_back_authenticated_and_journaled(served):
    srv, d = served
    # A key that ended an hour before the emulator's clock: the lock judges it `expired` (§5 step 7),
    # and still authenticates the result (the presentation decrypted).
    now = clock_now(srv)
    iso = lambda t: datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    phone, key = phone_for(srv, "u-grace", ["room-dolores"], not_before=iso(now - 7200), not_after=iso(now - 3600))
    outcome = phone.tap(str(d / "room-dolores"), now=now)
    assert not outcome.granted and outcome.reason == "expired" and outcome.open_ms == 0, outcome
    events = srv.ok("GET", "/v1/events?lock=room-dolores&type=access.denied")
    assert [e["data"]["reason"] for e in events] == ["expired"], events
    assert events[0]["data"]["key_id"] == key["key_id"], events[0]
    assert srv.ok("GET", "/v1/locks/room-dolores")["state"] == "locked"


def test_each_socket_is_its_lock_and_the_phone_refuses_a_lock_not_in_its_key(served):
    srv, d = served
    phone, _ = phone_for(srv, "u-ada", ["main-entrance"])
    # office-101's socket answers as office-101 (its certificate and signature say so), so the
    # conformant phone walks away before revealing anything: nothing is recorded.
    with pytest.raises(sp.PhoneRefused) as refused:
        phone.tap(str(d / "office-101"), now=clock_now(srv))
    assert refused.value.reason == "lock_not_in_credential"
    assert srv.ok("GET", "/v1/events?lock=office-101") == []


def test_a_version_1_read_is_refused_with_0x84(served):
    srv, d = served
    phone, _ = phone_for(srv, "u-ada", ["main-entrance"])
    link, chars, _ = phone.connect(str(d / "main-entrance"))
    try:
        with pytest.raises(sp.ATTError) as e:
            link.read_long(chars[sp.READER_HELLO])
        assert e.value.code == 0x84
    finally:
        link.close()
    events = srv.ok("GET", "/v1/events?lock=main-entrance&type=access.denied")
    assert [e["data"]["reason"] for e in events] == ["protocol_version_unsupported"], events


def test_the_connection_cap_refuses_the_excess_and_a_tap_follows_once_room_is_made(served):
    srv, d = served
    held = []
    try:
        for _ in range(8):                      # --max-phone-connections 8: all admitted
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(str(d / "main-entrance"))
            s.sendall(struct.pack("<HH", 3, 4) + bytes([0x02]) + struct.pack("<H", 517))   # Exchange MTU
            s.settimeout(10)
            assert s.recv(7)[4] == 0x03         # answered: admitted and served
            held.append(s)
        extra = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        extra.settimeout(10)
        extra.connect(str(d / "back-door"))     # the cap spans every lock's socket
        assert extra.recv(1) == b"", "the ninth connection is closed at once"
        extra.close()
        out = srv.stdout_path.read_text()
        assert "phone-socket: refused a connection to unix:" in out and "8 of 8 phone connections open" in out, out
    finally:
        for s in held:
            s.close()
    phone, _ = phone_for(srv, "u-ada", ["main-entrance"])
    # The held sockets closed: their places are free again once the emulator saw them go (a refused
    # connection reads end of file: try again; the deadline is only a failure limit).
    deadline, outcome = time.monotonic() + 20, None
    while outcome is None and time.monotonic() < deadline:
        try:
            outcome = phone.tap(str(d / "main-entrance"), now=clock_now(srv))
        except ConnectionError:
            continue
    assert outcome is not None and outcome.granted, outcome


def test_an_idle_connection_is_closed_on_the_emulator_clock(served):
    srv, d = served
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(str(d / "main-entrance"))
    s.sendall(struct.pack("<HH", 3, 4) + bytes([0x02]) + struct.pack("<H", 517))
    assert s.recv(7)[4] == 0x03
    srv.ok("POST", "/v1/clock/advance", {"seconds": 29})
    s.sendall(struct.pack("<HH", 3, 4) + bytes([0x0A]) + struct.pack("<H", 3))         # still open: a read answers
    assert s.recv(5)[4] == 0x0B
    srv.ok("POST", "/v1/clock/advance", {"seconds": 31})
    rest = b""
    while True:                                  # the device name may still be in the buffer, then EOF
        chunk = s.recv(4096)
        if not chunk:
            break
        rest += chunk
    s.close()
    assert "phone-socket: closed 1 connection idle for 30 s" in srv.stdout_path.read_text()
