// ATT opcodes (Core spec Vol 3 Part F 3.3, 3.4.8). Bit 6 of an opcode is the Command flag, bit 7
// the Authentication Signature flag; the low six bits are the method.

/// Every opcode of the Attribute Protocol this module names. Opcodes outside this list still reach
/// the GATT server, which answers them per the spec (see `GATTServer`).
public enum ATTOpcode: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case errorResponse = 0x01
    case exchangeMTURequest = 0x02
    case exchangeMTUResponse = 0x03
    case findInformationRequest = 0x04
    case findInformationResponse = 0x05
    case findByTypeValueRequest = 0x06
    case findByTypeValueResponse = 0x07
    case readByTypeRequest = 0x08
    case readByTypeResponse = 0x09
    case readRequest = 0x0A
    case readResponse = 0x0B
    case readBlobRequest = 0x0C
    case readBlobResponse = 0x0D
    case readMultipleRequest = 0x0E
    case readMultipleResponse = 0x0F
    case readByGroupTypeRequest = 0x10
    case readByGroupTypeResponse = 0x11
    case writeRequest = 0x12
    case writeResponse = 0x13
    case prepareWriteRequest = 0x16
    case prepareWriteResponse = 0x17
    case executeWriteRequest = 0x18
    case executeWriteResponse = 0x19
    case handleValueNotification = 0x1B
    case handleValueIndication = 0x1D
    case handleValueConfirmation = 0x1E
    /// Named for completeness; no PDU type in this module (a `GATTServer` answers Request Not Supported).
    case readMultipleVariableRequest = 0x20
    /// Named for completeness; no PDU type in this module.
    case readMultipleVariableResponse = 0x21
    /// Named for completeness; no PDU type in this module (a `GATTClient` ignores it).
    case multipleHandleValueNotification = 0x23
    case writeCommand = 0x52
    case signedWriteCommand = 0xD2

    /// Bit 6: a command never gets a response, not even an error response.
    public static func isCommand(_ raw: UInt8) -> Bool { raw & 0x40 != 0 }

    /// The response opcode a request expects (`nil` for PDUs that are not requests).
    public var responseOpcode: ATTOpcode? {
        switch self {
        case .exchangeMTURequest: return .exchangeMTUResponse
        case .findInformationRequest: return .findInformationResponse
        case .findByTypeValueRequest: return .findByTypeValueResponse
        case .readByTypeRequest: return .readByTypeResponse
        case .readRequest: return .readResponse
        case .readBlobRequest: return .readBlobResponse
        case .readMultipleRequest: return .readMultipleResponse
        case .readByGroupTypeRequest: return .readByGroupTypeResponse
        case .writeRequest: return .writeResponse
        case .prepareWriteRequest: return .prepareWriteResponse
        case .executeWriteRequest: return .executeWriteResponse
        case .readMultipleVariableRequest: return .readMultipleVariableResponse
        default: return nil
        }
    }

    /// True for PDUs a client sends and a server must answer.
    public var isRequest: Bool { responseOpcode != nil }

    /// True for PDUs a server sends in answer to a request (including the Error Response).
    public var isResponse: Bool {
        switch self {
        case .errorResponse, .exchangeMTUResponse, .findInformationResponse, .findByTypeValueResponse,
             .readByTypeResponse, .readResponse, .readBlobResponse, .readMultipleResponse,
             .readByGroupTypeResponse, .writeResponse, .prepareWriteResponse, .executeWriteResponse,
             .readMultipleVariableResponse:
            return true
        default:
            return false
        }
    }

    /// The name the Core spec uses, e.g. "Read By Group Type Request".
    public var description: String {
        switch self {
        case .errorResponse: return "Error Response"
        case .exchangeMTURequest: return "Exchange MTU Request"
        case .exchangeMTUResponse: return "Exchange MTU Response"
        case .findInformationRequest: return "Find Information Request"
        case .findInformationResponse: return "Find Information Response"
        case .findByTypeValueRequest: return "Find By Type Value Request"
        case .findByTypeValueResponse: return "Find By Type Value Response"
        case .readByTypeRequest: return "Read By Type Request"
        case .readByTypeResponse: return "Read By Type Response"
        case .readRequest: return "Read Request"
        case .readResponse: return "Read Response"
        case .readBlobRequest: return "Read Blob Request"
        case .readBlobResponse: return "Read Blob Response"
        case .readMultipleRequest: return "Read Multiple Request"
        case .readMultipleResponse: return "Read Multiple Response"
        case .readByGroupTypeRequest: return "Read By Group Type Request"
        case .readByGroupTypeResponse: return "Read By Group Type Response"
        case .writeRequest: return "Write Request"
        case .writeResponse: return "Write Response"
        case .prepareWriteRequest: return "Prepare Write Request"
        case .prepareWriteResponse: return "Prepare Write Response"
        case .executeWriteRequest: return "Execute Write Request"
        case .executeWriteResponse: return "Execute Write Response"
        case .handleValueNotification: return "Handle Value Notification"
        case .handleValueIndication: return "Handle Value Indication"
        case .handleValueConfirmation: return "Handle Value Confirmation"
        case .readMultipleVariableRequest: return "Read Multiple Variable Length Request"
        case .readMultipleVariableResponse: return "Read Multiple Variable Length Response"
        case .multipleHandleValueNotification: return "Multiple Handle Value Notification"
        case .writeCommand: return "Write Command"
        case .signedWriteCommand: return "Signed Write Command"
        }
    }
}
