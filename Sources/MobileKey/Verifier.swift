import Foundation
import KeywayCrypto

/// Why a credential was refused by `Verifier`. Raw values are stable snake_case identifiers:
/// events, the control API and the tap protocol's result carry them, so never rename one — add a
/// new case instead. (Reasons that belong to the tap exchange itself — replay, tampering, proof of
/// possession, action rights — are `TapDenial`'s.)
public enum DenialReason: String, CaseIterable, Sendable, Codable, Error {
    /// Not a well-formed Keyway credential (bad CBOR, wrong COSE structure, missing or mistyped
    /// claims, unknown Keyway claim, crit header, content type of another Keyway object).
    case malformed = "malformed"
    /// Signed with an algorithm other than ES256.
    case unsupportedAlgorithm = "unsupported_algorithm"
    /// No kid, or a kid that is not among the lock's trusted issuer keys.
    case unknownIssuer = "unknown_issuer"
    /// The signature does not verify with the issuer key the kid names.
    case badSignature = "bad_signature"
    /// Genuine, but issued for another site (`iss`).
    case wrongSite = "wrong_site"
    /// Before `nbf` (beyond the clock-skew tolerance).
    case notYetValid = "not_yet_valid"
    /// At or after `exp` (beyond the clock-skew tolerance).
    case expired = "expired"
    /// This lock is not in `aud`.
    case wrongLock = "wrong_lock"
    /// Outside every window of the credential's weekly schedule.
    case outsideSchedule = "outside_schedule"
    /// The credential's `cti` is on the lock's revocation list.
    case revoked = "revoked"
    /// No `cnf` proof-of-possession key.
    case missingProofKey = "missing_proof_key"
}

/// The outcome of verifying a credential at a lock.
public enum Verdict: Sendable, Equatable {
    case granted(Credential)
    case denied(DenialReason)

    public var isGranted: Bool {
        if case .granted = self { return true }
        return false
    }

    /// The reason for a denial; nil when granted.
    public var denialReason: DenialReason? {
        if case .denied(let r) = self { return r }
        return nil
    }

    public var credential: Credential? {
        if case .granted(let c) = self { return c }
        return nil
    }
}

/// Decides whether a lock accepts a credential at a given instant. A value type holding parsed
/// keys only, so it is cheap to share across tasks; it reads no clock — the instant is passed in.
///
/// Checks, in this order (the first failure is the reason):
///  1. COSE_Sign1 structure and headers → `malformed` / `unsupportedAlgorithm`
///  2. kid names a trusted issuer key → `unknownIssuer`
///  3. ES256 signature → `badSignature`
///  4. claims well formed (no foreign content type) → `malformed`, `missingProofKey`
///  5. `iss` is this site → `wrongSite`
///  6. `cti` not revoked → `revoked`
///  7. `nbf − skew ≤ at` → `notYetValid`;  `at < exp + skew` → `expired`
///  8. this lock in `aud` → `wrongLock`
///  9. weekly schedule (local time of `at`, no skew) → `outsideSchedule`
/// Signature before claims: nothing about an unauthenticated credential's content is revealed by
/// the reason, and no claim parsing effort is spent on forgeries.
public struct Verifier: Sendable {
    /// Tolerated disagreement between the issuer's and the lock's clocks, applied to `nbf` and
    /// `exp` (not to schedule windows). Locks sync time through their IQ; 60 s covers drift
    /// between syncs without meaningfully extending a booking.
    public static let defaultClockSkewTolerance: TimeInterval = 60

    public let siteID: String
    public let lockID: String
    public let issuers: TrustedIssuers
    public let clockSkewTolerance: TimeInterval

    public init(siteID: String, lockID: String, issuers: TrustedIssuers,
                clockSkewTolerance: TimeInterval = Verifier.defaultClockSkewTolerance) {
        self.siteID = siteID
        self.lockID = lockID
        self.issuers = issuers
        self.clockSkewTolerance = clockSkewTolerance
    }

    public init(siteID: String, lockID: String, issuerKeys: [P256.PublicKey],
                clockSkewTolerance: TimeInterval = Verifier.defaultClockSkewTolerance) {
        self.init(siteID: siteID, lockID: lockID, issuers: TrustedIssuers(issuerKeys), clockSkewTolerance: clockSkewTolerance)
    }

    /// Content types a credential may declare (absent is the norm): `application/cwt` as text or
    /// as its CoAP content-format number 61. Anything else is another Keyway object (revocation
    /// list, lock certificate) or something foreign, and is refused.
    static func isCredentialContentType(_ cty: CBOR?) -> Bool {
        switch cty {
        case nil: return true
        case .text("application/cwt")?: return true
        case .unsigned(61)?: return true
        default: return false
        }
    }

    public func verify(_ bytes: [UInt8], at instant: Date, revocations: RevocationList) -> Verdict {
        switch authenticate(bytes) {
        case .success(let credential): return decide(credential, at: instant, revocations: revocations)
        case .failure(let reason): return .denied(reason)
        }
    }

    /// Steps 1–4 only: the credential is a well-formed COSE_Sign1 signed by a trusted issuer. Its
    /// claims are authentic but not yet judged — the tap session proves possession of the `cnf` key
    /// before any claim is checked, so a copied credential is never judged (or attributed) at all.
    public func authenticate(_ bytes: [UInt8]) -> Result<Credential, DenialReason> {
        let message: COSESign1
        do {
            message = try COSESign1(decoding: bytes, limits: Credential.messageLimits)
        } catch {
            if case .unsupportedAlgorithm = error { return .failure(.unsupportedAlgorithm) }
            return .failure(.malformed)
        }
        guard let kid = message.keyID, let issuerKey = issuers.key(for: kid) else { return .failure(.unknownIssuer) }
        guard message.verify(with: issuerKey) else { return .failure(.badSignature) }
        guard Verifier.isCredentialContentType(message.contentType) else { return .failure(.malformed) }
        do {
            return .success(try Credential(payload: message.payload))
        } catch {
            return .failure(error == .missingProofKey ? .missingProofKey : .malformed)
        }
    }

    /// The claim checks (steps 5–9) on an already authenticated credential. Exposed for the tap
    /// session, which re-checks after its own proof-of-possession step.
    public func decide(_ credential: Credential, at instant: Date, revocations: RevocationList) -> Verdict {
        guard credential.siteID == siteID else { return .denied(.wrongSite) }
        // Membership only: key ids are 16 random bytes, so consulting a list regardless of its
        // site can only ever deny more, never less. (Accepting a list at all is where its site
        // and signature are checked — `RevocationList.accepting`.)
        if revocations.isRevoked(credential.keyID) { return .denied(.revoked) }
        let t = instant.timeIntervalSince1970
        guard t + clockSkewTolerance >= credential.notBefore.timeIntervalSince1970 else { return .denied(.notYetValid) }
        guard t - clockSkewTolerance < credential.expires.timeIntervalSince1970 else { return .denied(.expired) }
        guard credential.lockIDs.contains(lockID) else { return .denied(.wrongLock) }
        if let schedule = credential.schedule, !schedule.contains(instant) { return .denied(.outsideSchedule) }
        return .granted(credential)
    }
}
