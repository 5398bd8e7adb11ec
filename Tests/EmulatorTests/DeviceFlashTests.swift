import Events
import Foundation
import Hardware
import XCTest
@testable import Emulator

/// Issue 18 item 2 inside one process: the journal is every device's flash. A restart on the same data
/// directory brings each lock back as its last durable write left it; a reset returns devices to the
/// site file but keeps their numbering and trails, and the devices it replaced can no longer write.
/// (kill -9 is tested end to end by Tests/peers/test_events_flash.py.)
final class DeviceFlashTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    /// Monday 23 November 2026, 09:00 in San Francisco.
    static let start = Date(timeIntervalSince1970: 1_795_453_200)
    var dir: URL!

    override func setUp() {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("kw-flash-\(UUID().uuidString)")
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

    let unknown = TagUID(hex: "0A0B0C0D")!
    let ada = TagUID(hex: "04A23B1C5D80")!

    func testARestartBringsEachLockBackAsItsFlashLeftIt() async throws {
        var emu = try await startEmulator()
        let room = try XCTUnwrap(emu.site.lock("room-golden-gate"))
        let grant = try await room.presentTag(ada)
        XCTAssertTrue(grant.granted)
        let booth = try XCTUnwrap(emu.site.lock("phone-booth-1"))
        try await booth.manual(.officeModeOn)
        let office = try XCTUnwrap(emu.site.lock("office-101"))
        await emu.site.iq("iq-lobby")?.setOnline(false)
        for _ in 0..<3 { try await office.presentTag(unknown) }
        let roomBefore = await room.status
        let officeBefore = await office.status
        await emu.shutdown()

        emu = try await startEmulator()
        let room2 = try XCTUnwrap(emu.site.lock("room-golden-gate"))
        let roomAfter = await room2.status
        XCTAssertEqual(roomAfter.state, .unlocked)
        XCTAssertEqual(roomAfter.unlockedUntil, roomBefore.unlockedUntil)
        XCTAssertEqual(roomAfter.lastSequence, roomBefore.lastSequence)
        let boothState = await emu.site.lock("phone-booth-1")!.state
        XCTAssertEqual(boothState, .officeMode)
        let office2 = try XCTUnwrap(emu.site.lock("office-101"))
        let officeAfter = await office2.status
        XCTAssertEqual(officeAfter.trailCount, officeBefore.trailCount, "the held events are the lock's trail again")
        XCTAssertEqual(officeAfter.lastSequence, officeBefore.lastSequence)
        let next = try await office2.presentTag(unknown)
        XCTAssertEqual(next.record.sequence, officeBefore.lastSequence + 1, "numbering continues")
        let id = await emu.bridge.eventID(for: next)
        XCTAssertNotNil(id, "and the journal takes it")

        await emu.simulatedClock!.advance(by: 8)
        await emu.bridge.flush()
        let relocked = await room2.state
        XCTAssertEqual(relocked, .locked, "the restored open window ends on time")
        _ = await emu.site.iq("iq-lobby")!.syncNow()
        await emu.bridge.flush()
        let source = try EventSource.lock(site: emu.config.siteID, id: "office-101")
        let held = try await emu.journal.events(EventQuery(source: source, stages: [.held]))
        XCTAssertEqual(held.count, 0, "the next IQ sync collected every held event")
        XCTAssertEqual(emu.bridge.failures, 0)
        await emu.shutdown()
    }

    func testAResetKeepsNumberingAndTrailsAndSilencesTheDevicesItReplaced() async throws {
        let emu = try await startEmulator()
        await emu.site.iq("iq-lobby")?.setOnline(false)
        let old = try XCTUnwrap(emu.site.lock("office-101"))
        for _ in 0..<3 { try await old.presentTag(unknown) }
        let before = await old.status
        _ = try await emu.reset()

        let fresh = try XCTUnwrap(emu.site.lock("office-101"))
        XCTAssertFalse(fresh === old)
        let status = await fresh.status
        XCTAssertEqual(status.trailCount, before.trailCount, "events recorded before the reset are still the lock's to hand over")
        XCTAssertEqual(status.lastSequence, before.lastSequence)

        let ghost = try await old.presentTag(unknown)   // the replaced lock, still referenced
        let ghostID = await emu.bridge.eventID(for: ghost)
        XCTAssertNil(ghostID, "a replaced device writes nothing")
        let d = try await fresh.presentTag(unknown)
        XCTAssertEqual(d.record.sequence, before.lastSequence + 1)
        let id = await emu.bridge.eventID(for: d)
        XCTAssertNotNil(id, "the fresh lock's number was not taken by the ghost")

        _ = await emu.site.iq("iq-lobby")!.syncNow()
        await emu.bridge.flush()
        let source = try EventSource.lock(site: emu.config.siteID, id: "office-101")
        let all = try await emu.journal.events(EventQuery(source: source, limit: 1000))
        XCTAssertEqual(all.map(\.sequence), Array(1...Int64(before.lastSequence + 1)), "no gap, no repeat")
        XCTAssertTrue(all.allSatisfy { $0.stage != .held }, "nothing orphaned by the reset")
        await emu.shutdown()
    }
}
