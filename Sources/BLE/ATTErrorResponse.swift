/// ATT_ERROR_RSP (0x01): a request failed (Vol 3 Part F 3.4.1.1).
public struct ATTErrorResponse: ATTPDUCodable {
    public static let opcode = ATTOpcode.errorResponse
    /// The opcode of the request that failed, as received (it may be one this module does not know).
    public var requestOpcode: UInt8
    /// The attribute handle in error, or 0x0000 when no handle applies (e.g. Invalid PDU).
    public var handle: UInt16
    public var error: ATTErrorCode

    public init(requestOpcode: UInt8, handle: UInt16, error: ATTErrorCode) {
        self.requestOpcode = requestOpcode
        self.handle = handle
        self.error = error
    }

    public init(request: ATTOpcode, handle: UInt16, error: ATTErrorCode) {
        self.init(requestOpcode: request.rawValue, handle: handle, error: error)
    }

    public func encode() -> [UInt8] {
        [Self.opcode.rawValue, requestOpcode, UInt8(truncatingIfNeeded: handle), UInt8(truncatingIfNeeded: handle >> 8), error.rawValue]
    }

    public static func decode(_ pdu: [UInt8]) throws(ATTDecodingError) -> Self {
        try checkHeader(pdu, opcode, exactLength: 5)
        return Self(requestOpcode: pdu[1], handle: pdu.readLE16(at: 2), error: ATTErrorCode(rawValue: pdu[4]))
    }
}
