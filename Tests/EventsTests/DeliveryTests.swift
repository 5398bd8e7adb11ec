@testable import Events
import Foundation
import XCTest

/// The delivery worker against in-process sinks: ordering, policy, backoff, dead letters, restarts.
final class DeliveryTests: XCTestCase {
    var dir: TempDir!
    override func setUpWithError() throws { dir = try TempDir() }
    override func tearDown() { dir = nil }

    let fast = RetryPolicy(initialDelay: .milliseconds(2), maxDelay: .milliseconds(20))

    func testHeldEventsWaitForCollectionUnlessPolicySaysOtherwise() async throws {
        let j = try EventJournal(path: dir.path("j.db"))
        let sink = RecordingSink()
        let d = try makeDelivery(journal: j, targets: [.custom(sink)],
                                    configuration: DeliveryConfiguration(retry: fast, pollInterval: .milliseconds(20)))
        try await d.start()
        let src = try EventSource.lock(site: "hq", id: "far")
        for n in 1...3 { try await j.record(try lockEvent("hq", "far", n)) }
        let idleEarly = try await d.waitUntilIdle(timeout: .seconds(2))
        XCTAssertTrue(idleEarly, "nothing deliverable: every event is held")
        // Their absence upstream means something only once the worker has looked at them. An IQ's own event
        // (collected when recorded) recorded after them is delivered by a pass that saw them too; a second
        // one, recorded once the first arrived, can only go in a later pass — so when it arrives, that first
        // pass, with every source it found ready, is over.
        let iq = try EventSource.iq(site: "hq", id: "iq-1")
        var markers: [String] = []
        for n in 1...2 {
            let m = try await j.record(KeywayEvent(type: .iqOffline, source: iq, time: Date(timeIntervalSince1970: 1_740_000_100 + Double(n))))
            markers.append(m.id)
            let arrived = await eventually { sink.accepted.contains { $0.id == m.id } }
            XCTAssertTrue(arrived, "marker \(n) delivered")
        }
        XCTAssertEqual(sink.allAttempts.map(\.id), markers, "an event held by a lock out of IQ reach is not upstream yet")
        try await j.markCollected(source: src, by: "iq-1")
        let idle = try await d.waitUntilIdle(timeout: .seconds(5))
        XCTAssertTrue(idle)
        XCTAssertEqual(sink.accepted.filter { $0.source == src.path }.map(\.sequence), [1, 2, 3])
        let stages = try await j.events(EventQuery(source: src)).map(\.stage)
        XCTAssertEqual(stages, [.delivered, .delivered, .delivered])
        await d.stop()

        // Loopback integration tests deliver at once.
        let sink2 = RecordingSink(name: "loopback")
        let d2 = try makeDelivery(journal: j, targets: [.custom(sink2)],
                                     configuration: DeliveryConfiguration(requireCollected: false, retry: fast, pollInterval: .milliseconds(20)))
        try await d2.start()
        try await j.record(try lockEvent("hq", "far", 4))
        let idle2 = try await d2.waitUntilIdle(timeout: .seconds(5))
        XCTAssertTrue(idle2)
        XCTAssertEqual(sink2.accepted.filter { $0.source == src.path }.map(\.sequence), [1, 2, 3, 4],
                       "a new endpoint starts from the beginning by default")
        let last = try await j.events(EventQuery(limit: 1, newestFirst: true, includeDeliveries: true))
        XCTAssertEqual(last.first?.stage, .held, "not delivered to every endpoint yet: the first endpoint still waits for collection")
        XCTAssertEqual(last.first?.deliveries, [EndpointDelivery(endpoint: "loopback", state: .delivered),
                                                EndpointDelivery(endpoint: "memory", state: .pending)])
        await d2.stop()
        try await j.close()
    }

    /// Several sources in parallel, a sink failing now and then: every event arrives, each source in
    /// strict sequence order, a retried event keeps its id and bytes.
    func testOrderPerSourceUnderFailuresAndConcurrency() async throws {
        let j = try EventJournal(path: dir.path("j.db"))
        let sink = RecordingSink(failEvery: 7)
        let d = try makeDelivery(journal: j, targets: [.custom(sink)],
                                    configuration: DeliveryConfiguration(requireCollected: false, batchSize: 5, concurrency: 3,
                                                                         retry: fast, pollInterval: .milliseconds(20)))
        try await d.start()
        try await withThrowingTaskGroup(of: Void.self) { g in
            for s in 0..<5 {
                g.addTask { for n in 0..<40 { try await j.record(try lockEvent("hq", "lock-\(s)", n)) } }
            }
            try await g.waitForAll()
        }
        let idle = try await d.waitUntilIdle(timeout: .seconds(10))
        XCTAssertTrue(idle)
        await d.stop()
        let attempts = sink.allAttempts
        XCTAssertGreaterThan(attempts.filter { !$0.accepted }.count, 0, "the sink did fail sometimes")
        for (source, list) in Dictionary(grouping: attempts, by: \.source) {
            let seqs = list.map(\.sequence)
            XCTAssertEqual(seqs, seqs.sorted(), "\(source): never ahead of an unacknowledged event")
            XCTAssertEqual(list.filter(\.accepted).map(\.sequence), Array(1...40), source)
        }
        for (_, same) in Dictionary(grouping: attempts, by: \.id) {
            XCTAssertEqual(Set(same.map(\.body)).count, 1, "a retry is byte-identical")
        }
        let delivered = try await j.events(EventQuery(stages: [.delivered], limit: 1000)).count
        XCTAssertEqual(delivered, 200)
        let status = try await d.status()
        XCTAssertEqual(status.first?.delivered, 200)
        XCTAssertEqual(status.first?.pending, 0)
        try await j.close()
    }

    /// On a virtual clock the waits between attempts are exactly the policy's full-jitter delays.
    func testBackoffScheduleOnInjectedClock() async throws {
        let clock = VirtualClock()
        let j = try EventJournal(path: dir.path("j.db"), clock: clock)
        let sink = RecordingSink(clock: clock, failFirst: 4)
        let policy = RetryPolicy(initialDelay: .seconds(1), maxDelay: .seconds(60), multiplier: 2)
        let d = try makeDelivery(journal: j, targets: [.custom(sink)],
                                    configuration: DeliveryConfiguration(requireCollected: false, retry: policy, pollInterval: .seconds(3600)),
                                    clock: clock, random: { 0.5 })
        try await j.record(try lockEvent("hq", "a", 1))
        try await d.start()
        let idle = try await d.waitUntilIdle(timeout: .seconds(10))
        XCTAssertTrue(idle)
        await d.stop()
        let times = sink.allAttempts.map(\.at.timeIntervalSince1970)
        XCTAssertEqual(times.count, 5)
        let gaps = zip(times.dropFirst(), times).map { $0 - $1 }
        for (gap, expected) in zip(gaps, [0.5, 1.0, 2.0, 4.0]) {
            XCTAssertEqual(gap, expected, accuracy: 0.002)
        }
        try await j.close()
    }

    func testDeadLetterKeepsResponseAndCanBeRequeued() async throws {
        let j = try EventJournal(path: dir.path("j.db"))
        let sink = RecordingSink(rejectUsers: ["mallory"])
        let d = try makeDelivery(journal: j, targets: [.custom(sink)],
                                    configuration: DeliveryConfiguration(requireCollected: false, retry: fast, pollInterval: .milliseconds(20)))
        try await d.start()
        try await j.record(try lockEvent("hq", "a", 1, user: "alice"))
        let bad = try await j.record(try lockEvent("hq", "a", 2, user: "mallory"))
        try await j.record(try lockEvent("hq", "a", 3, user: "bob"))
        let idle = try await d.waitUntilIdle(timeout: .seconds(5))
        XCTAssertTrue(idle)
        XCTAssertEqual(sink.accepted.map(\.sequence), [1, 3], "a rejected event does not block its source")
        let letters = try await j.deadLetters()
        XCTAssertEqual(letters.count, 1)
        XCTAssertEqual(letters.first?.eventID, bad.id)
        XCTAssertEqual(letters.first?.status, 422)
        XCTAssertEqual(letters.first?.responseBody, "{\"error\":\"no mallory\"}")
        XCTAssertEqual(letters.first?.endpoint, "memory")
        let stage = try await j.event(id: bad.id)
        XCTAssertEqual(stage?.stage, .deadLettered)
        XCTAssertEqual(stage?.deliveries, [EndpointDelivery(endpoint: "memory", state: .deadLettered(status: 422))])
        let deadQuery = try await j.events(EventQuery(stages: [.deadLettered]))
        XCTAssertEqual(deadQuery.map(\.id), [bad.id])
        let status = try await d.status()
        XCTAssertEqual(status.first?.deadLettered, 1)

        sink.setRejectUsers([])
        let requeued = try await j.requeueDeadLetter(endpoint: "memory", eventID: bad.id)
        XCTAssertTrue(requeued)
        await d.poke()
        let done = try await eventually { try await j.event(id: bad.id)?.stage == .delivered }
        XCTAssertTrue(done)
        XCTAssertEqual(sink.accepted.map(\.sequence), [1, 3, 2])
        let resolved = try await j.deadLetters(includeResolved: true)
        XCTAssertEqual(resolved.first?.state, .delivered)
        let open = try await j.deadLetters()
        XCTAssertTrue(open.isEmpty)
        await d.stop()
        try await j.close()
    }

    /// Progress is in the journal: a new delivery after a restart sends only what was not acknowledged.
    func testRestartResumesFromJournalCursor() async throws {
        var j = try EventJournal(path: dir.path("j.db"))
        let first = RecordingSink(name: "core")
        var d = try makeDelivery(journal: j, targets: [.custom(first)],
                                    configuration: DeliveryConfiguration(requireCollected: false, retry: fast, pollInterval: .milliseconds(20)))
        try await d.start()
        for n in 1...10 { try await j.record(try lockEvent("hq", "a", n)) }
        var idle = try await d.waitUntilIdle(timeout: .seconds(5))
        XCTAssertTrue(idle)
        await d.stop()
        try await j.close()

        j = try EventJournal(path: dir.path("j.db"))
        for n in 11...15 { try await j.record(try lockEvent("hq", "a", n)) }
        let second = RecordingSink(name: "core")
        d = try makeDelivery(journal: j, targets: [.custom(second)],
                                configuration: DeliveryConfiguration(requireCollected: false, retry: fast, pollInterval: .milliseconds(20)))
        try await d.start()
        idle = try await d.waitUntilIdle(timeout: .seconds(5))
        XCTAssertTrue(idle)
        XCTAssertEqual(second.accepted.map(\.sequence), Array(11...15))
        await d.stop()
        try await j.close()
    }

    func testLostEventsAreSkippedAndTheOverflowIsDelivered() async throws {
        let j = try EventJournal(path: dir.path("j.db"), configuration: JournalConfiguration(defaultTrailCapacity: 2))
        let sink = RecordingSink()
        let d = try makeDelivery(journal: j, targets: [.custom(sink)],
                                    configuration: DeliveryConfiguration(retry: fast, pollInterval: .milliseconds(20)))
        try await d.start()
        for n in 1...5 { try await j.record(try lockEvent("hq", "cellar", n)) }
        try await j.markCollected(source: try .lock(site: "hq", id: "cellar"), by: "iq-1")
        let idle = try await d.waitUntilIdle(timeout: .seconds(5))
        XCTAssertTrue(idle)
        XCTAssertEqual(sink.accepted.map(\.sequence), [4, 5, 6])
        let overflow = try await j.events(EventQuery(types: [.trailOverflow]))
        XCTAssertEqual(overflow.first?.sequence, 6)
        XCTAssertEqual(overflow.first?.stage, .delivered)
        await d.stop()
        try await j.close()
    }

    func testStartFromNowSkipsHistory() async throws {
        let j = try EventJournal(path: dir.path("j.db"))
        for n in 1...3 { try await j.record(try lockEvent("hq", "a", n, stage: .collected(by: nil))) }
        let sink = RecordingSink(name: "late")
        struct Late: EventSink {
            let inner: RecordingSink
            var name: String { inner.name }
            var targetDescription: String { "late" }
            var startFrom: EndpointStart { .now }
            func deliver(_ event: RecordedEvent, body: [UInt8]) async -> DeliveryOutcome { await inner.deliver(event, body: body) }
        }
        let d = try makeDelivery(journal: j, targets: [.custom(Late(inner: sink))],
                                    configuration: DeliveryConfiguration(retry: fast, pollInterval: .milliseconds(20)))
        try await d.start()
        try await j.record(try lockEvent("hq", "a", 4, stage: .collected(by: nil)))
        let idle = try await d.waitUntilIdle(timeout: .seconds(5))
        XCTAssertTrue(idle)
        XCTAssertEqual(sink.accepted.map(\.sequence), [4])
        await d.stop()
        try await j.close()
    }

    func testNDJSONFileSink() async throws {
        let j = try EventJournal(path: dir.path("j.db"))
        let out = dir.path("events.ndjson")
        let d = try makeDelivery(journal: j, targets: [.ndjsonFile(path: out)],
                                    configuration: DeliveryConfiguration(requireCollected: false, concurrency: 4, retry: fast,
                                                                         pollInterval: .milliseconds(20)))
        try await d.start()
        var ids: [String] = []
        for n in 0..<30 { ids.append(try await j.record(try lockEvent("hq", "l\(n % 3)", n)).id) }
        let idle = try await d.waitUntilIdle(timeout: .seconds(5))
        XCTAssertTrue(idle)
        await d.stop()
        let lines = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 30)
        var perSource: [String: [Int]] = [:]
        var seenIDs: [String] = []
        for line in lines {
            let obj = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            XCTAssertEqual(obj["specversion"] as? String, "1.0")
            let data = try XCTUnwrap(obj["data"] as? [String: Any])
            perSource[obj["source"] as? String ?? "", default: []].append(data["sequence"] as? Int ?? -1)
            seenIDs.append(obj["id"] as? String ?? "")
        }
        XCTAssertEqual(Set(seenIDs), Set(ids))
        for (_, seqs) in perSource { XCTAssertEqual(seqs, Array(1...10)) }
        try await j.close()
    }

    func testConfigurationIsValidated() throws {
        let j = try EventJournal(path: dir.path("j.db"))
        XCTAssertThrowsError(try makeDelivery(journal: j, targets: [], configuration: DeliveryConfiguration(batchSize: 0)))
        XCTAssertThrowsError(try makeDelivery(journal: j, targets: [], configuration: DeliveryConfiguration(concurrency: 0)))
        XCTAssertThrowsError(try makeDelivery(journal: j, targets: [.stdout(), .stdout()])) {
            XCTAssertEqual($0 as? EventError, .duplicateEndpointName("stdout"))
        }
    }
}
