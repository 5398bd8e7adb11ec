import Foundation
import XCTest
import KeywayCrypto
@testable import MobileKey

/// U3 of docs/SECURITY.md: the replay guard under a flood. Its memory is bounded (nonces handed
/// out, fingerprints of presentations seen), eviction is FIFO, expired nonces are pruned — and what
/// it forgets under a flood never turns a replay into a grant.
final class TapReplayGuardTests: XCTestCase {
    let t0 = Date(timeIntervalSince1970: 1_795_000_000)

    func nonce(_ i: Int) -> [UInt8] { [UInt8](repeating: 0, count: 12) + withUnsafeBytes(of: UInt32(i).bigEndian, Array.init) }

    func testFingerprintsAreBoundedAndEvictedOldestFirst() {
        let guardian = TapReplayGuard(capacity: 4)
        for i in 0..<4 { XCTAssertTrue(guardian.firstSighting(nonce(i), at: t0)) }
        for i in 0..<4 { XCTAssertFalse(guardian.firstSighting(nonce(i), at: t0), "fingerprint \(i) is remembered") }
        // A fifth pushes out the oldest only.
        XCTAssertTrue(guardian.firstSighting(nonce(4), at: t0))
        for i in 1...4 { XCTAssertFalse(guardian.firstSighting(nonce(i), at: t0), "fingerprint \(i) is still remembered") }
        XCTAssertTrue(guardian.firstSighting(nonce(0), at: t0), "the oldest was evicted")
        // Re-admitting 0 evicted the next oldest (1), and so on around the ring.
        XCTAssertTrue(guardian.firstSighting(nonce(1), at: t0))
        XCTAssertFalse(guardian.firstSighting(nonce(4), at: t0))
        // A long flood keeps the memory at its capacity: only the last four are known.
        for i in 100..<10_100 { _ = guardian.firstSighting(nonce(i), at: t0) }
        for i in 10_096..<10_100 { XCTAssertFalse(guardian.firstSighting(nonce(i), at: t0), "recent \(i)") }
        XCTAssertTrue(guardian.firstSighting(nonce(10_095), at: t0), "older than the last four: forgotten")
    }

    func testIssuedNoncesAreSingleUseBoundedAndPruned() {
        let guardian = TapReplayGuard(capacity: 4)
        for i in 0..<4 { guardian.issue(nonce(i), at: t0 + Double(i)) }
        XCTAssertEqual(guardian.consume(nonce(3), at: t0 + 5), .ok)
        XCTAssertEqual(guardian.consume(nonce(3), at: t0 + 5), .unknown, "single use")
        XCTAssertEqual(guardian.consume(nonce(99), at: t0 + 5), .unknown, "never issued")
        // Full again (0, 1, 2, 4): one more hello evicts the oldest fresh nonce, 0.
        guardian.issue(nonce(4), at: t0 + 4)
        guardian.issue(nonce(5), at: t0 + 6)
        XCTAssertEqual(guardian.consume(nonce(0), at: t0 + 7), .unknown, "evicted by the flood of hellos")
        XCTAssertEqual(guardian.consume(nonce(1), at: t0 + 7), .ok)
        // Expired nonces are pruned first when the table is full, and fail as expired before that.
        XCTAssertEqual(guardian.consume(nonce(2), at: t0 + 2 + TapProtocol.nonceLifetime + 1), .expired)
        for i in 10..<14 { guardian.issue(nonce(i), at: t0 + 100 + Double(i)) }
        XCTAssertEqual(guardian.consume(nonce(4), at: t0 + 120), .unknown, "pruned as expired")
        XCTAssertEqual(guardian.consume(nonce(13), at: t0 + 120), .ok)
        // A clock set back before the hello also expires it.
        guardian.issue(nonce(20), at: t0 + 200)
        XCTAssertEqual(guardian.consume(nonce(20), at: t0 + 199), .expired)
    }

    /// A flood of presentations pushes a sniffed presentation's fingerprint out of the lock's memory.
    /// Replayed afterwards it is no longer *named* a replay, but it is still denied: its nonce was
    /// consumed, and on any other session it does not decrypt. A second presentation on a session
    /// whose presentation opened is `replayed` (v2: the session's phone key, from its hello, is spent).
    func testAFloodNeverTurnsAReplayIntoAGrant() throws {
        let issuerKey = try P256.PrivateKey()
        let issuer = CredentialIssuer(siteID: "sf", key: issuerKey)
        let device = try P256.PrivateKey()
        let cert = try issuer.certify(lockID: "door", deviceKey: device.publicKey, issuedAt: t0 - 60, expires: t0 + 86_400)
        let lock = TapLockIdentity(lockID: "door", deviceKey: device, certificate: cert.bytes,
                                   verifier: Verifier(siteID: "sf", lockID: "door", issuers: TrustedIssuers([issuerKey.publicKey])),
                                   replayGuard: TapReplayGuard(capacity: 8))
        let holder = try P256.PrivateKey()
        let credential = try issuer.issue(CredentialRequest(userID: "u", lockIDs: ["door"], holderKey: holder.publicKey,
                                                            validity: ValidityWindow(notBefore: t0 - 60, expires: t0 + 3600)), issuedAt: t0 - 60)
        let phone = TapPhone(credential: credential.bytes, holderKey: holder, siteID: "sf", trustedIssuers: TrustedIssuers([issuerKey.publicKey]))
        let none = RevocationList.empty(siteID: "sf")

        let (session, pending) = try phone.presentation(to: lock, at: t0)
        let sniffed = pending.presentation
        guard case .accepted = session.evaluate(sniffed, now: t0, revocations: none) else { return XCTFail() }
        // One presentation per session: another one (any bytes) on the used session is refused before
        // any decryption — `replayed`, since the session's phone key (from its hello) was spent.
        let second = try phone.presentation(to: lock, at: t0).pending.presentation
        XCTAssertEqual(session.evaluate(second, now: t0, revocations: none).denial, .replayed, "one presentation per session")

        // Junk never reaches the guard (fingerprints are recorded only after AES-GCM): a flood of it
        // evicts nothing, and the sniffed presentation is still named a replay.
        for i in 0..<32 {
            let junk = try lock.startSession(phoneHello: try phone.open().phoneHello, now: t0)
            XCTAssertEqual(junk.evaluate([0xA0, 0, UInt8(i)], now: t0, revocations: none).denial, .malformedPresentation)
        }
        XCTAssertEqual(session.evaluate(sniffed, now: t0, revocations: none).denial, .replayed, "junk evicted nothing")

        // Genuine taps by other phones do fill the bounded guard and evict it.
        func flood(_ round: UInt8) throws {
            for _ in 0..<32 {
                let (other, pending) = try phone.presentation(to: lock, at: t0)
                let p = pending.presentation
                guard case .accepted = other.evaluate(p, now: t0, revocations: none) else { return XCTFail("round \(round)") }
            }
        }
        try flood(0)
        XCTAssertEqual(session.evaluate(sniffed, now: t0 + 1, revocations: none).denial, .nonceUnknown,
                       "forgotten as a replay, still refused on its own session")
        try flood(1)
        let later = try lock.startSession(phoneHello: try phone.open().phoneHello, now: t0 + 1)
        XCTAssertEqual(later.evaluate(sniffed, now: t0 + 1, revocations: none).denial, .decryptionFailed,
                       "and on any other session")
    }
}

/// Lock-side reassembly under hostile fragmenting: a refused message fails once, whatever the
/// sender writes after the failure, and a fragment 0 starts over.
final class TapReassemblerRefusalTests: XCTestCase {
    func testARefusedMessageFailsOnceAndTheNextMessageStartsClean() throws {
        var r = TapReassembler(limit: 1000)
        let big = TapFragments.split([UInt8](repeating: 7, count: 2000))   // 4 fragments, the 2nd overflows
        XCTAssertEqual(try r.add(big[0]), .needMore)
        XCTAssertThrowsError(try r.add(big[1])) { XCTAssertEqual($0 as? TapReassembler.Failure, .tooLarge) }
        XCTAssertEqual(try r.add(big[2]), .needMore, "the rest of the refused message is dropped, not refused again")
        XCTAssertEqual(try r.add(big[3]), .needMore)
        let small = TapFragments.split([1, 2, 3])
        XCTAssertEqual(try r.add(small[0]), .complete([1, 2, 3]), "after the refused message's last fragment, a new one")

        // Failing on a last fragment ends the message: the next write is judged on its own.
        XCTAssertThrowsError(try r.add([3, 1, 9])) { XCTAssertEqual($0 as? TapReassembler.Failure, .outOfOrder) }
        XCTAssertThrowsError(try r.add([4, 1, 9])) { XCTAssertEqual($0 as? TapReassembler.Failure, .outOfOrder) }

        // A fragment 0 while dropping starts the next message at once.
        XCTAssertThrowsError(try r.add([2, 0, 9]))
        XCTAssertEqual(try r.add([5, 0, 9]), .needMore, "dropped")
        XCTAssertEqual(try r.add([0, 0, 1]), .needMore)
        XCTAssertEqual(try r.add([1, 1, 2]), .complete([1, 2]))

        // More than 16 fragments: refused at the 17th, silent to the end of that message.
        for i in 0..<16 { XCTAssertEqual(try r.add([UInt8(i), 0, 0]), .needMore) }
        XCTAssertThrowsError(try r.add([16, 0, 0])) { XCTAssertEqual($0 as? TapReassembler.Failure, .outOfOrder) }
        XCTAssertEqual(try r.add([17, 1, 0]), .needMore)
        XCTAssertEqual(try r.add([0, 1, 42]), .complete([42]))
    }
}
