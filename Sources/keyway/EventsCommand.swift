import Events
import Foundation

/// Options of `keyway events`, as the CLI parses them (raw strings; `EventsCommand` validates them).
struct EventsCommandOptions: Sendable, Equatable {
    var follow: Bool
    var json: Bool
    /// `access.denied` or `com.keyway.access.denied`; several allowed.
    var types: [String]
    var lock: String?
    var site: String?
    /// RFC 3339 (`2025-03-01T09:00:00Z`) or a duration back from now (`90s`, `15m`, `2h`, `7d`).
    var since: String?
    /// `held`, `collected`, `delivered`, `dead_lettered`, `lost`.
    var stages: [String]
    /// How many of the most recent matching events to list before following.
    var limit: Int

    init(follow: Bool = false, json: Bool = false, types: [String] = [], lock: String? = nil, site: String? = nil,
                since: String? = nil, stages: [String] = [], limit: Int = 50) {
        self.follow = follow
        self.json = json
        self.types = types
        self.lock = lock
        self.site = site
        self.since = since
        self.stages = stages
        self.limit = limit
    }
}

/// What the CLI calls for `keyway events`. The CLI owns argument parsing and printing; this owns meaning.
enum EventsCommand {
    static func parseType(_ text: String) throws -> EventType {
        guard let t = EventType(name: text) else { throw EventError.unknownEventType(String(text.prefix(80))) }
        return t
    }

    static func parseStage(_ text: String) throws -> EventStage {
        guard let s = EventStage(rawValue: text) else {
            throw EventError.invalidConfiguration("unknown stage \"\(text.prefix(40))\": use \(EventStage.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return s
    }

    /// `--since`: an RFC 3339 time, or a duration before `now`.
    static func parseSince(_ text: String, now: Date) throws -> Date {
        if let d = RFC3339.parse(text) { return d }
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86_400]
        guard text.count >= 2, text.count <= 12, let unit = text.last, let scale = units[unit],
              let n = Double(text.dropLast()), n.isFinite, n >= 0
        else { throw EventError.invalidSince(String(text.prefix(40))) }
        return now.addingTimeInterval(-n * scale)
    }

    static func query(from options: EventsCommandOptions, now: Date) throws -> EventQuery {
        guard (1...EventQuery.maxLimit).contains(options.limit) else {
            throw EventError.invalidConfiguration("--limit must be 1…\(EventQuery.maxLimit)")
        }
        var q = EventQuery()
        q.types = Set(try options.types.map(parseType))
        q.stages = Set(try options.stages.map(parseStage))
        if let lock = options.lock { try EventSource.validateIdentifier(lock, field: "lock"); q.lock = lock }
        if let site = options.site { try EventSource.validateIdentifier(site, field: "site"); q.site = site }
        if let since = options.since { q.since = try parseSince(since, now: now) }
        q.limit = options.limit
        return q
    }

    /// Lists the most recent `limit` matching events (oldest first), then — with `follow` — every new one
    /// until the task is cancelled. Each output line goes to `emit` without a trailing newline.
    static func run(journal: EventJournal, options: EventsCommandOptions, clock: any EventClock = SystemEventClock(),
                           emit: @Sendable (String) -> Void) async throws {
        let query = try query(from: options, now: clock.now())
        let format: (RecordedEvent) -> String = options.json ? { EventFormatter.jsonLine($0) } : { EventFormatter.tableRow($0) }
        if !options.json { emit(EventFormatter.tableHeader) }
        let horizon = try await journal.lastPosition()
        var recent = query
        recent.newestFirst = true
        recent.throughPosition = horizon
        for e in try await journal.events(recent).reversed() { emit(format(e)) }
        guard options.follow else { return }
        var live = query
        live.after = horizon
        for try await e in journal.follow(live) { emit(format(e)) }
    }
}

/// Human and JSON renderings of journal entries for the CLI.
enum EventFormatter {
    static let columns: [(title: String, width: Int)] = [
        ("TIME (LOCK, UTC)", 24), ("SOURCE", 28), ("SEQ", 7), ("TYPE", 22), ("STAGE", 13), ("METHOD", 11), ("USER", 16),
    ]

    static var tableHeader: String {
        columns.map { pad($0.title, $0.width) }.joined(separator: " ") + " DETAIL"
    }

    /// One fixed-width row: lock time, source (`site/kind/id`), sequence, short type, stage, method, user,
    /// then details (reason, action, door, key id, revocation version, attributes).
    static func tableRow(_ e: RecordedEvent) -> String {
        let ev = e.event
        var detail: [String] = []
        if let r = ev.reason { detail.append("reason=\(r)") }
        if let a = ev.action { detail.append("action=\(a.rawValue)") }
        if let d = ev.door { detail.append("door=\(d)") }
        if let iq = ev.iq { detail.append("iq=\(iq)") }
        if let k = ev.keyID { detail.append("key=\(k)") }
        if let v = ev.revocationVersion { detail.append("revocation=\(v)") }
        for name in ev.attributes.keys.sorted() {
            switch ev.attributes[name] {
            case .int(let v)?: detail.append("\(name)=\(v)")
            case .string(let v)?: detail.append("\(name)=\(v)")
            case .bool(let v)?: detail.append("\(name)=\(v)")
            case nil: break
            }
        }
        let cells = [
            RFC3339.format(ev.time),
            "\(ev.source.site)/\(ev.source.kind.rawValue)/\(ev.source.id)",
            String(e.sequence),
            ev.type.shortName,
            e.stage.rawValue,
            ev.method?.rawValue ?? "-",
            ev.user ?? "-",
        ]
        let row = zip(cells, columns).map { pad(sanitize($0), $1.width) }.joined(separator: " ")
        return row + " " + sanitize(detail.joined(separator: " "))
    }

    /// The CloudEvent as delivered, plus the extension attributes `keywaystage` and `keywayposition` —
    /// still a valid CloudEvent, so SDKs and `jq` read it alike.
    static func jsonLine(_ e: RecordedEvent) -> String {
        String(decoding: e.cloudEventJSON(extensions: [("keywaystage", .string(e.stage.rawValue)),
                                                       ("keywayposition", .int(e.position))]), as: UTF8.self)
    }

    static func pad(_ s: String, _ width: Int) -> String {
        if s.count > width { return String(s.prefix(width - 1)) + "…" }
        return s + String(repeating: " ", count: width - s.count)
    }

    /// Terminal output must not carry control characters from event fields (user names are outside data).
    static func sanitize(_ s: String) -> String {
        String(String.UnicodeScalarView(s.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? "?" : $0 }))
    }
}
