import Foundation
import XCTest
import KeywayCrypto
@testable import MobileKey

/// The tap protocol on bytes: lock side and phone side talking directly, no radio in between.
final class TapProtocolTests: XCTestCase {
    let site = "sf-mission"
    let t0 = Date(timeIntervalSince1970: 1_795_000_000) // a fixed lock time
    var issuerKey: P256.PrivateKey!
    var issuer: CredentialIssuer!
    var lock: TapLockIdentity!
    var holder: P256.PrivateKey!
    var revocations: RevocationList!

    override func setUpWithError() throws {
        issuerKey = try P256.PrivateKey()
        issuer = CredentialIssuer(siteID: site, key: issuerKey)
        let device = try P256.PrivateKey()
        let cert = try issuer.certify(lockID: "main-entrance", deviceKey: device.publicKey, issuedAt: t0 - 86_400, expires: t0 + 365 * 86_400)
        lock = TapLockIdentity(lockID: "main-entrance", deviceKey: device, certificate: cert.bytes,
                               verifier: Verifier(siteID: site, lockID: "main-entrance", issuers: TrustedIssuers([issuerKey.publicKey])))
        holder = try P256.PrivateKey()
        revocations = RevocationList.empty(siteID: site)
    }

    func credential(locks: [String] = ["main-entrance"], office: Bool = false, holderKey: P256.PublicKey? = nil,
                    from: Date? = nil, until: Date? = nil, by: CredentialIssuer? = nil) throws -> IssuedCredential {
        try (by ?? issuer).issue(CredentialRequest(userID: "u-ada", lockIDs: locks, holderKey: holderKey ?? holder.publicKey,
                                                   validity: ValidityWindow(notBefore: from ?? t0 - 3600, expires: until ?? t0 + 3600),
                                                   officeMode: office), issuedAt: t0 - 3600)
    }

    func phone(_ c: IssuedCredential, key: P256.PrivateKey? = nil) -> TapPhone {
        TapPhone(credential: c.bytes, holderKey: key ?? holder, siteID: site, trustedIssuers: TrustedIssuers([issuerKey.publicKey]))
    }

    /// One whole tap; returns the lock's evaluation and the phone's view of the result.
    func tap(_ p: TapPhone, action: TapAction = .open, at: Date? = nil, presentAt: Date? = nil,
             mutate: (inout [UInt8]) -> Void = { _ in }) throws -> (TapEvaluation, TapResultMessage?) {
        let session = try lock.startSession(now: at ?? t0)
        let pending = try p.present(hello: session.helloBytes, action: action, at: at ?? t0)
        var bytes = pending.presentation
        mutate(&bytes)
        let eval = session.evaluate(bytes, now: presentAt ?? at ?? t0, revocations: revocations)
        let granted: Bool
        if case .accepted = eval { granted = true } else { granted = false }
        let result = session.resultMessage(granted: granted, reason: eval.denial?.code, openMilliseconds: granted ? 7000 : 0)
        return (eval, try? pending.result(result))
    }

    func testGrantedAndResultAuthenticated() throws {
        let (eval, result) = try tap(phone(try credential()))
        guard case .accepted(let c, let action) = eval else { return XCTFail("\(eval)") }
        XCTAssertEqual(c.userID, "u-ada")
        XCTAssertEqual(action, .open)
        XCTAssertEqual(result?.granted, true)
        XCTAssertEqual(result?.openMilliseconds, 7000)
    }

    func testCredentialDenialsPassThrough() throws {
        XCTAssertEqual(try tap(phone(try credential(locks: ["other-door"]))).0.denial, .credential(.wrongLock))
        XCTAssertEqual(try tap(phone(try credential(from: t0 + 600))).0.denial, .credential(.notYetValid))
        XCTAssertEqual(try tap(phone(try credential(from: t0 - 7200, until: t0 - 3600))).0.denial, .credential(.expired))
        let foreign = CredentialIssuer(siteID: site, key: try P256.PrivateKey())
        XCTAssertEqual(try tap(phone(try credential(by: foreign))).0.denial, .credential(.unknownIssuer))
        let c = try credential()
        revocations = try RevocationList(siteID: site, version: 2, issuedAt: t0, revokedKeyIDs: [c.credential.keyID])
        let (eval, result) = try tap(phone(c))
        XCTAssertEqual(eval.denial, .credential(.revoked))
        guard case .denied(_, let parsed, _) = eval else { return XCTFail() }
        XCTAssertEqual(parsed?.keyID, c.credential.keyID, "a revoked denial still names the key")
        XCTAssertEqual(result?.reason, "revoked")
    }

    func testPhoneWithoutPrivateKeyIsDenied() throws {
        let (eval, _) = try tap(phone(try credential(), key: try P256.PrivateKey()))
        XCTAssertEqual(eval.denial, .proofOfPossessionFailed)
    }

    func testOfficeModeNeedsTheRight() throws {
        XCTAssertEqual(try tap(phone(try credential()), action: .officeModeOn).0.denial, .actionNotPermitted)
        guard case .accepted(_, .officeModeOn) = try tap(phone(try credential(office: true)), action: .officeModeOn).0 else { return XCTFail() }
    }

    func testReplayedPresentationIsNamed() throws {
        let p = phone(try credential())
        let session = try lock.startSession(now: t0)
        let pending = try p.present(hello: session.helloBytes, action: .open, at: t0)
        guard case .accepted = session.evaluate(pending.presentation, now: t0, revocations: revocations) else { return XCTFail() }
        // Same bytes again on the same session, and on a fresh session (another connection).
        XCTAssertEqual(session.evaluate(pending.presentation, now: t0, revocations: revocations).denial, .replayed)
        let other = try lock.startSession(now: t0)
        XCTAssertEqual(other.evaluate(pending.presentation, now: t0, revocations: revocations).denial, .replayed)
    }

    func testPresentationForAnotherSessionFailsToDecrypt() throws {
        let p = phone(try credential())
        let first = try lock.startSession(now: t0)
        let second = try lock.startSession(now: t0)
        let pending = try p.present(hello: first.helloBytes, action: .open, at: t0)
        XCTAssertEqual(second.evaluate(pending.presentation, now: t0, revocations: revocations).denial, .decryptionFailed)
    }

    func testNonceExpiresAndClockRollbackExpiresIt() throws {
        XCTAssertEqual(try tap(phone(try credential()), presentAt: t0 + TapProtocol.nonceLifetime + 1).0.denial, .nonceExpired)
        XCTAssertEqual(try tap(phone(try credential()), presentAt: t0 - 5).0.denial, .nonceExpired)
    }

    func testEveryFlippedBitIsDenied() throws {
        let p = phone(try credential())
        // Flip one bit in each byte position class: header, ephemeral key, ciphertext, tag.
        let probe = try lock.startSession(now: t0)
        let size = try p.present(hello: probe.helloBytes, action: .open, at: t0).presentation.count
        for i in stride(from: 0, to: size, by: 7) {
            let (eval, result) = try tap(p) { $0[i] ^= 0x01 }
            guard case .denied(let d, _, _) = eval else { return XCTFail("flip at \(i) was granted") }
            XCTAssertTrue([.malformedPresentation, .decryptionFailed].contains(d), "byte \(i): \(d)")
            XCTAssertEqual(result?.granted ?? false, false)
        }
    }

    func testTruncatedAndOversizedPresentations() throws {
        let session = try lock.startSession(now: t0)
        XCTAssertEqual(session.evaluate([], now: t0, revocations: revocations).denial, .malformedPresentation)
        XCTAssertEqual(session.evaluate([0xa3, 0x01], now: t0, revocations: revocations).denial, .malformedPresentation)
        let huge = [UInt8](repeating: 0x41, count: TapProtocol.maxPresentationSize + 1)
        XCTAssertEqual(session.evaluate(huge, now: t0, revocations: revocations).denial, .malformedPresentation)
    }

    func testPhoneRefusesForgedHello() throws {
        let p = phone(try credential())
        let session = try lock.startSession(now: t0)
        // 1. A reader signing with a key that its certificate does not name.
        var hello = session.hello
        hello.signature = try ECDSA.sign(hello.toBeSigned, with: try P256.PrivateKey())
        XCTAssertThrowsError(try p.present(hello: hello.encoded(), action: .open, at: t0)) { XCTAssertEqual($0 as? TapPhoneError, .badHelloSignature) }
        // 2. A genuine certificate replayed with a different nonce.
        hello = session.hello
        hello.nonce = [UInt8](repeating: 9, count: 16)
        XCTAssertThrowsError(try p.present(hello: hello.encoded(), action: .open, at: t0)) { XCTAssertEqual($0 as? TapPhoneError, .badHelloSignature) }
        // 3. A lock certified by another site's issuer.
        let rogueIssuer = CredentialIssuer(siteID: site, key: try P256.PrivateKey())
        let rogueDevice = try P256.PrivateKey()
        let rogueCert = try rogueIssuer.certify(lockID: "main-entrance", deviceKey: rogueDevice.publicKey, issuedAt: t0 - 60, expires: t0 + 600)
        let rogue = TapLockIdentity(lockID: "main-entrance", deviceKey: rogueDevice, certificate: rogueCert.bytes, verifier: lock.verifier)
        let rs = try rogue.startSession(now: t0)
        XCTAssertThrowsError(try p.present(hello: rs.helloBytes, action: .open, at: t0)) {
            guard case .untrustedLock = $0 as? TapPhoneError else { return XCTFail("\($0)") }
        }
        // 4. A certificate for another lock of the site.
        let otherDevice = try P256.PrivateKey()
        let otherCert = try issuer.certify(lockID: "back-door", deviceKey: otherDevice.publicKey, issuedAt: t0 - 60, expires: t0 + 600)
        var h = try TapLockIdentity(lockID: "main-entrance", deviceKey: otherDevice, certificate: otherCert.bytes, verifier: lock.verifier).startSession(now: t0).hello
        h.signature = try ECDSA.sign(h.toBeSigned, with: otherDevice)
        XCTAssertThrowsError(try p.present(hello: h.encoded(), action: .open, at: t0)) {
            guard case .untrustedLock = $0 as? TapPhoneError else { return XCTFail("\($0)") }
        }
        // 5. Garbage.
        XCTAssertThrowsError(try p.present(hello: [0xff, 0x00], action: .open, at: t0))
    }

    func testForgedResultIsRejectedByPhone() throws {
        let p = phone(try credential())
        let session = try lock.startSession(now: t0)
        let pending = try p.present(hello: session.helloBytes, action: .open, at: t0)
        let fake = TapResultMessage(granted: true, reason: nil, openMilliseconds: 7000, mac: [UInt8](repeating: 0, count: 16)).encoded()
        XCTAssertThrowsError(try pending.result(fake)) { XCTAssertEqual($0 as? TapPhoneError, .resultNotAuthenticated) }
    }

    func testFragmentsRoundTripAndRejectDisorder() throws {
        let message = (0..<1300).map { UInt8($0 & 0xff) }
        let frags = TapFragments.split(message)
        XCTAssertEqual(frags.count, 3)
        XCTAssertTrue(frags.allSatisfy { $0.count <= 512 })
        var r = TapReassembler()
        XCTAssertEqual(try r.add(frags[0]), .needMore)
        XCTAssertEqual(try r.add(frags[1]), .needMore)
        XCTAssertEqual(try r.add(frags[2]), .complete(message))
        var r2 = TapReassembler()
        XCTAssertThrowsError(try r2.add(frags[1])) { XCTAssertEqual($0 as? TapReassembler.Failure, .outOfOrder) }
        var r3 = TapReassembler(limit: 100)
        XCTAssertThrowsError(try r3.add(frags[0])) { XCTAssertEqual($0 as? TapReassembler.Failure, .tooLarge) }
        XCTAssertEqual(TapFragments.split([]).count, 1)
    }

    func testMessagesRoundTrip() throws {
        let s = try lock.startSession(now: t0)
        XCTAssertEqual(try ReaderHello(decoding: s.helloBytes), s.hello)
        XCTAssertLessThanOrEqual(s.helloBytes.count, 512, "the hello must fit one ATT attribute value")
        let r = TapResultMessage(granted: false, reason: "revoked", openMilliseconds: 0, mac: [UInt8](repeating: 1, count: 16))
        XCTAssertEqual(try TapResultMessage(decoding: r.encoded()), r)
        XCTAssertThrowsError(try ReaderHello(decoding: CBOR.map([1: .int(2)]).encoded()))
    }
}
