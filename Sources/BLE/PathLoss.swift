import Foundation

/// How far a phone is, from the signal strength the lock's controller measures on its link: the
/// log-distance path-loss model,
///
///     RSSI(d) = P₁ − 10 · n · log₁₀(d / 1 m)    ⇔    d = 10 ^ ((P₁ − RSSI) / (10 · n))
///
/// with P₁ the RSSI of a phone 1 m away (`rssiAtOneMetre`, dBm) and n the path-loss exponent (2 in
/// free space, about 2.7–3.5 through walls and bodies). Both depend on the controller, its antenna
/// and the phone: they are calibrated per lock (`keyway serve --ble-rssi-at-1m`,
/// `--ble-path-loss-exponent`). The estimate is what a real reader uses to tell a tap from a phone in
/// a pocket, and no better: a few dB of fading move it by tens of percent. See HARDWARE.md, "Reach
/// over BlueZ".
public struct PathLossModel: Sendable, Equatable, CustomStringConvertible {
    /// dBm measured from a phone 1 m away. −59 dBm is the usual calibrated power of a BLE phone at
    /// 1 m (iBeacon's "measured power" convention).
    public var rssiAtOneMetre: Double
    /// Path-loss exponent n (> 0).
    public var exponent: Double

    public static let defaultRSSIAtOneMetre: Double = -59
    public static let defaultExponent: Double = 2.0
    /// Accepted calibration: a controller reports −127…+20 dBm; an exponent outside 1…6 is no building.
    public static let rssiAtOneMetreRange: ClosedRange<Double> = -127...20
    public static let exponentRange: ClosedRange<Double> = 1...6

    public init(rssiAtOneMetre: Double = PathLossModel.defaultRSSIAtOneMetre, exponent: Double = PathLossModel.defaultExponent) {
        self.rssiAtOneMetre = rssiAtOneMetre
        self.exponent = exponent
    }

    /// Nil when a parameter is outside its range (a calibration error, named by `validationError`).
    public var validationError: String? {
        if !rssiAtOneMetre.isFinite || !Self.rssiAtOneMetreRange.contains(rssiAtOneMetre) {
            return "RSSI at 1 m must be -127…20 dBm (got \(rssiAtOneMetre))"
        }
        if !exponent.isFinite || !Self.exponentRange.contains(exponent) {
            return "path-loss exponent must be 1…6 (got \(exponent))"
        }
        return nil
    }

    /// Metres from the lock for a measured RSSI (dBm).
    public func distance(rssi: Int) -> Double {
        pow(10, (rssiAtOneMetre - Double(rssi)) / (10 * exponent))
    }

    /// The RSSI the model expects at `distance` metres (> 0): the inverse of `distance(rssi:)`.
    public func rssi(atDistance distance: Double) -> Double {
        rssiAtOneMetre - 10 * exponent * log10(distance)
    }

    public var description: String { "log-distance, \(rssiAtOneMetre) dBm at 1 m, exponent \(exponent)" }
}

/// What the BlueZ transport makes of a link's RSSI reading: a distance for the lock's reach check.
public enum RSSIReach: Sendable, Equatable, CustomStringConvertible {
    /// The controller measured `rssi` dBm; the model puts the phone `distance` metres away.
    case measured(rssi: Int, distance: Double)
    /// No reading (the command failed, or the controller answered "not available", 127): why.
    case unmeasured(String)
    /// Not measured by choice (`--ble-reach at-reader`): the phone is held at the reader.
    case atReader

    /// Where a phone whose RSSI could not be read counts as standing: further than any reader reaches
    /// (5 cm / 10 cm) and than an IQ's 9.1 m. Deny by default — the lock answers the phone's hello with
    /// `out_of_reach` (ATT 0x80), as for a phone too far away, and the log says the RSSI was unreadable.
    public static let unmeasuredDistance: Double = 100

    /// HCI reports 127 when the RSSI is not available (Core Vol 4 Part E §7.5.4).
    public static let notAvailable: Int8 = 127

    public init(reading: Result<Int8, any Error>, model: PathLossModel) {
        switch reading {
        case .success(let rssi) where rssi == Self.notAvailable: self = .unmeasured("the controller has no RSSI for the link (127)")
        case .success(let rssi): self = .measured(rssi: Int(rssi), distance: model.distance(rssi: Int(rssi)))
        case .failure(let error): self = .unmeasured("\(error)")
        }
    }

    /// The distance the lock judges its reach against.
    public var distance: Double {
        switch self {
        case .measured(_, let d): return d
        case .unmeasured: return Self.unmeasuredDistance
        case .atReader: return 0
        }
    }

    /// Whether a reader reaching `reach` metres reads this phone.
    public func isInReach(_ reach: Double) -> Bool { distance <= reach }

    public var description: String {
        switch self {
        case .measured(let rssi, let d): return "RSSI \(rssi) dBm ≈ \(String(format: "%.3f", d)) m"
        case .unmeasured(let why): return "RSSI unreadable (\(why)): counted at \(Int(Self.unmeasuredDistance)) m"
        case .atReader: return "reach not measured (--ble-reach at-reader): at the reader, 0 m"
        }
    }
}
