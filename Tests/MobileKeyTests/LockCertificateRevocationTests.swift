import Foundation
import XCTest
import KeywayCrypto
@testable @_spi(TapVectors) import MobileKey

/// Issue 14 item 3: the site's revocation list names lock certificates (key 5), phones honour it —
/// on every reader hello, cached certificate or not, and before a FAST tap — and the list's rules
/// for that part are as strict as for key ids.
final class LockCertificateRevocationTests: XCTestCase {
    let site = "sf-mission", lockID = "main-entrance"
    let t0 = Date(timeIntervalSince1970: 1_795_000_000)

    func testKey5RoundTripsAndIsStrict() throws {
        let issuerKey = try P256.PrivateKey()
        let issuer = CredentialIssuer(siteID: site, key: issuerKey)
        let ids: [[UInt8]] = [Array(repeating: 0x22, count: 16), Array(repeating: 0x11, count: 16)]
        let list = try RevocationList.empty(siteID: site).revoking([Array(repeating: 0xAA, count: 16)], issuedAt: t0)
            .revokingCertificates(ids, issuedAt: t0)
        XCTAssertEqual(list.version, 2)
        let back = try RevocationList(verifying: try issuer.sign(list), issuers: TrustedIssuers([issuerKey.publicKey]), siteID: site)
        XCTAssertEqual(back, list)
        XCTAssertTrue(back.isRevoked(certificateID: ids[0]))
        XCTAssertFalse(back.isRevoked(certificateID: Array(repeating: 0x33, count: 16)))
        // Revoking a key keeps the certificates (and the other way round).
        XCTAssertEqual(try list.revoking([Array(repeating: 0xBB, count: 16)], issuedAt: t0).revokedCertificateIDs, list.revokedCertificateIDs)
        // A list naming no certificate encodes without key 5, as before.
        guard case .map(let plain) = RevocationList.empty(siteID: site).payload else { return XCTFail() }
        XCTAssertNil(plain[.int(5)])

        guard case .map(var m) = list.payload else { return XCTFail() }
        func refused(_ value: CBOR, _ why: String, line: UInt = #line) {
            m[.int(5)] = value
            XCTAssertThrowsError(try RevocationList(payload: .map(m)), why, line: line) {
                guard case .malformed = $0 as? RevocationListError else { return XCTFail("\($0)", line: line) }
            }
        }
        refused(.array(ids.map { .bytes($0) }), "not ascending")
        refused(.array([.bytes(ids[1]), .bytes(ids[1])]), "duplicate")
        refused(.array([]), "empty (absent instead)")
        refused(.array([.bytes(Array(repeating: 1, count: 15))]), "15 bytes")
        refused(.bytes(ids[0]), "not an array")
    }

    func testThePhoneRefusesARevokedLockCertificateEvenFromItsCacheAndStopsFast() throws {
        let issuerKey = try P256.PrivateKey(), device = try P256.PrivateKey(), holder = try P256.PrivateKey()
        let issuer = CredentialIssuer(siteID: site, key: issuerKey)
        let cert = try issuer.certify(lockID: lockID, deviceKey: device.publicKey, issuedAt: t0 - 86_400, expires: t0 + 365 * 86_400)
        let lock = TapLockIdentity(lockID: lockID, deviceKey: device, certificate: cert.bytes,
                                   verifier: Verifier(siteID: site, lockID: lockID, issuers: TrustedIssuers([issuerKey.publicKey])))
        let credential = try issuer.issue(CredentialRequest(userID: "u-ada", lockIDs: [lockID], holderKey: holder.publicKey,
                                                            validity: ValidityWindow(notBefore: t0 - 3600, expires: t0 + 3600)), issuedAt: t0 - 3600)
        let cache = LockCertificateCache(), ring = TapFastKeyring()
        func phone(_ list: RevocationList?) -> TapPhone {
            TapPhone(credential: credential.bytes, holderKey: holder, siteID: site, trustedIssuers: TrustedIssuers([issuerKey.publicKey]),
                     certificateCache: cache, fastKeys: ring, revocations: list)
        }
        func tap(_ p: TapPhone) throws {
            let opening = try p.open()
            let session = try lock.startSession(phoneHello: opening.phoneHello, now: t0)
            let pending = try opening.present(readerHello: session.helloBytes, action: .open, at: t0)
            _ = session.evaluate(pending.presentation, now: t0, revocations: .empty(siteID: site))
            p.rememberFastKey(after: pending, result: try pending.result(session.resultMessage(granted: true, reason: nil, openMilliseconds: 5000)))
        }
        // Without the list: granted, the certificate cached, a FAST key made.
        try tap(phone(nil))
        XCTAssertNotNil(ring.entry(for: lockID))
        XCTAssertEqual(LockCertificate.id(of: cert.bytes), cert.id)

        let revoked = try RevocationList.empty(siteID: site).revokingCertificates([cert.id], issuedAt: t0)
        let informed = phone(revoked)
        guard case .fallBack(.lockCertificateInvalid) = try informed.fastStart(lockID: lockID, action: .open, at: t0) else {
            return XCTFail("a FAST tap to a lock whose certificate is revoked")
        }
        XCTAssertNil(ring.entry(for: lockID))
        let opening = try informed.open()
        let session = try lock.startSession(phoneHello: opening.phoneHello, now: t0)
        XCTAssertThrowsError(try opening.present(readerHello: session.helloBytes, action: .open, at: t0)) {
            XCTAssertEqual($0 as? TapPhoneError, .untrustedLock(.revoked))
            XCTAssertEqual(($0 as? TapPhoneError)?.code, "lock_certificate_revoked")
        }
        // Another site's list names nothing for this phone.
        let foreign = try RevocationList.empty(siteID: "elsewhere").revokingCertificates([cert.id], issuedAt: t0)
        XCTAssertNoThrow(try tap(phone(foreign)))
    }
}
