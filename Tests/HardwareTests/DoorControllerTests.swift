import Foundation
import XCTest
@testable import Hardware

final class DoorControllerTests: XCTestCase {
    var clock: SimulatedClock!
    var log: RecordLog!
    var site: Site!

    override func setUp() async throws {
        clock = SimulatedClock(start: at("2025-01-06T10:00:00-08:00"))
        log = RecordLog()
        site = try Site.load(path: coworkingPath, clock: clock, sink: log.sink)
    }

    var back: DoorController { site.doorController(forLock: "back-door")! }   // mag lock
    var side: DoorController { site.doorController(forLock: "side-door")! }   // fail-secure strike
    let ada = tag("04:A2:3B:1C:5D:80")        // member
    let margaret = tag("04:D4:E1:72:3B:6F:80") // staff

    func testMagLockDoorIsReleasedByAPowerCutAndAStrikeDoorStaysLocked() async throws {
        let backLock = site.lock("back-door")!, sideLock = site.lock("side-door")!
        let b0 = await back.status, s0 = await side.status
        XCTAssertTrue(b0.relayEnergised, "a mag lock is energised to hold")
        XCTAssertFalse(b0.doorFree)
        XCTAssertFalse(s0.relayEnergised, "a fail-secure strike is energised only to release")
        XCTAssertFalse(s0.doorFree)

        await back.setPower(false)
        await side.setPower(false)

        let b1 = await back.status, s1 = await side.status
        XCTAssertFalse(b1.relayEnergised)
        XCTAssertTrue(b1.doorFree, "mag lock releases on power loss (fail-safe)")
        XCTAssertFalse(s1.doorFree, "fail-secure strike stays locked")
        let backState = await backLock.state, sideState = await sideLock.state
        XCTAssertEqual(backState, .unlocked)
        XCTAssertEqual(sideState, .locked)
        XCTAssertEqual(log.last("back-door", .unlocked)?.reason, .powerLost)
        XCTAssertNil(log.last("side-door", .unlocked))
        XCTAssertEqual(log.last("ctl-back-door", .powerLost)?.lockID, "back-door")
        XCTAssertEqual(log.last("ctl-side-door", .powerLost)?.detail, "electric_strike_fail_secure keeps the door locked (fail-secure)")

        // Opening the released mag-lock door is not forced.
        try await back.setDoor(open: false)  // already closed: no-op
        await XCTAssertThrowsAsync(try await sideLock.presentTag(self.ada, distance: 0.05)) { e in
            XCTAssertEqual(e as? HardwareError, .unpowered(deviceID: "side-door", reason: .noPower), "the reader is dark")
        }

        await back.setPower(true)
        await side.setPower(true)
        let backAfter = await backLock.state
        XCTAssertEqual(backAfter, .locked)
        XCTAssertEqual(log.last("back-door", .locked)?.reason, .powerRestored)
        let s2 = try await sideLock.presentTag(ada)
        XCTAssertTrue(s2.granted)
        let s3 = await side.status
        XCTAssertTrue(s3.relayEnergised && s3.doorFree, "the strike is energised to release on a grant")
    }

    func testFailSecureStrikeLocksWhenPowerFailsMidOpening() async throws {
        let sideLock = site.lock("side-door")!
        try await sideLock.presentTag(ada)
        let open = await sideLock.state
        XCTAssertEqual(open, .unlocked)
        await side.setPower(false)
        let cut = await sideLock.state
        XCTAssertEqual(cut, .locked)
        XCTAssertEqual(log.last("side-door", .locked)?.reason, .powerLost)
    }

    func testForcedDoor() async throws {
        try await side.setDoor(open: true)
        let alarm = await side.currentAlarm
        XCTAssertEqual(alarm, .forcedOpen)
        let forced = log.last("ctl-side-door", .doorForcedOpen)
        XCTAssertEqual(forced?.lockID, "side-door")
        XCTAssertEqual(forced?.reason, "door_forced_open")
        let state = await site.lock("side-door")!.state
        XCTAssertEqual(state, .uncertain, "a strike cannot secure an open door")
        try await side.setDoor(open: false)
        let cleared = await side.currentAlarm
        XCTAssertNil(cleared)
        XCTAssertEqual(log.last("ctl-side-door", .doorClosed)?.detail, "forced_open alarm cleared")
        let relocked = await site.lock("side-door")!.state
        XCTAssertEqual(relocked, .locked)
    }

    func testGrantedOrExitOpeningIsNotForced() async throws {
        let backLock = site.lock("back-door")!
        let denied = try await backLock.presentTag(ada)
        XCTAssertEqual(denied.reason, .unknownTag, "the back door is staff only")
        try await backLock.presentTag(margaret)
        try await back.setDoor(open: true)
        try await back.setDoor(open: false)
        let exit = try await back.pressRequestToExit()
        XCTAssertEqual(exit.method, .exitButton)
        XCTAssertTrue(exit.granted)
        try await back.setDoor(open: true)
        try await back.setDoor(open: false)
        XCTAssertEqual(log.kinds("ctl-back-door"), [.doorOpened, .doorClosed, .doorOpened, .doorClosed])
        XCTAssertEqual(log.last("back-door", .accessGranted)?.method, .exitButton)
    }

    func testHeldOpenAlarm() async throws {
        let backLock = site.lock("back-door")!   // held_open_limit_s 30, open time 7
        try await backLock.presentTag(margaret)
        try await back.setDoor(open: true)
        await clock.advance(by: 7)
        let ajar = await backLock.state
        XCTAssertEqual(ajar, .uncertain, "relocked with the door standing open")
        XCTAssertEqual(log.last("back-door", .lockUncertain)?.reason, .openTimeElapsed)
        await clock.advance(by: 22.9)
        let none = await back.currentAlarm
        XCTAssertNil(none)
        await clock.advance(by: 0.1)
        let held = await back.currentAlarm
        XCTAssertEqual(held, .heldOpen)
        let rec = log.last("ctl-back-door", .doorHeldOpen)
        XCTAssertEqual(rec?.time, at("2025-01-06T10:00:30-08:00"))
        XCTAssertEqual(rec?.reason, .heldOpenLimit)
        try await back.setDoor(open: false)
        let cleared = await back.currentAlarm
        XCTAssertNil(cleared)
        let closedState = await backLock.state
        XCTAssertEqual(closedState, .locked)
        XCTAssertEqual(log.last("back-door", .locked)?.reason, .doorClosed)
    }

    func testNoHeldOpenAlarmInOfficeMode() async throws {
        let backLock = site.lock("back-door")!
        let d = try await backLock.presentTag(margaret, action: .officeModeOn)
        XCTAssertEqual(d.outcome, .officeModeStarted)
        try await back.setDoor(open: true)
        await clock.advance(by: 600)
        let alarm = await back.currentAlarm
        XCTAssertNil(alarm)
        XCTAssertNil(log.last("ctl-back-door", .doorHeldOpen))
    }

    func testInputsTheControllerDoesNotHave() async throws {
        let yaml = """
        organisation: o
        site: {id: s, time_zone: UTC}
        locks: [{id: d, kind: wall_reader, position: {x: 0, y: 0}}]
        door_controllers: [{id: c, lock: d, relay: electric_strike_fail_safe, door_position_switch: false, request_to_exit: false}]
        """
        let s = Site(config: try SiteFile.parse(yaml: yaml), clock: clock)
        let c = s.doorController("c")!
        await XCTAssertThrowsAsync(try await c.setDoor(open: true)) { XCTAssertEqual($0 as? HardwareError, .noDoorPositionSwitch(controllerID: "c")) }
        await XCTAssertThrowsAsync(try await c.pressRequestToExit()) { XCTAssertEqual($0 as? HardwareError, .noRequestToExit(controllerID: "c")) }
        // Fail-safe strike: energised while locked, released by a power cut.
        let before = await c.status
        XCTAssertTrue(before.relayEnergised)
        await c.setPower(false)
        let after = await c.status
        XCTAssertTrue(after.doorFree)
        XCTAssertNil(after.doorOpen)
    }
}
