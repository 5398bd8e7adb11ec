import BLE  // SplitMix64: deterministic per task, so a failing seed can be rerun
import Foundation
import XCTest
@testable import Emulator
import Events
import Hardware
import MobileKey

/// Many phones tap many locks over the loopback radio at the same time as IQs go on- and offline, the
/// simulated clock advances, keys are revoked and door sensors change. Afterwards the journal must
/// hold exactly one event per tap (matched by the lock's audit record: lock id + device sequence), no
/// device may have a missing or duplicated record, and every lock must be in the state its own event
/// history explains.
///
/// Sized to run in a few seconds in a debug build and to finish under the thread sanitizer
/// (`make tsan`). Bigger runs: `KEYWAY_STRESS_TAPS` (total taps, default 400), `KEYWAY_STRESS_PHONES`
/// (default 16), `KEYWAY_STRESS_SEED` (default 1).
final class ConcurrencyStressTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    struct Parameters: CustomStringConvertible {
        var taps = 400
        var phones = 16
        var seed: UInt64 = 1

        static func fromEnvironment() -> Parameters {
            let env = ProcessInfo.processInfo.environment
            var p = Parameters()
            if let v = env["KEYWAY_STRESS_TAPS"].flatMap(Int.init), v > 0 { p.taps = v }
            if let v = env["KEYWAY_STRESS_PHONES"].flatMap(Int.init), v > 0 { p.phones = v }
            if let v = env["KEYWAY_STRESS_SEED"].flatMap(UInt64.init) { p.seed = v }
            p.phones = min(p.phones, p.taps)
            return p
        }

        var description: String { "taps=\(taps) phones=\(phones) seed=\(seed)" }
    }

    struct Phone: Sendable {
        let user: String
        let keyID: String
        let locks: Set<String>
        let officeMode: Bool
    }

    struct TapAttempt: Sendable {
        let phone: Int
        let lock: String
        let action: TapAction
        let keyID: String
        let decision: Decision?
        let eventID: String?
        let error: String?
    }

    /// What the background tasks did, to check against the journal.
    struct Background: Sendable {
        var iqToggles: [String: Int] = [:]
        var revoked: [String: UInt64] = [:]        // key id → revocation list version that revoked it
        var doorChanges: [String: [Bool]] = [:]    // controller id → sensor values set, in order
        var clockSteps = 0
    }

    enum Report: Sendable {
        case taps([TapAttempt])
        case background(Background)
    }

    /// Set when the last phone finishes: the background tasks then wind down. (An NSLock, which the
    /// thread sanitizer sees, rather than `Mutex`, whose contended hand-over it cannot see on Linux.)
    final class StopFlag: @unchecked Sendable {
        private let lock = NSLock()
        private var running: Int
        private var _stopped = false
        init(phones: Int) { running = phones }
        var stopped: Bool { lock.withLock { _stopped } }
        func phoneFinished() { lock.withLock { running -= 1; if running <= 0 { _stopped = true } } }
    }

    var dir: URL!
    var emu: Emulator!

    override func setUp() async throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("kw-stress-\(UUID().uuidString)")
        var o = EmulatorOptions(sitePath: Self.root.appendingPathComponent("Fixtures/sites/coworking.yaml").path)
        o.dataDir = dir.path
        o.clock = .simulated
        // Monday 10:00 in San Francisco: day passes are in schedule and the main entrance is in its easy
        // office mode window (a staff tap toggles passage), and no lock schedule falls due during the run.
        o.clockStart = Date(timeIntervalSince1970: 1_795_456_800) // 2026-11-23T18:00:00Z
        emu = try await Emulator.start(o)
    }

    override func tearDown() async throws {
        await emu?.shutdown()
        try? FileManager.default.removeItem(at: dir)
    }


    func testConcurrentTapsWithIQOutagesClockRevocationsAndDoorsLeaveAnExplainedJournal() async throws {
        let p = Parameters.fromEnvironment()
        let emu = self.emu!
        let started = ContinuousClock.now
        let lockIDs = emu.config.locks.map(\.id)
        let iqIDs = emu.config.iqs.map(\.id)
        let controllerIDs = emu.config.doorControllers.map(\.id)
        guard let clock = emu.simulatedClock else { return XCTFail("the stress test needs the simulated clock") }
        var initialOnline: [String: Bool] = [:]
        for q in emu.site.iqs { initialOnline[q.id] = await q.isOnline }

        // Keys: each phone holds one key for most locks (some locks left out, so `wrong_lock` denials
        // happen); every fourth phone may toggle office mode.
        var phones: [Phone] = []
        for i in 0..<p.phones {
            let locks = lockIDs.enumerated().filter { ($0.offset + i) % 4 != 3 }.map(\.element)
            let office = i % 4 == 0
            let k = try await emu.issueKey(json: ["user": "stress-\(i)", "locks": locks, "office_mode": office])
            phones.append(Phone(user: "stress-\(i)", keyID: try XCTUnwrap(k["key_id"] as? String), locks: Set(locks), officeMode: office))
        }
        // Keys of these phones get revoked during the run (two of them by concurrent calls).
        let toRevoke = phones.indices.filter { $0 % 5 == 2 }.map { phones[$0].keyID }

        let stop = StopFlag(phones: p.phones)
        let tapsPerPhone = (0..<p.phones).map { p.taps / p.phones + ($0 < p.taps % p.phones ? 1 : 0) }
        let reports = try await withThrowingTaskGroup(of: Report.self) { group -> [Report] in
            // Phones.
            for (i, phone) in phones.enumerated() {
                let count = tapsPerPhone[i]
                group.addTask {
                    defer { stop.phoneFinished() }
                    var rng = SplitMix64(seed: p.seed &* 1_000_003 &+ UInt64(i))
                    var attempts: [TapAttempt] = []
                    for _ in 0..<count {
                        let lock = lockIDs[Int(rng.next() % UInt64(lockIDs.count))]
                        let roll = rng.next() % 10
                        // Office-mode requests from phones without the right too: denied, but still events.
                        let action: TapAction = roll == 0 ? .officeModeOn : (roll == 1 ? .officeModeOff : .open)
                        do {
                            // Non-conformant: the phone presents even where it holds no key, so the lock decides (`wrong_lock`).
                            let d = try await emu.tapWithKey(phone.keyID, lock: lock, action: action, phone: .nonConformant)
                            let id = await emu.bridge.eventID(for: d.record)
                            attempts.append(TapAttempt(phone: i, lock: lock, action: action, keyID: phone.keyID, decision: d, eventID: id, error: nil))
                        } catch {
                            attempts.append(TapAttempt(phone: i, lock: lock, action: action, keyID: phone.keyID, decision: nil, eventID: nil, error: "\(error)"))
                        }
                    }
                    return .taps(attempts)
                }
            }
            // IQ uplinks going down and coming back (coming back syncs every lock in reach at once).
            group.addTask {
                var bg = Background()
                var rng = SplitMix64(seed: p.seed &+ 11)
                while !stop.stopped {
                    let q = iqIDs[Int(rng.next() % UInt64(iqIDs.count))]
                    guard let iq = emu.site.iq(q) else { break }
                    let online = await iq.isOnline
                    _ = try await emu.iqOnline(q, .init(online: !online))
                    bg.iqToggles[q, default: 0] += 1
                    try await Task.sleep(for: .milliseconds(2))
                }
                return .background(bg)
            }
            // The clock: 0.25–2.5 s steps, so open windows (3–10 s) expire in the middle of taps and
            // IQ periodic syncs (60 s) fire.
            group.addTask {
                var bg = Background()
                var rng = SplitMix64(seed: p.seed &+ 13)
                while !stop.stopped {
                    await clock.advance(by: Double(250 + rng.next() % 2251) / 1000)
                    bg.clockSteps += 1
                    try await Task.sleep(for: .milliseconds(1))
                }
                return .background(bg)
            }
            // Revocations through the control API operation, in the middle of the run; the last two at
            // the same time.
            group.addTask {
                var bg = Background()
                for (n, key) in toRevoke.dropLast(2).enumerated() {
                    // Spread over the start of the run, while the phones tap.
                    try await Task.sleep(for: .milliseconds(5 * (n + 1)))
                    let r = try await emu.revokeKey(key)
                    bg.revoked[key] = UInt64(r.revocationListVersion)
                }
                let pair = Array(toRevoke.suffix(2))
                if pair.count == 2 {
                    async let a = emu.revokeKey(pair[0])
                    async let b = emu.revokeKey(pair[1])
                    let (ra, rb) = try await (a, b)
                    bg.revoked[pair[0]] = UInt64(ra.revocationListVersion)
                    bg.revoked[pair[1]] = UInt64(rb.revocationListVersion)
                }
                return .background(bg)
            }
            // Door position switches of the controller-driven doors: legitimate and forced openings.
            group.addTask {
                var bg = Background()
                var rng = SplitMix64(seed: p.seed &+ 17)
                var open = Dictionary(uniqueKeysWithValues: controllerIDs.map { ($0, false) })
                while !stop.stopped, !controllerIDs.isEmpty {
                    let c = controllerIDs[Int(rng.next() % UInt64(controllerIDs.count))]
                    let value = !(open[c] ?? false)
                    _ = try await emu.doorSensor(c, .init(open: value))
                    open[c] = value
                    bg.doorChanges[c, default: []].append(value)
                    try await Task.sleep(for: .milliseconds(3))
                }
                // Leave the doors closed, so the end state does not depend on a door left ajar.
                for (c, isOpen) in open where isOpen {
                    _ = try await emu.doorSensor(c, .init(open: false))
                    bg.doorChanges[c, default: []].append(false)
                }
                return .background(bg)
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        let concurrentPhase = ContinuousClock.now - started

        // Quiesce: fire whatever fell due, and wait until every record is in the journal.
        await clock.runUntilIdle()
        await emu.bridge.flush()

        var attempts: [TapAttempt] = []
        var bg = Background()
        for r in reports {
            switch r {
            case .taps(let a): attempts += a
            case .background(let b):
                bg.iqToggles.merge(b.iqToggles, uniquingKeysWith: +)
                bg.revoked.merge(b.revoked, uniquingKeysWith: { a, _ in a })
                bg.doorChanges.merge(b.doorChanges, uniquingKeysWith: +)
                bg.clockSteps += b.clockSteps
            }
        }
        XCTAssertEqual(attempts.count, p.taps)

        // 1. Every tap reached the lock and got a decision whose event is durable.
        let failed = attempts.filter { $0.decision == nil }
        XCTAssertTrue(failed.isEmpty, "\(failed.count) taps failed, e.g. \(failed.prefix(3).map { "\($0.lock): \($0.error ?? "")" })")
        for a in attempts where a.decision != nil {
            XCTAssertNotNil(a.eventID, "tap of phone \(a.phone) at \(a.lock) has no journal event")
        }

        let events = try await allEvents()
        func deviceSequence(_ e: RecordedEvent) -> Int64? {
            if case .int(let v)? = e.event.attributes["device_sequence"] { return v }
            return nil
        }
        func string(_ e: RecordedEvent, _ name: String) -> String? {
            if case .string(let v)? = e.event.attributes[name] { return v }
            return nil
        }
        func int(_ e: RecordedEvent, _ name: String) -> Int64? {
            if case .int(let v)? = e.event.attributes[name] { return v }
            return nil
        }
        var byLock: [String: [RecordedEvent]] = [:]
        for e in events where e.source.kind == .lock { byLock[e.source.id, default: []].append(e) }

        // 2. Exactly one event per tap: the mobile access events of the journal are the taps, one to one.
        struct Ref: Hashable { let lock: String; let sequence: Int64 }
        var accessEvents: [Ref: RecordedEvent] = [:]
        var duplicates = 0
        for e in events where (e.type == .accessGranted || e.type == .accessDenied) && e.source.kind == .lock {
            guard let s = deviceSequence(e) else { XCTFail("event \(e.id) has no device_sequence"); continue }
            if accessEvents.updateValue(e, forKey: Ref(lock: e.source.id, sequence: s)) != nil { duplicates += 1 }
        }
        XCTAssertEqual(duplicates, 0, "access events recorded twice")
        var tapRefs = Set<Ref>()
        for a in attempts {
            guard let d = a.decision else { continue }
            let ref = Ref(lock: a.lock, sequence: Int64(d.record.sequence))
            XCTAssertTrue(tapRefs.insert(ref).inserted, "two taps got the same lock record \(ref)")
            XCTAssertEqual(d.record.deviceID, a.lock)
            guard let e = accessEvents[ref] else { XCTFail("no journal event for the tap recorded as \(ref)"); continue }
            XCTAssertEqual(e.id, a.eventID, "the tap's event id and the journal's differ for \(ref)")
            XCTAssertEqual(e.type, d.granted ? .accessGranted : .accessDenied, "\(ref)")
            XCTAssertEqual(e.event.reason, d.reason?.rawValue, "\(ref)")
            XCTAssertEqual(e.event.method, .mobile, "\(ref)")
            XCTAssertEqual(e.event.action?.rawValue, d.action.name, "\(ref)")
            XCTAssertEqual(e.event.user, d.userID, "\(ref)")
            XCTAssertEqual(e.event.keyID, d.keyID, "\(ref)")
            // Once the lock could read the presentation (it names the key), it is this tap's key and action;
            // before that (nonce expired, replay, …) the event rightly names neither.
            if d.keyID != nil {
                XCTAssertEqual(d.keyID, a.keyID, "\(ref)")
                XCTAssertEqual(d.action, a.action, "\(ref)")
            } else {
                XCTAssertFalse(d.granted, "\(ref): granted without naming the key")
            }
        }
        let mobileAccess = Set(accessEvents.filter { $0.value.event.method == .mobile }.keys)
        XCTAssertEqual(mobileAccess.subtracting(tapRefs).count, 0, "mobile access events no tap of the test made: \(mobileAccess.subtracting(tapRefs).prefix(5))")
        XCTAssertEqual(tapRefs.subtracting(mobileAccess).count, 0, "taps without an event: \(tapRefs.subtracting(mobileAccess).prefix(5))")

        // 3. Per device: records numbered 1…n without gaps or repeats, in the same order in the journal.
        func checkNumbering(_ evs: [RecordedEvent], last: UInt64, _ what: String) {
            XCTAssertEqual(evs.map(\.sequence), Array(stride(from: Int64(1), through: Int64(last), by: 1)),
                           "\(what): journal sequences are not 1…\(last)")
            XCTAssertEqual(evs.map { deviceSequence($0) ?? -1 }, evs.map(\.sequence), "\(what): device and journal order differ")
        }
        for lock in emu.site.locks {
            let s = await lock.status
            checkNumbering(byLock[lock.id] ?? [], last: s.lastSequence, "lock \(lock.id)")
        }
        for iq in emu.site.iqs {
            let s = await iq.status
            let evs = events.filter { $0.source.kind == .iq && $0.source.id == iq.id }
            checkNumbering(evs, last: s.lastSequence, "IQ \(iq.id)")
            // Every uplink change the test made is one iq.online / iq.offline event, alternating.
            let changes = evs.filter { $0.type == .iqOnline || $0.type == .iqOffline }
            XCTAssertEqual(changes.count, bg.iqToggles[iq.id] ?? 0, "IQ \(iq.id)")
            var online = initialOnline[iq.id] ?? true
            for e in changes {
                XCTAssertEqual(e.type, online ? .iqOffline : .iqOnline, "IQ \(iq.id) event \(e.sequence) does not alternate")
                online.toggle()
            }
            XCTAssertEqual(s.online, online, "IQ \(iq.id) ended in a state its events do not explain")
        }
        for c in emu.site.doorControllers {
            let s = await c.status
            let evs = events.filter { $0.source.kind == .controller && $0.source.id == c.id }
            checkNumbering(evs, last: s.lastSequence, "controller \(c.id)")
            let doorEvents = evs.filter { [.doorOpened, .doorForced, .doorClosed].contains($0.type) }
            let changes = bg.doorChanges[c.id] ?? []
            XCTAssertEqual(doorEvents.map { $0.type == .doorClosed ? false : true }, changes, "controller \(c.id): door events ≠ sensor changes")
            XCTAssertEqual(s.doorOpen, false)
        }

        // 4. Every lock's state follows from its own history.
        for lock in emu.site.locks {
            try await checkStateIsExplained(lock, events: byLock[lock.id] ?? [], int: int, string: string)
        }

        // 5. Revocations: a lock that held a list revoking a key never granted it, and the grants of a
        //    revoked key name an older list (the documented window until an IQ reaches the lock).
        XCTAssertEqual(bg.revoked.count, toRevoke.count)
        for (ref, e) in accessEvents {
            guard let key = e.event.keyID, let revokedAt = bg.revoked[key], let held = e.event.revocationVersion else { continue }
            if held >= Int64(revokedAt) {
                XCTAssertEqual(e.type, .accessDenied, "\(ref): the lock held revocation list \(held) (revoking \(key) at \(revokedAt)) and granted")
            }
        }
        let versions = Set(bg.revoked.values)
        XCTAssertEqual(versions.count, bg.revoked.count, "two revocations got the same list version: \(bg.revoked)")
        let directoryVersion = await emu.site.directory.revocationList.version
        XCTAssertEqual(directoryVersion, UInt64(toRevoke.count))
        // What survives a restart is the newest list, even when revocations raced.
        let stored = try XCTUnwrap(try emu.store.signedRevocationList(site: emu.config.siteID))
        let storedList = try RevocationList.empty(siteID: emu.config.siteID).accepting(stored, issuers: emu.keys.trustedIssuers)
        XCTAssertEqual(storedList.version, directoryVersion, "the stored revocation list is older than the directory's")
        XCTAssertEqual(Set(try emu.listKeys(user: nil).filter(\.revoked).map(\.keyId)),
                       Set(toRevoke))

        // 6. Once an IQ collects the trails, nothing of an in-reach lock is still held.
        for iq in emu.site.iqs {
            _ = await iq.setOnline(true)
            _ = await iq.syncNow()
        }
        await clock.runUntilIdle()
        await emu.bridge.flush()
        let outOfReach = Set(await emu.site.locksOutOfReach())
        let after = try await allEvents()
        for e in after where e.source.kind == .lock && !outOfReach.contains(e.source.id) {
            XCTAssertNotEqual(e.stage, .held, "\(e.source.id) #\(e.sequence) still held after every IQ synced")
        }
        XCTAssertEqual(emu.bridge.failures, 0)

        let total = ContinuousClock.now - started
        let granted = attempts.filter { $0.decision?.granted == true }.count
        let reasons = Dictionary(grouping: attempts.compactMap { $0.decision?.reason?.rawValue }, by: { $0 }).mapValues(\.count)
        print("ConcurrencyStressTests: \(p): \(attempts.count) taps (\(granted) granted, denials \(reasons.sorted { $0.key < $1.key })), "
              + "\(bg.iqToggles.values.reduce(0, +)) IQ toggles, \(bg.clockSteps) clock steps, \(bg.revoked.count) revocations, "
              + "\(bg.doorChanges.values.map(\.count).reduce(0, +)) door changes, \(events.count) events "
              + "(\(events.filter { $0.type == .clockAdjusted }.count) lock clock corrections); "
              + "concurrent phase \(concurrentPhase), total \(total)")
    }

    /// Replays a lock's events in order: state changes carry the state they moved to, a grant with an
    /// open time opens (or extends) the window, and only the relock timer, an office-mode end, a lock
    /// schedule or a door change may secure it again. The lock's state now must be where the replay ends.
    func checkStateIsExplained(_ lock: Lock, events: [RecordedEvent], int: (RecordedEvent, String) -> Int64?,
                               string: (RecordedEvent, String) -> String?) async throws {
        let status = await lock.status
        var state: LockState = .locked
        var window: (grantedAt: Date, openTime: Int64)? = nil
        var previous: RecordedEvent? = nil
        var grantWithOpenTime = false
        let stateChanges: Set<EventType> = [.lockLocked, .lockUnlocked, .lockUncertain, .officeModeStarted, .officeModeEnded]
        for e in events {
            let label = "\(lock.id) #\(e.sequence) \(e.type.shortName)"
            if stateChanges.contains(e.type) {
                let raw = try XCTUnwrap(string(e, "lock_state"), "\(label) has no lock_state")
                let new = try XCTUnwrap(LockState(rawValue: raw), label)
                XCTAssertNotEqual(new, state, "\(label): a state change to the state it was in")
                let reason = e.event.reason
                switch new {
                case .unlocked:
                    // Only a grant unlocks, and its record comes right before.
                    XCTAssertEqual(previous?.type, .accessGranted, "\(label): unlocked without a grant")
                    XCTAssertNotNil(previous.flatMap { int($0, "open_time_s") }, "\(label): unlocked by a grant without an open time")
                    XCTAssertEqual(reason, "credential", label)
                case .officeMode:
                    XCTAssertEqual(previous?.type, .accessGranted, "\(label): passage without a grant")
                    window = nil
                case .locked, .uncertain:
                    let allowed: Set<String> = ["open_time_elapsed", "credential", "easy_office_mode_ended", "lock_schedule",
                                                "door_opened", "door_closed"]
                    XCTAssertTrue(reason.map(allowed.contains) ?? false, "\(label): secured for reason \(reason ?? "none")")
                    if reason == "open_time_elapsed" {
                        XCTAssertNotNil(window, "\(label): relocked with no open window")
                        XCTAssertEqual(state, .unlocked, "\(label): relock timer fired while \(state)")
                    }
                    if reason == "credential" {
                        XCTAssertEqual(previous?.type, .accessGranted, "\(label): secured by a credential without a grant")
                    }
                    if state == .unlocked && reason != "open_time_elapsed" && reason != "door_opened" && reason != "door_closed" {
                        // An unlocked lock locks only when its window ends (or a door change re-reads it).
                        XCTFail("\(label): left `unlocked` for \(new) because of \(reason ?? "nothing")")
                    }
                    if reason != "door_opened" && reason != "door_closed" { window = nil }
                }
                state = new
            }
            if grantWithOpenTime && !(e.type == .lockUnlocked) {
                // A grant that opened the door either unlocked it (the next record) or found it unlocked.
                XCTAssertEqual(state, .unlocked, "\(label): a grant with an open time left the lock \(state)")
            }
            grantWithOpenTime = false
            if e.type == .accessGranted, let t = int(e, "open_time_s") {
                window = (e.event.time, t)
                grantWithOpenTime = true
                if state == .unlocked { grantWithOpenTime = false }   // extends the running window
            }
            previous = e
        }
        if grantWithOpenTime { XCTAssertEqual(state, .unlocked, "\(lock.id): the last grant opened it but no unlock followed") }

        XCTAssertEqual(status.state, state, "\(lock.id) is \(status.state) but its events end in \(state)")
        switch status.state {
        case .unlocked:
            let until = try XCTUnwrap(status.unlockedUntil, "\(lock.id) unlocked without a relock deadline")
            let w = try XCTUnwrap(window, "\(lock.id) unlocked without a grant that opened it")
            let remaining = until.timeIntervalSince(status.lockTime)
            // The window is still running (the clock ran every due timer) and no longer than the grant's open time.
            XCTAssertGreaterThan(remaining, 0, "\(lock.id): open window expired but the lock is still unlocked")
            XCTAssertLessThanOrEqual(remaining, Double(w.openTime) + 0.001, "\(lock.id): open longer than its last grant allows")
        default:
            XCTAssertNil(status.unlockedUntil, "\(lock.id) is \(status.state) with a relock deadline")
        }
    }

    func allEvents() async throws -> [RecordedEvent] {
        var out: [RecordedEvent] = []
        var after: Int64? = nil
        while true {
            let page = try await emu.journal.events(EventQuery(after: after, limit: EventQuery.maxLimit))
            out += page
            guard page.count == EventQuery.maxLimit, let last = page.last else { return out }
            after = last.position
        }
    }
}
