"""Fixtures/vectors/credentials.json checked by independent implementations: pycose for every
signature, python-cwt for every granted credential, and cwt_keyway.py (written from
docs/PROTOCOL.md) for the verdicts. The Swift side checks the same file (CredentialVectorTests)."""

import json
import os
import sys

import cbor2
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cwt_keyway as kw  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
VECTORS = os.path.join(ROOT, "Fixtures", "vectors", "credentials.json")

with open(VECTORS) as f:
    DOC = json.load(f)

ISSUER = kw.load_public_pem(DOC["issuer"]["public_key_pem"])
ISSUERS = {kw.kid_of(ISSUER): ISSUER}
SITE = DOC["site"]
SKEW = DOC["clock_skew_seconds"]


def test_issuer_kid_is_derived_from_spki():
    assert kw.kid_of(ISSUER).hex() == DOC["issuer"]["kid"]
    x, y = kw.xy(ISSUER)
    assert (x.hex(), y.hex()) == (DOC["issuer"]["x"], DOC["issuer"]["y"])


def test_every_verdict_has_a_vector():
    seen = {v["reason"] if v["expected"] == "denied" else "granted" for v in DOC["vectors"]}
    assert seen == set(kw.REASONS) | {"granted"}


@pytest.mark.parametrize("v", DOC["vectors"], ids=[v["name"] for v in DOC["vectors"]])
def test_vector(v):
    data = bytes.fromhex(v["credential"])
    revoked = {bytes.fromhex(r) for r in v["revoked"]}
    try:
        cred = kw.verify(data, ISSUERS, SITE, v["lock"], v["at"], revoked, SKEW)
        verdict = ("granted", None)
    except kw.Denied as e:
        verdict = ("denied", e.reason)
    assert verdict == (v["expected"], v.get("reason")), v["description"]
    if v["expected"] == "granted":
        assert cred.to_json() == v["claims"]


@pytest.mark.parametrize("v", [v for v in DOC["vectors"] if v["expected"] == "granted"],
                         ids=[v["name"] for v in DOC["vectors"] if v["expected"] == "granted"])
def test_granted_vectors_verify_with_python_cwt(v):
    import cwt
    from cwt import COSEKey

    key = COSEKey.from_pem(DOC["issuer"]["public_key_pem"], kid=bytes.fromhex(DOC["issuer"]["kid"]))
    claims = cwt.decode(bytes.fromhex(v["credential"]), key, no_verify=True)
    assert claims[kw.ISS] == SITE
    assert claims[kw.CTI].hex() == v["claims"]["cti"]
    assert claims[kw.CNF][1][-2].hex() == v["claims"]["cnf"]["x"]


def test_bad_signature_vector_fails_in_python_cwt_too():
    import cwt
    from cwt import COSEKey

    key = COSEKey.from_pem(DOC["issuer"]["public_key_pem"], kid=bytes.fromhex(DOC["issuer"]["kid"]))
    bad = next(v for v in DOC["vectors"] if v.get("reason") == "bad_signature")
    with pytest.raises(Exception):
        cwt.decode(bytes.fromhex(bad["credential"]), key, no_verify=True)


def test_keyway_credentials_are_deterministic_cbor():
    # Keyway-issued payloads re-encode canonically to the same bytes.
    for v in DOC["vectors"]:
        if v["expected"] != "granted" or "python" in v["name"]:
            continue
        msg = cbor2.loads(bytes.fromhex(v["credential"]))
        assert msg.tag == 18
        payload = msg.value[2]
        assert cbor2.dumps(cbor2.loads(payload), canonical=True) == payload
        assert msg.value[0] == cbor2.dumps({1: -7, 4: bytes.fromhex(DOC["issuer"]["kid"])}, canonical=True)


def test_revocation_list_vector():
    rl = DOC["revocation_list"]
    got = kw.verify_revocation_list(bytes.fromhex(rl["signed"]), ISSUERS, SITE)
    assert got == {"site": rl["site"], "version": rl["version"], "revoked": rl["revoked"], "iat": rl["iat"]}


def test_lock_certificate_vector():
    lc = DOC["lock_certificate"]
    got = kw.verify_lock_certificate(bytes.fromhex(lc["signed"]), ISSUERS, SITE)
    assert got == {"site": lc["site"], "lock": lc["lock"], "iat": lc["iat"], "exp": lc["exp"], "x": lc["x"], "y": lc["y"]}


def test_strict_checker_catches_what_cbor2_accepts():
    for bad in ["1805", "a201020103", "5f4101ff", "f93c00", "0000"]:
        with pytest.raises(ValueError):
            kw.strict_check(bytes.fromhex(bad))
    kw.strict_check(bytes.fromhex("a2016161036162"))
