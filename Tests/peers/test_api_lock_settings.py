"""A lock's settings and simulated physics at runtime through PATCH /v1/locks/{id} (issue 13 item 4):
a battery running down and being replaced, the open time, clock drift, a move out of IQ reach.

Site ids come from Fixtures/sites/coworking.yaml: room-dolores is a battery escutcheon (64 %, low
threshold 20 %) that u-ada's members group opens with her fob; back-door is mains-powered (a door
controller) and has no battery.
"""
ADA_FOB = "04:A2:3B:1C:5D:80"


def events_of(srv, kind, lock, after):
    return srv.ok("GET", f"/v1/events?type={kind}&lock={lock}&after={after}&limit=10000")


def last_position(srv):
    events = srv.ok("GET", "/v1/events?limit=10000")
    return events[-1]["position"] if events else 0


def test_battery_runs_down_goes_dark_and_is_replaced(keyway):
    srv = keyway
    srv.ok("POST", "/v1/reset")
    mark = last_position(srv)
    lock = srv.ok("PATCH", "/v1/locks/room-dolores", {"battery_percent": 15})
    assert lock["battery_level"] == 15 and lock["battery_low"] is True, lock
    low = events_of(srv, "battery.low", "room-dolores", mark)
    assert len(low) == 1 and low[0]["data"]["battery_level"] == 15, low
    srv.ok("PATCH", "/v1/locks/room-dolores", {"battery_percent": 12})
    assert len(events_of(srv, "battery.low", "room-dolores", mark)) == 1, "battery.low is recorded once per discharge"

    srv.ok("PATCH", "/v1/locks/room-dolores", {"battery_percent": 0})
    assert len(events_of(srv, "battery.depleted", "room-dolores", mark)) == 1
    before_tap = last_position(srv)
    r = srv.request("POST", "/v1/taps", json={"lock": "room-dolores", "tag": ADA_FOB})
    assert r.status_code == 409 and r.json()["error"]["code"] == "unpowered", r.text
    assert last_position(srv) == before_tap, "a dark reader records nothing"

    lock = srv.ok("PATCH", "/v1/locks/room-dolores", {"battery_percent": 100})
    assert lock["state"] == "locked" and lock["battery_low"] is False, lock
    assert len(events_of(srv, "battery.replaced", "room-dolores", mark)) == 1
    r = srv.ok("POST", "/v1/taps", {"lock": "room-dolores", "tag": ADA_FOB})
    assert r["result"] == "granted", r


def test_open_time_clock_offset_and_position(keyway):
    srv = keyway
    srv.ok("POST", "/v1/reset")
    lock = srv.ok("PATCH", "/v1/locks/main-entrance", {"open_time_s": 12, "clock_offset_s": -95.5})
    assert lock["open_time_s"] == 12, lock
    r = srv.ok("POST", "/v1/taps", {"lock": "main-entrance", "tag": ADA_FOB})
    assert r["result"] == "granted" and r["open_ms"] == 12_000, r

    far = srv.ok("PATCH", "/v1/locks/main-entrance", {"position": {"x": 500, "y": 500, "z": 0}})
    assert far["in_iq_reach"] is False and far["iq_reach"] == [], far
    back = srv.ok("PATCH", "/v1/locks/main-entrance", {"position": {"x": 0, "y": 8, "z": 0}})
    assert back["in_iq_reach"] is True, back


def test_refusals_change_nothing(keyway):
    srv = keyway
    srv.ok("POST", "/v1/reset")
    before = srv.ok("GET", "/v1/locks/room-dolores")
    for body, status, field in [({"open_time_s": 0}, 400, "open_time_s"), ({"open_time_s": 5, "battery_percent": 101}, 400, "battery_percent"),
                                ({}, 400, "open_time_s"), ({"colour": "red", "open_time_s": 5}, 400, "colour")]:
        r = srv.request("PATCH", "/v1/locks/room-dolores", json=body)
        assert r.status_code == status and r.json()["error"]["field"] == field, (body, r.text)
    r = srv.request("PATCH", "/v1/locks/back-door", json={"battery_percent": 50, "open_time_s": 9})
    assert r.status_code == 422 and r.json()["error"]["code"] == "no_battery", r.text
    assert srv.ok("GET", "/v1/locks/back-door")["open_time_s"] != 9, "a refused request applied part of itself"
    assert srv.request("PATCH", "/v1/locks/no-such-lock", json={"open_time_s": 5}).status_code == 404
    after = srv.ok("GET", "/v1/locks/room-dolores")
    assert (after["open_time_s"], after["battery_level"]) == (before["open_time_s"], before["battery_level"])
