import XCTest
@testable import BLE

/// The RSSI → distance model the BlueZ transport uses for the reader's reach (issue 15 item 4), and
/// the HCI Read RSSI command it reads the RSSI with.
final class PathLossTests: XCTestCase {
    func testLogDistanceModelAtItsCalibrationPoints() {
        let m = PathLossModel()                                   // −59 dBm at 1 m, n = 2
        XCTAssertEqual(m.distance(rssi: -59), 1, accuracy: 1e-12)
        XCTAssertEqual(m.distance(rssi: -79), 10, accuracy: 1e-9)    // 20 dB per decade at n = 2
        XCTAssertEqual(m.distance(rssi: -39), 0.1, accuracy: 1e-12)
        let indoor = PathLossModel(rssiAtOneMetre: -65, exponent: 3)
        XCTAssertEqual(indoor.distance(rssi: -95), 10, accuracy: 1e-9)   // 30 dB per decade at n = 3
        XCTAssertEqual(indoor.distance(rssi: -35), 0.1, accuracy: 1e-12)
        // Stronger signal, closer phone — strictly.
        let distances = (-100 ... -20).map { m.distance(rssi: $0) }
        XCTAssertEqual(distances, distances.sorted(by: >))
        XCTAssertEqual(Set(distances).count, distances.count)
    }

    func testTheInverseGivesTheRSSIAtEachLockKindsReach() {
        let m = PathLossModel()
        // Escutcheon, cylinder and locker readers reach 5 cm, wall readers 10 cm, the IQ 9.144 m.
        XCTAssertEqual(m.rssi(atDistance: 0.05), -32.98, accuracy: 0.01)
        XCTAssertEqual(m.rssi(atDistance: 0.10), -39, accuracy: 1e-9)
        XCTAssertEqual(m.rssi(atDistance: 9.144), -78.22, accuracy: 0.01)
        for d in [0.01, 0.05, 0.1, 1, 9.144, 30] {
            XCTAssertEqual(m.distance(rssi: Int(m.rssi(atDistance: d).rounded())), d, accuracy: d * 0.13)  // 1 dB of rounding ≤ 12 %
        }
    }

    func testReachDecisionsAgainstAThreshold() {
        let m = PathLossModel()
        let touching = RSSIReach(reading: .success(-30), model: m)     // 3.5 cm
        XCTAssertTrue(touching.isInReach(0.05))
        XCTAssertEqual(touching, .measured(rssi: -30, distance: m.distance(rssi: -30)))
        let hovering = RSSIReach(reading: .success(-36), model: m)     // 7.1 cm: a wall reader reads it, a cylinder does not
        XCTAssertFalse(hovering.isInReach(0.05))
        XCTAssertTrue(hovering.isInReach(0.10))
        let pocket = RSSIReach(reading: .success(-65), model: m)       // 2 m
        XCTAssertFalse(pocket.isInReach(0.10))
        XCTAssertTrue(pocket.isInReach(9.144))
        // A fixed reading (btvirt's) moves in and out of reach with the calibration alone.
        XCTAssertTrue(RSSIReach(reading: .success(-60), model: PathLossModel(rssiAtOneMetre: -87)).isInReach(0.05))
        XCTAssertFalse(RSSIReach(reading: .success(-60), model: PathLossModel(rssiAtOneMetre: -59)).isInReach(0.05))
    }

    func testAnUnreadableRSSIIsOutOfEveryReach() {
        let m = PathLossModel()
        for r in [RSSIReach(reading: .success(RSSIReach.notAvailable), model: m),
                  RSSIReach(reading: .failure(BlueZError.hciCommandTimeout(command: "Read RSSI")), model: m)] {
            guard case .unmeasured = r else { return XCTFail("\(r)") }
            XCTAssertEqual(r.distance, RSSIReach.unmeasuredDistance)
            XCTAssertFalse(r.isInReach(0.10))
            XCTAssertFalse(r.isInReach(9.144), "not even an IQ's reach")
            XCTAssertTrue(r.description.contains("RSSI unreadable"), r.description)
        }
    }

    func testCalibrationBounds() {
        XCTAssertNil(PathLossModel().validationError)
        XCTAssertNotNil(PathLossModel(rssiAtOneMetre: -200).validationError)
        XCTAssertNotNil(PathLossModel(rssiAtOneMetre: .nan).validationError)
        XCTAssertNotNil(PathLossModel(exponent: 0).validationError)
        XCTAssertNotNil(PathLossModel(exponent: 7).validationError)
        XCTAssertNil(PathLossModel(rssiAtOneMetre: -127, exponent: 6).validationError)
    }

    // MARK: HCI Read RSSI

    func testReadRSSICommandAndAnswer() throws {
        XCTAssertEqual(HCICommand.readRSSI(connectionHandle: 0x0040).encoded(), [0x01, 0x05, 0x14, 0x02, 0x40, 0x00])  // opcode 0x1405
        XCTAssertEqual(HCICommand.readRSSI(connectionHandle: 0x0EFF).parameters, [0xFF, 0x0E])
        // Status 0, handle 0x0040, RSSI 0xC4 = −60 dBm (what btvirt answers, whatever the distance).
        let r = try HCIReadRSSIResult.decode([0x00, 0x40, 0x00, 0xC4], connectionHandle: 0x0040)
        XCTAssertEqual(r, HCIReadRSSIResult(connectionHandle: 0x0040, rssi: -60))
        XCTAssertEqual(try HCIReadRSSIResult.decode([0x00, 0x40, 0x00, 0x7F], connectionHandle: 0x40).rssi, RSSIReach.notAvailable)
        // The Command Complete event it comes in.
        let event = try HCIEvent.decode([0x04, 0x0E, 0x07, 0x01, 0x05, 0x14, 0x00, 0x40, 0x00, 0xC4])
        XCTAssertEqual(event, .commandComplete(opcode: HCICommand.readRSSIOpcode, returnParameters: [0x00, 0x40, 0x00, 0xC4]))
    }

    func testReadRSSIFailuresAreNamed() {
        XCTAssertThrowsError(try HCIReadRSSIResult.decode([0x02, 0x40, 0x00, 0x00], connectionHandle: 0x40)) {
            XCTAssertEqual($0 as? BlueZError, .hciCommandFailed(command: "Read RSSI", status: 0x02))
            XCTAssertTrue("\($0)".contains("Unknown Connection Identifier"), "\($0)")
        }
        XCTAssertThrowsError(try HCIReadRSSIResult.decode([0x00, 0x40], connectionHandle: 0x40))
        XCTAssertThrowsError(try HCIReadRSSIResult.decode([0x00, 0x41, 0x00, 0xC4], connectionHandle: 0x40)) {
            XCTAssertTrue("\($0)".contains("connection 0x41"), "\($0)")
        }
    }
}
