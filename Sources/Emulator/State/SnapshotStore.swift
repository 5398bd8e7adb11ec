import Foundation
import Hardware
import KeywayCrypto
import MobileKey
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One saved world (`POST /v1/snapshots`), as written to `DIR/snapshots/<id>.json`: what a restore
/// needs to put every part back. Dates are exact (seconds since 2001 as JSON numbers); `summary`
/// repeats what the API shows, in RFC 3339, for people reading the file.
struct WorldSnapshot: Codable, Sendable {
    static let currentFormat = "keyway-snapshot/1"

    var format: String
    var summary: Summary
    var siteID: String
    /// The site issuer's key id (hex): a data directory whose keys were re-created cannot take the
    /// snapshot's credentials and signed lists back.
    var issuerKeyID: String
    /// The site clock when the snapshot was taken.
    var time: Date
    var directory: SiteDirectory.State
    var keys: KeyStore.State
    var locks: [LockImage]
    var iqs: [IQImage]
    var controllers: [ControllerImage]
    var certificateOverrides: [CertificateOverride]
    /// Lock memory parts by their SHA-256 (hex): locks holding the same access list share one copy.
    var blobs: [String: Data]

    struct Summary: Codable, Sendable {
        var id: String
        var description: String?
        /// Wall-clock time the snapshot was written (RFC 3339).
        var createdAt: String
        /// The site clock at the snapshot (RFC 3339).
        var time: String
        var clockMode: String
        /// The journal position when the snapshot was taken.
        var eventsAfter: Int64
        var users: Int
        var groups: Int
        var keys: Int
        var accessListVersion: UInt64
        var revocationListVersion: UInt64
    }

    /// A lock as its flash holds it (the journal's memory parts, by blob hash, trail bookkeeping
    /// excluded: that stays the journal's) and where it stands.
    struct LockImage: Codable, Sendable {
        var id: String
        var position: Position
        var memory: [String: String]
    }

    struct IQImage: Codable, Sendable {
        var id: String
        var position: Position
        var range: Double
        var online: Bool
        var activated: Bool
        var activation: IQ.ActivationState?
    }

    struct ControllerImage: Codable, Sendable {
        var id: String
        var state: DoorController.State
    }

    /// A lock certificate replaced by the fault API, by its validity window (re-issued on restore).
    struct CertificateOverride: Codable, Sendable {
        var lock: String
        var notBefore: Date
        var expires: Date
    }

    static func blobKey(_ bytes: [UInt8]) -> String { Hex.encode(SHA256.hash(bytes)) }
}

enum SnapshotStoreError: Error, Equatable {
    case exists(String)
    case unreadable(String)
    case io(String)
}

/// The snapshots of one data directory: one JSON file each, written whole or not at all (a temporary
/// file, fsync, then a hard link to the final name, which also refuses to replace another snapshot),
/// readable only by the user who runs the emulator — a snapshot holds the built-in phones' private keys
/// and the members' PINs, as `state.sqlite` and the site file do.
struct SnapshotStore: Sendable {
    static let maximumCount = 100
    let directory: String

    static func isValidID(_ id: String) -> Bool {
        let b = Array(id.utf8)
        // A leading dot would hide the file (and is how temporary files are named).
        guard (1...64).contains(b.count), b[0] != UInt8(ascii: ".") else { return false }
        return b.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
                || c == UInt8(ascii: "-") || c == UInt8(ascii: "_") || c == UInt8(ascii: ".")
        }
    }

    private func path(_ id: String) -> String { directory + "/" + id + ".json" }

    /// Ids of the stored snapshots, sorted.
    func ids() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter { $0.hasSuffix(".json") && !$0.hasPrefix(".") }.map { String($0.dropLast(5)) }
            .filter(SnapshotStore.isValidID).sorted()
    }

    func exists(_ id: String) -> Bool { FileManager.default.fileExists(atPath: path(id)) }

    /// nil when there is no snapshot `id`.
    func read(_ id: String) throws(SnapshotStoreError) -> WorldSnapshot? {
        guard let data = FileManager.default.contents(atPath: path(id)) else { return nil }
        let snapshot: WorldSnapshot
        do { snapshot = try JSONDecoder().decode(WorldSnapshot.self, from: data) } catch {
            throw .unreadable("\(id).json is not a snapshot this version of Keyway can read")
        }
        guard snapshot.format == WorldSnapshot.currentFormat else {
            throw .unreadable("\(id).json is of format '\(snapshot.format)', this Keyway reads '\(WorldSnapshot.currentFormat)'")
        }
        return snapshot
    }

    /// Writes a new snapshot; never replaces one of the same id.
    func create(_ snapshot: WorldSnapshot) throws(SnapshotStoreError) {
        let id = snapshot.summary.id
        do { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700]) } catch {
            throw .io("cannot create \(directory)")
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let bytes: Data
        do { bytes = try encoder.encode(snapshot) } catch { throw .io("cannot encode the snapshot") }
        let temporary = directory + "/.\(id).json.tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard fd >= 0 else { throw .io("cannot write \(temporary): \(String(cString: strerror(errno)))") }
        defer { unlink(temporary) }
        let written = bytes.withUnsafeBytes { raw -> Bool in
            var offset = 0
            while offset < raw.count {
                let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 { if errno == EINTR { continue }; return false }
                offset += n
            }
            return true
        }
        let synced = written && fsync(fd) == 0
        close(fd)
        guard synced else { throw .io("cannot write \(temporary): \(String(cString: strerror(errno)))") }
        // link(2) fails if the name exists: two snapshots with one id never overwrite each other.
        guard link(temporary, path(id)) == 0 else {
            if errno == EEXIST { throw .exists(id) }
            throw .io("cannot store snapshot '\(id)': \(String(cString: strerror(errno)))")
        }
        syncDirectory()
    }

    /// Returns whether there was a snapshot `id`.
    func delete(_ id: String) throws(SnapshotStoreError) -> Bool {
        guard unlink(path(id)) == 0 else {
            if errno == ENOENT { return false }
            throw .io("cannot delete snapshot '\(id)': \(String(cString: strerror(errno)))")
        }
        syncDirectory()
        return true
    }

    private func syncDirectory() {
        let fd = open(directory, O_RDONLY)
        guard fd >= 0 else { return }
        _ = fsync(fd)
        close(fd)
    }
}
