import Foundation
import XCTest
@testable import Hardware
import MobileKey

/// The parts of a snapshot the hardware layer owns (issue 13 item 6): the directory's state as a value
/// that round-trips, and a lock that takes a list from its flash only with the state naming its version.
final class SnapshotStateTests: XCTestCase {
    let now = at("2026-11-23T17:00:00Z")

    func testTheDirectoryStateRoundTripsThroughJSONAndARefusedImportChangesNothing() async throws {
        let config = try SiteFile.load(path: coworkingPath)
        let keys = try TestKeys(siteID: config.siteID, lockIDs: config.locks.map(\.id), now: now)
        let clock = SimulatedClock(start: now)
        let directory = SiteDirectory(config: config, clock: clock, issuer: keys.issuer)
        try await directory.upsertUser(UserConfig(id: "u-snap", tags: [tag("0A0B0C0D")], pin: "86420", groups: ["members"]))
        try await directory.revoke(keyIDs: [Array(repeating: 7, count: 16)])
        let saved = await directory.exportState()
        XCTAssertEqual(saved.accessListVersion, 2)
        let json = try JSONEncoder().encode(saved)
        let decoded = try JSONDecoder().decode(SiteDirectory.State.self, from: json)
        XCTAssertEqual(decoded, saved, "the state survives its file")

        // Later: the user goes, another key is revoked.
        try await directory.removeUser(id: "u-snap")
        try await directory.revoke(keyIDs: [Array(repeating: 8, count: 16)])
        let listBefore = await directory.accessList(for: "room-dolores")
        XCTAssertNil(listBefore.entry(forTag: tag("0A0B0C0D")))

        try await directory.importState(decoded)
        let version = await directory.accessListVersion
        XCTAssertEqual(version, 2, "the version goes back with the world")
        let revocation = await directory.revocationList
        XCTAssertEqual(revocation.version, 1)
        XCTAssertEqual(revocation.revokedKeyIDs.count, 1)
        let list = await directory.accessList(for: "room-dolores")
        XCTAssertEqual(list.version, 2)
        XCTAssertEqual(list.entry(forTag: tag("0A0B0C0D"))?.userID, "u-snap", "lists are built from the restored users")
        let users = await directory.currentUsers
        XCTAssertEqual(users.map(\.id), saved.users.map(\.id))

        // A state naming a group the site lacks, or a list another issuer signed, is refused whole.
        var bad = decoded
        bad.users[bad.users.count - 1].groups = ["no-such-group"]
        bad.accessListVersion = 9
        do { try await directory.importState(bad); XCTFail("imported a user of an unknown group") } catch let e as DirectoryError {
            XCTAssertEqual(e, .unknownGroup("no-such-group"))
        }
        let other = try TestKeys(siteID: config.siteID, lockIDs: [], now: now)
        var forged = decoded
        forged.signedRevocationList = Data(try other.issuer.sign(RevocationList.empty(siteID: config.siteID).revoking([Array(repeating: 9, count: 16)], issuedAt: now)))
        do { try await directory.importState(forged); XCTFail("imported a revocation list of another issuer") } catch is DirectoryError {}
        let after = await directory.exportState()
        XCTAssertEqual(after, saved, "a refused import changed nothing")
    }

    /// A reset (or a restore) rewrites a lock's state part; a list part written before it must not
    /// come back after a restart, or a fob removed by the reset would open the door again.
    func testALockIgnoresAListPartItsStateDoesNotName() async throws {
        let config = try site("""
            version: 1
            organisation: Test
            site: {id: s1, time_zone: UTC}
            locks: [{id: door, kind: escutcheon, position: {x: 1, y: 0}}]
            iqs: [{id: iq, position: {x: 0, y: 0}, activation_pin: "123456"}]
            access_groups: [{id: all, locks: all, schedule: 24/7}]
            users: [{id: u1, tags: ["01020304"], groups: [all]}]
            """)
        let clock = SimulatedClock(start: now)
        let log = RecordLog()
        let site1 = Site(config: config, clock: clock, sink: log.sink)
        try await site1.directory.upsertUser(UserConfig(id: "u2", tags: [tag("0A0B0C0D")], groups: ["all"]))
        _ = await site1.iq("iq")!.syncNow()
        let granted = try await site1.lock("door")!.presentTag(tag("0A0B0C0D"))
        XCTAssertTrue(granted.granted, "the synced list (version 2) holds u2")

        // As a reset does: the next lock starts from the site file and stores that state only.
        log.restoring = false
        let site2 = Site(config: config, clock: clock, sink: log.sink)
        await site2.lock("door")!.persist()
        log.restoring = true
        let site3 = Site(config: config, clock: clock, sink: log.sink)
        let lock = site3.lock("door")!
        let version = await lock.accessListVersion
        XCTAssertEqual(version, 1, "the version 2 list part is a leftover: its state names version 1")
        let denied = try await lock.presentTag(tag("0A0B0C0D"))
        XCTAssertEqual(denied.reason, .unknownTag)
        let ok = try await lock.presentTag(tag("01020304"))
        XCTAssertTrue(ok.granted)
    }
}
