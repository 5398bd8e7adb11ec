import BLE
import Dispatch
import Emulator
import Foundation
import HTTPTypes
import Hardware
import Hummingbird
import Logging
import NIOCore
import NIOEmbedded

/// The control API's JSON bodies, sent through the whole HTTP edge in process — the guards, the
/// generated decoders of the OpenAPI document's types, the operations, the error mapping — on a
/// running emulator of the bundled coworking site with simulated time. Input: [route, id] ‖ JSON body.
/// Every answer must be JSON with a status below 500: a 5xx is a bug a client would see.
enum ControlAPIFuzz {
    /// The routes that take a JSON body (method POST), `{id}` filled from the harness's ids.
    static let routes = ["/v1/locks/{id}/open", "/v1/locks/{id}/certificate", "/v1/iqs/{id}/online", "/v1/iqs/{id}/position",
                         "/v1/controllers/{id}/power", "/v1/doors/{id}/sensor", "/v1/keys", "/v1/taps", "/v1/clock/advance",
                         "/v1/clock/set", "/v1/login", "/v1/reset"]

    static let jsonBodies = FuzzTarget("api-json", maxLength: 2048,
        "the control API's routes with hostile JSON bodies, in process on a live emulator; JSON and a status below 500") { input, check in
        guard input.count >= 2 else { return }
        let harness = APIHarness.shared
        let route = routes[Int(input[0]) % routes.count]
        let ids = harness.ids
        let id = ids[Int(input[1]) % ids.count]
        let path = route.replacingOccurrences(of: "{id}", with: (id ?? "").addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")
        let data = Array(input[2...])
        let started = ContinuousClock.now
        let outcome = harness.blocking { try await harness.client.post(path, body: data) }
        if harness.verbose { print("\(path) [\(ContinuousClock.now - started)]: \(outcome)") }
        switch outcome {
        case .success(let (status, body)):
            guard status < 500 else {
                throw check.fail("POST \(path) answered \(status): \(String(decoding: body, as: UTF8.self))")
            }
            guard (try? JSONSerialization.jsonObject(with: Data(body), options: [.fragmentsAllowed])) != nil else {
                throw check.fail("POST \(path) answered \(status) with a body that is not JSON")
            }
        case .failure(let error):
            throw check.fail("POST \(path) threw \(type(of: error)) out of the router: \(error)")
        }
        if harness.countExecution() % 2000 == 0 { _ = harness.blocking { try await harness.emulator.reset() } }
    }
}

/// The control API's router answering requests in process (no socket), as Hummingbird's own router
/// test framework does: a testing channel stands in for the connection.
struct InProcessAPI: Sendable {
    let responder: RouterResponder<BasicRequestContext>
    let authority: String

    init(_ emulator: Emulator) throws {
        responder = try ControlAPI.router(emulator).buildResponder()
        authority = "\(emulator.options.listenHost):\(emulator.options.listenPort)"
    }

    func post(_ path: String, body: [UInt8]) async throws -> (Int, [UInt8]) {
        let head = HTTPRequest(method: .post, scheme: "http", authority: authority, path: path,
                               headerFields: [.contentType: "application/json", .contentLength: String(body.count)])
        let request = Request(head: head, body: .init(buffer: ByteBuffer(bytes: body)))
        let context = BasicRequestContext(source: .init(channel: NIOAsyncTestingChannel(), logger: Logger(label: "keyway.fuzz")))
        let response = try await responder.respond(to: request, context: context)
        let collector = BodyCollector()
        try await response.body.write(collector)
        return (response.status.code, await collector.bytes)
    }
}

/// Gathers a response body written through Hummingbird's ResponseBodyWriter.
struct BodyCollector: ResponseBodyWriter {
    let box = Locked<[UInt8]>([])
    var bytes: [UInt8] { get async { box.withLock { $0 } } }
    mutating func write(_ buffer: ByteBuffer) async throws { box.withLock { $0 += buffer.readableBytesView } }
    consuming func finish(_ trailingHeaders: HTTPFields?) async throws {}
}

/// A running emulator for the API target: the bundled site, simulated clock, data on tmpfs when
/// there is one (the journal fsyncs every commit).
final class APIHarness: Sendable {
    static let shared: APIHarness = {
        do { return try APIHarness() } catch { fatalError("fuzz fixture: emulator did not start: \(error)") }
    }()
    let emulator: Emulator
    let ids: [String?]
    let client: InProcessAPI
    let dataDir: String
    /// KEYWAY_FUZZ_VERBOSE=1 prints each operation's outcome (to see where seeds go).
    let verbose = ProcessInfo.processInfo.environment["KEYWAY_FUZZ_VERBOSE"] != nil
    /// Executions since start (the target resets the emulator now and then so state stays bounded).
    private let executions = Locked(0)

    /// Counts one execution; returns the count including it.
    func countExecution() -> Int { executions.withLock { $0 += 1; return $0 } }

    init() throws {
        let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
        dataDir = "\(base)/keyway-fuzz-api-\(getpid())"
        try? FileManager.default.removeItem(atPath: dataDir)
        var options = EmulatorOptions(sitePath: FuzzPaths.repositoryRoot.appendingPathComponent("Fixtures/sites/coworking.yaml").path)
        options.dataDir = dataDir
        options.clock = .simulated
        options.clockStart = Date(timeIntervalSince1970: 1_795_420_800)
        let box = Locked<Result<Emulator, Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        Task { [options] in
            let result: Result<Emulator, Error>
            do { result = .success(try await Emulator.start(options)) } catch { result = .failure(error) }
            box.withLock { $0 = result }
            done.signal()
        }
        done.wait()
        emulator = try box.withLock { $0 }!.get()
        let directory = dataDir
        APIHarness.cleanupPath.withLock { $0 = directory }
        atexit { if let p = APIHarness.cleanupPath.withLock({ $0 }) { try? FileManager.default.removeItem(atPath: p) } }
        ids = Self.deviceIDs(emulator.config)
        client = try InProcessAPI(emulator)
    }

    /// The ids the second input byte picks from: real ids of every kind, ones that exist nowhere, one
    /// that is not a valid id at all, and none.
    static func deviceIDs(_ config: SiteConfig) -> [String?] {
        config.locks.prefix(6).map(\.id) + config.iqs.prefix(3).map(\.id) + config.doorControllers.prefix(3).map(\.id)
            + ["back-door", "no-such-device", "../../etc/passwd", nil]
    }

    /// The data directory atexit removes (a C callback captures nothing, so it reads this).
    static let cleanupPath = Locked<String?>(nil)

    /// Runs async work to completion from libFuzzer's synchronous callback (its thread is not one of
    /// the concurrency pool's, so blocking it cannot starve the work).
    func blocking<T>(_ work: @escaping @Sendable () async throws -> T) -> Result<T, Error> {
        let box = Locked<Result<T, Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        Task {
            let result: Result<T, Error>
            do { result = .success(try await work()) } catch { result = .failure(error) }
            box.withLock { $0 = result }
            done.signal()
        }
        done.wait()
        return box.withLock { $0 }!
    }
}
