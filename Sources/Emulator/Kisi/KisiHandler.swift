import Events
import Foundation
import Hardware
import KeywayAPI
import KisiAPI

typealias KisiSchemas = KisiAPI.Components.Schemas
typealias KisiOperations = KisiAPI.Operations

/// Cards Kisi has been told about that belong to nobody yet: Keyway's directory keeps tags on users
/// only, so a card created without `user_id` waits here until PATCH /cards/{id} gives it to someone.
/// In memory: a restart forgets unassigned cards (docs/KISI.md).
actor KisiCardPool {
    private(set) var unassigned: [TagUID: String] = [:]  // UID → Kisi card type
    private var types: [TagUID: String] = [:]

    func add(_ uid: TagUID, type: String) { unassigned[uid] = type; types[uid] = type }
    func take(_ uid: TagUID) { unassigned[uid] = nil }
    func type(of uid: TagUID) -> String { types[uid] ?? "card" }
    func remember(_ uid: TagUID, type: String) { types[uid] = type }
}

/// Kisi's REST API over the emulator: each operation maps onto the same directory, locks and journal as
/// /v1 (docs/KISI.md has the table). Inputs are checked here in Kisi's field names before the /v1
/// operation runs, so a refused request changes nothing.
struct KisiHandler: KisiAPI.APIProtocol {
    let emu: Emulator
    let cards = KisiCardPool()

    private var siteID: String { emu.config.siteID }
    private var placeID: Int64 { KisiIdentity.id(.place, siteID) }
    private var organizationID: Int64 { KisiIdentity.id(.organization, emu.config.organisation) }

    /// The /v1 operations' refusals in Kisi's shape.
    private func v1<T>(_ body: () async throws -> T) async throws -> T {
        do { return try await body() } catch let e as APIError { throw KisiError(e) }
    }

    /// One page of a list: `limit` 1–100 (default 10), `offset` from 0 (the document's bounds; the
    /// generated decoder does not check them).
    private static func page<T>(_ all: [T], _ limit: Int?, _ offset: Int?) throws -> [T] {
        let limit = limit ?? 10, offset = offset ?? 0
        guard (1...100).contains(limit) else { throw KisiError.invalid("limit", "must be between 1 and 100") }
        guard offset >= 0 else { throw KisiError.invalid("offset", "must be 0 or more") }
        let start = min(offset, all.count)
        return Array(all[start..<min(all.count, start + limit)])
    }

    // MARK: - Organisation and place

    func listOrganizations(_ input: KisiOperations.ListOrganizations.Input) async throws -> KisiOperations.ListOrganizations.Output {
        .ok(.init(body: .json([KisiSchemas.Organization(id: organizationID, name: emu.config.organisation, domain: "\(siteID).keyway.test")])))
    }

    private func place() async -> KisiSchemas.Place {
        var all = true
        for l in emu.site.locks {
            if !(await l.isLockedDown) { all = false }
        }
        return KisiSchemas.Place(id: placeID, name: emu.config.name, timeZone: emu.config.timeZone.identifier,
                       lockedDown: all && !emu.site.locks.isEmpty, locksCount: emu.config.locks.count, organizationId: organizationID)
    }

    func listPlaces(_ input: KisiOperations.ListPlaces.Input) async throws -> KisiOperations.ListPlaces.Output {
        .ok(.init(body: .json(try Self.page([await place()], input.query.limit, input.query.offset))))
    }

    func getPlace(_ input: KisiOperations.GetPlace.Input) async throws -> KisiOperations.GetPlace.Output {
        guard input.path.id == placeID else { throw KisiError(404, "not_found", "no place \(input.path.id)") }
        return .ok(.init(body: .json(await place())))
    }

    private func placeLockdown(_ on: Bool, _ id: Int64) async throws -> KisiSchemas.Place {
        guard id == placeID else { throw KisiError(404, "not_found", "no place \(id)") }
        _ = try await v1 { try await emu.setLockdown(.init(lockedDown: on)) }
        return await place()
    }

    func lockDownPlace(_ input: KisiOperations.LockDownPlace.Input) async throws -> KisiOperations.LockDownPlace.Output {
        .ok(.init(body: .json(try await placeLockdown(true, input.path.id))))
    }

    func cancelPlaceLockdown(_ input: KisiOperations.CancelPlaceLockdown.Input) async throws -> KisiOperations.CancelPlaceLockdown.Output {
        .ok(.init(body: .json(try await placeLockdown(false, input.path.id))))
    }

    // MARK: - Locks

    private func lockRecord(_ lock: Lock) async -> KisiSchemas.Lock {
        let s = await lock.status
        return KisiSchemas.Lock(id: KisiIdentity.id(.lock, s.id), name: s.name, description: s.id, placeId: placeID,
                      online: await lock.hasUplink, unlocked: s.state == .unlocked || s.state == .officeMode,
                      lockedDown: await lock.isLockedDown, configured: true)
    }

    private func storedLock(_ id: Int64, field: String? = nil) throws -> Lock {
        try KisiIdentity.resolve(id, .lock, in: emu.site.locks, key: \.id, what: "lock", field: field)
    }

    func listLocks(_ input: KisiOperations.ListLocks.Input) async throws -> KisiOperations.ListLocks.Output {
        var out: [KisiSchemas.Lock] = []
        if input.query.placeId == nil || input.query.placeId == placeID {
            for l in emu.site.locks { out.append(await lockRecord(l)) }
        }
        return .ok(.init(body: .json(try Self.page(out, input.query.limit, input.query.offset))))
    }

    func createLock(_ input: KisiOperations.CreateLock.Input) async throws -> KisiOperations.CreateLock.Output {
        throw KisiError.notEmulated("locks come from the site file; Keyway does not emulate adding one")
    }

    func getLock(_ input: KisiOperations.GetLock.Input) async throws -> KisiOperations.GetLock.Output {
        .ok(.init(body: .json(await lockRecord(try storedLock(input.path.id)))))
    }

    func unlockLock(_ input: KisiOperations.UnlockLock.Input) async throws -> KisiOperations.UnlockLock.Output {
        let lock = try storedLock(input.path.id)
        let result: Emulator.Schemas.RemoteOpenResult
        do { result = try await emu.remoteOpen(lock.id, .init()) } catch let e as APIError where e.code == "iq_offline" || e.code == "not_in_reach" {
            // Kisi's cloud cannot reach a lock whose gateway is offline: nothing is sent, nothing opens.
            throw KisiError(422, "gateway_offline", "the lock's gateway is offline: \(e.message)")
        } catch let e as APIError { throw KisiError(e) }
        guard result.result == .granted else {
            throw KisiError(403, "access_denied", "the lock refused: \(result.reason ?? "denied")")
        }
        return .ok(.init(body: .json(KisiSchemas.UnlockResult(message: "Unlocked!"))))
    }

    private func lockdown(_ on: Bool, _ id: Int64) async throws -> KisiSchemas.Lock {
        let lock = try storedLock(id)
        _ = try await v1 { try await emu.setLockdown(.init(lockedDown: on, locks: [lock.id])) }
        return await lockRecord(lock)
    }

    func lockDownLock(_ input: KisiOperations.LockDownLock.Input) async throws -> KisiOperations.LockDownLock.Output {
        .ok(.init(body: .json(try await lockdown(true, input.path.id))))
    }

    func cancelLockLockdown(_ input: KisiOperations.CancelLockLockdown.Input) async throws -> KisiOperations.CancelLockLockdown.Output {
        .ok(.init(body: .json(try await lockdown(false, input.path.id))))
    }

    // MARK: - Groups and their locks

    private func groupRecord(_ g: AccessGroupConfig, users: [UserConfig], bookings: [Membership]) -> KisiSchemas.Group {
        let members = users.filter { $0.groups.contains(g.id) }.count + bookings.filter { $0.groupID == g.id }.count
        return KisiSchemas.Group(id: KisiIdentity.id(.group, g.id), name: g.name, description: g.id, placeId: placeID,
                       locksCount: lockIDs(g).count, membersCount: members, loginEnabled: false,
                       timeRestrictionEnabled: g.schedule != .always)
    }

    private func lockIDs(_ g: AccessGroupConfig) -> [String] {
        switch g.locks {
        case .all: return emu.config.locks.map(\.id)
        case .only(let ids): return ids
        }
    }

    private func storedGroup(_ id: Int64, field: String? = nil) async throws -> AccessGroupConfig {
        try KisiIdentity.resolve(id, .group, in: await emu.site.directory.currentGroups, key: \.id, what: "group", field: field)
    }

    private func groupRecord(_ g: AccessGroupConfig) async -> KisiSchemas.Group {
        let d = emu.site.directory
        return groupRecord(g, users: await d.currentUsers, bookings: await d.currentMemberships)
    }

    func listGroups(_ input: KisiOperations.ListGroups.Input) async throws -> KisiOperations.ListGroups.Output {
        let d = emu.site.directory
        let users = await d.currentUsers, bookings = await d.currentMemberships
        var groups = await d.currentGroups
        if let q = input.query.query?.lowercased(), !q.isEmpty { groups = groups.filter { $0.name.lowercased().contains(q) } }
        if let p = input.query.placeId, p != placeID { groups = [] }
        return .ok(.init(body: .json(try Self.page(groups.map { groupRecord($0, users: users, bookings: bookings) }, input.query.limit, input.query.offset))))
    }

    /// Restrictions Kisi offers on a group that the emulated locks do not enforce: asking for one is
    /// refused rather than silently ignored.
    private static func refuseRestrictions(_ f: KisiSchemas.GroupFields) throws {
        let asked: [(String, Bool?)] = [("login_enabled", f.loginEnabled), ("geofence_restriction_enabled", f.geofenceRestrictionEnabled),
                                        ("primary_device_restriction_enabled", f.primaryDeviceRestrictionEnabled),
                                        ("managed_device_restriction_enabled", f.managedDeviceRestrictionEnabled),
                                        ("reader_restriction_enabled", f.readerRestrictionEnabled),
                                        ("time_restriction_enabled", f.timeRestrictionEnabled)]
        for (name, value) in asked where value == true {
            throw KisiError.invalid("group.\(name)", "not emulated (docs/KISI.md); a Keyway group's schedule is set through /v1/groups")
        }
    }

    func createGroup(_ input: KisiOperations.CreateGroup.Input) async throws -> KisiOperations.CreateGroup.Output {
        guard case .json(let body) = input.body else { throw KisiError.invalid("group", "required") }
        let f = body.group
        guard let name = f.name?.trimmingCharacters(in: .whitespaces), !name.isEmpty else { throw KisiError.invalid("group.name", "required") }
        guard name.utf8.count <= 128 else { throw KisiError.invalid("group.name", "longer than 128 bytes") }
        if let p = f.placeId, p != placeID { throw KisiError.invalid("group.place_id", "no place \(p)") }
        try Self.refuseRestrictions(f)
        // The Keyway id: the name as a slug, numbered on if taken.
        let existing = Set(await emu.site.directory.currentGroups.map(\.id))
        let slug = String(name.lowercased().map { $0.isASCII && ($0.isLetter || $0.isNumber) ? $0 : "-" }.prefix(48))
        var id = slug, n = 1
        while existing.contains(id) { n += 1; id = "\(slug)-\(n)" }
        // A new Kisi group opens nothing until group locks are added (a /v1 group without `locks` opens all).
        let group = AccessGroupConfig(id: id, name: name, locks: .only([]))
        _ = try await v1 { try await emu.save(group) }
        return .ok(.init(body: .json(await groupRecord(group))))
    }

    func getGroup(_ input: KisiOperations.GetGroup.Input) async throws -> KisiOperations.GetGroup.Output {
        .ok(.init(body: .json(await groupRecord(try await storedGroup(input.path.id)))))
    }

    func updateGroup(_ input: KisiOperations.UpdateGroup.Input) async throws -> KisiOperations.UpdateGroup.Output {
        guard case .json(let body) = input.body else { throw KisiError.invalid("group", "required") }
        var group = try await storedGroup(input.path.id)
        try Self.refuseRestrictions(body.group)
        if let name = body.group.name {
            guard !name.isEmpty, name.utf8.count <= 128 else { throw KisiError.invalid("group.name", "1 to 128 bytes") }
            group.name = name
        }
        _ = try await v1 { try await emu.save(group) }
        return .ok(.init(body: .json(await groupRecord(group))))
    }

    private func groupLocks() async -> [(group: AccessGroupConfig, lock: String, record: KisiSchemas.GroupLock)] {
        await emu.site.directory.currentGroups.flatMap { g in
            lockIDs(g).map { l in
                (group: g, lock: l, record: KisiSchemas.GroupLock(id: KisiIdentity.id(.groupLock, "\(g.id)|\(l)"), groupId: KisiIdentity.id(.group, g.id),
                                   lockId: KisiIdentity.id(.lock, l)))
            }
        }
    }

    func listGroupLocks(_ input: KisiOperations.ListGroupLocks.Input) async throws -> KisiOperations.ListGroupLocks.Output {
        let all = await groupLocks().map(\.record).filter {
            (input.query.groupId == nil || $0.groupId == input.query.groupId) && (input.query.lockId == nil || $0.lockId == input.query.lockId)
        }
        return .ok(.init(body: .json(try Self.page(all, input.query.limit, input.query.offset))))
    }

    func createGroupLock(_ input: KisiOperations.CreateGroupLock.Input) async throws -> KisiOperations.CreateGroupLock.Output {
        guard case .json(let body) = input.body else { throw KisiError.invalid("group_lock", "required") }
        var group = try await storedGroup(body.groupLock.groupId, field: "group_lock.group_id")
        let lock = try storedLock(body.groupLock.lockId, field: "group_lock.lock_id")
        if case .only(let ids) = group.locks, !ids.contains(lock.id) {
            group.locks = .only(ids + [lock.id])
            _ = try await v1 { try await emu.save(group) }
        }
        return .ok(.init(body: .json(KisiSchemas.GroupLock(id: KisiIdentity.id(.groupLock, "\(group.id)|\(lock.id)"),
                                                 groupId: KisiIdentity.id(.group, group.id), lockId: KisiIdentity.id(.lock, lock.id)))))
    }

    func deleteGroupLock(_ input: KisiOperations.DeleteGroupLock.Input) async throws -> KisiOperations.DeleteGroupLock.Output {
        let hit = try KisiIdentity.resolve(input.path.id, .groupLock, in: await groupLocks(), key: { "\($0.group.id)|\($0.lock)" }, what: "group lock")
        var group = hit.group
        group.locks = .only(lockIDs(group).filter { $0 != hit.lock })
        _ = try await v1 { try await emu.save(group) }
        return .noContent(.init())
    }

    // MARK: - Users and members

    private func userRecord(_ u: UserConfig) -> KisiSchemas.User {
        KisiSchemas.User(id: KisiIdentity.id(.user, u.id), name: u.name, email: KisiIdentity.email(userID: u.id, site: siteID),
               accessEnabled: !u.blocked, confirmed: true, passwordFlowEnabled: false)
    }

    private func storedUser(_ id: Int64, field: String? = nil) async throws -> UserConfig {
        try KisiIdentity.resolve(id, .user, in: await emu.site.directory.currentUsers, key: \.id, what: "user", field: field)
    }

    func listUsers(_ input: KisiOperations.ListUsers.Input) async throws -> KisiOperations.ListUsers.Output {
        var users = await emu.site.directory.currentUsers
        if let q = input.query.query?.lowercased(), !q.isEmpty {
            users = users.filter { $0.name.lowercased().contains(q) || KisiIdentity.email(userID: $0.id, site: siteID).lowercased().contains(q) }
        }
        if let gid = input.query.groupId {
            let group = try await storedGroup(gid, field: "group_id")
            let booked = Set(await emu.site.directory.currentMemberships.filter { $0.groupID == group.id }.map(\.userID))
            users = users.filter { $0.groups.contains(group.id) || booked.contains($0.id) }
        }
        return .ok(.init(body: .json(try Self.page(users.map(userRecord), input.query.limit, input.query.offset))))
    }

    func createUser(_ input: KisiOperations.CreateUser.Input) async throws -> KisiOperations.CreateUser.Output {
        guard case .json(let body) = input.body else { throw KisiError.invalid("user", "required") }
        let user = try await newUser(email: body.user.email, name: body.user.name, accessEnabled: body.user.accessEnabled, wrapper: "user")
        return .ok(.init(body: .json(userRecord(user))))
    }

    /// A directory user for an address (POST /users and POST /members), fields named under `wrapper`.
    private func newUser(email raw: String, name: String?, accessEnabled: Bool?, wrapper: String) async throws -> UserConfig {
        let email = raw.trimmingCharacters(in: .whitespaces)
        guard let id = KisiIdentity.userID(email: email, site: siteID), email.utf8.count <= 64, email.contains(".") else {
            throw KisiError.invalid("\(wrapper).email", "an email address of at most 64 bytes of a-z 0-9 - _ . (Keyway ids hold no others)")
        }
        if await emu.site.directory.currentUsers.contains(where: { $0.id == id }) {
            throw KisiError.invalid("\(wrapper).email", "has already been taken")
        }
        let name = name ?? String(email.prefix { $0 != "@" })
        guard !name.isEmpty, name.utf8.count <= 128 else { throw KisiError.invalid("\(wrapper).name", "1 to 128 bytes") }
        let user = UserConfig(id: id, name: name, blocked: accessEnabled == false)
        _ = try await v1 { try await emu.save(user) }
        return user
    }

    func getUser(_ input: KisiOperations.GetUser.Input) async throws -> KisiOperations.GetUser.Output {
        .ok(.init(body: .json(userRecord(try await storedUser(input.path.id)))))
    }

    func updateUser(_ input: KisiOperations.UpdateUser.Input) async throws -> KisiOperations.UpdateUser.Output {
        guard case .json(let body) = input.body else { throw KisiError.invalid("user", "required") }
        var user = try await storedUser(input.path.id)
        if let name = body.user.name {
            guard !name.isEmpty, name.utf8.count <= 128 else { throw KisiError.invalid("user.name", "1 to 128 bytes") }
            user.name = name
        }
        // Kisi's access switch is Keyway's block: refused at every lock from its next sync.
        if let enabled = body.user.accessEnabled { user.blocked = !enabled }
        _ = try await v1 { try await emu.save(user) }
        return .ok(.init(body: .json(userRecord(user))))
    }

    func deleteUser(_ input: KisiOperations.DeleteUser.Input) async throws -> KisiOperations.DeleteUser.Output {
        let user = try await storedUser(input.path.id)
        _ = try await v1 { try await emu.deleteUser(user.id) }
        return .noContent(.init())
    }

    private func memberRecord(_ u: UserConfig) -> KisiSchemas.Member {
        KisiSchemas.Member(id: KisiIdentity.id(.member, u.id), userId: KisiIdentity.id(.user, u.id), name: u.name,
                           email: KisiIdentity.email(userID: u.id, site: siteID), accessEnabled: !u.blocked, placeId: placeID)
    }

    func listMembers(_ input: KisiOperations.ListMembers.Input) async throws -> KisiOperations.ListMembers.Output {
        let members = await emu.site.directory.currentUsers.map(memberRecord)
        return .ok(.init(body: .json(try Self.page(members, input.query.limit, input.query.offset))))
    }

    func createMember(_ input: KisiOperations.CreateMember.Input) async throws -> KisiOperations.CreateMember.Output {
        guard case .json(let body) = input.body else { throw KisiError.invalid("member", "required") }
        let m = body.member
        // Cards are a user's tags, always usable once given; a member whose cards are off is not emulated.
        if m.cardEnabled == false { throw KisiError.invalid("member.card_enabled", "not emulated: a member's cards always open where its groups do") }
        let user = try await newUser(email: m.email, name: m.name, accessEnabled: m.accessEnabled, wrapper: "member")
        return .ok(.init(body: .json(memberRecord(user))))
    }

    func deleteMember(_ input: KisiOperations.DeleteMember.Input) async throws -> KisiOperations.DeleteMember.Output {
        let user = try KisiIdentity.resolve(input.path.id, .member, in: await emu.site.directory.currentUsers, key: \.id, what: "member")
        _ = try await v1 { try await emu.deleteUser(user.id) }
        return .noContent(.init())
    }

    // MARK: - Role assignments (group memberships)

    private enum Right { case standing(user: String, group: String), booking(Membership) }

    private func rights() async -> [(right: Right, record: KisiSchemas.RoleAssignment)] {
        let d = emu.site.directory
        var out: [(right: Right, record: KisiSchemas.RoleAssignment)] = []
        for u in await d.currentUsers {
            for g in u.groups {
                out.append((.standing(user: u.id, group: g),
                            KisiSchemas.RoleAssignment(id: KisiIdentity.id(.standingRole, "\(u.id)|\(g)"), userId: KisiIdentity.id(.user, u.id),
                                             roleId: "group_basic", _type: "group", groupId: KisiIdentity.id(.group, g))))
            }
        }
        for m in await d.currentMemberships {
            out.append((.booking(m),
                        KisiSchemas.RoleAssignment(id: KisiIdentity.id(.bookingRole, m.id), userId: KisiIdentity.id(.user, m.userID), roleId: "group_basic",
                                         _type: "group", groupId: KisiIdentity.id(.group, m.groupID),
                                         validFrom: rfc3339(m.notBefore), validUntil: rfc3339(m.notAfter))))
        }
        return out
    }

    func listRoleAssignments(_ input: KisiOperations.ListRoleAssignments.Input) async throws -> KisiOperations.ListRoleAssignments.Output {
        let all = await rights().map(\.record).filter {
            (input.query.userId == nil || $0.userId == input.query.userId) && (input.query.groupId == nil || $0.groupId == input.query.groupId)
        }
        return .ok(.init(body: .json(try Self.page(all, input.query.limit, input.query.offset))))
    }

    func createRoleAssignment(_ input: KisiOperations.CreateRoleAssignment.Input) async throws -> KisiOperations.CreateRoleAssignment.Output {
        guard case .json(let body) = input.body else { throw KisiError.invalid("role_assignment", "required") }
        let r = body.roleAssignment
        guard r.roleId == "group_basic" else {
            throw KisiError.notEmulated("role '\(r.roleId)': only group_basic (access through a group) is emulated")
        }
        guard let gid = r.groupId else { throw KisiError.notEmulated("place and organisation roles are not emulated: give group_id") }
        var user = try await storedUser(r.userId, field: "role_assignment.user_id")
        let group = try await storedGroup(gid, field: "role_assignment.group_id")
        if r.validFrom == nil && r.validUntil == nil {
            // A standing membership: the user's groups in /v1.
            if !user.groups.contains(group.id) {
                user.groups.append(group.id)
                _ = try await v1 { try await emu.save(user) }
            }
            return .ok(.init(body: .json(KisiSchemas.RoleAssignment(
                id: KisiIdentity.id(.standingRole, "\(user.id)|\(group.id)"), userId: r.userId, roleId: "group_basic", _type: "group", groupId: gid))))
        }
        // A window: a booking (/v1/groups/{id}/memberships). Open-ended bookings do not exist in
        // Keyway, so valid_until is needed; valid_from defaults to now.
        guard let until = r.validUntil else { throw KisiError.invalid("role_assignment.valid_until", "required with valid_from") }
        let from = r.validFrom ?? rfc3339(emu.clock.now())
        let m = try await v1 { try await emu.createMembership(group: group.id, .init(user: user.id, notBefore: from, notAfter: until)) }
        return .ok(.init(body: .json(KisiSchemas.RoleAssignment(
            id: KisiIdentity.id(.bookingRole, m.id), userId: r.userId, roleId: "group_basic", _type: "group", groupId: gid,
            validFrom: m.notBefore, validUntil: m.notAfter))))
    }

    func deleteRoleAssignment(_ input: KisiOperations.DeleteRoleAssignment.Input) async throws -> KisiOperations.DeleteRoleAssignment.Output {
        let hit = try KisiIdentity.resolve(input.path.id, in: await rights(), idOf: { $0.record.id }, what: "role assignment")
        switch hit.right {
        case .standing(let uid, let gid):
            guard var user = await emu.site.directory.currentUsers.first(where: { $0.id == uid }) else { throw KisiError(404, "not_found", "no role assignment \(input.path.id)") }
            user.groups.removeAll { $0 == gid }
            _ = try await v1 { try await emu.save(user) }
        case .booking(let m):
            _ = try await v1 { try await emu.deleteMembership(group: m.groupID, id: m.id) }
        }
        return .noContent(.init())
    }

    // MARK: - Cards (tags) and the PIN

    private func cardRecord(_ uid: TagUID, holder: UserConfig?) async -> KisiSchemas.Card {
        KisiSchemas.Card(id: KisiIdentity.id(.card, Self.hex(uid)), token: Self.hex(uid), uid: Self.hex(uid), _type: await cards.type(of: uid),
               userId: holder.map { KisiIdentity.id(.user, $0.id) }, twoFactorPinSet: holder?.pin != nil)
    }

    private func allCards() async -> [(uid: TagUID, holder: UserConfig?)] {
        var out: [(uid: TagUID, holder: UserConfig?)] = []
        for u in await emu.site.directory.currentUsers { for t in u.tags { out.append((t, u)) } }
        for (uid, _) in await cards.unassigned.sorted(by: { $0.key.description < $1.key.description }) { out.append((uid, nil)) }
        return out
    }

    private func storedCard(_ id: Int64) async throws -> (uid: TagUID, holder: UserConfig?) {
        try KisiIdentity.resolve(id, .card, in: await allCards(), key: { Self.hex($0.uid) }, what: "card")
    }

    /// A UID as plain hex (`04A23B1C5D80`), as the journal's `key_id` of a tag and Kisi's card token.
    static func hex(_ uid: TagUID) -> String { uid.description.replacingOccurrences(of: ":", with: "") }

    /// Gives a card to a user: one more tag (Keyway, like Nexudus's Kisi integration, allows four).
    private func give(_ uid: TagUID, to user: UserConfig, field: String) async throws {
        var user = user
        guard user.tags.count < UserConfig.maximumTags else {
            throw KisiError.invalid(field, "the user has \(UserConfig.maximumTags) cards already, the most a user holds")
        }
        user.tags.append(uid)
        _ = try await v1 { try await emu.save(user) }
        await cards.take(uid)
    }

    func listCards(_ input: KisiOperations.ListCards.Input) async throws -> KisiOperations.ListCards.Output {
        var out: [KisiSchemas.Card] = []
        for c in await allCards() { out.append(await cardRecord(c.uid, holder: c.holder)) }
        if let uid = input.query.userId { out = out.filter { $0.userId == uid } }
        return .ok(.init(body: .json(try Self.page(out, input.query.limit, input.query.offset))))
    }

    func createCard(_ input: KisiOperations.CreateCard.Input) async throws -> KisiOperations.CreateCard.Output {
        guard case .json(let body) = input.body else { throw KisiError.invalid("card", "required") }
        let c = body.card
        guard c.token.utf8.count <= 32, let uid = TagUID(hex: c.token) else {
            throw KisiError.invalid("card.token", "the card's UID in hex, 4 to 10 bytes")
        }
        if await allCards().contains(where: { $0.uid == uid }) { throw KisiError.invalid("card.token", "has already been taken") }
        let type = c._type ?? "card"
        guard !type.isEmpty, type.utf8.count <= 32 else { throw KisiError.invalid("card.type", "1 to 32 bytes") }
        if let holder = c.userId {
            let user = try await storedUser(holder, field: "card.user_id")
            await cards.remember(uid, type: type)
            try await give(uid, to: user, field: "card.user_id")
            return .ok(.init(body: .json(await cardRecord(uid, holder: try await storedUser(holder)))))
        }
        await cards.add(uid, type: type)
        return .ok(.init(body: .json(await cardRecord(uid, holder: nil))))
    }

    func getCard(_ input: KisiOperations.GetCard.Input) async throws -> KisiOperations.GetCard.Output {
        let c = try await storedCard(input.path.id)
        return .ok(.init(body: .json(await cardRecord(c.uid, holder: c.holder))))
    }

    func updateCard(_ input: KisiOperations.UpdateCard.Input) async throws -> KisiOperations.UpdateCard.Output {
        guard case .json(let body) = input.body else { throw KisiError.invalid("card", "required") }
        let card = try await storedCard(input.path.id)
        var holder = card.holder
        // Check everything before changing anything.
        var newHolder: UserConfig? = nil
        if let uid = body.card.userId {
            let user = try await storedUser(uid, field: "card.user_id")
            if let h = holder, h.id != user.id { throw KisiError.invalid("card.user_id", "the card belongs to another user; delete it first") }
            if holder == nil { newHolder = user }
        }
        if let pin = body.card.twoFactorPin {
            guard UserConfig.isValidPIN(pin) else { throw KisiError.invalid("card.two_factor_pin", "4 to 8 digits") }
            guard holder != nil || newHolder != nil else { throw KisiError.invalid("card.two_factor_pin", "the card belongs to nobody; give it a user_id") }
        }
        if let user = newHolder {
            try await give(card.uid, to: user, field: "card.user_id")
            holder = await emu.site.directory.currentUsers.first { $0.id == user.id }
        }
        if let pin = body.card.twoFactorPin, var user = holder {
            // Keyway holds one PIN per user (a keypad PIN, HARDWARE.md): the card's PIN is its holder's.
            user.pin = pin
            do { _ = try await emu.save(user) } catch let e as APIError where e.field == "pin" {
                throw KisiError(422, e.code, e.message, field: "card.two_factor_pin")
            } catch let e as APIError { throw KisiError(e) }
            holder = user
        }
        return .ok(.init(body: .json(await cardRecord(card.uid, holder: holder))))
    }

    func deleteCard(_ input: KisiOperations.DeleteCard.Input) async throws -> KisiOperations.DeleteCard.Output {
        let card = try await storedCard(input.path.id)
        if var user = card.holder {
            user.tags.removeAll { $0 == card.uid }
            _ = try await v1 { try await emu.save(user) }
        } else {
            await cards.take(card.uid)
        }
        return .noContent(.init())
    }

    // MARK: - Events

    func listEvents(_ input: KisiOperations.ListEvents.Input) async throws -> KisiOperations.ListEvents.Output {
        let q = input.query
        if let t = q.objectType, t != "Lock" { return .ok(.init(body: .json([]))) }
        let events = try await KisiEvents.recent(emu, limit: 10_000)
        let filtered = events.filter {
            (q._type == nil || $0._type == q._type) && (q.objectId == nil || $0.objectId == q.objectId)
                && (q.actorId == nil || $0.actorId == q.actorId)
        }
        return .ok(.init(body: .json(try Self.page(filtered, q.limit, q.offset))))
    }

    // MARK: - What is not emulated (docs/KISI.md)

    func listFloors(_ input: KisiOperations.ListFloors.Input) async throws -> KisiOperations.ListFloors.Output { .ok(.init(body: .json([]))) }
    func listCameras(_ input: KisiOperations.ListCameras.Input) async throws -> KisiOperations.ListCameras.Output { .ok(.init(body: .json([]))) }
    func listElevators(_ input: KisiOperations.ListElevators.Input) async throws -> KisiOperations.ListElevators.Output { .ok(.init(body: .json([]))) }
    func listLogins(_ input: KisiOperations.ListLogins.Input) async throws -> KisiOperations.ListLogins.Output { .ok(.init(body: .json([]))) }
    func listReports(_ input: KisiOperations.ListReports.Input) async throws -> KisiOperations.ListReports.Output { .ok(.init(body: .json([]))) }
    func listSSOConfigurations(_ input: KisiOperations.ListSSOConfigurations.Input) async throws -> KisiOperations.ListSSOConfigurations.Output { .ok(.init(body: .json([]))) }
    func createLogin(_ input: KisiOperations.CreateLogin.Input) async throws -> KisiOperations.CreateLogin.Output {
        throw KisiError.notEmulated("Kisi logins (phone and API secrets for users) are not emulated; Keyway's phone keys are POST /v1/keys on the control API")
    }
}
