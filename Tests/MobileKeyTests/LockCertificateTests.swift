import Foundation
import KeywayCrypto
import XCTest
@testable import MobileKey

final class LockCertificateTests: XCTestCase {
    let at = MKTest.monday10UTC
    let trusted = TrustedIssuers([MKTest.issuerKey.publicKey])
    let device = try! P256.PrivateKey()

    private func cert(lock: String = MKTest.lock, by issuer: CredentialIssuer = MKTest.issuer) throws -> LockCertificate {
        try issuer.certify(lockID: lock, deviceKey: device.publicKey, issuedAt: at, expires: at + 365 * 86400)
    }

    private func assertError(_ bytes: [UInt8], _ expected: LockCertificateError, lock: String? = MKTest.lock, at when: Date? = nil,
                             line: UInt = #line) {
        XCTAssertThrowsError(try LockCertificate(verifying: bytes, issuers: trusted, siteID: MKTest.site, lockID: lock, at: when ?? at), line: line) {
            XCTAssertEqual($0 as? LockCertificateError, expected, line: line)
        }
    }

    func testIssueAndVerify() throws {
        let c = try cert()
        let v = try LockCertificate(verifying: c.bytes, issuers: trusted, siteID: MKTest.site, lockID: MKTest.lock, at: at + 86400)
        XCTAssertEqual(v.deviceKey, device.publicKey)
        XCTAssertEqual(v.lockID, MKTest.lock)
        XCTAssertEqual(v.siteID, MKTest.site)
        XCTAssertEqual(v.issuerKeyID, KeyID.derive(from: MKTest.issuerKey.publicKey))
        XCTAssertEqual(v, c)
        // Any lock of the site, when the phone does not know which one to expect.
        XCTAssertNoThrow(try LockCertificate(verifying: c.bytes, issuers: trusted, siteID: MKTest.site, at: at))
        // Layout: {1: site, 2: lock, 4: exp, 6: iat, 8: {1: COSE_Key}} under cty.
        let msg = try COSESign1(decoding: c.bytes)
        XCTAssertEqual(msg.contentType, .text(LockCertificate.contentType))
        let claims = try CBORDecoder().decode(msg.payload)
        XCTAssertEqual(claims[2]?.textValue, MKTest.lock)
        XCTAssertEqual(claims[8]?[1], COSEKey.cbor(device.publicKey))
        XCTAssertEqual(try LockCertificate.inspect(c.bytes).lockID, MKTest.lock)
    }

    func testRefusals() throws {
        let c = try cert()
        assertError(c.bytes, .wrongLock(MKTest.lock), lock: "back-door")
        assertError(try cert(by: CredentialIssuer(siteID: "elsewhere", key: MKTest.issuerKey)).bytes, .wrongSite("elsewhere"))
        assertError(try cert(by: CredentialIssuer(siteID: MKTest.site, key: MKTest.otherIssuerKey)).bytes, .unknownIssuer)
        assertError(c.bytes, .expired, at: at + 366 * 86400)
        assertError(c.bytes, .notYetValid, at: at - 3600)
        var t = c.bytes
        t[t.count - 1] ^= 1
        assertError(t, .badSignature)
        // A credential is not a certificate, even though both are issuer-signed CWT-like maps.
        assertError(try MKTest.issue().bytes, .malformed("content type is not \(LockCertificate.contentType)"))
        XCTAssertThrowsError(try LockCertificate(verifying: Array(c.bytes.dropLast()), issuers: trusted, siteID: MKTest.site, at: at)) {
            guard case .malformed = $0 as? LockCertificateError else { return XCTFail("\($0)") }
        }
    }
}
