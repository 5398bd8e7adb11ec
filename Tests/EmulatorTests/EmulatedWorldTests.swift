import Foundation
import XCTest
@testable import Emulator
import Events
import Hardware
import MobileKey

/// The emulated world holds on any date: the site's own lock certificates cover every instant the
/// simulated clock may show, whatever day the data directory was made; a certificate outside its
/// validity is a fault a test sets on purpose, and the phone's refusal is a tap result.
///
/// Dates here are relative to the machine's clock where the point is "whatever today is", and fixed
/// inside 2000–2100 otherwise — never a fixed instant that only holds until some day.
final class EmulatedWorldTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let site = root.appendingPathComponent("Fixtures/sites/coworking.yaml").path
    var dir: URL!
    var emu: Emulator?

    override func setUp() async throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("kw-world-\(UUID().uuidString)")
    }

    override func tearDown() async throws {
        await emu?.shutdown()
        try? FileManager.default.removeItem(at: dir)
    }

    func start(at clockStart: Date) async throws -> Emulator {
        var o = EmulatorOptions(sitePath: Self.site)
        o.dataDir = dir.path
        o.clock = .simulated
        o.clockStart = clockStart
        let e = try await Emulator.start(o)
        emu = e
        return e
    }


    /// A Monday 09:00 in San Francisco (17:00Z), `weeks` weeks from the Monday on or before `date`,
    /// inside every group's schedule.
    static func mondayMorning(near date: Date, weeks: Int = 0) -> Date {
        var utc = Calendar(identifier: .gregorian)
        utc.timeZone = TimeZone(identifier: "UTC")!
        let day = utc.startOfDay(for: date)
        let weekday = utc.component(.weekday, from: day) // 1 = Sunday
        let monday = utc.date(byAdding: .day, value: -((weekday + 5) % 7), to: day)!
        return utc.date(byAdding: .hour, value: 17 + 24 * 7 * weeks, to: monday)!
    }

    func grantedTap(_ e: Emulator, lock: String = "main-entrance", user: String = "u-ada") async throws -> [String: Any] {
        _ = try await e.issueKey(json: ["user": user, "locks": [lock]])
        return try await e.tap(json: ["lock": lock, "user": user])
    }

    func testTapsAreGrantedAcrossTheWholeWorldSpan() async throws {
        // A year before today, today, 400 days ahead, and the span's edges.
        let now = Date()
        let instants = [Self.mondayMorning(near: now, weeks: -52), Self.mondayMorning(near: now),
                        Self.mondayMorning(near: now.addingTimeInterval(400 * 86_400)),
                        Self.mondayMorning(near: EmulatedWorld.span.lowerBound, weeks: 1),
                        Self.mondayMorning(near: EmulatedWorld.span.upperBound, weeks: -1)]
        for at in instants {
            let e = try await start(at: at)
            let r = try await grantedTap(e)
            XCTAssertEqual(r["result"] as? String, "granted", "at \(at): \(r)")
            let lockJSON = try await e.lockJSON(id: "main-entrance")
            let cert = try XCTUnwrap(lockJSON["certificate"] as? [String: Any])
            XCTAssertEqual(cert["state"] as? String, "valid")
            await e.shutdown()
            emu = nil
            try FileManager.default.removeItem(at: dir)
        }
    }

    func testSettingTheClockAYearBackStillGrants() async throws {
        let e = try await start(at: Self.mondayMorning(near: Date()))
        // The API moves the clock at most 31 days per call: walk back a year, a step at a time.
        for _ in 0..<12 {
            let t = e.clock.now().addingTimeInterval(-30 * 86_400)
            _ = try await e.setClock(.init(time: rfc3339(t)))
        }
        let back = Self.mondayMorning(near: e.clock.now())
        _ = try await e.setClock(.init(time: rfc3339(back)))
        XCTAssertLessThan(e.clock.now(), Date().addingTimeInterval(-300 * 86_400))
        let r = try await grantedTap(e)
        XCTAssertEqual(r["result"] as? String, "granted", "\(r)")
    }

    /// A data directory made before the world span (certificates for five years from the day it was
    /// created) is re-certified on start, on disk and atomically, with the same device keys.
    func testAnOldDataDirectoryIsRecertifiedWithTheSameDeviceKeys() async throws {
        let config = try SiteFile.load(path: Self.site)
        let created = Date()
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let old = try SiteKeys.create(dir: dir.appendingPathComponent("keys").path, siteID: config.siteID,
                                      lockIDs: config.locks.map(\.id), now: created)
        XCTAssertFalse(EmulatedWorld.coversSpan(old.locks["main-entrance"]!.certificate))

        let e = try await start(at: Self.mondayMorning(near: created, weeks: -52))
        let r = try await grantedTap(e)
        XCTAssertEqual(r["result"] as? String, "granted", "a year before the directory was made: \(r)")

        let reloaded = try SiteKeys.load(dir: dir.appendingPathComponent("keys").path)
        for l in config.locks {
            let cert = try XCTUnwrap(reloaded.locks[l.id]?.certificate)
            XCTAssertTrue(EmulatedWorld.coversSpan(cert), l.id)
            XCTAssertEqual(cert.deviceKey, old.locks[l.id]!.deviceKey.publicKey, "\(l.id) keeps its device key")
        }
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.appendingPathComponent("keys/locks").path)
            .filter { $0.hasSuffix(".new") }
        XCTAssertEqual(leftovers, [], "no temporary certificate left behind")
    }

    func testAnExpiredLockCertificateIsAPhoneRefusalNotAnError() async throws {
        let e = try await start(at: Self.mondayMorning(near: Date()))
        await e.bridge.flush()
        let mark = try await e.journal.lastPosition()
        let cases: [(fault: String, reason: String)] = [("expired", "lock_certificate_expired"),
                                                        ("not_yet_valid", "lock_certificate_not_yet_valid")]
        for c in cases {
            let lock = try await e.setLockCertificate("main-entrance", json: ["fault": c.fault])
            XCTAssertEqual((lock["certificate"] as? [String: Any])?["state"] as? String, c.fault)
            let r = try await grantedTap(e)
            XCTAssertEqual(r["result"] as? String, "phone_refused", "\(r)")
            XCTAssertEqual(r["reason"] as? String, c.reason)
            XCTAssertTrue(r["event_id"] is NSNull, "the lock decided nothing")
            XCTAssertEqual(r["state"] as? String, "locked")
            let message = try XCTUnwrap(r["message"] as? String)
            XCTAssertFalse(message.contains("("), "no enum dump: \(message)")
        }
        await e.bridge.flush()
        let recorded = try await e.journal.events(EventQuery(types: [.accessGranted, .accessDenied], after: mark))
        XCTAssertEqual(recorded.count, 0, "a phone that refused the lock leaves no access event")

        // Another lock is unaffected; restoring the certificate restores taps.
        var r = try await grantedTap(e, lock: "room-dolores")
        XCTAssertEqual(r["result"] as? String, "granted")
        _ = try await e.setLockCertificate("main-entrance", json: ["fault": "none"])
        r = try await e.tap(json: ["lock": "main-entrance", "user": "u-ada"])
        XCTAssertEqual(r["result"] as? String, "granted", "\(r)")
    }

    func testACertificateWindowExpiresWithTheSimulatedClockAndResetRestoresIt() async throws {
        let e = try await start(at: Self.mondayMorning(near: Date()))
        let until = e.clock.now().addingTimeInterval(3600)
        _ = try await e.setLockCertificate("main-entrance", json: ["not_after": rfc3339(until)])
        var r = try await grantedTap(e)
        XCTAssertEqual(r["result"] as? String, "granted")
        // Past the end plus the phone's skew tolerance.
        _ = try await e.advanceClock(.init(seconds: 3600 + Verifier.defaultClockSkewTolerance + 10))
        r = try await e.tap(json: ["lock": "main-entrance", "user": "u-ada"])
        XCTAssertEqual(r["result"] as? String, "phone_refused")
        XCTAssertEqual(r["reason"] as? String, "lock_certificate_expired")

        _ = try await e.reset()
        let lockJSON = try await e.lockJSON(id: "main-entrance")
        let cert = try XCTUnwrap(lockJSON["certificate"] as? [String: Any])
        XCTAssertEqual(cert["state"] as? String, "valid")
        r = try await grantedTap(e)
        XCTAssertEqual(r["result"] as? String, "granted", "\(r)")
    }

    func testCertificateFaultRequestsAreValidated() async throws {
        let e = try await start(at: Self.mondayMorning(near: Date()))
        let bad: [([String: Any], String)] = [
            (["fault": "broken"], "fault"),
            (["fault": "expired", "not_after": "2030-01-01T00:00:00Z"], "fault"),
            (["not_before": "2030-01-01T00:00:00Z", "not_after": "2029-01-01T00:00:00Z"], "not_after"),
            (["not_after": "yesterday"], "not_after"),
        ]
        for (obj, field) in bad {
            do {
                _ = try await e.setLockCertificate("main-entrance", json: obj)
                XCTFail("accepted \(obj)")
            } catch let err as APIError {
                XCTAssertEqual(err.status, 400, "\(obj)")
                XCTAssertEqual(err.field, field, "\(obj)")
            }
        }
        do {
            _ = try await e.setLockCertificate("no-such-lock", json: ["fault": "expired"])
            XCTFail("accepted an unknown lock")
        } catch let err as APIError { XCTAssertEqual(err.status, 404) }
        // Nothing changed.
        let r = try await grantedTap(e)
        XCTAssertEqual(r["result"] as? String, "granted")
    }

    func testTheSimulatedClockCannotLeaveTheWorldSpan() async throws {
        let e = try await start(at: EmulatedWorld.span.upperBound.addingTimeInterval(-3600))
        do {
            _ = try await e.advanceClock(.init(seconds: 7200))
            XCTFail("advanced past 2100")
        } catch let err as APIError {
            XCTAssertEqual(err.status, 409)
            XCTAssertEqual(err.code, "clock_out_of_range")
        }
        do {
            _ = try await e.setClock(.init(time: "2100-01-02T00:00:00Z"))
            XCTFail("set past 2100")
        } catch let err as APIError { XCTAssertEqual(err.code, "clock_out_of_range") }
        XCTAssertEqual(e.clock.now(), EmulatedWorld.span.upperBound.addingTimeInterval(-3600), "the clock did not move")
        _ = try await e.advanceClock(.init(seconds: 3600))
        XCTAssertEqual(e.clock.now(), EmulatedWorld.span.upperBound, "the span's last instant is reachable")
    }

    func testASimulatedClockOutsideTheWorldSpanIsRefusedAtStart() async throws {
        do {
            _ = try await start(at: Date(timeIntervalSince1970: 4_200_000_000)) // 2103
            XCTFail("started in 2103")
        } catch let e as EmulatorError {
            XCTAssertTrue(e.description.contains("between 2000 and 2100"), e.description)
        }
    }
}
