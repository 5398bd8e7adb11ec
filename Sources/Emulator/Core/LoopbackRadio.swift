import BLE
import Foundation
import Hardware
import KeywayCrypto
@_spi(NonConformantPhone) import MobileKey

/// How the emulator's built-in phone behaves. `conformant` (the default) refuses, before revealing
/// anything, a lock outside its credential's `aud` or whose clock is more than 60 s off its own (the
/// tap is then `phone_refused`, and the lock records nothing). `nonConformant` presents to any
/// certified lock of the site, so a QA user or a test can make the lock itself judge `wrong_lock`.
public enum BuiltInPhoneMode: String, Sendable, CaseIterable { case conformant, nonConformant = "non_conformant" }

/// The in-process radio: every lock's GATT server, and the built-in phone that taps over a
/// `LoopbackLink` — the same ATT bytes a real BLE link carries, optionally captured to btsnoop.
final class LoopbackRadio: Sendable {
    let locks: [String: LockGATT]
    let capture: BTSnoopWriter?
    /// Where the built-in phone's revocation list comes from: phones receive the site's list with
    /// their keys, so the built-in phone holds the directory's current one at every tap.
    private let directory: SiteDirectory
    /// The built-in phone's private keys, parsed once per key as a phone keeps its key in memory:
    /// OpenSSL 3 decodes a PEM private key in about 0.4 ms, most of a whole tap's crypto.
    private let holderKeys = Locked<[String: P256.PrivateKey]>([:])
    /// The built-in phone's FAST keys, one keyring per issued key (what a phone app keeps in its
    /// storage). In RAM like the locks' tables: a reset or a restart starts both sides afresh.
    private let fastKeyrings = Locked<[String: TapFastKeyring]>([:])
    /// One tap at a time per key, as one phone makes them: API callers sharing a key queue, so its FAST
    /// counters reach the lock in the order they were drawn (an older one arriving after a newer one
    /// is, rightly, a replay to the lock).
    private let turns = KeyTurns()

    init(site: Site, capturePath: String?, clock: any KeywayClock) throws {
        var locks: [String: LockGATT] = [:]
        for l in site.locks {
            locks[l.id] = try LockGATT(lock: l, deviceName: site.config.lockIndex[l.id].map { site.config.locks[$0].name } ?? l.id)
        }
        self.locks = locks
        directory = site.directory
        capture = try capturePath.map { try BTSnoopWriter(path: $0, clock: BTSnoopWriter.systemClock) }
    }

    func close() { capture?.close() }

    private func holderKey(_ key: IssuedKey) throws -> P256.PrivateKey {
        guard let pem = key.holderPrivateKeyPEM else { return try P256.PrivateKey() }
        if let known = holderKeys.withLock({ $0[key.keyID] }) { return known }
        let parsed = try P256.PrivateKey(pem: pem)
        holderKeys.withLock { keys in
            if keys.count >= 4096 { keys.removeAll() }   // bounded: a test issuing keys forever
            keys[key.keyID] = parsed
        }
        return parsed
    }

    private func fastKeyring(_ key: IssuedKey) -> TapFastKeyring {
        fastKeyrings.withLock { rings in
            if let ring = rings[key.keyID] { return ring }
            if rings.count >= 4096 { rings.removeAll() }   // bounded, as holderKeys
            let ring = TapFastKeyring()
            rings[key.keyID] = ring
            return ring
        }
    }

    /// How a tap by the built-in phone ended: the lock decided, or the phone refused the lock after
    /// reading its hello (it revealed nothing, so the lock never decided and recorded nothing).
    enum Outcome {
        /// `mode` is what the phone ran (full when its result did not authenticate: it cannot know).
        case decided(Decision, phoneResult: TapResultMessage?, mode: TapMode, fastFallback: TapFastFallback?)
        case phoneRefused(TapPhoneError)

        /// The tap protocol version the built-in phone spoke (for the API's `protocol`).
        var protocolVersion: Int64 { TapProtocol.version }
        /// `full` or `fast` (for the API's `mode`).
        var mode: String {
            if case .decided(_, _, let m, _) = self { return m.rawValue }
            return TapMode.full.rawValue
        }
    }

    /// One whole tap by the built-in phone holding `key`: connect, MTU, discovery, subscribe, read
    /// the hello, write the presentation, wait for the result notification, disconnect.
    func tap(lockID: String, key: IssuedKey, action: TapAction, distance: Double, siteID: String, issuers: TrustedIssuers,
             cache: LockCertificateCache, now: Date, phoneMode: BuiltInPhoneMode = .conformant,
             allowFast: Bool = true) async throws -> Outcome {
        guard let gatt = locks[lockID] else { throw APIError.notFound("lock", lockID) }
        await turns.acquire(key.keyID)
        defer { Task { await turns.release(key.keyID) } }
        // A key issued to an external phone: the built-in phone lacks its private key, so it can only
        // sign with a key of its own — the lock must refuse the proof of possession.
        let holder = try holderKey(key)
        var phone = TapPhone(credential: key.credential, holderKey: holder, siteID: siteID, trustedIssuers: issuers, certificateCache: cache,
                             fastKeys: fastKeyring(key), revocations: await directory.revocationList)
        if phoneMode == .nonConformant { phone = phone.nonConformant() }

        let link = LoopbackLink()
        var lockSide: any ATTBearer = link.peripheral
        if let capture { lockSide = try CapturingBearer(wrapping: link.peripheral, writer: capture, role: .peripheral) }
        let session = try gatt.open(lockSide, distance: distance)
        let client = try GATTClient(bearer: link.central)
        defer { client.close() }

        var phoneResult: TapResultMessage? = nil
        var mode = TapMode.full, fastFallback: TapFastFallback? = nil
        do {
            // Without FAST (`fast: false`) the phone runs the full exchange, which gives both sides a new FAST key.
            let outcome = try await PhoneTap.run(client: client, phone: phone, action: action, now: now, lockID: lockID, tryFast: allowFast)
            phoneResult = outcome.result
            mode = outcome.mode
            fastFallback = outcome.fastFallback
        } catch let e as PhoneTapError {
            switch e {
            case .helloRefused(let g): throw Self.apiError(g, lockID: lockID, distance: distance)
            case .phoneRefusedLock(let inner):
                // A refusal is a result of the tap; only a failure of the phone's own crypto is not.
                guard let refusal = inner as? TapPhoneError else { throw APIError(500, "internal", "the built-in phone failed") }
                return .phoneRefused(refusal)
            case .lockServiceNotFound, .lockServiceIncomplete: throw APIError(500, "radio", "\(e)")
            // The lock decided, but its result did not authenticate (or never came): the API reports the
            // lock's decision, and that the phone could not confirm it.
            case .noResult, .resultNotAuthenticated:
                // The link is done: whatever the lock decided on it is in the session, or nothing is.
                phoneResult = nil
                client.close()
            }
        }
        // The lock decided before it notified the result: its decision (and the receipt of its event)
        // comes back through this connection's session.
        guard let decision = await session.nextDecision() else { throw APIError(500, "radio", "the lock made no decision") }
        return .decided(decision, phoneResult: phoneResult, mode: mode, fastFallback: fastFallback)
    }

    static func apiError(_ e: GATTClientError, lockID: String, distance: Double) -> APIError {
        if case .attError(.application(let code), _, _) = e {
            switch code {
            case LockGATT.ApplicationError.outOfReach:
                return APIError(422, "out_of_reach", "phone at \(distance) m is out of reach of lock '\(lockID)'", field: "distance_m")
            case LockGATT.ApplicationError.unpowered: return APIError(409, "unpowered", "lock '\(lockID)' has no power")
            case LockGATT.ApplicationError.notProvisioned: return APIError(409, "not_provisioned", "lock '\(lockID)' has no site keys")
            default: break
            }
        }
        return APIError(502, "radio", "\(e)")
    }
}

extension Emulator {
    /// The lock side of the radio for lock `id`, for transports other than the loopback (BlueZ) to
    /// hand their connections to. Look it up per connection: `reset()` replaces the radio.
    public func lockGATT(_ id: String) -> LockGATT? { radio.locks[id] }

    /// The btsnoop writer of `--capture` (nil without it), so other transports' links land in the
    /// same capture as the loopback's.
    public var linkCapture: BTSnoopWriter? { radio.capture }
}

/// Turns per key: `acquire` waits while another tap holds the key; `release` hands the turn to the
/// next waiter in arrival order.
actor KeyTurns {
    private var busy: Set<String> = []
    private var waiting: [String: [CheckedContinuation<Void, Never>]] = [:]

    func acquire(_ key: String) async {
        guard busy.contains(key) else { busy.insert(key); return }
        await withCheckedContinuation { waiting[key, default: []].append($0) }
    }

    func release(_ key: String) {
        guard var queue = waiting[key], !queue.isEmpty else { busy.remove(key); return }
        let next = queue.removeFirst()
        waiting[key] = queue.isEmpty ? nil : queue
        next.resume()
    }
}
