@testable import Events
import Foundation
import GRDB
import XCTest

final class JournalTests: XCTestCase {
    var dir: TempDir!
    override func setUpWithError() throws { dir = try TempDir() }
    override func tearDown() { dir = nil }

    func open(_ config: JournalConfiguration = JournalConfiguration(), name: String = "journal.db", clock: any EventClock = SystemEventClock()) throws -> EventJournal {
        try EventJournal(path: dir.path(name), configuration: config, clock: clock)
    }

    func testRecordRoundTrip() async throws {
        let clock = VirtualClock()
        let j = try open(clock: clock)
        let a1 = try await j.record(try lockEvent("hq", "front", 1))
        let a2 = try await j.record(try lockEvent("hq", "front", 2, type: .accessDenied))
        let iq = try await j.record(KeywayEvent(type: .iqOffline, source: try .iq(site: "hq", id: "iq-1"), time: Date(timeIntervalSince1970: 1_740_000_100)))
        XCTAssertEqual([a1.sequence, a2.sequence, iq.sequence], [1, 2, 1], "sequence numbers count per source")
        XCTAssertEqual(a1.stage, .held)
        XCTAssertEqual(iq.stage, .collected)
        XCTAssertEqual(Set([a1.id, a2.id, iq.id]).count, 3)
        XCTAssertNotNil(UUID(uuidString: a1.id))
        XCTAssertLessThan(a1.position, a2.position)
        XCTAssertEqual(a1.recordedAt, clock.now())

        let all = try await j.events()
        XCTAssertEqual(all.map(\.id), [a1.id, a2.id, iq.id])
        XCTAssertEqual(all[1].event, a2.event)
        XCTAssertEqual(all[1].event.reason, nil)
        XCTAssertEqual(all[0].cloudEventJSON(), a1.cloudEventJSON(), "what was recorded renders identically when read back")
        let byID = try await j.event(id: a2.id)
        XCTAssertEqual(byID?.sequence, 2)
        let missing = try await j.event(id: "nope")
        XCTAssertNil(missing)
        try await j.close()
    }

    func testAttributesAndOptionalFieldsRoundTrip() async throws {
        let j = try open()
        let e = KeywayEvent(type: .batteryLow, source: try .lock(site: "hq", id: "l"), time: Date(timeIntervalSince1970: 1_740_000_000.5),
                            door: "d1", iq: "iq-9", user: "u", keyID: "abcd", method: .tag, action: .officeModeOn, reason: "low",
                            revocationVersion: 12, attributes: ["battery_percent": .int(9), "critical": .bool(false), "note": .string("1")])
        let r = try await j.record(e)
        let back = try await j.events()
        XCTAssertEqual(back.first?.event, r.event)
        XCTAssertEqual(back.first?.event.attributes["critical"], .bool(false))
        XCTAssertEqual(back.first?.event.attributes["note"], .string("1"))
        XCTAssertEqual(back.first?.event.time, Date(timeIntervalSince1970: 1_740_000_000.5))
        try await j.close()
    }

    func testBatchIsAtomicAndConsecutive() async throws {
        let j = try open()
        let batch = try (0..<10).map { try lockEvent("hq", $0 % 2 == 0 ? "a" : "b", $0) }
        let r = try await j.record(batch)
        XCTAssertEqual(r.filter { $0.source.id == "a" }.map(\.sequence), [1, 2, 3, 4, 5])
        XCTAssertEqual(r.filter { $0.source.id == "b" }.map(\.sequence), [1, 2, 3, 4, 5])
        var bad = try (0..<3).map { try lockEvent("hq", "a", $0) }
        bad[2].user = String(repeating: "x", count: 1000)
        do {
            _ = try await j.record(bad)
            XCTFail("oversized field must be refused")
        } catch {
            XCTAssertEqual(error as? EventError, .fieldTooLong(field: "user", limit: 256))
        }
        let count = try await j.events(EventQuery(limit: 1000)).count
        XCTAssertEqual(count, 10, "a refused batch records nothing")
        let next = try await j.record(try lockEvent("hq", "a", 99))
        XCTAssertEqual(next.sequence, 6, "no sequence number was burnt")
        try await j.close()
    }

    func testStagesHeldCollected() async throws {
        let j = try open()
        let src = try EventSource.lock(site: "hq", id: "front")
        for n in 1...5 { try await j.record(try lockEvent("hq", "front", n)) }
        var held = try await j.events(EventQuery(stages: [.held]))
        XCTAssertEqual(held.count, 5)
        let partial = try await j.markCollected(source: src, through: 2, by: "iq-1")
        XCTAssertEqual(partial.collected, 2)
        XCTAssertNil(partial.overflow)
        let collected = try await j.events(EventQuery(stages: [.collected]))
        XCTAssertEqual(collected.map(\.sequence), [1, 2])
        XCTAssertEqual(collected.first?.collectedBy, "iq-1")
        XCTAssertNotNil(collected.first?.collectedAt)
        // An online IQ in range uploads the rest of the trail before the new event.
        let live = try await j.record(try lockEvent("hq", "front", 6, stage: .collected(by: "iq-2")))
        XCTAssertEqual(live.sequence, 6)
        XCTAssertEqual(live.stage, .collected)
        held = try await j.events(EventQuery(stages: [.held]))
        XCTAssertTrue(held.isEmpty)
        let again = try await j.markCollected(source: src, by: "iq-1")
        XCTAssertEqual(again.collected, 0, "collecting twice is harmless")
        let sources = try await j.sources()
        XCTAssertEqual(sources.first?.collectedSequence, 6)
        XCTAssertEqual(sources.first?.held, 0)
        try await j.close()
    }

    func testTrailOverflowIsReportedNeverSilent() async throws {
        let j = try open(JournalConfiguration(defaultTrailCapacity: 3))
        let src = try EventSource.lock(site: "hq", id: "cellar")
        for n in 1...5 { try await j.record(try lockEvent("hq", "cellar", n)) }
        let lost = try await j.events(EventQuery(stages: [.lost]))
        XCTAssertEqual(lost.map(\.sequence), [1, 2], "the oldest held events are the ones a full trail drops")
        var st = try await j.sources()
        XCTAssertEqual(st.first?.held, 3)
        XCTAssertEqual(st.first?.lostTotal, 2)
        let report = try await j.markCollected(source: src, by: "iq-7")
        XCTAssertEqual(report.collected, 3)
        let overflow = try XCTUnwrap(report.overflow)
        XCTAssertEqual(overflow.type, .trailOverflow)
        XCTAssertEqual(overflow.sequence, 6)
        XCTAssertEqual(overflow.stage, .collected)
        XCTAssertEqual(overflow.event.attributes["lost_count"], .int(2))
        XCTAssertEqual(overflow.event.attributes["first_lost_sequence"], .int(1))
        XCTAssertEqual(overflow.event.attributes["last_lost_sequence"], .int(2))
        XCTAssertEqual(overflow.event.attributes["trail_capacity"], .int(3))
        XCTAssertEqual(overflow.event.time, Date(timeIntervalSince1970: 1_740_000_005), "reported at the lock's last known time")
        let second = try await j.markCollected(source: src, by: "iq-7")
        XCTAssertNil(second.overflow, "a loss is reported once")
        // A per-source capacity overrides the default.
        try await j.setTrailCapacity(1, for: src)
        for n in 7...9 { try await j.record(try lockEvent("hq", "cellar", n)) }
        st = try await j.sources()
        XCTAssertEqual(st.first?.held, 1)
        XCTAssertEqual(st.first?.trailCapacity, 1)
        let stats = try await j.stats()
        XCTAssertEqual(stats.lost, 4)
        XCTAssertEqual(stats.byType[.trailOverflow], 1)
        try await j.close()
    }

    func testQueries() async throws {
        let j = try open()
        for n in 0..<30 {
            let site = n % 3 == 0 ? "annex" : "hq"
            try await j.record(try lockEvent(site, "l\(n % 2)", n, type: n % 5 == 0 ? .accessDenied : .accessGranted))
        }
        try await j.record(KeywayEvent(type: .doorForced, source: try .controller(site: "hq", id: "l0"), time: Date(timeIntervalSince1970: 1_740_000_100)))
        let denied = try await j.events(EventQuery(types: [.accessDenied]))
        XCTAssertEqual(denied.count, 6)
        XCTAssertTrue(denied.allSatisfy { $0.type == .accessDenied })
        let l0 = try await j.events(EventQuery(lock: "l0", limit: 100))
        XCTAssertEqual(l0.count, 16, "a lock id matches locks and door controllers")
        let l0hq = try await j.events(EventQuery(site: "hq", lock: "l0", limit: 100))
        XCTAssertTrue(l0hq.allSatisfy { $0.source.site == "hq" })
        let src = try await j.events(EventQuery(source: try .lock(site: "annex", id: "l1")))
        XCTAssertEqual(src.map(\.sequence), Array(1...Int64(src.count)))
        let since = try await j.events(EventQuery(since: Date(timeIntervalSince1970: 1_740_000_020), until: Date(timeIntervalSince1970: 1_740_000_025)))
        XCTAssertEqual(since.count, 5)
        // Paging with a cursor, both directions.
        var seen: [Int64] = []
        var cursor: Int64?
        while true {
            let page = try await j.events(EventQuery(after: cursor, limit: 7))
            if page.isEmpty { break }
            seen += page.map(\.position)
            cursor = page.last?.position
        }
        XCTAssertEqual(seen.count, 31)
        XCTAssertEqual(seen, seen.sorted())
        let newest = try await j.events(EventQuery(limit: 3, newestFirst: true))
        XCTAssertEqual(newest.map(\.position), Array(seen.suffix(3).reversed()))
        let older = try await j.events(EventQuery(after: newest.last?.position, limit: 2, newestFirst: true))
        XCTAssertEqual(older.map(\.position), Array(seen.dropLast(3).suffix(2).reversed()))
        do {
            _ = try await j.events(EventQuery(limit: 0))
            XCTFail("limit 0 must be refused")
        } catch {}
        try await j.close()
    }

    /// Many callers at once: every call gets its own durable, gap-free sequence number and unique id, and
    /// the calls really share transactions.
    func testGroupCommitUnderConcurrency() async throws {
        let j = try open()
        let callers = 2000
        let results = try await withThrowingTaskGroup(of: RecordedEvent.self) { group in
            for n in 0..<callers {
                group.addTask { try await j.record(try lockEvent("hq", "lock-\(n % 8)", n)) }
            }
            var out: [RecordedEvent] = []
            for try await r in group { out.append(r) }
            return out
        }
        XCTAssertEqual(results.count, callers)
        XCTAssertEqual(Set(results.map(\.id)).count, callers)
        XCTAssertEqual(Set(results.map(\.position)).count, callers)
        for (source, rs) in Dictionary(grouping: results, by: \.source.path) {
            XCTAssertEqual(rs.map(\.sequence).sorted(), Array(1...Int64(rs.count)), source)
        }
        let (transactions, operations) = j.commitCounts
        XCTAssertEqual(operations, callers)
        XCTAssertLessThan(transactions, callers / 4, "concurrent records must share transactions (got \(transactions))")
        try await j.close()
        let reopened = try open()
        let stored = try await reopened.events(EventQuery(limit: 10_000))
        XCTAssertEqual(Dictionary(uniqueKeysWithValues: stored.map { ($0.id, $0.sequence) }),
                       Dictionary(uniqueKeysWithValues: results.map { ($0.id, $0.sequence) }),
                       "after reopening, every acknowledged event is there with the same id and sequence")
        try await reopened.close()
    }

    func testReopenKeepsIdsAndContinuesSequences() async throws {
        var j = try open()
        var ids: [String] = []
        for n in 0..<5 { ids.append(try await j.record(try lockEvent("hq", "front", n)).id) }
        try await j.close()
        do {
            try await j.record(try lockEvent("hq", "front", 9))
            XCTFail("a closed journal must refuse records")
        } catch {
            XCTAssertEqual(error as? EventError, .journalClosed)
        }
        j = try open()
        let back = try await j.events()
        XCTAssertEqual(back.map(\.id), ids)
        let next = try await j.record(try lockEvent("hq", "front", 10))
        XCTAssertEqual(next.sequence, 6)
        XCTAssertFalse(ids.contains(next.id))
        try await j.close()
    }

    /// Two journals on one file (two processes, in effect) writing the same source: the per-source state
    /// cached between transactions must be dropped whenever the other one committed.
    func testTwoWritersOnOneFileKeepSequencesConsistent() async throws {
        let a = try open(name: "shared.db")
        let b = try open(name: "shared.db")
        var seqs: [Int64] = []
        for n in 0..<6 {
            let j = n % 2 == 0 ? a : b
            seqs.append(try await j.record(try lockEvent("hq", "front", n)).sequence)
        }
        XCTAssertEqual(seqs, [1, 2, 3, 4, 5, 6])
        try await b.markCollected(source: try .lock(site: "hq", id: "front"), through: 3)
        let next = try await a.record(try lockEvent("hq", "front", 7, stage: .collected(by: "iq")))
        XCTAssertEqual(next.sequence, 7)
        let held = try await a.events(EventQuery(stages: [.held]))
        XCTAssertTrue(held.isEmpty, "a's view of the collected prefix includes b's collection")
        try await a.close()
        try await b.close()
    }

    func testDurabilitySettings() async throws {
        let full = try open(name: "full.db")
        let normal = try open(JournalConfiguration(durability: .normal), name: "normal.db")
        let fullSync = try await full.dbPool.write { try Int.fetchOne($0, sql: "PRAGMA synchronous") }
        let normalSync = try await normal.dbPool.write { try Int.fetchOne($0, sql: "PRAGMA synchronous") }
        let mode = try await full.dbPool.read { try String.fetchOne($0, sql: "PRAGMA journal_mode") }
        XCTAssertEqual(fullSync, 2, "FULL")
        XCTAssertEqual(normalSync, 1, "NORMAL")
        XCTAssertEqual(mode, "wal")
        try await full.close()
        try await normal.close()
        XCTAssertThrowsError(try open(JournalConfiguration(defaultTrailCapacity: 0), name: "bad.db"))
    }

    /// Records events on `lock` until cancelled. A follower that started too late — the race the follow
    /// tests guard against — still gets events then, and fails its assertion instead of waiting forever.
    func keepRecording(_ j: EventJournal, lock: String) -> Task<Void, Error> {
        Task {
            var n = 0
            while !Task.isCancelled {
                n += 1
                try await j.record(try lockEvent("hq", lock, n))
            }
        }
    }

    func testFollowStreamsNewEventsInOrder() async throws {
        let j = try open()
        try await j.record(try lockEvent("hq", "a", 0))   // before following: not replayed
        let stream = j.follow(EventQuery(types: [.accessGranted]))
        let reader = Task { () -> [Int64] in
            var got: [Int64] = []
            for try await e in stream {
                got.append(e.sequence)
                if got.count == 10 { break }
            }
            return got
        }
        // No pause before recording: `follow` fixed its start when it returned.
        for n in 1...15 { try await j.record(try lockEvent("hq", "a", n, type: n % 3 == 0 ? .doorOpened : .accessGranted)) }
        let pump = keepRecording(j, lock: "pump")
        let got = try await reader.value
        pump.cancel()
        _ = await pump.result
        XCTAssertEqual(got, [2, 3, 5, 6, 8, 9, 11, 12, 14, 15].map { Int64($0) }.map { $0 }, "filtered, ordered, nothing from before")
        try await j.close()
    }

    /// `keyway events --follow` runs in another process than the emulator: it must see writes it was not
    /// told about. A second connection to the same file stands in for the other process.
    func testFollowSeesWritesFromAnotherConnection() async throws {
        let reader = try open(JournalConfiguration(followPollInterval: .milliseconds(20)), name: "shared.db")
        let writer = try open(name: "shared.db")
        let stream = reader.follow()
        let task = Task { () -> RecordedEvent? in
            for try await e in stream { return e }
            return nil
        }
        let recorded = try await writer.record(try lockEvent("hq", "remote", 1))   // right after follow() returned
        let pump = keepRecording(writer, lock: "pump")
        let seen = try await task.value
        pump.cancel()
        _ = await pump.result
        XCTAssertEqual(seen?.id, recorded.id)
        try await writer.close()
        try await reader.close()
    }

    /// `follow` starts at the end of the journal as it is when `follow` is called — not when its task
    /// first runs, nor when someone starts iterating. An event recorded the moment it returns is the
    /// first one delivered; the one recorded just before is not. Many rounds, because the old code lost
    /// the race only sometimes.
    func testFollowStartsWhenCalledSoAnEventRecordedRightAfterIsDelivered() async throws {
        let j = try open(JournalConfiguration(durability: .normal))
        for round in 0..<50 {
            let before = try await j.record(try lockEvent("hq", "a", 2 * round))
            let stream = j.follow()
            let after = try await j.record(try lockEvent("hq", "a", 2 * round + 1))
            let pump = keepRecording(j, lock: "pump-\(round)")
            var events = stream.makeAsyncIterator()
            let first = try await events.next()
            pump.cancel()
            _ = await pump.result
            XCTAssertEqual(first?.id, after.id, "round \(round): the event recorded right after follow() returned")
            XCTAssertNotEqual(first?.id, before.id, "round \(round): an event from before follow() is not replayed")
        }
        try await j.close()
    }

    func testStats() async throws {
        let j = try open()
        for n in 0..<4 { try await j.record(try lockEvent("hq", "a", n)) }
        try await j.markCollected(source: try .lock(site: "hq", id: "a"), through: 1)
        try await j.record(KeywayEvent(type: .powerLost, source: try .controller(site: "hq", id: "c"), time: Date(timeIntervalSince1970: 1)))
        let s = try await j.stats()
        XCTAssertEqual(s.events, 5)
        XCTAssertEqual(s.held, 3)
        XCTAssertEqual(s.collected, 2)
        XCTAssertEqual(s.sources, 2)
        XCTAssertEqual(s.byType[.accessGranted], 4)
        XCTAssertEqual(s.byType[.powerLost], 1)
        XCTAssertGreaterThan(s.fileBytes, 0)
        XCTAssertEqual(s.lastPosition, 5)
        try await j.close()
    }
}
