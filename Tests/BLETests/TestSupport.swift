import Foundation
import XCTest
@testable import BLE

/// A simulated clock: time moves only when a test calls `advance(by:)`.
final class TestClock: Clock, @unchecked Sendable {
    struct Instant: InstantProtocol {
        var offset: Duration
        func advanced(by d: Duration) -> Instant { Instant(offset: offset + d) }
        func duration(to other: Instant) -> Duration { other.offset - offset }
        static func < (a: Instant, b: Instant) -> Bool { a.offset < b.offset }
    }

    private let lock = NSLock()
    private var current = Instant(offset: .zero)
    private var sleepers: [UInt64: (deadline: Instant, continuation: CheckedContinuation<Void, Error>)] = [:]
    private var nextID: UInt64 = 0

    var now: Instant { lock.withLock { current } }
    var minimumResolution: Duration { .nanoseconds(1) }

    var sleeperCount: Int { lock.withLock { sleepers.count } }

    func sleep(until deadline: Instant, tolerance: Duration?) async throws {
        let id: UInt64 = lock.withLock { nextID += 1; return nextID }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, Error>) in
                let resumeNow: Bool = lock.withLock {
                    if deadline <= current { return true }
                    sleepers[id] = (deadline, c)
                    return false
                }
                if resumeNow { c.resume() }
            }
        } onCancel: {
            let c = lock.withLock { sleepers.removeValue(forKey: id)?.continuation }
            c?.resume(throwing: CancellationError())
        }
    }

    /// Moves time forward and wakes every sleeper now due.
    func advance(by d: Duration) {
        let due: [CheckedContinuation<Void, Error>] = lock.withLock {
            current = current.advanced(by: d)
            let ready = sleepers.filter { $0.value.deadline <= current }
            for k in ready.keys { sleepers.removeValue(forKey: k) }
            return ready.values.sorted { $0.deadline < $1.deadline }.map(\.continuation)
        }
        for c in due { c.resume() }
    }

    /// Waits (in real time, briefly) until `n` tasks sleep on this clock.
    func waitForSleepers(_ n: Int, file: StaticString = #filePath, line: UInt = #line) async {
        for _ in 0..<2000 {
            if sleeperCount >= n { return }
            try? await Task.sleep(nanoseconds: 500_000)
        }
        XCTFail("expected \(n) sleepers on the test clock, have \(sleeperCount)", file: file, line: line)
    }
}

/// A test-side ATT peer that sends raw bytes and collects every PDU it receives — the way BlueZ's
/// unit/test-gatt.c drives a server with exact byte sequences.
final class RawPeer: @unchecked Sendable {
    let bearer: any ATTBearer
    private let lock = NSLock()
    private var received: [[UInt8]] = []
    private var waiter: CheckedContinuation<[UInt8]?, Never>?
    private(set) var closeReason: ATTBearerCloseReason?
    private var waitGeneration: UInt64 = 0

    init(_ bearer: any ATTBearer) throws {
        self.bearer = bearer
        try bearer.start { [weak self] event in self?.deliver(event) }
    }

    private func deliver(_ event: ATTBearerEvent) {
        var resume: (CheckedContinuation<[UInt8]?, Never>, [UInt8]?)?
        lock.withLock {
            switch event {
            case .pdu(let p):
                if let w = waiter { waiter = nil; resume = (w, p) } else { received.append(p) }
            case .closed(let r):
                closeReason = r
                if let w = waiter { waiter = nil; resume = (w, nil) }
            }
        }
        if let (w, v) = resume { w.resume(returning: v) }
    }

    func send(_ bytes: [UInt8]) throws { try bearer.send(bytes) }

    /// The next received PDU, or nil after `timeout` of real time (a safety net: a correct server
    /// answers at once) or when the link closed.
    func next(timeout: Duration = .seconds(3)) async -> [UInt8]? {
        let generation: UInt64 = lock.withLock { waitGeneration += 1; return waitGeneration }
        let timer = Task { [weak self] in
            guard (try? await Task.sleep(for: timeout)) != nil, let self else { return }  // cancelled: not ours to end
            let w: CheckedContinuation<[UInt8]?, Never>? = self.lock.withLock {
                guard self.waitGeneration == generation else { return nil }
                defer { self.waiter = nil }
                return self.waiter
            }
            w?.resume(returning: nil)
        }
        defer { timer.cancel() }
        return await withCheckedContinuation { (c: CheckedContinuation<[UInt8]?, Never>) in
            let ready: [UInt8]?? = lock.withLock {
                if !received.isEmpty { return .some(received.removeFirst()) }
                if closeReason != nil { return .some(nil) }
                waiter = c
                return nil
            }
            if let r = ready { c.resume(returning: r) }
        }
    }

    /// PDUs received and not yet consumed.
    var backlog: [[UInt8]] { lock.withLock { received } }
}

/// Hex helpers: tests read like the spec's byte tables.
func hex(_ s: String) -> [UInt8] {
    let digits = s.filter(\.isHexDigit)
    precondition(digits.count % 2 == 0, "odd hex string in a test")
    var out: [UInt8] = []
    var i = digits.startIndex
    while i < digits.endIndex {
        let j = digits.index(i, offsetBy: 2)
        out.append(UInt8(digits[i..<j], radix: 16)!)
        i = j
    }
    return out
}

func hexString(_ b: [UInt8]) -> String { b.map { String(format: "%02X", $0) }.joined(separator: " ") }

/// Records what value handlers saw.
final class Recorder<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [T] = []
    func append(_ t: T) { lock.withLock { items.append(t) } }
    var all: [T] { lock.withLock { items } }
}

/// A mutable value shared with handlers.
final class SharedValue<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var v: T
    init(_ v: T) { self.v = v }
    var value: T {
        get { lock.withLock { v } }
        set { lock.withLock { v = newValue } }
    }
}

struct TestFailure: Error {}

/// The database the byte-replay tests use. Handles (all fixed by the layout rules):
///   0x0001–0x0005 GAP: 0x0003 Device Name "KW-1", 0x0005 Appearance 0x0704
///   0x0006–0x0009 GATT: 0x0008 Service Changed (indicate), 0x0009 CCCD
///   0x000A–0x0017 Test service 0xFFF0:
///     0x000C A 0xFFF1 read "hello"
///     0x000E B 0xFFF2 read/write/notify (dynamic), 0x000F CCCD
///     0x0011 C 0xFFF3 read, 100 bytes 0x00…0x63
///     0x0013 D 0xFFF4 write/write-without-response (dynamic), no read
///     0x0015 E 0xFFF5 read/indicate "\u{1}", 0x0016 CCCD, 0x0017 user description "E"
///   0x0018–0x0026 Keyway lock service (128-bit): 0x001A Reader Hello, 0x001B CCCD,
///     0x001E Presentation, 0x0021 Result, 0x0022 CCCD, 0x0025 Lock Info
struct TestDatabase {
    let database: GATTDatabase
    let bValue: SharedValue<[UInt8]>
    let bWrites: Recorder<[UInt8]>
    let dWrites: Recorder<[UInt8]>
    let presentations: Recorder<[UInt8]>
    let longValue: [UInt8] = Array(0..<100)

    init() throws {
        let bValue = SharedValue<[UInt8]>([0xB0, 0xB1])
        let bWrites = Recorder<[UInt8]>()
        let dWrites = Recorder<[UInt8]>()
        let presentations = Recorder<[UInt8]>()
        let test = GATTService(uuid: BluetoothUUID(0xFFF0), characteristics: [
            GATTCharacteristic(uuid: BluetoothUUID(0xFFF1), properties: [.read], value: .constant(Array("hello".utf8))),
            GATTCharacteristic(uuid: BluetoothUUID(0xFFF2), properties: [.read, .write, .notify], value: .dynamic(
                read: { _ in bValue.value },
                write: { _, v in
                    if v == [0xEE] { throw ATTErrorCode.application(0x80) }
                    if v == [0xEF] { throw TestFailure() }
                    bWrites.append(v)
                    bValue.value = v
                })),
            GATTCharacteristic(uuid: BluetoothUUID(0xFFF3), properties: [.read], value: .constant(Array(0..<100))),
            GATTCharacteristic(uuid: BluetoothUUID(0xFFF4), properties: [.write, .writeWithoutResponse],
                               value: .dynamic(read: nil, write: { _, v in dWrites.append(v) })),
            GATTCharacteristic(uuid: BluetoothUUID(0xFFF5), properties: [.read, .indicate], value: .constant([0x01]),
                               descriptors: [.userDescription("E")]),
        ])
        let lock = KeywayLockService.make(.init(
            readerHello: { _ in Array(repeating: 0x48, count: 300) },
            presentation: { _, v in presentations.append(v) },
            lockInfo: { _ in [0x4C, 0x49] }))
        database = try GATTDatabase(services: [GAPService.make(deviceName: "KW-1"), GATTProfileService.make(), test, lock])
        self.bValue = bValue
        self.bWrites = bWrites
        self.dWrites = dWrites
        self.presentations = presentations
    }
}
