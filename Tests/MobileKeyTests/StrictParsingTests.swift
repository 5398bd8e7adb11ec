import Foundation
import XCTest
import KeywayCrypto
@testable import MobileKey

/// What Keyway refuses and what it accepts where a lenient parser would let things slide
/// (docs/PROTOCOL.md, "Strictness"). Each rule is pinned both ways: the canonical form passes, the
/// variant is refused (or, where the rule is "accept", accepted).
final class StrictParsingTests: XCTestCase {
    let site = "sf-mission"
    let t0 = Date(timeIntervalSince1970: 1_795_000_000)
    var issuerKey: P256.PrivateKey!
    var issuer: CredentialIssuer!
    var device: P256.PrivateKey!
    var certificate: LockCertificate!
    var holder: P256.PrivateKey!

    override func setUpWithError() throws {
        issuerKey = try P256.PrivateKey()
        issuer = CredentialIssuer(siteID: site, key: issuerKey)
        device = try P256.PrivateKey()
        certificate = try issuer.certify(lockID: "door", deviceKey: device.publicKey, issuedAt: t0 - 86_400, expires: t0 + 86_400)
        holder = try P256.PrivateKey()
    }

    var trusted: TrustedIssuers { TrustedIssuers([issuerKey.publicKey]) }
    var verifier: Verifier { Verifier(siteID: site, lockID: "door", issuers: trusted) }

    func issued() throws -> IssuedCredential {
        try issuer.issue(CredentialRequest(userID: "u-ada", lockIDs: ["door"], holderKey: holder.publicKey,
                                           validity: ValidityWindow(notBefore: t0 - 60, expires: t0 + 3600)), issuedAt: t0 - 60)
    }

    // MARK: - Tap messages

    func testTapMessagesRefuseUnknownKeysReorderedKeysAndLongIntegers() throws {
        let genuine = TapResultMessage(granted: true, reason: nil, openMilliseconds: 7000, mac: [UInt8](repeating: 7, count: 16)).encoded()
        XCTAssertNoThrow(try TapResultMessage(decoding: genuine))

        // An extra key 6.
        let extra = CBOR.map([1: .int(2), 2: .bool(true), 4: .unsigned(7000), 6: .bytes([1])]).encoded()
        XCTAssertThrowsError(try TapResultMessage(decoding: extra)) { XCTAssertEqual($0 as? TapMessageError, .malformed("unknown key")) }

        // Keys 2 and 1 swapped on the wire: a3 02 f5 01 02 04 19 1b58.
        let reordered: [UInt8] = [0xA3, 0x02, 0xF5, 0x01, 0x02, 0x04, 0x19, 0x1B, 0x58]
        XCTAssertEqual(try CBORDecoder(limits: TapProtocol.limits).decode(reordered),
                       .map([1: .int(2), 2: .bool(true), 4: .unsigned(7000)]), "the same map, in another order")
        XCTAssertThrowsError(try TapResultMessage(decoding: reordered))
        XCTAssertNoThrow(try TapResultMessage(decoding: [0xA3, 0x01, 0x02, 0x02, 0xF5, 0x04, 0x19, 0x1B, 0x58]))

        // open ms 7000 as a 4-byte integer (1a 00001b58) instead of the shortest 2-byte form.
        let long: [UInt8] = [0xA3, 0x01, 0x02, 0x02, 0xF5, 0x04, 0x1A, 0x00, 0x00, 0x1B, 0x58]
        XCTAssertThrowsError(try TapResultMessage(decoding: long))

        // The same rules hold for the phone hello and presentation (lock side) and the hello (phone side).
        let presentation = Presentation(sealed: [1, 2, 3]).encoded()
        XCTAssertNoThrow(try Presentation(decoding: presentation))
        guard case .map(var m) = try CBORDecoder(limits: TapProtocol.limits).decode(presentation) else { return XCTFail() }
        m[9] = .bytes([])
        XCTAssertThrowsError(try Presentation(decoding: CBOR.map(m).encoded()))
        m[9] = nil
        m[2] = nil
        XCTAssertThrowsError(try Presentation(decoding: CBOR.map(m).encoded())) { XCTAssertEqual($0 as? TapMessageError, .malformed("missing key 2")) }
        let phoneHello = PhoneHello(phoneEphemeralKey: try P256.PrivateKey().publicKey.uncompressed, transactionID: [UInt8](repeating: 3, count: 16)).encoded()
        XCTAssertNoThrow(try PhoneHello(decoding: phoneHello))
        guard case .map(var h) = try CBORDecoder(limits: TapProtocol.limits).decode(phoneHello) else { return XCTFail() }
        h[4] = .bytes([])
        XCTAssertThrowsError(try PhoneHello(decoding: CBOR.map(h).encoded())) { XCTAssertEqual($0 as? TapMessageError, .malformed("unknown key")) }
        h[4] = nil
        h[3] = .bytes([UInt8](repeating: 3, count: 15))
        XCTAssertThrowsError(try PhoneHello(decoding: CBOR.map(h).encoded()), "a 15-byte transaction id")
        // Keys 3 and 2 swapped: the same map, refused.
        var swapped: [UInt8] = [0xA3, 0x01, 0x02]
        swapped += Array(phoneHello[71...]) + Array(phoneHello[3..<71])
        XCTAssertEqual(swapped.count, phoneHello.count)
        XCTAssertThrowsError(try PhoneHello(decoding: swapped)) { XCTAssertEqual($0 as? TapMessageError, .malformed("not in deterministic encoding (key order or integer form)")) }
    }

    // MARK: - Low-S

    func testKeywaySignsLowSAndTheTapRefusesHighS() throws {
        let key = try P256.PrivateKey()
        var sawHigh = false
        for i in 0..<64 {
            let message = Array("message \(i)".utf8)
            let sig = try ECDSA.sign(message, with: key)
            XCTAssertTrue(ECDSA.isLowS(sig), "Keyway's signatures are low-S")
            let high = ECDSA.highS(sig)
            XCTAssertFalse(ECDSA.isLowS(high))
            XCTAssertTrue(ECDSA.verify(high, of: message, by: key.publicKey), "the high-S twin is a valid ECDSA signature")
            XCTAssertEqual(ECDSA.lowS(high), sig)
            sawHigh = true
        }
        XCTAssertTrue(sawHigh)

        // The phone refuses a hello whose (otherwise valid) signature is high-S.
        let lock = TapLockIdentity(lockID: "door", deviceKey: device, certificate: certificate.bytes, verifier: verifier)
        let phone = TapPhone(credential: try issued().bytes, holderKey: holder, siteID: site, trustedIssuers: trusted)
        let opening = try phone.open()
        var hello = try lock.startSession(phoneHello: opening.phoneHello, now: t0).hello
        XCTAssertNoThrow(try opening.present(readerHello: hello.encoded(), action: .open, at: t0))
        hello.signature = ECDSA.highS(hello.signature)
        XCTAssertThrowsError(try opening.present(readerHello: hello.encoded(), action: .open, at: t0)) {
            XCTAssertEqual($0 as? TapPhoneError, .badHelloSignature)
        }
    }

    func testACredentialWithAHighSIssuerSignatureIsStillAccepted() throws {
        // Other COSE libraries (python-cwt, pycose over OpenSSL) do not normalise S: credentials,
        // lock certificates and revocation lists accept both forms (interop), unlike the tap's own
        // signatures, which only Keyway-conformant peers make.
        let c = try issued()
        let message = try COSESign1(decoding: c.bytes)
        // The signature is the array's last item, a 64-byte string: the encoding's last 64 bytes.
        XCTAssertEqual(Array(c.bytes.suffix(64)), message.signature)
        let high = Array(c.bytes.dropLast(64)) + ECDSA.highS(message.signature)
        XCTAssertNotEqual(high, c.bytes)
        guard case .granted(let credential) = verifier.verify(high, at: t0, revocations: .empty(siteID: site)) else {
            return XCTFail("high-S issuer signature refused")
        }
        XCTAssertEqual(credential.keyID, c.credential.keyID, "same key id: revocation still applies to the twin")
    }

    // MARK: - cnf

    func claims(cnf: [CBOR: CBOR]) throws -> [UInt8] {
        guard case .map(var m) = try issued().credential.claims else { throw XCTSkip("claims not a map") }
        m[.int(CWTClaim.cnf)] = .map([.int(CWTClaim.cnfCOSEKey): .map(cnf)])
        return try issuer.sign(payload: CBOR.map(m).encoded(), contentType: nil)
    }

    func testTheConfirmationKeyMustBeForES256Verification() throws {
        guard case .map(let key) = COSEKey.cbor(holder.publicKey) else { return XCTFail() }
        var es256 = key
        es256[.int(COSEKey.alg)] = .int(-7)
        es256[.int(COSEKey.keyOps)] = [.int(COSEKey.keyOpVerify)]
        if case .denied(let r) = verifier.verify(try claims(cnf: es256), at: t0, revocations: .empty(siteID: site)) {
            XCTFail("alg -7 with key_ops [verify] refused: \(r)")
        }
        for (name, change) in [("alg ES384", { (k: inout [CBOR: CBOR]) in k[.int(COSEKey.alg)] = .int(-35) }),
                               ("alg as text", { (k: inout [CBOR: CBOR]) in k[.int(COSEKey.alg)] = .text("ES256") }),
                               ("key_ops sign only", { (k: inout [CBOR: CBOR]) in k[.int(COSEKey.keyOps)] = [.int(1)] }),
                               ("key_ops not an array", { (k: inout [CBOR: CBOR]) in k[.int(COSEKey.keyOps)] = .int(2) })] {
            var k = key
            change(&k)
            XCTAssertEqual(verifier.verify(try claims(cnf: k), at: t0, revocations: .empty(siteID: site)), .denied(.malformed), name)
        }
    }

    // MARK: - Revocation list order

    func testARevocationListMustBeSorted() throws {
        let a = [UInt8](repeating: 0x01, count: 16), b = [UInt8](repeating: 0x02, count: 16)
        func payload(_ ids: [[UInt8]]) -> CBOR {
            [.int(RevocationList.Key.site): .text(site), .int(RevocationList.Key.version): .unsigned(2),
             .int(RevocationList.Key.revoked): .array(ids.map { .bytes($0) }), .int(RevocationList.Key.issuedAt): .int(1_795_000_000)]
        }
        XCTAssertNoThrow(try RevocationList(payload: payload([a, b])))
        XCTAssertThrowsError(try RevocationList(payload: payload([b, a]))) {
            XCTAssertEqual($0 as? RevocationListError, .malformed("key ids not in ascending order"))
        }
    }

    // MARK: - Certificate cache

    func testTheCertificateCacheVouchesOnlyForItsSiteAndTrustedIssuers() throws {
        let cache = LockCertificateCache()
        let lock = TapLockIdentity(lockID: "door", deviceKey: device, certificate: certificate.bytes, verifier: verifier)
        let phone = TapPhone(credential: try issued().bytes, holderKey: holder, siteID: site, trustedIssuers: trusted, certificateCache: cache)
        _ = try phone.presentation(to: lock, at: t0)
        XCTAssertNotNil(cache.lookup(certificate.bytes, siteID: site, issuers: trusted, at: t0))
        XCTAssertNil(cache.lookup(certificate.bytes, siteID: "another-site", issuers: trusted, at: t0), "another site")
        let rotated = TrustedIssuers([try P256.PrivateKey().publicKey])
        XCTAssertNil(cache.lookup(certificate.bytes, siteID: site, issuers: rotated, at: t0), "issuer key no longer trusted")

        // A phone whose trust anchors no longer hold the issuer refuses the lock, cache or not.
        let rotatedPhone = TapPhone(credential: try issued().bytes, holderKey: holder, siteID: site, trustedIssuers: rotated, certificateCache: cache)
        XCTAssertThrowsError(try rotatedPhone.presentation(to: lock, at: t0)) {
            XCTAssertEqual($0 as? TapPhoneError, .untrustedLock(.unknownIssuer))
        }
    }
}

extension ECDSA {
    /// The high-S twin of a low-S signature (tests only).
    static func highS(_ signature: [UInt8]) -> [UInt8] {
        isLowS(signature) ? otherS(signature) : signature
    }
}
