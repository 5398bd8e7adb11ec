import Foundation

struct Metric {
    var name: String
    var value: Double
    var unit: String
    var target: String
    var baseline: Double?
    var baselineWhat: String
}

final class BenchReport: @unchecked Sendable {
    var metrics: [Metric] = []

    func add(_ name: String, _ value: Double, unit: String, target: String = "—", baseline: Double? = nil, baselineWhat: String = "") {
        metrics.append(Metric(name: name, value: value, unit: unit, target: target, baseline: baseline, baselineWhat: baselineWhat))
        let b = baseline.map { String(format: "  (baseline %.3f: %@)", $0, baselineWhat) } ?? ""
        print(String(format: "%-28@ %14.3f %-12@ target %@", name, value, unit, target) + b)
    }

    func printTable() {
        print("\nmetric                        value          unit         target       baseline")
        for m in metrics {
            let base = m.baseline.map { String(format: "%.3f (%@)", $0, m.baselineWhat) } ?? "—"
            print(String(format: "%-28@ %14.3f %-12@ %-12@ %@", m.name, m.value, m.unit, m.target, base))
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

func run(_ exe: String, _ args: [String]) throws -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: exe)
    p.arguments = args
    let out = Pipe(); p.standardOutput = out; p.standardError = Pipe()
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return String(decoding: data, as: UTF8.self)
}
