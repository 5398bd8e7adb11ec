import Foundation
import KeywayCrypto

/// Why the phone refused to go on. The phone checks the reader before it reveals anything: a
/// forged or foreign reader learns neither the credential nor who is holding the phone.
public enum TapPhoneError: Error, Equatable, Sendable, CustomStringConvertible {
    case malformedHello(String)
    /// The hello's certificate does not vouch for this lock now: not from this site's issuer, for
    /// another site or lock, or outside its validity period at the phone's time.
    case untrustedLock(LockCertificateError)
    case badHelloSignature
    /// The reader hello's lock time is more than `TapProtocol.lockTimeTolerance` off the phone's
    /// clock: a lock whose clock is wrong, or a hello from another time.
    case lockClockSkewed(lockTime: UInt64)
    /// The (genuine) lock is not in the credential's `aud`: the phone has no key for it, so it
    /// reveals nothing to it — one lock's device key cannot harvest the site's credentials.
    case lockNotInCredential(String)
    case malformedResult(String)
    case resultNotAuthenticated

    public var description: String {
        switch self {
        case .malformedHello(let why): return "the reader hello is malformed: \(why)"
        case .untrustedLock(let e): return "the phone does not trust the lock: \(e)"
        case .badHelloSignature: return "the reader hello's signature does not verify with the certified device key"
        case .lockClockSkewed(let t): return "the lock's clock (\(t)) is more than \(Int(TapProtocol.lockTimeTolerance)) s off the phone's"
        case .lockNotInCredential(let lock): return "the phone holds no key for lock '\(lock)' (not in its credential's aud)"
        case .malformedResult(let why): return "the tap result is malformed: \(why)"
        case .resultNotAuthenticated: return "the tap result's MAC does not verify"
        }
    }

    /// Machine-readable, stable (docs/openapi.yaml, `TapResponse.reason` when `phone_refused`).
    public var code: String {
        switch self {
        case .malformedHello: return "malformed_hello"
        case .untrustedLock(let e): return e.code
        case .badHelloSignature: return "bad_hello_signature"
        case .lockClockSkewed: return "lock_clock_skewed"
        case .lockNotInCredential: return "lock_not_in_credential"
        case .malformedResult: return "malformed_result"
        case .resultNotAuthenticated: return "result_not_authenticated"
        }
    }
}

/// The phone's side of the tap protocol (what an app would implement): a credential, the private key
/// its `cnf` names, and the site issuer keys it trusts for lock certificates.
///
/// A tap: `open()` gives the phone hello to write; `Opening.present(readerHello:action:at:)` checks
/// the reader's answer — certificate, signature over both ephemeral keys and the transaction id,
/// lock time, the lock in the credential's `aud` — and only then seals the presentation.
public struct TapPhone: Sendable {
    public let credential: [UInt8]
    public let holderKey: P256.PrivateKey
    public let siteID: String
    public let trustedIssuers: TrustedIssuers
    public let certificateCache: LockCertificateCache?
    /// The locks the phone's own credential names (`aud`); nil when the phone cannot read its
    /// credential (then a conformant phone has a key for no lock).
    public let audience: Set<String>?
    /// The credential's key id (`cti`), which FAST keys are bound to; nil when unreadable.
    public let credentialKeyID: [UInt8]?
    /// The phone's FAST keys (nil: this phone never taps FAST).
    public let fastKeys: TapFastKeyring?
    /// The site's revocation list as the phone last received it with its keys (verified by whoever
    /// handed it over): a lock certificate it names is refused (`lock_certificate_revoked`). A list of
    /// another site is ignored.
    public let revocations: RevocationList?

    /// Checks a conformant phone makes that a test may switch off, to reach the lock's own checks
    /// with a phone that talks to any certified lock of the site (test-only: a shipping phone never
    /// sets these; `@_spi(NonConformantPhone) import MobileKey`).
    public struct NonConformance: OptionSet, Sendable {
        public let rawValue: Int
        public init(rawValue: Int) { self.rawValue = rawValue }
        /// Presents to a lock outside the credential's `aud` (the lock then judges `wrong_lock`).
        public static let ignoresAudience = NonConformance(rawValue: 1)
        /// Ignores the reader hello's lock time.
        public static let ignoresLockTime = NonConformance(rawValue: 2)
        public static let all: NonConformance = [.ignoresAudience, .ignoresLockTime]
    }
    @_spi(NonConformantPhone) public var nonConformance: NonConformance = []

    public init(credential: [UInt8], holderKey: P256.PrivateKey, siteID: String, trustedIssuers: TrustedIssuers,
                certificateCache: LockCertificateCache? = nil, fastKeys: TapFastKeyring? = nil, revocations: RevocationList? = nil) {
        self.credential = credential; self.holderKey = holderKey; self.siteID = siteID
        self.trustedIssuers = trustedIssuers; self.certificateCache = certificateCache; self.fastKeys = fastKeys
        self.revocations = revocations?.siteID == siteID ? revocations : nil
        // The phone's own credential, as issued to it: it reads its `aud`, it does not judge it.
        let own = try? Credential.inspect(credential)
        audience = own.map { Set($0.credential.lockIDs) }
        credentialKeyID = own?.credential.keyID
    }

    @_spi(NonConformantPhone) public func nonConformant(_ n: NonConformance = .all) -> TapPhone {
        var p = self
        p.nonConformance = n
        return p
    }

    /// Step 2: a fresh ephemeral key and transaction id. The phone hello is written to Reader Hello.
    public func open() throws -> Opening {
        open(ephemeral: try P256.PrivateKey(), transactionID: try SecureRandom.bytes(TapProtocol.transactionIDSize))
    }

    /// With the phone's randomness given: for test vectors and fuzz fixtures only (a phone never
    /// reuses either).
    @_spi(TapVectors) public func open(ephemeral: P256.PrivateKey, transactionID: [UInt8]) -> Opening {
        let hello = PhoneHello(phoneEphemeralKey: ephemeral.publicKey.uncompressed, transactionID: transactionID)
        return Opening(phone: self, ephemeral: ephemeral, hello: hello, phoneHello: hello.encoded())
    }

    /// A phone that has sent its hello and waits for the reader's.
    public struct Opening: Sendable {
        public let phone: TapPhone
        let ephemeral: P256.PrivateKey
        public let hello: PhoneHello
        /// The bytes to write (exactly these enter the transcript).
        public let phoneHello: [UInt8]

        /// Step 3: checks the reader hello, then builds the presentation for `action` (step 4).
        public func present(readerHello bytes: [UInt8], action: TapAction, at now: Date) throws -> Pending {
            let (hello, certificate) = try phone.check(readerHello: bytes, for: self.hello, at: now)
            let lockEphemeral: P256.PublicKey
            do { lockEphemeral = try P256.PublicKey(uncompressed: hello.lockEphemeralKey) } catch { throw TapPhoneError.malformedHello("ephemeral key") }
            let keys = try TapKeySchedule(sharedSecret: try ECDH.sharedSecret(ephemeral, lockEphemeral), phoneHelloBytes: phoneHello,
                                          readerHelloBytes: bytes, transactionID: self.hello.transactionID, nonce: hello.nonce)
            let proof = try ECDSA.sign(keys.proofInput(action), with: phone.holderKey)
            let payload = PresentationPayload(credential: phone.credential, action: action, proof: proof).encoded()
            let sealed = try AESGCM.seal(payload, key: keys.presentationKey, nonce: keys.presentationNonce, associatedData: keys.transcriptHash)
            return Pending(presentation: Presentation(sealed: sealed).encoded(), keys: keys, lockID: hello.lockID, certificate: certificate)
        }
    }

    /// A phone mid-tap: what it needs to check the result.
    public struct Pending: Sendable {
        public let presentation: [UInt8]
        let keys: TapKeySchedule
        /// The tap's keys (test vectors).
        @_spi(TapVectors) public var keySchedule: TapKeySchedule { keys }
        public let lockID: String
        /// The lock's certificate as the phone verified it (a FAST key made on this tap lasts no longer).
        public let certificate: LockCertificate

        /// Parses and authenticates the lock's result.
        public func result(_ bytes: [UInt8]) throws(TapPhoneError) -> TapResultMessage {
            let msg: TapResultMessage
            do { msg = try TapResultMessage(decoding: bytes) } catch { throw .malformedResult("\(error)") }
            guard let mac = msg.mac, let want = try? keys.resultMAC(msg), constantTimeEqual(mac, want) else {
                throw .resultNotAuthenticated
            }
            return msg
        }
    }

    /// The reader hello's checks, in order: it parses (strictly); its certificate vouches for the
    /// lock at the phone's time; its signature over both ephemeral keys, the transaction id, the
    /// lock id and the site verifies with the certified device key; then — now that the hello is
    /// known to be the lock's answer to this very phone hello — its lock time is within
    /// `TapProtocol.lockTimeTolerance` of the phone's clock and the lock is in the credential's `aud`.
    func check(readerHello bytes: [UInt8], for phoneHello: PhoneHello, at now: Date) throws(TapPhoneError) -> (ReaderHello, LockCertificate) {
        let hello: ReaderHello
        do { hello = try ReaderHello(decoding: bytes) } catch { throw .malformedHello("\(error)") }
        let cert: LockCertificate
        if let cached = certificateCache?.lookup(hello.certificate, siteID: siteID, issuers: trustedIssuers, at: now) {
            cert = cached
        } else {
            do {
                cert = try LockCertificate(verifying: hello.certificate, issuers: trustedIssuers, siteID: siteID, at: now)
            } catch { throw .untrustedLock(error) }
            certificateCache?.store(cert, siteID: siteID)
        }
        guard cert.lockID == hello.lockID else { throw .untrustedLock(.wrongLock(cert.lockID)) }
        // Revocation is checked on every hello, cached certificate or not: the cache remembers a
        // signature, not the site's current word on the lock.
        if revokes(cert.id) { throw .untrustedLock(.revoked) }
        // Low-S only: a genuine lock signs with ECDSA.sign, which never emits the other form.
        guard ECDSA.isLowS(hello.signature),
              ECDSA.verify(hello.signature, of: hello.toBeSigned(siteID: siteID, phoneHello: phoneHello), by: cert.deviceKey) else {
            throw .badHelloSignature
        }
        if !nonConformance.contains(.ignoresLockTime), abs(Double(hello.lockTime) - now.timeIntervalSince1970) > TapProtocol.lockTimeTolerance {
            throw .lockClockSkewed(lockTime: hello.lockTime)
        }
        if !nonConformance.contains(.ignoresAudience), audience?.contains(hello.lockID) != true {
            throw .lockNotInCredential(hello.lockID)
        }
        return (hello, cert)
    }
}

extension TapPhone {
    /// Whether the phone's revocation list names the lock certificate with this id.
    func revokes(_ certificateID: [UInt8]) -> Bool { revocations?.isRevoked(certificateID: certificateID) ?? false }
}

/// Verified lock certificates a phone remembers, as an app would: checking the issuer's signature
/// once per lock instead of once per tap. Keyed by the exact certificate bytes, and still subject
/// to the certificate's validity period.
public final class LockCertificateCache: Sendable {
    /// A certificate vouches only for the site it was verified for, under an issuer key the phone
    /// still trusts: the same bytes presented for another site, or after the issuer key was removed
    /// from the phone's trust anchors, are verified afresh (and refused).
    private struct Key: Hashable { let siteID: String; let bytes: [UInt8] }
    private let entries = PthreadLocked<[Key: LockCertificate]>([:])
    private let capacity: Int
    public init(capacity: Int = 256) { self.capacity = capacity }

    public func lookup(_ bytes: [UInt8], siteID: String, issuers: TrustedIssuers, at now: Date) -> LockCertificate? {
        guard let c = entries.withLock({ $0[Key(siteID: siteID, bytes: bytes)] }), issuers.key(for: c.issuerKeyID) != nil,
              c.validityError(at: now) == nil else { return nil }
        return c
    }
    func store(_ c: LockCertificate, siteID: String) {
        entries.withLock { entries in
            if entries.count >= capacity { entries.removeAll() }
            entries[Key(siteID: siteID, bytes: c.bytes)] = c
        }
    }
}
