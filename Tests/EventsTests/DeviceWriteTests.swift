@testable import Events
import Foundation
import XCTest

/// The journal as a device's flash: device-numbered events, trail losses decided by the device, the
/// hand-over to an IQ, device memory — each write one transaction, in the order devices made them.
final class DeviceWriteTests: XCTestCase {
    var dir: TempDir!
    override func setUpWithError() throws { dir = try TempDir() }
    override func tearDown() { dir = nil }

    let fast = RetryPolicy(initialDelay: .milliseconds(2), maxDelay: .milliseconds(20))

    func event(_ lock: String, _ seq: Int64, type: EventType = .accessDenied) throws -> KeywayEvent {
        var e = try lockEvent("hq", lock, Int(seq), type: type)
        e.sequence = seq
        return e
    }

    /// Enqueues `w` and waits for its transaction.
    @discardableResult
    func write(_ j: EventJournal, _ w: DeviceWrite) async throws -> DeviceWriteResult {
        try await withCheckedThrowingContinuation { c in j.enqueue(w) { c.resume(with: $0) } }
    }

    func testTheDeviceNumbersItsEventsAndARepeatIsRefusedAlone() async throws {
        let j = try EventJournal(path: dir.path("j.db"))
        let src = try EventSource.lock(site: "hq", id: "door")
        let a = try await write(j, DeviceWrite(source: src, event: try event("door", 5), memory: ["state": [1]]))
        XCTAssertEqual(a.recorded?.sequence, 5, "the device's number is the journal's")
        let repeated = try await write(j, DeviceWrite(source: src, event: try event("door", 5), memory: ["state": [2]]))
        XCTAssertNil(repeated.recorded)
        XCTAssertEqual(repeated.eventError, .invalidSequence(5), "a sequence is never handed out twice")
        let flash = try await j.deviceFlash(site: "hq")[src.path]
        XCTAssertEqual(flash?.memory["state"], [2], "the rest of the write (the device's memory) still went in")
        XCTAssertEqual(flash?.lastSequence, 5)
        XCTAssertEqual(flash?.held.map(\.sequence), [5])
    }

    /// What the device's trail dropped is `lost` in the same transaction; the hand-over collects exactly
    /// the kept events plus the device's overflow report; delivery never sends a lost event.
    func testLossesAreTheDevicesAndNeverReachASink() async throws {
        let j = try EventJournal(path: dir.path("j.db"))
        let sink = RecordingSink()
        let d = try makeDelivery(journal: j, targets: [.custom(sink)],
                                 configuration: DeliveryConfiguration(retry: fast, pollInterval: .milliseconds(20)))
        try await d.start()
        let src = try EventSource.lock(site: "hq", id: "locker")
        // A trail of 3: records 4…7 each push the oldest out.
        for n: Int64 in 1...7 {
            try await write(j, DeviceWrite(source: src, event: try event("locker", n), lost: n > 3 ? [n - 3] : []))
        }
        var stages = try await j.events(EventQuery(source: src)).map(\.stage)
        XCTAssertEqual(stages, [.lost, .lost, .lost, .lost, .held, .held, .held])
        var overflow = try event("locker", 8, type: .trailOverflow)
        overflow.attributes = ["lost_count": .int(4)]
        let handover = try await write(j, DeviceWrite(source: src, event: overflow, collectedThrough: 8, collectedBy: "iq-1"))
        XCTAssertEqual(handover.recorded?.sequence, 8)
        let idle = try await d.waitUntilIdle(timeout: .seconds(10))
        XCTAssertTrue(idle)
        XCTAssertEqual(sink.accepted.map(\.sequence), [5, 6, 7, 8], "exactly the kept events, then the report")
        stages = try await j.events(EventQuery(source: src)).map(\.stage)
        XCTAssertEqual(stages, [.lost, .lost, .lost, .lost, .delivered, .delivered, .delivered, .delivered])
        let lost = try await j.events(EventQuery(source: src, stages: [.lost])).count
        XCTAssertEqual(lost, 4, "lost_count equals the events the journal marks lost")
        let state = try await j.sources().first { $0.source == src.path }
        XCTAssertEqual(state?.lostTotal, 4)
        XCTAssertEqual(state?.held, 0)
        await d.stop()
    }

    /// Writes are applied in the order they were enqueued, whatever transactions they share; a barrier
    /// returns only after everything before it committed.
    func testOneQueueInOrderAndABarrier() async throws {
        let j = try EventJournal(path: dir.path("j.db"), configuration: JournalConfiguration(maxOperationsPerCommit: 7))
        let src = try EventSource.lock(site: "hq", id: "busy")
        let done = Counter()
        for n: Int64 in 1...200 {
            j.enqueue(DeviceWrite(source: src, event: try event("busy", n), memory: ["n": Array(String(n).utf8)])) { r in
                if case .success(let w) = r, w.recorded?.sequence == n { done.add() }
            }
        }
        await j.barrier()
        XCTAssertEqual(done.value, 200, "every write committed, each with its own number, before the barrier returned")
        let flash = try await j.deviceFlash(site: "hq")[src.path]
        XCTAssertEqual(flash?.memory["n"], Array("200".utf8), "the last write's memory is the device's")
        XCTAssertEqual(flash?.held.count, 200)
        XCTAssertGreaterThan(j.commitCounts.transactions, 200 / 7, "the queue was split over several transactions")
    }

    /// Memory survives reopening the file (a restart), with the trail's held events and the numbering.
    func testTheFlashSurvivesReopening() async throws {
        let path = dir.path("j.db")
        let src = try EventSource.lock(site: "hq", id: "front")
        do {
            let j = try EventJournal(path: path)
            for n: Int64 in 1...4 { try await write(j, DeviceWrite(source: src, event: try event("front", n), memory: ["state": [UInt8(n)]])) }
            try await write(j, DeviceWrite(source: src, collectedThrough: 2, collectedBy: "iq-1"))
            try await j.close()
        }
        let j = try EventJournal(path: path)
        let flash = try await j.deviceFlash(site: "hq")[src.path]
        XCTAssertEqual(flash?.lastSequence, 4)
        XCTAssertEqual(flash?.held.map(\.sequence), [3, 4], "the trail is what no IQ collected")
        XCTAssertEqual(flash?.memory["state"], [4])
        let other = try await j.deviceFlash(site: "elsewhere")
        XCTAssertTrue(other.isEmpty, "only the site's own devices")
        var stranger = try lockEvent("hXq", "front", 1)
        stranger.sequence = 1
        try await write(j, DeviceWrite(source: stranger.source, event: stranger, memory: ["state": [9]]))
        let lookalike = try await j.deviceFlash(site: "h_q")
        XCTAssertTrue(lookalike.isEmpty, "a site id is matched exactly, `_` included")
        let own = try await j.deviceFlash(site: "hq")
        XCTAssertEqual(own.keys.sorted(), [src.path])
    }
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func add() { lock.withLock { n += 1 } }
    var value: Int { lock.withLock { n } }
}
