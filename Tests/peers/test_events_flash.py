"""Issue 18, "one owner per event, one queue": end to end through the control API of the real `keyway serve`.

* A lock's bounded trail alone decides what an offline lock loses. With its IQ offline, a lock whose
  trail holds 5 records is tapped 12 times: 7 records are lost. When the IQ comes back, the access
  core's webhook receiver gets exactly the 5 kept events plus one `trail.overflow` whose `lost_count`
  is 7 — the number of events the journal marks `lost` for that lock — and never a lost one.
* Device state survives a crash as a lock's flash does. `kill -9` in the middle of a burst of taps, and
  again in the middle of an IQ collection; a restart on the same data directory brings back each lock's
  trail, sequence numbering, state (unlocked until…, office mode) and revocation list version; the next
  IQ sync collects every held event and every journal event reaches the receiver; no sequence repeats.

The receiver is Tests/peers/webhook_receiver.py (standardwebhooks + cloudevents, independent of Keyway).
The journal is read with Python's own sqlite3, as `sqlite3 journal.sqlite` would.
"""
import json
import pathlib
import random
import signal
import socket
import sqlite3
import threading
import time

import pytest
import requests

import conftest
from conftest import KeywayServer, require_serve
from webhook_receiver import WebhookReceiver

WAIT_S = 30.0
SITE_ID = "sf-mission"
UNKNOWN_TAG = "0A:0B:0C:0D"
ADA_TAG = "04:A2:3B:1C:5D:80"  # u-ada's fob: members open main-entrance and the meeting rooms
LOBBY_LOCKS = ["main-entrance", "office-101", "office-102", "room-dolores"]  # reached by iq-lobby only


def source(lock_id):
    return f"/sites/{SITE_ID}/locks/{lock_id}"


def wait_until(predicate, timeout=WAIT_S, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def journal_rows(data_dir):
    """Every event in the journal: id, source, seq, state (0 held, 1 collected, 2 lost), attributes."""
    db = sqlite3.connect(f"file:{data_dir / 'journal.sqlite'}?mode=ro", uri=True, timeout=10)
    try:
        rows = db.execute("SELECT id, source, seq, state, attributes, type FROM events ORDER BY position").fetchall()
    finally:
        db.close()
    return [{"id": r[0], "source": r[1], "seq": r[2], "state": r[3], "attributes": json.loads(r[4] or "{}"),
             "type": r[5]} for r in rows]


def assert_sequences_never_repeat(rows):
    seen = {}
    for r in rows:
        key = (r["source"], r["seq"])
        assert key not in seen or seen[key] == r["id"], f"sequence {key} repeated: {seen[key]} and {r['id']}"
        seen[key] = r["id"]
        if r["source"].startswith(f"/sites/{SITE_ID}/locks/"):
            assert r["attributes"].get("device_sequence") == r["seq"], r


def assert_receiver_has_no_repeats(receiver):
    deliveries = [d for d in receiver.deliveries if d.get("parsed")]
    by_seq = {}
    for d in deliveries:
        assert d["verified"], d
        key = (d["source"], d["sequence"])
        assert by_seq.setdefault(key, d["id"]) == d["id"], f"two events with sequence {key}"
    return deliveries


def kill9(srv):
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait(timeout=10)
    srv.session.close()


@pytest.fixture
def receiver():
    r = WebhookReceiver()
    yield r
    r.stop()


@pytest.fixture
def servers():
    require_serve()
    started = []
    yield started
    for s in started:
        s.stop()


def serve(servers, data_dir, receiver):
    srv = KeywayServer(data_dir, upstream=receiver.url, upstream_secret=receiver.secret)
    servers.append(srv)
    return srv


# MARK: - The trail decides what is lost


def test_an_overflowing_trail_delivers_exactly_the_kept_events_and_one_overflow(tmp_path, monkeypatch, servers, receiver):
    # The bundled site, with office-101's trail holding only 5 records.
    text = conftest.SITE.read_text()
    anchor = "    name: Private office 101\n    kind: cylinder\n    position: {x: 5, y: 14}\n"
    assert anchor in text
    site = tmp_path / "small-trail.yaml"
    site.write_text(text.replace(anchor, anchor + "    audit_trail_capacity: 5\n"))
    monkeypatch.setattr(conftest, "SITE", site)
    srv = serve(servers, tmp_path / "data", receiver)

    office = srv.ok("GET", "/v1/locks/office-101")
    assert office["iq_reach"] == ["iq-lobby"] and office["trail"]["capacity"] == 5, office
    srv.ok("POST", "/v1/iqs/iq-lobby/online", {"online": False})

    taps = [srv.ok("POST", "/v1/taps", {"lock": "office-101", "tag": UNKNOWN_TAG}) for _ in range(12)]
    assert all(t["result"] == "denied" and t["reason"] == "unknown_tag" for t in taps), taps
    ids = [t["event_id"] for t in taps]
    lost_ids, kept_ids = ids[:7], ids[7:]
    office = srv.ok("GET", "/v1/locks/office-101")
    assert office["trail"] == {"count": 5, "capacity": 5, "pending_loss": 7}, office["trail"]
    stages = {e["id"]: e["stage"] for e in srv.ok("GET", "/v1/events?lock=office-101&limit=1000")}
    assert [stages[i] for i in lost_ids] == ["lost"] * 7, stages
    assert [stages[i] for i in kept_ids] == ["held"] * 5, stages

    srv.ok("POST", "/v1/iqs/iq-lobby/online", {"online": True})  # coming online syncs at once

    def overflow_arrived():
        return any(d.get("source") == source("office-101") and d.get("type") == "com.keyway.trail.overflow"
                   for d in receiver.deliveries)
    wait_until(overflow_arrived, what="the trail.overflow webhook")
    # Delivery is in sequence order per source and the overflow has the highest sequence: everything the
    # lock's source will ever deliver up to it has arrived.
    deliveries = [d for d in assert_receiver_has_no_repeats(receiver) if d["source"] == source("office-101")]
    overflow = [d for d in deliveries if d["type"] == "com.keyway.trail.overflow"]
    assert len(overflow) == 1, overflow
    got = [d["id"] for d in deliveries if d["type"] != "com.keyway.trail.overflow"]
    assert sorted(set(got)) == sorted(kept_ids), f"delivered {got}, kept {kept_ids}"
    assert not set(got) & set(lost_ids), "a lost event reached the receiver"
    data = overflow[0]["data"]
    assert data["lost_count"] == 7 and data["reason"] == "trail_full", data
    kept_seqs = sorted(d["sequence"] for d in deliveries if d["id"] in kept_ids)
    assert data["sequence"] == kept_seqs[-1] + 1, (data, kept_seqs)
    assert (data["lost_from"], data["lost_through"]) == (kept_seqs[0] - 7, kept_seqs[0] - 1), data

    rows = [r for r in journal_rows(srv.data_dir) if r["source"] == source("office-101")]
    lost_rows = [r["id"] for r in rows if r["state"] == 2]
    assert sorted(lost_rows) == sorted(lost_ids), "the journal marks lost exactly what the trail dropped"
    assert data["lost_count"] == len(lost_rows)
    assert srv.ok("GET", "/v1/locks/office-101")["trail"] == {"count": 0, "capacity": 5, "pending_loss": 0}
    stages = {e["id"]: e["stage"] for e in srv.ok("GET", "/v1/events?lock=office-101&limit=1000")}
    assert [stages[i] for i in lost_ids] == ["lost"] * 7, "a lost event never shows as delivered"
    wait_until(lambda: all(e["stage"] == "delivered" for e in srv.ok("GET", "/v1/events?lock=office-101&limit=1000")
                           if e["id"] not in lost_ids), what="the kept events and the overflow to be delivered")


# MARK: - A crash orphans nothing


def _prepare_state(srv):
    """Revocation list v1 on the lobby's locks, phone-booth-1 in office mode, room-golden-gate open."""
    key = srv.ok("POST", "/v1/keys", {"user": "u-ada", "locks": ["main-entrance"]}, status=201)
    srv.ok("DELETE", f"/v1/keys/{key['key_id']}")
    srv.ok("POST", "/v1/iqs/iq-lobby/sync")
    assert srv.ok("GET", "/v1/locks/main-entrance")["revocation_list_version"] == 1
    booth = srv.ok("POST", "/v1/locks/phone-booth-1/open", {"action": "office_mode_on"})
    assert booth["state"] == "office_mode", booth
    room = srv.ok("POST", "/v1/taps", {"lock": "room-golden-gate", "tag": ADA_TAG})
    assert room["result"] == "granted", room
    before = {i: srv.ok("GET", f"/v1/locks/{i}") for i in ("main-entrance", "phone-booth-1", "room-golden-gate")}
    assert before["room-golden-gate"]["state"] == "unlocked" and "unlocked_until" in before["room-golden-gate"]
    for iq in ("iq-lobby", "iq-lounge"):
        srv.ok("POST", f"/v1/iqs/{iq}/online", {"online": False})
    return before


def _burst(srv, acks, stop, lock_ids):
    session = requests.Session()
    rng = random.Random()
    while not stop.is_set():
        lock_id = rng.choice(lock_ids)
        body = {"lock": lock_id, "tag": ADA_TAG if lock_id == "main-entrance" else UNKNOWN_TAG}
        try:
            r = session.post(srv.url("/v1/taps"), json=body, timeout=10)
        except requests.RequestException:
            return  # the server was killed
        if r.status_code == 200:
            acks.append(r.json())


def _check_restart(srv, rows_at_kill):
    """After a restart: each lock's trail is exactly its held events; the numbering continues."""
    held = {}
    for r in rows_at_kill:
        if r["state"] == 0:
            held[r["source"]] = held.get(r["source"], 0) + 1
    for lock_id in LOBBY_LOCKS:
        trail = srv.ok("GET", f"/v1/locks/{lock_id}")["trail"]
        assert trail["count"] == held.get(source(lock_id), 0), (lock_id, trail, held.get(source(lock_id)))
    last = max(r["seq"] for r in rows_at_kill if r["source"] == source("office-102"))
    t = srv.ok("POST", "/v1/taps", {"lock": "office-102", "tag": UNKNOWN_TAG})
    events = srv.ok("GET", "/v1/events?lock=office-102&limit=10000&all=true")
    mine = [e for e in events if e["id"] == t["event_id"]]
    assert mine and mine[0]["data"]["sequence"] == last + 1, (last, mine)
    assert mine[0]["data"]["device_sequence"] == last + 1, mine


def _deliver_everything(srv, receiver):
    """The next IQ sync collects every held event, and every journal event reaches the receiver."""
    srv.ok("POST", "/v1/iqs/iq-lobby/sync")
    srv.ok("POST", "/v1/iqs/iq-lounge/sync")
    rows = journal_rows(srv.data_dir)
    assert not [r for r in rows if r["state"] == 0 and r["source"] in map(source, LOBBY_LOCKS)], "held after the sync"
    want = {r["id"] for r in rows if r["state"] != 2}
    wait_until(lambda: want <= set(receiver.by_id()), what=f"{len(want)} journal events at the receiver")
    deliveries = assert_receiver_has_no_repeats(receiver)
    assert {d["id"] for d in deliveries} <= {r["id"] for r in rows}, "the receiver got an event the journal never held"
    assert_sequences_never_repeat(journal_rows(srv.data_dir))


def test_kill9_mid_burst_of_taps_then_restart_orphans_nothing(tmp_path, servers, receiver):
    data = tmp_path / "data"
    srv = serve(servers, data, receiver)
    before = _prepare_state(srv)

    acks, stop = [], threading.Event()
    threads = [threading.Thread(target=_burst, args=(srv, acks, stop, LOBBY_LOCKS), daemon=True) for _ in range(6)]
    for th in threads:
        th.start()
    wait_until(lambda: len(acks) >= 60, what="60 acknowledged taps")
    kill9(srv)  # taps still in flight
    stop.set()
    for th in threads:
        th.join(timeout=10)

    rows = journal_rows(data)
    assert_sequences_never_repeat(rows)
    ids = {r["id"] for r in rows}
    assert all(a["event_id"] in ids for a in acks), "an acknowledged tap's event is missing from the journal"
    assert any(r["state"] == 0 for r in rows), "the burst left no held events: the test proves nothing"

    srv = serve(servers, data, receiver)
    # The flash came back: state, lists, trails, numbering.
    after = {i: srv.ok("GET", f"/v1/locks/{i}") for i in before}
    assert after["phone-booth-1"]["state"] == "office_mode", after["phone-booth-1"]
    assert after["room-golden-gate"]["state"] == "unlocked", after["room-golden-gate"]
    assert after["room-golden-gate"]["unlocked_until"] == before["room-golden-gate"]["unlocked_until"]
    assert after["main-entrance"]["revocation_list_version"] == 1, after["main-entrance"]
    _check_restart(srv, rows)
    srv.ok("POST", "/v1/clock/advance", {"seconds": 8})
    assert srv.ok("GET", "/v1/locks/room-golden-gate")["state"] == "locked", "the restored open window ends on time"
    _deliver_everything(srv, receiver)


def _send_without_waiting(srv, path, body):
    """Writes one HTTP request on a raw socket and returns at once (the kill follows immediately)."""
    payload = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode() + payload)
    return sock


def test_kill9_mid_iq_collection_then_restart_orphans_nothing(tmp_path, servers, receiver):
    """Three rounds: events held by four locks, their IQ comes online (it collects at once) and the
    process is killed right after the request is written — while the IQ drains the locks' trails or
    the journal commits the hand-over; in the last round once the journal shows the collection started.
    Each restart must find every held event back in its lock's trail, and in the end every journal
    event reaches the receiver."""
    data = tmp_path / "data"
    srv = serve(servers, data, receiver)
    for round_ in range(3):
        for iq in ("iq-lobby", "iq-lounge"):
            srv.ok("POST", f"/v1/iqs/{iq}/online", {"online": False})
        for i in range(60):
            lock_id = LOBBY_LOCKS[i % len(LOBBY_LOCKS)]
            srv.ok("POST", "/v1/taps", {"lock": lock_id, "tag": ADA_TAG if lock_id == "main-entrance" else UNKNOWN_TAG})
        held_before = sum(r["state"] == 0 for r in journal_rows(data))
        assert held_before >= 60
        sock = _send_without_waiting(srv, "/v1/iqs/iq-lobby/online", {"online": True})
        if round_ == 2:
            def collecting():
                return sum(r["state"] == 0 for r in journal_rows(data)) < held_before or srv.proc.poll() is not None
            wait_until(collecting, what="the IQ collection to start")
        kill9(srv)
        sock.close()
        rows = journal_rows(data)
        assert_sequences_never_repeat(rows)
        srv = serve(servers, data, receiver)
        _check_restart(srv, rows)
    _deliver_everything(srv, receiver)
