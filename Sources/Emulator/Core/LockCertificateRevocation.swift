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
        let current = await site.directory.revocationList
        let next = try current.revokingCertificates([lock.certificate.id], issuedAt: clock.now())
        let signed = try keys.issuer.sign(next)
        // The directory takes a list not older than its own. It offers no compare-and-set, so a key
        // revoked in the same instant could be overwritten by this list (a known race); a list that
        // moved on before the publish is caught below.
        try await site.directory.publish(signedRevocationList: signed)
        guard await site.directory.revocationList == next else {
            throw APIError(409, "conflict", "the revocation list changed meanwhile; try again")
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
