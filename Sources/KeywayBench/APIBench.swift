import AsyncHTTPClient
import Foundation
import NIOCore

/// serve_ready_ms: `keyway serve` on the bundled site until /v1/health answers (baseline: the same
/// binary printing --help). api_taps_per_s: concurrent POST /v1/taps (baseline: GET /v1/health at the
/// same concurrency, the HTTP floor).
func benchAPI(_ report: BenchReport) async throws {
    let exe = ProcessInfo.processInfo.environment["KEYWAY_BIN"]
        ?? (FileManager.default.fileExists(atPath: ".build/release/keyway") ? ".build/release/keyway" : ".build/debug/keyway")
    print("  (serving with \(exe))")
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kw-bench-api-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: dir) }
    // Site keys are generated on first start; measure a second start, as a user's restart.
    let port = 18_000 + Int.random(in: 0..<2000)
    // The process-wide client: nothing to shut down (each request sets its own timeout).
    let client = HTTPClient.shared

    func startServe() throws -> (Process, Double) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = ["serve", "--data", dir.path, "--listen", "127.0.0.1:\(port)", "--clock", "simulated"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        let t0 = now()
        try p.run()
        return (p, t0)
    }
    func waitReady(_ t0: Double) async throws -> Double {
        while now() - t0 < 20 {
            if let r = try? await client.execute(HTTPClientRequest(url: "http://127.0.0.1:\(port)/v1/health"), timeout: .seconds(1)), r.status == .ok {
                return (now() - t0) * 1000
            }
            try await Task.sleep(for: .milliseconds(2))
        }
        throw BenchError("serve did not become ready")
    }
    var (p, t0) = try startServe()
    _ = try await waitReady(t0)
    p.terminate(); p.waitUntilExit()
    (p, t0) = try startServe()
    let readyMs = try await waitReady(t0)
    defer { p.terminate(); p.waitUntilExit() }

    let h0 = now()
    _ = try run(exe, ["--help"])
    let helpMs = (now() - h0) * 1000
    report.add("serve_ready_ms", readyMs, unit: "ms", target: "<= 500", baseline: helpMs, baselineWhat: "keyway --help process run, ms")

    @Sendable func post(_ path: String, _ json: String) async throws -> (Int, String) {
        var req = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
        req.method = .POST
        req.headers.add(name: "content-type", value: "application/json")
        req.body = .bytes(ByteBuffer(string: json))
        let r = try await client.execute(req, timeout: .seconds(10))
        let body = try await r.body.collect(upTo: 1 << 20)
        return (Int(r.status.code), String(buffer: body))
    }
    let total = 2000, concurrency = 16
    // One phone per worker (16 people tapping; one phone makes one tap at a time).
    var keyIDs: [String] = []
    for _ in 0..<concurrency {
        let (code, text) = try await post("/v1/keys", #"{"user":"u-ada","locks":["main-entrance"]}"#)
        guard code == 201, let id = text.split(separator: "\"").drop(while: { $0 != "key_id" }).dropFirst(2).first else {
            throw BenchError("issue key: \(code) \(text)")
        }
        keyIDs.append(String(id))
    }
    let phones = keyIDs
    func load(_ body: @escaping @Sendable (Int) async throws -> Bool) async throws -> Double {
        let start = now()
        let ok = try await withThrowingTaskGroup(of: Int.self) { g in
            for w in 0..<concurrency {
                g.addTask {
                    var n = 0
                    for _ in stride(from: w, to: total, by: concurrency) where try await body(w) { n += 1 }
                    return n
                }
            }
            return try await g.reduce(0, +)
        }
        guard ok == total else { throw BenchError("\(total - ok) requests failed") }
        return Double(total) / (now() - start)
    }
    let health = try await load { _ in
        (try? await client.execute(HTTPClientRequest(url: "http://127.0.0.1:\(port)/v1/health"), timeout: .seconds(10)))?.status == .ok
    }
    // Full taps: "fast": false (FAST repeat taps would otherwise follow the first of each phone).
    let taps = try await load { w in
        let (c, t) = try await post("/v1/taps", #"{"lock":"main-entrance","key_id":"\#(phones[w])","fast":false}"#)
        return c == 200 && t.contains("\"granted\"")
    }
    report.add("api_taps_per_s", taps, unit: "taps/s", target: ">= 2000", baseline: health, baselineWhat: "GET /v1/health at the same concurrency, req/s")
}
