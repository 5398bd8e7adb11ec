import Foundation

/// A lock's full observable state, for the control API and the live view.
public struct LockStatus: Sendable, Hashable, Codable {
    public let id: String
    public let name: String
    public let kind: LockKind
    public let position: Position
    public let state: LockState
    /// Lock time until which a grant keeps it unlocked.
    public let unlockedUntil: Date?
    /// Lock time at which an easy-office-mode passage ends, if one is running.
    public let officeModeEndsAt: Date?
    public let feedback: ReaderFeedback
    /// nil for a reader powered by a door controller.
    public let batteryLevel: UInt8?
    public let batteryLow: Bool
    public let powered: Bool
    public let openTime: UInt8
    public let revocationListVersion: UInt64
    public let accessListVersion: UInt64
    public let trailCount: Int
    public let trailCapacity: Int
    /// Records dropped from the trail and not yet reported to an IQ.
    public let trailPendingLoss: UInt64
    public let lastSequence: UInt64
    public let keypadLockedUntil: Date?
    public let lockTime: Date
    /// lock time − clock time, in seconds (drift until an IQ syncs the lock).
    public let clockOffset: Double
    public let doorController: Bool
    public let mobileKeysProvisioned: Bool
}
