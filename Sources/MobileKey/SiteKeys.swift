import Foundation
import KeywayCrypto
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

public enum SiteKeysError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The directory already holds an issuer key (or the lock's key): keys are never overwritten.
    case alreadyExists(String)
    case missingFile(String)
    case invalidSiteID(String)
    case invalidLockID(String)
    case io(path: String, reason: String)
    /// A key file that is not a P-256 key of the expected kind.
    case invalidKey(path: String, reason: String)
    /// issuer.pub.pem does not match issuer.key.pem, or a certificate does not match its lock key.
    case keyMismatch(String)
    case certificate(lockID: String, LockCertificateError)
    case issue(IssueError)

    public var description: String {
        switch self {
        case .alreadyExists(let p): return "\(p) already exists; refusing to overwrite key material"
        case .missingFile(let p): return "missing \(p)"
        case .invalidSiteID(let s): return "invalid site id \"\(s)\""
        case .invalidLockID(let l): return "invalid lock id \"\(l)\" (use 1–64 of A–Z a–z 0–9 . _ -, not starting with . or -)"
        case .io(let p, let r): return "\(p): \(r)"
        case .invalidKey(let p, let r): return "\(p): \(r)"
        case .keyMismatch(let what): return "key mismatch: \(what)"
        case .certificate(let lock, let e): return "locks/\(lock).cert: \(e)"
        case .issue(let e): return "\(e)"
        }
    }
}

/// A site's key material on disk (never printed, never logged):
///
///     DIR/site-id              the site id, UTF-8, one line                       0644
///     DIR/issuer.key.pem       issuer private key, PKCS#8 PEM                     0600
///     DIR/issuer.pub.pem       issuer public key, SPKI PEM                        0644
///     DIR/locks/               (directory)                                        0700
///     DIR/locks/<id>.key.pem   the lock's device private key, PKCS#8 PEM          0600
///     DIR/locks/<id>.cert      the lock certificate, COSE_Sign1 bytes             0644
///
/// Private files are created with O_EXCL and mode 0600 in a single open(2), so there is no moment
/// at which they exist with wider permissions; an existing key is never overwritten.
public struct SiteKeys: Sendable {
    public struct Lock: Sendable {
        public let lockID: String
        public let deviceKey: P256.PrivateKey
        public let certificate: LockCertificate
    }

    /// Two years (docs/PROTOCOL.md §7, "Lifetime"): what a stolen, never-revoked device key is worth
    /// at most; a lock in service is re-certified long before, and revocation covers the time between.
    public static let defaultCertificateLifetime: TimeInterval = 2 * 365 * 24 * 3600

    public let directory: String
    public let siteID: String
    public let issuerKey: P256.PrivateKey
    /// By lock id.
    public let locks: [String: Lock]

    public var issuerPublicKey: P256.PublicKey { issuerKey.publicKey }
    public var issuerKeyID: [UInt8] { KeyID.derive(from: issuerKey.publicKey) }
    public var issuer: CredentialIssuer { CredentialIssuer(siteID: siteID, key: issuerKey) }
    public var trustedIssuers: TrustedIssuers { TrustedIssuers([issuerKey.publicKey]) }
    public var lockIDs: [String] { locks.keys.sorted() }

    /// Lock ids become file names, so they are restricted to a portable, traversal-free alphabet.
    public static func isValidLockID(_ id: String) -> Bool {
        let bytes = Array(id.utf8)
        guard (1...64).contains(bytes.count), bytes[0] != UInt8(ascii: "."), bytes[0] != UInt8(ascii: "-") else { return false }
        return bytes.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a)
                || b == UInt8(ascii: ".") || b == UInt8(ascii: "_") || b == UInt8(ascii: "-")
        }
    }

    static func isValidSiteID(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 128 && !id.unicodeScalars.contains { $0.properties.generalCategory == .control }
    }

    /// Creates a new site in `dir` (created if missing; must not already hold an issuer key): a fresh
    /// issuer key, and for each lock a device key and a certificate valid from `now` for
    /// `certificateLifetime`.
    public static func create(dir: String, siteID: String, lockIDs: [String], now: Date,
                              certificateLifetime: TimeInterval = defaultCertificateLifetime) throws(SiteKeysError) -> SiteKeys {
        try create(dir: dir, siteID: siteID, lockIDs: lockIDs,
                   certificateValidity: ValidityWindow(notBefore: now, expires: now.addingTimeInterval(certificateLifetime)))
    }

    /// Creates a new site whose lock certificates are valid over `certificateValidity` (the
    /// emulator's world span, so the simulated clock can go anywhere a QA user may set it).
    public static func create(dir: String, siteID: String, lockIDs: [String],
                              certificateValidity: ValidityWindow) throws(SiteKeysError) -> SiteKeys {
        guard isValidSiteID(siteID) else { throw .invalidSiteID(siteID) }
        for id in lockIDs where !isValidLockID(id) { throw .invalidLockID(id) }
        guard Set(lockIDs).count == lockIDs.count else { throw .invalidLockID("duplicate in \(lockIDs)") }
        let keyPath = dir + "/issuer.key.pem"
        if FileManager.default.fileExists(atPath: keyPath) { throw .alreadyExists(keyPath) }

        try makeDirectory(dir, mode: 0o755)
        try makeDirectory(dir + "/locks", mode: 0o700)
        let issuerKey = try newKey()
        try writeNew(keyPath, try pem(issuerKey, keyPath), mode: 0o600)
        try writeNew(dir + "/issuer.pub.pem", issuerKey.publicKey.pem, mode: 0o644)
        try writeNew(dir + "/site-id", siteID + "\n", mode: 0o644)

        var site = SiteKeys(directory: dir, siteID: siteID, issuerKey: issuerKey, locks: [:])
        for id in lockIDs { site = try site.addingLock(id, certificateValidity: certificateValidity) }
        return site
    }

    /// Adds a lock to an existing site directory: device key and certificate.
    public func addingLock(_ lockID: String, now: Date,
                           certificateLifetime: TimeInterval = defaultCertificateLifetime) throws(SiteKeysError) -> SiteKeys {
        try addingLock(lockID, certificateValidity: ValidityWindow(notBefore: now, expires: now.addingTimeInterval(certificateLifetime)))
    }

    /// Adds a lock whose certificate is valid over `certificateValidity`.
    public func addingLock(_ lockID: String, certificateValidity validity: ValidityWindow) throws(SiteKeysError) -> SiteKeys {
        guard SiteKeys.isValidLockID(lockID) else { throw .invalidLockID(lockID) }
        let keyPath = directory + "/locks/\(lockID).key.pem"
        if locks[lockID] != nil || FileManager.default.fileExists(atPath: keyPath) { throw .alreadyExists(keyPath) }
        try SiteKeys.makeDirectory(directory + "/locks", mode: 0o700)
        let deviceKey = try SiteKeys.newKey()
        let cert: LockCertificate
        do {
            cert = try issuer.certify(lockID: lockID, deviceKey: deviceKey.publicKey, issuedAt: validity.notBefore,
                                      expires: validity.expires)
        } catch { throw .issue(error) }
        try SiteKeys.writeNew(keyPath, try SiteKeys.pem(deviceKey, keyPath), mode: 0o600)
        try SiteKeys.writeNew(directory + "/locks/\(lockID).cert", cert.bytes, mode: 0o644)
        var all = locks
        all[lockID] = Lock(lockID: lockID, deviceKey: deviceKey, certificate: cert)
        return SiteKeys(directory: directory, siteID: siteID, issuerKey: issuerKey, locks: all)
    }

    /// The same site with lock `lockID`'s device key certified anew for `validity`. With `persist`, the
    /// new certificate replaces `locks/<id>.cert` atomically (a crash leaves the old or the new one,
    /// never half of either); without it, only this value changes (a fault injected for a test).
    public func recertifying(_ lockID: String, validity: ValidityWindow, persist: Bool) throws(SiteKeysError) -> SiteKeys {
        guard let lock = locks[lockID] else { throw .missingFile(directory + "/locks/\(lockID).key.pem") }
        let cert: LockCertificate
        do {
            cert = try issuer.certify(lockID: lockID, deviceKey: lock.deviceKey.publicKey, issuedAt: validity.notBefore,
                                      expires: validity.expires)
        } catch { throw .issue(error) }
        if persist {
            let path = directory + "/locks/\(lockID).cert"
            let temp = path + ".new"
            unlink(temp)
            try SiteKeys.writeNew(temp, cert.bytes, mode: 0o644)
            guard rename(temp, path) == 0 else { throw .io(path: path, reason: SiteKeys.errnoText()) }
        }
        var all = locks
        all[lockID] = Lock(lockID: lockID, deviceKey: lock.deviceKey, certificate: cert)
        return SiteKeys(directory: directory, siteID: siteID, issuerKey: issuerKey, locks: all)
    }

    /// Loads and cross-checks a site directory: the public key matches the private one, every
    /// certificate is signed by the issuer for this site and lock and certifies that lock's key.
    /// Certificate validity periods are not checked here (that depends on the clock of the user).
    public static func load(dir: String) throws(SiteKeysError) -> SiteKeys {
        let siteText = try String(decoding: readFile(dir + "/site-id"), as: UTF8.self)
        let siteID = siteText.trimmingCharacters(in: .whitespacesAndNewlines)
        guard isValidSiteID(siteID) else { throw .invalidSiteID(siteID) }
        let issuerKey = try privateKey(at: dir + "/issuer.key.pem")
        let pubPath = dir + "/issuer.pub.pem"
        let pubText = String(decoding: try readFile(pubPath), as: UTF8.self)
        let pub: P256.PublicKey
        do { pub = try P256.PublicKey(pem: pubText) } catch { throw .invalidKey(path: pubPath, reason: "\(error)") }
        guard pub == issuerKey.publicKey else { throw .keyMismatch("issuer.pub.pem does not match issuer.key.pem") }

        let trusted = TrustedIssuers([pub])
        var locks: [String: Lock] = [:]
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: dir + "/locks") } catch {
            throw .io(path: dir + "/locks", reason: "\(error.localizedDescription)")
        }
        for name in names.sorted() where name.hasSuffix(".key.pem") {
            let lockID = String(name.dropLast(".key.pem".count))
            guard isValidLockID(lockID) else { throw .invalidLockID(lockID) }
            let deviceKey = try privateKey(at: dir + "/locks/\(name)")
            let certBytes = try readFile(dir + "/locks/\(lockID).cert")
            let cert: LockCertificate
            do {
                cert = try LockCertificate(verifying: certBytes, issuers: trusted, siteID: siteID, lockID: lockID,
                                           validAt: nil, clockSkewTolerance: 0)
            } catch { throw .certificate(lockID: lockID, error) }
            guard cert.deviceKey == deviceKey.publicKey else { throw .keyMismatch("locks/\(lockID).cert certifies another key") }
            locks[lockID] = Lock(lockID: lockID, deviceKey: deviceKey, certificate: cert)
        }
        return SiteKeys(directory: dir, siteID: siteID, issuerKey: issuerKey, locks: locks)
    }

    // MARK: - File helpers

    private static func newKey() throws(SiteKeysError) -> P256.PrivateKey {
        do { return try P256.PrivateKey() } catch { throw .invalidKey(path: "(new key)", reason: "\(error)") }
    }

    private static func pem(_ key: P256.PrivateKey, _ path: String) throws(SiteKeysError) -> String {
        do { return try key.pkcs8PEM() } catch { throw .invalidKey(path: path, reason: "\(error)") }
    }

    private static func privateKey(at path: String) throws(SiteKeysError) -> P256.PrivateKey {
        let text = String(decoding: try readFile(path), as: UTF8.self)
        do { return try P256.PrivateKey(pem: text) } catch { throw .invalidKey(path: path, reason: "\(error)") }
    }

    private static func errnoText() -> String { String(cString: strerror(errno)) }

    static func makeDirectory(_ path: String, mode: mode_t) throws(SiteKeysError) {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir) {
            guard isDir.boolValue else { throw .io(path: path, reason: "exists and is not a directory") }
            return
        }
        if mkdir(path, mode) != 0 && errno != EEXIST { throw .io(path: path, reason: errnoText()) }
    }

    static func writeNew(_ path: String, _ text: String, mode: mode_t) throws(SiteKeysError) {
        try writeNew(path, Array(text.utf8), mode: mode)
    }

    /// Creates `path` exclusively with `mode` and writes all of `bytes`.
    static func writeNew(_ path: String, _ bytes: [UInt8], mode: mode_t) throws(SiteKeysError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else {
            if errno == EEXIST { throw .alreadyExists(path) }
            throw .io(path: path, reason: errnoText())
        }
        defer { close(fd) }
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { buf in write(fd, buf.baseAddress! + written, buf.count - written) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .io(path: path, reason: errnoText())
            }
            written += n
        }
        guard fsync(fd) == 0 else { throw .io(path: path, reason: errnoText()) }
    }

    /// Reads a whole (small) file; key directories hold only small files, so 1 MiB is a hard cap.
    static func readFile(_ path: String) throws(SiteKeysError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { throw .missingFile(path) }
            throw .io(path: path, reason: errnoText())
        }
        defer { close(fd) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .io(path: path, reason: errnoText())
            }
            if n == 0 { break }
            out.append(contentsOf: chunk[0..<n])
            guard out.count <= 1 << 20 else { throw .io(path: path, reason: "larger than 1 MiB") }
        }
        return out
    }
}
