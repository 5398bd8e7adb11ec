import Foundation

/// Where an event stands on its way upstream. Precedence when several apply: dead-lettered, lost (a
/// lost event stays lost when delivery cursors move past it: it was never sent), delivered, collected, held.
public enum EventStage: String, Sendable, CaseIterable {
    /// Still only in the lock's trail: no IQ has collected it yet.
    case held
    /// An IQ collected it (or its producer is on the network); not yet acknowledged by every endpoint.
    case collected
    /// Every registered delivery endpoint acknowledged it with a 2xx (or the sink wrote it).
    case delivered
    /// At least one endpoint rejected it with a 4xx; see `EventJournal.deadLetters`.
    case deadLettered = "dead_lettered"
    /// The lock's bounded trail overflowed before any IQ collected it; a `trail.overflow` event reports it.
    case lost
}

/// The per-endpoint view of one event.
public struct EndpointDelivery: Sendable, Equatable {
    public enum State: Sendable, Equatable {
        case pending
        case delivered
        case deadLettered(status: Int)
    }
    public let endpoint: String
    public let state: State
}

/// An event as the journal holds it: the producer's `KeywayEvent` plus what recording assigned.
public struct RecordedEvent: Sendable, Equatable, Identifiable {
    /// Journal order (monotonic across all sources); pass it as `EventQuery.after` to page or resume.
    public let position: Int64
    /// CloudEvents `id` — assigned once, at record time, in the same transaction as the sequence number.
    public let id: String
    /// Per-source sequence number, from 1, without gaps.
    public let sequence: Int64
    public let event: KeywayEvent
    /// Journal clock at recording.
    public let recordedAt: Date
    public let collectedAt: Date?
    public let collectedBy: String?
    public let stage: EventStage
    /// Filled when the query asked for it (`EventQuery.includeDeliveries`).
    public internal(set) var deliveries: [EndpointDelivery]

    public var type: EventType { event.type }
    public var source: EventSource { event.source }

    /// The CloudEvents 1.0 structured-mode JSON document. Deterministic: the same event always renders to
    /// the same bytes, so a redelivery after a crash is byte-identical to the first attempt.
    public func cloudEventJSON() -> [UInt8] { cloudEventJSON(extensions: []) }

    /// With CloudEvents extension attributes added after the required ones (names: lowercase a–z 0–9).
    public func cloudEventJSON(extensions: [(String, EventAttribute)]) -> [UInt8] {
        var w = JSONWriter()
        w.beginObject()
        w.key("specversion"); w.string("1.0")
        w.key("id"); w.string(id)
        w.key("source"); w.string(event.source.path)
        w.key("type"); w.string(event.type.rawValue)
        w.key("time"); w.string(RFC3339.format(event.time))
        w.key("datacontenttype"); w.string("application/json")
        for (name, value) in extensions {
            w.key(name)
            switch value {
            case .int(let v): w.int(v)
            case .string(let v): w.string(v)
            case .bool(let v): w.bool(v)
            }
        }
        w.key("data")
        writeData(into: &w)
        w.endObject()
        return w.bytes
    }

    public var cloudEventString: String { String(decoding: cloudEventJSON(), as: UTF8.self) }

    func writeData(into w: inout JSONWriter) {
        let e = event
        w.beginObject()
        w.member("site", e.source.site)
        w.member(e.source.kind.dataKey, e.source.id)
        if e.source.kind != .iq { w.member("iq", e.iq) }
        w.member("door", e.door)
        w.member("user", e.user)
        w.member("key_id", e.keyID)
        w.member("method", e.method?.rawValue)
        w.member("action", e.action?.rawValue)
        w.member("result", e.type.result)
        w.member("reason", e.reason)
        w.member("sequence", sequence)
        w.member("revocation_version", e.revocationVersion)
        for name in e.attributes.keys.sorted() {
            w.key(name)
            switch e.attributes[name] {
            case .int(let v)?: w.int(v)
            case .string(let v)?: w.string(v)
            case .bool(let v)?: w.bool(v)
            case nil: w.null()
            }
        }
        w.endObject()
    }
}

/// Attributes are stored as a JSON object written by `JSONWriter` (sorted keys) and read back with
/// `JSONDecoder`, which keeps booleans and integers apart.
enum AttributeCoding {
    static func encode(_ attributes: [String: EventAttribute]) -> String? {
        guard !attributes.isEmpty else { return nil }
        var w = JSONWriter(capacity: 64)
        w.beginObject()
        for name in attributes.keys.sorted() {
            w.key(name)
            switch attributes[name] {
            case .int(let v)?: w.int(v)
            case .string(let v)?: w.string(v)
            case .bool(let v)?: w.bool(v)
            case nil: w.null()
            }
        }
        w.endObject()
        return String(decoding: w.bytes, as: UTF8.self)
    }

    static func decode(_ text: String?) throws -> [String: EventAttribute] {
        guard let text, !text.isEmpty else { return [:] }
        do {
            return try JSONDecoder().decode([String: EventAttribute].self, from: Data(text.utf8))
        } catch {
            throw EventError.corruptRow("attributes are not a JSON object of strings, integers and booleans")
        }
    }
}

/// UUID version 7 (RFC 9562 §5.7): 48-bit Unix milliseconds, then 74 random bits. Time-ordered ids keep
/// the journal's unique index appending at its right edge instead of splitting pages at random.
public enum UUIDv7 {
    public static func make(milliseconds: Int64) -> String {
        var rng = SystemRandomNumberGenerator()
        return make(milliseconds: milliseconds, using: &rng)
    }

    static func make<R: RandomNumberGenerator>(milliseconds: Int64, using rng: inout R) -> String {
        let r1 = rng.next() as UInt64, r2 = rng.next() as UInt64
        let ms = UInt64(bitPattern: max(0, milliseconds)) & 0xFFFF_FFFF_FFFF
        var b = [UInt8](repeating: 0, count: 16)
        for i in 0..<6 { b[i] = UInt8(truncatingIfNeeded: ms >> UInt64(40 - 8 * i)) }
        b[6] = 0x70 | UInt8(truncatingIfNeeded: r1 >> 8) & 0x0F
        b[7] = UInt8(truncatingIfNeeded: r1)
        b[8] = 0x80 | UInt8(truncatingIfNeeded: r1 >> 16) & 0x3F
        for i in 9..<16 { b[i] = UInt8(truncatingIfNeeded: r2 >> UInt64(8 * (i - 9))) }
        let hex: [UInt8] = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(36)
        for (i, byte) in b.enumerated() {
            if i == 4 || i == 6 || i == 8 || i == 10 { out.append(UInt8(ascii: "-")) }
            out.append(hex[Int(byte >> 4)])
            out.append(hex[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// xoshiro256** seeded from the system CSPRNG. Ids need uniqueness, not secrecy; this keeps a syscall
/// (getrandom, 8 bytes at a time) off the per-event path. A collision would still be refused by the
/// journal's UNIQUE(id) constraint rather than stored.
struct IDRandom: RandomNumberGenerator {
    private var s: (UInt64, UInt64, UInt64, UInt64)

    init() {
        var sys = SystemRandomNumberGenerator()
        repeat { s = (sys.next(), sys.next(), sys.next(), sys.next()) } while s == (0, 0, 0, 0)
    }

    mutating func next() -> UInt64 {
        @inline(__always) func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }
        let result = rotl(s.1 &* 5, 7) &* 9
        let t = s.1 << 17
        s.2 ^= s.0
        s.3 ^= s.1
        s.1 ^= s.2
        s.0 ^= s.3
        s.2 ^= t
        s.3 = rotl(s.3, 45)
        return result
    }
}
