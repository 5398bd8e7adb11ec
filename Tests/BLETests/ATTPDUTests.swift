import XCTest
@testable import BLE

/// Every PDU type: encode to the exact bytes of the Core spec layout, decode back, and refuse
/// malformed input with a typed error.
final class ATTPDUTests: XCTestCase {
    private func roundTrip<P: ATTPDUCodable>(_ pdu: P, _ bytes: String, file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertEqual(hexString(pdu.encode()), hexString(hex(bytes)), file: file, line: line)
        XCTAssertEqual(try P.decode(hex(bytes)), pdu, file: file, line: line)
        XCTAssertEqual(try ATTPDU.decode(hex(bytes)).encode(), hex(bytes), file: file, line: line)
    }

    func testErrorResponse() throws {
        try roundTrip(ATTErrorResponse(request: .readRequest, handle: 0x0012, error: .readNotPermitted), "01 0A 12 00 02")
        try roundTrip(ATTErrorResponse(requestOpcode: 0x3F, handle: 0, error: .requestNotSupported), "01 3F 00 00 06")
        XCTAssertEqual(try ATTErrorResponse.decode(hex("01 0A 12 00 85")).error, .application(0x85))
        XCTAssertEqual(try ATTErrorResponse.decode(hex("01 0A 12 00 FD")).error, .cccdImproperlyConfigured)
        XCTAssertEqual(try ATTErrorResponse.decode(hex("01 0A 12 00 E0")).error, .reserved(0xE0))
    }

    func testExchangeMTU() throws {
        try roundTrip(ATTExchangeMTURequest(clientRxMTU: 517), "02 05 02")
        try roundTrip(ATTExchangeMTUResponse(serverRxMTU: 23), "03 17 00")
    }

    func testFindInformation() throws {
        try roundTrip(ATTFindInformationRequest(startHandle: 0x0001, endHandle: 0xFFFF), "04 01 00 FF FF")
        try roundTrip(try ATTFindInformationResponse(entries: [.init(handle: 0x0003, type: BluetoothUUID(0x2902)),
                                                              .init(handle: 0x0004, type: BluetoothUUID(0x2901))]),
                      "05 01 03 00 02 29 04 00 01 29")
        try roundTrip(try ATTFindInformationResponse(entries: [.init(handle: 0x001A, type: KeywayLockService.readerHello)]),
                      "05 02 1A 00 15 CA CA 8D B5 D7 CB 94 53 41 1F 1C 02 00 0C B8")
        XCTAssertThrowsError(try ATTFindInformationResponse(entries: [.init(handle: 1, type: BluetoothUUID(0x2800)),
                                                                      .init(handle: 2, type: KeywayLockService.result)]))
        XCTAssertThrowsError(try ATTFindInformationResponse(entries: []))
    }

    func testFindByTypeValue() throws {
        try roundTrip(ATTFindByTypeValueRequest(range: .all, attributeType: 0x2800, attributeValue: [0x0D, 0x18]),
                      "06 01 00 FF FF 00 28 0D 18")
        try roundTrip(ATTFindByTypeValueResponse(handlesInformation: [ATTHandleRange(start: 0x0010, end: 0x0015)]),
                      "07 10 00 15 00")
    }

    func testReadByType() throws {
        try roundTrip(ATTReadByTypeRequest(range: ATTHandleRange(start: 1, end: 5), attributeType: .characteristic),
                      "08 01 00 05 00 03 28")
        try roundTrip(ATTReadByTypeRequest(range: .all, attributeType: KeywayLockService.lockInfo),
                      "08 01 00 FF FF 15 CA CA 8D B5 D7 CB 94 53 41 1F 1C 05 00 0C B8")
        try roundTrip(try ATTReadByTypeResponse(attributeData: [.init(handle: 2, value: [0x02, 0x03, 0x00, 0x00, 0x2A]),
                                                               .init(handle: 4, value: [0x02, 0x05, 0x00, 0x01, 0x2A])]),
                      "09 07 02 00 02 03 00 00 2A 04 00 02 05 00 01 2A")
        XCTAssertThrowsError(try ATTReadByTypeResponse(attributeData: [.init(handle: 1, value: [1]), .init(handle: 2, value: [1, 2])]))
    }

    func testReadByGroupType() throws {
        try roundTrip(ATTReadByGroupTypeRequest(range: .all, groupType: .primaryService), "10 01 00 FF FF 00 28")
        try roundTrip(try ATTReadByGroupTypeResponse(attributeData: [.init(handle: 1, endGroupHandle: 5, value: [0x00, 0x18]),
                                                                    .init(handle: 6, endGroupHandle: 9, value: [0x01, 0x18])]),
                      "11 06 01 00 05 00 00 18 06 00 09 00 01 18")
    }

    func testReads() throws {
        try roundTrip(ATTReadRequest(handle: 0x0003), "0A 03 00")
        try roundTrip(ATTReadResponse(value: Array("KW".utf8)), "0B 4B 57")
        try roundTrip(ATTReadResponse(value: []), "0B")
        try roundTrip(ATTReadBlobRequest(handle: 0x0011, offset: 0x0016), "0C 11 00 16 00")
        try roundTrip(ATTReadBlobResponse(partValue: [1, 2]), "0D 01 02")
        try roundTrip(ATTReadMultipleRequest(handles: [0x0003, 0x0005]), "0E 03 00 05 00")
        try roundTrip(ATTReadMultipleResponse(values: [1, 2, 3]), "0F 01 02 03")
    }

    func testWrites() throws {
        try roundTrip(ATTWriteRequest(handle: 0x000F, value: [0x01, 0x00]), "12 0F 00 01 00")
        try roundTrip(ATTWriteResponse(), "13")
        try roundTrip(ATTWriteCommand(handle: 0x0013, value: [0xAA]), "52 13 00 AA")
        try roundTrip(ATTSignedWriteCommand(handle: 0x0013, value: [0xAA], signature: Array(1...12)),
                      "D2 13 00 AA 01 02 03 04 05 06 07 08 09 0A 0B 0C")
        try roundTrip(ATTPrepareWriteRequest(handle: 0x000E, offset: 0x0012, partValue: [9, 8]), "16 0E 00 12 00 09 08")
        try roundTrip(ATTPrepareWriteResponse(handle: 0x000E, offset: 0x0012, partValue: [9, 8]), "17 0E 00 12 00 09 08")
        try roundTrip(ATTExecuteWriteRequest(flags: .write), "18 01")
        try roundTrip(ATTExecuteWriteRequest(flags: .cancel), "18 00")
        try roundTrip(ATTExecuteWriteResponse(), "19")
    }

    func testServerInitiated() throws {
        try roundTrip(ATTHandleValueNotification(handle: 0x0021, value: [1, 2, 3]), "1B 21 00 01 02 03")
        try roundTrip(ATTHandleValueIndication(handle: 0x0008, value: [1, 0, 0xFF, 0xFF]), "1D 08 00 01 00 FF FF")
        try roundTrip(ATTHandleValueConfirmation(), "1E")
    }

    func testMalformedPDUsThrowTypedErrors() {
        func fails(_ bytes: String, _ expected: ATTDecodingError, file: StaticString = #filePath, line: UInt = #line) {
            XCTAssertThrowsError(try ATTPDU.decode(hex(bytes)), file: file, line: line) { e in
                XCTAssertEqual(e as? ATTDecodingError, expected, file: file, line: line)
            }
        }
        fails("", .empty)
        fails("3F 00", .unknownOpcode(0x3F))
        fails("0A 01", .invalidLength(opcode: .readRequest, length: 2))
        fails("0A 01 00 00", .invalidLength(opcode: .readRequest, length: 4))
        fails("02 17", .invalidLength(opcode: .exchangeMTURequest, length: 2))
        fails("08 01 00 FF FF 00 28 00", .invalidLength(opcode: .readByTypeRequest, length: 8))
        fails("05 03 01 00 00 28", .invalidField(opcode: .findInformationResponse, reason: "format 0x03 (must be 0x01 or 0x02)"))
        fails("05 01 01 00 00", .invalidLength(opcode: .findInformationResponse, length: 5))
        fails("09 01 01 00", .invalidField(opcode: .readByTypeResponse, reason: "length 1 (must be at least 2)"))
        fails("09 04 01 00 01", .invalidLength(opcode: .readByTypeResponse, length: 5))
        fails("18 02", .invalidField(opcode: .executeWriteRequest, reason: "flags 0x02 (must be 0x00 or 0x01)"))
        fails("0E 01 00", .invalidLength(opcode: .readMultipleRequest, length: 3))
        fails("D2 01 00 01 02 03", .invalidLength(opcode: .signedWriteCommand, length: 6))
        XCTAssertThrowsError(try ATTReadRequest.decode(hex("0B 01 00"))) { e in
            XCTAssertEqual(e as? ATTDecodingError, .unexpectedOpcode(expected: .readRequest, actual: 0x0B))
        }
    }

    /// Random bytes in, typed errors or values out — never a trap.
    func testRandomInputNeverTraps() {
        var rng = SplitMix64(seed: 42)
        var decoded = 0
        for _ in 0..<20_000 {
            let n = Int(rng.next() % 40)
            var bytes = (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            if !bytes.isEmpty, rng.next() % 2 == 0 {
                bytes[0] = ATTOpcode.allCases[Int(rng.next() % UInt64(ATTOpcode.allCases.count))].rawValue
            }
            if let pdu = try? ATTPDU.decode(bytes) {
                decoded += 1
                XCTAssertEqual(pdu.encode(), bytes, "decode→encode must reproduce \(hexString(bytes))")
            }
        }
        XCTAssertGreaterThan(decoded, 1000)
    }

    func testErrorCodeRawValuesRoundTrip() {
        for raw in 0...255 {
            XCTAssertEqual(ATTErrorCode(rawValue: UInt8(raw)).rawValue, UInt8(raw))
        }
    }
}
