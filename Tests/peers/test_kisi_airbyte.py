"""airbyte-cdk reads the Kisi-compatible API (issue 17, "proof by real clients").

Tests/peers/kisi_airbyte/manifest.yaml is a declarative Airbyte source written from Kisi's documented
pagination (limit/offset, JSON arrays) and record shapes. airbyte-cdk's own `source-declarative-manifest`
(in .venv-airbyte, made by tools/setup: it cannot share .venv with schemathesis) runs check, discover and a
full read against `keyway serve --kisi-listen`; every record must validate against its stream's schema and
each stream must hold exactly what the facade lists, read over pages of five.
"""
import json
import pathlib
import subprocess

import jsonschema
import pytest
import requests
import yaml

from conftest import ROOT, free_port

MANIFEST = ROOT / "Tests" / "peers" / "kisi_airbyte" / "manifest.yaml"
SDM = ROOT / ".venv-airbyte" / "bin" / "source-declarative-manifest"
KEY = "kisi-airbyte-key-51c0"
STREAMS = ["places", "locks", "groups", "users", "members", "role_assignments"]


def run_sdm(tmp_path, *args):
    r = subprocess.run([str(SDM), *args, "--manifest-path", str(MANIFEST)], cwd=tmp_path, capture_output=True,
                       text=True, timeout=240)
    messages = []
    for line in r.stdout.splitlines():
        try:
            messages.append(json.loads(line))
        except ValueError:
            continue
    return r, messages


def test_airbyte_reads_every_stream_of_the_facade_and_each_record_has_kisis_shape(start_keyway, tmp_path):
    if not SDM.exists():
        pytest.fail(f"{SDM} is missing: tools/setup makes .venv-airbyte (make test runs it)")
    port = free_port()
    srv = start_keyway(extra=["--kisi-listen", f"127.0.0.1:{port}", "--kisi-api-key", KEY])
    base = f"http://127.0.0.1:{port}"
    # A member on a plan with a booking too: a standing role assignment and a windowed one.
    srv.ok("POST", "/v1/users", {"id": "u-nia", "name": "Nia Okafor", "groups": ["members"]}, status=201)
    srv.ok("POST", "/v1/groups/day-pass/members",
           {"user": "u-nia", "not_before": "2026-11-23T22:00:00Z", "not_after": "2026-11-23T23:00:00Z"}, status=201)

    config = tmp_path / "config.json"
    config.write_text(json.dumps({"base_url": base, "api_key": KEY}))
    r, messages = run_sdm(tmp_path, "check", "--config", str(config))
    status = [m["connectionStatus"]["status"] for m in messages if m.get("type") == "CONNECTION_STATUS"]
    assert status == ["SUCCEEDED"], (r.stdout[-2000:], r.stderr[-2000:])

    # A wrong key: the check fails, as against Kisi.
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"base_url": base, "api_key": "not-the-key"}))
    _, messages = run_sdm(tmp_path, "check", "--config", str(bad))
    assert [m["connectionStatus"]["status"] for m in messages if m.get("type") == "CONNECTION_STATUS"] == ["FAILED"]

    r, messages = run_sdm(tmp_path, "discover", "--config", str(config))
    catalog = next(m["catalog"] for m in messages if m.get("type") == "CATALOG")
    assert sorted(s["name"] for s in catalog["streams"]) == sorted(STREAMS), catalog
    configured = tmp_path / "catalog.json"
    configured.write_text(json.dumps({"streams": [
        {"stream": s, "sync_mode": "full_refresh", "destination_sync_mode": "overwrite"} for s in catalog["streams"]]}))

    r, messages = run_sdm(tmp_path, "read", "--config", str(config), "--catalog", str(configured))
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    errors = [m for m in messages if m.get("type") == "TRACE" and m["trace"].get("type") == "ERROR"]
    assert not errors, errors
    records = {s: [] for s in STREAMS}
    for m in messages:
        if m.get("type") == "RECORD":
            records[m["record"]["stream"]].append(m["record"]["data"])

    schemas = {s["name"]: s["schema_loader"]["schema"] for s in yaml.safe_load(MANIFEST.read_text())["streams"]}
    session = requests.Session()
    session.headers["Authorization"] = f"KISI-LOGIN {KEY}"
    for stream in STREAMS:
        for record in records[stream]:
            jsonschema.validate(record, schemas[stream])
        # Exactly what the facade lists (one page of 100 holds it all), each once: paging lost nothing.
        listed = session.get(f"{base}/{stream}", params={"limit": 100}, timeout=30).json()
        assert sorted(x["id"] for x in records[stream]) == sorted(x["id"] for x in listed), stream
        assert len({x["id"] for x in records[stream]}) == len(records[stream]), f"{stream}: a record read twice"

    assert len(records["locks"]) == 13 > 5, "the bundled site's locks, over three pages"
    assert len(records["places"]) == 1
    nia = next(u for u in records["users"] if u["name"] == "Nia Okafor")
    mine = [a for a in records["role_assignments"] if a["user_id"] == nia["id"]]
    assert len(mine) == 2 and sum(1 for a in mine if a.get("valid_until")) == 1, mine
