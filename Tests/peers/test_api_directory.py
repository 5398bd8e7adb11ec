"""The directory through the control API alone (issue 13, first part): an access core adds a plan
(access group), a member with a fob and a PIN, changes and removes them, and each change reaches a
lock only when its IQ syncs that lock — as with a real IQ.

Site ids come from Fixtures/sites/coworking.yaml: main-entrance is reached by iq-lobby.
"""
FOB = "04:5E:1D:2C:3B:4A"
PIN = "73914"


def tap(srv, **body):
    return srv.ok("POST", "/v1/taps", {"lock": "main-entrance", **body})


def sync(srv):
    report = srv.ok("POST", "/v1/iqs/iq-lobby/sync")
    assert "main-entrance" in report["locks_synced"], report
    return report


def held_version(srv):
    return srv.ok("GET", "/v1/locks/main-entrance")["access_list_version"]


def access_list_updates(srv, after):
    events = srv.ok("GET", f"/v1/events?type=access_list.updated&lock=main-entrance&after={after}")
    return [e for e in events if e["data"].get("lock") == "main-entrance"]


def last_position(srv):
    events = srv.ok("GET", "/v1/events?limit=10000")
    return events[-1]["position"] if events else 0


def test_member_with_fob_and_pin_reaches_the_lock_at_the_next_sync(keyway):
    srv = keyway
    srv.ok("POST", "/v1/reset")
    group = srv.ok("POST", "/v1/groups", {"id": "night-owls", "name": "Night owls", "locks": ["main-entrance"]}, status=201)
    assert group["all_locks"] is False and group["locks"] == ["main-entrance"] and group["schedule"] == ["24/7"], group

    user = srv.ok("POST", "/v1/users", {"id": "u-nia", "name": "Nia", "groups": ["night-owls"], "tags": [FOB], "pin": PIN},
                  status=201)
    assert user["tags"] == [FOB] and user["pin_set"] is True and "pin" not in user, user
    version = user["access_list_version"]
    lock = srv.ok("GET", "/v1/locks/main-entrance")
    assert lock["access_list_version"] < version == lock["access_list_newest"], lock

    # Not yet on the lock: the fob and the PIN are unknown to it.
    r = tap(srv, tag=FOB)
    assert r["result"] == "denied" and r["reason"] == "unknown_tag", r
    r = tap(srv, pin=PIN)
    assert r["result"] == "denied", r

    mark = last_position(srv)
    sync(srv)
    assert held_version(srv) == version
    updates = access_list_updates(srv, mark)
    assert len(updates) == 1, updates

    r = tap(srv, tag=FOB)
    assert r["result"] == "granted" and r["user"] == "u-nia", r
    srv.ok("POST", "/v1/clock/advance", {"seconds": 10})
    r = tap(srv, pin=PIN)
    assert r["result"] == "granted" and r["user"] == "u-nia", r
    srv.ok("POST", "/v1/clock/advance", {"seconds": 10})

    # Removing the member: the lock still opens for the fob until its IQ syncs, then refuses it.
    gone = srv.ok("DELETE", "/v1/users/u-nia")
    assert gone["deleted"] is True and gone["access_list_version"] > version, gone
    r = tap(srv, tag=FOB)
    assert r["result"] == "granted", r
    srv.ok("POST", "/v1/clock/advance", {"seconds": 10})
    sync(srv)
    r = tap(srv, tag=FOB)
    assert r["result"] == "denied" and r["reason"] == "unknown_tag", r
    assert srv.get("/v1/users/u-nia").status_code == 404


def test_group_schedule_and_user_changes(keyway):
    srv = keyway
    srv.ok("POST", "/v1/reset")
    srv.ok("POST", "/v1/groups", {"id": "g-weekend-pass", "locks": ["main-entrance"], "schedule": ["sat 10:00-11:00"]}, status=201)
    srv.ok("POST", "/v1/users", {"id": "u-omar", "groups": ["g-weekend-pass"], "tags": [FOB]}, status=201)
    sync(srv)
    # The simulated clock starts on a Monday (CLOCK_START): outside the day pass's window.
    r = tap(srv, tag=FOB)
    assert r["result"] == "denied" and r["reason"] == "outside_schedule", r

    g = srv.ok("PUT", "/v1/groups/g-weekend-pass", {"schedule": ["mon-fri 00:00-24:00"]})
    assert g["schedule"] == ["mon-fri"], g
    sync(srv)
    r = tap(srv, tag=FOB)
    assert r["result"] == "granted", r
    srv.ok("POST", "/v1/clock/advance", {"seconds": 10})

    # Fobs replaced, PIN set and cleared; the PIN is never shown back.
    u = srv.ok("PUT", "/v1/users/u-omar/tags", {"tags": []})
    assert u["tags"] == [], u
    u = srv.ok("PUT", "/v1/users/u-omar/pin", {"pin": "246810"})
    assert u["pin_set"] is True and "246810" not in str(u), u
    u = srv.request("DELETE", "/v1/users/u-omar/pin").json()
    assert u["pin_set"] is False, u
    # Validity: a member whose plan has ended is refused after the next sync.
    u = srv.ok("PUT", "/v1/users/u-omar", {"valid_until": "2001-01-01T00:00:00Z", "groups": ["g-weekend-pass"]})
    assert u["valid_until"].startswith("2001-01-01"), u


def test_directory_refusals_name_their_field_and_change_nothing(keyway):
    srv = keyway
    srv.ok("POST", "/v1/reset")
    before = srv.ok("GET", "/v1/users")

    def refused(method, path, body, status, field):
        r = srv.request(method, path, json=body)
        assert r.status_code == status, (path, body, r.status_code, r.text)
        err = r.json()["error"]
        assert err.get("field") == field, (path, body, err)

    refused("POST", "/v1/users", {"id": "u-x", "groups": ["no-such-group"]}, 400, "groups")
    refused("POST", "/v1/users", {"id": "u-x", "tags": ["zz"]}, 400, "tags")
    refused("POST", "/v1/users", {"id": "u-x", "tags": [FOB, FOB]}, 400, "tags")
    refused("POST", "/v1/users", {"id": "u-x", "valid_from": "2026-12-01T00:00:00Z", "valid_until": "2026-11-01T00:00:00Z"}, 400, "valid_until")
    refused("POST", "/v1/users", {"id": "u-x", "pin": "12"}, 400, "pin")
    refused("POST", "/v1/groups", {"id": "g-x", "locks": ["no-such-lock"]}, 400, "locks")
    refused("POST", "/v1/groups", {"id": "g-x", "schedule": ["someday"]}, 400, "schedule")
    refused("PUT", "/v1/users/nobody", {"name": "x"}, 404, None)
    srv.ok("POST", "/v1/users", {"id": "u-first", "pin": "55555"}, status=201)
    r = srv.request("POST", "/v1/users", json={"id": "u-second", "pin": "55555"})
    assert r.status_code == 409 and r.json()["error"]["field"] == "pin", r.text
    assert "u-first" not in r.text, "a PIN clash must not say whose PIN it is"
    refused("POST", "/v1/users", {"id": "u-first"}, 409, "id")
    after = srv.ok("GET", "/v1/users")
    assert [u["id"] for u in after] == [u["id"] for u in before] + ["u-first"], "a refused request changed the directory"
