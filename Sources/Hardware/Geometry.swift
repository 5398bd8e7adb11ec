import Foundation

/// A point in the site, in metres. `z` is the height above the site's reference floor (0 when a site
/// file leaves it out), so that an IQ on the floor above reaches, or fails to reach, a lock as in the
/// building.
public struct Position: Sendable, Hashable, Codable, CustomStringConvertible {
    public var x: Double
    public var y: Double
    public var z: Double

    public init(x: Double, y: Double, z: Double = 0) {
        self.x = x
        self.y = y
        self.z = z
    }

    /// Euclidean distance in metres.
    public func distance(to other: Position) -> Double {
        let dx = x - other.x, dy = y - other.y, dz = z - other.z
        return (dx * dx + dy * dy + dz * dz).squareRoot()
    }

    public var description: String { z == 0 ? "(\(x), \(y))" : "(\(x), \(y), \(z))" }

    /// Coordinates further than this from the origin are rejected: no building is 100 km wide, and the
    /// bound keeps the spatial index's integer cells far from overflow.
    public static let maximumCoordinate: Double = 100_000
}

/// How close a phone, fob or finger must be for a reader to notice it.
///
/// Numbers we use (documented in the site-file reference and the control API):
/// - escutcheon, cylinder and locker locks read by touch: the phone or fob must be within **5 cm** of the
///   reader face (NFC-style "tap"; the BLE tap protocol is gated the same way so that a phone in a pocket
///   two metres away cannot open a door by accident);
/// - wall readers have a larger antenna and a "hover" zone: **10 cm**;
/// - a keypad is pressed by hand, so a PIN is always "within reach" of the keypad it is typed on.
///
/// A site file may set one lock's reach (`reach_m`, `LockConfig.reach`): these are the defaults.
public enum ReaderReach {
    public static func maximumDistance(for kind: LockKind) -> Double {
        switch kind {
        case .escutcheon, .cylinder, .locker: return 0.05
        case .wallReader: return 0.10
        }
    }
}

/// IQ radio range: the vendor's "about 30 ft" is 9.144 m.
public enum IQRadio {
    public static let defaultRange: Double = 9.144
    /// An IQ serves at most this many locks (the hardware's pairing table).
    public static let maximumLocks = 16
}

extension Character {
    /// 0–9 only (`isNumber` also accepts other scripts' digits and fractions).
    var isASCIIDigit: Bool { isASCII && ("0"..."9").contains(self) }
}
