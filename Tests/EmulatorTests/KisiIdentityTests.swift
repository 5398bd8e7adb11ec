import XCTest
@testable import Emulator

/// The Kisi facade's id mappings (docs/KISI.md, "Numeric ids" and the user row); end to end through a
/// real Kisi client: Tests/peers/test_kisi_client.py.
final class KisiIdentityTests: XCTestCase {
    func testNumericIdsAreStablePositiveAndJSONSafe() {
        let a = KisiIdentity.id(.user, "u-ada")
        XCTAssertEqual(a, KisiIdentity.id(.user, "u-ada"))
        XCTAssertNotEqual(a, KisiIdentity.id(.member, "u-ada"), "the kind is part of the id")
        XCTAssertNotEqual(a, KisiIdentity.id(.user, "u-adb"))
        for key in ["", "u-ada", "main-entrance", String(repeating: "x", count: 64)] {
            let id = KisiIdentity.id(.lock, key)
            XCTAssertTrue(id >= 1 && id <= 1 << 48, "\(key): \(id)")  // exact in any JSON reader (2^53)
        }
        // The documented derivation, computed apart (Python: int.from_bytes(sha256(b"lock:main-entrance")[:6]) + 1):
        // integrations keep these ids, so the mapping must not drift between builds.
        XCTAssertEqual(KisiIdentity.id(.lock, "main-entrance"), 39_335_747_108_153)
    }

    func testEmailsAndUserIdsMapBothWays() {
        let site = "sf-soma"
        for (email, id) in [("grace@example.com", "grace..example.com"), ("Nia.N@Nexudus.example", "nia.n..nexudus.example"),
                            ("u-ada@sf-soma.keyway.test", "u-ada")] {
            XCTAssertEqual(KisiIdentity.userID(email: email, site: site), id, email)
            XCTAssertEqual(KisiIdentity.email(userID: id, site: site), email.lowercased(), id)
        }
        XCTAssertEqual(KisiIdentity.email(userID: "u-linus", site: site), "u-linus@sf-soma.keyway.test")
        // Addresses a Keyway id cannot hold are refused, never mangled into someone else's id.
        for bad in ["a+tag@example.com", "a..b@example.com", "no-at.example.com", "@example.com", "a@", "a@b@c.d", "ü@example.com"] {
            XCTAssertNil(KisiIdentity.userID(email: bad, site: site), bad)
        }
    }

    func testResolveRefusesAnUnknownIdInKisisTerms() {
        XCTAssertThrowsError(try KisiIdentity.resolve(42, .lock, in: ["main-entrance"], key: { $0 }, what: "lock")) { e in
            XCTAssertEqual((e as? KisiError)?.status, 404)
        }
        XCTAssertThrowsError(try KisiIdentity.resolve(42, .lock, in: ["main-entrance"], key: { $0 }, what: "lock", field: "group_lock.lock_id")) { e in
            XCTAssertEqual((e as? KisiError)?.status, 422)
            XCTAssertEqual((e as? KisiError)?.field, "group_lock.lock_id")
        }
        let id = KisiIdentity.id(.lock, "back-door")
        XCTAssertEqual(try KisiIdentity.resolve(id, .lock, in: ["main-entrance", "back-door"], key: { $0 }, what: "lock"), "back-door")
    }
}
