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
}
