"""FAST repeat taps through the control API and `keyway tap` (docs/PROTOCOL.md, "FAST repeat tap").

The built-in phone taps a lock in full once, then FAST: `POST /v1/taps` says which in `mode`, each tap
is exactly one journaled event, and a revocation pushed to the lock sends the phone back to a full
exchange (which the lock then denies as `revoked`).
"""
import subprocess

import pytest

from conftest import KEYWAY


@pytest.fixture
def srv(start_keyway):
    return start_keyway()


def events(srv):
    return [e for e in srv.ok("GET", "/v1/events?all=true") if e["type"].startswith("com.keyway.access.")]


def test_full_then_fast_then_full_after_revocation(srv):
    key = srv.ok("POST", "/v1/keys", {"user": "u-ada", "locks": ["main-entrance"]}, status=201)
    first = srv.ok("POST", "/v1/taps", {"lock": "main-entrance", "key_id": key["key_id"]})
    assert (first["result"], first["mode"]) == ("granted", "full"), first
    second = srv.ok("POST", "/v1/taps", {"lock": "main-entrance", "key_id": key["key_id"]})
    assert (second["result"], second["mode"]) == ("granted", "fast"), second
    assert second["phone_verified_result"] is True
    assert second["event_id"] and second["event_id"] != first["event_id"]
    assert [e["id"] for e in events(srv)][-2:] == [first["event_id"], second["event_id"]]

    srv.ok("DELETE", f"/v1/keys/{key['key_id']}")
    srv.ok("POST", "/v1/iqs/iq-lobby/sync", {})
    third = srv.ok("POST", "/v1/taps", {"lock": "main-entrance", "key_id": key["key_id"]})
    assert (third["result"], third["reason"], third["mode"]) == ("denied", "revoked", "full"), third
    assert [e["id"] for e in events(srv)][-1] == third["event_id"]


def test_fast_false_runs_the_full_exchange_and_the_next_tap_is_fast_again(srv):
    key = srv.ok("POST", "/v1/keys", {"user": "u-ada", "locks": ["main-entrance"]}, status=201)
    tap = {"lock": "main-entrance", "key_id": key["key_id"]}
    assert srv.ok("POST", "/v1/taps", tap)["mode"] == "full"
    assert srv.ok("POST", "/v1/taps", tap)["mode"] == "fast"
    forced = srv.ok("POST", "/v1/taps", dict(tap, fast=False))
    assert (forced["result"], forced["mode"]) == ("granted", "full"), forced
    again = srv.ok("POST", "/v1/taps", tap)
    assert (again["result"], again["mode"]) == ("granted", "fast"), again


def test_concurrent_taps_of_one_phone_queue_and_all_are_granted(srv):
    """One phone makes one tap at a time: API callers sharing its key queue, so its FAST counters reach
    the lock in order and none is refused as a replay."""
    from concurrent.futures import ThreadPoolExecutor
    key = srv.ok("POST", "/v1/keys", {"user": "u-ada", "locks": ["main-entrance"]}, status=201)
    tap = {"lock": "main-entrance", "key_id": key["key_id"]}
    assert srv.ok("POST", "/v1/taps", tap)["mode"] == "full"
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: srv.request("POST", "/v1/taps", json=tap).json(), range(40)))
    assert all(r["result"] == "granted" for r in results), [r for r in results if r["result"] != "granted"][:3]
    assert {r["mode"] for r in results} == {"fast"}, results[:3]


def test_keyway_tap_prints_the_mode(srv):
    srv.ok("POST", "/v1/keys", {"user": "u-ada", "locks": ["main-entrance"]}, status=201)
    lines = []
    for _ in range(2):
        r = subprocess.run([str(KEYWAY), "tap", "main-entrance", "--user", "u-ada", "--server", srv.base],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        lines.append(r.stdout.splitlines()[0])
    assert "(mobile, full tap, user u-ada" in lines[0], lines
    assert "(mobile, fast tap, user u-ada" in lines[1], lines


def test_a_revoked_lock_certificate_is_refused_by_the_phone_and_records_nothing(srv):
    key = srv.ok("POST", "/v1/keys", {"user": "u-ada", "locks": ["main-entrance"]}, status=201)
    assert srv.ok("POST", "/v1/taps", {"lock": "main-entrance", "key_id": key["key_id"]})["result"] == "granted"
    before = len(events(srv))
    r = srv.ok("POST", "/v1/locks/main-entrance/certificate/revocation")
    assert r["lock"] == "main-entrance" and r["revoked"] is True and len(r["certificate_id"]) == 32, r
    tap = srv.ok("POST", "/v1/taps", {"lock": "main-entrance", "key_id": key["key_id"]})
    assert (tap["result"], tap["reason"], tap["event_id"]) == ("phone_refused", "lock_certificate_revoked", None), tap
    assert len(events(srv)) == before, "the phone revealed nothing, so the lock recorded nothing"
    again = srv.ok("POST", "/v1/locks/main-entrance/certificate/revocation")
    assert again["revocation_list_version"] == r["revocation_list_version"] + 1
    # A reset starts the site from its file, revocation list included: the lock is trusted again.
    srv.ok("POST", "/v1/reset")
    key = srv.ok("POST", "/v1/keys", {"user": "u-ada", "locks": ["main-entrance"]}, status=201)
    assert srv.ok("POST", "/v1/taps", {"lock": "main-entrance", "key_id": key["key_id"]})["result"] == "granted"


def test_revoking_the_certificate_of_an_unknown_lock_is_404(srv):
    r = srv.post("/v1/locks/no-such-lock/certificate/revocation")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text


def test_the_revocation_list_phones_receive_names_keys_and_lock_certificates(srv):
    import base64

    import cbor2
    empty = srv.ok("GET", "/v1/revocation-list")
    assert empty == {"version": 0, "revoked_key_ids": [], "revoked_lock_certificates": [], "signed": None}, empty
    key = srv.ok("POST", "/v1/keys", {"user": "u-ada", "locks": ["main-entrance"]}, status=201)
    srv.ok("DELETE", f"/v1/keys/{key['key_id']}")
    cert = srv.ok("POST", "/v1/locks/main-entrance/certificate/revocation")["certificate_id"]
    doc = srv.ok("GET", "/v1/revocation-list")
    assert doc["version"] == 2 and doc["revoked_key_ids"] == [key["key_id"]] and doc["revoked_lock_certificates"] == [cert], doc
    signed = cbor2.loads(base64.b64decode(doc["signed"]))
    assert signed.tag == 18
    payload = cbor2.loads(signed.value[2])
    assert payload[2] == 2 and payload[3] == [bytes.fromhex(key["key_id"])] and payload[5] == [bytes.fromhex(cert)], payload
