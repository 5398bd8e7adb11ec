@testable import Events
import Foundation
import XCTest

final class ModelTests: XCTestCase {
    func testRFC3339FormatAndParse() {
        XCTAssertEqual(RFC3339.format(milliseconds: 0), "1970-01-01T00:00:00.000Z")
        XCTAssertEqual(RFC3339.format(milliseconds: 1_740_821_400_250), "2025-03-01T09:30:00.250Z")
        XCTAssertEqual(RFC3339.format(milliseconds: 951_782_400_000), "2000-02-29T00:00:00.000Z")
        XCTAssertEqual(RFC3339.format(milliseconds: -1), "1969-12-31T23:59:59.999Z")
        XCTAssertEqual(RFC3339.parseMilliseconds("2025-03-01T09:30:00.250Z"), 1_740_821_400_250)
        XCTAssertEqual(RFC3339.parseMilliseconds("2025-03-01T10:30:00.25+01:00"), 1_740_821_400_250)
        XCTAssertEqual(RFC3339.parseMilliseconds("2025-03-01T09:30:00.250999Z"), 1_740_821_400_250)
        XCTAssertEqual(RFC3339.parseMilliseconds("2025-03-01t09:30:00z"), 1_740_821_400_000)
        for bad in ["2025-02-30T00:00:00Z", "2025-13-01T00:00:00Z", "2025-03-01T24:00:00Z", "2025-03-01T09:30:00",
                    "2025-03-01T09:30:00.Z", "2025-03-01T09:30:00+0100", "garbage", "2025-03-01T09:30:00Zjunk",
                    // A space instead of T: OpenAPI's date-time says T, and the API, the CLI and the journal
                    // share this one parser, so none of them accepts it.
                    "2025-03-01 09:30:00Z"] {
            XCTAssertNil(RFC3339.parseMilliseconds(bad), bad)
        }
        XCTAssertEqual(RFC3339.formatSeconds(Date(timeIntervalSince1970: 1_740_821_400.25)), "2025-03-01T09:30:00Z")
        // Round trip over a spread of days, including leap years and pre-epoch dates.
        var ms: Int64 = -2_208_988_800_000
        while ms < 4_102_444_800_000 {
            XCTAssertEqual(RFC3339.parseMilliseconds(RFC3339.format(milliseconds: ms)), ms)
            ms += 86_400_000 * 37 + 3_600_123
        }
    }

    func testSourcePaths() throws {
        let s = try EventSource.lock(site: "hq", id: "front-door")
        XCTAssertEqual(s.path, "/sites/hq/locks/front-door")
        XCTAssertEqual(try EventSource(path: "/sites/hq/locks/front-door"), s)
        XCTAssertEqual(try EventSource(path: "/sites/hq/iqs/iq-1").kind, .iq)
        XCTAssertEqual(try EventSource(path: "/sites/hq/controllers/c1").kind, .controller)
        for bad in ["/sites/hq/doors/x", "sites/hq/locks/x", "/sites/hq/locks/", "/sites/hq/locks/a/b", "/sites//locks/x", "/sites/h q/locks/x"] {
            XCTAssertThrowsError(try EventSource(path: bad), bad)
        }
        XCTAssertThrowsError(try EventSource.lock(site: "hq", id: "..")) {
            XCTAssertEqual($0 as? EventError, .invalidIdentifier(field: "lock", value: ".."))
        }
        XCTAssertThrowsError(try EventSource.lock(site: "hq", id: String(repeating: "x", count: 129)))
        XCTAssertThrowsError(try EventSource.lock(site: "hq", id: "ä"))
    }

    func testEventTypes() {
        XCTAssertEqual(EventType.allCases.count, Set(EventType.allCases.map(\.rawValue)).count)
        for t in EventType.allCases {
            XCTAssertTrue(t.rawValue.hasPrefix("com.keyway."))
            XCTAssertEqual(EventType(name: t.shortName), t)
            XCTAssertEqual(EventType(name: t.rawValue), t)
        }
        XCTAssertNil(EventType(name: "access.maybe"))
        XCTAssertEqual(EventType.accessDenied.result, "denied")
        XCTAssertNil(EventType.doorOpened.result)
    }

    func testValidationRejectsBadEvents() throws {
        let src = try EventSource.lock(site: "hq", id: "l1")
        let t = Date(timeIntervalSince1970: 1_700_000_000)
        var e = KeywayEvent(type: .accessGranted, source: src, time: t, user: String(repeating: "u", count: 300))
        XCTAssertThrowsError(try e.validate()) { XCTAssertEqual($0 as? EventError, .fieldTooLong(field: "user", limit: 256)) }
        e = KeywayEvent(type: .batteryLow, source: src, time: t, attributes: ["Battery": .int(5)])
        XCTAssertThrowsError(try e.validate()) { XCTAssertEqual($0 as? EventError, .invalidAttributeName("Battery")) }
        e = KeywayEvent(type: .batteryLow, source: src, time: t, attributes: ["sequence": .int(5)])
        XCTAssertThrowsError(try e.validate()) { XCTAssertEqual($0 as? EventError, .reservedAttributeName("sequence")) }
        e = KeywayEvent(type: .batteryLow, source: src, time: Date(timeIntervalSince1970: 1e13))
        XCTAssertThrowsError(try e.validate()) { XCTAssertEqual($0 as? EventError, .timeOutOfRange(field: "time")) }
        e = KeywayEvent(type: .accessGranted, source: src, time: t, door: "bad door")
        XCTAssertThrowsError(try e.validate())
        e = KeywayEvent(type: .accessDenied, source: src, time: t, reason: "Outside schedule")
        XCTAssertThrowsError(try e.validate()) {
            XCTAssertEqual($0 as? EventError, .invalidField(field: "reason", rule: "1–64 of a–z 0–9 _ . - (a machine-readable code)"))
        }
        e = KeywayEvent(type: .accessDenied, source: src, time: t, keyID: "zz")
        XCTAssertThrowsError(try e.validate())
        e = KeywayEvent(type: .accessDenied, source: src, time: t, keyID: "00FFab", reason: "outside_schedule")
        XCTAssertNoThrow(try e.validate())
        e = KeywayEvent(type: .batteryLow, source: src, time: t, attributes: ["battery_percent": .int(9)])
        XCTAssertNoThrow(try e.validate())
        XCTAssertEqual(e.stage, .held, "a lock's events start in its own trail")
        XCTAssertEqual(KeywayEvent(type: .iqOnline, source: try .iq(site: "hq", id: "iq1"), time: t).stage, .collected(by: nil))
    }

    func testCloudEventJSONShapeAndDeterminism() throws {
        let src = try EventSource.lock(site: "hq", id: "front")
        let ev = KeywayEvent(type: .accessDenied, source: src, time: Date(timeIntervalSince1970: 1_740_821_400.25),
                             door: "main", iq: "iq-1", user: "ada \"the\" user\n", keyID: "00ff", method: .mobile,
                             action: .open, reason: "revoked", revocationVersion: 7,
                             attributes: ["zeta": .bool(true), "alpha": .string("x")])
        let r = RecordedEvent(position: 5, id: "0190a1b2-0000-7000-8000-000000000000", sequence: 42, event: ev,
                              recordedAt: Date(timeIntervalSince1970: 0), collectedAt: nil, collectedBy: nil,
                              stage: .held, deliveries: [])
        let text = r.cloudEventString
        XCTAssertEqual(r.cloudEventJSON(), r.cloudEventJSON())
        XCTAssertTrue(text.hasPrefix(#"{"specversion":"1.0","id":"0190a1b2-0000-7000-8000-000000000000","source":"/sites/hq/locks/front","type":"com.keyway.access.denied","time":"2025-03-01T09:30:00.250Z","datacontenttype":"application/json","data":{"#), text)
        let obj = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.cloudEventJSON())) as? [String: Any])
        let data = try XCTUnwrap(obj["data"] as? [String: Any])
        XCTAssertEqual(data["site"] as? String, "hq")
        XCTAssertEqual(data["lock"] as? String, "front")
        XCTAssertEqual(data["iq"] as? String, "iq-1")
        XCTAssertEqual(data["user"] as? String, "ada \"the\" user\n")
        XCTAssertEqual(data["key_id"] as? String, "00ff")
        XCTAssertEqual(data["method"] as? String, "mobile")
        XCTAssertEqual(data["action"] as? String, "open")
        XCTAssertEqual(data["result"] as? String, "denied")
        XCTAssertEqual(data["reason"] as? String, "revoked")
        XCTAssertEqual(data["sequence"] as? Int, 42)
        XCTAssertEqual(data["revocation_version"] as? Int, 7)
        XCTAssertEqual(data["zeta"] as? Bool, true)
        XCTAssertTrue(text.contains(#""alpha":"x","zeta":true}"#), "attributes sorted, after the fixed members")
        XCTAssertNil(data["controller"])
    }

    func testUUIDv7Layout() {
        let id = UUIDv7.make(milliseconds: 0x0190_A1B2_C3D4)
        XCTAssertEqual(id.count, 36)
        XCTAssertTrue(id.hasPrefix("0190a1b2-c3d4-7"), id)
        let variant = id[id.index(id.startIndex, offsetBy: 19)]
        XCTAssertTrue("89ab".contains(variant), id)
        XCTAssertNotEqual(UUIDv7.make(milliseconds: 1), UUIDv7.make(milliseconds: 1))
        XCTAssertNotNil(UUID(uuidString: id))
    }

    func testRetryPolicyFullJitter() {
        let p = RetryPolicy(initialDelay: .seconds(1), maxDelay: .seconds(10), multiplier: 2)
        XCTAssertEqual(p.ceiling(forAttempt: 1), .seconds(1))
        XCTAssertEqual(p.ceiling(forAttempt: 2), .seconds(2))
        XCTAssertEqual(p.ceiling(forAttempt: 4), .seconds(8))
        XCTAssertEqual(p.ceiling(forAttempt: 5), .seconds(10))
        XCTAssertEqual(p.ceiling(forAttempt: 500), .seconds(10))
        XCTAssertEqual(p.delay(forAttempt: 3, unit: 0.5), .seconds(2))
        XCTAssertEqual(p.delay(forAttempt: 3, unit: 0), .zero)
        XCTAssertEqual(p.delay(forAttempt: 1, unit: 0.1, retryAfter: .seconds(3)), .seconds(3), "Retry-After is a floor")
        XCTAssertEqual(p.delay(forAttempt: 1, unit: 0.1, retryAfter: .seconds(3600)), .seconds(10), "…capped by maxDelay")
        XCTAssertEqual(p.delay(forAttempt: 2, unit: .nan), .zero)
    }
}
