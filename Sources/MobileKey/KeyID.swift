import KeywayCrypto

/// Key identifiers as Keyway derives them: the first 8 bytes of SHA-256 over the key's
/// SubjectPublicKeyInfo DER (the 91-byte encoding `openssl pkey -pubout -outform DER` writes for a
/// P-256 key). Anyone holding the public key can recompute it; no registry is needed.
public enum KeyID {
    public static let length = 8

    public static func derive(from key: P256.PublicKey) -> [UInt8] {
        Array(SHA256.hash(key.spkiDER).prefix(length))
    }
}

/// The issuer keys a lock (or phone, or IQ) trusts, indexed by key id. Keys are parsed once, when
/// the set is built, so verification never touches PEM or DER.
public struct TrustedIssuers: Sendable, Equatable {
    public let keysByID: [[UInt8]: P256.PublicKey]

    /// Indexes `keys` under their derived key ids (`KeyID.derive`).
    public init(_ keys: [P256.PublicKey]) {
        var m: [[UInt8]: P256.PublicKey] = [:]
        for k in keys { m[KeyID.derive(from: k)] = k }
        keysByID = m
    }

    /// Uses the given key ids as they are (for issuers whose kid was assigned, not derived).
    public init(keysByID: [[UInt8]: P256.PublicKey]) {
        self.keysByID = keysByID
    }

    public func key(for keyID: [UInt8]) -> P256.PublicKey? { keysByID[keyID] }

    public var isEmpty: Bool { keysByID.isEmpty }
}
