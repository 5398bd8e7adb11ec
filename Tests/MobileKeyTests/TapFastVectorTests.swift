import Foundation
import KeywayCrypto
import XCTest
@testable @_spi(TapVectors) import MobileKey

/// The FAST repeat tap that follows the recorded full tap of tap-v2.json, in
/// Fixtures/vectors/tap-fast.json: the FAST key and its id from that tap's exporter secret, one request
/// (counter 1, 30 s after the full tap), the tap's key and the granted result. Everything is
/// deterministic (no signature). Checked here — the lock replays the full tap, then the request — and
/// independently by Tests/peers/test_tap_vectors.py. Regenerate with
/// `KEYWAY_REGENERATE_VECTORS=1 swift test --filter TapFastVectorTests/testRegenerate`.
final class TapFastVectorTests: XCTestCase {
    static var file: URL { CredentialVectorTests.vectorsDir.appendingPathComponent("tap-fast.json") }
    static let fastTime = TapVectorTests.t + 30

    struct Recorded {
        let identity: TapLockIdentity
        let phone: TapPhone
        let credential: [UInt8]
        let exporterSecret: [UInt8]
    }

    /// The full tap of tap-v2.json, replayed on both sides: the lock accepts it (and stores its FAST key).
    func replayFullTap() throws -> Recorded {
        let v2 = try JSONSerialization.jsonObject(with: Data(contentsOf: TapVectorTests.file)) as? [String: Any] ?? [:]
        func hex(_ k: String) throws -> [UInt8] { try XCTUnwrap((v2[k] as? String).flatMap(Hex.decode), k) }
        let f = try TapVectorTests.Fixture()
        let credential = try hex("credential")
        let identity = f.identity(certificate: try hex("lock_certificate"))
        let phone = TapPhone(credential: credential, holderKey: f.holder, siteID: TapVectorTests.site, trustedIssuers: f.issuers,
                             fastKeys: TapFastKeyring())
        let opening = phone.open(ephemeral: f.phoneEphemeral, transactionID: TapVectorTests.transactionID)
        let recorded = try ReaderHello(decoding: try hex("reader_hello"))
        let session = try identity.startSession(phoneHello: opening.phoneHello, now: TapVectorTests.t, ephemeral: f.lockEphemeral,
                                                nonce: TapVectorTests.nonce, signature: recorded.signature)
        guard case .accepted = session.evaluate(try hex("presentation"), now: TapVectorTests.t, revocations: .empty(siteID: TapVectorTests.site)) else {
            throw XCTSkip("the recorded full tap was not accepted")
        }
        let pending = try opening.present(readerHello: session.helloBytes, action: .open, at: TapVectorTests.t)
        phone.rememberFastKey(after: pending, result: try pending.result(try hex("result")))
        return Recorded(identity: identity, phone: phone, credential: credential, exporterSecret: try hex("exporter_secret"))
    }

    func testTheRecordedFastTapReplaysOnBothSides() throws {
        let doc = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: Self.file)) as? [String: Any])
        func hex(_ k: String) throws -> [UInt8] { try XCTUnwrap((doc[k] as? String).flatMap(Hex.decode), k) }
        let r = try replayFullTap()
        XCTAssertEqual(try hex("exporter_secret"), r.exporterSecret)
        let cti = try Credential.inspect(r.credential).credential.keyID
        XCTAssertEqual(cti, try hex("credential_key_id"))
        let key = try TapFastKey(exporterSecret: r.exporterSecret, siteID: TapVectorTests.site, lockID: TapVectorTests.lockID,
                                 credential: r.credential, credentialKeyID: cti)
        XCTAssertEqual(key.keyID, try hex("fast_key_id"))
        XCTAssertEqual(key.key, try hex("fast_key"))
        XCTAssertEqual(r.phone.fastKeys?.entry(for: TapVectorTests.lockID)?.key, key, "the phone made the same key")
        XCTAssertEqual(CBOR.array([.text(TapVectorTests.site), .text(TapVectorTests.lockID), .bytes(SHA256.hash(r.credential))]).encoded(),
                       try hex("fast_key_binding"))

        // Phone: its first FAST request is the recorded one.
        guard case .request(let fast) = try r.phone.fastStart(lockID: TapVectorTests.lockID, action: .open, at: Self.fastTime) else {
            return XCTFail("no FAST request")
        }
        XCTAssertEqual(fast.request, try hex("fast_request"))
        XCTAssertEqual(try FastRequest(decoding: fast.request).macInput, try hex("fast_request_mac_input"))
        XCTAssertEqual(fast.sessionKey, try hex("session_key"))
        // Lock: it grants the request, with the recorded result; the phone accepts that result.
        guard case .evaluated(.accepted(let c, .open), let resultKey?) = r.identity.evaluateFast(
            fast.request, now: Self.fastTime, revocations: .empty(siteID: TapVectorTests.site)) else { return XCTFail("not accepted") }
        XCTAssertEqual(c.userID, doc["user"] as? String)
        XCTAssertEqual(resultKey, try hex("session_key"))
        let result = TapLockIdentity.fastResultMessage(granted: true, reason: nil, openMilliseconds: 7000, resultKey: resultKey)
        XCTAssertEqual(result, try hex("fast_result"))
        XCTAssertTrue(try fast.result(result).granted)
    }

    /// KEYWAY_REGENERATE_VECTORS=1.
    func testRegenerate() throws {
        guard ProcessInfo.processInfo.environment["KEYWAY_REGENERATE_VECTORS"] == "1" else {
            throw XCTSkip("set KEYWAY_REGENERATE_VECTORS=1 to rewrite Fixtures/vectors/tap-fast.json")
        }
        let r = try replayFullTap()
        let cti = try Credential.inspect(r.credential).credential.keyID
        let key = try TapFastKey(exporterSecret: r.exporterSecret, siteID: TapVectorTests.site, lockID: TapVectorTests.lockID,
                                 credential: r.credential, credentialKeyID: cti)
        let fast = try r.phone.fastRequest(key, lockID: TapVectorTests.lockID, counter: 1, action: .open, at: Self.fastTime)
        let result = TapLockIdentity.fastResultMessage(granted: true, reason: nil, openMilliseconds: 7000, resultKey: fast.sessionKey)
        let h = Hex.encode
        let root: [String: Any] = [
            "format": "keyway-tap-fast-vectors/2",
            "note": "The FAST repeat tap after the full tap of tap-v2.json (docs/PROTOCOL.md, FAST repeat tap). Test keys only.",
            "protocol_version": Int(TapProtocol.version),
            "site": TapVectorTests.site, "lock": TapVectorTests.lockID, "user": "member-1", "action": 0,
            "time": Int64(Self.fastTime.timeIntervalSince1970), "counter": 1,
            "exporter_secret": h(r.exporterSecret), "credential_key_id": h(cti),
            "fast_key_binding": h(CBOR.array([.text(TapVectorTests.site), .text(TapVectorTests.lockID), .bytes(SHA256.hash(r.credential))]).encoded()),
            "fast_key_id": h(key.keyID), "fast_key": h(key.key),
            "fast_request_mac_input": h(try FastRequest(decoding: fast.request).macInput),
            "fast_request": h(fast.request), "session_key": h(fast.sessionKey), "fast_result": h(result),
        ]
        let json = try JSONSerialization.data(withJSONObject: root, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        try (json + Data("\n".utf8)).write(to: Self.file)
    }
}
