import BLE
import Foundation
import XCTest
@testable import Emulator
import Events
import Hardware
import KeywayCrypto
@testable @_spi(TapVectors) import MobileKey

/// FAST repeat taps end to end (issue 14 item 4): the built-in phone and a raw GATT phone over the
/// loopback radio, the lock, the journal. Attacks assert the exact reason and exactly one event (or,
/// where the lock answers with no decision, no event and no grant); every fallback reason is shown.
final class FastTapAttackTests: XCTestCase {
    var bench: AttackBench!
    let entrance = "main-entrance"

    override func setUp() async throws { bench = try await AttackBench.make() }
    override func tearDown() async throws {
        await bench?.shutdown()
        bench = nil
    }

    func adaKey(_ locks: [String]? = nil) async throws -> IssuedKey {
        try await bench.issue(["user": "u-ada", "locks": locks ?? [entrance]])
    }

    func connect(_ lockID: String? = nil) async throws -> RawGATTPhone {
        let phone = try await RawGATTPhone.connect(to: try bench.gatt(lockID ?? entrance))
        addTeardownBlock { phone.close() }
        return phone
    }

    /// A FAST request the lock answers with an ATT error and no decision: which error, and no event.
    func expectNoDecision(_ request: [UInt8], at lockID: String? = nil, code: UInt8,
                          file: StaticString = #filePath, line: UInt = #line) async throws {
        let lock = lockID ?? entrance
        let c = try await connect(lock)
        let mark = try await bench.mark()
        do {
            _ = try await c.fast(request)
            XCTFail("the lock decided", file: file, line: line)
        } catch GATTClientError.attError(.application(let got), _, _) {
            XCTAssertEqual(got, code, file: file, line: line)
        }
        XCTAssertEqual(c.pendingResults, 0, file: file, line: line)
        let events = try await bench.decisions(after: mark, lock: lock)
        XCTAssertEqual(events.count, 0, "no event: \(events.map { $0.event.reason ?? "-" })", file: file, line: line)
    }

    // MARK: - Through the API's built-in phone

    /// The first tap is full, the next ones FAST (`mode` in `POST /v1/taps`), each one event with the
    /// same fields as a full tap's grant.
    func testTheBuiltInPhoneTapsFastAfterAFullExchange() async throws {
        let key = try await adaKey()
        var mark = try await bench.mark()
        let first = try await bench.apiTap(["lock": entrance, "key_id": key.keyID])
        XCTAssertEqual(first["mode"] as? String, "full")
        try await bench.expectOneDecision(at: entrance, after: mark, granted: true, reason: nil, apiResponse: first)
        await bench.clock.advance(by: 30)
        mark = try await bench.mark()
        let second = try await bench.apiTap(["lock": entrance, "key_id": key.keyID])
        XCTAssertEqual(second["mode"] as? String, "fast")
        XCTAssertEqual(second["phone_verified_result"] as? Bool, true, "the FAST result authenticated")
        let e = try await bench.expectOneDecision(at: entrance, after: mark, granted: true, reason: nil, apiResponse: second)
        XCTAssertEqual(e.event.user, "u-ada")
        XCTAssertEqual(e.event.keyID, key.keyID)
        let report = try await bench.emu.tapWithKeyReport(key.keyID, lock: entrance)
        XCTAssertEqual(report.mode, .fast)
        XCTAssertNil(report.fastFallback)
    }

    /// A FAST tap re-judges the claims: outside the credential's validity it is `expired`, naming the
    /// user and key (the request authenticated), one event.
    func testAFastTapStillJudgesTheCredentialsClaims() async throws {
        let now = bench.now
        let key = try await bench.issue(["user": "u-ada", "locks": [entrance],
                                         "not_after": ISO8601DateFormatter().string(from: now.addingTimeInterval(600))])
        _ = try await bench.emu.tapWithKeyReport(key.keyID, lock: entrance)
        await bench.clock.advance(by: 700)
        let mark = try await bench.mark()
        let r = try await bench.emu.tapWithKeyReport(key.keyID, lock: entrance)
        XCTAssertEqual(r.mode, .fast)
        let e = try await bench.expectOneDecision(at: entrance, after: mark, reason: "expired", decision: r.decision)
        XCTAssertEqual(e.event.keyID, key.keyID)
    }

    /// The lock's own rules after the protocol apply to a FAST tap as to a full one: in a lockdown a
    /// FAST tap is `locked_down`, one event naming the user, and it stays FAST (nothing to fall back for).
    func testALockdownReachesAFastTap() async throws {
        let key = try await adaKey()
        _ = try await bench.emu.tapWithKeyReport(key.keyID, lock: entrance)
        _ = try await bench.emu.setLockdown(.init(lockedDown: true, locks: [entrance]))
        let mark = try await bench.mark()
        let r = try await bench.emu.tapWithKeyReport(key.keyID, lock: entrance)
        XCTAssertEqual(r.mode, .fast)
        let e = try await bench.expectOneDecision(at: entrance, after: mark, reason: "locked_down", decision: r.decision)
        XCTAssertEqual(e.event.user, "u-ada")
    }

    // MARK: - Fallbacks

    /// Every fallback over the real path: no key yet (phone), the lock's revocation list changed (0x87),
    /// the lock re-provisioned (0x86), and the credential changed (phone). Each tap is one event.
    func testEachFallbackRunsTheFullExchangeWithOneEvent() async throws {
        let key = try await adaKey(), other = try await adaKey()
        let ring = TapFastKeyring()
        let phone = try bench.fastPhone(key, keyring: ring)
        func tap(_ p: TapPhone, expect mode: TapMode, _ fallback: TapFastFallback?, granted: Bool = true, reason: String? = nil,
                 line: UInt = #line) async throws {
            let link = LoopbackLink()
            let session = try bench.gatt(entrance).open(link.peripheral)
            let client = try GATTClient(bearer: link.central)
            defer { client.close() }
            let mark = try await bench.mark()
            let out = try await PhoneTap.run(client: client, phone: p, action: .open, now: bench.now)
            XCTAssertEqual(out.mode, mode, line: line)
            XCTAssertEqual(out.fastFallback, fallback, line: line)
            XCTAssertEqual(out.result.granted, granted, line: line)
            let d = await session.nextDecision()
            try await bench.expectOneDecision(at: entrance, after: mark, granted: granted, reason: reason, decision: d, line: line)
        }
        try await tap(phone, expect: .full, .noKey)
        try await tap(phone, expect: .fast, nil)
        // The revocation list changed at the lock (another key revoked, pushed by iq-lobby).
        _ = try await bench.emu.revokeKey(other.keyID)
        _ = try await bench.emu.iqSync("iq-lobby")
        try await tap(phone, expect: .full, .revocationListChanged)
        try await tap(phone, expect: .fast, nil)
        // Re-provisioned with the same site keys: the lock's FAST table is new.
        try await reprovision()
        try await tap(phone, expect: .full, .lockKeyUnknown)
        try await tap(phone, expect: .fast, nil)
        // The phone's credential changed (re-issued to the same phone, same holder key).
        let holder = try P256.PrivateKey(pem: try XCTUnwrap(key.holderPrivateKeyPEM))
        let reissued = bench.phone(credential: try await bench.issue(["user": "u-ada", "locks": [entrance],
                                                                       "holder_public_key": holder.publicKey.pem]).credential,
                                   holder: holder, fastKeys: ring)
        try await tap(reissued, expect: .full, .credentialChanged)
        try await tap(reissued, expect: .fast, nil)
    }

    func reprovision() async throws {
        let keys = try XCTUnwrap(bench.emu.keys.locks[entrance])
        try await bench.lock(entrance).provision(TapLockIdentity(
            lockID: entrance, deviceKey: keys.deviceKey, certificate: keys.certificate.bytes,
            verifier: Verifier(siteID: bench.siteID, lockID: entrance, issuers: bench.emu.keys.trustedIssuers)))
    }

    // MARK: - Attacks

    /// A sniffed FAST request replayed — on another connection, and after a newer one — is `replayed`:
    /// one event, naming nobody, never a grant.
    func testAReplayedFastRequestIsDeniedAsReplayed() async throws {
        let ring = TapFastKeyring(), phone = try bench.fastPhone(try await adaKey(), keyring: ring)
        let c = try await connect()
        let full = try await c.fullTap(phone, at: bench.now)
        XCTAssertTrue(full.granted)
        guard case .request(let fast) = try phone.fastStart(lockID: entrance, action: .open, at: bench.now) else { return XCTFail() }
        var mark = try await bench.mark()
        let granted = try fast.result(try await c.fast(fast.request))
        XCTAssertTrue(granted.granted)
        try await bench.expectOneDecision(at: entrance, after: mark, granted: true, reason: nil, decision: c.lastDecision)

        let attacker = try await connect()
        mark = try await bench.mark()
        let replay = try TapResultMessage(decoding: try await attacker.fast(fast.request))
        XCTAssertEqual(replay.granted, false)
        XCTAssertEqual(replay.reason, "replayed")
        let e = try await bench.expectOneDecision(at: entrance, after: mark, reason: "replayed", decision: attacker.lastDecision)
        XCTAssertNil(e.event.user, "a replay names nobody")
        XCTAssertNil(e.event.keyID)

        // A request held back while a newer one went through: its counter is spent as well.
        guard case .request(let older) = try phone.fastStart(lockID: entrance, action: .open, at: bench.now),
              case .request(let newer) = try phone.fastStart(lockID: entrance, action: .open, at: bench.now) else { return XCTFail() }
        let newerResult = try await c.fast(newer.request)
        XCTAssertTrue(try newer.result(newerResult).granted)
        mark = try await bench.mark()
        let olderResult = try await attacker.fast(older.request)
        XCTAssertEqual(try TapResultMessage(decoding: olderResult).reason, "replayed")
        try await bench.expectOneDecision(at: entrance, after: mark, reason: "replayed", decision: attacker.lastDecision)

        // Held back over 60 s (a relay): stale, one event, naming nobody.
        guard case .request(let relayed) = try phone.fastStart(lockID: entrance, action: .open, at: bench.now) else { return XCTFail() }
        await bench.clock.advance(by: TapFast.requestLifetime + 1)
        mark = try await bench.mark()
        let relayedResult = try await attacker.fast(relayed.request)
        XCTAssertEqual(try TapResultMessage(decoding: relayedResult).reason, "nonce_expired")
        let stale = try await bench.expectOneDecision(at: entrance, after: mark, reason: "nonce_expired", decision: attacker.lastDecision)
        XCTAssertNil(stale.event.user)
    }

    /// A FAST key made with another lock: under its own key id it is unknown here (0x86, nothing
    /// recorded, the phone would fall back); under a key id this lock made, its MAC fails — `tampered`,
    /// one event naming nobody, and the result carries no MAC.
    func testAFastKeyFromAnotherLockIsRefused() async throws {
        let other = "room-dolores"
        let ring = TapFastKeyring(), phone = try bench.fastPhone(try await adaKey([entrance, other]), keyring: ring)
        let here = try await connect().fullTap(phone, at: bench.now), there = try await connect(other).fullTap(phone, at: bench.now)
        XCTAssertTrue(here.granted && there.granted)
        let theirs = try XCTUnwrap(ring.entry(for: other)), ours = try XCTUnwrap(ring.entry(for: entrance))
        guard case .request(let misdirected) = try phone.fastStart(lockID: other, action: .open, at: bench.now) else { return XCTFail() }
        try await expectNoDecision(misdirected.request, code: LockGATT.ApplicationError.fastKeyUnknown)

        let forged = try phone.fastRequest(TapFastKey(keyID: ours.key.keyID, key: theirs.key.key), lockID: entrance, counter: 1000,
                                           action: .open, at: bench.now)
        let c = try await connect()
        let mark = try await bench.mark()
        let r = try TapResultMessage(decoding: try await c.fast(forged.request))
        XCTAssertEqual(r.reason, "tampered")
        XCTAssertNil(r.mac)
        let e = try await bench.expectOneDecision(at: entrance, after: mark, reason: "tampered", decision: c.lastDecision)
        XCTAssertNil(e.event.user)
        // The genuine key still works: the forgery spent no counter.
        guard case .request(let genuine) = try phone.fastStart(lockID: entrance, action: .open, at: bench.now) else { return XCTFail() }
        let genuineResult = try await c.fast(genuine.request)
        XCTAssertTrue(try genuine.result(genuineResult).granted)
    }

    /// After the key is revoked and the list reaches the lock, a FAST request (the phone's own, or a
    /// copy) is answered 0x87 with nothing recorded — never a grant — and the key is gone; the phone's
    /// full exchange that follows is `revoked`, one event naming the key.
    func testFastAfterRevocationFallsBackAndIsRevoked() async throws {
        let key = try await adaKey()
        let ring = TapFastKeyring(), phone = try bench.fastPhone(key, keyring: ring)
        let full = try await connect().fullTap(phone, at: bench.now)
        XCTAssertTrue(full.granted)
        guard case .request(let fast) = try phone.fastStart(lockID: entrance, action: .open, at: bench.now) else { return XCTFail() }
        _ = try await bench.emu.revokeKey(key.keyID)
        _ = try await bench.emu.iqSync("iq-lobby")
        try await expectNoDecision(fast.request, code: LockGATT.ApplicationError.fastRevocationListChanged)
        try await expectNoDecision(fast.request, code: LockGATT.ApplicationError.fastKeyUnknown)
        let mark = try await bench.mark()
        let report = try await bench.emu.tapWithKeyReport(key.keyID, lock: entrance)
        XCTAssertEqual(report.mode, .full)
        let e = try await bench.expectOneDecision(at: entrance, after: mark, reason: "revoked", decision: report.decision)
        XCTAssertEqual(e.event.keyID, key.keyID)
    }

    /// After re-provisioning, a FAST request made under the old identity is unknown (0x86, nothing
    /// recorded, never a grant); the phone's full exchange that follows is granted, one event.
    func testFastAfterReProvisioningFallsBack() async throws {
        let ring = TapFastKeyring(), phone = try bench.fastPhone(try await adaKey(), keyring: ring)
        let full = try await connect().fullTap(phone, at: bench.now)
        XCTAssertTrue(full.granted)
        guard case .request(let fast) = try phone.fastStart(lockID: entrance, action: .open, at: bench.now) else { return XCTFail() }
        try await reprovision()
        try await expectNoDecision(fast.request, code: LockGATT.ApplicationError.fastKeyUnknown)
        let c = try await connect()
        let mark = try await bench.mark()
        let again = try await c.fullTap(phone, at: bench.now)
        XCTAssertTrue(again.granted)
        try await bench.expectOneDecision(at: entrance, after: mark, granted: true, reason: nil, decision: c.lastDecision)
    }

    /// Garbage on the FAST characteristic is one `malformed_presentation` event; a version 1 map is
    /// `protocol_version_unsupported`.
    func testMalformedFastRequestsAreOneEventEach() async throws {
        for (bytes, reason) in [([UInt8](repeating: 0xff, count: 20), "malformed_presentation"),
                                (CBOR.map([1: .int(1), 2: .bytes([1])]).encoded(), "protocol_version_unsupported")] {
            let c = try await connect()
            let mark = try await bench.mark()
            let r = try TapResultMessage(decoding: try await c.fast(bytes))
            XCTAssertEqual(r.reason, reason)
            try await bench.expectOneDecision(at: entrance, after: mark, reason: reason, decision: c.lastDecision)
        }
    }
}
