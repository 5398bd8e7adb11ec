@testable import Events
import Foundation
import GRDB
import XCTest

/// Delivery over real HTTP to an independent receiver: Python's `standardwebhooks` verifies every
/// signature and the `cloudevents` SDK parses every body (Tests/peers/webhook_receiver.py).
final class WebhookPeerTests: XCTestCase {
    var dir: TempDir!
    override func setUpWithError() throws { dir = try TempDir() }
    override func tearDown() { dir = nil }

    let fast = RetryPolicy(initialDelay: .milliseconds(5), maxDelay: .milliseconds(50))

    func config(concurrency: Int = 4) -> DeliveryConfiguration {
        DeliveryConfiguration(requireCollected: false, batchSize: 10, concurrency: concurrency, retry: fast,
                              requestTimeout: .seconds(5), pollInterval: .milliseconds(20))
    }

    /// Records `perSource` events for each of `sources` locks; returns them by id.
    func recordEvents(_ j: EventJournal, sources: Int, perSource: Int, user: (Int, Int) -> String = { _, n in "user-\(n)" }) async throws -> [String: RecordedEvent] {
        var out: [String: RecordedEvent] = [:]
        for n in 0..<perSource {
            for s in 0..<sources {
                let r = try await j.record(try lockEvent("hq", "lock-\(s)", n, user: user(s, n)))
                out[r.id] = r
            }
        }
        return out
    }

    /// Every accepted request verified and parsed; per source, requests never run ahead of an
    /// unacknowledged event; each id always came with the same bytes; every event arrived.
    func assertDeliveredOnce(_ records: [WebhookReceiver.Record], expected: [String: RecordedEvent],
                             file: StaticString = #filePath, line: UInt = #line) {
        for r in records {
            XCTAssertTrue(r.verified, "signature rejected by standardwebhooks: \(r.verify_error ?? "")", file: file, line: line)
            XCTAssertTrue(r.parsed, "cloudevents SDK could not parse: \(r.parse_error ?? "")", file: file, line: line)
            XCTAssertEqual(r.webhook_id, r.id, "webhook-id is the CloudEvent id", file: file, line: line)
            XCTAssertEqual(r.content_type, "application/cloudevents+json; charset=utf-8", file: file, line: line)
        }
        let accepted = records.filter { (200..<300).contains($0.status) }
        XCTAssertEqual(Set(accepted.compactMap(\.id)), Set(expected.keys), "every event arrived", file: file, line: line)
        for (id, same) in Dictionary(grouping: records, by: { $0.id ?? "" }) {
            XCTAssertEqual(Set(same.map(\.body_sha256)).count, 1, "duplicates of \(id) carry identical bodies", file: file, line: line)
            if let e = expected[id] {
                XCTAssertEqual(same.first?.sequence, e.sequence, file: file, line: line)
                XCTAssertEqual(same.first?.source, e.source.path, file: file, line: line)
            }
        }
        for (source, list) in Dictionary(grouping: records.sorted { $0.n < $1.n }, by: { $0.source ?? "" }) {
            var ackedThrough: Int64 = 0
            for r in list {
                guard let seq = r.sequence else { continue }
                XCTAssertLessThanOrEqual(seq, ackedThrough + 1, "\(source): request for \(seq) before \(ackedThrough + 1) was acknowledged",
                                         file: file, line: line)
                if (200..<300).contains(r.status) || (400..<500).contains(r.status) && r.status != 408 && r.status != 429 {
                    ackedThrough = max(ackedThrough, seq)
                }
            }
        }
    }

    func testSignedCloudEventsVerifiedByIndependentPeers() async throws {
        let (secret, text) = WebhookSecret.generate()
        let receiver = try WebhookReceiver(dir: dir, secret: text)
        let j = try EventJournal(path: dir.path("j.db"))
        let d = try makeDelivery(journal: j, targets: [.webhook(try WebhookEndpoint(name: "core", url: receiver.url, secret: secret))],
                                    configuration: config())
        try await d.start()
        let expected = try await recordEvents(j, sources: 3, perSource: 15)
        let idle = try await d.waitUntilIdle(timeout: .seconds(20))
        XCTAssertTrue(idle)
        await d.stop()
        let records = try receiver.records()
        XCTAssertEqual(records.count, 45, "no failures injected: exactly one request per event")
        assertDeliveredOnce(records, expected: expected)
        let stages = try await j.events(EventQuery(limit: 100)).map(\.stage)
        XCTAssertTrue(stages.allSatisfy { $0 == .delivered })
        let status = try await j.deliveryStatus()
        XCTAssertEqual(status.first?.description, receiver.url, "redacted form of a URL without credentials is the URL")
        XCTAssertEqual(status.first?.lastStatus, 204)
        receiver.stop()
        try await j.close()
    }

    func testReceiverRefusesThenRecovers() async throws {
        let (secret, text) = WebhookSecret.generate()
        let receiver = try WebhookReceiver(dir: dir, secret: text, failFirst: 12, failStatus: 503, retryAfter: 0)
        let j = try EventJournal(path: dir.path("j.db"))
        let d = try makeDelivery(journal: j, targets: [.webhook(try WebhookEndpoint(url: receiver.url, secret: secret))],
                                    configuration: config())
        try await d.start()
        let expected = try await recordEvents(j, sources: 4, perSource: 10)
        let idle = try await d.waitUntilIdle(timeout: .seconds(20))
        XCTAssertTrue(idle)
        await d.stop()
        let records = try receiver.records()
        XCTAssertEqual(records.filter { $0.status == 503 }.count, 12)
        XCTAssertEqual(records.filter { $0.status == 204 }.count, 40)
        XCTAssertGreaterThan(records.count, Set(records.compactMap(\.id)).count, "refused events were sent again, under the same id")
        assertDeliveredOnce(records, expected: expected)
        let letters = try await j.deadLetters()
        XCTAssertTrue(letters.isEmpty, "5xx is never a dead letter")
        receiver.stop()
        try await j.close()
    }

    func testClientErrorGoesToDeadLetters() async throws {
        let (secret, text) = WebhookSecret.generate()
        let receiver = try WebhookReceiver(dir: dir, secret: text, rejectUsers: ["mallory"])
        let j = try EventJournal(path: dir.path("j.db"))
        let d = try makeDelivery(journal: j, targets: [.webhook(try WebhookEndpoint(name: "core", url: receiver.url, secret: secret))],
                                    configuration: config())
        try await d.start()
        let events = try await recordEvents(j, sources: 2, perSource: 6, user: { s, n in s == 1 && n == 2 ? "mallory" : "user-\(n)" })
        let idle = try await d.waitUntilIdle(timeout: .seconds(20))
        XCTAssertTrue(idle)
        await d.stop()
        let bad = try XCTUnwrap(events.values.first { $0.event.user == "mallory" })
        let letters = try await j.deadLetters(endpoint: "core")
        XCTAssertEqual(letters.map(\.eventID), [bad.id])
        XCTAssertEqual(letters.first?.status, 400)
        XCTAssertEqual(letters.first?.responseBody, #"{"error": "user mallory is not allowed here"}"#)
        XCTAssertEqual(letters.first?.attempts, 1)
        let stage = try await j.event(id: bad.id)?.stage
        XCTAssertEqual(stage, .deadLettered)
        let records = try receiver.records()
        XCTAssertEqual(records.filter { $0.id == bad.id }.count, 1, "a 4xx is final: not retried")
        var good = events
        good[bad.id] = nil
        assertDeliveredOnce(records, expected: good)
        let laterSameSource = records.filter { $0.source == bad.source.path && ($0.sequence ?? 0) > bad.sequence && $0.status == 204 }
        XCTAssertEqual(laterSameSource.count, 3, "the source continues after a dead letter")
        receiver.stop()
        try await j.close()
    }

    func testReceiverDownThenStarted() async throws {
        let (secret, text) = WebhookSecret.generate()
        let port = try WebhookReceiver.freePort()
        let url = "http://127.0.0.1:\(port)/hooks/keyway"
        let j = try EventJournal(path: dir.path("j.db"))
        let d = try makeDelivery(journal: j, targets: [.webhook(try WebhookEndpoint(name: "core", url: url, secret: secret))],
                                    configuration: config(concurrency: 2))
        try await d.start()
        let expected = try await recordEvents(j, sources: 2, perSource: 8)
        let failing = try await eventually { try await j.deliveryStatus().first?.lastError != nil }
        XCTAssertTrue(failing, "delivery must notice the endpoint is down")
        let down = try await j.deliveryStatus().first
        XCTAssertEqual(down?.delivered, 0)
        XCTAssertGreaterThan(down?.retryingSources ?? 0, 0)
        // Let it keep failing for a while — a condition, not a pause: some source has failed three attempts
        // in a row, so delivery must recover from a real backoff, not from its first failure.
        let retried = try await eventually {
            try await j.dbPool.read { try Int.fetchOne($0, sql: "SELECT COALESCE(MAX(attempts), 0) FROM delivery_cursors") ?? 0 } >= 3
        }
        XCTAssertTrue(retried, "delivery retries while the endpoint is down")
        let receiver = try WebhookReceiver(dir: dir, secret: text, port: port)
        let idle = try await d.waitUntilIdle(timeout: .seconds(20))
        XCTAssertTrue(idle)
        await d.stop()
        assertDeliveredOnce(try receiver.records(), expected: expected)
        let up = try await j.deliveryStatus().first
        XCTAssertEqual(up?.delivered, 16)
        XCTAssertEqual(up?.retryingSources, 0)
        receiver.stop()
        try await j.close()
    }

    func testRawSecretAndUnsignedRequestsAreRejectedByVerifier() async throws {
        let receiver = try WebhookReceiver(dir: dir, secret: "a plain shared secret", rawSecret: true)
        let j = try EventJournal(path: dir.path("j.db"))
        let good = try WebhookEndpoint(name: "good", url: receiver.url, secret: try WebhookSecret("a plain shared secret"))
        let wrong = try WebhookEndpoint(name: "wrong", url: receiver.url + "?wrong", secret: try WebhookSecret("another secret"))
        let d = try makeDelivery(journal: j, targets: [.webhook(good), .webhook(wrong)], configuration: config())
        try await d.start()
        let r = try await j.record(try lockEvent("hq", "a", 1))
        let idle = try await d.waitUntilIdle(timeout: .seconds(20))
        XCTAssertTrue(idle)
        await d.stop()
        let records = try receiver.records()
        XCTAssertEqual(records.filter { $0.verified }.count, 1)
        XCTAssertEqual(records.filter { !$0.verified }.count, 1, "a wrong key fails the independent verifier")
        let letters = try await j.deadLetters(endpoint: "wrong")
        XCTAssertEqual(letters.first?.status, 401)
        XCTAssertEqual(letters.first?.eventID, r.id)
        receiver.stop()
        try await j.close()
    }
}
