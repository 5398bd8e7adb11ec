import Foundation
import KeywayCrypto
import XCTest
@testable import MobileKey

final class SiteKeysTests: XCTestCase {
    let now = MKTest.monday10UTC

    private func mode(_ path: String) throws -> Int {
        (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber)?.intValue ?? -1
    }

    func testCreateLayoutPermissionsAndLoad() throws {
        let dir = try MKTest.temporaryDirectory(self) + "/site"
        let site = try SiteKeys.create(dir: dir, siteID: "site-ams-1", lockIDs: ["front-door", "bike_room.2"], now: now)
        XCTAssertEqual(site.lockIDs, ["bike_room.2", "front-door"])
        for f in ["site-id", "issuer.key.pem", "issuer.pub.pem", "locks/front-door.key.pem", "locks/front-door.cert",
                  "locks/bike_room.2.key.pem", "locks/bike_room.2.cert"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: "\(dir)/\(f)"), f)
        }
        XCTAssertEqual(try mode("\(dir)/issuer.key.pem"), 0o600)
        XCTAssertEqual(try mode("\(dir)/locks/front-door.key.pem"), 0o600)
        XCTAssertEqual(try mode("\(dir)/locks"), 0o700)
        let pem = try String(contentsOfFile: "\(dir)/issuer.key.pem", encoding: .utf8)
        XCTAssertTrue(pem.hasPrefix("-----BEGIN PRIVATE KEY-----"), "PKCS#8")
        XCTAssertTrue(try String(contentsOfFile: "\(dir)/issuer.pub.pem", encoding: .utf8).hasPrefix("-----BEGIN PUBLIC KEY-----"))

        let loaded = try SiteKeys.load(dir: dir)
        XCTAssertEqual(loaded.siteID, "site-ams-1")
        XCTAssertEqual(loaded.issuerPublicKey, site.issuerPublicKey)
        XCTAssertEqual(loaded.issuerKeyID, KeyID.derive(from: site.issuerPublicKey))
        XCTAssertEqual(loaded.lockIDs, site.lockIDs)
        XCTAssertEqual(loaded.locks["front-door"]?.certificate, site.locks["front-door"]?.certificate)
        XCTAssertEqual(loaded.locks["front-door"]?.deviceKey.publicKey, site.locks["front-door"]?.deviceKey.publicKey)

        // The certificate on disk verifies for its lock, and the loaded issuer issues keys the lock accepts.
        let certBytes = Array(try Data(contentsOf: URL(fileURLWithPath: "\(dir)/locks/front-door.cert")))
        let cert = try LockCertificate(verifying: certBytes, issuers: loaded.trustedIssuers, siteID: "site-ams-1", lockID: "front-door", at: now)
        XCTAssertEqual(cert.deviceKey, loaded.locks["front-door"]?.deviceKey.publicKey)
        let issued = try loaded.issuer.issue(MKTest.request(locks: ["front-door"]), issuedAt: now)
        let verifier = Verifier(siteID: "site-ams-1", lockID: "front-door", issuers: loaded.trustedIssuers)
        XCTAssertTrue(verifier.verify(issued.bytes, at: now, revocations: .empty(siteID: "site-ams-1")).isGranted)
    }

    func testOpenSSLReadsTheKeys() throws {
        let dir = try MKTest.temporaryDirectory(self) + "/site"
        let site = try SiteKeys.create(dir: dir, siteID: "s", lockIDs: ["l1"], now: now)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["openssl", "pkey", "-in", "\(dir)/issuer.key.pem", "-pubout"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0)
        XCTAssertEqual(try P256.PublicKey(pem: text), site.issuerPublicKey)
    }

    func testNeverOverwritesKeys() throws {
        let dir = try MKTest.temporaryDirectory(self) + "/site"
        let site = try SiteKeys.create(dir: dir, siteID: "s", lockIDs: ["l1"], now: now)
        let before = try String(contentsOfFile: "\(dir)/issuer.key.pem", encoding: .utf8)
        XCTAssertThrowsError(try SiteKeys.create(dir: dir, siteID: "s", lockIDs: [], now: now)) {
            XCTAssertEqual($0 as? SiteKeysError, .alreadyExists("\(dir)/issuer.key.pem"))
        }
        XCTAssertThrowsError(try site.addingLock("l1", now: now)) {
            XCTAssertEqual($0 as? SiteKeysError, .alreadyExists("\(dir)/locks/l1.key.pem"))
        }
        XCTAssertEqual(try String(contentsOfFile: "\(dir)/issuer.key.pem", encoding: .utf8), before)
        let more = try site.addingLock("l2", now: now)
        XCTAssertEqual(try SiteKeys.load(dir: dir).lockIDs, more.lockIDs)
    }

    func testRejectsUnsafeIdentifiers() throws {
        let dir = try MKTest.temporaryDirectory(self) + "/site"
        for bad in ["../escape", "a/b", "", ".hidden", "-flag", String(repeating: "x", count: 65), "sp ace", "ümlaut"] {
            XCTAssertThrowsError(try SiteKeys.create(dir: dir, siteID: "s", lockIDs: [bad], now: now), bad) {
                XCTAssertEqual($0 as? SiteKeysError, .invalidLockID(bad))
            }
        }
        XCTAssertThrowsError(try SiteKeys.create(dir: dir, siteID: "", lockIDs: [], now: now))
        XCTAssertThrowsError(try SiteKeys.create(dir: dir, siteID: "a\nb", lockIDs: [], now: now))
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(dir)/issuer.key.pem"), "nothing written on refusal")
    }

    func testLoadDetectsInconsistentMaterial() throws {
        let dir = try MKTest.temporaryDirectory(self) + "/site"
        _ = try SiteKeys.create(dir: dir, siteID: "s", lockIDs: ["l1", "l2"], now: now)
        // Swap two certificates: each now certifies the other lock.
        let c1 = try Data(contentsOf: URL(fileURLWithPath: "\(dir)/locks/l1.cert"))
        let c2 = try Data(contentsOf: URL(fileURLWithPath: "\(dir)/locks/l2.cert"))
        try c2.write(to: URL(fileURLWithPath: "\(dir)/locks/l1.cert"))
        XCTAssertThrowsError(try SiteKeys.load(dir: dir)) {
            XCTAssertEqual($0 as? SiteKeysError, .certificate(lockID: "l1", .wrongLock("l2")))
        }
        try c1.write(to: URL(fileURLWithPath: "\(dir)/locks/l1.cert"))
        XCTAssertNoThrow(try SiteKeys.load(dir: dir))
        // A public key that does not match the private one.
        try MKTest.write(MKTest.otherIssuerKey.publicKey.pem, to: "\(dir)/issuer.pub.pem")
        XCTAssertThrowsError(try SiteKeys.load(dir: dir)) {
            XCTAssertEqual($0 as? SiteKeysError, .keyMismatch("issuer.pub.pem does not match issuer.key.pem"))
        }
        try FileManager.default.removeItem(atPath: "\(dir)/issuer.pub.pem")
        XCTAssertThrowsError(try SiteKeys.load(dir: dir)) {
            XCTAssertEqual($0 as? SiteKeysError, .missingFile("\(dir)/issuer.pub.pem"))
        }
        XCTAssertThrowsError(try SiteKeys.load(dir: dir + "/nope")) {
            XCTAssertEqual($0 as? SiteKeysError, .missingFile("\(dir)/nope/site-id"))
        }
    }
}
