import Foundation
import KeywayCrypto
import XCTest
@testable import MobileKey

/// Interoperability both ways with python-cwt / pycose (Tests/peers/cwt_peer.py).
final class CWTInteropTests: XCTestCase {
    let at = MKTest.monday10UTC
    var dir = ""
    var site: SiteKeys!
    var holderPub = ""

    override func setUpWithError() throws {
        dir = try MKTest.temporaryDirectory(self)
        site = try SiteKeys.create(dir: dir + "/site", siteID: "site-ams-1", lockIDs: ["front-door", "back-door"], now: at)
        holderPub = dir + "/phone.pub.pem"
        try MKTest.write(MKTest.holderKey.publicKey.pem, to: holderPub)
    }

    private var issuerPub: String { dir + "/site/issuer.pub.pem" }

    private func issue(schedule: WeeklySchedule? = nil, officeMode: Bool = true) throws -> IssuedCredential {
        let req = CredentialRequest(userID: "member-17", lockIDs: ["front-door", "back-door"], holderKey: MKTest.holderKey.publicKey,
                                    validity: .booking(start: at, end: at + 4 * 3600, grace: 1800),
                                    schedule: schedule, officeMode: officeMode)
        return try site.issuer.issue(req, issuedAt: at - 86400)
    }

    func testPythonCWTVerifiesKeywayCredentialAndReadsEveryClaim() throws {
        let schedule = try WeeklySchedule(timeZone: "Europe/Berlin", windows: [
            try .init(weekday: 1, from: "08:00", to: "20:00"), try .init(weekday: 6, from: "10:00", to: "14:30"),
        ])
        let issued = try issue(schedule: schedule)
        let r = try MKTest.runPeer(["verify", "--pub", issuerPub, "--hex", Hex.encode(issued.bytes)])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        let j = try XCTUnwrap(r.json, r.stdout)
        let c = issued.credential
        XCTAssertEqual(j["kid"] as? String, Hex.encode(site.issuerKeyID))
        XCTAssertEqual(j["protected"] as? NSDictionary, ["1": -7, "4": Hex.encode(site.issuerKeyID)] as NSDictionary)
        XCTAssertEqual(j["iss"] as? String, "site-ams-1")
        XCTAssertEqual(j["sub"] as? String, "member-17")
        XCTAssertEqual(j["aud"] as? [String], ["front-door", "back-door"])
        XCTAssertEqual((j["nbf"] as? NSNumber)?.int64Value, Int64(c.notBefore.timeIntervalSince1970))
        XCTAssertEqual((j["nbf"] as? NSNumber)?.int64Value, Int64(at.timeIntervalSince1970) - 1800)
        XCTAssertEqual((j["exp"] as? NSNumber)?.int64Value, Int64(at.timeIntervalSince1970) + 4 * 3600 + 1800)
        XCTAssertEqual((j["iat"] as? NSNumber)?.int64Value, Int64(at.timeIntervalSince1970) - 86400)
        XCTAssertEqual(j["cti"] as? String, Hex.encode(c.keyID))
        let cnf = try XCTUnwrap(j["cnf"] as? [String: Any])
        XCTAssertEqual(cnf["x"] as? String, Hex.encode(MKTest.holderKey.publicKey.x))
        XCTAssertEqual(cnf["y"] as? String, Hex.encode(MKTest.holderKey.publicKey.y))
        XCTAssertEqual(cnf["kty"] as? Int, 2)
        XCTAssertEqual(cnf["crv"] as? Int, 1)
        XCTAssertEqual(j["office_mode"] as? Bool, true)
        XCTAssertEqual(j["kind"] as? String, "mobile")
        let s = try XCTUnwrap(j["schedule"] as? [String: Any])
        XCTAssertEqual(s["tz"] as? String, "Europe/Berlin")
        XCTAssertEqual(s["windows"] as? [[Int]], [[1, 480, 1200], [6, 600, 870]])
        XCTAssertEqual(j["claim_keys"] as? [Int], [-65539, -65538, -65537, 1, 2, 3, 4, 5, 6, 7, 8])
    }

    func testPythonRejectsTamperedKeywayCredential() throws {
        var bytes = try issue().bytes
        bytes[bytes.count - 10] ^= 0x01
        let r = try MKTest.runPeer(["verify", "--pub", issuerPub, "--hex", Hex.encode(bytes)])
        XCTAssertEqual(r.status, 1, r.stdout)
        XCTAssertNotNil(r.json?["error"])
        // And with another site's key.
        try MKTest.write(MKTest.otherIssuerKey.publicKey.pem, to: dir + "/other.pub.pem")
        let r2 = try MKTest.runPeer(["verify", "--pub", dir + "/other.pub.pem", "--hex", Hex.encode(try issue().bytes)])
        XCTAssertEqual(r2.status, 1, r2.stdout)
    }

    /// The independent Python verifier reaches the same verdict as Keyway's in every scenario.
    func testIndependentVerifierAgreesOnVerdicts() throws {
        let schedule = try WeeklySchedule(timeZone: "Europe/Berlin", weekdays: [1, 2, 3, 4, 5], from: "09:00", to: "18:00")
        let issued = try issue(schedule: schedule)
        let revoked = try RevocationList.empty(siteID: "site-ams-1").revoking([issued.credential.keyID], issuedAt: at)
        let scenarios: [(lock: String, at: Date, list: RevocationList, expect: Verdict)] = [
            ("front-door", at, .empty(siteID: "site-ams-1"), .granted(issued.credential)),
            ("bike-room", at, .empty(siteID: "site-ams-1"), .denied(.wrongLock)),
            ("front-door", at - 1861, .empty(siteID: "site-ams-1"), .denied(.notYetValid)),
            ("front-door", at + 4 * 3600 + 1860, .empty(siteID: "site-ams-1"), .denied(.expired)),
            ("front-door", at + 5 * 86400, .empty(siteID: "site-ams-1"), .denied(.expired)),
            ("front-door", at, revoked, .denied(.revoked)),
        ]
        for s in scenarios {
            let v = Verifier(siteID: "site-ams-1", lockID: s.lock, issuers: site.trustedIssuers)
            XCTAssertEqual(v.verify(issued.bytes, at: s.at, revocations: s.list), s.expect)
            var args = ["check", "--pub", issuerPub, "--hex", Hex.encode(issued.bytes), "--site", "site-ams-1",
                        "--lock", s.lock, "--at", String(Int64(s.at.timeIntervalSince1970))]
            for k in s.list.revokedKeyIDs { args += ["--revoked", Hex.encode(k)] }
            let j = try XCTUnwrap(try MKTest.runPeer(args).json)
            switch s.expect {
            case .granted: XCTAssertEqual(j["verdict"] as? String, "granted", "\(j)")
            case .denied(let reason):
                XCTAssertEqual(j["verdict"] as? String, "denied")
                XCTAssertEqual(j["reason"] as? String, reason.rawValue)
            }
        }
    }

    private func mint(_ extra: [String] = []) throws -> [UInt8] {
        let r = try MKTest.runPeer(["mint", "--key", dir + "/site/issuer.key.pem", "--site", "site-ams-1", "--user", "member-99",
                                    "--lock", "front-door", "--lock", "lobby", "--nbf", String(Int64(at.timeIntervalSince1970) - 600),
                                    "--exp", String(Int64(at.timeIntervalSince1970) + 3600), "--iat", String(Int64(at.timeIntervalSince1970) - 700),
                                    "--holder-pub", holderPub, "--cti", "00112233445566778899aabbccddeeff"] + extra)
        XCTAssertEqual(r.status, 0, r.stderr)
        return try XCTUnwrap(Hex.decode(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)))
    }

    func testKeywayVerifiesPythonCWTCredential() throws {
        let bytes = try mint(["--office-mode", "--tz", "Europe/Berlin", "--window", "1,600,690"])
        let v = Verifier(siteID: "site-ams-1", lockID: "front-door", issuers: site.trustedIssuers)
        guard case .granted(let c) = v.verify(bytes, at: at, revocations: .empty(siteID: "site-ams-1")) else {
            return XCTFail("\(v.verify(bytes, at: at, revocations: .empty(siteID: "site-ams-1")))")
        }
        XCTAssertEqual(c.userID, "member-99")
        XCTAssertEqual(c.lockIDs, ["front-door", "lobby"])
        XCTAssertEqual(c.keyID, Hex.decode("00112233445566778899aabbccddeeff"))
        XCTAssertEqual(c.holderKey, MKTest.holderKey.publicKey)
        XCTAssertTrue(c.officeMode)
        XCTAssertEqual(c.schedule, try WeeklySchedule(timeZone: "Europe/Berlin", windows: [try .init(weekday: 1, from: "10:00", to: "11:30")]))
        XCTAssertEqual(c.issuedAt, at - 700)
        // The Python side's canonical payload is byte-identical to Keyway's encoding of the same claims.
        let message = try COSESign1(decoding: bytes)
        XCTAssertEqual(message.protectedHeader, CBOR.map([1: -7, 4: .bytes(site.issuerKeyID)]).encoded())
        XCTAssertEqual(message.payload, c.claims.encoded())
        // And its verdicts follow the same rules.
        XCTAssertEqual(v.verify(bytes, at: at + 2 * 3600, revocations: .empty(siteID: "site-ams-1")), .denied(.expired))
        XCTAssertEqual(v.verify(bytes, at: at + 1860, revocations: .empty(siteID: "site-ams-1")), .denied(.outsideSchedule))
        let other = Verifier(siteID: "site-ams-1", lockID: "back-door", issuers: site.trustedIssuers)
        XCTAssertEqual(other.verify(bytes, at: at, revocations: .empty(siteID: "site-ams-1")), .denied(.wrongLock))
    }

    func testKeywayVerifiesPythonCWTDefaultHeaderLayout() throws {
        // python-cwt's own default: alg protected, kid in the unprotected header.
        let bytes = try mint(["--kid-unprotected"])
        let message = try COSESign1(decoding: bytes)
        XCTAssertNil(message.protected[.int(COSEHeader.kid)])
        XCTAssertEqual(message.unprotected[.int(COSEHeader.kid)], .bytes(site.issuerKeyID))
        let v = Verifier(siteID: "site-ams-1", lockID: "lobby", issuers: site.trustedIssuers)
        XCTAssertTrue(v.verify(bytes, at: at, revocations: .empty(siteID: "site-ams-1")).isGranted)
        // Moving the kid does not let a forger in: same message signed by someone else still fails.
        var forged = bytes
        forged[forged.count - 5] ^= 0x20
        XCTAssertEqual(v.verify(forged, at: at, revocations: .empty(siteID: "site-ams-1")), .denied(.badSignature))
    }

    func testPeerDerivesTheSameKeyID() throws {
        let r = try MKTest.runPeer(["kid", "--pub", issuerPub])
        XCTAssertEqual(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines), Hex.encode(site.issuerKeyID))
    }
}
