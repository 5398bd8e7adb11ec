// Server-initiated PDUs (Vol 3 Part F 3.4.7): notifications, indications and the client's
// confirmation of an indication.

/// ATT_HANDLE_VALUE_NTF (0x1B): an unacknowledged value update (3.4.7.1).
public struct ATTHandleValueNotification: ATTPDUCodable {
    public static let opcode = ATTOpcode.handleValueNotification
    public var handle: UInt16
    public var value: [UInt8]
    public init(handle: UInt16, value: [UInt8]) { self.handle = handle; self.value = value }

    public func encode() -> [UInt8] { encodeHandleValue(Self.opcode, handle, value) }

    public static func decode(_ pdu: [UInt8]) throws(ATTDecodingError) -> Self {
        try checkHeader(pdu, opcode, minimumLength: 3)
        return Self(handle: pdu.readLE16(at: 1), value: Array(pdu[3...]))
    }
}

/// ATT_HANDLE_VALUE_IND (0x1D): a value update the client must confirm (3.4.7.2).
public struct ATTHandleValueIndication: ATTPDUCodable {
    public static let opcode = ATTOpcode.handleValueIndication
    public var handle: UInt16
    public var value: [UInt8]
    public init(handle: UInt16, value: [UInt8]) { self.handle = handle; self.value = value }

    public func encode() -> [UInt8] { encodeHandleValue(Self.opcode, handle, value) }

    public static func decode(_ pdu: [UInt8]) throws(ATTDecodingError) -> Self {
        try checkHeader(pdu, opcode, minimumLength: 3)
        return Self(handle: pdu.readLE16(at: 1), value: Array(pdu[3...]))
    }
}

/// ATT_HANDLE_VALUE_CFM (0x1E) (3.4.7.3).
public struct ATTHandleValueConfirmation: ATTPDUCodable {
    public static let opcode = ATTOpcode.handleValueConfirmation
    public init() {}
    public func encode() -> [UInt8] { [Self.opcode.rawValue] }
    public static func decode(_ pdu: [UInt8]) throws(ATTDecodingError) -> Self {
        try checkHeader(pdu, opcode, exactLength: 1)
        return Self()
    }
}
