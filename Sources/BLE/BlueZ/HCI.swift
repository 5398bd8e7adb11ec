// HCI packets the BlueZ transport sends and reads on a raw HCI socket (Bluetooth Core 5.4, Vol 4 Part E):
// LE advertising commands (legacy §7.8.5–7.8.9, extended §7.8.53–7.8.56) and the events that answer them.
// Pure value types: encode and decode are testable on bytes, no socket involved.

/// HCI packet indicators on a raw HCI socket (the H4 framing byte the kernel keeps).
public enum HCIPacketType: UInt8, Sendable {
    case command = 0x01
    case aclData = 0x02
    case event = 0x04
}

/// An HCI command: opcode (OGF << 10 | OCF) and up to 255 bytes of parameters.
public struct HCICommand: Equatable, Sendable {
    public let opcode: UInt16
    public let parameters: [UInt8]
    /// The specification's name, for error messages ("LE Set Advertising Parameters").
    public let name: String

    public init(opcode: UInt16, parameters: [UInt8], name: String) {
        self.opcode = opcode
        self.parameters = parameters
        self.name = name
    }

    /// The packet as written to a raw HCI socket: indicator, opcode (little-endian), length, parameters.
    public func encoded() -> [UInt8] {
        [HCIPacketType.command.rawValue, UInt8(opcode & 0xFF), UInt8(opcode >> 8), UInt8(parameters.count)]
            + parameters
    }

    static let leOGF: UInt16 = 0x08
    static func le(_ ocf: UInt16) -> UInt16 { leOGF << 10 | ocf }

    public static let leReadLocalSupportedFeaturesOpcode = le(0x0003)
    public static let leSetAdvertisingParametersOpcode = le(0x0006)
    public static let leSetAdvertisingDataOpcode = le(0x0008)
    public static let leSetScanResponseDataOpcode = le(0x0009)
    public static let leSetAdvertisingEnableOpcode = le(0x000A)
    public static let leSetExtendedAdvertisingParametersOpcode = le(0x0036)
    public static let leSetExtendedAdvertisingDataOpcode = le(0x0037)
    public static let leSetExtendedScanResponseDataOpcode = le(0x0038)
    public static let leSetExtendedAdvertisingEnableOpcode = le(0x0039)
    public static let leRemoveAdvertisingSetOpcode = le(0x003C)
    public static let leSetRandomAddressOpcode = le(0x0005)
    public static let leSetAdvertisingSetRandomAddressOpcode = le(0x0035)
    public static let leReadNumberOfSupportedAdvertisingSetsOpcode = le(0x003B)
    /// Read RSSI, a Status Parameters command (OGF 0x05, OCF 0x0005).
    public static let readRSSIOpcode: UInt16 = 0x05 << 10 | 0x0005

    public static func leReadLocalSupportedFeatures() -> HCICommand {
        HCICommand(opcode: leReadLocalSupportedFeaturesOpcode, parameters: [],
                   name: "LE Read Local Supported Features")
    }

    /// LE Set Advertising Parameters (legacy).
    public static func leSetAdvertisingParameters(_ p: LEAdvertisingParameters) -> HCICommand {
        var b: [UInt8] = []
        b.appendLE16(p.intervalMinUnits)
        b.appendLE16(p.intervalMaxUnits)
        b.append(p.connectable ? 0x00 /* ADV_IND */ : 0x02 /* ADV_SCAN_IND */)
        b.append(p.ownAddressType.rawValue)
        b.append(0x00)                                  // peer address type (unused for undirected)
        b += [UInt8](repeating: 0, count: 6)            // peer address
        b.append(p.channelMap)
        b.append(0x00)                                  // filter policy: anyone may scan and connect
        return HCICommand(opcode: leSetAdvertisingParametersOpcode, parameters: b,
                          name: "LE Set Advertising Parameters")
    }

    /// LE Set Advertising Data / LE Set Scan Response Data: always 32 bytes (length + 31, zero padded).
    public static func leSetAdvertisingData(_ data: [UInt8]) throws -> HCICommand {
        HCICommand(opcode: leSetAdvertisingDataOpcode, parameters: try padded31(data),
                   name: "LE Set Advertising Data")
    }

    public static func leSetScanResponseData(_ data: [UInt8]) throws -> HCICommand {
        HCICommand(opcode: leSetScanResponseDataOpcode, parameters: try padded31(data),
                   name: "LE Set Scan Response Data")
    }

    public static func leSetAdvertisingEnable(_ enable: Bool) -> HCICommand {
        HCICommand(opcode: leSetAdvertisingEnableOpcode, parameters: [enable ? 1 : 0],
                   name: "LE Set Advertising Enable")
    }

    /// LE Set Extended Advertising Parameters for one set sending *legacy* PDUs (ADV_IND or
    /// ADV_SCAN_IND), so scanners that only know legacy advertising still see the lock.
    public static func leSetExtendedAdvertisingParameters(handle: UInt8, _ p: LEAdvertisingParameters) -> HCICommand {
        // Advertising_Event_Properties: bit0 connectable, bit1 scannable, bit4 legacy PDUs.
        let properties: UInt16 = p.connectable ? 0x0013 : 0x0012
        var b: [UInt8] = [handle]
        b.appendLE16(properties)
        b.appendLE24(UInt32(p.intervalMinUnits))
        b.appendLE24(UInt32(p.intervalMaxUnits))
        b.append(p.channelMap)
        b.append(p.ownAddressType.rawValue)
        b.append(0x00)                                  // peer address type
        b += [UInt8](repeating: 0, count: 6)            // peer address
        b.append(0x00)                                  // filter policy
        b.append(0x7F)                                  // TX power: no preference
        b.append(0x01)                                  // primary PHY: LE 1M (required for legacy PDUs)
        b.append(0x00)                                  // secondary max skip
        b.append(0x01)                                  // secondary PHY: LE 1M
        b.append(0x00)                                  // advertising SID
        b.append(0x00)                                  // no scan request notifications
        return HCICommand(opcode: leSetExtendedAdvertisingParametersOpcode, parameters: b,
                          name: "LE Set Extended Advertising Parameters")
    }

    public static func leSetExtendedAdvertisingData(handle: UInt8, _ data: [UInt8]) throws -> HCICommand {
        HCICommand(opcode: leSetExtendedAdvertisingDataOpcode, parameters: try extendedData(handle, data),
                   name: "LE Set Extended Advertising Data")
    }

    public static func leSetExtendedScanResponseData(handle: UInt8, _ data: [UInt8]) throws -> HCICommand {
        HCICommand(opcode: leSetExtendedScanResponseDataOpcode, parameters: try extendedData(handle, data),
                   name: "LE Set Extended Scan Response Data")
    }

    public static func leSetExtendedAdvertisingEnable(_ enable: Bool, handle: UInt8) -> HCICommand {
        // One set, no duration limit, no event-count limit.
        HCICommand(opcode: leSetExtendedAdvertisingEnableOpcode,
                   parameters: [enable ? 1 : 0, 1, handle, 0, 0, 0],
                   name: "LE Set Extended Advertising Enable")
    }

    /// Read RSSI (Core Vol 4 Part E §7.5.4) of the connection `connectionHandle`: on LE, the signal
    /// strength of the link's packets at the antenna, in dBm.
    public static func readRSSI(connectionHandle: UInt16) -> HCICommand {
        HCICommand(opcode: readRSSIOpcode, parameters: [UInt8(connectionHandle & 0xFF), UInt8(connectionHandle >> 8 & 0x0F)],
                   name: "Read RSSI")
    }

    /// LE Set Random Address (§7.8.4): the address legacy advertising with `Own_Address_Type` random
    /// uses. The controller refuses it while legacy advertising is enabled, so the address a phone
    /// sees always belongs to the payload advertised with it.
    public static func leSetRandomAddress(_ address: LEStaticRandomAddress) -> HCICommand {
        HCICommand(opcode: leSetRandomAddressOpcode, parameters: address.bytes.reversed(),
                   name: "LE Set Random Address")
    }

    /// LE Set Advertising Set Random Address (§7.8.52): one extended advertising set's own address.
    public static func leSetAdvertisingSetRandomAddress(handle: UInt8, _ address: LEStaticRandomAddress) -> HCICommand {
        HCICommand(opcode: leSetAdvertisingSetRandomAddressOpcode, parameters: [handle] + address.bytes.reversed(),
                   name: "LE Set Advertising Set Random Address")
    }

    /// LE Read Number of Supported Advertising Sets (§7.8.58): answers status and a count (1…240).
    public static func leReadNumberOfSupportedAdvertisingSets() -> HCICommand {
        HCICommand(opcode: leReadNumberOfSupportedAdvertisingSetsOpcode, parameters: [],
                   name: "LE Read Number of Supported Advertising Sets")
    }

    public static func leRemoveAdvertisingSet(handle: UInt8) -> HCICommand {
        HCICommand(opcode: leRemoveAdvertisingSetOpcode, parameters: [handle], name: "LE Remove Advertising Set")
    }

    private static func padded31(_ data: [UInt8]) throws -> [UInt8] {
        guard data.count <= 31 else { throw BlueZError.advertisingDataTooLong(data.count) }
        return [UInt8(data.count)] + data + [UInt8](repeating: 0, count: 31 - data.count)
    }

    private static func extendedData(_ handle: UInt8, _ data: [UInt8]) throws -> [UInt8] {
        // Legacy PDUs carry at most 31 bytes; operation 0x03 = complete data, fragment preference 0x01 = none.
        guard data.count <= 31 else { throw BlueZError.advertisingDataTooLong(data.count) }
        return [handle, 0x03, 0x01, UInt8(data.count)] + data
    }
}

/// A static random device address (Core Vol 6 Part B §1.3.2.1): the two most significant bits 11, the
/// other 46 neither all 0 nor all 1. Each lock advertised by one adapter gets its own, derived from the
/// lock's identity so it stays the same across restarts (a phone that remembered the lock finds it again).
public struct LEStaticRandomAddress: Hashable, Sendable, CustomStringConvertible {
    /// Display order, most significant byte first.
    public let bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == 6, bytes[0] & 0xC0 == 0xC0 else { return nil }
        let rest = [bytes[0] & 0x3F] + bytes[1...]
        guard !rest.allSatisfy({ $0 == 0 }), !(rest[0] == 0x3F && rest.dropFirst().allSatisfy({ $0 == 0xFF })) else { return nil }
        self.bytes = bytes
    }

    /// The address of `identity` (e.g. "site/lock"): FNV-1a 64 of its UTF-8, 46 bits of it, with the
    /// static-random marker; `attempt` perturbs it when two identities of one adapter collide.
    public static func derived(from identity: String, attempt: UInt8 = 0) -> LEStaticRandomAddress {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in Array(identity.utf8) + [attempt] {
            h ^= UInt64(b)
            h &*= 0x0000_0100_0000_01B3
        }
        var out = (0..<6).map { UInt8(truncatingIfNeeded: h >> (8 * (5 - UInt64($0)))) }
        out[0] = out[0] | 0xC0
        if let address = LEStaticRandomAddress(bytes: out) { return address }
        return derived(from: identity, attempt: attempt &+ 1)   // all-0/all-1 random part: 2 in 2^46
    }

    /// Distinct addresses for `identities`, in order (a collision takes the next attempt).
    public static func distinct(for identities: [String]) -> [LEStaticRandomAddress] {
        var used: Set<LEStaticRandomAddress> = []
        return identities.map { id in
            var attempt: UInt8 = 0
            var a = derived(from: id)
            while used.contains(a) { attempt &+= 1; a = derived(from: id, attempt: attempt) }
            used.insert(a)
            return a
        }
    }

    public var description: String { bytes.map { hex8($0) }.joined(separator: ":") }
}

/// The advertiser's own address type (Core Vol 4 Part E §7.8.5 Own_Address_Type).
public enum LEOwnAddressType: UInt8, Sendable {
    case `public` = 0x00
    case random = 0x01
}

/// Configurable legacy advertising parameters. Intervals are in milliseconds; the controller counts
/// in 0.625 ms units between 20 ms and 10.24 s.
public struct LEAdvertisingParameters: Equatable, Sendable {
    public var intervalMinMilliseconds: Double
    public var intervalMaxMilliseconds: Double
    /// Connectable (ADV_IND) — what a lock needs; non-connectable sends ADV_SCAN_IND.
    public var connectable: Bool
    public var ownAddressType: LEOwnAddressType
    /// Bit 0: channel 37, bit 1: 38, bit 2: 39.
    public var channelMap: UInt8

    /// 100–150 ms: quick discovery by a phone without flooding the channels.
    public init(intervalMinMilliseconds: Double = 100, intervalMaxMilliseconds: Double = 150,
                connectable: Bool = true, ownAddressType: LEOwnAddressType = .public, channelMap: UInt8 = 0x07) {
        self.intervalMinMilliseconds = intervalMinMilliseconds
        self.intervalMaxMilliseconds = intervalMaxMilliseconds
        self.connectable = connectable
        self.ownAddressType = ownAddressType
        self.channelMap = channelMap
    }

    var intervalMinUnits: UInt16 { Self.units(intervalMinMilliseconds) }
    var intervalMaxUnits: UInt16 { Self.units(max(intervalMinMilliseconds, intervalMaxMilliseconds)) }

    static func units(_ ms: Double) -> UInt16 {
        guard ms.isFinite else { return 0x0800 }
        let u = (ms / 0.625).rounded()
        return UInt16(min(max(u, 0x0020), 0x4000))
    }
}

/// Advertising and scan-response payloads (Core Supplement Part A): AD structures of
/// `[length, type, data…]`, each payload at most 31 bytes.
public struct LEAdvertisingPayload: Equatable, Sendable {
    public var advertisingData: [UInt8]
    public var scanResponseData: [UInt8]

    static let flagsType: UInt8 = 0x01
    static let complete16BitUUIDsType: UInt8 = 0x03
    static let complete128BitUUIDsType: UInt8 = 0x07
    static let shortenedLocalNameType: UInt8 = 0x08
    static let completeLocalNameType: UInt8 = 0x09

    /// The lock's payload: flags (LE General Discoverable, BR/EDR not supported) and the lock service's
    /// UUID in the advertisement, so a phone can filter its scan on it; the name in the scan response
    /// (complete, or shortened to fit 29 bytes at a character boundary).
    public static func lock(serviceUUID: BluetoothUUID, name: String) throws -> LEAdvertisingPayload {
        var adv: [UInt8] = [2, flagsType, 0x06]
        if serviceUUID.width == .bits16, serviceUUID.uuid16 != nil {
            adv += [3, complete16BitUUIDsType] + serviceUUID.littleEndianBytes
        } else {
            adv += [17, complete128BitUUIDsType] + serviceUUID.as128Bit.littleEndianBytes
        }
        var nameBytes = Array(name.utf8)
        var nameType = completeLocalNameType
        if nameBytes.count > 29 {
            nameType = shortenedLocalNameType
            var cut = 29
            // Do not split a UTF-8 sequence: back up over continuation bytes (10xxxxxx).
            while cut > 0 && nameBytes[cut] & 0xC0 == 0x80 { cut -= 1 }
            nameBytes = Array(nameBytes[..<cut])
        }
        let scan: [UInt8] = nameBytes.isEmpty ? [] : [UInt8(nameBytes.count + 1), nameType] + nameBytes
        return LEAdvertisingPayload(advertisingData: adv, scanResponseData: scan)
    }

    /// Parses AD structures (for tests and for reading what a scanner saw). Stops at a zero length
    /// (the zero padding); throws on a structure running past the end.
    public static func structures(_ data: [UInt8]) throws -> [(type: UInt8, data: [UInt8])] {
        var out: [(type: UInt8, data: [UInt8])] = []
        var i = 0
        while i < data.count {
            let len = Int(data[i])
            if len == 0 { break }
            guard i + 1 + len <= data.count else {
                throw HCIDecodingError.truncated(what: "AD structure", need: i + 1 + len, have: data.count)
            }
            out.append((data[i + 1], Array(data[(i + 2)..<(i + 1 + len)])))
            i += 1 + len
        }
        return out
    }
}

/// The return parameters of Read RSSI: status, connection handle (LE16), RSSI (signed byte, dBm;
/// 127 = not available).
public struct HCIReadRSSIResult: Equatable, Sendable {
    public let connectionHandle: UInt16
    public let rssi: Int8

    /// - Throws: `BlueZError.hciCommandFailed` for an error status, a short answer, or the answer of
    ///   another connection.
    public static func decode(_ returnParameters: [UInt8], connectionHandle: UInt16) throws -> HCIReadRSSIResult {
        let status = returnParameters.first ?? 0xFF
        guard status == HCIStatus.success else { throw BlueZError.hciCommandFailed(command: "Read RSSI", status: status) }
        guard returnParameters.count >= 4 else { throw BlueZError.hciCommandFailed(command: "Read RSSI (short answer)", status: 0xFF) }
        let handle = (UInt16(returnParameters[1]) | UInt16(returnParameters[2]) << 8) & 0x0FFF
        guard handle == connectionHandle & 0x0FFF else {
            throw BlueZError.hciCommandFailed(command: "Read RSSI (answer for connection 0x\(String(handle, radix: 16)))", status: 0xFF)
        }
        return HCIReadRSSIResult(connectionHandle: handle, rssi: Int8(bitPattern: returnParameters[3]))
    }
}

public enum HCIDecodingError: Error, Equatable, Sendable, CustomStringConvertible {
    case truncated(what: String, need: Int, have: Int)
    case notAnEvent(UInt8)

    public var description: String {
        switch self {
        case .truncated(let what, let need, let have): return "HCI \(what) truncated: needs \(need) bytes, has \(have)"
        case .notAnEvent(let indicator): return "HCI packet indicator 0x\(hex8(indicator)) is not an event"
        }
    }
}

/// The HCI events the transport acts on; everything else is kept as `.other`.
public enum HCIEvent: Equatable, Sendable {
    /// Command Complete (0x0E). `returnParameters[0]` is the status for every command we send.
    case commandComplete(opcode: UInt16, returnParameters: [UInt8])
    /// Command Status (0x0F).
    case commandStatus(status: UInt8, opcode: UInt16)
    /// Disconnection Complete (0x05).
    case disconnectionComplete(status: UInt8, handle: UInt16, reason: UInt8)
    /// LE Connection Complete (LE Meta 0x01) or LE Enhanced Connection Complete (0x0A).
    /// `peerAddress` is in display order (most significant byte first).
    case leConnectionComplete(status: UInt8, handle: UInt16, role: UInt8, peerAddressType: UInt8,
                              peerAddress: [UInt8])
    /// LE Advertising Set Terminated (LE Meta 0x12, §7.7.65.18): set `advertisingHandle` stopped; with
    /// status 0 because the connection `connectionHandle` was made from it.
    case leAdvertisingSetTerminated(status: UInt8, advertisingHandle: UInt8, connectionHandle: UInt16,
                                    completedEvents: UInt8)
    case other(code: UInt8, parameters: [UInt8])

    /// Decodes one packet read from a raw HCI socket, starting with the 0x04 indicator.
    public static func decode(_ packet: [UInt8]) throws -> HCIEvent {
        guard packet.count >= 3 else { throw HCIDecodingError.truncated(what: "HCI event", need: 3, have: packet.count) }
        guard packet[0] == HCIPacketType.event.rawValue else { throw HCIDecodingError.notAnEvent(packet[0]) }
        let code = packet[1]
        let length = Int(packet[2])
        guard packet.count >= 3 + length else {
            throw HCIDecodingError.truncated(what: "HCI event parameters", need: 3 + length, have: packet.count)
        }
        let p = Array(packet[3..<(3 + length)])
        func need(_ n: Int, _ what: String) throws {
            if p.count < n { throw HCIDecodingError.truncated(what: what, need: n, have: p.count) }
        }
        switch code {
        case 0x0E:
            try need(3, "Command Complete")
            return .commandComplete(opcode: UInt16(p[1]) | UInt16(p[2]) << 8, returnParameters: Array(p[3...]))
        case 0x0F:
            try need(4, "Command Status")
            return .commandStatus(status: p[0], opcode: UInt16(p[2]) | UInt16(p[3]) << 8)
        case 0x05:
            try need(4, "Disconnection Complete")
            return .disconnectionComplete(status: p[0], handle: (UInt16(p[1]) | UInt16(p[2]) << 8) & 0x0FFF,
                                          reason: p[3])
        case 0x3E where !p.isEmpty && (p[0] == 0x01 || p[0] == 0x0A):
            try need(12, "LE Connection Complete")
            return .leConnectionComplete(status: p[1], handle: (UInt16(p[2]) | UInt16(p[3]) << 8) & 0x0FFF,
                                         role: p[4], peerAddressType: p[5], peerAddress: p[6..<12].reversed())
        case 0x3E where !p.isEmpty && p[0] == 0x12:
            try need(6, "LE Advertising Set Terminated")
            return .leAdvertisingSetTerminated(status: p[1], advertisingHandle: p[2],
                                               connectionHandle: (UInt16(p[3]) | UInt16(p[4]) << 8) & 0x0FFF,
                                               completedEvents: p[5])
        default:
            return .other(code: code, parameters: p)
        }
    }
}

/// HCI error codes (Core Vol 1 Part F) that advertising and connections run into.
public enum HCIStatus {
    public static let success: UInt8 = 0x00
    public static let unknownCommand: UInt8 = 0x01
    public static let commandDisallowed: UInt8 = 0x0C

    public static func name(_ status: UInt8) -> String {
        switch status {
        case 0x00: return "Success"
        case 0x01: return "Unknown HCI Command"
        case 0x02: return "Unknown Connection Identifier"
        case 0x03: return "Hardware Failure"
        case 0x07: return "Memory Capacity Exceeded"
        case 0x0C: return "Command Disallowed"
        case 0x0D: return "Connection Rejected due to Limited Resources"
        case 0x11: return "Unsupported Feature or Parameter Value"
        case 0x12: return "Invalid HCI Command Parameters"
        case 0x13: return "Remote User Terminated Connection"
        case 0x16: return "Connection Terminated by Local Host"
        case 0x1F: return "Unspecified Error"
        case 0x3A: return "Controller Busy"
        case 0x3E: return "Connection Failed to be Established"
        case 0x42: return "Unknown Advertising Identifier"
        case 0x43: return "Limit Reached"
        default: return "error"
        }
    }
}

// fileprivate: another file of the module may well define helpers with these names.
fileprivate extension Array where Element == UInt8 {
    mutating func appendLE16(_ v: UInt16) { append(UInt8(v & 0xFF)); append(UInt8(v >> 8)) }
    mutating func appendLE24(_ v: UInt32) {
        append(UInt8(v & 0xFF)); append(UInt8((v >> 8) & 0xFF)); append(UInt8((v >> 16) & 0xFF))
    }
}
