import BLE
import Foundation
import XCTest
@testable import Emulator
import Events
import Hardware
import KeywayCrypto
@testable import MobileKey

/// Issue 14 item 3, end to end: the site revokes a lock's certificate (as after a lock's device key
/// leaked); phones receive the list with their keys and refuse that lock. What the phone does is
/// what the protocol implies for a lock it does not trust: it writes its phone hello, reads the
/// reader hello, refuses, and sends nothing more — so the lock records nothing (an abandoned hello is
/// no event, SECURITY.md G9). A phone holding a FAST key for that lock does not tap FAST either.
final class LockCertificateRevocationAttackTests: XCTestCase {
    var bench: AttackBench!
    let entrance = "main-entrance"

    override func setUp() async throws { bench = try await AttackBench.make() }
    override func tearDown() async throws {
        await bench?.shutdown()
        bench = nil
    }

    func testAPhoneRefusesARevokedLockCertificateAndTheLockRecordsNothing() async throws {
        let key = try await bench.issue(["user": "u-ada", "locks": [entrance, "room-dolores"]])
        // Granted in full, then FAST: the phone holds a FAST key for the entrance.
        _ = try await bench.emu.tapWithKeyReport(key.keyID, lock: entrance)
        let fast = try await bench.emu.tapWithKeyReport(key.keyID, lock: entrance)
        XCTAssertEqual(fast.mode, .fast)

        let version = try await bench.emu.revokeLockCertificate(entrance)
        let list = await bench.emu.site.directory.revocationList
        XCTAssertEqual(list.version, version)
        XCTAssertTrue(list.isRevoked(certificateID: try XCTUnwrap(bench.emu.keys.locks[entrance]).certificate.id))

        let mark = try await bench.mark()
        let r = try await bench.apiTap(["lock": entrance, "key_id": key.keyID])
        XCTAssertEqual(r["result"] as? String, "phone_refused")
        XCTAssertEqual(r["reason"] as? String, "lock_certificate_revoked")
        XCTAssertEqual(r["mode"] as? String, "full", "no FAST tap to a lock the site no longer vouches for")
        XCTAssertTrue(r["event_id"] is NSNull || r["event_id"] == nil)
        let events = try await bench.decisions(after: mark, lock: entrance)
        XCTAssertEqual(events.count, 0, "the phone revealed nothing, so the lock decided nothing")

        // Another lock's certificate is unaffected.
        let other = try await bench.apiTap(["lock": "room-dolores", "key_id": key.keyID])
        XCTAssertEqual(other["result"] as? String, "granted")

        // The signed list a restart loads names the certificate too.
        let stored = try XCTUnwrap(try bench.emu.store.signedRevocationList(site: bench.siteID))
        let verified = try RevocationList(verifying: stored, issuers: bench.emu.keys.trustedIssuers, siteID: bench.siteID)
        XCTAssertEqual(verified, list)
    }
}
