import Foundation

/// Where the journal and the delivery get the time from. Model code never reads the wall clock itself:
/// the emulator injects its simulated clock, tests inject one that advances instantly.
public protocol EventClock: Sendable {
    func now() -> Date
    /// Waits for `duration` of this clock's time.
    func sleep(for duration: Duration) async throws
}

/// The real clock: wall-clock time and `Task.sleep`.
public struct SystemEventClock: EventClock {
    public init() {}
    public func now() -> Date { Date() }
    public func sleep(for duration: Duration) async throws { try await Task.sleep(for: duration) }
}

/// Adapts any other clock (e.g. the hardware layer's simulated clock) without Events importing it.
public struct ClosureEventClock: EventClock {
    private let nowBody: @Sendable () -> Date
    private let sleepBody: @Sendable (Duration) async throws -> Void
    public init(now: @escaping @Sendable () -> Date,
                sleep: @escaping @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) }) {
        self.nowBody = now
        self.sleepBody = sleep
    }
    public func now() -> Date { nowBody() }
    public func sleep(for duration: Duration) async throws { try await sleepBody(duration) }
}

extension Duration {
    var seconds: Double {
        let c = components
        return Double(c.seconds) + Double(c.attoseconds) / 1e18
    }
    static func secondsDouble(_ s: Double) -> Duration {
        guard s.isFinite, s > 0 else { return .zero }
        return .nanoseconds(Int64(min(s, 9e9) * 1e9))
    }
}

/// RFC 3339 timestamps in UTC with millisecond precision — the resolution the journal stores.
public enum RFC3339 {
    /// Milliseconds since the Unix epoch, rounded toward negative infinity so that formatting and storing
    /// agree for pre-1970 times too.
    public static func milliseconds(_ date: Date) -> Int64 {
        let ms = (date.timeIntervalSince1970 * 1000).rounded(.down)
        guard ms.isFinite, abs(ms) < 9.2e15 else { return ms > 0 ? Int64(9.2e15) : -Int64(9.2e15) }
        return Int64(ms)
    }

    public static func date(milliseconds: Int64) -> Date { Date(timeIntervalSince1970: Double(milliseconds) / 1000) }

    /// `2025-03-01T09:30:00.250Z`
    public static func format(milliseconds ms: Int64) -> String {
        let (days, msOfDay) = floorDivMod(ms, 86_400_000)
        let (y, m, d) = civil(fromDays: days)
        let h = msOfDay / 3_600_000, mi = (msOfDay / 60_000) % 60, s = (msOfDay / 1000) % 60, frac = msOfDay % 1000
        return "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2))T\(pad(h, 2)):\(pad(mi, 2)):\(pad(s, 2)).\(pad(frac, 3))Z"
    }

    public static func format(_ date: Date) -> String { format(milliseconds: milliseconds(date)) }

    /// Whole seconds, for people reading a CLI line: `2025-03-01T09:30:00Z`.
    public static func formatSeconds(_ date: Date) -> String {
        let s = format(milliseconds: milliseconds(date))
        return String(s.prefix(19)) + "Z"
    }

    /// Parses RFC 3339 `date-time` (any offset, optional fraction — digits past milliseconds are
    /// truncated). `T` (or `t`) between date and time, as OpenAPI's `date-time` format requires; the
    /// one parser of the control API, the CLI and the journal, so they never disagree.
    public static func parse(_ text: String) -> Date? {
        guard let ms = parseMilliseconds(text) else { return nil }
        return date(milliseconds: ms)
    }

    public static func parseMilliseconds(_ text: String) -> Int64? {
        let b = Array(text.utf8)
        guard b.count >= 20, b.count <= 40 else { return nil }
        func num(_ from: Int, _ len: Int) -> Int64? {
            guard from + len <= b.count else { return nil }
            var v: Int64 = 0
            for i in from..<(from + len) {
                guard b[i] >= 48, b[i] <= 57 else { return nil }
                v = v * 10 + Int64(b[i] - 48)
            }
            return v
        }
        guard let y = num(0, 4), b[4] == 45, let mo = num(5, 2), b[7] == 45, let d = num(8, 2),
              b[10] == UInt8(ascii: "T") || b[10] == UInt8(ascii: "t"),
              let h = num(11, 2), b[13] == 58, let mi = num(14, 2), b[16] == 58, let s = num(17, 2)
        else { return nil }
        guard (1...12).contains(mo), (1...31).contains(d), h < 24, mi < 60, s <= 60 else { return nil }
        var i = 19
        var frac: Int64 = 0
        if i < b.count, b[i] == UInt8(ascii: ".") {
            i += 1
            var digits = 0
            while i < b.count, b[i] >= 48, b[i] <= 57 {
                if digits < 3 { frac = frac * 10 + Int64(b[i] - 48) }
                digits += 1; i += 1
            }
            guard digits > 0 else { return nil }
            for _ in 0..<max(0, 3 - digits) { frac *= 10 }
        }
        guard i < b.count else { return nil }
        var offsetMinutes: Int64 = 0
        if b[i] == UInt8(ascii: "Z") || b[i] == UInt8(ascii: "z") {
            i += 1
        } else if b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") {
            let sign: Int64 = b[i] == UInt8(ascii: "-") ? -1 : 1
            guard let oh = num(i + 1, 2), i + 3 < b.count, b[i + 3] == 58, let om = num(i + 4, 2), oh < 24, om < 60
            else { return nil }
            offsetMinutes = sign * (oh * 60 + om)
            i += 6
        } else { return nil }
        guard i == b.count else { return nil }
        let days = days(fromCivil: y, mo, d)
        guard d <= daysInMonth(y, mo) else { return nil }
        // A leap second (":60") is folded onto the next second, as POSIX time does.
        return ((days * 86_400 + h * 3600 + mi * 60 + s) - offsetMinutes * 60) * 1000 + frac
    }

    private static func pad(_ v: Int64, _ width: Int) -> String {
        let s = String(v)
        return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
    }

    private static func floorDivMod(_ a: Int64, _ b: Int64) -> (Int64, Int64) {
        var q = a / b, r = a % b
        if r < 0 { q -= 1; r += b }
        return (q, r)
    }

    private static func isLeap(_ y: Int64) -> Bool { (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 }
    private static func daysInMonth(_ y: Int64, _ m: Int64) -> Int64 {
        switch m {
        case 2: return isLeap(y) ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    // Proleptic Gregorian calendar arithmetic on 400-year eras (146,097 days each), with the year starting
    // in March so that the leap day is the last day of the year.
    static func days(fromCivil year: Int64, _ month: Int64, _ day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let monthFromMarch = month > 2 ? month - 3 : month + 9
        let dayOfYear = (153 * monthFromMarch + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    static func civil(fromDays z0: Int64) -> (Int64, Int64, Int64) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}
