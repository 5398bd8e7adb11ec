// L2CAP basic information frames (Core spec Vol 3 Part A 3.1): a 4-byte header — payload length
// (2 bytes LE) and channel ID (2 bytes LE) — then the payload. On an LE-U link ATT rides on the
// fixed channel 0x0004; the cross-process loopback carries exactly these frames over a stream socket.

/// Why bytes could not be framed.
public enum L2CAPFramingError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Fewer than 4 header bytes, or fewer payload bytes than the header declares.
    case truncated(have: Int, need: Int)
    /// More bytes than the header declares (for whole-frame decoding).
    case trailingBytes(Int)
    /// The declared payload length exceeds the receiver's bound (the link MTU).
    case payloadTooLong(length: Int, maximum: Int)

    public var description: String {
        switch self {
        case .truncated(let have, let need): return "L2CAP frame truncated: \(have) of \(need) bytes"
        case .trailingBytes(let n): return "\(n) bytes after the L2CAP frame"
        case .payloadTooLong(let l, let m): return "L2CAP payload of \(l) bytes exceeds the maximum of \(m)"
        }
    }
}

/// One L2CAP basic frame (B-frame).
public struct L2CAPBasicFrame: Equatable, Sendable {
    public static let headerLength = 4
    /// The ATT fixed channel on LE.
    public static let attChannelID: UInt16 = ATT.fixedChannelID

    public var channelID: UInt16
    public var payload: [UInt8]

    public init(channelID: UInt16 = L2CAPBasicFrame.attChannelID, payload: [UInt8]) {
        self.channelID = channelID
        self.payload = payload
    }

    /// Header and payload. The payload must fit the 16-bit length field (≤ 65535 bytes); longer
    /// payloads are a programming error the bearers rule out by checking `linkMTU` first.
    public func encode() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(Self.headerLength + payload.count)
        out.appendLE(UInt16(truncatingIfNeeded: payload.count))
        out.appendLE(channelID)
        out.append(contentsOf: payload)
        return out
    }

    /// Decodes exactly one frame from `bytes`.
    public static func decode(_ bytes: [UInt8], maximumPayloadLength: Int = 0xFFFF) throws(L2CAPFramingError) -> L2CAPBasicFrame {
        guard bytes.count >= headerLength else { throw .truncated(have: bytes.count, need: headerLength) }
        let length = Int(bytes.readLE16(at: 0))
        guard length <= maximumPayloadLength else { throw .payloadTooLong(length: length, maximum: maximumPayloadLength) }
        let total = headerLength + length
        guard bytes.count >= total else { throw .truncated(have: bytes.count, need: total) }
        guard bytes.count == total else { throw .trailingBytes(bytes.count - total) }
        return L2CAPBasicFrame(channelID: bytes.readLE16(at: 2), payload: Array(bytes[headerLength...]))
    }
}

/// Cuts a byte stream into L2CAP basic frames, bounding every declared length before buffering it.
public struct L2CAPStreamDecoder: Sendable {
    public let maximumPayloadLength: Int
    private var buffer: [UInt8] = []
    private var start = 0

    public init(maximumPayloadLength: Int) {
        self.maximumPayloadLength = maximumPayloadLength
    }

    /// Bytes received but not yet part of a whole frame.
    public var bufferedByteCount: Int { buffer.count - start }

    public mutating func append<C: Collection<UInt8>>(_ bytes: C) {
        if start > 0 && start == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            start = 0
        }
        buffer.append(contentsOf: bytes)
    }

    /// The next complete frame, or nil if more bytes are needed. Throws as soon as a header declares
    /// a payload longer than the bound — without waiting for (or buffering) that payload.
    public mutating func nextFrame() throws(L2CAPFramingError) -> L2CAPBasicFrame? {
        let available = buffer.count - start
        guard available >= L2CAPBasicFrame.headerLength else { return nil }
        let length = Int(buffer.readLE16(at: start))
        guard length <= maximumPayloadLength else {
            throw .payloadTooLong(length: length, maximum: maximumPayloadLength)
        }
        guard available >= L2CAPBasicFrame.headerLength + length else { return nil }
        let cid = buffer.readLE16(at: start + 2)
        let p0 = start + L2CAPBasicFrame.headerLength
        let frame = L2CAPBasicFrame(channelID: cid, payload: Array(buffer[p0..<(p0 + length)]))
        start = p0 + length
        if start == buffer.count {
            buffer.removeAll(keepingCapacity: buffer.capacity <= 1 << 16)
            start = 0
        } else if start >= 1 << 14 {
            buffer.removeFirst(start)
            start = 0
        }
        return frame
    }
}
