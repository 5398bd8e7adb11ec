import Foundation
import XCTest
@testable import MobileKey

final class ScheduleTests: XCTestCase {
    private func utc(_ s: String) -> Date { ISO8601DateFormatter().date(from: s)! }

    func testWeekdayNumberingIsISO() throws {
        let s = try WeeklySchedule(timeZone: "UTC", windows: [])
        XCTAssertEqual(s.localWeekdayAndMinute(utc("2026-01-05T00:00:00Z")).weekday, 1, "Monday")
        XCTAssertEqual(s.localWeekdayAndMinute(utc("2026-01-10T12:00:00Z")).weekday, 6, "Saturday")
        XCTAssertEqual(s.localWeekdayAndMinute(utc("2026-01-11T23:59:59Z")).weekday, 7, "Sunday")
        XCTAssertEqual(s.localWeekdayAndMinute(utc("2026-01-11T23:59:59Z")).minute, 1439)
    }

    func testLocalTimeFollowsDaylightSaving() throws {
        // Mon–Fri 09:00–18:00 in Berlin: 08:00 UTC in winter (CET), 07:00 UTC in summer (CEST).
        let s = try WeeklySchedule(timeZone: "Europe/Berlin", weekdays: [1, 2, 3, 4, 5], from: "09:00", to: "18:00")
        XCTAssertTrue(s.contains(utc("2026-01-05T08:00:00Z")))
        XCTAssertFalse(s.contains(utc("2026-01-05T07:59:59Z")))
        XCTAssertTrue(s.contains(utc("2026-07-06T07:00:00Z")))
        XCTAssertFalse(s.contains(utc("2026-07-06T06:59:59Z")))
        XCTAssertTrue(s.contains(utc("2026-07-06T15:59:59Z")))
        XCTAssertFalse(s.contains(utc("2026-07-06T16:00:00Z")))
        // Around the spring-forward Sunday/Monday.
        XCTAssertTrue(s.contains(utc("2026-03-30T07:00:00Z")), "Monday after the switch, 09:00 CEST")
        XCTAssertFalse(s.contains(utc("2026-03-29T10:00:00Z")), "Sunday")
    }

    func testWindowsCrossingMidnightAreTwoWindows() throws {
        // Friday 22:00 → Saturday 02:00 in New York.
        let s = try WeeklySchedule(timeZone: "America/New_York", windows: [
            try .init(weekday: 5, from: "22:00", to: "24:00"), try .init(weekday: 6, from: "00:00", to: "02:00"),
        ])
        XCTAssertTrue(s.contains(utc("2026-01-10T03:30:00Z")), "Friday 22:30 EST")
        XCTAssertTrue(s.contains(utc("2026-01-10T06:59:00Z")), "Saturday 01:59 EST")
        XCTAssertFalse(s.contains(utc("2026-01-10T07:00:00Z")), "Saturday 02:00 EST")
        XCTAssertFalse(s.contains(utc("2026-01-10T02:59:00Z")), "Friday 21:59 EST")
    }

    func testValidation() {
        XCTAssertThrowsError(try WeeklySchedule(timeZone: "Nowhere/Atlantis", windows: [])) {
            XCTAssertEqual($0 as? WeeklySchedule.ScheduleError, .unknownTimeZone("Nowhere/Atlantis"))
        }
        XCTAssertThrowsError(try WeeklySchedule.Window(weekday: 0, startMinute: 0, endMinute: 10))
        XCTAssertThrowsError(try WeeklySchedule.Window(weekday: 1, startMinute: 10, endMinute: 10))
        XCTAssertThrowsError(try WeeklySchedule.Window(weekday: 1, startMinute: 0, endMinute: 1441))
        XCTAssertThrowsError(try WeeklySchedule.Window(weekday: 1, from: "9", to: "10:00"))
        XCTAssertThrowsError(try WeeklySchedule.Window(weekday: 1, from: "24:30", to: "10:00"))
        let many = (0..<65).map { try! WeeklySchedule.Window(weekday: 1, startMinute: $0, endMinute: $0 + 1) }
        XCTAssertThrowsError(try WeeklySchedule(timeZone: "UTC", windows: many)) {
            XCTAssertEqual($0 as? WeeklySchedule.ScheduleError, .tooManyWindows(65))
        }
    }

    func testEncodingIsSortedAndRoundTrips() throws {
        let s = try WeeklySchedule(timeZone: "Europe/Berlin", windows: [
            try .init(weekday: 3, from: "09:00", to: "12:00"), try .init(weekday: 1, from: "13:00", to: "18:00"),
            try .init(weekday: 1, from: "09:00", to: "12:00"),
        ])
        XCTAssertEqual(s.cbor, ["Europe/Berlin", [[1, 540, 720], [1, 780, 1080], [3, 540, 720]]])
        XCTAssertEqual(try WeeklySchedule(cbor: s.cbor), s)
        XCTAssertThrowsError(try WeeklySchedule(cbor: ["UTC"]))
        XCTAssertThrowsError(try WeeklySchedule(cbor: ["UTC", [[1, 0]]]))
        XCTAssertThrowsError(try WeeklySchedule(cbor: ["UTC", [[1, -5, 10]]]))
    }

    func testSubscriptionStartsAtLocalMidnight() {
        let tz = TimeZone(identifier: "Europe/Berlin")!
        let w = ValidityWindow.subscription(startDate: utc("2026-02-10T15:00:00Z"), timeZone: tz, end: utc("2026-03-01T00:00:00Z"))
        XCTAssertEqual(w.notBefore, utc("2026-02-09T23:00:00Z"))
    }
}
