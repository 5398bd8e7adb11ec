import Foundation
import KeywayCrypto
import XCTest
@testable import MobileKey

/// One test per denial reason (and the grants around each boundary).
final class VerifierTests: XCTestCase {
    let at = MKTest.monday10UTC

    private func verdict(_ bytes: [UInt8], at: Date? = nil, revocations: RevocationList = MKTest.noRevocations,
                         verifier: Verifier = MKTest.verifier) -> Verdict {
        verifier.verify(bytes, at: at ?? self.at, revocations: revocations)
    }

    private func claims(_ edit: (inout [CBOR: CBOR]) -> Void) throws -> [UInt8] {
        var m = MKTest.claims(of: try MKTest.issue())
        edit(&m)
        return try MKTest.signClaims(.map(m))
    }

    func testGrantedReturnsTheClaims() throws {
        let issued = try MKTest.issue(MKTest.request(locks: ["back-door", MKTest.lock], officeMode: true))
        guard case .granted(let c) = verdict(issued.bytes) else { return XCTFail("\(verdict(issued.bytes))") }
        XCTAssertEqual(c, issued.credential)
        XCTAssertEqual(c.siteID, MKTest.site)
        XCTAssertEqual(c.userID, "user-42")
        XCTAssertEqual(c.lockIDs, ["back-door", MKTest.lock])
        XCTAssertEqual(c.holderKey, MKTest.holderKey.publicKey)
        XCTAssertEqual(c.keyID.count, 16)
        XCTAssertTrue(c.officeMode)
        XCTAssertEqual(c.kind, .mobile)
        XCTAssertEqual(c.issuedAt, at.addingTimeInterval(-7200))
    }

    func testEveryReasonIsCoveredBelow() {
        // Guards against adding a reason without a test: keep in sync with the tests in this file.
        let tested: Set<DenialReason> = [.malformed, .unsupportedAlgorithm, .unknownIssuer, .badSignature, .wrongSite,
                                         .notYetValid, .expired, .wrongLock, .outsideSchedule, .revoked, .missingProofKey]
        XCTAssertEqual(Set(DenialReason.allCases), tested)
        XCTAssertEqual(DenialReason.allCases.map(\.rawValue), [
            "malformed", "unsupported_algorithm", "unknown_issuer", "bad_signature", "wrong_site", "not_yet_valid",
            "expired", "wrong_lock", "outside_schedule", "revoked", "missing_proof_key",
        ])
    }

    func testMalformed() throws {
        let good = try MKTest.issue().bytes
        XCTAssertEqual(verdict([]), .denied(.malformed))
        XCTAssertEqual(verdict(Array(good.dropLast())), .denied(.malformed))
        XCTAssertEqual(verdict(good + [0]), .denied(.malformed))
        XCTAssertEqual(verdict(Array(good.dropFirst())), .denied(.malformed), "untagged")
        XCTAssertEqual(verdict([UInt8](repeating: 0x81, count: 5000)), .denied(.malformed))
        XCTAssertEqual(verdict([UInt8](repeating: 0, count: 100_000)), .denied(.malformed), "oversized input")
        // Signed by the issuer but not a valid claims set:
        XCTAssertEqual(verdict(try claims { $0[.int(CWTClaim.cti)] = nil }), .denied(.malformed))
        XCTAssertEqual(verdict(try claims { $0[.int(CWTClaim.cti)] = .bytes([1, 2, 3]) }), .denied(.malformed))
        XCTAssertEqual(verdict(try claims { $0[.int(CWTClaim.exp)] = "tomorrow" }), .denied(.malformed))
        XCTAssertEqual(verdict(try claims { $0[.int(CWTClaim.nbf)] = $0[.int(CWTClaim.exp)] }), .denied(.malformed))
        XCTAssertEqual(verdict(try claims { $0[.int(CWTClaim.aud)] = [] }), .denied(.malformed))
        XCTAssertEqual(verdict(try claims { $0[.int(CWTClaim.kind)] = "fob" }), .denied(.malformed))
        XCTAssertEqual(verdict(try claims { $0[.int(CWTClaim.kind)] = nil }), .denied(.malformed))
        XCTAssertEqual(verdict(try claims { $0[.int(CWTClaim.officeMode)] = 1 }), .denied(.malformed))
        XCTAssertEqual(verdict(try claims { $0[.int(-65550)] = true }), .denied(.malformed), "unknown Keyway claim")
        XCTAssertEqual(verdict(try claims { $0[.int(CWTClaim.schedule)] = ["Mars/Olympus", [[1, 0, 1440]]] }), .denied(.malformed))
        XCTAssertEqual(verdict(try claims { $0[.int(CWTClaim.schedule)] = ["UTC", [[8, 0, 60]]] }), .denied(.malformed))
        XCTAssertEqual(verdict(try claims { $0[.int(CWTClaim.schedule)] = ["UTC", [[1, 600, 600]]] }), .denied(.malformed))
        XCTAssertEqual(verdict(try claims {
            $0[.int(CWTClaim.cnf)] = [1: [1: 2, -1: 1, -2: .bytes([UInt8](repeating: 0, count: 32)), -3: .bytes([UInt8](repeating: 0, count: 32))]]
        }), .denied(.malformed), "cnf point not on the curve")
        // Claims payload that is not canonical CBOR, or has a duplicate key:
        let payload = MKTest.claims(of: try MKTest.issue())
        var dup = CBOR.map(payload).encoded()
        dup[0] += 1 // one more entry than the map has …
        dup += CBOR.int(CWTClaim.iss).encoded() + CBOR.text("evil-site").encoded() // … the duplicate iss
        XCTAssertEqual(verdict(try MKTest.signPayload(dup)), .denied(.malformed))
        XCTAssertEqual(verdict(try MKTest.signPayload([0x18, 0x01])), .denied(.malformed))
        // Unknown claims outside Keyway's block are ignored (CWT rules): still granted.
        XCTAssertTrue(verdict(try claims { $0[.int(-70000)] = "x"; $0[.int(17)] = 1 }).isGranted)
    }

    func testOtherKeywayObjectsAreNotCredentials() throws {
        // A revocation list or a lock certificate is genuinely signed by the issuer, yet must
        // never be accepted as a key (content type separates them).
        let list = try MKTest.noRevocations.revoking([[UInt8](repeating: 1, count: 16)], issuedAt: at)
        XCTAssertEqual(verdict(try MKTest.issuer.sign(list)), .denied(.malformed))
        let cert = try MKTest.issuer.certify(lockID: MKTest.lock, deviceKey: MKTest.holderKey.publicKey, issuedAt: at, expires: at + 86400)
        XCTAssertEqual(verdict(cert.bytes), .denied(.malformed))
        // Even a perfect claims set under a foreign content type is refused …
        let m = MKTest.claims(of: try MKTest.issue())
        XCTAssertEqual(verdict(try MKTest.signClaims(.map(m), contentType: LockCertificate.contentType)), .denied(.malformed))
        // … while application/cwt is fine.
        XCTAssertTrue(verdict(try MKTest.signClaims(.map(m), contentType: "application/cwt")).isGranted)
    }

    func testUnsupportedAlgorithm() throws {
        let payload = try MKTest.issue().credential.claims.encoded()
        let kid = KeyID.derive(from: MKTest.issuerKey.publicKey)
        for alg: Int64 in [-35, -36, -8, -257, 5] {
            XCTAssertEqual(verdict(try MKTest.signWithHeader([1: .int(alg), 4: .bytes(kid)], payload: payload)), .denied(.unsupportedAlgorithm))
        }
    }

    func testUnknownIssuer() throws {
        let foreign = CredentialIssuer(siteID: MKTest.site, key: MKTest.otherIssuerKey)
        XCTAssertEqual(verdict(try MKTest.issue(by: foreign).bytes), .denied(.unknownIssuer))
        // No kid at all.
        let payload = try MKTest.issue().credential.claims.encoded()
        XCTAssertEqual(verdict(try MKTest.signWithHeader([1: -7], payload: payload)), .denied(.unknownIssuer))
        // A lock with an empty trust store trusts nothing.
        let lonely = Verifier(siteID: MKTest.site, lockID: MKTest.lock, issuerKeys: [])
        XCTAssertEqual(verdict(try MKTest.issue().bytes, verifier: lonely), .denied(.unknownIssuer))
        // Trusting both keys: the foreign one now verifies.
        let both = Verifier(siteID: MKTest.site, lockID: MKTest.lock, issuerKeys: [MKTest.issuerKey.publicKey, MKTest.otherIssuerKey.publicKey])
        XCTAssertTrue(verdict(try MKTest.issue(by: foreign).bytes, verifier: both).isGranted)
    }

    func testBadSignature() throws {
        let bytes = try MKTest.issue().bytes
        var sig = bytes
        sig[sig.count - 1] ^= 0x80
        XCTAssertEqual(verdict(sig), .denied(.badSignature))
        // A claim changed after signing: the payload bytes differ, so does the signature input.
        let (message, _) = try Credential.inspect(bytes)
        var m = try CBORDecoder().decode(message.payload).mapValue!
        m[.int(CWTClaim.aud)] = ["vault"]
        let forged = CBOR.tagged(18, .array([.bytes(message.protectedHeader), .map([:]), .bytes(CBOR.map(m).encoded()),
                                             .bytes(message.signature)])).encoded()
        XCTAssertEqual(verdict(forged), .denied(.badSignature))
        // Signed by another key under the trusted issuer's kid.
        let impostor = CredentialIssuer(siteID: MKTest.site, key: MKTest.otherIssuerKey, keyID: KeyID.derive(from: MKTest.issuerKey.publicKey))
        XCTAssertEqual(verdict(try MKTest.issue(by: impostor).bytes), .denied(.badSignature))
        // All-zero signature (r = s = 0) and a short one.
        var zero = bytes
        for i in (zero.count - 64)..<zero.count { zero[i] = 0 }
        XCTAssertEqual(verdict(zero), .denied(.badSignature))
        let short = CBOR.tagged(18, .array([.bytes(message.protectedHeader), .map([:]), .bytes(message.payload), .bytes([1, 2, 3])])).encoded()
        XCTAssertEqual(verdict(short), .denied(.badSignature))
    }

    func testWrongSite() throws {
        let otherSite = CredentialIssuer(siteID: "site-ber-2", key: MKTest.issuerKey)
        XCTAssertEqual(verdict(try MKTest.issue(by: otherSite).bytes), .denied(.wrongSite))
    }

    func testNotYetValidAndExpiredWithSkewTolerance() throws {
        let nbf = at, exp = at.addingTimeInterval(3600)
        let bytes = try MKTest.issue(MKTest.request(from: nbf, until: exp)).bytes
        XCTAssertEqual(verdict(bytes, at: nbf - 61), .denied(.notYetValid))
        XCTAssertTrue(verdict(bytes, at: nbf - 60).isGranted, "within the 60 s skew tolerance")
        XCTAssertTrue(verdict(bytes, at: exp + 59).isGranted)
        XCTAssertEqual(verdict(bytes, at: exp + 60), .denied(.expired))
        XCTAssertEqual(verdict(bytes, at: exp + 86400 * 365), .denied(.expired))

        let strict = Verifier(siteID: MKTest.site, lockID: MKTest.lock, issuerKeys: [MKTest.issuerKey.publicKey], clockSkewTolerance: 0)
        XCTAssertEqual(verdict(bytes, at: nbf - 1, verifier: strict), .denied(.notYetValid))
        XCTAssertTrue(verdict(bytes, at: nbf, verifier: strict).isGranted)
        XCTAssertTrue(verdict(bytes, at: exp - 0.001, verifier: strict).isGranted)
        XCTAssertEqual(verdict(bytes, at: exp, verifier: strict), .denied(.expired), "exp is exclusive")
    }

    func testBookingGraceWindow() throws {
        // A 12:00–16:00 booking with ±30 min is valid 11:30–16:30.
        let noon = at.addingTimeInterval(2 * 3600) // 12:00 UTC
        let window = ValidityWindow.booking(start: noon, end: noon + 4 * 3600, grace: 30 * 60)
        XCTAssertEqual(window.notBefore, noon - 30 * 60)
        XCTAssertEqual(window.expires, noon + 4 * 3600 + 30 * 60)
        let req = CredentialRequest(userID: "guest-7", lockIDs: [MKTest.lock], holderKey: MKTest.holderKey.publicKey, validity: window)
        let issued = try MKTest.issuer.issue(req, issuedAt: at)
        XCTAssertEqual(issued.credential.claims[CWTClaim.nbf]?.intValue, Int64(noon.timeIntervalSince1970) - 1800)
        XCTAssertEqual(issued.credential.claims[CWTClaim.exp]?.intValue, Int64(noon.timeIntervalSince1970) + 4 * 3600 + 1800)
        let strict = Verifier(siteID: MKTest.site, lockID: MKTest.lock, issuerKeys: [MKTest.issuerKey.publicKey], clockSkewTolerance: 0)
        XCTAssertEqual(verdict(issued.bytes, at: noon - 1801, verifier: strict), .denied(.notYetValid))
        XCTAssertTrue(verdict(issued.bytes, at: noon - 1800, verifier: strict).isGranted, "11:30")
        XCTAssertTrue(verdict(issued.bytes, at: noon + 4 * 3600 + 1799, verifier: strict).isGranted, "16:29:59")
        XCTAssertEqual(verdict(issued.bytes, at: noon + 4 * 3600 + 1800, verifier: strict), .denied(.expired), "16:30")
    }

    func testWrongLock() throws {
        let bytes = try MKTest.issue(MKTest.request(locks: ["back-door", "bike-room"])).bytes
        XCTAssertEqual(verdict(bytes), .denied(.wrongLock))
        let backDoor = Verifier(siteID: MKTest.site, lockID: "back-door", issuerKeys: [MKTest.issuerKey.publicKey])
        XCTAssertTrue(verdict(bytes, verifier: backDoor).isGranted)
        // aud as a single text string (RFC 8392 allows it).
        XCTAssertTrue(verdict(try claims { $0[.int(CWTClaim.aud)] = .text(MKTest.lock) }).isGranted)
        XCTAssertEqual(verdict(try claims { $0[.int(CWTClaim.aud)] = "front-door-2" }), .denied(.wrongLock))
    }

    func testOutsideSchedule() throws {
        // Mon–Fri 09:00–18:00 in Berlin; `at` is Monday 11:00 Berlin.
        let schedule = try WeeklySchedule(timeZone: "Europe/Berlin", weekdays: [1, 2, 3, 4, 5], from: "09:00", to: "18:00")
        let bytes = try MKTest.issue(MKTest.request(from: at - 30 * 86400, until: at + 30 * 86400, schedule: schedule)).bytes
        XCTAssertTrue(verdict(bytes).isGranted)
        XCTAssertTrue(verdict(bytes, at: at - 2 * 3600).isGranted, "09:00 Berlin = 08:00 UTC")
        XCTAssertEqual(verdict(bytes, at: at - 2 * 3600 - 1), .denied(.outsideSchedule), "08:59:59 Berlin")
        XCTAssertTrue(verdict(bytes, at: at + 7 * 3600 - 1).isGranted, "17:59:59 Berlin")
        XCTAssertEqual(verdict(bytes, at: at + 7 * 3600), .denied(.outsideSchedule), "18:00 Berlin")
        XCTAssertEqual(verdict(bytes, at: at - 2 * 86400), .denied(.outsideSchedule), "Saturday")
        XCTAssertEqual(verdict(bytes, at: at - 86400), .denied(.outsideSchedule), "Sunday")
        XCTAssertTrue(verdict(bytes, at: at + 4 * 86400).isGranted, "Friday")
        // Reasons that come earlier in the order win over the schedule.
        XCTAssertEqual(verdict(bytes, at: at + 40 * 86400), .denied(.expired))
    }

    func testRevoked() throws {
        let issued = try MKTest.issue()
        let list = try MKTest.noRevocations.revoking([issued.credential.keyID], issuedAt: at)
        XCTAssertEqual(verdict(issued.bytes, revocations: list), .denied(.revoked))
        XCTAssertTrue(verdict(try MKTest.issue().bytes, revocations: list).isGranted, "another key is unaffected")
        let reinstated = try list.removing([issued.credential.keyID], issuedAt: at)
        XCTAssertTrue(verdict(issued.bytes, revocations: reinstated).isGranted)
    }

    func testMissingProofKey() throws {
        XCTAssertEqual(verdict(try claims { $0[.int(CWTClaim.cnf)] = nil }), .denied(.missingProofKey))
        // cnf with only a kid (RFC 8747 §3.4): nothing to prove possession of.
        XCTAssertEqual(verdict(try claims { $0[.int(CWTClaim.cnf)] = [3: .bytes([1, 2])] }), .denied(.missingProofKey))
    }

    func testCheckOrder() throws {
        // Bad signature beats every claim problem: nothing is revealed about a forgery's claims.
        let otherSite = CredentialIssuer(siteID: "elsewhere", key: MKTest.otherIssuerKey, keyID: KeyID.derive(from: MKTest.issuerKey.publicKey))
        XCTAssertEqual(verdict(try MKTest.issue(MKTest.request(locks: ["x"]), by: otherSite).bytes, at: at + 1e7), .denied(.badSignature))
        // Wrong site beats revoked, time and lock.
        let s2 = CredentialIssuer(siteID: "elsewhere", key: MKTest.issuerKey)
        XCTAssertEqual(verdict(try MKTest.issue(MKTest.request(locks: ["x"]), by: s2).bytes, at: at + 1e7), .denied(.wrongSite))
        // Revoked beats expiry (the audit trail shows the revocation).
        let issued = try MKTest.issue()
        let list = try MKTest.noRevocations.revoking([issued.credential.keyID], issuedAt: at)
        XCTAssertEqual(verdict(issued.bytes, at: at + 1e7, revocations: list), .denied(.revoked))
        // Time beats lock.
        XCTAssertEqual(verdict(try MKTest.issue(MKTest.request(locks: ["x"])).bytes, at: at + 1e7), .denied(.expired))
    }

    func testIssuerRefusesBadRequests() throws {
        let issuer = MKTest.issuer
        func assertInvalid(_ r: CredentialRequest, line: UInt = #line) {
            XCTAssertThrowsError(try issuer.issue(r, issuedAt: at), line: line) {
                guard case .invalidRequest = $0 as? IssueError else { return XCTFail("\($0)", line: line) }
            }
        }
        assertInvalid(MKTest.request(locks: []))
        assertInvalid(MKTest.request(locks: ["a", "a"]))
        assertInvalid(MKTest.request(locks: [""]))
        assertInvalid(MKTest.request(from: at, until: at))
        assertInvalid(MKTest.request(from: at, until: at + 0.5))
        var r = MKTest.request(); r.keyID = [1]
        assertInvalid(r)
        r = MKTest.request(); r.userID = ""
        assertInvalid(r)
        r = MKTest.request(); r.keyID = [UInt8](repeating: 9, count: 16)
        XCTAssertEqual(try issuer.issue(r, issuedAt: at).credential.keyID, [UInt8](repeating: 9, count: 16))
    }

    func testEachIssuedKeyHasFreshRandomKeyID() throws {
        let ids = try (0..<20).map { _ in try MKTest.issue().credential.keyID }
        XCTAssertEqual(Set(ids).count, 20)
    }

    func testIssuedCredentialIsDeterministicCBOR() throws {
        let issued = try MKTest.issue(MKTest.request(schedule: try WeeklySchedule(timeZone: "UTC", weekdays: [1], from: "00:00", to: "24:00")))
        let message = try COSESign1(decoding: issued.bytes)
        XCTAssertEqual(try CBORDecoder().decode(message.payload).encoded(), message.payload)
        XCTAssertEqual(issued.credential.claims.encoded(), message.payload)
        XCTAssertEqual(try Credential(payload: message.payload), issued.credential)
    }
}
