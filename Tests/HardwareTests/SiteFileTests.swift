import Foundation
import XCTest
@testable import Hardware

final class SiteFileTests: XCTestCase {
    /// A valid two-line header; tests append sections after it, so their first line is line 3.
    let header = """
    organisation: Keyway Labs
    site: {id: s1, name: Test site, time_zone: America/Los_Angeles}

    """

    func errors(_ yaml: String, file: String = "test.yaml") -> [String] {
        do {
            _ = try SiteFile.parse(yaml: yaml, file: file)
            return []
        } catch let e as SiteFileError {
            return e.diagnostics.map(\.description)
        } catch {
            return ["unexpected \(error)"]
        }
    }

    // MARK: The fixture

    func testCoworkingFixtureLoadsCompletely() throws {
        let c = try SiteFile.load(path: coworkingPath)
        XCTAssertEqual(c.organisation, "Keyway Labs")
        XCTAssertEqual(c.siteID, "sf-mission")
        XCTAssertEqual(c.timeZone.identifier, "America/Los_Angeles")
        XCTAssertEqual(c.locks.count, 13)
        XCTAssertEqual(c.doorControllers.map(\.relay), [.magLock, .electricStrikeFailSecure])
        XCTAssertEqual(c.iqs.count, 2)
        XCTAssertEqual(c.iqs.map(\.range), [9.144, 9.144])
        XCTAssertEqual(c.lock("main-entrance")?.openTime, 5)
        XCTAssertEqual(c.lock("office-101")?.openTime, 7, "default open time")
        XCTAssertNil(c.lock("back-door")?.battery, "controller-driven readers have no battery")
        XCTAssertEqual(c.lock("room-valencia")?.battery?.level, 18)
        XCTAssertEqual(c.lock("main-entrance")?.easyOfficeMode.description, "mon-fri 08:00-18:00")
        XCTAssertEqual(c.user("u-grace")?.tags.count, 2)
        XCTAssertEqual(c.user("u-alan")?.validFrom, at("2025-01-06T00:00:00-08:00"))
        XCTAssertEqual(c.user("u-alan")?.validUntil, at("2025-02-01T00:00:00-08:00"), "an end date includes the whole day")
        XCTAssertEqual(c.accessGroup("staff")?.officeMode, true)
        XCTAssertEqual(c.accessGroup("staff")?.locks, .all)
        XCTAssertEqual(c.accessGroup("day-pass")?.schedule.description, "mon-fri 09:00-18:00")
        let groups = Set(c.accessGroups.map(\.id))
        XCTAssertTrue(c.users.allSatisfy { $0.groups.allSatisfy(groups.contains) })
    }

    func testCoworkingFixtureHasExactlyOneLockOutOfEveryIQsReach() async throws {
        let s = try Site.load(path: coworkingPath, clock: SimulatedClock())
        let out = await s.locksOutOfReach()
        XCTAssertEqual(out, ["storage-basement"])
        for iq in s.config.iqs {
            let reach = try await s.locksInReach(ofIQ: iq.id)
            XCTAssertLessThanOrEqual(reach.count, 16)
            XCTAssertFalse(reach.isEmpty)
        }
        let back = try await s.iqsReaching(lock: "back-door")
        let main = try await s.iqsReaching(lock: "main-entrance")
        XCTAssertEqual(back, ["iq-lounge"])
        XCTAssertEqual(main, ["iq-lobby"])
    }

    // MARK: Positions in errors

    func testOpenTimeOutOfRangeNamesFileLineColumnAndField() {
        let yaml = header + """
        locks:
          - id: a
            kind: escutcheon
            position: {x: 0, y: 0}
            open_time_s: 300
        """
        XCTAssertEqual(errors(yaml), ["test.yaml:7:18: locks[0].open_time_s: must be from 1 to 240, got 300"])
        let zero = yaml.replacingOccurrences(of: "300", with: "0")
        XCTAssertEqual(errors(zero), ["test.yaml:7:18: locks[0].open_time_s: must be from 1 to 240, got 0"])
        let text = yaml.replacingOccurrences(of: "300", with: "seven")
        XCTAssertEqual(errors(text), ["test.yaml:7:18: locks[0].open_time_s: must be an integer from 1 to 240, got 'seven'"])
        XCTAssertEqual(errors(yaml.replacingOccurrences(of: "300", with: "240")), [])
        XCTAssertEqual(errors(yaml.replacingOccurrences(of: "300", with: "1")), [])
    }

    func testReachIsAPositiveDistanceInMetres() {
        let yaml = header + """
        locks:
          - id: a
            kind: escutcheon
            position: {x: 0, y: 0}
            reach_m: 20
        """
        XCTAssertEqual(errors(yaml), ["test.yaml:7:14: locks[0].reach_m: must be from 0.01 m to 10 m, got 20 m"])
        XCTAssertEqual(errors(yaml.replacingOccurrences(of: "20", with: "0")), ["test.yaml:7:14: locks[0].reach_m: must be from 0.01 m to 10 m, got 0 m"])
        XCTAssertEqual(errors(yaml.replacingOccurrences(of: "20", with: "far")), ["test.yaml:7:14: locks[0].reach_m: must be a number, got 'far'"])
        XCTAssertEqual(errors(yaml.replacingOccurrences(of: "20", with: "0.15")), [])
    }

    func testUnknownFieldIsReportedAtTheKeyWithASuggestion() {
        let yaml = header + """
        locks:
          - id: a
            kind: escutcheon
            position: {x: 0, y: 0}
            open_time: 5
        """
        XCTAssertEqual(errors(yaml), ["test.yaml:7:5: locks[0].open_time: unknown field; did you mean 'open_time_s'?"])
    }

    func testUnknownTimeZone() {
        let yaml = """
        organisation: Keyway Labs
        site:
          id: s1
          time_zone: America/Atlantis
        """
        XCTAssertEqual(errors(yaml), ["test.yaml:4:14: site.time_zone: unknown time zone 'America/Atlantis' (use an IANA name such as America/Los_Angeles)"])
    }

    func testMissingRequiredFields() {
        let yaml = header + """
        locks:
          - id: a
            position: {x: 0}
        """
        XCTAssertEqual(errors(yaml), [
            "test.yaml:4:5: locks[0]: missing required field 'kind'",
            "test.yaml:5:15: locks[0].position: missing required field 'y'",
        ])
        XCTAssertEqual(errors("site: {id: s, time_zone: UTC}\n"), ["test.yaml:1:1: missing required field 'organisation'"])
    }

    func testDuplicateLockIDPointsAtTheSecondAndNamesTheFirst() {
        let yaml = header + """
        locks:
          - {id: room-1, kind: escutcheon, position: {x: 0, y: 0}}
          - {id: room-2, kind: escutcheon, position: {x: 3, y: 0}}
          - {id: room-1, kind: cylinder, position: {x: 6, y: 0}}
        """
        XCTAssertEqual(errors(yaml), ["test.yaml:6:10: locks[2].id: duplicate lock id 'room-1' (first defined at line 4)"])
    }

    func testReferencesMustResolve() {
        let yaml = header + """
        locks:
          - {id: door, kind: wall_reader, position: {x: 0, y: 0}}
          - {id: room, kind: escutcheon, position: {x: 3, y: 0}}
        door_controllers:
          - {id: c1, lock: nowhere, relay: mag_lock}
          - {id: c2, lock: room, relay: mag_lock}
        access_groups:
          - {id: g, locks: [door, attic], schedule: 24/7}
        users:
          - {id: u, groups: [g, ghosts]}
        """
        XCTAssertEqual(errors(yaml), [
            "test.yaml:7:20: door_controllers[0].lock: no lock with id 'nowhere'",
            "test.yaml:8:20: door_controllers[1].lock: a door controller drives a door through a wall reader; lock 'room' is of kind escutcheon (a battery lock with its own motor)",
            "test.yaml:10:27: access_groups[0].locks[1]: no lock with id 'attic'",
            "test.yaml:12:25: users[0].groups[1]: no access group with id 'ghosts'",
        ])
    }

    func testAnIQServesAtMostSixteenLocks() {
        var yaml = header + "locks:\n"
        for i in 0..<17 { yaml += "  - {id: l\(i), kind: escutcheon, position: {x: \(i), y: 0}}\n" }
        yaml += "iqs:\n  - id: iq\n    position: {x: 0, y: 0}\n    activation_pin: \"1234\"\n"
        yaml += "    locks: [" + (0..<17).map { "l\($0)" }.joined(separator: ", ") + "]\n"
        XCTAssertEqual(errors(yaml), ["test.yaml:25:12: iqs[0].locks: an IQ serves at most 16 locks; 17 listed"])
    }

    func testIQRangeAndPINAreChecked() {
        let yaml = header + """
        iqs:
          - {id: iq, position: {x: 0, y: 0}, range_m: 250, activation_pin: "12"}
        """
        XCTAssertEqual(errors(yaml), [
            "test.yaml:4:47: iqs[0].range_m: must be from 0.1 m to 100 m, got 250 m",
            "test.yaml:4:68: iqs[0].activation_pin: must be 4–12 digits",
        ])
    }

    func testUsersTagsPINsAndUniqueness() {
        let yaml = header + """
        users:
          - {id: a, tags: ["04:A2:3B:1C", "11:22:33:44", "55:66:77:88", "99:AA:BB:CC", "DD:EE:FF:00"]}
          - {id: b, tags: ["04-a2-3b-1c"], pin: "1234"}
          - {id: c, pin: "1234"}
          - {id: d, pin: "12a4", tags: [xyz]}
        """
        XCTAssertEqual(errors(yaml), [
            "test.yaml:4:19: users[0].tags: a user has at most 4 tags; 5 listed",
            "test.yaml:7:18: users[3].pin: must be 4–8 digits",
            "test.yaml:7:33: users[3].tags[0]: 'xyz' is not a tag UID (4–10 bytes of hex, e.g. 04:A2:3B:1C:5D:80)",
        ])
        let dupes = header + """
        users:
          - {id: a, tags: ["04:A2:3B:1C"]}
          - {id: b, tags: ["04-a2-3b-1c"], pin: "1234"}
          - {id: c, pin: "1234"}
        """
        XCTAssertEqual(errors(dupes), [
            "test.yaml:5:20: users[1].tags[0]: tag 04:A2:3B:1C is already assigned to user 'a'",
            "test.yaml:6:18: users[2].pin: this PIN is already used by user 'b'; PINs identify a user and must be unique",
        ])
        XCTAssertFalse(errors(dupes).joined().contains("1234"), "a PIN is never echoed")
    }

    func testAnOfflineListLargerThanTheLockHoldsIsRefusedAtTheLock() {
        let yaml = header + """
        locks:
          - {id: door, kind: wall_reader, position: {x: 0, y: 0}, offline_capacity: 2}
          - {id: room, kind: escutcheon, position: {x: 1, y: 0}}
        access_groups:
          - {id: all, locks: all, schedule: 24/7}
        users:
          - {id: a, pin: "1111", groups: [all]}
          - {id: b, tags: ["04:00:00:02"], offline_access: true, groups: [all]}
          - {id: c, tags: ["04:00:00:03"], groups: [all]}
          - {id: d, pin: "4444", groups: [all], blocked: true}
        """
        XCTAssertEqual(errors(yaml), [], "a tag without offline access and a blocked user take no place")
        let over = yaml + "\n  - {id: e, pin: \"5555\", groups: [all]}\n"
        XCTAssertEqual(errors(over), ["test.yaml:4:77: locks[0].offline_capacity: 3 users have a PIN or offline access at this lock; its offline list holds at most 2"])
        let config = try? SiteFile.parse(yaml: yaml, file: "test.yaml")
        XCTAssertEqual(config?.users.first(where: { $0.id == "b" })?.offlineAccess, true)
        XCTAssertEqual(config?.users.first(where: { $0.id == "d" })?.blocked, true)
        XCTAssertEqual(config?.locks.map(\.offlineCapacity), [2, 39])
    }

    func testSchedulesAndDatesAreChecked() {
        let yaml = header + """
        locks:
          - {id: a, kind: escutcheon, position: {x: 0, y: 0}, lock_schedule: ["mon-fri 25:00"]}
        access_groups:
          - {id: g, locks: all, schedule: ["weekdays 9-5"]}
          - {id: h, locks: all}
        users:
          - {id: u, valid_from: 2025-02-30}
        """
        XCTAssertEqual(errors(yaml), [
            "test.yaml:4:71: locks[0].lock_schedule[0]: 'mon-fri 25:00' is not a lock time (e.g. 'mon-fri 19:00' or '23:30')",
            "test.yaml:6:36: access_groups[0].schedule[0]: 'weekdays 9-5' is not a weekly window (e.g. 'mon-fri 09:00-18:00', 'sat,sun', '24/7')",
            "test.yaml:7:5: access_groups[1]: missing required field 'schedule'",
            "test.yaml:9:25: users[0].valid_from: '2025-02-30' is not a date (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS±HH:MM)",
        ])
    }

    func testControllerDrivenReaderMustNotDeclareABattery() {
        let yaml = header + """
        locks:
          - {id: door, kind: wall_reader, position: {x: 0, y: 0}, battery: {level: 50}}
        door_controllers:
          - {id: c, lock: door, relay: electric_strike_fail_safe, held_open_limit_s: 0}
        """
        XCTAssertEqual(errors(yaml), ["test.yaml:6:78: door_controllers[0].held_open_limit_s: must be from 1 to 3600, got 0"])
        let fixed = yaml.replacingOccurrences(of: "held_open_limit_s: 0", with: "held_open_limit_s: 60")
        XCTAssertEqual(errors(fixed), ["test.yaml:4:68: locks[0].battery: lock 'door' is powered by door controller 'c' and has no battery"])
    }

    func testYAMLSyntaxErrorsCarryTheirPosition() {
        let yaml = header + """
        locks:
          - id: a
           kind: escutcheon
        """
        let e = errors(yaml)
        XCTAssertEqual(e.count, 1)
        XCTAssertTrue(e[0].hasPrefix("test.yaml:5:4:"), e[0])
        XCTAssertTrue(e[0].contains("YAML syntax"), e[0])
        let dup = header + """
        locks:
          - id: a
            id: b
        """
        XCTAssertEqual(errors(dup), ["test.yaml:4:5: duplicate key 'id' in the same mapping"])
        XCTAssertEqual(errors(""), ["test.yaml:1:1: the file is empty"])
        XCTAssertEqual(errors("- just\n- a list\n"), ["test.yaml:1:1: must be a mapping, not a list"])
    }

    func testEveryProblemIsReportedInFileOrderAndNothingIsLoaded() {
        let yaml = header + """
        locks:
          - {id: a, kind: door, position: {x: 0, y: 0}}
          - {id: "bad id!", kind: locker, position: {x: 0, y: nan}}
        """
        XCTAssertEqual(errors(yaml), [
            "test.yaml:4:19: locks[0].kind: 'door' is not a lock kind (escutcheon, cylinder, wall_reader, locker)",
            "test.yaml:5:10: locks[1].id: 'bad id!' is not a valid id (1–64 of A–Z a–z 0–9 . _ -)",
            "test.yaml:5:55: locks[1].position.y: must be a number, got 'nan'",
        ])
    }

    func testLoadingAMissingFileIsAClearError() {
        XCTAssertThrowsError(try SiteFile.load(path: "/nonexistent/site.yaml")) { e in
            let d = (e as? SiteFileError)?.first
            XCTAssertEqual(d?.file, "/nonexistent/site.yaml")
            XCTAssertTrue(d?.message.hasPrefix("cannot read") ?? false)
        }
    }

    func testCodeBuiltConfigsAreValidatedToo() {
        XCTAssertThrowsError(try SiteConfig.validated(
            organisation: "o", siteID: "s", name: "n", timeZone: pacific,
            locks: [LockConfig(id: "a", kind: .escutcheon), LockConfig(id: "a", kind: .locker)])) { e in
            XCTAssertEqual((e as? SiteFileError)?.description, "<config>: locks[1].id: duplicate lock id 'a' (first defined at locks[0])")
        }
    }

    // MARK: The synthetic site

    func testSyntheticSiteLoadsAndEveryIQServesAtMostSixteenLocks() async throws {
        let config = try SyntheticSite.config(locks: 400, iqs: 28)
        XCTAssertEqual(config.locks.count, 400)
        XCTAssertEqual(config.iqs.count, 28)
        XCTAssertEqual(config.doorControllers.count, 8)
        let s = Site(config: config, clock: SimulatedClock())
        var covered = 0
        for iq in config.iqs {
            let n = try await s.locksInReach(ofIQ: iq.id).count
            XCTAssertLessThanOrEqual(n, 16)
            covered += n
        }
        XCTAssertGreaterThan(covered, 300)
    }
}
