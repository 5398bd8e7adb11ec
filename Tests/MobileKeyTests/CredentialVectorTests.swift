import Foundation
import KeywayCrypto
import XCTest
@testable import MobileKey

/// Fixed test vectors in Fixtures/vectors/credentials.json, checked here and by
/// Tests/peers/test_cwt_vectors.py (pycose / python-cwt). Regenerate with
/// `KEYWAY_REGENERATE_VECTORS=1 swift test --filter CredentialVectorTests/testRegenerate` — only
/// when the protocol changes on purpose; both checkers must then still pass.
final class CredentialVectorTests: XCTestCase {
    static var vectorsDir: URL { MKTest.repoRoot.appendingPathComponent("Fixtures/vectors") }
    static var vectorsFile: URL { vectorsDir.appendingPathComponent("credentials.json") }

    static func key(_ name: String) throws -> P256.PrivateKey {
        try P256.PrivateKey(pem: String(contentsOf: vectorsDir.appendingPathComponent("\(name).key.pem"), encoding: .utf8))
    }

    static func claimsJSON(_ c: Credential, kid: [UInt8]) -> [String: Any] {
        [
            "kid": Hex.encode(kid), "iss": c.siteID, "sub": c.userID, "aud": c.lockIDs,
            "exp": Int64(c.expires.timeIntervalSince1970), "nbf": Int64(c.notBefore.timeIntervalSince1970),
            "iat": c.issuedAt.map { Int64($0.timeIntervalSince1970) as Any } ?? NSNull(),
            "cti": Hex.encode(c.keyID),
            "cnf": ["kty": 2, "crv": 1, "x": Hex.encode(c.holderKey.x), "y": Hex.encode(c.holderKey.y)],
            "office_mode": c.officeMode, "kind": c.kind.rawValue,
            "schedule": c.schedule.map { s in
                ["tz": s.timeZoneIdentifier, "windows": s.windows.map { [$0.weekday, $0.startMinute, $0.endMinute] }] as Any
            } ?? NSNull(),
        ]
    }

    func testVectors() throws {
        let data = try Data(contentsOf: Self.vectorsFile)
        let root = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let site = try XCTUnwrap(root["site"] as? String)
        let skew = try XCTUnwrap(root["clock_skew_seconds"] as? Int)
        let issuerJSON = try XCTUnwrap(root["issuer"] as? [String: Any])
        let issuerKey = try P256.PublicKey(pem: try XCTUnwrap(issuerJSON["public_key_pem"] as? String))
        XCTAssertEqual(issuerJSON["kid"] as? String, Hex.encode(KeyID.derive(from: issuerKey)))
        let issuers = TrustedIssuers([issuerKey])
        let vectors = try XCTUnwrap(root["vectors"] as? [[String: Any]])

        var reasonsSeen = Set<String>()
        for v in vectors {
            let name = v["name"] as? String ?? "?"
            let bytes = try XCTUnwrap(Hex.decode(try XCTUnwrap(v["credential"] as? String)), name)
            let verifier = Verifier(siteID: site, lockID: try XCTUnwrap(v["lock"] as? String), issuers: issuers,
                                    clockSkewTolerance: TimeInterval(skew))
            let revoked = try Set((v["revoked"] as? [String] ?? []).map { try XCTUnwrap(Hex.decode($0)) })
            let list = try RevocationList(siteID: site, version: 1, issuedAt: MKTest.monday10UTC, revokedKeyIDs: revoked)
            let at = Date(timeIntervalSince1970: TimeInterval(try XCTUnwrap(v["at"] as? Int)))
            let verdict = verifier.verify(bytes, at: at, revocations: list)
            switch v["expected"] as? String {
            case "granted":
                reasonsSeen.insert("granted")
                guard case .granted(let c) = verdict else { XCTFail("\(name): \(verdict)"); continue }
                let kid = try COSESign1(decoding: bytes).keyID ?? []
                let expected = try XCTUnwrap(v["claims"] as? NSDictionary, name)
                XCTAssertEqual(Self.claimsJSON(c, kid: kid) as NSDictionary, expected, name)
            case "denied":
                let reason = try XCTUnwrap(v["reason"] as? String)
                reasonsSeen.insert(reason)
                XCTAssertEqual(verdict, .denied(try XCTUnwrap(DenialReason(rawValue: reason))), name)
            default: XCTFail("\(name): bad expectation")
            }
        }
        XCTAssertEqual(reasonsSeen, Set(DenialReason.allCases.map(\.rawValue) + ["granted"]), "every verdict has a vector")

        let rl = try XCTUnwrap(root["revocation_list"] as? [String: Any])
        let list = try RevocationList(verifying: try XCTUnwrap(Hex.decode(rl["signed"] as? String ?? "")), issuers: issuers, siteID: site)
        XCTAssertEqual(list.version, (rl["version"] as? NSNumber)?.uint64Value)
        XCTAssertEqual(Set(list.revokedKeyIDs.map(Hex.encode)), Set(rl["revoked"] as? [String] ?? []))

        let lc = try XCTUnwrap(root["lock_certificate"] as? [String: Any])
        let cert = try LockCertificate(verifying: try XCTUnwrap(Hex.decode(lc["signed"] as? String ?? "")), issuers: issuers,
                                       siteID: site, lockID: lc["lock"] as? String, at: MKTest.monday10UTC)
        XCTAssertEqual(Hex.encode(cert.deviceKey.x), lc["x"] as? String)
        XCTAssertEqual(Hex.encode(cert.deviceKey.y), lc["y"] as? String)
    }

    /// Writes Fixtures/vectors/credentials.json from the fixed keys next to it. Skipped unless
    /// KEYWAY_REGENERATE_VECTORS=1.
    func testRegenerate() throws {
        guard ProcessInfo.processInfo.environment["KEYWAY_REGENERATE_VECTORS"] == "1" else {
            throw XCTSkip("set KEYWAY_REGENERATE_VECTORS=1 to rewrite Fixtures/vectors/credentials.json")
        }
        let site = "site-ams-1", lock = "front-door"
        let t = MKTest.monday10UTC // Monday 2026-01-05 10:00:00 UTC, 11:00 in Berlin
        let issuerKey = try Self.key("issuer"), foreignKey = try Self.key("foreign-issuer")
        let holder = try Self.key("holder").publicKey, device = try Self.key("lock-device").publicKey
        let issuer = CredentialIssuer(siteID: site, key: issuerKey)
        let kid = issuer.keyID
        func cti(_ n: UInt8) -> [UInt8] { (0..<16).map { UInt8($0) &* 16 &+ n } }
        func req(_ n: UInt8, locks: [String] = [lock], from: Date = t - 3600, until: Date = t + 8 * 3600,
                 schedule: WeeklySchedule? = nil, office: Bool = false) -> CredentialRequest {
            CredentialRequest(userID: "member-\(n)", lockIDs: locks, holderKey: holder,
                              validity: ValidityWindow(notBefore: from, expires: until),
                              schedule: schedule, officeMode: office, keyID: cti(n))
        }
        func issue(_ r: CredentialRequest, by i: CredentialIssuer = issuer) throws -> IssuedCredential { try i.issue(r, issuedAt: t - 86400) }
        let basic = try issue(req(1))
        var claims = basic.credential.claims.mapValue!
        let weekdays = try WeeklySchedule(timeZone: "Europe/Berlin", weekdays: [1, 2, 3, 4, 5], from: "09:00", to: "18:00")

        var vectors: [[String: Any]] = []
        func add(_ name: String, _ description: String, _ bytes: [UInt8], lock l: String = lock, at: Date = t,
                 revoked: [[UInt8]] = [], expect: Verdict) {
            var v: [String: Any] = ["name": name, "description": description, "credential": Hex.encode(bytes), "lock": l,
                                    "at": Int64(at.timeIntervalSince1970), "at_iso": ISO8601DateFormatter().string(from: at),
                                    "revoked": revoked.map(Hex.encode)]
            switch expect {
            case .granted(let c):
                v["expected"] = "granted"
                v["claims"] = Self.claimsJSON(c, kid: (try? COSESign1(decoding: bytes).keyID ?? []) ?? [])
            case .denied(let r):
                v["expected"] = "denied"; v["reason"] = r.rawValue
            }
            // The generator checks itself: each vector must already hold in Keyway.
            let verifier = Verifier(siteID: site, lockID: l, issuerKeys: [issuerKey.publicKey])
            let list = try! RevocationList(siteID: site, version: 1, issuedAt: t, revokedKeyIDs: Set(revoked))
            XCTAssertEqual(verifier.verify(bytes, at: at, revocations: list), expect, name)
            vectors.append(v)
        }

        add("granted_basic", "Keyway-issued mobile key, no schedule", basic.bytes, expect: .granted(basic.credential))
        let sched = try issue(req(2, locks: ["back-door", lock], schedule: weekdays, office: true))
        add("granted_schedule_office_mode", "Mon–Fri 09:00–18:00 Europe/Berlin, office-mode right; Monday 11:00 Berlin",
            sched.bytes, expect: .granted(sched.credential))
        let booking = try issue(CredentialRequest(userID: "guest-3", lockIDs: [lock], holderKey: holder,
                                                  validity: .booking(start: t + 2 * 3600, end: t + 6 * 3600, grace: 1800), keyID: cti(3)))
        add("granted_booking_grace_start", "12:00–16:00 UTC booking ±30 min, at 11:30:00 UTC exactly (skew not needed)",
            booking.bytes, at: t + 5400, expect: .granted(booking.credential))
        add("granted_booking_grace_end_with_skew", "same booking at 16:30:59 UTC: past exp 16:30 but within the 60 s skew",
            booking.bytes, at: t + 6 * 3600 + 1859, expect: .granted(booking.credential))

        // A credential minted by python-cwt (kid in the unprotected header, python-cwt's default).
        let r = try MKTest.runPeer(["mint", "--key", Self.vectorsDir.appendingPathComponent("issuer.key.pem").path, "--site", site,
                                    "--user", "member-4", "--lock", lock, "--nbf", String(Int64(t.timeIntervalSince1970) - 3600),
                                    "--exp", String(Int64(t.timeIntervalSince1970) + 3600), "--iat", String(Int64(t.timeIntervalSince1970) - 3600),
                                    "--holder-pub", Self.vectorsDir.appendingPathComponent("holder.pub.pem").path,
                                    "--cti", Hex.encode(cti(4)), "--kid-unprotected"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let pyBytes = try XCTUnwrap(Hex.decode(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)))
        let pyCred = try Credential.inspect(pyBytes).credential
        add("granted_python_cwt_minted", "minted by python-cwt with the site key; kid in the unprotected header",
            pyBytes, expect: .granted(pyCred))

        add("denied_malformed_truncated", "granted_basic without its last byte", Array(basic.bytes.dropLast()), expect: .denied(.malformed))
        var noCti = claims; noCti[.int(CWTClaim.cti)] = nil
        add("denied_malformed_no_cti", "correctly signed, but the claims lack cti",
            try issuer.sign(payload: CBOR.map(noCti).encoded(), contentType: nil), expect: .denied(.malformed))
        var dupPayload = CBOR.map(claims).encoded()
        dupPayload[0] += 1
        dupPayload += CBOR.int(CWTClaim.iss).encoded() + CBOR.text("site-evil").encoded()
        add("denied_malformed_duplicate_claim", "correctly signed, but iss appears twice in the claims map",
            try issuer.sign(payload: dupPayload, contentType: nil), expect: .denied(.malformed))
        add("denied_malformed_lock_certificate", "a genuine lock certificate presented as a credential (content type)",
            try issuer.certify(lockID: lock, deviceKey: device, issuedAt: t - 86400, expires: t + 86400).bytes, expect: .denied(.malformed))
        let es384 = try MKTest.signWithHeader([1: -35, 4: .bytes(kid)], payload: basic.credential.claims.encoded(), key: issuerKey)
        add("denied_unsupported_algorithm", "protected alg -35 (ES384)", es384, expect: .denied(.unsupportedAlgorithm))
        add("denied_unknown_issuer", "signed by a key the lock does not trust",
            try issue(req(5), by: CredentialIssuer(siteID: site, key: foreignKey)).bytes, expect: .denied(.unknownIssuer))
        var badSig = basic.bytes
        badSig[badSig.count - 1] ^= 0x01
        add("denied_bad_signature", "granted_basic with the last signature bit flipped", badSig, expect: .denied(.badSignature))
        add("denied_wrong_site", "genuine issuer key, iss = site-ber-2",
            try issue(req(6), by: CredentialIssuer(siteID: "site-ber-2", key: issuerKey)).bytes, expect: .denied(.wrongSite))
        add("denied_not_yet_valid", "granted_basic 61 s before nbf", basic.bytes, at: t - 3600 - 61, expect: .denied(.notYetValid))
        add("denied_expired", "granted_basic 60 s after exp (exp + skew is exclusive)", basic.bytes, at: t + 8 * 3600 + 60,
            expect: .denied(.expired))
        add("denied_wrong_lock", "granted_basic at another lock", basic.bytes, lock: "bike-room", expect: .denied(.wrongLock))
        add("denied_outside_schedule", "Mon–Fri 09:00–18:00 Berlin, on Saturday 2026-01-10 11:00 Berlin",
            try issue(req(7, from: t - 86400 * 7, until: t + 86400 * 7, schedule: weekdays)).bytes, at: t + 5 * 86400,
            expect: .denied(.outsideSchedule))
        add("denied_outside_schedule_summer_time", "Mon–Fri 09:00–18:00 Berlin on Monday 2026-07-06 06:59 UTC = 08:59 CEST",
            try issue(req(8, from: t, until: t + 86400 * 365, schedule: weekdays)).bytes,
            at: Date(timeIntervalSince1970: 1_783_321_140), expect: .denied(.outsideSchedule))
        add("denied_revoked", "granted_basic with its cti on the revocation list", basic.bytes, revoked: [cti(1)], expect: .denied(.revoked))
        claims[.int(CWTClaim.cnf)] = nil
        add("denied_missing_proof_key", "correctly signed, no cnf claim",
            try issuer.sign(payload: CBOR.map(claims).encoded(), contentType: nil), expect: .denied(.missingProofKey))

        let list = try RevocationList.empty(siteID: site).revoking([cti(1), cti(9)], issuedAt: t)
        let listBytes = try issuer.sign(list)
        let cert = try issuer.certify(lockID: lock, deviceKey: device, issuedAt: t - 86400, expires: t + 5 * 365 * 86400)
        let root: [String: Any] = [
            "format": "keyway-credential-vectors/1",
            "note": "Keyway Mobile Key v1 test vectors (docs/PROTOCOL.md). Keys in this directory are TEST KEYS ONLY.",
            "site": site,
            "clock_skew_seconds": Int(Verifier.defaultClockSkewTolerance),
            "issuer": ["kid": Hex.encode(kid), "public_key_pem": issuerKey.publicKey.pem,
                       "x": Hex.encode(issuerKey.publicKey.x), "y": Hex.encode(issuerKey.publicKey.y)],
            "vectors": vectors,
            "revocation_list": ["signed": Hex.encode(listBytes), "site": site, "version": list.version,
                                "revoked": list.revokedKeyIDs.map(Hex.encode).sorted(), "iat": Int64(t.timeIntervalSince1970)],
            "lock_certificate": ["signed": Hex.encode(cert.bytes), "site": site, "lock": lock,
                                 "iat": Int64(cert.issuedAt.timeIntervalSince1970), "exp": Int64(cert.expires.timeIntervalSince1970),
                                 "x": Hex.encode(device.x), "y": Hex.encode(device.y)],
        ]
        let json = try JSONSerialization.data(withJSONObject: root, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        try (json + Data("\n".utf8)).write(to: Self.vectorsFile)
    }
}
