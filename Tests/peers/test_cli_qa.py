"""The QA command line (`keyway tap`, `door`, `iq`, `clock`) against a live `keyway serve`.

Each test runs the real `keyway` binary as a subprocess pointed at a server started by conftest's
start_keyway (loopback, simulated clock), and checks both what the command prints / its exit code and
what the server's API says afterwards.
"""
import json
import subprocess
import time

import pytest

from conftest import KEYWAY


def run(srv, *args, check_exit=None):
    r = subprocess.run([str(KEYWAY), *args, "--server", srv.base], capture_output=True, text=True, timeout=60)
    if check_exit is not None:
        assert r.returncode == check_exit, f"keyway {' '.join(args)} → exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r


@pytest.fixture
def srv(start_keyway):
    return start_keyway()


def test_tap_granted_prints_phone_reader_and_event(srv):
    srv.ok("POST", "/v1/keys", {"user": "u-ada", "locks": ["main-entrance"]}, status=201)
    r = run(srv, "tap", "main-entrance", "--user", "u-ada", check_exit=0)
    lines = r.stdout.splitlines()
    assert lines[0].startswith("phone:  granted"), r.stdout
    assert "LED green" in lines[1] and "lock unlocked" in lines[1] and "open " in lines[1], r.stdout
    event_id = lines[2].split()[-1]
    assert lines[2].startswith("event:") and event_id != "-", r.stdout
    assert srv.ok("GET", "/v1/locks/main-entrance")["state"] == "unlocked"
    ids = [e["id"] for e in srv.ok("GET", "/v1/events?all=true")]
    assert event_id in ids, (event_id, ids)


def test_tap_denied_exits_1_with_reason(srv):
    r = run(srv, "tap", "main-entrance", "--tag", "04A1B2C3", check_exit=1)
    assert r.stdout.startswith("phone:  denied — "), r.stdout
    assert "LED red" in r.stdout, r.stdout
    assert srv.ok("GET", "/v1/locks/main-entrance")["state"] == "locked"


def test_tap_json_and_key_id(srv):
    key = srv.ok("POST", "/v1/keys", {"user": "u-grace", "locks": ["office-101"]}, status=201)
    r = run(srv, "tap", "office-101", "--key-id", key["key_id"], "--distance", "5", check_exit=1)
    assert "out_of_reach" in r.stderr and "distance_m" in r.stderr, r.stderr  # the server's typed error, named
    r = run(srv, "tap", "office-101", "--key-id", key["key_id"], "--distance", "0.02", "--json", check_exit=0)
    out = json.loads(r.stdout)
    assert out["tap"]["result"] == "granted" and out["tap"]["key_id"] == key["key_id"], out
    assert out["lock"]["id"] == "office-101" and out["lock"]["state"] == "unlocked", out
    assert out["lock"]["feedback"]["led"] == "green", out


def test_tap_usage_errors_exit_2(srv):
    r = run(srv, "tap", "main-entrance", check_exit=2)
    assert "exactly one of --user" in r.stderr, r.stderr
    r = run(srv, "tap", "main-entrance", "--user", "u-ada", "--pin", "1234", check_exit=2)
    r = run(srv, "tap", "main-entrance", "--user", "u-ada", "--action", "fly", check_exit=2)


def test_tap_api_error_exits_1_naming_the_problem(srv):
    r = run(srv, "tap", "no-such-lock", "--user", "u-ada", check_exit=1)
    assert "HTTP 404" in r.stderr and "no-such-lock" in r.stderr, r.stderr
    r = run(srv, "tap", "main-entrance", "--user", "u-ada", check_exit=1)  # holds no key
    assert "HTTP 409" in r.stderr and "no_key" in r.stderr, r.stderr


def test_unreachable_server_is_a_clear_error(srv):
    started = time.monotonic()
    r = subprocess.run([str(KEYWAY), "clock", "--server", "http://127.0.0.1:1"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "cannot reach keyway serve" in r.stderr, (r.returncode, r.stderr)
    # At once (HTTP clients like to retry a refused connection until their deadline) and in words: no
    # Swift debug description of the transport's error (IOError(…), NIOConnectionError, ClientError dump).
    assert time.monotonic() - started < 10, r.stderr
    assert r.stderr.strip() == "cannot reach keyway serve at http://127.0.0.1:1: Connection refused", r.stderr


def test_clock_print_advance_set(srv):
    r = run(srv, "clock", check_exit=0)
    assert r.stdout.startswith("2026-11-23T17:00:00") and "simulated clock" in r.stdout, r.stdout
    r = run(srv, "clock", "--advance", "90", check_exit=0)
    assert r.stdout.startswith("2026-11-23T17:01:30"), r.stdout
    assert srv.ok("GET", "/v1/clock")["now"].startswith("2026-11-23T17:01:30")
    r = run(srv, "clock", "--set", "2026-11-24T09:00:00Z", "--json", check_exit=0)
    assert json.loads(r.stdout)["now"].startswith("2026-11-24T09:00:00"), r.stdout
    run(srv, "clock", "--advance", "5", "--set", "2026-11-24T09:00:00Z", check_exit=2)
    run(srv, "clock", "--set", "tomorrow", check_exit=2)


def test_tap_then_clock_relocks(srv):
    srv.ok("POST", "/v1/keys", {"user": "u-ada", "locks": ["main-entrance"]}, status=201)
    run(srv, "tap", "main-entrance", "--user", "u-ada", check_exit=0)
    run(srv, "clock", "--advance", "60", check_exit=0)
    assert srv.ok("GET", "/v1/locks/main-entrance")["state"] == "locked"


def test_door_sensor_and_exit(srv):
    r = run(srv, "door", "ctl-back-door", "--exit", check_exit=0)
    assert "result=granted" in r.stdout, r.stdout
    r = run(srv, "door", "back-door", "--open", "--json", check_exit=0)  # a lock id with a controller works too
    assert json.loads(r.stdout)["door_open"] is True, r.stdout
    r = run(srv, "door", "ctl-back-door", "--closed", check_exit=0)
    assert "door_open=false" in r.stdout, r.stdout
    assert next(c for c in srv.ok("GET", "/v1/controllers") if c["id"] == "ctl-back-door")["door_open"] is False
    run(srv, "door", "ctl-back-door", check_exit=2)
    run(srv, "door", "ctl-back-door", "--open", "--closed", check_exit=2)
    r = run(srv, "door", "main-entrance", "--exit", check_exit=1)  # no controller on that lock
    assert "HTTP 404" in r.stderr, r.stderr


def test_iq_offline_online_sync_move(srv):
    r = run(srv, "iq", "iq-lobby", "--offline", check_exit=0)
    assert "online=false" in r.stdout, r.stdout
    assert next(q for q in srv.ok("GET", "/v1/iqs") if q["id"] == "iq-lobby")["online"] is False
    run(srv, "iq", "iq-lobby", "--online", check_exit=0)
    assert next(q for q in srv.ok("GET", "/v1/iqs") if q["id"] == "iq-lobby")["online"] is True
    r = run(srv, "iq", "iq-lobby", "--sync", "--json", check_exit=0)
    assert json.loads(r.stdout)["iq"] == "iq-lobby", r.stdout
    r = run(srv, "iq", "iq-lobby", "--move", "500,500", "--json", check_exit=0)
    moved = json.loads(r.stdout)
    assert moved["position"] == {"x": 500, "y": 500, "z": 2.7} and moved["locks_in_reach"] == [], \
        ("X,Y keeps the ceiling IQ's height", moved)
    r = run(srv, "iq", "iq-lobby", "--move", "6,8,0.5", "--json", check_exit=0)
    assert json.loads(r.stdout)["position"] == {"x": 6, "y": 8, "z": 0.5}, r.stdout
    # The route itself: no z keeps the height, as the CLI relies on.
    moved = srv.ok("POST", "/v1/iqs/iq-lobby/position", {"x": 7, "y": 8})
    assert moved["position"] == {"x": 7, "y": 8, "z": 0.5}, moved
    run(srv, "iq", "iq-lobby", "--move", "1;2", check_exit=2)
    run(srv, "iq", "iq-lobby", "--move", "1,2,3,4", check_exit=2)
    run(srv, "iq", "iq-lobby", "--move", "1,2,up", check_exit=2)
    run(srv, "iq", "iq-lobby", "--online", "--sync", check_exit=2)
    r = run(srv, "iq", "iq-nowhere", "--sync", check_exit=1)
    assert "HTTP 404" in r.stderr, r.stderr


def test_token_is_sent(start_keyway):
    srv = start_keyway(api_token="s3cret-token")
    r = subprocess.run([str(KEYWAY), "clock", "--server", srv.base], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "HTTP 401" in r.stderr, (r.returncode, r.stderr)
    r = subprocess.run([str(KEYWAY), "clock", "--server", srv.base, "--token", "s3cret-token"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "simulated clock" in r.stdout, (r.returncode, r.stdout, r.stderr)


def test_users_create_show_update_list_delete(srv):
    r = run(srv, "users", "create", "u-kim", "--name", "Kim Lee", "--group", "members", "--tag", "04:AA:BB:CC", "--json", check_exit=0)
    kim = json.loads(r.stdout)
    assert kim["name"] == "Kim Lee" and kim["groups"] == ["members"] and kim["tags"] == ["04:AA:BB:CC"] and kim["pin_set"] is False, kim
    assert srv.ok("GET", "/v1/users/u-kim")["tags"] == ["04:AA:BB:CC"]
    r = run(srv, "users", "show", "u-kim", check_exit=0)
    assert r.stdout.startswith("u-kim: ") and "name=Kim Lee" in r.stdout and "groups=[members]" in r.stdout, r.stdout
    r = run(srv, "users", "update", "u-kim", "--groups", "members,day-pass", "--valid-until", "2027-01-01T00:00:00Z", "--json", check_exit=0)
    kim = json.loads(r.stdout)
    assert kim["groups"] == ["members", "day-pass"] and kim["valid_until"].startswith("2027-01-01T00:00:00"), kim
    r = run(srv, "users", "update", "u-kim", "--groups", "", "--json", check_exit=0)
    assert json.loads(r.stdout)["groups"] == []
    r = run(srv, "users", "list", check_exit=0)
    assert any(line.startswith("u-kim: ") for line in r.stdout.splitlines()) and any(line.startswith("u-ada: ") for line in r.stdout.splitlines()), r.stdout
    r = run(srv, "users", "list", "--json", check_exit=0)
    assert {u["id"] for u in json.loads(r.stdout)} == {u["id"] for u in srv.ok("GET", "/v1/users")}
    # Refusals are the server's, named: a second u-kim, an unknown group, an update with nothing to change.
    r = run(srv, "users", "create", "u-kim", check_exit=1)
    assert "HTTP 409 conflict" in r.stderr, r.stderr
    r = run(srv, "users", "update", "u-kim", "--groups", "no-such-group", check_exit=1)
    assert "HTTP 400" in r.stderr and "(field groups)" in r.stderr, r.stderr
    run(srv, "users", "update", "u-kim", check_exit=2)
    run(srv, "users", "create", "u-x", "--valid-from", "tomorrow", check_exit=2)
    r = run(srv, "users", "delete", "u-kim", "--json", check_exit=0)
    assert json.loads(r.stdout)["deleted"] is True
    r = run(srv, "users", "show", "u-kim", check_exit=1)
    assert "HTTP 404" in r.stderr, r.stderr


def test_groups_create_show_update_list(srv):
    r = run(srv, "groups", "create", "night-owls", "--name", "Night owls", "--lock", "main-entrance", "--lock", "room-dolores",
            "--schedule", "daily 20:00-06:00", "--json", check_exit=0)
    g = json.loads(r.stdout)
    assert g["locks"] == ["main-entrance", "room-dolores"] and g["schedule"] == ["daily 20:00-06:00"] and g["office_mode"] is False, g
    r = run(srv, "groups", "update", "night-owls", "--office-mode", "true", "--lock", "side-door", "--json", check_exit=0)
    g = json.loads(r.stdout)
    assert g["office_mode"] is True and g["locks"] == ["side-door"] and g["schedule"] == ["daily 20:00-06:00"], g
    assert srv.ok("GET", "/v1/groups/night-owls")["office_mode"] is True
    r = run(srv, "groups", "show", "night-owls", check_exit=0)
    assert r.stdout.startswith("night-owls: ") and "office_mode=true" in r.stdout, r.stdout
    r = run(srv, "groups", "list", check_exit=0)
    assert [line.split(":")[0] for line in r.stdout.splitlines()] == [g["id"] for g in srv.ok("GET", "/v1/groups")], r.stdout
    r = run(srv, "groups", "create", "broken", "--schedule", "someday", check_exit=1)
    assert "HTTP 400" in r.stderr and "(field schedule)" in r.stderr, r.stderr
    run(srv, "groups", "update", "night-owls", check_exit=2)


def test_tags_set_and_clear_reach_the_lock_at_the_next_sync(srv):
    srv.ok("POST", "/v1/users", {"id": "u-kim", "groups": ["members"]}, status=201)
    r = run(srv, "tags", "set", "u-kim", "04:AA:BB:CC", "04:AA:BB:DD", "--json", check_exit=0)
    assert json.loads(r.stdout)["tags"] == ["04:AA:BB:CC", "04:AA:BB:DD"], r.stdout
    run(srv, "iq", "iq-lobby", "--sync", check_exit=0)
    assert srv.ok("POST", "/v1/taps", {"lock": "room-dolores", "tag": "04:AA:BB:DD"})["result"] == "granted"
    r = run(srv, "tags", "clear", "u-kim", check_exit=0)
    assert "tags=[]" in r.stdout, r.stdout
    run(srv, "iq", "iq-lobby", "--sync", check_exit=0)
    assert srv.ok("POST", "/v1/taps", {"lock": "room-dolores", "tag": "04:AA:BB:DD"})["reason"] == "unknown_tag"
    run(srv, "tags", "set", "u-kim", check_exit=2)
    r = run(srv, "tags", "set", "u-kim", "04:A2:3B:1C:5D:80", check_exit=1)   # u-ada's fob
    assert "HTTP 409" in r.stderr, r.stderr


def test_pins_set_reads_stdin_and_never_prints_the_pin(srv):
    srv.ok("POST", "/v1/users", {"id": "u-kim", "groups": ["members"]}, status=201)
    r = subprocess.run([str(KEYWAY), "pins", "set", "u-kim", "--server", srv.base], input="2580\n",
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "pin_set=true" in r.stdout, (r.stdout, r.stderr)
    assert "2580" not in r.stdout + r.stderr, "the PIN is never echoed"
    assert srv.ok("GET", "/v1/users/u-kim")["pin_set"] is True
    run(srv, "iq", "iq-lobby", "--sync", check_exit=0)
    assert srv.ok("POST", "/v1/taps", {"lock": "main-entrance", "pin": "2580"})["result"] == "granted"
    # A PIN another user has is refused without naming them; a malformed one never leaves the machine.
    r = subprocess.run([str(KEYWAY), "pins", "set", "u-kim", "--server", srv.base], input="4821\n",
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "HTTP 409" in r.stderr and "u-ada" not in r.stderr and "4821" not in r.stderr, r.stderr
    r = subprocess.run([str(KEYWAY), "pins", "set", "u-kim", "--server", srv.base], input="12ab\n",
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "4 to 8 digits" in r.stderr and "12ab" not in r.stderr, r.stderr
    r = subprocess.run([str(KEYWAY), "pins", "set", "u-kim", "--server", srv.base], input="",
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "no PIN on standard input" in r.stderr, r.stderr
    r = run(srv, "pins", "clear", "u-kim", check_exit=0)
    assert "pin_set=false" in r.stdout, r.stdout
    assert srv.ok("GET", "/v1/users/u-kim")["pin_set"] is False


def test_groups_members_add_list_show_remove(srv):
    """A booking from the command line: u-kim's fob opens room-dolores from 15 min before to 15 min after
    the booking once the IQ has synced it, and no longer once a cancellation has been synced."""
    srv.ok("POST", "/v1/groups", {"id": "dolores-bookers", "locks": ["room-dolores"]}, status=201)
    srv.ok("POST", "/v1/users", {"id": "u-kim", "tags": ["04:AA:BB:CC"]}, status=201)
    # The suite's clock starts at 2026-11-23T17:00:00Z; the booking is 18:00-19:00 with ±15 min.
    r = run(srv, "groups", "members", "add", "dolores-bookers", "u-kim", "--from", "2026-11-23T18:00:00Z",
            "--until", "2026-11-23T19:00:00Z", "--grace", "900", "--json", check_exit=0)
    m = json.loads(r.stdout)
    assert (m["user"], m["group"], m["grace_before_s"], m["grace_after_s"]) == ("u-kim", "dolores-bookers", 900, 900), m
    assert m["opens"].startswith("2026-11-23T17:45:00") and m["closes"].startswith("2026-11-23T19:15:00"), m
    r = run(srv, "groups", "members", "list", "dolores-bookers", check_exit=0)
    assert r.stdout.startswith(m["id"] + ": ") and "user=u-kim" in r.stdout, r.stdout
    r = run(srv, "groups", "members", "show", "dolores-bookers", m["id"], "--json", check_exit=0)
    assert json.loads(r.stdout) == m
    run(srv, "iq", "iq-lobby", "--sync", check_exit=0)
    fob = {"lock": "room-dolores", "tag": "04:AA:BB:CC"}
    assert srv.ok("POST", "/v1/taps", fob)["result"] == "denied", "17:00 is before the grace window"
    run(srv, "clock", "--set", "2026-11-23T17:45:00Z", check_exit=0)
    assert srv.ok("POST", "/v1/taps", fob)["result"] == "granted"
    r = run(srv, "groups", "members", "remove", "dolores-bookers", m["id"], "--json", check_exit=0)
    assert json.loads(r.stdout)["deleted"] is True
    assert srv.ok("POST", "/v1/taps", fob)["result"] == "granted", "cancelled, not yet synced"
    run(srv, "iq", "iq-lobby", "--sync", check_exit=0)
    assert srv.ok("POST", "/v1/taps", fob)["result"] == "denied"
    r = run(srv, "groups", "members", "show", "dolores-bookers", m["id"], check_exit=1)
    assert "HTTP 404" in r.stderr, r.stderr
    run(srv, "groups", "members", "add", "dolores-bookers", "u-kim", "--from", "soon", "--until", "2026-11-23T19:00:00Z", check_exit=2)
    run(srv, "groups", "members", "add", "dolores-bookers", "u-kim", "--from", "2026-11-23T18:00:00Z",
        "--until", "2026-11-23T19:00:00Z", "--grace", "-5", check_exit=2)
    r = run(srv, "groups", "members", "add", "dolores-bookers", "u-kim", "--from", "2026-11-23T19:00:00Z",
            "--until", "2026-11-23T18:00:00Z", check_exit=1)
    assert "HTTP 400" in r.stderr and "not_after" in r.stderr, r.stderr


def test_users_offline_access_blocked_and_group_lockdown_override(srv):
    r = run(srv, "users", "create", "u-kim", "--group", "members", "--tag", "04:AA:BB:CC", "--offline-access", "--json", check_exit=0)
    assert json.loads(r.stdout)["offline_access"] is True, r.stdout
    r = run(srv, "users", "update", "u-kim", "--blocked", "true", "--json", check_exit=0)
    kim = json.loads(r.stdout)
    assert kim["blocked"] is True and kim["offline_access"] is True, kim
    run(srv, "iq", "iq-lobby", "--sync", check_exit=0)
    r = srv.ok("POST", "/v1/taps", {"lock": "room-dolores", "tag": "04:AA:BB:CC"})
    assert r["result"] == "denied" and r["reason"] == "user_blocked", r
    r = run(srv, "users", "update", "u-kim", "--blocked", "false", "--offline-access", "false", "--json", check_exit=0)
    assert (json.loads(r.stdout)["blocked"], json.loads(r.stdout)["offline_access"]) == (False, False), r.stdout
    r = run(srv, "groups", "create", "security", "--lockdown-override", "--json", check_exit=0)
    assert json.loads(r.stdout)["lockdown_override"] is True, r.stdout
    r = run(srv, "groups", "update", "security", "--lockdown-override", "false", "--json", check_exit=0)
    assert json.loads(r.stdout)["lockdown_override"] is False, r.stdout
    run(srv, "users", "update", "u-kim", "--blocked", "perhaps", check_exit=2)


def test_iq_activate_and_deactivate_with_the_pin_from_stdin(srv):
    def iq(*args, stdin=None):
        return subprocess.run([str(KEYWAY), "iq", "iq-lounge", *args, "--server", srv.base], input=stdin,
                              capture_output=True, text=True, timeout=60)
    r = iq("--deactivate", "u-ken")                       # activated by the site file: anyone may
    assert r.returncode == 0 and "activated=false" in r.stdout, (r.stdout, r.stderr)
    r = iq("--activate", "u-ken", stdin="000000\n")
    assert r.returncode == 1 and "HTTP 403 wrong_activation_pin" in r.stderr and "000000" not in r.stdout + r.stderr, r.stderr
    assert next(q for q in srv.ok("GET", "/v1/iqs") if q["id"] == "iq-lounge")["failed_activation_attempts"] == 1
    r = iq("--activate", "u-ken", "--json", stdin="775120\n")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["activated"] is True and out["activated_by"] == "u-ken" and out["failed_activation_attempts"] == 0, out
    assert "775120" not in r.stdout + r.stderr, "the PIN is never echoed"
    r = iq("--deactivate", "u-margaret")
    assert r.returncode == 1 and "HTTP 403 not_activating_user" in r.stderr and "(field user)" in r.stderr, r.stderr
    r = iq("--activate", "u-ken", stdin="")
    assert r.returncode == 1 and "no activation PIN on standard input" in r.stderr, r.stderr
    assert iq("--deactivate", "u-ken").returncode == 0
    assert iq("--activate", "u-ken", "--sync").returncode == 2
