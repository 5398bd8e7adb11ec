import XCTest
@testable import BLE

/// GATTClient against GATTServer over the in-process loopback link.
final class GATTClientServerTests: XCTestCase {
    private struct Pair {
        let db: TestDatabase
        let server: GATTServer
        let client: GATTClient
        let events: Recorder<GATTServerEvent>
    }

    private func pair(conditions: LinkConditions = .ideal, clock: any Clock<Duration> = ContinuousClock(),
                      timeout: Duration? = .seconds(30)) throws -> Pair {
        let db = try TestDatabase()
        let link = LoopbackLink(conditions: conditions, clock: clock)
        let events = Recorder<GATTServerEvent>()
        let server = try GATTServer(database: db.database, bearer: link.peripheral,
                                    configuration: .init(eventHandler: { events.append($0) }))
        let client = try GATTClient(bearer: link.central, configuration: .init(transactionTimeout: timeout, clock: clock))
        return Pair(db: db, server: server, client: client, events: events)
    }

    func testFullDiscoveryMatchesTheDatabase() async throws {
        let p = try pair()
        let services = try await p.client.discoverAll()
        XCTAssertEqual(services.map(\.uuid), [.genericAccessService, .genericAttributeService, BluetoothUUID(0xFFF0), KeywayLockService.service])
        for (found, laidOut) in zip(services, p.db.database.services) {
            XCTAssertEqual(found.handles, laidOut.handles)
        }
        let test = services[2]
        XCTAssertEqual(test.characteristics.map(\.uuid), (0xFFF1...0xFFF5).map { BluetoothUUID(UInt16($0)) })
        XCTAssertEqual(test.characteristics.map(\.valueHandle), [0x0C, 0x0E, 0x11, 0x13, 0x15])
        XCTAssertEqual(test.characteristics[1].properties, [.read, .write, .notify])
        XCTAssertEqual(test.characteristics[4].descriptors.map(\.uuid), [.clientCharacteristicConfiguration, .characteristicUserDescription])
        XCTAssertEqual(test.characteristics[4].endHandle, 0x17)
        let lock = services[3]
        XCTAssertEqual(lock.characteristics.map(\.uuid), [KeywayLockService.readerHello, KeywayLockService.presentation,
                                                          KeywayLockService.result, KeywayLockService.lockInfo])
        let handles = try XCTUnwrap(KeywayLockService.Handles(in: p.db.database))
        XCTAssertEqual(lock.characteristics.map(\.valueHandle), [handles.readerHello, handles.presentation, handles.result, handles.lockInfo])
        let byUUID = try await p.client.discoverPrimaryServices(uuid: KeywayLockService.service)
        XCTAssertEqual(byUUID.map(\.handles), [lock.handles])
    }

    func testLongReadAndLongWriteAtTheDefaultMTU() async throws {
        let p = try pair()
        XCTAssertEqual(p.client.mtu, 23)
        let c = try await p.client.read(0x11)
        XCTAssertEqual(c, p.db.longValue)
        let hello = try await p.client.read(0x1A)
        XCTAssertEqual(hello, Array(repeating: 0x48, count: 300))
        let value = (0..<200).map { UInt8($0) }
        try await p.client.write(0x0E, value)                          // prepare/execute, 18 bytes a piece
        XCTAssertEqual(p.db.bWrites.all, [value])
        let back = try await p.client.read(0x0E)
        XCTAssertEqual(back, value)
    }

    func testMTU517CarriesAWholePresentationInOneWrite() async throws {
        let p = try pair()
        let mtu = try await p.client.exchangeMTU()
        XCTAssertEqual(mtu, 517)
        XCTAssertEqual(p.server.mtu, 517)
        let presentation = (0..<512).map { UInt8(truncatingIfNeeded: $0) }
        try await p.client.write(0x1E, presentation)
        XCTAssertEqual(p.db.presentations.all, [presentation])
        let hello = try await p.client.read(0x1A)
        XCTAssertEqual(hello.count, 300)
        do {
            try await p.client.write(0x1E, Array(repeating: 0, count: 513))
            XCTFail("513 bytes must be refused")
        } catch {
            XCTAssertEqual(error as? GATTClientError, .valueTooLong(length: 513, maximum: 512))
        }
    }

    func testWriteWithoutResponse() async throws {
        let p = try pair()
        try p.client.writeWithoutResponse(0x13, [1, 2, 3])
        _ = try await p.client.read(0x0C)                              // the server handles PDUs in order
        XCTAssertEqual(p.db.dWrites.all, [[1, 2, 3]])
        XCTAssertThrowsError(try p.client.writeWithoutResponse(0x13, Array(repeating: 0, count: 21)))
    }

    func testSubscribeAndReceiveNotifications() async throws {
        let p = try pair()
        let lock = try await p.client.discoverPrimaryServices(uuid: KeywayLockService.service)[0]
        let chars = try await p.client.discoverCharacteristics(of: lock)
        let result = try XCTUnwrap(chars.first { $0.uuid == KeywayLockService.result })
        try await p.client.subscribe(result)
        XCTAssertEqual(p.events.all, [.subscriptionChanged(valueHandle: result.valueHandle, .notifications)])
        XCTAssertTrue(try p.server.notify(valueHandle: result.valueHandle, value: [0x01, 0x07]))
        XCTAssertTrue(try p.server.notify(valueHandle: result.valueHandle, value: [0x02]))
        var it = p.client.notifications.makeAsyncIterator()
        let first = await it.next()
        let second = await it.next()
        XCTAssertEqual(first, GATTNotification(valueHandle: result.valueHandle, value: [0x01, 0x07], isIndication: false))
        XCTAssertEqual(second?.value, [0x02])
        try await p.client.unsubscribe(result)
        XCTAssertFalse(try p.server.notify(valueHandle: result.valueHandle, value: [0x03]))
    }

    func testIndicationsAreConfirmedByTheClient() async throws {
        let p = try pair()
        let e = GATTRemoteCharacteristic(uuid: BluetoothUUID(0xFFF5), properties: [.read, .indicate],
                                         declarationHandle: 0x14, valueHandle: 0x15, endHandle: 0x17)
        try await p.client.subscribe(e, indications: true)
        let confirmed = try await p.server.indicate(valueHandle: 0x15, value: [0x42])
        XCTAssertTrue(confirmed)
        var it = p.client.notifications.makeAsyncIterator()
        let n = await it.next()
        XCTAssertEqual(n, GATTNotification(valueHandle: 0x15, value: [0x42], isIndication: true))
    }

    func testHandlerMayAwaitAnIndicationWithoutDeadlock() async throws {
        // A write handler that indicates on its own connection and waits for the confirmation:
        // the confirmation must be processed while the handler is still running.
        let confirmedInHandler = SharedValue(false)
        let service = GATTService(uuid: BluetoothUUID(0xFFE0), characteristics: [
            GATTCharacteristic(uuid: BluetoothUUID(0xFFE1), properties: [.write, .indicate], value: .dynamic(read: nil, write: { ctx, v in
                confirmedInHandler.value = try await ctx.server.indicate(valueHandle: ctx.valueHandle, value: v)
            })),
        ])
        let link = LoopbackLink()
        let server = try GATTServer(database: try GATTDatabase(services: [service]), bearer: link.peripheral)
        let client = try GATTClient(bearer: link.central)
        try await client.write(0x04, [0x02, 0x00])                    // CCCD: indications
        try await client.write(0x03, [0x99])
        XCTAssertTrue(confirmedInHandler.value)
        _ = server
    }

    func testATTErrorsSurfaceAsTypedErrors() async throws {
        let p = try pair()
        do {
            _ = try await p.client.read(0x13)
            XCTFail("read of a write-only value must fail")
        } catch {
            XCTAssertEqual(error as? GATTClientError, .attError(.readNotPermitted, handle: 0x13, request: .readRequest))
        }
        do {
            try await p.client.write(0x0E, [0xEE])
            XCTFail("the handler refuses 0xEE")
        } catch {
            XCTAssertEqual(error as? GATTClientError, .attError(.application(0x80), handle: 0x0E, request: .writeRequest))
        }
        let raw = try await p.client.rawRequest(hex("0A 01"))
        XCTAssertEqual(raw, hex("01 0A 00 00 04"))
    }

    func testConcurrentRequestsAreSerialisedInOrder() async throws {
        let p = try pair()
        let results = try await withThrowingTaskGroup(of: (Int, [UInt8]).self) { group in
            for i in 0..<200 {
                group.addTask { (i, try await p.client.read(i % 2 == 0 ? 0x0C : 0x0E)) }
            }
            var out: [Int: [UInt8]] = [:]
            for try await (i, v) in group { out[i] = v }
            return out
        }
        XCTAssertEqual(results.count, 200)
        for (i, v) in results { XCTAssertEqual(v, i % 2 == 0 ? Array("hello".utf8) : [0xB0, 0xB1]) }
    }

    func testTransactionTimesOutOnALossyLink() async throws {
        let clock = TestClock()
        let p = try pair(conditions: LinkConditions(lossProbability: 1.0), clock: clock, timeout: .seconds(30))
        let read = Task { try await p.client.read(0x0C) }
        await clock.waitForSleepers(1)                                 // the client's transaction timer
        clock.advance(by: .seconds(29))                                // wakes due sleepers synchronously
        XCTAssertEqual(clock.sleeperCount, 1, "no timeout before 30 s")
        clock.advance(by: .seconds(1))
        do {
            _ = try await read.value
            XCTFail("expected a timeout")
        } catch {
            XCTAssertEqual(error as? GATTClientError, .timeout(request: .readRequest))
        }
        do {
            _ = try await p.client.read(0x0C)
            XCTFail("no transaction after a timeout")
        } catch {
            XCTAssertEqual(error as? GATTClientError, .timeout(request: .readRequest))
        }
        let reason = await p.server.waitUntilClosed()
        XCTAssertEqual(reason, .remote)
    }

    func testLatencyOnTheSimulatedClock() async throws {
        let clock = TestClock()
        let p = try pair(conditions: LinkConditions(latency: .milliseconds(15)), clock: clock, timeout: nil)
        let done = SharedValue(false)
        let read = Task { () throws -> [UInt8] in
            let v = try await p.client.read(0x0C)
            done.value = true
            return v
        }
        await clock.waitForSleepers(1)                                 // the request, in the air
        clock.advance(by: .milliseconds(15))
        await clock.waitForSleepers(1)                                 // the response, in the air
        XCTAssertFalse(done.value)
        clock.advance(by: .milliseconds(15))
        let value = try await read.value
        XCTAssertEqual(value, Array("hello".utf8))
        XCTAssertEqual(clock.now.offset, .milliseconds(30))
    }

    func testClosingFailsPendingWorkAndEndsBothSides() async throws {
        let p = try pair()
        _ = try await p.client.read(0x0C)
        p.client.close()
        let reason = await p.server.waitUntilClosed()
        XCTAssertEqual(reason, .remote)
        XCTAssertEqual(p.events.all.last, .closed(.remote))
        do {
            _ = try await p.client.read(0x0C)
            XCTFail("closed")
        } catch {
            XCTAssertEqual(error as? GATTClientError, .closed(.local))
        }
        var it = p.client.notifications.makeAsyncIterator()
        let end = await it.next()
        XCTAssertNil(end)
    }
}
