import GRDB

/// The journal's tables. Plain SQLite, so `sqlite3 journal.db` can inspect everything.
///
/// - `events`: one row per event; `position` (the rowid) is journal order. `state`: 0 held by the lock,
///   1 collected, 2 lost (trail overflow). UNIQUE(source, seq) makes a duplicate sequence impossible even
///   if a bug tried; UNIQUE(id) makes the CloudEvents id unique across the journal.
/// - `sources`: per producer, the last sequence number handed out and the collected prefix. Sequence
///   assignment reads and writes this row inside the same transaction as the insert, which is what makes
///   "id + sequence assigned atomically" hold across crashes.
/// - `endpoints`, `delivery_cursors`: per delivery endpoint and source, the highest sequence acknowledged
///   (delivery is in order per source, so one number is the whole state) plus retry bookkeeping.
/// - `dead_letters`: events an endpoint rejected with a 4xx, with the status and response body.
/// - `device_memory`: per device (source) and part, what the device keeps in flash besides its trail —
///   a lock's state, access list, revocation list, trail-loss bookkeeping (see `DeviceWrite`).
enum JournalSchema {
    static func migrator() -> DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE events (
                    position INTEGER PRIMARY KEY,
                    id TEXT NOT NULL UNIQUE,
                    source TEXT NOT NULL,
                    seq INTEGER NOT NULL,
                    type TEXT NOT NULL,
                    time_ms INTEGER NOT NULL,
                    recorded_ms INTEGER NOT NULL,
                    site TEXT NOT NULL,
                    source_kind TEXT NOT NULL,
                    entity TEXT NOT NULL,
                    door TEXT, iq TEXT, user TEXT, key_id TEXT, method TEXT, action TEXT, reason TEXT,
                    revocation_version INTEGER,
                    attributes TEXT,
                    state INTEGER NOT NULL,
                    collected_ms INTEGER,
                    collected_by TEXT,
                    UNIQUE (source, seq)
                );
                CREATE TABLE sources (
                    source TEXT PRIMARY KEY,
                    last_seq INTEGER NOT NULL,
                    collected_seq INTEGER NOT NULL,
                    lost_through INTEGER NOT NULL,
                    lost_pending_count INTEGER NOT NULL,
                    lost_pending_first INTEGER,
                    lost_total INTEGER NOT NULL,
                    trail_capacity INTEGER,
                    last_time_ms INTEGER
                ) WITHOUT ROWID;
                CREATE TABLE endpoints (
                    name TEXT PRIMARY KEY,
                    description TEXT NOT NULL,
                    registered_ms INTEGER NOT NULL
                ) WITHOUT ROWID;
                CREATE TABLE delivery_cursors (
                    endpoint TEXT NOT NULL,
                    source TEXT NOT NULL,
                    delivered_seq INTEGER NOT NULL,
                    attempts INTEGER NOT NULL DEFAULT 0,
                    next_attempt_ms INTEGER,
                    last_attempt_ms INTEGER,
                    last_status INTEGER,
                    last_error TEXT,
                    PRIMARY KEY (endpoint, source)
                ) WITHOUT ROWID;
                CREATE TABLE dead_letters (
                    event_id TEXT NOT NULL,
                    endpoint TEXT NOT NULL,
                    position INTEGER NOT NULL,
                    status INTEGER NOT NULL,
                    response_body TEXT NOT NULL,
                    response_truncated INTEGER NOT NULL,
                    attempts INTEGER NOT NULL,
                    dead_ms INTEGER NOT NULL,
                    state TEXT NOT NULL CHECK (state IN ('dead', 'requeued', 'delivered')),
                    PRIMARY KEY (event_id, endpoint)
                ) WITHOUT ROWID;
                """)
        }
        m.registerMigration("v2-device-memory") { db in
            // A device's own memory (a lock's state, lists, trail bookkeeping), written in the same
            // transaction as the event that changed it: after a crash the device comes back exactly as
            // the last durable event left it.
            try db.execute(sql: """
                CREATE TABLE device_memory (
                    source TEXT NOT NULL,
                    part TEXT NOT NULL,
                    value BLOB NOT NULL,
                    updated_ms INTEGER NOT NULL,
                    PRIMARY KEY (source, part)
                ) WITHOUT ROWID;
                CREATE INDEX IF NOT EXISTS events_held ON events (site, source, seq) WHERE state = 0;
                """)
        }
        return m
    }

    /// Columns of `events` in the order `JournalRow.decode` reads them.
    static let eventColumns = """
        e.position, e.id, e.source, e.seq, e.type, e.time_ms, e.recorded_ms, e.site, e.source_kind, e.entity,
        e.door, e.iq, e.user, e.key_id, e.method, e.action, e.reason, e.revocation_version, e.attributes,
        e.state, e.collected_ms, e.collected_by
        """

    /// The stage of event `e`, computed in SQL so filtering and display always agree.
    static let stageExpression = """
        CASE
          WHEN EXISTS (SELECT 1 FROM dead_letters d WHERE d.event_id = e.id AND d.state = 'dead') THEN 'dead_lettered'
          WHEN e.state = 2 THEN 'lost'
          WHEN EXISTS (SELECT 1 FROM endpoints) AND NOT EXISTS (
                 SELECT 1 FROM endpoints p WHERE
                   NOT EXISTS (SELECT 1 FROM delivery_cursors c
                               WHERE c.endpoint = p.name AND c.source = e.source AND c.delivered_seq >= e.seq)
                   OR EXISTS (SELECT 1 FROM dead_letters d
                              WHERE d.event_id = e.id AND d.endpoint = p.name AND d.state = 'requeued'))
            THEN 'delivered'
          WHEN e.state = 1 THEN 'collected'
          ELSE 'held'
        END
        """

    static let insertEvent = """
        INSERT INTO events (id, source, seq, type, time_ms, recorded_ms, site, source_kind, entity, door, iq,
                            user, key_id, method, action, reason, revocation_version, attributes, state,
                            collected_ms, collected_by)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        """
}

enum JournalRow {
    /// Decodes a row selected with `eventColumns` followed by the stage column.
    static func decode(_ row: Row) throws -> RecordedEvent {
        guard let position: Int64 = row[0], let id: String = row[1], let seq: Int64 = row[3],
              let typeName: String = row[4], let timeMs: Int64 = row[5], let recordedMs: Int64 = row[6],
              let site: String = row[7], let kindName: String = row[8], let entity: String = row[9],
              let state: Int64 = row[19]
        else { throw EventError.corruptRow("missing column") }
        guard let type = EventType(rawValue: typeName) else { throw EventError.corruptRow("unknown type \(typeName.prefix(64))") }
        guard let kind = EventSource.Kind(rawValue: kindName) else { throw EventError.corruptRow("unknown source kind") }
        let source = try EventSource(site: site, kind: kind, id: entity)
        let methodName: String? = row[14], actionName: String? = row[15]
        let method = try methodName.map { n -> AccessMethod in
            guard let m = AccessMethod(rawValue: n) else { throw EventError.corruptRow("unknown method") }
            return m
        }
        let action = try actionName.map { n -> AccessAction in
            guard let a = AccessAction(rawValue: n) else { throw EventError.corruptRow("unknown action") }
            return a
        }
        let collectedMs: Int64? = row[20]
        let collectedBy: String? = row[21]
        let stageName: String? = row[22]
        let stage: EventStage
        if let stageName {
            guard let s = EventStage(rawValue: stageName) else { throw EventError.corruptRow("unknown stage") }
            stage = s
        } else {
            stage = state == 2 ? .lost : state == 1 ? .collected : .held
        }
        let event = KeywayEvent(
            type: type, source: source, time: RFC3339.date(milliseconds: timeMs),
            door: row[10], iq: row[11], user: row[12], keyID: row[13], method: method, action: action,
            reason: row[16], revocationVersion: row[17], attributes: try AttributeCoding.decode(row[18]),
            stage: state == 0 || state == 2 ? .held : .collected(by: collectedBy))
        return RecordedEvent(
            position: position, id: id, sequence: seq, event: event,
            recordedAt: RFC3339.date(milliseconds: recordedMs),
            collectedAt: collectedMs.map(RFC3339.date(milliseconds:)), collectedBy: collectedBy,
            stage: stage, deliveries: [])
    }
}
