import Foundation
import GRDB
import KeywayCrypto
import MobileKey

/// A digital key the emulator issued, as kept in `DIR/state.sqlite`. The built-in phone's private
/// key is kept only when the emulator generated it (no `holder_public_key` in the request) — that is
/// the emulated phone's own secure storage; it is never returned by the API nor logged.
public struct IssuedKey: Sendable {
    public var keyID: String          // hex of cti
    public var userID: String
    public var lockIDs: [String]
    public var notBefore: Date
    public var expires: Date
    public var officeMode: Bool
    public var credential: [UInt8]
    public var holderPrivateKeyPEM: String?
    public var revoked: Bool
    public var issuedAt: Date
}

/// Issued keys and the site's revocation list version: the emulator's own state, in SQLite so it
/// survives a restart and can be read with the `sqlite3` tool.
public final class KeyStore: Sendable {
    let db: DatabaseQueue
    /// Keys as stored, by id: every tap reads its key, and a read through SQLite cost about a twentieth
    /// of a whole tap. Every write below goes through this class and updates or empties it.
    private let byID = PthreadLocked(KeyCache())
    private struct KeyCache {
        var keys: [String: IssuedKey] = [:]
        /// Bumped by every write: a read that raced a write does not fill the cache with what it read.
        var generation: UInt64 = 0
        mutating func forget(_ id: String?) {
            generation &+= 1
            if let id { keys.removeValue(forKey: id) } else { keys.removeAll() }
        }
    }

    public init(path: String) throws {
        var config = Configuration()
        config.busyMode = .timeout(5)
        db = try DatabaseQueue(path: path, configuration: config)
        try db.write { db in
            try db.execute(sql: """
                CREATE TABLE IF NOT EXISTS issued_keys (
                    key_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, lock_ids TEXT NOT NULL,
                    not_before REAL NOT NULL, expires REAL NOT NULL, office_mode INTEGER NOT NULL,
                    credential BLOB NOT NULL, holder_private_key TEXT, revoked INTEGER NOT NULL DEFAULT 0,
                    issued_at REAL NOT NULL);
                CREATE INDEX IF NOT EXISTS issued_keys_user ON issued_keys(user_id);
                CREATE TABLE IF NOT EXISTS revocation (
                    site_id TEXT PRIMARY KEY, version INTEGER NOT NULL, signed_list BLOB NOT NULL);
                CREATE TABLE IF NOT EXISTS directory (
                    site_id TEXT PRIMARY KEY, site_file TEXT NOT NULL, state TEXT NOT NULL);
                """)
        }
    }

    public func insert(_ k: IssuedKey) throws {
        defer { byID.withLock { $0.forget(k.keyID) } }
        try db.write { db in
            try db.execute(sql: """
                INSERT INTO issued_keys (key_id, user_id, lock_ids, not_before, expires, office_mode, credential, holder_private_key, revoked, issued_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [k.keyID, k.userID, k.lockIDs.joined(separator: "\n"), k.notBefore.timeIntervalSince1970,
                                 k.expires.timeIntervalSince1970, k.officeMode, Data(k.credential), k.holderPrivateKeyPEM, k.revoked,
                                 k.issuedAt.timeIntervalSince1970])
        }
    }

    private static func key(_ row: Row) -> IssuedKey {
        let locks: String = row["lock_ids"]
        let cred: Data = row["credential"]
        return IssuedKey(keyID: row["key_id"], userID: row["user_id"], lockIDs: locks.split(separator: "\n").map(String.init),
                         notBefore: Date(timeIntervalSince1970: row["not_before"]), expires: Date(timeIntervalSince1970: row["expires"]),
                         officeMode: row["office_mode"], credential: Array(cred), holderPrivateKeyPEM: row["holder_private_key"],
                         revoked: row["revoked"], issuedAt: Date(timeIntervalSince1970: row["issued_at"]))
    }

    public func key(id: String) throws -> IssuedKey? {
        let (cached, generation) = byID.withLock { ($0.keys[id], $0.generation) }
        if let cached { return cached }
        guard let stored = try storedKey(id: id) else { return nil }
        byID.withLock { cache in
            guard cache.generation == generation else { return }
            if cache.keys.count >= 4096 { cache.keys.removeAll() }   // bounded: a test issuing keys for ever
            cache.keys[id] = stored
        }
        return stored
    }

    private func storedKey(id: String) throws -> IssuedKey? {
        try db.read { db in try Row.fetchOne(db, sql: "SELECT * FROM issued_keys WHERE key_id = ?", arguments: [id]).map(Self.key) }
    }

    public func keys(user: String? = nil) throws -> [IssuedKey] {
        try db.read { db in
            if let user {
                return try Row.fetchAll(db, sql: "SELECT * FROM issued_keys WHERE user_id = ? ORDER BY issued_at", arguments: [user]).map(Self.key)
            }
            return try Row.fetchAll(db, sql: "SELECT * FROM issued_keys ORDER BY issued_at").map(Self.key)
        }
    }

    /// Marks a key revoked and stores the new signed list in one transaction: either both or neither.
    /// A list older than the stored one never replaces it: concurrent revocations can reach the store
    /// out of order, and the list that survives a restart must be the newest (it includes the older).
    public func revoke(id: String, newList: RevocationList, signed: [UInt8]) throws {
        defer { byID.withLock { $0.forget(id) } }
        try db.write { db in
            try db.execute(sql: "UPDATE issued_keys SET revoked = 1 WHERE key_id = ?", arguments: [id])
            try db.execute(sql: """
                INSERT INTO revocation (site_id, version, signed_list) VALUES (?, ?, ?)
                ON CONFLICT(site_id) DO UPDATE SET version = excluded.version, signed_list = excluded.signed_list
                WHERE excluded.version > revocation.version
                """, arguments: [newList.siteID, newList.version, Data(signed)])
        }
    }

    /// Stores a new signed list that revokes no key of this store (lock certificates): the same
    /// newest-wins rule as `revoke`.
    public func storeRevocationList(_ newList: RevocationList, signed: [UInt8]) throws {
        try db.write { db in
            try db.execute(sql: """
                INSERT INTO revocation (site_id, version, signed_list) VALUES (?, ?, ?)
                ON CONFLICT(site_id) DO UPDATE SET version = excluded.version, signed_list = excluded.signed_list
                WHERE excluded.version > revocation.version
                """, arguments: [newList.siteID, newList.version, Data(signed)])
        }
    }

    public func signedRevocationList(site: String) throws -> [UInt8]? {
        try db.read { db in
            try Row.fetchOne(db, sql: "SELECT signed_list FROM revocation WHERE site_id = ?", arguments: [site]).map { Array(($0["signed_list"] as Data)) }
        }
    }

    /// Every issued key and the stored revocation list, as a value: what a snapshot saves.
    public struct State: Codable, Sendable, Equatable {
        public struct Key: Codable, Sendable, Equatable {
            var keyID: String, userID: String, lockIDs: [String], notBefore: Date, expires: Date, officeMode: Bool
            var credential: Data
            /// The built-in phone's private key (PKCS#8 PEM) when the emulator made it: the phone's own
            /// storage, saved with the world it belongs to.
            var holderPrivateKey: String?
            var revoked: Bool, issuedAt: Date
        }
        public struct Revocation: Codable, Sendable, Equatable {
            var siteID: String, version: Int64, signedList: Data
        }
        var keys: [Key]
        var revocations: [Revocation]
        public var keyCount: Int { keys.count }
        public var keyIDs: [String] { keys.map(\.keyID) }
    }

    public func exportState() throws -> State {
        try db.read { db in
            // In insertion order: listings order keys issued at one instant that way.
            let keys = try Row.fetchAll(db, sql: "SELECT * FROM issued_keys ORDER BY rowid").map { row -> State.Key in
                let k = Self.key(row)
                return State.Key(keyID: k.keyID, userID: k.userID, lockIDs: k.lockIDs, notBefore: k.notBefore, expires: k.expires,
                                 officeMode: k.officeMode, credential: Data(k.credential), holderPrivateKey: k.holderPrivateKeyPEM,
                                 revoked: k.revoked, issuedAt: k.issuedAt)
            }
            let revocations = try Row.fetchAll(db, sql: "SELECT site_id, version, signed_list FROM revocation ORDER BY site_id").map {
                State.Revocation(siteID: $0["site_id"], version: $0["version"], signedList: $0["signed_list"])
            }
            return State(keys: keys, revocations: revocations)
        }
    }

    /// Replaces every key and the revocation list by a saved state, in one transaction.
    public func importState(_ state: State) throws {
        defer { byID.withLock { $0.forget(nil) } }
        try db.write { db in
            try db.execute(sql: "DELETE FROM issued_keys; DELETE FROM revocation;")
            for k in state.keys {
                try db.execute(sql: """
                    INSERT INTO issued_keys (key_id, user_id, lock_ids, not_before, expires, office_mode, credential, holder_private_key, revoked, issued_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """, arguments: [k.keyID, k.userID, k.lockIDs.joined(separator: "\n"), k.notBefore.timeIntervalSince1970,
                                     k.expires.timeIntervalSince1970, k.officeMode, k.credential, k.holderPrivateKey, k.revoked,
                                     k.issuedAt.timeIntervalSince1970])
            }
            for r in state.revocations {
                try db.execute(sql: "INSERT INTO revocation (site_id, version, signed_list) VALUES (?, ?, ?)",
                               arguments: [r.siteID, r.version, r.signedList])
            }
        }
    }

    /// Back to the site's initial state (for test isolation): no keys, no revocations.
    public func reset() throws {
        defer { byID.withLock { $0.forget(nil) } }
        try db.write { db in
            try db.execute(sql: "DELETE FROM issued_keys; DELETE FROM revocation; DELETE FROM directory;")
        }
    }

    /// The directory (users, groups, bookings, lockdown) as the access core last left it, stored as
    /// JSON with the site file's own directory it grew from (`siteFile`): a site file edited since makes
    /// the stored one stale, and the caller starts from the file again.
    public func saveDirectory(site: String, siteFile: String, state: String) throws {
        try db.write { db in
            try db.execute(sql: """
                INSERT INTO directory (site_id, site_file, state) VALUES (?, ?, ?)
                ON CONFLICT(site_id) DO UPDATE SET site_file = excluded.site_file, state = excluded.state
                """, arguments: [site, siteFile, state])
        }
    }

    public func directory(site: String) throws -> (siteFile: String, state: String)? {
        try db.read { db in
            try Row.fetchOne(db, sql: "SELECT site_file, state FROM directory WHERE site_id = ?", arguments: [site]).map {
                (siteFile: $0["site_file"], state: $0["state"])
            }
        }
    }
}
