import Foundation
import KeywayCrypto

public enum LockCertificateError: Error, Equatable, Sendable, CustomStringConvertible {
    case malformed(String)
    case unsupportedAlgorithm
    case unknownIssuer
    case badSignature
    case wrongSite(String)
    case wrongLock(String)
    case notYetValid
    case expired
    /// Named by the site's revocation list (the phone's copy of it).
    case revoked

    public var description: String {
        switch self {
        case .malformed(let why): return "lock certificate malformed: \(why)"
        case .unsupportedAlgorithm: return "lock certificate signed with an unsupported algorithm"
        case .unknownIssuer: return "lock certificate signed by an unknown issuer"
        case .badSignature: return "lock certificate signature does not verify"
        case .wrongSite(let s): return "lock certificate is for site \(s)"
        case .wrongLock(let l): return "lock certificate is for lock \(l)"
        case .notYetValid: return "lock certificate not yet valid"
        case .expired: return "lock certificate expired"
        case .revoked: return "lock certificate revoked by the site"
        }
    }

    /// Machine-readable, stable: what the control API reports when the phone refuses a lock.
    public var code: String {
        switch self {
        case .malformed: return "lock_certificate_malformed"
        case .unsupportedAlgorithm: return "lock_certificate_unsupported_algorithm"
        case .unknownIssuer: return "lock_certificate_unknown_issuer"
        case .badSignature: return "lock_certificate_bad_signature"
        case .wrongSite: return "lock_certificate_wrong_site"
        case .wrongLock: return "lock_certificate_wrong_lock"
        case .notYetValid: return "lock_certificate_not_yet_valid"
        case .expired: return "lock_certificate_expired"
        case .revoked: return "lock_certificate_revoked"
        }
    }
}

/// A lock's device key certified by the site issuer: the phone checks it during the reader hello
/// of a tap, so it knows the hello was signed by a genuine lock of the site.
///
/// A COSE_Sign1 with protected header `{1: -7, 3: "application/keyway-lock-certificate", 4: kid}`
/// over a CWT-style claims map `{1: site, 2: lock id, 4: exp, 6: iat, 8: {1: COSE_Key}}` — the lock
/// is the subject and its device key the confirmation key. The content type keeps a certificate
/// from ever being taken for a credential (whose verifier refuses foreign content types).
public struct LockCertificate: Sendable, Equatable {
    public static let contentType = "application/keyway-lock-certificate"

    struct Body: Sendable, Equatable {
        let siteID: String
        let lockID: String
        let deviceKey: P256.PublicKey
        let issuedAt: Date
        let expires: Date

        var claims: CBOR {
            [
                .int(CWTClaim.iss): .text(siteID),
                .int(CWTClaim.sub): .text(lockID),
                .int(CWTClaim.exp): .int(Credential.seconds(expires)),
                .int(CWTClaim.iat): .int(Credential.seconds(issuedAt)),
                .int(CWTClaim.cnf): [.int(CWTClaim.cnfCOSEKey): COSEKey.cbor(deviceKey)],
            ]
        }

        init(siteID: String, lockID: String, deviceKey: P256.PublicKey, issuedAt: Date, expires: Date) {
            self.siteID = siteID
            self.lockID = lockID
            self.deviceKey = deviceKey
            self.issuedAt = issuedAt
            self.expires = expires
        }

        init(payload: [UInt8]) throws(LockCertificateError) {
            let item: CBOR
            do { item = try CBORDecoder(limits: Credential.payloadLimits).decode(payload) } catch {
                throw .malformed("payload: \(error)")
            }
            guard case .map(let m) = item else { throw .malformed("payload is not a map") }
            guard let site = m[.int(CWTClaim.iss)]?.textValue, !site.isEmpty else { throw .malformed("site missing") }
            guard let lock = m[.int(CWTClaim.sub)]?.textValue, !lock.isEmpty else { throw .malformed("lock id missing") }
            guard let exp = m[.int(CWTClaim.exp)]?.intValue, let iat = m[.int(CWTClaim.iat)]?.intValue, iat < exp else {
                throw .malformed("iat/exp missing or not iat < exp")
            }
            guard let coseKey = m[.int(CWTClaim.cnf)]?[CWTClaim.cnfCOSEKey] else { throw .malformed("device key missing") }
            let key: P256.PublicKey
            do { key = try COSEKey.publicKey(from: coseKey) } catch { throw .malformed("device key: \(error)") }
            self.init(siteID: site, lockID: lock, deviceKey: key,
                      issuedAt: Date(timeIntervalSince1970: TimeInterval(iat)),
                      expires: Date(timeIntervalSince1970: TimeInterval(exp)))
        }
    }

    let body: Body
    /// kid of the issuer key that signed it.
    public let issuerKeyID: [UInt8]
    /// The COSE_Sign1 bytes (what `locks/<id>.cert` holds and the reader hello carries).
    public let bytes: [UInt8]

    public var siteID: String { body.siteID }
    public var lockID: String { body.lockID }
    public var deviceKey: P256.PublicKey { body.deviceKey }
    public var issuedAt: Date { body.issuedAt }
    public var expires: Date { body.expires }
    /// The certificate's id: SHA-256 of its COSE_Sign1 bytes, first 16 bytes (what a revocation list
    /// names, docs/PROTOCOL.md §6).
    public var id: [UInt8] { LockCertificate.id(of: bytes) }
    public static func id(of bytes: [UInt8]) -> [UInt8] { Array(SHA256.hash(bytes).prefix(idLength)) }
    public static let idLength = 16

    init(body: Body, issuerKeyID: [UInt8], bytes: [UInt8]) {
        self.body = body
        self.issuerKeyID = issuerKeyID
        self.bytes = bytes
    }

    static let messageLimits = CBORDecoder.Limits(maxDepth: 4, maxItems: 16, maxLength: 1024, maxBytes: 2048)

    /// Verifies a certificate: ES256 by a trusted issuer, content type, site, lock (when given) and
    /// validity at `at` with the same skew tolerance as credentials.
    public init(verifying bytes: [UInt8], issuers: TrustedIssuers, siteID: String, lockID: String? = nil,
                at instant: Date, clockSkewTolerance: TimeInterval = Verifier.defaultClockSkewTolerance) throws(LockCertificateError) {
        try self.init(verifying: bytes, issuers: issuers, siteID: siteID, lockID: lockID,
                      validAt: instant, clockSkewTolerance: clockSkewTolerance)
    }

    /// `validAt == nil` skips the validity-period check (loading a site's key directory must not
    /// depend on the wall clock; using a certificate does).
    init(verifying bytes: [UInt8], issuers: TrustedIssuers, siteID: String, lockID: String?,
         validAt instant: Date?, clockSkewTolerance: TimeInterval) throws(LockCertificateError) {
        let message: COSESign1
        do { message = try COSESign1(decoding: bytes, limits: LockCertificate.messageLimits) } catch {
            if case .unsupportedAlgorithm = error { throw .unsupportedAlgorithm }
            throw .malformed("\(error)")
        }
        guard let kid = message.keyID, let key = issuers.key(for: kid) else { throw .unknownIssuer }
        guard message.verify(with: key) else { throw .badSignature }
        guard message.contentType == .text(LockCertificate.contentType) else {
            throw .malformed("content type is not \(LockCertificate.contentType)")
        }
        let body = try Body(payload: message.payload)
        guard body.siteID == siteID else { throw .wrongSite(body.siteID) }
        if let lockID, body.lockID != lockID { throw .wrongLock(body.lockID) }
        if let instant, let outside = LockCertificate.validityError(issuedAt: body.issuedAt, expires: body.expires,
                                                                     at: instant, clockSkewTolerance: clockSkewTolerance) {
            throw outside
        }
        self.init(body: body, issuerKeyID: kid, bytes: bytes)
    }

    /// Why the certificate is not valid at `instant` (nil when it is), with the skew a phone allows.
    public func validityError(at instant: Date, clockSkewTolerance: TimeInterval = Verifier.defaultClockSkewTolerance) -> LockCertificateError? {
        LockCertificate.validityError(issuedAt: issuedAt, expires: expires, at: instant, clockSkewTolerance: clockSkewTolerance)
    }

    static func validityError(issuedAt: Date, expires: Date, at instant: Date, clockSkewTolerance: TimeInterval) -> LockCertificateError? {
        let t = instant.timeIntervalSince1970
        if t + clockSkewTolerance < issuedAt.timeIntervalSince1970 { return .notYetValid }
        if t - clockSkewTolerance >= expires.timeIntervalSince1970 { return .expired }
        return nil
    }

    /// Decodes *without verifying* — for inspection tools only.
    public static func inspect(_ bytes: [UInt8]) throws(LockCertificateError) -> LockCertificate {
        let message: COSESign1
        do { message = try COSESign1(decoding: bytes, limits: messageLimits) } catch { throw .malformed("\(error)") }
        guard message.contentType == .text(contentType) else { throw .malformed("content type is not \(contentType)") }
        return LockCertificate(body: try Body(payload: message.payload), issuerKeyID: message.keyID ?? [], bytes: bytes)
    }
}
