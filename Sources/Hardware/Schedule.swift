import Foundation

/// A set of weekdays, Monday first (bit 0 = Monday … bit 6 = Sunday), as access platforms show them.
public struct DaySet: OptionSet, Sendable, Hashable, Codable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue & 0x7F }

    public static let monday = DaySet(rawValue: 1 << 0)
    public static let tuesday = DaySet(rawValue: 1 << 1)
    public static let wednesday = DaySet(rawValue: 1 << 2)
    public static let thursday = DaySet(rawValue: 1 << 3)
    public static let friday = DaySet(rawValue: 1 << 4)
    public static let saturday = DaySet(rawValue: 1 << 5)
    public static let sunday = DaySet(rawValue: 1 << 6)
    public static let weekdays: DaySet = [.monday, .tuesday, .wednesday, .thursday, .friday]
    public static let weekend: DaySet = [.saturday, .sunday]
    public static let everyDay = DaySet(rawValue: 0x7F)

    /// Weekday index, 0 = Monday … 6 = Sunday.
    public func contains(weekday: Int) -> Bool {
        weekday >= 0 && weekday < 7 && rawValue & (1 << UInt8(weekday)) != 0
    }

    static let names = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

    public var description: String {
        if self == .everyDay { return "daily" }
        if self == .weekdays { return "mon-fri" }
        if self == .weekend { return "sat,sun" }
        return (0..<7).filter { contains(weekday: $0) }.map { DaySet.names[$0] }.joined(separator: ",")
    }

    /// Parses `mon`, `mon-fri`, `sat,sun`, `mon-wed,fri`, `fri-mon` (wrapping), `daily`, `weekdays`,
    /// `weekends`. Returns nil with no partial result on anything else.
    public init?(parsing text: Substring) {
        var set: DaySet = []
        let lower = text.lowercased()
        switch lower {
        case "daily", "everyday", "every-day": self = .everyDay; return
        case "weekdays": self = .weekdays; return
        case "weekends", "weekend": self = .weekend; return
        default: break
        }
        for part in lower.split(separator: ",", omittingEmptySubsequences: false) {
            let ends = part.split(separator: "-", omittingEmptySubsequences: false)
            guard ends.count == 1 || ends.count == 2 else { return nil }
            guard let first = DaySet.names.firstIndex(of: String(ends[0])) else { return nil }
            let last: Int
            if ends.count == 2 {
                guard let l = DaySet.names.firstIndex(of: String(ends[1])) else { return nil }
                last = l
            } else {
                last = first
            }
            var d = first
            while true {
                set.insert(DaySet(rawValue: 1 << UInt8(d)))
                if d == last { break }
                d = (d + 1) % 7
            }
        }
        guard !set.isEmpty else { return nil }
        self = set
    }
}

/// Minutes since local midnight, 0…1440 (1440 = "24:00", only meaningful as the end of a window).
public struct TimeOfDay: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    public let minutes: UInt16

    public init?(minutes: Int) {
        guard minutes >= 0, minutes <= 1440 else { return nil }
        self.minutes = UInt16(minutes)
    }

    /// For constants known to be in range.
    init(unchecked minutes: UInt16) { self.minutes = min(minutes, 1440) }

    public init?(hour: Int, minute: Int) {
        guard (0...24).contains(hour), (0...59).contains(minute), hour * 60 + minute <= 1440 else { return nil }
        self.minutes = UInt16(hour * 60 + minute)
    }

    /// Parses `HH:MM` (one or two hour digits, exactly two minute digits, 00:00…24:00).
    public init?(parsing text: Substring) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, (1...2).contains(parts[0].count), parts[1].count == 2,
              parts[0].allSatisfy(\.isASCIIDigit), parts[1].allSatisfy(\.isASCIIDigit),
              let h = Int(parts[0]), let m = Int(parts[1]) else { return nil }
        self.init(hour: h, minute: m)
    }

    public static func < (a: TimeOfDay, b: TimeOfDay) -> Bool { a.minutes < b.minutes }

    public var description: String {
        let h = Int(minutes) / 60, m = Int(minutes) % 60
        return (h < 10 ? "0\(h)" : "\(h)") + ":" + (m < 10 ? "0\(m)" : "\(m)")
    }
}

/// A weekly recurring window: on each of `days`, from `start` to `end` local time. A window whose end is
/// not after its start runs overnight into the next day (`fri 22:00-06:00` covers Saturday 00:00–06:00).
public struct WeeklyWindow: Sendable, Hashable, Codable, CustomStringConvertible {
    public let days: DaySet
    public let start: TimeOfDay
    public let end: TimeOfDay

    public init?(days: DaySet, start: TimeOfDay, end: TimeOfDay) {
        // An empty window (start == end, other than the whole day) is certainly a typo.
        guard !days.isEmpty, start != end, start.minutes < 1440 else { return nil }
        self.days = days
        self.start = start
        self.end = end
    }

    public static let always = WeeklyWindow(uncheckedDays: .everyDay, start: 0, end: 1440)

    private init(uncheckedDays days: DaySet, start: UInt16, end: UInt16) {
        self.days = days
        self.start = TimeOfDay(unchecked: start)
        self.end = TimeOfDay(unchecked: end)
    }

    var overnight: Bool { end.minutes <= start.minutes }
    public var isAlways: Bool { days == .everyDay && start.minutes == 0 && end.minutes == 1440 }

    /// Whether a local weekday (0 = Monday) and minute of day fall inside this window.
    public func contains(weekday: Int, minute: Int) -> Bool {
        if !overnight {
            return days.contains(weekday: weekday) && minute >= Int(start.minutes) && minute < Int(end.minutes)
        }
        if days.contains(weekday: weekday) && minute >= Int(start.minutes) { return true }
        return days.contains(weekday: (weekday + 6) % 7) && minute < Int(end.minutes)
    }

    public var description: String {
        if isAlways { return "24/7" }
        if start.minutes == 0 && end.minutes == 1440 { return days.description }
        return "\(days) \(start)-\(end)"
    }

    /// Parses `24/7`, `mon-fri 09:00-18:00`, `sat,sun 10:00-14:00`, `daily 07:00-22:00`, `fri 22:00-06:00`
    /// or a bare day set (`weekends`) meaning the whole of those days.
    public init?(parsing text: String) {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if trimmed == "24/7" { self = .always; return }
        let parts = trimmed.split(separator: " ", omittingEmptySubsequences: true)
        guard let first = parts.first, parts.count <= 2, let days = DaySet(parsing: first) else { return nil }
        if parts.count == 1 {
            self.init(uncheckedDays: days, start: 0, end: 1440)
            return
        }
        let range = parts[1].split(separator: "-", omittingEmptySubsequences: false)
        guard range.count == 2, let s = TimeOfDay(parsing: range[0]), let e = TimeOfDay(parsing: range[1])
        else { return nil }
        self.init(days: days, start: s, end: e)
    }
}

/// A union of weekly windows. Empty means "never".
public struct Timetable: Sendable, Hashable, Codable, CustomStringConvertible {
    public let windows: [WeeklyWindow]

    public init(_ windows: [WeeklyWindow]) {
        // Any 24/7 window makes the rest irrelevant; collapsing keeps shared access lists small.
        if windows.contains(where: \.isAlways) { self.windows = [.always] } else { self.windows = windows }
    }

    public static let always = Timetable([.always])
    public static let never = Timetable([])

    public var isAlways: Bool { windows.count == 1 && windows[0].isAlways }

    public func contains(_ local: LocalTime) -> Bool {
        if isAlways { return true }
        for w in windows where w.contains(weekday: local.weekday, minute: local.minuteOfDay) { return true }
        return false
    }

    public func union(_ other: Timetable) -> Timetable {
        if isAlways || other.isAlways { return .always }
        var merged = windows
        for w in other.windows where !merged.contains(w) { merged.append(w) }
        return Timetable(merged)
    }

    public var description: String { windows.isEmpty ? "never" : windows.map(\.description).joined(separator: ", ") }

    /// When the continuous span of covered time containing `date` ends, or nil if `date` is not covered
    /// or the schedule never ends (24/7). Adjacent windows (`09:00-12:00`, `12:00-18:00`) count as one span.
    public func endOfSpan(containing date: Date, in zone: SiteTimeZone) -> Date? {
        guard !isAlways, contains(zone.local(date)) else { return nil }
        var cursor = date
        // At most one step per window per day of a week is ever needed; 64 bounds pathological input.
        for _ in 0..<64 {
            let local = zone.local(cursor)
            var latest: Date?
            for w in windows where w.contains(weekday: local.weekday, minute: local.minuteOfDay) {
                // The end of this occurrence: today at `end`, or tomorrow for the first half of an
                // overnight window started today.
                let endsTomorrow = w.overnight && local.minuteOfDay >= Int(w.start.minutes)
                let endDay = local.day + (endsTomorrow ? 1 : 0)
                let end = zone.date(localDay: endDay, minute: Int(w.end.minutes))
                if end > cursor, latest.map({ end > $0 }) ?? true { latest = end }
            }
            guard let next = latest else { return cursor }
            cursor = next
            if !contains(zone.local(cursor)) { return cursor }
        }
        return cursor
    }
}

/// A lock-schedule entry: at `time` on each of `days`, the lock locks (it never unlocks on a schedule).
public struct ScheduledTime: Sendable, Hashable, Codable, CustomStringConvertible {
    public let days: DaySet
    public let time: TimeOfDay

    public init?(days: DaySet, time: TimeOfDay) {
        guard !days.isEmpty, time.minutes < 1440 else { return nil }
        self.days = days
        self.time = time
    }

    public var description: String { days == .everyDay ? "daily \(time)" : "\(days) \(time)" }

    /// Parses `mon-fri 19:00`, `daily 23:30` or a bare `23:30` (every day).
    public init?(parsing text: String) {
        let parts = text.trimmingCharacters(in: .whitespaces).split(separator: " ", omittingEmptySubsequences: true)
        switch parts.count {
        case 1:
            guard let t = TimeOfDay(parsing: parts[0]) else { return nil }
            self.init(days: .everyDay, time: t)
        case 2:
            guard let d = DaySet(parsing: parts[0]), let t = TimeOfDay(parsing: parts[1]) else { return nil }
            self.init(days: d, time: t)
        default:
            return nil
        }
    }

    /// The first instant strictly after `date` at which this entry fires.
    public func nextOccurrence(after date: Date, in zone: SiteTimeZone) -> Date {
        let today = zone.local(date).day
        for k in 0...8 {
            let day = today + k
            guard days.contains(weekday: LocalTime.weekday(ofDay: day)) else { continue }
            let candidate = zone.date(localDay: day, minute: Int(time.minutes))
            if candidate > date { return candidate }
        }
        // Unreachable for a non-empty day set; a week later is a safe answer regardless.
        return date.addingTimeInterval(7 * 86_400)
    }
}

extension Array where Element == ScheduledTime {
    /// The earliest next firing among the entries, if any.
    public func nextOccurrence(after date: Date, in zone: SiteTimeZone) -> Date? {
        self.map { $0.nextOccurrence(after: date, in: zone) }.min()
    }
}

/// A local wall-clock reading in the site's time zone.
public struct LocalTime: Sendable, Hashable {
    /// Days since 1970-01-01 in local time.
    public let day: Int
    /// 0 = Monday … 6 = Sunday.
    public let weekday: Int
    public let minuteOfDay: Int
    public let secondOfDay: Int

    static func weekday(ofDay day: Int) -> Int {
        // 1970-01-01 was a Thursday (index 3 with Monday = 0).
        ((day % 7) + 7 + 3) % 7
    }
}

/// The site's time zone with the two conversions the model needs, done arithmetically on top of
/// Foundation's zone offsets (no `Calendar` per call: schedules are evaluated on every tap).
public struct SiteTimeZone: Sendable, Hashable, CustomStringConvertible {
    public let zone: TimeZone

    public init?(identifier: String) {
        // Foundation falls back to GMT for some unknown names on some platforms; insist on a real match.
        guard let z = TimeZone(identifier: identifier), z.identifier == identifier || identifier == "UTC"
        else { return nil }
        zone = z
    }

    public init(_ zone: TimeZone) { self.zone = zone }

    public static let utc = SiteTimeZone(TimeZone.gmt)

    public var identifier: String { zone.identifier }
    public var description: String { zone.identifier }

    public func local(_ date: Date) -> LocalTime {
        let t = date.timeIntervalSince1970
        guard t.isFinite, abs(t) < 1e11 else { return LocalTime(day: 0, weekday: 3, minuteOfDay: 0, secondOfDay: 0) }
        let seconds = Int(t.rounded(.down)) + zone.secondsFromGMT(for: date)
        let day = Int((Double(seconds) / 86_400).rounded(.down))
        let second = seconds - day * 86_400
        return LocalTime(day: day, weekday: LocalTime.weekday(ofDay: day), minuteOfDay: second / 60, secondOfDay: second)
    }

    /// The instant at which local wall time reads `minute` minutes after midnight of local `day`. In a
    /// spring-forward gap the instant is shifted by the gap (02:30 that does not exist fires at 03:30).
    public func date(localDay day: Int, minute: Int) -> Date {
        let local = Double(day * 86_400 + minute * 60)
        var utc = local - Double(zone.secondsFromGMT(for: Date(timeIntervalSince1970: local)))
        utc = local - Double(zone.secondsFromGMT(for: Date(timeIntervalSince1970: utc)))
        return Date(timeIntervalSince1970: utc)
    }
}
