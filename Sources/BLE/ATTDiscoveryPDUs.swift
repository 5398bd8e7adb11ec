// The range-based discovery PDUs GATT uses to walk a server's attribute table
// (Vol 3 Part F 3.4.3 and 3.4.4): Find Information, Find By Type Value, Read By Type,
// Read By Group Type — requests and responses.

/// An inclusive attribute handle range, as in every range-based request.
public struct ATTHandleRange: Equatable, Sendable {
    public var start: UInt16
    public var end: UInt16
    public init(start: UInt16, end: UInt16) { self.start = start; self.end = end }
    /// The whole handle space.
    public static let all = ATTHandleRange(start: 0x0001, end: 0xFFFF)
}

private func encodeRange(_ opcode: ATTOpcode, _ range: ATTHandleRange, extra: Int) -> [UInt8] {
    var out: [UInt8] = [opcode.rawValue]
    out.reserveCapacity(5 + extra)
    out.appendLE(range.start)
    out.appendLE(range.end)
    return out
}

// MARK: Find Information

/// ATT_FIND_INFORMATION_REQ (0x04): list handles and types in a range (Vol 3 Part F 3.4.3.1).
public struct ATTFindInformationRequest: ATTPDUCodable {
    public static let opcode = ATTOpcode.findInformationRequest
    public var range: ATTHandleRange
    public init(range: ATTHandleRange) { self.range = range }
    public init(startHandle: UInt16, endHandle: UInt16) { range = ATTHandleRange(start: startHandle, end: endHandle) }

    public func encode() -> [UInt8] { encodeRange(Self.opcode, range, extra: 0) }

    public static func decode(_ pdu: [UInt8]) throws(ATTDecodingError) -> Self {
        try checkHeader(pdu, opcode, exactLength: 5)
        return Self(startHandle: pdu.readLE16(at: 1), endHandle: pdu.readLE16(at: 3))
    }
}

/// ATT_FIND_INFORMATION_RSP (0x05): handle/type pairs, all with UUIDs of one width (3.4.3.2).
public struct ATTFindInformationResponse: ATTPDUCodable {
    public static let opcode = ATTOpcode.findInformationResponse

    /// One handle and its attribute type.
    public struct Entry: Equatable, Sendable {
        public var handle: UInt16
        public var type: BluetoothUUID
        public init(handle: UInt16, type: BluetoothUUID) { self.handle = handle; self.type = type }
    }

    /// All entries; their UUIDs share one width (the Format field).
    public let entries: [Entry]
    /// The Format field: 0x01 for 16-bit UUIDs, 0x02 for 128-bit UUIDs.
    public var format: UInt8 { entries.first?.type.width == .bits16 ? 0x01 : 0x02 }

    /// Throws if `entries` is empty or mixes UUID widths — the wire format cannot carry that.
    public init(entries: [Entry]) throws(ATTEncodingError) {
        guard let first = entries.first else { throw .emptyList }
        guard entries.allSatisfy({ $0.type.width == first.type.width }) else { throw .mixedUUIDWidths }
        self.entries = entries
    }

    public func encode() -> [UInt8] {
        let w = entries.first?.type.width.rawValue ?? 2
        var out: [UInt8] = [Self.opcode.rawValue, format]
        out.reserveCapacity(2 + entries.count * (2 + w))
        for e in entries {
            out.appendLE(e.handle)
            e.type.append(to: &out)
        }
        return out
    }

    public static func decode(_ pdu: [UInt8]) throws(ATTDecodingError) -> Self {
        try checkHeader(pdu, opcode, minimumLength: 2)
        let uuidLength: Int
        switch pdu[1] {
        case 0x01: uuidLength = 2
        case 0x02: uuidLength = 16
        default: throw .invalidField(opcode: opcode, reason: "format 0x\(hex8(pdu[1])) (must be 0x01 or 0x02)")
        }
        let stride = 2 + uuidLength
        let data = pdu.count - 2
        guard data > 0, data % stride == 0 else { throw .invalidLength(opcode: opcode, length: pdu.count) }
        var entries: [Entry] = []
        entries.reserveCapacity(data / stride)
        var i = 2
        while i < pdu.count {
            let uuid = try BluetoothUUID(littleEndian: pdu[(i + 2)..<(i + stride)])
            entries.append(Entry(handle: pdu.readLE16(at: i), type: uuid))
            i += stride
        }
        return Self(unchecked: entries)
    }

    private init(unchecked entries: [Entry]) { self.entries = entries }
}

// MARK: Find By Type Value

/// ATT_FIND_BY_TYPE_VALUE_REQ (0x06): handles of attributes with a 16-bit type and an exact
/// value; GATT uses it to discover a primary service by UUID (3.4.3.3).
public struct ATTFindByTypeValueRequest: ATTPDUCodable {
    public static let opcode = ATTOpcode.findByTypeValueRequest
    public var range: ATTHandleRange
    /// Always a 16-bit UUID on the wire.
    public var attributeType: UInt16
    public var attributeValue: [UInt8]

    public init(range: ATTHandleRange, attributeType: UInt16, attributeValue: [UInt8]) {
        self.range = range
        self.attributeType = attributeType
        self.attributeValue = attributeValue
    }

    public func encode() -> [UInt8] {
        var out = encodeRange(Self.opcode, range, extra: 2 + attributeValue.count)
        out.appendLE(attributeType)
        out.append(contentsOf: attributeValue)
        return out
    }

    public static func decode(_ pdu: [UInt8]) throws(ATTDecodingError) -> Self {
        try checkHeader(pdu, opcode, minimumLength: 7)
        return Self(range: ATTHandleRange(start: pdu.readLE16(at: 1), end: pdu.readLE16(at: 3)),
                    attributeType: pdu.readLE16(at: 5), attributeValue: Array(pdu[7...]))
    }
}

/// ATT_FIND_BY_TYPE_VALUE_RSP (0x07): found handles with their group end handles (3.4.3.4).
public struct ATTFindByTypeValueResponse: ATTPDUCodable {
    public static let opcode = ATTOpcode.findByTypeValueResponse
    /// The found attribute handle and the end of its group (equal for non-grouping attributes).
    public typealias HandlesInformation = ATTHandleRange
    public var handlesInformation: [HandlesInformation]

    public init(handlesInformation: [HandlesInformation]) { self.handlesInformation = handlesInformation }

    public func encode() -> [UInt8] {
        var out: [UInt8] = [Self.opcode.rawValue]
        out.reserveCapacity(1 + 4 * handlesInformation.count)
        for h in handlesInformation {
            out.appendLE(h.start)
            out.appendLE(h.end)
        }
        return out
    }

    public static func decode(_ pdu: [UInt8]) throws(ATTDecodingError) -> Self {
        try checkHeader(pdu, opcode, minimumLength: 5)
        guard (pdu.count - 1) % 4 == 0 else { throw .invalidLength(opcode: opcode, length: pdu.count) }
        var list: [HandlesInformation] = []
        list.reserveCapacity((pdu.count - 1) / 4)
        var i = 1
        while i < pdu.count {
            list.append(ATTHandleRange(start: pdu.readLE16(at: i), end: pdu.readLE16(at: i + 2)))
            i += 4
        }
        return Self(handlesInformation: list)
    }
}

// MARK: Read By Type

/// ATT_READ_BY_TYPE_REQ (0x08): values of attributes of one type in a range; GATT uses it for
/// characteristic discovery (type 0x2803) and "read using characteristic UUID" (3.4.4.1).
public struct ATTReadByTypeRequest: ATTPDUCodable {
    public static let opcode = ATTOpcode.readByTypeRequest
    public var range: ATTHandleRange
    public var attributeType: BluetoothUUID

    public init(range: ATTHandleRange, attributeType: BluetoothUUID) {
        self.range = range
        self.attributeType = attributeType
    }

    public func encode() -> [UInt8] {
        var out = encodeRange(Self.opcode, range, extra: attributeType.width.rawValue)
        attributeType.append(to: &out)
        return out
    }

    public static func decode(_ pdu: [UInt8]) throws(ATTDecodingError) -> Self {
        try checkHeader(pdu, opcode, minimumLength: 1)
        guard pdu.count == 7 || pdu.count == 21 else { throw .invalidLength(opcode: opcode, length: pdu.count) }
        return Self(range: ATTHandleRange(start: pdu.readLE16(at: 1), end: pdu.readLE16(at: 3)),
                    attributeType: try BluetoothUUID(littleEndian: pdu[5...]))
    }
}

/// ATT_READ_BY_TYPE_RSP (0x09): handle/value pairs whose values all have one length (3.4.4.2).
public struct ATTReadByTypeResponse: ATTPDUCodable {
    public static let opcode = ATTOpcode.readByTypeResponse

    public struct Entry: Equatable, Sendable {
        public var handle: UInt16
        public var value: [UInt8]
        public init(handle: UInt16, value: [UInt8]) { self.handle = handle; self.value = value }
    }

    public let attributeData: [Entry]

    /// Throws if the list is empty, mixes value lengths, or an entry exceeds the one-byte Length field.
    public init(attributeData: [Entry]) throws(ATTEncodingError) {
        guard let first = attributeData.first else { throw .emptyList }
        guard first.value.count + 2 <= 255 else { throw .entryTooLong(first.value.count + 2) }
        guard attributeData.allSatisfy({ $0.value.count == first.value.count }) else { throw .mixedValueLengths }
        self.attributeData = attributeData
    }

    private init(unchecked: [Entry]) { attributeData = unchecked }

    public func encode() -> [UInt8] {
        let length = 2 + (attributeData.first?.value.count ?? 0)
        var out: [UInt8] = [Self.opcode.rawValue, UInt8(truncatingIfNeeded: length)]
        out.reserveCapacity(2 + length * attributeData.count)
        for e in attributeData {
            out.appendLE(e.handle)
            out.append(contentsOf: e.value)
        }
        return out
    }

    public static func decode(_ pdu: [UInt8]) throws(ATTDecodingError) -> Self {
        try checkHeader(pdu, opcode, minimumLength: 4)
        let length = Int(pdu[1])
        guard length >= 2 else { throw .invalidField(opcode: opcode, reason: "length \(length) (must be at least 2)") }
        guard (pdu.count - 2) % length == 0 else { throw .invalidLength(opcode: opcode, length: pdu.count) }
        var list: [Entry] = []
        list.reserveCapacity((pdu.count - 2) / length)
        var i = 2
        while i < pdu.count {
            list.append(Entry(handle: pdu.readLE16(at: i), value: Array(pdu[(i + 2)..<(i + length)])))
            i += length
        }
        return Self(unchecked: list)
    }
}

// MARK: Read By Group Type

/// ATT_READ_BY_GROUP_TYPE_REQ (0x10): grouping attributes of one type in a range; GATT uses it to
/// discover all primary services (type 0x2800) (3.4.4.9).
public struct ATTReadByGroupTypeRequest: ATTPDUCodable {
    public static let opcode = ATTOpcode.readByGroupTypeRequest
    public var range: ATTHandleRange
    public var groupType: BluetoothUUID

    public init(range: ATTHandleRange, groupType: BluetoothUUID) {
        self.range = range
        self.groupType = groupType
    }

    public func encode() -> [UInt8] {
        var out = encodeRange(Self.opcode, range, extra: groupType.width.rawValue)
        groupType.append(to: &out)
        return out
    }

    public static func decode(_ pdu: [UInt8]) throws(ATTDecodingError) -> Self {
        try checkHeader(pdu, opcode, minimumLength: 1)
        guard pdu.count == 7 || pdu.count == 21 else { throw .invalidLength(opcode: opcode, length: pdu.count) }
        return Self(range: ATTHandleRange(start: pdu.readLE16(at: 1), end: pdu.readLE16(at: 3)),
                    groupType: try BluetoothUUID(littleEndian: pdu[5...]))
    }
}

/// ATT_READ_BY_GROUP_TYPE_RSP (0x11): (handle, end group handle, value) triples whose values all
/// have one length (3.4.4.10).
public struct ATTReadByGroupTypeResponse: ATTPDUCodable {
    public static let opcode = ATTOpcode.readByGroupTypeResponse

    public struct Entry: Equatable, Sendable {
        public var handle: UInt16
        public var endGroupHandle: UInt16
        public var value: [UInt8]
        public init(handle: UInt16, endGroupHandle: UInt16, value: [UInt8]) {
            self.handle = handle
            self.endGroupHandle = endGroupHandle
            self.value = value
        }
    }

    public let attributeData: [Entry]

    /// Throws if the list is empty, mixes value lengths, or an entry exceeds the one-byte Length field.
    public init(attributeData: [Entry]) throws(ATTEncodingError) {
        guard let first = attributeData.first else { throw .emptyList }
        guard first.value.count + 4 <= 255 else { throw .entryTooLong(first.value.count + 4) }
        guard attributeData.allSatisfy({ $0.value.count == first.value.count }) else { throw .mixedValueLengths }
        self.attributeData = attributeData
    }

    private init(unchecked: [Entry]) { attributeData = unchecked }

    public func encode() -> [UInt8] {
        let length = 4 + (attributeData.first?.value.count ?? 0)
        var out: [UInt8] = [Self.opcode.rawValue, UInt8(truncatingIfNeeded: length)]
        out.reserveCapacity(2 + length * attributeData.count)
        for e in attributeData {
            out.appendLE(e.handle)
            out.appendLE(e.endGroupHandle)
            out.append(contentsOf: e.value)
        }
        return out
    }

    public static func decode(_ pdu: [UInt8]) throws(ATTDecodingError) -> Self {
        try checkHeader(pdu, opcode, minimumLength: 6)
        let length = Int(pdu[1])
        guard length >= 4 else { throw .invalidField(opcode: opcode, reason: "length \(length) (must be at least 4)") }
        guard (pdu.count - 2) % length == 0 else { throw .invalidLength(opcode: opcode, length: pdu.count) }
        var list: [Entry] = []
        list.reserveCapacity((pdu.count - 2) / length)
        var i = 2
        while i < pdu.count {
            list.append(Entry(handle: pdu.readLE16(at: i), endGroupHandle: pdu.readLE16(at: i + 2),
                              value: Array(pdu[(i + 4)..<(i + length)])))
            i += length
        }
        return Self(unchecked: list)
    }
}
