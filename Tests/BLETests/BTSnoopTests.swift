import Foundation
import XCTest
@testable import BLE

final class BTSnoopTests: XCTestCase {
    /// 2023-11-14T22:13:20.000001Z, advancing 1 ms per reading.
    private final class SteppingClock: @unchecked Sendable {
        private let lock = NSLock()
        private var micros: Int64 = 1_700_000_000_000_001
        func now() -> Date {
            lock.withLock {
                defer { micros += 1000 }
                return Date(timeIntervalSince1970: Double(micros) / 1_000_000)
            }
        }
    }

    /// A fresh stepping clock as the writer's clock closure.
    private func stepping() -> @Sendable () -> Date {
        let clock = SteppingClock()
        return { clock.now() }
    }

    func testRecordLayoutIsExact() throws {
        let writer = try BTSnoopWriter(clock: { Date(timeIntervalSince1970: 1_700_000_000.5) })
        writer.recordATT(hex("0A 03 00"), direction: .sent, connectionHandle: 0x0040)
        let micros = UInt64(1_700_000_000_500_000) + 0x00DC_DDB3_0F2F_8000
        var expected = Array("btsnoop".utf8) + [0, 0, 0, 0, 1, 0, 0, 0x03, 0xEA]      // version 1, datalink 1002
        expected += [0, 0, 0, 12, 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0]                  // lengths, flags: sent, drops
        expected += (0..<8).reversed().map { UInt8(truncatingIfNeeded: micros >> (8 * UInt64($0))) }
        expected += hex("02 40 00 07 00 03 00 04 00 0A 03 00")                           // H4 ACL, L2CAP, ATT
        XCTAssertEqual(hexString(writer.capturedBytes), hexString(expected))
        let reader = try BTSnoopReader(bytes: writer.capturedBytes)
        XCTAssertEqual(reader.datalink, 1002)
        XCTAssertEqual(reader.records.first?.date.timeIntervalSince1970 ?? 0, 1_700_000_000.5, accuracy: 1e-6)
    }

    func testFragmentationAtTheACLDataSize() throws {
        let writer = try BTSnoopWriter(clock: stepping())
        let pdu = [0x0B] + Array(UInt8(0)..<UInt8(99))                  // 100-byte Read Response
        writer.recordATT(pdu, direction: .received, connectionHandle: 0x0041)
        writer.recordATT(pdu, direction: .sent, connectionHandle: 0x0041)
        let reader = try BTSnoopReader(bytes: writer.capturedBytes)
        XCTAssertEqual(reader.records.map(\.packet.count), [32, 32, 32, 28, 32, 32, 32, 28])   // 104 = 27+27+27+23
        let pbFlags = reader.records.map { ($0.packet[2] >> 4) & 0b11 }
        XCTAssertEqual(pbFlags, [0b10, 0b01, 0b01, 0b01, 0b00, 0b01, 0b01, 0b01])
        XCTAssertEqual(reader.records.map(\.direction), Array(repeating: .received, count: 4) + Array(repeating: .sent, count: 4))
        XCTAssertEqual(try reader.attPDUs().map(\.pdu), [pdu, pdu])
        XCTAssertThrowsError(try BTSnoopWriter(aclDataSize: 26, clock: stepping()))
        let big = try BTSnoopWriter(aclDataSize: 251, clock: stepping())
        big.recordATT(pdu, direction: .sent, connectionHandle: 1)
        XCTAssertEqual(try BTSnoopReader(bytes: big.capturedBytes).records.count, 1)
    }

    func testReaderIsBoundedAndRejectsGarbage() throws {
        XCTAssertThrowsError(try BTSnoopReader(bytes: Array("not a capture at all".utf8))) { XCTAssertEqual($0 as? BTSnoopError, .notBTSnoop) }
        let writer = try BTSnoopWriter(clock: stepping())
        for _ in 0..<5 { writer.recordATT([0x1E], direction: .received, connectionHandle: 1) }  // 24 + 10 bytes each
        let bytes = writer.capturedBytes
        XCTAssertThrowsError(try BTSnoopReader(bytes: Array(bytes.dropLast(2)))) { XCTAssertEqual($0 as? BTSnoopError, .truncated(offset: 16 + 4 * 34)) }
        XCTAssertThrowsError(try BTSnoopReader(bytes: bytes, maximumRecords: 4)) { XCTAssertEqual($0 as? BTSnoopError, .tooManyRecords(maximum: 4)) }
        XCTAssertThrowsError(try BTSnoopReader(bytes: bytes, maximumRecordLength: 5)) { XCTAssertEqual($0 as? BTSnoopError, .recordTooLong(length: 10, maximum: 5)) }
        var lying = bytes
        lying[16 + 24 + 3] = 0x09                                        // ACL length field says 9
        XCTAssertThrowsError(try BTSnoopReader(bytes: lying).attPDUs())
    }

    /// A capture of a whole client/server session, decoded back by our reader.
    private func captureSession(writer: BTSnoopWriter) async throws {
        let db = try TestDatabase()
        let link = LoopbackLink()
        let captured = try CapturingBearer(wrapping: link.peripheral, writer: writer, role: .peripheral, peerAddress: "C0:FF:EE:12:34:56")
        let server = try GATTServer(database: db.database, bearer: captured)
        let client = try GATTClient(bearer: link.central)
        try await client.exchangeMTU(clientRxMTU: 185)
        let services = try await client.discoverAll()
        _ = try await client.read(0x1A)                                     // 300 bytes: Read + Read Blob
        try await client.write(0x1E, Array(repeating: 0x5A, count: 400))    // Prepare ×3 + Execute
        try client.writeWithoutResponse(0x13, [1])
        try await client.subscribe(services[3].characteristics[2])
        XCTAssertTrue(try server.notify(valueHandle: 0x21, value: [0x01, 0x07]))
        var it = client.notifications.makeAsyncIterator()
        _ = await it.next()
        _ = try await client.rawRequest(hex("0A 99 00"))                   // an Error Response too
        client.close()
        _ = await server.waitUntilClosed()
    }

    func testCapturingBearerRecordsEveryPDUInOrder() async throws {
        let writer = try BTSnoopWriter(clock: stepping())
        try await captureSession(writer: writer)
        let pdus = try BTSnoopReader(bytes: writer.capturedBytes).attPDUs()
        XCTAssertEqual(pdus.first?.pdu, hex("02 B9 00"))
        XCTAssertEqual(pdus.first?.direction, .received)
        XCTAssertEqual(pdus.dropFirst().first?.pdu, hex("03 05 02"))
        for p in pdus { XCTAssertNoThrow(try ATTPDU.decode(p.pdu), hexString(p.pdu)) }
        // Requests and their responses alternate (the capture shows each request before its answer).
        let opcodes = pdus.map { $0.pdu[0] }
        XCTAssertEqual(opcodes.filter { $0 == 0x16 }.count, 3)
        XCTAssertEqual(opcodes.suffix(2), [0x0A, 0x01])
        let records = try BTSnoopReader(bytes: writer.capturedBytes).records
        XCTAssertEqual(records.first?.packet.prefix(4), [0x04, 0x3E, 0x13, 0x01])      // LE Connection Complete
        XCTAssertEqual(records.last?.packet.prefix(3), [0x04, 0x05, 0x04])             // Disconnection Complete
        // Fragments of one PDU share its timestamp; time never goes backwards and does advance.
        XCTAssertTrue(zip(records, records.dropFirst()).allSatisfy { $0.timestamp <= $1.timestamp })
        XCTAssertLessThan(try XCTUnwrap(records.first).timestamp, try XCTUnwrap(records.last).timestamp)
    }

    /// tshark, an independent decoder, must dissect every ATT PDU of the capture with the right opcode.
    func testTsharkDecodesTheCapture() async throws {
        let tshark = ["/usr/bin/tshark", "/usr/local/bin/tshark"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let tshark else { throw XCTSkip("tshark is not installed (tools/setup installs it)") }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("keyway-btsnoop-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("tap.btsnoop").path
        let writer = try BTSnoopWriter(path: path, clock: stepping())
        try await captureSession(writer: writer)
        writer.close()
        XCTAssertNil(writer.writeError)
        XCTAssertTrue(writer.capturedBytes.isEmpty, "file captures keep nothing in memory")
        let expected = try BTSnoopReader(path: path).attPDUs().map { String(format: "0x%02x", $0.pdu[0]) }
        XCTAssertGreaterThan(expected.count, 30)

        let fields = try run(tshark, ["-r", path, "-T", "fields", "-e", "btatt.opcode", "-Y", "btatt"])
        let decoded = fields.split(separator: "\n").map { String($0).trimmingCharacters(in: .whitespaces) }
        XCTAssertEqual(decoded, expected)

        let verbose = try run(tshark, ["-r", path, "-V"])
        XCTAssertFalse(verbose.contains("Malformed"), "tshark reports a malformed packet")
        for name in ["Exchange MTU Request (0x02)", "Read By Group Type Request (0x10)", "Read By Type Response (0x09)",
                     "Find Information Response (0x05)", "Read Blob Request (0x0c)", "Prepare Write Request (0x16)",
                     "Execute Write Request (0x18)", "Write Command (0x52)", "Handle Value Notification (0x1b)",
                     "Error Response (0x01)", "LE Connection Complete", "Disconnect Complete"] {
            XCTAssertTrue(verbose.contains(name), "tshark -V does not show \(name)")
        }
    }

    private func run(_ tool: String, _ args: [String]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, "\(tool) \(args)")
        return String(decoding: data, as: UTF8.self)
    }
}
