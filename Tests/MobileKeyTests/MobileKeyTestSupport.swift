import Foundation
import KeywayCrypto
import XCTest
@testable import MobileKey

/// Shared fixtures for the credential tests (namespaced: other test files share this target).
enum MKTest {
    /// Monday 2026-01-05 10:00:00 UTC (11:00 in Europe/Berlin).
    static let monday10UTC = Date(timeIntervalSince1970: 1_767_607_200)
    static let site = "site-ams-1"
    static let lock = "front-door"

    static let issuerKey = try! P256.PrivateKey()
    static let otherIssuerKey = try! P256.PrivateKey()
    static let holderKey = try! P256.PrivateKey()
    static var issuer: CredentialIssuer { CredentialIssuer(siteID: site, key: issuerKey) }
    static var verifier: Verifier { Verifier(siteID: site, lockID: lock, issuerKeys: [issuerKey.publicKey]) }
    static var noRevocations: RevocationList { .empty(siteID: site) }

    static func request(locks: [String] = [lock], from: Date = monday10UTC.addingTimeInterval(-3600),
                        until: Date = monday10UTC.addingTimeInterval(3600), schedule: WeeklySchedule? = nil,
                        officeMode: Bool = false) -> CredentialRequest {
        CredentialRequest(userID: "user-42", lockIDs: locks, holderKey: holderKey.publicKey,
                          validity: ValidityWindow(notBefore: from, expires: until),
                          schedule: schedule, officeMode: officeMode)
    }

    static func issue(_ r: CredentialRequest = request(), by issuer: CredentialIssuer = MKTest.issuer) throws -> IssuedCredential {
        try issuer.issue(r, issuedAt: monday10UTC.addingTimeInterval(-7200))
    }

    /// Signs arbitrary claims (for hostile or unusual credentials a real issuer would not make).
    static func signClaims(_ claims: CBOR, key: P256.PrivateKey = issuerKey, contentType: String? = nil) throws -> [UInt8] {
        try signPayload(claims.encoded(), key: key, contentType: contentType)
    }

    static func signPayload(_ payload: [UInt8], key: P256.PrivateKey = issuerKey, contentType: String? = nil) throws -> [UInt8] {
        try COSESign1.sign(payload: payload, keyID: KeyID.derive(from: key.publicKey), contentType: contentType, key: key).encoded()
    }

    /// A COSE_Sign1 with an arbitrary protected header, correctly signed with `key` (ES256 math).
    static func signWithHeader(_ protected: CBOR, unprotected: [CBOR: CBOR] = [:], payload: [UInt8],
                               key: P256.PrivateKey = issuerKey) throws -> [UInt8] {
        let p = protected.encoded()
        let sig = try ECDSA.sign(COSESign1.toBeSigned(protectedHeader: p, externalAAD: [], payload: payload), with: key)
        return CBOR.tagged(18, .array([.bytes(p), .map(unprotected), .bytes(payload), .bytes(sig)])).encoded()
    }

    static func claims(of issued: IssuedCredential) -> [CBOR: CBOR] {
        issued.credential.claims.mapValue!
    }

    // MARK: - Repository and the Python peer

    static let repoRoot: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static var python: String { repoRoot.appendingPathComponent(".venv/bin/python").path }
    static var peer: String { repoRoot.appendingPathComponent("Tests/peers/cwt_peer.py").path }

    struct PeerResult {
        let status: Int32
        let stdout: String
        let stderr: String
        var json: [String: Any]? {
            (try? JSONSerialization.jsonObject(with: Data(stdout.utf8))) as? [String: Any]
        }
    }

    /// Runs Tests/peers/cwt_peer.py with the project's virtual environment.
    static func runPeer(_ args: [String], file: StaticString = #filePath, line: UInt = #line) throws -> PeerResult {
        guard FileManager.default.isExecutableFile(atPath: python) else {
            XCTFail("\(python) missing — run tools/setup (make test does)", file: file, line: line)
            throw CocoaError(.fileNoSuchFile)
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = [peer] + args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        // Read before waiting so a large output cannot fill the pipe and deadlock.
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return PeerResult(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self),
                          stderr: String(decoding: e, as: UTF8.self))
    }

    /// A fresh temporary directory, removed by the test case's teardown.
    static func temporaryDirectory(_ test: XCTestCase) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("keyway-mk-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        test.addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }

    static func write(_ text: String, to path: String) throws {
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }
}

extension TapPhone {
    /// One tap's messages between this phone and `lock` (tests): the phone hello, the lock's session
    /// answering it at `lockTime`, and the presentation the phone builds at `at` (the same instant
    /// unless given).
    func presentation(to lock: TapLockIdentity, action: TapAction = .open, at: Date, lockTime: Date? = nil) throws -> (session: TapLockSession, pending: TapPhone.Pending) {
        let opening = try open()
        let session = try lock.startSession(phoneHello: opening.phoneHello, now: lockTime ?? at)
        return (session, try opening.present(readerHello: session.helloBytes, action: action, at: at))
    }
}
