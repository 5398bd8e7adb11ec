import Foundation
import XCTest
import KeywayCrypto
@testable @_spi(TapVectors) import MobileKey

/// FAST repeat taps on bytes: a full exchange makes the key on both sides, the next tap is one
/// request; every check of docs/PROTOCOL.md "FAST repeat tap" in its order, and every fallback.
final class TapFastTests: XCTestCase {
    let site = "sf-mission", lockID = "main-entrance"
    let t0 = Date(timeIntervalSince1970: 1_795_000_000)
    var issuerKey: P256.PrivateKey!
    var issuer: CredentialIssuer!
    var device: P256.PrivateKey!
    var lock: TapLockIdentity!
    var holder: P256.PrivateKey!
    var revocations: RevocationList!

    override func setUpWithError() throws {
        issuerKey = try P256.PrivateKey()
        issuer = CredentialIssuer(siteID: site, key: issuerKey)
        device = try P256.PrivateKey()
        lock = try identity()
        holder = try P256.PrivateKey()
        revocations = RevocationList.empty(siteID: site)
    }

    /// A (re-)provisioned identity of the lock: fresh replay guard and FAST table.
    func identity(lockID: String? = nil) throws -> TapLockIdentity {
        let id = lockID ?? self.lockID
        let cert = try issuer.certify(lockID: id, deviceKey: device.publicKey, issuedAt: t0 - 86_400, expires: t0 + 365 * 86_400)
        return TapLockIdentity(lockID: id, deviceKey: device, certificate: cert.bytes,
                               verifier: Verifier(siteID: site, lockID: id, issuers: TrustedIssuers([issuerKey.publicKey])))
    }

    func credential(locks: [String]? = nil, office: Bool = false, until: Date? = nil) throws -> IssuedCredential {
        try issuer.issue(CredentialRequest(userID: "u-ada", lockIDs: locks ?? [lockID], holderKey: holder.publicKey,
                                           validity: ValidityWindow(notBefore: t0 - 3600, expires: until ?? t0 + 3600), officeMode: office),
                         issuedAt: t0 - 3600)
    }

    func phone(_ c: IssuedCredential, keyring: TapFastKeyring) -> TapPhone {
        TapPhone(credential: c.bytes, holderKey: holder, siteID: site, trustedIssuers: TrustedIssuers([issuerKey.publicKey]), fastKeys: keyring)
    }

    /// A full exchange at `on`, granted; the phone remembers its FAST key as PhoneTap does.
    @discardableResult
    func fullTap(_ p: TapPhone, on identity: TapLockIdentity? = nil, at: Date? = nil) throws -> TapEvaluation {
        let id = identity ?? lock!
        let opening = try p.open()
        let session = try id.startSession(phoneHello: opening.phoneHello, now: at ?? t0)
        let pending = try opening.present(readerHello: session.helloBytes, action: .open, at: at ?? t0)
        let eval = session.evaluate(pending.presentation, now: at ?? t0, revocations: revocations)
        var granted = false
        if case .accepted = eval { granted = true }
        let result = try pending.result(session.resultMessage(granted: granted, reason: eval.denial?.code, openMilliseconds: granted ? 5000 : 0))
        p.rememberFastKey(after: pending, result: result)
        return eval
    }

    func request(_ p: TapPhone, action: TapAction = .open, at: Date? = nil, lockID: String? = nil) throws -> TapPhone.FastPending {
        guard case .request(let r) = try p.fastStart(lockID: lockID ?? self.lockID, action: action, at: at ?? t0) else {
            throw XCTSkip("no FAST request")
        }
        return r
    }

    func evaluate(_ bytes: [UInt8], on identity: TapLockIdentity? = nil, at: Date? = nil) -> FastTapEvaluation {
        (identity ?? lock!).evaluateFast(bytes, now: at ?? t0, revocations: revocations)
    }

    func denial(_ e: FastTapEvaluation) -> TapDenial? {
        if case .evaluated(let ev, _) = e { return ev.denial }
        return nil
    }

    func testFastGrantIsAuthenticatedAndRejudgesNothingButTheClaims() throws {
        let ring = TapFastKeyring(), c = try credential(), p = phone(c, keyring: ring)
        XCTAssertEqual(try p.fastStart(lockID: lockID, action: .open, at: t0).fallback, .noKey)
        guard case .accepted = try fullTap(p) else { return XCTFail("full tap not granted") }
        XCTAssertEqual(lock.fastKeys.count, 1)
        XCTAssertEqual(ring.entry(for: lockID)?.counter, 0)

        let r = try request(p, at: t0 + 10)
        XCTAssertEqual(r.request.count, 49, "PROTOCOL.md: a FAST request is 49 bytes while its counter is below 24")
        guard case .evaluated(.accepted(let cred, .open), let key?) = evaluate(r.request, at: t0 + 10) else {
            return XCTFail("\(evaluate(r.request, at: t0 + 10))")
        }
        XCTAssertEqual(cred.keyID, c.credential.keyID)
        let result = TapLockIdentity.fastResultMessage(granted: true, reason: nil, openMilliseconds: 5000, resultKey: key)
        XCTAssertEqual(try r.result(result).granted, true)
        // A result MACed with any other key, or not at all, is not accepted by the phone.
        let forged = TapLockIdentity.fastResultMessage(granted: true, reason: nil, openMilliseconds: 5000, resultKey: Array(repeating: 7, count: 16))
        XCTAssertThrowsError(try r.result(forged)) { XCTAssertEqual($0 as? TapPhoneError, .resultNotAuthenticated) }
        XCTAssertThrowsError(try r.result(TapResultMessage(granted: true, reason: nil, openMilliseconds: 5000).encoded()))
        XCTAssertEqual(ring.entry(for: lockID)?.counter, 1)
    }

    func testReplayStaleTamperedAndForeignRequests() throws {
        let ring = TapFastKeyring(), p = phone(try credential(), keyring: ring)
        try fullTap(p)
        let first = try request(p)
        guard case .evaluated(.accepted, _) = evaluate(first.request) else { return XCTFail() }
        XCTAssertEqual(denial(evaluate(first.request)), .replayed, "the same request again")
        // An older request released after a newer one: its counter is spent too.
        let second = try request(p), third = try request(p)
        guard case .evaluated(.accepted, _) = evaluate(third.request) else { return XCTFail() }
        XCTAssertEqual(denial(evaluate(second.request)), .replayed)
        // Held back more than 60 s: stale, and the event names nobody.
        let late = try request(p, at: t0)
        guard case .evaluated(.denied(.nonceExpired, nil, .open), _?) = evaluate(late.request, at: t0 + 61) else {
            return XCTFail("\(evaluate(late.request, at: t0 + 61))")
        }
        // Any flipped bit in the MACed part: tampered, no key to answer with.
        let fresh = try request(p)
        var flipped = fresh.request
        flipped[flipped.count - 21] ^= 1   // the phone time's last byte
        guard case .evaluated(.denied(.decryptionFailed, nil, _), nil) = evaluate(flipped) else { return XCTFail("\(evaluate(flipped))") }
        var badMAC = fresh.request
        badMAC[badMAC.count - 1] ^= 0x80
        XCTAssertEqual(denial(evaluate(badMAC)), .decryptionFailed)
        guard case .evaluated(.accepted, _) = evaluate(fresh.request) else { return XCTFail("the genuine one still works") }
        // A key id the lock never made: no decision at all, the phone falls back.
        guard case .fallBack(.lockKeyUnknown) = evaluate(try p.fastRequest(TapFastKey(keyID: Array(repeating: 1, count: 16), key: Array(repeating: 2, count: 32)),
                                                                           lockID: lockID, counter: 99, action: .open, at: t0).request) else {
            return XCTFail("unknown key id")
        }
    }

    func testAKeyOfAnotherLockIsUnknownThereAndItsMACFailsUnderACopiedID() throws {
        let ring = TapFastKeyring(), p = phone(try credential(locks: [lockID, "back-door"]), keyring: ring)
        let back = try identity(lockID: "back-door")
        try fullTap(p)
        try fullTap(p, on: back)
        let forBack = try XCTUnwrap(ring.entry(for: "back-door")), forFront = try XCTUnwrap(ring.entry(for: lockID))
        XCTAssertNotEqual(forBack.key, forFront.key, "bound to the lock")
        // The back door's request at the front door: unknown there.
        let misdirected = try request(p, lockID: "back-door")
        guard case .fallBack(.lockKeyUnknown) = evaluate(misdirected.request) else { return XCTFail() }
        // The back door's key under the front door's key id: the MAC does not verify.
        let forged = try p.fastRequest(TapFastKey(keyID: forFront.key.keyID, key: forBack.key.key), lockID: lockID, counter: 50, action: .open, at: t0)
        XCTAssertEqual(denial(evaluate(forged.request)), .decryptionFailed)
    }

    func testFallbacks() throws {
        let c = try credential(), ring = TapFastKeyring(), p = phone(c, keyring: ring)
        // No key yet (phone side).
        XCTAssertEqual(try p.fastStart(lockID: lockID, action: .open, at: t0).fallback, .noKey)
        try fullTap(p)
        // The credential changed (re-issued to the same phone): the phone drops the old key.
        let reissued = phone(try credential(), keyring: ring)
        XCTAssertEqual(try reissued.fastStart(lockID: lockID, action: .open, at: t0).fallback, .credentialChanged)
        XCTAssertNil(ring.entry(for: lockID))
        // The lock's revocation list changed since the key was made: retired, no decision.
        try fullTap(p)
        let r = try request(p)
        revocations = try RevocationList(siteID: site, version: 1, issuedAt: t0, revokedKeyIDs: [Array(repeating: 9, count: 16)])
        guard case .fallBack(.revocationListChanged) = evaluate(r.request) else { return XCTFail("\(evaluate(r.request))") }
        XCTAssertEqual(lock.fastKeys.count, 0, "retired")
        guard case .fallBack(.lockKeyUnknown) = evaluate(r.request) else { return XCTFail("and gone") }
        // Re-provisioned: a new identity holds no key made under the old one.
        try fullTap(p)
        let again = try request(p)
        guard case .fallBack(.lockKeyUnknown) = evaluate(again.request, on: try identity()) else { return XCTFail() }
    }

    /// The phone re-checks, without a signature, what the lock certificate it verified on the full
    /// exchange said: past its end, or once its issuer key left the phone's trust anchors, no FAST.
    func testTheLockCertificateBoundsTheFastKey() throws {
        let c = try credential(), ring = TapFastKeyring(), p = phone(c, keyring: ring)
        try fullTap(p)
        XCTAssertEqual(try p.fastStart(lockID: lockID, action: .open, at: t0 + 366 * 86_400).fallback, .lockCertificateInvalid)
        XCTAssertNil(ring.entry(for: lockID))
        try fullTap(p)
        let distrusting = TapPhone(credential: c.bytes, holderKey: holder, siteID: site,
                                   trustedIssuers: TrustedIssuers([try P256.PrivateKey().publicKey]), fastKeys: ring)
        XCTAssertEqual(try distrusting.fastStart(lockID: lockID, action: .open, at: t0).fallback, .lockCertificateInvalid)
    }

    /// `keyway phone tap --fast-keys FILE` keeps the keyring as JSON between runs: a phone read back
    /// from it taps FAST with the next counter.
    func testTheKeyringSurvivesAsJSON() throws {
        let c = try credential(), ring = TapFastKeyring(), p = phone(c, keyring: ring)
        try fullTap(p)
        _ = try request(p)
        let json = try JSONEncoder().encode(ring.all)
        let back = TapFastKeyring(try JSONDecoder().decode([TapFastKeyring.Entry].self, from: json))
        XCTAssertEqual(back.all, ring.all)
        let r = try request(phone(c, keyring: back))
        XCTAssertEqual(try FastRequest(decoding: r.request).counter, 2)
        guard case .evaluated(.accepted, _) = evaluate(r.request) else { return XCTFail("\(evaluate(r.request))") }
    }

    func testTheClaimsAreJudgedAgainOnEveryFastTap() throws {
        let c = try credential(until: t0 + 600), ring = TapFastKeyring(), p = phone(c, keyring: ring)
        try fullTap(p)
        // Expired since the full tap: the event names the user (the request authenticated).
        let late = try request(p, at: t0 + 700)
        guard case .evaluated(.denied(.credential(.expired), let who?, .open), _?) = evaluate(late.request, at: t0 + 700) else {
            return XCTFail("\(evaluate(late.request, at: t0 + 700))")
        }
        XCTAssertEqual(who.userID, "u-ada")
        // Office mode without the right.
        let office = try request(p, action: .officeModeOn)
        XCTAssertEqual(denial(evaluate(office.request)), .actionNotPermitted)
    }

    func testStrictParsingOfTheRequest() throws {
        let ring = TapFastKeyring(), p = phone(try credential(), keyring: ring)
        try fullTap(p)
        let r = try request(p)
        let m = try CBORDecoder().decode(r.request)
        guard case .map(var map) = m else { return XCTFail() }
        map[7] = .unsigned(0)
        XCTAssertEqual(denial(evaluate(CBOR.map(map).encoded())), .malformedPresentation, "unknown key")
        map.removeValue(forKey: 7)
        map[1] = .int(1)
        XCTAssertEqual(denial(evaluate(CBOR.map(map).encoded())), .protocolVersionUnsupported)
        map[1] = .int(2)
        map[3] = .unsigned(0)
        XCTAssertEqual(denial(evaluate(CBOR.map(map).encoded())), .malformedPresentation, "counter 0")
        XCTAssertEqual(denial(evaluate(Array(repeating: 0xa0, count: TapFast.maxRequestSize + 1))), .malformedPresentation, "oversized")
        XCTAssertThrowsError(try FastRequest(decoding: r.request + [0]))
    }
}

extension TapPhone.FastStart {
    var fallback: TapFastFallback? {
        if case .fallBack(let f) = self { return f }
        return nil
    }
}
