/// ATT_EXCHANGE_MTU_REQ (0x02): the client's receive MTU (Vol 3 Part F 3.4.2.1).
public struct ATTExchangeMTURequest: ATTPDUCodable {
    public static let opcode = ATTOpcode.exchangeMTURequest
    public var clientRxMTU: UInt16
    public init(clientRxMTU: UInt16) { self.clientRxMTU = clientRxMTU }

    public func encode() -> [UInt8] {
        var out: [UInt8] = [Self.opcode.rawValue]
        out.reserveCapacity(3)
        out.appendLE(clientRxMTU)
        return out
    }

    public static func decode(_ pdu: [UInt8]) throws(ATTDecodingError) -> Self {
        try checkHeader(pdu, opcode, exactLength: 3)
        return Self(clientRxMTU: pdu.readLE16(at: 1))
    }
}

/// ATT_EXCHANGE_MTU_RSP (0x03): the server's receive MTU (Vol 3 Part F 3.4.2.2).
public struct ATTExchangeMTUResponse: ATTPDUCodable {
    public static let opcode = ATTOpcode.exchangeMTUResponse
    public var serverRxMTU: UInt16
    public init(serverRxMTU: UInt16) { self.serverRxMTU = serverRxMTU }

    public func encode() -> [UInt8] {
        var out: [UInt8] = [Self.opcode.rawValue]
        out.reserveCapacity(3)
        out.appendLE(serverRxMTU)
        return out
    }

    public static func decode(_ pdu: [UInt8]) throws(ATTDecodingError) -> Self {
        try checkHeader(pdu, opcode, exactLength: 3)
        return Self(serverRxMTU: pdu.readLE16(at: 1))
    }
}
