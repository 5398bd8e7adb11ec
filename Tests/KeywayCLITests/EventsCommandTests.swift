@testable import Events
import Foundation
@testable import keyway
import XCTest

/// `keyway events`: option parsing, the table and JSON-line formats, list-then-follow over a journal.
final class EventsCommandTests: XCTestCase {
    func testFormatterRowsAndJSONLines() throws {
        let src = try EventSource.lock(site: "hq", id: "front")
        let ev = KeywayEvent(type: .accessDenied, source: src, time: Date(timeIntervalSince1970: 1_740_821_400.25),
                             user: "bob\u{1b}[31m", method: .pin, reason: "outside_schedule")
        let r = RecordedEvent(position: 9, id: "id-1", sequence: 3, event: ev, recordedAt: Date(timeIntervalSince1970: 0),
                              collectedAt: nil, collectedBy: nil, stage: .held, deliveries: [])
        let row = EventFormatter.tableRow(r)
        XCTAssertTrue(row.hasPrefix("2025-03-01T09:30:00.250Z hq/locks/front"), row)
        XCTAssertTrue(row.contains("access.denied"))
        XCTAssertTrue(row.contains("held"))
        XCTAssertTrue(row.contains("reason=outside_schedule"))
        XCTAssertFalse(row.contains("\u{1b}"), "control characters from event fields never reach the terminal")
        XCTAssertTrue(EventFormatter.tableHeader.hasPrefix("TIME (LOCK, UTC)"))
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(EventFormatter.jsonLine(r).utf8)) as? [String: Any])
        XCTAssertEqual(json["keywaystage"] as? String, "held")
        XCTAssertEqual(json["keywayposition"] as? Int, 9)
        XCTAssertEqual(json["type"] as? String, "com.keyway.access.denied")
    }

    func testEventsCommandParsing() throws {
        let now = Date(timeIntervalSince1970: 1_000_000)
        XCTAssertEqual(try EventsCommand.parseSince("15m", now: now), Date(timeIntervalSince1970: 1_000_000 - 900))
        XCTAssertEqual(try EventsCommand.parseSince("2d", now: now), Date(timeIntervalSince1970: 1_000_000 - 172_800))
        XCTAssertEqual(try EventsCommand.parseSince("1970-01-01T00:00:10Z", now: now), Date(timeIntervalSince1970: 10))
        XCTAssertThrowsError(try EventsCommand.parseSince("yesterday", now: now)) {
            XCTAssertEqual($0 as? EventError, .invalidSince("yesterday"))
        }
        XCTAssertThrowsError(try EventsCommand.parseSince("-5m", now: now))
        // The server's parser (RFC3339.parse, as GET /v1/events?since= uses): a space is not a `T`, so the
        // CLI refuses what the API refuses (issue 18: the two used to disagree).
        XCTAssertNil(RFC3339.parse("1970-01-01 00:00:10Z"))
        XCTAssertThrowsError(try EventsCommand.parseSince("1970-01-01 00:00:10Z", now: now)) {
            XCTAssertEqual($0 as? EventError, .invalidSince("1970-01-01 00:00:10Z"))
        }
        XCTAssertEqual(try EventsCommand.parseSince("1970-01-01T01:00:10+01:00", now: now), Date(timeIntervalSince1970: 10))
        XCTAssertEqual(try EventsCommand.parseType("door.forced"), .doorForced)
        XCTAssertThrowsError(try EventsCommand.parseType("door.kicked")) { XCTAssertEqual($0 as? EventError, .unknownEventType("door.kicked")) }
        let q = try EventsCommand.query(from: EventsCommandOptions(types: ["access.denied", "com.keyway.door.forced"], lock: "front",
                                                                   since: "1h", stages: ["held"], limit: 20), now: now)
        XCTAssertEqual(q.types, [.accessDenied, .doorForced])
        XCTAssertEqual(q.lock, "front")
        XCTAssertEqual(q.stages, [.held])
        XCTAssertEqual(q.since, Date(timeIntervalSince1970: 1_000_000 - 3600))
        XCTAssertThrowsError(try EventsCommand.query(from: EventsCommandOptions(stages: ["gone"]), now: now))
        XCTAssertThrowsError(try EventsCommand.query(from: EventsCommandOptions(limit: 0), now: now))
    }

    func testEventsCommandListsThenFollows() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("keyway-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let j = try EventJournal(path: dir.appendingPathComponent("j.db").path)
        for n in 0..<5 { try await j.record(try lockEvent("hq", "front", n, type: n == 3 ? .accessDenied : .accessGranted)) }
        final class Lines: @unchecked Sendable {
            let lock = NSLock()
            var items: [String] = []
            func add(_ s: String) { lock.withLock { items.append(s) } }
            var all: [String] { lock.withLock { items } }
        }
        let lines = Lines()
        try await EventsCommand.run(journal: j, options: EventsCommandOptions(limit: 3), emit: { lines.add($0) })
        XCTAssertEqual(lines.all.count, 4)
        XCTAssertTrue(lines.all[0].hasPrefix("TIME"))
        XCTAssertTrue(lines.all[2].contains("access.denied"))

        let json = Lines()
        let follow = Task {
            try await EventsCommand.run(journal: j, options: EventsCommandOptions(follow: true, json: true, types: ["access.denied"], limit: 10),
                                        emit: { json.add($0) })
        }
        let listed = await eventually { json.all.count == 1 }
        XCTAssertTrue(listed, "the one matching event is listed before following")
        try await j.record(try lockEvent("hq", "front", 9, type: .accessDenied))
        let got = await eventually { json.all.count == 2 }
        XCTAssertTrue(got)
        follow.cancel()
        _ = await follow.result
        let obj = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(json.all[1].utf8)) as? [String: Any])
        XCTAssertEqual(obj["type"] as? String, "com.keyway.access.denied")
        XCTAssertEqual(obj["keywaystage"] as? String, "held")
        try await j.close()
    }

    private func lockEvent(_ site: String, _ lock: String, _ n: Int, type: EventType) throws -> KeywayEvent {
        KeywayEvent(type: type, source: try .lock(site: site, id: lock), time: Date(timeIntervalSince1970: 1_740_000_000 + Double(n)),
                    user: "user-\(n)", method: .mobile, action: .open)
    }

    /// Polls until `condition` holds; 30 s only bounds a failure.
    private func eventually(_ condition: () -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + .seconds(30)
        while !condition() {
            if ContinuousClock.now > deadline { return false }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return true
    }
}
