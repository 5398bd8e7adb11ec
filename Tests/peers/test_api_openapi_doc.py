"""The OpenAPI document of the control API (docs/openapi.yaml) stays true.

* it is a valid OpenAPI 3.1 document (openapi-spec-validator, an independent implementation);
* the Swift types, server and client in Sources/KeywayAPI/Generated are generated from it (tools/generate-api);
* the server registers exactly the documented routes, all of them generated, none by hand;
* every request body refuses unknown fields, in the document and on a live server;
* every example in the document validates against its own schema;
* GET /openapi.yaml on a live server returns the file byte for byte (the bundled file, not a copy).
"""
import pathlib
import re
import subprocess
import sys

import pytest
import yaml
from jsonschema import Draft202012Validator, FormatChecker
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from conftest import OPENAPI, ROOT

CONTROL_API = ROOT / "Sources" / "Emulator" / "API" / "ControlAPI.swift"
SERVER = ROOT / "Sources" / "KeywayAPI" / "Generated" / "Server.swift"
METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture(scope="module")
def doc():
    return yaml.safe_load(OPENAPI.read_text(encoding="utf-8"))


def test_document_is_valid_openapi_31(doc):
    assert doc["openapi"].startswith("3.1"), doc["openapi"]
    validate_openapi(doc)  # raises with the offending path on any error


def test_generated_swift_is_up_to_date():
    """Sources/KeywayAPI/Generated was generated from today's document (`make generate`); .ci/run also
    regenerates it with the generator and fails on any difference (`tools/generate-api --check`)."""
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "generate-api"), "--stamp"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr or r.stdout


def _generated_routes():
    """(METHOD, path) of every route the generated server registers (Server.swift's registerHandlers)."""
    text = SERVER.read_text(encoding="utf-8")
    routes = set(re.findall(r'method: \.(get|post|put|patch|delete),\s*path: server\.apiPathComponentsWithServerPrefix\("([^"]+)"\)', text))
    assert routes, f"no routes found in {SERVER} — has the generator's output changed shape?"
    return {(m.upper(), p) for m, p in routes}


def test_every_route_is_documented_and_nothing_else(doc):
    served = _generated_routes()
    documented = {(method.upper(), path) for path, item in doc["paths"].items() for method in item if method in METHODS}
    assert served == documented, f"generated {sorted(served ^ documented)}"
    # The router has no hand-written routes beside the generated ones.
    hand = re.findall(r'router\.(get|post|put|patch|delete|on)\(', CONTROL_API.read_text(encoding="utf-8"))
    assert not hand, f"{CONTROL_API} registers routes by hand: {hand}"


def _deref(doc, node):
    if isinstance(node, dict) and "$ref" in node:
        target = doc
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        return _deref(doc, target)
    return node


def test_request_bodies_refuse_unknown_fields(doc, keyway):
    """Every JSON request body says additionalProperties: false, and the server (its generated
    decoders) refuses an unknown field by name, with the document's error shape."""
    problems = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            body = op.get("requestBody") if method in METHODS else None
            if not body:
                continue
            schema = _deref(doc, body["content"]["application/json"]["schema"])
            if schema.get("additionalProperties") is not False:
                problems.append(f"{method.upper()} {path}: request schema must say additionalProperties: false")
    assert not problems, "\n".join(problems)
    valid = {"/v1/taps": {"lock": "main-entrance", "pin": "0000"}, "/v1/keys": {"user": "u-ada", "locks": ["main-entrance"]},
             "/v1/clock/advance": {"seconds": 1}, "/v1/iqs/iq-lobby/online": {"online": True}, "/v1/locks/main-entrance/open": {}}
    for path, body in valid.items():
        r = keyway.post(path, json={**body, "colour": "red"})
        assert r.status_code == 400, (path, r.status_code, r.text)
        err = r.json()["error"]
        assert err["code"] == "invalid_field" and err["field"] == "colour" and err["message"] == "unknown field", (path, err)


def _validator(doc, pointer):
    registry = Registry().with_resource("urn:keyway-openapi", Resource.from_contents(doc, default_specification=DRAFT202012))
    return Draft202012Validator({"$ref": "urn:keyway-openapi#" + pointer}, registry=registry, format_checker=FormatChecker())


def _examples(doc):
    """(where, schema pointer, example) for every example next to a schema in the document."""
    out = []

    def media(where, pointer, m):
        if "example" in m:
            out.append((where, pointer + "/schema", m["example"]))
        for name, ex in (m.get("examples") or {}).items():
            out.append((f"{where} example {name}", pointer + "/schema", _deref(doc, ex)["value"]))

    for path, item in doc["paths"].items():
        esc = path.replace("~", "~0").replace("/", "~1")
        for method, op in item.items():
            if method not in METHODS:
                continue
            base = f"/paths/{esc}/{method}"
            for ctype, m in (op.get("requestBody", {}).get("content") or {}).items():
                if ctype == "application/json":
                    media(f"{method.upper()} {path} request", f"{base}/requestBody/content/application~1json", m)
            for status, resp in op["responses"].items():
                if "$ref" in resp:
                    continue
                for ctype, m in (resp.get("content") or {}).items():
                    if ctype == "application/json":
                        media(f"{method.upper()} {path} {status}", f"{base}/responses/{status}/content/application~1json", m)
    for name, resp in doc["components"]["responses"].items():
        media(f"response {name}", f"/components/responses/{name}/content/application~1json", resp["content"]["application/json"])
    for name, schema in doc["components"]["schemas"].items():
        if "example" in schema:
            out.append((f"schema {name}", f"/components/schemas/{name}", schema["example"]))
    return out


def test_every_example_matches_its_schema(doc):
    examples = _examples(doc)
    assert len(examples) >= 20, f"only {len(examples)} examples found — the walk is broken"
    problems = []
    for where, pointer, example in examples:
        for err in _validator(doc, pointer).iter_errors(example):
            problems.append(f"{where}: {err.message} at {list(err.absolute_path)}")
    assert not problems, "\n".join(problems)


def test_live_server_serves_the_same_document(keyway):
    r = keyway.get("/openapi.yaml")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/yaml"), r.headers
    assert r.content == OPENAPI.read_bytes(), "GET /openapi.yaml differs from docs/openapi.yaml: rebuild (SwiftPM bundles the file)"


def test_event_types_match_the_server(doc):
    text = (ROOT / "Sources" / "Events" / "KeywayEvent.swift").read_text(encoding="utf-8")
    body = text[text.index("public enum EventType"):]
    body = body[:body.index("public static let prefix")]
    server = set(re.findall(r'case \w+ = "([^"]+)"', body))
    assert server, "no EventType cases found — has the enum moved?"
    assert set(doc["components"]["schemas"]["EventType"]["enum"]) == server
    pattern = next(p for p in doc["paths"]["/v1/events"]["get"]["parameters"] if p["name"] == "type")["schema"]["items"]["pattern"]
    for t in server:
        short = t.removeprefix("com.keyway.")
        assert re.search(pattern, t) and re.search(pattern, short) and re.search(pattern, f"{short},{t}"), t
    assert not re.search(pattern, "access.exploded") and not re.search(pattern, "access.grantedaccess.denied")
