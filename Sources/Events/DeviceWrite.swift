import Foundation
import KeywayCrypto
import GRDB

/// One durable write of a device — what its flash must hold afterwards, all or nothing, in one journal
/// transaction: a new event (numbered by the device), the sequence numbers its bounded trail dropped
/// to make room (they become `lost`), the trail handed to a collecting IQ (a prefix becomes
/// `collected`), and the device's own memory (opaque parts it restores after a restart).
///
/// Devices enqueue writes with `EventJournal.enqueue(_:completion:)` in the order they make them; the
/// journal applies them in that order. This is the one queue from record to delivery.
public struct DeviceWrite: Sendable {
    public var source: EventSource
    /// The new event, if any. Its `sequence` is the device's own number (see `KeywayEvent.sequence`).
    public var event: KeywayEvent?
    /// Sequence numbers of `source` the device's trail dropped before any IQ collected them.
    public var lost: [Int64]
    /// The trail was handed to an IQ: held events of `source` through this sequence become collected.
    public var collectedThrough: Int64?
    public var collectedBy: String?
    /// Named parts of the device's memory to store (replacing earlier values of the same parts).
    public var memory: [String: [UInt8]]

    public init(source: EventSource, event: KeywayEvent? = nil, lost: [Int64] = [], collectedThrough: Int64? = nil,
                collectedBy: String? = nil, memory: [String: [UInt8]] = [:]) {
        self.source = source
        self.event = event
        self.lost = lost
        self.collectedThrough = collectedThrough
        self.collectedBy = collectedBy
        self.memory = memory
    }
}

/// What a device's flash held when the journal was last written: for restoring it after a restart.
public struct DeviceFlash: Sendable {
    /// The device's last sequence number (the journal's, which is the device's: they never differ).
    public var lastSequence: Int64
    /// Events still held (the lock's trail), oldest first.
    public var held: [RecordedEvent]
    public var memory: [String: [UInt8]]
}

/// The outcome of one `DeviceWrite`.
public struct DeviceWriteResult: Sendable {
    /// The recorded event (nil without one, or when the journal refused it: see `eventError`).
    public var recorded: RecordedEvent?
    public var eventError: EventError?
}

extension FlushContext {
    mutating func apply(_ db: Database, _ w: DeviceWrite) throws -> DeviceWriteResult {
        var result = DeviceWriteResult()
        if let e = w.event {
            do {
                guard e.source == w.source else {
                    throw EventError.invalidField(field: "source", rule: "a device writes its own events only")
                }
                try e.validate()
                result.recorded = try record(db, e)
            } catch let error as EventError {
                // The event alone is refused (a bug of the producer's mapping); the device's trail and
                // memory still move on, so one bad record never blocks a lock.
                result.eventError = error
            } catch let error as DatabaseError where error.resultCode == .SQLITE_CONSTRAINT {
                result.eventError = .invalidSequence(e.sequence ?? 0)
            }
        }
        let path = w.source.path
        if !w.lost.isEmpty {
            var s = try sourceRow(db, path)
            let stmt = try db.cachedStatement(sql: "UPDATE events SET state = 2 WHERE source = ? AND seq = ? AND state = 0")
            for seq in w.lost.sorted() {
                try stmt.execute(arguments: [path, seq])
                if db.changesCount > 0 {
                    s.lostTotal += 1
                    s.lostThrough = max(s.lostThrough, seq)
                }
            }
            s.dirty = true
            sources[path] = s
        }
        if let through = w.collectedThrough {
            _ = try collect(db, source: w.source, through: through, by: w.collectedBy)
        }
        if !w.memory.isEmpty {
            let stmt = try db.cachedStatement(sql: """
                INSERT INTO device_memory (source, part, value, updated_ms) VALUES (?, ?, ?, ?)
                ON CONFLICT (source, part) DO UPDATE SET value = excluded.value, updated_ms = excluded.updated_ms
                """)
            for (part, value) in w.memory {
                try stmt.execute(arguments: [path, part, Data(value), nowMs])
            }
        }
        return result
    }
}

extension EventJournal {
    /// Queues a device write without waiting: writes are applied in the order they are enqueued, in
    /// group transactions, and `completion` runs once the write's transaction committed (or failed).
    /// Returns false if the journal is closed (completion is then called with `journalClosed`).
    @discardableResult
    public func enqueue(_ write: DeviceWrite, completion: @escaping @Sendable (Result<DeviceWriteResult, Error>) -> Void) -> Bool {
        if let by = write.collectedBy, (try? EventSource.validateIdentifier(by, field: "collector")) == nil {
            completion(.failure(EventError.invalidIdentifier(field: "collector", value: String(by.prefix(64)))))
            return false
        }
        let box = PthreadLocked<DeviceWriteResult?>(nil)
        let op = JournalOp(
            apply: { db, ctx in
                let result = try ctx.apply(db, write)
                box.withLock { $0 = result }
            },
            complete: { result in
                switch result {
                case .success: completion(.success(box.withLock { $0 } ?? DeviceWriteResult()))
                case .failure(let e): completion(.failure(e))
                }
            },
            retries: 50)
        return enqueue(op)
    }

    /// Returns once every write enqueued before the call has committed (or failed).
    public func barrier() async {
        _ = try? await submit { _, _ in true }
    }

    /// What every device's flash holds: last sequence, held events (locks' trails) and memory parts, by
    /// source path.
    public func deviceFlash(site: String) async throws -> [String: DeviceFlash] {
        try await dbPool.read { db in
            var out: [String: DeviceFlash] = [:]
            // A prefix compare, not LIKE: `_` is a wildcard there and a valid identifier character.
            let prefix = "/sites/\(site)/"
            for row in try Row.fetchAll(db, sql: "SELECT source, last_seq FROM sources WHERE substr(source, 1, ?) = ?",
                                        arguments: [prefix.utf8.count, prefix]) {
                out[row[0]] = DeviceFlash(lastSequence: row[1], held: [], memory: [:])
            }
            for row in try Row.fetchAll(db, sql: "SELECT source, part, value FROM device_memory WHERE substr(source, 1, ?) = ?",
                                        arguments: [prefix.utf8.count, prefix]) {
                let source: String = row[0]
                let value: Data = row[2]
                out[source, default: DeviceFlash(lastSequence: 0, held: [], memory: [:])].memory[row[1]] = Array(value)
            }
            let sql = """
                SELECT \(JournalSchema.eventColumns), NULL FROM events e
                WHERE e.state = 0 AND e.site = ? AND e.source_kind = 'locks' ORDER BY e.source, e.seq
                """
            for row in try Row.fetchAll(db, sql: sql, arguments: [site]) {
                let r = try JournalRow.decode(row)
                out[r.source.path, default: DeviceFlash(lastSequence: r.sequence, held: [], memory: [:])].held.append(r)
            }
            return out
        }
    }

    /// The event of `source` with sequence `sequence`, if recorded.
    public func event(source: EventSource, sequence: Int64) async throws -> RecordedEvent? {
        try await dbPool.read { db in
            let sql = "SELECT \(JournalSchema.eventColumns), \(JournalSchema.stageExpression) FROM events e WHERE e.source = ? AND e.seq = ?"
            return try Row.fetchOne(db, sql: sql, arguments: [source.path, sequence]).map(JournalRow.decode)
        }
    }
}
