import Foundation
import XCTest
import KeywayCrypto
@testable @_spi(NonConformantPhone) @_spi(TapVectors) import MobileKey

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

    /// The phone's hello and the lock's session answering it.
    func open(_ p: TapPhone, at: Date? = nil, on identity: TapLockIdentity? = nil) throws -> (TapPhone.Opening, TapLockSession) {
        let opening = try p.open()
        return (opening, try (identity ?? lock).startSession(phoneHello: opening.phoneHello, now: at ?? t0))
    }

    /// One whole tap; returns the lock's evaluation and the phone's view of the result.
    func tap(_ p: TapPhone, action: TapAction = .open, at: Date? = nil, presentAt: Date? = nil,
             mutate: (inout [UInt8]) -> Void = { _ in }) throws -> (TapEvaluation, TapResultMessage?) {
        let (opening, session) = try open(p, at: at ?? t0)
        let pending = try opening.present(readerHello: session.helloBytes, action: action, at: at ?? t0)
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
        // A lock outside `aud` is refused by a conformant phone; a non-conformant one lets the lock judge.
        XCTAssertEqual(try tap(phone(try credential(locks: ["other-door"])).nonConformant()).0.denial, .credential(.wrongLock))
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
        let (opening, session) = try open(p)
        let pending = try opening.present(readerHello: session.helloBytes, action: .open, at: t0)
        guard case .accepted = session.evaluate(pending.presentation, now: t0, revocations: revocations) else { return XCTFail() }
        // Same bytes again on the same session, and on a fresh session (another connection) — also
        // one answering the replayed phone hello.
        XCTAssertEqual(session.evaluate(pending.presentation, now: t0, revocations: revocations).denial, .replayed)
        XCTAssertEqual(try open(p).1.evaluate(pending.presentation, now: t0, revocations: revocations).denial, .replayed)
        let again = try lock.startSession(phoneHello: opening.phoneHello, now: t0)
        XCTAssertEqual(again.evaluate(pending.presentation, now: t0, revocations: revocations).denial, .replayed)
    }

    func testPresentationForAnotherSessionFailsToDecrypt() throws {
        let p = phone(try credential())
        let (opening, first) = try open(p)
        let (_, second) = try open(p)
        let pending = try opening.present(readerHello: first.helloBytes, action: .open, at: t0)
        XCTAssertEqual(second.evaluate(pending.presentation, now: t0, revocations: revocations).denial, .decryptionFailed)
        // The same phone hello answered twice: the lock's fresh ephemeral key and nonce still part them.
        let third = try lock.startSession(phoneHello: opening.phoneHello, now: t0)
        XCTAssertEqual(third.evaluate(pending.presentation, now: t0, revocations: revocations).denial, .decryptionFailed)
    }

    func testNonceExpiresAndClockRollbackExpiresIt() throws {
        XCTAssertEqual(try tap(phone(try credential()), presentAt: t0 + TapProtocol.nonceLifetime + 1).0.denial, .nonceExpired)
        XCTAssertEqual(try tap(phone(try credential()), presentAt: t0 - 5).0.denial, .nonceExpired)
    }

    func testEveryFlippedBitIsDenied() throws {
        let p = phone(try credential())
        // Flip one bit in each byte position class: header, ephemeral key, ciphertext, tag.
        let (opening, probe) = try open(p)
        let size = try opening.present(readerHello: probe.helloBytes, action: .open, at: t0).presentation.count
        for i in stride(from: 0, to: size, by: 7) {
            let (eval, result) = try tap(p) { $0[i] ^= 0x01 }
            guard case .denied(let d, _, _) = eval else { return XCTFail("flip at \(i) was granted") }
            XCTAssertTrue([.malformedPresentation, .decryptionFailed].contains(d), "byte \(i): \(d)")
            XCTAssertEqual(result?.granted ?? false, false)
        }
    }

    func testTruncatedAndOversizedPresentations() throws {
        let (_, session) = try open(phone(try credential()))
        XCTAssertEqual(session.evaluate([], now: t0, revocations: revocations).denial, .malformedPresentation)
        XCTAssertEqual(session.evaluate([0xa3, 0x01], now: t0, revocations: revocations).denial, .malformedPresentation)
        let huge = [UInt8](repeating: 0x41, count: TapProtocol.maxPresentationSize + 1)
        XCTAssertEqual(session.evaluate(huge, now: t0, revocations: revocations).denial, .malformedPresentation)
    }

    func testPhoneRefusesForgedHello() throws {
        let p = phone(try credential())
        let (opening, session) = try open(p)
        func present(_ bytes: [UInt8]) throws { _ = try opening.present(readerHello: bytes, action: .open, at: t0) }
        // 1. A reader signing with a key that its certificate does not name.
        var hello = session.hello
        hello.signature = try ECDSA.sign(hello.toBeSigned(siteID: site, phoneHello: opening.hello), with: try P256.PrivateKey())
        XCTAssertThrowsError(try present(hello.encoded())) { XCTAssertEqual($0 as? TapPhoneError, .badHelloSignature) }
        // 2. A genuine certificate replayed with a different nonce.
        hello = session.hello
        hello.nonce = [UInt8](repeating: 9, count: 16)
        XCTAssertThrowsError(try present(hello.encoded())) { XCTAssertEqual($0 as? TapPhoneError, .badHelloSignature) }
        // 3. A lock certified by another site's issuer.
        let rogueIssuer = CredentialIssuer(siteID: site, key: try P256.PrivateKey())
        let rogueDevice = try P256.PrivateKey()
        let rogueCert = try rogueIssuer.certify(lockID: "main-entrance", deviceKey: rogueDevice.publicKey, issuedAt: t0 - 60, expires: t0 + 600)
        let rogue = TapLockIdentity(lockID: "main-entrance", deviceKey: rogueDevice, certificate: rogueCert.bytes, verifier: lock.verifier)
        XCTAssertThrowsError(try present(try rogue.startSession(phoneHello: opening.phoneHello, now: t0).helloBytes)) {
            guard case .untrustedLock = $0 as? TapPhoneError else { return XCTFail("\($0)") }
        }
        // 4. A certificate for another lock of the site.
        let otherDevice = try P256.PrivateKey()
        let otherCert = try issuer.certify(lockID: "back-door", deviceKey: otherDevice.publicKey, issuedAt: t0 - 60, expires: t0 + 600)
        var h = try TapLockIdentity(lockID: "main-entrance", deviceKey: otherDevice, certificate: otherCert.bytes, verifier: lock.verifier)
            .startSession(phoneHello: opening.phoneHello, now: t0).hello
        h.signature = try ECDSA.sign(h.toBeSigned(siteID: site, phoneHello: opening.hello), with: otherDevice)
        XCTAssertThrowsError(try present(h.encoded())) {
            guard case .untrustedLock = $0 as? TapPhoneError else { return XCTFail("\($0)") }
        }
        // 5. Garbage.
        XCTAssertThrowsError(try present([0xff, 0x00]))
    }

    /// v2: the reader signs both ephemeral keys, the transaction id, its lock id and the site. A
    /// genuine reader hello recorded from another tap (answering another phone hello), or one signed
    /// for another site, is worthless.
    func testAReaderHelloAnswersOnlyItsPhoneHello() throws {
        let p = phone(try credential())
        let (mine, _) = try open(p)
        let (_, recorded) = try open(p)
        XCTAssertThrowsError(try mine.present(readerHello: recorded.helloBytes, action: .open, at: t0)) {
            XCTAssertEqual($0 as? TapPhoneError, .badHelloSignature, "a hello answering another phone hello")
        }
        // The same ephemeral key with another transaction id: still another tap.
        let sameKey = PhoneHello(phoneEphemeralKey: mine.hello.phoneEphemeralKey, transactionID: [UInt8](repeating: 7, count: 16))
        let other = try lock.startSession(phoneHello: sameKey.encoded(), now: t0)
        XCTAssertThrowsError(try mine.present(readerHello: other.helloBytes, action: .open, at: t0)) {
            XCTAssertEqual($0 as? TapPhoneError, .badHelloSignature, "a hello for another transaction id")
        }
        // Signed for another site (a lock of another site whose issuer the phone happens to trust too).
        let (opening, session) = try open(p)
        var hello = session.hello
        hello.signature = try ECDSA.sign(hello.toBeSigned(siteID: "elsewhere", phoneHello: opening.hello), with: lock.deviceKey)
        XCTAssertThrowsError(try opening.present(readerHello: hello.encoded(), action: .open, at: t0)) {
            XCTAssertEqual($0 as? TapPhoneError, .badHelloSignature, "a hello signed for another site")
        }
    }

    /// v2: a conformant phone refuses a lock whose clock is more than 60 s off its own, and a lock
    /// outside its credential's `aud` — after the hello's signature, before anything is sealed.
    func testPhoneChecksLockTimeAndAudienceBeforeRevealingAnything() throws {
        let p = phone(try credential(locks: ["main-entrance"]))
        for (skew, ok) in [(60.0, true), (-60, true), (61, false), (-61, false), (86_400, false)] {
            let (opening, session) = try open(p, at: t0 + skew)
            if ok {
                XCTAssertNoThrow(try opening.present(readerHello: session.helloBytes, action: .open, at: t0), "\(skew) s")
            } else {
                XCTAssertThrowsError(try opening.present(readerHello: session.helloBytes, action: .open, at: t0), "\(skew) s") {
                    XCTAssertEqual($0 as? TapPhoneError, .lockClockSkewed(lockTime: UInt64(t0.timeIntervalSince1970 + skew)))
                    XCTAssertEqual(($0 as? TapPhoneError)?.code, "lock_clock_skewed")
                }
                let lenient = try p.nonConformant([.ignoresLockTime]).open()
                let answer = try lock.startSession(phoneHello: lenient.phoneHello, now: t0 + skew)
                XCTAssertNoThrow(try lenient.present(readerHello: answer.helloBytes, action: .open, at: t0), "non-conformant: \(skew) s")
            }
        }
        // A genuine, certified lock of the site that the credential does not name.
        let device = try P256.PrivateKey()
        let cert = try issuer.certify(lockID: "bike-room", deviceKey: device.publicKey, issuedAt: t0 - 60, expires: t0 + 600)
        let bikeRoom = TapLockIdentity(lockID: "bike-room", deviceKey: device, certificate: cert.bytes,
                                       verifier: Verifier(siteID: site, lockID: "bike-room", issuers: TrustedIssuers([issuerKey.publicKey])))
        let (opening, session) = try open(p, on: bikeRoom)
        XCTAssertThrowsError(try opening.present(readerHello: session.helloBytes, action: .open, at: t0)) {
            XCTAssertEqual($0 as? TapPhoneError, .lockNotInCredential("bike-room"))
            XCTAssertEqual(($0 as? TapPhoneError)?.code, "lock_not_in_credential")
        }
        // A phone that cannot read its own credential has a key for no lock.
        let junk = TapPhone(credential: [0xa0], holderKey: holder, siteID: site, trustedIssuers: TrustedIssuers([issuerKey.publicKey]))
        let (o2, s2) = try open(junk)
        XCTAssertThrowsError(try o2.present(readerHello: s2.helloBytes, action: .open, at: t0)) {
            XCTAssertEqual($0 as? TapPhoneError, .lockNotInCredential("main-entrance"))
        }
        // Non-conformant (tests only): it presents, and the lock judges.
        let (o3, s3) = try open(p.nonConformant(), on: bikeRoom)
        let pending = try o3.present(readerHello: s3.helloBytes, action: .open, at: t0)
        XCTAssertEqual(s3.evaluate(pending.presentation, now: t0, revocations: revocations).denial, .credential(.wrongLock))
    }

    /// v2 messages from a version 1 phone: its presentation (or a phone hello claiming version 1) is
    /// `protocol_version_unsupported`, not a malformed message.
    func testVersion1MessagesAreRefusedAsSuch() throws {
        let key = try P256.PrivateKey().publicKey.uncompressed
        let v1Hello = CBOR.map([1: .int(1), 2: .bytes(key), 3: .bytes([UInt8](repeating: 1, count: 16))]).encoded()
        XCTAssertThrowsError(try PhoneHello(decoding: v1Hello)) { XCTAssertEqual($0 as? TapMessageError, .unsupportedVersion(1)) }
        XCTAssertThrowsError(try lock.startSession(phoneHello: v1Hello, now: t0)) { XCTAssertEqual($0 as? TapMessageError, .unsupportedVersion(1)) }
        let (_, session) = try open(phone(try credential()))
        let v1Presentation = CBOR.map([1: .int(1), 2: .bytes(key), 3: .bytes([1, 2, 3])]).encoded()
        XCTAssertEqual(session.evaluate(v1Presentation, now: t0, revocations: revocations).denial, .protocolVersionUnsupported)
        XCTAssertEqual(TapDenial.protocolVersionUnsupported.code, "protocol_version_unsupported")
        XCTAssertEqual(TapProtocol.claimedVersion(v1Presentation), 1)
    }

    /// Issue 14 item 7: the phone's ephemeral key must be an uncompressed point on P-256 with both
    /// coordinates below p. Each bad form is refused at the phone hello, before the lock signs.
    func testPhoneHelloEphemeralKeysThatAreNotPointsAreRefused() throws {
        let p = "ffffffff00000001000000000000000000000000ffffffffffffffffffffffff"
        let good = try P256.PrivateKey().publicKey.uncompressed
        let x = Hex.encode(Array(good[1..<33])), y = Hex.encode(Array(good[33..<65]))
        let bad: [(String, [UInt8])] = [
            ("x = p", Hex.decode("04" + p + y)!),
            ("x > p (all ones)", Hex.decode("04" + "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff" + y)!),
            ("y = p", Hex.decode("04" + x + p)!),
            ("(0, 0)", [0x04] + [UInt8](repeating: 0, count: 64)),
            ("infinity 00", [0x00]),
            ("infinity 00, padded", [0x00] + [UInt8](repeating: 0, count: 64)),
            ("compressed 02", Hex.decode("02" + x)!),
            ("compressed 02, padded", Hex.decode("02" + x + y)!),
            ("hybrid 06", Hex.decode("06" + x + y)!),
            ("off the curve", Hex.decode("04" + x + String(y.dropLast(2)) + (y.hasSuffix("00") ? "01" : "00"))!),
        ]
        for (name, key) in bad {
            let hello = CBOR.map([1: .int(2), 2: .bytes(key), 3: .bytes([UInt8](repeating: 1, count: 16))]).encoded()
            XCTAssertThrowsError(try PhoneHello(decoding: hello), name) { guard case .malformed = $0 as? TapMessageError else { return XCTFail("\(name): \($0)") } }
            XCTAssertThrowsError(try lock.startSession(phoneHello: hello, now: t0), name)
        }
        let fine = CBOR.map([1: .int(2), 2: .bytes(good), 3: .bytes([UInt8](repeating: 1, count: 16))]).encoded()
        XCTAssertNoThrow(try lock.startSession(phoneHello: fine, now: t0))
    }

    /// Both sides derive the same keys, and the exporter secret (reserved for a FAST repeat tap)
    /// is fresh per tap and never one of the keys the tap itself uses.
    func testBothSidesDeriveTheSameKeysAndAFreshExporterSecret() throws {
        let p = phone(try credential())
        var exporters: Set<[UInt8]> = []
        for _ in 0..<3 {
            let (opening, session) = try open(p)
            let pending = try opening.present(readerHello: session.helloBytes, action: .open, at: t0)
            let a = pending.keySchedule, b = session.keySchedule
            XCTAssertEqual(a.transcriptHash, b.transcriptHash)
            XCTAssertEqual(a.exporterSecret, b.exporterSecret)
            XCTAssertEqual(a.resultKey, b.resultKey)
            XCTAssertEqual(a.exporterSecret.count, 32)
            XCTAssertFalse([a.presentationKey, a.resultKey].contains { a.exporterSecret.starts(with: $0) })
            exporters.insert(a.exporterSecret)
        }
        XCTAssertEqual(exporters.count, 3)
    }

    func testForgedResultIsRejectedByPhone() throws {
        let p = phone(try credential())
        let (opening, session) = try open(p)
        let pending = try opening.present(readerHello: session.helloBytes, action: .open, at: t0)
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
        let (opening, s) = try open(phone(try credential()))
        XCTAssertEqual(try ReaderHello(decoding: s.helloBytes), s.hello)
        XCTAssertEqual(try PhoneHello(decoding: opening.phoneHello), opening.hello)
        XCTAssertEqual(opening.phoneHello.count, 89, "a0 map(3), version, 65-byte key, 16-byte transaction id")
        XCTAssertLessThanOrEqual(s.helloBytes.count, 512, "the hello must fit one ATT attribute value")
        let r = TapResultMessage(granted: false, reason: "revoked", openMilliseconds: 0, mac: [UInt8](repeating: 1, count: 16))
        XCTAssertEqual(try TapResultMessage(decoding: r.encoded()), r)
        XCTAssertThrowsError(try ReaderHello(decoding: CBOR.map([1: .int(2)]).encoded()))
        XCTAssertThrowsError(try ReaderHello(decoding: CBOR.map([1: .int(3)]).encoded())) { XCTAssertEqual($0 as? TapMessageError, .unsupportedVersion(3)) }
    }
}
