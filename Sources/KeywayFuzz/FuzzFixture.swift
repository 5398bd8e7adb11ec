import Foundation
import KeywayCrypto
@_spi(TapVectors) import MobileKey

/// The fixed site every crypto-bearing target runs against: the test keys of Fixtures/vectors
/// (issuer, holder, lock device), so seeds made once by `keyway-fuzz seeds` stay meaningful to the
/// targets. Time is fixed too: the vectors' instant, 2026-01-05T10:00:00Z.
final class FuzzFixture: Sendable {
    static let shared: FuzzFixture = {
        do { return try FuzzFixture() } catch {
            // No outside input reaches here: the fixture is the repository's own test keys.
            fatalError("fuzz fixture: cannot load Fixtures/vectors keys: \(error)")
        }
    }()

    let siteID = "site-ams-1"
    let lockID = "front-door"
    let now = Date(timeIntervalSince1970: 1_767_607_200)
    let issuerKey: P256.PrivateKey
    let holderKey: P256.PrivateKey
    let deviceKey: P256.PrivateKey
    let issuer: CredentialIssuer
    let issuers: TrustedIssuers
    let verifier: Verifier
    let certificate: [UInt8]
    /// A genuine credential of the holder for the lock (office mode, so every action is reachable).
    let credential: [UInt8]
    let revocations: RevocationList
    /// The phone's side of one fixed tap opening (test keys `phone-ephemeral.key.pem`, a fixed
    /// transaction id): the reader hellos of the seeds answer exactly this phone hello.
    let phoneEphemeral: P256.PrivateKey
    let transactionID: [UInt8] = Array(0xA0...0xAF)

    init() throws {
        func key(_ name: String) throws -> P256.PrivateKey {
            try P256.PrivateKey(pem: String(contentsOf: FuzzPaths.vectors.appendingPathComponent(name), encoding: .utf8))
        }
        issuerKey = try key("issuer.key.pem")
        holderKey = try key("holder.key.pem")
        deviceKey = try key("lock-device.key.pem")
        phoneEphemeral = try key("phone-ephemeral.key.pem")
        issuer = CredentialIssuer(siteID: siteID, key: issuerKey)
        issuers = TrustedIssuers([issuerKey.publicKey])
        verifier = Verifier(siteID: siteID, lockID: lockID, issuers: issuers)
        certificate = try issuer.certify(lockID: lockID, deviceKey: deviceKey.publicKey,
                                         issuedAt: now - 86_400, expires: now + 365 * 86_400).bytes
        credential = try issuer.issue(CredentialRequest(userID: "member-1", lockIDs: [lockID], holderKey: holderKey.publicKey,
                                                        validity: ValidityWindow(notBefore: now - 3600, expires: now + 3600),
                                                        officeMode: true), issuedAt: now - 7200).bytes
        revocations = try RevocationList(siteID: siteID, version: 2, issuedAt: now - 600, revokedKeyIDs: [Array(repeating: 0xAB, count: 16)])
    }

    func lockIdentity() -> TapLockIdentity {
        TapLockIdentity(lockID: lockID, deviceKey: deviceKey, certificate: certificate, verifier: verifier)
    }

    func phone(cache: LockCertificateCache? = nil) -> TapPhone {
        TapPhone(credential: credential, holderKey: holderKey, siteID: siteID, trustedIssuers: issuers, certificateCache: cache)
    }

    /// The fixture phone's fixed opening (phone hello).
    func opening(cache: LockCertificateCache? = nil) -> TapPhone.Opening {
        phone(cache: cache).open(ephemeral: phoneEphemeral, transactionID: transactionID)
    }

    /// A lock session answering the fixture phone's fixed hello (fresh lock randomness).
    func session() throws -> TapLockSession {
        try lockIdentity().startSession(phoneHello: opening().phoneHello, now: now)
    }
}
