import Foundation
import Hardware
import KeywayCrypto

/// Kisi's numeric ids for Keyway's string ids. Each is derived from the object's kind and Keyway id
/// (the first 48 bits of SHA-256 of "kind:id", plus one), so the mapping is the same in every run and
/// after a restart without a table to persist, and a record created through /v1 has its Kisi id at
/// once. 48 bits stay exact in every JSON reader (JavaScript's 2^53); a collision between two objects of
/// one kind in a site is about n²/2^49 (10^-6 for 10 000 users) and is refused, never guessed
/// (`KisiIdentity.resolve`).
enum KisiIdentity {
    enum Kind: String {
        case organization, place, lock, group, user, member, card
        case groupLock = "group_lock"
        case standingRole = "role_assignment.standing"
        case bookingRole = "role_assignment.booking"
    }

    static func id(_ kind: Kind, _ key: String) -> Int64 {
        let digest = SHA256.hash(Array("\(kind.rawValue):\(key)".utf8))
        var n: Int64 = 0
        for b in digest.prefix(6) { n = n << 8 | Int64(b) }
        return n + 1
    }

    /// The one object of `candidates` whose Kisi id is `id`.
    static func resolve<T>(_ id: Int64, _ kind: Kind, in candidates: [T], key: (T) -> String, what: String, field: String? = nil) throws -> T {
        try resolve(id, in: candidates, idOf: { self.id(kind, key($0)) }, what: what, field: field)
    }

    static func resolve<T>(_ id: Int64, in candidates: [T], idOf: (T) -> Int64, what: String, field: String? = nil) throws -> T {
        let hits = candidates.filter { idOf($0) == id }
        guard hits.count == 1 else {
            if hits.isEmpty {
                if let field { throw KisiError(422, "invalid", "no \(what) \(id)", field: field) }
                throw KisiError(404, "not_found", "no \(what) \(id)")
            }
            throw KisiError(500, "internal", "two \(what)s share id \(id)")
        }
        return hits[0]
    }

    // Users: Kisi knows people by email, Keyway by an id of `A–Z a–z 0–9 - _ .` (the site file's rule).
    // An address maps to an id with its `@` written `..` (a valid address never holds two dots in a
    // row, so the way back is exact): grace@example.com ↔ grace..example.com. Any other id gets an
    // address in a reserved test domain (RFC 2606) that maps back to it: u-ada ↔ u-ada@<site>.keyway.test.
    static func email(userID: String, site: String) -> String {
        guard let r = userID.range(of: "..") else { return "\(userID)@\(site).keyway.test" }
        return userID.replacingCharacters(in: r, with: "@")
    }

    /// The Keyway id for an address, or nil when the address has characters a Keyway id cannot hold.
    static func userID(email: String, site: String) -> String? {
        let lower = email.lowercased()
        let parts = lower.split(separator: "@", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty, !lower.contains(".."),
              lower.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2d || $0 == 0x5f || $0 == 0x2e || $0 == 0x40 })
        else { return nil }
        if parts[1] == "\(site).keyway.test".lowercased() { return String(parts[0]) }
        return "\(parts[0])..\(parts[1])"
    }
}

/// A failure in Kisi's words: `{"code", "message", "field"?}` with its status (KisiAPI.swift renders it).
struct KisiError: Error, Sendable {
    let status: Int
    let code: String
    let message: String
    let field: String?

    init(_ status: Int, _ code: String, _ message: String, field: String? = nil) {
        self.status = status; self.code = code; self.message = message; self.field = field
    }

    static func invalid(_ field: String, _ message: String) -> KisiError { KisiError(422, "invalid", message, field: field) }
    static func notEmulated(_ message: String) -> KisiError { KisiError(501, "not_emulated", message) }

    /// A refusal of the /v1 operations the facade calls, in Kisi's terms: a request error is a 422 (Kisi
    /// answers validation failures so), a missing record stays a 404, the rest keep their status.
    init(_ e: APIError) {
        switch e.status {
        case 400, 409: self.init(422, e.code, e.message, field: e.field)
        default: self.init(e.status, e.code, e.message, field: e.field)
        }
    }

    var json: Data {
        var o: [String: String] = ["code": code, "message": message]
        if let field { o["field"] = field }
        return (try? JSONSerialization.data(withJSONObject: o, options: [.sortedKeys, .withoutEscapingSlashes]))
            ?? Data(#"{"code":"internal","message":"internal error"}"#.utf8)
    }
}
