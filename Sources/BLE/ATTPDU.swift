// The ATT PDU family: one value type per PDU (in ATTMTUExchange.swift, ATTDiscoveryPDUs.swift,
// ATTReadPDUs.swift, ATTWritePDUs.swift, ATTHandleValuePDUs.swift, ATTErrorResponse.swift) and the
// `ATTPDU` enum that decodes any of them. Encoders are total; decoders check every length and throw.

/// A PDU type with a fixed opcode and a pure byte codec.
public protocol ATTPDUCodable: Sendable, Equatable {
    /// The opcode this PDU type encodes to and decodes from.
    static var opcode: ATTOpcode { get }
    /// The complete PDU: opcode followed by the parameters.
    func encode() -> [UInt8]
    /// Parses a complete PDU (opcode included). Never traps; throws on any malformed input.
    static func decode(_ pdu: [UInt8]) throws(ATTDecodingError) -> Self
}

/// Any ATT PDU this module has a type for.
public enum ATTPDU: Sendable, Equatable {
    case errorResponse(ATTErrorResponse)
    case exchangeMTURequest(ATTExchangeMTURequest)
    case exchangeMTUResponse(ATTExchangeMTUResponse)
    case findInformationRequest(ATTFindInformationRequest)
    case findInformationResponse(ATTFindInformationResponse)
    case findByTypeValueRequest(ATTFindByTypeValueRequest)
    case findByTypeValueResponse(ATTFindByTypeValueResponse)
    case readByTypeRequest(ATTReadByTypeRequest)
    case readByTypeResponse(ATTReadByTypeResponse)
    case readRequest(ATTReadRequest)
    case readResponse(ATTReadResponse)
    case readBlobRequest(ATTReadBlobRequest)
    case readBlobResponse(ATTReadBlobResponse)
    case readMultipleRequest(ATTReadMultipleRequest)
    case readMultipleResponse(ATTReadMultipleResponse)
    case readByGroupTypeRequest(ATTReadByGroupTypeRequest)
    case readByGroupTypeResponse(ATTReadByGroupTypeResponse)
    case writeRequest(ATTWriteRequest)
    case writeResponse(ATTWriteResponse)
    case writeCommand(ATTWriteCommand)
    case signedWriteCommand(ATTSignedWriteCommand)
    case prepareWriteRequest(ATTPrepareWriteRequest)
    case prepareWriteResponse(ATTPrepareWriteResponse)
    case executeWriteRequest(ATTExecuteWriteRequest)
    case executeWriteResponse(ATTExecuteWriteResponse)
    case handleValueNotification(ATTHandleValueNotification)
    case handleValueIndication(ATTHandleValueIndication)
    case handleValueConfirmation(ATTHandleValueConfirmation)

    /// Decodes any PDU by its opcode.
    public static func decode(_ pdu: [UInt8]) throws(ATTDecodingError) -> ATTPDU {
        guard let raw = pdu.first else { throw .empty }
        guard let opcode = ATTOpcode(rawValue: raw) else { throw .unknownOpcode(raw) }
        switch opcode {
        case .errorResponse: return .errorResponse(try .decode(pdu))
        case .exchangeMTURequest: return .exchangeMTURequest(try .decode(pdu))
        case .exchangeMTUResponse: return .exchangeMTUResponse(try .decode(pdu))
        case .findInformationRequest: return .findInformationRequest(try .decode(pdu))
        case .findInformationResponse: return .findInformationResponse(try .decode(pdu))
        case .findByTypeValueRequest: return .findByTypeValueRequest(try .decode(pdu))
        case .findByTypeValueResponse: return .findByTypeValueResponse(try .decode(pdu))
        case .readByTypeRequest: return .readByTypeRequest(try .decode(pdu))
        case .readByTypeResponse: return .readByTypeResponse(try .decode(pdu))
        case .readRequest: return .readRequest(try .decode(pdu))
        case .readResponse: return .readResponse(try .decode(pdu))
        case .readBlobRequest: return .readBlobRequest(try .decode(pdu))
        case .readBlobResponse: return .readBlobResponse(try .decode(pdu))
        case .readMultipleRequest: return .readMultipleRequest(try .decode(pdu))
        case .readMultipleResponse: return .readMultipleResponse(try .decode(pdu))
        case .readByGroupTypeRequest: return .readByGroupTypeRequest(try .decode(pdu))
        case .readByGroupTypeResponse: return .readByGroupTypeResponse(try .decode(pdu))
        case .writeRequest: return .writeRequest(try .decode(pdu))
        case .writeResponse: return .writeResponse(try .decode(pdu))
        case .writeCommand: return .writeCommand(try .decode(pdu))
        case .signedWriteCommand: return .signedWriteCommand(try .decode(pdu))
        case .prepareWriteRequest: return .prepareWriteRequest(try .decode(pdu))
        case .prepareWriteResponse: return .prepareWriteResponse(try .decode(pdu))
        case .executeWriteRequest: return .executeWriteRequest(try .decode(pdu))
        case .executeWriteResponse: return .executeWriteResponse(try .decode(pdu))
        case .handleValueNotification: return .handleValueNotification(try .decode(pdu))
        case .handleValueIndication: return .handleValueIndication(try .decode(pdu))
        case .handleValueConfirmation: return .handleValueConfirmation(try .decode(pdu))
        case .readMultipleVariableRequest, .readMultipleVariableResponse, .multipleHandleValueNotification:
            throw .unknownOpcode(raw)
        }
    }

    /// The encoded PDU.
    public func encode() -> [UInt8] {
        switch self {
        case .errorResponse(let p): return p.encode()
        case .exchangeMTURequest(let p): return p.encode()
        case .exchangeMTUResponse(let p): return p.encode()
        case .findInformationRequest(let p): return p.encode()
        case .findInformationResponse(let p): return p.encode()
        case .findByTypeValueRequest(let p): return p.encode()
        case .findByTypeValueResponse(let p): return p.encode()
        case .readByTypeRequest(let p): return p.encode()
        case .readByTypeResponse(let p): return p.encode()
        case .readRequest(let p): return p.encode()
        case .readResponse(let p): return p.encode()
        case .readBlobRequest(let p): return p.encode()
        case .readBlobResponse(let p): return p.encode()
        case .readMultipleRequest(let p): return p.encode()
        case .readMultipleResponse(let p): return p.encode()
        case .readByGroupTypeRequest(let p): return p.encode()
        case .readByGroupTypeResponse(let p): return p.encode()
        case .writeRequest(let p): return p.encode()
        case .writeResponse(let p): return p.encode()
        case .writeCommand(let p): return p.encode()
        case .signedWriteCommand(let p): return p.encode()
        case .prepareWriteRequest(let p): return p.encode()
        case .prepareWriteResponse(let p): return p.encode()
        case .executeWriteRequest(let p): return p.encode()
        case .executeWriteResponse(let p): return p.encode()
        case .handleValueNotification(let p): return p.encode()
        case .handleValueIndication(let p): return p.encode()
        case .handleValueConfirmation(let p): return p.encode()
        }
    }
}
