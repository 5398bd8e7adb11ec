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


MEG_FOB = "04:D4:E1:72:3B:6F:80"   # u-margaret, staff: the office-mode right on every lock
MEG_PIN = "3390"


def test_access_type_grant_only_refuses_office_mode_and_ends_one(keyway):
    srv = keyway
    srv.ok("POST", "/v1/reset")
    srv.ok("POST", "/v1/clock/set", {"time": "2026-11-23T10:00:00-08:00"})   # Monday, inside main-entrance's 08:00-18:00
    lock = srv.ok("GET", "/v1/locks/room-dolores")
    assert lock["access_type"] == "grant_office_mode" and lock["easy_office_mode"] == [], lock
    on = srv.ok("POST", "/v1/taps", {"lock": "room-dolores", "tag": MEG_FOB, "action": "office_mode_on"})
    assert on["result"] == "granted" and on["state"] == "office_mode", on
    mark = last_position(srv)

    lock = srv.ok("PATCH", "/v1/locks/room-dolores", {"access_type": "grant"})
    assert lock["access_type"] == "grant" and lock["state"] == "locked" and lock["office_mode"] is False, lock
    ended = events_of(srv, "office_mode.ended", "room-dolores", mark)
    assert len(ended) == 1 and ended[0]["data"]["reason"] == "access_type_changed", ended

    r = srv.ok("POST", "/v1/taps", {"lock": "room-dolores", "tag": MEG_FOB, "action": "office_mode_on"})
    assert r["result"] == "denied" and r["reason"] == "office_mode_not_enabled", r
    denied = events_of(srv, "access.denied", "room-dolores", mark)
    assert denied[-1]["data"]["reason"] == "office_mode_not_enabled", denied
    r = srv.ok("POST", "/v1/locks/room-dolores/open", {"action": "office_mode_on", "user": "u-margaret"})
    assert r["result"] == "denied" and r["reason"] == "office_mode_not_enabled", r
    r = srv.ok("POST", "/v1/taps", {"lock": "room-dolores", "tag": MEG_FOB})
    assert r["result"] == "granted" and r["state"] == "unlocked", r

    # The front door's easy-office-mode window: a staff tap starts passage, unless the lock is grant-only.
    front = srv.ok("GET", "/v1/locks/main-entrance")
    assert front["easy_office_mode"] == ["mon-fri 08:00-18:00"], front
    srv.ok("PATCH", "/v1/locks/main-entrance", {"access_type": "grant"})
    r = srv.ok("POST", "/v1/taps", {"lock": "main-entrance", "pin": MEG_PIN})
    assert r["result"] == "granted" and r["state"] == "unlocked", r
    srv.ok("POST", "/v1/clock/advance", {"seconds": 10})
    srv.ok("PATCH", "/v1/locks/main-entrance", {"access_type": "grant_office_mode"})
    r = srv.ok("POST", "/v1/taps", {"lock": "main-entrance", "pin": MEG_PIN})
    assert r["result"] == "granted" and r["state"] == "office_mode", r


def test_easy_office_mode_windows_at_runtime(keyway):
    srv = keyway
    srv.ok("POST", "/v1/reset")
    srv.ok("POST", "/v1/clock/set", {"time": "2026-11-23T10:00:00-08:00"})   # Monday 10:00 in the site's zone
    # room-dolores has no windows: a staff tap opens for the open time.
    r = srv.ok("POST", "/v1/taps", {"lock": "room-dolores", "tag": MEG_FOB})
    assert r["state"] == "unlocked", r
    srv.ok("POST", "/v1/clock/advance", {"seconds": 60})
    lock = srv.ok("PATCH", "/v1/locks/room-dolores", {"easy_office_mode": ["mon-fri 09:00-11:00"]})
    assert lock["easy_office_mode"] == ["mon-fri 09:00-11:00"], lock
    r = srv.ok("POST", "/v1/taps", {"lock": "room-dolores", "tag": MEG_FOB})
    assert r["result"] == "granted" and r["state"] == "office_mode", r
    # The window's end relocks it: 11:00 is an hour away.
    mark = last_position(srv)
    srv.ok("POST", "/v1/clock/advance", {"seconds": 3600})
    assert srv.ok("GET", "/v1/locks/room-dolores")["state"] == "locked"
    ended = events_of(srv, "office_mode.ended", "room-dolores", mark)
    assert len(ended) == 1 and ended[0]["data"]["reason"] == "easy_office_mode_ended", ended
    # [] removes the windows.
    lock = srv.ok("PATCH", "/v1/locks/room-dolores", {"easy_office_mode": []})
    assert lock["easy_office_mode"] == [], lock
    # Reset returns to the site file.
    changed = srv.ok("PATCH", "/v1/locks/main-entrance", {"access_type": "grant", "easy_office_mode": []})
    assert (changed["access_type"], changed["easy_office_mode"]) == ("grant", []), changed
    srv.ok("POST", "/v1/reset")
    back = srv.ok("GET", "/v1/locks/main-entrance")
    assert (back["access_type"], back["easy_office_mode"]) == ("grant_office_mode", ["mon-fri 08:00-18:00"]), back


def test_office_mode_settings_are_checked_before_anything_applies(keyway):
    srv = keyway
    srv.ok("POST", "/v1/reset")
    before = srv.ok("GET", "/v1/locks/room-dolores")
    for body, field in [({"open_time_s": 9, "easy_office_mode": ["mon-fri 25:00-26:00"]}, "easy_office_mode"),
                        ({"open_time_s": 9, "easy_office_mode": ["someday"]}, "easy_office_mode"),
                        ({"open_time_s": 9, "access_type": "grant_and_more"}, "access_type"),
                        ({"access_type": "grant", "open_time_s": 300}, "open_time_s")]:
        r = srv.request("PATCH", "/v1/locks/room-dolores", json=body)
        assert r.status_code == 400 and r.json()["error"]["field"] == field, (body, r.text)
    r = srv.request("PATCH", "/v1/locks/back-door", json={"access_type": "grant", "battery_percent": 50})
    assert r.status_code == 422, r.text
    assert srv.ok("GET", "/v1/locks/back-door")["access_type"] == "grant_office_mode", "a refused request applied part of itself"
    after = srv.ok("GET", "/v1/locks/room-dolores")
    assert (after["open_time_s"], after["access_type"], after["easy_office_mode"]) == \
        (before["open_time_s"], before["access_type"], before["easy_office_mode"])
