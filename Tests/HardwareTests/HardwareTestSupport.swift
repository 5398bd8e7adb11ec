import Foundation
import XCTest
@testable import Hardware
import KeywayCrypto
import MobileKey

/// Repository root, found from this file's path (Tests/HardwareTests/…).
let repoRoot: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
let coworkingPath = repoRoot.appendingPathComponent("Fixtures/sites/coworking.yaml").path

/// Collects every record devices write, in order, and keeps what a flash would (last sequence, the
/// trail's records minus those dropped or collected, memory parts) so a test can rebuild a device from
/// it as the emulator does from the journal.
final class RecordLog: AuditStore, @unchecked Sendable {
    private let mutex = NSLock()
    private var items: [AuditRecord] = []
    private(set) var writes: [AuditWrite] = []
    private var flash: [String: SavedDevice] = [:]
    /// Sequences the trails reported lost, per device.
    private var lostSeqs: [String: [UInt64]] = [:]
    /// Whether `saved` answers (off: devices start new even though the log holds their writes).
    var restoring = false
    /// While set, writes never become durable (the process dies before their transaction commits).
    var crashing = false

    var sink: AuditSink { self }

    func saved(_ kind: DeviceKind, _ id: String) -> SavedDevice? {
        mutex.lock(); defer { mutex.unlock() }
        return restoring ? flash["\(kind.rawValue)/\(id)"] : nil
    }

    func write(_ w: AuditWrite) -> AuditReceipt {
        mutex.lock()
        if crashing {
            mutex.unlock()
            let receipt = AuditReceipt()
            receipt.resolve(nil)
            return receipt
        }
        writes.append(w)
        let key = "\(w.deviceKind.rawValue)/\(w.deviceID)"
        var f = flash[key] ?? SavedDevice(lastSequence: 0)
        if let r = w.record {
            items.append(r)
            f.lastSequence = max(f.lastSequence, r.sequence)
            if w.deviceKind == .lock { f.trail.append(r) }
        }
        lostSeqs[key, default: []] += w.dropped
        f.trail.removeAll { w.dropped.contains($0.sequence) }
        if let through = w.collectedThrough { f.trail.removeAll { $0.sequence <= through } }
        f.memory.merge(w.memory) { _, b in b }
        flash[key] = f
        mutex.unlock()
        let receipt = AuditReceipt()
        receipt.resolve(w.record.map { "\(key)/\($0.sequence)" })
        return receipt
    }

    func append(_ r: AuditRecord) { mutex.lock(); items.append(r); mutex.unlock() }

    var all: [AuditRecord] { mutex.lock(); defer { mutex.unlock() }; return items }

    func of(_ device: String) -> [AuditRecord] { all.filter { $0.deviceID == device } }
    func kinds(_ device: String) -> [AuditKind] { of(device).map(\.kind) }
    func last(_ device: String, _ kind: AuditKind) -> AuditRecord? { of(device).last { $0.kind == kind } }
    func lost(_ device: String) -> [UInt64] { mutex.lock(); defer { mutex.unlock() }; return lostSeqs["lock/\(device)"] ?? [] }
    func trail(_ device: String) -> [AuditRecord] { mutex.lock(); defer { mutex.unlock() }; return flash["lock/\(device)"]?.trail ?? [] }
    func clear() { mutex.lock(); items.removeAll(); mutex.unlock() }
}

/// Collected trails, per lock.
final class Collected: @unchecked Sendable {
    private let mutex = NSLock()
    private var items: [(iq: String, lock: String, records: [AuditRecord])] = []
    var collector: TrailCollector { { [weak self] iq, lock, records in self?.add(iq, lock, records) } }
    private func add(_ iq: String, _ lock: String, _ r: [AuditRecord]) { mutex.lock(); items.append((iq, lock, r)); mutex.unlock() }
    func records(lock: String) -> [AuditRecord] {
        mutex.lock(); defer { mutex.unlock() }
        return items.filter { $0.lock == lock }.flatMap(\.records)
    }
    func iqs(lock: String) -> [String] {
        mutex.lock(); defer { mutex.unlock() }
        return items.filter { $0.lock == lock }.map(\.iq)
    }
}

/// An instant given in ISO 8601 with an offset, e.g. "2025-01-06T10:00:00-08:00".
func at(_ iso: String) -> Date {
    let f = ISO8601DateFormatter()
    f.formatOptions = [.withInternetDateTime]
    guard let d = f.date(from: iso) else { fatalError("bad test date \(iso)") }
    return d
}

let pacific = SiteTimeZone(identifier: "America/Los_Angeles")!

func tag(_ hex: String) -> TagUID {
    guard let t = TagUID(hex: hex) else { fatalError("bad test tag \(hex)") }
    return t
}

/// A small site built in YAML, so tests read like site files.
func site(_ yaml: String, file: String = "test.yaml") throws -> SiteConfig {
    try SiteFile.parse(yaml: yaml, file: file)
}

/// Site keys made in memory for mobile-key tests: issuer, and a device key + certificate per lock.
struct TestKeys {
    let siteID: String
    let issuerKey: P256.PrivateKey
    let issuer: CredentialIssuer
    let identities: [String: TapLockIdentity]

    init(siteID: String, lockIDs: [String], now: Date, clockSkew: TimeInterval = Verifier.defaultClockSkewTolerance) throws {
        self.siteID = siteID
        issuerKey = try P256.PrivateKey()
        issuer = CredentialIssuer(siteID: siteID, key: issuerKey)
        var ids: [String: TapLockIdentity] = [:]
        for l in lockIDs {
            let device = try P256.PrivateKey()
            let cert = try issuer.certify(lockID: l, deviceKey: device.publicKey, issuedAt: now.addingTimeInterval(-86_400),
                                          expires: now.addingTimeInterval(10 * 365 * 86_400))
            let verifier = Verifier(siteID: siteID, lockID: l, issuers: TrustedIssuers([issuerKey.publicKey]),
                                    clockSkewTolerance: clockSkew)
            ids[l] = TapLockIdentity(lockID: l, deviceKey: device, certificate: cert.bytes, verifier: verifier)
        }
        identities = ids
    }

    var trusted: TrustedIssuers { TrustedIssuers([issuerKey.publicKey]) }

    /// Issues a key to a fresh phone; returns the phone ready to tap.
    func phone(user: String, locks: [String], validity: ValidityWindow, officeMode: Bool = false,
               at now: Date) throws -> (phone: TapPhone, credential: IssuedCredential) {
        let holder = try P256.PrivateKey()
        let issued = try issuer.issue(CredentialRequest(userID: user, lockIDs: locks, holderKey: holder.publicKey,
                                                        validity: validity, officeMode: officeMode), issuedAt: now)
        return (TapPhone(credential: issued.bytes, holderKey: holder, siteID: siteID, trustedIssuers: trusted), issued)
    }
}

/// One full tap of the mobile-key protocol between a phone and a lock, in process.
func tap(_ phone: TapPhone, on lock: Lock, action: TapAction = .open, distance: Double = 0) async throws -> (Decision, TapResultMessage) {
    let opening = try phone.open()
    let session = try await lock.beginTap(phoneHello: opening.phoneHello, distance: distance)
    let pending = try opening.present(readerHello: session.helloBytes, action: action, at: await lock.lockTime())
    let outcome = try await lock.finishTap(session, presentation: pending.presentation)
    let result = try pending.result(outcome.resultMessage)
    return (outcome.decision, result)
}
