import Events
import Foundation
import Hardware
import KeywayAPI
import XCTest
@testable import Emulator

/// Snapshots of the whole world (issue 13 item 6) inside one process: a restore brings devices,
/// directory, keys and clock back, devices keep numbering after their last sequence, one event marks
/// the jump, and a restart after a restore comes back to the restored world (the flash holds it).
/// Through HTTP: Tests/peers/test_api_snapshots.py.
final class SnapshotTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    /// Monday 23 November 2026, 09:00 in San Francisco.
    static let start = Date(timeIntervalSince1970: 1_795_453_200)
    var dir: URL!

    override func setUp() {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("kw-snap-\(UUID().uuidString)")
    }

    override func tearDown() {
        try? FileManager.default.removeItem(at: dir)
    }

    func startEmulator() async throws -> Emulator {
        var o = EmulatorOptions(sitePath: Self.root.appendingPathComponent("Fixtures/sites/coworking.yaml").path)
        o.dataDir = dir.path
        o.clock = .simulated
        o.clockStart = Self.start
        o.listenPort = 0
        return try await Emulator.start(o)
    }

    let fob = TagUID(hex: "0A0B0C0D")!
    let brief = TagUID(hex: "0A0B0C0E")!

    func testARestoreBringsTheWorldBackAndARestartKeepsIt() async throws {
        var emu = try await startEmulator()
        try await emu.site.directory.upsertUser(UserConfig(id: "u-snap", tags: [fob], groups: ["members"]))
        // A fob valid for the first half hour: a lock that decided after that never judges it earlier.
        try await emu.site.directory.upsertUser(UserConfig(id: "u-brief", tags: [brief], groups: ["members"],
                                                           validUntil: Self.start.addingTimeInterval(1800)))
        _ = await emu.site.iq("iq-lobby")!.syncNow()
        let room = try XCTUnwrap(emu.site.lock("room-golden-gate"))
        let grant = try await room.presentTag(fob)
        XCTAssertTrue(grant.granted)
        await emu.settle()
        let at = await room.status
        let time = emu.clock.now()
        let taken = try await emu.createSnapshot(.init(id: "s1", description: "u-snap's fob"))
        XCTAssertEqual(taken.users, emu.config.users.count + 2)
        XCTAssertEqual(taken.accessListVersion, 3)
        let file = dir.appendingPathComponent("snapshots/s1.json").path
        let mode = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: file)[.posixPermissions] as? Int)
        XCTAssertEqual(mode & 0o077, 0, "a snapshot holds PINs and phone keys: its owner's only")

        // Everything changes.
        await emu.simulatedClock!.advance(by: 3600)
        try await emu.site.directory.removeUser(id: "u-snap")
        _ = await emu.site.iq("iq-lobby")!.syncNow()
        try await emu.site.lock("room-dolores")!.setBattery(level: 0)
        let denied = try await room.presentTag(fob)
        XCTAssertEqual(denied.reason, .unknownTag)
        let expired = try await room.presentTag(brief)
        XCTAssertEqual(expired.reason, .expired)
        await emu.settle()
        let before = await room.status

        let restored = try await emu.restoreSnapshot(id: "s1")
        XCTAssertTrue(restored.clockRestored)
        XCTAssertEqual(emu.clock.now(), time, "the clock is back at the snapshot")
        // `room` is the lock the restore replaced: the site has a new one.
        let room2 = try XCTUnwrap(emu.site.lock("room-golden-gate"))
        let now = await room2.status
        XCTAssertEqual(now.state, .unlocked)
        XCTAssertEqual(now.unlockedUntil, at.unlockedUntil, "the open window runs on from where it was")
        XCTAssertEqual(now.accessListVersion, 3)
        XCTAssertEqual(now.lastSequence, before.lastSequence, "no sequence goes back")
        let dolores = await emu.site.lock("room-dolores")!.status
        XCTAssertEqual(dolores.batteryLevel, 64)
        let users = await emu.site.directory.currentUsers
        XCTAssertTrue(users.contains { $0.id == "u-snap" })

        // The one event of the jump, first in the listing.
        let listed = try await emu.events(types: [], lock: nil, since: nil, after: nil, limit: 100, all: false)
        XCTAssertEqual(listed.first?._type, .com_keyway_emulator_snapshotRestored)
        XCTAssertEqual(listed.first?.source, "/sites/\(emu.config.siteID)/emulator/control")
        XCTAssertEqual(listed.first?.id, restored.eventId)
        XCTAssertEqual(listed.filter { $0._type == .com_keyway_emulator_snapshotRestored }.count, 1)

        await emu.simulatedClock!.advance(by: 8)
        await emu.settle()
        let relocked = await room2.state
        XCTAssertEqual(relocked, .locked, "its relock timer was armed again")
        let again = try await room2.presentTag(fob)
        XCTAssertTrue(again.granted, "the list the lock held at the snapshot is back")
        XCTAssertEqual(again.record.sequence, before.lastSequence + 2, "numbering continues after the relock")
        let floor = try await room2.presentTag(brief)
        XCTAssertTrue(floor.granted, "the lock's anti-rollback floor went back with its state: the world is at the snapshot again")
        XCTAssertEqual(emu.bridge.failures, 0)
        await emu.shutdown()

        // A restart comes back to the restored lock, not to what its flash held before the restore.
        emu = try await startEmulator()
        let room3 = try XCTUnwrap(emu.site.lock("room-golden-gate"))
        let v = await room3.accessListVersion
        XCTAssertEqual(v, 3)
        let afterRestart = try await room3.presentTag(fob)
        XCTAssertTrue(afterRestart.granted)
        let listedAgain = try emu.listSnapshots()
        XCTAssertEqual(listedAgain.map(\.id), ["s1"], "snapshots live in the data directory")
        await emu.shutdown()
    }

    func testRefusedSnapshotsAndRestoresChangeNothing() async throws {
        let emu = try await startEmulator()
        func code(_ body: () async throws -> Void) async -> (Int, String)? {
            do { try await body(); return nil } catch let e as APIError { return (e.status, e.code) } catch { return (0, "\(error)") }
        }
        var r = await code { _ = try await emu.restoreSnapshot(id: "nope") }
        XCTAssertEqual(r?.0, 404)
        r = await code { _ = try await emu.createSnapshot(.init(id: ".hidden")) }
        XCTAssertEqual(r?.0, 400)
        let generated = try await emu.createSnapshot(.init())
        XCTAssertTrue(generated.id.hasPrefix("snap-"), generated.id)
        _ = try await emu.createSnapshot(.init(id: "s1"))
        r = await code { _ = try await emu.createSnapshot(.init(id: "s1")) }
        XCTAssertEqual(r?.1, "snapshot_exists")

        let file = dir.appendingPathComponent("snapshots/s1.json")
        var json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: file)) as? [String: Any])
        json["siteID"] = "another-site"
        try JSONSerialization.data(withJSONObject: json).write(to: file)
        await emu.simulatedClock!.advance(by: 60)
        // The IQ sync that advance ran hands its collected records to the journal asynchronously.
        await emu.bridge.flush()
        let clock = emu.clock.now()
        let position = try await emu.journal.lastPosition()
        r = await code { _ = try await emu.restoreSnapshot(id: "s1") }
        XCTAssertEqual(r?.1, "snapshot_incompatible")
        try Data("{".utf8).write(to: file)
        r = await code { _ = try await emu.restoreSnapshot(id: "s1") }
        XCTAssertEqual(r?.1, "snapshot_unreadable")
        XCTAssertEqual(try emu.listSnapshots().map(\.id), [generated.id], "a damaged file is left out of the list")
        XCTAssertEqual(emu.clock.now(), clock)
        let positionAfter = try await emu.journal.lastPosition()
        XCTAssertEqual(positionAfter, position, "a refused restore records nothing")

        _ = try emu.deleteSnapshot(id: "s1")
        r = await code { _ = try emu.deleteSnapshot(id: "s1") }
        XCTAssertEqual(r?.0, 404)
        await emu.shutdown()
    }
}
