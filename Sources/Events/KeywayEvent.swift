import Foundation

/// Every way recording or reading an event can be refused. Each case says precisely what was wrong.
public enum EventError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalidIdentifier(field: String, value: String)
    case invalidSourcePath(String)
    case unknownEventType(String)
    case fieldTooLong(field: String, limit: Int)
    case invalidAttributeName(String)
    case reservedAttributeName(String)
    case tooManyAttributes(limit: Int)
    case timeOutOfRange(field: String)
    case invalidSequence(Int64)
    case batchTooLarge(limit: Int)
    case invalidSecret(String)
    case invalidURL(String)
    case invalidConfiguration(String)
    case corruptRow(String)
    case journalClosed
    case invalidSince(String)
    case duplicateEndpointName(String)
    case invalidField(field: String, rule: String)

    public var description: String {
        switch self {
        case .invalidIdentifier(let f, let v): return "invalid \(f) identifier \"\(v)\": use 1–128 characters from A–Z a–z 0–9 - . _ ~ (not \".\" or \"..\")"
        case .invalidSourcePath(let p): return "invalid event source \"\(p)\": expected /sites/{site}/locks|controllers|iqs|emulator/{id}"
        case .unknownEventType(let t): return "unknown event type \"\(t)\""
        case .fieldTooLong(let f, let l): return "\(f) is longer than \(l) bytes"
        case .invalidAttributeName(let n): return "invalid attribute name \"\(n)\": use 1–32 characters a–z 0–9 _ starting with a letter"
        case .reservedAttributeName(let n): return "attribute name \"\(n)\" is reserved for a data field"
        case .tooManyAttributes(let l): return "more than \(l) attributes"
        case .timeOutOfRange(let f): return "\(f) is outside 0001-01-01 … 9999-12-31"
        case .invalidSequence(let s): return "invalid sequence number \(s)"
        case .batchTooLarge(let l): return "batch larger than \(l) events"
        case .invalidSecret(let why): return "invalid webhook secret: \(why)"
        case .invalidURL(let why): return "invalid webhook URL: \(why)"
        case .invalidConfiguration(let why): return "invalid configuration: \(why)"
        case .corruptRow(let why): return "journal row unreadable: \(why)"
        case .journalClosed: return "the journal is closed"
        case .invalidSince(let s): return "invalid --since \"\(s)\": use RFC 3339 (2025-03-01T09:00:00Z) or a duration (90s, 15m, 2h, 7d)"
        case .duplicateEndpointName(let n): return "two delivery targets are named \"\(n)\""
        case .invalidField(let f, let rule): return "invalid \(f): \(rule)"
        }
    }
}

/// Bounds on everything an event carries, so a misbehaving producer cannot bloat the journal.
public enum EventLimits {
    public static let identifierBytes = 128
    public static let textBytes = 256
    public static let attributeCount = 16
    public static let attributeNameBytes = 32
    public static let batchEvents = 100_000
}

/// Who produced an event. Rendered as the CloudEvents `source`: `/sites/{site}/locks/{lock}`,
/// `/sites/{site}/controllers/{controller}` or `/sites/{site}/iqs/{iq}`. Sequence numbers count per source.
public struct EventSource: Hashable, Sendable, CustomStringConvertible, Comparable {
    public enum Kind: String, Sendable, CaseIterable {
        case lock = "locks"
        case controller = "controllers"
        case iq = "iqs"
        /// The emulator itself, for what its control API does to the whole world (a snapshot restored):
        /// `/sites/{site}/emulator/control`. Not a device: it holds no trail and its events are on the
        /// network at once.
        case emulator = "emulator"

        /// The `data` member naming the producer.
        var dataKey: String {
            switch self {
            case .lock: return "lock"
            case .controller: return "controller"
            case .iq: return "iq"
            case .emulator: return "emulator"
            }
        }
    }

    public let site: String
    public let kind: Kind
    public let id: String

    public init(site: String, kind: Kind, id: String) throws {
        try EventSource.validateIdentifier(site, field: "site")
        try EventSource.validateIdentifier(id, field: kind.dataKey)
        self.site = site
        self.kind = kind
        self.id = id
    }

    public static func lock(site: String, id: String) throws -> EventSource { try EventSource(site: site, kind: .lock, id: id) }
    public static func controller(site: String, id: String) throws -> EventSource { try EventSource(site: site, kind: .controller, id: id) }
    public static func iq(site: String, id: String) throws -> EventSource { try EventSource(site: site, kind: .iq, id: id) }
    /// The emulator's control API (`/sites/{site}/emulator/control`).
    public static func emulatorControl(site: String) throws -> EventSource { try EventSource(site: site, kind: .emulator, id: "control") }

    /// Parses `/sites/{site}/{locks|controllers|iqs}/{id}`.
    public init(path: String) throws {
        guard path.utf8.count <= 2 * EventLimits.identifierBytes + 32 else {
            throw EventError.invalidSourcePath(String(path.prefix(64)) + "…")
        }
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 5, parts[0].isEmpty, parts[1] == "sites", let kind = Kind(rawValue: String(parts[3])) else {
            throw EventError.invalidSourcePath(path)
        }
        try self.init(site: String(parts[2]), kind: kind, id: String(parts[4]))
    }

    public var path: String { "/sites/\(site)/\(kind.rawValue)/\(id)" }
    public var description: String { path }
    public static func < (a: EventSource, b: EventSource) -> Bool { a.path < b.path }

    /// Identifiers become URI path segments and SQL values; restricting them to RFC 3986 "unreserved"
    /// characters keeps the `source` a valid URI-reference with no escaping ambiguity.
    public static func validateIdentifier(_ value: String, field: String) throws {
        let bytes = value.utf8
        let ok = !bytes.isEmpty && bytes.count <= EventLimits.identifierBytes && value != "." && value != ".."
            && bytes.allSatisfy { b in
                (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
                    || b == UInt8(ascii: "-") || b == UInt8(ascii: ".") || b == UInt8(ascii: "_") || b == UInt8(ascii: "~")
            }
        guard ok else { throw EventError.invalidIdentifier(field: field, value: String(value.prefix(64))) }
    }
}

/// The CloudEvents `type` of every Keyway event. docs/EVENTS.md gives the meaning of each and its nearest
/// Kisi event, Salto entry category and Matter Door Lock cluster event.
public enum EventType: String, Sendable, CaseIterable, Comparable {
    case accessGranted = "com.keyway.access.granted"
    case accessDenied = "com.keyway.access.denied"
    case doorOpened = "com.keyway.door.opened"
    case doorClosed = "com.keyway.door.closed"
    case doorForced = "com.keyway.door.forced"
    case doorHeldOpen = "com.keyway.door.held_open"
    case officeModeStarted = "com.keyway.office_mode.started"
    case officeModeEnded = "com.keyway.office_mode.ended"
    case lockLocked = "com.keyway.lock.locked"
    case lockUnlocked = "com.keyway.lock.unlocked"
    case lockUncertain = "com.keyway.lock.uncertain"
    case remoteOpenRequested = "com.keyway.remote_open.requested"
    case keypadLockedOut = "com.keyway.keypad.locked_out"
    case batteryLow = "com.keyway.battery.low"
    case batteryDepleted = "com.keyway.battery.depleted"
    case batteryReplaced = "com.keyway.battery.replaced"
    case iqOnline = "com.keyway.iq.online"
    case iqOffline = "com.keyway.iq.offline"
    case iqActivated = "com.keyway.iq.activated"
    case iqActivationFailed = "com.keyway.iq.activation_failed"
    case iqDeactivated = "com.keyway.iq.deactivated"
    case trailCollected = "com.keyway.trail.collected"
    case trailOverflow = "com.keyway.trail.overflow"
    case powerLost = "com.keyway.power.lost"
    case powerRestored = "com.keyway.power.restored"
    case accessListUpdated = "com.keyway.access_list.updated"
    case revocationUpdated = "com.keyway.revocation.updated"
    case clockAdjusted = "com.keyway.clock.adjusted"
    /// The platform's lockdown reached a lock (`POST /v1/lockdown`), and its end.
    case lockdownStarted = "com.keyway.lockdown.started"
    case lockdownEnded = "com.keyway.lockdown.ended"
    /// The whole emulated world went back to a snapshot (`POST /v1/snapshots/{id}/restore`).
    case snapshotRestored = "com.keyway.emulator.snapshot_restored"

    public static let prefix = "com.keyway."

    /// `access.granted` for `com.keyway.access.granted`.
    public var shortName: String { String(rawValue.dropFirst(EventType.prefix.count)) }

    /// Accepts the full type or the short form (`access.denied`).
    public init?(name: String) {
        if let t = EventType(rawValue: name) { self = t; return }
        if let t = EventType(rawValue: EventType.prefix + name) { self = t; return }
        return nil
    }

    /// `result` in `data`, for access decisions only.
    public var result: String? {
        switch self {
        case .accessGranted: return "granted"
        case .accessDenied: return "denied"
        default: return nil
        }
    }

    public static func < (a: EventType, b: EventType) -> Bool { a.rawValue < b.rawValue }
}

/// How a person (or the lock itself) caused the event. Mirrors Matter's OperationSourceEnum where it can.
public enum AccessMethod: String, Sendable, CaseIterable {
    case mobile, tag, pin, remote
    case exitButton = "exit_button"
    case manual
    /// A lock schedule or the end of an easy-office-mode window.
    case schedule
    /// The lock on its own, e.g. relocking when the open time ends.
    case auto
}

/// What was asked of the lock.
public enum AccessAction: String, Sendable, CaseIterable {
    case open
    case officeModeOn = "office_mode_on"
    case officeModeOff = "office_mode_off"
    case lock
}

/// A type-specific extra member of `data` (e.g. `battery_percent`, `open_time_s`, `lost_count`).
public enum EventAttribute: Sendable, Equatable, Hashable, Codable {
    case int(Int64)
    case string(String)
    case bool(Bool)

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let b = try? c.decode(Bool.self) { self = .bool(b); return }
        if let i = try? c.decode(Int64.self) { self = .int(i); return }
        self = .string(try c.decode(String.self))
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .int(let v): try c.encode(v)
        case .string(let v): try c.encode(v)
        case .bool(let v): try c.encode(v)
        }
    }
}

/// Where an event is when it is recorded.
public enum InitialStage: Sendable, Equatable {
    /// Kept in the lock's own audit trail: no IQ has collected it yet (a lock out of IQ reach).
    case held
    /// Reached the network at once — an online IQ in range uploaded it, or a wired controller or IQ
    /// produced it. Recording a collected event also collects every earlier held event of its source,
    /// because an IQ uploads a trail in order.
    case collected(by: String?)
}

/// One event as a producer (lock, controller, IQ) records it. The journal adds the id, the per-source
/// sequence number and the recording time.
public struct KeywayEvent: Sendable, Equatable {
    public var type: EventType
    public var source: EventSource
    /// Lock time — the producer's clock, which may differ from the journal's (clock jumps are events too).
    public var time: Date
    public var door: String?
    public var iq: String?
    public var user: String?
    /// Credential key id (`cti`), hex.
    public var keyID: String?
    public var method: AccessMethod?
    public var action: AccessAction?
    /// Machine-readable denial or alarm reason, e.g. `revoked`, `outside_schedule`, `expired`.
    public var reason: String?
    public var revocationVersion: Int64?
    public var attributes: [String: EventAttribute]
    public var stage: InitialStage
    /// The producer's own sequence number for this event (a device numbering its records), or nil for
    /// the journal to number it. When given it must be above every sequence of the source recorded so far:
    /// the journal refuses a repeat.
    public var sequence: Int64?

    public init(type: EventType, source: EventSource, time: Date,
                door: String? = nil, iq: String? = nil, user: String? = nil, keyID: String? = nil,
                method: AccessMethod? = nil, action: AccessAction? = nil, reason: String? = nil,
                revocationVersion: Int64? = nil, attributes: [String: EventAttribute] = [:],
                stage: InitialStage? = nil) {
        self.type = type
        self.source = source
        self.time = time
        self.door = door
        self.iq = iq
        self.user = user
        self.keyID = keyID
        self.method = method
        self.action = action
        self.reason = reason
        self.revocationVersion = revocationVersion
        self.attributes = attributes
        // A battery lock keeps its trail until an IQ collects it; controllers and IQs are on the network.
        self.stage = stage ?? (source.kind == .lock ? .held : .collected(by: nil))
    }

    /// Names used by the fixed members of `data`; attributes may not shadow them.
    static let reservedDataKeys: Set<String> = [
        "site", "lock", "controller", "iq", "emulator", "door", "user", "key_id", "method", "action", "result", "reason",
        "sequence", "revocation_version",
    ]

    /// Checks every bound before the event reaches the journal.
    public func validate() throws {
        func text(_ v: String?, _ field: String) throws {
            if let v, v.utf8.count > EventLimits.textBytes { throw EventError.fieldTooLong(field: field, limit: EventLimits.textBytes) }
        }
        func ident(_ v: String?, _ field: String) throws {
            if let v { try EventSource.validateIdentifier(v, field: field) }
        }
        try ident(door, "door")
        try ident(iq, "iq")
        try text(user, "user")
        if let keyID {
            guard !keyID.isEmpty, keyID.utf8.count <= 128, keyID.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x66) })
            else { throw EventError.invalidField(field: "key_id", rule: "1–128 hex digits") }
        }
        if let reason {
            guard !reason.isEmpty, reason.utf8.count <= 64,
                  reason.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") })
            else { throw EventError.invalidField(field: "reason", rule: "1–64 of a–z 0–9 _ . - (a machine-readable code)") }
        }
        if case .collected(let by?) = stage { try ident(by, "collector") }
        if let v = revocationVersion, v < 0 { throw EventError.invalidSequence(v) }
        if let s = sequence, s < 1 { throw EventError.invalidSequence(s) }
        let ms = RFC3339.milliseconds(time)
        guard ms >= EventValidation.minMilliseconds, ms <= EventValidation.maxMilliseconds else {
            throw EventError.timeOutOfRange(field: "time")
        }
        guard attributes.count <= EventLimits.attributeCount else { throw EventError.tooManyAttributes(limit: EventLimits.attributeCount) }
        for (name, value) in attributes {
            try EventValidation.validateAttributeName(name)
            if case .string(let s) = value { try text(s, name) }
        }
    }
}

enum EventValidation {
    static let minMilliseconds = RFC3339.days(fromCivil: 1, 1, 1) * 86_400_000
    static let maxMilliseconds = RFC3339.days(fromCivil: 9999, 12, 31) * 86_400_000 + 86_399_999

    static func validateAttributeName(_ name: String) throws {
        let b = Array(name.utf8)
        guard !b.isEmpty, b.count <= EventLimits.attributeNameBytes, b[0] >= 0x61, b[0] <= 0x7A,
              b.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == UInt8(ascii: "_") })
        else { throw EventError.invalidAttributeName(String(name.prefix(64))) }
        guard !KeywayEvent.reservedDataKeys.contains(name) else { throw EventError.reservedAttributeName(name) }
    }
}
