import Foundation
import MobileKey

/// One reason a user may open a lock: a standing group membership (no window) or a booking (a
/// time-limited membership, its window already widened by its grace).
public struct AccessGrant: Sendable, Hashable, Codable {
    /// The group's weekly windows (ignored by a lock deciding offline: SALTO KS offline access is 24/7).
    public let schedule: Timetable
    /// The group gives the office-mode right.
    public let officeMode: Bool
    /// A booking's first instant (grace included); nil for a standing membership.
    public let from: Date?
    /// A booking's end (exclusive, grace included); nil for a standing membership.
    public let until: Date?

    public init(schedule: Timetable, officeMode: Bool, from: Date? = nil, until: Date? = nil) {
        self.schedule = schedule
        self.officeMode = officeMode
        self.from = from
        self.until = until
    }

    /// Whether the grant's window (if any) holds the instant.
    public func covers(_ t: Date) -> Bool {
        if let from, t < from { return false }
        if let until, t >= until { return false }
        return true
    }
}

/// What a lock knows about one user who may open it with a tag or a PIN.
public struct AccessEntry: Sendable, Hashable, Codable {
    public let userID: String
    /// Every group (standing or booked) that gives the user this lock.
    public let grants: [AccessGrant]
    public let validFrom: Date?
    public let validUntil: Date?
    /// The user's tags are on the lock's offline list (a PIN always is).
    public let offlineAccess: Bool
    /// A standing membership of a `lockdown_override` group that includes this lock.
    public let lockdownOverride: Bool
    public let blocked: Bool

    /// Whether any of the user's groups here gives the office-mode right.
    public var officeMode: Bool { grants.contains(where: \.officeMode) }

    public init(userID: String, grants: [AccessGrant], validFrom: Date? = nil, validUntil: Date? = nil,
                offlineAccess: Bool = false, lockdownOverride: Bool = false, blocked: Bool = false) {
        self.userID = userID
        self.grants = grants
        self.validFrom = validFrom
        self.validUntil = validUntil
        self.offlineAccess = offlineAccess
        self.lockdownOverride = lockdownOverride
        self.blocked = blocked
    }

    /// A standing entry with one schedule (what the site file alone gives).
    public init(userID: String, schedule: Timetable, officeMode: Bool, validFrom: Date? = nil, validUntil: Date? = nil) {
        self.init(userID: userID, grants: [AccessGrant(schedule: schedule, officeMode: officeMode)],
                  validFrom: validFrom, validUntil: validUntil)
    }

    private enum CodingKeys: String, CodingKey {
        case userID, grants, validFrom, validUntil, offlineAccess, lockdownOverride, blocked
        // The shape stored in lock flash before bookings (one merged schedule per user).
        case schedule, officeMode
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        userID = try c.decode(String.self, forKey: .userID)
        if let grants = try c.decodeIfPresent([AccessGrant].self, forKey: .grants) {
            self.grants = grants
        } else {
            grants = [AccessGrant(schedule: try c.decode(Timetable.self, forKey: .schedule),
                                  officeMode: try c.decode(Bool.self, forKey: .officeMode))]
        }
        validFrom = try c.decodeIfPresent(Date.self, forKey: .validFrom)
        validUntil = try c.decodeIfPresent(Date.self, forKey: .validUntil)
        offlineAccess = try c.decodeIfPresent(Bool.self, forKey: .offlineAccess) ?? false
        lockdownOverride = try c.decodeIfPresent(Bool.self, forKey: .lockdownOverride) ?? false
        blocked = try c.decodeIfPresent(Bool.self, forKey: .blocked) ?? false
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(userID, forKey: .userID)
        try c.encode(grants, forKey: .grants)
        try c.encodeIfPresent(validFrom, forKey: .validFrom)
        try c.encodeIfPresent(validUntil, forKey: .validUntil)
        try c.encode(offlineAccess, forKey: .offlineAccess)
        try c.encode(lockdownOverride, forKey: .lockdownOverride)
        try c.encode(blocked, forKey: .blocked)
    }
}

/// The tag and PIN list a lock checks offline, as last pushed to it by an IQ (or installed when the
/// site was commissioned). Locks with the same groups share one list's storage.
public struct AccessList: Sendable, Codable {
    public let version: UInt64
    public let entries: [AccessEntry]
    private let tags: [TagUID: Int32]
    private let pins: [String: Int32]
    /// Every blocked user of the site: their phone keys are refused too (a tag or PIN entry says it itself).
    public let blockedUsers: Set<String>
    /// Users whose standing groups let them through a lockdown of this lock (any credential).
    public let lockdownOverrideUsers: Set<String>

    public static let empty = AccessList(version: 0, entries: [], tags: [:], pins: [:], blockedUsers: [], lockdownOverrideUsers: [])

    init(version: UInt64, entries: [AccessEntry], tags: [TagUID: Int32], pins: [String: Int32],
         blockedUsers: Set<String>, lockdownOverrideUsers: Set<String>) {
        self.version = version
        self.entries = entries
        self.tags = tags
        self.pins = pins
        self.blockedUsers = blockedUsers
        self.lockdownOverrideUsers = lockdownOverrideUsers
    }

    private enum CodingKeys: String, CodingKey { case version, entries, tags, pins, blockedUsers, lockdownOverrideUsers }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        version = try c.decode(UInt64.self, forKey: .version)
        entries = try c.decode([AccessEntry].self, forKey: .entries)
        tags = try c.decode([TagUID: Int32].self, forKey: .tags)
        pins = try c.decode([String: Int32].self, forKey: .pins)
        // Lists kept in flash before blocking and lockdown existed name neither.
        blockedUsers = try c.decodeIfPresent(Set<String>.self, forKey: .blockedUsers) ?? []
        lockdownOverrideUsers = try c.decodeIfPresent(Set<String>.self, forKey: .lockdownOverrideUsers) ?? []
        guard tags.values.allSatisfy({ Int($0) < entries.count && $0 >= 0 }),
              pins.values.allSatisfy({ Int($0) < entries.count && $0 >= 0 }) else {
            throw DecodingError.dataCorrupted(.init(codingPath: [CodingKeys.entries], debugDescription: "an index past the entries"))
        }
    }

    public func entry(forTag uid: TagUID) -> AccessEntry? { tags[uid].map { entries[Int($0)] } }
    public func entry(forPIN pin: String) -> AccessEntry? { pins[pin].map { entries[Int($0)] } }

    public var tagCount: Int { tags.count }
    public var pinCount: Int { pins.count }
    /// Users whose tag or PIN the lock still accepts when it cannot reach an online IQ (SALTO KS's
    /// offline list: every PIN, and tags given offline access).
    public var offlineListCount: Int {
        var listed = Set(pins.values)
        for i in Set(tags.values) where entries[Int(i)].offlineAccess { listed.insert(i) }
        return listed.filter { !entries[Int($0)].blocked }.count
    }

    /// The same list under another version number (what an IQ pushes when nothing changed for a lock).
    func with(version v: UInt64) -> AccessList {
        AccessList(version: v, entries: entries, tags: tags, pins: pins, blockedUsers: blockedUsers, lockdownOverrideUsers: lockdownOverrideUsers)
    }

    /// Builds the list for a lock from the users whose groups (indices into `groups`) include the lock,
    /// standing or booked (`memberships`).
    static func build(version: UInt64, lockGroups: Set<Int>, groups: [AccessGroupConfig], users: [UserConfig],
                      memberships: [Membership] = []) -> AccessList {
        let blocked = Set(users.lazy.filter(\.blocked).map(\.id))
        guard !lockGroups.isEmpty else {
            return AccessList(version: version, entries: [], tags: [:], pins: [:], blockedUsers: blocked, lockdownOverrideUsers: [])
        }
        var groupByID: [String: Int] = [:]
        for i in lockGroups { groupByID[groups[i].id] = i }
        var booked: [String: [AccessGrant]] = [:]
        for m in memberships {
            guard let gi = groupByID[m.groupID] else { continue }
            booked[m.userID, default: []].append(AccessGrant(schedule: groups[gi].schedule, officeMode: groups[gi].officeMode,
                                                             from: m.opens, until: m.closes))
        }
        var entries: [AccessEntry] = []
        var tags: [TagUID: Int32] = [:], pins: [String: Int32] = [:]
        var overrides = Set<String>()
        for user in users {
            var grants: [AccessGrant] = []
            var override = false
            for g in user.groups {
                guard let gi = groupByID[g] else { continue }
                grants.append(AccessGrant(schedule: groups[gi].schedule, officeMode: groups[gi].officeMode))
                override = override || groups[gi].lockdownOverride
            }
            grants += booked[user.id] ?? []
            if override { overrides.insert(user.id) }
            guard !grants.isEmpty, !user.tags.isEmpty || user.pin != nil else { continue }
            let index = Int32(entries.count)
            entries.append(AccessEntry(userID: user.id, grants: grants, validFrom: user.validFrom, validUntil: user.validUntil,
                                       offlineAccess: user.offlineAccess, lockdownOverride: override, blocked: user.blocked))
            for t in user.tags { tags[t] = index }
            if let p = user.pin { pins[p] = index }
        }
        return AccessList(version: version, entries: entries, tags: tags, pins: pins, blockedUsers: blocked, lockdownOverrideUsers: overrides)
    }
}
