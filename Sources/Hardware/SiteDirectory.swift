import Foundation
import MobileKey

/// The platform's side of the site: the current users, groups and revocation list that IQs push to
/// the locks they reach. The Emulator changes it (a key revoked, a user added to a group); locks see
/// the change only when an IQ in reach syncs them.
public actor SiteDirectory {
    public nonisolated let siteID: String
    private let clock: any KeywayClock
    private let issuer: CredentialIssuer?
    private var groups: [AccessGroupConfig]
    private var users: [UserConfig]
    /// Bookings: time-limited group memberships, in the order they were made.
    private var memberships: [Membership] = []
    private var membershipCounter: UInt64 = 0
    /// Locks the platform has put in lockdown (they learn it from an online IQ, at once or at its next sync).
    public private(set) var lockdown: Set<String> = []
    private var lockIDs: Set<String>
    /// Lock id → how many users its offline list holds at most.
    private let offlineCapacity: [String: Int]
    /// Receives the whole state after every change, inside the actor (so in order): the Emulator keeps
    /// it in its data directory, and a restart comes back to the directory the access core left.
    private let persist: (@Sendable (State) -> Void)?
    /// Bumped on every change of users or groups.
    public private(set) var accessListVersion: UInt64 = 1
    public private(set) var revocationList: RevocationList
    /// The current list signed by the site issuer: what IQs push. nil until something is revoked.
    public private(set) var signedRevocationList: [UInt8]?
    // lock id → indices of the groups that include it, and lists per distinct group set.
    private var groupsOfLock: [String: Set<Int>] = [:]
    private var allLocksGroups: Set<Int> = []
    private var cache: [Set<Int>: AccessList] = [:]

    /// `issuer` signs revocation lists; without it the site has no mobile keys and nothing to revoke.
    public init(config: SiteConfig, clock: any KeywayClock, issuer: CredentialIssuer? = nil,
                persist: (@Sendable (State) -> Void)? = nil) {
        self.persist = persist
        siteID = config.siteID
        self.clock = clock
        self.issuer = issuer
        groups = config.accessGroups
        users = config.users
        lockIDs = Set(config.locks.map(\.id))
        offlineCapacity = Dictionary(config.locks.map { ($0.id, $0.offlineCapacity) }, uniquingKeysWith: { a, _ in a })
        revocationList = .empty(siteID: config.siteID)
        let (perLock, all) = SiteDirectory.index(groups)
        groupsOfLock = perLock
        allLocksGroups = all
    }

    private static func index(_ groups: [AccessGroupConfig]) -> ([String: Set<Int>], Set<Int>) {
        var perLock: [String: Set<Int>] = [:]
        var all: Set<Int> = []
        for (i, g) in groups.enumerated() {
            switch g.locks {
            case .all: all.insert(i)
            case .only(let ids): for l in ids { perLock[l, default: []].insert(i) }
            }
        }
        return (perLock, all)
    }

    /// The current list for a lock. Locks with the same groups get the same (shared) list.
    public func accessList(for lockID: String) -> AccessList {
        let key = (groupsOfLock[lockID] ?? []).union(allLocksGroups)
        if let hit = cache[key] { return hit }
        let list = AccessList.build(version: accessListVersion, lockGroups: key, groups: groups, users: users,
                                    memberships: memberships)
        cache[key] = list
        return list
    }

    /// The list installed at commissioning, built without the actor hop (used while building a site).
    nonisolated static func initialAccessLists(config: SiteConfig) -> (String) -> AccessList {
        let (perLock, all) = index(config.accessGroups)
        var cache: [Set<Int>: AccessList] = [:]
        return { lockID in
            let key = (perLock[lockID] ?? []).union(all)
            if let hit = cache[key] { return hit }
            let list = AccessList.build(version: 1, lockGroups: key, groups: config.accessGroups, users: config.users)
            cache[key] = list
            return list
        }
    }

    public var currentUsers: [UserConfig] { users }
    public var currentGroups: [AccessGroupConfig] { groups }
    public var currentMemberships: [Membership] { memberships }

    /// The first lock whose offline list would hold more users than it can, if any: SALTO KS locks
    /// keep at most 39 (a site sets its own with `offline_capacity`). Every PIN holder takes a place,
    /// and every user whose tags have offline access, at each lock one of their groups (standing or
    /// booked) includes.
    public static func offlineOverflow(users: [UserConfig], groups: [AccessGroupConfig], memberships: [Membership],
                                       capacity: [String: Int]) -> (lockID: String, users: Int, capacity: Int)? {
        var groupIndex: [String: AccessGroupConfig] = [:]
        for g in groups { groupIndex[g.id] = g }
        var booked: [String: [String]] = [:]
        for m in memberships { booked[m.userID, default: []].append(m.groupID) }
        var perLock: [String: Int] = [:]
        var everywhere = 0
        for u in users where u.isOfflineListed {
            var locks = Set<String>()
            var all = false
            for gid in u.groups + (booked[u.id] ?? []) {
                switch groupIndex[gid]?.locks {
                case .all?: all = true
                case .only(let ids)?: locks.formUnion(ids)
                case nil: break
                }
            }
            if all { everywhere += 1 } else { for l in locks { perLock[l, default: 0] += 1 } }
        }
        for (lock, cap) in capacity.sorted(by: { $0.key < $1.key }) {
            let n = (perLock[lock] ?? 0) + everywhere
            if n > cap { return (lock, n, cap) }
        }
        return nil
    }

    private func checkOfflineCapacity(users: [UserConfig], groups: [AccessGroupConfig], memberships: [Membership]) throws {
        if let o = SiteDirectory.offlineOverflow(users: users, groups: groups, memberships: memberships, capacity: offlineCapacity) {
            throw DirectoryError.offlineCapacity(lockID: o.lockID, users: o.users, capacity: o.capacity)
        }
    }

    private func changed() {
        accessListVersion += 1
        cache.removeAll()
        let (perLock, all) = SiteDirectory.index(groups)
        groupsOfLock = perLock
        allLocksGroups = all
        saved()
    }

    private func saved() { persist?(exportState()) }

    /// Adds or replaces a user. Tags and PINs must stay unique site-wide and groups must exist.
    @discardableResult
    public func upsertUser(_ user: UserConfig) throws -> UInt64 {
        guard SiteFileReader.isValidID(user.id) else { throw DirectoryError.invalid("user id '\(user.id)'") }
        guard user.tags.count <= UserConfig.maximumTags else { throw DirectoryError.invalid("more than \(UserConfig.maximumTags) tags") }
        if let pin = user.pin, !UserConfig.isValidPIN(pin) {
            throw DirectoryError.invalid("PIN must be 4–8 digits")
        }
        for g in user.groups where !groups.contains(where: { $0.id == g }) { throw DirectoryError.unknownGroup(g) }
        for other in users where other.id != user.id {
            if let t = user.tags.first(where: { other.tags.contains($0) }) {
                throw DirectoryError.conflict("tag \(t) belongs to user '\(other.id)'")
            }
            if let p = user.pin, p == other.pin { throw DirectoryError.conflict("PIN already used by user '\(other.id)'") }
        }
        var next = users
        if let i = next.firstIndex(where: { $0.id == user.id }) { next[i] = user } else { next.append(user) }
        try checkOfflineCapacity(users: next, groups: groups, memberships: memberships)
        users = next
        changed()
        return accessListVersion
    }

    @discardableResult
    public func removeUser(id: String) throws -> UInt64 {
        guard let i = users.firstIndex(where: { $0.id == id }) else { throw DirectoryError.unknownUser(id) }
        users.remove(at: i)
        // A deleted member's bookings go with them.
        memberships.removeAll { $0.userID == id }
        changed()
        return accessListVersion
    }

    @discardableResult
    public func upsertGroup(_ group: AccessGroupConfig) throws -> UInt64 {
        guard SiteFileReader.isValidID(group.id) else { throw DirectoryError.invalid("group id '\(group.id)'") }
        if case .only(let ids) = group.locks, let bad = ids.first(where: { !lockIDs.contains($0) }) {
            throw DirectoryError.unknownLock(bad)
        }
        var next = groups
        if let i = next.firstIndex(where: { $0.id == group.id }) { next[i] = group } else { next.append(group) }
        try checkOfflineCapacity(users: users, groups: next, memberships: memberships)
        groups = next
        changed()
        return accessListVersion
    }

    /// Books a user into a group for a window (`id` is ignored: the directory names it `m-<n>`).
    /// Returns the stored membership and the new access-list version.
    public func addMembership(_ m: Membership) throws -> (Membership, UInt64) {
        guard groups.contains(where: { $0.id == m.groupID }) else { throw DirectoryError.unknownGroup(m.groupID) }
        guard users.contains(where: { $0.id == m.userID }) else { throw DirectoryError.unknownUser(m.userID) }
        guard m.notAfter > m.notBefore else { throw DirectoryError.invalid("not_after must be after not_before") }
        let graces = 0...Membership.maximumGrace
        guard graces.contains(m.graceBefore), graces.contains(m.graceAfter) else {
            throw DirectoryError.invalid("grace must be from 0 to \(Int(Membership.maximumGrace)) s")
        }
        var stored = m
        stored.id = "m-\(membershipCounter + 1)"
        try checkOfflineCapacity(users: users, groups: groups, memberships: memberships + [stored])
        membershipCounter += 1
        memberships.append(stored)
        changed()
        return (stored, accessListVersion)
    }

    /// Records the phone key issued for a booking.
    public func attachKey(_ keyID: String, toMembership id: String) {
        guard let i = memberships.firstIndex(where: { $0.id == id }) else { return }
        memberships[i].keyID = keyID
        saved()
    }

    /// Cancels a booking: locks stop honouring it once an IQ has pushed the new list.
    @discardableResult
    public func removeMembership(groupID: String, id: String) throws -> UInt64 {
        guard let i = memberships.firstIndex(where: { $0.id == id && $0.groupID == groupID }) else {
            throw DirectoryError.unknownMembership(id)
        }
        memberships.remove(at: i)
        changed()
        return accessListVersion
    }

    /// Puts locks in lockdown or lifts it (`on`), for the given lock ids or, if nil, every lock.
    /// Returns the locks whose wanted state changed.
    public func setLockdown(_ on: Bool, locks ids: [String]?) throws -> [String] {
        let target = ids.map(Set.init) ?? lockIDs
        if let bad = target.first(where: { !lockIDs.contains($0) }) { throw DirectoryError.unknownLock(bad) }
        let changedLocks = on ? target.subtracting(lockdown) : target.intersection(lockdown)
        if on { lockdown.formUnion(target) } else { lockdown.subtract(target) }
        if !changedLocks.isEmpty { saved() }
        return changedLocks.sorted()
    }

    public func isLockedDown(_ lockID: String) -> Bool { lockdown.contains(lockID) }

    /// Revokes credentials by key id (`cti`): the next revocation list version, signed by the site
    /// issuer. Returns the new version. Locks learn of it only when an IQ in reach pushes it.
    @discardableResult
    public func revoke(keyIDs: [[UInt8]]) throws -> UInt64 {
        guard let issuer else { throw DirectoryError.invalid("the site has no issuer key to sign revocation lists") }
        do {
            let next = try revocationList.revoking(keyIDs, issuedAt: clock.now())
            signedRevocationList = try issuer.sign(next)
            revocationList = next
            saved()
        } catch {
            throw DirectoryError.invalid("\(error)")
        }
        return revocationList.version
    }

    /// Revokes lock certificates by id: the next version, signed, in one step inside the directory, so no
    /// key revocation can slip in between reading the list and publishing the next (and be lost).
    public func revoke(lockCertificates ids: [[UInt8]]) throws -> (list: RevocationList, signed: [UInt8]) {
        guard let issuer else { throw DirectoryError.invalid("the site has no issuer key to sign revocation lists") }
        do {
            let next = try revocationList.revokingCertificates(ids, issuedAt: clock.now())
            let signed = try issuer.sign(next)
            signedRevocationList = signed
            revocationList = next
            saved()
            return (next, signed)
        } catch {
            throw DirectoryError.invalid("\(error)")
        }
    }

    /// Installs a signed list made elsewhere (state restored by the Emulator). It must verify with the
    /// site issuer and not be older than the current one.
    public func publish(signedRevocationList bytes: [UInt8]) throws {
        guard let issuer else { throw DirectoryError.invalid("the site has no issuer key") }
        let list: RevocationList
        do {
            list = try RevocationList(verifying: bytes, issuers: TrustedIssuers([issuer.publicKey]), siteID: siteID)
        } catch {
            throw DirectoryError.invalid("\(error)")
        }
        guard list.version >= revocationList.version else {
            throw DirectoryError.invalid("revocation list version \(list.version) is older than \(revocationList.version)")
        }
        revocationList = list
        signedRevocationList = bytes
    }
}

// MARK: - Snapshots

extension SiteDirectory {
    /// Everything of the directory that changes at run time, as a value: what a snapshot saves
    /// (`exportState`) and its restore puts back (`importState`). Directory state kept outside it is
    /// silently lost by a restore, so new state belongs here.
    public struct State: Codable, Sendable, Equatable {
        public var users: [UserConfig]
        public var groups: [AccessGroupConfig]
        public var accessListVersion: UInt64
        /// The revocation list signed by the site issuer, as IQs push it (nil: nothing revoked yet).
        public var signedRevocationList: Data?
        /// Bookings, and the number the next one is named after (`m-<n>`: never reused).
        public var memberships: [Membership]
        public var membershipCounter: UInt64
        /// Locks the platform wants in lockdown.
        public var lockdown: [String]

        public init(users: [UserConfig], groups: [AccessGroupConfig], accessListVersion: UInt64, signedRevocationList: Data?,
                    memberships: [Membership] = [], membershipCounter: UInt64 = 0, lockdown: [String] = []) {
            self.users = users
            self.groups = groups
            self.accessListVersion = accessListVersion
            self.signedRevocationList = signedRevocationList
            self.memberships = memberships
            self.membershipCounter = membershipCounter
            self.lockdown = lockdown
        }
    }

    public func exportState() -> State {
        State(users: users, groups: groups, accessListVersion: accessListVersion, signedRevocationList: signedRevocationList.map { Data($0) },
              memberships: memberships, membershipCounter: membershipCounter, lockdown: lockdown.sorted())
    }

    /// Puts a saved state back as it was — versions included, which may go back: a restore returns the
    /// whole world, the locks' lists with it. Checked first (groups and locks referenced exist, the
    /// revocation list is the site issuer's), so a refused state changes nothing.
    public func importState(_ state: State) throws {
        let groupIDs = Set(state.groups.map(\.id))
        for g in state.groups {
            if case .only(let ids) = g.locks, let bad = ids.first(where: { !lockIDs.contains($0) }) { throw DirectoryError.unknownLock(bad) }
        }
        for u in state.users {
            if let g = u.groups.first(where: { !groupIDs.contains($0) }) { throw DirectoryError.unknownGroup(g) }
        }
        guard state.accessListVersion >= 1 else { throw DirectoryError.invalid("access list version 0") }
        let userIDs = Set(state.users.map(\.id))
        for m in state.memberships {
            guard groupIDs.contains(m.groupID) else { throw DirectoryError.unknownGroup(m.groupID) }
            guard userIDs.contains(m.userID) else { throw DirectoryError.unknownUser(m.userID) }
        }
        if let bad = state.lockdown.first(where: { !lockIDs.contains($0) }) { throw DirectoryError.unknownLock(bad) }
        var list = RevocationList.empty(siteID: siteID)
        if let bytes = state.signedRevocationList {
            guard let issuer else { throw DirectoryError.invalid("the site has no issuer key") }
            do {
                list = try RevocationList(verifying: Array(bytes), issuers: TrustedIssuers([issuer.publicKey]), siteID: siteID)
            } catch {
                throw DirectoryError.invalid("\(error)")
            }
        }
        users = state.users
        groups = state.groups
        memberships = state.memberships
        membershipCounter = max(membershipCounter, state.membershipCounter)
        lockdown = Set(state.lockdown)
        revocationList = list
        signedRevocationList = state.signedRevocationList.map { Array($0) }
        // As `changed()`, without a new version: the lists built from here are the saved ones.
        accessListVersion = state.accessListVersion
        cache.removeAll()
        (groupsOfLock, allLocksGroups) = SiteDirectory.index(groups)
        saved()
    }
}

public enum DirectoryError: Error, Equatable, Sendable, CustomStringConvertible {
    case unknownUser(String)
    case unknownGroup(String)
    case unknownLock(String)
    case unknownMembership(String)
    case conflict(String)
    case invalid(String)
    case offlineCapacity(lockID: String, users: Int, capacity: Int)

    public var description: String {
        switch self {
        case .unknownUser(let u): return "no user with id '\(u)'"
        case .unknownGroup(let g): return "no access group with id '\(g)'"
        case .unknownLock(let l): return "no lock with id '\(l)'"
        case .unknownMembership(let m): return "no membership with id '\(m)'"
        case .offlineCapacity(let l, let n, let cap):
            return "lock '\(l)' keeps at most \(cap) users on its offline list; this change would put \(n) there"
        case .conflict(let c): return c
        case .invalid(let i): return "invalid: \(i)"
        }
    }
}
