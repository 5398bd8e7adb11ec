import Foundation
import KeywayCrypto

/// When a credential is valid: `notBefore ≤ t < expires`.
public struct ValidityWindow: Sendable, Hashable {
    public let notBefore: Date
    public let expires: Date

    public init(notBefore: Date, expires: Date) {
        self.notBefore = notBefore
        self.expires = expires
    }

    /// A booking with a grace window on both sides, fixed at issue time: a 12:00–16:00 booking with
    /// a 30-minute grace is valid 11:30–16:30 (Spacebring ±30 min; Kisi and Proximity use ±15 min).
    public static func booking(start: Date, end: Date, grace: TimeInterval) -> ValidityWindow {
        ValidityWindow(notBefore: start.addingTimeInterval(-grace), expires: end.addingTimeInterval(grace))
    }

    /// A subscription from local midnight of its start date until `end` (e.g. cancellation).
    public static func subscription(startDate: Date, timeZone: TimeZone, end: Date) -> ValidityWindow {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        return ValidityWindow(notBefore: calendar.startOfDay(for: startDate), expires: end)
    }
}

/// What to put in a new credential. `keyID` defaults to 16 fresh random bytes.
public struct CredentialRequest: Sendable {
    public var userID: String
    public var lockIDs: [String]
    public var holderKey: P256.PublicKey
    public var validity: ValidityWindow
    public var schedule: WeeklySchedule?
    public var officeMode: Bool
    public var kind: CredentialKind
    public var keyID: [UInt8]?

    public init(userID: String, lockIDs: [String], holderKey: P256.PublicKey, validity: ValidityWindow,
                schedule: WeeklySchedule? = nil, officeMode: Bool = false, kind: CredentialKind = .mobile,
                keyID: [UInt8]? = nil) {
        self.userID = userID
        self.lockIDs = lockIDs
        self.holderKey = holderKey
        self.validity = validity
        self.schedule = schedule
        self.officeMode = officeMode
        self.kind = kind
        self.keyID = keyID
    }
}

/// A signed credential: the COSE_Sign1 bytes a phone stores and presents, and what they say.
public struct IssuedCredential: Sendable, Equatable {
    public let bytes: [UInt8]
    public let credential: Credential
}

public enum IssueError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalidRequest(String)
    case crypto(String)

    public var description: String {
        switch self {
        case .invalidRequest(let why): return "cannot issue: \(why)"
        case .crypto(let why): return "signing failed: \(why)"
        }
    }
}

/// The site's issuer: signs credentials, revocation lists and lock certificates with the site key.
/// Stateless apart from the key; the caller supplies every instant (no clock inside).
public struct CredentialIssuer: Sendable {
    public let siteID: String
    public let keyID: [UInt8]
    public let publicKey: P256.PublicKey
    private let key: P256.PrivateKey

    /// `keyID` defaults to the derived id of the issuer's public key (`KeyID.derive`).
    public init(siteID: String, key: P256.PrivateKey, keyID: [UInt8]? = nil) {
        self.siteID = siteID
        self.key = key
        self.publicKey = key.publicKey
        self.keyID = keyID ?? KeyID.derive(from: key.publicKey)
    }

    /// Issues a credential: validates the request, builds the claims and signs them.
    public func issue(_ request: CredentialRequest, issuedAt: Date) throws(IssueError) -> IssuedCredential {
        guard !request.userID.isEmpty else { throw .invalidRequest("empty user id") }
        guard !request.lockIDs.isEmpty else { throw .invalidRequest("no locks") }
        guard request.lockIDs.count <= Credential.maxLocks else { throw .invalidRequest("more than \(Credential.maxLocks) locks") }
        guard request.lockIDs.allSatisfy({ !$0.isEmpty }) else { throw .invalidRequest("empty lock id") }
        guard Set(request.lockIDs).count == request.lockIDs.count else { throw .invalidRequest("duplicate lock id") }
        guard Credential.seconds(request.validity.notBefore) < Credential.seconds(request.validity.expires) else {
            throw .invalidRequest("validity window is empty")
        }
        let cti: [UInt8]
        if let given = request.keyID {
            guard given.count == Credential.keyIDLength else { throw .invalidRequest("key id must be 16 bytes") }
            cti = given
        } else {
            do { cti = try SecureRandom.bytes(Credential.keyIDLength) } catch { throw .crypto("\(error)") }
        }
        // Whole seconds, as they will be read back, so `credential` equals what a verifier sees.
        let credential = Credential(
            siteID: siteID, userID: request.userID, lockIDs: request.lockIDs,
            notBefore: Date(timeIntervalSince1970: TimeInterval(Credential.seconds(request.validity.notBefore))),
            expires: Date(timeIntervalSince1970: TimeInterval(Credential.seconds(request.validity.expires))),
            issuedAt: Date(timeIntervalSince1970: TimeInterval(Credential.seconds(issuedAt))),
            keyID: cti, holderKey: request.holderKey, schedule: request.schedule,
            officeMode: request.officeMode, kind: request.kind)
        let bytes = try sign(payload: credential.claims.encoded(), contentType: nil)
        return IssuedCredential(bytes: bytes, credential: credential)
    }

    /// Signs `list` (which must be for this issuer's site) as a Keyway revocation list.
    public func sign(_ list: RevocationList) throws(IssueError) -> [UInt8] {
        guard list.siteID == siteID else { throw .invalidRequest("revocation list is for site \(list.siteID), issuer is \(siteID)") }
        return try sign(payload: list.payload.encoded(), contentType: RevocationList.contentType)
    }

    /// Certifies a lock's device key for this site.
    public func certify(lockID: String, deviceKey: P256.PublicKey, issuedAt: Date, expires: Date) throws(IssueError) -> LockCertificate {
        guard !lockID.isEmpty else { throw .invalidRequest("empty lock id") }
        guard Credential.seconds(issuedAt) < Credential.seconds(expires) else { throw .invalidRequest("certificate validity is empty") }
        let body = LockCertificate.Body(
            siteID: siteID, lockID: lockID, deviceKey: deviceKey,
            issuedAt: Date(timeIntervalSince1970: TimeInterval(Credential.seconds(issuedAt))),
            expires: Date(timeIntervalSince1970: TimeInterval(Credential.seconds(expires))))
        let bytes = try sign(payload: body.claims.encoded(), contentType: LockCertificate.contentType)
        return LockCertificate(body: body, issuerKeyID: keyID, bytes: bytes)
    }

    /// Signs an arbitrary payload as a COSE_Sign1 with this issuer's key and kid.
    public func sign(payload: [UInt8], contentType: String?) throws(IssueError) -> [UInt8] {
        do {
            return try COSESign1.sign(payload: payload, keyID: keyID, contentType: contentType, key: key).encoded()
        } catch {
            throw .crypto("\(error)")
        }
    }
}
