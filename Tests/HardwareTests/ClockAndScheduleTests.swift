import Foundation
import XCTest
@testable import Hardware

final class ClockTests: XCTestCase {
    final class Trace: @unchecked Sendable {
        private let m = NSLock()
        private var items: [String] = []
        func add(_ s: String) { m.lock(); items.append(s); m.unlock() }
        var all: [String] { m.lock(); defer { m.unlock() }; return items }
    }

    func testAdvanceFiresDueTimersInDeadlineOrderThenSchedulingOrder() async {
        let clock = SimulatedClock(start: Date(timeIntervalSince1970: 1000))
        let trace = Trace()
        clock.schedule(after: 5) { trace.add("b5") }
        clock.schedule(after: 2) { trace.add("a2") }
        clock.schedule(after: 5) { trace.add("c5") }
        clock.schedule(after: 9) { trace.add("d9") }
        await clock.advance(by: 5)
        XCTAssertEqual(trace.all, ["a2", "b5", "c5"])
        XCTAssertEqual(clock.now(), Date(timeIntervalSince1970: 1005))
        await clock.advance(by: 4)
        XCTAssertEqual(trace.all, ["a2", "b5", "c5", "d9"])
        XCTAssertEqual(clock.pendingTimers, 0)
    }

    func testNowIsEachTimersDeadlineWhileItRunsAndChainedTimersFireInTheSameAdvance() async {
        let clock = SimulatedClock(start: Date(timeIntervalSince1970: 0))
        let trace = Trace()
        clock.schedule(after: 3) {
            trace.add("first@\(Int(clock.now().timeIntervalSince1970))")
            clock.schedule(after: 3) { trace.add("chained@\(Int(clock.now().timeIntervalSince1970))") }
        }
        await clock.advance(by: 10)
        XCTAssertEqual(trace.all, ["first@3", "chained@6"])
        XCTAssertEqual(clock.now().timeIntervalSince1970, 10)
    }

    func testCancelledTimerNeverFires() async {
        let clock = SimulatedClock()
        let trace = Trace()
        let t = clock.schedule(after: 1) { trace.add("x") }
        t.cancel()
        t.cancel()
        await clock.advance(by: 2)
        XCTAssertEqual(trace.all, [])
        XCTAssertTrue(t.isCancelled)
    }

    func testSetBackwardsFiresNothingAndSleepResumesOnAdvance() async throws {
        let clock = SimulatedClock(start: Date(timeIntervalSince1970: 100))
        let trace = Trace()
        clock.schedule(after: 10) { trace.add("t") }
        await clock.set(to: Date(timeIntervalSince1970: 50))
        XCTAssertEqual(trace.all, [])
        XCTAssertEqual(clock.now().timeIntervalSince1970, 50)
        let sleeper = Task { try await clock.sleep(until: Date(timeIntervalSince1970: 60)); trace.add("woke") }
        // Let the sleeper register its timer.
        while clock.pendingTimers < 2 { await Task.yield() }
        await clock.advance(by: 10)
        try await sleeper.value
        XCTAssertEqual(trace.all, ["woke"])
        await clock.set(to: Date(timeIntervalSince1970: 110))
        XCTAssertEqual(trace.all, ["woke", "t"])
    }

    func testSleepIsCancellable() async {
        let clock = SimulatedClock()
        let task = Task { try await clock.sleep(for: 3600) }
        while clock.pendingTimers < 1 { await Task.yield() }
        task.cancel()
        do {
            try await task.value
            XCTFail("sleep should throw on cancellation")
        } catch {
            XCTAssertTrue(error is CancellationError)
        }
    }

    /// The wall clock runs on real time, so this test waits on conditions: the live timer's action ran
    /// (an expectation it fulfils), and the cancelled timer's task ended — had the cancel not held, that
    /// task would have run its action before ending. The expectation's timeout only bounds a hang.
    func testRealClockTimerFiresNotBeforeItsDeadlineAndACancelledOneNever() async throws {
        let clock = RealClock()
        let trace = Trace()
        let fired = expectation(description: "the real timer fired")
        let deadline = clock.now().addingTimeInterval(0.005)
        clock.schedule(at: deadline) {
            trace.add("real@\(Date() >= deadline ? "deadline" : "early")")
            fired.fulfill()
        }
        let cancelled = clock.schedule(at: deadline) { trace.add("never") }
        cancelled.cancel()
        await fulfillment(of: [fired], timeout: 60)
        await (try XCTUnwrap(cancelled.task, "a RealClock timer has a task")).value
        XCTAssertTrue(cancelled.isCancelled)
        XCTAssertEqual(trace.all, ["real@deadline"])
    }
}

final class ScheduleTests: XCTestCase {
    func testWindowParsing() {
        XCTAssertEqual(WeeklyWindow(parsing: "mon-fri 09:00-18:00")?.description, "mon-fri 09:00-18:00")
        XCTAssertEqual(WeeklyWindow(parsing: "24/7")?.isAlways, true)
        XCTAssertEqual(WeeklyWindow(parsing: "sat,sun")?.description, "sat,sun")
        XCTAssertEqual(WeeklyWindow(parsing: "fri-mon 22:00-06:00")?.days, [.friday, .saturday, .sunday, .monday])
        XCTAssertNil(WeeklyWindow(parsing: "mon-fri 9-18"))
        XCTAssertNil(WeeklyWindow(parsing: "funday 09:00-18:00"))
        XCTAssertNil(WeeklyWindow(parsing: "mon 09:00-09:00"))
        XCTAssertNil(WeeklyWindow(parsing: "mon 25:00-26:00"))
        XCTAssertNil(WeeklyWindow(parsing: "mon 09:60-10:00"))
    }

    func testWeekdayWindowInSiteTimeZoneAcrossDST() {
        let day = Timetable([WeeklyWindow(parsing: "mon-fri 09:00-18:00")!])
        // Monday 2025-03-10, the day after spring-forward: 09:00 local is 16:00 UTC (PDT), 17:00 UTC on the 7th (PST).
        XCTAssertTrue(day.contains(pacific.local(at("2025-03-10T09:00:00-07:00"))))
        XCTAssertFalse(day.contains(pacific.local(at("2025-03-10T08:59:00-07:00"))))
        XCTAssertTrue(day.contains(pacific.local(at("2025-03-07T17:59:00-08:00"))))
        XCTAssertFalse(day.contains(pacific.local(at("2025-03-07T18:00:00-08:00"))))
        // Saturday.
        XCTAssertFalse(day.contains(pacific.local(at("2025-03-08T12:00:00-08:00"))))
    }

    func testOvernightWindowCoversTheNextMorning() {
        let night = Timetable([WeeklyWindow(parsing: "fri 22:00-06:00")!])
        XCTAssertTrue(night.contains(pacific.local(at("2025-01-10T23:00:00-08:00"))))   // Fri 23:00
        XCTAssertTrue(night.contains(pacific.local(at("2025-01-11T05:59:00-08:00"))))   // Sat 05:59
        XCTAssertFalse(night.contains(pacific.local(at("2025-01-11T06:00:00-08:00"))))
        XCTAssertFalse(night.contains(pacific.local(at("2025-01-09T23:00:00-08:00"))))  // Thu
    }

    func testLockScheduleNextOccurrenceSkipsDaysAndIsStrictlyAfter() {
        let s = ScheduledTime(parsing: "mon-fri 19:00")!
        // Friday 19:00 → next is Monday 19:00.
        let friday = at("2025-01-10T19:00:00-08:00")
        XCTAssertEqual(s.nextOccurrence(after: friday, in: pacific), at("2025-01-13T19:00:00-08:00"))
        XCTAssertEqual(s.nextOccurrence(after: at("2025-01-10T18:59:59-08:00"), in: pacific), friday)
    }

    func testEndOfSpanJoinsAdjacentWindows() {
        let t = Timetable([WeeklyWindow(parsing: "mon 08:00-12:00")!, WeeklyWindow(parsing: "mon 12:00-18:00")!])
        XCTAssertEqual(t.endOfSpan(containing: at("2025-01-06T09:00:00-08:00"), in: pacific), at("2025-01-06T18:00:00-08:00"))
        XCTAssertNil(t.endOfSpan(containing: at("2025-01-06T19:00:00-08:00"), in: pacific))
        XCTAssertNil(Timetable.always.endOfSpan(containing: at("2025-01-06T19:00:00-08:00"), in: pacific))
    }

    func testTagUIDParsing() {
        XCTAssertEqual(TagUID(hex: "04a23b1c5d80")?.description, "04:A2:3B:1C:5D:80")
        XCTAssertEqual(TagUID(hex: "04:A2:3B:1C:5D:80"), TagUID(hex: "04-a2-3b-1c-5d-80"))
        XCTAssertNil(TagUID(hex: "04A2"))                       // 2 bytes: too short
        XCTAssertNil(TagUID(hex: "00112233445566778899AA"))     // 11 bytes: too long
        XCTAssertNil(TagUID(hex: "04A23B1C5"))                  // odd nibble
        XCTAssertNil(TagUID(hex: "zz112233"))
        XCTAssertEqual(TagUID(hex: "00112233445566778899")?.bytes.count, 10)
    }
}
