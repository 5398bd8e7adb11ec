// GATT attribute layout (Core spec Vol 3 Part G 3): services, characteristic declarations and
// values, descriptors — numbered on consecutive handles from 0x0001.

/// Characteristic Properties (Vol 3 Part G 3.3.1.1). They also decide what the server permits:
/// `.read` → Read/Read Blob/Read By Type; `.write` → Write Request and Prepare/Execute (long
/// writes); `.writeWithoutResponse` → Write Command; `.notify`/`.indicate` → a CCCD is added.
public struct GATTCharacteristicProperties: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let broadcast = Self(rawValue: 0x01)
    public static let read = Self(rawValue: 0x02)
    public static let writeWithoutResponse = Self(rawValue: 0x04)
    public static let write = Self(rawValue: 0x08)
    public static let notify = Self(rawValue: 0x10)
    public static let indicate = Self(rawValue: 0x20)
    public static let authenticatedSignedWrites = Self(rawValue: 0x40)
    public static let extendedProperties = Self(rawValue: 0x80)
}

/// A Client Characteristic Configuration value (Vol 3 Part G 3.3.3.3), kept per connection.
public struct GATTClientConfiguration: OptionSet, Sendable, Hashable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public static let notifications = Self(rawValue: 0x0001)
    public static let indications = Self(rawValue: 0x0002)
}

/// Where a GATT read or write request comes from, handed to value handlers.
public struct GATTRequestContext: Sendable {
    /// The server of the connection the request arrived on (use it to notify this client).
    public let server: GATTServer
    /// The characteristic value handle being accessed.
    public let valueHandle: UInt16
    /// The ATT request behind the call (Read, Read Blob, Read By Type, Read Multiple, Write
    /// Request, Write Command, or Execute Write for a long write).
    public let opcode: ATTOpcode
    /// The ATT_MTU of the connection when the request arrived.
    public let mtu: Int
}

/// Produces a characteristic value on demand (at most 512 bytes). Throw an `ATTErrorCode` to answer
/// with that error (e.g. `.readNotPermitted`); any other error is answered as Unlikely Error.
///
/// A long read (Read then Read Blob) calls the handler once, at offset 0, and serves the following
/// Read Blob requests from that snapshot, so a client reading in pieces sees one consistent value.
///
/// `nonisolated(nonsending)`: the handler starts on the server's delivering thread, so one that
/// completes without suspending answers with no thread hop. Awaiting an actor inside is fine (it
/// hops there and back). Plain closures and `@Sendable` async functions convert to this type.
public typealias GATTReadHandler = nonisolated(nonsending) @Sendable (GATTRequestContext) async throws -> [UInt8]

/// Receives a complete written value (at most 512 bytes): from a Write Request, a Write Command, or
/// the whole reassembled value of a long write when the client executes it. Throw an `ATTErrorCode`
/// to answer with that error (e.g. `.application(0x80)`, `.writeRequestRejected`); any other error is
/// answered as Unlikely Error. Errors of Write Commands are not reported (ATT has no response).
/// Runs like `GATTReadHandler` (starts on the delivering thread).
public typealias GATTWriteHandler = nonisolated(nonsending) @Sendable (GATTRequestContext, [UInt8]) async throws -> Void

/// Where a characteristic's value comes from.
public enum GATTCharacteristicValue: Sendable {
    /// Fixed bytes, read-only (at most 512).
    case constant([UInt8])
    /// Produced and consumed by the upper layer's handlers (either may be nil if the properties do
    /// not allow that access).
    case dynamic(read: GATTReadHandler?, write: GATTWriteHandler?)
}

/// A descriptor with a fixed, read-only value (e.g. a Characteristic User Description, 0x2901).
/// The CCCD (0x2902) is never declared here: the database adds it for notify/indicate properties.
public struct GATTDescriptor: Sendable {
    public var uuid: BluetoothUUID
    public var value: [UInt8]
    public init(uuid: BluetoothUUID, value: [UInt8]) { self.uuid = uuid; self.value = value }

    /// A Characteristic User Description (UTF-8).
    public static func userDescription(_ text: String) -> GATTDescriptor {
        GATTDescriptor(uuid: .characteristicUserDescription, value: Array(text.utf8))
    }
}

/// A characteristic to lay out in a service.
public struct GATTCharacteristic: Sendable {
    public var uuid: BluetoothUUID
    public var properties: GATTCharacteristicProperties
    public var value: GATTCharacteristicValue
    public var descriptors: [GATTDescriptor]

    public init(uuid: BluetoothUUID, properties: GATTCharacteristicProperties,
                value: GATTCharacteristicValue, descriptors: [GATTDescriptor] = []) {
        self.uuid = uuid
        self.properties = properties
        self.value = value
        self.descriptors = descriptors
    }
}

/// A service to lay out in a database.
public struct GATTService: Sendable {
    public var uuid: BluetoothUUID
    public var isPrimary: Bool
    public var characteristics: [GATTCharacteristic]

    public init(uuid: BluetoothUUID, isPrimary: Bool = true, characteristics: [GATTCharacteristic]) {
        self.uuid = uuid
        self.isPrimary = isPrimary
        self.characteristics = characteristics
    }
}

/// A definition the database refuses, with the reason.
public enum GATTDatabaseError: Error, Equatable, Sendable, CustomStringConvertible {
    case tooManyAttributes
    case valueTooLong(characteristic: BluetoothUUID, length: Int)
    case missingReadHandler(characteristic: BluetoothUUID)
    case missingWriteHandler(characteristic: BluetoothUUID)
    case explicitCCCD(characteristic: BluetoothUUID)

    public var description: String {
        switch self {
        case .tooManyAttributes: return "more than 65535 attributes"
        case .valueTooLong(let c, let l): return "characteristic \(c): value of \(l) bytes exceeds 512"
        case .missingReadHandler(let c): return "characteristic \(c) has the read property but no way to read it"
        case .missingWriteHandler(let c): return "characteristic \(c) is writable but has no write handler (constant values are read-only)"
        case .explicitCCCD(let c): return "characteristic \(c) declares a CCCD; it is added automatically for notify/indicate"
        }
    }
}

/// The handles a characteristic was given.
public struct GATTCharacteristicHandles: Sendable, Equatable {
    public let declaration: UInt16
    public let value: UInt16
    /// The Client Characteristic Configuration descriptor, present for notify/indicate.
    public let cccd: UInt16?
    /// Last handle of the characteristic (its last descriptor, or the value).
    public let end: UInt16
}

/// An immutable attribute table: the services laid out on handles 0x0001… in order — service
/// declaration, then per characteristic: declaration, value, CCCD (if notify/indicate), descriptors.
/// One database can back any number of `GATTServer`s (one per connection); per-connection state
/// (MTU, CCCD values, prepared writes) lives in the server.
public struct GATTDatabase: Sendable {
    enum AttributeKind: Sendable {
        case service(index: Int)
        case characteristicDeclaration(index: Int)
        case characteristicValue(index: Int)
        case cccd(index: Int)
        case descriptor(value: [UInt8])
    }

    struct Attribute: Sendable {
        let handle: UInt16
        let type: BluetoothUUID
        let kind: AttributeKind
        /// Static value (declarations, descriptors, constant values); nil when per-connection or dynamic.
        let staticValue: [UInt8]?
    }

    struct ServiceEntry: Sendable {
        let uuid: BluetoothUUID
        let isPrimary: Bool
        let start: UInt16
        let end: UInt16
    }

    struct CharacteristicEntry: Sendable {
        let uuid: BluetoothUUID
        let properties: GATTCharacteristicProperties
        let handles: GATTCharacteristicHandles
        let value: GATTCharacteristicValue
        let serviceIndex: Int
        var isDynamic: Bool { if case .dynamic = value { return true }; return false }
    }

    /// attributes[handle - 1]
    let attributes: [Attribute]
    let serviceEntries: [ServiceEntry]
    let characteristicEntries: [CharacteristicEntry]
    /// valueHandle → characteristic index, for the value and CCCD lookups of notify/indicate.
    let characteristicByValueHandle: [UInt16: Int]

    /// Lays out `services` in order. Throws on definitions a server could not serve correctly.
    public init(services: [GATTService]) throws(GATTDatabaseError) {
        var attrs: [Attribute] = []
        var svcs: [ServiceEntry] = []
        var chars: [CharacteristicEntry] = []
        var byValue: [UInt16: Int] = [:]
        func next() throws(GATTDatabaseError) -> UInt16 {
            guard attrs.count < 0xFFFF else { throw .tooManyAttributes }
            return UInt16(attrs.count + 1)
        }
        for service in services {
            let serviceIndex = svcs.count
            let start = try next()
            attrs.append(Attribute(handle: start, type: service.isPrimary ? .primaryService : .secondaryService,
                                   kind: .service(index: serviceIndex), staticValue: service.uuid.littleEndianBytes))
            for c in service.characteristics {
                switch c.value {
                case .constant(let v):
                    guard v.count <= ATT.maximumAttributeValueLength else { throw .valueTooLong(characteristic: c.uuid, length: v.count) }
                    if !c.properties.isDisjoint(with: [.write, .writeWithoutResponse]) { throw .missingWriteHandler(characteristic: c.uuid) }
                case .dynamic(let read, let write):
                    if c.properties.contains(.read) && read == nil { throw .missingReadHandler(characteristic: c.uuid) }
                    if !c.properties.isDisjoint(with: [.write, .writeWithoutResponse]) && write == nil {
                        throw .missingWriteHandler(characteristic: c.uuid)
                    }
                }
                if c.descriptors.contains(where: { $0.uuid == .clientCharacteristicConfiguration }) {
                    throw .explicitCCCD(characteristic: c.uuid)
                }
                let index = chars.count
                let declHandle = try next()
                let valueHandle = declHandle &+ 1
                var decl: [UInt8] = [c.properties.rawValue]
                decl.appendLE(valueHandle)
                c.uuid.append(to: &decl)
                attrs.append(Attribute(handle: declHandle, type: .characteristic,
                                       kind: .characteristicDeclaration(index: index), staticValue: decl))
                let vh = try next()
                var staticValue: [UInt8]? = nil
                if case .constant(let v) = c.value { staticValue = v }
                attrs.append(Attribute(handle: vh, type: c.uuid, kind: .characteristicValue(index: index), staticValue: staticValue))
                var cccd: UInt16?
                if !c.properties.isDisjoint(with: [.notify, .indicate]) {
                    let h = try next()
                    cccd = h
                    attrs.append(Attribute(handle: h, type: .clientCharacteristicConfiguration, kind: .cccd(index: index), staticValue: nil))
                }
                for d in c.descriptors {
                    guard d.value.count <= ATT.maximumAttributeValueLength else { throw .valueTooLong(characteristic: d.uuid, length: d.value.count) }
                    let h = try next()
                    attrs.append(Attribute(handle: h, type: d.uuid, kind: .descriptor(value: d.value), staticValue: d.value))
                }
                let handles = GATTCharacteristicHandles(declaration: declHandle, value: vh, cccd: cccd, end: UInt16(attrs.count))
                chars.append(CharacteristicEntry(uuid: c.uuid, properties: c.properties, handles: handles,
                                                 value: c.value, serviceIndex: serviceIndex))
                byValue[vh] = index
            }
            svcs.append(ServiceEntry(uuid: service.uuid, isPrimary: service.isPrimary, start: start, end: UInt16(attrs.count)))
        }
        attributes = attrs
        serviceEntries = svcs
        characteristicEntries = chars
        characteristicByValueHandle = byValue
    }

    /// Number of attributes (also the last handle).
    public var attributeCount: Int { attributes.count }

    /// The handle range of each service, in order.
    public var services: [(uuid: BluetoothUUID, isPrimary: Bool, handles: ATTHandleRange)] {
        serviceEntries.map { ($0.uuid, $0.isPrimary, ATTHandleRange(start: $0.start, end: $0.end)) }
    }

    /// The handles of the first characteristic `uuid` in the first service `service`.
    public func handles(of characteristic: BluetoothUUID, in service: BluetoothUUID) -> GATTCharacteristicHandles? {
        guard let s = serviceEntries.firstIndex(where: { $0.uuid == service }) else { return nil }
        return characteristicEntries.first { $0.serviceIndex == s && $0.uuid == characteristic }?.handles
    }

    @inline(__always)
    func attribute(_ handle: UInt16) -> Attribute? {
        let i = Int(handle) - 1
        return i >= 0 && i < attributes.count ? attributes[i] : nil
    }
}
