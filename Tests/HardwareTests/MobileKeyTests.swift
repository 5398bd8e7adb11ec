import Foundation
import XCTest
@testable import Hardware
import KeywayCrypto
@_spi(NonConformantPhone) import MobileKey

/// Mobile keys at the lock, through the real tap protocol (reader hello, encrypted presentation,
/// proof of possession, authenticated result) — the lock verifies offline with its own clock and the
/// revocation list it holds.
final class MobileKeyAtTheLockTests: XCTestCase {
    var clock: SimulatedClock!
    var log: RecordLog!
    var site: Site!
    var keys: TestKeys!
    let start = at("2025-01-06T10:00:00-08:00")

    override func setUp() async throws {
        clock = SimulatedClock(start: start)
        log = RecordLog()
        let config = try SiteFile.load(path: coworkingPath)
        keys = try TestKeys(siteID: config.siteID, lockIDs: config.locks.map(\.id), now: start)
        site = Site(config: config, clock: clock, sink: log.sink, tapIdentities: keys.identities, issuer: keys.issuer)
        await site.start()
    }

    func testBookingKeyIsValidOnlyInsideItsGraceWindow() async throws {
        // Golden Gate booked 12:00–16:00 with Spacebring's ±30 min grace: valid 11:30–16:30.
        let booking = ValidityWindow.booking(start: at("2025-01-06T12:00:00-08:00"), end: at("2025-01-06T16:00:00-08:00"), grace: 30 * 60)
        let (phone, _) = try keys.phone(user: "u-linus", locks: ["room-golden-gate"], validity: booking, at: start)
        let room = site.lock("room-golden-gate")!
        // The lock tolerates 60 s of clock skew, so probe beyond it.
        let cases: [(String, Reason?)] = [
            ("2025-01-06T11:28:00-08:00", .notYetValid),
            ("2025-01-06T11:31:00-08:00", nil),
            ("2025-01-06T14:00:00-08:00", nil),
            ("2025-01-06T16:29:00-08:00", nil),
            ("2025-01-06T16:32:00-08:00", .expired),
        ]
        for (time, expected) in cases {
            await clock.set(to: at(time))
            let (d, result) = try await tap(phone, on: room)
            XCTAssertEqual(d.reason, expected, time)
            XCTAssertEqual(d.granted, expected == nil, time)
            XCTAssertEqual(result.granted, d.granted, "the phone reads the same verdict")
            XCTAssertEqual(d.userID, "u-linus", "authentic claims name the user even on denial")
            if d.granted { XCTAssertEqual(result.openMilliseconds, 7000) }
        }
        // Inside its window, the key still does not open another room (a non-conformant phone
        // presents it there anyway; a conformant one refuses the lock before revealing anything).
        await clock.set(to: at("2025-01-06T14:00:00-08:00"))
        let other = try await tap(phone.nonConformant(), on: site.lock("room-dolores")!)
        XCTAssertEqual(other.0.reason, Reason(DenialReason.wrongLock))
    }

    func testRevokedKeyIsDeniedOnlyAfterTheIQPushedTheNewListAndTheRecordSaysWhichVersion() async throws {
        let validity = ValidityWindow(notBefore: start.addingTimeInterval(-3600), expires: start.addingTimeInterval(30 * 86_400))
        let (phone, issued) = try keys.phone(user: "u-barbara", locks: ["room-dolores", "storage-basement"],
                                             validity: validity, at: start)
        let room = site.lock("room-dolores")!, storage = site.lock("storage-basement")!
        let (ok, _) = try await tap(phone, on: room)
        XCTAssertTrue(ok.granted)
        XCTAssertEqual(ok.record.revocationListVersion, 0)

        let version = try await site.directory.revoke(keyIDs: [issued.credential.keyID])
        XCTAssertEqual(version, 1)
        // Revoked upstream, but the lock has not heard yet: it still opens, and says it held list 0.
        await clock.advance(by: 30)
        let (stale, _) = try await tap(phone, on: room)
        XCTAssertTrue(stale.granted)
        XCTAssertEqual(stale.record.revocationListVersion, 0)

        // The lobby IQ's next sync pushes list 1.
        await clock.advance(by: 30)
        let held = await room.revocationListVersion
        XCTAssertEqual(held, 1)
        let update = log.last("room-dolores", .revocationListUpdated)
        XCTAssertEqual(update?.revocationListVersion, 1)
        XCTAssertEqual(update?.iqID, "iq-lobby")
        let (denied, result) = try await tap(phone, on: room)
        XCTAssertFalse(denied.granted)
        XCTAssertEqual(denied.reason, .revoked)
        XCTAssertEqual(denied.record.revocationListVersion, 1)
        XCTAssertEqual(denied.keyID, Hex.encode(issued.credential.keyID))
        XCTAssertEqual(result.reason, "revoked")

        // The basement lock, out of every IQ's reach, still holds list 0 and still opens.
        await clock.advance(by: 600)
        let (offline, _) = try await tap(phone, on: storage)
        XCTAssertTrue(offline.granted)
        XCTAssertEqual(offline.record.revocationListVersion, 0)
    }

    func testAForgedOrOlderRevocationListIsRefusedByTheLock() async throws {
        let room = site.lock("room-dolores")!
        // Signed by another issuer.
        let rogue = CredentialIssuer(siteID: "sf-mission", key: try P256.PrivateKey())
        let list = try RevocationList.empty(siteID: "sf-mission").revoking([[UInt8](repeating: 7, count: 16)], issuedAt: start)
        let held = try await room.installRevocationList(signed: try rogue.sign(list), via: "iq-x")
        XCTAssertEqual(held, 0)
        XCTAssertEqual(log.last("room-dolores", .revocationListUpdated)?.result, .denied)
        // Genuine v1 accepted; replaying v1 changes nothing.
        let genuine = try keys.issuer.sign(list)
        let v1 = try await room.installRevocationList(signed: genuine, via: "iq-x")
        XCTAssertEqual(v1, 1)
        let again = try await room.installRevocationList(signed: genuine, via: "iq-x")
        XCTAssertEqual(again, 1)
    }

    func testOfficeModeFromThePhoneNeedsTheRight() async throws {
        let validity = ValidityWindow(notBefore: start, expires: start.addingTimeInterval(86_400))
        let (member, _) = try keys.phone(user: "u-ada", locks: ["office-101"], validity: validity, at: start)
        let (staff, _) = try keys.phone(user: "u-margaret", locks: ["office-101"], validity: validity, officeMode: true, at: start)
        let office = site.lock("office-101")!
        let (refused, _) = try await tap(member, on: office, action: .officeModeOn)
        XCTAssertEqual(refused.reason, .actionNotPermitted)
        let (on, _) = try await tap(staff, on: office, action: .officeModeOn)
        XCTAssertEqual(on.outcome, .officeModeStarted)
        await clock.advance(by: 3600)
        let s = await office.state
        XCTAssertEqual(s, .officeMode)
        let (off, _) = try await tap(staff, on: office, action: .officeModeOff)
        XCTAssertEqual(off.outcome, .officeModeEnded)
        XCTAssertEqual(log.last("office-101", .officeModeEnded)?.method, .mobile)
    }

    func testTapNeedsThePhoneWithinReachAndProvisionedKeys() async throws {
        let lock = site.lock("main-entrance")!   // wall reader: 10 cm
        let hello = try TapPhone(credential: [], holderKey: try P256.PrivateKey(), siteID: "s", trustedIssuers: TrustedIssuers([])).open().phoneHello
        _ = try await lock.beginTap(phoneHello: hello, distance: 0.09)
        await XCTAssertThrowsAsync(try await lock.beginTap(phoneHello: hello, distance: 0.2)) { e in
            XCTAssertEqual(e as? HardwareError, .outOfReach(lockID: "main-entrance", distance: 0.2, reach: 0.1))
        }
        let bare = Site(config: site.config, clock: clock)
        await XCTAssertThrowsAsync(try await bare.lock("main-entrance")!.beginTap(phoneHello: hello)) { e in
            XCTAssertEqual(e as? HardwareError, .mobileKeysNotProvisioned(lockID: "main-entrance"))
        }
    }

    /// Protocol v2 at the lock: a phone hello of version 1, or one that is not valid, is a failed tap
    /// recorded once with its reason; a version 1 phone (it reads the hello first) likewise.
    func testAPhoneHelloTheLockCannotAnswerIsRecordedOnce() async throws {
        let lock = site.lock("main-entrance")!
        let key = try P256.PrivateKey().publicKey.uncompressed
        let cases: [(String, [UInt8], String)] = [
            ("version 1", CBOR.map([1: .int(1), 2: .bytes(key), 3: .bytes([UInt8](repeating: 1, count: 16))]).encoded(), "protocol_version_unsupported"),
            ("junk", [0xff], "malformed_phone_hello"),
            ("compressed key", CBOR.map([1: .int(2), 2: .bytes([0x02] + key[1..<33] + key[1..<33]), 3: .bytes([UInt8](repeating: 1, count: 16))]).encoded(),
             "malformed_phone_hello"),
        ]
        for (name, hello, reason) in cases {
            let before = log.all.count
            await XCTAssertThrowsAsync(try await lock.beginTap(phoneHello: hello)) { e in
                XCTAssertEqual((e as? TapRefused)?.decision.reason?.rawValue, reason, name)
            }
            XCTAssertEqual(log.all.count, before + 1, name)
            XCTAssertEqual(log.all.last?.reason?.rawValue, reason, name)
        }
        let before = log.all.count
        let d = try await lock.refuseVersion1Tap()
        XCTAssertEqual(d.reason?.rawValue, "protocol_version_unsupported")
        XCTAssertEqual(log.all.count, before + 1)
        await XCTAssertThrowsAsync(try await lock.refuseVersion1Tap(distance: 5)) { e in
            guard case .outOfReach? = e as? HardwareError else { return XCTFail("\(e)") }
        }
        XCTAssertEqual(log.all.count, before + 1, "nothing recorded out of reach")
    }

    /// Re-provisioned between the phone's hello and its presentation: the session of the old keys
    /// answers nothing (`nonce_unknown`, one record), and a new tap under the new keys works.
    func testASessionFromBeforeReProvisioningIsRefused() async throws {
        let validity = ValidityWindow(notBefore: start, expires: start.addingTimeInterval(86_400))
        let (phone, _) = try keys.phone(user: "u-ada", locks: ["room-valencia"], validity: validity, at: start)
        let lock = site.lock("room-valencia")!
        let opening = try phone.open()
        let session = try await lock.beginTap(phoneHello: opening.phoneHello)
        let pending = try opening.present(readerHello: session.helloBytes, action: .open, at: start)
        let old = try XCTUnwrap(keys.identities["room-valencia"])
        await lock.provision(TapLockIdentity(lockID: old.lockID, deviceKey: old.deviceKey, certificate: old.certificate, verifier: old.verifier))
        let before = log.all.count
        let outcome = try await lock.finishTap(session, presentation: pending.presentation)
        XCTAssertEqual(outcome.decision.reason?.rawValue, "nonce_unknown")
        XCTAssertEqual(log.all.count, before + 1)
        let (fresh, _) = try await tap(phone, on: lock)
        XCTAssertTrue(fresh.granted)
    }

    func testAReplayedPresentationIsDeniedAndRecorded() async throws {
        let validity = ValidityWindow(notBefore: start, expires: start.addingTimeInterval(86_400))
        let (phone, _) = try keys.phone(user: "u-ada", locks: ["room-valencia"], validity: validity, at: start)
        let lock = site.lock("room-valencia")!
        let opening = try phone.open()
        let session = try await lock.beginTap(phoneHello: opening.phoneHello)
        let pending = try opening.present(readerHello: session.helloBytes, action: .open, at: start)
        let first = try await lock.finishTap(session, presentation: pending.presentation)
        XCTAssertTrue(first.decision.granted)
        let second = try await lock.finishTap(session, presentation: pending.presentation)
        XCTAssertEqual(second.decision.reason?.rawValue, "replayed")
        XCTAssertEqual(log.last("room-valencia", .accessDenied)?.reason?.rawValue, "replayed")
    }
}
