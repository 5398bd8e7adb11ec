// Writing attribute values (Vol 3 Part F 3.4.5, 3.4.6): Write Request/Response, Write Command,
// Signed Write Command, and the queued writes (Prepare/Execute) behind long and reliable writes.

/// ATT_WRITE_REQ (0x12) (3.4.5.1).
public struct ATTWriteRequest: ATTPDUCodable {
    public static let opcode = ATTOpcode.writeRequest
    public var handle: UInt16
    public var value: [UInt8]
    public init(handle: UInt16, value: [UInt8]) { self.handle = handle; self.value = value }

    public func encode() -> [UInt8] { encodeHandleValue(Self.opcode, handle, value) }

    public static func decode(_ pdu: [UInt8]) throws(ATTDecodingError) -> Self {
        try checkHeader(pdu, opcode, minimumLength: 3)
        return Self(handle: pdu.readLE16(at: 1), value: Array(pdu[3...]))
    }
}

/// ATT_WRITE_RSP (0x13) (3.4.5.2).
public struct ATTWriteResponse: ATTPDUCodable {
    public static let opcode = ATTOpcode.writeResponse
    public init() {}
    public func encode() -> [UInt8] { [Self.opcode.rawValue] }
    public static func decode(_ pdu: [UInt8]) throws(ATTDecodingError) -> Self {
        try checkHeader(pdu, opcode, exactLength: 1)
        return Self()
    }
}

/// ATT_WRITE_CMD (0x52): a write without response (3.4.5.3).
public struct ATTWriteCommand: ATTPDUCodable {
    public static let opcode = ATTOpcode.writeCommand
    public var handle: UInt16
    public var value: [UInt8]
    public init(handle: UInt16, value: [UInt8]) { self.handle = handle; self.value = value }

    public func encode() -> [UInt8] { encodeHandleValue(Self.opcode, handle, value) }

    public static func decode(_ pdu: [UInt8]) throws(ATTDecodingError) -> Self {
        try checkHeader(pdu, opcode, minimumLength: 3)
        return Self(handle: pdu.readLE16(at: 1), value: Array(pdu[3...]))
    }
}

/// ATT_SIGNED_WRITE_CMD (0xD2): a write command with a 12-byte CSRK signature (3.4.5.4).
/// Keyway never bonds, so `GATTServer` has no CSRK and ignores these, as the spec requires of a
/// server that cannot verify the signature.
public struct ATTSignedWriteCommand: ATTPDUCodable {
    public static let opcode = ATTOpcode.signedWriteCommand
    public static let signatureLength = 12
    public var handle: UInt16
    public var value: [UInt8]
    /// Exactly 12 bytes when decoded; `encode()` writes whatever is stored.
    public var signature: [UInt8]

    public init(handle: UInt16, value: [UInt8], signature: [UInt8]) {
        self.handle = handle
        self.value = value
        self.signature = signature
    }

    public func encode() -> [UInt8] {
        var out = encodeHandleValue(Self.opcode, handle, value)
        out.append(contentsOf: signature)
        return out
    }

    public static func decode(_ pdu: [UInt8]) throws(ATTDecodingError) -> Self {
        try checkHeader(pdu, opcode, minimumLength: 3 + signatureLength)
        let sigStart = pdu.count - signatureLength
        return Self(handle: pdu.readLE16(at: 1), value: Array(pdu[3..<sigStart]), signature: Array(pdu[sigStart...]))
    }
}

/// ATT_PREPARE_WRITE_REQ (0x16): queue part of a value at an offset (3.4.6.1).
public struct ATTPrepareWriteRequest: ATTPDUCodable {
    public static let opcode = ATTOpcode.prepareWriteRequest
    public var handle: UInt16
    public var offset: UInt16
    public var partValue: [UInt8]

    public init(handle: UInt16, offset: UInt16, partValue: [UInt8]) {
        self.handle = handle
        self.offset = offset
        self.partValue = partValue
    }

    public func encode() -> [UInt8] { encodePrepare(Self.opcode, handle, offset, partValue) }

    public static func decode(_ pdu: [UInt8]) throws(ATTDecodingError) -> Self {
        try checkHeader(pdu, opcode, minimumLength: 5)
        return Self(handle: pdu.readLE16(at: 1), offset: pdu.readLE16(at: 3), partValue: Array(pdu[5...]))
    }
}

/// ATT_PREPARE_WRITE_RSP (0x17): echoes the request so the client can verify it (3.4.6.2).
public struct ATTPrepareWriteResponse: ATTPDUCodable {
    public static let opcode = ATTOpcode.prepareWriteResponse
    public var handle: UInt16
    public var offset: UInt16
    public var partValue: [UInt8]

    public init(handle: UInt16, offset: UInt16, partValue: [UInt8]) {
        self.handle = handle
        self.offset = offset
        self.partValue = partValue
    }

    public func encode() -> [UInt8] { encodePrepare(Self.opcode, handle, offset, partValue) }

    public static func decode(_ pdu: [UInt8]) throws(ATTDecodingError) -> Self {
        try checkHeader(pdu, opcode, minimumLength: 5)
        return Self(handle: pdu.readLE16(at: 1), offset: pdu.readLE16(at: 3), partValue: Array(pdu[5...]))
    }
}

/// ATT_EXECUTE_WRITE_REQ (0x18): write or discard the prepared queue (3.4.6.3).
public struct ATTExecuteWriteRequest: ATTPDUCodable {
    public static let opcode = ATTOpcode.executeWriteRequest

    public enum Flags: UInt8, Sendable {
        /// Cancel all prepared writes.
        case cancel = 0x00
        /// Immediately write all pending prepared values.
        case write = 0x01
    }

    public var flags: Flags
    public init(flags: Flags) { self.flags = flags }

    public func encode() -> [UInt8] { [Self.opcode.rawValue, flags.rawValue] }

    /// Flags other than 0x00 and 0x01 are reserved and rejected.
    public static func decode(_ pdu: [UInt8]) throws(ATTDecodingError) -> Self {
        try checkHeader(pdu, opcode, exactLength: 2)
        guard let flags = Flags(rawValue: pdu[1]) else {
            throw .invalidField(opcode: opcode, reason: "flags 0x\(hex8(pdu[1])) (must be 0x00 or 0x01)")
        }
        return Self(flags: flags)
    }
}

/// ATT_EXECUTE_WRITE_RSP (0x19) (3.4.6.4).
public struct ATTExecuteWriteResponse: ATTPDUCodable {
    public static let opcode = ATTOpcode.executeWriteResponse
    public init() {}
    public func encode() -> [UInt8] { [Self.opcode.rawValue] }
    public static func decode(_ pdu: [UInt8]) throws(ATTDecodingError) -> Self {
        try checkHeader(pdu, opcode, exactLength: 1)
        return Self()
    }
}

@inline(__always)
func encodeHandleValue(_ opcode: ATTOpcode, _ handle: UInt16, _ value: [UInt8]) -> [UInt8] {
    var out: [UInt8] = [opcode.rawValue]
    out.reserveCapacity(3 + value.count)
    out.appendLE(handle)
    out.append(contentsOf: value)
    return out
}

private func encodePrepare(_ opcode: ATTOpcode, _ handle: UInt16, _ offset: UInt16, _ part: [UInt8]) -> [UInt8] {
    var out: [UInt8] = [opcode.rawValue]
    out.reserveCapacity(5 + part.count)
    out.appendLE(handle)
    out.appendLE(offset)
    out.append(contentsOf: part)
    return out
}
