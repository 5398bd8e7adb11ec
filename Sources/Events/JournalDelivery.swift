import Foundation
import GRDB

/// A source with events an endpoint has not acknowledged yet.
struct PendingSource: Sendable {
    let source: String
    let deliveredSeq: Int64
    /// Highest sequence this endpoint may receive now (the collected prefix, or everything).
    let upper: Int64
    let attempts: Int
    let nextAttempt: Date?
}

/// The journal side of delivery: cursors, retry bookkeeping and dead letters. All writes go through the
/// group commit, so many sources acknowledging at once share transactions.
extension EventJournal {
    func pendingSources(endpoint: String, requireCollected: Bool) async throws -> [PendingSource] {
        try await dbPool.read { db in
            let upper = requireCollected ? "s.collected_seq" : "s.last_seq"
            return try Row.fetchAll(db, sql: """
                SELECT s.source, COALESCE(c.delivered_seq, 0), \(upper), COALESCE(c.attempts, 0), c.next_attempt_ms
                FROM sources s LEFT JOIN delivery_cursors c ON c.endpoint = ? AND c.source = s.source
                WHERE \(upper) > COALESCE(c.delivered_seq, 0)
                ORDER BY s.source
                """, arguments: [endpoint]).map { r in
                let next: Int64? = r[4]
                return PendingSource(source: r[0], deliveredSeq: r[1], upper: r[2], attempts: r[3],
                                     nextAttempt: next.map(RFC3339.date(milliseconds:)))
            }
        }
    }

    /// Events of `source` after `after` up to `through`, in sequence order, skipping lost ones.
    func deliverableEvents(source: String, after: Int64, through: Int64, limit: Int) async throws -> [RecordedEvent] {
        try await dbPool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT \(JournalSchema.eventColumns), NULL FROM events e
                WHERE e.source = ? AND e.seq > ? AND e.seq <= ? AND e.state != 2 ORDER BY e.seq LIMIT ?
                """, arguments: [source, after, through, limit]).map(JournalRow.decode)
        }
    }

    func requeuedDeadLetters(endpoint: String, limit: Int) async throws -> [RecordedEvent] {
        try await dbPool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT \(JournalSchema.eventColumns), NULL FROM dead_letters d JOIN events e ON e.id = d.event_id
                WHERE d.endpoint = ? AND d.state = 'requeued' ORDER BY e.position LIMIT ?
                """, arguments: [endpoint, limit]).map(JournalRow.decode)
        }
    }

    /// Everything of `source` up to `sequence` is acknowledged by `endpoint`.
    func advanceCursor(endpoint: String, source: String, to sequence: Int64, status: Int?) async throws {
        let now = RFC3339.milliseconds(clock.now())
        try await submit { db, ctx in
            try db.cachedStatement(sql: """
                INSERT INTO delivery_cursors (endpoint, source, delivered_seq, attempts, next_attempt_ms, last_attempt_ms, last_status, last_error)
                VALUES (?, ?, ?, 0, NULL, ?, ?, NULL)
                ON CONFLICT (endpoint, source) DO UPDATE SET
                    delivered_seq = MAX(delivered_seq, excluded.delivered_seq), attempts = 0, next_attempt_ms = NULL,
                    last_attempt_ms = excluded.last_attempt_ms, last_status = excluded.last_status, last_error = NULL
                """).execute(arguments: [endpoint, source, sequence, now, status])
            ctx.change.insert(.delivery)
        }
    }

    /// The next event of `source` failed; events up to `deliveredThrough` were acknowledged before it.
    func recordFailure(endpoint: String, source: String, deliveredThrough: Int64, attempts: Int,
                       nextAttempt: Date, status: Int?, error: String) async throws {
        let now = RFC3339.milliseconds(clock.now())
        let next = RFC3339.milliseconds(nextAttempt)
        try await submit { db, ctx in
            try db.cachedStatement(sql: """
                INSERT INTO delivery_cursors (endpoint, source, delivered_seq, attempts, next_attempt_ms, last_attempt_ms, last_status, last_error)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (endpoint, source) DO UPDATE SET
                    delivered_seq = MAX(delivered_seq, excluded.delivered_seq), attempts = excluded.attempts,
                    next_attempt_ms = excluded.next_attempt_ms, last_attempt_ms = excluded.last_attempt_ms,
                    last_status = excluded.last_status, last_error = excluded.last_error
                """).execute(arguments: [endpoint, source, deliveredThrough, attempts, next, now, status, String(error.prefix(500))])
            ctx.change.insert(.delivery)
        }
    }

    /// `endpoint` refused `event` for good: keep the answer and move the source past it.
    func deadLetter(endpoint: String, event: RecordedEvent, status: Int, body: String, truncated: Bool, attempts: Int) async throws {
        let now = RFC3339.milliseconds(clock.now())
        try await submit { db, ctx in
            try db.execute(sql: """
                INSERT INTO dead_letters (event_id, endpoint, position, status, response_body, response_truncated, attempts, dead_ms, state)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'dead')
                ON CONFLICT (event_id, endpoint) DO UPDATE SET
                    status = excluded.status, response_body = excluded.response_body,
                    response_truncated = excluded.response_truncated, attempts = dead_letters.attempts + excluded.attempts,
                    dead_ms = excluded.dead_ms, state = 'dead'
                """, arguments: [event.id, endpoint, event.position, status, body, truncated, attempts, now])
            try db.execute(sql: """
                INSERT INTO delivery_cursors (endpoint, source, delivered_seq, attempts, next_attempt_ms, last_attempt_ms, last_status, last_error)
                VALUES (?, ?, ?, 0, NULL, ?, ?, ?)
                ON CONFLICT (endpoint, source) DO UPDATE SET
                    delivered_seq = MAX(delivered_seq, excluded.delivered_seq), attempts = 0, next_attempt_ms = NULL,
                    last_attempt_ms = excluded.last_attempt_ms, last_status = excluded.last_status, last_error = excluded.last_error
                """, arguments: [endpoint, event.source.path, event.sequence, now, status, "rejected with HTTP \(status)"])
            ctx.change.insert(.delivery)
        }
    }

    /// A requeued dead letter was delivered at last.
    func resolveDeadLetter(endpoint: String, eventID: String) async throws {
        try await submit { db, ctx in
            try db.execute(sql: "UPDATE dead_letters SET state = 'delivered' WHERE endpoint = ? AND event_id = ?",
                           arguments: [endpoint, eventID])
            ctx.change.insert(.delivery)
        }
    }
}
