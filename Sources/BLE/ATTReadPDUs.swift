// Reading attribute values (Vol 3 Part F 3.4.4): Read, Read Blob (long reads), Read Multiple.

/// ATT_READ_REQ (0x0A) (3.4.4.3).
public struct ATTReadRequest: ATTPDUCodable {
    public static let opcode = ATTOpcode.readRequest
    public var handle: UInt16
    public init(handle: UInt16) { self.handle = handle }

    public func encode() -> [UInt8] {
        [Self.opcode.rawValue, UInt8(truncatingIfNeeded: handle), UInt8(truncatingIfNeeded: handle >> 8)]
    }

    public static func decode(_ pdu: [UInt8]) throws(ATTDecodingError) -> Self {
        try checkHeader(pdu, opcode, exactLength: 3)
        return Self(handle: pdu.readLE16(at: 1))
    }
}

/// ATT_READ_RSP (0x0B): the first ATT_MTU-1 bytes of the value (3.4.4.4).
public struct ATTReadResponse: ATTPDUCodable {
    public static let opcode = ATTOpcode.readResponse
    public var value: [UInt8]
    public init(value: [UInt8]) { self.value = value }

    public func encode() -> [UInt8] {
        var out: [UInt8] = [Self.opcode.rawValue]
        out.reserveCapacity(1 + value.count)
        out.append(contentsOf: value)
        return out
    }

    public static func decode(_ pdu: [UInt8]) throws(ATTDecodingError) -> Self {
        try checkHeader(pdu, opcode, minimumLength: 1)
        return Self(value: Array(pdu[1...]))
    }
}

/// ATT_READ_BLOB_REQ (0x0C): read part of a long value from an offset (3.4.4.5).
public struct ATTReadBlobRequest: ATTPDUCodable {
    public static let opcode = ATTOpcode.readBlobRequest
    public var handle: UInt16
    public var offset: UInt16
    public init(handle: UInt16, offset: UInt16) { self.handle = handle; self.offset = offset }

    public func encode() -> [UInt8] {
        var out: [UInt8] = [Self.opcode.rawValue]
        out.reserveCapacity(5)
        out.appendLE(handle)
        out.appendLE(offset)
        return out
    }

    public static func decode(_ pdu: [UInt8]) throws(ATTDecodingError) -> Self {
        try checkHeader(pdu, opcode, exactLength: 5)
        return Self(handle: pdu.readLE16(at: 1), offset: pdu.readLE16(at: 3))
    }
}

/// ATT_READ_BLOB_RSP (0x0D) (3.4.4.6).
public struct ATTReadBlobResponse: ATTPDUCodable {
    public static let opcode = ATTOpcode.readBlobResponse
    public var partValue: [UInt8]
    public init(partValue: [UInt8]) { self.partValue = partValue }

    public func encode() -> [UInt8] {
        var out: [UInt8] = [Self.opcode.rawValue]
        out.reserveCapacity(1 + partValue.count)
        out.append(contentsOf: partValue)
        return out
    }

    public static func decode(_ pdu: [UInt8]) throws(ATTDecodingError) -> Self {
        try checkHeader(pdu, opcode, minimumLength: 1)
        return Self(partValue: Array(pdu[1...]))
    }
}

/// ATT_READ_MULTIPLE_REQ (0x0E): two or more handles (3.4.4.7).
public struct ATTReadMultipleRequest: ATTPDUCodable {
    public static let opcode = ATTOpcode.readMultipleRequest
    public var handles: [UInt16]
    public init(handles: [UInt16]) { self.handles = handles }

    public func encode() -> [UInt8] {
        var out: [UInt8] = [Self.opcode.rawValue]
        out.reserveCapacity(1 + 2 * handles.count)
        for h in handles { out.appendLE(h) }
        return out
    }

    public static func decode(_ pdu: [UInt8]) throws(ATTDecodingError) -> Self {
        try checkHeader(pdu, opcode, minimumLength: 5)
        guard (pdu.count - 1) % 2 == 0 else { throw .invalidLength(opcode: opcode, length: pdu.count) }
        return Self(handles: stride(from: 1, to: pdu.count, by: 2).map { pdu.readLE16(at: $0) })
    }
}

/// ATT_READ_MULTIPLE_RSP (0x0F): the values concatenated, truncated at ATT_MTU-1 (3.4.4.8).
public struct ATTReadMultipleResponse: ATTPDUCodable {
    public static let opcode = ATTOpcode.readMultipleResponse
    public var values: [UInt8]
    public init(values: [UInt8]) { self.values = values }

    public func encode() -> [UInt8] {
        var out: [UInt8] = [Self.opcode.rawValue]
        out.reserveCapacity(1 + values.count)
        out.append(contentsOf: values)
        return out
    }

    public static func decode(_ pdu: [UInt8]) throws(ATTDecodingError) -> Self {
        try checkHeader(pdu, opcode, minimumLength: 1)
        return Self(values: Array(pdu[1...]))
    }
}
