"""Shared fixtures for the control-API peer tests (Tests/peers/test_api_*.py).

They start the real `keyway serve` binary as a subprocess — loopback transport, simulated clock, its own
state directory — wait until `GET /v1/health` answers, and stop it (SIGTERM, then SIGKILL) at the end.

    def test_x(keyway):              # one server for the whole module, loopback, simulated clock
        keyway.post("/v1/reset")
        r = keyway.post("/v1/taps", json={...})

    def test_y(start_keyway):        # a server with options of its own, stopped after the test
        srv = start_keyway(upstream=url, upstream_secret=secret, deliver_held=True)

KEYWAY_BIN runs the tests against another build (e.g. .build/release/keyway). Without a binary the tests
are skipped with a message saying how to build one.
"""
import os
import pathlib
import signal
import socket
import subprocess
import time

import pytest
import requests

ROOT = pathlib.Path(__file__).resolve().parents[2]
KEYWAY = pathlib.Path(os.environ.get("KEYWAY_BIN", ROOT / ".build" / "debug" / "keyway"))
SITE = ROOT / "Fixtures" / "sites" / "coworking.yaml"
OPENAPI = ROOT / "docs" / "openapi.yaml"
# Monday 23 November 2026, 09:00 in San Francisco (the site's zone): inside every group's schedule.
CLOCK_START = "2026-11-23T17:00:00Z"
START_TIMEOUT_S = 20.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve_usable() -> str | None:
    """None if `keyway serve` can run here, else why not."""
    if not KEYWAY.exists():
        return f"{KEYWAY} is missing: build it with `swift build --product keyway`"
    try:
        r = subprocess.run([str(KEYWAY), "serve", "--help"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{KEYWAY} serve --help failed: {e}"
    if r.returncode != 0 or "--listen" not in r.stdout + r.stderr:
        return f"{KEYWAY} has no working `serve` command (exit {r.returncode})"
    return None


_usable_cache: list = []


def require_serve():
    """Skips the calling test (with the reason) when `keyway serve` cannot run; checked once, lazily, so
    other peer tests sharing this conftest never pay for it."""
    if not _usable_cache:
        _usable_cache.append(_serve_usable())
    if _usable_cache[0]:
        pytest.skip(_usable_cache[0])


class KeywayServer:
    """A running `keyway serve`; `get`/`post`/`delete` take paths relative to its base URL."""

    def __init__(self, data_dir: pathlib.Path, *, listen_host="127.0.0.1", connect_host="127.0.0.1",
                 upstream=None, upstream_secret=None, deliver_held=False, api_token=None,
                 clock="simulated", clock_start=CLOCK_START, extra=()):
        self.data_dir = pathlib.Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.base = f"http://{connect_host}:{self.port}"
        self.token = api_token
        self.session = requests.Session()
        if api_token:
            self.session.headers["Authorization"] = f"Bearer {api_token}"
        args = [str(KEYWAY), "serve", "--site", str(SITE), "--data", str(self.data_dir),
                "--listen", f"{listen_host}:{self.port}", "--clock", clock]
        if clock == "simulated" and clock_start:
            args += ["--clock-start", clock_start]
        if upstream:
            args += ["--upstream", upstream, "--upstream-secret", upstream_secret]
        if deliver_held:
            args.append("--deliver-held")
        if api_token:
            args.append(f"--api-token={api_token}")  # one argument: a token may start with "-"
        args += list(extra)
        self.args = args
        self.stdout_path = self.data_dir / "serve.stdout"
        self.stderr_path = self.data_dir / "serve.stderr"
        env = {k: v for k, v in os.environ.items() if k not in ("KEYWAY_API_TOKEN", "KEYWAY_UPSTREAM_SECRET")}
        self.proc = subprocess.Popen(args, cwd=ROOT, stdin=subprocess.DEVNULL, env=env,
                                     stdout=open(self.stdout_path, "wb"), stderr=open(self.stderr_path, "wb"))
        self._wait_ready()

    def _wait_ready(self):
        deadline = time.monotonic() + START_TIMEOUT_S
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"keyway serve exited with {self.proc.returncode} before answering:\n"
                                   f"  {' '.join(self.args)}\n{self.output()}")
            try:
                r = self.session.get(self.base + "/v1/health", timeout=1)
                if r.status_code == 200:
                    return
                last = f"HTTP {r.status_code}: {r.text[:200]}"
            except requests.RequestException as e:
                last = str(e)
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"keyway serve did not answer GET /v1/health within {START_TIMEOUT_S} s ({last}):\n{self.output()}")

    def output(self) -> str:
        out = self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""
        err = self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""
        return f"--- stdout ---\n{out[-4000:]}\n--- stderr ---\n{err[-4000:]}"

    def url(self, path: str) -> str:
        return self.base + path

    def request(self, method: str, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 30)
        return self.session.request(method, self.base + path, **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, json=None, **kw):
        if json is None and "data" not in kw:
            kw["data"] = b""
        return self.request("POST", path, json=json, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def ok(self, method: str, path: str, json=None, status=(200, 201)):
        """The JSON answer of a request that must succeed; fails the test with the exchange otherwise."""
        r = self.request(method, path, json=json) if json is not None else self.request(method, path, data=b"")
        statuses = status if isinstance(status, tuple) else (status,)
        assert r.status_code in statuses, f"{method} {path} {json!r} → {r.status_code} {r.text}"
        return r.json()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.session.close()


@pytest.fixture
def start_keyway(tmp_path):
    """Factory: start_keyway(**options) → KeywayServer, each stopped when the test ends."""
    require_serve()
    servers = []

    def start(**kw):
        srv = KeywayServer(tmp_path / f"keyway-{len(servers)}", **kw)
        servers.append(srv)
        return srv

    yield start
    for s in servers:
        s.stop()


@pytest.fixture(scope="module")
def keyway(tmp_path_factory):
    """One loopback server with the simulated clock for a whole test module (reset between tests as needed)."""
    require_serve()
    srv = KeywayServer(tmp_path_factory.mktemp("keyway"))
    yield srv
    srv.stop()
