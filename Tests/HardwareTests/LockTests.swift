import Foundation
import XCTest
@testable import Hardware
import MobileKey

final class LockTests: XCTestCase {
    /// Monday 10:00 in San Francisco.
    let mondayMorning = at("2025-01-06T10:00:00-08:00")

    let siteYAML = """
    organisation: Keyway Labs
    site: {id: sf, time_zone: America/Los_Angeles}
    locks:
      - {id: room, kind: escutcheon, position: {x: 0, y: 0}, lock_schedule: ["daily 20:00"], keypad: true,
         pin_lockout: {attempts: 3, duration_s: 120}, battery: {level: 30, low_threshold: 20}}
      - {id: front, kind: wall_reader, position: {x: 5, y: 0}, open_time_s: 4,
         easy_office_mode: ["mon-fri 08:00-18:00"], lock_schedule: ["daily 22:00"]}
      - {id: locker, kind: locker, position: {x: 9, y: 0}, audit_trail_capacity: 5}
    access_groups:
      - {id: members, locks: all, schedule: 24/7}
      - {id: day, locks: [room, front], schedule: ["mon-fri 09:00-18:00"]}
      - {id: staff, locks: all, schedule: 24/7, office_mode: true}
    users:
      - {id: ada, tags: ["04:00:00:01"], pin: "4821", groups: [members]}
      - {id: linus, tags: ["04:00:00:02"], pin: "7305", groups: [day]}
      - {id: meg, tags: ["04:00:00:03"], pin: "3390", groups: [staff]}
      - {id: alan, tags: ["04:00:00:04"], groups: [members], valid_from: 2025-01-07, valid_until: 2025-01-31}
    """

    var clock: SimulatedClock!
    var log: RecordLog!
    var site: Site!

    override func setUp() async throws {
        clock = SimulatedClock(start: mondayMorning)
        log = RecordLog()
        site = Site(config: try SiteFile.parse(yaml: siteYAML, file: "locks.yaml"), clock: clock, sink: log.sink)
    }

    func lock(_ id: String) -> Lock { site.lock(id)! }

    // MARK: Open time

    func testGrantUnlocksForSevenSecondsThenRelocksByItself() async throws {
        let room = lock("room")
        let d = try await room.presentTag(tag("04:00:00:01"))
        XCTAssertTrue(d.granted)
        XCTAssertEqual(d.outcome, .unlocked)
        XCTAssertEqual(d.openTime, 7)
        XCTAssertEqual(d.userID, "ada")
        XCTAssertEqual(d.method, .tag)
        XCTAssertEqual(d.keyID, "04:00:00:01")
        let state0 = await room.state
        XCTAssertEqual(state0, .unlocked)
        let fb = await room.currentFeedback
        XCTAssertEqual(fb.led, .green)
        XCTAssertEqual(fb.beep, .accepted)

        await clock.advance(by: 6.999)
        let state1 = await room.state
        XCTAssertEqual(state1, .unlocked, "still open just before 7 s")
        await clock.advance(by: 0.001)
        let state2 = await room.state
        XCTAssertEqual(state2, .locked, "relocked at exactly 7 s")
        XCTAssertEqual(log.kinds("room"), [.accessGranted, .unlocked, .locked])
        let relock = log.last("room", .locked)
        XCTAssertEqual(relock?.reason, .openTimeElapsed)
        XCTAssertEqual(relock?.time, mondayMorning.addingTimeInterval(7))
        XCTAssertEqual(log.of("room").map(\.sequence), [1, 2, 3])
        let fbLater = await room.currentFeedback
        XCTAssertEqual(fbLater.led, .off, "the LED goes dark after the display time")
    }

    func testASecondGrantRestartsTheOpenTime() async throws {
        let room = lock("room")
        try await room.presentTag(tag("04:00:00:01"))
        await clock.advance(by: 5)
        try await room.presentTag(tag("04:00:00:01"))
        await clock.advance(by: 5)
        let mid = await room.state
        XCTAssertEqual(mid, .unlocked)
        await clock.advance(by: 2)
        let end = await room.state
        XCTAssertEqual(end, .locked)
        XCTAssertEqual(log.kinds("room"), [.accessGranted, .unlocked, .accessGranted, .locked])
    }

    func testOpenTimeBounds() async throws {
        let room = lock("room")
        for bad in [0, 241, -3] {
            do {
                try await room.setOpenTime(seconds: bad)
                XCTFail("open time \(bad) accepted")
            } catch let e as HardwareError {
                XCTAssertEqual(e, .invalidValue(field: "open_time_s", message: "must be from 1 to 240, got \(bad)"))
            }
        }
        try await room.setOpenTime(seconds: 240)
        try await room.presentTag(tag("04:00:00:01"))
        await clock.advance(by: 239)
        let s1 = await room.state
        XCTAssertEqual(s1, .unlocked)
        await clock.advance(by: 1)
        let s2 = await room.state
        XCTAssertEqual(s2, .locked)
        try await room.setOpenTime(seconds: 1)
        try await room.presentTag(tag("04:00:00:01"))
        await clock.advance(by: 1)
        let s3 = await room.state
        XCTAssertEqual(s3, .locked)
        // The site file's value is used for another lock.
        let d = try await lock("front").presentTag(tag("04:00:00:01"), distance: 0.08)
        XCTAssertEqual(d.openTime, 4)
    }

    // MARK: Denials

    func testDenialsCarryPreciseReasonsAndRedFeedback() async throws {
        let room = lock("room")
        let unknown = try await room.presentTag(tag("DE:AD:BE:EF"))
        XCTAssertEqual(unknown.reason, .unknownTag)
        XCTAssertEqual(unknown.state, .locked)
        let fb = await room.currentFeedback
        XCTAssertEqual(fb.led, .red)
        XCTAssertEqual(fb.beep, .rejected)

        // Day pass outside its window: Monday 08:00 local.
        await clock.set(to: at("2025-01-06T08:00:00-08:00").addingTimeInterval(86_400 * 7))
        let early = try await room.presentTag(tag("04:00:00:02"))
        XCTAssertEqual(early.reason, .outsideSchedule)
        XCTAssertEqual(early.userID, "linus")
        // Not valid before / after the user's dates.
        await clock.set(to: at("2025-02-01T12:00:00-08:00"))
        let expired = try await room.presentTag(tag("04:00:00:04"))
        XCTAssertEqual(expired.reason, .expired)
        let denied = log.of("room").filter { $0.kind == .accessDenied }
        XCTAssertEqual(denied.map(\.reason), [.unknownTag, .outsideSchedule, .expired])
        XCTAssertTrue(denied.allSatisfy { $0.result == .denied && $0.accessListVersion == 1 })
    }

    func testNotYetValidUser() async throws {
        let d = try await lock("room").presentTag(tag("04:00:00:04"))   // valid from Tuesday
        XCTAssertEqual(d.reason, .notYetValid)
    }

    func testReaderReach() async throws {
        let room = lock("room"), front = lock("front")
        do {
            try await room.presentTag(tag("04:00:00:01"), distance: 0.06)
            XCTFail("an escutcheon read a fob 6 cm away")
        } catch let e as HardwareError {
            XCTAssertEqual(e, .outOfReach(lockID: "room", distance: 0.06, reach: 0.05))
        }
        let ok = try await room.presentTag(tag("04:00:00:01"), distance: 0.05)
        XCTAssertTrue(ok.granted)
        let wall = try await front.presentTag(tag("04:00:00:01"), distance: 0.1)
        XCTAssertTrue(wall.granted)
        await XCTAssertThrowsAsync(try await front.presentTag(tag("04:00:00:01"), distance: 0.11))
        // Nothing was recorded for the reads that never happened.
        XCTAssertEqual(log.of("room").filter { $0.kind == .accessGranted || $0.kind == .accessDenied }.count, 1)
    }

    /// A site file can set one lock's reach (`reach_m`): the reader then reads exactly that far, the
    /// refusal names it, and locks without it keep their kind's.
    func testAReachSetInTheSiteFile() async throws {
        let yaml = """
        organisation: Keyway Labs
        site: {id: s1, name: Test site, time_zone: America/Los_Angeles}
        locks:
          - {id: hands-free, kind: cylinder, position: {x: 0, y: 0}, reach_m: 0.3}
          - {id: plain, kind: cylinder, position: {x: 1, y: 0}}
        users:
          - {id: ada, tags: ["04:00:00:01"], groups: [all]}
        access_groups:
          - {id: all, locks: all, schedule: 24/7}
        """
        let config = try SiteFile.parse(yaml: yaml, file: "reach.yaml")
        XCTAssertEqual(config.locks.map(\.reach), [0.3, nil])
        XCTAssertEqual(config.locks.map(\.readerReach), [0.3, 0.05])
        let s = Site(config: config, clock: clock, sink: log.sink)
        let handsFree = try XCTUnwrap(s.lock("hands-free")), plain = try XCTUnwrap(s.lock("plain"))
        XCTAssertEqual(handsFree.readerReach, 0.3)
        let d = try await handsFree.presentTag(tag("04:00:00:01"), distance: 0.25)
        XCTAssertTrue(d.granted)
        do {
            try await handsFree.presentTag(tag("04:00:00:01"), distance: 0.31)
            XCTFail("read beyond its 30 cm")
        } catch let e as HardwareError {
            XCTAssertEqual(e, .outOfReach(lockID: "hands-free", distance: 0.31, reach: 0.3))
        }
        await XCTAssertThrowsAsync(try await plain.presentTag(tag("04:00:00:01"), distance: 0.25))
    }

    // MARK: Office mode

    func testOfficeModeByHoldingAFobFiveSecondsThenTheLockScheduleLocksIt() async throws {
        let room = lock("room")
        // Staff holds the fob on the reader.
        let first = try await room.placeTag(tag("04:00:00:03"))
        XCTAssertEqual(first.outcome, .unlocked)
        await clock.advance(by: 4.9)
        let s1 = await room.state
        XCTAssertEqual(s1, .unlocked)
        await clock.advance(by: 0.1)
        let s2 = await room.state
        XCTAssertEqual(s2, .officeMode, "held 5 s: passage")
        await room.liftTag()
        let fb = await room.currentFeedback
        XCTAssertEqual(fb.beep, .officeModeOn)

        // Held open all day: the 7-second relock does not apply in office mode.
        await clock.set(to: at("2025-01-06T19:59:59-08:00"))
        let s3 = await room.state
        XCTAssertEqual(s3, .officeMode)
        // The lock schedule (daily 20:00) locks it.
        await clock.advance(by: 1)
        let s4 = await room.state
        XCTAssertEqual(s4, .locked)
        let end = log.last("room", .officeModeEnded)
        XCTAssertEqual(end?.reason, .lockSchedule)
        XCTAssertEqual(end?.lockState, .locked)
        XCTAssertEqual(end?.time, at("2025-01-06T20:00:00-08:00"))
        // A schedule only locks: the next day at 20:00 nothing happens to a locked lock.
        let before = log.of("room").count
        await clock.advance(by: 86_400)
        XCTAssertEqual(log.of("room").count, before)
    }

    func testLiftingBeforeFiveSecondsIsJustATapAndMembersCannotHold() async throws {
        let room = lock("room")
        try await room.placeTag(tag("04:00:00:03"))
        await clock.advance(by: 3)
        await room.liftTag()
        await clock.advance(by: 3)
        let s = await room.state
        XCTAssertEqual(s, .unlocked)
        await clock.advance(by: 2)
        let s2 = await room.state
        XCTAssertEqual(s2, .locked)
        // A member without the right holding the fob: no office mode.
        try await room.placeTag(tag("04:00:00:01"))
        await clock.advance(by: 6)
        let s3 = await room.state
        XCTAssertNotEqual(s3, .officeMode)
        // Asking for it explicitly is refused with a reason.
        let d = try await room.presentTag(tag("04:00:00:01"), action: .officeModeOn)
        XCTAssertEqual(d.reason, .actionNotPermitted)
    }

    func testOfficeModeOffByTheRightHolderAndByPIN() async throws {
        let room = lock("room")
        let on = try await room.enterPIN("3390", action: .officeModeOn)
        XCTAssertEqual(on.outcome, .officeModeStarted)
        let tap = try await room.presentTag(tag("04:00:00:01"))
        XCTAssertEqual(tap.outcome, .unchanged, "a member's tap during passage changes nothing")
        await clock.advance(by: 3600)
        let s1 = await room.state
        XCTAssertEqual(s1, .officeMode)
        let off = try await room.presentTag(tag("04:00:00:03"), action: .officeModeOff)
        XCTAssertEqual(off.outcome, .officeModeEnded)
        let s2 = await room.state
        XCTAssertEqual(s2, .locked)
        XCTAssertEqual(log.last("room", .officeModeEnded)?.userID, "meg")
        XCTAssertEqual(log.last("room", .officeModeEnded)?.reason, .credential)
    }

    func testEasyOfficeModeTapTogglesAndTheWindowEndRelocks() async throws {
        let front = lock("front")
        // 10:00 Monday, inside mon-fri 08:00-18:00: a staff tap starts passage at once.
        let d = try await front.presentTag(tag("04:00:00:03"))
        XCTAssertEqual(d.outcome, .officeModeStarted)
        let st = await front.status
        XCTAssertEqual(st.officeModeEndsAt, at("2025-01-06T18:00:00-08:00"))
        // A member's tap is a normal grant.
        let m = try await front.presentTag(tag("04:00:00:01"))
        XCTAssertEqual(m.outcome, .unchanged)
        await clock.set(to: at("2025-01-06T17:59:59-08:00"))
        let s1 = await front.state
        XCTAssertEqual(s1, .officeMode)
        await clock.advance(by: 1)
        let s2 = await front.state
        XCTAssertEqual(s2, .locked)
        XCTAssertEqual(log.last("front", .officeModeEnded)?.reason, .easyOfficeModeEnded)
        // After the window a staff tap only opens.
        let evening = try await front.presentTag(tag("04:00:00:03"))
        XCTAssertEqual(evening.outcome, .unlocked)
        // Inside the window a second staff tap ends passage.
        await clock.set(to: at("2025-01-07T09:00:00-08:00"))
        try await front.presentTag(tag("04:00:00:03"))
        let toggledOff = try await front.presentTag(tag("04:00:00:03"))
        XCTAssertEqual(toggledOff.outcome, .officeModeEnded)
        let s3 = await front.state
        XCTAssertEqual(s3, .locked)
    }

    // MARK: Access type and easy-office-mode windows at runtime

    func testGrantOnlyLockNeverEntersOfficeModeAndSwitchingEndsOne() async throws {
        let room = lock("room")
        let on = try await room.enterPIN("3390", action: .officeModeOn)
        XCTAssertEqual(on.outcome, .officeModeStarted)
        await room.setOfficeModeSettings(accessType: .grant, easyOfficeMode: nil)
        let s1 = await room.state
        XCTAssertEqual(s1, .locked, "a grant-only lock cannot stay in office mode")
        XCTAssertEqual(log.last("room", .officeModeEnded)?.reason, .accessTypeChanged)
        // The staff right no longer toggles anything here: an explicit request is refused with the
        // lock's reason, a remote one too, and a held fob is just an opening.
        let asked = try await room.presentTag(tag("04:00:00:03"), action: .officeModeOn)
        XCTAssertEqual(asked.reason, .officeModeNotEnabled)
        let remote = try await room.remote(.officeModeOn, userID: "meg", via: "iq")
        XCTAssertEqual(remote.reason, .officeModeNotEnabled)
        let held = try await room.placeTag(tag("04:00:00:03"))
        XCTAssertEqual(held.outcome, .unlocked)
        await clock.advance(by: 6)
        let s2 = await room.state
        XCTAssertEqual(s2, .unlocked, "held over 5 s at a grant-only lock: still only the opening")
        await clock.advance(by: 2)
        let s3 = await room.state
        XCTAssertEqual(s3, .locked)
        // The easy-office-mode window of the front door no longer toggles either: a staff tap opens.
        let front = lock("front")
        await front.setOfficeModeSettings(accessType: .grant, easyOfficeMode: nil)
        let tapIn = try await front.presentTag(tag("04:00:00:03"))
        XCTAssertEqual(tapIn.outcome, .unlocked)
        // Back to grant + office mode: the right works again.
        await room.setOfficeModeSettings(accessType: .grantOfficeMode, easyOfficeMode: nil)
        let again = try await room.presentTag(tag("04:00:00:03"), action: .officeModeOn)
        XCTAssertEqual(again.outcome, .officeModeStarted)
    }

    func testNewEasyWindowsRetimeOrEndAPassageAndSurviveARestart() async throws {
        let front = lock("front")
        // 10:00 Monday: a staff tap starts an easy passage that would end at 18:00.
        try await front.presentTag(tag("04:00:00:03"))
        let shorter = Timetable([try XCTUnwrap(WeeklyWindow(parsing: "mon-fri 08:00-12:00"))])
        await front.setOfficeModeSettings(accessType: nil, easyOfficeMode: shorter)
        let st = await front.status
        XCTAssertEqual(st.officeModeEndsAt, at("2025-01-06T12:00:00-08:00"), "re-timed to the new window's end")
        await clock.set(to: at("2025-01-06T12:00:00-08:00"))
        let s1 = await front.state
        XCTAssertEqual(s1, .locked)
        // A window that no longer covers now ends the passage at once.
        await clock.set(to: at("2025-01-07T09:00:00-08:00"))
        try await front.presentTag(tag("04:00:00:03"))
        let s2 = await front.state
        XCTAssertEqual(s2, .officeMode)
        let evenings = Timetable([try XCTUnwrap(WeeklyWindow(parsing: "daily 18:00-20:00"))])
        await front.setOfficeModeSettings(accessType: nil, easyOfficeMode: evenings)
        let s3 = await front.state
        XCTAssertEqual(s3, .locked)
        XCTAssertEqual(log.last("front", .officeModeEnded)?.reason, .easyOfficeModeEnded)
        // No windows: a staff tap at 09:00 only opens.
        await front.setOfficeModeSettings(accessType: .grant, easyOfficeMode: .never)
        let tap = try await front.presentTag(tag("04:00:00:03"))
        XCTAssertEqual(tap.outcome, .unlocked)
        // The settings are in the lock's memory: a rebuilt lock has them, not the site file's.
        log.restoring = true
        let rebuilt = Site(config: site.config, clock: clock, sink: log.sink)
        let front2 = try XCTUnwrap(rebuilt.lock("front"))
        let c = await front2.configuration
        XCTAssertEqual(c.accessType, .grant)
        XCTAssertEqual(c.easyOfficeMode, .never)
    }

    // MARK: Keypad

    func testPINLockoutAfterWrongPINsRefusesEvenTheRightPIN() async throws {
        let room = lock("room")
        for _ in 0..<2 {
            let d = try await room.enterPIN("0000")
            XCTAssertEqual(d.reason, .wrongPIN)
        }
        let good = try await room.enterPIN("4821")
        XCTAssertTrue(good.granted, "a right PIN resets the count")
        for _ in 0..<3 { try await room.enterPIN("1111") }
        XCTAssertEqual(log.of("room").filter { $0.kind == .keypadLockedOut }.count, 1)
        let locked = try await room.enterPIN("4821")
        XCTAssertEqual(locked.reason, .keypadLockedOut)
        let status = await room.status
        XCTAssertEqual(status.keypadLockedUntil, clock.now().addingTimeInterval(120))
        // Fobs still work during a keypad lockout.
        let fob = try await room.presentTag(tag("04:00:00:01"))
        XCTAssertTrue(fob.granted)
        await clock.advance(by: 120)
        let after = try await room.enterPIN("4821")
        XCTAssertTrue(after.granted)
        // PINs are never recorded.
        XCTAssertFalse(log.of("room").contains { "\($0)".contains("4821") || "\($0)".contains("1111") })
        // Oversized or non-digit input is just a wrong PIN.
        let junk = try await room.enterPIN(String(repeating: "9", count: 10_000))
        XCTAssertEqual(junk.reason, .wrongPIN)
    }

    func testNoKeypadNoPIN() async throws {
        await XCTAssertThrowsAsync(try await lock("locker").enterPIN("4821")) { e in
            XCTAssertEqual(e as? HardwareError, .noKeypad(lockID: "locker"))
        }
    }

    // MARK: Audit trail

    func testTrailOverflowIsRecordedNeverSilent() async throws {
        let locker = lock("locker")   // trail capacity 5
        for _ in 0..<4 {
            try await locker.presentTag(tag("04:00:00:01"))   // granted + unlocked…
            await clock.advance(by: 10)                      // …+ locked = 3 records each
        }
        // 12 records written, 5 kept: 7 lost (sequences 1–7).
        let status = await locker.status
        XCTAssertEqual(status.trailCount, 5)
        XCTAssertEqual(status.trailPendingLoss, 7)
        XCTAssertEqual(log.of("locker").count, 12, "the sink saw every record")
        XCTAssertEqual(log.lost("locker"), [1, 2, 3, 4, 5, 6, 7], "the trail told the store which records it dropped, as it dropped them")
        let batch = try await locker.collectTrail(by: "test")
        XCTAssertEqual(batch.count, 6)
        XCTAssertEqual(batch.dropLast().map(\.sequence), [8, 9, 10, 11, 12], "exactly the records the trail kept")
        let overflow = try XCTUnwrap(batch.last)
        XCTAssertEqual(overflow.kind, .trailOverflow)
        XCTAssertEqual(overflow.lostCount, 7)
        XCTAssertEqual(overflow.lostSequences, 1...7)
        XCTAssertEqual(overflow.reason, "trail_full")
        XCTAssertEqual(overflow.sequence, 13, "the overflow record has its own sequence number, after the kept ones")
        XCTAssertEqual(log.last("locker", .trailOverflow)?.lostCount, 7, "the loss reaches the store too")
        let handover = try XCTUnwrap(log.writes.last { $0.deviceID == "locker" })
        XCTAssertEqual(handover.record?.kind, .trailOverflow, "overflow and hand-over are one write")
        XCTAssertEqual(handover.collectedThrough, 13)
        XCTAssertEqual(handover.collectedBy, "test")
        XCTAssertEqual(log.trail("locker"), [], "the store holds nothing the lock no longer holds")
        let empty = try await locker.collectTrail(by: "test")
        XCTAssertEqual(empty, [])
        let after = await locker.status
        XCTAssertEqual(after.trailPendingLoss, 0)
    }

    func testTrailRingKeepsOrderAcrossPartialDrainsAndWraps() {
        func record(_ n: UInt64) -> AuditRecord {
            AuditRecord(deviceKind: .lock, deviceID: "l", sequence: n, time: Date(timeIntervalSince1970: 0), kind: .locked)
        }
        var trail = AuditTrail(capacity: 4)
        for n: UInt64 in 1...3 { trail.append(record(n)) }
        XCTAssertEqual(trail.removeOldest(limit: 2).map(\.sequence), [1, 2])
        for n: UInt64 in 4...8 { trail.append(record(n)) }   // 3,4,5,6,7,8 → holds 5…8, lost 3 and 4
        XCTAssertEqual(trail.peek().map(\.sequence), [5, 6, 7, 8])
        XCTAssertEqual(trail.lost, 2)
        XCTAssertEqual(trail.lostSequences, 3...4)
        XCTAssertEqual(trail.removeOldest(limit: 1).map(\.sequence), [5])
        trail.append(record(9))
        XCTAssertEqual(trail.peek().map(\.sequence), [6, 7, 8, 9])
        XCTAssertEqual(trail.takeLoss()?.count, 2)
        XCTAssertNil(trail.takeLoss())
        XCTAssertEqual(trail.removeOldest().map(\.sequence), [6, 7, 8, 9])
        XCTAssertTrue(trail.isEmpty)
    }

    func testTrailIsDrainedInPartsOldestFirst() async throws {
        let room = lock("room")
        try await room.presentTag(tag("04:00:00:01"))
        await clock.advance(by: 7)
        let a = try await room.collectTrail(limit: 2, by: "iq")
        let b = try await room.collectTrail(by: "iq")
        XCTAssertEqual(a.map(\.sequence), [1, 2])
        XCTAssertEqual(b.map(\.sequence), [3])
    }

    /// A partial drain of an overflowed trail reports the loss only with the drain that empties the
    /// trail: the overflow record's sequence is above every collected one, so collection stays a prefix.
    func testOverflowComesWithTheDrainThatEmptiesTheTrail() async throws {
        let locker = lock("locker")   // capacity 5
        for _ in 0..<7 { try await locker.presentTag(tag("0A:0B:0C:0D")) }   // unknown tag: 7 denials
        let first = try await locker.collectTrail(limit: 3, by: "iq")
        XCTAssertEqual(first.map(\.sequence), [3, 4, 5])
        XCTAssertFalse(first.contains { $0.kind == .trailOverflow })
        let rest = try await locker.collectTrail(by: "iq")
        XCTAssertEqual(rest.map(\.sequence), [6, 7, 8])
        XCTAssertEqual(rest.last?.kind, .trailOverflow)
        XCTAssertEqual(rest.last?.lostCount, 2)
        XCTAssertEqual(rest.last?.lostSequences, 1...2)
    }

    // MARK: Flash: state survives a restart

    /// The IQ drained the lock, but the process died before the hand-over was durable: the rebuilt lock
    /// hands over the same records again, and its overflow report gets the number that never was.
    func testAHandOverLostInACrashIsHandedOverAgain() async throws {
        let locker = lock("locker")   // capacity 5
        for _ in 0..<7 { try await locker.presentTag(tag("0A:0B:0C:0D")) }
        log.crashing = true
        let first = try await locker.collectTrail(by: "iq")
        XCTAssertEqual(first.map(\.sequence), [3, 4, 5, 6, 7, 8])
        log.crashing = false
        log.restoring = true
        let rebuilt = Site(config: site.config, clock: clock, sink: log.sink)
        let again = try await rebuilt.lock("locker")!.collectTrail(by: "iq")
        XCTAssertEqual(again.map(\.sequence), [3, 4, 5, 6, 7, 8], "nothing orphaned, nothing numbered twice durably")
        XCTAssertEqual(again.last?.kind, .trailOverflow)
        XCTAssertEqual(again.last?.lostCount, 2)
        XCTAssertEqual(log.trail("locker"), [])
    }

    /// A lock rebuilt from what its store holds comes back with its trail, numbering, loss count, open
    /// window and office mode, access list and clock offset — as a real lock's flash keeps them.
    func testALockRebuiltFromItsStoreIsTheSameLock() async throws {
        let room = lock("room")
        try await room.presentTag(tag("04:00:00:01"))                     // granted + unlocked (1, 2)
        let beforeStatus = await room.status
        try await room.setClockOffset(42)
        let locker = lock("locker")
        for _ in 0..<7 { try await locker.presentTag(tag("0A:0B:0C:0D")) }   // 2 lost of 7
        let lockerBefore = await locker.status

        log.restoring = true
        let rebuilt = Site(config: site.config, clock: clock, sink: log.sink)
        let room2 = try XCTUnwrap(rebuilt.lock("room"))
        await room2.resume()
        let after = await room2.status
        XCTAssertEqual(after.state, .unlocked, "still inside its open window")
        XCTAssertEqual(after.unlockedUntil?.addingTimeInterval(-42), beforeStatus.unlockedUntil)
        XCTAssertEqual(after.clockOffset, 42)
        XCTAssertEqual(after.lastSequence, beforeStatus.lastSequence, "numbering continues, never repeats")
        XCTAssertEqual(after.trailCount, 2)
        XCTAssertEqual(after.accessListVersion, beforeStatus.accessListVersion)
        let grant = try await room2.presentTag(tag("04:00:00:01"))
        XCTAssertEqual(grant.record.sequence, beforeStatus.lastSequence + 1)
        await clock.advance(by: 30)
        let relocked = await room2.state
        XCTAssertEqual(relocked, .locked, "the restored open window relocks on time")

        let locker2 = try XCTUnwrap(rebuilt.lock("locker"))
        let l2 = await locker2.status
        XCTAssertEqual(l2.trailCount, 5)
        XCTAssertEqual(l2.trailPendingLoss, lockerBefore.trailPendingLoss)
        XCTAssertEqual(l2.lastSequence, 7)
        let batch = try await locker2.collectTrail(by: "iq")
        XCTAssertEqual(batch.map(\.sequence), [3, 4, 5, 6, 7, 8])
        XCTAssertEqual(batch.last?.lostCount, 2, "the loss is reported once, after the restart")
    }

    // MARK: Battery and clock

    func testBatteryLowOnceDepletedIsUncertainAndReplacementRelocks() async throws {
        let room = lock("room")   // 30 %, threshold 20 %
        try await room.setBattery(level: 25)
        try await room.setBattery(level: 19)
        try await room.setBattery(level: 15)
        XCTAssertEqual(log.of("room").filter { $0.kind == .batteryLow }.map(\.batteryLevel), [19], "reported once")
        try await room.presentTag(tag("04:00:00:01"))
        try await room.setBattery(level: 0)
        let dead = await room.state
        XCTAssertEqual(dead, .uncertain)
        await XCTAssertThrowsAsync(try await room.presentTag(tag("04:00:00:01"))) { e in
            XCTAssertEqual(e as? HardwareError, .unpowered(deviceID: "room", reason: .batteryDepleted))
        }
        await clock.advance(by: 60)
        try await room.setBattery(level: 100)
        let fresh = await room.state
        XCTAssertEqual(fresh, .locked)
        XCTAssertEqual(log.kinds("room").suffix(4), [.batteryDepleted, .lockUncertain, .batteryReplaced, .locked])
        await XCTAssertThrowsAsync(try await room.setBattery(level: 101))
    }

    func testLockTimeDriftAffectsDecisionsUntilSynced() async throws {
        let room = lock("room")
        // Day pass window opens at 09:00; it is 10:00, but the lock's clock is two hours slow.
        try await room.setClockOffset(-7200)
        let slow = try await room.presentTag(tag("04:00:00:02"))
        XCTAssertEqual(slow.reason, .outsideSchedule)
        XCTAssertEqual(slow.record.time, mondayMorning.addingTimeInterval(-7200), "records carry lock time")
        try await room.syncTime(to: clock.now(), via: "iq-x")
        let synced = try await room.presentTag(tag("04:00:00:02"))
        XCTAssertTrue(synced.granted)
        XCTAssertEqual(log.last("room", .timeSynced)?.detail, "clock corrected by +7200 s")
    }

    func testManualAndRemoteCommands() async throws {
        let room = lock("room")
        let m = try await room.manual(.officeModeOn)
        XCTAssertEqual(m.method, .manual)
        XCTAssertEqual(m.outcome, .officeModeStarted)
        let r = try await room.remote(.officeModeOff, userID: "meg", via: "iq-1")
        XCTAssertEqual(r.outcome, .officeModeEnded)
        XCTAssertEqual(r.record.iqID, "iq-1")
        XCTAssertEqual(r.record.method, .remote)
    }
}

/// `XCTAssertThrowsError` for async expressions.
func XCTAssertThrowsAsync<T>(_ expression: @autoclosure () async throws -> T, file: StaticString = #filePath,
                             line: UInt = #line, _ handler: (Error) -> Void = { _ in }) async {
    do {
        _ = try await expression()
        XCTFail("expected an error", file: file, line: line)
    } catch {
        handler(error)
    }
}
