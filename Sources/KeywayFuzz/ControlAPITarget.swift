import Dispatch
import Emulator
import Foundation
import Hardware

/// The control API's JSON bodies, fed to the same operations the router calls (one table:
/// `ControlAPI.bodyOperations`) on a running emulator of the bundled coworking site with simulated
/// time. Input: [operation, id] ‖ JSON body. Every answer must be a JSON object or an `APIError` with
/// a 4xx status — a 5xx, or an error of any other type, is a bug the client would see as a 500.
enum ControlAPIFuzz {
    static let jsonBodies = FuzzTarget("api-json", maxLength: 2048,
        "ControlAPI.bodyOperations with hostile JSON bodies on a live emulator; JSON object or a 4xx APIError, never a 500") { input, check in
        guard input.count >= 2 else { return }
        let harness = APIHarness.shared
        let operation = ControlAPI.bodyOperations[Int(input[0]) % ControlAPI.bodyOperations.count]
        let ids = harness.ids
        let id = ids[Int(input[1]) % ids.count]
        let data = Data(input[2...])
        let started = ContinuousClock.now
        let outcome: Result<[String: Any], Error> = harness.blocking {
            let body = try JSONBody(data, allowed: operation.allowed)
            return try await operation.run(harness.emulator, id, body)
        }
        if harness.verbose { print("\(operation.path) \(id ?? "-") [\(ContinuousClock.now - started)]: \(outcome)") }
        switch outcome {
        case .success(let object):
            guard JSONSerialization.isValidJSONObject(object) else {
                throw check.fail("\(operation.path) answered with something JSONSerialization cannot write")
            }
        case .failure(let error as APIError):
            guard (400..<500).contains(error.status) else {
                throw check.fail("\(operation.path) failed with \(error.status) \(error.code): \(error.message)")
            }
        case .failure(let error):
            throw check.fail("\(operation.path) failed with \(type(of: error)) (the API would answer 500): \(error)")
        }
        harness.count += 1
        if harness.count % 2000 == 0 { _ = harness.blocking { try await harness.emulator.reset() } }
    }
}

/// A running emulator for the API target: the bundled site, simulated clock, data on tmpfs when
/// there is one (the journal fsyncs every commit).
final class APIHarness: @unchecked Sendable {
    static let shared: APIHarness = {
        do { return try APIHarness() } catch { fatalError("fuzz fixture: emulator did not start: \(error)") }
    }()
    let emulator: Emulator
    let ids: [String?]
    let dataDir: String
    /// KEYWAY_FUZZ_VERBOSE=1 prints each operation's outcome (to see where seeds go).
    let verbose = ProcessInfo.processInfo.environment["KEYWAY_FUZZ_VERBOSE"] != nil
    /// Executions since start (the target resets the emulator now and then so state stays bounded).
    var count = 0

    init() throws {
        let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
        dataDir = "\(base)/keyway-fuzz-api-\(getpid())"
        try? FileManager.default.removeItem(atPath: dataDir)
        var options = EmulatorOptions(sitePath: FuzzPaths.repositoryRoot.appendingPathComponent("Fixtures/sites/coworking.yaml").path)
        options.dataDir = dataDir
        options.clock = .simulated
        options.clockStart = Date(timeIntervalSince1970: 1_795_420_800)
        let box = ResultBox<Emulator>()
        let done = DispatchSemaphore(value: 0)
        Task { [options] in
            do { box.result = .success(try await Emulator.start(options)) } catch { box.result = .failure(error) }
            done.signal()
        }
        done.wait()
        emulator = try box.result!.get()
        APIHarness.cleanupPath = dataDir
        atexit { if let p = APIHarness.cleanupPath { try? FileManager.default.removeItem(atPath: p) } }
        ids = Self.deviceIDs(emulator.config)
    }

    /// The ids the second input byte picks from: real ids of every kind, ones that exist nowhere, one
    /// that is not a valid id at all, and none.
    static func deviceIDs(_ config: SiteConfig) -> [String?] {
        config.locks.prefix(6).map(\.id) + config.iqs.prefix(3).map(\.id) + config.doorControllers.prefix(3).map(\.id)
            + ["back-door", "no-such-device", "../../etc/passwd", nil]
    }

    nonisolated(unsafe) static var cleanupPath: String?

    /// Runs async work to completion from libFuzzer's synchronous callback (its thread is not one of
    /// the concurrency pool's, so blocking it cannot starve the work).
    func blocking<T>(_ work: @escaping @Sendable () async throws -> T) -> Result<T, Error> {
        let box = ResultBox<T>()
        let done = DispatchSemaphore(value: 0)
        Task {
            do { box.result = .success(try await work()) } catch { box.result = .failure(error) }
            done.signal()
        }
        done.wait()
        return box.result!
    }
}

final class ResultBox<T>: @unchecked Sendable {
    var result: Result<T, Error>?
}
