import Foundation
import KeywayCrypto
import MobileKey

/// Targets for the signed objects a phone, an IQ or a file hands to a lock: CBOR, COSE_Sign1, the
/// credential, the revocation list and the lock certificate.
enum MobileKeyFuzz {
    static let cbor = FuzzTarget("cbor", maxLength: 4096,
        "CBORDecoder.decode with the default limits; an accepted item must re-encode and decode to itself") { input, check in
        let decoder = CBORDecoder()
        guard let item = try? decoder.decode(input) else { return }
        let again: CBOR
        do { again = try decoder.decode(item.encoded()) } catch {
            throw check.fail("accepted item does not decode after re-encoding: \(error)")
        }
        guard again == item else { throw check.fail("re-encoded item decodes to a different value") }
    }

    static let coseSign1 = FuzzTarget("cose-sign1", maxLength: 4096,
        "COSESign1(decoding:); an accepted message re-encodes to a message with the same fields; verify never traps") { input, check in
        guard let message = try? COSESign1(decoding: input) else { return }
        guard let again = try? COSESign1(decoding: message.encoded()), again == message else {
            throw check.fail("accepted message does not survive re-encoding")
        }
        _ = message.verify(with: FuzzFixture.shared.issuerKey.publicKey)
    }

    static let credential = FuzzTarget("credential", maxLength: 4096,
        "Verifier.verify at the lock; a grant must carry an issuer signature that checks independently") { input, check in
        let f = FuzzFixture.shared
        guard case .granted(let granted) = f.verifier.verify(input, at: f.now, revocations: f.revocations) else { return }
        guard let message = try? COSESign1(decoding: input), message.verify(with: f.issuerKey.publicKey) else {
            throw check.fail("granted a credential whose signature does not verify")
        }
        guard let inspected = try? Credential.inspect(input), inspected.credential.keyID == granted.keyID else {
            throw check.fail("granted credential does not inspect to the same key")
        }
        guard !f.revocations.isRevoked(granted.keyID) else { throw check.fail("granted a revoked key") }
    }

    static let revocationList = FuzzTarget("revocation-list", maxLength: 8192,
        "RevocationList(verifying:) and accepting(_:) as an IQ push; an accepted list must be signed, of this site, newer") { input, check in
        let f = FuzzFixture.shared
        if let list = try? RevocationList(verifying: input, issuers: f.issuers, siteID: f.siteID) {
            guard let message = try? COSESign1(decoding: input, limits: .init(maxItems: 70_000, maxLength: 70_000, maxBytes: 1 << 20)),
                  message.verify(with: f.issuerKey.publicKey) else {
                throw check.fail("accepted a list whose signature does not verify")
            }
            guard list.siteID == f.siteID else { throw check.fail("accepted a list of site \(list.siteID)") }
        }
        if let next = try? f.revocations.accepting(input, issuers: f.issuers), next.version <= f.revocations.version {
            throw check.fail("accepted a list that is not newer (\(next.version) ≤ \(f.revocations.version))")
        }
    }

    static let lockCertificate = FuzzTarget("lock-certificate", maxLength: 2048,
        "LockCertificate(verifying:) as a phone checks a reader; inspect(_:); an accepted certificate must be signed, for this site") { input, check in
        let f = FuzzFixture.shared
        _ = try? LockCertificate.inspect(input)
        guard let cert = try? LockCertificate(verifying: input, issuers: f.issuers, siteID: f.siteID, at: f.now) else { return }
        guard let message = try? COSESign1(decoding: input), message.verify(with: f.issuerKey.publicKey) else {
            throw check.fail("accepted a certificate whose signature does not verify")
        }
        guard !cert.lockID.isEmpty else { throw check.fail("accepted a certificate without a lock id") }
    }
}
