import Foundation
import KeywayCrypto
import GRDB

/// How the journal trades fsyncs for throughput. See docs/EVENTS.md, "Durability".
public struct JournalConfiguration: Sendable {
    public enum Durability: String, Sendable {
        /// `synchronous=FULL`: every group commit fsyncs the WAL before `record` returns. Survives
        /// `kill -9`, kernel panics and power loss. The default — the design says an event is durable from
        /// the moment the lock records it, and group commit amortises the fsync over every waiting caller.
        case full
        /// `synchronous=NORMAL`: commits reach the OS but the WAL is fsynced only at checkpoints. Survives
        /// `kill -9` of the process (the page cache outlives it) but the newest commits can vanish on power
        /// loss. For tmpfs test runs and benchmarks that isolate CPU cost.
        case normal
    }

    public var durability: Durability
    /// Capacity of a lock's own audit trail when a source has none set: how many events it can hold
    /// before an IQ collects them. `nil` = unbounded.
    public var defaultTrailCapacity: Int?
    /// How often `follow` re-reads the file to see events recorded by *another* process (in-process
    /// records wake followers at once).
    public var followPollInterval: Duration
    /// Most operations folded into one transaction.
    public var maxOperationsPerCommit: Int

    public init(durability: Durability = .full, defaultTrailCapacity: Int? = nil,
                followPollInterval: Duration = .milliseconds(200), maxOperationsPerCommit: Int = 20_000) {
        self.durability = durability
        self.defaultTrailCapacity = defaultTrailCapacity
        self.followPollInterval = followPollInterval
        self.maxOperationsPerCommit = maxOperationsPerCommit
    }
}

/// Filters for `EventJournal.events` and `follow`. Empty sets mean "any".
public struct EventQuery: Sendable, Equatable {
    public var types: Set<EventType>
    public var source: EventSource?
    public var site: String?
    /// A lock or door-controller id (the `lock`/`controller` of `data`), in any site unless `site` is set.
    public var lock: String?
    /// Lock time, inclusive.
    public var since: Date?
    /// Lock time, exclusive.
    public var until: Date?
    public var stages: Set<EventStage>
    /// Only events after this journal position (a cursor from an earlier page or `RecordedEvent.position`).
    public var after: Int64?
    /// 1…10,000.
    public var limit: Int
    /// Newest first (for "the last N events"); positions still identify each event.
    public var newestFirst: Bool
    /// Also fill `RecordedEvent.deliveries` with the per-endpoint state.
    public var includeDeliveries: Bool
    /// Upper bound on position (inclusive), used by `follow` and `keyway events` to page up to a horizon.
    public var throughPosition: Int64?

    public init(types: Set<EventType> = [], source: EventSource? = nil, site: String? = nil, lock: String? = nil,
                since: Date? = nil, until: Date? = nil, stages: Set<EventStage> = [], after: Int64? = nil,
                limit: Int = 100, newestFirst: Bool = false, includeDeliveries: Bool = false) {
        self.types = types
        self.source = source
        self.site = site
        self.lock = lock
        self.since = since
        self.until = until
        self.stages = stages
        self.after = after
        self.limit = limit
        self.newestFirst = newestFirst
        self.includeDeliveries = includeDeliveries
    }

    public static let maxLimit = 10_000
}

/// Result of an IQ collecting a lock's trail.
public struct CollectionReport: Sendable, Equatable {
    /// Events that moved from held to collected.
    public let collected: Int
    /// The `trail.overflow` event recorded because the trail lost events before this collection.
    public let overflow: RecordedEvent?
}

/// Per-source journal state.
public struct SourceState: Sendable, Equatable {
    public let source: String
    public let lastSequence: Int64
    public let collectedSequence: Int64
    public let held: Int64
    public let lostTotal: Int64
    public let trailCapacity: Int?
}

/// An event an endpoint refused with a 4xx.
public struct DeadLetter: Sendable, Equatable {
    public enum State: String, Sendable { case dead, requeued, delivered }
    public let endpoint: String
    public let eventID: String
    public let position: Int64
    public let status: Int
    /// The response body (up to `DeliveryConfiguration.maxResponseBodyBytes`, decoded as UTF-8).
    public let responseBody: String
    public let responseTruncated: Bool
    public let attempts: Int
    public let deadAt: Date
    public let state: State
}

/// Delivery progress of one endpoint, as the journal records it.
public struct EndpointStatus: Sendable, Equatable {
    public let name: String
    /// Redacted target (no credentials, no query string).
    public let description: String
    public let delivered: Int64
    /// Not yet acknowledged (whatever their stage — held events count if the endpoint may get them later).
    public let pending: Int64
    public let deadLettered: Int64
    /// Sources whose next event failed at least once and waits for a retry.
    public let retryingSources: Int
    public let lastStatus: Int?
    public let lastError: String?
    public let lastAttemptAt: Date?
}

public struct JournalStats: Sendable, Equatable {
    public let events: Int64
    public let held: Int64
    public let collected: Int64
    public let lost: Int64
    public let sources: Int
    public let byType: [EventType: Int64]
    public let lastPosition: Int64
    public let firstRecordedAt: Date?
    public let lastRecordedAt: Date?
    public let endpoints: [EndpointStatus]
    /// Main file plus WAL.
    public let fileBytes: Int64
}

/// Where a new delivery endpoint starts the first time it is registered.
public enum EndpointStart: Sendable, Equatable {
    /// Replay the whole journal.
    case beginning
    /// Only events recorded after registration.
    case now
}

/// What changed in a commit; wakes followers and delivery workers.
struct JournalChange: Sendable, OptionSet {
    let rawValue: Int
    static let recorded = JournalChange(rawValue: 1)
    static let collected = JournalChange(rawValue: 2)
    static let delivery = JournalChange(rawValue: 4)
}

/// The durable event journal: SQLite through GRDB, WAL mode, group commit.
///
/// `record` returns only after the transaction holding the event has committed (and, with the default
/// durability, after the WAL is fsynced). Concurrent callers share transactions: while one commit is in
/// flight, new requests queue up and the next transaction takes them all, so N waiting callers cost one
/// fsync instead of N.
public final class EventJournal: Sendable {
    public let path: String
    public let configuration: JournalConfiguration
    let clock: any EventClock
    let dbPool: DatabasePool

    /// The group-commit queue and the change listeners.
    private struct QueueState {
        var pending: [JournalOp] = []
        var flushing = false
        var closed = false
        var drainWaiters: [CheckedContinuation<Void, Never>] = []
        var listeners: [UInt64: @Sendable (JournalChange) -> Void] = [:]
        var nextListener: UInt64 = 0
        var commits = 0
        var committedOperations = 0
    }
    private let queue = PthreadLocked(QueueState())
    /// Writer-side state, touched only by the drain loop (one commit at a time), so its lock is never
    /// contended; it is a lock all the same so that the type is checked Sendable.
    private struct WriterState {
        var sourceCache: [String: FlushContext.SourceRow] = [:]
        var sourceCacheDataVersion: Int64?
        var idRandom = IDRandom()
    }
    private let writer = PthreadLocked(WriterState())

    /// Transactions committed and operations (record calls, collections, …) they carried, since open —
    /// operations ÷ commits is the group-commit factor.
    public var commitCounts: (transactions: Int, operations: Int) { queue.withLock { ($0.commits, $0.committedOperations) } }

    /// Opens (creating if needed) the journal at `path`.
    public init(path: String, configuration: JournalConfiguration = JournalConfiguration(),
                clock: any EventClock = SystemEventClock()) throws {
        if let cap = configuration.defaultTrailCapacity, cap < 1 {
            throw EventError.invalidConfiguration("defaultTrailCapacity must be at least 1")
        }
        guard configuration.maxOperationsPerCommit >= 1 else {
            throw EventError.invalidConfiguration("maxOperationsPerCommit must be at least 1")
        }
        self.path = path
        self.configuration = configuration
        self.clock = clock
        var config = Configuration()
        config.journalMode = .wal
        // Another process (the CLI following the journal, a second emulator) may hold the write lock briefly.
        config.busyMode = .timeout(10)
        config.label = "keyway.events"
        dbPool = try DatabasePool(path: path, configuration: config)
        // `synchronous` is per connection and only the single writer connection commits. It must be set
        // after opening: GRDB's WAL setup runs after `prepareDatabase` and sets NORMAL itself.
        let synchronous = configuration.durability == .full ? "FULL" : "NORMAL"
        try dbPool.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA synchronous = \(synchronous)")
            // Keep the WAL from growing without bound after a burst; checkpoints still run every 1000 pages.
            try db.execute(sql: "PRAGMA journal_size_limit = 67108864")
        }
        try JournalSchema.migrator().migrate(dbPool)
    }

    /// Waits for queued records to commit, then closes the database. Later calls throw `journalClosed`.
    public func close() async throws {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let waits = queue.withLock { q in
                q.closed = true
                guard q.flushing || !q.pending.isEmpty else { return false }
                q.drainWaiters.append(c)
                return true
            }
            if !waits { c.resume() }
        }
        notify(.recorded)
        try dbPool.close()
    }

    // MARK: Recording

    /// Records one event; returns once it is durable, with its id and sequence number.
    @discardableResult
    public func record(_ event: KeywayEvent) async throws -> RecordedEvent {
        let results = try await record([event])
        guard let first = results.first else { throw EventError.corruptRow("record returned nothing") }
        return first
    }

    /// Records a batch atomically (all or none), in order; sequence numbers are consecutive per source.
    @discardableResult
    public func record(_ events: [KeywayEvent]) async throws -> [RecordedEvent] {
        guard events.count <= EventLimits.batchEvents else { throw EventError.batchTooLarge(limit: EventLimits.batchEvents) }
        if events.isEmpty { return [] }
        for e in events { try e.validate() }
        return try await submit { db, ctx in try events.map { try ctx.record(db, $0) } }
    }

    /// An IQ collected the trail of `source` up to `sequence` (all of it when nil). If the trail lost events
    /// before this collection, a `trail.overflow` event is recorded (when the collection covers the whole
    /// trail) so the loss is never silent.
    @discardableResult
    public func markCollected(source: EventSource, through sequence: Int64? = nil, by collector: String? = nil) async throws -> CollectionReport {
        if let sequence, sequence < 0 { throw EventError.invalidSequence(sequence) }
        if let collector { try EventSource.validateIdentifier(collector, field: "collector") }
        return try await submit { db, ctx in
            try ctx.collect(db, source: source, through: sequence, by: collector)
        }
    }

    /// Sets how many uncollected events the lock behind `source` can hold (nil = journal default).
    public func setTrailCapacity(_ capacity: Int?, for source: EventSource) async throws {
        if let capacity, capacity < 1 { throw EventError.invalidConfiguration("trail capacity must be at least 1") }
        try await submit { db, ctx in
            var s = try ctx.sourceRow(db, source.path)
            s.trailCapacity = capacity.map(Int64.init)
            s.dirty = true
            ctx.sources[source.path] = s
        }
    }

    // MARK: Reading

    public func events(_ query: EventQuery = EventQuery()) async throws -> [RecordedEvent] {
        guard query.limit >= 1, query.limit <= EventQuery.maxLimit else {
            throw EventError.invalidConfiguration("limit must be 1…\(EventQuery.maxLimit)")
        }
        return try await dbPool.read { db in try Self.fetch(db, query) }
    }

    public func event(id: String) async throws -> RecordedEvent? {
        guard id.utf8.count <= 64 else { return nil }
        return try await dbPool.read { db in
            let sql = "SELECT \(JournalSchema.eventColumns), \(JournalSchema.stageExpression) FROM events e WHERE e.id = ?"
            guard let row = try Row.fetchOne(db, sql: sql, arguments: [id]) else { return nil }
            var r = try JournalRow.decode(row)
            r.deliveries = try Self.deliveries(db, for: [r])[r.id] ?? []
            return r
        }
    }

    /// The highest journal position so far (0 when empty).
    public func lastPosition() async throws -> Int64 {
        try await dbPool.read { db in try Self.lastPosition(db) }
    }

    static func lastPosition(_ db: Database) throws -> Int64 {
        try Int64.fetchOne(db, sql: "SELECT COALESCE(MAX(position), 0) FROM events") ?? 0
    }

    /// New events matching `query` as they are recorded — by this process (immediately) or another one
    /// (within `followPollInterval`). Starts after `query.after`, or after the end of the journal as it is
    /// when `follow` is called: every event recorded after `follow` returns is delivered, even if nobody
    /// iterates the stream yet. Stage filters apply to the stage an event has when the follower reads it.
    public func follow(_ query: EventQuery = EventQuery()) -> AsyncThrowingStream<RecordedEvent, Error> {
        // The start is fixed here, synchronously (one indexed read). Reading it in the task below let an
        // event recorded right after `follow` returned (or right after an SSE client got its response
        // headers) commit before the task ran, and the follower then started after it and skipped it.
        let start: Result<Int64, Error>
        if let after = query.after {
            start = .success(after)
        } else {
            start = Result { try dbPool.read { db in try Self.lastPosition(db) } }
        }
        return AsyncThrowingStream { continuation in
            let bell = Doorbell()
            let token = self.addListener { _ in bell.ring() }
            let poll = configuration.followPollInterval
            let task = Task {
                do {
                    var cursor = try start.get()
                    while !Task.isCancelled {
                        let horizon = try await self.lastPosition()
                        while cursor < horizon {
                            var q = query
                            q.after = cursor
                            q.throughPosition = horizon
                            q.limit = 1000
                            q.newestFirst = false
                            let page = try await self.events(q)
                            for e in page { continuation.yield(e) }
                            if page.count < q.limit { cursor = horizon } else if let last = page.last { cursor = last.position }
                        }
                        if self.isClosed { break }
                        await bell.wait(timeout: poll)
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in
                task.cancel()
                self.removeListener(token)
                bell.ring()
            }
        }
    }

    public func sources() async throws -> [SourceState] {
        let defaultCap = configuration.defaultTrailCapacity
        return try await dbPool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT source, last_seq, collected_seq, lost_through, lost_total, trail_capacity FROM sources ORDER BY source
                """).map { row in
                let last: Int64 = row[1], collected: Int64 = row[2], lostThrough: Int64 = row[3]
                let cap: Int64? = row[5]
                return SourceState(source: row[0], lastSequence: last, collectedSequence: collected,
                                   held: last - max(collected, lostThrough), lostTotal: row[4],
                                   trailCapacity: cap.map { Int($0) } ?? defaultCap)
            }
        }
    }

    public func stats() async throws -> JournalStats {
        let endpoints = try await deliveryStatus()
        let (counts, byType, sources, first, last) = try await dbPool.read { db -> ([Int64], [EventType: Int64], Int, Date?, Date?) in
            let row = try Row.fetchOne(db, sql: """
                SELECT COUNT(*), COALESCE(SUM(state = 0), 0), COALESCE(SUM(state = 1), 0), COALESCE(SUM(state = 2), 0),
                       COALESCE(MAX(position), 0), MIN(recorded_ms), MAX(recorded_ms) FROM events
                """)
            var byType: [EventType: Int64] = [:]
            for r in try Row.fetchAll(db, sql: "SELECT type, COUNT(*) FROM events GROUP BY type") {
                if let name: String = r[0], let t = EventType(rawValue: name) { byType[t] = r[1] }
            }
            let sources = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM sources") ?? 0
            let counts: [Int64] = [row?[0] ?? 0, row?[1] ?? 0, row?[2] ?? 0, row?[3] ?? 0, row?[4] ?? 0]
            let firstMs: Int64? = row?[5], lastMs: Int64? = row?[6]
            return (counts, byType, sources, firstMs.map(RFC3339.date(milliseconds:)), lastMs.map(RFC3339.date(milliseconds:)))
        }
        var bytes: Int64 = 0
        for suffix in ["", "-wal"] {
            if let attrs = try? FileManager.default.attributesOfItem(atPath: path + suffix),
               let size = attrs[.size] as? NSNumber { bytes += size.int64Value }
        }
        return JournalStats(events: counts[0], held: counts[1], collected: counts[2], lost: counts[3], sources: sources,
                            byType: byType, lastPosition: counts[4], firstRecordedAt: first, lastRecordedAt: last,
                            endpoints: endpoints, fileBytes: bytes)
    }

    /// Dead letters, newest first.
    public func deadLetters(endpoint: String? = nil, includeResolved: Bool = false, limit: Int = 100) async throws -> [DeadLetter] {
        let limit = min(max(limit, 1), EventQuery.maxLimit)
        return try await dbPool.read { db in
            var sql = "SELECT endpoint, event_id, position, status, response_body, response_truncated, attempts, dead_ms, state FROM dead_letters WHERE 1"
            var args: [any DatabaseValueConvertible] = []
            if let endpoint { sql += " AND endpoint = ?"; args.append(endpoint) }
            if !includeResolved { sql += " AND state = 'dead'" }
            sql += " ORDER BY dead_ms DESC, position DESC LIMIT ?"
            args.append(limit)
            return try Row.fetchAll(db, sql: sql, arguments: StatementArguments(args)).map { r in
                let stateName: String = r[8]
                let deadMs: Int64 = r[7]
                return DeadLetter(endpoint: r[0], eventID: r[1], position: r[2], status: r[3], responseBody: r[4],
                                  responseTruncated: r[5], attempts: r[6], deadAt: RFC3339.date(milliseconds: deadMs),
                                  state: DeadLetter.State(rawValue: stateName) ?? .dead)
            }
        }
    }

    /// Puts a dead-lettered event back in the endpoint's queue (e.g. after fixing the receiver). It is
    /// delivered out of its source's order — deliberately, by an operator. Returns false if no such letter.
    @discardableResult
    public func requeueDeadLetter(endpoint: String, eventID: String) async throws -> Bool {
        let changed = try await submit { db, ctx -> Bool in
            try db.execute(sql: "UPDATE dead_letters SET state = 'requeued' WHERE endpoint = ? AND event_id = ? AND state = 'dead'",
                           arguments: [endpoint, eventID])
            ctx.change.insert(.delivery)
            return db.changesCount > 0
        }
        return changed
    }

    /// Per-endpoint delivery progress.
    public func deliveryStatus() async throws -> [EndpointStatus] {
        try await dbPool.read { db in
            try Row.fetchAll(db, sql: "SELECT name, description FROM endpoints ORDER BY name").map { ep in
                let name: String = ep[0]
                let delivered = try Int64.fetchOne(db, sql: """
                    SELECT COUNT(*) FROM events e JOIN delivery_cursors c ON c.endpoint = ? AND c.source = e.source
                    WHERE e.seq <= c.delivered_seq AND e.state != 2
                      AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.event_id = e.id AND d.endpoint = ? AND d.state != 'delivered')
                    """, arguments: [name, name]) ?? 0
                let total = try Int64.fetchOne(db, sql: "SELECT COUNT(*) FROM events WHERE state != 2") ?? 0
                let dead = try Int64.fetchOne(db, sql: "SELECT COUNT(*) FROM dead_letters WHERE endpoint = ? AND state != 'delivered'", arguments: [name]) ?? 0
                let retry = try Row.fetchOne(db, sql: """
                    SELECT COUNT(*) FILTER (WHERE attempts > 0), MAX(last_attempt_ms) FROM delivery_cursors WHERE endpoint = ?
                    """, arguments: [name])
                let lastRow = try Row.fetchOne(db, sql: """
                    SELECT last_status, last_error FROM delivery_cursors WHERE endpoint = ? AND last_attempt_ms IS NOT NULL
                    ORDER BY last_attempt_ms DESC LIMIT 1
                    """, arguments: [name])
                let lastAttemptMs: Int64? = retry?[1]
                return EndpointStatus(name: name, description: ep[1], delivered: delivered,
                                      pending: max(0, total - delivered - dead), deadLettered: dead,
                                      retryingSources: retry?[0] ?? 0, lastStatus: lastRow?[0], lastError: lastRow?[1],
                                      lastAttemptAt: lastAttemptMs.map(RFC3339.date(milliseconds:)))
            }
        }
    }

    // MARK: Endpoints (used by WebhookDelivery)

    /// Makes `name` an endpoint whose acknowledgements count toward the `delivered` stage.
    public func registerEndpoint(_ name: String, description: String, startFrom: EndpointStart = .beginning) async throws {
        try EventSource.validateIdentifier(name, field: "endpoint")
        let now = RFC3339.milliseconds(clock.now())
        try await submit { db, ctx in
            let exists = try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM endpoints WHERE name = ?)", arguments: [name]) ?? false
            try db.execute(sql: """
                INSERT INTO endpoints (name, description, registered_ms) VALUES (?, ?, ?)
                ON CONFLICT (name) DO UPDATE SET description = excluded.description
                """, arguments: [name, String(description.prefix(512)), now])
            if !exists && startFrom == .now {
                try ctx.writeBack(db)
                try db.execute(sql: """
                    INSERT OR REPLACE INTO delivery_cursors (endpoint, source, delivered_seq) SELECT ?, source, last_seq FROM sources
                    """, arguments: [name])
            }
            ctx.change.insert(.delivery)
        }
    }

    /// Forgets an endpoint, its cursors and dead letters.
    public func removeEndpoint(_ name: String) async throws {
        try await submit { db, ctx in
            try db.execute(sql: "DELETE FROM endpoints WHERE name = ?", arguments: [name])
            try db.execute(sql: "DELETE FROM delivery_cursors WHERE endpoint = ?", arguments: [name])
            try db.execute(sql: "DELETE FROM dead_letters WHERE endpoint = ?", arguments: [name])
            ctx.change.insert(.delivery)
        }
    }

    // MARK: Group commit

    var isClosed: Bool { queue.withLock { $0.closed } }

    /// Queues `body` for the next group transaction and returns its result once that transaction committed.
    /// `body` may run more than once (if a shared transaction fails, each operation is retried alone so one
    /// bad operation cannot fail its neighbours); it must only touch the database and `ctx`.
    @discardableResult
    func submit<T: Sendable>(_ body: @escaping @Sendable (Database, inout FlushContext) throws -> T) async throws -> T {
        let box = PthreadLocked<T?>(nil)
        return try await withCheckedThrowingContinuation { (cont: CheckedContinuation<T, Error>) in
            let op = JournalOp(
                apply: { db, ctx in
                    let v = try body(db, &ctx)
                    box.withLock { $0 = v }
                },
                complete: { result in
                    switch result {
                    case .success:
                        if let v = box.withLock({ $0 }) { cont.resume(returning: v) } else { cont.resume(throwing: EventError.corruptRow("operation produced no result")) }
                    case .failure(let error):
                        cont.resume(throwing: error)
                    }
                })
            enqueue(op)
        }
    }

    /// Appends `op` to the queue of the next group transaction (synchronously: the order of calls is the
    /// order of application). False, with `op` completed as `journalClosed`, once the journal is closed.
    @discardableResult
    func enqueue(_ op: JournalOp) -> Bool {
        let start: Bool? = queue.withLock { q in
            if q.closed { return nil }
            q.pending.append(op)
            defer { q.flushing = true }
            return !q.flushing
        }
        guard let start else {
            op.complete(.failure(EventError.journalClosed))
            return false
        }
        if start {
            Task.detached(priority: .high) { await self.drain() }
        }
        return true
    }

    private func drain() async {
        while true {
            let limit = configuration.maxOperationsPerCommit
            let batch: [JournalOp] = queue.withLock { q in
                let n = min(q.pending.count, limit)
                let b = Array(q.pending.prefix(n))
                q.pending.removeFirst(n)
                return b
            }
            if batch.isEmpty {
                let waiters: [CheckedContinuation<Void, Never>]? = queue.withLock { q in
                    // Re-check under the lock: a submit may have slipped in after we took the batch.
                    guard q.pending.isEmpty else { return nil }
                    q.flushing = false
                    defer { q.drainWaiters = [] }
                    return q.drainWaiters
                }
                guard let waiters else { continue }
                waiters.forEach { $0.resume() }
                return
            }
            await commit(batch)
        }
    }

    private func commit(_ batch: [JournalOp]) async {
        let config = configuration
        let now = clock.now()
        let (cache, cacheVersion, random) = writer.withLock { ($0.sourceCache, $0.sourceCacheDataVersion, $0.idRandom) }
        do {
            let (change, sources, version, rng) = try await dbPool.write { db -> (JournalChange, [String: FlushContext.SourceRow], Int64?, IDRandom) in
                // data_version changes only when *another* connection commits: if it is what it was after
                // our last commit, the cached source rows are exactly what the table holds.
                let version = try Int64.fetchOne(db, sql: "PRAGMA data_version")
                var ctx = FlushContext(configuration: config, now: now,
                                       cached: version != nil && version == cacheVersion ? cache : [:], random: random)
                for op in batch { try op.apply(db, &ctx) }
                try ctx.writeBack(db)
                return (ctx.change, ctx.sources, version, ctx.random)
            }
            // Only a committed transaction may feed the cache.
            writer.withLock { $0 = WriterState(sourceCache: sources, sourceCacheDataVersion: version, idRandom: rng) }
            queue.withLock { $0.commits += 1; $0.committedOperations += batch.count }
            if !change.isEmpty { notify(change) }
            for op in batch { op.complete(.success(())) }
        } catch {
            writer.withLock { $0 = WriterState() }
            if batch.count == 1 {
                var op = batch[0]
                if op.retries > 0 && !isClosed {
                    op.retries -= 1
                    try? await Task.sleep(for: .milliseconds(20))
                    await commit([op])
                } else {
                    op.complete(.failure(error))
                }
            } else {
                for op in batch { await commit([op]) }
            }
        }
    }

    // MARK: Change listeners

    func addListener(_ body: @escaping @Sendable (JournalChange) -> Void) -> UInt64 {
        queue.withLock { q in
            q.nextListener += 1
            q.listeners[q.nextListener] = body
            return q.nextListener
        }
    }

    func removeListener(_ token: UInt64) {
        queue.withLock { _ = $0.listeners.removeValue(forKey: token) }
    }

    func notify(_ change: JournalChange) {
        let targets = queue.withLock { Array($0.listeners.values) }
        for t in targets { t(change) }
    }

    // MARK: Queries

    static func fetch(_ db: Database, _ query: EventQuery) throws -> [RecordedEvent] {
        var conditions: [String] = []
        var args: [any DatabaseValueConvertible] = []
        if !query.types.isEmpty {
            conditions.append("e.type IN (\(Array(repeating: "?", count: query.types.count).joined(separator: ",")))")
            args += query.types.sorted().map { $0.rawValue }
        }
        if let s = query.source { conditions.append("e.source = ?"); args.append(s.path) }
        if let site = query.site { conditions.append("e.site = ?"); args.append(site) }
        if let lock = query.lock {
            conditions.append("e.entity = ? AND e.source_kind IN ('locks', 'controllers')")
            args.append(lock)
        }
        if let since = query.since { conditions.append("e.time_ms >= ?"); args.append(RFC3339.milliseconds(since)) }
        if let until = query.until { conditions.append("e.time_ms < ?"); args.append(RFC3339.milliseconds(until)) }
        if let after = query.after {
            conditions.append(query.newestFirst ? "e.position < ?" : "e.position > ?")
            args.append(after)
        }
        if let through = query.throughPosition { conditions.append("e.position <= ?"); args.append(through) }
        let whereClause = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
        let order = query.newestFirst ? "DESC" : "ASC"
        var sql = "SELECT \(JournalSchema.eventColumns), \(JournalSchema.stageExpression) AS stage FROM events e \(whereClause)"
        if !query.stages.isEmpty {
            sql = "SELECT * FROM (\(sql)) WHERE stage IN (\(Array(repeating: "?", count: query.stages.count).joined(separator: ",")))"
            args += query.stages.map { $0.rawValue }.sorted()
            sql += " ORDER BY position \(order) LIMIT ?"
        } else {
            sql += " ORDER BY e.position \(order) LIMIT ?"
        }
        args.append(query.limit)
        var out = try Row.fetchAll(db, sql: sql, arguments: StatementArguments(args)).map(JournalRow.decode)
        if query.includeDeliveries, !out.isEmpty {
            let map = try deliveries(db, for: out)
            for i in out.indices { out[i].deliveries = map[out[i].id] ?? [] }
        }
        return out
    }

    static func deliveries(_ db: Database, for events: [RecordedEvent]) throws -> [String: [EndpointDelivery]] {
        let endpoints = try String.fetchAll(db, sql: "SELECT name FROM endpoints ORDER BY name")
        guard !endpoints.isEmpty else { return [:] }
        var cursors: [String: [String: Int64]] = [:]   // endpoint → source → delivered_seq
        for row in try Row.fetchAll(db, sql: "SELECT endpoint, source, delivered_seq FROM delivery_cursors") {
            cursors[row[0], default: [:]][row[1]] = row[2]
        }
        var letters: [String: [String: (String, Int)]] = [:]   // event id → endpoint → (state, status)
        for chunk in stride(from: 0, to: events.count, by: 500) {
            let ids = events[chunk..<min(chunk + 500, events.count)].map(\.id)
            let sql = "SELECT event_id, endpoint, state, status FROM dead_letters WHERE event_id IN (\(Array(repeating: "?", count: ids.count).joined(separator: ",")))"
            for row in try Row.fetchAll(db, sql: sql, arguments: StatementArguments(ids)) {
                letters[row[0], default: [:]][row[1]] = (row[2], row[3])
            }
        }
        var out: [String: [EndpointDelivery]] = [:]
        for e in events {
            out[e.id] = endpoints.map { ep in
                if let (state, status) = letters[e.id]?[ep] {
                    switch state {
                    case "dead": return EndpointDelivery(endpoint: ep, state: .deadLettered(status: status))
                    case "requeued": return EndpointDelivery(endpoint: ep, state: .pending)
                    default: return EndpointDelivery(endpoint: ep, state: .delivered)
                    }
                }
                let delivered = (cursors[ep]?[e.source.path] ?? 0) >= e.sequence
                return EndpointDelivery(endpoint: ep, state: delivered ? .delivered : .pending)
            }
        }
        return out
    }
}

/// One queued write: `apply` runs inside the group transaction, `complete` after it committed or failed.
struct JournalOp: Sendable {
    let apply: @Sendable (Database, inout FlushContext) throws -> Void
    let complete: @Sendable (Result<Void, Error>) -> Void
    /// How many more times a failing transaction of this operation alone is retried, in place (the queue
    /// waits: a device's writes must not overtake one another, and none may be dropped on a busy file).
    var retries = 0
}

/// A wake-up signal with memory: `ring` before `wait` makes the next `wait` return at once.
final class Doorbell: Sendable {
    private struct State {
        var rung = false
        var waiter: CheckedContinuation<Void, Never>?
    }
    private let state = PthreadLocked(State())

    func ring() {
        let waiter: CheckedContinuation<Void, Never>? = state.withLock { s in
            guard let w = s.waiter else { s.rung = true; return nil }
            s.waiter = nil
            return w
        }
        waiter?.resume()
    }

    func wait() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let (now, stranded): (Bool, CheckedContinuation<Void, Never>?) = state.withLock { s in
                if s.rung {
                    s.rung = false
                    return (true, nil)
                }
                // Only one waiter at a time by design; never strand an earlier one.
                defer { s.waiter = c }
                return (false, s.waiter)
            }
            if now { c.resume() }
            stranded?.resume()
        }
    }
    /// Waits for a ring or for `timeout` (measured by `sleep`, real time by default), whichever comes
    /// first; returns on cancellation too.
    func wait(timeout: Duration,
              sleep: @escaping @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) }) async {
        let timer = Task { [weak self] in
            try? await sleep(timeout)
            if !Task.isCancelled { self?.ring() }
        }
        await withTaskCancellationHandler {
            await wait()
        } onCancel: {
            self.ring()
        }
        timer.cancel()
    }
}
