import ArgumentParser
import XCTest
@testable import keyway

/// What the QA commands accept before any request is made.
final class QACommandParsingTests: XCTestCase {
    func testIQMoveTakesXYOrXYZAndLeavesZToTheServerWhenAbsent() throws {
        let xy = try IQCLI.parsePosition("12.5, 3")
        XCTAssertEqual(xy.x, 12.5)
        XCTAssertEqual(xy.y, 3)
        XCTAssertNil(xy.z, "no Z: the server keeps the IQ's height")
        let xyz = try IQCLI.parsePosition("12.5,3,2.7")
        XCTAssertEqual(xyz.z, 2.7)
        for bad in ["1", "1;2", "1,2,3,4", "1,2,up", "1,,2", "nan,1", "1,inf"] {
            XCTAssertThrowsError(try IQCLI.parsePosition(bad), bad)
        }
    }

    func testDirectoryCommandsRefuseEmptyChangesBeforeAnyRequest() throws {
        XCTAssertThrowsError(try UsersCLI.Update.parse(["u-kim"]), "an update with nothing to change")
        XCTAssertThrowsError(try GroupsCLI.Update.parse(["night-owls"]))
        XCTAssertThrowsError(try GroupsCLI.Update.parse(["night-owls", "--office-mode", "maybe"]))
        XCTAssertThrowsError(try TagsCLI.SetCommand.parse(["u-kim"]), "no UID: `tags clear` says so explicitly")
        XCTAssertThrowsError(try UsersCLI.Create.parse(["u-kim", "--valid-from", "tomorrow"]))
        XCTAssertEqual(try UsersCLI.Update.parse(["u-kim", "--blocked", "true"]).blocked, true, "blocking alone is a change")
        XCTAssertThrowsError(try UsersCLI.Update.parse(["u-kim", "--blocked", "yes please"]))
        XCTAssertEqual(try GroupsCLI.Update.parse(["security", "--lockdown-override", "true"]).lockdownOverride, true)
        let update = try GroupsCLI.Update.parse(["night-owls", "--office-mode", "false"])
        XCTAssertEqual(update.officeMode, false)
        let create = try UsersCLI.Create.parse(["u-kim", "--group", "members", "--group", "day-pass", "--tag", "04:AA:BB:CC"])
        XCTAssertEqual(create.groups, ["members", "day-pass"])
        XCTAssertEqual(create.tags, ["04:AA:BB:CC"])
    }

    func testGroupsListTakesEmptyForNone() {
        XCTAssertEqual(commaList("members, day-pass,,"), ["members", "day-pass"])
        XCTAssertEqual(commaList(""), [])
    }

    func testMembersAddTakesOneGraceForBothSidesOrEachSide() throws {
        let both = try GroupsCLI.Members.Add.parse(["bookers", "u-kim", "--from", "2026-11-23T18:00:00Z", "--until", "2026-11-23T19:00:00Z",
                                                    "--grace", "900"])
        XCTAssertEqual(both.grace, 900)
        XCTAssertNil(both.graceBefore)
        XCTAssertThrowsError(try GroupsCLI.Members.Add.parse(["bookers", "u-kim", "--from", "today", "--until", "2026-11-23T19:00:00Z"]))
        XCTAssertThrowsError(try GroupsCLI.Members.Add.parse(["bookers", "u-kim", "--from", "2026-11-23T18:00:00Z",
                                                              "--until", "2026-11-23T19:00:00Z", "--grace-after", "90000"]))
        XCTAssertThrowsError(try GroupsCLI.Members.Add.parse(["bookers", "u-kim", "--until", "2026-11-23T19:00:00Z"]), "--from is required")
    }
}
