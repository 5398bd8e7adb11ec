import Foundation
import MobileKey

/// A lock's answer to one request, with the audit record it wrote.
public struct Decision: Sendable, Equatable {
    public enum Outcome: String, Sendable, Hashable, Codable {
        /// Unlocked (or kept unlocked, restarting) for the open time.
        case unlocked
        case officeModeStarted = "office_mode_started"
        case officeModeEnded = "office_mode_ended"
        /// Granted, nothing to do (already in the requested state).
        case unchanged
        /// Denied.
        case none
    }

    public let result: AccessResult
    public let reason: Reason?
    public let method: AccessMethod
    public let action: TapAction
    public let userID: String?
    public let keyID: String?
    public let outcome: Outcome
    /// Seconds the door is open for, when `outcome == .unlocked`.
    public let openTime: UInt16?
    /// The lock's state right after the decision took effect.
    public let state: LockState
    /// The `access_granted` / `access_denied` record (its sequence identifies the event upstream).
    public let record: AuditRecord
    /// Settles to the journal id of `record` once it is durable: the decision's event id comes back
    /// with the decision, on the call chain.
    public let receipt: AuditReceipt?

    public var granted: Bool { result == .granted }

    /// The event id of this decision's record, once durable (nil without a store, or if it refused it).
    public func eventID() async -> String? { await receipt?.eventID() }
}

/// The result of a mobile tap: the decision and the result notification bytes for the phone.
public struct TapOutcome: Sendable {
    public let decision: Decision
    public let resultMessage: [UInt8]
}

/// What the lock did with a FAST request: decided (one event, the result to notify), or no FAST for
/// it (nothing recorded; the phone falls back to the full exchange).
public enum FastTapResult: Sendable {
    case decided(TapOutcome)
    case fallBack(TapFastFallback)
}
