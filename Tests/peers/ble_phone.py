#!/usr/bin/env python3
"""An independent "phone" for Keyway's cross-process BLE loopback link.

Written from the Core spec (Vol 3 Parts A, F, G), not from the Swift code: it speaks L2CAP basic
frames (2-byte length LE, 2-byte CID 0x0004, ATT PDU) over a Unix or TCP socket and runs a GATT
client against a Keyway lock: MTU exchange, primary service discovery, characteristic and descriptor
discovery, subscription to Result, a long read of Reader Hello (Read + Read Blob), a long write of a
Presentation (Prepare Write + Execute Write), the Result notification, and one malformed request.
It prints one JSON object on stdout for the Swift test (Tests/BLETests/SocketBearerTests.swift).

usage: ble_phone.py unix:/path/to/socket | tcp:127.0.0.1:PORT  PRESENTATION_LENGTH
"""
import json
import socket
import struct
import sys

ATT_CID = 0x0004
LOCK_SERVICE = "B80C0001-1C1F-4153-94CB-D7B58DCACA15"
READER_HELLO = "B80C0002-1C1F-4153-94CB-D7B58DCACA15"
PRESENTATION = "B80C0003-1C1F-4153-94CB-D7B58DCACA15"
RESULT = "B80C0004-1C1F-4153-94CB-D7B58DCACA15"


def uuid_le(text):
    """128-bit UUID text -> 16 little-endian bytes."""
    return bytes.fromhex(text.replace("-", ""))[::-1]


def uuid_text(le):
    if len(le) == 2:
        return "0x%04X" % struct.unpack("<H", le)[0]
    b = le[::-1].hex().upper()
    return "%s-%s-%s-%s-%s" % (b[0:8], b[8:12], b[12:16], b[16:20], b[20:32])


class ATTError(Exception):
    def __init__(self, pdu):
        super().__init__(pdu.hex())
        self.request, self.handle, self.code = pdu[1], struct.unpack("<H", pdu[2:4])[0], pdu[4]


class Link:
    def __init__(self, address):
        kind, _, rest = address.partition(":")
        if kind == "unix":
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(rest)
        elif kind == "tcp":
            host, _, port = rest.rpartition(":")
            self.sock = socket.create_connection((host, int(port)))
        else:
            raise SystemExit("unknown address " + address)
        self.sock.settimeout(5)
        self.notifications = []
        self.mtu = 23

    def _exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError("link closed")
            buf += chunk
        return buf

    def send(self, pdu):
        self.sock.sendall(struct.pack("<HH", len(pdu), ATT_CID) + pdu)

    def receive(self):
        length, cid = struct.unpack("<HH", self._exact(4))
        if cid != ATT_CID:
            raise ValueError("unexpected CID 0x%04X" % cid)
        return self._exact(length)

    def request(self, pdu, response_opcode):
        """One ATT transaction; notifications arriving meanwhile are kept, indications confirmed."""
        self.send(pdu)
        while True:
            rsp = self.receive()
            if rsp[0] == 0x1B:
                self.notifications.append(rsp)
                continue
            if rsp[0] == 0x1D:
                self.notifications.append(rsp)
                self.send(b"\x1e")
                continue
            if rsp[0] == 0x01 and rsp[1] == pdu[0]:
                raise ATTError(rsp)
            if rsp[0] != response_opcode:
                raise ValueError("expected opcode 0x%02X, got %s" % (response_opcode, rsp.hex()))
            return rsp

    # GATT procedures

    def exchange_mtu(self, mtu):
        rsp = self.request(struct.pack("<BH", 0x02, mtu), 0x03)
        self.mtu = max(23, min(mtu, struct.unpack("<H", rsp[1:3])[0]))
        return self.mtu

    def primary_services(self):
        services, start = [], 1
        while start <= 0xFFFF:
            try:
                rsp = self.request(struct.pack("<BHHH", 0x10, start, 0xFFFF, 0x2800), 0x11)
            except ATTError as e:
                if e.code == 0x0A:
                    break
                raise
            size = rsp[1]
            for i in range(2, len(rsp), size):
                s, end = struct.unpack("<HH", rsp[i:i + 4])
                services.append((uuid_text(rsp[i + 4:i + size]), s, end))
            start = services[-1][2] + 1
        return services

    def characteristics(self, start, end):
        chars = []
        while start <= end:
            try:
                rsp = self.request(struct.pack("<BHHH", 0x08, start, end, 0x2803), 0x09)
            except ATTError as e:
                if e.code == 0x0A:
                    break
                raise
            size = rsp[1]
            for i in range(2, len(rsp), size):
                decl = struct.unpack("<H", rsp[i:i + 2])[0]
                props, value = struct.unpack("<BH", rsp[i + 2:i + 5])
                chars.append({"uuid": uuid_text(rsp[i + 5:i + size]), "props": props, "decl": decl, "value": value})
            start = chars[-1]["decl"] + 1
        return chars

    def descriptors(self, start, end):
        out = []
        while start <= end:
            try:
                rsp = self.request(struct.pack("<BHH", 0x04, start, end), 0x05)
            except ATTError as e:
                if e.code == 0x0A:
                    break
                raise
            step = 4 if rsp[1] == 1 else 18
            for i in range(2, len(rsp), step):
                h = struct.unpack("<H", rsp[i:i + 2])[0]
                out.append((h, uuid_text(rsp[i + 2:i + step])))
            start = out[-1][0] + 1
        return out

    def read_long(self, handle):
        value = self.request(struct.pack("<BH", 0x0A, handle), 0x0B)[1:]
        last = len(value)
        while last == self.mtu - 1:
            part = self.request(struct.pack("<BHH", 0x0C, handle, len(value)), 0x0D)[1:]
            value += part
            last = len(part)
        return value

    def write_long(self, handle, value, chunk):
        for offset in range(0, len(value), chunk):
            part = value[offset:offset + chunk]
            req = struct.pack("<BHH", 0x16, handle, offset) + part
            rsp = self.request(req, 0x17)
            if rsp[1:] != req[1:]:
                raise ValueError("prepare write echo mismatch at offset %d" % offset)
        self.request(b"\x18\x01", 0x19)

    def write(self, handle, value):
        self.request(struct.pack("<BH", 0x12, handle) + value, 0x13)


def main():
    link = Link(sys.argv[1])
    presentation_length = int(sys.argv[2])
    report = {"mtu": link.exchange_mtu(517)}
    services = link.primary_services()
    report["services"] = [s[0] for s in services]
    lock = next(s for s in services if s[0] == LOCK_SERVICE)
    chars = link.characteristics(lock[1], lock[2])
    by_uuid = {c["uuid"]: c for c in chars}
    report["characteristics"] = [c["uuid"] for c in chars]
    result = by_uuid[RESULT]
    next_decl = min([c["decl"] for c in chars if c["decl"] > result["decl"]] + [lock[2] + 1])
    descs = link.descriptors(result["value"] + 1, next_decl - 1)
    cccd = next(h for h, u in descs if u == "0x2902")
    link.write(cccd, b"\x01\x00")
    hello = link.read_long(by_uuid[READER_HELLO]["value"])
    report["hello_length"] = len(hello)
    report["hello_ok"] = hello == bytes(i % 251 for i in range(len(hello)))
    presentation = bytes((i * 7) & 0xFF for i in range(presentation_length))
    link.write_long(by_uuid[PRESENTATION]["value"], presentation, 100)
    while not link.notifications:
        pdu = link.receive()
        if pdu[0] == 0x1B:
            link.notifications.append(pdu)
    n = link.notifications[0]
    report["result_handle"] = struct.unpack("<H", n[1:3])[0]
    report["result_matches"] = result["value"] == report["result_handle"]
    report["result"] = n[3:].hex()
    link.send(b"\x0a\x01")  # Read Request with a one-byte handle: malformed
    report["malformed_answer"] = link.receive().hex()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
