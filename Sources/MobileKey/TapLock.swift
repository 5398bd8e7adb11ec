import Foundation
import KeywayCrypto
import Synchronization

/// Why a tap was refused before or after the credential itself was checked. Credential reasons come
/// from the `Verifier`; the rest belong to the tap protocol. Raw values are stable: events, the
/// control API and the result notification carry them.
public enum TapDenial: Equatable, Sendable, CustomStringConvertible {
    case credential(DenialReason)
    /// Presentation not a valid message, or fragments out of order / too large.
    case malformedPresentation
    /// AES-GCM failed: a flipped bit, or a presentation made for another session's keys.
    case decryptionFailed
    /// The same presentation (or phone ephemeral key) was already seen by this lock.
    case replayed
    /// No hello was issued on this connection, or its nonce was already consumed.
    case nonceUnknown
    case nonceExpired
    /// The credential is valid but the phone did not prove it holds the `cnf` private key.
    case proofOfPossessionFailed
    /// The credential does not carry the right for the requested action (office mode).
    case actionNotPermitted
    /// A message of another protocol version (a version 1 phone): this lock speaks version 2 only.
    case protocolVersionUnsupported
    /// The phone's hello is not a valid message (strict parsing, a point on P-256).
    case malformedPhoneHello

    public var code: String {
        switch self {
        case .credential(let r): return r.rawValue
        case .malformedPresentation: return "malformed_presentation"
        case .decryptionFailed: return "tampered"
        case .replayed: return "replayed"
        case .nonceUnknown: return "nonce_unknown"
        case .nonceExpired: return "nonce_expired"
        case .proofOfPossessionFailed: return "proof_of_possession_failed"
        case .actionNotPermitted: return "action_not_permitted"
        case .protocolVersionUnsupported: return "protocol_version_unsupported"
        case .malformedPhoneHello: return "malformed_phone_hello"
        }
    }
    public var description: String { code }
}

/// The outcome of the lock-side protocol for one presentation, before the lock's own state machine
/// (office mode, hardware faults) has its say.
public enum TapEvaluation: Sendable {
    case accepted(credential: Credential, action: TapAction)
    /// `credential` is set when the credential parsed but was refused, so the event can name the
    /// user and key id.
    case denied(TapDenial, credential: Credential?, action: TapAction?)

    public var denial: TapDenial? {
        if case .denied(let d, _, _) = self { return d }
        return nil
    }
}

/// Nonces the lock has handed out, shared by every connection to one lock. A nonce answers exactly
/// one presentation within `TapProtocol.nonceLifetime`; recently seen presentations are remembered
/// (bounded) so a replay is named as such rather than as a decryption failure.
public final class TapReplayGuard: Sendable {
    private struct State {
        var issued: [[UInt8]: Date] = [:]
        var seen: Set<[UInt8]> = []
        var seenOrder: [[UInt8]] = []
        var seenHead = 0
    }
    private let state = PthreadLocked(State())
    private let capacity: Int

    public init(capacity: Int = 4096) { self.capacity = capacity }

    func issue(_ nonce: [UInt8], at now: Date) {
        state.withLock { s in
            prune(&s, now)
            s.issued[nonce] = now
        }
    }

    enum Consume { case ok, unknown, expired }
    func consume(_ nonce: [UInt8], at now: Date) -> Consume {
        guard let at = state.withLock({ $0.issued.removeValue(forKey: nonce) }) else { return .unknown }
        // A lock clock rolled back also expires the nonce: it cannot vouch for its freshness.
        let age = now.timeIntervalSince(at)
        return (age < 0 || age > TapProtocol.nonceLifetime) ? .expired : .ok
    }

    /// Whether a fingerprint was recorded (by an earlier presentation that decrypted).
    func hasSeen(_ fingerprint: [UInt8]) -> Bool {
        state.withLock { $0.seen.contains(fingerprint) }
    }

    /// Records a fingerprint; returns false when it was seen before (a replay). Called only once
    /// the presentation has authenticated (AES-GCM), so nobody can poison the guard with a victim's
    /// ephemeral key sniffed from the air.
    func firstSighting(_ fingerprint: [UInt8], at now: Date) -> Bool {
        state.withLock { s in
            guard s.seen.insert(fingerprint).inserted else { return false }
            // FIFO eviction in O(1): a flood of junk cannot make each tap slower.
            if s.seenOrder.count < capacity {
                s.seenOrder.append(fingerprint)
            } else {
                s.seen.remove(s.seenOrder[s.seenHead])
                s.seenOrder[s.seenHead] = fingerprint
                s.seenHead = (s.seenHead + 1) % capacity
            }
            return true
        }
    }

    private func prune(_ s: inout State, _ now: Date) {
        guard s.issued.count >= capacity else { return }
        s.issued = s.issued.filter { now.timeIntervalSince($0.value) <= TapProtocol.nonceLifetime }
        if s.issued.count >= capacity, let oldest = s.issued.min(by: { $0.value < $1.value }) { s.issued.removeValue(forKey: oldest.key) }
    }
}

/// The lock's side of the tap protocol for one lock: its identity, the verifier, and the replay
/// guard shared across connections. Pure with respect to time: every call takes `now`.
public struct TapLockIdentity: Sendable {
    public let lockID: String
    public let deviceKey: P256.PrivateKey
    public let certificate: [UInt8]
    public let verifier: Verifier
    public let replayGuard: TapReplayGuard
    /// FAST keys made by full exchanges this identity granted. A new identity (re-provisioning) starts
    /// with none, so no key made under the old site keys answers.
    public let fastKeys: TapFastKeyTable

    public init(lockID: String, deviceKey: P256.PrivateKey, certificate: [UInt8], verifier: Verifier, replayGuard: TapReplayGuard = TapReplayGuard(),
                fastKeys: TapFastKeyTable = TapFastKeyTable()) {
        self.lockID = lockID; self.deviceKey = deviceKey; self.certificate = certificate
        self.verifier = verifier; self.replayGuard = replayGuard; self.fastKeys = fastKeys
    }

    /// Answers a phone hello: a fresh nonce and ephemeral key, the reader hello signed over both
    /// ephemeral keys, the transaction id, the lock id and the site, and the tap's keys.
    /// - Throws: `TapMessageError` for a phone hello that is not valid (`.unsupportedVersion` for a
    ///   phone of another protocol version); a crypto error only if OpenSSL fails.
    public func startSession(phoneHello bytes: [UInt8], now: Date) throws -> TapLockSession {
        try startSession(phoneHello: bytes, now: now, ephemeral: try P256.PrivateKey(), nonce: try SecureRandom.bytes(TapProtocol.nonceSize))
    }

    /// With the lock's randomness given: for test vectors only (a lock never reuses either).
    /// `signature`, when given, is a recorded signature over the same hello (ECDSA is randomised), so
    /// a recorded exchange replays byte for byte.
    @_spi(TapVectors) public func startSession(phoneHello bytes: [UInt8], now: Date, ephemeral: P256.PrivateKey, nonce: [UInt8],
                                               signature: [UInt8]? = nil) throws -> TapLockSession {
        let phoneHello = try PhoneHello(decoding: bytes)
        var hello = ReaderHello(lockID: lockID, nonce: nonce, lockTime: UInt64(max(0, now.timeIntervalSince1970)),
                                lockEphemeralKey: ephemeral.publicKey.uncompressed, certificate: certificate, signature: [])
        hello.signature = try signature ?? ECDSA.sign(hello.toBeSigned(siteID: verifier.siteID, phoneHello: phoneHello), with: deviceKey)
        let helloBytes = hello.encoded()
        let keys = try TapKeySchedule(sharedSecret: try ECDH.sharedSecret(ephemeral, try P256.PublicKey(uncompressed: phoneHello.phoneEphemeralKey)),
                                      phoneHelloBytes: bytes, readerHelloBytes: helloBytes,
                                      transactionID: phoneHello.transactionID, nonce: nonce)
        replayGuard.issue(nonce, at: now)
        return TapLockSession(identity: self, phoneHello: phoneHello, hello: hello, helloBytes: helloBytes, keys: keys)
    }
}

/// One connection's tap: created when the phone writes its hello, finished by one presentation.
public final class TapLockSession: Sendable {
    public let identity: TapLockIdentity
    public let phoneHello: PhoneHello
    public let hello: ReaderHello
    /// The reader hello as sent (what the phone reads).
    public let helloBytes: [UInt8]
    let keys: TapKeySchedule
    /// The tap's keys (test vectors).
    @_spi(TapVectors) public var keySchedule: TapKeySchedule { keys }
    /// Set once the presentation opened: from then on the result is MACed with the tap's key.
    private let opened = Atomic<Bool>(false)

    init(identity: TapLockIdentity, phoneHello: PhoneHello, hello: ReaderHello, helloBytes: [UInt8], keys: TapKeySchedule) {
        self.identity = identity; self.phoneHello = phoneHello; self.hello = hello; self.helloBytes = helloBytes; self.keys = keys
    }

    /// Runs every check in a fixed order, never using a field before what authenticates it has been
    /// checked: the session (AES-GCM), then the credential's issuer signature, then the phone's proof
    /// of possession, and only then any claim. `revocations` is the list the lock holds right now.
    public func evaluate(_ bytes: [UInt8], now: Date, revocations: RevocationList) -> TapEvaluation {
        let outer: Presentation
        do { outer = try Presentation(decoding: bytes) } catch {
            if case .unsupportedVersion = error { return .denied(.protocolVersionUnsupported, credential: nil, action: nil) }
            return .denied(.malformedPresentation, credential: nil, action: nil)
        }
        // A presentation (or phone ephemeral key) that already decrypted once is a replay. Only
        // looked up here; recorded after AES-GCM below.
        let fingerprint = SHA256.hash(bytes)
        let phoneKey = phoneHello.phoneEphemeralKey
        if identity.replayGuard.hasSeen(fingerprint) || identity.replayGuard.hasSeen(phoneKey) {
            return .denied(.replayed, credential: nil, action: nil)
        }
        switch identity.replayGuard.consume(hello.nonce, at: now) {
        case .ok: break
        case .unknown: return .denied(.nonceUnknown, credential: nil, action: nil)
        case .expired: return .denied(.nonceExpired, credential: nil, action: nil)
        }
        guard let plain = try? AESGCM.open(outer.sealed, key: keys.presentationKey, nonce: keys.presentationNonce,
                                           associatedData: keys.transcriptHash) else {
            return .denied(.decryptionFailed, credential: nil, action: nil)
        }
        // Two copies racing past the look-up above: the second to record is the replay.
        guard identity.replayGuard.firstSighting(fingerprint, at: now),
              identity.replayGuard.firstSighting(phoneKey, at: now) else {
            return .denied(.replayed, credential: nil, action: nil)
        }
        opened.store(true, ordering: .releasing)
        guard let payload = try? PresentationPayload(decoding: plain) else {
            return .denied(.malformedPresentation, credential: nil, action: nil)
        }
        // Issuer signature, then proof of possession, then claims: until the phone has proved it
        // holds the `cnf` key, the credential may be a copy, so nothing about it is judged, named
        // in the event, or revealed in the (MACed) result.
        let authentic: Credential
        switch identity.verifier.authenticate(payload.credential) {
        case .failure(let reason): return .denied(.credential(reason), credential: nil, action: payload.action)
        case .success(let c): authentic = c
        }
        // The proof must be in low-S form: a conformant phone never emits the other (ECDSA.sign).
        guard ECDSA.isLowS(payload.proof), ECDSA.verify(payload.proof, of: keys.proofInput(payload.action), by: authentic.holderKey) else {
            return .denied(.proofOfPossessionFailed, credential: nil, action: payload.action)
        }
        let credential: Credential
        switch identity.verifier.decide(authentic, at: now, revocations: revocations) {
        case .denied(let reason): return .denied(.credential(reason), credential: authentic, action: payload.action)
        case .granted(let c): credential = c
        }
        if payload.action != .open, !credential.officeMode {
            return .denied(.actionNotPermitted, credential: credential, action: payload.action)
        }
        // Accepted: the FAST key for this credential at this lock, from the tap's exporter secret. The
        // phone makes the same one when its authenticated result says granted.
        if let key = try? TapFastKey(exporterSecret: keys.exporterSecret, siteID: identity.verifier.siteID, lockID: identity.lockID,
                                     credential: payload.credential, credentialKeyID: credential.keyID) {
            identity.fastKeys.store(key, credential: credential, revocationListVersion: revocations.version)
        }
        return .accepted(credential: credential, action: payload.action)
    }

    /// The result notification; authenticated when the presentation decrypted.
    public func resultMessage(granted: Bool, reason: String?, openMilliseconds: UInt32) -> [UInt8] {
        var msg = TapResultMessage(granted: granted, reason: reason, openMilliseconds: openMilliseconds)
        if opened.load(ordering: .acquiring) { msg.mac = try? keys.resultMAC(msg) }
        return msg.encoded()
    }
}
