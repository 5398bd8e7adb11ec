"""IQ activation through the control API (issue 13 item 4): POST /v1/iqs/{id}/activation with a user of
the directory and the IQ's PIN, DELETE with the user. Wrong PINs are counted in the IQ's JSON and events;
the 5th in a row locks activation for 15 minutes of simulated time; only the activating user deactivates.

Ids from Fixtures/sites/coworking.yaml: iq-lounge (activation PIN 775120) is activated by the site file.
"""
LOUNGE_PIN = "775120"


def events(srv, kind, after):
    return [e for e in srv.ok("GET", f"/v1/events?type={kind}&after={after}&limit=10000") if e["data"].get("iq") == "iq-lounge"]


def position(srv):
    es = srv.ok("GET", "/v1/events?limit=10000")
    return es[-1]["position"] if es else 0


def activate(srv, user, pin):
    return srv.request("POST", "/v1/iqs/iq-lounge/activation", json={"user": user, "pin": pin})


def test_activation_counts_wrong_pins_and_only_the_activator_deactivates(keyway):
    srv = keyway
    srv.ok("POST", "/v1/reset")
    mark = position(srv)
    # Activated by the site file: nobody owns it, any user of the directory may deactivate it.
    iq = srv.ok("DELETE", "/v1/iqs/iq-lounge/activation?user=u-ada")
    assert iq["activated"] is False and "activated_by" not in iq, iq
    assert [e["data"].get("user") for e in events(srv, "iq.deactivated", mark)] == ["u-ada"]

    for n in (1, 2):
        r = activate(srv, "u-ken", "000000")
        assert r.status_code == 403, r.text
        err = r.json()["error"]
        assert err["code"] == "wrong_activation_pin" and err["field"] == "pin" and "000000" not in r.text, r.text
        assert srv.ok("GET", "/v1/iqs")[1]["failed_activation_attempts"] == n
    failed = events(srv, "iq.activation_failed", mark)
    assert [(e["data"]["reason"], e["data"]["user"], e["data"]["count"]) for e in failed] == \
        [("wrong_activation_pin", "u-ken", 1), ("wrong_activation_pin", "u-ken", 2)], failed
    assert all("000000" not in str(e) for e in failed), "the offered PIN is never recorded"

    r = activate(srv, "u-ken", LOUNGE_PIN)
    assert r.status_code == 200, r.text
    iq = r.json()
    assert iq["activated"] is True and iq["activated_by"] == "u-ken" and iq["failed_activation_attempts"] == 0, iq
    assert [e["data"]["user"] for e in events(srv, "iq.activated", mark)] == ["u-ken"]
    assert activate(srv, "u-ken", LOUNGE_PIN).status_code == 200, "the same user again changes nothing"
    r = activate(srv, "u-margaret", LOUNGE_PIN)
    assert r.status_code == 409 and r.json()["error"]["code"] == "iq_already_activated", r.text

    # Another user cannot deactivate it: 403, nothing recorded, still activated.
    before = position(srv)
    r = srv.request("DELETE", "/v1/iqs/iq-lounge/activation?user=u-margaret")
    assert r.status_code == 403 and r.json()["error"]["code"] == "not_activating_user" and r.json()["error"]["field"] == "user", r.text
    assert position(srv) == before
    assert srv.ok("GET", "/v1/iqs")[1]["activated"] is True
    # Unknown user, unknown IQ, no user at all.
    assert srv.request("DELETE", "/v1/iqs/iq-lounge/activation?user=u-nobody").json()["error"]["field"] == "user"
    assert srv.request("DELETE", "/v1/iqs/iq-nowhere/activation?user=u-ken").status_code == 404
    assert srv.request("DELETE", "/v1/iqs/iq-lounge/activation").status_code == 400
    iq = srv.ok("DELETE", "/v1/iqs/iq-lounge/activation?user=u-ken")
    assert iq["activated"] is False, iq
    assert [e["data"]["user"] for e in events(srv, "iq.deactivated", mark)] == ["u-ada", "u-ken"]


def test_five_wrong_pins_lock_activation_for_fifteen_minutes(keyway):
    srv = keyway
    srv.ok("POST", "/v1/reset")
    srv.ok("DELETE", "/v1/iqs/iq-lounge/activation?user=u-ken")
    mark = position(srv)
    for _ in range(5):
        assert activate(srv, "u-ada", "123456").status_code == 403
    iq = srv.ok("GET", "/v1/iqs")[1]
    assert iq["failed_activation_attempts"] == 5 and "activation_locked_until" in iq, iq
    r = activate(srv, "u-ken", LOUNGE_PIN)
    assert r.status_code == 409 and r.json()["error"]["code"] == "activation_locked_out", r.text
    last = events(srv, "iq.activation_failed", mark)[-1]
    assert last["data"]["reason"] == "activation_locked_out" and last["data"]["user"] == "u-ken", last
    srv.ok("POST", "/v1/clock/advance", {"seconds": 899})
    assert activate(srv, "u-ken", LOUNGE_PIN).status_code == 409
    srv.ok("POST", "/v1/clock/advance", {"seconds": 1})
    r = activate(srv, "u-ken", LOUNGE_PIN)
    assert r.status_code == 200, r.text
    iq = r.json()
    assert iq["activated"] and iq["failed_activation_attempts"] == 0 and "activation_locked_until" not in iq, iq


def test_malformed_requests_change_nothing(keyway):
    srv = keyway
    srv.ok("POST", "/v1/reset")
    before = srv.ok("GET", "/v1/iqs")[1]
    for body, field in [({"user": "u-ken"}, "pin"), ({"user": "u-ken", "pin": "12"}, "pin"),
                        ({"user": "u-nobody", "pin": LOUNGE_PIN}, "user"), ({"user": "u-ken", "pin": LOUNGE_PIN, "x": 1}, "x")]:
        r = srv.request("POST", "/v1/iqs/iq-lounge/activation", json=body)
        assert r.status_code == 400 and r.json()["error"]["field"] == field, (body, r.text)
    assert srv.ok("GET", "/v1/iqs")[1] == before
