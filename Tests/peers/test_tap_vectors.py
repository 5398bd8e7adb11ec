"""Fixtures/vectors/tap-v2.json — one tap of Keyway Mobile Key protocol v2 — checked by an independent
implementation of docs/PROTOCOL.md ("Tap protocol"): cbor2 for the messages, `cryptography` (OpenSSL)
for ECDH, ECDSA, HKDF, AES-GCM and HMAC (the lock certificate itself is checked by test_cwt_vectors.py). The Swift side
replays the same file on both ends of the tap (Tests/MobileKeyTests/TapVectorTests.swift)."""

import hashlib
import hmac
import json
import os
import sys

import cbor2
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cwt_keyway as kw  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
VECTORS = os.path.join(ROOT, "Fixtures", "vectors")
with open(os.path.join(VECTORS, "tap-v2.json")) as f:
    V = json.load(f)


def b(name):
    return bytes.fromhex(V[name])


def private(name):
    with open(os.path.join(VECTORS, f"{name}.key.pem"), "rb") as f:
        return serialization.load_pem_private_key(f.read(), password=None)


def point(key):
    return key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def cbor(obj):
    # Deterministic encoding (RFC 8949 §4.2.1): shortest forms, keys sorted by their encoding.
    return cbor2.dumps(obj, canonical=True)


def verify_es256(public, signature, message):
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    public.verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256()))
    n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    assert s <= n // 2, "tap signatures are low-S"


PHONE_EPH, LOCK_EPH = private("phone-ephemeral"), private("lock-ephemeral")
DEVICE, HOLDER = private("lock-device").public_key(), private("holder").public_key()


def test_phone_hello_is_version_key_and_transaction_id():
    assert point(PHONE_EPH) == b("phone_ephemeral_public")
    assert b("phone_hello") == cbor({1: 2, 2: point(PHONE_EPH), 3: b("transaction_id")})
    assert len(b("phone_hello")) == 89


def test_reader_hello_is_signed_over_both_ephemeral_keys_transaction_site_and_lock():
    hello = cbor2.loads(b("reader_hello"))
    assert sorted(hello) == [1, 2, 3, 4, 5, 6, 7] and hello[1] == 2
    assert cbor(hello) == b("reader_hello"), "deterministic encoding"
    assert hello[2] == V["lock"] and hello[3] == b("nonce") and hello[4] == V["time"]
    assert hello[5] == point(LOCK_EPH) and hello[6] == b("lock_certificate")
    tbs = cbor(["KeywayReaderHello2", V["site"], V["lock"], b("transaction_id"), b("nonce"), V["time"],
                point(PHONE_EPH), point(LOCK_EPH)])
    assert tbs == b("reader_hello_tbs")
    verify_es256(DEVICE, hello[7], tbs)
    # The certificate names this lock of this site and certifies the device key that signed.
    cert = cbor2.loads(b("lock_certificate"))
    claims = cbor2.loads(cert.value[2])
    assert claims[1] == V["site"] and claims[2] == V["lock"]
    x, y = kw.xy(DEVICE)
    assert claims[8][1][-2] == x and claims[8][1][-3] == y


def test_key_schedule():
    z = PHONE_EPH.exchange(ec.ECDH(), LOCK_EPH.public_key())
    assert z == LOCK_EPH.exchange(ec.ECDH(), PHONE_EPH.public_key()) == b("ecdh_secret")
    th = hashlib.sha256(b("phone_hello") + b("reader_hello")).digest()
    assert th == b("transcript_hash")
    okm = HKDF(algorithm=hashes.SHA256(), length=76, salt=b("transaction_id") + b("nonce"),
               info=b"KeywayTap2 keys" + th).derive(z)
    assert okm[0:16] == b("presentation_key")
    assert okm[16:28] == b("presentation_nonce")
    assert okm[28:44] == b("result_key")
    assert okm[44:76] == b("exporter_secret")


def test_presentation_opens_and_its_proof_binds_the_transcript():
    th = b("transcript_hash")
    presentation = cbor2.loads(b("presentation"))
    assert sorted(presentation) == [1, 2] and presentation[1] == 2
    payload = AESGCM(b("presentation_key")).decrypt(b("presentation_nonce"), presentation[2], th)
    assert payload == b("payload")
    p = cbor2.loads(payload)
    assert sorted(p) == [1, 2, 3, 4] and p[1] == 2 and p[2] == b("credential") and p[3] == V["action"]
    proof_input = cbor(["KeywayTapProof2", th, V["action"]])
    assert proof_input == b("proof_input")
    verify_es256(HOLDER, p[4], proof_input)


def test_result_mac_is_over_the_received_bytes_without_key_5():
    result = cbor2.loads(b("result"))
    assert result[1] == 2 and result[2] is True and result[4] == 7000
    body = {k: v for k, v in result.items() if k != 5}
    assert hmac.new(b("result_key"), cbor(body), hashlib.sha256).digest()[:16] == result[5]


# FAST repeat tap (docs/PROTOCOL.md, "FAST repeat tap"): Fixtures/vectors/tap-fast.json follows the
# full tap above; everything in it is derived, so every byte is rebuilt here from the document.
with open(os.path.join(VECTORS, "tap-fast.json")) as f:
    F = json.load(f)


def fb(name):
    return bytes.fromhex(F[name])


def test_fast_key_is_derived_from_the_full_taps_exporter_secret():
    assert fb("exporter_secret") == b("exporter_secret")
    credential = b("credential")
    cti = cbor2.loads(cbor2.loads(credential).value[2])[7]   # the credential's cti claim
    assert cti == fb("credential_key_id")
    binding = cbor([F["site"], F["lock"], hashlib.sha256(credential).digest()])
    assert binding == fb("fast_key_binding")
    okm = HKDF(algorithm=hashes.SHA256(), length=48, salt=cti, info=b"KeywayFast2 key" + binding).derive(b("exporter_secret"))
    assert okm[:16] == fb("fast_key_id") and okm[16:] == fb("fast_key")


def test_fast_request_is_macd_and_the_session_key_is_over_its_bytes():
    key = fb("fast_key")
    body = {1: 2, 2: fb("fast_key_id"), 3: F["counter"], 4: F["time"], 5: F["action"]}
    assert cbor(body) == fb("fast_request_mac_input")
    mac = hmac.new(key, cbor(body), hashlib.sha256).digest()[:16]
    request = cbor({**body, 6: mac})
    assert request == fb("fast_request") and len(request) == 49
    assert cbor2.loads(request)[6] == mac
    session = HKDF(algorithm=hashes.SHA256(), length=16, salt=b"",
                   info=b"KeywayFast2 session" + hashlib.sha256(request).digest()).derive(key)
    assert session == fb("session_key")


def test_fast_result_mac_is_over_the_result_without_key_5():
    result = cbor2.loads(fb("fast_result"))
    assert result[1] == 2 and result[2] is True and result[4] == 7000
    body = {k: v for k, v in result.items() if k != 5}
    assert hmac.new(fb("session_key"), cbor(body), hashlib.sha256).digest()[:16] == result[5]
    assert cbor({**body, 5: result[5]}) == fb("fast_result")
