import XCTest
@testable import BLE

/// Drives a `GATTServer` with exact ATT byte sequences and compares its answers byte for byte,
/// the way BlueZ's unit/test-gatt.c does. Handle layout: see `TestDatabase`.
final class GATTServerPDUTests: XCTestCase {
    private struct Harness {
        let db: TestDatabase
        let server: GATTServer
        let peer: RawPeer
        let events: Recorder<GATTServerEvent>
    }

    private func harness(maximumPreparedWrites: Int = 64) throws -> Harness {
        let db = try TestDatabase()
        let link = LoopbackLink()
        let events = Recorder<GATTServerEvent>()
        let server = try GATTServer(database: db.database, bearer: link.peripheral,
                                    configuration: .init(maximumPreparedWrites: maximumPreparedWrites,
                                                         eventHandler: { events.append($0) }))
        return Harness(db: db, server: server, peer: try RawPeer(link.central), events: events)
    }

    /// Sends `request` and expects exactly `response` as the next PDU.
    private func expect(_ h: Harness, _ request: String, _ response: String,
                        file: StaticString = #filePath, line: UInt = #line) async throws {
        try h.peer.send(hex(request))
        let got = await h.peer.next()
        XCTAssertEqual(got.map(hexString), hexString(hex(response)), "request \(request)", file: file, line: line)
    }

    /// Sends a command and proves no answer came: the next PDU must be the answer to a probe request.
    private func expectSilence(_ h: Harness, _ command: String, file: StaticString = #filePath, line: UInt = #line) async throws {
        try h.peer.send(hex(command))
        try await expect(h, "0A 03 00", "0B 4B 57 2D 31", file: file, line: line)  // read Device Name "KW-1"
    }

    // MARK: MTU

    func testExchangeMTU() async throws {
        let h = try harness()
        XCTAssertEqual(h.server.mtu, 23)
        try await expect(h, "02 00 02", "03 05 02")     // client 512, server 517
        XCTAssertEqual(h.server.mtu, 512)
        XCTAssertEqual(h.events.all, [.mtuExchanged(512)])
        try await expect(h, "02 05 02", "03 05 02")     // a second exchange is answered but changes nothing
        XCTAssertEqual(h.server.mtu, 512)
        try await expect(h, "02 00", "01 02 00 00 04")  // Invalid PDU
    }

    func testExchangeMTUBelowDefaultKeeps23() async throws {
        let h = try harness()
        try await expect(h, "02 10 00", "03 05 02")
        XCTAssertEqual(h.server.mtu, 23)
    }

    // MARK: Discovery

    func testPrimaryServiceDiscovery() async throws {
        let h = try harness()
        try await expect(h, "10 01 00 FF FF 00 28", "11 06 01 00 05 00 00 18 06 00 09 00 01 18 0A 00 17 00 F0 FF")
        try await expect(h, "10 18 00 FF FF 00 28", "11 14 18 00 26 00 15 CA CA 8D B5 D7 CB 94 53 41 1F 1C 01 00 0C B8")
        try await expect(h, "10 27 00 FF FF 00 28", "01 10 27 00 0A")
        // by UUID
        try await expect(h, "06 01 00 FF FF 00 28 F0 FF", "07 0A 00 17 00")
        try await expect(h, "06 01 00 FF FF 00 28 15 CA CA 8D B5 D7 CB 94 53 41 1F 1C 01 00 0C B8", "07 18 00 26 00")
        try await expect(h, "06 01 00 FF FF 00 28 34 12", "01 06 01 00 0A")
    }

    func testCharacteristicDiscovery() async throws {
        let h = try harness()
        try await expect(h, "08 0A 00 17 00 03 28", "09 07 0B 00 02 0C 00 F1 FF 0D 00 1A 0E 00 F2 FF 10 00 02 11 00 F3 FF")
        try await expect(h, "08 11 00 17 00 03 28", "09 07 12 00 0C 13 00 F4 FF 14 00 22 15 00 F5 FF")
        try await expect(h, "08 15 00 17 00 03 28", "01 08 15 00 0A")
        // 128-bit characteristic UUIDs: 19-byte values, one per response at ATT_MTU 23
        try await expect(h, "08 18 00 26 00 03 28", "09 15 19 00 12 1A 00 15 CA CA 8D B5 D7 CB 94 53 41 1F 1C 02 00 0C B8")
    }

    func testDescriptorDiscovery() async throws {
        let h = try harness()
        try await expect(h, "04 16 00 17 00", "05 01 16 00 02 29 17 00 01 29")
        // stops where the UUID width changes
        try await expect(h, "04 18 00 1B 00", "05 01 18 00 00 28 19 00 03 28")
        try await expect(h, "04 1A 00 1A 00", "05 02 1A 00 15 CA CA 8D B5 D7 CB 94 53 41 1F 1C 02 00 0C B8")
        try await expect(h, "04 27 00 FF FF", "01 04 27 00 0A")
    }

    // MARK: Reads

    func testReadStaticAndDynamic() async throws {
        let h = try harness()
        try await expect(h, "0A 0C 00", "0B 68 65 6C 6C 6F")      // "hello"
        try await expect(h, "0A 0E 00", "0B B0 B1")                // dynamic read handler
        try await expect(h, "0A 05 00", "0B 04 07")                // Appearance: Access Lock
        try await expect(h, "0A 0F 00", "0B 00 00")                // CCCD, per connection
        try await expect(h, "0A 25 00", "0B 4C 49")                // Lock Info handler
        try await expect(h, "0E 0C 00 05 00", "0F 68 65 6C 6C 6F 04 07")       // Read Multiple
        try await expect(h, "0E 0C 00 0E 00", "0F 68 65 6C 6C 6F B0 B1")       // … with a dynamic value
        try await expect(h, "08 01 00 FF FF F2 FF", "09 04 0E 00 B0 B1")       // read using characteristic UUID
    }

    func testReadBlob() async throws {
        let h = try harness()
        let v = h.db.longValue
        try await expect(h, "0A 11 00", "0B " + hexString(Array(v[0..<22])))
        try await expect(h, "0C 11 00 16 00", "0D " + hexString(Array(v[22..<44])))
        try await expect(h, "0C 11 00 58 00", "0D " + hexString(Array(v[88..<100])))
        try await expect(h, "0C 11 00 64 00", "0D")                 // offset == length: empty
        try await expect(h, "0C 11 00 65 00", "01 0C 11 00 07")     // Invalid Offset
    }

    func testLongReadOfADynamicValueIsOneSnapshot() async throws {
        let h = try harness()
        try await expect(h, "02 17 00", "03 05 02")
        h.db.bValue.value = Array(0..<60)
        try await expect(h, "0A 0E 00", "0B " + hexString(Array(0..<22)))
        h.db.bValue.value = [0xFF]                                  // changes mid-read…
        try await expect(h, "0C 0E 00 16 00", "0D " + hexString(Array(22..<44)))   // …the read continues on the snapshot
        try await expect(h, "0C 0E 00 2C 00", "0D " + hexString(Array(44..<60)))
        try await expect(h, "0A 0E 00", "0B FF")                   // a new read sees the new value
    }

    // MARK: Writes

    func testWriteRequestAndCommand() async throws {
        let h = try harness()
        try await expect(h, "12 13 00 01 02", "13")
        try await expectSilence(h, "52 13 00 AA BB")
        XCTAssertEqual(h.db.dWrites.all, [[0x01, 0x02], [0xAA, 0xBB]])
        try await expectSilence(h, "52 0C 00 AA")                   // command to a read-only value: ignored
        try await expectSilence(h, "52 99 00 AA")                   // command to no handle: ignored
        try await expectSilence(h, "D2 13 00 AA 01 02 03 04 05 06 07 08 09 0A 0B 0C")  // signed: no CSRK, ignored
        try await expectSilence(h, "7F 01 02")                      // unknown command: ignored
        XCTAssertEqual(h.db.dWrites.all.count, 2)
    }

    func testLongWriteWithPrepareAndExecute() async throws {
        let h = try harness()
        let value = Array(UInt8(0x20)..<UInt8(0x3C))                // 28 bytes
        try await expect(h, "16 0E 00 00 00 " + hexString(Array(value[0..<18])), "17 0E 00 00 00 " + hexString(Array(value[0..<18])))
        try await expect(h, "16 0E 00 12 00 " + hexString(Array(value[18...])), "17 0E 00 12 00 " + hexString(Array(value[18...])))
        XCTAssertEqual(h.db.bWrites.all, [])                        // nothing written before Execute
        try await expect(h, "18 01", "19")
        XCTAssertEqual(h.db.bWrites.all, [value])                   // the handler saw the whole value once
        try await expect(h, "0A 0E 00", "0B " + hexString(Array(value[0..<22])))
        try await expect(h, "0C 0E 00 16 00", "0D " + hexString(Array(value[22...])))
    }

    func testExecuteWriteCancelDiscardsTheQueue() async throws {
        let h = try harness()
        try await expect(h, "16 0E 00 00 00 01 02", "17 0E 00 00 00 01 02")
        try await expect(h, "18 00", "19")
        try await expect(h, "18 01", "19")                          // nothing left to write
        XCTAssertEqual(h.db.bWrites.all, [])
    }

    func testLongWriteToThePresentationCharacteristic() async throws {
        let h = try harness()
        try await expect(h, "02 00 01", "03 05 02")                 // MTU 256
        let presentation = (0..<400).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        var offset = 0
        while offset < presentation.count {
            let part = Array(presentation[offset..<min(offset + 251, presentation.count)])
            let off = String(format: "%02X %02X", offset & 0xFF, offset >> 8)
            try await expect(h, "16 1E 00 \(off) " + hexString(part), "17 1E 00 \(off) " + hexString(part))
            offset += part.count
        }
        try await expect(h, "18 01", "19")
        XCTAssertEqual(h.db.presentations.all, [presentation])
    }

    func testNotificationsAfterCCCDEnable() async throws {
        let h = try harness()
        XCTAssertFalse(try h.server.notify(valueHandle: 0x000E, value: [1, 2, 3]))   // not subscribed: nothing sent
        try await expect(h, "12 0F 00 01 00", "13")
        XCTAssertEqual(h.events.all, [.subscriptionChanged(valueHandle: 0x000E, .notifications)])
        XCTAssertEqual(h.server.clientConfiguration(valueHandle: 0x000E), .notifications)
        XCTAssertTrue(try h.server.notify(valueHandle: 0x000E, value: [1, 2, 3]))
        let n = await h.peer.next()
        XCTAssertEqual(n, hex("1B 0E 00 01 02 03"))
        try await expect(h, "0A 0F 00", "0B 01 00")
        XCTAssertThrowsError(try h.server.notify(valueHandle: 0x000E, value: Array(repeating: 0, count: 21))) { e in
            XCTAssertEqual(e as? GATTServerError, .valueTooLong(length: 21, maximum: 20))
        }
        XCTAssertThrowsError(try h.server.notify(valueHandle: 0x000C, value: [1])) { e in
            XCTAssertEqual(e as? GATTServerError, .notificationsNotSupported(valueHandle: 0x000C))
        }
        try await expect(h, "12 0F 00 00 00", "13")
        XCTAssertFalse(try h.server.notify(valueHandle: 0x000E, value: [4]))
    }

    func testIndicationWaitsForConfirmation() async throws {
        let h = try harness()
        try await expect(h, "12 16 00 02 00", "13")
        let sent = Task { try await h.server.indicate(valueHandle: 0x0015, value: [9]) }
        let ind = await h.peer.next()
        XCTAssertEqual(ind, hex("1D 15 00 09"))
        try h.peer.send([0x1E])
        let confirmed = try await sent.value
        XCTAssertTrue(confirmed)
    }

    func testIndicationTimesOutOnTheInjectedClock() async throws {
        let db = try TestDatabase()
        let link = LoopbackLink()
        let clock = TestClock()
        let server = try GATTServer(database: db.database, bearer: link.peripheral,
                                    configuration: .init(indicationTimeout: .seconds(30), clock: clock))
        let peer = try RawPeer(link.central)
        try peer.send(hex("12 16 00 02 00"))
        _ = await peer.next()
        let sent = Task { try await server.indicate(valueHandle: 0x0015, value: [9]) }
        _ = await peer.next()                                       // the indication; never confirmed
        await clock.waitForSleepers(1)
        clock.advance(by: .seconds(30))
        do {
            _ = try await sent.value
            XCTFail("expected a timeout")
        } catch {
            XCTAssertEqual(error as? GATTServerError, .indicationTimedOut)
        }
        let reason = await server.waitUntilClosed()
        XCTAssertEqual(reason, .local)                              // ATT: no more traffic after a timeout
    }

    // MARK: Error responses

    func testInvalidPDU() async throws {
        let h = try harness()
        try await expect(h, "0A 01", "01 0A 00 00 04")
        try await expect(h, "0C 11 00 01", "01 0C 00 00 04")
        try await expect(h, "04 01 00", "01 04 00 00 04")
        try await expect(h, "08 01 00 FF FF 00 28 00", "01 08 00 00 04")
        try await expect(h, "10 01 00 FF FF 00", "01 10 00 00 04")
        try await expect(h, "06 01 00 FF FF 00", "01 06 00 00 04")
        try await expect(h, "12 0E", "01 12 00 00 04")
        try await expect(h, "16 0E 00 00", "01 16 00 00 04")
        try await expect(h, "18 02", "01 18 00 00 04")
        try await expect(h, "0E 0C 00", "01 0E 00 00 04")
    }

    /// Found by the `att-server` fuzz target (Fixtures/fuzz/att-server/regression-request-longer-than-mtu):
    /// a Prepare Write Response echoes its request, so a request longer than ATT_MTU made the server
    /// answer past ATT_MTU. A PDU longer than ATT_MTU breaks the protocol: a request gets Invalid PDU,
    /// a command is ignored, and nothing of it is acted on.
    func testAPDULongerThanATTMTUIsAnInvalidPDU() async throws {
        let h = try harness()
        let twenty = String(repeating: "AB ", count: 20)
        try await expect(h, "16 0E 00 00 00 " + twenty, "01 16 00 00 04")     // 25 bytes at ATT_MTU 23
        try await expect(h, "12 13 00 " + twenty + "01", "01 12 00 00 04")     // 24 bytes
        try await expectSilence(h, "52 13 00 " + twenty + "01")               // a command: ignored
        try await expect(h, "16 0E 00 00 00 01 02", "17 0E 00 00 00 01 02")   // 23 bytes or fewer still work
        try await expect(h, "18 00", "19")                                     // and the queue held only that
    }

    func testInvalidHandle() async throws {
        let h = try harness()
        try await expect(h, "0A 00 00", "01 0A 00 00 01")
        try await expect(h, "0A 99 00", "01 0A 99 00 01")
        try await expect(h, "0C 99 00 00 00", "01 0C 99 00 01")
        try await expect(h, "12 99 00 01", "01 12 99 00 01")
        try await expect(h, "16 99 00 00 00 01", "01 16 99 00 01")
        try await expect(h, "0E 0C 00 99 00", "01 0E 99 00 01")
        try await expect(h, "04 00 00 FF FF", "01 04 00 00 01")      // start handle 0
        try await expect(h, "08 05 00 01 00 03 28", "01 08 05 00 01") // start > end
        try await expect(h, "10 05 00 01 00 00 28", "01 10 05 00 01")
        try await expect(h, "06 05 00 01 00 00 28 00 18", "01 06 05 00 01")
    }

    func testAttributeNotFound() async throws {
        let h = try harness()
        try await expect(h, "04 27 00 FF FF", "01 04 27 00 0A")
        try await expect(h, "08 01 00 FF FF 34 12", "01 08 01 00 0A")
        try await expect(h, "10 0B 00 17 00 00 28", "01 10 0B 00 0A")
        try await expect(h, "06 01 00 FF FF 00 28 34 12", "01 06 01 00 0A")
    }

    func testReadAndWriteNotPermitted() async throws {
        let h = try harness()
        try await expect(h, "0A 13 00", "01 0A 13 00 02")            // write-only value
        try await expect(h, "0A 08 00", "01 0A 08 00 02")            // Service Changed: indicate only
        try await expect(h, "0C 13 00 00 00", "01 0C 13 00 02")
        try await expect(h, "08 01 00 FF FF F4 FF", "01 08 13 00 02") // read by type hits an unreadable value
        try await expect(h, "12 0C 00 01", "01 12 0C 00 03")         // read-only value
        try await expect(h, "12 01 00 00 18", "01 12 01 00 03")      // service declaration
        try await expect(h, "12 17 00 41", "01 12 17 00 03")         // descriptor
        try await expect(h, "16 0C 00 00 00 01", "01 16 0C 00 03")
    }

    func testRequestNotSupported() async throws {
        let h = try harness()
        try await expect(h, "3F 01 02", "01 3F 00 00 06")            // unknown request opcode
        try await expect(h, "20 0C 00 0E 00", "01 20 00 00 06")      // Read Multiple Variable Length
        try await expect(h, "14 00", "01 14 00 00 06")
    }

    func testInvalidAttributeValueLengthAndCCCDRules() async throws {
        let h = try harness()
        try await expect(h, "12 0F 00 01", "01 12 0F 00 0D")         // CCCD takes 2 bytes
        try await expect(h, "12 0F 00 01 00 00", "01 12 0F 00 0D")
        try await expect(h, "12 0F 00 02 00", "01 12 0F 00 FD")      // indications on a notify-only characteristic
        try await expect(h, "12 0F 00 04 00", "01 12 0F 00 FD")      // reserved bit
        try await expect(h, "02 05 02", "03 05 02")
        try await expect(h, "12 0E 00 " + hexString(Array(repeating: 0x55, count: 513)), "01 12 0E 00 0D")  // > 512
        XCTAssertEqual(h.db.bWrites.all, [])
    }

    func testLongWritePast512BytesIsRejectedAtExecute() async throws {
        let h = try harness()
        try await expect(h, "02 05 02", "03 05 02")
        let part = hexString(Array(repeating: 0x11, count: 300))
        try await expect(h, "16 0E 00 00 00 " + part, "17 0E 00 00 00 " + part)
        try await expect(h, "16 0E 00 2C 01 " + part, "17 0E 00 2C 01 " + part)   // offset 300: ends at 600
        try await expect(h, "18 01", "01 18 0E 00 0D")
        XCTAssertEqual(h.db.bWrites.all, [])
    }

    func testExecuteWriteWithAGapIsInvalidOffset() async throws {
        let h = try harness()
        try await expect(h, "16 0E 00 00 00 01 02", "17 0E 00 00 00 01 02")
        try await expect(h, "16 0E 00 05 00 03", "17 0E 00 05 00 03")
        try await expect(h, "18 01", "01 18 0E 00 07")
        XCTAssertEqual(h.db.bWrites.all, [])
    }

    func testPrepareQueueFull() async throws {
        let h = try harness(maximumPreparedWrites: 2)
        try await expect(h, "16 0E 00 00 00 01", "17 0E 00 00 00 01")
        try await expect(h, "16 0E 00 01 00 02", "17 0E 00 01 00 02")
        try await expect(h, "16 0E 00 02 00 03", "01 16 0E 00 09")
        try await expect(h, "18 01", "19")                            // the two queued parts still execute
        XCTAssertEqual(h.db.bWrites.all, [[1, 2]])
    }

    func testUnsupportedGroupType() async throws {
        let h = try harness()
        try await expect(h, "10 01 00 FF FF 03 28", "01 10 01 00 10")
    }

    func testHandlerErrorsBecomeErrorResponses() async throws {
        let h = try harness()
        try await expect(h, "12 0E 00 EE", "01 12 0E 00 80")         // handler threw .application(0x80)
        try await expect(h, "12 0E 00 EF", "01 12 0E 00 0E")         // any other error: Unlikely Error
        try await expect(h, "16 0E 00 00 00 EE", "17 0E 00 00 00 EE")
        try await expect(h, "18 01", "01 18 0E 00 80")               // … also at Execute Write
    }

    func testStrayResponsesAndConfirmationsAreIgnored() async throws {
        let h = try harness()
        try await expectSilence(h, "0B 01 02")
        try await expectSilence(h, "1E")
        try await expectSilence(h, "1B 0E 00 01")
    }

    func testDatabaseRejectsDefinitionsItCannotServe() {
        XCTAssertThrowsError(try GATTDatabase(services: [GATTService(uuid: BluetoothUUID(0xFFF0), characteristics: [
            GATTCharacteristic(uuid: BluetoothUUID(0xFFF1), properties: [.read, .write], value: .constant([1])),
        ])])) { XCTAssertEqual($0 as? GATTDatabaseError, .missingWriteHandler(characteristic: BluetoothUUID(0xFFF1))) }
        XCTAssertThrowsError(try GATTDatabase(services: [GATTService(uuid: BluetoothUUID(0xFFF0), characteristics: [
            GATTCharacteristic(uuid: BluetoothUUID(0xFFF1), properties: [.read], value: .constant(Array(repeating: 0, count: 513))),
        ])])) { XCTAssertEqual($0 as? GATTDatabaseError, .valueTooLong(characteristic: BluetoothUUID(0xFFF1), length: 513)) }
        XCTAssertThrowsError(try GATTDatabase(services: [GATTService(uuid: BluetoothUUID(0xFFF0), characteristics: [
            GATTCharacteristic(uuid: BluetoothUUID(0xFFF1), properties: [.read], value: .dynamic(read: nil, write: nil)),
        ])])) { XCTAssertEqual($0 as? GATTDatabaseError, .missingReadHandler(characteristic: BluetoothUUID(0xFFF1))) }
    }

    /// The handle table of docs/PROTOCOL-ble.md ("The standard lock database").
    func testStandardLockDatabaseLayout() throws {
        let db = try KeywayLockService.database(deviceName: "Lock", handlers: .init(
            readerHello: { _ in [] }, presentation: { _, _ in }, lockInfo: { _ in [] }))
        XCTAssertEqual(db.services.map(\.handles), [ATTHandleRange(start: 0x01, end: 0x05), ATTHandleRange(start: 0x06, end: 0x09),
                                                    ATTHandleRange(start: 0x0A, end: 0x18)])
        XCTAssertEqual(db.handles(of: .deviceName, in: .genericAccessService)?.value, 0x03)
        XCTAssertEqual(db.handles(of: .appearance, in: .genericAccessService)?.value, 0x05)
        XCTAssertEqual(db.handles(of: .serviceChanged, in: .genericAttributeService),
                       GATTCharacteristicHandles(declaration: 0x07, value: 0x08, cccd: 0x09, end: 0x09))
        let s = KeywayLockService.service
        XCTAssertEqual(db.handles(of: KeywayLockService.readerHello, in: s),
                       GATTCharacteristicHandles(declaration: 0x0B, value: 0x0C, cccd: 0x0D, end: 0x0E))
        XCTAssertEqual(db.handles(of: KeywayLockService.presentation, in: s),
                       GATTCharacteristicHandles(declaration: 0x0F, value: 0x10, cccd: nil, end: 0x11))
        XCTAssertEqual(db.handles(of: KeywayLockService.result, in: s),
                       GATTCharacteristicHandles(declaration: 0x12, value: 0x13, cccd: 0x14, end: 0x15))
        XCTAssertEqual(db.handles(of: KeywayLockService.lockInfo, in: s),
                       GATTCharacteristicHandles(declaration: 0x16, value: 0x17, cccd: nil, end: 0x18))
    }

    func testLockServiceHandles() throws {
        let db = try TestDatabase()
        let handles = KeywayLockService.Handles(in: db.database)
        XCTAssertEqual(handles, KeywayLockService.Handles(in: db.database))
        XCTAssertEqual(handles?.readerHello, 0x001A)
        XCTAssertEqual(handles?.presentation, 0x001E)
        XCTAssertEqual(handles?.result, 0x0021)
        XCTAssertEqual(handles?.lockInfo, 0x0025)
        XCTAssertEqual(db.database.attributeCount, 0x26)
    }
}

/// The slow path: a handler that suspends. PDUs arriving meanwhile must be answered afterwards, in
/// arrival order, and confirmations must still get through.
final class GATTServerSuspendingHandlerTests: XCTestCase {
    /// A one-shot gate the test opens.
    private final class Gate: @unchecked Sendable {
        private let lock = NSLock()
        private var waiter: CheckedContinuation<Void, Never>?
        private var open = false
        private(set) var entered = false
        func wait() async {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let now: Bool = lock.withLock {
                    entered = true
                    if open { return true }
                    waiter = c
                    return false
                }
                if now { c.resume() }
            }
        }
        func release() {
            let c: CheckedContinuation<Void, Never>? = lock.withLock { open = true; defer { waiter = nil }; return waiter }
            c?.resume()
        }
    }

    func testRequestsQueuedBehindASuspendedHandlerAreAnsweredInOrder() async throws {
        let gate = Gate()
        let writes = Recorder<[UInt8]>()
        let service = GATTService(uuid: BluetoothUUID(0xFFE0), characteristics: [
            GATTCharacteristic(uuid: BluetoothUUID(0xFFE1), properties: [.read, .write, .writeWithoutResponse], value: .dynamic(
                read: { _ in [0x01] },
                write: { _, v in
                    if v == [0x00] { await gate.wait() }          // suspends until the test opens the gate
                    writes.append(v)
                })),
            GATTCharacteristic(uuid: BluetoothUUID(0xFFE2), properties: [.read], value: .constant([0x5A])),
        ])
        let link = LoopbackLink()
        let server = try GATTServer(database: try GATTDatabase(services: [service]), bearer: link.peripheral)
        let peer = try RawPeer(link.central)
        try peer.send(hex("12 03 00 00"))                          // Write Request: the handler suspends
        try peer.send(hex("52 03 00 07"))                          // Write Command, queued behind it
        try peer.send(hex("0A 05 00"))                             // static Read, queued too
        try peer.send(hex("0A 03 00"))                             // dynamic Read, queued too
        for _ in 0..<30_000 where !gate.entered { try await Task.sleep(for: .milliseconds(1)) }   // bound only
        XCTAssertTrue(gate.entered)
        XCTAssertTrue(peer.backlog.isEmpty, "nothing may be answered before the suspended write")
        XCTAssertEqual(writes.all, [])
        gate.release()
        let answers = [await peer.next(), await peer.next(), await peer.next()]
        XCTAssertEqual(answers, [hex("13"), hex("0B 5A"), hex("0B 01")])
        XCTAssertEqual(writes.all, [[0x00], [0x07]])
        try peer.send(hex("0A 05 00"))                             // back on the fast path; its answer is a
        let last = await peer.next()                               // fence: anything extra would come first
        XCTAssertEqual(last, hex("0B 5A"))
        XCTAssertTrue(peer.backlog.isEmpty)
        _ = server
    }

    func testAFloodBehindASuspendedHandlerClosesTheLink() async throws {
        let gate = Gate()
        let service = GATTService(uuid: BluetoothUUID(0xFFE0), characteristics: [
            GATTCharacteristic(uuid: BluetoothUUID(0xFFE1), properties: [.write, .writeWithoutResponse],
                               value: .dynamic(read: nil, write: { _, _ in await gate.wait() })),
        ])
        let link = LoopbackLink()
        let server = try GATTServer(database: try GATTDatabase(services: [service]), bearer: link.peripheral)
        let peer = try RawPeer(link.central)
        try peer.send(hex("12 03 00 00"))
        for _ in 0..<300 { try? peer.send(hex("52 03 00 01")) }     // a client ignoring ATT flow control
        let reason = await server.waitUntilClosed()
        XCTAssertEqual(reason, .local)
        gate.release()
    }
}
