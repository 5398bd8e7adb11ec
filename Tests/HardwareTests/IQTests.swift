import Foundation
import XCTest
@testable import Hardware
import MobileKey

final class IQTests: XCTestCase {
    var clock: SimulatedClock!
    var log: RecordLog!
    var collected: Collected!
    var site: Site!
    var keys: TestKeys!
    let start = at("2025-01-06T10:00:00-08:00")
    let margaret = tag("04:D4:E1:72:3B:6F:80")   // staff: every door
    let ada = tag("04:A2:3B:1C:5D:80")           // member

    override func setUp() async throws {
        clock = SimulatedClock(start: start)
        log = RecordLog()
        collected = Collected()
        let config = try SiteFile.load(path: coworkingPath)
        keys = try TestKeys(siteID: config.siteID, lockIDs: config.locks.map(\.id), now: start)
        site = Site(config: config, clock: clock, sink: log.sink, collector: collected.collector,
                    tapIdentities: keys.identities, issuer: keys.issuer)
        await site.start()
    }

    func testLockOutOfReachWorksOfflineAndItsTrailArrivesWhenAnIQIsMovedNear() async throws {
        let storage = site.lock("storage-basement")!
        let d = try await storage.presentTag(margaret)
        XCTAssertTrue(d.granted, "decided offline from the commissioned access list")
        await clock.advance(by: 10)
        // Several sync rounds pass; no IQ reaches the basement.
        await clock.advance(by: 300)
        XCTAssertEqual(collected.records(lock: "storage-basement"), [])
        let pending = await storage.status
        XCTAssertEqual(pending.trailCount, 3)
        // Meanwhile reachable locks are collected.
        try await site.lock("room-dolores")!.presentTag(ada)
        await clock.advance(by: 60)
        XCTAssertEqual(collected.records(lock: "room-dolores").map(\.kind), [.accessGranted, .unlocked, .locked])
        XCTAssertEqual(collected.iqs(lock: "room-dolores"), ["iq-lobby"])

        // Carry the lounge IQ down to the basement: it sees the lock at once and collects its trail.
        try await site.moveIQ("iq-lounge", to: Position(x: 38, y: 28, z: -1.5))
        let reaching = try await site.iqsReaching(lock: "storage-basement")
        XCTAssertEqual(reaching, ["iq-lounge"])
        let arrived = collected.records(lock: "storage-basement")
        XCTAssertEqual(arrived.map(\.kind), [.accessGranted, .unlocked, .locked])
        XCTAssertEqual(arrived.first?.userID, "u-margaret")
        XCTAssertEqual(arrived.first?.time, start, "records keep the lock time at which they happened")
        XCTAssertEqual(collected.iqs(lock: "storage-basement"), ["iq-lounge"])
        let after = await storage.status
        XCTAssertEqual(after.trailCount, 0)
        XCTAssertEqual(log.last("iq-lounge", .trailCollected)?.lockID, "storage-basement")
        // The locks the lounge IQ left behind are now out of every IQ's reach.
        let out = await site.locksOutOfReach()
        XCTAssertTrue(out.contains("back-door"))
        XCTAssertFalse(out.contains("storage-basement"))
    }

    func testALockCommissionedOnAWeakBatteryReportsItOnceAtStart() async throws {
        let valencia = site.lock("room-valencia")!   // 18 %, threshold 20
        await valencia.resume()
        let low = log.last("room-valencia", .batteryLow)
        XCTAssertEqual(low?.batteryLevel, 18)
        await valencia.resume()
        XCTAssertEqual(log.kinds("room-valencia").filter { $0 == .batteryLow }.count, 1, "once, not at every start")
        await site.lock("room-dolores")!.resume()   // 64 %
        XCTAssertNil(log.last("room-dolores", .batteryLow))
    }

    func testMovingTheLockIntoReachWorksToo() async throws {
        let storage = site.lock("storage-basement")!
        try await storage.presentTag(margaret)
        try await site.moveLock("storage-basement", to: Position(x: 20, y: 10))
        XCTAssertEqual(collected.records(lock: "storage-basement").count, 2, "granted + unlocked (still open)")
        let pos = await storage.currentPosition
        XCTAssertEqual(pos, Position(x: 20, y: 10))
        await XCTAssertThrowsAsync(try await self.site.moveLock("storage-basement", to: Position(x: .nan, y: 0)))
    }

    func testOfflineIQCollectsNothingAndCannotOpenRemotely() async throws {
        let lobby = site.iq("iq-lobby")!
        await lobby.setOnline(false)
        // Margaret's fob has offline access: it still opens a lock whose only IQ is offline.
        try await site.lock("room-golden-gate")!.presentTag(margaret)
        await clock.advance(by: 120)
        XCTAssertEqual(collected.records(lock: "room-golden-gate"), [])
        await XCTAssertThrowsAsync(try await lobby.remote(lockID: "main-entrance", userID: "u-ada")) { e in
            XCTAssertEqual(e as? HardwareError, .iqOffline(iqID: "iq-lobby"))
        }
        // Back online: syncs at once.
        let report = await lobby.setOnline(true)
        XCTAssertEqual(report?.recordsCollected, 3)
        XCTAssertEqual(collected.records(lock: "room-golden-gate").count, 3)
        XCTAssertEqual(log.kinds("iq-lobby").prefix(2), [.iqOffline, .iqOnline])
        let opened = try await lobby.remote(lockID: "main-entrance", userID: "u-ada")
        XCTAssertTrue(opened.granted)
        XCTAssertEqual(opened.method, .remote)
        XCTAssertEqual(opened.record.iqID, "iq-lobby")
        XCTAssertEqual(log.last("iq-lobby", .remoteOpenRequested)?.result, .granted)
    }

    func testRemoteOpeningOnlyToALockInReach() async throws {
        let lobby = site.iq("iq-lobby")!
        await XCTAssertThrowsAsync(try await lobby.remote(lockID: "back-door", userID: "u-ken")) { e in
            XCTAssertEqual(e as? HardwareError, .notInReach(lockID: "back-door", iqID: "iq-lobby"))
        }
        XCTAssertEqual(log.last("iq-lobby", .remoteOpenRequested)?.reason, .notInReach)
        let lounge = site.iq("iq-lounge")!
        let d = try await lounge.remote(lockID: "back-door", userID: "u-ken")
        XCTAssertTrue(d.granted)
        let relay = await site.doorController("ctl-back-door")!.status
        XCTAssertTrue(relay.doorFree, "the remote grant released the mag lock")
    }

    func testActivationByPIN() async throws {
        let lobby = site.iq("iq-lobby")!
        try await lobby.deactivate()
        await XCTAssertThrowsAsync(try await lobby.remote(lockID: "main-entrance", userID: nil)) { e in
            XCTAssertEqual(e as? HardwareError, .iqNotActivated(iqID: "iq-lobby"))
        }
        let skipped = await lobby.syncNow()
        XCTAssertEqual(skipped.skipped, .iqNotActivated)
        await XCTAssertThrowsAsync(try await lobby.activate(pin: "000000")) { e in
            XCTAssertEqual(e as? HardwareError, .wrongActivationPIN(iqID: "iq-lobby"))
        }
        let failed = log.last("iq-lobby", .iqActivationFailed)
        XCTAssertEqual(failed?.reason, .wrongActivationPIN)
        XCTAssertFalse("\(String(describing: failed))".contains("000000"), "the offered PIN is not recorded")
        try await lobby.activate(pin: "482913")
        let active = await lobby.isActivated
        XCTAssertTrue(active)
        let d = try await lobby.remote(lockID: "main-entrance", userID: nil)
        XCTAssertTrue(d.granted)
    }

    func testWrongActivationPINsAreCountedThenLockActivationAndOnlyTheActivatorDeactivates() async throws {
        let lounge = site.iq("iq-lounge")!
        try await lounge.deactivate(by: "u-ada")   // activated by the site file: anyone may
        XCTAssertEqual(log.last("iq-lounge", .iqDeactivated)?.userID, "u-ada")
        for n in 1...4 {
            await XCTAssertThrowsAsync(try await lounge.activate(pin: "111111", by: "u-ken")) { e in
                XCTAssertEqual(e as? HardwareError, .wrongActivationPIN(iqID: "iq-lounge"))
            }
            let s = await lounge.status
            XCTAssertEqual(s.failedActivationAttempts, n)
            XCTAssertNil(s.activationLockedUntil)
            XCTAssertEqual(log.last("iq-lounge", .iqActivationFailed)?.count, UInt64(n))
        }
        // A right PIN resets the count…
        try await lounge.activate(pin: "775120", by: "u-ken")
        var s = await lounge.status
        XCTAssertEqual(s.failedActivationAttempts, 0)
        XCTAssertEqual(s.activatedBy, "u-ken")
        XCTAssertEqual(log.last("iq-lounge", .iqActivated)?.userID, "u-ken")
        // … the same user again changes nothing; another user is refused.
        try await lounge.activate(pin: "775120", by: "u-ken")
        await XCTAssertThrowsAsync(try await lounge.activate(pin: "775120", by: "u-margaret")) { e in
            XCTAssertEqual(e as? HardwareError, .iqAlreadyActivated(iqID: "iq-lounge", by: "u-ken"))
        }
        // Only the activator deactivates; a refusal is the platform's and the IQ records nothing.
        let before = log.of("iq-lounge").count
        await XCTAssertThrowsAsync(try await lounge.deactivate(by: "u-margaret")) { e in
            XCTAssertEqual(e as? HardwareError, .notActivatingUser(iqID: "iq-lounge", user: "u-margaret"))
        }
        XCTAssertEqual(log.of("iq-lounge").count, before)
        let still = await lounge.isActivated
        XCTAssertTrue(still)
        try await lounge.deactivate(by: "u-ken")
        s = await lounge.status
        XCTAssertFalse(s.activated)
        XCTAssertNil(s.activatedBy)

        // Five wrong PINs in a row lock activation for 15 minutes: even the right PIN is refused, unchecked
        // and uncounted, and recorded as such.
        for _ in 1...5 { _ = try? await lounge.activate(pin: "000000", by: "u-ada") }
        s = await lounge.status
        XCTAssertEqual(s.failedActivationAttempts, 5)
        XCTAssertEqual(s.activationLockedUntil, clock.now().addingTimeInterval(IQ.activationLockout))
        await XCTAssertThrowsAsync(try await lounge.activate(pin: "775120", by: "u-ken")) { e in
            guard case .activationLockedOut(let iq, _)? = e as? HardwareError else { return XCTFail("\(e)") }
            XCTAssertEqual(iq, "iq-lounge")
        }
        XCTAssertEqual(log.last("iq-lounge", .iqActivationFailed)?.reason, .activationLockedOut)
        let locked = await lounge.status
        XCTAssertEqual(locked.failedActivationAttempts, 5)
        XCTAssertFalse(locked.activated)
        await clock.advance(by: IQ.activationLockout)
        try await lounge.activate(pin: "775120", by: "u-ken")
        s = await lounge.status
        XCTAssertTrue(s.activated)
        XCTAssertEqual(s.failedActivationAttempts, 0)
        XCTAssertNil(s.activationLockedUntil)
    }

    func testAccessListChangesReachLocksOnlyThroughAnIQ() async throws {
        let newTag = tag("04:77:77:77")
        try await site.directory.upsertUser(UserConfig(id: "u-new", tags: [newTag], groups: ["staff"]))
        let dolores = site.lock("room-dolores")!, storage = site.lock("storage-basement")!
        let before = try await dolores.presentTag(newTag)
        XCTAssertEqual(before.reason, .unknownTag, "not pushed yet")
        await clock.advance(by: 60)   // the next sync
        let after = try await dolores.presentTag(newTag)
        XCTAssertTrue(after.granted)
        XCTAssertEqual(after.record.accessListVersion, 2)
        let offline = try await storage.presentTag(newTag)
        XCTAssertEqual(offline.reason, .unknownTag, "the out-of-reach lock still has version 1")
        XCTAssertEqual(offline.record.accessListVersion, 1)
        XCTAssertEqual(log.last("room-dolores", .accessListUpdated)?.iqID, "iq-lobby")
    }

    func testPeriodicSyncFollowsTheClockAndSyncsTime() async throws {
        let lobby = site.iq("iq-lobby")!
        let room = site.lock("room-golden-gate")!
        try await room.setClockOffset(90)
        await clock.advance(by: 59)
        let notYet = await lobby.status.lastSync
        XCTAssertNil(notYet)
        await clock.advance(by: 1)
        let first = await lobby.status.lastSync
        XCTAssertEqual(first, start.addingTimeInterval(60))
        let offset = await room.status.clockOffset
        XCTAssertEqual(offset, 0)
        XCTAssertEqual(log.last("room-golden-gate", .timeSynced)?.detail, "clock corrected by -90 s")
        await clock.advance(by: 60)
        let second = await lobby.status.lastSync
        XCTAssertEqual(second, start.addingTimeInterval(120))
    }
}
