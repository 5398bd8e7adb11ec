"""Keyway Mobile Key credentials, implemented independently in Python from docs/PROTOCOL.md.

Used by the test suite as a second implementation: cwt_peer.py (the subprocess the Swift tests
spawn) and test_cwt_vectors.py (pytest over Fixtures/vectors). It relies on pycose and python-cwt
for COSE and on cbor2 for CBOR; the few checks those libraries do not make (shortest-form heads,
duplicate map keys, Keyway's claim rules) are written out here, following the document.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import zoneinfo
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pycose.keys import EC2Key
from pycose.keys.curves import P256
from pycose.messages import Sign1Message

# Claim keys (RFC 8392 + Keyway private claims).
ISS, SUB, AUD, EXP, NBF, IAT, CTI, CNF = 1, 2, 3, 4, 5, 6, 7, 8
SCHEDULE, OFFICE_MODE, KIND = -65537, -65538, -65539
KEYWAY_PRIVATE = range(-65599, -65536)  # -65599 … -65537
KINDS = {"mobile", "wearable"}
CREDENTIAL_CONTENT_TYPES = (None, "application/cwt", 61)

REASONS = [
    "malformed", "unsupported_algorithm", "unknown_issuer", "bad_signature", "wrong_site",
    "not_yet_valid", "expired", "wrong_lock", "outside_schedule", "revoked", "missing_proof_key",
]


class Denied(Exception):
    def __init__(self, reason: str, detail: str = ""):
        assert reason in REASONS, reason
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


# --- keys -------------------------------------------------------------------------------------

def load_public_pem(pem: bytes | str) -> ec.EllipticCurvePublicKey:
    if isinstance(pem, str):
        pem = pem.encode()
    key = serialization.load_pem_public_key(pem)
    assert isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)
    return key


def load_private_pem(pem: bytes | str) -> ec.EllipticCurvePrivateKey:
    if isinstance(pem, str):
        pem = pem.encode()
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1)
    return key


def kid_of(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """First 8 bytes of SHA-256 over the SubjectPublicKeyInfo DER."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).digest()[:8]


def xy(public_key: ec.EllipticCurvePublicKey) -> tuple[bytes, bytes]:
    n = public_key.public_numbers()
    return n.x.to_bytes(32, "big"), n.y.to_bytes(32, "big")


def cose_key(public_key: ec.EllipticCurvePublicKey) -> dict:
    x, y = xy(public_key)
    return {1: 2, -1: 1, -2: x, -3: y}


def public_from_cose_key(m: Any) -> ec.EllipticCurvePublicKey:
    if not isinstance(m, dict) or m.get(1) != 2 or m.get(-1) != 1 or -4 in m:
        raise ValueError("not an EC2 P-256 public COSE_Key")
    x, y = m.get(-2), m.get(-3)
    if not (isinstance(x, bytes) and isinstance(y, bytes) and len(x) == 32 and len(y) == 32):
        raise ValueError("bad coordinates")
    return ec.EllipticCurvePublicNumbers(int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()).public_key()


# --- strict CBOR well-formedness (what cbor2 does not enforce) --------------------------------

def strict_check(data: bytes, max_depth: int = 16) -> None:
    """Raises ValueError unless `data` is exactly one item with shortest-form heads, definite
    lengths, no floats, no unassigned simple values, valid UTF-8 and no duplicate map keys."""
    def head(i: int) -> tuple[int, int, int, int]:
        if i >= len(data):
            raise ValueError("truncated")
        ib = data[i]
        major, ai = ib >> 5, ib & 0x1F
        if major == 7:
            if ai in (20, 21, 22, 23):
                return major, ai, i + 1, 0
            raise ValueError("float or unsupported simple value")
        if ai < 24:
            return major, ai, i + 1, 0
        widths = {24: 1, 25: 2, 26: 4, 27: 8}
        if ai not in widths:
            raise ValueError("indefinite length or reserved additional info")
        w = widths[ai]
        if i + 1 + w > len(data):
            raise ValueError("truncated")
        v = int.from_bytes(data[i + 1 : i + 1 + w], "big")
        if v < {1: 24, 2: 0x100, 4: 0x10000, 8: 0x100000000}[w]:
            raise ValueError("non-shortest head")
        return major, v, i + 1 + w, 0

    def item(i: int, depth: int) -> int:
        major, arg, j, _ = head(i)
        if major in (0, 1, 7):
            return j
        if major in (2, 3):
            if j + arg > len(data):
                raise ValueError("truncated")
            if major == 3:
                data[j : j + arg].decode("utf-8")
            return j + arg
        if depth >= max_depth:
            raise ValueError("too deep")
        if major == 4:
            for _ in range(arg):
                j = item(j, depth + 1)
            return j
        if major == 5:
            seen = set()
            for _ in range(arg):
                k_end = item(j, depth + 1)
                key = cbor2.loads(data[j:k_end])
                marker = repr(key)
                if marker in seen:
                    raise ValueError("duplicate map key")
                seen.add(marker)
                j = item(k_end, depth + 1)
            return j
        return item(j, depth + 1)  # tag

    end = item(0, 0)
    if end != len(data):
        raise ValueError("trailing bytes")


# --- credential -------------------------------------------------------------------------------

@dataclass
class Schedule:
    tz: str
    windows: list[tuple[int, int, int]]

    def contains(self, at: int) -> bool:
        local = _dt.datetime.fromtimestamp(at, tz=zoneinfo.ZoneInfo(self.tz))
        weekday = local.isoweekday()
        minute = local.hour * 60 + local.minute
        return any(d == weekday and s <= minute < e for d, s, e in self.windows)


@dataclass
class Credential:
    iss: str
    sub: str
    aud: list[str]
    exp: int
    nbf: int
    iat: int | None
    cti: bytes
    holder: ec.EllipticCurvePublicKey
    schedule: Schedule | None
    office_mode: bool
    kind: str
    kid: bytes = b""
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        x, y = xy(self.holder)
        out = {
            "kid": self.kid.hex(), "iss": self.iss, "sub": self.sub, "aud": self.aud, "exp": self.exp,
            "nbf": self.nbf, "iat": self.iat, "cti": self.cti.hex(),
            "cnf": {"kty": 2, "crv": 1, "x": x.hex(), "y": y.hex()},
            "office_mode": self.office_mode, "kind": self.kind,
            "schedule": None if self.schedule is None else {
                "tz": self.schedule.tz, "windows": [list(w) for w in self.schedule.windows]},
        }
        return out


def parse_claims(claims: Any) -> Credential:
    """Claim rules of docs/PROTOCOL.md; raises Denied('malformed' | 'missing_proof_key')."""
    def bad(why: str):
        raise Denied("malformed", why)

    if not isinstance(claims, dict):
        bad("claims not a map")
    iss, sub = claims.get(ISS), claims.get(SUB)
    if not isinstance(iss, str) or not iss:
        bad("iss")
    if not isinstance(sub, str) or not sub:
        bad("sub")
    aud = claims.get(AUD)
    if isinstance(aud, str):
        aud = [aud]
    if not isinstance(aud, list) or not (1 <= len(aud) <= 64) or not all(isinstance(a, str) for a in aud):
        bad("aud")
    exp, nbf, iat = claims.get(EXP), claims.get(NBF), claims.get(IAT)
    if type(exp) is not int or type(nbf) is not int or not nbf < exp:
        bad("exp/nbf")
    if iat is not None and type(iat) is not int:
        bad("iat")
    cti = claims.get(CTI)
    if not isinstance(cti, bytes) or len(cti) != 16:
        bad("cti")
    office = claims.get(OFFICE_MODE, False)
    if not isinstance(office, bool):
        bad("office mode")
    kind = claims.get(KIND)
    if kind not in KINDS:
        bad("kind")
    schedule = None
    if SCHEDULE in claims:
        s = claims[SCHEDULE]
        if not (isinstance(s, list) and len(s) == 2 and isinstance(s[0], str) and isinstance(s[1], list)):
            bad("schedule shape")
        try:
            zoneinfo.ZoneInfo(s[0])
        except Exception:
            bad("schedule time zone")
        if len(s[1]) > 64:
            bad("too many windows")
        windows = []
        for w in s[1]:
            if not (isinstance(w, list) and len(w) == 3 and all(type(v) is int for v in w)):
                bad("window shape")
            d, a, b = w
            if not (1 <= d <= 7 and 0 <= a < b <= 1440):
                bad("window range")
            windows.append((d, a, b))
        schedule = Schedule(s[0], windows)
    for k in claims:
        if isinstance(k, int) and k in KEYWAY_PRIVATE and k not in (SCHEDULE, OFFICE_MODE, KIND):
            bad(f"unknown Keyway claim {k}")
    cnf = claims.get(CNF)
    if cnf is None:
        raise Denied("missing_proof_key")
    if not isinstance(cnf, dict):
        bad("cnf")
    if 1 not in cnf:
        raise Denied("missing_proof_key")
    try:
        holder = public_from_cose_key(cnf[1])
    except ValueError as e:
        bad(f"cnf: {e}")
    return Credential(iss, sub, aud, exp, nbf, iat, cti, holder, schedule, office, kind)


def open_cose_sign1(data: bytes, issuers: dict[bytes, ec.EllipticCurvePublicKey]) -> tuple[bytes, dict, bytes]:
    """Checks structure and headers with cbor2, the signature with pycose. Returns (kid, protected, payload)."""
    try:
        strict_check(data)
        obj = cbor2.loads(data)
    except Exception as e:
        raise Denied("malformed", f"cbor: {e}")
    if isinstance(obj, cbor2.CBORTag) and obj.tag == 61:
        obj = obj.value
    if not (isinstance(obj, cbor2.CBORTag) and obj.tag == 18):
        raise Denied("malformed", "not tag 18")
    parts = obj.value
    if not (isinstance(parts, list) and len(parts) == 4 and isinstance(parts[0], bytes) and isinstance(parts[1], dict)
            and isinstance(parts[2], bytes) and isinstance(parts[3], bytes)):
        raise Denied("malformed", "not a COSE_Sign1 array")
    try:
        protected = cbor2.loads(parts[0]) if parts[0] else {}
    except Exception:
        raise Denied("malformed", "protected header")
    unprotected = parts[1]
    if not isinstance(protected, dict):
        raise Denied("malformed", "protected header not a map")
    if set(protected) & set(unprotected):
        raise Denied("malformed", "label in both headers")
    if 2 in protected or 2 in unprotected:
        raise Denied("malformed", "crit")
    if 1 in unprotected:
        raise Denied("malformed", "alg unprotected")
    if 1 not in protected:
        raise Denied("malformed", "no alg")
    if protected[1] != -7:
        raise Denied("unsupported_algorithm", str(protected[1]))
    kid = protected.get(4, unprotected.get(4))
    if kid is not None and not isinstance(kid, bytes):
        raise Denied("malformed", "kid not bstr")
    if kid is None or kid not in issuers:
        raise Denied("unknown_issuer")

    # Signature: pycose, over the message exactly as received.
    msg = Sign1Message.decode(cbor2.dumps(obj))
    x, y = xy(issuers[kid])
    msg.key = EC2Key(crv=P256, x=x, y=y)
    try:
        ok = msg.verify_signature()
    except Exception:
        ok = False
    if not ok:
        raise Denied("bad_signature")
    return kid, protected, parts[2]


def verify(data: bytes, issuers: dict[bytes, ec.EllipticCurvePublicKey], site: str, lock: str, at: int,
           revoked: set[bytes] = frozenset(), skew: int = 60) -> Credential:
    """The Keyway verifier, in the document's order. Returns the credential or raises Denied."""
    kid, protected, payload = open_cose_sign1(data, issuers)
    if protected.get(3) not in CREDENTIAL_CONTENT_TYPES:
        raise Denied("malformed", "content type")
    try:
        strict_check(payload)
        claims = cbor2.loads(payload)
    except Exception as e:
        raise Denied("malformed", f"claims cbor: {e}")
    cred = parse_claims(claims)
    cred.kid = kid
    if cred.iss != site:
        raise Denied("wrong_site")
    if cred.cti in revoked:
        raise Denied("revoked")
    if at + skew < cred.nbf:
        raise Denied("not_yet_valid")
    if not at - skew < cred.exp:
        raise Denied("expired")
    if lock not in cred.aud:
        raise Denied("wrong_lock")
    if cred.schedule is not None and not cred.schedule.contains(at):
        raise Denied("outside_schedule")
    return cred


# --- other signed objects ---------------------------------------------------------------------

def verify_revocation_list(data: bytes, issuers: dict[bytes, ec.EllipticCurvePublicKey], site: str) -> dict:
    _, protected, payload = open_cose_sign1(data, issuers)
    assert protected.get(3) == "application/keyway-revocation-list"
    strict_check(payload)
    m = cbor2.loads(payload)
    assert m[1] == site and type(m[2]) is int and m[2] >= 0 and type(m[4]) is int
    ids = m[3]
    assert all(isinstance(k, bytes) and len(k) == 16 for k in ids) and len(set(ids)) == len(ids)
    assert ids == sorted(ids), "revoked key ids are sorted bytewise"
    return {"site": m[1], "version": m[2], "revoked": [k.hex() for k in ids], "iat": m[4]}


def verify_lock_certificate(data: bytes, issuers: dict[bytes, ec.EllipticCurvePublicKey], site: str) -> dict:
    _, protected, payload = open_cose_sign1(data, issuers)
    assert protected.get(3) == "application/keyway-lock-certificate"
    strict_check(payload)
    m = cbor2.loads(payload)
    assert m[1] == site and isinstance(m[2], str) and type(m[6]) is int and type(m[4]) is int and m[6] < m[4]
    key = public_from_cose_key(m[8][1])
    x, y = xy(key)
    return {"site": m[1], "lock": m[2], "iat": m[6], "exp": m[4], "x": x.hex(), "y": y.hex()}


# --- minting with python-cwt -------------------------------------------------------------------

def mint(issuer_pem: bytes, claims: dict, kid_in_unprotected: bool = False) -> bytes:
    """Signs `claims` (int-keyed) as a COSE_Sign1 CWT with python-cwt and the issuer's PKCS#8 key.
    By default the header is Keyway's ({1: -7, 4: kid} protected); with `kid_in_unprotected`, it is
    python-cwt's own default layout (alg protected, kid unprotected)."""
    import cwt
    from cwt import COSE, COSEKey

    priv = load_private_pem(issuer_pem)
    kid = kid_of(priv.public_key())
    key = COSEKey.from_pem(issuer_pem, kid=kid)
    if kid_in_unprotected:
        return cwt.encode_and_sign(claims, key)
    cose = COSE.new(alg_auto_inclusion=False, kid_auto_inclusion=False)
    payload = cbor2.dumps(claims, canonical=True)
    return cose.encode_and_sign(payload, key, protected={1: -7, 4: kid}, unprotected={})
