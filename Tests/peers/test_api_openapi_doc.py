"""The OpenAPI document of the control API (docs/openapi.yaml) stays true.

* it is a valid OpenAPI 3.1 document (openapi-spec-validator, an independent implementation);
* Sources/Emulator/API/OpenAPIDocument.swift, which the server embeds, is generated from it and up to date;
* every route the server registers is documented with the same method, and nothing else is;
* every request body accepts exactly the fields the server's handler allows (unknown fields are refused);
* every example in the document validates against its own schema;
* GET /openapi.yaml on a live server returns the file byte for byte.
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
OPERATIONS = ROOT / "Sources" / "Emulator" / "Core" / "Operations.swift"
METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture(scope="module")
def doc():
    return yaml.safe_load(OPENAPI.read_text(encoding="utf-8"))


def test_document_is_valid_openapi_31(doc):
    assert doc["openapi"].startswith("3.1"), doc["openapi"]
    validate_openapi(doc)  # raises with the offending path on any error


def test_generated_swift_is_up_to_date():
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "gen-openapi"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr or r.stdout


def test_generator_delimiter_cannot_clash(tmp_path):
    """The raw-string delimiter grows past any `"#…` / `\\#…` run, so hostile YAML still round-trips."""
    import importlib.machinery
    import importlib.util
    loader = importlib.machinery.SourceFileLoader("gen_openapi", str(ROOT / "tools" / "gen-openapi"))
    spec = importlib.util.spec_from_loader("gen_openapi", loader)
    gen = importlib.util.module_from_spec(spec)
    loader.exec_module(gen)
    hostile = 'a: "x"###\nb: \\###(c)\nc: """##\n'
    out = gen.render(hostile)
    assert '####"""\n' in out and '\n"""####\n' in out, out
    body = out.split('####"""\n', 1)[1].rsplit('\n"""####\n', 1)[0]
    assert body == hostile  # the literal's content (the newline before the closing line is not part of it)


def _swift_routes():
    """(METHOD, openapi path, handler text) for every route in ControlAPI.swift: each
    router.<method>("...") and each entry of the body-route table (BodyOperation(path: "...", ...),
    served as POST)."""
    text = CONTROL_API.read_text(encoding="utf-8")
    matches = list(re.finditer(r'router\.(get|post|put|patch|delete)\("([^"]+)"\)', text))
    routes = []
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        path = re.sub(r":([A-Za-z_]+)", r"{\1}", m.group(2))
        routes.append((m.group(1).upper(), path, text[m.end():end]))
    table = list(re.finditer(r'BodyOperation\(path: "([^"]+)", (allowed: [^\n]*)', text))
    assert table, f"no body-route table in {CONTROL_API} — has it moved?"
    assert "for op in bodyOperations" in text and "router.post(RouterPath(op.path))" in text, "the table is no longer served as POST"
    for m in table:
        routes.append(("POST", re.sub(r":([A-Za-z_]+)", r"{\1}", m.group(1)), m.group(2)))
    assert routes, f"no routes found in {CONTROL_API} — has the router moved?"
    return routes


def test_every_route_is_documented_and_nothing_else(doc):
    served = {(method, path) for method, path, _ in _swift_routes()}
    documented = {(method.upper(), path) for path, item in doc["paths"].items() for method in item if method in METHODS}
    assert served - documented == set(), f"routes the server has but the document lacks: {sorted(served - documented)}"
    assert documented - served == set(), f"documented routes the server lacks: {sorted(documented - served)}"


def _static_field_set(name):
    m = re.search(r"static let " + name + r": Set<String> = \[([^\]]*)\]", OPERATIONS.read_text(encoding="utf-8"))
    assert m, f"Emulator.{name} not found in {OPERATIONS}"
    return set(re.findall(r'"([^"]+)"', m.group(1)))


def _deref(doc, node):
    if isinstance(node, dict) and "$ref" in node:
        target = doc
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        return _deref(doc, target)
    return node


def test_request_bodies_allow_exactly_the_server_fields(doc):
    problems = []
    for method, path, handler in _swift_routes():
        m = re.search(r"allowed: (\[[^\]]*\]|Emulator\.(\w+))", handler)
        op = doc["paths"][path][method.lower()]
        body = op.get("requestBody")
        if not m:
            if body is not None:
                problems.append(f"{method} {path}: the server reads no body, the document declares one")
            continue
        allowed = _static_field_set(m.group(2)) if m.group(2) else set(re.findall(r'"([^"]+)"', m.group(1)))
        if body is None:
            problems.append(f"{method} {path}: the server parses a body (fields {sorted(allowed)}), the document declares none")
            continue
        schema = _deref(doc, body["content"]["application/json"]["schema"])
        documented = set(schema.get("properties", {}))
        if schema.get("additionalProperties") is not False:
            problems.append(f"{method} {path}: request schema must say additionalProperties: false (the server refuses unknown fields)")
        if documented != allowed:
            problems.append(f"{method} {path}: server allows {sorted(allowed)}, document has {sorted(documented)}")
    assert not problems, "\n".join(problems)


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
    assert r.content == OPENAPI.read_bytes(), "GET /openapi.yaml differs from docs/openapi.yaml: run tools/gen-openapi and rebuild"


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
