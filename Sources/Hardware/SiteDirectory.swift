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
    private var lockIDs: Set<String>
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
    public init(config: SiteConfig, clock: any KeywayClock, issuer: CredentialIssuer? = nil) {
        siteID = config.siteID
        self.clock = clock
        self.issuer = issuer
        groups = config.accessGroups
        users = config.users
        lockIDs = Set(config.locks.map(\.id))
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
        let list = AccessList.build(version: accessListVersion, lockGroups: key, groups: groups, users: users)
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

    private func changed() {
        accessListVersion += 1
        cache.removeAll()
        let (perLock, all) = SiteDirectory.index(groups)
        groupsOfLock = perLock
        allLocksGroups = all
    }

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
        if let i = users.firstIndex(where: { $0.id == user.id }) { users[i] = user } else { users.append(user) }
        changed()
        return accessListVersion
    }

    @discardableResult
    public func removeUser(id: String) throws -> UInt64 {
        guard let i = users.firstIndex(where: { $0.id == id }) else { throw DirectoryError.unknownUser(id) }
        users.remove(at: i)
        changed()
        return accessListVersion
    }

    @discardableResult
    public func upsertGroup(_ group: AccessGroupConfig) throws -> UInt64 {
        guard SiteFileReader.isValidID(group.id) else { throw DirectoryError.invalid("group id '\(group.id)'") }
        if case .only(let ids) = group.locks, let bad = ids.first(where: { !lockIDs.contains($0) }) {
            throw DirectoryError.unknownLock(bad)
        }
        if let i = groups.firstIndex(where: { $0.id == group.id }) { groups[i] = group } else { groups.append(group) }
        changed()
        return accessListVersion
    }

    /// Revokes credentials by key id (`cti`): the next revocation list version, signed by the site
    /// issuer. Returns the new version. Locks learn of it only when an IQ in reach pushes it.
    @discardableResult
    public func revoke(keyIDs: [[UInt8]]) throws -> UInt64 {
        guard let issuer else { throw DirectoryError.invalid("the site has no issuer key to sign revocation lists") }
        do {
            let next = try revocationList.revoking(keyIDs, issuedAt: clock.now())
            signedRevocationList = try issuer.sign(next)
            revocationList = next
        } catch {
            throw DirectoryError.invalid("\(error)")
        }
        return revocationList.version
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

        public init(users: [UserConfig], groups: [AccessGroupConfig], accessListVersion: UInt64, signedRevocationList: Data?) {
            self.users = users
            self.groups = groups
            self.accessListVersion = accessListVersion
            self.signedRevocationList = signedRevocationList
        }
    }

    public func exportState() -> State {
        State(users: users, groups: groups, accessListVersion: accessListVersion, signedRevocationList: signedRevocationList.map { Data($0) })
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
        revocationList = list
        signedRevocationList = state.signedRevocationList.map { Array($0) }
        // As `changed()`, without a new version: the lists built from here are the saved ones.
        accessListVersion = state.accessListVersion
        cache.removeAll()
        (groupsOfLock, allLocksGroups) = SiteDirectory.index(groups)
    }
}

public enum DirectoryError: Error, Equatable, Sendable, CustomStringConvertible {
    case unknownUser(String)
    case unknownGroup(String)
    case unknownLock(String)
    case conflict(String)
    case invalid(String)

    public var description: String {
        switch self {
        case .unknownUser(let u): return "no user with id '\(u)'"
        case .unknownGroup(let g): return "no access group with id '\(g)'"
        case .unknownLock(let l): return "no lock with id '\(l)'"
        case .conflict(let c): return c
        case .invalid(let i): return "invalid: \(i)"
        }
    }
}
