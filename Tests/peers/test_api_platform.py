"""An access core's end-to-end test against the HTTP API alone (issue 13, "A platform's end-to-end test").

A coworking platform creates a member with a fob, books a meeting room for them 14:00–15:00 with ±15 min
of grace, cancels a booking, blocks a member, locks the site down, and loses its IQ's uplink — and checks
each step twice: in the control API's answer and in the signed webhooks its standardwebhooks receiver got.

Site facts (Fixtures/sites/coworking.yaml): room-dolores and main-entrance are linked by iq-lobby alone;
the site's time zone is America/Los_Angeles; the clock starts Monday 2026-11-23 09:00 local (17:00Z);
u-linus (day pass, weekdays 09:00–18:00) has PIN 7305; u-margaret (staff) has offline access for her fob.
"""
import pytest

from test_api_e2e import assert_delivery_contract
from webhook_receiver import WebhookReceiver

NIA_TAG = "04:5E:11:22:33:44"
MARGARET_TAG = "04:D4:E1:72:3B:6F:80"
LOCAL_TO_UTC_H = 8  # PST


@pytest.fixture
def receiver():
    r = WebhookReceiver()
    yield r
    r.stop()


def at_local(srv, hhmmss):
    """Sets the simulated clock to that local time on Monday 2026-11-23."""
    h, m, s = (int(x) for x in hhmmss.split(":"))
    utc_h = h + LOCAL_TO_UTC_H
    day = 23 + utc_h // 24
    srv.ok("POST", "/v1/clock/set", {"time": f"2026-11-{day:02d}T{utc_h % 24:02d}:{m:02d}:{s:02d}Z"})


def fail(srv, method, path, status, json=None):
    """The JSON error body of a request that must be refused with `status`."""
    r = srv.request(method, path, json=json) if json is not None else srv.request(method, path, data=b"")
    assert r.status_code == status, f"{method} {path} {json!r} → {r.status_code} {r.text}"
    body = r.json()
    assert isinstance(body, dict) and body["error"]["code"] and body["error"]["message"], body
    return body["error"]


def sync(srv, iq="iq-lobby"):
    return srv.ok("POST", f"/v1/iqs/{iq}/sync", {})


def fob(srv, lock, uid):
    return srv.ok("POST", "/v1/taps", {"lock": lock, "tag": uid})


def decided(receiver, results):
    """Waits for the events of these tap answers and returns them by id."""
    ids = [r["event_id"] for r in results]
    assert receiver.wait_for_ids(ids), f"webhooks missing: {set(ids) - set(receiver.by_id())}"
    return receiver.by_id()


def test_booking_fob_cancel_block_lockdown_and_offline_through_the_api(start_keyway, receiver):
    srv = start_keyway(upstream=receiver.url, upstream_secret=receiver.secret, deliver_held=True)

    # The platform's room plan and a member who holds no standing group.
    group = srv.ok("POST", "/v1/groups", {"id": "book-dolores", "name": "Bookings: Dolores", "locks": ["room-dolores"]},
                   status=201)
    assert group["lockdown_override"] is False and group["schedule"] == ["24/7"], group
    nia = srv.ok("POST", "/v1/users", {"id": "u-nia", "name": "Nia Okafor", "tags": [NIA_TAG]}, status=201)
    assert nia["offline_access"] is False and nia["blocked"] is False and nia["groups"] == [], nia
    # She has the platform's app: a phone key of the built-in phone (for the front door).
    srv.ok("POST", "/v1/keys", {"user": "u-nia", "locks": ["main-entrance"]}, status=201)

    # Booking 14:00–15:00 local (22:00–23:00Z) with 15 minutes of grace each side.
    booking = srv.ok("POST", "/v1/groups/book-dolores/members",
                     {"user": "u-nia", "not_before": "2026-11-23T22:00:00Z", "not_after": "2026-11-23T23:00:00Z",
                      "grace_before_s": 900, "grace_after_s": 900}, status=201)
    assert booking["opens"] == "2026-11-23T21:45:00.000Z" and booking["closes"] == "2026-11-23T23:15:00.000Z", booking
    assert srv.ok("GET", "/v1/groups/book-dolores/members") == [booking]
    # The booking reaches her phone as a key of its own, for the room and the window.
    booking_key = next(k for k in srv.ok("GET", "/v1/keys?user=u-nia") if k["id"] == booking["key_id"])
    assert booking_key["locks"] == ["room-dolores"] and booking_key["user"] == "u-nia", booking_key
    newest = booking["access_list_version"]

    # Not at the lock until its IQ syncs it; then the lock says which version it holds.
    before = srv.ok("GET", "/v1/locks/room-dolores")
    assert before["access_list_version"] < newest == before["access_list_newest"], before
    early = fob(srv, "room-dolores", NIA_TAG)
    assert early["result"] == "denied" and early["reason"] == "unknown_tag", early
    report = sync(srv)
    assert "room-dolores" in report["locks_synced"], report
    assert srv.ok("GET", "/v1/locks/room-dolores")["access_list_version"] == newest

    # The window, to the second: 13:44:59 no, 13:45:00 yes … 15:14:59 yes, 15:15:00 no.
    at_local(srv, "13:44:59")
    too_early = fob(srv, "room-dolores", NIA_TAG)
    assert too_early["result"] == "denied" and too_early["reason"] == "membership_not_started", too_early
    at_local(srv, "13:45:00")
    opens = fob(srv, "room-dolores", NIA_TAG)
    assert opens["result"] == "granted" and opens["user"] == "u-nia", opens
    # … and nowhere else: the main entrance has no entry for her.
    elsewhere = fob(srv, "main-entrance", NIA_TAG)
    assert elsewhere["result"] == "denied" and elsewhere["reason"] == "unknown_tag", elsewhere
    phone = srv.ok("POST", "/v1/taps", {"lock": "room-dolores", "key_id": booking["key_id"]})
    assert phone["result"] == "granted" and phone["method"] == "mobile", phone
    at_local(srv, "15:14:59")
    last = fob(srv, "room-dolores", NIA_TAG)
    assert last["result"] == "granted", last
    at_local(srv, "15:15:00")
    too_late = fob(srv, "room-dolores", NIA_TAG)
    assert too_late["result"] == "denied" and too_late["reason"] == "membership_ended", too_late

    # A second booking 16:00–17:00, cancelled: the fob still opens until the next IQ sync, not after.
    second = srv.ok("POST", "/v1/groups/book-dolores/members",
                    {"user": "u-nia", "not_before": "2026-11-24T00:00:00Z", "not_after": "2026-11-24T01:00:00Z"}, status=201)
    sync(srv)
    at_local(srv, "16:10:00")
    booked = fob(srv, "room-dolores", NIA_TAG)
    assert booked["result"] == "granted", booked
    cancelled = srv.ok("DELETE", f"/v1/groups/book-dolores/members/{second['id']}")
    assert cancelled["deleted"] is True and cancelled["access_list_version"] > second["access_list_version"], cancelled
    fail(srv, "GET", f"/v1/groups/book-dolores/members/{second['id']}", 404)
    not_yet = fob(srv, "room-dolores", NIA_TAG)
    assert not_yet["result"] == "granted", ("the lock cannot know before its IQ syncs it", not_yet)
    assert next(k for k in srv.ok("GET", "/v1/keys?user=u-nia") if k["id"] == second["key_id"])["revoked"] is True
    phone_not_yet = srv.ok("POST", "/v1/taps", {"lock": "room-dolores", "key_id": second["key_id"]})
    assert phone_not_yet["result"] == "granted", phone_not_yet
    sync(srv)
    gone = fob(srv, "room-dolores", NIA_TAG)
    assert gone["result"] == "denied" and gone["reason"] == "membership_ended", gone
    phone_gone = srv.ok("POST", "/v1/taps", {"lock": "room-dolores", "key_id": second["key_id"]})
    assert phone_gone["result"] == "denied" and phone_gone["reason"] == "revoked", phone_gone

    # Blocking: refused with a reason of its own once synced — a phone key too, though it carries its own
    # rights; unblocking restores the standing plan.
    srv.ok("POST", "/v1/keys", {"user": "u-linus", "locks": ["main-entrance"]}, status=201)
    srv.ok("PUT", "/v1/users/u-linus", {"blocked": True})
    sync(srv)
    at_local(srv, "16:20:00")
    blocked = srv.ok("POST", "/v1/taps", {"lock": "main-entrance", "pin": "7305"})
    assert blocked["result"] == "denied" and blocked["reason"] == "user_blocked" and blocked["user"] == "u-linus", blocked
    blocked_phone = srv.ok("POST", "/v1/taps", {"lock": "main-entrance", "user": "u-linus"})
    assert blocked_phone["result"] == "denied" and blocked_phone["reason"] == "user_blocked", blocked_phone
    srv.ok("PUT", "/v1/users/u-linus", {"blocked": False})
    sync(srv)
    unblocked = srv.ok("POST", "/v1/taps", {"lock": "main-entrance", "pin": "7305"})
    assert unblocked["result"] == "granted", unblocked

    # Lockdown: the online IQ delivers it at once; staff are refused unless a group overrides.
    down = srv.ok("POST", "/v1/lockdown", {"locked_down": True, "locks": ["main-entrance", "storage-basement"]})
    assert down["locked_down"] == ["main-entrance", "storage-basement"], down
    assert down["delivered"] == ["main-entrance"] and "storage-basement" in down["pending"], down
    state = srv.ok("GET", "/v1/locks/main-entrance")
    assert state["locked_down"] is True and state["lockdown_wanted"] is True and state["state"] == "locked", state
    refused = fob(srv, "main-entrance", MARGARET_TAG)
    assert refused["result"] == "denied" and refused["reason"] == "locked_down", refused
    phone_down = srv.ok("POST", "/v1/taps", {"lock": "main-entrance", "user": "u-linus"})
    assert phone_down["result"] == "denied" and phone_down["reason"] == "locked_down", phone_down
    srv.ok("PUT", "/v1/groups/staff", {"lockdown_override": True})
    sync(srv)
    responder = fob(srv, "main-entrance", MARGARET_TAG)
    assert responder["result"] == "granted", responder
    lifted = srv.ok("POST", "/v1/lockdown", {"locked_down": False})
    assert lifted["locked_down"] == [] and "main-entrance" in lifted["changed"], lifted
    assert srv.ok("GET", "/v1/locks/main-entrance")["locked_down"] is False

    # The IQ loses its uplink at 03:00 the next night: only the offline list opens, at any hour.
    at_local(srv, "16:30:00")
    srv.ok("POST", "/v1/iqs/iq-lobby/online", {"online": False})
    assert srv.ok("GET", "/v1/locks/main-entrance")["iq_online"] is False
    srv.ok("POST", "/v1/clock/set", {"time": "2026-11-24T11:00:00Z"})  # Tuesday 03:00 local
    offline_pin = srv.ok("POST", "/v1/taps", {"lock": "main-entrance", "pin": "7305"})
    assert offline_pin["result"] == "granted", ("a PIN is on the offline list, 24/7", offline_pin)
    offline_staff = fob(srv, "room-dolores", MARGARET_TAG)
    assert offline_staff["result"] == "granted", offline_staff
    ada = fob(srv, "room-dolores", "04:A2:3B:1C:5D:80")
    assert ada["result"] == "denied" and ada["reason"] == "offline_not_permitted", ada
    # Back online: the group's schedule applies again (day pass: weekdays 09:00–18:00).
    srv.ok("POST", "/v1/iqs/iq-lobby/online", {"online": True})
    online_pin = srv.ok("POST", "/v1/taps", {"lock": "main-entrance", "pin": "7305"})
    assert online_pin["result"] == "denied" and online_pin["reason"] == "outside_schedule", online_pin

    # Every decision reached the access core, signed, with the same result and reason.
    answers = [early, too_early, opens, phone, phone_not_yet, phone_gone, elsewhere, last, too_late, booked, not_yet, gone, blocked, blocked_phone, unblocked,
               refused, phone_down, responder, offline_pin, offline_staff, ada, online_pin]
    got = decided(receiver, answers)
    assert_delivery_contract(receiver)
    for a in answers:
        e = got[a["event_id"]]
        assert e["data"]["result"] == a["result"] and e["data"].get("reason") == a["reason"], (a, e)
        assert e["source"] == f"/sites/sf-mission/locks/{a['lock']}", (a, e)
    kinds = [e["type"] for e in got.values() if e["source"] == "/sites/sf-mission/locks/main-entrance"]
    assert "com.keyway.lockdown.started" in kinds and "com.keyway.lockdown.ended" in kinds, kinds
    assert "com.keyway.access_list.updated" in [e["type"] for e in got.values()
                                                if e["source"] == "/sites/sf-mission/locks/room-dolores"]


def test_membership_refusals_name_their_field_and_change_nothing(keyway):
    keyway.post("/v1/reset")
    version = keyway.ok("GET", "/v1/locks/room-dolores")["access_list_newest"]
    window = {"user": "u-ada", "not_before": "2026-11-23T22:00:00Z", "not_after": "2026-11-23T23:00:00Z"}
    cases = [
        ("/v1/groups/members/members", dict(window, not_after="2026-11-23T21:00:00Z"), 400, "not_after"),
        ("/v1/groups/members/members", dict(window, grace_before_s=86401), 400, "grace_before_s"),
        ("/v1/groups/members/members", dict(window, user="u-nobody"), 400, "user"),
        ("/v1/groups/members/members", dict(window, not_before="yesterday"), 400, "not_before"),
        ("/v1/groups/no-such-group/members", window, 404, None),
    ]
    for path, body, status, field in cases:
        err = fail(keyway, "POST", path, status, json=body)
        if field:
            assert err.get("field") == field, (body, err)
    fail(keyway, "DELETE", "/v1/groups/members/members/m-999", 404)
    assert keyway.ok("GET", "/v1/locks/room-dolores")["access_list_newest"] == version, "a refusal changed the directory"
    assert keyway.ok("GET", "/v1/groups/members/members") == []


def test_offline_list_is_capped_per_lock(keyway):
    keyway.post("/v1/reset")
    lock = keyway.ok("GET", "/v1/locks/office-103")
    assert lock["offline_list"]["capacity"] == 39, lock
    keyway.ok("POST", "/v1/groups", {"id": "office-103-team", "locks": ["office-103"]}, status=201)
    held = lock["offline_list"]["users"]
    # Staff PIN holders are on every lock's list already; fill the rest with PIN holders.
    room = 39 - held
    for i in range(room):
        keyway.ok("POST", "/v1/users", {"id": f"u-pin{i}", "groups": ["office-103-team"], "pin": f"{60000 + i}"}, status=201)
    err = fail(keyway, "POST", "/v1/users", 409, json={"id": "u-one-too-many", "groups": ["office-103-team"], "pin": "99999"})
    assert err["code"] == "offline_capacity_exceeded" and "office-103" in err["message"] and "39" in err["message"], err
    fail(keyway, "GET", "/v1/users/u-one-too-many", 404)
    # Without a PIN or offline access a user takes no place on the list.
    keyway.ok("POST", "/v1/users", {"id": "u-online-only", "groups": ["office-103-team"], "tags": ["04:99:88:77"]}, status=201)
    keyway.ok("POST", "/v1/iqs/iq-lounge/sync", {})
    assert keyway.ok("GET", "/v1/locks/office-103")["offline_list"]["users"] == 39


def test_the_directory_survives_kill_9_and_a_restart(tmp_path):
    """What the access core did at run time is the emulator's state, as a real cloud's would be: after a
    kill -9 and a restart on the same data directory, the users, bookings and lockdown are back, and a
    lock's list never sits ahead of the directory (versions go on from where they were)."""
    import signal

    from conftest import KeywayServer, require_serve
    require_serve()
    data = tmp_path / "keyway"
    srv = KeywayServer(data)
    try:
        srv.ok("POST", "/v1/users", {"id": "u-nia", "tags": [NIA_TAG], "offline_access": True}, status=201)
        srv.ok("POST", "/v1/groups", {"id": "book-dolores", "locks": ["room-dolores"]}, status=201)
        booking = srv.ok("POST", "/v1/groups/book-dolores/members",
                         {"user": "u-nia", "not_before": "2026-11-23T22:00:00Z", "not_after": "2026-11-23T23:00:00Z"},
                         status=201)
        srv.ok("POST", "/v1/lockdown", {"locked_down": True, "locks": ["side-door"]})
        sync(srv)
        held = srv.ok("GET", "/v1/locks/room-dolores")
        assert held["access_list_version"] == held["access_list_newest"] == booking["access_list_version"], held
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(timeout=10)
        srv.session.close()
    except BaseException:
        srv.stop()
        raise

    again = KeywayServer(data)
    try:
        nia = again.ok("GET", "/v1/users/u-nia")
        assert nia["offline_access"] is True and nia["tags"] == [NIA_TAG], nia
        assert [m["id"] for m in again.ok("GET", "/v1/groups/book-dolores/members")] == [booking["id"]]
        assert again.ok("GET", "/v1/lockdown")["locked_down"] == ["side-door"]
        lock = again.ok("GET", "/v1/locks/room-dolores")
        assert lock["access_list_version"] == lock["access_list_newest"] == booking["access_list_version"], lock
        # The next change is a newer version than any list a lock holds, so IQs push it.
        nxt = again.ok("POST", "/v1/groups/book-dolores/members",
                       {"user": "u-nia", "not_before": "2026-11-24T22:00:00Z", "not_after": "2026-11-24T23:00:00Z"}, status=201)
        assert nxt["id"] != booking["id"] and nxt["access_list_version"] > booking["access_list_version"], nxt
        sync(again)
        assert again.ok("GET", "/v1/locks/room-dolores")["access_list_version"] == nxt["access_list_version"]
        # A reset goes back to the site file, and so does the next start.
        again.post("/v1/reset")
        assert again.get("/v1/users/u-nia").status_code == 404
    finally:
        again.stop()
