import Foundation
import MobileKey

/// What a lock knows about one user who may open it with a tag or a PIN.
public struct AccessEntry: Sendable, Hashable, Codable {
    public let userID: String
    /// Union of the schedules of the user's groups that include this lock.
    public let schedule: Timetable
    /// Whether any of those groups gives the office-mode right.
    public let officeMode: Bool
    public let validFrom: Date?
    public let validUntil: Date?

    public init(userID: String, schedule: Timetable, officeMode: Bool, validFrom: Date? = nil, validUntil: Date? = nil) {
        self.userID = userID
        self.schedule = schedule
        self.officeMode = officeMode
        self.validFrom = validFrom
        self.validUntil = validUntil
    }
}

/// The tag and PIN list a lock checks offline, as last pushed to it by an IQ (or installed when the
/// site was commissioned). Locks with the same groups share one list's storage.
public struct AccessList: Sendable, Codable {
    public let version: UInt64
    public let entries: [AccessEntry]
    private let tags: [TagUID: Int32]
    private let pins: [String: Int32]

    public static let empty = AccessList(version: 0, entries: [], tags: [:], pins: [:])

    init(version: UInt64, entries: [AccessEntry], tags: [TagUID: Int32], pins: [String: Int32]) {
        self.version = version
        self.entries = entries
        self.tags = tags
        self.pins = pins
    }

    public func entry(forTag uid: TagUID) -> AccessEntry? { tags[uid].map { entries[Int($0)] } }
    public func entry(forPIN pin: String) -> AccessEntry? { pins[pin].map { entries[Int($0)] } }

    public var tagCount: Int { tags.count }
    public var pinCount: Int { pins.count }

    /// The same list under another version number (what an IQ pushes when nothing changed for a lock).
    func with(version v: UInt64) -> AccessList { AccessList(version: v, entries: entries, tags: tags, pins: pins) }

    /// Builds the list for a lock from the users whose `groups` (indices into `groups`) include the lock.
    static func build(version: UInt64, lockGroups: Set<Int>, groups: [AccessGroupConfig], users: [UserConfig]) -> AccessList {
        guard !lockGroups.isEmpty else { return AccessList(version: version, entries: [], tags: [:], pins: [:]) }
        var groupByID: [String: Int] = [:]
        for i in lockGroups { groupByID[groups[i].id] = i }
        var entries: [AccessEntry] = []
        var tags: [TagUID: Int32] = [:], pins: [String: Int32] = [:]
        for user in users where !user.tags.isEmpty || user.pin != nil {
            var schedule: Timetable?
            var office = false
            for g in user.groups {
                guard let gi = groupByID[g] else { continue }
                schedule = schedule.map { $0.union(groups[gi].schedule) } ?? groups[gi].schedule
                office = office || groups[gi].officeMode
            }
            guard let schedule else { continue }
            let index = Int32(entries.count)
            entries.append(AccessEntry(userID: user.id, schedule: schedule, officeMode: office,
                                       validFrom: user.validFrom, validUntil: user.validUntil))
            for t in user.tags { tags[t] = index }
            if let p = user.pin { pins[p] = index }
        }
        return AccessList(version: version, entries: entries, tags: tags, pins: pins)
    }
}
