import BLE
import Foundation
import XCTest
@testable import Emulator
import Events
import Hardware
import KeywayCrypto
import MobileKey
#if canImport(Glibc)
import Glibc
#endif

/// The phone socket under a flood (issue 15 item 3): thousands of held connections and a storm of
/// phone hellos do not keep a genuine phone from its tap, and the connection cap refuses what is past it.
final class PhoneSocketFloodTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    var dir: URL!
    var sockets: String!
    var emu: Emulator!
    let log = LogLines()

    override func setUp() async throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("kw-ps-\(UUID().uuidString.prefix(8))")
        // Unix socket paths are short: the sockets get a directory of their own under /tmp.
        sockets = "/tmp/kw-fl-\(UUID().uuidString.prefix(8))"
        emu = try await Emulator.start(options())
    }

    private func options() -> EmulatorOptions {
        var o = EmulatorOptions(sitePath: Self.root.appendingPathComponent("Fixtures/sites/coworking.yaml").path)
        o.dataDir = dir.path
        o.clock = .simulated
        o.clockStart = Date(timeIntervalSince1970: 1_795_420_800) // 2026-11-23T08:00:00Z (Monday)
        return o
    }

    override func tearDown() async throws {
        await emu?.shutdown()
        try? FileManager.default.removeItem(at: dir)
        try? FileManager.default.removeItem(atPath: sockets)
    }

    private func startRadio(cap: Int) throws -> PhoneSocketRadio {
        var c = PhoneSocketRadio.Configuration(directory: sockets)
        c.maximumConnections = cap
        let log = self.log
        return try PhoneSocketRadio.start(emu, c, log: { log.append($0) })
    }

    /// A phone of its own, with a key the emulator certified for it.
    private func genuinePhone(_ user: String, _ lock: String) async throws -> TapPhone {
        let holder = try P256.PrivateKey()
        let key = try await emu.issueKey(json: ["user": user, "locks": [lock], "holder_public_key": holder.publicKey.pem])
        let credential = try XCTUnwrap(Data(base64Encoded: try XCTUnwrap(key["credential"] as? String)))
        return TapPhone(credential: Array(credential), holderKey: holder, siteID: emu.config.siteID, trustedIssuers: emu.keys.trustedIssuers)
    }

    private func tap(_ phone: TapPhone, at lock: String) async throws -> (PhoneTap.Outcome, GATTClient, Duration) {
        let started = ContinuousClock.now
        let client = try GATTClient(bearer: try SocketBearer.connect(to: .unix(path: "\(sockets!)/\(lock)")))
        let outcome = try await PhoneTap.run(client: client, phone: phone, action: .open, now: emu.clock.now())
        return (outcome, client, ContinuousClock.now - started)
    }

    /// 5,000 phones connect and hold their connections (each answered an Exchange MTU: served, not
    /// just queued). A genuine phone still taps and is granted; the cap (5,050) then refuses exactly
    /// what is past it, each refused phone reading end of file, and says so in the log.
    func testFiveThousandHeldConnectionsDoNotStopAGenuineTap() async throws {
        let held = 5_000, cap = 5_050
        try raiseDescriptorLimit(to: 2 * (cap + 100) + 512)
        let radio = try startRadio(cap: cap)
        defer { radio.close() }
        var fds: [Int32] = []
        defer { for fd in fds { close(fd) } }
        let path = "\(sockets!)/main-entrance"
        for _ in 0..<held {
            let fd = try rawConnect(path)
            fds.append(fd)
            XCTAssertEqual(exchangeMTU(fd), 517)
        }
        XCTAssertEqual(radio.openConnections, held)

        let phone = try await genuinePhone("u-ada", "main-entrance")
        let (outcome, client, took) = try await tap(phone, at: "main-entrance")
        defer { client.close() }
        XCTAssertEqual(outcome.result.granted, true, "\(outcome.result)")
        XCTAssertEqual(radio.openConnections, held + 1)
        print("PhoneSocketFloodTests: genuine tap with \(held) connections held: \(took)")
        await emu.bridge.flush()
        var q = EventQuery()
        q.lock = "main-entrance"
        let granted = try await emu.journal.events(q).filter { $0.type == .accessGranted }
        XCTAssertEqual(granted.count, 1)

        // 100 more: 49 fit under the cap (with the genuine phone still connected), 51 are refused.
        var admitted = 0, refused = 0
        for _ in 0..<100 {
            let fd = try rawConnect(path)
            fds.append(fd)
            if exchangeMTU(fd) == 517 { admitted += 1 } else { refused += 1 }
        }
        XCTAssertEqual(admitted, cap - held - 1)
        XCTAssertEqual(refused, 51)
        XCTAssertEqual(radio.refusedConnections, 51)
        XCTAssertEqual(radio.openConnections, cap)
        let lines = log.all.filter { $0.contains("refused a connection") }
        XCTAssertEqual(lines.count, 2, "first refusal and the 10th: \(lines)")   // 1st, 10th (100th not reached)
        XCTAssertTrue(lines.first?.contains("\(cap) of \(cap) phone connections open") ?? false, "\(lines)")
    }

    /// 64 connections each write phone hellos and read the lock's signed answers as fast as they can
    /// (1,280 hellos: every one answered with a reader hello of this lock), then a genuine phone taps
    /// and is granted.
    func testAFloodOfHelloReadsDoesNotStopAGenuineTap() async throws {
        let radio = try startRadio(cap: 128)
        defer { radio.close() }
        let path = "\(sockets!)/main-entrance"
        let answered = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<64 {
                group.addTask {
                    let client = try GATTClient(bearer: try SocketBearer.connect(to: .unix(path: path)))
                    defer { client.close() }
                    _ = try await client.exchangeMTU()
                    var n = 0
                    for _ in 0..<20 {
                        let ephemeral = try P256.PrivateKey()
                        let hello = CBOR.map([1: .unsigned(2), 2: .bytes(ephemeral.publicKey.uncompressed),
                                              3: .bytes((0..<16).map { _ in UInt8.random(in: 0...255) })]).encoded()
                        try await client.write(0x000C, hello)           // Reader Hello value (the standard database)
                        let reader = try await client.read(0x000C)      // long read
                        let decoded = try CBORDecoder().decode(reader)
                        if decoded[2]?.textValue == "main-entrance" { n += 1 }
                    }
                    return n
                }
            }
            return try await group.reduce(0, +)
        }
        XCTAssertEqual(answered, 64 * 20)
        XCTAssertEqual(radio.refusedConnections, 0)
        let phone = try await genuinePhone("u-ada", "main-entrance")
        let (outcome, client, took) = try await tap(phone, at: "main-entrance")
        client.close()
        XCTAssertEqual(outcome.result.granted, true, "\(outcome.result)")
        print("PhoneSocketFloodTests: genuine tap after 1,280 flooding hellos: \(took)")
    }

    /// A connection on which the phone says nothing for the idle timeout (30 s) of the emulator's
    /// clock is closed; any PDU restarts its time. A held simulated clock never times anyone out.
    func testIdleConnectionsAreClosedOnTheEmulatorClock() async throws {
        let radio = try startRadio(cap: 8)
        defer { radio.close() }
        let quiet = try rawConnect("\(sockets!)/main-entrance")
        let chatty = try rawConnect("\(sockets!)/back-door")
        defer { close(quiet); close(chatty) }
        XCTAssertEqual(exchangeMTU(quiet), 517)
        XCTAssertEqual(exchangeMTU(chatty), 517)
        _ = try await emu.advanceClock(.init(seconds: 20))
        XCTAssertEqual(exchangeMTU(chatty), 517)              // chatty's idle time starts again here
        _ = try await emu.advanceClock(.init(seconds: 10))    // quiet: 30 s silent
        XCTAssertNil(exchangeMTU(quiet), "closed after 30 s of silence")
        XCTAssertEqual(exchangeMTU(chatty), 517, "20 s after its last PDU it is still served")
        XCTAssertEqual(radio.timedOutConnections, 1)
        XCTAssertEqual(radio.openConnections, 1)
        XCTAssertTrue(log.all.contains("phone-socket: closed 1 connection idle for 30 s (--phone-idle-timeout)"), "\(log.all)")
        _ = try await emu.advanceClock(.init(seconds: 30))
        XCTAssertNil(exchangeMTU(chatty))
        XCTAssertEqual(radio.timedOutConnections, 2)
    }

    /// With `--capture`, a socket phone's link is in the btsnoop file like the loopback's: its phone
    /// hello write and the lock's result notification, framed as ACL data on one connection.
    func testSocketLinksLandInTheCapture() async throws {
        await emu.shutdown()
        var o = options()
        let capture = dir.appendingPathComponent("socket.btsnoop").path
        o.capturePath = capture
        emu = try await Emulator.start(o)
        let radio = try startRadio(cap: 8)
        defer { radio.close() }
        let phone = try await genuinePhone("u-ada", "main-entrance")
        let (outcome, client, _) = try await tap(phone, at: "main-entrance")
        client.close()
        XCTAssertEqual(outcome.result.granted, true)
        let pdus = try BTSnoopReader(path: capture).attPDUs()
        let helloWrite = pdus.first { $0.pdu.first == 0x12 && Array($0.pdu[1...2]) == [0x0C, 0x00] }
        XCTAssertEqual(helloWrite?.direction, .received, "the phone hello, as the lock received it")
        XCTAssertEqual(helloWrite?.pdu.count, 3 + 89)
        XCTAssertTrue(pdus.contains { $0.pdu.first == 0x1B && $0.direction == .sent }, "the result notification")
        XCTAssertEqual(Set(pdus.map(\.connectionHandle)).count, 1)
    }

    // MARK: Helpers

    private func raiseDescriptorLimit(to needed: Int) throws {
        var l = rlimit()
        XCTAssertEqual(getrlimit(Int32(RLIMIT_NOFILE.rawValue), &l), 0)
        guard l.rlim_cur < rlim_t(needed) else { return }
        let hard = l.rlim_max
        l.rlim_cur = rlim_t(needed)
        l.rlim_max = max(hard, rlim_t(needed))        // only root may raise the hard limit (the make hil guest)
        guard setrlimit(Int32(RLIMIT_NOFILE.rawValue), &l) == 0 else {
            throw XCTSkip("needs \(needed) file descriptors; the hard limit is \(hard) (ulimit -Hn) and cannot be raised here")
        }
    }

    private func rawConnect(_ path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EMFILE) }
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
        guard r == 0 else { close(fd); throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        return fd
    }

    /// Exchange MTU (517) in an L2CAP frame; the server's Rx MTU, or nil when the lock closed the link.
    private func exchangeMTU(_ fd: Int32) -> Int? {
        let request: [UInt8] = [0x03, 0x00, 0x04, 0x00, 0x02, 0x05, 0x02]
        guard send(fd, request, request.count, Int32(MSG_NOSIGNAL)) == request.count else { return nil }   // a refused link: EPIPE, not SIGPIPE
        var answer = [UInt8](repeating: 0, count: 7), got = 0
        while got < 7 {
            let n = answer.withUnsafeMutableBytes { read(fd, $0.baseAddress! + got, 7 - got) }
            if n <= 0 { return nil }
            got += n
        }
        guard answer[4] == 0x03 else { return nil }
        return Int(answer[5]) | Int(answer[6]) << 8
    }
}

final class LogLines: Sendable {
    private let lines = PthreadLocked<[String]>([])
    func append(_ s: String) { lines.withLock { $0.append(s) } }
    var all: [String] { lines.withLock { $0 } }
}
