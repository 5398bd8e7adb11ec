"""The emulated world on any date, and no Swift debug description in any answer.

- `keyway serve` with its simulated clock a year before today (and 400 days after) issues keys and
  grants taps: the site's lock certificates cover the whole 2000–2100 span the API allows.
- A lock certificate outside its validity is a deliberate fault; the built-in phone's refusal is a
  200 tap result (`phone_refused`, a machine-readable `reason`), printed by `keyway tap` too.
- Error bodies from a broad set of bad requests (every body operation of the OpenAPI document fed
  wrong types, unknown fields, unknown ids) and CLI messages never contain an enum dump like
  `untrustedLock("…")`, `Optional(…)` or `Error Domain=`.

Dates are relative to today (datetime.now) where the point is "whatever day this runs", never fixed.
"""
import datetime as dt
import re
import subprocess

import pytest
import yaml

from conftest import KEYWAY, OPENAPI

# A Swift enum case or type dumped by string interpolation: `untrustedLock("x")`, `badSignature`,
# `Optional("x")`, `SiteKeysError.io(path: …)`, NSError's `Error Domain=…`.
DUMP = re.compile(r"\b[a-z]+[A-Z][A-Za-z]*\(|\b[a-z]+\(\"|\bOptional\(|Error Domain=|\b[A-Z][A-Za-z]+Error\.[a-z]|\w+\(\w+: ")


def assert_no_dump(text: str, where: str):
    m = DUMP.search(text)
    assert m is None, f"{where}: Swift debug description in {text!r} (at {m.group(0)!r})"


def monday_morning(day: dt.date) -> str:
    """09:00 in San Francisco (17:00Z) on the Monday on or before `day`: inside every group's schedule."""
    monday = day - dt.timedelta(days=day.weekday())
    return f"{monday.isoformat()}T17:00:00Z"


@pytest.mark.parametrize("days", [-365, 400])
def test_taps_are_granted_a_year_back_and_400_days_ahead(start_keyway, days):
    srv = start_keyway(clock_start=monday_morning(dt.date.today() + dt.timedelta(days=days)))
    srv.ok("POST", "/v1/keys", {"user": "u-ada", "locks": ["main-entrance"]}, status=201)
    tap = srv.ok("POST", "/v1/taps", {"lock": "main-entrance", "user": "u-ada"})
    assert tap["result"] == "granted", tap
    assert srv.ok("GET", "/v1/locks/main-entrance")["certificate"]["state"] == "valid"


def test_setting_the_clock_a_year_back_keeps_taps_granted(start_keyway):
    srv = start_keyway(clock_start=monday_morning(dt.date.today()))
    now = dt.datetime.fromisoformat(srv.ok("GET", "/v1/clock")["now"].replace("Z", "+00:00"))
    for _ in range(12):  # at most 31 days per call
        now -= dt.timedelta(days=30)
        srv.ok("POST", "/v1/clock/set", {"time": now.strftime("%Y-%m-%dT%H:%M:%SZ")})
    srv.ok("POST", "/v1/clock/set", {"time": monday_morning(now.date())})
    srv.ok("POST", "/v1/keys", {"user": "u-ada", "locks": ["main-entrance"]}, status=201)
    tap = srv.ok("POST", "/v1/taps", {"lock": "main-entrance", "user": "u-ada"})
    assert tap["result"] == "granted", tap


def test_expired_lock_certificate_is_a_phone_refusal_over_http_and_cli(start_keyway):
    srv = start_keyway()
    srv.ok("POST", "/v1/keys", {"user": "u-ada", "locks": ["main-entrance"]}, status=201)
    before = srv.ok("GET", "/v1/events")
    lock = srv.ok("POST", "/v1/locks/main-entrance/certificate", {"fault": "expired"})
    assert lock["certificate"]["state"] == "expired", lock

    r = srv.post("/v1/taps", json={"lock": "main-entrance", "user": "u-ada"})
    assert r.status_code == 200, r.text
    tap = r.json()
    assert tap["result"] == "phone_refused" and tap["reason"] == "lock_certificate_expired", tap
    assert tap["event_id"] is None and tap["state"] == "locked", tap
    assert_no_dump(tap["message"], "POST /v1/taps message")
    assert srv.ok("GET", "/v1/events") == before, "the lock decided nothing, so recorded nothing"

    cli = subprocess.run([str(KEYWAY), "tap", "main-entrance", "--user", "u-ada", "--server", srv.base],
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode == 1, cli
    assert cli.stdout.startswith("phone:  refused the lock — lock_certificate_expired"), cli.stdout
    assert_no_dump(cli.stdout + cli.stderr, "keyway tap")

    srv.ok("POST", "/v1/locks/main-entrance/certificate", {"fault": "not_yet_valid"})
    tap = srv.ok("POST", "/v1/taps", {"lock": "main-entrance", "user": "u-ada"})
    assert tap["reason"] == "lock_certificate_not_yet_valid", tap

    srv.ok("POST", "/v1/reset")
    srv.ok("POST", "/v1/keys", {"user": "u-ada", "locks": ["main-entrance"]}, status=201)
    tap = srv.ok("POST", "/v1/taps", {"lock": "main-entrance", "user": "u-ada"})
    assert tap["result"] == "granted", "reset restores the site's certificate"


WRONG_VALUES = [None, True, 0, -1, 1e300, "", "x" * 300, "not-a-date", [], {}, ["x"], "2026-13-45T99:99:99Z"]


def body_operations():
    doc = yaml.safe_load(OPENAPI.read_text())
    schemas = doc["components"]["schemas"]
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method not in ("post", "put", "patch"):
                continue
            ref = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")
            schema = schemas[ref.split("/")[-1]] if ref else {}
            fields = [f for part in [schema] + schema.get("oneOf", []) for f in part.get("properties", {})]
            yield method.upper(), path, fields


def test_no_error_body_carries_a_swift_debug_description(start_keyway):
    srv = start_keyway()
    ids = {"id": "main-entrance"}
    ids_by_path = {"/v1/iqs/": "iq-lobby", "/v1/controllers/": "ctl-back-door", "/v1/doors/": "ctl-back-door", "/v1/keys/": "00" * 16}
    seen = 0
    for method, path, fields in body_operations():
        concrete = path
        for prefix, value in ids_by_path.items():
            if path.startswith(prefix):
                concrete = path.replace("{id}", value)
        concrete = concrete.replace("{id}", ids["id"])
        requests_to_try = [(concrete, b"{"), (concrete, b"[]"), (concrete, b'{"no_such_field": 1}'),
                           (path.replace("{id}", "no-such-id"), b"{}")]
        for field in fields:
            for v in WRONG_VALUES:
                requests_to_try.append((concrete, {field: v}))
        for target, body in requests_to_try:
            if isinstance(body, bytes):
                r = srv.request(method, target, data=body, headers={"Content-Type": "application/json"})
            else:
                r = srv.request(method, target, json=body)
            assert r.status_code < 500, f"{method} {target} {body!r} → {r.status_code} {r.text}"
            if r.status_code >= 400:
                seen += 1
                err = r.json()["error"]
                assert_no_dump(err["message"], f"{method} {target} {body!r}")
    assert seen > 100, f"only {seen} error answers were examined"
    # The taps above may have changed state; the server is still healthy.
    assert srv.ok("GET", "/v1/health")["status"] == "ok"


def test_cli_errors_carry_no_debug_description(tmp_path):
    for args in (["serve", "--data", "/proc/keyway-no-such/data", "--listen", "127.0.0.1:0"],
                 ["serve", "--site", str(tmp_path / "missing.yaml"), "--listen", "127.0.0.1:0"],
                 ["keys", "inspect", "/etc/hostname"],
                 ["tap", "main-entrance", "--user", "u-ada", "--server", "http://127.0.0.1:9"]):
        r = subprocess.run([str(KEYWAY), *args], capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert r.returncode != 0, (args, r.stdout, r.stderr)
        assert r.stderr.strip(), (args, "says why")
        assert_no_dump(r.stdout + r.stderr, " ".join(args))


def test_dump_pattern_catches_what_it_must():
    for dump in ['untrustedLock("lock certificate not yet valid")', 'Optional("x")', "Error Domain=NSCocoaErrorDomain Code=4",
                 "SiteKeysError.io(path: x)", 'malformed(reason: "x")', 'malformed("cbor")']:
        with pytest.raises(AssertionError):
            assert_no_dump(dump, "self-test")
    for fine in ["must be an RFC 3339 date-time like 2026-11-22T09:00:00Z", "unknown field (allowed: a, b)",
                 "the phone does not trust the lock: lock certificate expired", "no lock 'x'"]:
        assert_no_dump(fine, "self-test")
