import Foundation
import KeywayCrypto

/// Why a revocation list was refused.
public enum RevocationListError: Error, Equatable, Sendable, CustomStringConvertible {
    case malformed(String)
    case unsupportedAlgorithm
    case unknownIssuer
    case badSignature
    /// Genuine, but for another site.
    case wrongSite(String)
    /// Genuine, but not newer than the list already held: accepting it would roll revocations back.
    case notNewer(current: UInt64, offered: UInt64)
    case tooManyEntries(Int)

    public var description: String {
        switch self {
        case .malformed(let why): return "revocation list malformed: \(why)"
        case .unsupportedAlgorithm: return "revocation list signed with an unsupported algorithm"
        case .unknownIssuer: return "revocation list signed by an unknown issuer"
        case .badSignature: return "revocation list signature does not verify"
        case .wrongSite(let s): return "revocation list is for site \(s)"
        case .notNewer(let current, let offered): return "revocation list version \(offered) is not newer than \(current)"
        case .tooManyEntries(let n): return "revocation list has \(n) entries (limit \(RevocationList.maxEntries))"
        }
    }
}

/// A site's versioned set of revoked credential key ids (`cti`), signed by the site issuer.
///
/// Versions only go up. A lock replaces its list only with a genuine list of its own site and a
/// strictly higher version (`accepting`), so a replayed older list can never resurrect a revoked
/// key. The lock reports `version` upstream so the platform can see which locks lag behind.
public struct RevocationList: Sendable, Hashable {
    /// Protected COSE content type (label 3) that marks a signed revocation list.
    public static let contentType = "application/keyway-revocation-list"
    /// Bound on entries; revoked keys can be dropped from the list once they have expired.
    public static let maxEntries = 65_536

    public enum Key {
        public static let site: Int64 = 1
        public static let version: Int64 = 2
        public static let revoked: Int64 = 3
        public static let issuedAt: Int64 = 4
        /// Revoked lock certificates, by certificate id (`LockCertificate.id`); present only when
        /// non-empty, so a list naming none encodes as before.
        public static let revokedLockCertificates: Int64 = 5
    }

    public let siteID: String
    public let version: UInt64
    public let issuedAt: Date
    public let revokedKeyIDs: Set<[UInt8]>
    /// Lock certificates the site no longer vouches for: phones refuse a reader hello carrying one
    /// (`lock_certificate_revoked`) and stop FAST taps at that lock. Locks ignore this part.
    public let revokedCertificateIDs: Set<[UInt8]>

    public init(siteID: String, version: UInt64, issuedAt: Date, revokedKeyIDs: Set<[UInt8]>,
                revokedCertificateIDs: Set<[UInt8]> = []) throws(RevocationListError) {
        guard !siteID.isEmpty else { throw .malformed("empty site id") }
        guard revokedKeyIDs.count + revokedCertificateIDs.count <= RevocationList.maxEntries else {
            throw .tooManyEntries(revokedKeyIDs.count + revokedCertificateIDs.count)
        }
        guard revokedKeyIDs.allSatisfy({ $0.count == Credential.keyIDLength }) else { throw .malformed("key id not 16 bytes") }
        guard revokedCertificateIDs.allSatisfy({ $0.count == LockCertificate.idLength }) else { throw .malformed("certificate id not 16 bytes") }
        self.siteID = siteID
        self.version = version
        self.issuedAt = Date(timeIntervalSince1970: TimeInterval(Credential.seconds(issuedAt)))
        self.revokedKeyIDs = revokedKeyIDs
        self.revokedCertificateIDs = revokedCertificateIDs
    }

    /// The list a lock starts with: version 0, nothing revoked.
    public static func empty(siteID: String) -> RevocationList {
        RevocationList(unchecked: siteID, version: 0, issuedAt: Date(timeIntervalSince1970: 0), revoked: [])
    }

    private init(unchecked siteID: String, version: UInt64, issuedAt: Date, revoked: Set<[UInt8]>) {
        self.siteID = siteID
        self.version = version
        self.issuedAt = issuedAt
        self.revokedKeyIDs = revoked
        self.revokedCertificateIDs = []
    }

    public func isRevoked(_ keyID: [UInt8]) -> Bool { revokedKeyIDs.contains(keyID) }

    /// Whether the site revoked the lock certificate with this id (`LockCertificate.id`).
    public func isRevoked(certificateID: [UInt8]) -> Bool { revokedCertificateIDs.contains(certificateID) }

    /// The next version with the lock certificates `certificateIDs` revoked as well.
    public func revokingCertificates(_ certificateIDs: [[UInt8]], issuedAt: Date) throws(RevocationListError) -> RevocationList {
        guard version < UInt64.max else { throw .malformed("version exhausted") }
        return try RevocationList(siteID: siteID, version: version + 1, issuedAt: issuedAt, revokedKeyIDs: revokedKeyIDs,
                                  revokedCertificateIDs: revokedCertificateIDs.union(certificateIDs))
    }

    /// The next version with `keyIDs` added.
    public func revoking(_ keyIDs: [[UInt8]], issuedAt: Date) throws(RevocationListError) -> RevocationList {
        try next(revokedKeyIDs.union(keyIDs), issuedAt: issuedAt)
    }

    /// The next version with `keyIDs` removed (for keys that have expired anyway).
    public func removing(_ keyIDs: [[UInt8]], issuedAt: Date) throws(RevocationListError) -> RevocationList {
        try next(revokedKeyIDs.subtracting(keyIDs), issuedAt: issuedAt)
    }

    private func next(_ set: Set<[UInt8]>, issuedAt: Date) throws(RevocationListError) -> RevocationList {
        guard version < UInt64.max else { throw .malformed("version exhausted") }
        return try RevocationList(siteID: siteID, version: version + 1, issuedAt: issuedAt, revokedKeyIDs: set,
                                  revokedCertificateIDs: revokedCertificateIDs)
    }

    /// `{1: site, 2: version, 3: [cti…] sorted bytewise, 4: issuedAt, ? 5: [certificate id…] sorted bytewise}`.
    public var payload: CBOR {
        let sorted = revokedKeyIDs.sorted { $0.lexicographicallyPrecedes($1) }
        var m: [CBOR: CBOR] = [
            .int(Key.site): .text(siteID),
            .int(Key.version): .unsigned(version),
            .int(Key.revoked): .array(sorted.map { .bytes($0) }),
            .int(Key.issuedAt): .int(Credential.seconds(issuedAt)),
        ]
        if !revokedCertificateIDs.isEmpty {
            m[.int(Key.revokedLockCertificates)] = .array(revokedCertificateIDs.sorted { $0.lexicographicallyPrecedes($1) }.map { .bytes($0) })
        }
        return .map(m)
    }

    /// A sorted array of distinct ids of `length` bytes (§6: ascending bytewise, one list has one encoding).
    private static func sortedIDs(_ items: [CBOR], length: Int, what: String) throws(RevocationListError) -> Set<[UInt8]> {
        var set = Set<[UInt8]>(minimumCapacity: items.count)
        var previous: [UInt8]? = nil
        for item in items {
            guard let id = item.bytesValue, id.count == length else { throw .malformed("\(what) not \(length) bytes") }
            guard set.insert(id).inserted else { throw .malformed("duplicate \(what)") }
            if let previous, !previous.lexicographicallyPrecedes(id) { throw .malformed("\(what)s not in ascending order") }
            previous = id
        }
        return set
    }

    static let messageLimits = CBORDecoder.Limits(maxDepth: 4, maxItems: 16, maxLength: 1_200_000, maxBytes: 1_200_512)
    static let payloadLimits = CBORDecoder.Limits(maxDepth: 3, maxItems: maxEntries, maxLength: 256, maxBytes: 1_200_000)

    public init(payload item: CBOR) throws(RevocationListError) {
        guard case .map(let m) = item else { throw .malformed("not a map") }
        guard let site = m[.int(Key.site)]?.textValue else { throw .malformed("site missing or not text") }
        guard let version = m[.int(Key.version)]?.uint64Value else { throw .malformed("version missing or not an unsigned integer") }
        guard let iat = m[.int(Key.issuedAt)]?.intValue else { throw .malformed("issued-at missing or not an integer") }
        guard case .array(let items)? = m[.int(Key.revoked)] else { throw .malformed("revoked key ids missing or not an array") }
        guard items.count <= RevocationList.maxEntries else { throw .tooManyEntries(items.count) }
        let set = try RevocationList.sortedIDs(items, length: Credential.keyIDLength, what: "key id")
        var certificates: Set<[UInt8]> = []
        if let c = m[.int(Key.revokedLockCertificates)] {
            // Present only when non-empty (one list has one encoding).
            guard case .array(let ids) = c, !ids.isEmpty else { throw .malformed("revoked lock certificates not a non-empty array") }
            guard ids.count <= RevocationList.maxEntries else { throw .tooManyEntries(ids.count) }
            certificates = try RevocationList.sortedIDs(ids, length: LockCertificate.idLength, what: "certificate id")
        }
        try self.init(siteID: site, version: version, issuedAt: Date(timeIntervalSince1970: TimeInterval(iat)), revokedKeyIDs: set,
                      revokedCertificateIDs: certificates)
    }

    /// Verifies a signed list (COSE_Sign1 with this type's content type) and returns it.
    public init(verifying bytes: [UInt8], issuers: TrustedIssuers, siteID: String) throws(RevocationListError) {
        let message: COSESign1
        do { message = try COSESign1(decoding: bytes, limits: RevocationList.messageLimits) } catch {
            if case .unsupportedAlgorithm = error { throw .unsupportedAlgorithm }
            throw .malformed("\(error)")
        }
        guard let kid = message.keyID, let key = issuers.key(for: kid) else { throw .unknownIssuer }
        guard message.verify(with: key) else { throw .badSignature }
        guard message.contentType == .text(RevocationList.contentType) else { throw .malformed("content type is not \(RevocationList.contentType)") }
        let item: CBOR
        do { item = try CBORDecoder(limits: RevocationList.payloadLimits).decode(message.payload) } catch {
            throw .malformed("payload: \(error)")
        }
        try self.init(payload: item)
        guard self.siteID == siteID else { throw .wrongSite(self.siteID) }
    }

    /// What a lock does with a pushed list: returns it when it is genuine, for this list's site and
    /// strictly newer; otherwise throws and the caller keeps `self`.
    public func accepting(_ bytes: [UInt8], issuers: TrustedIssuers) throws(RevocationListError) -> RevocationList {
        let offered = try RevocationList(verifying: bytes, issuers: issuers, siteID: siteID)
        guard offered.version > version else { throw .notNewer(current: version, offered: offered.version) }
        return offered
    }
}
