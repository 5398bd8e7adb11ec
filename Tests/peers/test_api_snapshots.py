"""Snapshots of the whole emulated world through the HTTP API alone (issue 13 item 6).

A test author prepares a scenario once — a member with a fob, keys issued and one revoked, the clock
moved, doors tapped — saves it with POST /v1/snapshots, and returns to it with one call before each
test. The restore brings back devices, directory, keys and clock, so every tap is decided exactly as at
the snapshot; the journal is history and moves on: no event is deleted, ids and positions and every
device's sequence keep increasing, and one `emulator.snapshot_restored` event marks the jump.

Site ids come from Fixtures/sites/coworking.yaml: the members group opens room-golden-gate and
main-entrance; room-dolores is a battery escutcheon at 64 %; iq-lobby reaches both rooms.
"""
from conftest import KeywayServer, require_serve

FOB = "0A:0B:0C:0D"
RESTORED = "com.keyway.emulator.snapshot_restored"


def sync(srv):
    for iq in ("iq-lobby", "iq-lounge"):
        srv.ok("POST", f"/v1/iqs/{iq}/sync")


def tap(srv, lock, **who):
    r = srv.ok("POST", "/v1/taps", {"lock": lock, **who})
    return (r["result"], r["reason"])


def all_events(srv):
    return srv.ok("GET", "/v1/events?all=true&limit=10000")


def iq_states(srv):
    """What a snapshot keeps of each IQ (not `last_sync`: the restore is no sync)."""
    keep = ("id", "online", "activated", "activated_by", "failed_activation_attempts", "position", "range_m", "locks_in_reach")
    return [{k: iq.get(k) for k in keep} for iq in srv.ok("GET", "/v1/iqs")]


def decisions(srv, key1, key2):
    """The taps a test would make, and how the site decides them now."""
    out = {
        "fob@golden-gate": tap(srv, "room-golden-gate", tag=FOB),
        "key1@main": tap(srv, "main-entrance", key_id=key1),
        "key2@golden-gate": tap(srv, "room-golden-gate", key_id=key2),
        "ada-pin@main": tap(srv, "main-entrance", pin="4821"),
    }
    srv.ok("POST", "/v1/clock/advance", {"seconds": 10})   # every door relocks
    return out


def test_restore_returns_every_part_and_the_journal_moves_on(start_keyway):
    srv = start_keyway()
    # The scenario: a member with a fob, two phone keys (one revoked), time moved on, doors tapped.
    srv.ok("POST", "/v1/users", {"id": "u-snap", "name": "Snap Shot", "groups": ["members"], "tags": [FOB]}, status=201)
    key1 = srv.ok("POST", "/v1/keys", {"user": "u-snap", "locks": ["main-entrance", "room-golden-gate"]}, status=201)["key_id"]
    key2 = srv.ok("POST", "/v1/keys", {"user": "u-grace", "locks": ["room-golden-gate"]}, status=201)["key_id"]
    srv.ok("DELETE", f"/v1/keys/{key2}")
    sync(srv)
    # Devices beyond locks: an IQ activated by a member, a controller without power, a lock moved.
    srv.ok("DELETE", "/v1/iqs/iq-lounge/activation?user=u-ada")
    srv.ok("POST", "/v1/iqs/iq-lounge/activation", {"user": "u-ken", "pin": "775120"})
    srv.ok("POST", "/v1/controllers/ctl-side-door/power", {"on": False})
    srv.ok("PATCH", "/v1/locks/office-101", {"position": {"x": 6, "y": 12, "z": 0}})
    srv.ok("POST", "/v1/clock/advance", {"seconds": 300})
    at_snapshot = decisions(srv, key1, key2)
    assert at_snapshot == {"fob@golden-gate": ("granted", None), "key1@main": ("granted", None),
                           "key2@golden-gate": ("denied", "revoked"), "ada-pin@main": ("granted", None)}, at_snapshot
    clock = srv.ok("GET", "/v1/clock")["now"]
    user = srv.ok("GET", "/v1/users/u-snap")
    keys = srv.ok("GET", "/v1/keys")
    dolores = srv.ok("GET", "/v1/locks/room-dolores")
    golden = srv.ok("GET", "/v1/locks/room-golden-gate")
    iqs, controllers, office = iq_states(srv), srv.ok("GET", "/v1/controllers"), srv.ok("GET", "/v1/locks/office-101")["position"]
    assert iqs[1]["activated_by"] == "u-ken" and not controllers[1]["powered"], (iqs, controllers)

    snap = srv.ok("POST", "/v1/snapshots", {"id": "scenario", "description": "u-snap's fob, u-grace's key revoked"}, status=201)
    assert snap["id"] == "scenario" and snap["time"] == clock and snap["clock_mode"] == "simulated", snap
    assert snap["keys"] == 2 and snap["revocation_list_version"] == 1, snap
    assert srv.ok("GET", "/v1/snapshots/scenario") == snap
    assert [s["id"] for s in srv.ok("GET", "/v1/snapshots")] == ["scenario"]

    # Everything changes: more taps, a revocation, the member deleted, two hours, a flat battery.
    srv.ok("DELETE", f"/v1/keys/{key1}")
    srv.ok("DELETE", "/v1/users/u-snap")
    srv.ok("PATCH", "/v1/locks/room-dolores", {"battery_percent": 0})
    srv.ok("DELETE", "/v1/iqs/iq-lounge/activation?user=u-ken")
    srv.ok("POST", "/v1/controllers/ctl-side-door/power", {"on": True})
    srv.ok("PATCH", "/v1/locks/office-101", {"position": {"x": 5, "y": 14, "z": 0}})
    srv.ok("POST", "/v1/clock/advance", {"seconds": 7200})
    sync(srv)
    changed = decisions(srv, key1, key2)
    assert changed["fob@golden-gate"] == ("denied", "unknown_tag") and changed["key1@main"] == ("denied", "revoked"), changed
    before = all_events(srv)
    last_seq = {}
    for e in before:
        last_seq[e["source"]] = max(last_seq.get(e["source"], 0), e["data"]["sequence"])

    restored = srv.ok("POST", "/v1/snapshots/scenario/restore")
    assert restored["restored"] is True and restored["clock_restored"] is True and restored["time"] == clock, restored
    assert restored["snapshot"] == snap

    # Every part is back.
    assert srv.ok("GET", "/v1/clock")["now"] == clock
    assert srv.ok("GET", "/v1/users/u-snap") == user
    assert srv.ok("GET", "/v1/keys") == keys
    dolores_now = srv.ok("GET", "/v1/locks/room-dolores")
    assert (dolores_now["battery_level"], dolores_now["powered"]) == (dolores["battery_level"], True), dolores_now
    golden_now = srv.ok("GET", "/v1/locks/room-golden-gate")
    assert golden_now["access_list_version"] == golden["access_list_version"] == snap["access_list_version"]
    assert golden_now["revocation_list_version"] == golden["revocation_list_version"] == 1
    assert iq_states(srv) == iqs
    assert srv.ok("GET", "/v1/controllers") == controllers
    assert srv.ok("GET", "/v1/locks/office-101")["position"] == office

    # The listing starts at the one restore event; the journal kept everything before it.
    listed = srv.ok("GET", "/v1/events?limit=10000")
    assert listed[0]["type"] == RESTORED and listed[0]["id"] == restored["event_id"], listed[:2]
    assert listed[0]["position"] == restored["events_after"] + 1
    assert listed[0]["position"] > before[-1]["position"]
    assert listed[0]["source"] == "/sites/sf-mission/emulator/control"
    assert listed[0]["data"]["snapshot"] == "scenario" and listed[0]["data"]["emulator"] == "control", listed[0]
    after_all = all_events(srv)
    assert [e["id"] for e in after_all[:len(before)]] == [e["id"] for e in before], "no event was deleted"

    # Taps are decided exactly as at the snapshot, and every device numbers on.
    assert decisions(srv, key1, key2) == at_snapshot
    fresh = srv.ok("GET", f"/v1/events?after={restored['events_after']}&limit=10000")
    assert [e["type"] for e in fresh].count(RESTORED) == 1
    positions = [e["position"] for e in fresh]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    seen = {}
    for e in fresh[1:]:
        src, seq = e["source"], e["data"]["sequence"]
        assert seq > max(last_seq.get(src, 0), seen.get(src, 0)), f"{src} repeated sequence {seq}"
        seen[src] = seq
    assert "/sites/sf-mission/locks/room-golden-gate" in seen

    # A snapshot restores any number of times.
    again = srv.ok("POST", "/v1/snapshots/scenario/restore")
    assert again["events_after"] > restored["events_after"] and again["event_id"] != restored["event_id"]
    assert srv.ok("GET", "/v1/clock")["now"] == clock
    assert decisions(srv, key1, key2) == at_snapshot
    assert [e["type"] for e in all_events(srv)].count(RESTORED) == 2


def test_bad_ids_are_refused_with_json_errors(start_keyway):
    srv = start_keyway()
    for method, path in [("POST", "/v1/snapshots/no-such/restore"), ("GET", "/v1/snapshots/no-such"),
                         ("DELETE", "/v1/snapshots/no-such")]:
        r = srv.request(method, path)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", (method, path, r.text)
    for body, field in [({"id": ".hidden"}, "id"), ({"id": "a/b"}, "id"), ({"colour": "red"}, "colour"),
                        ({"description": ""}, "description")]:
        r = srv.request("POST", "/v1/snapshots", json=body)
        assert r.status_code == 400 and r.json()["error"]["field"] == field, (body, r.text)
    assert srv.ok("GET", "/v1/snapshots") == []
    generated = srv.ok("POST", "/v1/snapshots", status=201)
    assert generated["id"].startswith("snap-"), generated
    r = srv.request("POST", "/v1/snapshots", json={"id": generated["id"]})
    assert r.status_code == 409 and r.json()["error"]["code"] == "snapshot_exists", r.text
    assert srv.ok("DELETE", f"/v1/snapshots/{generated['id']}") == {"id": generated["id"], "deleted": True}
    assert srv.request("POST", f"/v1/snapshots/{generated['id']}/restore").status_code == 404
    events = srv.ok("GET", "/v1/events?all=true&limit=10000")
    assert RESTORED not in [e["type"] for e in events], "a refused restore records nothing"


def test_a_snapshot_survives_a_restart_and_restores_there(tmp_path):
    require_serve()
    data = tmp_path / "data"
    srv = KeywayServer(data)
    try:
        srv.ok("POST", "/v1/users", {"id": "u-snap", "groups": ["members"], "tags": [FOB]}, status=201)
        sync(srv)
        assert tap(srv, "room-golden-gate", tag=FOB) == ("granted", None)
        srv.ok("POST", "/v1/snapshots", {"id": "setup"}, status=201)
        srv.ok("POST", "/v1/reset")
        assert tap(srv, "room-golden-gate", tag=FOB) == ("denied", "unknown_tag")
    finally:
        srv.stop()
    srv = KeywayServer(data)
    try:
        assert [s["id"] for s in srv.ok("GET", "/v1/snapshots")] == ["setup"]
        assert tap(srv, "room-golden-gate", tag=FOB) == ("denied", "unknown_tag"), "the reset survived the restart"
        srv.ok("POST", "/v1/snapshots/setup/restore")
        assert srv.ok("GET", "/v1/users/u-snap")["id"] == "u-snap"
        assert tap(srv, "room-golden-gate", tag=FOB) == ("granted", None)
    finally:
        srv.stop()


def test_with_a_real_clock_everything_but_time_is_restored(start_keyway):
    srv = start_keyway(clock="real")
    srv.ok("POST", "/v1/users", {"id": "u-snap", "groups": ["members"], "tags": [FOB]}, status=201)
    sync(srv)
    snap = srv.ok("POST", "/v1/snapshots", {"id": "real"}, status=201)
    assert snap["clock_mode"] == "real", snap
    srv.ok("DELETE", "/v1/users/u-snap")
    sync(srv)
    assert tap(srv, "room-golden-gate", tag=FOB) == ("denied", "unknown_tag")
    restored = srv.ok("POST", "/v1/snapshots/real/restore")
    assert restored["clock_restored"] is False and restored["time"] >= snap["time"], restored
    event = srv.ok("GET", "/v1/events?limit=1")[0]
    assert event["type"] == RESTORED and event["data"]["clock_restored"] is False, event
    assert tap(srv, "room-golden-gate", tag=FOB) == ("granted", None), "the lock holds the list of the snapshot again"


def test_the_command_line_saves_lists_restores_and_deletes(start_keyway):
    import json
    import subprocess
    from conftest import KEYWAY

    srv = start_keyway()

    def run(*args, exit_code=0):
        r = subprocess.run([str(KEYWAY), "snapshots", *args, "--server", srv.base], capture_output=True, text=True, timeout=60)
        assert r.returncode == exit_code, f"keyway snapshots {' '.join(args)} → {r.returncode}\n{r.stdout}\n{r.stderr}"
        return r

    clock = srv.ok("GET", "/v1/clock")["now"]
    saved = json.loads(run("save", "cli", "--description", "from the CLI", "--json").stdout)
    assert saved["id"] == "cli" and saved["time"] == clock, saved
    assert run("list").stdout.startswith("cli: "), "one line per snapshot"
    srv.ok("POST", "/v1/clock/advance", {"seconds": 600})
    out = run("restore", "cli").stdout
    assert out.startswith(f"cli: restored, clock {clock}"), out
    assert srv.ok("GET", "/v1/clock")["now"] == clock
    r = run("save", "cli", exit_code=1)
    assert "snapshot_exists" in r.stderr and "409" in r.stderr, r.stderr
    r = run("restore", "nope", exit_code=1)
    assert "404" in r.stderr and "no snapshot 'nope'" in r.stderr, r.stderr
    assert json.loads(run("delete", "cli", "--json").stdout) == {"id": "cli", "deleted": True}
    assert run("list").stdout == ""


def test_the_access_core_receives_the_jump_as_a_signed_webhook(start_keyway):
    from webhook_receiver import WebhookReceiver

    receiver = WebhookReceiver()
    try:
        srv = start_keyway(upstream=receiver.url, upstream_secret=receiver.secret, deliver_held=True)
        srv.ok("POST", "/v1/users", {"id": "u-snap", "groups": ["members"], "tags": [FOB]}, status=201)
        sync(srv)
        srv.ok("POST", "/v1/snapshots", {"id": "hook"}, status=201)
        granted = srv.ok("POST", "/v1/taps", {"lock": "room-golden-gate", "tag": FOB})
        srv.ok("POST", "/v1/clock/advance", {"seconds": 600})
        restored = srv.ok("POST", "/v1/snapshots/hook/restore")
        after = srv.ok("POST", "/v1/taps", {"lock": "room-golden-gate", "tag": FOB})
        ids = [granted["event_id"], restored["event_id"], after["event_id"]]
        assert receiver.wait_for_ids(ids), f"webhooks missing: {set(ids) - set(receiver.by_id())}"
        got = receiver.by_id()
        assert all(got[i]["verified"] and got[i]["parsed"] for i in ids), [got[i] for i in ids]
        jump = got[restored["event_id"]]
        assert (jump["type"], jump["source"]) == (RESTORED, "/sites/sf-mission/emulator/control"), jump
        assert jump["data"]["snapshot"] == "hook" and jump["data"]["clock_restored"] is True, jump
        # The lock's numbering goes on across the jump, so the receiver never sees a sequence twice.
        assert got[after["event_id"]]["sequence"] > got[granted["event_id"]]["sequence"]
        seen, last = set(), {}
        for d in receiver.deliveries:
            if d["id"] in seen:
                continue   # at-least-once: a redelivery repeats an id
            seen.add(d["id"])
            assert d["sequence"] > last.get(d["source"], 0), f"{d['source']}: sequence {d['sequence']} again or out of order"
            last[d["source"]] = d["sequence"]
    finally:
        receiver.stop()
