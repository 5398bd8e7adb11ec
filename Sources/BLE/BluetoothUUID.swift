// Bluetooth UUIDs (Core spec Vol 3 Part B 2.5.1): 128-bit values; 16- and 32-bit forms are
// shorthands relative to the Bluetooth Base UUID 00000000-0000-1000-8000-00805F9B34FB.

/// A Bluetooth UUID that remembers the width it uses on the ATT wire.
///
/// Two UUIDs are equal when their 128-bit values are equal, whatever their width: `0x2800` equals
/// `00002800-0000-1000-8000-00805F9B34FB`. The width matters only for encoding — a UUID decoded from
/// 16 wire bytes is re-encoded as 16 bytes, so codecs round-trip byte for byte. ATT carries UUIDs
/// little-endian, as 2 or 16 bytes (a 32-bit UUID travels as 128 bits).
public struct BluetoothUUID: Hashable, Sendable, CustomStringConvertible, Comparable {
    /// Width on the ATT wire.
    public enum Width: Int, Sendable {
        case bits16 = 2
        case bits128 = 16
    }

    /// Most significant 64 bits of the 128-bit value (big-endian textual order).
    public let high: UInt64
    /// Least significant 64 bits.
    public let low: UInt64
    /// How this UUID is encoded in ATT PDUs and GATT declarations.
    public let width: Width

    static let baseHigh: UInt64 = 0x0000_0000_0000_1000
    static let baseLow: UInt64 = 0x8000_0080_5F9B_34FB

    /// A 16-bit SIG-assigned UUID (encoded as 2 bytes).
    public init(_ uuid16: UInt16) {
        high = (UInt64(uuid16) << 32) | Self.baseHigh
        low = Self.baseLow
        width = .bits16
    }

    /// A 32-bit SIG-assigned UUID; ATT has no 32-bit form, so it is encoded as 128 bits.
    public init(uuid32: UInt32) {
        high = (UInt64(uuid32) << 32) | Self.baseHigh
        low = Self.baseLow
        width = .bits128
    }

    /// A 128-bit UUID given as its two halves (encoded as 16 bytes).
    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
        width = .bits128
    }

    /// Parses `"2A00"`, `"0x2A00"` (16-bit), `"0000180A"` (32-bit) or the 36-character form
    /// `"B80C0001-1C1F-4153-94CB-D7B58DCACA15"`. The 36-character form keeps the 128-bit width even
    /// for a Base-UUID value: what you write is what goes on the wire.
    public init?(_ string: String) {
        var s = Substring(string)
        if s.hasPrefix("0x") || s.hasPrefix("0X") { s = s.dropFirst(2) }
        switch s.count {
        case 4:
            guard let v = UInt16(s, radix: 16) else { return nil }
            self.init(v)
        case 8:
            guard let v = UInt32(s, radix: 16) else { return nil }
            self.init(uuid32: v)
        case 36:
            let parts = s.split(separator: "-", omittingEmptySubsequences: false)
            guard parts.count == 5, parts.map(\.count) == [8, 4, 4, 4, 12],
                  parts.allSatisfy({ $0.allSatisfy(\.isHexDigit) }) else { return nil }
            let hex = parts.joined()
            guard let hi = UInt64(hex.prefix(16), radix: 16),
                  let lo = UInt64(hex.suffix(16), radix: 16) else { return nil }
            self.init(high: hi, low: lo)
        default:
            return nil
        }
    }

    /// Decodes a UUID from ATT wire bytes: 2 bytes (16-bit) or 16 bytes (128-bit), little-endian.
    public init(littleEndian bytes: some Collection<UInt8>) throws(ATTDecodingError) {
        let b = Array(bytes)
        switch b.count {
        case 2:
            self.init(UInt16(b[0]) | UInt16(b[1]) << 8)
        case 16:
            var lo: UInt64 = 0, hi: UInt64 = 0
            for i in 0..<8 { lo |= UInt64(b[i]) << (8 * UInt64(i)) }
            for i in 0..<8 { hi |= UInt64(b[8 + i]) << (8 * UInt64(i)) }
            self.init(high: hi, low: lo)
        default:
            throw .invalidUUIDLength(b.count)
        }
    }

    /// The 16-bit short form, if this UUID is derived from the Base UUID with a 16-bit value.
    public var uuid16: UInt16? {
        guard low == Self.baseLow, high & 0xFFFF_FFFF == Self.baseHigh, high >> 48 == 0 else { return nil }
        return UInt16(truncatingIfNeeded: high >> 32)
    }

    /// The same UUID encoded as 128 bits.
    public var as128Bit: BluetoothUUID { BluetoothUUID(high: high, low: low) }

    /// ATT wire bytes (little-endian) in this UUID's width.
    public var littleEndianBytes: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(width.rawValue)
        append(to: &out)
        return out
    }

    /// Appends the ATT wire bytes to `out`.
    public func append(to out: inout [UInt8]) {
        switch width {
        case .bits16:
            out.appendLE(UInt16(truncatingIfNeeded: high >> 32))
        case .bits128:
            for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: low >> (8 * UInt64(i)))) }
            for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: high >> (8 * UInt64(i)))) }
        }
    }

    /// `0x2800` for 16-bit UUIDs, the uppercase 36-character form otherwise.
    public var description: String {
        if width == .bits16, let v = uuid16 { return "0x" + hex16(v) }
        let h = String(high, radix: 16, uppercase: true)
        let l = String(low, radix: 16, uppercase: true)
        let hex = String(repeating: "0", count: 16 - h.count) + h + String(repeating: "0", count: 16 - l.count) + l
        let c = Array(hex)
        return String(c[0..<8]) + "-" + String(c[8..<12]) + "-" + String(c[12..<16]) + "-"
            + String(c[16..<20]) + "-" + String(c[20..<32])
    }

    public static func == (a: BluetoothUUID, b: BluetoothUUID) -> Bool { a.high == b.high && a.low == b.low }
    public func hash(into h: inout Hasher) { h.combine(high); h.combine(low) }
    public static func < (a: BluetoothUUID, b: BluetoothUUID) -> Bool { (a.high, a.low) < (b.high, b.low) }
}

extension BluetoothUUID {
    // GATT attribute types (Assigned Numbers 3.5 / 3.7). Only the ones this module uses.
    public static let primaryService = BluetoothUUID(0x2800)
    public static let secondaryService = BluetoothUUID(0x2801)
    public static let include = BluetoothUUID(0x2802)
    public static let characteristic = BluetoothUUID(0x2803)
    public static let characteristicExtendedProperties = BluetoothUUID(0x2900)
    public static let characteristicUserDescription = BluetoothUUID(0x2901)
    public static let clientCharacteristicConfiguration = BluetoothUUID(0x2902)
    // Services and characteristics of the GAP and GATT services.
    public static let genericAccessService = BluetoothUUID(0x1800)
    public static let genericAttributeService = BluetoothUUID(0x1801)
    public static let deviceName = BluetoothUUID(0x2A00)
    public static let appearance = BluetoothUUID(0x2A01)
    public static let serviceChanged = BluetoothUUID(0x2A05)
}
