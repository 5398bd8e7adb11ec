import XCTest
@testable import BLE

final class BluetoothUUIDTests: XCTestCase {
    func testSixteenBitUUIDIsLittleEndianOnTheWire() throws {
        let u = BluetoothUUID(0x2A00)
        XCTAssertEqual(u.littleEndianBytes, [0x00, 0x2A])
        XCTAssertEqual(u.uuid16, 0x2A00)
        XCTAssertEqual(u.description, "0x2A00")
        XCTAssertEqual(try BluetoothUUID(littleEndian: [0x00, 0x28]), .primaryService)
    }

    func testOneHundredTwentyEightBitUUIDReversesTheTextualOrder() throws {
        let u = KeywayLockService.service
        XCTAssertEqual(u.width, .bits128)
        XCTAssertEqual(u.littleEndianBytes, hex("15 CA CA 8D B5 D7 CB 94 53 41 1F 1C 01 00 0C B8"))
        XCTAssertEqual(u.description, "B80C0001-1C1F-4153-94CB-D7B58DCACA15")
        XCTAssertEqual(try BluetoothUUID(littleEndian: u.littleEndianBytes), u)
        XCTAssertNil(u.uuid16)
    }

    func testEqualityIgnoresWireWidthButEncodingKeepsIt() throws {
        let long = BluetoothUUID("00002800-0000-1000-8000-00805F9B34FB")!
        XCTAssertEqual(long, .primaryService)
        XCTAssertEqual(long.hashValue, BluetoothUUID.primaryService.hashValue)
        XCTAssertEqual(long.littleEndianBytes.count, 16)
        XCTAssertEqual(long.uuid16, 0x2800)
        XCTAssertEqual(BluetoothUUID(uuid32: 0x0000_180A).littleEndianBytes.count, 16)
        XCTAssertEqual(BluetoothUUID("0x180A"), BluetoothUUID(0x180A))
    }

    func testRejectsMalformedText() {
        XCTAssertNil(BluetoothUUID("12345"))
        XCTAssertNil(BluetoothUUID("B80C0001-1C1F-4153-94CB-D7B58DCACA1G"))
        XCTAssertNil(BluetoothUUID("B80C00011C1F-4153-94CB-D7B58DCACA15-"))
        XCTAssertThrowsError(try BluetoothUUID(littleEndian: [1, 2, 3])) { e in
            XCTAssertEqual(e as? ATTDecodingError, .invalidUUIDLength(3))
        }
    }
}
