import Events
import Foundation
import GRDB
import Synchronization

/// Measurements for `keyway-bench` (docs/EVENTS.md, "Benchmarks"). Both sides of each ratio run in the
/// same process, on the same file system, with the same durability setting.
enum JournalBenchmark {
    struct Result: Sendable {
        let operations: Int
        let seconds: Double
        let transactions: Int
        var perSecond: Double { seconds > 0 ? Double(operations) / seconds : 0 }
    }

    /// Durable events per second into a fresh journal at `path`: `concurrency` tasks each call
    /// `record` (one event per call) until `events` are recorded. Every call has returned — so every
    /// event is committed, fsynced with `.full` — when the clock stops.
    static func journalThroughput(path: String, events: Int = 200_000, concurrency: Int = 512,
                                         durability: JournalConfiguration.Durability = .full) async throws -> Result {
        let journal = try EventJournal(path: path, configuration: JournalConfiguration(durability: durability))
        let locks = try (0..<64).map { try EventSource.lock(site: "bench", id: "lock-\($0)") }
        let counter = Tickets(limit: events)
        let base = Date(timeIntervalSince1970: 1_740_000_000)
        let start = now()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<max(1, concurrency) {
                group.addTask {
                    while let n = counter.next() {
                        try await journal.record(KeywayEvent(type: .accessGranted, source: locks[n % locks.count],
                                                             time: base.addingTimeInterval(Double(n) / 1000),
                                                             user: "user-\(n % 500)", method: .mobile, action: .open))
                    }
                }
            }
            try await group.waitForAll()
        }
        let elapsed = now() - start
        let transactions = journal.commitCounts.transactions
        try await journal.close()
        return Result(operations: events, seconds: elapsed, transactions: transactions)
    }

    /// The baseline: plain SQLite (GRDB, WAL, same `synchronous`) inserting rows of the same shape with one
    /// transaction — one commit, one fsync — per row.
    static func sqliteOneTransactionPerRow(path: String, rows: Int = 2_000,
                                                  durability: JournalConfiguration.Durability = .full) throws -> Result {
        var config = Configuration()
        config.journalMode = .wal
        let pool = try DatabasePool(path: path, configuration: config)
        let sync = durability == .full ? "FULL" : "NORMAL"
        try pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = \(sync)") }
        try pool.write { db in
            try db.execute(sql: """
                CREATE TABLE IF NOT EXISTS baseline (position INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, source TEXT NOT NULL,
                    seq INTEGER NOT NULL, type TEXT NOT NULL, time_ms INTEGER NOT NULL, user TEXT, UNIQUE (source, seq))
                """)
        }
        let start = now()
        for n in 0..<rows {
            try pool.write { db in
                try db.execute(sql: "INSERT INTO baseline (id, source, seq, type, time_ms, user) VALUES (?, ?, ?, ?, ?, ?)",
                               arguments: [UUIDv7.make(milliseconds: Int64(n)), "/sites/bench/locks/lock-\(n % 64)", n / 64 + 1,
                                           EventType.accessGranted.rawValue, 1_740_000_000_000 + Int64(n), "user-\(n % 500)"])
            }
        }
        let elapsed = now() - start
        try pool.close()
        return Result(operations: rows, seconds: elapsed, transactions: rows)
    }

    /// Signed webhook deliveries per second to `url`: records `events` collected events across `sources`
    /// locks, then times one delivery run until everything is acknowledged.
    static func webhookThroughput(journalPath: String, url: String, secret: String, events: Int = 5_000,
                                         sources: Int = 64, concurrency: Int = 32) async throws -> Result {
        let journal = try EventJournal(path: journalPath, configuration: JournalConfiguration(durability: .normal))
        let locks = try (0..<max(1, sources)).map { try EventSource.lock(site: "bench", id: "lock-\($0)") }
        let base = Date(timeIntervalSince1970: 1_740_000_000)
        var batch: [KeywayEvent] = []
        for n in 0..<events {
            batch.append(KeywayEvent(type: .accessGranted, source: locks[n % locks.count], time: base.addingTimeInterval(Double(n)),
                                     user: "user-\(n % 500)", method: .mobile, action: .open, stage: .collected(by: "iq-bench")))
            if batch.count == 5_000 { try await journal.record(batch); batch = [] }
        }
        if !batch.isEmpty { try await journal.record(batch) }
        let endpoint = try WebhookEndpoint(name: "bench", url: url, secret: try WebhookSecret(secret))
        let delivery = try WebhookDelivery(journal: journal, targets: [.webhook(endpoint)],
                                           configuration: DeliveryConfiguration(batchSize: 200, concurrency: max(1, concurrency),
                                                                                pollInterval: .milliseconds(50)))
        let start = now()
        try await delivery.start()
        let done = try await delivery.waitUntilIdle(timeout: .seconds(600))
        let elapsed = now() - start
        await delivery.stop()
        try await journal.close()
        guard done else { throw EventError.invalidConfiguration("webhook benchmark did not finish within 10 minutes") }
        return Result(operations: events, seconds: elapsed, transactions: 0)
    }
}

/// Hands 0, 1, 2, … to concurrent workers, then nil once `limit` are out.
private final class Tickets: Sendable {
    private let issued = Atomic<Int>(0)
    private let limit: Int
    init(limit: Int) { self.limit = limit }
    func next() -> Int? {
        let n = issued.wrappingAdd(1, ordering: .relaxed).oldValue
        return n < limit ? n : nil
    }
}
