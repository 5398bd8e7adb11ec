import BLE
import Foundation
import XCTest
@testable import Emulator
import Events
import Hardware
import KeywayCrypto
@testable @_spi(NonConformantPhone) import MobileKey

/// Issue 14 item 7: a genuine credential re-wrapped by whoever holds it — inside the CWT tag 61, or
/// with extra unprotected headers — presented by its own holder over the real GATT path. What the
/// signature covers (protected header, payload) is untouched, so the decisions are pinned by the
/// envelope rules of docs/PROTOCOL.md §3: accepted, or refused with the exact reason and one event.
final class CredentialEnvelopeAttackTests: XCTestCase {
    var bench: AttackBench!
    let entrance = "main-entrance"

    override func setUp() async throws { bench = try await AttackBench.make() }
    override func tearDown() async throws {
        await bench?.shutdown()
        bench = nil
    }

    /// Presents `credential` with Ada's own key (the proof verifies whenever the credential parses) and
    /// checks the authenticated result and the one event. Non-conformant phone (test-only): it presents
    /// even what it cannot read itself, so the lock's parser is what decides.
    @discardableResult
    func present(_ credential: [UInt8], holder: P256.PrivateKey, granted: Bool, reason: String?, user: String?, _ name: String,
                 line: UInt = #line) async throws -> RecordedEvent {
        let c = try await RawGATTPhone.connect(to: try bench.gatt(entrance))
        defer { c.close() }
        let pending = try await c.pending(bench.phone(credential: credential, holder: holder).nonConformant(), at: bench.now)
        let mark = try await bench.mark()
        let r = try pending.result(try await c.present(pending.presentation))
        XCTAssertEqual(r.granted, granted, name, line: line)
        XCTAssertEqual(r.reason, reason, name, line: line)
        let e = try await bench.expectOneDecision(at: entrance, after: mark, granted: granted, reason: reason, decision: c.lastDecision, line: line)
        XCTAssertEqual(e.event.user, user, name, line: line)
        await bench.clock.advance(by: 1)
        return e
    }

    func testATag61WrapOrExtraUnprotectedHeadersAreJudgedByTheEnvelopeRules() async throws {
        let key = try await bench.issue(["user": "u-ada", "locks": [entrance]])
        let holder = try P256.PrivateKey(pem: try XCTUnwrap(key.holderPrivateKeyPEM))
        let genuine = try COSESign1(decoding: key.credential)
        XCTAssertEqual(genuine.unprotected, [:], "Keyway writes an empty unprotected header")
        func envelope(unprotected: [CBOR: CBOR] = [:], tags: [UInt64] = [18]) -> [UInt8] {
            var item = CBOR.array([.bytes(genuine.protectedHeader), .map(unprotected), .bytes(genuine.payload), .bytes(genuine.signature)])
            for tag in tags.reversed() { item = .tagged(tag, item) }
            return item.encoded()
        }
        XCTAssertEqual(envelope(), key.credential, "the genuine envelope rebuilds byte for byte")
        let otherKid = CBOR.bytes(Array(repeating: 0x42, count: 8))

        // Accepted: the signature covers neither the tags nor the unprotected header, and RFC 8392 §6
        // lets a CWT travel inside tag 61. Unprotected labels Keyway does not use are ignored.
        let accepted: [(String, [UInt8])] = [
            ("CWT tag 61 around tag 18", envelope(tags: [COSESign1.cwtTag, 18])),
            ("unprotected IV (5), x5chain (33) and a private label", envelope(unprotected: [5: .bytes(Array(repeating: 0, count: 12)),
                                                                                         33: .bytes([0x30, 0x00]), -70_000: .text("note")])),
            ("tag 61 and an extra unprotected header", envelope(unprotected: [-70_000: .text("note")], tags: [COSESign1.cwtTag, 18])),
        ]
        for (name, bytes) in accepted {
            let e = try await present(bytes, holder: holder, granted: true, reason: nil, user: "u-ada", name)
            XCTAssertEqual(e.event.keyID, key.keyID, name)
        }

        // Refused before anything about the credential is judged: `malformed` (or the algorithm
        // reason), and the event names nobody.
        var crowded: [CBOR: CBOR] = [:]
        for i in 0..<17 { crowded[.int(-70_000 - Int64(i))] = .int(Int64(i)) }
        let refused: [(String, [UInt8], String)] = [
            ("tag 61 twice", envelope(tags: [COSESign1.cwtTag, COSESign1.cwtTag, 18]), "malformed"),
            ("tag 61 around the untagged array", envelope(tags: [COSESign1.cwtTag]), "malformed"),
            ("tag 18 around tag 61", envelope(tags: [18, COSESign1.cwtTag]), "malformed"),
            ("untagged", envelope(tags: []), "malformed"),
            ("COSE_Sign tag 98", envelope(tags: [98]), "malformed"),
            ("unprotected kid naming another key (label in both headers)", envelope(unprotected: [4: otherKid]), "malformed"),
            ("unprotected alg -7 (label in both headers)", envelope(unprotected: [1: .int(-7)]), "malformed"),
            ("unprotected crit", envelope(unprotected: [2: .array([.int(-70_000)]), -70_000: .int(1)]), "malformed"),
            ("17 unprotected labels (over the 16-item limit)", envelope(unprotected: crowded), "malformed"),
        ]
        for (name, bytes, reason) in refused {
            let e = try await present(bytes, holder: holder, granted: false, reason: reason, user: nil, name)
            XCTAssertNil(e.event.keyID, name)
        }
    }

    /// A wrapped credential is the same credential: revoking its `cti` revokes every envelope of it.
    func testRevocationReachesEveryEnvelopeOfACredential() async throws {
        let key = try await bench.issue(["user": "u-ada", "locks": [entrance]])
        let holder = try P256.PrivateKey(pem: try XCTUnwrap(key.holderPrivateKeyPEM))
        _ = try await bench.emu.revokeKey(key.keyID)
        _ = try await bench.emu.iqSync("iq-lobby")
        let wrapped = CBOR.tagged(COSESign1.cwtTag, try CBORDecoder().decode(key.credential)).encoded()
        let e = try await present(wrapped, holder: holder, granted: false, reason: "revoked", user: "u-ada", "tag 61, revoked")
        XCTAssertEqual(e.event.keyID, key.keyID)
    }
}
