import BLE
import Foundation

struct Metric: Sendable {
    var name: String
    var value: Double
    var unit: String
    var target: String
    var baseline: Double?
    var baselineWhat: String
}

final class BenchReport: Sendable {
    private let measured = Locked<[Metric]>([])
    var metrics: [Metric] { measured.withLock { $0 } }

    func add(_ name: String, _ value: Double, unit: String, target: String = "—", baseline: Double? = nil, baselineWhat: String = "") {
        measured.withLock { $0.append(Metric(name: name, value: value, unit: unit, target: target, baseline: baseline, baselineWhat: baselineWhat)) }
        let b = baseline.map { "  (baseline " + String(format: "%.3f", $0) + ": \(baselineWhat))" } ?? ""
        print(pad(name, 28) + pad(String(format: "%.3f", value), 14, left: true) + " " + pad(unit, 12) + " target " + target + b)
        fflush(nil)  // each metric shows as it is measured, even into a pipe
    }

    func printTable() {
        print("\n" + pad("metric", 28) + pad("value", 14, left: true) + " " + pad("unit", 12) + " " + pad("target", 10) + " baseline (same run)")
        for m in metrics {
            let base = m.baseline.map { String(format: "%.3f", $0) + " (\(m.baselineWhat))" } ?? "—"
            print(pad(m.name, 28) + pad(String(format: "%.3f", m.value), 14, left: true) + " " + pad(m.unit, 12) + " " + pad(m.target, 10) + " " + base)
        }
    }

    func write(to url: URL) throws {
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        var obj: [String: Any] = [:]
        for m in metrics {
            obj[m.name] = ["value": m.value, "unit": m.unit, "target": m.target,
                           "baseline": m.baseline.map { $0 as Any } ?? NSNull(), "baseline_what": m.baselineWhat]
        }
        let data = try JSONSerialization.data(withJSONObject: obj, options: [.prettyPrinted, .sortedKeys])
        try data.write(to: url)
    }
}

/// Monotonic seconds.
func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

func percentile(_ sorted: [Double], _ p: Double) -> Double {
    guard !sorted.isEmpty else { return .nan }
    let i = min(sorted.count - 1, max(0, Int((Double(sorted.count - 1) * p).rounded())))
    return sorted[i]
}

/// Runs a program and returns its standard output. Spawned with posix_spawn and an empty signal
/// mask: Foundation's Process hands children the parent's blocked signals, and `openssl speed`
/// times its loops with SIGALRM — blocked, it never stops.
func run(_ exe: String, _ args: [String]) throws -> String {
    var fds: [Int32] = [0, 0]
    guard pipe(&fds) == 0 else { throw BenchError("pipe failed") }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
    posix_spawn_file_actions_addclose(&actions, fds[0])
    var attr = posix_spawnattr_t()
    posix_spawnattr_init(&attr)
    defer { posix_spawnattr_destroy(&attr) }
    var empty = sigset_t(); sigemptyset(&empty)
    var all = sigset_t(); sigfillset(&all)
    posix_spawnattr_setsigmask(&attr, &empty)
    posix_spawnattr_setsigdefault(&attr, &all)
    posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
    let argv = ([exe] + args).map { strdup($0) } + [nil]
    defer { for a in argv { free(a) } }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, exe, &actions, &attr, argv, environ)
    close(fds[1])
    guard rc == 0 else { close(fds[0]); throw BenchError("cannot run \(exe): \(rc)") }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = read(fds[0], &buf, buf.count)
        if n <= 0 { break }
        out.append(contentsOf: buf[0..<n])
    }
    close(fds[0])
    var status: Int32 = 0
    waitpid(pid, &status, 0)
    return String(decoding: out, as: UTF8.self)
}

func pad(_ s: String, _ n: Int, left: Bool = false) -> String {
    s.count >= n ? s : (left ? String(repeating: " ", count: n - s.count) + s : s + String(repeating: " ", count: n - s.count))
}
