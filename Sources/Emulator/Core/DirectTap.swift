import Foundation
import Hardware
import MobileKey

extension Emulator {
    /// A tap by the built-in phone with a stored key over the loopback radio, without the HTTP layer
    /// (benchmarks and in-process tests). Same path as `POST /v1/taps` minus JSON.
    /// `phone`: `.nonConformant` lets the lock judge a lock outside the key's `aud` (`wrong_lock`).
    /// `allowFast: false` runs the full exchange even when the phone holds a FAST key for the lock.
    public func tapWithKey(_ keyID: String, lock lockID: String, action: TapAction = .open, distance: Double = 0,
                           phone: BuiltInPhoneMode = .conformant, allowFast: Bool = true) async throws -> Decision {
        try await tapWithKeyReport(keyID, lock: lockID, action: action, distance: distance, phone: phone, allowFast: allowFast).decision
    }

    /// What `tapWithKey` did, with how the phone ran it: `mode` full or fast, and why a phone holding
    /// FAST keys ran the full exchange.
    public struct KeyTapReport: Sendable {
        public let decision: Decision
        public let mode: TapMode
        public let fastFallback: TapFastFallback?
    }

    public func tapWithKeyReport(_ keyID: String, lock lockID: String, action: TapAction = .open, distance: Double = 0,
                                 phone: BuiltInPhoneMode = .conformant, allowFast: Bool = true) async throws -> KeyTapReport {
        guard let key = try store.key(id: keyID) else { throw APIError.notFound("key", keyID) }
        let outcome = try await radio.tap(lockID: lockID, key: key, action: action, distance: distance, siteID: config.siteID,
                                          issuers: keys.trustedIssuers, cache: certificateCache, now: clock.now(), phoneMode: phone,
                                          allowFast: allowFast)
        switch outcome {
        case .decided(let decision, _, let mode, let why): return KeyTapReport(decision: decision, mode: mode, fastFallback: why)
        case .phoneRefused(let why): throw APIError(409, "phone_refused", why.description)
        }
    }
}
