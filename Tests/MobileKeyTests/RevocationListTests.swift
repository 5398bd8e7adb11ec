import Foundation
import KeywayCrypto
import XCTest
@testable import MobileKey

final class RevocationListTests: XCTestCase {
    let at = MKTest.monday10UTC
    let trusted = TrustedIssuers([MKTest.issuerKey.publicKey])
    func kid(_ b: UInt8) -> [UInt8] { [UInt8](repeating: b, count: 16) }

    func testSignVerifyRoundTrip() throws {
        let list = try MKTest.noRevocations.revoking([kid(2), kid(1)], issuedAt: at)
        XCTAssertEqual(list.version, 1)
        let bytes = try MKTest.issuer.sign(list)
        let back = try RevocationList(verifying: bytes, issuers: trusted, siteID: MKTest.site)
        XCTAssertEqual(back, list)
        XCTAssertTrue(back.isRevoked(kid(1)))
        XCTAssertFalse(back.isRevoked(kid(3)))
        // Payload layout: {1: site, 2: version, 3: [sorted ids], 4: iat}
        let payload = try COSESign1(decoding: bytes).payload
        XCTAssertEqual(try CBORDecoder().decode(payload),
                       [1: .text(MKTest.site), 2: 1, 3: [.bytes(kid(1)), .bytes(kid(2))], 4: .int(Int64(at.timeIntervalSince1970))])
        XCTAssertEqual(try COSESign1(decoding: bytes).contentType, .text(RevocationList.contentType))
    }

    func testLockAcceptsOnlyGenuineNewerListsOfItsSite() throws {
        let v1 = try MKTest.noRevocations.revoking([kid(1)], issuedAt: at)
        let v2 = try v1.revoking([kid(2)], issuedAt: at + 60)
        let held = try MKTest.noRevocations.accepting(try MKTest.issuer.sign(v1), issuers: trusted)
        XCTAssertEqual(held, v1)
        let newer = try held.accepting(try MKTest.issuer.sign(v2), issuers: trusted)
        XCTAssertEqual(newer.version, 2)
        // Rollback: an older (or the same) genuine list is refused.
        XCTAssertThrowsError(try newer.accepting(try MKTest.issuer.sign(v1), issuers: trusted)) {
            XCTAssertEqual($0 as? RevocationListError, .notNewer(current: 2, offered: 1))
        }
        XCTAssertThrowsError(try newer.accepting(try MKTest.issuer.sign(v2), issuers: trusted)) {
            XCTAssertEqual($0 as? RevocationListError, .notNewer(current: 2, offered: 2))
        }
        // Another site's genuine list.
        let elsewhere = CredentialIssuer(siteID: "site-ber-2", key: MKTest.issuerKey)
        let foreign = try RevocationList.empty(siteID: "site-ber-2").revoking([kid(9)], issuedAt: at)
        XCTAssertThrowsError(try newer.accepting(try elsewhere.sign(foreign), issuers: trusted)) {
            XCTAssertEqual($0 as? RevocationListError, .wrongSite("site-ber-2"))
        }
        // Not signed by a trusted issuer / tampered.
        let rogue = CredentialIssuer(siteID: MKTest.site, key: MKTest.otherIssuerKey)
        let v9 = try v2.revoking([], issuedAt: at)
        XCTAssertThrowsError(try newer.accepting(try rogue.sign(v9), issuers: trusted)) {
            XCTAssertEqual($0 as? RevocationListError, .unknownIssuer)
        }
        var tampered = try MKTest.issuer.sign(v9)
        tampered[tampered.count - 3] ^= 1
        XCTAssertThrowsError(try newer.accepting(tampered, issuers: trusted)) {
            XCTAssertEqual($0 as? RevocationListError, .badSignature)
        }
    }

    func testACredentialIsNotARevocationList() throws {
        XCTAssertThrowsError(try RevocationList(verifying: try MKTest.issue().bytes, issuers: trusted, siteID: MKTest.site)) {
            guard case .malformed = $0 as? RevocationListError else { return XCTFail("\($0)") }
        }
    }

    func testMalformedPayloads() throws {
        func signed(_ payload: CBOR) throws -> [UInt8] { try MKTest.issuer.sign(payload: payload.encoded(), contentType: RevocationList.contentType) }
        let cases: [CBOR] = [
            [1: .text(MKTest.site), 2: 1, 3: [.bytes([1, 2])], 4: 0],                       // short id
            [1: .text(MKTest.site), 2: 1, 3: [.bytes(kid(1)), .bytes(kid(1))], 4: 0],       // duplicate
            [1: .text(MKTest.site), 2: -1, 3: [], 4: 0],                                     // negative version
            [1: .text(MKTest.site), 3: [], 4: 0],                                            // no version
            [1: .text(MKTest.site), 2: 1, 3: [], 4: "now"],
        ]
        for c in cases {
            XCTAssertThrowsError(try RevocationList(verifying: try signed(c), issuers: trusted, siteID: MKTest.site), "\(c)") {
                guard case .malformed = $0 as? RevocationListError else { return XCTFail("\($0)") }
            }
        }
        XCTAssertThrowsError(try MKTest.issuer.sign(RevocationList.empty(siteID: "other")))
    }

    func testLargeListWithinBounds() throws {
        var ids: [[UInt8]] = []
        for i in 0..<5000 { ids.append(Array(SHA256.hash([UInt8(i & 0xff), UInt8(i >> 8)]).prefix(16))) }
        let list = try MKTest.noRevocations.revoking(ids, issuedAt: at)
        let back = try RevocationList(verifying: try MKTest.issuer.sign(list), issuers: trusted, siteID: MKTest.site)
        XCTAssertEqual(back.revokedKeyIDs.count, 5000)
    }
}
