import Foundation
import KeywayCrypto
import XCTest
@testable @_spi(TapVectors) import MobileKey

/// One whole tap of protocol v2 with fixed randomness, in Fixtures/vectors/tap-v2.json: every
/// message, the signed bytes, the ECDH secret, the transcript hash and each derived key. Checked
/// here (the lock and the phone both run on the recorded bytes) and, independently, by
/// Tests/peers/test_tap_vectors.py (cbor2 + cryptography, written from docs/PROTOCOL.md).
/// Regenerate with `KEYWAY_REGENERATE_VECTORS=1 swift test --filter TapVectorTests/testRegenerate`
/// — only when the protocol changes on purpose (signatures are randomised ECDSA, so those bytes
/// change; everything derived from the fixed keys does not).
final class TapVectorTests: XCTestCase {
    static var file: URL { CredentialVectorTests.vectorsDir.appendingPathComponent("tap-v2.json") }
    static let site = "site-ams-1", lockID = "front-door"
    /// Monday 2026-01-05 10:00:00 UTC, the lock's time and the phone's.
    static let t = Date(timeIntervalSince1970: 1_767_607_200)
    static let transactionID = Array<UInt8>(0xA0...0xAF)
    static let nonce = Array<UInt8>(0xB0...0xBF)

    struct Fixture {
        let issuer: P256.PrivateKey, device: P256.PrivateKey, holder: P256.PrivateKey
        let phoneEphemeral: P256.PrivateKey, lockEphemeral: P256.PrivateKey
        var issuers: TrustedIssuers { TrustedIssuers([issuer.publicKey]) }
        init() throws {
            issuer = try CredentialVectorTests.key("issuer"); device = try CredentialVectorTests.key("lock-device")
            holder = try CredentialVectorTests.key("holder")
            phoneEphemeral = try CredentialVectorTests.key("phone-ephemeral"); lockEphemeral = try CredentialVectorTests.key("lock-ephemeral")
        }
        func identity(certificate: [UInt8]) -> TapLockIdentity {
            TapLockIdentity(lockID: TapVectorTests.lockID, deviceKey: device, certificate: certificate,
                            verifier: Verifier(siteID: TapVectorTests.site, lockID: TapVectorTests.lockID, issuers: issuers))
        }
        func phone(credential: [UInt8]) -> TapPhone {
            TapPhone(credential: credential, holderKey: holder, siteID: TapVectorTests.site, trustedIssuers: issuers)
        }
    }

    func load() throws -> [String: Any] {
        try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: Self.file)) as? [String: Any])
    }
    func hex(_ doc: [String: Any], _ key: String, file: StaticString = #filePath, line: UInt = #line) throws -> [UInt8] {
        try XCTUnwrap((doc[key] as? String).flatMap(Hex.decode), "\(key)", file: file, line: line)
    }

    /// The lock and the phone, each with its recorded randomness, reproduce every recorded byte that
    /// does not depend on a signature's randomness, accept the signed ones, and the tap is granted.
    func testTheRecordedTapReplaysOnBothSides() throws {
        let doc = try load(), f = try Fixture()
        XCTAssertEqual(doc["protocol_version"] as? Int, Int(TapProtocol.version))
        let credential = try hex(doc, "credential"), certificate = try hex(doc, "lock_certificate")
        let phone = f.phone(credential: credential)

        // Phone: its hello is exactly the recorded bytes.
        let opening = phone.open(ephemeral: f.phoneEphemeral, transactionID: Self.transactionID)
        XCTAssertEqual(opening.phoneHello, try hex(doc, "phone_hello"))
        // Lock: answering that hello with the recorded ephemeral key and nonce gives the same reader
        // hello but for the signature; the recorded signature verifies over the recorded TBS.
        let readerHello = try hex(doc, "reader_hello")
        let recorded = try ReaderHello(decoding: readerHello)
        let fresh = try f.identity(certificate: certificate).startSession(phoneHello: opening.phoneHello, now: Self.t,
                                                                           ephemeral: f.lockEphemeral, nonce: Self.nonce)
        var mine = fresh.hello
        mine.signature = recorded.signature
        XCTAssertEqual(mine.encoded(), readerHello, "the reader hello, signature aside")
        XCTAssertTrue(ECDSA.verify(fresh.hello.signature, of: try hex(doc, "reader_hello_tbs"), by: f.device.publicKey))
        // The lock's session for the recorded exchange (its signature given, as ECDSA is randomised).
        let session = try f.identity(certificate: certificate).startSession(phoneHello: opening.phoneHello, now: Self.t,
                                                                             ephemeral: f.lockEphemeral, nonce: Self.nonce,
                                                                             signature: recorded.signature)
        XCTAssertEqual(session.helloBytes, readerHello)
        XCTAssertEqual(recorded.toBeSigned(siteID: Self.site, phoneHello: opening.hello), try hex(doc, "reader_hello_tbs"))
        XCTAssertTrue(ECDSA.verify(recorded.signature, of: try hex(doc, "reader_hello_tbs"), by: f.device.publicKey))

        // Key schedule, from the recorded hellos.
        let keys = try TapKeySchedule(sharedSecret: try ECDH.sharedSecret(f.phoneEphemeral, f.lockEphemeral.publicKey),
                                      phoneHelloBytes: opening.phoneHello, readerHelloBytes: readerHello,
                                      transactionID: Self.transactionID, nonce: Self.nonce)
        XCTAssertEqual(try ECDH.sharedSecret(f.lockEphemeral, f.phoneEphemeral.publicKey), try hex(doc, "ecdh_secret"))
        XCTAssertEqual(keys.transcriptHash, try hex(doc, "transcript_hash"))
        XCTAssertEqual(keys.presentationKey, try hex(doc, "presentation_key"))
        XCTAssertEqual(keys.presentationNonce, try hex(doc, "presentation_nonce"))
        XCTAssertEqual(keys.resultKey, try hex(doc, "result_key"))
        XCTAssertEqual(keys.exporterSecret, try hex(doc, "exporter_secret"))
        XCTAssertEqual(keys.proofInput(.open), try hex(doc, "proof_input"))

        // The recorded presentation opens to the recorded payload, whose proof verifies.
        let presentation = try hex(doc, "presentation")
        let sealed = try Presentation(decoding: presentation).sealed
        let payload = try AESGCM.open(sealed, key: keys.presentationKey, nonce: keys.presentationNonce, associatedData: keys.transcriptHash)
        XCTAssertEqual(payload, try hex(doc, "payload"))
        let decoded = try PresentationPayload(decoding: payload)
        XCTAssertEqual(decoded.credential, credential)
        XCTAssertTrue(ECDSA.verify(decoded.proof, of: keys.proofInput(.open), by: f.holder.publicKey))

        // The lock grants it, and its result is the recorded one; the phone accepts that result.
        guard case .accepted(let c, .open) = session.evaluate(presentation, now: Self.t, revocations: .empty(siteID: Self.site)) else {
            return XCTFail("the recorded presentation was not accepted: \(session.evaluate(presentation, now: Self.t, revocations: .empty(siteID: Self.site)))")
        }
        XCTAssertEqual(c.userID, doc["user"] as? String)
        let result = session.resultMessage(granted: true, reason: nil, openMilliseconds: 7000)
        XCTAssertEqual(result, try hex(doc, "result"))
        let pending = try opening.present(readerHello: readerHello, action: .open, at: Self.t)
        XCTAssertEqual(pending.keySchedule.exporterSecret, keys.exporterSecret)
        XCTAssertEqual(try pending.result(result).granted, true)
    }

    /// KEYWAY_REGENERATE_VECTORS=1.
    func testRegenerate() throws {
        guard ProcessInfo.processInfo.environment["KEYWAY_REGENERATE_VECTORS"] == "1" else {
            throw XCTSkip("set KEYWAY_REGENERATE_VECTORS=1 to rewrite Fixtures/vectors/tap-v2.json")
        }
        let f = try Fixture()
        let issuer = CredentialIssuer(siteID: Self.site, key: f.issuer)
        let cert = try issuer.certify(lockID: Self.lockID, deviceKey: f.device.publicKey, issuedAt: Self.t - 86_400, expires: Self.t + 5 * 365 * 86_400)
        let credential = try issuer.issue(CredentialRequest(userID: "member-1", lockIDs: [Self.lockID], holderKey: f.holder.publicKey,
                                                            validity: ValidityWindow(notBefore: Self.t - 3600, expires: Self.t + 3600)),
                                          issuedAt: Self.t - 7200).bytes
        let opening = f.phone(credential: credential).open(ephemeral: f.phoneEphemeral, transactionID: Self.transactionID)
        let session = try f.identity(certificate: cert.bytes).startSession(phoneHello: opening.phoneHello, now: Self.t,
                                                                            ephemeral: f.lockEphemeral, nonce: Self.nonce)
        let pending = try opening.present(readerHello: session.helloBytes, action: .open, at: Self.t)
        let keys = pending.keySchedule
        let payload = try AESGCM.open(try Presentation(decoding: pending.presentation).sealed, key: keys.presentationKey,
                                      nonce: keys.presentationNonce, associatedData: keys.transcriptHash)
        guard case .accepted = session.evaluate(pending.presentation, now: Self.t, revocations: .empty(siteID: Self.site)) else {
            return XCTFail("not granted")
        }
        let result = session.resultMessage(granted: true, reason: nil, openMilliseconds: 7000)
        let h = Hex.encode
        let root: [String: Any] = [
            "format": "keyway-tap-vectors/2",
            "note": "One Keyway Mobile Key tap, protocol v2 (docs/PROTOCOL.md, Tap protocol). Keys in this directory are TEST KEYS ONLY: issuer, lock-device, holder, phone-ephemeral, lock-ephemeral.",
            "protocol_version": Int(TapProtocol.version),
            "site": Self.site, "lock": Self.lockID, "user": "member-1", "action": 0,
            "time": Int64(Self.t.timeIntervalSince1970),
            "transaction_id": h(Self.transactionID), "nonce": h(Self.nonce),
            "phone_ephemeral_public": h(f.phoneEphemeral.publicKey.uncompressed),
            "lock_ephemeral_public": h(f.lockEphemeral.publicKey.uncompressed),
            "lock_certificate": h(cert.bytes), "credential": h(credential),
            "phone_hello": h(opening.phoneHello),
            "reader_hello_tbs": h(session.hello.toBeSigned(siteID: Self.site, phoneHello: opening.hello)),
            "reader_hello": h(session.helloBytes),
            "ecdh_secret": h(try ECDH.sharedSecret(f.phoneEphemeral, f.lockEphemeral.publicKey)),
            "transcript_hash": h(keys.transcriptHash),
            "presentation_key": h(keys.presentationKey), "presentation_nonce": h(keys.presentationNonce),
            "result_key": h(keys.resultKey), "exporter_secret": h(keys.exporterSecret),
            "proof_input": h(keys.proofInput(.open)),
            "payload": h(payload), "presentation": h(pending.presentation),
            "result": h(result),
        ]
        let json = try JSONSerialization.data(withJSONObject: root, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        try (json + Data("\n".utf8)).write(to: Self.file)
    }
}
