import BLE
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import XCTest
@testable import Emulator
import Events
import Hardware
import KeywayCrypto
@testable @_spi(NonConformantPhone) import MobileKey

/// The attack suite of issue 8 (docs/SECURITY.md names each test as the proof of a defence).
///
/// Every attack runs end to end through the emulator: a phone or an attacker talks ATT/GATT over the
/// loopback radio to the lock's GATT server (or drives the emulator's operations for tags and PINs),
/// and each test asserts both the exact denial reason the lock gives and that the journal holds
/// exactly one event recording that decision with that reason. Time is simulated.
///
/// Site: Fixtures/sites/coworking.yaml — main-entrance is reached by iq-lobby; storage-basement is out
/// of every IQ's reach (an offline lock).
final class AttackSuiteTests: XCTestCase {
    var bench: AttackBench!
    let entrance = "main-entrance"

    override func setUp() async throws {
        bench = try await AttackBench.make()
    }

    override func tearDown() async throws {
        await bench?.shutdown()
        bench = nil
    }

    /// u-ada's built-in phone with a key for `locks`.
    func adaKey(_ locks: [String]? = nil, extra: [String: Any] = [:]) async throws -> IssuedKey {
        var body: [String: Any] = ["user": "u-ada", "locks": locks ?? [entrance]]
        for (k, v) in extra { body[k] = v }
        return try await bench.issue(body)
    }

    func connect(_ lockID: String? = nil) async throws -> RawGATTPhone {
        let phone = try await RawGATTPhone.connect(to: try bench.gatt(lockID ?? entrance))
        addTeardownBlock { phone.close() }
        return phone
    }

    func rfc3339(_ d: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        return f.string(from: d)
    }

    // MARK: - Replay and nonces

    /// A presentation sniffed from a granted tap, replayed on another connection (after reading that
    /// connection's own hello) and on the victim's connection after a fresh hello.
    func testReplayedPresentationIsDeniedAsReplayed() async throws {
        let phone = try bench.phone(try await adaKey())
        let victim = try await connect()
        var mark = try await bench.mark()
        let pending = try await victim.pending(phone, at: bench.now)
        let granted = try pending.result(try await victim.present(pending.presentation))
        XCTAssertTrue(granted.granted)
        try await bench.expectOneDecision(at: entrance, after: mark, granted: true, reason: nil, decision: victim.lastDecision)

        let attacker = try await connect()
        try await attacker.hello()
        mark = try await bench.mark()
        let replay = try TapResultMessage(decoding: try await attacker.present(pending.presentation))
        XCTAssertFalse(replay.granted)
        XCTAssertEqual(replay.reason, "replayed")
        XCTAssertNil(replay.mac, "nothing was decrypted, so the lock has no key to authenticate with")
        let e = try await bench.expectOneDecision(at: entrance, after: mark, reason: "replayed", decision: attacker.lastDecision)
        XCTAssertNil(e.event.user, "a replay names nobody")

        try await victim.hello()
        mark = try await bench.mark()
        let again = try TapResultMessage(decoding: try await victim.present(pending.presentation))
        XCTAssertEqual(again.reason, "replayed")
        try await bench.expectOneDecision(at: entrance, after: mark, reason: "replayed", decision: victim.lastDecision)
    }

    /// A presentation made for connection A's hello (nonce and ephemeral key), written on connection B
    /// (a sniffer replaying the phone's clear ephemeral key with anything on its own connection): `tampered`
    /// there, and nothing is recorded, so the genuine presentation on A is still granted (issue 14, finding 3).
    func testPresentationFromAnotherConnectionsNonceIsTampered() async throws {
        let phone = try bench.phone(try await adaKey())
        let a = try await connect(), b = try await connect()
        let pending = try await a.pending(phone, at: bench.now)
        try await b.hello()
        var mark = try await bench.mark()
        let onB = try TapResultMessage(decoding: try await b.present(pending.presentation))
        XCTAssertEqual(onB.reason, "tampered")
        XCTAssertNil(onB.mac)
        try await bench.expectOneDecision(at: entrance, after: mark, reason: "tampered", decision: b.lastDecision)
        // Only what decrypts is remembered: on its own connection the genuine presentation still opens.
        mark = try await bench.mark()
        let onA = try pending.result(try await a.present(pending.presentation))
        XCTAssertTrue(onA.granted, "\(onA)")
        try await bench.expectOneDecision(at: entrance, after: mark, granted: true, reason: nil, decision: a.lastDecision)
        // And once it decrypted, it is spent: on a third connection it is a replay.
        let c = try await connect()
        try await c.hello()
        mark = try await bench.mark()
        let onC = try TapResultMessage(decoding: try await c.present(pending.presentation))
        XCTAssertEqual(onC.reason, "replayed")
        try await bench.expectOneDecision(at: entrance, after: mark, reason: "replayed", decision: c.lastDecision)
    }

    /// A hello answered after its 30 s: `nonce_expired`. The same hello answered again (a new
    /// presentation, new phone ephemeral key): `nonce_unknown` — a nonce answers one presentation.
    func testNonceReuseAfterExpiry() async throws {
        let phone = try bench.phone(try await adaKey())
        let c = try await connect()
        let (opening, hello) = try await c.open(phone)
        await bench.clock.advance(by: TapProtocol.nonceLifetime + 1)
        var mark = try await bench.mark()
        let late = try opening.present(readerHello: hello, action: .open, at: bench.now)
        let expired = try TapResultMessage(decoding: try await c.present(late.presentation))
        XCTAssertEqual(expired.reason, "nonce_expired")
        try await bench.expectOneDecision(at: entrance, after: mark, reason: "nonce_expired", decision: c.lastDecision)

        mark = try await bench.mark()
        let reuse = try opening.present(readerHello: hello, action: .open, at: bench.now)
        let unknown = try TapResultMessage(decoding: try await c.present(reuse.presentation))
        XCTAssertEqual(unknown.reason, "nonce_unknown")
        try await bench.expectOneDecision(at: entrance, after: mark, reason: "nonce_unknown", decision: c.lastDecision)
    }

    /// U1: a presentation on a connection that never exchanged hellos, and a second presentation on a
    /// connection whose hello was already answered.
    func testPresentationWithoutHelloOrOnAUsedNonceIsNonceUnknown() async throws {
        let phone = try bench.phone(try await adaKey())
        let other = try await connect()
        let pending = try await other.pending(phone, at: bench.now)
        let noHello = try await connect()
        var mark = try await bench.mark()
        let r1 = try TapResultMessage(decoding: try await noHello.present(pending.presentation))
        XCTAssertEqual(r1.reason, "nonce_unknown")
        try await bench.expectOneDecision(at: entrance, after: mark, reason: "nonce_unknown", decision: noHello.lastDecision)

        let c = try await connect()
        let (opening, hello) = try await c.open(phone)
        let first = try opening.present(readerHello: hello, action: .open, at: bench.now)
        let firstResult = try first.result(try await c.present(first.presentation))
        XCTAssertTrue(firstResult.granted)
        mark = try await bench.mark()
        // The connection's session ended with the first presentation: no nonce to answer.
        let second = try opening.present(readerHello: hello, action: .open, at: bench.now)
        let r2 = try TapResultMessage(decoding: try await c.present(second.presentation))
        XCTAssertEqual(r2.reason, "nonce_unknown")
        try await bench.expectOneDecision(at: entrance, after: mark, reason: "nonce_unknown", decision: c.lastDecision)
    }

    // MARK: - Tampering

    /// One flipped bit in each field of the outer presentation: CBOR structure and version (02 → 03:
    /// another protocol version), the sealed box's length, ciphertext and GCM tag. (The phone's
    /// ephemeral key travels in its hello in v2: see `testPhoneHelloKeysThatAreNotPointsAreRefusedOverGATT`.)
    func testFlippedBitsInEachOuterFieldAreDenied() async throws {
        let phone = try bench.phone(try await adaKey())
        // Field offsets from one presentation (every presentation has the same layout).
        let probe = try await connect().pending(phone, at: bench.now).presentation
        let outer = try Presentation(decoding: probe)
        let sealed = probe.count - outer.sealed.count
        let cases: [(String, Int, String)] = [
            ("map header", 0, "malformed_presentation"),
            ("version", 2, "protocol_version_unsupported"),
            ("sealed length", sealed - 1, "malformed_presentation"),
            ("ciphertext start", sealed, "tampered"),
            ("ciphertext middle", sealed + outer.sealed.count / 2, "tampered"),
            ("GCM tag", probe.count - 1, "tampered"),
        ]
        for (field, index, reason) in cases {
            let c = try await connect()
            let pending = try await c.pending(phone, at: bench.now)
            XCTAssertEqual(pending.presentation.count, probe.count)
            let mark = try await bench.mark()
            let r = try TapResultMessage(decoding: try await c.present(pending.presentation.flipping(at: index)))
            XCTAssertFalse(r.granted, field)
            XCTAssertEqual(r.reason, reason, field)
            let e = try await bench.expectOneDecision(at: entrance, after: mark, reason: reason, decision: c.lastDecision)
            XCTAssertNil(e.event.user, field)
        }
    }

    /// Flipped bits *inside* the sealed payload, by a phone that holds its own session keys and seals
    /// whatever it likes: the credential (signature, claims, kid), the action (changed after the proof
    /// was made, or out of range), the proof, the payload's version.
    func testFlippedBitsInsideTheSealedPayloadAreDenied() async throws {
        let key = try await adaKey()
        let holder = try P256.PrivateKey(pem: try XCTUnwrap(key.holderPrivateKeyPEM))
        let cred = key.credential
        let cose = try COSESign1(decoding: cred)
        let claimsAt = try XCTUnwrap(cred.firstIndex(of: cose.payload))
        let kidAt = try XCTUnwrap(cred.firstIndex(of: try XCTUnwrap(cose.keyID)))
        func payload(_ credential: [UInt8], action: UInt64, proof: [UInt8], version: Int64 = 2) -> [UInt8] {
            CBOR.map([1: .int(version), 2: .bytes(credential), 3: .unsigned(action), 4: .bytes(proof)]).encoded()
        }

        struct Case { let name: String; let reason: String?; let user: String?; let build: (CraftedTap) throws -> [UInt8] }
        let cases: [Case] = [
            // Control: the crafting itself is right, so every denial below is due to its one change.
            Case(name: "untouched", reason: nil, user: "u-ada") { t in payload(cred, action: 0, proof: try t.proof(.open, holder: holder)) },
            Case(name: "credential signature", reason: "bad_signature", user: nil) { t in
                payload(cred.flipping(at: cred.count - 1), action: 0, proof: try t.proof(.open, holder: holder)) },
            Case(name: "credential claims", reason: "bad_signature", user: nil) { t in
                payload(cred.flipping(at: claimsAt + cose.payload.count / 2), action: 0, proof: try t.proof(.open, holder: holder)) },
            Case(name: "credential kid", reason: "unknown_issuer", user: nil) { t in
                payload(cred.flipping(at: kidAt), action: 0, proof: try t.proof(.open, holder: holder)) },
            // A failed proof names nobody: the credential may be a copy (issue 14, finding 1).
            Case(name: "action changed after the proof", reason: "proof_of_possession_failed", user: nil) { t in
                payload(cred, action: UInt64(TapAction.officeModeOn.rawValue), proof: try t.proof(.open, holder: holder)) },
            Case(name: "action out of range", reason: "malformed_presentation", user: nil) { t in
                payload(cred, action: 7, proof: try t.proof(.open, holder: holder)) },
            Case(name: "proof", reason: "proof_of_possession_failed", user: nil) { t in
                payload(cred, action: 0, proof: try t.proof(.open, holder: holder).flipping(bit: 3, at: 20)) },
            Case(name: "payload version", reason: "malformed_presentation", user: nil) { t in
                payload(cred, action: 0, proof: try t.proof(.open, holder: holder), version: 3) },
        ]
        for k in cases {
            let c = try await connect()
            let tap = try await CraftedTap.open(c)
            let mark = try await bench.mark()
            let r = try tap.authenticatedResult(try await c.present(try tap.seal(try k.build(tap))))
            XCTAssertEqual(r.granted, k.reason == nil, k.name)
            XCTAssertEqual(r.reason, k.reason, k.name)
            let e = try await bench.expectOneDecision(at: entrance, after: mark, granted: k.reason == nil, reason: k.reason,
                                                      decision: c.lastDecision)
            XCTAssertEqual(e.event.user, k.user, "\(k.name): only an authentic credential names its user")
            XCTAssertEqual(e.event.keyID, k.user == nil ? nil : key.keyID, k.name)
            if k.name == "action changed after the proof" { XCTAssertEqual(e.event.action, .officeModeOn) }
            if k.reason == nil {
                // Let the door relock before the next case.
                await bench.clock.advance(by: 6)
            }
        }
    }

    /// Truncated messages, and messages over the 4096-byte bound: as fragments (the ninth fragment
    /// overflows), as more than 16 fragments, and as one ATT value over 512 bytes (the ATT layer
    /// refuses that at Execute Write, before the lock sees anything). A phone keeps writing the rest
    /// of its message after the lock refused it: one refused message is still one event.
    func testTruncatedAndOversizedMessagesAreDenied() async throws {
        let phone = try bench.phone(try await adaKey())
        func attempt(_ name: String, _ message: [UInt8]? = nil, fragments: [[UInt8]]? = nil) async throws {
            let c = try await connect()
            let (opening, hello) = try await c.open(phone)
            let bytes = try message ?? opening.present(readerHello: hello, action: .open, at: bench.now).presentation
            let mark = try await bench.mark()
            for f in fragments ?? TapFragments.split(bytes) { try await c.writeFragment(f) }
            let r = try TapResultMessage(decoding: try await c.nextResult())
            XCTAssertEqual(r.reason, "malformed_presentation", name)
            try await Task.sleep(for: .milliseconds(5))   // let the notification pump catch up
            XCTAssertEqual(c.pendingResults, 0, "\(name): one result for one message")
            try await bench.expectOneDecision(at: entrance, after: mark, reason: "malformed_presentation", decision: c.lastDecision)
        }
        let c0 = try await connect()
        let genuine = try await c0.pending(phone, at: bench.now).presentation
        try await attempt("without its GCM tag", Array(genuine.dropLast(16)))
        try await attempt("cut inside the sealed box", Array(genuine.prefix(70)))
        try await attempt("empty message", [])
        try await attempt("one byte over the bound", [UInt8](repeating: 0x5A, count: TapProtocol.maxPresentationSize + 1))
        try await attempt("5000 bytes, every fragment written", [UInt8](repeating: 0x5A, count: 5000))
        try await attempt("18 fragments", fragments: (0..<18).map { [UInt8($0), $0 == 17 ? 1 : 0, 0x5A] })

        // One ATT value of 600 bytes by Prepare Write: refused by the ATT server at Execute Write.
        let c = try await connect()
        try await c.hello()
        let mark = try await bench.mark()
        let mtu = c.client.mtu
        var offset = 0
        while offset < 600 {
            let part = [UInt8](repeating: 0x5A, count: min(mtu - 5, 600 - offset))
            let rsp = try await c.client.rawRequest(ATTPrepareWriteRequest(handle: c.presentationHandle, offset: UInt16(offset), partValue: part).encode())
            XCTAssertEqual(rsp.first, ATTOpcode.prepareWriteResponse.rawValue)
            offset += part.count
        }
        let exec = try await c.client.rawRequest(ATTExecuteWriteRequest(flags: .write).encode())
        XCTAssertEqual(exec.first, ATTOpcode.errorResponse.rawValue)
        XCTAssertEqual(exec.last, ATTErrorCode.invalidAttributeValueLength.rawValue)
        let none = try await bench.decisions(after: mark, lock: entrance)
        XCTAssertEqual(none.count, 0, "the lock never received a presentation, so there is no tap to record")
        XCTAssertNil(c.lastDecision)
    }

    /// U2: broken fragmenting (a first fragment that is not fragment 0, a write too short to be a
    /// fragment) is a failed tap recorded as `malformed_presentation`, once.
    func testBrokenFragmentsAreRecordedAsMalformedPresentation() async throws {
        for (name, fragment) in [("out of order", [UInt8]([1, 1, 0xA2, 0x01, 0x02])), ("shorter than a fragment header", [0x00])] {
            let c = try await connect()
            try await c.hello()
            let mark = try await bench.mark()
            try await c.writeFragment(fragment)
            let r = try TapResultMessage(decoding: try await c.nextResult())
            XCTAssertEqual(r.reason, "malformed_presentation", name)
            try await bench.expectOneDecision(at: entrance, after: mark, reason: "malformed_presentation", decision: c.lastDecision)
        }
    }

    // MARK: - Forged credentials

    /// Presents `credential` from a phone holding `holder` over a fresh connection to `lockID`, and
    /// checks the authenticated result and the one journaled event.
    @discardableResult
    func present(_ credential: [UInt8], holder: P256.PrivateKey, at lockID: String? = nil, granted: Bool = false, reason: String?,
                 user: String?, file: StaticString = #filePath, line: UInt = #line) async throws -> RecordedEvent {
        let lockID = lockID ?? entrance
        let c = try await connect(lockID)
        // Non-conformant (test-only): it presents whatever it holds, even to a lock outside its `aud`,
        // so the lock's own checks are what this exercises.
        let pending = try await c.pending(bench.phone(credential: credential, holder: holder).nonConformant(), at: bench.now)
        let mark = try await bench.mark()
        let r = try pending.result(try await c.present(pending.presentation))
        XCTAssertEqual(r.granted, granted, file: file, line: line)
        XCTAssertEqual(r.reason, reason, file: file, line: line)
        let e = try await bench.expectOneDecision(at: lockID, after: mark, granted: granted, reason: reason, decision: c.lastDecision,
                                                  file: file, line: line)
        XCTAssertEqual(e.event.user, user, file: file, line: line)
        return e
    }

    func request(user: String = "u-mallory", locks: [String]? = nil, holder: P256.PrivateKey) -> CredentialRequest {
        CredentialRequest(userID: user, lockIDs: locks ?? [entrance], holderKey: holder.publicKey,
                          validity: ValidityWindow(notBefore: bench.now.addingTimeInterval(-60), expires: bench.now.addingTimeInterval(3600)))
    }

    /// Another site's credential (its own issuer: `unknown_issuer`), and a credential for another
    /// site signed by a key this lock trusts, as an organisation-wide issuer would (`wrong_site`).
    func testCredentialOfAnotherSite() async throws {
        let mallory = try P256.PrivateKey()
        let otherSite = CredentialIssuer(siteID: "oakland-hub", key: try P256.PrivateKey())
        try await present(try otherSite.issue(request(holder: mallory), issuedAt: bench.now).bytes, holder: mallory,
                          reason: "unknown_issuer", user: nil)
        let orgKey = CredentialIssuer(siteID: "oakland-hub", key: bench.emu.keys.issuerKey)
        let issued = try orgKey.issue(request(holder: mallory), issuedAt: bench.now)
        let e = try await present(issued.bytes, holder: mallory, reason: "wrong_site", user: "u-mallory")
        XCTAssertEqual(e.event.keyID, Hex.encode(issued.credential.keyID), "past the signature the claims are authentic and named")
    }

    /// The site issuer's kid on a credential signed by another key.
    func testRightKidWrongKeyIsABadSignature() async throws {
        let mallory = try P256.PrivateKey()
        let forger = CredentialIssuer(siteID: bench.siteID, key: try P256.PrivateKey(), keyID: bench.emu.keys.issuerKeyID)
        let forged = try forger.issue(request(holder: mallory), issuedAt: bench.now)
        XCTAssertEqual(try COSESign1(decoding: forged.bytes).keyID, bench.emu.keys.issuerKeyID)
        let e = try await present(forged.bytes, holder: mallory, reason: "bad_signature", user: nil)
        XCTAssertNil(e.event.keyID, "an unauthenticated credential's key id is not trusted to name anything")
    }

    /// Claims an attacker would like (every lock, a fresh validity) under the site's kid, with the
    /// algorithm swapped: ES384, EdDSA, HMAC keyed with the issuer's public key, a text alg ("none"),
    /// no alg at all (an unsecured CWT), alg moved to the unprotected header, COSE_Mac0, and ES256
    /// with the signature stripped.
    func testAlgorithmSubstitutionIsDenied() async throws {
        let mallory = try P256.PrivateKey()
        let scratch = try P256.PrivateKey()
        let all = bench.emu.config.locks.map(\.id)
        let claims = try COSESign1(decoding: try CredentialIssuer(siteID: bench.siteID, key: scratch)
            .issue(request(locks: all, holder: mallory), issuedAt: bench.now).bytes).payload
        let kid = CBOR.bytes(bench.emu.keys.issuerKeyID)
        func message(_ protected: [CBOR: CBOR]?, unprotected: [CBOR: CBOR] = [:], tag: UInt64 = 18,
                     sign: ([UInt8]) throws -> [UInt8]) throws -> [UInt8] {
            let p = protected.map { CBOR.map($0).encoded() } ?? []
            let sig = try sign(COSESign1.toBeSigned(protectedHeader: p, externalAAD: [], payload: claims))
            return CBOR.tagged(tag, .array([.bytes(p), .map(unprotected), .bytes(claims), .bytes(sig)])).encoded()
        }
        let es256: ([UInt8]) throws -> [UInt8] = { try ECDSA.sign($0, with: scratch) }
        let hmacWithPublicKey: ([UInt8]) throws -> [UInt8] = {
            try HMACSHA256.authenticate($0, key: self.bench.emu.keys.issuerPublicKey.uncompressed)
        }
        let cases: [(String, [UInt8], String)] = [
            ("ES384", try message([1: .int(-35), 4: kid], sign: es256), "unsupported_algorithm"),
            ("EdDSA", try message([1: .int(-8), 4: kid], sign: es256), "unsupported_algorithm"),
            ("HS256 keyed with the issuer public key", try message([1: .int(5), 4: kid], sign: hmacWithPublicKey), "unsupported_algorithm"),
            ("alg \"none\"", try message([1: .text("none"), 4: kid], sign: { _ in [] }), "unsupported_algorithm"),
            ("no alg (unsecured)", try message([4: kid], sign: { _ in [] }), "malformed"),
            ("alg in the unprotected header", try message(nil, unprotected: [1: .int(-7), 4: kid], sign: es256), "malformed"),
            ("COSE_Mac0", try message([1: .int(5), 4: kid], tag: 17, sign: hmacWithPublicKey), "malformed"),
            ("ES256, signature stripped", try message([1: .int(-7), 4: kid], sign: { _ in [] }), "bad_signature"),
        ]
        for (name, bytes, reason) in cases {
            let e = try await present(bytes, holder: mallory, reason: reason, user: nil)
            XCTAssertNil(e.event.keyID, name)
        }
    }

    /// A genuine credential copied off a phone, presented without its `cnf` private key: denied
    /// `proof_of_possession_failed`, and the event names neither Ada nor her key — the copy is never
    /// attributed to its owner. The proof is checked before any claim, so the copy learns nothing
    /// either: at a lock outside its `aud`, outside its schedule or after revocation the answer is the
    /// same (issue 14, finding 1).
    func testValidCredentialWithoutItsPrivateKeyIsDenied() async throws {
        let key = try await adaKey()
        let e = try await present(key.credential, holder: try P256.PrivateKey(), reason: "proof_of_possession_failed", user: nil)
        XCTAssertNil(e.event.keyID, "a copy is not attributed to the key it was copied from")
        // The same copy at a lock outside its aud: still the proof, not `wrong_lock`.
        let other = try await present(key.credential, holder: try P256.PrivateKey(), at: "room-dolores",
                                      reason: "proof_of_possession_failed", user: nil)
        XCTAssertNil(other.event.keyID)
    }

    // MARK: - Revocation and time

    /// Revoked upstream, pushed by iq-lobby to the main entrance: `revoked`, and the event says the
    /// lock held list 1. The same key at the basement storage, which no IQ reaches: granted (documented
    /// behaviour, gap G1), and the event says the lock held list 0.
    func testRevokedKeyAfterTheIQPushAndAtALockTheListHasNotReached() async throws {
        let key = try await adaKey([entrance, "storage-basement"])
        let holder = try P256.PrivateKey(pem: try XCTUnwrap(key.holderPrivateKeyPEM))
        let revoked = try await bench.emu.revokeKey(key.keyID)
        XCTAssertEqual(revoked.revocationListVersion, 1)
        var mark = try await bench.mark()
        _ = try await bench.emu.iqSync("iq-lobby")
        let pushed = try await bench.events(after: mark, lock: entrance, types: [.revocationUpdated])
        XCTAssertEqual(pushed.map(\.event.revocationVersion), [1])
        XCTAssertEqual(pushed.first?.event.iq, "iq-lobby")

        var e = try await present(key.credential, holder: holder, reason: "revoked", user: "u-ada")
        XCTAssertEqual(e.event.revocationVersion, 1)
        XCTAssertEqual(e.event.keyID, key.keyID)

        mark = try await bench.mark()
        e = try await present(key.credential, holder: holder, at: "storage-basement", granted: true, reason: nil, user: "u-ada")
        XCTAssertEqual(e.event.revocationVersion, 0, "the grant records the stale list version the lock held")
        XCTAssertEqual(e.event.keyID, key.keyID)
        let storage = try await bench.emu.lockJSON(id: "storage-basement")
        XCTAssertEqual(storage["revocation_list_version"] as? Int, 0)
    }

    /// The offline basement lock denies an expired key; then its clock is set back 90 minutes, into
    /// the key's validity. A lock never judges a credential at an earlier time than a decision it has
    /// already made, so the key stays `expired` (the records carry the rolled-back lock time).
    func testClockRolledBackOnAnOfflineLockDoesNotReviveAnExpiredKey() async throws {
        let storage = "storage-basement"
        let key = try await bench.issue(["user": "u-ken", "locks": [storage], "not_after": rfc3339(AttackBench.start.addingTimeInterval(3600))])
        let holder = try P256.PrivateKey(pem: try XCTUnwrap(key.holderPrivateKeyPEM))
        await bench.clock.advance(by: 2 * 3600)
        try await present(key.credential, holder: holder, at: storage, reason: "expired", user: "u-ken")

        try await bench.lock(storage).setClockOffset(-90 * 60)
        let lockTime = try await bench.lock(storage).lockTime()
        XCTAssertLessThan(lockTime, key.expires, "the lock's clock now reads inside the key's validity")
        let e = try await present(key.credential, holder: holder, at: storage, reason: "expired", user: "u-ken")
        XCTAssertEqual(e.event.time, lockTime, "the record keeps the lock's own (rolled back) time")
    }

    /// The other direction: a lock whose clock ran fast judges a short key expired; once its IQ sets
    /// the clock right (a trusted sync), the lock judges at the corrected time again and the key opens.
    func testAnIQTimeSyncCorrectsAFastClockWithoutLeavingTheLockInTheFuture() async throws {
        let key = try await adaKey(extra: ["not_after": rfc3339(AttackBench.start.addingTimeInterval(3600))])
        let holder = try P256.PrivateKey(pem: try XCTUnwrap(key.holderPrivateKeyPEM))
        try await bench.lock(entrance).setClockOffset(2 * 3600)
        try await present(key.credential, holder: holder, reason: "expired", user: "u-ada")
        _ = try await bench.emu.iqSync("iq-lobby")
        let offset = try await bench.lock(entrance).status.clockOffset
        XCTAssertEqual(offset, 0)
        try await present(key.credential, holder: holder, granted: true, reason: nil, user: "u-ada")
    }

    /// The same for a fob with end dates (u-alan's January 2025 day pass) at the main entrance with its
    /// IQ offline: set back into January 2025, the lock still says `expired`.
    func testClockRolledBackDoesNotReviveAnExpiredFob() async throws {
        _ = try await bench.emu.iqOnline("iq-lobby", .init(online: false))
        let alan = "5A:0C:81:E4"
        var mark = try await bench.mark()
        var r = try await bench.apiTap(["lock": entrance, "tag": alan])
        XCTAssertEqual(r["reason"] as? String, "expired")
        try await bench.expectOneDecision(at: entrance, after: mark, reason: "expired", method: .tag, apiResponse: r)

        // Wednesday 2025-01-15 10:00 in San Francisco: inside u-alan's dates and day-pass hours.
        let january = Date(timeIntervalSince1970: 1_736_964_000)
        try await bench.lock(entrance).setClockOffset(january.timeIntervalSince(bench.now))
        mark = try await bench.mark()
        r = try await bench.apiTap(["lock": entrance, "tag": alan])
        XCTAssertEqual(r["result"] as? String, "denied")
        XCTAssertEqual(r["reason"] as? String, "expired")
        try await bench.expectOneDecision(at: entrance, after: mark, reason: "expired", method: .tag, apiResponse: r)
    }

    // MARK: - Forged readers

    /// A fake lock answers the phone's hello with a forged reader hello — signed for the very phone
    /// hello it received, where the forger has a key to sign with. The phone must refuse before it
    /// reveals anything: not one byte reaches the Presentation characteristic, and no lock records a tap.
    func testForgedReaderHelloIsRefusedBeforeAnythingIsRevealed() async throws {
        let phone = try bench.phone(try await adaKey())
        let genuine = try ReaderHello(decoding: try await connect().hello())
        let dolores = try XCTUnwrap(bench.emu.keys.locks["room-dolores"])
        let site = bench.siteID

        /// A reader that signs `h` with `key` over the phone hello it is sent.
        func signing(_ h: ReaderHello, by key: P256.PrivateKey) -> @Sendable ([UInt8]?) async throws -> [UInt8] {
            { phoneHello in
                var h = h
                h.signature = try ECDSA.sign(h.toBeSigned(siteID: site, phoneHello: try PhoneHello(decoding: phoneHello ?? [])), with: key)
                return h.encoded()
            }
        }
        var swappedNonce = genuine
        swappedNonce.nonce = [UInt8](repeating: 0x42, count: TapProtocol.nonceSize)
        let rogueIssuer = CredentialIssuer(siteID: bench.siteID, key: try P256.PrivateKey())
        let rogueDevice = try P256.PrivateKey()
        var selfCertified = genuine
        selfCertified.certificate = try rogueIssuer.certify(lockID: entrance, deviceKey: rogueDevice.publicKey,
                                                            issuedAt: bench.now.addingTimeInterval(-60), expires: bench.now.addingTimeInterval(86_400)).bytes
        var otherLocksCertificate = genuine
        otherLocksCertificate.certificate = dolores.certificate.bytes
        let fixed: (ReaderHello) -> @Sendable ([UInt8]?) async throws -> [UInt8] = { h in { _ in h.encoded() } }

        let cases: [(String, @Sendable ([UInt8]?) async throws -> [UInt8], (TapPhoneError) -> Bool)] = [
            ("a genuine hello answering another phone hello", fixed(genuine), { $0 == .badHelloSignature }),
            ("genuine hello, nonce swapped", fixed(swappedNonce), { $0 == .badHelloSignature }),
            ("genuine certificate, signed by another key", signing(genuine, by: try P256.PrivateKey()), { $0 == .badHelloSignature }),
            ("certificate from a rogue issuer", signing(selfCertified, by: rogueDevice), { if case .untrustedLock = $0 { true } else { false } }),
            ("another lock's certificate and stolen device key", signing(otherLocksCertificate, by: dolores.deviceKey),
             { if case .untrustedLock = $0 { true } else { false } }),
            ("garbage", { _ in [0xA1, 0x01, 0x02] }, { if case .malformedHello = $0 { true } else { false } }),
        ]
        let mark = try await bench.mark()
        for (name, answer, expected) in cases {
            let reader = try ForgedReader(answer: answer)
            let (error, spy) = try await reader.tap(with: phone, at: bench.now)
            guard case .phoneRefusedLock(let inner)? = error as? PhoneTapError, let why = inner as? TapPhoneError else {
                XCTFail("\(name): the phone did not refuse the reader: \(String(describing: error))"); continue
            }
            XCTAssertTrue(expected(why), "\(name): \(why)")
            XCTAssertEqual(spy.writes(to: reader.handles.presentation).count, 0, "\(name): presentation bytes reached the forged reader")
            XCTAssertEqual(spy.executeWrites.count, 0, name)
            XCTAssertEqual(reader.presentations.count, 0, name)
            XCTAssertEqual(spy.writes(to: reader.handles.readerHello).count, 1, "\(name): the phone wrote its hello, nothing else")
        }
        let recorded = try await bench.events(after: mark, types: [.accessGranted, .accessDenied])
        XCTAssertEqual(recorded.count, 0, "no lock saw a tap")

        // Control: a reader relaying the phone's hello to the real lock and its answer back does get
        // a presentation (sealed to the real lock's keys), so the spy would have seen one above.
        let upstream = try await connect()
        let relay = try ForgedReader(answer: { phoneHello in try await upstream.hello(phoneHello) })
        let (relayError, relaySpy) = try await relay.tap(with: phone, at: bench.now)
        guard case .noResult? = relayError as? PhoneTapError else { return XCTFail("\(String(describing: relayError))") }
        XCTAssertFalse(relaySpy.writes(to: relay.handles.presentation).isEmpty)
        XCTAssertEqual(relay.presentations.count, 1)
    }

    /// U4: the phone's lock-certificate cache saves the issuer signature check only. It never vouches
    /// for a hello's signature or lock id, and a cached certificate outside its validity is refused.
    func testPhoneCertificateCacheNeverVouchesForAForgedHello() async throws {
        let key = try await adaKey()
        let cache = LockCertificateCache()
        let phone = try bench.phone(key, cache: cache)
        let entranceKeys = try XCTUnwrap(bench.emu.keys.locks[entrance])
        let cert = entranceKeys.certificate
        let site = bench.siteID

        let c = try await connect()
        let pending = try await c.pending(phone, at: bench.now)
        let genuineResult = try pending.result(try await c.present(pending.presentation))
        XCTAssertTrue(genuineResult.granted)
        XCTAssertNotNil(cache.lookup(cert.bytes, siteID: bench.siteID, issuers: bench.emu.keys.trustedIssuers, at: bench.now), "the genuine tap cached the entrance's certificate")

        // The cached certificate, with a hello signed by someone else.
        let genuine = try ReaderHello(decoding: try await connect().hello())
        let stranger = try P256.PrivateKey()
        var reader = try ForgedReader(answer: { phoneHello in
            var h = genuine
            h.signature = try ECDSA.sign(h.toBeSigned(siteID: site, phoneHello: try PhoneHello(decoding: phoneHello ?? [])), with: stranger)
            return h.encoded()
        })
        var (error, spy) = try await reader.tap(with: phone, at: bench.now)
        guard case .phoneRefusedLock(let e1)? = error as? PhoneTapError else { return XCTFail("\(String(describing: error))") }
        XCTAssertEqual(e1 as? TapPhoneError, .badHelloSignature)
        XCTAssertTrue(spy.writes(to: reader.handles.presentation).isEmpty)

        // The cached certificate and the entrance's stolen device key, posing as another lock.
        let deviceKey = entranceKeys.deviceKey
        reader = try ForgedReader(answer: { phoneHello in
            var h = genuine
            h.lockID = "room-dolores"
            h.signature = try ECDSA.sign(h.toBeSigned(siteID: site, phoneHello: try PhoneHello(decoding: phoneHello ?? [])), with: deviceKey)
            return h.encoded()
        })
        (error, spy) = try await reader.tap(with: phone, at: bench.now)
        guard case .phoneRefusedLock(let e2)? = error as? PhoneTapError, case .untrustedLock? = e2 as? TapPhoneError else {
            return XCTFail("\(String(describing: error))")
        }
        XCTAssertTrue(spy.writes(to: reader.handles.presentation).isEmpty)

        // The genuine lock, but the phone's clock is past the certificate's end (or before its start).
        for (name, at) in [("expired", cert.expires.addingTimeInterval(Verifier.defaultClockSkewTolerance + 1)),
                           ("not yet valid", cert.issuedAt.addingTimeInterval(-Verifier.defaultClockSkewTolerance - 1))] {
            XCTAssertNil(cache.lookup(cert.bytes, siteID: bench.siteID, issuers: bench.emu.keys.trustedIssuers, at: at), name)
            let (opening, hello) = try await connect().open(phone)
            XCTAssertThrowsError(try opening.present(readerHello: hello, action: .open, at: at), name) {
                guard case .untrustedLock? = $0 as? TapPhoneError else { return XCTFail("\(name): \($0)") }
            }
        }
    }

    // MARK: - Protocol v2 (issue 14 items 1 and 7)

    /// A version 1 phone reads Reader Hello first: ATT Error Response, application error 0x84, and
    /// one `protocol_version_unsupported` event. A version 1 presentation written anyway gets the same
    /// reason in an (unauthenticated) result, one event again. Nothing names a user.
    func testAVersion1PhoneGetsAClearRefusalAndOneEvent() async throws {
        let c = try await connect()
        var mark = try await bench.mark()
        do {
            _ = try await c.readHello()
            XCTFail("a hello read without a phone hello was answered")
        } catch let GATTClientError.attError(code, _, _) {
            XCTAssertEqual(code, .application(LockGATT.ApplicationError.protocolVersionUnsupported))
        }
        var e = try await bench.expectOneDecision(at: entrance, after: mark, reason: "protocol_version_unsupported", decision: c.lastDecision)
        XCTAssertNil(e.event.user)
        XCTAssertTrue("\(PhoneTapError.helloRefused(.attError(.application(0x84), handle: c.helloHandle, request: .readRequest)))".contains("version 2 only"))

        mark = try await bench.mark()
        let v1 = CBOR.map([1: .int(1), 2: .bytes(try P256.PrivateKey().publicKey.uncompressed), 3: .bytes([UInt8](repeating: 1, count: 40))]).encoded()
        let r = try TapResultMessage(decoding: try await c.present(v1))
        XCTAssertEqual(r.reason, "protocol_version_unsupported")
        XCTAssertNil(r.mac)
        e = try await bench.expectOneDecision(at: entrance, after: mark, reason: "protocol_version_unsupported", decision: c.lastDecision)
        XCTAssertNil(e.event.user)

        // A phone hello claiming version 1: refused at the write with the same error and reason.
        mark = try await bench.mark()
        let v1Hello = CBOR.map([1: .int(1), 2: .bytes(try P256.PrivateKey().publicKey.uncompressed), 3: .bytes([UInt8](repeating: 1, count: 16))]).encoded()
        do {
            try await c.writePhoneHello(v1Hello)
            XCTFail("a version 1 phone hello was accepted")
        } catch let GATTClientError.attError(code, _, _) {
            XCTAssertEqual(code, .application(LockGATT.ApplicationError.protocolVersionUnsupported))
        }
        try await bench.expectOneDecision(at: entrance, after: mark, reason: "protocol_version_unsupported", decision: c.lastDecision)
    }

    /// Issue 14 item 7: phone ephemeral keys that are not points — x ≥ p, y ≥ p, (0,0), the infinity
    /// byte `00`, compressed `02…` — are refused at the phone hello (ATT application error 0x85), each
    /// with one `malformed_phone_hello` event, before the lock signs or derives anything.
    func testPhoneHelloKeysThatAreNotPointsAreRefusedOverGATT() async throws {
        let p = "ffffffff00000001000000000000000000000000ffffffffffffffffffffffff"
        let good = try P256.PrivateKey().publicKey.uncompressed
        let x = Hex.encode(Array(good[1..<33])), y = Hex.encode(Array(good[33..<65]))
        let cases: [(String, [UInt8])] = [
            ("x = p", Hex.decode("04" + p + y)!),
            ("x > p", Hex.decode("04" + String(repeating: "ff", count: 32) + y)!),
            ("y = p", Hex.decode("04" + x + p)!),
            ("y > p", Hex.decode("04" + x + String(repeating: "ff", count: 32))!),
            ("(0, 0)", [0x04] + [UInt8](repeating: 0, count: 64)),
            ("infinity 00", [0x00]),
            ("compressed 02", Hex.decode("02" + x)!),
        ]
        for (name, key) in cases {
            let c = try await connect()
            let mark = try await bench.mark()
            let hello = CBOR.map([1: .int(2), 2: .bytes(key), 3: .bytes([UInt8](repeating: 1, count: 16))]).encoded()
            do {
                try await c.writePhoneHello(hello)
                XCTFail("\(name): the lock answered")
            } catch let GATTClientError.attError(code, _, _) {
                XCTAssertEqual(code, .application(LockGATT.ApplicationError.malformedPhoneHello), name)
            }
            let e = try await bench.expectOneDecision(at: entrance, after: mark, reason: "malformed_phone_hello", decision: c.lastDecision)
            XCTAssertNil(e.event.user, name)
        }
    }

    /// Issue 14 item 7: a flood of phone hellos over the real GATT path (each one a session and a
    /// nonce) pushes a genuine phone's live nonce out of the lock's bounded table: its presentation
    /// is then `nonce_unknown` — one event, never a grant — and a fresh tap works. Below the bound
    /// the genuine tap is granted. (The lock is given a table of 8 so the flood stays small.)
    func testAFloodOfPhoneHellosEvictsALiveNonceButNeverGrants() async throws {
        let keys = try XCTUnwrap(bench.emu.keys.locks[entrance])
        try await bench.lock(entrance).provision(TapLockIdentity(
            lockID: entrance, deviceKey: keys.deviceKey, certificate: keys.certificate.bytes,
            verifier: Verifier(siteID: bench.siteID, lockID: entrance, issuers: bench.emu.keys.trustedIssuers),
            replayGuard: TapReplayGuard(capacity: 8)))
        let phone = try bench.phone(try await adaKey())
        for (flood, granted) in [(6, true), (8, false)] {
            let victim = try await connect()
            let pending = try await victim.pending(phone, at: bench.now)
            // The flood comes a second later: the victim's nonce is then the oldest of this round
            // (the table evicts the oldest first).
            await bench.clock.advance(by: 1)
            let attacker = try await connect()
            for _ in 0..<flood { try await attacker.hello() }
            let mark = try await bench.mark()
            let r = try TapResultMessage(decoding: try await victim.present(pending.presentation))
            XCTAssertEqual(r.granted, granted, "flood of \(flood)")
            try await bench.expectOneDecision(at: entrance, after: mark, granted: granted, reason: granted ? nil : "nonce_unknown",
                                              decision: victim.lastDecision)
            await bench.clock.advance(by: 10)
        }
        let mark = try await bench.mark()
        let c = try await connect()
        let again = try await c.pending(phone, at: bench.now)
        let fresh = try again.result(try await c.present(again.presentation))
        XCTAssertTrue(fresh.granted, "a fresh tap after the flood")
        try await bench.expectOneDecision(at: entrance, after: mark, granted: true, reason: nil, decision: c.lastDecision)
    }

    /// Issue 14 finding 2: a conformant phone reveals nothing to a genuine, certified lock of its site
    /// that is outside its credential's `aud`, nor to one whose clock is more than 60 s off its own:
    /// it wrote only its hello, no lock recorded a tap. The non-conformant test phone presents and
    /// the lock judges `wrong_lock`.
    func testAConformantPhoneRevealsNothingToALockOutsideItsAudOrOffItsClock() async throws {
        let phone = try bench.phone(try await adaKey())   // main entrance only
        func tapOver(_ lockID: String, _ phone: TapPhone) async throws -> (Error?, ATTSpyBearer, LockGATT.Session) {
            let link = LoopbackLink()
            let spy = ATTSpyBearer(wrapping: link.peripheral)
            let session = try bench.gatt(lockID).open(spy)
            let client = try GATTClient(bearer: link.central)
            defer { client.close() }
            do {
                _ = try await PhoneTap.run(client: client, phone: phone, action: .open, now: bench.now, resultTimeout: .milliseconds(500))
                return (nil, spy, session)
            } catch { return (error, spy, session) }
        }
        let handles = try bench.gatt("room-dolores").handles
        var mark = try await bench.mark()
        var (error, spy, _) = try await tapOver("room-dolores", phone)
        guard case .phoneRefusedLock(let why)? = error as? PhoneTapError else { return XCTFail("\(String(describing: error))") }
        XCTAssertEqual(why as? TapPhoneError, .lockNotInCredential("room-dolores"))
        XCTAssertEqual(spy.writes(to: handles.presentation).count, 0)
        XCTAssertEqual(spy.writes(to: handles.readerHello).count, 1, "only its hello")
        var recorded = try await bench.events(after: mark, types: [.accessGranted, .accessDenied])
        XCTAssertEqual(recorded.count, 0, "the lock never received a presentation")

        // The main entrance's clock 61 s fast, then 61 s slow.
        for offset in [61.0, -61.0] {
            try await bench.lock(entrance).setClockOffset(offset)
            mark = try await bench.mark()
            (error, spy, _) = try await tapOver(entrance, phone)
            guard case .phoneRefusedLock(let why)? = error as? PhoneTapError, case .lockClockSkewed? = why as? TapPhoneError else {
                return XCTFail("\(offset): \(String(describing: error))")
            }
            XCTAssertEqual(spy.writes(to: handles.presentation).count, 0)
            recorded = try await bench.events(after: mark, types: [.accessGranted, .accessDenied])
            XCTAssertEqual(recorded.count, 0)
        }
        try await bench.lock(entrance).setClockOffset(59)
        (error, _, _) = try await tapOver(entrance, phone)
        XCTAssertNil(error, "59 s off is within the tolerance")
        try await bench.lock(entrance).setClockOffset(0)
        await bench.clock.advance(by: 10)

        // The non-conformant test phone presents, and the lock judges.
        mark = try await bench.mark()
        let (e2, _, session) = try await tapOver("room-dolores", phone.nonConformant())
        XCTAssertNil(e2)
        try await bench.expectOneDecision(at: "room-dolores", after: mark, reason: "wrong_lock", decision: session.decisions.last)
    }

    // MARK: - Tags, PINs, removed users

    func testUnknownTagIsDenied() async throws {
        let mark = try await bench.mark()
        let r = try await bench.apiTap(["lock": entrance, "tag": "DE:AD:BE:EF"])
        XCTAssertEqual(r["result"] as? String, "denied")
        XCTAssertEqual(r["reason"] as? String, "unknown_tag")
        let e = try await bench.expectOneDecision(at: entrance, after: mark, reason: "unknown_tag", method: .tag, apiResponse: r)
        XCTAssertEqual(r["event_id"] as? String, e.id)
        XCTAssertNil(e.event.user)
        XCTAssertEqual(e.event.keyID, "DEADBEEF", "the unknown UID is reported (as hex, like every key_id) so a fob can be traced")
    }

    /// Five wrong PINs (the default policy) lock the keypad for 300 s, reported once; meanwhile even
    /// the right PIN is refused; afterwards it opens. No event carries a PIN.
    func testPINBruteForceLocksTheKeypadAndIsReported() async throws {
        let wrong = ["0000", "1111", "1234", "9999", "5555"]
        let start = try await bench.mark()
        for (i, pin) in wrong.enumerated() {
            let mark = try await bench.mark()
            let r = try await bench.apiTap(["lock": entrance, "pin": pin])
            XCTAssertEqual(r["reason"] as? String, "wrong_pin", "attempt \(i + 1)")
            try await bench.expectOneDecision(at: entrance, after: mark, reason: "wrong_pin", method: .pin, apiResponse: r)
        }
        let lockouts = try await bench.events(after: start, lock: entrance, types: [.keypadLockedOut])
        XCTAssertEqual(lockouts.count, 1, "the lockout is reported once")
        XCTAssertEqual(lockouts.first?.event.reason, "keypad_locked_out")
        XCTAssertEqual(lockouts.first?.event.attributes["count"], .int(5))

        var mark = try await bench.mark()
        var r = try await bench.apiTap(["lock": entrance, "pin": "4821"])
        XCTAssertEqual(r["reason"] as? String, "keypad_locked_out", "locked out even against the right PIN")
        try await bench.expectOneDecision(at: entrance, after: mark, reason: "keypad_locked_out", method: .pin, apiResponse: r)

        _ = try await bench.emu.advanceClock(.init(seconds: 300))
        mark = try await bench.mark()
        r = try await bench.apiTap(["lock": entrance, "pin": "4821"])
        XCTAssertEqual(r["result"] as? String, "granted")
        try await bench.expectOneDecision(at: entrance, after: mark, granted: true, reason: nil, method: .pin, apiResponse: r)

        for e in try await bench.events(after: start, lock: entrance) {
            let text = e.cloudEventString
            for pin in wrong + ["4821"] { XCTAssertFalse(text.contains("\"\(pin)\""), "a PIN in \(e.type.shortName)") }
            if e.event.method == .pin { XCTAssertNil(e.event.keyID) }
        }
    }

    /// U7: a staff member removed from the directory. iq-lobby pushes access list 2 to the main
    /// entrance: tag and PIN refused there. The basement storage, out of every IQ's reach, still holds
    /// list 1 and still opens for the tag (gap G1), and its event says which list it held.
    func testRemovedUsersFobAndPINStopWorkingWhereTheNewListArrived() async throws {
        let kenTag = "04:0B:5C:93:27:E8:80", kenPIN = "55021"
        let version = try await bench.emu.site.directory.removeUser(id: "u-ken")
        XCTAssertEqual(version, 2)
        _ = try await bench.emu.iqSync("iq-lobby")

        var mark = try await bench.mark()
        var r = try await bench.apiTap(["lock": entrance, "tag": kenTag])
        XCTAssertEqual(r["reason"] as? String, "unknown_tag")
        var e = try await bench.expectOneDecision(at: entrance, after: mark, reason: "unknown_tag", method: .tag, apiResponse: r)
        XCTAssertEqual(e.event.attributes["access_list_version"], .int(2))

        mark = try await bench.mark()
        r = try await bench.apiTap(["lock": entrance, "pin": kenPIN])
        XCTAssertEqual(r["reason"] as? String, "wrong_pin")
        try await bench.expectOneDecision(at: entrance, after: mark, reason: "wrong_pin", method: .pin, apiResponse: r)

        mark = try await bench.mark()
        r = try await bench.apiTap(["lock": "storage-basement", "tag": kenTag])
        XCTAssertEqual(r["result"] as? String, "granted")
        e = try await bench.expectOneDecision(at: "storage-basement", after: mark, granted: true, reason: nil, method: .tag, apiResponse: r)
        XCTAssertEqual(e.event.user, "u-ken")
        XCTAssertEqual(e.event.attributes["access_list_version"], .int(1))
    }

    // MARK: - The journal path

    /// A record the journal would refuse (here a key id that is not hex, as tag UIDs were) is dropped
    /// and counted on its own: the records travelling with it are journaled, without a retry storm.
    func testARecordTheJournalRefusesDoesNotSinkTheOthers() async throws {
        let bridge = bench.emu.bridge
        let failures = bridge.failures
        let odd = AuditRecord(deviceKind: .lock, deviceID: "probe-lock", sequence: 1, time: bench.now, kind: .accessDenied,
                              keyID: "not hex!", method: .mobile, result: .denied, reason: "malformed")
        let good = AuditRecord(deviceKind: .lock, deviceID: "probe-lock", sequence: 2, time: bench.now, kind: .accessDenied,
                               method: .mobile, result: .denied, reason: "malformed")
        let clock = ContinuousClock()
        let t0 = clock.now
        _ = bridge.write(AuditWrite(deviceKind: .lock, deviceID: "probe-lock", record: odd))
        _ = bridge.write(AuditWrite(deviceKind: .lock, deviceID: "probe-lock", record: good))
        let goodID = await bridge.eventID(for: good)
        let oddID = await bridge.eventID(for: odd)
        XCTAssertNotNil(goodID, "the valid record is journaled")
        XCTAssertNil(oddID, "the invalid one is refused")
        XCTAssertEqual(bridge.failures, failures + 1, "and counted")
        XCTAssertLessThan(clock.now - t0, .milliseconds(500), "without 50 retries of the whole batch")
    }

    // MARK: - The control API never hands out private keys

    /// U5: drives every route of the control API over real HTTP (after issuing built-in and external
    /// keys, tapping, revoking) and scans every response for private-key material: PEM markers, the
    /// base64 body of each private key file, and each private scalar in hex and base64.
    func testNoAPIResponseCarriesPrivateKeyMaterial() async throws {
        let emu = bench.emu
        let port = Locked<Int?>(nil)
        let server = Task { try await ControlServer.run(emu) { p in port.withLock { $0 = p } } }
        defer { server.cancel() }
        var base = ""
        for _ in 0..<5000 {
            if let p = port.withLock({ $0 }) { base = "http://127.0.0.1:\(p)"; break }
            try await Task.sleep(for: .milliseconds(1))
        }
        XCTAssertFalse(base.isEmpty, "the control API did not start")

        var scanned: [(String, Int, String)] = []
        func call(_ method: String, _ path: String, _ json: [String: Any]? = nil) async throws -> Any? {
            var req = URLRequest(url: try XCTUnwrap(URL(string: base + path)))
            req.httpMethod = method
            if let json {
                req.httpBody = try JSONSerialization.data(withJSONObject: json)
                req.setValue("application/json", forHTTPHeaderField: "Content-Type")
            }
            let (data, response) = try await URLSession.shared.data(for: req)
            let status = (response as? HTTPURLResponse)?.statusCode ?? 0
            scanned.append(("\(method) \(path)", status, String(decoding: data, as: UTF8.self)))
            return try? JSONSerialization.jsonObject(with: data)
        }

        let pastedPrivate = try P256.PrivateKey()   // a user pastes a private key where a public one belongs
        let builtIn = try await call("POST", "/v1/keys", ["user": "u-ada", "locks": [entrance]]) as? [String: Any]
        let keyID = try XCTUnwrap(builtIn?["key_id"] as? String)
        _ = try await call("POST", "/v1/keys", ["user": "u-grace", "group": "staff"])
        _ = try await call("POST", "/v1/keys", ["user": "u-linus", "locks": [entrance], "holder_public_key": try P256.PrivateKey().publicKey.pem])
        _ = try await call("POST", "/v1/keys", ["user": "u-linus", "locks": [entrance], "holder_public_key": try pastedPrivate.pkcs8PEM()])
        _ = try await call("POST", "/v1/taps", ["lock": entrance, "user": "u-ada"])
        _ = try await call("POST", "/v1/taps", ["lock": entrance, "key_id": keyID, "action": "office_mode_on"])
        _ = try await call("POST", "/v1/taps", ["lock": entrance, "tag": "04:A2:3B:1C:5D:80"])
        _ = try await call("POST", "/v1/taps", ["lock": entrance, "pin": "4821"])
        _ = try await call("POST", "/v1/locks/\(entrance)/open", ["user": "u-ada"])
        _ = try await call("DELETE", "/v1/keys/\(keyID)")
        _ = try await call("POST", "/v1/iqs/iq-lobby/sync", [:])
        _ = try await call("POST", "/v1/taps", ["lock": entrance, "key_id": keyID])
        for path in ["/v1/health", "/openapi.yaml", "/", "/live", "/v1/site", "/v1/locks", "/v1/locks/\(entrance)", "/v1/iqs",
                     "/v1/controllers", "/v1/keys", "/v1/keys?user=u-ada", "/v1/clock", "/v1/deliveries",
                     "/v1/events?all=true&limit=10000", "/v1/keys/\(keyID)", "/v1/nowhere"] {
            _ = try await call("GET", path)
        }
        _ = try await call("POST", "/v1/clock/advance", ["seconds": 61])
        // The built-in phones' private keys, read before the reset clears the key store.
        let stored = try emu.store.keys(user: nil).compactMap(\.holderPrivateKeyPEM)
        XCTAssertEqual(stored.count, 2, "u-ada's and u-grace's built-in phones")
        _ = try await call("POST", "/v1/reset", [:])
        _ = try await call("GET", "/v1/keys")

        // Every private key the emulator holds, and the one pasted in by mistake.
        var pems = [try String(contentsOf: bench.dir.appendingPathComponent("keys/issuer.key.pem"), encoding: .utf8)]
        let lockKeys = bench.dir.appendingPathComponent("keys/locks")
        for f in try FileManager.default.contentsOfDirectory(atPath: lockKeys.path) where f.hasSuffix(".key.pem") {
            pems.append(try String(contentsOf: lockKeys.appendingPathComponent(f), encoding: .utf8))
        }
        pems += stored
        pems.append(try pastedPrivate.pkcs8PEM())
        XCTAssertGreaterThanOrEqual(pems.count, 1 + emu.config.locks.count + 2)
        var markers: [String] = []
        for pem in pems {
            let body = pem.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()
            markers.append(body)
            markers += pem.split(separator: "\n").filter { !$0.hasPrefix("-----") && $0.count >= 24 }.map(String.init)
            let der = try XCTUnwrap(Data(base64Encoded: body)).map { $0 }
            let at = try XCTUnwrap(der.firstIndex(of: [0x02, 0x01, 0x01, 0x04, 0x20]), "no EC private scalar in the DER")
            let scalar = Array(der[(at + 5)..<(at + 37)])
            let b64 = Data(scalar).base64EncodedString()
            markers += [Hex.encode(scalar), Hex.encode(scalar).uppercased(), b64, String(b64.dropLast()),
                        b64.replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")]
        }
        XCTAssertGreaterThan(scanned.count, 30)
        for (route, status, text) in scanned {
            XCTAssertNotEqual(status, 0, route)
            XCTAssertLessThan(status, 500, "\(route): \(text.prefix(200))")
            let unescaped = text.replacingOccurrences(of: "\\/", with: "/")
            XCTAssertFalse(unescaped.contains("PRIVATE KEY"), "\(route) answers with a private key PEM")
            for m in markers where unescaped.contains(m) { XCTFail("\(route) answers with private key material (\(m.prefix(12))…)") }
        }
        XCTAssertTrue(scanned.contains { $0.0 == "GET /v1/site" && $0.2.contains("PUBLIC KEY") }, "public keys are public")
    }
}
