// ATT error codes (Core spec Vol 3 Part F 3.4.1.1) and the common profile and service error codes
// (Core Specification Supplement Part B).

/// The error code of an ATT Error Response.
///
/// A GATT read or write handler throws one of these to make the server answer with it; any other
/// error a handler throws becomes `.unlikelyError`. Application errors (0x80–0x9F) are the codes a
/// profile defines for itself.
public enum ATTErrorCode: Error, Hashable, Sendable, CustomStringConvertible {
    case invalidHandle                      // 0x01
    case readNotPermitted                   // 0x02
    case writeNotPermitted                  // 0x03
    case invalidPDU                         // 0x04
    case insufficientAuthentication         // 0x05
    case requestNotSupported                // 0x06
    case invalidOffset                      // 0x07
    case insufficientAuthorization          // 0x08
    case prepareQueueFull                   // 0x09
    case attributeNotFound                  // 0x0A
    case attributeNotLong                   // 0x0B
    case encryptionKeySizeTooShort          // 0x0C
    case invalidAttributeValueLength        // 0x0D
    case unlikelyError                      // 0x0E
    case insufficientEncryption             // 0x0F
    case unsupportedGroupType               // 0x10
    case insufficientResources              // 0x11
    case databaseOutOfSync                  // 0x12
    case valueNotAllowed                    // 0x13
    /// 0x80–0x9F, defined by a higher-layer specification. A value outside that range is sent
    /// as Unlikely Error by `GATTServer` (it would otherwise alias a protocol error).
    case application(UInt8)
    case writeRequestRejected               // 0xFC
    case cccdImproperlyConfigured           // 0xFD
    case procedureAlreadyInProgress         // 0xFE
    case outOfRange                         // 0xFF
    /// A code this version of the spec reserves (received from a peer).
    case reserved(UInt8)

    /// Maps a wire byte to its case; total (never fails).
    public init(rawValue: UInt8) {
        switch rawValue {
        case 0x01: self = .invalidHandle
        case 0x02: self = .readNotPermitted
        case 0x03: self = .writeNotPermitted
        case 0x04: self = .invalidPDU
        case 0x05: self = .insufficientAuthentication
        case 0x06: self = .requestNotSupported
        case 0x07: self = .invalidOffset
        case 0x08: self = .insufficientAuthorization
        case 0x09: self = .prepareQueueFull
        case 0x0A: self = .attributeNotFound
        case 0x0B: self = .attributeNotLong
        case 0x0C: self = .encryptionKeySizeTooShort
        case 0x0D: self = .invalidAttributeValueLength
        case 0x0E: self = .unlikelyError
        case 0x0F: self = .insufficientEncryption
        case 0x10: self = .unsupportedGroupType
        case 0x11: self = .insufficientResources
        case 0x12: self = .databaseOutOfSync
        case 0x13: self = .valueNotAllowed
        case 0x80...0x9F: self = .application(rawValue)
        case 0xFC: self = .writeRequestRejected
        case 0xFD: self = .cccdImproperlyConfigured
        case 0xFE: self = .procedureAlreadyInProgress
        case 0xFF: self = .outOfRange
        default: self = .reserved(rawValue)
        }
    }

    /// The wire byte.
    public var rawValue: UInt8 {
        switch self {
        case .invalidHandle: return 0x01
        case .readNotPermitted: return 0x02
        case .writeNotPermitted: return 0x03
        case .invalidPDU: return 0x04
        case .insufficientAuthentication: return 0x05
        case .requestNotSupported: return 0x06
        case .invalidOffset: return 0x07
        case .insufficientAuthorization: return 0x08
        case .prepareQueueFull: return 0x09
        case .attributeNotFound: return 0x0A
        case .attributeNotLong: return 0x0B
        case .encryptionKeySizeTooShort: return 0x0C
        case .invalidAttributeValueLength: return 0x0D
        case .unlikelyError: return 0x0E
        case .insufficientEncryption: return 0x0F
        case .unsupportedGroupType: return 0x10
        case .insufficientResources: return 0x11
        case .databaseOutOfSync: return 0x12
        case .valueNotAllowed: return 0x13
        case .application(let v): return v
        case .writeRequestRejected: return 0xFC
        case .cccdImproperlyConfigured: return 0xFD
        case .procedureAlreadyInProgress: return 0xFE
        case .outOfRange: return 0xFF
        case .reserved(let v): return v
        }
    }

    public var description: String {
        let name: String
        switch self {
        case .invalidHandle: name = "Invalid Handle"
        case .readNotPermitted: name = "Read Not Permitted"
        case .writeNotPermitted: name = "Write Not Permitted"
        case .invalidPDU: name = "Invalid PDU"
        case .insufficientAuthentication: name = "Insufficient Authentication"
        case .requestNotSupported: name = "Request Not Supported"
        case .invalidOffset: name = "Invalid Offset"
        case .insufficientAuthorization: name = "Insufficient Authorization"
        case .prepareQueueFull: name = "Prepare Queue Full"
        case .attributeNotFound: name = "Attribute Not Found"
        case .attributeNotLong: name = "Attribute Not Long"
        case .encryptionKeySizeTooShort: name = "Encryption Key Size Too Short"
        case .invalidAttributeValueLength: name = "Invalid Attribute Value Length"
        case .unlikelyError: name = "Unlikely Error"
        case .insufficientEncryption: name = "Insufficient Encryption"
        case .unsupportedGroupType: name = "Unsupported Group Type"
        case .insufficientResources: name = "Insufficient Resources"
        case .databaseOutOfSync: name = "Database Out Of Sync"
        case .valueNotAllowed: name = "Value Not Allowed"
        case .application: name = "Application Error"
        case .writeRequestRejected: name = "Write Request Rejected"
        case .cccdImproperlyConfigured: name = "Client Characteristic Configuration Descriptor Improperly Configured"
        case .procedureAlreadyInProgress: name = "Procedure Already in Progress"
        case .outOfRange: name = "Out of Range"
        case .reserved: name = "Reserved"
        }
        return "\(name) (0x\(hex8(rawValue)))"
    }
}
