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
    case malformedResult(String)
    case resultNotAuthenticated

    public var description: String {
        switch self {
        case .malformedHello(let why): return "the reader hello is malformed: \(why)"
        case .untrustedLock(let e): return "the phone does not trust the lock: \(e)"
        case .badHelloSignature: return "the reader hello's signature does not verify with the certified device key"
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
        case .malformedResult: return "malformed_result"
        case .resultNotAuthenticated: return "result_not_authenticated"
        }
    }
}

/// The phone's side of the tap protocol (what an app would implement): a credential, the private key
/// its `cnf` names, and the site issuer keys it trusts for lock certificates.
public struct TapPhone: Sendable {
    public let credential: [UInt8]
    public let holderKey: P256.PrivateKey
    public let siteID: String
    public let trustedIssuers: TrustedIssuers
    public let certificateCache: LockCertificateCache?

    public init(credential: [UInt8], holderKey: P256.PrivateKey, siteID: String, trustedIssuers: TrustedIssuers,
                certificateCache: LockCertificateCache? = nil) {
        self.credential = credential; self.holderKey = holderKey; self.siteID = siteID
        self.trustedIssuers = trustedIssuers; self.certificateCache = certificateCache
    }

    /// A phone mid-tap: what it needs to check the result.
    public struct Pending: Sendable {
        public let presentation: [UInt8]
        let keys: TapKeySchedule
        public let lockID: String

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

    /// Checks the reader hello and builds the presentation for `action`.
    public func present(hello bytes: [UInt8], action: TapAction, at now: Date) throws -> Pending {
        let hello: ReaderHello
        do { hello = try ReaderHello(decoding: bytes) } catch { throw TapPhoneError.malformedHello("\(error)") }
        let cert: LockCertificate
        if let cached = certificateCache?.lookup(hello.certificate, siteID: siteID, issuers: trustedIssuers, at: now) {
            cert = cached
        } else {
            do {
                cert = try LockCertificate(verifying: hello.certificate, issuers: trustedIssuers, siteID: siteID, at: now)
            } catch { throw TapPhoneError.untrustedLock(error) }
            certificateCache?.store(cert, siteID: siteID)
        }
        guard cert.lockID == hello.lockID else { throw TapPhoneError.untrustedLock(.wrongLock(cert.lockID)) }
        // Low-S only: a genuine lock signs with ECDSA.sign, which never emits the other form.
        guard ECDSA.isLowS(hello.signature), ECDSA.verify(hello.signature, of: hello.toBeSigned, by: cert.deviceKey) else {
            throw TapPhoneError.badHelloSignature
        }
        let lockEphemeral: P256.PublicKey
        do { lockEphemeral = try P256.PublicKey(uncompressed: hello.lockEphemeralKey) } catch { throw TapPhoneError.malformedHello("ephemeral key") }

        let ephemeral = try P256.PrivateKey()
        let phoneEph = ephemeral.publicKey.uncompressed
        let keys = try TapKeySchedule(sharedSecret: try ECDH.sharedSecret(ephemeral, lockEphemeral), helloBytes: bytes,
                                      nonce: hello.nonce, phoneEphemeralKey: phoneEph)
        let proof = try ECDSA.sign(TapKeySchedule.proofInput(lockID: hello.lockID, nonce: hello.nonce, lockEphemeralKey: hello.lockEphemeralKey,
                                                             phoneEphemeralKey: phoneEph, action: action), with: holderKey)
        let payload = PresentationPayload(credential: credential, action: action, proof: proof).encoded()
        let sealed = try AESGCM.seal(payload, key: keys.presentationKey, nonce: keys.presentationNonce, associatedData: keys.transcriptHash)
        return Pending(presentation: Presentation(phoneEphemeralKey: phoneEph, sealed: sealed).encoded(), keys: keys, lockID: hello.lockID)
    }
}

/// Verified lock certificates a phone remembers, as an app would: checking the issuer's signature
/// once per lock instead of once per tap. Keyed by the exact certificate bytes, and still subject
/// to the certificate's validity period.
public final class LockCertificateCache: @unchecked Sendable {
    private let lock = NSLock()
    /// A certificate vouches only for the site it was verified for, under an issuer key the phone
    /// still trusts: the same bytes presented for another site, or after the issuer key was removed
    /// from the phone's trust anchors, are verified afresh (and refused).
    private struct Key: Hashable { let siteID: String; let bytes: [UInt8] }
    private var entries: [Key: LockCertificate] = [:]
    private let capacity: Int
    public init(capacity: Int = 256) { self.capacity = capacity }

    public func lookup(_ bytes: [UInt8], siteID: String, issuers: TrustedIssuers, at now: Date) -> LockCertificate? {
        lock.lock(); defer { lock.unlock() }
        guard let c = entries[Key(siteID: siteID, bytes: bytes)], issuers.key(for: c.issuerKeyID) != nil,
              c.validityError(at: now) == nil else { return nil }
        return c
    }
    func store(_ c: LockCertificate, siteID: String) {
        lock.lock(); defer { lock.unlock() }
        if entries.count >= capacity { entries.removeAll() }
        entries[Key(siteID: siteID, bytes: c.bytes)] = c
    }
}
