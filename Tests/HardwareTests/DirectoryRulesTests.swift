import Foundation
import XCTest
@testable import Hardware
import MobileKey

/// The directory's rules at the lock (issue 13): bookings with grace, SALTO KS offline access, blocked
/// users and lockdown, on the bundled coworking site (room-golden-gate and main-entrance are linked by
/// iq-lobby alone; storage-basement by no IQ).
final class DirectoryRulesTests: XCTestCase {
    var clock: SimulatedClock!
    var log: RecordLog!
    var site: Site!
    /// Monday 10:00 in San Francisco.
    let start = at("2025-01-06T10:00:00-08:00")
    let margaret = tag("04:D4:E1:72:3B:6F:80")   // staff, offline access
    let ada = tag("04:A2:3B:1C:5D:80")           // member, PIN 4821, no offline access
    let nia = tag("04:5E:11:22:33:44")

    override func setUp() async throws {
        clock = SimulatedClock(start: start)
        log = RecordLog()
        site = Site(config: try SiteFile.load(path: coworkingPath), clock: clock, sink: log.sink)
        await site.start()
    }

    private func sync() async { for iq in site.iqs { await iq.syncNow() } }

    func testABookingOpensFromItsGraceToItsGraceAndItsCancellationArrivesAtTheNextSync() async throws {
        let dir = site.directory
        try await dir.upsertGroup(AccessGroupConfig(id: "book-gg", locks: .only(["room-golden-gate"])))
        try await dir.upsertUser(UserConfig(id: "u-nia", tags: [nia]))
        let (booking, _) = try await dir.addMembership(Membership(
            id: "ignored", groupID: "book-gg", userID: "u-nia", notBefore: start.addingTimeInterval(4 * 3600),
            notAfter: start.addingTimeInterval(5 * 3600), graceBefore: 900, graceAfter: 900))
        XCTAssertEqual(booking.id, "m-1")
        await sync()
        let room = site.lock("room-golden-gate")!
        await clock.set(to: booking.opens.addingTimeInterval(-1))
        let early = try await room.presentTag(nia)
        XCTAssertEqual(early.reason, .membershipNotStarted)
        await clock.set(to: booking.opens)
        do { let d = try await room.presentTag(nia); XCTAssertTrue(d.granted) }
        await clock.set(to: booking.closes.addingTimeInterval(-1))
        do { let d = try await room.presentTag(nia); XCTAssertTrue(d.granted) }
        await clock.set(to: booking.closes)
        let late = try await room.presentTag(nia)
        XCTAssertEqual(late.reason, .membershipEnded)
        XCTAssertEqual(late.userID, "u-nia", "the denial names who it was")

        // Cancelled: the lock keeps the old list until its IQ syncs it.
        let (second, _) = try await dir.addMembership(Membership(
            id: "", groupID: "book-gg", userID: "u-nia", notBefore: booking.closes.addingTimeInterval(3600),
            notAfter: booking.closes.addingTimeInterval(7200)))
        XCTAssertEqual(second.id, "m-2")
        await sync()
        await clock.set(to: second.notBefore)
        do { let d = try await room.presentTag(nia); XCTAssertTrue(d.granted) }
        try await dir.removeMembership(groupID: "book-gg", id: "m-2")
        do { let d = try await room.presentTag(nia); XCTAssertTrue(d.granted, "not before the next sync") }
        await sync()
        let gone = try await room.presentTag(nia)
        XCTAssertEqual(gone.reason, .membershipEnded)
        await XCTAssertThrowsAsync(try await dir.removeMembership(groupID: "book-gg", id: "m-2")) { e in
            XCTAssertEqual(e as? DirectoryError, .unknownMembership("m-2"))
        }
    }

    func testOfflineOnlyTheOfflineListOpensAtAnyHourAndOnlineTheScheduleApplies() async throws {
        let lobby = site.iq("iq-lobby")!
        let room = site.lock("room-golden-gate")!, entrance = site.lock("main-entrance")!
        let online = await room.hasUplink
        XCTAssertTrue(online)
        await lobby.setOnline(false)
        let offline = await room.hasUplink
        XCTAssertFalse(offline)
        // Saturday 03:00: outside the day pass, but offline access is 24/7.
        await clock.set(to: at("2025-01-11T03:00:00-08:00"))
        do { let d = try await room.presentTag(margaret); XCTAssertTrue(d.granted) }
        let denied = try await room.presentTag(ada)
        XCTAssertEqual(denied.reason, .offlineNotPermitted)
        XCTAssertEqual(denied.userID, "u-ada")
        let linus = try await entrance.enterPIN("7305")   // day pass, PIN: on every offline list
        XCTAssertTrue(linus.granted)
        await lobby.setOnline(true)
        let scheduled = try await entrance.enterPIN("7305")
        XCTAssertEqual(scheduled.reason, .outsideSchedule)
        // A lock no IQ reaches is offline from the start.
        let basement = site.lock("storage-basement")!
        let basementOnline = await basement.hasUplink
        XCTAssertFalse(basementOnline)
        // Deactivating the IQ takes its locks offline too.
        try await lobby.deactivate()
        let afterDeactivation = await entrance.hasUplink
        XCTAssertFalse(afterDeactivation)
    }

    func testABlockedUserIsRefusedWithEveryCredentialOnceSynced() async throws {
        var ken = await site.directory.currentUsers.first { $0.id == "u-ken" }!
        ken.blocked = true
        try await site.directory.upsertUser(ken)
        let entrance = site.lock("main-entrance")!
        do { let d = try await entrance.enterPIN("55021"); XCTAssertTrue(d.granted, "the lock does not know yet") }
        await sync()
        let refused = try await entrance.enterPIN("55021")
        XCTAssertEqual(refused.reason, .userBlocked)
        XCTAssertEqual(refused.userID, "u-ken")
        let offline = await entrance.offlineListCount
        XCTAssertFalse(offline == 0)
    }

    func testLockdownRefusesAllButOverrideGroupsAndReachesAnUnlinkedLockLater() async throws {
        let entrance = site.lock("main-entrance")!
        do { let d = try await entrance.presentTag(margaret); XCTAssertTrue(d.granted) }
        let (changed, delivered) = try await site.setLockdown(true, locks: nil)
        XCTAssertEqual(changed.count, site.locks.count)
        XCTAssertFalse(delivered.contains("storage-basement"), "no online IQ reaches the basement")
        XCTAssertTrue(delivered.contains("main-entrance"))
        let state = await entrance.status.state
        XCTAssertEqual(state, .locked, "an open lock relocks at once")
        XCTAssertEqual(log.last("main-entrance", .lockdownStarted)?.iqID, "iq-lobby")
        let refused = try await entrance.presentTag(margaret)
        XCTAssertEqual(refused.reason, .lockedDown)
        // Egress stays free; remote opening does not.
        let remote = try await site.iq("iq-lobby")!.remote(lockID: "main-entrance", userID: "u-ada")
        XCTAssertEqual(remote.reason, .lockedDown)
        // A group marked lockdown_override lets its standing members through, once synced.
        var staff = await site.directory.currentGroups.first { $0.id == "staff" }!
        staff.lockdownOverride = true
        try await site.directory.upsertGroup(staff)
        await sync()
        do { let d = try await entrance.presentTag(margaret); XCTAssertTrue(d.granted) }
        do { let d = try await entrance.presentTag(ada); XCTAssertEqual(d.reason, .lockedDown) }
        // The basement learns it when an IQ reaches it.
        let before = await site.lock("storage-basement")!.isLockedDown
        XCTAssertFalse(before)
        try await site.moveIQ("iq-lounge", to: Position(x: 38, y: 28, z: -1.5))
        let after = await site.lock("storage-basement")!.isLockedDown
        XCTAssertTrue(after)
        // Lifted: delivered the same way.
        _ = try await site.setLockdown(false, locks: ["main-entrance"])
        XCTAssertEqual(log.last("main-entrance", .lockdownEnded)?.reason, .platformLockdown)
        do { let d = try await entrance.presentTag(ada); XCTAssertTrue(d.granted) }
        await XCTAssertThrowsAsync(try await self.site.setLockdown(true, locks: ["no-such-lock"])) { e in
            XCTAssertEqual(e as? DirectoryError, .unknownLock("no-such-lock"))
        }
    }

    func testAListStoredBeforeBookingsStillLoads() throws {
        // The shape a lock kept in flash before bookings, blocking and lockdown existed.
        let old = #"{"version":3,"entries":[{"userID":"u","schedule":{"windows":[]},"officeMode":true}],"tags":["04:00:00:01",0],"pins":{}}"#
        let list = try JSONDecoder().decode(AccessList.self, from: Data(old.utf8))
        XCTAssertEqual(list.version, 3)
        XCTAssertEqual(list.entry(forTag: tag("04:00:00:01"))?.grants.first?.officeMode, true)
        XCTAssertEqual(list.blockedUsers, [])
        let corrupt = #"{"version":3,"entries":[],"tags":["04:00:00:01",5],"pins":{}}"#
        XCTAssertThrowsError(try JSONDecoder().decode(AccessList.self, from: Data(corrupt.utf8)))
    }
}
