import Foundation
import XCTest
@testable import BLE
#if canImport(Glibc)
import Glibc
#endif

/// L2CAP basic framing, and GATT over real kernel sockets: socket pairs, Unix and TCP listeners,
/// and a Python phone in another process.
final class SocketBearerTests: XCTestCase {
    // MARK: L2CAP framing codec

    func testL2CAPBasicFrameCodec() throws {
        let frame = L2CAPBasicFrame(payload: hex("0A 03 00"))
        XCTAssertEqual(frame.encode(), hex("03 00 04 00 0A 03 00"))
        XCTAssertEqual(try L2CAPBasicFrame.decode(hex("03 00 04 00 0A 03 00")), frame)
        XCTAssertThrowsError(try L2CAPBasicFrame.decode(hex("03 00 04"))) { XCTAssertEqual($0 as? L2CAPFramingError, .truncated(have: 3, need: 4)) }
        XCTAssertThrowsError(try L2CAPBasicFrame.decode(hex("03 00 04 00 0A 03"))) { XCTAssertEqual($0 as? L2CAPFramingError, .truncated(have: 6, need: 7)) }
        XCTAssertThrowsError(try L2CAPBasicFrame.decode(hex("01 00 04 00 0A 03"))) { XCTAssertEqual($0 as? L2CAPFramingError, .trailingBytes(1)) }
        XCTAssertThrowsError(try L2CAPBasicFrame.decode(hex("FF FF 04 00"), maximumPayloadLength: 517)) {
            XCTAssertEqual($0 as? L2CAPFramingError, .payloadTooLong(length: 0xFFFF, maximum: 517))
        }
    }

    func testStreamDecoderReassemblesSplitFramesAndBoundsLengthEarly() throws {
        let bytes = L2CAPBasicFrame(payload: [1, 2, 3]).encode() + L2CAPBasicFrame(channelID: 5, payload: []).encode()
            + L2CAPBasicFrame(payload: Array(repeating: 9, count: 40)).encode()
        var d = L2CAPStreamDecoder(maximumPayloadLength: 517)
        var frames: [L2CAPBasicFrame] = []
        for b in bytes {                                      // one byte at a time, like a slow stream
            d.append([b])
            while let f = try d.nextFrame() { frames.append(f) }
        }
        XCTAssertEqual(frames.map(\.payload.count), [3, 0, 40])
        XCTAssertEqual(frames.map(\.channelID), [4, 5, 4])
        XCTAssertEqual(d.bufferedByteCount, 0)
        var bounded = L2CAPStreamDecoder(maximumPayloadLength: 23)
        bounded.append(hex("18 00 04"))
        XCTAssertNil(try bounded.nextFrame())
        bounded.append(hex("00"))                             // header complete: 24 > 23, refused before any payload
        XCTAssertThrowsError(try bounded.nextFrame()) { XCTAssertEqual($0 as? L2CAPFramingError, .payloadTooLong(length: 24, maximum: 23)) }
    }

    // MARK: GATT over socket pairs

    private func runGATT(over a: any ATTBearer, _ b: any ATTBearer) async throws {
        let db = try TestDatabase()
        let server = try GATTServer(database: db.database, bearer: a)
        let client = try GATTClient(bearer: b)
        let mtu = try await client.exchangeMTU()
        XCTAssertEqual(mtu, 517)
        let services = try await client.discoverAll()
        XCTAssertEqual(services.count, 4)
        let hello = try await client.read(0x1A)
        XCTAssertEqual(hello.count, 300)
        let presentation = (0..<512).map { UInt8(truncatingIfNeeded: $0 * 3) }
        try await client.write(0x1E, presentation)
        XCTAssertEqual(db.presentations.all, [presentation])
        try await client.subscribe(services[3].characteristics[2])
        XCTAssertTrue(try server.notify(valueHandle: 0x21, value: [7, 7]))
        var it = client.notifications.makeAsyncIterator()
        let n = await it.next()
        XCTAssertEqual(n?.value, [7, 7])
        client.close()
        let reason = await server.waitUntilClosed()
        XCTAssertEqual(reason, .remote)
    }

    func testGATTOverAStreamSocketPairWithL2CAPFrames() async throws {
        let (a, b) = try SocketBearer.makePair(framing: .l2capFramedStream)
        try await runGATT(over: a, b)
    }

    func testGATTOverASeqpacketPairWithBarePDUs() async throws {
        let (a, b) = try SocketBearer.makePair(framing: .seqpacket)
        try await runGATT(over: a, b)
    }

    /// The exact bytes on the wire: a raw socket end writes an L2CAP frame and reads the answer.
    func testStreamCarriesL2CAPBasicFramesOnTheWire() async throws {
        var fds: [Int32] = [-1, -1]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds), 0)
        let raw = fds[1]
        defer { close(raw) }
        let db = try TestDatabase()
        let server = try GATTServer(database: db.database, bearer: try SocketBearer(adopting: fds[0], framing: .l2capFramedStream))
        XCTAssertEqual(write(raw, hex("03 00 04 00 0A 03 00"), 7), 7)          // Read Request, handle 3
        XCTAssertEqual(readExactly(raw, 9), hex("05 00 04 00 0B 4B 57 2D 31"))  // Read Response "KW-1"
        // two frames in one write, the second split across writes
        let two = hex("05 00 04 00 0C 11 00 16 00") + hex("03 00 04")
        XCTAssertEqual(write(raw, two, two.count), two.count)
        XCTAssertEqual(write(raw, hex("00 0A 0C 00"), 4), 4)
        XCTAssertEqual(readExactly(raw, 4 + 23), hex("17 00 04 00 0D") + Array(22..<44))
        XCTAssertEqual(readExactly(raw, 4 + 6), hex("06 00 04 00 0B 68 65 6C 6C 6F"))
        server.close()
    }

    func testFramingViolationsCloseTheLinkWithAReason() async throws {
        for (bytes, expected) in [(hex("01 00 05 00 0A"), "CID 0x0005"), (hex("00 10 04 00"), "exceeds the maximum of 517"),
                                  (hex("00 00 04 00"), "empty ATT PDU")] {
            var fds: [Int32] = [-1, -1]
            XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds), 0)
            let server = try GATTServer(database: try TestDatabase().database,
                                        bearer: try SocketBearer(adopting: fds[0], framing: .l2capFramedStream))
            XCTAssertEqual(write(fds[1], bytes, bytes.count), bytes.count)
            let reason = await server.waitUntilClosed()
            guard case .failure(let why) = reason else { XCTFail("expected a failure, got \(reason)"); continue }
            XCTAssertTrue(why.contains(expected), "\(why)")
            close(fds[1])
        }
    }

    func testSeqpacketRefusesPacketsOverTheLinkMTU() async throws {
        var fds: [Int32] = [-1, -1]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue), 0, &fds), 0)
        defer { close(fds[1]) }
        let server = try GATTServer(database: try TestDatabase().database,
                                    bearer: try SocketBearer(adopting: fds[0], framing: .seqpacket, linkMTU: 23))
        let big = [UInt8](repeating: 0x52, count: 24)
        XCTAssertEqual(write(fds[1], big, big.count), big.count)
        let reason = await server.waitUntilClosed()
        XCTAssertEqual(reason, .failure("received a 24-byte packet; the link MTU is 23"))
    }

    // MARK: Listeners

    private func temporaryPath(_ name: String) -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("keyway-ble-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir.appendingPathComponent(name).path
    }

    func testUnixAndTCPListeners() async throws {
        for address in [LocalSocketAddress.unix(path: temporaryPath("lock.sock")), .tcpLoopback(port: 0)] {
            let listener = try SocketBearerListener(address: address)
            if case .tcpLoopback(let port) = listener.address { XCTAssertNotEqual(port, 0) }
            let clientBearer = try SocketBearer.connect(to: listener.address)
            var it = listener.connections.makeAsyncIterator()
            guard let accepted = try await it.next() else { return XCTFail("no connection accepted") }
            try await runGATT(over: accepted, clientBearer)
            listener.close()
            let end = try await it.next()
            XCTAssertNil(end)
            if case .unix(let path) = address { XCTAssertFalse(FileManager.default.fileExists(atPath: path)) }
        }
        XCTAssertThrowsError(try SocketBearerListener(address: .unix(path: String(repeating: "x", count: 200))))
    }

    // MARK: One event loop, a connection cap

    private func threadCount() -> Int {
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("Threads:") } ?? ""
        return Int(line.split(separator: "\t").last.map { $0.trimmingCharacters(in: .whitespaces) } ?? "") ?? -1
    }

    /// 500 live GATT links over socket pairs cost no thread each: all are served by the one epoll loop.
    func testManyLinksShareOneEventLoopThread() async throws {
        // 500 socket pairs are 1,000 descriptors: more than a default soft limit of 1,024 leaves free (the
        // make hil guest has it). Raise it, as `keyway serve` does for its phone sockets.
        var limit = rlimit()
        XCTAssertEqual(getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit), 0)
        if limit.rlim_cur < 4096 {
            limit.rlim_cur = min(4096, limit.rlim_max)
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        }
        let db = try TestDatabase()
        _ = try SocketBearer.makePair()               // the loop exists before the count is taken
        let before = threadCount()
        var links: [(GATTServer, GATTClient)] = []
        // Closed however the test ends: a failure half-way must not leave the rest of the suite without descriptors.
        defer { for (_, client) in links { client.close() } }
        for _ in 0..<500 {
            let (a, b) = try SocketBearer.makePair()
            links.append((try GATTServer(database: db.database, bearer: a), try GATTClient(bearer: b)))
        }
        for (_, client) in links.prefix(50) {
            let name = try await client.read(0x03)
            XCTAssertEqual(name, Array("KW-1".utf8))
        }
        let during = threadCount()
        XCTAssertGreaterThan(before, 0)
        XCTAssertLessThan(during - before, 16, "500 links must not start a thread each (\(before) → \(during) threads)")
        for (_, client) in links { client.close() }
        for (server, _) in links { _ = await server.waitUntilClosed() }
    }

    /// Past the cap a connection is accepted and closed at once (the peer reads end of file), counted
    /// and reported; closing an admitted one makes room again.
    func testConnectionCapRefusesPastTheLimitAndFreesOnClose() async throws {
        let (refusals, refusalsIn) = AsyncStream<SocketConnectionCap.Refusal>.makeStream()
        let (accepted, acceptedIn) = AsyncStream<SocketBearer>.makeStream()
        let cap = SocketConnectionCap(limit: 3) { refusalsIn.yield($0) }
        let path = temporaryPath("capped.sock")
        let listener = try SocketBearerListener(address: .unix(path: path), cap: cap) { acceptedIn.yield($0) }
        defer { listener.close() }
        var admitted: [SocketBearer] = []
        var acceptedIt = accepted.makeAsyncIterator()
        var refusedIt = refusals.makeAsyncIterator()
        var clients: [Int32] = []
        for i in 0..<5 {
            clients.append(try rawConnect(path))
            if i < 3 {
                let next = await acceptedIt.next()
                admitted.append(try XCTUnwrap(next))
            } else {
                let next = await refusedIt.next()
                let r = try XCTUnwrap(next)
                XCTAssertEqual(r.open, 3)
                XCTAssertEqual(r.limit, 3)
                XCTAssertEqual(r.refusedSinceFull, i - 2)
                XCTAssertEqual(r.address, .unix(path: path))
                XCTAssertEqual(readExactly(clients[i], 1), [], "a refused connection reads end of file")
            }
        }
        XCTAssertEqual(cap.open, 3)
        XCTAssertEqual(cap.refused, 2)
        // A link that closes frees its place: the next phone is admitted and served.
        try admitted[0].start { _ in }
        admitted[0].close()
        XCTAssertEqual(readExactly(clients[0], 1), [])
        clients.append(try rawConnect(path))
        let next = await acceptedIt.next()
        let fresh = try XCTUnwrap(next)
        let server = try GATTServer(database: try TestDatabase().database, bearer: fresh)
        XCTAssertEqual(write(clients[5], hex("03 00 04 00 0A 03 00"), 7), 7)
        XCTAssertEqual(readExactly(clients[5], 9), hex("05 00 04 00 0B 4B 57 2D 31"))
        XCTAssertEqual(cap.open, 3)
        XCTAssertEqual(cap.refused, 2)
        server.close()
        for b in admitted.dropFirst() { b.close() }
        for c in clients { close(c) }
    }

    private func rawConnect(_ path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var sa = sockaddr_un()
        sa.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &sa.sun_path) { raw in
            let b = Array(path.utf8)
            raw.copyBytes(from: b)
            raw[b.count] = 0
        }
        let r = withUnsafePointer(to: &sa) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard r == 0 else { close(fd); throw TestFailure() }
        return fd
    }

    // MARK: A phone in another process and language

    func testPythonPhoneTapsOverTheCrossProcessLink() async throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let python = root.appendingPathComponent(".venv/bin/python").path
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw XCTSkip("\(python) missing: run tools/setup")
        }
        let path = temporaryPath("phone.sock")
        let listener = try SocketBearerListener(address: .unix(path: path))
        defer { listener.close() }
        let presentations = Recorder<[UInt8]>()
        let hello = (0..<300).map { UInt8($0 % 251) }
        let database = try KeywayLockService.database(deviceName: "Keyway Lock", handlers: .init(
            readerHello: { _ in hello },
            presentation: { ctx, value in
                presentations.append(value)
                let result = try XCTUnwrap(KeywayLockService.Handles(in: ctx.server.database)).result
                // The result by notification: granted (0x01), open time 7 s, then the length seen.
                try ctx.server.notify(valueHandle: result, value: [0x01, 0x07, UInt8(value.count >> 8), UInt8(value.count & 0xFF)])
            },
            lockInfo: { _ in [] }))
        let serving = Task { () throws -> ATTBearerCloseReason in
            var it = listener.connections.makeAsyncIterator()
            guard let bearer = try await it.next() else { throw TestFailure() }
            let server = try GATTServer(database: database, bearer: bearer)
            return await server.waitUntilClosed()
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [root.appendingPathComponent("Tests/peers/ble_phone.py").path, "unix:\(path)", "400"]
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, String(decoding: stderr, as: UTF8.self))
        let report = try JSONSerialization.jsonObject(with: stdout) as? [String: Any] ?? [:]
        XCTAssertEqual(report["mtu"] as? Int, 517)
        XCTAssertEqual(report["services"] as? [String], ["0x1800", "0x1801", KeywayLockService.service.description])
        XCTAssertEqual(report["characteristics"] as? [String], [KeywayLockService.readerHello, KeywayLockService.presentation,
                                                                KeywayLockService.result, KeywayLockService.lockInfo].map(\.description))
        XCTAssertEqual(report["hello_length"] as? Int, 300)
        XCTAssertEqual(report["hello_ok"] as? Bool, true)
        XCTAssertEqual(report["result_matches"] as? Bool, true)
        XCTAssertEqual(report["result"] as? String, "01070190")
        XCTAssertEqual(report["malformed_answer"] as? String, "010a000004")
        XCTAssertEqual(presentations.all, [(0..<400).map { UInt8(truncatingIfNeeded: $0 * 7) }])
        let reason = try await serving.value
        XCTAssertEqual(reason, .remote)
    }
}

private func readExactly(_ fd: Int32, _ n: Int) -> [UInt8] {
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: n)
    while out.count < n {
        let r = read(fd, &buf, n - out.count)
        if r <= 0 { break }
        out.append(contentsOf: buf[0..<r])
    }
    return out
}
