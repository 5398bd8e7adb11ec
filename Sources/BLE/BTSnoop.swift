#if canImport(Glibc)
import Glibc
#endif
import Foundation

// btsnoop capture files (the format of Symbian's btsnoop, read by Wireshark, btmon and Android):
// a 16-byte file header ("btsnoop\0", version 1, datalink) then records of
//   original length (4) | included length (4) | flags (4) | cumulative drops (4) | timestamp (8)
// all big-endian; the timestamp counts microseconds since midnight, January 1st, 0 AD.
// With datalink 1002 (HCI UART, "H4") every packet starts with its H4 type byte; ATT PDUs travel
// as ACL data (0x02): ACL header (handle + PB/BC flags, length), L2CAP header (length, CID 0x0004).

/// Direction of a captured packet, seen from the host whose link is captured.
public enum BTSnoopDirection: Sendable, Equatable {
    /// Host to controller (this device transmits).
    case sent
    /// Controller to host (this device receives).
    case received
}

/// The LE role of the captured host in its connection.
public enum BTSnoopRole: UInt8, Sendable {
    case central = 0x00
    case peripheral = 0x01
}

/// Problems writing or reading a capture.
public enum BTSnoopError: Error, Equatable, Sendable, CustomStringConvertible {
    case io(String)
    case invalidArgument(String)
    case notBTSnoop
    case unsupportedVersion(UInt32)
    case truncated(offset: Int)
    case recordTooLong(length: Int, maximum: Int)
    case tooManyRecords(maximum: Int)
    case fileTooLarge(size: Int, maximum: Int)
    case unsupportedDatalink(UInt32)
    case malformedPacket(record: Int, reason: String)

    public var description: String {
        switch self {
        case .io(let s): return "btsnoop I/O: \(s)"
        case .invalidArgument(let s): return s
        case .notBTSnoop: return "not a btsnoop file"
        case .unsupportedVersion(let v): return "btsnoop version \(v) (only 1 exists)"
        case .truncated(let o): return "btsnoop file truncated at byte \(o)"
        case .recordTooLong(let l, let m): return "btsnoop record of \(l) bytes exceeds \(m)"
        case .tooManyRecords(let m): return "more than \(m) btsnoop records"
        case .fileTooLarge(let s, let m): return "btsnoop file of \(s) bytes exceeds \(m)"
        case .unsupportedDatalink(let d): return "datalink \(d) (ATT extraction needs 1002, H4)"
        case .malformedPacket(let r, let why): return "record \(r): \(why)"
        }
    }
}

public enum BTSnoop {
    /// Datalink type of HCI UART (H4) captures.
    public static let datalinkH4: UInt32 = 1002
    /// Microseconds from 0 AD (the btsnoop epoch) to the Unix epoch, as Wireshark and BlueZ use it.
    public static let unixEpochOffsetMicroseconds: Int64 = 0x00DC_DDB3_0F2F_8000
    static let magic: [UInt8] = Array("btsnoop".utf8) + [0]
    /// H4 packet types.
    static let h4ACL: UInt8 = 0x02
    static let h4Event: UInt8 = 0x04
}

/// Writes a btsnoop (datalink 1002, H4) capture of ATT traffic: each PDU wrapped in an L2CAP basic
/// frame on CID 0x0004, fragmented into HCI ACL packets of at most `aclDataSize` bytes.
/// Thread-safe; records appear in call order. Timestamps come from the injected clock.
///
/// Write errors never disturb the link being captured: the first one stops the capture and is kept
/// in `writeError`.
public final class BTSnoopWriter: Sendable {
    /// The system wall clock, for captures of real time (pass a simulated clock for simulated time).
    public static let systemClock: @Sendable () -> Date = { Date() }

    /// Largest ACL data payload per packet (LE controllers: 27…251; default 27, the LE minimum).
    public let aclDataSize: Int
    private let clock: @Sendable () -> Date

    private struct State {
        var fd: Int32       // -1: in memory
        var memory: [UInt8] = []
        var writeError: BTSnoopError?
        var nextHandle: UInt16 = 0x0040
        var closed = false
    }
    private let state: Locked<State>

    /// A capture written to `path` (created or truncated).
    public init(path: String, aclDataSize: Int = 27, clock: @escaping @Sendable () -> Date) throws(BTSnoopError) {
        try Self.validate(aclDataSize)
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .io("open \(path): \(String(cString: strerror(errno)))") }
        self.aclDataSize = aclDataSize
        self.clock = clock
        state = Locked(State(fd: fd))
        writeRaw(Self.fileHeader())
        if let e = writeError { throw e }
    }

    /// A capture kept in memory (`capturedBytes`).
    public init(aclDataSize: Int = 27, clock: @escaping @Sendable () -> Date) throws(BTSnoopError) {
        try Self.validate(aclDataSize)
        self.aclDataSize = aclDataSize
        self.clock = clock
        state = Locked(State(fd: -1))
        writeRaw(Self.fileHeader())
    }

    deinit {
        state.withLock { s in if s.fd >= 0 { Glibc.close(s.fd); s.fd = -1 } }
    }

    private static func validate(_ size: Int) throws(BTSnoopError) {
        guard (27...0xFFFF).contains(size) else { throw .invalidArgument("ACL data size \(size) outside 27…65535") }
    }

    private static func fileHeader() -> [UInt8] {
        var h = BTSnoop.magic
        h.appendBE32(1)
        h.appendBE32(BTSnoop.datalinkH4)
        return h
    }

    /// The capture so far (in-memory captures only; empty for file captures).
    public var capturedBytes: [UInt8] { state.withLock { $0.memory } }

    /// The first write error, if the capture stopped.
    public var writeError: BTSnoopError? { state.withLock { $0.writeError } }

    /// A fresh ACL connection handle for one captured connection (0x0040, 0x0041, …).
    public func allocateConnectionHandle() -> UInt16 {
        state.withLock { s in
            defer { s.nextHandle = s.nextHandle >= 0x0EFF ? 0x0040 : s.nextHandle + 1 }
            return s.nextHandle
        }
    }

    /// Records one ATT PDU as ACL fragments.
    public func recordATT(_ pdu: [UInt8], direction: BTSnoopDirection, connectionHandle: UInt16) {
        var l2cap: [UInt8] = []
        l2cap.reserveCapacity(4 + pdu.count)
        l2cap.appendLE(UInt16(truncatingIfNeeded: pdu.count))
        l2cap.appendLE(ATT.fixedChannelID)
        l2cap.append(contentsOf: pdu)
        let micros = timestamp()
        var out: [UInt8] = []
        var offset = 0
        var first = true
        while offset < l2cap.count {
            let n = min(aclDataSize, l2cap.count - offset)
            // Packet boundary: 0b00 first non-flushable (host→controller, as BlueZ sends LE data),
            // 0b10 first flushable (controller→host), 0b01 continuing fragment.
            let pb: UInt16 = first ? (direction == .sent ? 0b00 : 0b10) : 0b01
            var packet: [UInt8] = [BTSnoop.h4ACL]
            packet.appendLE((connectionHandle & 0x0FFF) | (pb << 12))
            packet.appendLE(UInt16(n))
            packet.append(contentsOf: l2cap[offset..<(offset + n)])
            appendRecord(&out, packet, flags: direction == .sent ? 0 : 1, micros: micros)
            offset += n
            first = false
        }
        writeRaw(out)
    }

    /// Records an HCI LE Connection Complete event (gives Wireshark the role and peer address).
    /// - Parameters:
    ///   - peerAddress: "AA:BB:CC:DD:EE:FF".
    ///   - intervalUnits: connection interval in 1.25 ms units; `supervisionTimeoutUnits` in 10 ms.
    public func recordLEConnectionComplete(connectionHandle: UInt16, role: BTSnoopRole, peerAddress: String,
                                           peerAddressRandom: Bool = true, intervalUnits: UInt16 = 24,
                                           supervisionTimeoutUnits: UInt16 = 72) throws(BTSnoopError) {
        let parts = peerAddress.split(separator: ":")
        let bytes = parts.compactMap { $0.count == 2 ? UInt8($0, radix: 16) : nil }
        guard parts.count == 6, bytes.count == 6 else { throw .invalidArgument("Bluetooth address \(peerAddress)") }
        var params: [UInt8] = [0x01, 0x00]                 // subevent LE Connection Complete, status success
        params.appendLE(connectionHandle & 0x0FFF)
        params.append(role.rawValue)
        params.append(peerAddressRandom ? 0x01 : 0x00)
        params.append(contentsOf: bytes.reversed())       // little-endian on the wire
        params.appendLE(intervalUnits)
        params.appendLE(0)                                 // peripheral latency
        params.appendLE(supervisionTimeoutUnits)
        params.append(0x00)                                // central clock accuracy
        recordEvent(code: 0x3E, params)
    }

    /// Records an HCI Disconnection Complete event (reason 0x13: remote user terminated).
    public func recordDisconnectionComplete(connectionHandle: UInt16, reason: UInt8 = 0x13) {
        var params: [UInt8] = [0x00]
        params.appendLE(connectionHandle & 0x0FFF)
        params.append(reason)
        recordEvent(code: 0x05, params)
    }

    /// Stops the capture and closes the file.
    public func close() {
        state.withLock { s in
            s.closed = true
            if s.fd >= 0 { Glibc.close(s.fd); s.fd = -1 }
        }
    }

    private func recordEvent(code: UInt8, _ params: [UInt8]) {
        var out: [UInt8] = []
        appendRecord(&out, [BTSnoop.h4Event, code, UInt8(params.count)] + params, flags: 0b11, micros: timestamp())
        writeRaw(out)
    }

    private func timestamp() -> Int64 {
        let unixMicros = Int64((clock().timeIntervalSince1970 * 1_000_000).rounded())
        return unixMicros + BTSnoop.unixEpochOffsetMicroseconds
    }

    private func appendRecord(_ out: inout [UInt8], _ packet: [UInt8], flags: UInt32, micros: Int64) {
        out.appendBE32(UInt32(packet.count))  // original length
        out.appendBE32(UInt32(packet.count))  // included length
        out.appendBE32(flags)
        out.appendBE32(0)                     // cumulative drops
        out.appendBE32(UInt32(truncatingIfNeeded: UInt64(bitPattern: micros) >> 32))
        out.appendBE32(UInt32(truncatingIfNeeded: UInt64(bitPattern: micros)))
        out.append(contentsOf: packet)
    }

    private func writeRaw(_ bytes: [UInt8]) {
        state.withLock { s in
            guard !s.closed, s.writeError == nil else { return }
            if s.fd < 0 { s.memory.append(contentsOf: bytes); return }
            var off = 0
            while off < bytes.count {
                let n = bytes.withUnsafeBytes { write(s.fd, $0.baseAddress! + off, $0.count - off) }
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else {
                    s.writeError = .io("write: \(String(cString: strerror(errno)))")
                    return
                }
                off += n
            }
        }
    }
}

/// One btsnoop record.
public struct BTSnoopRecord: Sendable, Equatable {
    public let originalLength: Int
    public let flags: UInt32
    public let cumulativeDrops: UInt32
    /// Microseconds since 0 AD (subtract `BTSnoop.unixEpochOffsetMicroseconds` for Unix time).
    public let timestamp: Int64
    public let packet: [UInt8]

    public var direction: BTSnoopDirection { flags & 1 == 0 ? .sent : .received }
    public var isCommandOrEvent: Bool { flags & 2 != 0 }
    public var date: Date {
        Date(timeIntervalSince1970: Double(timestamp - BTSnoop.unixEpochOffsetMicroseconds) / 1_000_000)
    }
}

/// An ATT PDU reassembled from a capture.
public struct BTSnoopATTPDU: Sendable, Equatable {
    public let direction: BTSnoopDirection
    public let connectionHandle: UInt16
    /// Timestamp of the packet that completed the PDU (µs since 0 AD).
    public let timestamp: Int64
    public let pdu: [UInt8]
}

/// Reads a btsnoop capture, bounded in file size, record count and record length.
public struct BTSnoopReader: Sendable {
    public let datalink: UInt32
    public let records: [BTSnoopRecord]

    /// Parses a whole capture.
    public init(bytes: [UInt8], maximumRecords: Int = 1_000_000, maximumRecordLength: Int = 0xFFFF + 5) throws(BTSnoopError) {
        guard bytes.count >= 16, Array(bytes[0..<8]) == BTSnoop.magic else { throw .notBTSnoop }
        let version = bytes.readBE32(at: 8)
        guard version == 1 else { throw .unsupportedVersion(version) }
        datalink = bytes.readBE32(at: 12)
        var records: [BTSnoopRecord] = []
        var i = 16
        while i < bytes.count {
            guard records.count < maximumRecords else { throw .tooManyRecords(maximum: maximumRecords) }
            guard i + 24 <= bytes.count else { throw .truncated(offset: i) }
            let original = Int(bytes.readBE32(at: i))
            let included = Int(bytes.readBE32(at: i + 4))
            guard included <= maximumRecordLength else { throw .recordTooLong(length: included, maximum: maximumRecordLength) }
            guard i + 24 + included <= bytes.count else { throw .truncated(offset: i) }
            let ts = Int64(bitPattern: UInt64(bytes.readBE32(at: i + 16)) << 32 | UInt64(bytes.readBE32(at: i + 20)))
            records.append(BTSnoopRecord(originalLength: original, flags: bytes.readBE32(at: i + 8),
                                         cumulativeDrops: bytes.readBE32(at: i + 12), timestamp: ts,
                                         packet: Array(bytes[(i + 24)..<(i + 24 + included)])))
            i += 24 + included
        }
        self.records = records
    }

    /// Reads and parses a capture file of at most `maximumFileSize` bytes.
    public init(path: String, maximumFileSize: Int = 64 << 20, maximumRecords: Int = 1_000_000) throws(BTSnoopError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .io("open \(path): \(String(cString: strerror(errno)))") }
        defer { Glibc.close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .io("fstat \(path)") }
        let size = Int(st.st_size)
        guard size <= maximumFileSize else { throw .fileTooLarge(size: size, maximum: maximumFileSize) }
        var bytes = [UInt8](repeating: 0, count: size)
        var off = 0
        while off < size {
            let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + off, size - off) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw .io("read \(path)") }
            off += n
        }
        try self.init(bytes: bytes, maximumRecords: maximumRecords)
    }

    /// Reassembles the ATT PDUs (L2CAP CID 0x0004) carried by the H4 ACL packets, per connection
    /// handle and direction. Other packets (events, other channels) are skipped.
    public func attPDUs() throws(BTSnoopError) -> [BTSnoopATTPDU] {
        guard datalink == BTSnoop.datalinkH4 else { throw .unsupportedDatalink(datalink) }
        struct Key: Hashable { let handle: UInt16; let sent: Bool }
        var partial: [Key: [UInt8]] = [:]
        var out: [BTSnoopATTPDU] = []
        for (n, r) in records.enumerated() where !r.isCommandOrEvent {
            let p = r.packet
            guard p.first == BTSnoop.h4ACL else { continue }
            guard p.count >= 5 else { throw .malformedPacket(record: n, reason: "ACL packet of \(p.count) bytes") }
            let hf = p.readLE16(at: 1)
            let length = Int(p.readLE16(at: 3))
            guard p.count == 5 + length else { throw .malformedPacket(record: n, reason: "ACL length \(length) but \(p.count - 5) bytes") }
            let key = Key(handle: hf & 0x0FFF, sent: r.direction == .sent)
            let pb = (hf >> 12) & 0b11
            var buffer: [UInt8]
            if pb == 0b01 {
                guard let b = partial[key] else { throw .malformedPacket(record: n, reason: "continuation without a start") }
                buffer = b + p[5...]
            } else {
                buffer = Array(p[5...])
            }
            guard buffer.count >= 4 else { partial[key] = buffer; continue }
            let l2len = Int(buffer.readLE16(at: 0))
            if buffer.count < 4 + l2len { partial[key] = buffer; continue }
            guard buffer.count == 4 + l2len else { throw .malformedPacket(record: n, reason: "L2CAP overrun") }
            partial[key] = nil
            if buffer.readLE16(at: 2) == ATT.fixedChannelID && l2len > 0 {
                out.append(BTSnoopATTPDU(direction: r.direction, connectionHandle: key.handle, timestamp: r.timestamp,
                                         pdu: Array(buffer[4...])))
            }
        }
        return out
    }
}

/// A bearer decorator that records every PDU it sends and receives into a btsnoop capture, as the
/// host owning the wrapped bearer would see it. It writes an LE Connection Complete event when
/// created and a Disconnection Complete when the link closes, so Wireshark shows the role and peer.
public final class CapturingBearer: ATTBearer {
    public let base: any ATTBearer
    public let writer: BTSnoopWriter
    /// The ACL handle this connection has in the capture.
    public let connectionHandle: UInt16
    public var linkMTU: Int { base.linkMTU }

    /// - Parameters:
    ///   - role: the LE role of the captured side (a lock: `.peripheral`).
    ///   - peerAddress: the remote device's address for the capture ("AA:BB:CC:DD:EE:FF").
    public init(wrapping base: any ATTBearer, writer: BTSnoopWriter, role: BTSnoopRole = .peripheral,
                peerAddress: String = "C0:FF:EE:00:00:01") throws {
        self.base = base
        self.writer = writer
        connectionHandle = writer.allocateConnectionHandle()
        try writer.recordLEConnectionComplete(connectionHandle: connectionHandle, role: role, peerAddress: peerAddress)
    }

    public func start(_ receiver: @escaping ATTBearerReceiver) throws {
        let writer = writer, handle = connectionHandle
        try base.start { event in
            switch event {
            case .pdu(let pdu): writer.recordATT(pdu, direction: .received, connectionHandle: handle)
            case .closed(let reason): writer.recordDisconnectionComplete(connectionHandle: handle, reason: reason == .local ? 0x16 : 0x13)
            }
            receiver(event)
        }
    }

    /// Records, then sends: over a synchronous link the answer can arrive before `send` returns,
    /// and the capture must show the request first. (A send that fails — a closed link — stays in
    /// the capture.)
    public func send(_ pdu: [UInt8]) throws {
        try validateOutbound(pdu)
        writer.recordATT(pdu, direction: .sent, connectionHandle: connectionHandle)
        try base.send(pdu)
    }

    public func close() { base.close() }
}

extension Array where Element == UInt8 {
    @inline(__always) mutating func appendBE32(_ v: UInt32) {
        append(UInt8(truncatingIfNeeded: v >> 24))
        append(UInt8(truncatingIfNeeded: v >> 16))
        append(UInt8(truncatingIfNeeded: v >> 8))
        append(UInt8(truncatingIfNeeded: v))
    }

    @inline(__always) func readBE32(at i: Int) -> UInt32 {
        UInt32(self[i]) << 24 | UInt32(self[i + 1]) << 16 | UInt32(self[i + 2]) << 8 | UInt32(self[i + 3])
    }
}
