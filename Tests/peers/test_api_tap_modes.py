"""What POST /v1/taps says about the phone's side of a tap (tap protocol v2, issue 14): the protocol
version and mode it spoke, and the conformant phone's refusal to present a key at a lock its key does
not name — unless the test asks for a non-conformant phone to see the lock's own refusal.

Site ids come from Fixtures/sites/coworking.yaml: office-101 is a lock u-ada's members key does not name.
"""


def test_protocol_mode_and_the_non_conformant_phone(keyway):
    srv = keyway
    srv.ok("POST", "/v1/reset")
    srv.ok("POST", "/v1/keys", {"user": "u-ada", "locks": ["main-entrance"]}, status=201)

    r = srv.ok("POST", "/v1/taps", {"lock": "main-entrance", "user": "u-ada"})
    assert r["result"] == "granted" and r["protocol"] == 2 and r["mode"] == "full", r
    srv.ok("POST", "/v1/clock/advance", {"seconds": 10})

    # The conformant phone reads office-101's hello and walks away: no presentation, no event.
    r = srv.ok("POST", "/v1/taps", {"lock": "office-101", "user": "u-ada"})
    assert r["result"] == "phone_refused" and r["reason"] == "lock_not_in_credential" and r["event_id"] is None, r
    assert r["protocol"] == 2, r

    # A non-conformant phone presents anyway: the lock refuses it itself, and journals it once.
    r = srv.ok("POST", "/v1/taps", {"lock": "office-101", "user": "u-ada", "phone": "non_conformant"})
    assert r["result"] == "denied" and r["reason"] == "wrong_lock" and r["event_id"], r
    events = srv.ok("GET", "/v1/events?type=access.denied&lock=office-101")
    assert [e["id"] for e in events] == [r["event_id"]], events

    # Tags and PINs have no phone protocol.
    r = srv.ok("POST", "/v1/taps", {"lock": "main-entrance", "pin": "4821"})
    assert "protocol" not in r and "mode" not in r, r
    bad = srv.request("POST", "/v1/taps", json={"lock": "main-entrance", "user": "u-ada", "phone": "sloppy"})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "phone", bad.text
