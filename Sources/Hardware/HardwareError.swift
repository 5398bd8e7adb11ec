import Foundation

/// Why a presentation never reached a decision: physics, not policy. No audit record is written,
/// because the reader never saw anything.
public enum HardwareError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The phone or fob is further from the reader than it can read (see `ReaderReach`).
    case outOfReach(lockID: String, distance: Double, reach: Double)
    /// The device has no power (battery depleted, or its door controller lost power).
    case unpowered(deviceID: String, reason: Reason)
    /// A PIN typed on a lock without a keypad.
    case noKeypad(lockID: String)
    /// A battery operation on a reader powered by a door controller.
    case noBattery(lockID: String)
    /// Mobile keys need the site's keys provisioned on the lock.
    case mobileKeysNotProvisioned(lockID: String)
    case invalidValue(field: String, message: String)
    case unknownLock(String)
    case unknownDoorController(String)
    case unknownIQ(String)
    case noDoorPositionSwitch(controllerID: String)
    case noRequestToExit(controllerID: String)
    case iqOffline(iqID: String)
    case iqNotActivated(iqID: String)
    case notInReach(lockID: String, iqID: String)
    case wrongActivationPIN(iqID: String)
    /// Too many wrong activation PINs in a row: the IQ takes none, not even the right one, until `until`.
    case activationLockedOut(iqID: String, until: Date)
    /// Activation asked of an IQ that is already activated (by `by`, nil when the site file activated it).
    case iqAlreadyActivated(iqID: String, by: String?)
    /// Deactivation asked by someone other than the user who activated the IQ.
    case notActivatingUser(iqID: String, user: String)
    case tapFailed(String)

    public var description: String {
        switch self {
        case let .outOfReach(l, d, r):
            return "lock \(l): nothing to read at \(String(format: "%.3f", d)) m (the reader reaches \(String(format: "%.2f", r)) m)"
        case let .unpowered(d, r): return "\(d) has no power (\(r))"
        case let .noKeypad(l): return "lock \(l) has no keypad"
        case let .noBattery(l): return "lock \(l) is powered by its door controller and has no battery"
        case let .mobileKeysNotProvisioned(l): return "lock \(l) has no site keys for mobile credentials"
        case let .invalidValue(f, m): return "\(f): \(m)"
        case let .unknownLock(l): return "no lock with id '\(l)'"
        case let .unknownDoorController(c): return "no door controller with id '\(c)'"
        case let .unknownIQ(i): return "no IQ with id '\(i)'"
        case let .noDoorPositionSwitch(c): return "door controller \(c) has no door position switch"
        case let .noRequestToExit(c): return "door controller \(c) has no request-to-exit input"
        case let .iqOffline(i): return "IQ \(i) is offline"
        case let .iqNotActivated(i): return "IQ \(i) is not activated"
        case let .notInReach(l, i): return "lock \(l) is not in reach of IQ \(i)"
        case let .wrongActivationPIN(i): return "wrong activation PIN for IQ \(i)"
        case let .activationLockedOut(i, until):
            return "IQ \(i) takes no activation PIN until \(until.formatted(.iso8601)) after \(IQ.activationAttempts) wrong PINs in a row"
        case let .iqAlreadyActivated(i, by):
            return "IQ \(i) is already activated" + (by.map { " by \($0); only that user can deactivate it" } ?? " (by the site file)")
        case let .notActivatingUser(i, u): return "IQ \(i) was activated by another user; \(u) cannot deactivate it"
        case let .tapFailed(why): return "tap failed: \(why)"
        }
    }
}

/// A tap the lock refused at its start (a phone hello of another protocol version, or not valid):
/// unlike a `HardwareError`, the lock saw it and recorded `decision` (one audit record).
public struct TapRefused: Error, Sendable {
    public let decision: Decision
    public init(decision: Decision) { self.decision = decision }
}
