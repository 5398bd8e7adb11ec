"""A Keyway phone in Python, written from docs/PROTOCOL.md alone (with `cryptography` and `cbor2`).

It connects to a lock's phone socket (`keyway serve --phone-socket DIR` binds `DIR/<lock id>`), speaks
ATT in L2CAP basic frames over it — the bytes a BLE link carries — and runs tap protocol version 2:
phone hello, reader hello (verified: lock certificate, signature, lock time, aud), presentation,
authenticated result — and, after a granted full tap, the FAST repeat tap (one MACed request, one
MACed result), falling back to the full exchange when the lock does not know its key. It is the proof that the document is enough to build a phone; it shares no code
with Keyway.

    phone = SocketPhone(credential=cred, holder_key=key, site_id="sf-mission", issuer_public_key=pem)
    outcome = phone.tap("/tmp/kw/main-entrance", now=unix_seconds)      # TapOutcome, mode "full"
    outcome = phone.tap("/tmp/kw/main-entrance", now=unix_seconds + 5)  # mode "fast" (the key the full tap made)

Command line (prints one JSON object):

    socket_phone.py SOCKET --credential-b64 B64 --holder-key PEM_FILE --site SITE --issuer-key PEM_FILE [--now UNIX] [--action 0|1|2]
"""
from __future__ import annotations

import argparse
import base64
import dataclasses
import hashlib
import hmac
import json
import os
import socket
import struct
import sys
import time

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# --- GATT, "The Keyway lock GATT service" -------------------------------------------------------------
SERVICE = "b80c0001-1c1f-4153-94cb-d7b58dcaca15"
READER_HELLO = "b80c0002-1c1f-4153-94cb-d7b58dcaca15"
PRESENTATION = "b80c0003-1c1f-4153-94cb-d7b58dcaca15"
RESULT = "b80c0004-1c1f-4153-94cb-d7b58dcaca15"
LOCK_INFO = "b80c0005-1c1f-4153-94cb-d7b58dcaca15"
FAST = "b80c0006-1c1f-4153-94cb-d7b58dcaca15"
CCCD = 0x2902
ATT_CID = 0x0004
MTU = 517

# --- ATT opcodes (Bluetooth Core Vol 3 Part F) ----------------------------------------------------------
ERROR_RSP, MTU_REQ, MTU_RSP = 0x01, 0x02, 0x03
FIND_INFO_REQ, FIND_INFO_RSP = 0x04, 0x05
READ_BY_TYPE_REQ, READ_BY_TYPE_RSP = 0x08, 0x09
READ_REQ, READ_RSP, READ_BLOB_REQ, READ_BLOB_RSP = 0x0A, 0x0B, 0x0C, 0x0D
READ_BY_GROUP_REQ, READ_BY_GROUP_RSP = 0x10, 0x11
WRITE_REQ, WRITE_RSP = 0x12, 0x13
PREPARE_REQ, PREPARE_RSP, EXECUTE_REQ, EXECUTE_RSP = 0x16, 0x17, 0x18, 0x19
NOTIFICATION = 0x1B

# --- Tap protocol v2 ------------------------------------------------------------------------------------
VERSION = 2
SKEW_S = 60
ACTION_OPEN, ACTION_OFFICE_ON, ACTION_OFFICE_OFF = 0, 1, 2
CERT_CONTENT_TYPE = "application/keyway-lock-certificate"
P256_P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


class ATTError(Exception):
    """An ATT Error Response: the request opcode, the handle and the error code (0x80… application)."""

    def __init__(self, request: int, handle: int, code: int):
        super().__init__(f"ATT error 0x{code:02x} on request 0x{request:02x}, handle 0x{handle:04x}")
        self.request, self.handle, self.code = request, handle, code


class PhoneRefused(Exception):
    """The phone refused the lock before revealing anything (PROTOCOL.md step 3); `reason` is the code."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclasses.dataclass
class TapOutcome:
    granted: bool
    reason: str | None
    open_ms: int
    lock_id: str
    lock_time: int | None          # the reader hello's (None for a FAST tap: there is no hello)
    mtu: int
    result_hex: str
    mode: str = "full"             # "full" or "fast"
    fast_fallback: str | None = None   # why a phone holding a FAST key ran the full exchange


@dataclasses.dataclass
class FastKey:
    """What the phone keeps after a granted full tap ("FAST repeat tap", making the key)."""
    key_id: bytes
    key: bytes
    credential_hash: bytes
    counter: int = 0


# --- ATT over a stream socket with L2CAP basic frames ("Bearers and the cross-process loopback link") --

class ATTLink:
    """One connection: L2CAP basic frames (length LE16, CID LE16 = 0x0004, ATT PDU), one request at a time."""

    def __init__(self, path: str, timeout: float = 10.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buffer = b""
        self.notifications: list[tuple[int, bytes]] = []
        self.mtu = 23

    def close(self):
        self.sock.close()

    def send(self, pdu: bytes):
        self.sock.sendall(struct.pack("<HH", len(pdu), ATT_CID) + pdu)

    def receive(self) -> bytes:
        while True:
            if len(self.buffer) >= 4:
                length, cid = struct.unpack_from("<HH", self.buffer)
                if len(self.buffer) >= 4 + length:
                    pdu, self.buffer = self.buffer[4:4 + length], self.buffer[4 + length:]
                    if cid != ATT_CID:
                        raise ConnectionError(f"frame on CID 0x{cid:04x}")
                    return pdu
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the lock closed the connection")
            self.buffer += chunk

    def request(self, pdu: bytes, expect: int) -> bytes:
        """Sends a request and returns the parameters of its response; notifications met on the way are kept."""
        self.send(pdu)
        while True:
            rsp = self.receive()
            if rsp[0] == NOTIFICATION:
                self.notifications.append((struct.unpack_from("<H", rsp, 1)[0], rsp[3:]))
                continue
            if rsp[0] == ERROR_RSP and rsp[1] == pdu[0]:
                raise ATTError(rsp[1], struct.unpack_from("<H", rsp, 2)[0], rsp[4])
            if rsp[0] == expect:
                return rsp[1:]
            raise ConnectionError(f"unexpected ATT PDU 0x{rsp[0]:02x} waiting for 0x{expect:02x}")

    def notification(self, handle: int) -> bytes:
        while True:
            for i, (h, value) in enumerate(self.notifications):
                if h == handle:
                    del self.notifications[i]
                    return value
            rsp = self.receive()
            if rsp[0] == NOTIFICATION:
                self.notifications.append((struct.unpack_from("<H", rsp, 1)[0], rsp[3:]))

    # GATT procedures -----------------------------------------------------------------------------------

    def exchange_mtu(self, mtu: int = MTU) -> int:
        server = struct.unpack("<H", self.request(bytes([MTU_REQ]) + struct.pack("<H", mtu), MTU_RSP))[0]
        self.mtu = max(23, min(mtu, server))
        return self.mtu

    @staticmethod
    def uuid_of(raw: bytes) -> str:
        if len(raw) == 2:
            return f"{struct.unpack('<H', raw)[0]:04x}"
        b = raw[::-1].hex()
        return f"{b[0:8]}-{b[8:12]}-{b[12:16]}-{b[16:20]}-{b[20:32]}"

    def services(self) -> list[tuple[int, int, str]]:
        out, start = [], 1
        while start <= 0xFFFF:
            try:
                rsp = self.request(bytes([READ_BY_GROUP_REQ]) + struct.pack("<HHH", start, 0xFFFF, 0x2800), READ_BY_GROUP_RSP)
            except ATTError as e:
                if e.code == 0x0A:          # Attribute Not Found: done
                    break
                raise
            size, data = rsp[0], rsp[1:]
            for i in range(0, len(data), size):
                s, e = struct.unpack_from("<HH", data, i)
                out.append((s, e, self.uuid_of(data[i + 4:i + size])))
                start = e + 1
        return out

    def characteristics(self, first: int, last: int) -> dict[str, int]:
        """UUID → value handle within a service."""
        out, start = {}, first
        while start <= last:
            try:
                rsp = self.request(bytes([READ_BY_TYPE_REQ]) + struct.pack("<HHH", start, last, 0x2803), READ_BY_TYPE_RSP)
            except ATTError as e:
                if e.code == 0x0A:
                    break
                raise
            size, data = rsp[0], rsp[1:]
            for i in range(0, len(data), size):
                decl = struct.unpack_from("<H", data, i)[0]
                value_handle = struct.unpack_from("<H", data, i + 3)[0]
                out[self.uuid_of(data[i + 5:i + size])] = value_handle
                start = decl + 1
        return out

    def descriptor(self, first: int, last: int, uuid16: int) -> int:
        rsp = self.request(bytes([FIND_INFO_REQ]) + struct.pack("<HH", first, last), FIND_INFO_RSP)
        width = 4 if rsp[0] == 1 else 18
        for i in range(1, len(rsp), width):
            handle = struct.unpack_from("<H", rsp, i)[0]
            if rsp[0] == 1 and struct.unpack_from("<H", rsp, i + 2)[0] == uuid16:
                return handle
        raise ConnectionError(f"descriptor 0x{uuid16:04x} not found in 0x{first:04x}…0x{last:04x}")

    def write(self, handle: int, value: bytes):
        if len(value) <= self.mtu - 3:
            self.request(bytes([WRITE_REQ]) + struct.pack("<H", handle) + value, WRITE_RSP)
            return
        # Long write: Prepare Write Requests (echoed), then Execute Write 0x01.
        step = self.mtu - 5
        for off in range(0, len(value), step):
            part = value[off:off + step]
            echo = self.request(bytes([PREPARE_REQ]) + struct.pack("<HH", handle, off) + part, PREPARE_RSP)
            if echo != struct.pack("<HH", handle, off) + part:
                raise ConnectionError("prepare write echo differs")
        self.request(bytes([EXECUTE_REQ, 0x01]), EXECUTE_RSP)

    def read_long(self, handle: int) -> bytes:
        value = self.request(bytes([READ_REQ]) + struct.pack("<H", handle), READ_RSP)
        if len(value) < self.mtu - 1:
            return value
        while True:
            part = self.request(bytes([READ_BLOB_REQ]) + struct.pack("<HH", handle, len(value)), READ_BLOB_RSP)
            value += part
            if len(part) < self.mtu - 1:
                return value


# --- Cryptography (§2, §3, key schedule) ---------------------------------------------------------------

def deterministic(obj) -> bytes:
    """RFC 8949 §4.2.1 core deterministic encoding (the tap messages use only small unsigned keys)."""
    return cbor2.dumps(obj, canonical=True)


def point_bytes(public_key: ec.EllipticCurvePublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def point_from(raw: bytes) -> ec.EllipticCurvePublicKey:
    """A 65-byte uncompressed P-256 point with x, y < p (PROTOCOL.md 1.2.1); anything else raises."""
    if len(raw) != 65 or raw[0] != 0x04:
        raise ValueError("not an uncompressed point")
    if int.from_bytes(raw[1:33], "big") >= P256_P or int.from_bytes(raw[33:], "big") >= P256_P:
        raise ValueError("coordinate ≥ p")
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)


def cose_key_to_public(key: dict) -> ec.EllipticCurvePublicKey:
    """§2.2: kty 2, crv 1, 32-byte x and y, no d."""
    if key.get(1) != 2 or key.get(-1) != 1 or -4 in key:
        raise ValueError("not an EC2 P-256 public COSE_Key")
    x, y = key.get(-2), key.get(-3)
    if not (isinstance(x, bytes) and isinstance(y, bytes) and len(x) == 32 and len(y) == 32):
        raise ValueError("COSE_Key coordinates")
    return point_from(b"\x04" + x + y)


def sign_rs(private_key: ec.EllipticCurvePrivateKey, message: bytes) -> bytes:
    """ES256 as r ‖ s (64 bytes), low-S (s ≤ n/2)."""
    r, s = decode_dss_signature(private_key.sign(message, ec.ECDSA(hashes.SHA256())))
    if s > P256_N // 2:
        s = P256_N - s
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def verify_rs(public_key: ec.EllipticCurvePublicKey, signature: bytes, message: bytes, low_s: bool) -> bool:
    if len(signature) != 64:
        return False
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    if low_s and s > P256_N // 2:
        return False
    try:
        public_key.verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256()))
        return True
    except InvalidSignature:
        return False


def kid_of(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """§2.1: SHA-256 of the SubjectPublicKeyInfo DER, first 8 bytes."""
    spki = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).digest()[:8]


def verify_lock_certificate(cert: bytes, issuer: ec.EllipticCurvePublicKey, site_id: str, lock_id: str, now: int):
    """§7 (and §3): returns the lock's device public key; raises PhoneRefused with the document's reason."""
    try:
        msg = cbor2.loads(cert)
        if isinstance(msg, cbor2.CBORTag) and msg.tag == 61:
            msg = msg.value
        if not (isinstance(msg, cbor2.CBORTag) and msg.tag == 18 and isinstance(msg.value, list) and len(msg.value) == 4):
            raise ValueError("not a tagged COSE_Sign1")
        protected_bytes, unprotected, payload, signature = msg.value
        protected = cbor2.loads(protected_bytes) if protected_bytes else {}
    except (ValueError, cbor2.CBORDecodeError) as e:
        raise PhoneRefused("lock_certificate_malformed", str(e))
    if protected.get(1) != -7:
        raise PhoneRefused("lock_certificate_unsupported_algorithm")
    kid = protected.get(4, unprotected.get(4) if isinstance(unprotected, dict) else None)
    if kid != kid_of(issuer):
        raise PhoneRefused("lock_certificate_unknown_issuer")
    to_be_signed = deterministic(["Signature1", protected_bytes, b"", payload])
    if not verify_rs(issuer, signature, to_be_signed, low_s=False):
        raise PhoneRefused("lock_certificate_bad_signature")
    if protected.get(3) != CERT_CONTENT_TYPE:
        raise PhoneRefused("lock_certificate_malformed", "content type")
    try:
        claims = cbor2.loads(payload)
        device_key = cose_key_to_public(claims[8][1])
        iss, sub, exp, iat = claims[1], claims[2], claims[4], claims[6]
    except (KeyError, TypeError, ValueError, cbor2.CBORDecodeError) as e:
        raise PhoneRefused("lock_certificate_malformed", str(e))
    if iss != site_id:
        raise PhoneRefused("lock_certificate_wrong_site")
    if sub != lock_id:
        raise PhoneRefused("lock_certificate_wrong_lock")
    if now < iat - SKEW_S:
        raise PhoneRefused("lock_certificate_not_yet_valid")
    if now >= exp + SKEW_S:
        raise PhoneRefused("lock_certificate_expired")
    return device_key


def credential_audience(credential: bytes) -> list[str]:
    """The `aud` claim (§4.1) of our own credential: a phone reveals it only to a lock it names."""
    msg = cbor2.loads(credential)
    claims = cbor2.loads(msg.value[2])
    aud = claims[3]
    return [aud] if isinstance(aud, str) else list(aud)


def fragments(message: bytes, chunk: int) -> list[bytes]:
    """`[index, flags] ‖ chunk`, flags bit 0 = last (PROTOCOL.md step 4)."""
    parts = [message[i:i + chunk] for i in range(0, len(message), chunk)] or [b""]
    return [bytes([i, 1 if i == len(parts) - 1 else 0]) + p for i, p in enumerate(parts)]


# --- The phone -----------------------------------------------------------------------------------------

class SocketPhone:
    def __init__(self, credential: bytes, holder_key: ec.EllipticCurvePrivateKey, site_id: str,
                 issuer_public_key: ec.EllipticCurvePublicKey):
        self.credential = credential
        self.holder_key = holder_key
        self.site_id = site_id
        self.issuer = issuer_public_key
        self.fast_keys: dict[str, FastKey] = {}      # lock id → its FAST key

    def connect(self, path: str) -> tuple[ATTLink, dict[str, int], int]:
        """Step 1: connect, MTU, discover the lock service, subscribe to Result."""
        link = ATTLink(path)
        link.exchange_mtu(MTU)
        service = next(((s, e) for s, e, u in link.services() if u == SERVICE), None)
        if service is None:
            raise ConnectionError("no Keyway lock service")
        chars = link.characteristics(*service)
        result = chars[RESULT]
        # The Result characteristic's descriptors lie between its value and the next declaration.
        following = sorted(h for h in chars.values() if h > result)
        cccd = link.descriptor(result + 1, (following[0] - 2) if following else service[1], CCCD)
        link.write(cccd, struct.pack("<H", 0x0001))
        return link, chars, service[1]

    def tap(self, path: str, now: int, action: int = ACTION_OPEN, fast: bool = True) -> TapOutcome:
        """One tap: FAST when the phone holds a key for the lock it reached (and `fast`), else — or when
        the lock does not take the key — the full exchange, on the same connection."""
        link, chars, _ = self.connect(path)
        try:
            fallback = None
            if fast and self.fast_keys:
                # Which lock is this? Lock Info, key 2 ("Step F1").
                lock_id = cbor2.loads(link.read_long(chars[LOCK_INFO]))[2]
                key = self.fast_keys.get(lock_id)
                if key is None:
                    fallback = "no_fast_key"
                elif key.credential_hash != hashlib.sha256(self.credential).digest():
                    del self.fast_keys[lock_id]
                    fallback = "credential_changed"
                else:
                    try:
                        return self._fast(link, chars, lock_id, key, now, action)
                    except ATTError as e:
                        if e.code not in (0x86, 0x87):
                            raise
                        del self.fast_keys[lock_id]          # the lock will not take it again
                        fallback = "fast_key_unknown" if e.code == 0x86 else "revocation_list_changed"
            elif fast:
                fallback = "no_fast_key"
            outcome = self._tap(link, chars, now, action)
            outcome.fast_fallback = fallback
            return outcome
        finally:
            link.close()

    def _fast(self, link: ATTLink, chars: dict[str, int], lock_id: str, key: FastKey, now: int, action: int) -> TapOutcome:
        # Step F2: the counter is spent before the request leaves.
        key.counter += 1
        unsigned = {1: VERSION, 2: key.key_id, 3: key.counter, 4: now, 5: action}
        mac = hmac.new(key.key, deterministic(unsigned), hashlib.sha256).digest()[:16]
        request = deterministic({**unsigned, 6: mac})
        session = HKDF(algorithm=hashes.SHA256(), length=16, salt=b"",
                       info=b"KeywayFast2 session" + hashlib.sha256(request).digest()).derive(key.key)
        link.write(chars[FAST], request)
        # Step F4: the result, MACed under K_s.
        result, message = self._result(link, chars, session)
        return TapOutcome(granted=result[2], reason=result.get(3), open_ms=result[4], lock_id=lock_id,
                          lock_time=None, mtu=link.mtu, result_hex=message.hex(), mode="fast")

    def _result(self, link: ATTLink, chars: dict[str, int], mac_key: bytes) -> tuple[dict, bytes]:
        """The result (step 5 / F4): fragments reassembled in order, deterministic, MAC checked."""
        message, index = b"", 0
        while True:
            piece = link.notification(chars[RESULT])
            if piece[0] != index:
                raise ConnectionError(f"result fragment {piece[0]}, expected {index}")
            message += piece[2:]
            index += 1
            if piece[1] & 1:
                break
        result = cbor2.loads(message)
        if deterministic(result) != message or 5 not in result:
            raise ConnectionError(f"result not authenticated: {message.hex()}")
        unsigned = {k: v for k, v in result.items() if k != 5}
        if not hmac.compare_digest(hmac.new(mac_key, deterministic(unsigned), hashlib.sha256).digest()[:16], result[5]):
            raise ConnectionError("result MAC does not verify")
        return result, message

    def _tap(self, link: ATTLink, chars: dict[str, int], now: int, action: int) -> TapOutcome:
        # Step 2: phone hello.
        e_p = ec.generate_private_key(ec.SECP256R1())
        e_p_bytes = point_bytes(e_p.public_key())
        transaction = os.urandom(16)
        phone_hello = deterministic({1: VERSION, 2: e_p_bytes, 3: transaction})
        link.write(chars[READER_HELLO], phone_hello)

        # Step 3: reader hello, checked in the document's order before anything is revealed.
        reader_hello = link.read_long(chars[READER_HELLO])
        try:
            hello = cbor2.loads(reader_hello)
            if not isinstance(hello, dict) or set(hello) != {1, 2, 3, 4, 5, 6, 7} or deterministic(hello) != reader_hello:
                raise ValueError("not a strict ReaderHello")
            if hello[1] != VERSION:
                raise ValueError("version")
            lock_id, nonce, lock_time, e_l_bytes, certificate, signature = hello[2], hello[3], hello[4], hello[5], hello[6], hello[7]
            if not (isinstance(lock_id, str) and isinstance(nonce, bytes) and len(nonce) == 16 and isinstance(lock_time, int)
                    and isinstance(e_l_bytes, bytes) and len(e_l_bytes) == 65 and isinstance(certificate, bytes)
                    and isinstance(signature, bytes) and len(signature) == 64):
                raise ValueError("field types")
        except (ValueError, cbor2.CBORDecodeError) as e:
            raise PhoneRefused("malformed_hello", str(e))
        device_key = verify_lock_certificate(certificate, self.issuer, self.site_id, lock_id, now)
        reader_tbs = deterministic(["KeywayReaderHello2", self.site_id, lock_id, transaction, nonce, lock_time, e_p_bytes, e_l_bytes])
        if not verify_rs(device_key, signature, reader_tbs, low_s=True):
            raise PhoneRefused("bad_hello_signature")
        if abs(lock_time - now) > SKEW_S:
            raise PhoneRefused("lock_clock_skewed", f"lock {lock_time}, phone {now}")
        if lock_id not in credential_audience(self.credential):
            raise PhoneRefused("lock_not_in_credential", lock_id)
        try:
            e_l = point_from(e_l_bytes)
        except ValueError as e:
            raise PhoneRefused("malformed_hello", str(e))

        # Key schedule.
        z = e_p.exchange(ec.ECDH(), e_l)
        th = hashlib.sha256(phone_hello + reader_hello).digest()
        okm = HKDF(algorithm=hashes.SHA256(), length=76, salt=transaction + nonce, info=b"KeywayTap2 keys" + th).derive(z)
        k_p, n_p, k_r, exporter = okm[0:16], okm[16:28], okm[28:44], okm[44:76]

        # Step 4: presentation, fragmented (chunk ≤ 510 bytes; each fragment one ATT write).
        proof = sign_rs(self.holder_key, deterministic(["KeywayTapProof2", th, action]))
        payload = deterministic({1: VERSION, 2: self.credential, 3: action, 4: proof})
        presentation = deterministic({1: VERSION, 2: AESGCM(k_p).encrypt(n_p, payload, th)})
        for fragment in fragments(presentation, 510):
            link.write(chars[PRESENTATION], fragment)

        # Step 5: the result, reassembled from notifications, authenticated by its MAC under K_r.
        result, message = self._result(link, chars, k_r)
        if result[2]:
            # Granted: the FAST key for the next tap at this lock ("Making the key").
            credential_hash = hashlib.sha256(self.credential).digest()
            cti = cbor2.loads(cbor2.loads(self.credential).value[2])[7]
            binding = deterministic([self.site_id, lock_id, credential_hash])
            fast = HKDF(algorithm=hashes.SHA256(), length=48, salt=cti, info=b"KeywayFast2 key" + binding).derive(exporter)
            self.fast_keys[lock_id] = FastKey(key_id=fast[:16], key=fast[16:], credential_hash=credential_hash)
        return TapOutcome(granted=result[2], reason=result.get(3), open_ms=result[4], lock_id=lock_id,
                          lock_time=lock_time, mtu=link.mtu, result_hex=message.hex())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("socket")
    p.add_argument("--credential-b64", required=True)
    p.add_argument("--holder-key", required=True, help="PEM file of the phone's P-256 private key")
    p.add_argument("--site", required=True)
    p.add_argument("--issuer-key", required=True, help="PEM file of the site issuer's public key (GET /v1/site issuer_public_key)")
    p.add_argument("--now", type=int, default=None, help="the phone's clock, Unix seconds (default: now)")
    p.add_argument("--action", type=int, default=ACTION_OPEN)
    a = p.parse_args(argv)
    with open(a.holder_key, "rb") as f:
        holder = serialization.load_pem_private_key(f.read(), None)
    with open(a.issuer_key, "rb") as f:
        issuer = serialization.load_pem_public_key(f.read())
    phone = SocketPhone(base64.b64decode(a.credential_b64), holder, a.site, issuer)
    try:
        outcome = phone.tap(a.socket, a.now if a.now is not None else int(time.time()), a.action)
    except PhoneRefused as e:
        print(json.dumps({"result": "phone_refused", "reason": e.reason}))
        return 1
    print(json.dumps({"result": "granted" if outcome.granted else "denied", **dataclasses.asdict(outcome)}))
    return 0 if outcome.granted else 1


if __name__ == "__main__":
    sys.exit(main())
