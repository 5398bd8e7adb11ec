"""The control API is safe on loopback (issue 18 item 5; docs/SECURITY.md D46–D49): no web page the engineer
opens can drive it, with or without a token.

Each test starts the real `keyway serve` and speaks raw HTTP to it with `requests`, setting the headers a
browser would (Host of a rebinding page, Origin of a foreign page, a form's Content-Type). A refused
request must change nothing, which the tests check through the API afterwards.
"""
import os
import secrets
import subprocess

import pytest
import requests

from conftest import KEYWAY, SITE, free_port, require_serve


def error_of(r, status, code, field=None):
    assert r.status_code == status, f"expected {status}, got {r.status_code} {r.text}"
    assert r.headers["content-type"].startswith("application/json"), r.headers
    e = r.json()["error"]
    assert e["code"] == code, e
    if field:
        assert e.get("field") == field, e
    return e


def test_bodies_must_be_json(keyway):
    keyway.ok("POST", "/v1/reset")
    keyway.ok("POST", "/v1/keys", {"user": "u-ada", "locks": ["main-entrance"]}, status=201)
    # What an HTML form or a no-cors fetch can send: text/plain, form-urlencoded, multipart.
    for ctype, body in [("text/plain", b'{"lock":"main-entrance","user":"u-ada"}'),
                        ("text/plain;charset=UTF-8", b'{"lock":"main-entrance","user":"u-ada"}'),
                        ("application/x-www-form-urlencoded", b"lock=main-entrance&user=u-ada"),
                        ("multipart/form-data; boundary=x", b"--x--\r\n")]:
        error_of(keyway.post("/v1/taps", data=body, headers={"Content-Type": ctype}), 415, "unsupported_media_type", "Content-Type")
    # A body with no Content-Type at all.
    r = requests.post(keyway.url("/v1/taps"), data=b'{"lock":"main-entrance","user":"u-ada"}', timeout=10)
    assert "content-type" not in {k.lower() for k in r.request.headers}
    error_of(r, 415, "unsupported_media_type")
    # A bodiless POST that names a non-JSON type (an empty form) is refused too; with no type it is fine.
    error_of(keyway.post("/v1/reset", headers={"Content-Type": "application/x-www-form-urlencoded"}), 415, "unsupported_media_type")
    # None of them did anything: the lock is still locked, nothing was journaled.
    assert keyway.ok("GET", "/v1/locks/main-entrance")["state"] == "locked"
    assert keyway.ok("GET", "/v1/events") == []
    # JSON, with or without parameters, and in any case, is accepted.
    for ctype in ("application/json", "application/json; charset=utf-8", "Application/JSON"):
        r = keyway.post("/v1/clock/advance", data=b'{"seconds": 1}', headers={"Content-Type": ctype})
        assert r.status_code == 200, (ctype, r.text)
    assert keyway.post("/v1/reset").status_code == 200  # no body, no type


def test_a_foreign_host_is_refused(keyway):
    """DNS rebinding: a page on evil.example whose name now resolves to 127.0.0.1 sends Host: evil.example."""
    for host in ("evil.example", f"evil.example:{keyway.port}", "127.0.0.1.evil.example", "localhost.evil.example",
                 "10.1.2.3", "[::2]"):
        for method, path in (("GET", "/v1/keys"), ("GET", "/v1/events"), ("POST", "/v1/reset"), ("GET", "/")):
            error_of(keyway.request(method, path, headers={"Host": host}), 421, "misdirected_request", "Host")
    # The listen address and localhost, with or without the port, are ours.
    for host in ("127.0.0.1", f"127.0.0.1:{keyway.port}", "localhost", f"localhost:{keyway.port}", "LOCALHOST"):
        assert keyway.get("/v1/health", headers={"Host": host}).status_code == 200, host


def test_allow_host_names_a_host(start_keyway):
    srv = start_keyway(extra=["--allow-host", "keyway.test", "--allow-host", "Lab-Box.local"])
    assert srv.get("/v1/health", headers={"Host": f"keyway.test:{srv.port}"}).status_code == 200
    assert srv.get("/v1/health", headers={"Host": "lab-box.local"}).status_code == 200
    error_of(srv.get("/v1/health", headers={"Host": "other.test"}), 421, "misdirected_request")
    error_of(srv.get("/v1/health", headers={"Host": "sub.keyway.test"}), 421, "misdirected_request")
    # Behind a proxy that rewrites Host to the listen address, the browser's origin is the allowed name.
    assert srv.post("/v1/reset", headers={"Origin": "https://keyway.test"}).status_code == 200
    assert srv.post("/v1/reset", headers={"Origin": f"http://keyway.test:{srv.port}", "Host": f"keyway.test:{srv.port}"}).status_code == 200
    error_of(srv.post("/v1/reset", headers={"Origin": "https://keyway.test.evil.example"}), 403, "forbidden_origin")


def test_a_foreign_origin_is_refused(keyway):
    keyway.ok("POST", "/v1/reset")
    own = f"http://127.0.0.1:{keyway.port}"
    for origin in ("http://evil.example", "null", f"http://127.0.0.1:{keyway.port + 1}", "http://localhost:3000",
                   f"http://127.0.0.1:{keyway.port}.evil.example"):
        error_of(keyway.post("/v1/keys", json={"user": "u-ada", "locks": ["main-entrance"]}, headers={"Origin": origin}),
                 403, "forbidden_origin", "Origin")
        error_of(keyway.get("/v1/keys", headers={"Origin": origin}), 403, "forbidden_origin")
    assert keyway.ok("GET", "/v1/keys") == [], "a refused request issued a key"
    # Sec-Fetch-Site tells a cross-site request even without an Origin (a no-cors GET); a navigation to
    # the page itself from a link elsewhere is fine.
    error_of(keyway.get("/v1/keys", headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}), 403, "forbidden_origin")
    error_of(keyway.get("/v1/keys", headers={"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "cors"}), 403, "forbidden_origin")
    assert keyway.get("/", headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}).status_code == 200
    # The API's own origin — the live view — passes.
    r = keyway.post("/v1/keys", json={"user": "u-ada", "locks": ["main-entrance"]},
                    headers={"Origin": own, "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"})
    assert r.status_code == 201, r.text
    assert keyway.get("/v1/keys", headers={"Origin": f"http://localhost:{keyway.port}", "Host": f"localhost:{keyway.port}"}).status_code == 200


def _serve(tmp_path, args, env_token=None):
    env = {k: v for k, v in os.environ.items() if k != "KEYWAY_API_TOKEN"}
    if env_token is not None:
        env["KEYWAY_API_TOKEN"] = env_token
    return subprocess.run([str(KEYWAY), "serve", "--site", str(SITE), "--data", str(tmp_path / "d"),
                           "--listen", f"127.0.0.1:{free_port()}", "--clock", "simulated", *args],
                          capture_output=True, text=True, timeout=30, env=env, stdin=subprocess.DEVNULL)


def test_an_empty_token_is_refused_at_start(tmp_path):
    require_serve()
    r = _serve(tmp_path, ["--api-token", ""])
    assert r.returncode != 0 and "--api-token is empty" in r.stderr, (r.returncode, r.stdout, r.stderr)
    r = _serve(tmp_path, [], env_token="")
    assert r.returncode != 0 and "KEYWAY_API_TOKEN is empty" in r.stderr, (r.returncode, r.stdout, r.stderr)
    r = _serve(tmp_path, ["--api-token", "has space"])
    assert r.returncode != 0 and "printable ASCII" in r.stderr, (r.returncode, r.stdout, r.stderr)
    r = _serve(tmp_path, ["--allow-host", "http://x/"])
    assert r.returncode != 0 and "--allow-host" in r.stderr, (r.returncode, r.stdout, r.stderr)


def test_the_bearer_scheme_is_case_insensitive(start_keyway):
    token = secrets.token_urlsafe(24)
    srv = start_keyway(api_token=token)
    for scheme in ("Bearer", "bearer", "BEARER", "bEaReR"):
        r = requests.get(srv.url("/v1/locks"), headers={"Authorization": f"{scheme} {token}"}, timeout=10)
        assert r.status_code == 200, (scheme, r.text)
    for header in (f"Basic {token}", f"Bearer{token}", "Bearer", "Bearer ", f"Bearer {token[:-1]}", token):
        error_of(requests.get(srv.url("/v1/locks"), headers={"Authorization": header}, timeout=10), 401, "unauthorized")
    # The guard runs before the token: a foreign Host or Origin is refused even with the right token.
    error_of(requests.get(srv.url("/v1/locks"), headers={"Authorization": f"Bearer {token}", "Host": "evil.example"}, timeout=10),
             421, "misdirected_request")
    error_of(requests.post(srv.url("/v1/reset"), headers={"Authorization": f"Bearer {token}", "Origin": "http://evil.example"},
                           timeout=10), 403, "forbidden_origin")


def test_login_sets_an_httponly_strict_cookie_that_is_not_the_token(start_keyway):
    token = secrets.token_urlsafe(24)
    srv = start_keyway(api_token=token)
    anon = requests.Session()
    # The page itself is served without a token (it holds no data); the data is not.
    assert anon.get(srv.url("/"), timeout=10).status_code == 200
    error_of(anon.get(srv.url("/v1/locks"), timeout=10), 401, "unauthorized")
    error_of(anon.post(srv.url("/v1/login"), json={"token": token + "x"}, timeout=10), 401, "unauthorized", "token")
    error_of(anon.post(srv.url("/v1/login"), json={}, timeout=10), 400, "invalid_field", "token")
    error_of(anon.post(srv.url("/v1/login"), data=f'{{"token": "{token}"}}', headers={"Content-Type": "text/plain"}, timeout=10),
             415, "unsupported_media_type")
    error_of(anon.post(srv.url("/v1/login"), json={"token": token}, headers={"Origin": "http://evil.example"}, timeout=10),
             403, "forbidden_origin")
    assert not anon.cookies
    r = anon.post(srv.url("/v1/login"), json={"token": token}, timeout=10)
    assert r.status_code == 200 and r.json() == {"token_required": True}, r.text
    set_cookie = r.headers["set-cookie"]
    attrs = {a.strip().split("=")[0].lower() for a in set_cookie.split(";")}
    assert {"httponly", "samesite", "path"} <= attrs, set_cookie
    assert "samesite=strict" in set_cookie.lower().replace(" ", ""), set_cookie
    assert token not in set_cookie
    value = anon.cookies["keyway_session"]
    assert len(value) == 64
    # The cookie works like the token; a forged one does not; the token is never in the output.
    assert anon.get(srv.url("/v1/locks"), timeout=10).status_code == 200
    assert anon.post(srv.url("/v1/clock/advance"), json={"seconds": 1}, timeout=10).status_code == 200
    forged = requests.get(srv.url("/v1/locks"), cookies={"keyway_session": "0" * 64}, timeout=10)
    error_of(forged, 401, "unauthorized")
    assert token not in srv.output()


def test_login_without_a_token_needs_nothing(keyway):
    r = keyway.post("/v1/login", json={"token": "anything"})
    assert r.status_code == 200 and r.json() == {"token_required": False}, r.text
    assert "set-cookie" not in r.headers
