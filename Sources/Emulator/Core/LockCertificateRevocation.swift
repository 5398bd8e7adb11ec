import Foundation
import Hardware
import KeywayAPI
import MobileKey

extension Emulator {
    /// Revokes lock `lockID`'s site certificate (issue 14 item 3): the site's revocation list names
    /// it from the next version on (docs/PROTOCOL.md §6, key 5), signed by the site issuer and stored
    /// like any revocation. Phones receive the list with their keys — the built-in phone holds the
    /// directory's current list at every tap — and refuse a reader hello carrying that certificate
    /// (`phone_refused`, `lock_certificate_revoked`, nothing recorded at the lock), FAST taps included.
    /// Locks ignore the certificate part, but a new list version reaching them retires their FAST keys.
    /// Returns the new list version.
    @discardableResult
    public func revokeLockCertificate(_ lockID: String) async throws -> UInt64 {
        guard let lock = keys.locks[lockID] else { throw APIError.notFound("lock", lockID) }
        // The next list is made and signed inside the directory actor, as a key revocation's is: of two
        // revocations at once, each builds on the other, and neither is lost.
        let (next, signed) = try await directoryChange {
            try await site.directory.revoke(lockCertificates: [lock.certificate.id])
        }
        try store.storeRevocationList(next, signed: signed)
        return next.version
    }
}

extension Emulator {
    /// The site's current revocation list as phones receive it with their keys (`GET /v1/revocation-list`).
    public func revocationListDocument() async -> Components.Schemas.RevocationListDocument {
        let list = await site.directory.revocationList
        let signed = await site.directory.signedRevocationList
        func hex(_ ids: Set<[UInt8]>) -> [String] { ids.map(Hex.encode).sorted() }
        return .init(version: Int(list.version), revokedKeyIds: hex(list.revokedKeyIDs),
                     revokedLockCertificates: hex(list.revokedCertificateIDs),
                     signed: list.version == 0 ? nil : signed.map { Data($0).base64EncodedString() })
    }
}
