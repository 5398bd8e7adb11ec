import Foundation
import Hardware
import KeywayAPI

/// The access core's side of the directory (issue 13): users with their fobs and PIN, and access
/// groups, changed at runtime. Each change is a new access-list version in the site's directory; locks
/// get it from their IQ's next sync (Hardware/IQ.swift), as real ones do. Every input is checked
/// before the directory changes, so a refused request changes nothing.
extension Emulator {
    // MARK: - Users

    public func users() async -> [Schemas.User] {
        let directory = site.directory
        let version = await directory.accessListVersion
        return await directory.currentUsers.map { Emulator.userDescription($0, version: version) }
    }

    public func user(id: String) async throws -> Schemas.User {
        Emulator.userDescription(try await storedUser(id), version: await site.directory.accessListVersion)
    }

    public func createUser(_ body: Schemas.UserRequest) async throws -> Schemas.User {
        let directory = site.directory
        if await directory.currentUsers.contains(where: { $0.id == body.id }) {
            throw APIError(409, "conflict", "user '\(body.id)' exists; change it with PUT /v1/users/\(body.id)", field: "id")
        }
        var user = UserConfig(id: try Input.text(body.id, "id", maxLength: 64), name: try Input.text(body.name, "name", maxLength: 128),
                              groups: body.groups ?? [])
        user.tags = try Emulator.tags(body.tags ?? [])
        user.pin = try Emulator.pin(body.pin)
        (user.validFrom, user.validUntil) = try Emulator.validity(body.validFrom, body.validUntil)
        user.offlineAccess = body.offlineAccess ?? false
        user.blocked = body.blocked ?? false
        return try await save(user)
    }

    public func updateUser(_ id: String, _ body: Schemas.UserUpdate) async throws -> Schemas.User {
        guard body != Schemas.UserUpdate() else { throw APIError.badRequest("name", "give at least one of name, groups, valid_from, valid_until, offline_access, blocked") }
        var user = try await storedUser(id)
        if let name = try Input.text(body.name, "name", maxLength: 128) { user.name = name }
        if let groups = body.groups { user.groups = groups }
        if body.validFrom != nil || body.validUntil != nil {
            (user.validFrom, user.validUntil) = try Emulator.validity(body.validFrom ?? user.validFrom.map(rfc3339),
                                                                      body.validUntil ?? user.validUntil.map(rfc3339))
        }
        if let offline = body.offlineAccess { user.offlineAccess = offline }
        if let blocked = body.blocked { user.blocked = blocked }
        return try await save(user)
    }

    public func deleteUser(_ id: String) async throws -> Schemas.DirectoryChange {
        _ = try await storedUser(id)
        let version = try await directoryChange { try await site.directory.removeUser(id: id) }
        return Schemas.DirectoryChange(id: id, deleted: true, accessListVersion: Int(version))
    }

    public func setUserTags(_ id: String, _ body: Schemas.TagsRequest) async throws -> Schemas.User {
        var user = try await storedUser(id)
        user.tags = try Emulator.tags(body.tags)
        return try await save(user)
    }

    public func setUserPIN(_ id: String, _ body: Schemas.PINRequest) async throws -> Schemas.User {
        var user = try await storedUser(id)
        user.pin = try Emulator.pin(body.pin)
        return try await save(user)
    }

    public func clearUserPIN(_ id: String) async throws -> Schemas.User {
        var user = try await storedUser(id)
        user.pin = nil
        return try await save(user)
    }

    func storedUser(_ id: String) async throws -> UserConfig {
        guard let u = await site.directory.currentUsers.first(where: { $0.id == id }) else { throw APIError.notFound("user", id) }
        return u
    }

    func save(_ user: UserConfig) async throws -> Schemas.User {
        let version = try await directoryChange { try await site.directory.upsertUser(user) }
        return Emulator.userDescription(user, version: version)
    }

    static func userDescription(_ u: UserConfig, version: UInt64) -> Schemas.User {
        // The PIN is a secret of its holder: the answer says only that one is set.
        Schemas.User(id: u.id, name: u.name, groups: u.groups, offlineAccess: u.offlineAccess, blocked: u.blocked,
                     tags: u.tags.map(\.description), pinSet: u.pin != nil,
                     validFrom: u.validFrom.map(rfc3339), validUntil: u.validUntil.map(rfc3339), accessListVersion: Int(version))
    }

    static func tags(_ texts: [String]) throws -> [TagUID] {
        guard texts.count <= UserConfig.maximumTags else { throw APIError.badRequest("tags", "at most \(UserConfig.maximumTags) tags") }
        var seen = Set<TagUID>()
        return try texts.map { text in
            guard text.utf8.count <= 32 else { throw APIError.badRequest("tags", "a tag UID is at most 32 characters") }
            guard let uid = TagUID(hex: text) else { throw APIError.badRequest("tags", "'\(text)' is not a hex UID of 4 to 10 bytes") }
            guard seen.insert(uid).inserted else { throw APIError.badRequest("tags", "\(uid) is listed twice") }
            return uid
        }
    }

    static func pin(_ pin: String?) throws -> String? {
        guard let pin else { return nil }
        guard UserConfig.isValidPIN(pin) else {
            throw APIError.badRequest("pin", "4 to 8 digits")
        }
        return pin
    }

    static func validity(_ from: String?, _ until: String?) throws -> (Date?, Date?) {
        let start = try Input.date(from, "valid_from"), end = try Input.date(until, "valid_until")
        if let start, let end, end <= start { throw APIError.badRequest("valid_until", "must be after valid_from") }
        return (start, end)
    }

    // MARK: - Groups

    public func groups() async -> [Schemas.Group] {
        let directory = site.directory
        let version = await directory.accessListVersion
        return await directory.currentGroups.map { groupDescription($0, version: version) }
    }

    public func group(id: String) async throws -> Schemas.Group {
        groupDescription(try await storedGroup(id), version: await site.directory.accessListVersion)
    }

    func storedGroup(_ id: String) async throws -> AccessGroupConfig {
        guard let g = await site.directory.currentGroups.first(where: { $0.id == id }) else { throw APIError.notFound("access group", id) }
        return g
    }

    public func createGroup(_ body: Schemas.GroupRequest) async throws -> Schemas.Group {
        if await site.directory.currentGroups.contains(where: { $0.id == body.id }) {
            throw APIError(409, "conflict", "access group '\(body.id)' exists; change it with PUT /v1/groups/\(body.id)", field: "id")
        }
        let group = AccessGroupConfig(id: try Input.text(body.id, "id", maxLength: 64), name: try Input.text(body.name, "name", maxLength: 128),
                                      locks: try lockSelection(body.locks), schedule: try Emulator.timetable(body.schedule),
                                      officeMode: body.officeMode ?? false, lockdownOverride: body.lockdownOverride ?? false)
        return try await save(group)
    }

    public func updateGroup(_ id: String, _ body: Schemas.GroupUpdate) async throws -> Schemas.Group {
        guard body != Schemas.GroupUpdate() else { throw APIError.badRequest("name", "give at least one of name, locks, schedule, office_mode, lockdown_override") }
        var group = try await storedGroup(id)
        if let name = try Input.text(body.name, "name", maxLength: 128) { group.name = name }
        if body.locks != nil { group.locks = try lockSelection(body.locks) }
        if body.schedule != nil { group.schedule = try Emulator.timetable(body.schedule) }
        if let office = body.officeMode { group.officeMode = office }
        if let override = body.lockdownOverride { group.lockdownOverride = override }
        return try await save(group)
    }

    func save(_ group: AccessGroupConfig) async throws -> Schemas.Group {
        let version = try await directoryChange { try await site.directory.upsertGroup(group) }
        return groupDescription(group, version: version)
    }

    func groupDescription(_ g: AccessGroupConfig, version: UInt64) -> Schemas.Group {
        let locks: [String]
        switch g.locks {
        case .all: locks = config.locks.map(\.id)
        case .only(let ids): locks = ids
        }
        return Schemas.Group(id: g.id, name: g.name, locks: locks, allLocks: g.locks == .all,
                             schedule: g.schedule.windows.map(\.description), officeMode: g.officeMode,
                             lockdownOverride: g.lockdownOverride, accessListVersion: Int(version))
    }

    func lockSelection(_ ids: [String]?) throws -> LockSelection {
        guard let ids else { return .all }
        guard !ids.isEmpty else { throw APIError.badRequest("locks", "must not be empty (leave it out for every lock)") }
        for id in ids where config.lockIndex[id] == nil { throw APIError.badRequest("locks", "no lock '\(id)' in site \(config.siteID)") }
        var seen = Set<String>()
        return .only(ids.filter { seen.insert($0).inserted })
    }

    static func timetable(_ windows: [String]?) throws -> Timetable {
        guard let windows else { return .always }
        guard !windows.isEmpty else { throw APIError.badRequest("schedule", "must not be empty (leave it out for 24/7)") }
        return Timetable(try windows.map { w in
            guard let window = WeeklyWindow(parsing: w) else {
                throw APIError.badRequest("schedule", "'\(w)' is not a weekly window like \"mon-fri 09:00-18:00\"")
            }
            return window
        })
    }

    // MARK: - Memberships (bookings)

    public func memberships(group: String) async throws -> [Schemas.Membership] {
        _ = try await storedGroup(group)
        let directory = site.directory
        let version = await directory.accessListVersion
        return await directory.currentMemberships.filter { $0.groupID == group }.map { Emulator.membershipDescription($0, version: version) }
    }

    public func membership(group: String, id: String) async throws -> Schemas.Membership {
        _ = try await storedGroup(group)
        let directory = site.directory
        guard let m = await directory.currentMemberships.first(where: { $0.id == id && $0.groupID == group }) else {
            throw APIError.notFound("membership", id)
        }
        return Emulator.membershipDescription(m, version: await directory.accessListVersion)
    }

    public func createMembership(group: String, _ body: Schemas.MembershipRequest) async throws -> Schemas.Membership {
        _ = try await storedGroup(group)
        guard await site.directory.currentUsers.contains(where: { $0.id == body.user }) else {
            throw APIError.badRequest("user", "no user '\(body.user)'")
        }
        let start: Date = try Input.date(body.notBefore, "not_before")
        let end: Date = try Input.date(body.notAfter, "not_after")
        guard end > start else { throw APIError.badRequest("not_after", "must be after not_before") }
        let before = try Input.integer(body.graceBeforeS, "grace_before_s", 0...Int(Membership.maximumGrace)) ?? 0
        let after = try Input.integer(body.graceAfterS, "grace_after_s", 0...Int(Membership.maximumGrace)) ?? 0
        let draft = Membership(id: "", groupID: group, userID: body.user, notBefore: start, notAfter: end,
                               graceBefore: TimeInterval(before), graceAfter: TimeInterval(after))
        var stored: Membership?
        let version = try await directoryChange {
            let (m, v) = try await site.directory.addMembership(draft)
            stored = m
            return v
        }
        guard var booking = stored else { throw APIError(500, "internal", "internal error") }
        // A user with a phone gets the booking on it too: a key of its own for the group's locks and
        // window (signed keys carry their rights; the lists the IQs push reach only fobs and PINs).
        if try store.keys(user: body.user).contains(where: { !$0.revoked && $0.holderPrivateKeyPEM != nil }) {
            let key = try await issueKey(Schemas.KeyRequest(
                user: body.user, group: group, notBefore: body.notBefore, notAfter: body.notAfter,
                graceBeforeS: before, graceAfterS: after))
            await site.directory.attachKey(key.keyId, toMembership: booking.id)
            booking.keyID = key.keyId
        }
        return Emulator.membershipDescription(booking, version: version)
    }

    public func deleteMembership(group: String, id: String) async throws -> Schemas.DirectoryChange {
        _ = try await storedGroup(group)
        let keyID = await site.directory.currentMemberships.first { $0.id == id && $0.groupID == group }?.keyID
        let version = try await directoryChange { try await site.directory.removeMembership(groupID: group, id: id) }
        // Its phone key is revoked with it: refused from each lock's next sync, as the fob is.
        if let keyID, (try? store.key(id: keyID))??.revoked == false { _ = try await revokeKey(keyID) }
        return Schemas.DirectoryChange(id: id, deleted: true, accessListVersion: Int(version))
    }

    static func membershipDescription(_ m: Membership, version: UInt64) -> Schemas.Membership {
        Schemas.Membership(id: m.id, group: m.groupID, user: m.userID, notBefore: rfc3339(m.notBefore), notAfter: rfc3339(m.notAfter),
                           graceBeforeS: Int(m.graceBefore), graceAfterS: Int(m.graceAfter), opens: rfc3339(m.opens),
                           closes: rfc3339(m.closes), keyId: m.keyID, accessListVersion: Int(version))
    }

    // MARK: - Lockdown

    public func setLockdown(_ body: Schemas.LockdownRequest) async throws -> Schemas.Lockdown {
        if let ids = body.locks {
            guard !ids.isEmpty else { throw APIError.badRequest("locks", "must not be empty (leave it out for every lock)") }
            for id in ids where config.lockIndex[id] == nil { throw APIError.badRequest("locks", "no lock '\(id)' in site \(config.siteID)") }
        }
        let (changed, _) = try await site.setLockdown(body.lockedDown, locks: body.locks)
        return await lockdownState(changed: changed)
    }

    public func lockdownState(changed: [String]) async -> Schemas.Lockdown {
        let directory = site.directory
        let wanted = await directory.lockdown
        var delivered: [String] = [], pending: [String] = []
        for lock in site.locks {
            let want = wanted.contains(lock.id)
            if await lock.isLockedDown == want { if want || changed.contains(lock.id) { delivered.append(lock.id) } } else { pending.append(lock.id) }
        }
        return Schemas.Lockdown(lockedDown: config.locks.map(\.id).filter(wanted.contains), changed: changed,
                                delivered: delivered, pending: pending)
    }

    /// Runs a directory change, turning the directory's refusals into the API's.
    func directoryChange<T>(_ change: () async throws -> T) async throws -> T {
        do { return try await change() } catch let e as DirectoryError {
            switch e {
            case .unknownUser(let id): throw APIError.notFound("user", id)
            case .unknownMembership(let id): throw APIError.notFound("membership", id)
            case .offlineCapacity:
                throw APIError(409, "offline_capacity_exceeded", e.description)
            case .unknownGroup(let id): throw APIError.badRequest("groups", "no access group '\(id)'")
            case .unknownLock(let id): throw APIError.badRequest("locks", "no lock '\(id)' in site \(config.siteID)")
            case .conflict(let why) where why.hasPrefix("PIN"):
                // Naming the user who has it would tell a guesser whose PIN they found.
                throw APIError(409, "conflict", "that PIN is not available: another user of the site has it", field: "pin")
            case .conflict(let why): throw APIError(409, "conflict", why, field: "tags")
            case .invalid(let why): throw APIError(400, "invalid_field", why)
            }
        }
    }
}
