@testable import Events
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

enum TestPaths {
    /// Repository root, from this file's location (Tests/EventsTests/TestSupport.swift).
    static let repoRoot: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static var python: String { repoRoot.appendingPathComponent(".venv/bin/python").path }
    static func peer(_ name: String) -> String { repoRoot.appendingPathComponent("Tests/peers/\(name)").path }
}

/// A fresh directory per test, removed afterwards.
final class TempDir {
    let url: URL
    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("keyway-events-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    func path(_ name: String) -> String { url.appendingPathComponent(name).path }
    deinit { try? FileManager.default.removeItem(at: url) }
}

/// A clock whose `sleep` returns at once after moving time to the end of the requested wait. Waits that
/// overlap never move time past the latest deadline asked for, so backoff schedules read exactly.
final class VirtualClock: EventClock, @unchecked Sendable {
    private let lock = NSLock()
    private var current: Date
    init(start: Date = Date(timeIntervalSince1970: 1_700_000_000)) { current = start }
    func now() -> Date { lock.withLock { current } }
    func sleep(for duration: Duration) async throws {
        try Task.checkCancellation()
        let target = now().addingTimeInterval(duration.seconds)
        await Task.yield()
        try Task.checkCancellation()
        lock.withLock { if target > current { current = target } }
    }
    func advance(_ seconds: Double) { lock.withLock { current = current.addingTimeInterval(seconds) } }
}

/// An in-process sink for worker tests (the HTTP path is tested against the Python receiver).
final class RecordingSink: EventSink, @unchecked Sendable {
    struct Attempt: Equatable { let id: String; let source: String; let sequence: Int64; let at: Date; let accepted: Bool; let body: [UInt8] }
    let name: String
    let clock: any EventClock
    private let lock = NSLock()
    private var failuresLeft: Int
    private var failEvery: Int?
    private var rejectUsers: Set<String>
    private var count = 0
    private(set) var attempts: [Attempt] = []

    init(name: String = "memory", clock: any EventClock = SystemEventClock(), failFirst: Int = 0, failEvery: Int? = nil, rejectUsers: Set<String> = []) {
        self.name = name
        self.clock = clock
        self.failuresLeft = failFirst
        self.failEvery = failEvery
        self.rejectUsers = rejectUsers
    }

    var targetDescription: String { "memory:\(name)" }

    func setRejectUsers(_ users: Set<String>) { lock.withLock { rejectUsers = users } }
    var allAttempts: [Attempt] { lock.withLock { attempts } }
    var accepted: [Attempt] { allAttempts.filter(\.accepted) }

    func deliver(_ event: RecordedEvent, body: [UInt8]) async -> DeliveryOutcome {
        let now = clock.now()
        return lock.withLock {
            count += 1
            var outcome: DeliveryOutcome = .delivered(status: 200)
            if failuresLeft > 0 {
                failuresLeft -= 1
                outcome = .retry(status: 503, error: "HTTP 503", retryAfter: nil)
            } else if let every = failEvery, count % every == 0 {
                outcome = .retry(status: nil, error: "connection reset", retryAfter: nil)
            } else if let u = event.event.user, rejectUsers.contains(u) {
                outcome = .rejected(status: 422, body: "{\"error\":\"no \(u)\"}", truncated: false)
            }
            let ok: Bool
            if case .delivered = outcome { ok = true } else { ok = false }
            attempts.append(Attempt(id: event.id, source: event.source.path, sequence: event.sequence, at: now, accepted: ok, body: body))
            return outcome
        }
    }
}

func lockEvent(_ site: String = "hq", _ lock: String, _ n: Int = 0, type: EventType = .accessGranted, user: String? = nil,
               stage: InitialStage? = nil, time: Date? = nil) throws -> KeywayEvent {
    KeywayEvent(type: type, source: try .lock(site: site, id: lock),
                time: time ?? Date(timeIntervalSince1970: 1_740_000_000 + Double(n)),
                user: user ?? "user-\(n)", method: .mobile, action: .open, stage: stage)
}

/// Polls `condition` until true or `timeout` seconds pass. The timeout only bounds a failure (a loaded CI
/// machine can be slow), so it is generous; a passing test never waits for it.
func eventually(timeout: Double = 30, _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(5))
    }
    return try await condition()
}

/// The Python webhook receiver (Tests/peers/webhook_receiver.py), as a child process.
final class WebhookReceiver {
    let process = Process()
    let port: Int
    let outPath: String
    var url: String { "http://127.0.0.1:\(port)/hooks/keyway" }

    /// Starts the receiver and waits until it listens. `port` 0 picks a free one.
    init(dir: TempDir, secret: String, rawSecret: Bool = false, port: Int = 0, failFirst: Int = 0, failStatus: Int = 500,
         retryAfter: Int? = nil, rejectUsers: [String] = [], tag: String = "r") throws {
        let python = TestPaths.python
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw XCTSkip("no \(python): run tools/setup to create the Python test peers")
        }
        let portFile = dir.path("\(tag).port")
        outPath = dir.path("\(tag).jsonl")
        var args = [TestPaths.peer("webhook_receiver.py"), "--port", String(port), "--port-file", portFile, "--out", outPath,
                    "--secret", secret, "--fail-first", String(failFirst), "--fail-status", String(failStatus)]
        if rawSecret { args.append("--raw-secret") }
        if let retryAfter { args += ["--retry-after", String(retryAfter)] }
        for u in rejectUsers { args += ["--reject-user", u] }
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = args
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle(forWritingAtPath: "/dev/stderr")
        try process.run()
        let deadline = Date().addingTimeInterval(15)
        var found: Int?
        while Date() < deadline {
            if let text = try? String(contentsOfFile: portFile, encoding: .utf8), let p = Int(text) { found = p; break }
            guard process.isRunning else { break }
            usleep(10_000)
        }
        guard let found else {
            if process.isRunning { process.terminate() }
            throw NSError(domain: "WebhookReceiver", code: 1, userInfo: [NSLocalizedDescriptionKey: "receiver did not start"])
        }
        self.port = found
    }

    struct Record: Decodable {
        let n: Int
        let status: Int
        let verified: Bool
        let parsed: Bool
        let id: String?
        let webhook_id: String?
        let source: String?
        let type: String?
        let sequence: Int64?
        let user: String?
        let body_sha256: String
        let content_type: String?
        let verify_error: String?
        let parse_error: String?
    }

    func records() throws -> [Record] {
        guard let text = try? String(contentsOfFile: outPath, encoding: .utf8) else { return [] }
        let decoder = JSONDecoder()
        return try text.split(separator: "\n").map { try decoder.decode(Record.self, from: Data($0.utf8)) }
    }

    func stop() {
        guard process.isRunning else { return }
        process.terminate()
        let deadline = Date().addingTimeInterval(3)
        while process.isRunning && Date() < deadline { usleep(5_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    deinit { stop() }

    /// A TCP port nobody listens on right now (bound then released), for "receiver starts later" tests.
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw NSError(domain: "socket", code: Int(errno)) }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { throw NSError(domain: "bind", code: Int(errno)) }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        guard named == 0 else { throw NSError(domain: "getsockname", code: Int(errno)) }
        return Int(UInt16(bigEndian: addr.sin_port))
    }
}

import Logging

/// Delivery with logging kept out of the test output (retries are logged at notice level).
func makeDelivery(journal: EventJournal, targets: [DeliveryTarget], configuration: DeliveryConfiguration = DeliveryConfiguration(),
                  clock: any EventClock = SystemEventClock(),
                  random: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) }) throws -> WebhookDelivery {
    var logger = Logger(label: "keyway.events.test")
    logger.logLevel = .critical
    return try WebhookDelivery(journal: journal, targets: targets, configuration: configuration, clock: clock, random: random, logger: logger)
}
