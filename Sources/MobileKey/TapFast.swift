import Foundation
import KeywayCrypto

/// FAST repeat tap (docs/PROTOCOL.md, "FAST repeat tap"), in the manner of Aliro's FAST mode: after a
/// full exchange the lock granted, phone and lock both hold a persistent symmetric key bound to the
/// credential, the lock and the site. The next tap is one message each way and symmetric crypto
/// only — HMAC to authenticate the request, HKDF for the tap's key, HMAC on the result — and the lock
/// still judges the credential's claims (validity, schedule, revocation) as on a full tap.
public enum TapFast {
    /// Upper bound on a FAST request from the air (49 bytes while its counter is below 24, at most 57).
    public static let maxRequestSize = 96
    public static let keyIDSize = 16
    public static let keySize = 32
    public static let macSize = 16
    /// How far the phone time in a FAST request may be from the lock's clock. A conformant phone
    /// checked the lock's clock within this bound on the full exchange that made the key; a request
    /// held back and released later (a relay) goes stale.
    public static let requestLifetime: Double = TapProtocol.lockTimeTolerance
    /// The lock keeps at most this many FAST keys (one per credential); the oldest goes first. A
    /// phone whose key went simply falls back to a full exchange.
    public static let lockTableCapacity = 256

    static let keyInfo = Array("KeywayFast2 key".utf8)
    static let sessionInfo = Array("KeywayFast2 session".utf8)
}

/// How a tap ran: the whole exchange, or a FAST repeat tap (`POST /v1/taps` `mode`).
public enum TapMode: String, Sendable, Equatable, CaseIterable { case full, fast }

/// Why a tap did not use FAST but ran the full exchange. None of them is an event: the full exchange
/// that follows records the tap's one event.
public enum TapFastFallback: String, Sendable, Equatable, CaseIterable {
    /// The phone holds no FAST key for this lock (never tapped it in full, or its result was not a grant).
    case noKey = "no_fast_key"
    /// The phone's credential is not the one its FAST key was made for (re-issued, replaced).
    case credentialChanged = "credential_changed"
    /// The lock certificate the phone verified on the full exchange no longer vouches for the lock:
    /// expired, its issuer key no longer among the phone's trust anchors, or revoked. The full exchange
    /// shows the phone the lock's certificate again (and the phone refuses it if it must).
    case lockCertificateInvalid = "lock_certificate_invalid"
    /// The lock holds no key under that FAST key id (never made, evicted, made by another lock, or the
    /// lock was re-provisioned since): ATT application error 0x86.
    case lockKeyUnknown = "fast_key_unknown"
    /// The lock's revocation list changed since the key was made, so the lock retired it: ATT
    /// application error 0x87.
    case revocationListChanged = "revocation_list_changed"
}

/// The persistent key of one (credential, lock) pair, derived from a full exchange's exporter secret:
///   OKM    = HKDF-SHA256(IKM = X, salt = cti, info = "KeywayFast2 key" ‖ CBOR [site id, lock id, SHA-256(credential)], L = 48)
///   key id = OKM[0..16), K_fast = OKM[16..48)
public struct TapFastKey: Sendable, Equatable, Codable {
    public let keyID: [UInt8]
    public let key: [UInt8]

    public init(keyID: [UInt8], key: [UInt8]) { self.keyID = keyID; self.key = key }

    public init(exporterSecret: [UInt8], siteID: String, lockID: String, credential: [UInt8], credentialKeyID: [UInt8]) throws {
        let binding = CBOR.array([.text(siteID), .text(lockID), .bytes(SHA256.hash(credential))]).encoded()
        let okm = try HKDF.deriveKey(inputKeyMaterial: exporterSecret, salt: credentialKeyID, info: TapFast.keyInfo + binding,
                                     outputLength: TapFast.keyIDSize + TapFast.keySize)
        keyID = Array(okm[0..<TapFast.keyIDSize])
        key = Array(okm[TapFast.keyIDSize...])
    }

    /// The request's MAC: HMAC-SHA256(K_fast, request bytes without key 6)[0..16).
    public func requestMAC(_ body: [UInt8]) throws -> [UInt8] {
        Array(try HMACSHA256.authenticate(body, key: key).prefix(TapFast.macSize))
    }

    /// The one tap's key: K_s = HKDF-SHA256(IKM = K_fast, salt = "", info = "KeywayFast2 session" ‖
    /// SHA-256(request bytes), L = 16). The request carries a fresh counter, so K_s is new per tap.
    public func sessionKey(request bytes: [UInt8]) throws -> [UInt8] {
        try HKDF.deriveKey(inputKeyMaterial: key, salt: [], info: TapFast.sessionInfo + SHA256.hash(bytes), outputLength: 16)
    }
}

/// Phone → lock, written to the FAST characteristic (one Write Request; a long write below MTU 50).
///   { 1: 2, 2: bstr .size 16 FAST key id, 3: uint counter, 4: uint phone time, 5: uint action, 6: bstr .size 16 mac }
public struct FastRequest: Sendable, Equatable {
    public var keyID: [UInt8]
    public var counter: UInt64
    public var phoneTime: UInt64
    public var action: TapAction
    public var mac: [UInt8]

    public init(keyID: [UInt8], counter: UInt64, phoneTime: UInt64, action: TapAction, mac: [UInt8] = []) {
        self.keyID = keyID; self.counter = counter; self.phoneTime = phoneTime; self.action = action; self.mac = mac
    }

    /// The bytes the MAC covers: the map without key 6.
    public var macInput: [UInt8] {
        CBOR.map([1: .int(TapProtocol.version), 2: .bytes(keyID), 3: .unsigned(counter), 4: .unsigned(phoneTime),
                  5: .unsigned(UInt64(action.rawValue))]).encoded()
    }

    public func encoded() -> [UInt8] {
        CBOR.map([1: .int(TapProtocol.version), 2: .bytes(keyID), 3: .unsigned(counter), 4: .unsigned(phoneTime),
                  5: .unsigned(UInt64(action.rawValue)), 6: .bytes(mac)]).encoded()
    }

    /// Strict, as every tap message: exactly these keys, deterministic encoding, sizes exact.
    public init(decoding bytes: [UInt8]) throws(TapMessageError) {
        let m = try decodeTapMap(bytes, max: TapFast.maxRequestSize, required: [1, 2, 3, 4, 5, 6])
        guard let counter = m[3]?.uint64Value, counter > 0 else { throw .malformed("counter") }
        guard let time = m[4]?.uint64Value else { throw .malformed("phone time") }
        guard let a = m[5]?.uint64Value, a <= 255, let action = TapAction(rawValue: UInt8(a)) else { throw .malformed("action") }
        self.init(keyID: try tapBytesField(m, 2, "FAST key id", count: TapFast.keyIDSize), counter: counter, phoneTime: time,
                  action: action, mac: try tapBytesField(m, 6, "mac", count: TapFast.macSize))
    }
}

// MARK: - Lock side

/// The FAST keys one lock holds, in RAM (a lock that restarts has none, and its phones fall back to a
/// full exchange). Bounded: one entry per credential, the oldest made goes first. Each entry keeps
/// the credential as authenticated on the full exchange, so a FAST tap re-judges its claims, the
/// revocation list version it was made under, and the highest counter accepted (replay guard).
public final class TapFastKeyTable: Sendable {
    struct Entry {
        let key: TapFastKey
        let credential: Credential
        let revocationListVersion: UInt64
        var lastCounter: UInt64
    }
    private struct State {
        var byKeyID: [[UInt8]: Entry] = [:]
        /// FAST key id of each credential's entry (credential key id → FAST key id).
        var byCredential: [[UInt8]: [UInt8]] = [:]
        var order: [[UInt8]] = []   // FAST key ids, oldest first (may hold ids already replaced)
    }
    private let state = PthreadLocked(State())
    private let capacity: Int

    public init(capacity: Int = TapFast.lockTableCapacity) { self.capacity = max(1, capacity) }

    public var count: Int { state.withLock { $0.byKeyID.count } }

    /// Stores the key of an accepted full exchange (`TapLockSession.evaluate`); public to fuzz fixtures.
    @_spi(TapVectors) public func store(_ key: TapFastKey, credential: Credential, revocationListVersion: UInt64) {
        state.withLock { s in
            if let old = s.byCredential[credential.keyID] { s.byKeyID.removeValue(forKey: old) }
            s.byKeyID[key.keyID] = Entry(key: key, credential: credential, revocationListVersion: revocationListVersion, lastCounter: 0)
            s.byCredential[credential.keyID] = key.keyID
            s.order.append(key.keyID)
            while s.byKeyID.count > capacity || s.order.count > 4 * capacity {
                let oldest = s.order.removeFirst()
                if let e = s.byKeyID[oldest], s.byCredential[e.credential.keyID] == oldest, s.byKeyID.count > capacity {
                    s.byKeyID.removeValue(forKey: oldest)
                    s.byCredential.removeValue(forKey: e.credential.keyID)
                }
            }
        }
    }

    func entry(_ keyID: [UInt8]) -> Entry? { state.withLock { $0.byKeyID[keyID] } }

    func remove(_ keyID: [UInt8]) {
        state.withLock { s in
            guard let e = s.byKeyID.removeValue(forKey: keyID) else { return }
            if s.byCredential[e.credential.keyID] == keyID { s.byCredential.removeValue(forKey: e.credential.keyID) }
        }
    }

    /// Accepts `counter` for the key if it is above every counter accepted so far (atomically: of two
    /// copies racing, one wins).
    func advance(_ keyID: [UInt8], to counter: UInt64) -> Bool {
        state.withLock { s in
            guard var e = s.byKeyID[keyID], counter > e.lastCounter else { return false }
            e.lastCounter = counter
            s.byKeyID[keyID] = e
            return true
        }
    }
}

/// The lock's answer to one FAST request.
public enum FastTapEvaluation: Sendable {
    /// No FAST for this request: the lock answers the write with ATT application error 0x86/0x87 and
    /// records nothing; the phone runs the full exchange on the same connection.
    case fallBack(TapFastFallback)
    /// A decision (recorded as the tap's one event). `resultKey` is the tap's key once the request's MAC
    /// verified (the result is then MACed), nil before.
    case evaluated(TapEvaluation, resultKey: [UInt8]?)
}

extension TapLockIdentity {
    /// Evaluates a FAST request in a fixed order (docs/PROTOCOL.md, "FAST repeat tap"): version, parse,
    /// key id known, MAC, revocation list unchanged, counter above the last, phone time within 60 s of
    /// the lock's, then the credential's claims with `revocations`, then the action's right.
    public func evaluateFast(_ bytes: [UInt8], now: Date, revocations: RevocationList) -> FastTapEvaluation {
        let request: FastRequest
        do { request = try FastRequest(decoding: bytes) } catch {
            if case .unsupportedVersion = error { return .evaluated(.denied(.protocolVersionUnsupported, credential: nil, action: nil), resultKey: nil) }
            return .evaluated(.denied(.malformedPresentation, credential: nil, action: nil), resultKey: nil)
        }
        guard let entry = fastKeys.entry(request.keyID) else { return .fallBack(.lockKeyUnknown) }
        guard let want = try? entry.key.requestMAC(request.macInput), constantTimeEqual(want, request.mac) else {
            // Not made with the key this id names: a forgery, or a key of another lock whose id was copied.
            return .evaluated(.denied(.decryptionFailed, credential: nil, action: request.action), resultKey: nil)
        }
        guard entry.revocationListVersion == revocations.version else {
            fastKeys.remove(request.keyID)
            return .fallBack(.revocationListChanged)
        }
        guard let resultKey = try? entry.key.sessionKey(request: bytes) else {
            return .evaluated(.denied(.decryptionFailed, credential: nil, action: request.action), resultKey: nil)
        }
        // A copy of an earlier request (or an older one released late): the counter is spent. Named
        // like a full tap's replay: no user, no key id.
        guard fastKeys.advance(request.keyID, to: request.counter) else {
            return .evaluated(.denied(.replayed, credential: nil, action: request.action), resultKey: resultKey)
        }
        guard abs(Double(request.phoneTime) - now.timeIntervalSince1970) <= TapFast.requestLifetime else {
            return .evaluated(.denied(.nonceExpired, credential: nil, action: request.action), resultKey: resultKey)
        }
        // Only the holder of K_fast — the phone that proved possession on the full exchange — made this
        // request, so from here on the event names the credential, exactly as a full tap's step 10.
        switch verifier.decide(entry.credential, at: now, revocations: revocations) {
        case .denied(let reason):
            return .evaluated(.denied(.credential(reason), credential: entry.credential, action: request.action), resultKey: resultKey)
        case .granted(let c):
            if request.action != .open, !c.officeMode {
                return .evaluated(.denied(.actionNotPermitted, credential: c, action: request.action), resultKey: resultKey)
            }
            return .evaluated(.accepted(credential: c, action: request.action), resultKey: resultKey)
        }
    }

    /// The result notification of a FAST tap: MACed with the tap's key when the request verified.
    public static func fastResultMessage(granted: Bool, reason: String?, openMilliseconds: UInt32, resultKey: [UInt8]?) -> [UInt8] {
        var msg = TapResultMessage(granted: granted, reason: reason, openMilliseconds: openMilliseconds)
        if let resultKey { msg.mac = try? TapResultMessage.mac(msg, key: resultKey) }
        return msg.encoded()
    }
}

// MARK: - Phone side

/// The FAST keys a phone holds, one per lock, each for the credential it was made with. Codable so a
/// phone outside the emulator (`keyway phone tap --fast-keys FILE`) keeps them between taps.
public final class TapFastKeyring: Sendable {
    public struct Entry: Sendable, Codable, Equatable {
        public var lockID: String
        public var key: TapFastKey
        /// SHA-256 of the credential the key was made with: another credential does not use it.
        public var credentialHash: [UInt8]
        /// The last counter sent; the next request sends one more.
        public var counter: UInt64
        /// The lock certificate verified on the full exchange that made the key: its issuer key id,
        /// validity and id (docs/PROTOCOL.md §7), re-checked before every FAST tap without a signature.
        public var certificateIssuerKeyID: [UInt8]
        public var certificateIssuedAt: Date
        public var certificateExpires: Date
        public var certificateID: [UInt8]
    }
    private let entries: PthreadLocked<[String: Entry]>

    public init(_ entries: [Entry] = []) {
        self.entries = PthreadLocked(Dictionary(entries.map { ($0.lockID, $0) }, uniquingKeysWith: { _, b in b }))
    }

    public var all: [Entry] { entries.withLock { Array($0.values).sorted { $0.lockID < $1.lockID } } }

    public func entry(for lockID: String) -> Entry? { entries.withLock { $0[lockID] } }

    func store(_ e: Entry) { entries.withLock { $0[e.lockID] = e } }

    public func forget(_ lockID: String) { _ = entries.withLock { $0.removeValue(forKey: lockID) } }

    /// The next counter for the lock's key (persisted before the request leaves: a counter is never
    /// sent twice, even if the tap breaks off).
    func nextCounter(_ lockID: String) -> (Entry, UInt64)? {
        entries.withLock { m in
            guard var e = m[lockID], e.counter < UInt64.max else { return nil }
            e.counter += 1
            m[lockID] = e
            return (e, e.counter)
        }
    }
}

extension TapPhone {
    /// A FAST tap ready to write, or why the phone runs the full exchange instead.
    public enum FastStart: Sendable {
        case request(FastPending)
        case fallBack(TapFastFallback)
    }

    /// The phone's FAST request to `lockID` for `action`, if it holds a key for that lock made with
    /// its current credential.
    public func fastStart(lockID: String, action: TapAction, at now: Date) throws -> FastStart {
        guard let keyring = fastKeys, keyring.entry(for: lockID) != nil else { return .fallBack(.noKey) }
        guard let held = keyring.entry(for: lockID), held.credentialHash == SHA256.hash(credential) else {
            keyring.forget(lockID)
            return .fallBack(.credentialChanged)
        }
        guard trustedIssuers.key(for: held.certificateIssuerKeyID) != nil,
              LockCertificate.validityError(issuedAt: held.certificateIssuedAt, expires: held.certificateExpires, at: now,
                                            clockSkewTolerance: Verifier.defaultClockSkewTolerance) == nil,
              !revokes(held.certificateID) else {
            keyring.forget(lockID)
            return .fallBack(.lockCertificateInvalid)
        }
        guard let (entry, counter) = keyring.nextCounter(lockID) else { return .fallBack(.noKey) }
        return .request(try fastRequest(entry.key, lockID: lockID, counter: counter, action: action, at: now))
    }

    /// With the counter given: test vectors and fuzz seeds.
    @_spi(TapVectors) public func fastRequest(_ key: TapFastKey, lockID: String, counter: UInt64, action: TapAction, at now: Date) throws -> FastPending {
        var request = FastRequest(keyID: key.keyID, counter: counter, phoneTime: UInt64(max(0, now.timeIntervalSince1970)), action: action)
        request.mac = try key.requestMAC(request.macInput)
        let bytes = request.encoded()
        return FastPending(request: bytes, lockID: lockID, resultKey: try key.sessionKey(request: bytes))
    }

    /// After a full exchange whose authenticated result granted: remember the FAST key the lock made
    /// from the same exporter secret (the lock makes one whenever it accepts the presentation).
    public func rememberFastKey(after pending: Pending, result: TapResultMessage) {
        guard let keyring = fastKeys, result.granted, let keyID = credentialKeyID,
              let key = try? TapFastKey(exporterSecret: pending.keys.exporterSecret, siteID: siteID, lockID: pending.lockID,
                                        credential: credential, credentialKeyID: keyID) else { return }
        let cert = pending.certificate
        keyring.store(.init(lockID: pending.lockID, key: key, credentialHash: SHA256.hash(credential), counter: 0,
                            certificateIssuerKeyID: cert.issuerKeyID, certificateIssuedAt: cert.issuedAt, certificateExpires: cert.expires,
                            certificateID: cert.id))
    }

    /// A phone that wrote its FAST request and waits for the result.
    public struct FastPending: Sendable {
        public let request: [UInt8]
        public let lockID: String
        let resultKey: [UInt8]
        @_spi(TapVectors) public var sessionKey: [UInt8] { resultKey }

        /// Parses and authenticates the lock's result with the tap's key.
        public func result(_ bytes: [UInt8]) throws(TapPhoneError) -> TapResultMessage {
            let msg: TapResultMessage
            do { msg = try TapResultMessage(decoding: bytes) } catch { throw .malformedResult("\(error)") }
            guard let mac = msg.mac, let want = try? TapResultMessage.mac(msg, key: resultKey), constantTimeEqual(mac, want) else {
                throw .resultNotAuthenticated
            }
            return msg
        }
    }
}
