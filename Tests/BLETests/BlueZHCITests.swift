import XCTest
@testable import BLE

/// Byte-exact checks of the HCI commands, events and advertising payloads the BlueZ transport uses
/// (Core 5.4 Vol 4 Part E §7.7, §7.8; Core Supplement Part A).
final class BlueZHCITests: XCTestCase {
    func testLegacyAdvertisingParametersEncoding() {
        let p = LEAdvertisingParameters(intervalMinMilliseconds: 100, intervalMaxMilliseconds: 150)
        let packet = HCICommand.leSetAdvertisingParameters(p).encoded()
        XCTAssertEqual(packet, [
            0x01, 0x06, 0x20, 0x0F,          // command, opcode 0x2006 LE, 15 parameter bytes
            0xA0, 0x00, 0xF0, 0x00,          // 160 × 0.625 = 100 ms, 240 × 0.625 = 150 ms
            0x00,                            // ADV_IND
            0x00, 0x00,                      // own public, peer public
            0, 0, 0, 0, 0, 0,                // peer address
            0x07, 0x00,                      // all three channels, no filter
        ])
    }

    func testAdvertisingIntervalsAreClampedToTheControllerRange() {
        XCTAssertEqual(LEAdvertisingParameters.units(1), 0x0020)        // 20 ms floor
        XCTAssertEqual(LEAdvertisingParameters.units(100_000), 0x4000)  // 10.24 s ceiling
        XCTAssertEqual(LEAdvertisingParameters.units(.nan), 0x0800)
        // max below min is raised to min rather than sent inverted
        let p = LEAdvertisingParameters(intervalMinMilliseconds: 200, intervalMaxMilliseconds: 50)
        XCTAssertEqual(p.intervalMaxUnits, p.intervalMinUnits)
        XCTAssertEqual(HCICommand.leSetAdvertisingParameters(LEAdvertisingParameters(connectable: false)).parameters[4], 0x02)
    }

    func testAdvertisingDataIsPaddedTo31BytesAndBounded() throws {
        let cmd = try HCICommand.leSetAdvertisingData([2, 1, 6])
        XCTAssertEqual(cmd.opcode, 0x2008)
        XCTAssertEqual(cmd.parameters.count, 32)
        XCTAssertEqual(Array(cmd.parameters.prefix(4)), [3, 2, 1, 6])
        XCTAssertTrue(cmd.parameters.dropFirst(4).allSatisfy { $0 == 0 })
        XCTAssertThrowsError(try HCICommand.leSetScanResponseData([UInt8](repeating: 1, count: 32))) {
            XCTAssertEqual($0 as? BlueZError, .advertisingDataTooLong(32))
        }
        XCTAssertEqual(HCICommand.leSetAdvertisingEnable(true).encoded(), [0x01, 0x0A, 0x20, 0x01, 0x01])
    }

    func testExtendedAdvertisingUsesLegacyPDUs() throws {
        let params = HCICommand.leSetExtendedAdvertisingParameters(handle: 0x0A, LEAdvertisingParameters())
        XCTAssertEqual(params.opcode, 0x2036)
        XCTAssertEqual(params.parameters.count, 25)
        XCTAssertEqual(params.parameters[0], 0x0A)
        // connectable | scannable | legacy PDUs
        XCTAssertEqual(UInt16(params.parameters[1]) | UInt16(params.parameters[2]) << 8, 0x0013)
        XCTAssertEqual(Array(params.parameters[3...5]), [0xA0, 0x00, 0x00])  // 24-bit interval
        XCTAssertEqual(params.parameters[20], 0x01)                            // primary PHY LE 1M

        let data = try HCICommand.leSetExtendedAdvertisingData(handle: 0x0A, [2, 1, 6])
        XCTAssertEqual(data.parameters, [0x0A, 0x03, 0x01, 3, 2, 1, 6])
        XCTAssertEqual(HCICommand.leSetExtendedAdvertisingEnable(true, handle: 0x0A).parameters, [1, 1, 0x0A, 0, 0, 0])
        XCTAssertThrowsError(try HCICommand.leSetExtendedScanResponseData(handle: 0, [UInt8](repeating: 0, count: 40)))
    }

    func testLockPayloadCarriesServiceUUIDLittleEndianAndName() throws {
        let uuid = try XCTUnwrap(BluetoothUUID("B80C0001-1C1F-4153-94CB-D7B58DCACA15"))
        let payload = try LEAdvertisingPayload.lock(serviceUUID: uuid, name: "Keyway Front Door")
        XCTAssertLessThanOrEqual(payload.advertisingData.count, 31)
        let ad = try LEAdvertisingPayload.structures(payload.advertisingData)
        XCTAssertEqual(ad.count, 2)
        XCTAssertEqual(ad[0].type, 0x01)
        XCTAssertEqual(ad[0].data, [0x06])
        XCTAssertEqual(ad[1].type, 0x07)
        XCTAssertEqual(ad[1].data, [0x15, 0xCA, 0xCA, 0x8D, 0xB5, 0xD7, 0xCB, 0x94,
                                    0x53, 0x41, 0x1F, 0x1C, 0x01, 0x00, 0x0C, 0xB8])
        let scan = try LEAdvertisingPayload.structures(payload.scanResponseData)
        XCTAssertEqual(scan.count, 1)
        XCTAssertEqual(scan[0].type, 0x09)
        XCTAssertEqual(String(decoding: scan[0].data, as: UTF8.self), "Keyway Front Door")
    }

    func testLongNameIsShortenedAtACharacterBoundary() throws {
        // 28 ASCII bytes, then "é" (2 bytes) straddling the 29-byte limit.
        let name = String(repeating: "a", count: 28) + "é" + "tail"
        let payload = try LEAdvertisingPayload.lock(serviceUUID: BluetoothUUID(0x180A), name: name)
        let scan = try LEAdvertisingPayload.structures(payload.scanResponseData)
        XCTAssertEqual(scan[0].type, 0x08)                       // shortened local name
        XCTAssertEqual(scan[0].data, Array(repeating: UInt8(ascii: "a"), count: 28))
        XCTAssertLessThanOrEqual(payload.scanResponseData.count, 31)
        let ad = try LEAdvertisingPayload.structures(payload.advertisingData)
        XCTAssertEqual(ad[1].type, 0x03)                         // 16-bit UUID list
        XCTAssertEqual(ad[1].data, [0x0A, 0x18])
    }

    func testADStructureRunningPastTheEndIsRejected() {
        XCTAssertThrowsError(try LEAdvertisingPayload.structures([5, 0x09, 0x41])) {
            XCTAssertEqual($0 as? HCIDecodingError, .truncated(what: "AD structure", need: 6, have: 3))
        }
        XCTAssertEqual(try LEAdvertisingPayload.structures([2, 1, 6, 0, 0xFF]).count, 1)  // zero length ends it
    }

    func testEventDecoding() throws {
        XCTAssertEqual(try HCIEvent.decode([0x04, 0x0E, 0x04, 0x01, 0x06, 0x20, 0x0C]),
                       .commandComplete(opcode: 0x2006, returnParameters: [0x0C]))
        XCTAssertEqual(try HCIEvent.decode([0x04, 0x0F, 0x04, 0x01, 0x01, 0x36, 0x20]),
                       .commandStatus(status: 0x01, opcode: 0x2036))
        XCTAssertEqual(try HCIEvent.decode([0x04, 0x05, 0x04, 0x00, 0x40, 0x00, 0x13]),
                       .disconnectionComplete(status: 0, handle: 0x0040, reason: 0x13))
        let le: [UInt8] = [0x04, 0x3E, 0x13, 0x01, 0x00, 0x40, 0x00, 0x01, 0x00,
                           0x00, 0x00, 0x01, 0x01, 0xAA, 0x00, 0x28, 0x00, 0x00, 0x00, 0xD0, 0x07, 0x00]
        XCTAssertEqual(try HCIEvent.decode(le), .leConnectionComplete(
            status: 0, handle: 0x0040, role: 1, peerAddressType: 0, peerAddress: [0x00, 0xAA, 0x01, 0x01, 0x00, 0x00]))
        XCTAssertEqual(try HCIEvent.decode([0x04, 0x13, 0x01, 0x09]), .other(code: 0x13, parameters: [0x09]))
    }

    func testMalformedEventsThrowInsteadOfTrapping() {
        XCTAssertThrowsError(try HCIEvent.decode([]))
        XCTAssertThrowsError(try HCIEvent.decode([0x02, 0x00, 0x00])) {
            XCTAssertEqual($0 as? HCIDecodingError, .notAnEvent(0x02))
        }
        XCTAssertThrowsError(try HCIEvent.decode([0x04, 0x0E, 0x09, 0x01]))         // length past the end
        XCTAssertThrowsError(try HCIEvent.decode([0x04, 0x0E, 0x02, 0x01, 0x06]))   // too short for an opcode
        XCTAssertThrowsError(try HCIEvent.decode([0x04, 0x3E, 0x03, 0x01, 0x00, 0x40]))
        // Every truncation of a valid event either decodes or throws.
        let valid: [UInt8] = [0x04, 0x3E, 0x13, 0x01, 0x00, 0x40, 0x00, 0x01, 0x00,
                              0x00, 0x00, 0x01, 0x01, 0xAA, 0x00, 0x28, 0x00, 0x00, 0x00, 0xD0, 0x07, 0x00]
        for n in 0..<valid.count { _ = try? HCIEvent.decode(Array(valid.prefix(n))) }
    }
}
