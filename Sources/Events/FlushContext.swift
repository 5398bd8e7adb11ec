import Foundation
import GRDB

/// State of one group transaction. Source rows are read once per transaction, updated in memory by every
/// operation in it, and written back once at the end — a batch of 1,000 events of one lock costs one
/// `sources` read and one write, not 1,000.
struct FlushContext {
    struct SourceRow {
        var lastSeq: Int64 = 0
        var collectedSeq: Int64 = 0
        /// Highest sequence lost to trail overflow; held events are exactly (max(collected, lostThrough), last].
        var lostThrough: Int64 = 0
        var lostPendingCount: Int64 = 0
        var lostPendingFirst: Int64?
        var lostTotal: Int64 = 0
        var trailCapacity: Int64?
        var lastTimeMs: Int64?
        var dirty = false

        var heldStart: Int64 { max(collectedSeq, lostThrough) }
        var heldCount: Int64 { lastSeq - heldStart }
    }

    let configuration: JournalConfiguration
    let nowMs: Int64
    var sources: [String: SourceRow]
    var change: JournalChange = []
    var random: IDRandom

    /// `cached` holds source rows as of the end of this connection's last commit; the caller passes it only
    /// when no other connection has committed since (PRAGMA data_version unchanged).
    init(configuration: JournalConfiguration, now: Date, cached: [String: SourceRow] = [:], random: IDRandom) {
        self.configuration = configuration
        self.nowMs = RFC3339.milliseconds(now)
        self.sources = cached
        self.random = random
    }

    mutating func sourceRow(_ db: Database, _ path: String) throws -> SourceRow {
        if let s = sources[path] { return s }
        var s = SourceRow()
        let stmt = try db.cachedStatement(sql: """
            SELECT last_seq, collected_seq, lost_through, lost_pending_count, lost_pending_first, lost_total,
                   trail_capacity, last_time_ms FROM sources WHERE source = ?
            """)
        if let row = try Row.fetchOne(stmt, arguments: [path]) {
            s.lastSeq = row[0]
            s.collectedSeq = row[1]
            s.lostThrough = row[2]
            s.lostPendingCount = row[3]
            s.lostPendingFirst = row[4]
            s.lostTotal = row[5]
            s.trailCapacity = row[6]
            s.lastTimeMs = row[7]
        } else {
            s.dirty = true   // a new source: its row must be inserted
        }
        sources[path] = s
        return s
    }

    mutating func writeBack(_ db: Database) throws {
        let stmt = try db.cachedStatement(sql: """
            INSERT INTO sources (source, last_seq, collected_seq, lost_through, lost_pending_count, lost_pending_first,
                                 lost_total, trail_capacity, last_time_ms)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (source) DO UPDATE SET
                last_seq = excluded.last_seq, collected_seq = excluded.collected_seq,
                lost_through = excluded.lost_through, lost_pending_count = excluded.lost_pending_count,
                lost_pending_first = excluded.lost_pending_first, lost_total = excluded.lost_total,
                trail_capacity = excluded.trail_capacity, last_time_ms = excluded.last_time_ms
            """)
        for (path, s) in sources where s.dirty {
            try stmt.execute(arguments: [path, s.lastSeq, s.collectedSeq, s.lostThrough, s.lostPendingCount,
                                         s.lostPendingFirst, s.lostTotal, s.trailCapacity, s.lastTimeMs])
            sources[path]?.dirty = false
        }
    }

    /// Assigns the next sequence number and a fresh id, and inserts the event.
    mutating func record(_ db: Database, _ event: KeywayEvent) throws -> RecordedEvent {
        let path = event.source.path
        var s = try sourceRow(db, path)
        var collectedBy: String?
        let held: Bool
        switch event.stage {
        case .held:
            held = true
        case .collected(let by):
            held = false
            collectedBy = by
            // An IQ uploads a trail in order: whatever the lock still held reaches the network first.
            if s.heldCount > 0 || s.lostPendingCount > 0 {
                _ = try collect(db, source: event.source, through: nil, by: by)
                s = try sourceRow(db, path)
            }
        }
        let seq: Int64
        if let own = event.sequence {
            // The device numbers its own records; a number at or below the last one would repeat a sequence.
            guard own > s.lastSeq else { throw EventError.invalidSequence(own) }
            seq = own
        } else {
            seq = s.lastSeq + 1
        }
        let timeMs = RFC3339.milliseconds(event.time)
        let id = UUIDv7.make(milliseconds: nowMs, using: &random)
        let stmt = try db.cachedStatement(sql: JournalSchema.insertEvent)
        try stmt.execute(arguments: [
            id, path, seq, event.type.rawValue, timeMs, nowMs, event.source.site, event.source.kind.rawValue,
            event.source.id, event.door, event.source.kind == .iq ? nil : event.iq, event.user, event.keyID,
            event.method?.rawValue, event.action?.rawValue, event.reason, event.revocationVersion,
            AttributeCoding.encode(event.attributes), held ? 0 : 1, held ? nil : nowMs, collectedBy,
        ])
        let position = db.lastInsertedRowID
        s.lastSeq = seq
        s.lastTimeMs = timeMs
        if held {
            if let cap = s.trailCapacity ?? configuration.defaultTrailCapacity.map(Int64.init), s.heldCount > cap {
                // The lock's trail is full: like a ring buffer it drops its oldest held entries. They stay in
                // the journal as `lost` (so QA can see what was lost), are never delivered, and the next
                // collection reports the gap with a trail.overflow event.
                let n = s.heldCount - cap
                let first = s.heldStart + 1, last = s.heldStart + n
                try db.cachedStatement(sql: "UPDATE events SET state = 2 WHERE source = ? AND seq BETWEEN ? AND ? AND state = 0")
                    .execute(arguments: [path, first, last])
                s.lostThrough = last
                s.lostPendingCount += n
                s.lostPendingFirst = s.lostPendingFirst ?? first
                s.lostTotal += n
            }
        } else {
            s.collectedSeq = seq
            change.insert(.collected)
        }
        s.dirty = true
        sources[path] = s
        change.insert(.recorded)
        var stored = event
        stored.stage = held ? .held : .collected(by: collectedBy)
        return RecordedEvent(position: position, id: id, sequence: seq, event: stored,
                             recordedAt: RFC3339.date(milliseconds: nowMs),
                             collectedAt: held ? nil : RFC3339.date(milliseconds: nowMs), collectedBy: collectedBy,
                             stage: held ? .held : .collected, deliveries: [])
    }

    mutating func collect(_ db: Database, source: EventSource, through: Int64?, by collector: String?) throws -> CollectionReport {
        let path = source.path
        var s = try sourceRow(db, path)
        let upTo = min(through ?? s.lastSeq, s.lastSeq)
        var collected = 0
        if upTo > s.heldStart {
            try db.cachedStatement(sql: """
                UPDATE events SET state = 1, collected_ms = ?, collected_by = ? WHERE source = ? AND seq > ? AND seq <= ? AND state = 0
                """).execute(arguments: [nowMs, collector, path, s.heldStart, upTo])
            collected = db.changesCount
        }
        if upTo > s.collectedSeq { s.collectedSeq = upTo }
        s.dirty = true
        sources[path] = s
        if collected > 0 { change.insert(.collected) }
        var overflow: RecordedEvent?
        // Report losses only once the collection reached the end of the trail, so the report (a collected
        // event) never overtakes events still held by the lock.
        if s.lostPendingCount > 0, s.heldCount == 0, let first = s.lostPendingFirst {
            var attrs: [String: EventAttribute] = [
                "lost_count": .int(s.lostPendingCount),
                "first_lost_sequence": .int(first),
                "last_lost_sequence": .int(s.lostThrough),
                "lost_total": .int(s.lostTotal),
            ]
            if let cap = s.trailCapacity ?? configuration.defaultTrailCapacity.map(Int64.init) { attrs["trail_capacity"] = .int(cap) }
            s.lostPendingCount = 0
            s.lostPendingFirst = nil
            sources[path] = s
            let time = RFC3339.date(milliseconds: s.lastTimeMs ?? nowMs)
            let event = KeywayEvent(type: .trailOverflow, source: source, time: time, reason: "trail_full",
                                    attributes: attrs, stage: .collected(by: collector))
            overflow = try record(db, event)
        }
        return CollectionReport(collected: collected, overflow: overflow)
    }
}
